//! Rendered resources (PS3.18 10.4.1.1.5): an instance's first frame as a PNG, windowed by
//! the `window=center,width` parameter, else the instance's own window, else its value range;
//! thumbnails of instances, series (the middle instance) and studies (the first series).
//!
//! Windowing is PS3.3 C.11.2.1.2.1 (linear) on modality values (rescale applied first);
//! MONOCHROME1 is inverted so that the picture looks as it would on a viewer.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imaging::header::FileKind;
use sqlx::Row;

use super::{Target, accepts, audit_access, not_acceptable, scope};
use crate::Server;
use crate::api::Caller;
use crate::error::ApiError;

/// Largest side of a thumbnail, pixels.
const THUMBNAIL_PX: u32 = 128;

/// A picture: 8-bit grey (1 channel) or RGB (3).
struct Picture {
    width: u32,
    height: u32,
    channels: u8,
    pixels: Vec<u8>,
}

fn parse_pair(text: &str, what: &str) -> Result<(f64, f64), ApiError> {
    let mut it = text.split(',').map(|v| v.trim().parse::<f64>());
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) if a.is_finite() && b.is_finite() => Ok((a, b)),
        _ => Err(ApiError::bad_request(format!(
            "{what}: expected two numbers separated by a comma"
        ))),
    }
}

/// Window `x` linearly (PS3.3 C.11.2.1.2.1) to 0..=255.
fn window_linear(x: f64, center: f64, width: f64) -> u8 {
    let width = width.max(1.0);
    let low = center - 0.5 - (width - 1.0) / 2.0;
    let high = center - 0.5 + (width - 1.0) / 2.0;
    if x <= low {
        0
    } else if x > high {
        255
    } else {
        (((x - (center - 0.5)) / (width - 1.0).max(1e-9) + 0.5) * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8
    }
}

/// The most samples (rows x columns x samples per pixel) a frame may have to be rendered:
/// 32 Mi, a 5,792-pixel square (CT and MR frames are 512 to 1024, at most 4096). A header may
/// claim 65535 x 65535 in a few megabytes of RLE; its frame is refused before it is decoded
/// (it would take some 50 GB).
const MAX_RENDER_SAMPLES: u64 = 32 << 20;

/// Why a picture was not made.
#[derive(Debug)]
enum PictureError {
    /// The frame is larger than [`MAX_RENDER_SAMPLES`]: the client's 422.
    TooLarge(String),
    Failed(String),
}

impl From<String> for PictureError {
    fn from(e: String) -> PictureError {
        PictureError::Failed(e)
    }
}

/// Decode the first frame of the object in `bytes` and window it.
fn picture(bytes: &[u8], window: Option<(f64, f64)>) -> Result<Picture, PictureError> {
    let (header, frame) = super::on_disk(bytes, |path| {
        let header = match imaging::header::read_header(path).map_err(|e| e.to_string())? {
            FileKind::Image(h) => h,
            _ => return Err("not an image".to_string()),
        };
        let samples = u64::from(header.rows)
            * u64::from(header.columns)
            * u64::from(header.samples_per_pixel.max(1));
        if samples > MAX_RENDER_SAMPLES {
            return Ok(Err(PictureError::TooLarge(format!(
                "a frame of {} x {} pixels is larger than this server renders",
                header.columns, header.rows
            ))));
        }
        let frame = imaging::decode::decode_frame_values(path, 0).map_err(|e| e.to_string())?;
        Ok(Ok((header, frame)))
    })??;
    let (width, height) = (
        u32::from(frame.format.columns),
        u32::from(frame.format.rows),
    );
    let spp = usize::from(frame.format.samples_per_pixel.max(1));
    if spp == 3 {
        let max = f64::from((1u32 << frame.format.bits_stored.min(16)) - 1);
        let pixels = frame
            .values
            .iter()
            .map(|v| (f64::from(*v) / max * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect();
        return Ok(Picture {
            width,
            height,
            channels: 3,
            pixels,
        });
    }
    let first = header.frames.first();
    let rescale = first.map_or(imaging::header::Rescale::IDENTITY, |f| f.rescale);
    let lut = first.and_then(|f| f.modality_lut.clone());
    // Modality values as they are needed (no copy of the frame in f64): through the Modality
    // LUT where the file has one, else the rescale.
    let modality = || {
        frame.values.iter().map(|v| match &lut {
            Some(lut) => f64::from(lut.map(*v)),
            None => rescale.apply(f64::from(*v)),
        })
    };
    let (center, width_w) =
        match window.or_else(|| first.and_then(|f| f.window).map(|w| (w.center, w.width))) {
            Some(w) => w,
            None => {
                let lo = modality().fold(f64::INFINITY, f64::min);
                let hi = modality().fold(f64::NEG_INFINITY, f64::max);
                if lo.is_finite() && hi.is_finite() {
                    ((lo + hi) / 2.0 + 0.5, (hi - lo + 1.0).max(1.0))
                } else {
                    (0.0, 1.0)
                }
            }
        };
    let invert = frame.format.photometric_interpretation.trim() == "MONOCHROME1";
    let pixels = modality()
        .map(|x| {
            let g = window_linear(x, center, width_w);
            if invert { 255 - g } else { g }
        })
        .collect();
    Ok(Picture {
        width,
        height,
        channels: 1,
        pixels,
    })
}

/// Shrink (area average) so that neither side exceeds `max_w` x `max_h`, keeping the aspect.
fn fit(p: Picture, max_w: u32, max_h: u32) -> Picture {
    let scale = (f64::from(max_w) / f64::from(p.width))
        .min(f64::from(max_h) / f64::from(p.height))
        .min(1.0);
    if scale >= 1.0 {
        return p;
    }
    let w = ((f64::from(p.width) * scale).round() as u32).max(1);
    let h = ((f64::from(p.height) * scale).round() as u32).max(1);
    let c = usize::from(p.channels);
    let mut out = vec![0u8; w as usize * h as usize * c];
    for y in 0..h {
        let y0 = (u64::from(y) * u64::from(p.height) / u64::from(h)) as u32;
        let y1 =
            ((u64::from(y + 1) * u64::from(p.height)).div_ceil(u64::from(h)) as u32).max(y0 + 1);
        for x in 0..w {
            let x0 = (u64::from(x) * u64::from(p.width) / u64::from(w)) as u32;
            let x1 =
                ((u64::from(x + 1) * u64::from(p.width)).div_ceil(u64::from(w)) as u32).max(x0 + 1);
            for ch in 0..c {
                let mut sum = 0u64;
                for yy in y0..y1.min(p.height) {
                    for xx in x0..x1.min(p.width) {
                        sum += u64::from(
                            p.pixels[(yy as usize * p.width as usize + xx as usize) * c + ch],
                        );
                    }
                }
                let n = u64::from(y1.min(p.height) - y0) * u64::from(x1.min(p.width) - x0);
                out[(y as usize * w as usize + x as usize) * c + ch] = (sum / n.max(1)) as u8;
            }
        }
    }
    Picture {
        width: w,
        height: h,
        channels: p.channels,
        pixels: out,
    }
}

fn png_bytes(p: &Picture) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, p.width, p.height);
    enc.set_color(if p.channels == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    });
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    w.write_image_data(&p.pixels).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

async fn render(
    server: Server,
    caller: Caller,
    params: HashMap<String, String>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    thumbnail: bool,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    if !accepts(&headers, "image/png") {
        return Err(not_acceptable("rendered images are sent as image/png"));
    }
    let window = query
        .get("window")
        .map(|w| parse_pair(w, "window"))
        .transpose()?;
    let (mut max_w, mut max_h) = if thumbnail {
        (THUMBNAIL_PX, THUMBNAIL_PX)
    } else {
        (u32::MAX, u32::MAX)
    };
    if let Some(v) = query.get("viewport") {
        let (w, h) = parse_pair(v, "viewport")?;
        if !(1.0..=8192.0).contains(&w) || !(1.0..=8192.0).contains(&h) {
            return Err(ApiError::bad_request("viewport: 1 to 8192 pixels a side"));
        }
        (max_w, max_h) = (w as u32, h as u32);
    }
    let scope = scope(&server.db, &caller, &target).await?;
    let rows = super::wado::rows_of(
        &server,
        &scope,
        &target,
        "instances.object_key AS object_key, instances.series_uid AS series_uid",
    )
    .await?;
    // An instance, the middle instance of a series, or that of the study's first series.
    let first_series: String = rows[0].get("series_uid");
    let series_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<String, _>("series_uid") == first_series)
        .collect();
    let chosen = series_rows[series_rows.len() / 2];
    let key: String = chosen.get("object_key");
    let bytes = server
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal("a stored object could not be read", e))?;
    let what = target.describe();
    let png = tokio::task::spawn_blocking(move || {
        picture(&bytes, window)
            .and_then(|p| png_bytes(&fit(p, max_w, max_h)).map_err(PictureError::Failed))
    })
    .await
    .map_err(|e| ApiError::internal("a worker thread failed", e))?
    .map_err(|e| match e {
        PictureError::TooLarge(m) => ApiError::unprocessable(format!("{what}: {m}")),
        PictureError::Failed(e) => ApiError::internal(format!("{what} could not be rendered"), e),
    })?;
    // Audited once the picture is made, before it goes: a frame refused as too large is
    // audited as a refused read, not also as given.
    audit_access(
        &server,
        &caller,
        if thumbnail {
            "dicomweb_thumbnail"
        } else {
            "dicomweb_rendered"
        },
        &scope,
        &rows,
        &target.describe(),
    )
    .await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "image/png")], png).into_response())
}

pub(super) async fn rendered(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render(server, caller, params, query, headers, false).await
}

pub(super) async fn thumbnail(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    render(server, caller, params, query, headers, true).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_ps3_3() {
        // c=40, w=400: [-160, 240] maps across the grey scale.
        assert_eq!(window_linear(-1000.0, 40.0, 400.0), 0);
        assert_eq!(window_linear(-160.0, 40.0, 400.0), 0);
        assert_eq!(window_linear(1000.0, 40.0, 400.0), 255);
        assert_eq!(window_linear(39.5, 40.0, 400.0), 128);
    }

    /// A header claiming 8192 x 8192 pixels over a few kilobytes of RLE is refused before its
    /// frame is decoded (as the client's error), not allocated; one claiming 65535 x 65535 is
    /// refused already by the header's reading (no frame of more than 2^28 samples is read).
    #[test]
    fn a_frame_too_large_to_render_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let spec = imaging::synth::PhantomSpec {
            columns: 16,
            rows: 16,
            slices: 1,
            syntax: imaging::synth::SynthSyntax::Rle,
            ..Default::default()
        };
        imaging::synth::write_series(&spec, dir.path()).unwrap();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let mut bytes = std::fs::read(file.path()).unwrap();
        assert!(matches!(
            picture(&bytes, None),
            Ok(Picture { width: 16, .. })
        ));
        // Rows (0028,0010) and Columns (0028,0011), US, explicit VR little endian.
        let mut sized = |size: u16| {
            for tag in [[0x28, 0x00, 0x10, 0x00], [0x28, 0x00, 0x11, 0x00]] {
                let mut element = tag.to_vec();
                element.extend_from_slice(b"US\x02\x00");
                let at = bytes
                    .windows(8)
                    .position(|w| w == element.as_slice())
                    .unwrap();
                bytes[at + 8..at + 10].copy_from_slice(&size.to_le_bytes());
            }
            picture(&bytes, None)
        };
        match sized(8192) {
            Err(PictureError::TooLarge(m)) => assert!(m.contains("8192 x 8192"), "{m}"),
            other => panic!("{:?}", other.map(|p| (p.width, p.height))),
        }
        match sized(65535) {
            Err(PictureError::Failed(m)) => {
                assert!(
                    m.contains("65535x65535") && m.contains("more than any"),
                    "{m}"
                )
            }
            other => panic!("{:?}", other.map(|p| (p.width, p.height))),
        }
    }

    /// A radiograph's Modality LUT (0028,3000) gives the values the window applies to: here
    /// every stored value maps to 2000, which a window at 2000 shows mid-grey (the stored
    /// values, 24 to 1324 less the rescale left beside the table, would all be black).
    #[test]
    fn a_modality_lut_gives_the_values_windowed() {
        use dicom_dictionary_std::tags;
        use dicom_object::mem::{InMemDicomObject, InMemElement};
        let dir = tempfile::tempdir().unwrap();
        let spec = imaging::synth::PhantomSpec {
            columns: 16,
            rows: 16,
            pixel_mm: 25.0,
            ..Default::default()
        };
        let path = crate::testing::one_synthetic_file(dir.path(), spec);
        let mut obj = dicom_object::open_file(&path).unwrap();
        let us = dicom_core::VR::US;
        let item = InMemDicomObject::from_element_iter([
            InMemElement::new(
                tags::LUT_DESCRIPTOR,
                us,
                dicom_core::PrimitiveValue::U16([4096, 0, 16].into_iter().collect()),
            ),
            InMemElement::new(
                tags::LUT_DATA,
                us,
                dicom_core::PrimitiveValue::U16(std::iter::repeat_n(2000, 4096).collect()),
            ),
        ]);
        obj.put(InMemElement::new(
            tags::MODALITY_LUT_SEQUENCE,
            dicom_core::VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        ));
        let file = dir.path().join("lut.dcm");
        obj.write_to_file(&file).unwrap();
        let p = picture(&std::fs::read(&file).unwrap(), Some((2000.0, 10.0))).unwrap();
        let grey = window_linear(2000.0, 2000.0, 10.0);
        assert!((100..=160).contains(&grey), "{grey}");
        assert_eq!(p.pixels, vec![grey; 256]);
        let plain = picture(&std::fs::read(&path).unwrap(), Some((2000.0, 10.0))).unwrap();
        assert!(plain.pixels.iter().all(|g| *g == 0));
    }

    #[test]
    fn fit_averages_and_keeps_aspect() {
        let p = Picture {
            width: 4,
            height: 2,
            channels: 1,
            pixels: vec![0, 100, 200, 200, 0, 100, 200, 200],
        };
        let f = fit(p, 2, 2);
        assert_eq!((f.width, f.height), (2, 1));
        assert_eq!(f.pixels, vec![50, 200]);
    }
}
