//! WADO-RS (PS3.18 10.4): instances as `multipart/related; type="application/dicom"`,
//! metadata as DICOM JSON, frames as stored or decoded. An object intake accepted without its
//! preamble or meta group goes as a PS3.10 file (`crate::part10`). Its data set goes as stored
//! where the request takes that syntax; one in Implicit VR, Deflated or a compressed syntax
//! with a decoder here is written again in Explicit VR Little Endian (byte by byte, inflated,
//! or its pixels decompressed) where that is asked for or no syntax is named (the default,
//! PS3.18 8.7.3.5.2); a Big Endian one, or one compressed in a syntax without a decoder here,
//! goes as stored to a request that names no syntax (its part names its syntax).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    Sql, Target, accepted_transfer_syntaxes, accepts, audit_access, not_acceptable, on_disk, scope,
};
use crate::Server;
use crate::api::Caller;
use crate::error::ApiError;
use case_protocol::multipart::{closing, new_boundary, part_head};

/// The largest object written again in Explicit VR Little Endian for a request that names no
/// transfer syntax (conversion holds the object twice, and decompression the stored object
/// twice beside its pixels; four are fetched ahead, and decompression runs one object a core
/// across requests): a larger one
/// goes as stored, its part naming its syntax. One that names the syntax is always converted,
/// but for decompression, which no object may take past this many bytes of pixels (a small
/// compressed file may hold gigabytes of them): the answer to such a request ends there.
const CONVERTED_MAX: usize = 512 << 20;

/// Objects fetched from the store ahead of the one being sent.
const PREFETCH: usize = 4;

/// Objects being decompressed at once, across every request: one a core. Decompression is
/// CPU work and holds an object's pixels (up to `CONVERTED_MAX`); unbounded, a few requests
/// for the default syntax would take every core and their sum of memory.
/// `work` run on a blocking thread once one of those permits is had, holding it to its end:
/// the permit goes with the work, so an answer whose client went away does not free it while
/// the decoding still runs. `Err` only when the work's thread failed (a panic).
async fn decompressing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    static PERMITS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        std::sync::Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ))
    });
    // Never closed: an error cannot come.
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| e.to_string())
}

/// The instance columns [`convertible`] reads: a compressed object's pixel format (Photometric
/// Interpretation, Samples per Pixel, Bits Allocated), taken out of the metadata intake kept by
/// the database (three short values a row, not every instance's whole metadata), as text; for
/// a request answered as stored (`converting` false), or an uncompressed object, none.
fn convertible_columns(backend: crate::db::Backend, converting: bool) -> String {
    let uncompressed = "instances.transfer_syntax_uid IN ('1.2.840.10008.1.2', \
         '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2')";
    let value = |tag: &str| match backend {
        crate::db::Backend::Sqlite => {
            format!("CAST(json_extract(instances.metadata_json, '$.\"{tag}\".Value[0]') AS TEXT)")
        }
        crate::db::Backend::Postgres => {
            format!("(CAST(instances.metadata_json AS jsonb) -> '{tag}' -> 'Value' ->> 0)")
        }
    };
    let pixel = |tag: &str, name: &str| {
        if converting {
            format!(
                "CASE WHEN {uncompressed} THEN NULL ELSE {} END AS {name}",
                value(tag)
            )
        } else {
            format!("CAST(NULL AS TEXT) AS {name}")
        }
    };
    format!(
        "{}, {}, {}, instances.pixel_rows AS pixel_rows, \
         instances.pixel_columns AS pixel_columns, instances.number_of_frames AS number_of_frames",
        pixel("00280004", "photometric"),
        pixel("00280002", "samples_per_pixel"),
        pixel("00280100", "bits_allocated"),
    )
}

/// A number of the pixel format [`convertible_columns`] read (as text); `None` where the
/// metadata does not give it.
fn pixel_number(row: &AnyRow, column: &str) -> Option<u64> {
    row.try_get::<Option<String>, _>(column)
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok())
}

/// Whether an instance row (with [`convertible_columns`]) in `ts` can be written in Explicit
/// VR Little Endian: its syntax is one converted here, and if compressed, its pixels are
/// written natively (`imaging::decode::writes_natively`, by the metadata intake kept) in at
/// most `CONVERTED_MAX` bytes. Known before the answer starts, so that a request naming that
/// syntax is refused (406) rather than cut short. Metadata without the pixel format is
/// taken as convertible (the conversion itself still checks).
fn convertible(row: &AnyRow, ts: &str) -> bool {
    if !super::is_converted(ts) {
        return false;
    }
    if !imaging::transcode::is_decompressed(ts) {
        return true;
    }
    let (Some(photometric), Some(samples), Some(bits)) = (
        row.try_get::<Option<String>, _>("photometric")
            .ok()
            .flatten(),
        pixel_number(row, "samples_per_pixel"),
        pixel_number(row, "bits_allocated"),
    ) else {
        return true;
    };
    let (Ok(samples), Ok(bits)) = (u16::try_from(samples), u16::try_from(bits)) else {
        return false;
    };
    let count =
        |column: &str| u64::try_from(row.try_get::<i64, _>(column).unwrap_or(1)).unwrap_or(0);
    let size = count("pixel_rows")
        .saturating_mul(count("pixel_columns"))
        .saturating_mul(count("number_of_frames"))
        .saturating_mul(u64::from(samples) * u64::from(bits / 8));
    imaging::decode::writes_natively(&photometric, samples, bits).is_ok()
        && size <= CONVERTED_MAX as u64
}

/// The instance rows of a target, in series and instance order; none is a 404.
pub(super) async fn rows_of(
    server: &Server,
    scope: &super::Scope,
    target: &Target,
    columns: &str,
) -> Result<Vec<AnyRow>, ApiError> {
    let mut sql = Sql::new(&format!(
        "SELECT instances.case_id AS case_id, {columns}
         FROM instances JOIN cases ON cases.id = instances.case_id WHERE 1 = 1"
    ));
    sql.scope(scope).target(target);
    sql.push(" ORDER BY instances.series_number, instances.series_uid, instances.instance_number, instances.sop_uid");
    let rows = sql.fetch_all(&server.db).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("no {}", target.describe())));
    }
    Ok(rows)
}

pub(super) async fn retrieve(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    if !accepts(&headers, "application/dicom") {
        return Err(not_acceptable(
            "instances are sent as multipart/related; type=\"application/dicom\"",
        ));
    }
    let scope = scope(&server.db, &caller, &target).await?;
    let wanted = accepted_transfer_syntaxes(&headers);
    // A request that takes any syntax (`*`) is answered as stored: no metadata read.
    let pixel_columns = convertible_columns(server.db.backend, wanted.is_some());
    let rows = rows_of(
        &server,
        &scope,
        &target,
        &format!(
            "instances.object_key AS object_key, instances.transfer_syntax_uid AS ts,
             instances.sop_class_uid AS sop_class_uid, instances.sop_uid AS sop_uid,
             {pixel_columns}"
        ),
    )
    .await?;
    let served: Vec<Option<super::Served>> = rows
        .iter()
        .map(|r| {
            let ts: String = r.get("ts");
            super::served(wanted.as_ref(), &ts, convertible(r, &ts))
        })
        .collect();
    if let Some(other) = rows
        .iter()
        .zip(&served)
        .find(|(_, s)| s.is_none())
        .map(|(r, _)| r.get::<String, _>("ts"))
    {
        return Err(not_acceptable(format!(
            "an object is stored in transfer syntax {other}, which is sent as stored (or, \
             where it can be written again, in Explicit VR Little Endian); ask with \
             transfer-syntax=*"
        )));
    }
    audit_access(
        &server,
        &caller,
        "dicomweb_retrieve",
        &scope,
        &rows,
        &format!("{} ({} instances)", target.describe(), rows.len()),
    )
    .await?;
    let boundary = new_boundary();
    let parts: Vec<(String, String, String, String, Option<super::Served>)> = rows
        .iter()
        .zip(served)
        .map(|(r, served)| {
            (
                r.get("object_key"),
                r.get("ts"),
                r.get("sop_class_uid"),
                r.get("sop_uid"),
                served,
            )
        })
        .collect();
    let store = server.store.clone();
    let b = boundary.clone();
    let body = futures_util::stream::iter(parts.into_iter().enumerate())
        .map(move |(i, (key, ts, class, sop, served))| {
            let store = store.clone();
            let b = b.clone();
            let wanted = wanted.clone();
            async move {
                let bytes = store.get(&key).await.map_err(|e| {
                    tracing::error!("WADO-RS: {e}");
                    std::io::Error::other("a stored object could not be read")
                })?;
                // An application/dicom part is a PS3.10 file, whatever intake accepted.
                let bytes = crate::part10::file(bytes, &class, &sop, &ts).map_err(|e| {
                    tracing::error!("WADO-RS: instance {sop}: {e}");
                    std::io::Error::other("a stored object could not be made a DICOM file")
                })?;
                // An object in Implicit VR, Deflated or a compressed syntax, written again in
                // Explicit VR Little Endian (off the async workers; a compressed one's pixels
                // decoded, a core's worth at a time). One that cannot be (or, to a request
                // that names no syntax, one over `CONVERTED_MAX`) goes as stored, its part
                // naming its syntax, where the request takes that leniency; a request that
                // named the syntax it would be written in gets no other: its answer ends there.
                let (chunks, ts) = match served {
                    Some(super::Served::ExplicitLittleEndian) => {
                        let lenient = wanted.as_ref().is_some_and(|w| {
                            w.default && !w.named.iter().any(|t| t == super::EXPLICIT_VR_LITTLE_ENDIAN)
                        });
                        let written = if lenient && bytes.len() > CONVERTED_MAX {
                            Err("larger than this server converts for a default request".into())
                        } else {
                            let (stored, class, sop, ts) =
                                (bytes.clone(), class.clone(), sop.clone(), ts.clone());
                            // Inflated, a deflated object is bound by the same limit, and
                            // decompressed pixels always are.
                            let compressed = imaging::transcode::is_decompressed(&ts);
                            let cap = if lenient || compressed {
                                CONVERTED_MAX as u64
                            } else {
                                u64::MAX
                            };
                            let convert = move || {
                                crate::part10::explicit_le(&stored, &class, &sop, &ts, cap)
                            };
                            if compressed {
                                decompressing(convert).await
                            } else {
                                tokio::task::spawn_blocking(convert)
                                    .await
                                    .map_err(|e| e.to_string())
                            }
                            .unwrap_or_else(Err)
                        };
                        match written {
                            Ok(chunks) => (chunks, super::EXPLICIT_VR_LITTLE_ENDIAN.to_string()),
                            Err(e) if lenient => {
                                tracing::warn!(
                                    "WADO-RS: instance {sop} sent as stored ({ts}): {e}"
                                );
                                (vec![bytes], ts)
                            }
                            Err(e) => {
                                tracing::error!("WADO-RS: instance {sop} not converted: {e}");
                                return Err(std::io::Error::other(
                                    "a stored object could not be written in the transfer syntax asked for",
                                ));
                            }
                        }
                    }
                    _ => (vec![bytes], ts),
                };
                let head = part_head(
                    &b,
                    &format!("application/dicom; transfer-syntax={ts}"),
                    i == 0,
                );
                Ok::<_, std::io::Error>(futures_util::stream::iter(
                    std::iter::once(bytes::Bytes::from(head))
                        .chain(chunks)
                        .map(Ok::<_, std::io::Error>),
                ))
            }
        })
        .buffered(PREFETCH)
        .flat_map(|r| match r {
            Ok(s) => s.left_stream(),
            Err(e) => futures_util::stream::iter([Err(e)]).right_stream(),
        })
        .chain(futures_util::stream::iter([Ok(bytes::Bytes::from(
            closing(&boundary, true),
        ))]));
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )],
        Body::from_stream(body),
    )
        .into_response())
}

pub(super) async fn metadata(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    if !accepts(&headers, "application/dicom+json") && !accepts(&headers, "application/json") {
        return Err(not_acceptable("metadata is sent as application/dicom+json"));
    }
    let scope = scope(&server.db, &caller, &target).await?;
    let rows = rows_of(
        &server,
        &scope,
        &target,
        "instances.metadata_json AS metadata_json",
    )
    .await?;
    audit_access(
        &server,
        &caller,
        "dicomweb_metadata",
        &scope,
        &rows,
        &format!("{} ({} instances)", target.describe(), rows.len()),
    )
    .await?;
    // The stored JSON objects joined into an array, not parsed again.
    let mut body = String::from("[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r.get::<&str, _>("metadata_json"));
    }
    body.push(']');
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        body,
    )
        .into_response())
}

/// The media type of a frame stored in `ts` (PS3.18 Table 8.7.3-5).
fn frame_media_type(ts: &str, encapsulated: bool) -> &'static str {
    if !encapsulated {
        return "application/octet-stream";
    }
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => "application/octet-stream",
    }
}

/// The part type compressed frames stored in `ts` (of media type `media`) go as, where
/// `Accept` takes them as stored (PS3.18 8.7.3.5.2, Table 8.7.3-5): as `media` to a range of
/// that type (or any) that names no transfer syntax, `*` or `ts`; as
/// `application/octet-stream` to a range of that type that names `*` or `ts` (OHIF's image
/// loader asks `transfer-syntax=*`), since octet-stream without one means Explicit VR Little
/// Endian, which these frames are not. Ranges of quality 0 take nothing. `None`: not taken.
fn compressed_part_type(headers: &HeaderMap, media: &str, ts: &str) -> Option<String> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(format!("{media}; transfer-syntax={ts}"));
    };
    let octet = "application/octet-stream";
    accept.split(',').find_map(|range| {
        let m = case_protocol::multipart::MediaType::parse(range);
        if super::refused(&m) {
            return None;
        }
        let asked = match m.essence.as_str() {
            "multipart/related" => m.param("type").unwrap_or("*/*").to_ascii_lowercase(),
            essence => essence.to_string(),
        };
        let named = m.param("transfer-syntax");
        let this_syntax = named.is_some_and(|t| t == "*" || t == ts);
        let wildcard = matches!(asked.as_str(), "*" | "*/*" | "multipart/*")
            || (asked.ends_with("/*") && media.starts_with(asked.trim_end_matches('*')));
        if (asked == media || wildcard) && media != octet && (named.is_none() || this_syntax) {
            Some(format!("{media}; transfer-syntax={ts}"))
        } else if (asked == octet || wildcard) && this_syntax {
            Some(format!("{octet}; transfer-syntax={ts}"))
        } else {
            None
        }
    })
}

/// Whether `Accept` takes frames as `application/octet-stream` in Explicit VR Little Endian,
/// the default (PS3.18 Table 8.7.3-5): a range of that type, or multipart/related of it,
/// naming no transfer syntax or that one. Ranges of quality 0 take nothing.
fn takes_native_octet_stream(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|range| {
        let m = case_protocol::multipart::MediaType::parse(range);
        let asked = match m.essence.as_str() {
            "multipart/related" => m.param("type").unwrap_or("*/*").to_ascii_lowercase(),
            essence => essence.to_string(),
        };
        let native = m
            .param("transfer-syntax")
            .is_none_or(|t| t == super::EXPLICIT_VR_LITTLE_ENDIAN);
        !super::refused(&m)
            && native
            && matches!(
                asked.as_str(),
                "application/octet-stream" | "application/*" | "*/*" | "*" | "multipart/*"
            )
    })
}

/// Parse `1,3,5` (1-based frame numbers) into 0-based indices. A frame named twice is
/// refused (PS3.18 8.3.2.3: a list of non-duplicate frame numbers): each listed frame is a
/// copy in the response, so repeats would let one short URL ask for gigabytes.
fn frame_list(text: &str) -> Result<Vec<u32>, ApiError> {
    let frames: Vec<u32> = text
        .split(',')
        .map(|f| {
            f.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n - 1)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "frame list {text:?}: frames are numbers from 1, separated by commas"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(f) = frames.iter().find(|f| !seen.insert(**f)) {
        return Err(ApiError::bad_request(format!(
            "frame list {text:?}: frame {} is named twice",
            f + 1
        )));
    }
    Ok(frames)
}

pub(super) async fn frames(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    let wanted = frame_list(params.get("frames").map_or("", String::as_str))?;
    let scope = scope(&server.db, &caller, &target).await?;
    let rows = rows_of(
        &server,
        &scope,
        &target,
        &format!(
            "instances.object_key AS object_key, instances.transfer_syntax_uid AS ts, {}",
            convertible_columns(server.db.backend, true)
        ),
    )
    .await?;
    let count: i64 = rows[0].try_get("number_of_frames").unwrap_or(1);
    if let Some(f) = wanted.iter().find(|f| i64::from(**f) >= count) {
        return Err(ApiError::not_found(format!(
            "{} has {count} frames, not frame {}",
            target.describe(),
            f + 1
        )));
    }
    let key: String = rows[0].get("object_key");
    let bytes = server
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal("a stored object could not be read", e))?;
    let (list, stored) = (wanted.clone(), bytes.clone());
    let frames = tokio::task::spawn_blocking(move || {
        on_disk(&stored, |path| {
            imaging::decode::stored_frames(path, &list).map_err(|e| e.to_string())
        })
    })
    .await
    .map_err(|e| ApiError::internal("a worker thread failed", e))?
    .map_err(|e| {
        ApiError::internal(
            format!("{}: its frames could not be read", target.describe()),
            e,
        )
    })?;
    let ts = frames[0].transfer_syntax_uid.clone();
    let media = frame_media_type(&ts, frames[0].encapsulated);
    let part_type = if frames[0].encapsulated {
        compressed_part_type(&headers, media, &ts)
    } else {
        accepts(&headers, media).then(|| media.to_string())
    };
    // Compressed frames the request does not take as stored, decoded where it takes them as
    // octet-stream in the default syntax (as a client without that codec asks). Grey frames
    // only: a colour frame decodes to another model or layout than the instance's metadata
    // gives (RGB from YBR_FULL_422, interleaved from planar), and raw frames carry no header
    // to say so.
    let (part_type, frames): (String, Vec<bytes::Bytes>) = match part_type {
        Some(part_type) => (
            part_type,
            frames
                .into_iter()
                .map(|f| bytes::Bytes::from(f.bytes))
                .collect(),
        ),
        // Known from the metadata before decoding: the syntax, the format written natively,
        // and grey (the check after decoding holds for metadata without them).
        None if frames[0].encapsulated
            && takes_native_octet_stream(&headers)
            && imaging::transcode::is_decompressed(&ts)
            && convertible(&rows[0], &rows[0].get::<String, _>("ts"))
            && pixel_number(&rows[0], "samples_per_pixel").is_none_or(|n| n == 1) =>
        {
            let list = wanted.clone();
            let decoded = decompressing(move || {
                on_disk(&bytes, |path| {
                    Ok(imaging::decode::native_frames(
                        path,
                        Some(&list),
                        CONVERTED_MAX as u64,
                    ))
                })
            })
            .await
            .map_err(|e| ApiError::internal("a worker thread failed", e))?
            .map_err(|e| ApiError::internal("a stored object could not be read", e))?;
            let decoded = match decoded {
                Ok(decoded) if decoded.format.samples_per_pixel == 1 => decoded,
                Ok(_) => {
                    return Err(not_acceptable(format!(
                        "colour frames of {} (transfer syntax {ts}) are sent as stored: \
                         decoded, their layout would not be the one their metadata gives",
                        target.describe(),
                    )));
                }
                // Palette colour, 1-bit, or more than the bound: not written natively here.
                Err(imaging::ImagingError::Unsupported { what, .. }) => {
                    return Err(not_acceptable(format!(
                        "frames of {} (transfer syntax {ts}) are not decoded here: {what}",
                        target.describe(),
                    )));
                }
                Err(e) => {
                    return Err(ApiError::internal(
                        format!("{}: its frames could not be decoded", target.describe()),
                        e,
                    ));
                }
            };
            let len = decoded.frame_len.max(1);
            let all = bytes::Bytes::from(decoded.bytes);
            // Each frame a view of the one buffer, not a copy.
            let frames = (0..all.len().div_ceil(len))
                .map(|f| all.slice(f * len..((f + 1) * len).min(all.len())))
                .collect();
            (
                format!(
                    "application/octet-stream; transfer-syntax={}",
                    super::EXPLICIT_VR_LITTLE_ENDIAN
                ),
                frames,
            )
        }
        None => {
            return Err(not_acceptable(format!(
                "frames of {} are stored as {media} (transfer syntax {ts}); frames are sent as \
                 stored, or decoded as application/octet-stream",
                target.describe(),
            )));
        }
    };
    audit_access(
        &server,
        &caller,
        "dicomweb_frames",
        &scope,
        &rows,
        &format!(
            "{} frames {}",
            target.describe(),
            params.get("frames").map_or("", String::as_str)
        ),
    )
    .await?;
    let boundary = new_boundary();
    let mut chunks = Vec::with_capacity(2 * frames.len() + 1);
    for (i, frame) in frames.into_iter().enumerate() {
        chunks.push(bytes::Bytes::from(part_head(&boundary, &part_type, i == 0)));
        chunks.push(frame);
    }
    chunks.push(bytes::Bytes::from(closing(&boundary, true)));
    let body = Body::from_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ));
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            format!(
                "multipart/related; type=\"{}\"; boundary={boundary}",
                part_type.split(';').next().unwrap_or(media).trim()
            ),
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(frame_list("1").unwrap(), vec![0]);
        assert_eq!(frame_list("1, 3,5").unwrap(), vec![0, 2, 4]);
        assert!(frame_list("0").is_err());
        assert!(frame_list("a").is_err());
        assert!(frame_list("").is_err());
        // A frame named twice would be copied twice into the response.
        assert!(frame_list("1,2,1").is_err());
        assert!(frame_list(&vec!["1"; 30_000].join(",")).is_err());
    }
}
