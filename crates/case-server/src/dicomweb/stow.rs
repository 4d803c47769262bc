//! STOW-RS (PS3.18 10.5): `POST .../cases/{case}/dicomweb/studies[/{study}]` with a
//! `multipart/related; type="application/dicom"` body. Coordinators only.
//!
//! All or nothing: the body is read as it arrives (up to the server's upload limit, else
//! 413), its parts spooled one by one to a private temporary folder (never the whole body in
//! memory; malformed: 400), then checked by [`crate::intake`]. Only when every part passes is anything stored. The answer is the PS3.18
//! store response: Referenced SOP Sequence with each instance's Retrieve URL; a refusal by
//! intake (not DICOM, not an image, outside the rules, another study, patient or case) is 409
//! Conflict with every part in the Failed SOP Sequence with its Failure Reason, and the reason
//! in words in a Warning header.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use case_protocol::Role;
use serde_json::json;

use super::{Target, root};
use crate::Server;
use crate::api::Caller;
use crate::error::ApiError;
use crate::intake::{FailureReason, IntakeError, Offered, ingest};
use case_protocol::multipart::{MediaType, PartEvent, PartsReader};

pub(crate) fn intake_error(e: IntakeError) -> ApiError {
    match e {
        IntakeError::Refused(m) => ApiError::bad_request(m),
        IntakeError::Ineligible(m) => ApiError::unprocessable(m),
        IntakeError::Conflict(m) => ApiError::conflict(m),
        IntakeError::NoCase(c) => ApiError::not_found(format!("no case {c}")),
        IntakeError::Sql(e) => e.into(),
        // The status of the first part's refusal (the message names how many more).
        e @ IntakeError::Parts { .. } => {
            let message = e.to_string();
            match e {
                IntakeError::Parts { error, .. } => {
                    ApiError::new(intake_error(*error).status, message)
                }
                _ => ApiError::bad_request(message),
            }
        }
        other => ApiError::internal("the upload could not be stored", other),
    }
}

/// The case uploaded to, when the caller may upload to it (checked before any of the body is
/// read: a caller who may not upload does not get the server to hold up to the upload limit).
async fn admit(server: &Server, caller: &Caller, target: &Target) -> Result<String, ApiError> {
    let Some(case) = target.case.clone() else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "upload studies to a case: POST /cases/{case}/dicomweb/studies",
        ));
    };
    caller.require(&[Role::Coordinator])?;
    super::scope(&server.db, caller, target).await?;
    Ok(case)
}

/// The boundary of an upload whose media type is what STOW-RS takes (415 or 400 otherwise).
fn boundary_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = MediaType::parse(content_type);
    if media.essence != "multipart/related" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "STOW-RS takes multipart/related; type=\"application/dicom\"",
        ));
    }
    if let Some(t) = media.param("type")
        && !t.eq_ignore_ascii_case("application/dicom")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("only application/dicom parts are accepted, not {t}"),
        ));
    }
    let boundary = media
        .param("boundary")
        .ok_or_else(|| ApiError::bad_request("multipart/related without a boundary"))?;
    Ok(boundary.to_string())
}

/// An upload's parts, spooled to files in `spool` as the body arrives: at most the server's
/// upload limit in all (413), every part application/dicom (415), the body whole multipart
/// (400). On a refusal, whether the body was read to its end.
async fn receive(
    server: &Server,
    headers: &HeaderMap,
    body: &mut axum::body::Body,
    spool: &std::path::Path,
) -> Result<Vec<Offered>, (ApiError, bool)> {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let unread = |e: ApiError| (e, false);
    let boundary = boundary_of(headers).map_err(unread)?;
    let mut reader = PartsReader::new(&boundary).map_err(|m| unread(ApiError::bad_request(m)))?;
    let mut offered: Vec<Offered> = Vec::new();
    // Each part through a buffer of 1 MiB: a body arrives in frames of a few KiB, and each
    // write to a tokio file is a trip to a blocking thread.
    let mut file: Option<tokio::io::BufWriter<tokio::fs::File>> = None;
    let mut received = 0usize;
    let no_room =
        |e: std::io::Error| unread(ApiError::internal("no room to receive the upload", e));
    // What a chunk settled, owned (the files are written after the reader lets go of it).
    enum Settled {
        Start(String),
        Content(Vec<u8>),
        End,
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            unread(ApiError::bad_request(format!(
                "the upload could not be read: {e}"
            )))
        })?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        received = received.saturating_add(chunk.len());
        if received > server.max_upload_bytes {
            return Err(unread(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the upload is larger than this server accepts ({} bytes); send the study in several requests",
                    server.max_upload_bytes
                ),
            )));
        }
        let mut settled = Vec::new();
        reader
            .feed(chunk, &mut |event| {
                settled.push(match event {
                    PartEvent::Start { content_type } => Settled::Start(content_type.to_string()),
                    PartEvent::Content(bytes) => Settled::Content(bytes.to_vec()),
                    PartEvent::End => Settled::End,
                });
                Ok::<(), std::convert::Infallible>(())
            })
            .map_err(|e| match e {
                case_protocol::multipart::PartsError::Body(m) => unread(ApiError::bad_request(m)),
                case_protocol::multipart::PartsError::Handler(never) => match never {},
            })?;
        for s in settled {
            match s {
                Settled::Start(content_type) => {
                    let t = MediaType::parse(&content_type);
                    if !content_type.is_empty() && t.essence != "application/dicom" {
                        return Err(unread(ApiError::new(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            format!(
                                "part {} is {}, not application/dicom",
                                offered.len() + 1,
                                t.essence
                            ),
                        )));
                    }
                    let path = spool.join(format!("part-{:05}.dcm", offered.len() + 1));
                    let created = tokio::fs::File::create(&path).await.map_err(no_room)?;
                    file = Some(tokio::io::BufWriter::with_capacity(1 << 20, created));
                    offered.push(Offered {
                        label: format!("part {}", offered.len() + 1),
                        path,
                    });
                }
                Settled::Content(bytes) => {
                    if let Some(f) = file.as_mut() {
                        f.write_all(&bytes).await.map_err(no_room)?;
                    }
                }
                Settled::End => {
                    if let Some(mut f) = file.take() {
                        f.flush().await.map_err(no_room)?;
                    }
                }
            }
        }
    }
    reader
        .finish()
        .map_err(|m| (ApiError::bad_request(m), true))?;
    Ok(offered)
}

/// An upload refused before intake read it (the caller may not upload there, no case, too
/// large, not multipart/related of DICOM, malformed) is audited as one: an attempt to put
/// studies into a case leaves a trace whatever stopped it. The row names the case only where
/// one exists (a typed id may be anything), and says why by its status alone.
async fn refused_early(server: &Server, caller: &Caller, case: Option<&str>, e: &ApiError) {
    // The server's own failures are not refusals.
    if !e.status.is_client_error() {
        return;
    }
    let why = match e.status {
        StatusCode::FORBIDDEN => "the caller may not upload",
        StatusCode::NOT_FOUND => "no such case for this caller",
        StatusCode::METHOD_NOT_ALLOWED => "no case named",
        StatusCode::PAYLOAD_TOO_LARGE => "larger than the upload limit",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "not multipart/related of application/dicom",
        StatusCode::BAD_REQUEST => "a malformed upload",
        _ => "refused",
    };
    let case = crate::api::existing_case(&server.db, case).await;
    // The refusal goes to the client whatever: a failed audit write is logged, not answered
    // instead of it (the rest of the body must still be drained or the connection closed).
    if let Err(e) = caller
        .audit(
            &server.db,
            "dicomweb_store_refused",
            case.as_deref(),
            &format!("{} before intake: {why}", e.status.as_u16()),
        )
        .await
    {
        tracing::error!("audit of a refused upload failed: {}", e.message);
    }
}

/// The SOP Class and Instance UIDs of an offered part, as far as it can be read.
fn instance_ids(path: &std::path::Path) -> (Option<String>, Option<String>) {
    use imaging::header::FileKind;
    match imaging::header::read_header(path) {
        Ok(FileKind::Image(h)) => (Some(h.sop_class_uid), Some(h.sop_instance_uid)),
        Ok(FileKind::NonImage { sop_class_uid }) => (Some(sop_class_uid), None),
        Ok(FileKind::Dicomdir) | Err(_) => (None, None),
    }
}

/// The answer to an upload intake refused (PS3.18 10.5.3): 409 Conflict (no instance
/// stored, for reasons of the instances) and a Store Instances Response whose Failed SOP
/// Sequence holds every part, as nothing of the upload is stored: the parts at fault (`faults`, by index) with their reasons, the others with 0x0110
/// (not stored because of them; every part, when the refusal is of the upload as a whole).
/// Why, in words, goes in a Warning header (299, PS3.18 8.10.3), as a DICOM JSON body has no
/// place for it.
fn refused(
    e: &ApiError,
    ids: &[(Option<String>, Option<String>)],
    faults: &[(usize, FailureReason)],
) -> Response {
    let uid = |v: &Option<String>| match v {
        Some(v) if !v.is_empty() => json!({"vr": "UI", "Value": [v]}),
        _ => json!({"vr": "UI"}),
    };
    let failed: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, (class, instance))| {
            let reason = faults
                .iter()
                .find(|(at, _)| *at == i)
                .map_or(FailureReason::ProcessingFailure, |(_, r)| *r);
            json!({
                "00081150": uid(class),
                "00081155": uid(instance),
                "00081197": {"vr": "US", "Value": [reason.code()]},
            })
        })
        .collect();
    let mut response = (
        StatusCode::CONFLICT,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        Json(json!({ "00081198": {"vr": "SQ", "Value": failed} })),
    )
        .into_response();
    response
        .headers_mut()
        .append(header::WARNING, super::warning(&e.message));
    response
}

/// Read `body` to its end and drop it; false when it is longer than `limit` or broken.
async fn discard(body: axum::body::Body, limit: usize) -> bool {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return false;
        };
        if let Some(data) = frame.data_ref() {
            read = read.saturating_add(data.len());
            if read > limit {
                return false;
            }
        }
    }
    true
}

/// `e` as an answer after which the connection is closed (the rest of the request body,
/// unread, is not taken for the next request).
fn closing(e: ApiError) -> Response {
    let mut response = e.into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

pub(super) async fn store(
    State(server): State<Server>,
    caller: Caller,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let target = Target::from_params(&params);
    let mut body = body;
    // Refused before (or while) the body was read: the rest is read and dropped piece by
    // piece (no memory held), so that the client, still sending, gets this answer; beyond
    // twice the upload limit (64 MiB at least) or `stow_drain` the connection is closed
    // instead.
    let answer_unread = |e: ApiError, body: axum::body::Body| {
        let server = server.clone();
        async move {
            let drain = server.max_upload_bytes.saturating_mul(2).max(64 << 20);
            let drained = tokio::time::timeout(server.stow_drain, discard(body, drain)).await;
            match drained {
                Ok(true) => e.into_response(),
                Ok(false) | Err(_) => closing(e),
            }
        }
    };
    let case = match admit(&server, &caller, &target).await {
        Ok(case) => case,
        Err(e) => {
            refused_early(&server, &caller, target.case.as_deref(), &e).await;
            return Ok(answer_unread(e, body).await);
        }
    };
    // Spool the parts to files in a private folder (removed when this request ends).
    let spool = tempfile::Builder::new()
        .prefix("overread-stow-")
        .tempdir()
        .map_err(|e| ApiError::internal("no room to receive the upload", e))?;
    let offered = match receive(&server, &headers, &mut body, spool.path()).await {
        Ok(offered) => offered,
        Err((e, read_whole)) => {
            refused_early(&server, &caller, Some(&case), &e).await;
            return Ok(if read_whole {
                e.into_response()
            } else if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                // Past the limit already: not read further.
                closing(e)
            } else {
                answer_unread(e, body).await
            });
        }
    };
    let count = offered.len();
    let offered_paths: Vec<_> = offered.iter().map(|o| o.path.clone()).collect();
    let result = ingest(
        &server.db,
        &server.store,
        &server.rules,
        &case,
        target.study.as_deref(),
        offered,
    )
    .await;
    let stored = match result {
        Ok(s) => s,
        Err(e) => {
            let faults = match &e {
                IntakeError::Parts { failed, .. } => failed.clone(),
                _ => Vec::new(),
            };
            // Refused for what was sent (the store response), or not (the case gone: 404).
            let of_the_instances = matches!(
                e,
                IntakeError::Parts { .. }
                    | IntakeError::Refused(_)
                    | IntakeError::Ineligible(_)
                    | IntakeError::Conflict(_)
            );
            let e = intake_error(e);
            // The refusal goes to the client whatever: a failed audit write is logged.
            if let Err(audit) = caller
                .audit(
                    &server.db,
                    "dicomweb_store_refused",
                    Some(&case),
                    &format!("{count} parts: {}", e.message),
                )
                .await
            {
                tracing::error!("audit of a refused upload failed: {}", audit.message);
            }
            if !of_the_instances {
                return Err(e);
            }
            let paths: Vec<_> = offered_paths;
            let ids = tokio::task::spawn_blocking(move || {
                paths.iter().map(|p| instance_ids(p)).collect::<Vec<_>>()
            })
            .await
            .map_err(|e| ApiError::internal("a worker thread failed", e))?;
            drop(spool);
            return Ok(refused(&e, &ids, &faults));
        }
    };
    drop(spool);
    let new = stored.iter().filter(|s| s.new).count();
    let studies: std::collections::BTreeSet<&str> =
        stored.iter().map(|s| s.study_uid.as_str()).collect();
    caller
        .audit(
            &server.db,
            "dicomweb_store",
            Some(&case),
            &format!(
                "{} instances ({new} new) in study {}",
                stored.len(),
                studies.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
        .await?;
    let base = root(&server, &headers, &target);
    let referenced: Vec<_> = stored
        .iter()
        .map(|s| {
            json!({
                "00081150": {"vr": "UI", "Value": [s.sop_class_uid]},
                "00081155": {"vr": "UI", "Value": [s.sop_uid]},
                "00081190": {"vr": "UR", "Value": [format!(
                    "{base}/studies/{}/series/{}/instances/{}", s.study_uid, s.series_uid, s.sop_uid
                )]},
            })
        })
        .collect();
    let mut response = json!({ "00081199": {"vr": "SQ", "Value": referenced} });
    if let Some(first) = stored.first() {
        response["00081190"] =
            json!({"vr": "UR", "Value": [format!("{base}/studies/{}", first.study_uid)]});
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        Json(response),
    )
        .into_response())
}
