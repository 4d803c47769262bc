//! A compressed object's data set written again in Explicit VR Little Endian, its pixels
//! decoded: what a DICOMweb server sends to a request for the default transfer syntax
//! (PS3.18 8.7.3.5.2) when it stores the object compressed.
//!
//! Every element but a few is copied byte for byte (no text decoded and encoded again,
//! whatever its character set); those few are what decoding changes (PS3.5 8.2, PS3.3
//! C.7.6.3.1, C.7.6.1.1.5):
//! - Pixel Data becomes native samples ([`crate::decode::native_frames`]): OW for 16 bits
//!   allocated, OB for 8, of defined length;
//! - a colour image becomes RGB, interleaved (Photometric Interpretation `RGB`, Planar
//!   Configuration 0), whatever model it was stored in;
//! - an image from a syntax that may be lossy (JPEG's DCT processes, JPEG-LS near-lossless,
//!   JPEG 2000, HTJ2K) that does not say whether it was lossy compressed is said to be (Lossy
//!   Image Compression `01`, with the ratio and method), so that a reader of the uncompressed
//!   copy still knows. A lossless JPEG 2000 stream in the syntax that allows both is then marked
//!   lossy: nothing in the syntax says which, and the other way round would hide a lossy image;
//! - what is only true of encapsulated Pixel Data goes: the Extended Offset Table and its
//!   lengths, and an Icon Image Sequence whose icon is itself encapsulated;
//! - group lengths (retired, and no longer true) go, and so does anything after Pixel Data.
//!
//! Owns: the byte layout of the converted data set. Decoding is `decode`'s.

use std::path::Path;

use crate::decode::{NativeFrames, native_frames};
use crate::open::top_level_elements;

/// Whether objects in `ts` are decompressed here: the encapsulated syntaxes `decode` reads.
pub fn is_decompressed(ts: &str) -> bool {
    crate::decode::is_jpeg(ts)
        || matches!(
            ts,
            "1.2.840.10008.1.2.4.80"
                | "1.2.840.10008.1.2.4.81"
                | "1.2.840.10008.1.2.4.90"
                | "1.2.840.10008.1.2.4.91"
                | "1.2.840.10008.1.2.4.201"
                | "1.2.840.10008.1.2.4.202"
                | "1.2.840.10008.1.2.4.203"
                | "1.2.840.10008.1.2.5"
                | "1.2.840.10008.1.2.8.1"
                | "1.2.840.10008.1.2.1.98"
        )
}

/// The Lossy Image Compression Method (0028,2114, PS3.3 C.7.6.1.1.5.1) of a syntax that may
/// be lossy; `None` for one that is lossless only.
fn lossy_method(ts: &str) -> Option<&'static str> {
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.53"
        | "1.2.840.10008.1.2.4.55" => Some("ISO_10918_1"),
        "1.2.840.10008.1.2.4.81" => Some("ISO_14495_1"),
        "1.2.840.10008.1.2.4.91" => Some("ISO_15444_1"),
        "1.2.840.10008.1.2.4.203" => Some("ISO_15444_15"),
        _ => None,
    }
}

/// The data set of the PS3.10 file at `path` (stored in an encapsulated syntax, which encodes
/// its data set in explicit VR little endian) with its Pixel Data decoded, in Explicit VR
/// Little Endian (see the module's notes), to follow a File Meta group that names that syntax.
/// `Err` for a syntax not decompressed here, pixels that cannot be decoded or written natively
/// (palette colour, 1-bit), more than `cap` bytes of them, or a data set that does not walk.
pub fn decompressed_data_set(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::read(path).map_err(|e| e.to_string())?;
    let (start, ts) = crate::open::part10_data_set(&file).ok_or("not a PS3.10 file")?;
    let ts = ts.trim_end_matches(['\0', ' ']);
    if !is_decompressed(ts) {
        return Err(format!("transfer syntax {ts} is not decompressed here"));
    }
    let data_set = &file[start..];
    let elements = top_level_elements(data_set)?;
    let pixel_data = elements
        .iter()
        .find(|e| (e.group, e.element) == (0x7FE0, 0x0010) && e.undefined_length)
        .ok_or("no encapsulated Pixel Data")?;
    let pixels = native_frames(path, None, cap).map_err(|e| e.to_string())?;
    let native_len: usize = pixels.frames.iter().map(Vec::len).sum();
    let compressed_len = pixel_data.bytes.len().max(1);
    let has = |group, element| {
        elements
            .iter()
            .any(|e| (e.group, e.element) == (group, element))
    };
    let colour = pixels.format.samples_per_pixel == 3;
    let mut inserted: Vec<(u16, u16, Vec<u8>)> = Vec::new();
    if colour && !has(0x0028, 0x0006) {
        inserted.push((
            0x0028,
            0x0006,
            element(0x0028, 0x0006, *b"US", &0u16.to_le_bytes()),
        ));
    }
    if let Some(method) = lossy_method(ts).filter(|_| !has(0x0028, 0x2110)) {
        inserted.push((0x0028, 0x2110, text(0x0028, 0x2110, *b"CS", "01")));
        if !has(0x0028, 0x2112) {
            let ratio = native_len as f64 / compressed_len as f64;
            inserted.push((
                0x0028,
                0x2112,
                text(0x0028, 0x2112, *b"DS", &ratio_text(ratio)),
            ));
        }
        if !has(0x0028, 0x2114) {
            inserted.push((0x0028, 0x2114, text(0x0028, 0x2114, *b"CS", method)));
        }
    }
    let mut out = Vec::with_capacity(data_set.len() + native_len);
    let mut pending = inserted.into_iter().peekable();
    for e in &elements {
        while let Some((_, _, bytes)) =
            pending.next_if(|(g, el, _)| (*g, *el) < (e.group, e.element))
        {
            out.extend_from_slice(&bytes);
        }
        match (e.group, e.element) {
            // Group lengths (outside the meta group, which is not here) count bytes that
            // change.
            (_, 0x0000) => {}
            (0x0028, 0x0004) if colour => out.extend(text(0x0028, 0x0004, *b"CS", "RGB")),
            (0x0028, 0x0006) if colour => {
                out.extend(element(0x0028, 0x0006, *b"US", &0u16.to_le_bytes()))
            }
            (0x0088, 0x0200) if holds_encapsulated_pixels(&data_set[e.bytes.clone()]) => {}
            (0x7FE0, 0x0001) | (0x7FE0, 0x0002) => {}
            (0x7FE0, 0x0010) => {
                write_pixel_data(&mut out, &pixels, native_len);
                break;
            }
            _ => out.extend_from_slice(&data_set[e.bytes.clone()]),
        }
    }
    Ok(out)
}

/// Pixel Data of defined length holding `pixels`' frames one after another (padded to an even
/// length with a zero byte, PS3.5 8.1.1).
fn write_pixel_data(out: &mut Vec<u8>, pixels: &NativeFrames, len: usize) {
    let vr = if pixels.format.bits_allocated == 16 {
        b"OW"
    } else {
        b"OB"
    };
    let padded = len + len % 2;
    out.extend_from_slice(&0x7FE0u16.to_le_bytes());
    out.extend_from_slice(&0x0010u16.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(padded as u32).to_le_bytes());
    for frame in &pixels.frames {
        out.extend_from_slice(frame);
    }
    if len % 2 == 1 {
        out.push(0);
    }
}

/// Whether an element's bytes hold encapsulated Pixel Data (an icon compressed as the image
/// is, PS3.5 A.4): Pixel Data, OB or OW, of undefined length.
fn holds_encapsulated_pixels(bytes: &[u8]) -> bool {
    [b"OB", b"OW"].iter().any(|vr| {
        let mut header = vec![0xE0, 0x7F, 0x10, 0x00];
        header.extend_from_slice(&vr[..]);
        header.extend_from_slice(&[0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        bytes.windows(header.len()).any(|w| w == header)
    })
}

/// A compression ratio as a Decimal String (at most 16 characters).
fn ratio_text(ratio: f64) -> String {
    if ratio.is_finite() && ratio < 1e9 {
        format!("{ratio:.2}")
    } else {
        "1".into()
    }
}

/// An explicit VR little endian element of a short-length VR.
fn element(group: u16, el: u16, vr: [u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&el.to_le_bytes());
    out.extend_from_slice(&vr);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// A text element, padded to an even length with a space (PS3.5 6.2).
fn text(group: u16, el: u16, vr: [u8; 2], value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(b' ');
    }
    element(group, el, vr, &bytes)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use dicom_core::Tag;
    use dicom_dictionary_std::tags;
    use dicom_object::DefaultDicomObject;

    use super::*;
    use crate::synth::{PhantomSpec, SynthSyntax, write_series};

    /// The phantom's files in `syntax` (one Enhanced CT object when `enhanced`), by name.
    fn series(dir: &Path, syntax: SynthSyntax, enhanced: bool) -> Vec<PathBuf> {
        let spec = PhantomSpec {
            columns: 24,
            rows: 20,
            slices: 3,
            seed: 7,
            syntax,
            enhanced,
            ..Default::default()
        };
        let folder = dir.join(format!("{syntax:?}-{enhanced}"));
        write_series(&spec, &folder).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// A decompressed data set read back by dicom-rs, under a File Meta group that names
    /// Explicit VR Little Endian.
    fn read_back(original: &DefaultDicomObject, data_set: &[u8]) -> DefaultDicomObject {
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(original.meta().media_storage_sop_class_uid())
            .media_storage_sop_instance_uid(original.meta().media_storage_sop_instance_uid())
            .transfer_syntax("1.2.840.10008.1.2.1")
            .build()
            .unwrap();
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        meta.write(&mut file).unwrap();
        file.extend_from_slice(data_set);
        dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(&file[..])
            .unwrap()
    }

    /// Every element but Pixel Data, as dicom-rs reads it.
    fn elements_but_pixels(obj: &DefaultDicomObject) -> Vec<(Tag, dicom_core::VR, String)> {
        obj.iter()
            .filter(|e| e.header().tag != tags::PIXEL_DATA)
            .map(|e| (e.header().tag, e.header().vr, format!("{:?}", e.value())))
            .collect()
    }

    /// Pixel Data's bytes as they lie.
    fn pixel_bytes(obj: &DefaultDicomObject) -> Vec<u8> {
        obj.element(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap()
            .into_owned()
    }

    /// A lossless syntax decompresses to the bytes the same phantom has uncompressed, one file
    /// a slice and one multi-frame object alike; every other element is the compressed file's
    /// (CharLS's own Lossy Image Compression `00` too), and nothing says it was lossy
    /// compressed.
    #[test]
    fn lossless_syntaxes_decompress_to_the_uncompressed_twin() {
        let dir = tempfile::tempdir().unwrap();
        for enhanced in [false, true] {
            let twins = series(dir.path(), SynthSyntax::ExplicitLe, enhanced);
            for syntax in [
                SynthSyntax::Rle,
                SynthSyntax::JpegLs,
                SynthSyntax::JpegLossless,
                SynthSyntax::J2kLossless,
            ] {
                let files = series(dir.path(), syntax, enhanced);
                assert_eq!(files.len(), twins.len());
                for (file, twin) in files.iter().zip(&twins) {
                    let what = format!("{syntax:?}, enhanced {enhanced}: {}", file.display());
                    let original = dicom_object::open_file(file).unwrap();
                    let twin = dicom_object::open_file(twin).unwrap();
                    let data_set = decompressed_data_set(file, u64::MAX).unwrap();
                    let back = read_back(&original, &data_set);
                    assert_eq!(pixel_bytes(&back), pixel_bytes(&twin), "{what}");
                    assert_eq!(
                        back.element(tags::PIXEL_DATA).unwrap().header().vr,
                        dicom_core::VR::OW,
                        "{what}"
                    );
                    assert_eq!(
                        elements_but_pixels(&back),
                        elements_but_pixels(&original),
                        "{what}"
                    );
                    let lossy = back
                        .element(tags::LOSSY_IMAGE_COMPRESSION)
                        .ok()
                        .and_then(|e| e.to_str().ok().map(|t| t.trim().to_string()));
                    assert_ne!(lossy.as_deref(), Some("01"), "{what}");
                }
            }
        }
    }

    /// An image from a lossy syntax that does not say it was lossy compressed is said to be,
    /// with its ratio and method (PS3.3 C.7.6.1.1.5); its pixels are the decoder's.
    #[test]
    fn a_lossy_image_that_does_not_say_so_is_marked_lossy() {
        let dir = tempfile::tempdir().unwrap();
        for (syntax, method) in [
            (SynthSyntax::J2k, "ISO_15444_1"),
            (SynthSyntax::JpegExtended, "ISO_10918_1"),
        ] {
            let file = &series(dir.path(), syntax, false)[0];
            let mut obj = dicom_object::open_file(file).unwrap();
            assert!(obj.element(tags::LOSSY_IMAGE_COMPRESSION).is_ok());
            // As some writers leave it: nothing about the loss.
            for tag in [
                tags::LOSSY_IMAGE_COMPRESSION,
                tags::LOSSY_IMAGE_COMPRESSION_RATIO,
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            ] {
                obj.remove_element(tag);
            }
            let silent = dir.path().join(format!("{syntax:?}-silent.dcm"));
            obj.write_to_file(&silent).unwrap();
            let data_set = decompressed_data_set(&silent, u64::MAX).unwrap();
            let back = read_back(&obj, &data_set);
            let text = |tag| {
                back.element(tag)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim()
                    .to_string()
            };
            assert_eq!(text(tags::LOSSY_IMAGE_COMPRESSION), "01", "{syntax:?}");
            assert_eq!(text(tags::LOSSY_IMAGE_COMPRESSION_METHOD), method);
            let ratio: f64 = text(tags::LOSSY_IMAGE_COMPRESSION_RATIO).parse().unwrap();
            assert!(ratio > 1.5, "{syntax:?}: ratio {ratio}");
            let decoded = native_frames(&silent, None, u64::MAX).unwrap();
            assert_eq!(pixel_bytes(&back), decoded.frames.concat(), "{syntax:?}");
            // One that says so keeps its own words.
            let data_set = decompressed_data_set(file, u64::MAX).unwrap();
            let back = read_back(&obj, &data_set);
            let original = dicom_object::open_file(file).unwrap();
            for tag in [
                tags::LOSSY_IMAGE_COMPRESSION,
                tags::LOSSY_IMAGE_COMPRESSION_RATIO,
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            ] {
                assert_eq!(
                    back.element(tag).unwrap().value(),
                    original.element(tag).unwrap().value(),
                    "{syntax:?}"
                );
            }
        }
    }

    /// Pixels over the cap are refused before they are decoded; syntaxes not compressed are
    /// not written again here.
    #[test]
    fn what_is_not_decompressed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = &series(dir.path(), SynthSyntax::Rle, false)[0];
        let e = decompressed_data_set(file, 24 * 20 * 2 - 1).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        assert!(decompressed_data_set(file, 24 * 20 * 2).is_ok());
        let plain = &series(dir.path(), SynthSyntax::ExplicitLe, false)[0];
        let e = decompressed_data_set(plain, u64::MAX).unwrap_err();
        assert!(e.contains("not decompressed here"), "{e}");
    }
}
