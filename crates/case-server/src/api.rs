//! The HTTP API. Every request but `/login` carries `Authorization: Bearer TOKEN`; every read or
//! write of patient data leaves an audit row (who, what, which case, when, from where).
//!
//! | endpoint | who |
//! | --- | --- |
//! | `POST /login` | anyone with a password (an enabled account) |
//! | `POST /logout` | anyone signed in (their own session) |
//! | `POST /users`, `POST /users/{id}/disable`, `POST /users/{id}/enable` | admins |
//! | `GET /users` | admins, coordinators |
//! | `POST /keys`, `POST /keys/{id}/revoke` | radiologists (their own keys); admins revoke any |
//! | `POST /cases`, `POST /cases/{id}/assign` | coordinators, admins |
//! | `POST /cases/{id}/status` | coordinators and admins (received -> ready), the assigned radiologist (ready -> reading) |
//! | `GET /worklist` | radiologists (their cases to read, then those they reported in the last 30 days), coordinators and admins (all open), QA (reported) |
//! | `GET /cases/{id}`, `GET /cases/{id}/reports` | the assigned radiologist, coordinators, QA, admins |
//! | `POST /cases/{id}/reports` | the assigned radiologist |
//! | `GET /cases/{id}/deliveries` | who may read the case |
//! | `GET /cases/{id}/export` (the patient copy, ZIP) | coordinators |
//! | `POST /cases/{id}/key-images` (PNG) | the assigned radiologist |
//! | `GET /audit` | admins |

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use case_protocol::{
    CaseStatus, CaseSummary, NewCase, Patient, Receipt, Referral, Report, ReportKind, Role,
    SignedReport, VerifyingKey, canonical_bytes, report_hash, unix_now, verify_report,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::Server;
use crate::auth;
use crate::db::{Backend, Db, DbError, parse_role, status_name, summary_of};
use crate::error::ApiError;
use crate::report_writer::{ReportWrite, WriteOutcome};

/// Largest request body: a report with its measurements is a few kB; 1 MiB is generous.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest key image (PNG).
pub const MAX_KEY_IMAGE_BYTES: usize = 8 << 20;

/// The whole API: the routes here, DICOMweb under `/dicomweb` and `/cases/{id}/dicomweb`
/// ([`crate::dicomweb`]).
pub fn router(server: Server) -> Router {
    let dicomweb = crate::dicomweb::routes(&server);
    // Changes audited after they commit run to their end even when the client goes away
    // (`run_to_completion`); report intake audits inside its own commit, and reads, logins
    // and exports are left to end with their client.
    let finished = || axum::middleware::from_fn(run_to_completion);
    Router::new()
        .route("/login", post(login))
        .route(
            "/users",
            post(add_user).route_layer(finished()).get(list_users),
        )
        .route(
            "/users/{id}/disable",
            post(disable_user).route_layer(finished()),
        )
        .route(
            "/users/{id}/enable",
            post(enable_user).route_layer(finished()),
        )
        .route("/logout", post(logout).route_layer(finished()))
        .route("/keys", post(add_key).route_layer(finished()))
        .route(
            "/keys/{key_id}/revoke",
            post(revoke_key).route_layer(finished()),
        )
        .route("/cases", post(create_case).route_layer(finished()))
        .route("/cases/{id}", get(read_case))
        .route("/cases/{id}/assign", post(assign).route_layer(finished()))
        .route(
            "/cases/{id}/status",
            post(set_status).route_layer(finished()),
        )
        .route("/cases/{id}/reports", post(submit_report).get(list_reports))
        .route("/cases/{id}/deliveries", get(list_deliveries))
        .route("/cases/{id}/export", get(export_case))
        .route(
            "/cases/{id}/key-images",
            post(add_key_image)
                .route_layer(finished())
                .layer(DefaultBodyLimit::max(MAX_KEY_IMAGE_BYTES)),
        )
        .route("/worklist", get(worklist))
        .route("/audit", get(audit_log))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .nest("/dicomweb", dicomweb.clone())
        .nest("/cases/{id}/dicomweb", dicomweb)
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            audit_refused_reads,
        ))
        .with_state(server)
}

/// A read refused to a known caller (a case or study they may not see is "no case" or "no
/// study", 404; a role's refusal, 403; a transfer syntax not served, 406; a malformed frame
/// list, 400) is audited, `dicomweb_refused` under DICOMweb and `read_refused` elsewhere,
/// with its status and its path (never the query: a search may name a patient), in the trail
/// of the case the path names where that case exists. Who probes for cases and studies that
/// are not theirs leaves a trace. What the caller typed in the path stays out of the trail
/// (`scrubbed_path`): a "case id" of no case is said by its length only, as is any segment
/// that is neither a UID nor a word of the API. A request without a valid session (401) is
/// not audited: it has no caller. Answers that were given are audited by their handlers,
/// uploads by STOW.
async fn audit_refused_reads(
    State(server): State<Server>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method();
    let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path(), |uri| uri.path())
        .to_string();
    let (mut parts, body) = request.into_parts();
    let bearer = Bearer::from_parts(&mut parts).await;
    let response = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    let status = response.status();
    if read
        && status.is_client_error()
        && status != StatusCode::UNAUTHORIZED
        && let Some(bearer) = bearer
        && let Ok(caller) = bearer.caller(&server.db).await
    {
        let named = path
            .strip_prefix("/cases/")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .filter(|case| !case.is_empty() && case.len() <= 64);
        let case = existing_case(&server.db, named).await;
        let action = if path.contains("/dicomweb/") {
            "dicomweb_refused"
        } else {
            "read_refused"
        };
        let detail = format!(
            "{} {}",
            status.as_u16(),
            scrubbed_path(&path, case.as_deref())
        );
        if let Err(e) = server
            .db
            .audit_cases(
                Some(&caller.id),
                action,
                &[case.as_deref()],
                caller.remote.as_deref(),
                &detail,
            )
            .await
        {
            tracing::error!("audit of a refused read failed: {e}");
        }
    }
    response
}

/// The case `id` names, where it exists: the case an audit row of a refusal goes to (an id
/// typed for no case never enters the trail). A failed lookup is logged and names none.
pub(crate) async fn existing_case(db: &Db, id: Option<&str>) -> Option<String> {
    match db.case_summary(id?).await {
        Ok(found) => found.map(|c| c.id),
        Err(e) => {
            tracing::error!("audit of a refusal: the case lookup failed: {e}");
            None
        }
    }
}

/// A request path as the audit trail may keep it: the words of the API as they are, the case
/// id where it names the case found (`case`), a UID where the API takes one (after `studies`,
/// `series` or `instances`) and it has a UID's form (digits in dot-separated components, no
/// leading zeros), a frame list after `frames`, and anything else by its length alone ("<10
/// characters>": what is typed into a path may be a record number, a birth date or a
/// name). At most 40 segments.
fn scrubbed_path(path: &str, case: Option<&str>) -> String {
    const WORDS: &[&str] = &[
        "cases",
        "reports",
        "deliveries",
        "export",
        "key-images",
        "assign",
        "status",
        "users",
        "keys",
        "worklist",
        "audit",
        "dicomweb",
        "studies",
        "series",
        "instances",
        "metadata",
        "frames",
        "rendered",
        "thumbnail",
    ];
    let uid_form = |s: &str| {
        s.len() <= 64
            && s.contains('.')
            && s.split('.').all(|c| {
                !c.is_empty()
                    && c.chars().all(|d| d.is_ascii_digit())
                    && (c == "0" || !c.starts_with('0'))
            })
    };
    let frame_list = |s: &str| {
        s.len() <= 64
            && s.split(',')
                .all(|f| !f.is_empty() && f.chars().all(|d| d.is_ascii_digit()))
    };
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<String> = segments
        .iter()
        .take(40)
        .enumerate()
        .map(|(n, segment)| {
            let before = n.checked_sub(1).and_then(|p| segments.get(p)).copied();
            let keep = segment.is_empty()
                || WORDS.contains(segment)
                || (before == Some("cases") && n == 2 && case == Some(segment))
                || (matches!(before, Some("studies" | "series" | "instances"))
                    && uid_form(segment))
                || (before == Some("frames") && frame_list(segment));
            if keep {
                segment.to_string()
            } else {
                format!("<{} characters>", segment.chars().count())
            }
        })
        .collect();
    if segments.len() > 40 {
        out.push(format!("<{} more>", segments.len() - 40));
    }
    out.join("/")
}

#[cfg(test)]
mod scrub_tests {
    use super::scrubbed_path;

    /// What is typed into a path stays out of the trail unless it is the API's own: a number
    /// in the case's place (a record number), one where a UID goes (a birth date), a name.
    #[test]
    fn typed_segments_are_kept_by_length_only() {
        let case = Some("C-0123456789ab");
        assert_eq!(
            scrubbed_path(
                "/cases/C-0123456789ab/dicomweb/studies/1.2.840.1/series/2.25.7/instances/1.3/frames/1,2",
                case
            ),
            "/cases/C-0123456789ab/dicomweb/studies/1.2.840.1/series/2.25.7/instances/1.3/frames/1,2"
        );
        assert_eq!(
            scrubbed_path("/cases/00123456/dicomweb/studies", None),
            "/cases/<8 characters>/dicomweb/studies"
        );
        assert_eq!(
            scrubbed_path("/cases/C-0123456789ab", None),
            "/cases/<14 characters>"
        );
        assert_eq!(
            scrubbed_path("/dicomweb/studies/19610301", None),
            "/dicomweb/studies/<8 characters>"
        );
        assert_eq!(
            scrubbed_path("/dicomweb/studies/1.02.3", None),
            "/dicomweb/studies/<6 characters>"
        );
        assert_eq!(
            scrubbed_path("/dicomweb/studies/DOE^JANE/metadata", None),
            "/dicomweb/studies/<8 characters>/metadata"
        );
        assert_eq!(scrubbed_path("/audit/12345", None), "/audit/<5 characters>");
    }
}

/// A request runs to its end on its own task, even when its client goes away: hyper drops a
/// handler whose connection closes, and a change committed before its audit row was written
/// would then stand unaudited (a coordinator's assignment, a status move, an upload).
pub(crate) async fn run_to_completion(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => axum::response::IntoResponse::into_response(ApiError::internal(
            "the request's task failed",
            e,
        )),
    }
}

/// The caller, from a valid unexpired bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    pub role: Role,
    pub display_name: String,
    pub remote: Option<String>,
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Db: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, ApiError> {
        let bearer = Bearer::from_request_parts(parts, state).await?;
        bearer.caller(&Db::from_ref(state)).await
    }
}

/// A bearer token's hash and the peer's address, not yet looked up: report intake looks the
/// session up in the same query as the rest of what it reads ([`intake_facts`]).
#[derive(Debug, Clone)]
pub(crate) struct Bearer {
    token_hash: String,
    remote: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Bearer, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("Authorization must be Bearer TOKEN"))?
            .trim();
        // Not a token this server could have issued: refused before anything else (report
        // intake reads its body before it looks the session up).
        if !auth::is_token_shaped(token) {
            return Err(ApiError::unauthorized(
                "unknown or expired token: log in again",
            ));
        }
        Ok(Bearer {
            token_hash: auth::token_hash(token),
            remote: parts
                .extensions
                .get::<ConnectInfo<crate::Peer>>()
                .map(|c| c.0.0.to_string()),
        })
    }
}

impl Bearer {
    /// The request's bearer token, if it has one (not looked up).
    pub(crate) async fn from_parts(parts: &mut Parts) -> Option<Bearer> {
        <Bearer as FromRequestParts<()>>::from_request_parts(parts, &())
            .await
            .ok()
    }

    pub(crate) async fn caller(self, db: &Db) -> Result<Caller, ApiError> {
        let row = sqlx::query(
            "SELECT users.id AS caller_id, users.role AS caller_role,
                    users.display_name AS caller_name, sessions.expires_unix AS caller_expires
             FROM sessions JOIN users ON users.id = sessions.user_id
             WHERE sessions.token_hash = $1 AND users.disabled_at IS NULL",
        )
        .bind(&self.token_hash)
        .fetch_optional(&db.pool)
        .await?;
        self.caller_from(row.as_ref())
    }

    /// The caller from a row with `caller_id`, `caller_role`, `caller_name` and
    /// `caller_expires` (all NULL, or no row: no such session).
    fn caller_from(self, row: Option<&sqlx::any::AnyRow>) -> Result<Caller, ApiError> {
        let unknown = || ApiError::unauthorized("unknown or expired token: log in again");
        let row = row.ok_or_else(unknown)?;
        let (Some(id), Some(role), Some(display_name), Some(expires)) = (
            row.get::<Option<String>, _>("caller_id"),
            row.get::<Option<String>, _>("caller_role"),
            row.get::<Option<String>, _>("caller_name"),
            row.get::<Option<i64>, _>("caller_expires"),
        ) else {
            return Err(unknown());
        };
        if expires <= unix_now() {
            return Err(unknown());
        }
        let role =
            parse_role(&role).ok_or_else(|| ApiError::forbidden("account has no valid role"))?;
        Ok(Caller {
            id,
            role,
            display_name,
            remote: self.remote,
        })
    }
}

impl Caller {
    pub(crate) fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a {:?} may not do this",
                self.role
            )))
        }
    }

    pub(crate) async fn audit(
        &self,
        db: &Db,
        action: &str,
        case_id: Option<&str>,
        detail: &str,
    ) -> Result<(), ApiError> {
        self.audit_cases(db, action, &[case_id], detail).await
    }

    /// One audit row for each of `case_ids` (see [`Db::audit_cases`]).
    pub(crate) async fn audit_cases(
        &self,
        db: &Db,
        action: &str,
        case_ids: &[Option<&str>],
        detail: &str,
    ) -> Result<(), ApiError> {
        db.audit_cases(
            Some(&self.id),
            action,
            case_ids,
            self.remote.as_deref(),
            detail,
        )
        .await?;
        Ok(())
    }
}

/// The case's report deliveries (queued, retrying with the last error, sent with where and
/// the sha256 of the document).
async fn list_deliveries(
    State(db): State<Db>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::delivery::DeliveryStatus>>, ApiError> {
    visible_case(&db, &caller, &id).await?;
    let list = crate::delivery::case_deliveries(&db, &id).await?;
    caller.audit(&db, "deliveries_read", Some(&id), "").await?;
    Ok(Json(list))
}

/// The patient copy of a case as a ZIP (studies with a DICOMDIR, reports as PDF and signed
/// JSON), written to a private temporary file and streamed. Coordinators; audited.
async fn export_case(
    State(server): State<Server>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    caller.require(&[Role::Coordinator])?;
    visible_case(&server.db, &caller, &id).await?;
    let file =
        tempfile::tempfile().map_err(|e| ApiError::internal("no room to write the archive", e))?;
    let writer = file
        .try_clone()
        .map_err(|e| ApiError::internal("no room to write the archive", e))?;
    let summary = crate::export::patient_copy(&server.db, &server.store, &id, writer)
        .await
        .map_err(|e| match e {
            crate::export::ExportError::NoCase(_) => ApiError::not_found(e.to_string()),
            crate::export::ExportError::Empty(_) => ApiError::conflict(e.to_string()),
            other => ApiError::internal("the archive could not be written", other),
        })?;
    caller
        .audit(
            &server.db,
            "case_export",
            Some(&id),
            &format!(
                "patient copy: {} studies, {} instances, {} reports",
                summary.studies, summary.instances, summary.reports
            ),
        )
        .await?;
    let mut file = tokio::fs::File::from_std(file);
    use tokio::io::AsyncSeekExt;
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|e| ApiError::internal("the archive could not be read", e))?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        StatusCode::OK,
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/zip".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"case-{id}.zip\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct KeyImageQuery {
    #[serde(default)]
    caption: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KeyImageAdded {
    pub key: String,
}

/// A key image for the report (a PNG, e.g. from `overread render`): the assigned radiologist,
/// before the final report is signed.
async fn add_key_image(
    State(server): State<Server>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<KeyImageQuery>,
    png: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<KeyImageAdded>), ApiError> {
    caller.require(&[Role::Radiologist])?;
    let case = visible_case(&server.db, &caller, &id).await?;
    if matches!(case.status, CaseStatus::Reported | CaseStatus::Delivered) {
        return Err(ApiError::conflict(format!(
            "case {id} is {}: key images are added before the report is signed",
            status_name(case.status)
        )));
    }
    let png = png.map_err(|e| ApiError::new(e.status(), format!("key image: {e}")))?;
    if q.caption.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "a caption is at most 200 characters",
        ));
    }
    // Printed under the image in the report's PDF, as given.
    case_protocol::printable::first_unprintable("the caption", &q.caption, false)
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    use crate::delivery::{KeyImageError, add_key_image};
    let key = add_key_image(
        &server.db,
        &server.store,
        &id,
        &caller.id,
        &q.caption,
        png.to_vec(),
    )
    .await
    .map_err(|e| match e {
        KeyImageError::NotPng(m) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        KeyImageError::TooMany | KeyImageError::Reported(_) => ApiError::conflict(e.to_string()),
        // Assigned to someone else since the check above: no longer this caller's case.
        KeyImageError::NotAssigned => ApiError::not_found(format!("no case {id}")),
        KeyImageError::Sql(e) => e.into(),
        KeyImageError::Store(e) => ApiError::internal("the key image could not be stored", e),
    })?;
    caller
        .audit(&server.db, "key_image_add", Some(&id), &key)
        .await?;
    Ok((StatusCode::CREATED, Json(KeyImageAdded { key })))
}

/// A JSON body, or a clear 4xx naming what is wrong with it.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(t)| t).map_err(|e| {
        let status = e.status();
        ApiError::new(
            if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            },
            sanitize_json_error(&e.body_text()),
        )
    })
}

/// A JSON error without the offending value: serde repeats values ("invalid type: integer
/// `12345678`"), and a value may be patient identity. Field names (unknown or missing) and the
/// position are kept.
pub fn sanitize_json_error(message: &str) -> String {
    if message.contains("unknown field") || message.contains("missing field") {
        return message.to_string();
    }
    let position = message
        .rfind(" at line ")
        .map(|i| message[i..].to_string())
        .unwrap_or_default();
    let kind = if message.contains("syntax") || message.contains("EOF") {
        "the body is not valid JSON"
    } else if message.contains("Content-Type") {
        "expected Content-Type: application/json"
    } else {
        "a value has the wrong type or is out of range"
    };
    format!("{kind}{position}")
}

/// Stored JSON that no longer parses: our fault, and its text may hold patient data.
fn stored_data_error<E: std::fmt::Display>(e: E) -> ApiError {
    tracing::error!(
        "stored record unreadable: {}",
        sanitize_json_error(&e.to_string())
    );
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "a stored record is unreadable",
    )
}

fn db_error(e: DbError) -> ApiError {
    match e {
        DbError::Invalid(m) => ApiError::conflict(m),
        DbError::Unprintable(m) => ApiError::unprocessable(m),
        DbError::Sql(e) => e.into(),
        DbError::Migrate(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: String,
    pub role: Role,
}

/// The peer's address, when the server was started with connect info.
#[derive(Debug)]
pub struct RemoteAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RemoteAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<RemoteAddr, Self::Rejection> {
        Ok(RemoteAddr(
            parts
                .extensions
                .get::<ConnectInfo<crate::Peer>>()
                .map(|c| c.0.0.to_string()),
        ))
    }
}

async fn login(
    State(db): State<Db>,
    RemoteAddr(remote): RemoteAddr,
    payload: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let req = body(payload)?;
    let row = sqlx::query(
        "SELECT role, password_hash,
                CAST(CASE WHEN disabled_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS disabled
         FROM users WHERE id = $1",
    )
    .bind(&req.user)
    .fetch_optional(&db.pool)
    .await?;
    let disabled = row
        .as_ref()
        .is_some_and(|r| r.get::<i64, _>("disabled") != 0);
    let phc = row.as_ref().map(|r| r.get::<String, _>("password_hash"));
    let known = phc.is_some();
    // Checked for a disabled account too: the answer takes as long and says the same.
    let ok = auth::check_password(req.password.clone(), phc).await && !disabled;
    let Some(row) = row.filter(|_| ok) else {
        // The attempted id is kept only when it names an account: whatever else was typed in
        // the user field (a password, a megabyte) never enters the append-only trail.
        let detail = if disabled {
            format!("{} (disabled)", req.user)
        } else if known {
            req.user.clone()
        } else {
            format!("unknown user ({} characters)", req.user.chars().count())
        };
        db.audit(None, "login_failed", None, remote.as_deref(), &detail)
            .await?;
        return Err(ApiError::unauthorized("wrong user or password"));
    };
    let role = parse_role(row.get::<&str, _>("role"))
        .ok_or_else(|| ApiError::forbidden("account has no valid role"))?;
    let token = auth::new_token();
    let expires = unix_now() + auth::TOKEN_TTL_SECS;
    if !db
        .start_session(&auth::token_hash(&token), &req.user, expires)
        .await?
    {
        // Disabled while its password was checked.
        db.audit(
            None,
            "login_failed",
            None,
            remote.as_deref(),
            &format!("{} (disabled)", req.user),
        )
        .await?;
        return Err(ApiError::unauthorized("wrong user or password"));
    }
    db.audit(Some(&req.user), "login", None, remote.as_deref(), "")
        .await?;
    Ok(Json(LoginResponse {
        token,
        expires_at: case_protocol::rfc3339_utc(expires),
        role,
    }))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub id: String,
    pub role: Role,
    pub display_name: String,
    /// What a radiologist reads (e.g. `["neuro", "msk"]`); empty for other roles.
    #[serde(default)]
    pub subspecialties: Vec<String>,
    pub password: String,
}

/// An account as admins and coordinators see it (never the password hash).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct UserSummary {
    pub id: String,
    pub role: Role,
    pub display_name: String,
    pub subspecialties: Vec<String>,
    pub created_at: String,
    /// When an admin disabled the account (it cannot log in).
    #[serde(default)]
    pub disabled_at: Option<String>,
    pub keys: Vec<KeySummary>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct KeySummary {
    pub key_id: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Admins add accounts (as `overread-server user add` does).
async fn add_user(
    State(db): State<Db>,
    caller: Caller,
    payload: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserSummary>), ApiError> {
    caller.require(&[Role::Admin])?;
    let new = body(payload)?;
    let valid_id = !new.id.is_empty()
        && new.id.len() <= 64
        && new
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid_id {
        return Err(ApiError::unprocessable(
            "a user id is 1-64 characters of letters, digits, '.', '_' or '-'",
        ));
    }
    if new.role == Role::Radiologist && new.subspecialties.is_empty() {
        return Err(ApiError::unprocessable(
            "a radiologist needs at least one subspecialty",
        ));
    }
    if new
        .subspecialties
        .iter()
        .any(|s| s.trim().is_empty() || s.contains(','))
    {
        return Err(ApiError::unprocessable(
            "a subspecialty is a non-empty name without commas",
        ));
    }
    if users(&db, Some(&new.id))
        .await?
        .into_iter()
        .next()
        .is_some()
    {
        return Err(ApiError::conflict(format!("user {} exists", new.id)));
    }
    match db
        .add_user(
            &new.id,
            new.role,
            &new.display_name,
            &new.subspecialties,
            &new.password,
        )
        .await
    {
        Err(DbError::Sql(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            return Err(ApiError::conflict(format!("user {} exists", new.id)));
        }
        Err(DbError::Invalid(m)) => return Err(ApiError::unprocessable(m)),
        other => other.map_err(db_error)?,
    }
    caller.audit(&db, "user_add", None, &new.id).await?;
    let user = users(&db, Some(&new.id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "user not stored"))?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Admins disable an account (as `overread-server user disable` does): no login, its sessions
/// end at once. Its signed reports stay verifiable.
async fn disable_user(
    State(db): State<Db>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    if !db.disable_user(&id).await.map_err(db_error)? {
        return Err(ApiError::not_found(format!("no enabled account {id}")));
    }
    caller.audit(&db, "user_disable", None, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Admins enable a disabled account again: it logs in with its password; no session comes
/// back.
async fn enable_user(
    State(db): State<Db>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    if !db.enable_user(&id).await.map_err(db_error)? {
        return Err(ApiError::not_found(format!("no disabled account {id}")));
    }
    caller.audit(&db, "user_enable", None, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's session ends: its token stops working.
async fn logout(State(db): State<Db>, bearer: Bearer) -> Result<StatusCode, ApiError> {
    let caller = bearer.clone().caller(&db).await?;
    {
        let _turn = db.write_turn().await;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&bearer.token_hash)
            .execute(&db.pool)
            .await?;
    }
    caller.audit(&db, "logout", None, "").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Admins and coordinators (who assign cases by subspecialty) list the accounts.
async fn list_users(
    State(db): State<Db>,
    caller: Caller,
) -> Result<Json<Vec<UserSummary>>, ApiError> {
    caller.require(&[Role::Admin, Role::Coordinator])?;
    let list = users(&db, None).await?;
    caller
        .audit(&db, "users_read", None, &format!("{} users", list.len()))
        .await?;
    Ok(Json(list))
}

/// Every account, or the one named, with its keys.
async fn users(db: &Db, only: Option<&str>) -> Result<Vec<UserSummary>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, role, display_name, subspecialties, created_at, disabled_at FROM users
         WHERE $1 IS NULL OR id = $1 ORDER BY id",
    )
    .bind(only)
    .fetch_all(&db.pool)
    .await?;
    let keys = sqlx::query(
        "SELECT user_id, key_id, created_at, revoked_at FROM signing_keys
         WHERE $1 IS NULL OR user_id = $1 ORDER BY created_at, key_id",
    )
    .bind(only)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.get("id");
        let role = parse_role(r.get::<&str, _>("role"))
            .ok_or_else(|| stored_data_error(format!("user {id} has no valid role")))?;
        let subs: String = r.get("subspecialties");
        out.push(UserSummary {
            keys: keys
                .iter()
                .filter(|k| k.get::<&str, _>("user_id") == id)
                .map(|k| KeySummary {
                    key_id: k.get("key_id"),
                    created_at: k.get("created_at"),
                    revoked_at: k.get("revoked_at"),
                })
                .collect(),
            id,
            role,
            display_name: r.get("display_name"),
            subspecialties: subs
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created_at: r.get("created_at"),
            disabled_at: r.get("disabled_at"),
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// The 32-byte ed25519 public key, base64.
    pub public_key: String,
}

async fn add_key(
    State(db): State<Db>,
    caller: Caller,
    payload: Result<Json<KeyRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require(&[Role::Radiologist])?;
    let req = body(payload)?;
    VerifyingKey::from_base64(&req.public_key)
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let key_id = db
        .add_key(&caller.id, &req.public_key)
        .await
        .map_err(db_error)?;
    caller.audit(&db, "key_add", None, &key_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "key_id": key_id })),
    ))
}

async fn revoke_key(
    State(db): State<Db>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let owner: Option<String> = sqlx::query("SELECT user_id FROM signing_keys WHERE key_id = $1")
        .bind(&key_id)
        .fetch_optional(&db.pool)
        .await?
        .map(|r| r.get("user_id"));
    let owner = owner.ok_or_else(|| ApiError::not_found(format!("no key {key_id}")))?;
    if owner != caller.id && caller.role != Role::Admin {
        return Err(ApiError::forbidden(
            "only the key's owner or an admin may revoke it",
        ));
    }
    let revoked = db.revoke_key(&key_id).await.map_err(db_error)?;
    caller.audit(&db, "key_revoke", None, &key_id).await?;
    Ok(Json(
        serde_json::json!({ "key_id": key_id, "revoked": revoked }),
    ))
}

async fn create_case(
    State(db): State<Db>,
    caller: Caller,
    payload: Result<Json<NewCase>, JsonRejection>,
) -> Result<(StatusCode, Json<CaseSummary>), ApiError> {
    caller.require(&[Role::Coordinator, Role::Admin])?;
    let new = body(payload)?;
    if new.subspecialty.trim().is_empty() {
        return Err(ApiError::unprocessable("subspecialty is empty"));
    }
    let case = db.create_case(&new).await.map_err(db_error)?;
    caller.audit(&db, "case_create", Some(&case.id), "").await?;
    Ok((StatusCode::CREATED, Json(case)))
}

/// A case the caller may see (assigned radiologist, coordinator, QA, admin).
pub(crate) async fn visible_case(
    db: &Db,
    caller: &Caller,
    id: &str,
) -> Result<CaseSummary, ApiError> {
    let case = db.case_summary(id).await.map_err(db_error)?;
    shown_to(caller, id, case)
}

/// `case` if the caller may see it; otherwise (absent, or not theirs to see) "no case": another
/// radiologist's case does not exist for this caller, so the answer is not "forbidden".
fn shown_to(caller: &Caller, id: &str, case: Option<CaseSummary>) -> Result<CaseSummary, ApiError> {
    let visible = |case: &CaseSummary| match caller.role {
        Role::Radiologist => case.assigned_to.as_deref() == Some(&caller.id),
        // QA compares reported cases only.
        Role::QaReviewer => matches!(case.status, CaseStatus::Reported | CaseStatus::Delivered),
        Role::Coordinator | Role::Admin => true,
    };
    case.filter(visible)
        .ok_or_else(|| ApiError::not_found(format!("no case {id}")))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CaseDetail {
    pub summary: CaseSummary,
    pub patient: Patient,
    pub referral: Referral,
}

async fn read_case(
    State(db): State<Db>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    let summary = visible_case(&db, &caller, &id).await?;
    let row = sqlx::query("SELECT patient_json, referral_json FROM cases WHERE id = $1")
        .bind(&id)
        .fetch_one(&db.pool)
        .await?;
    let patient: Patient =
        serde_json::from_str(row.get::<&str, _>("patient_json")).map_err(stored_data_error)?;
    let referral: Referral =
        serde_json::from_str(row.get::<&str, _>("referral_json")).map_err(stored_data_error)?;
    caller.audit(&db, "case_read", Some(&id), "").await?;
    Ok(Json(CaseDetail {
        summary,
        patient,
        referral,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub radiologist: String,
}

async fn assign(
    State(db): State<Db>,
    caller: Caller,
    Path(id): Path<String>,
    payload: Result<Json<AssignRequest>, JsonRejection>,
) -> Result<Json<CaseSummary>, ApiError> {
    caller.require(&[Role::Coordinator, Role::Admin])?;
    let req = body(payload)?;
    db.case_summary(&id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::not_found(format!("no case {id}")))?;
    let case = db.assign(&id, &req.radiologist).await.map_err(db_error)?;
    caller
        .audit(&db, "case_assign", Some(&id), &req.radiologist)
        .await?;
    Ok(Json(case))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub status: CaseStatus,
}

async fn set_status(
    State(db): State<Db>,
    caller: Caller,
    Path(id): Path<String>,
    payload: Result<Json<StatusRequest>, JsonRejection>,
) -> Result<Json<CaseSummary>, ApiError> {
    let req = body(payload)?;
    let case = visible_case(&db, &caller, &id).await?;
    let allowed = match req.status {
        CaseStatus::Ready => matches!(caller.role, Role::Coordinator | Role::Admin),
        CaseStatus::Reading => {
            caller.role == Role::Radiologist && case.assigned_to.as_deref() == Some(&caller.id)
        }
        // Reported comes with a signed report; delivered with the delivery.
        CaseStatus::Received | CaseStatus::Reported | CaseStatus::Delivered => false,
    };
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "a {:?} may not set a case to {}",
            caller.role,
            status_name(req.status)
        )));
    }
    if req.status == CaseStatus::Reading && case.assigned_to.is_none() {
        return Err(ApiError::conflict("the case is not assigned"));
    }
    let case = db.set_status(&id, req.status).await.map_err(db_error)?;
    caller
        .audit(&db, "case_status", Some(&id), status_name(req.status))
        .await?;
    Ok(Json(case))
}

/// How long a radiologist's reported case stays on their worklist (to write an addendum).
pub const SIGNED_ON_WORKLIST_DAYS: i64 = 30;

async fn worklist(
    State(db): State<Db>,
    caller: Caller,
) -> Result<Json<Vec<CaseSummary>>, ApiError> {
    let rows = match caller.role {
        // Their cases to read, by priority and due date, then the cases whose final report
        // came in the last [`SIGNED_ON_WORKLIST_DAYS`] (an addendum is written days later),
        // latest first.
        Role::Radiologist => {
            let mut rows = sqlx::query(
                "SELECT id, status, priority, subspecialty, due_at, assigned_to, created_at
                 FROM cases WHERE assigned_to = $1 AND status IN ('ready', 'reading')
                 ORDER BY priority_rank, due_at IS NULL, due_at, created_at",
            )
            .bind(&caller.id)
            .fetch_all(&db.pool)
            .await?;
            let since = case_protocol::rfc3339_utc(unix_now() - SIGNED_ON_WORKLIST_DAYS * 86_400);
            rows.extend(
                // By the final report's arrival (a case has one): an addendum keeps no case.
                sqlx::query(
                    "SELECT c.id AS id, c.status AS status, c.priority AS priority,
                            c.subspecialty AS subspecialty, c.due_at AS due_at,
                            c.assigned_to AS assigned_to, c.created_at AS created_at
                     FROM cases c JOIN reports r ON r.case_id = c.id AND r.kind = 'final'
                     WHERE c.assigned_to = $1 AND c.status IN ('reported', 'delivered')
                         AND r.received_at >= $2
                     ORDER BY r.received_at DESC, c.id",
                )
                .bind(&caller.id)
                .bind(since)
                .fetch_all(&db.pool)
                .await?,
            );
            rows
        }
        Role::QaReviewer => {
            sqlx::query(
                "SELECT id, status, priority, subspecialty, due_at, assigned_to, created_at
                 FROM cases WHERE status IN ('reported', 'delivered') ORDER BY created_at",
            )
            .fetch_all(&db.pool)
            .await?
        }
        Role::Coordinator | Role::Admin => {
            sqlx::query(
                "SELECT id, status, priority, subspecialty, due_at, assigned_to, created_at
                 FROM cases WHERE status != 'delivered'
                 ORDER BY priority_rank, due_at IS NULL, due_at, created_at",
            )
            .fetch_all(&db.pool)
            .await?
        }
    };
    let list: Vec<CaseSummary> = rows.iter().map(summary_of).collect();
    caller
        .audit(&db, "worklist_read", None, &format!("{} cases", list.len()))
        .await?;
    Ok(Json(list))
}

/// What report intake reads before it verifies, in one query (one round trip, not four: on
/// PostgreSQL each is a trip to another process, and under load they were a third of the
/// database's work per report).
struct IntakeFacts {
    /// The case posted to.
    case: Option<CaseSummary>,
    /// A report with the same hash, stored before: its receipt and signature.
    stored: Option<(Receipt, String)>,
    /// The signing key named.
    key: Option<KeyFacts>,
    /// For an addendum: the case of the report it amends, if that report exists.
    amended_case: Option<String>,
    /// For an addendum: when the report it amends was signed.
    amended_signed_at: Option<String>,
    /// The case's studies (Study Instance UIDs).
    case_studies: std::collections::HashSet<String>,
}

/// The signing key a report names, as registered.
struct KeyFacts {
    user: String,
    /// The public key, base64.
    public: String,
    revoked: bool,
    /// When it was registered: nothing signed before can be its signature.
    created_at: String,
}

/// The query of [`intake_facts`], with the database's string aggregate for the case's studies.
macro_rules! intake_facts_sql {
    ($aggregate:literal) => {
        concat!(
            "SELECT c.id, c.status, c.priority, c.subspecialty, c.due_at, c.assigned_to,
                c.created_at,
                prior.case_id AS stored_case, prior.received_at AS stored_at,
                prior.signed_json AS stored_json,
                k.user_id AS key_user, k.public_key AS public_key, k.created_at AS key_created,
                CAST(CASE WHEN k.revoked_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS revoked,
                amended.case_id AS amended_case, amended.signed_json AS amended_json,
                u.id AS caller_id, u.role AS caller_role, u.display_name AS caller_name,
                s.expires_unix AS caller_expires,
                (SELECT ",
            $aggregate,
            " FROM study_cases sc WHERE sc.case_id = $1) AS case_studies
         FROM (SELECT 1 AS one) AS q
         LEFT JOIN cases c ON c.id = $1
         LEFT JOIN reports prior ON prior.report_hash = $2
         LEFT JOIN signing_keys k ON k.key_id = $3
         LEFT JOIN reports amended ON amended.report_hash = $4
         LEFT JOIN sessions s ON s.token_hash = $5
         LEFT JOIN users u ON u.id = s.user_id AND u.disabled_at IS NULL"
        )
    };
}

async fn intake_facts(
    db: &Db,
    bearer: Bearer,
    case_id: &str,
    hash: &str,
    key_id: &str,
    amends: Option<&str>,
) -> Result<(Result<Caller, ApiError>, IntakeFacts), ApiError> {
    // The case's studies come along as one space-separated list (UIDs hold no spaces):
    // aggregated by each database's own function, the rest of the query the same.
    let sql = match db.backend {
        Backend::Sqlite => intake_facts_sql!("group_concat(sc.study_uid, ' ')"),
        Backend::Postgres => intake_facts_sql!("string_agg(sc.study_uid, ' ')"),
    };
    let r = sqlx::query(sql)
        .bind(case_id)
        .bind(hash)
        .bind(key_id)
        .bind(amends)
        .bind(&bearer.token_hash)
        .fetch_one(&db.pool)
        .await?;
    let stored = match (
        r.get::<Option<String>, _>("stored_case"),
        r.get::<Option<String>, _>("stored_at"),
        r.get::<Option<String>, _>("stored_json"),
    ) {
        (Some(case_id), Some(received_at), Some(json)) => {
            // Unreadable, it matches no signature: the report is verified and written as new,
            // and the writer then finds the stored copy.
            let signature = serde_json::from_str::<SignedReport>(&json)
                .map(|s| s.signature.trim().to_string())
                .unwrap_or_default();
            let receipt = Receipt {
                case_id,
                report_hash: hash.to_string(),
                received_at,
                duplicate: true,
            };
            Some((receipt, signature))
        }
        _ => None,
    };
    let key = match (
        r.get::<Option<String>, _>("key_user"),
        r.get::<Option<String>, _>("public_key"),
        r.get::<Option<String>, _>("key_created"),
    ) {
        (Some(user), Some(public), Some(created_at)) => Some(KeyFacts {
            user,
            public,
            revoked: r.get::<i64, _>("revoked") != 0,
            created_at,
        }),
        _ => None,
    };
    let facts = IntakeFacts {
        case: r
            .get::<Option<String>, _>("id")
            .is_some()
            .then(|| summary_of(&r)),
        stored,
        key,
        amended_case: r.get("amended_case"),
        amended_signed_at: r
            .get::<Option<String>, _>("amended_json")
            .and_then(|json| serde_json::from_str::<SignedReport>(&json).ok())
            .map(|s| s.report.signed_at),
        case_studies: r
            .get::<Option<String>, _>("case_studies")
            .unwrap_or_default()
            .split(' ')
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
    };
    Ok((bearer.caller_from(Some(&r)), facts))
}

async fn submit_report(
    State(server): State<Server>,
    bearer: Bearer,
    Path(id): Path<String>,
    payload: Result<Json<SignedReport>, JsonRejection>,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let db = server.db.clone();
    // The session is read in the same query as the case, the key and any stored copy
    // (`intake_facts`). A body that cannot be read or hashed has its token looked up alone, so
    // the refusals keep the order of every other endpoint: token, role, then the body.
    let signed = match body(payload) {
        Ok(signed) => signed,
        Err(e) => {
            bearer.caller(&db).await?.require(&[Role::Radiologist])?;
            return Err(e);
        }
    };
    let report = &signed.report;
    let digest = canonical_bytes(report)
        .and_then(|canonical| Ok((canonical, report_hash(report)?.0)))
        .map_err(|e| ApiError::unprocessable(e.to_string()));
    let amends = match &report.kind {
        ReportKind::Final => None,
        ReportKind::Addendum { amends } => Some(amends.as_str()),
    };
    let (caller, digest) = match digest {
        Ok((canonical, hash)) => {
            let (caller, facts) =
                intake_facts(&db, bearer, &id, &hash, &report.key_id, amends).await?;
            (caller?, Ok((canonical, hash, facts)))
        }
        Err(e) => (bearer.caller(&db).await?, Err(e)),
    };
    caller.require(&[Role::Radiologist])?;
    if report.case_id != id {
        return Err(ApiError::bad_request(format!(
            "the report is for case {}, posted to case {id}",
            report.case_id
        )));
    }
    if report.author.user_id != caller.id {
        return Err(ApiError::forbidden("the report's author is not the caller"));
    }
    let (canonical, hash, facts) = digest?;
    let case = shown_to(&caller, &id, facts.case)?;

    // A retry of a stored report (same report, same signature): the same receipt, nothing
    // stored twice. A stored report with another signature goes on to be verified (and fails).
    if let Some((receipt, signature)) = facts.stored
        && !signature.is_empty()
        && signature == signed.signature.trim()
    {
        caller.audit(&db, "report_retry", Some(&id), &hash).await?;
        return Ok((StatusCode::OK, Json(receipt)));
    }
    if caller.display_name != report.author.display_name {
        return Err(ApiError::forbidden(
            "the report's author name is not the caller's registered name",
        ));
    }

    let key = facts
        .key
        .ok_or_else(|| ApiError::unprocessable(format!("unknown signing key {}", report.key_id)))?;
    if key.user != caller.id {
        return Err(ApiError::forbidden(
            "the signing key belongs to another user",
        ));
    }
    if key.revoked {
        return Err(ApiError::unprocessable(format!(
            "signing key {} is revoked",
            report.key_id
        )));
    }
    let public = VerifyingKey::from_base64(&key.public).map_err(stored_data_error)?;
    verify_report(&signed, &public).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    // What is faxed must be what was signed: a character the PDF cannot print is refused.
    case_protocol::printable::check_report(report).map_err(|e| {
        ApiError::unprocessable(format!("the report cannot be printed as signed: {e}"))
    })?;
    case_protocol::canonical::check_new_report(report)
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    // The amended report's signing time only where it is a report of this case (the case
    // check below refuses any other): compared with another case's report, the answer told
    // whether that report exists and when it was signed.
    let amended_signed_at = facts
        .amended_signed_at
        .as_deref()
        .filter(|_| facts.amended_case.as_deref() == Some(id.as_str()));
    check_signed_at(report, &case, &key, amended_signed_at)?;
    check_studies(&id, &report.study_instance_uids, &facts.case_studies)?;

    let amends = match &report.kind {
        ReportKind::Final => {
            if case.status != CaseStatus::Reading {
                return Err(ApiError::conflict(format!(
                    "case {id} is {}: a final report needs it to be reading",
                    status_name(case.status)
                )));
            }
            None
        }
        ReportKind::Addendum { amends } => {
            if !matches!(case.status, CaseStatus::Reported | CaseStatus::Delivered) {
                return Err(ApiError::conflict(format!(
                    "case {id} is {}: an addendum needs a reported case",
                    status_name(case.status)
                )));
            }
            if facts.amended_case.as_deref() != Some(id.as_str()) {
                return Err(ApiError::unprocessable(format!(
                    "the addendum amends {amends}, which is not a report of case {id}"
                )));
            }
            Some(amends.clone())
        }
    };
    let signed_json = serde_json::to_string(&signed).map_err(stored_data_error)?;
    // Stored with the next group commit (report, case status, audit row in one transaction,
    // the checks above made again inside it); answered only once it is on disk.
    let outcome = db
        .reports
        .write(
            &db,
            ReportWrite {
                report_hash: hash.clone(),
                case_id: id.clone(),
                amends,
                author_id: caller.id.clone(),
                key_id: report.key_id.clone(),
                signed_json,
                canonical,
                remote_addr: caller.remote.clone(),
            },
        )
        .await?;
    // (A copy stored by another server on the same database meanwhile comes back as
    // `Duplicate` or `Retry`: the writer never inserts a hash twice.)
    match outcome {
        WriteOutcome::Stored(receipt) => {
            tracing::info!(case = %id, report = %hash, "report stored");
            server.nudge.wake();
            Ok((StatusCode::CREATED, Json(receipt)))
        }
        // A concurrent copy of the same report won the race: its receipt, audited as the
        // retry it is.
        WriteOutcome::Duplicate(receipt) => {
            caller.audit(&db, "report_retry", Some(&id), &hash).await?;
            Ok((StatusCode::OK, Json(receipt)))
        }
        WriteOutcome::Changed(message) => Err(ApiError::conflict(message)),
        WriteOutcome::Retry(message) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message))
        }
    }
}

/// How far a signing time may be ahead of this server's clock (workstation clocks drift).
const CLOCK_SKEW_SECS: i64 = 300;

/// A report's signing time must be possible: not ahead of this server's clock (beyond the
/// skew), not before its case was created or its signing key registered (a report dated
/// before the key that signs it claims a time the key cannot vouch for), and an addendum not
/// before the report it amends. (The form "YYYY-MM-DDTHH:MM:SSZ" is checked by the canonical
/// bytes; it sorts as it reads.)
fn check_signed_at(
    report: &Report,
    case: &CaseSummary,
    key: &KeyFacts,
    amended_signed_at: Option<&str>,
) -> Result<(), ApiError> {
    let signed = report.signed_at.as_str();
    let latest = case_protocol::rfc3339_utc(unix_now() + CLOCK_SKEW_SECS);
    if signed > latest.as_str() {
        return Err(ApiError::unprocessable(format!(
            "the report is signed at {signed}, ahead of the server's clock ({}): check the \
             workstation's clock and sign again",
            crate::db::now()
        )));
    }
    let earliest = case_protocol::parse_rfc3339_utc(&case.created_at)
        .map(|t| case_protocol::rfc3339_utc(t - CLOCK_SKEW_SECS));
    if let Some(earliest) = earliest
        && signed < earliest.as_str()
    {
        return Err(ApiError::unprocessable(format!(
            "the report is signed at {signed}, before case {} was created ({}): check the \
             workstation's clock and sign again",
            case.id, case.created_at
        )));
    }
    let key_earliest = case_protocol::parse_rfc3339_utc(&key.created_at)
        .map(|t| case_protocol::rfc3339_utc(t - CLOCK_SKEW_SECS));
    if let Some(earliest) = key_earliest
        && signed < earliest.as_str()
    {
        return Err(ApiError::unprocessable(format!(
            "the report is signed at {signed}, before its signing key {} was registered ({}): \
             check the workstation's clock and sign again",
            report.key_id, key.created_at
        )));
    }
    if let Some(base) = amended_signed_at
        && signed < base
    {
        return Err(ApiError::unprocessable(format!(
            "the addendum is signed at {signed}, before the report it amends ({base})"
        )));
    }
    Ok(())
}

/// A report names the studies it reads: at least one, each once, each a study of its case.
/// (`of_case`: read with the rest of the intake's facts, in the same query.)
fn check_studies(
    case_id: &str,
    uids: &[String],
    of_case: &std::collections::HashSet<String>,
) -> Result<(), ApiError> {
    if uids.is_empty() {
        return Err(ApiError::unprocessable("the report names no study"));
    }
    let mut seen = std::collections::HashSet::new();
    for uid in uids {
        if !of_case.contains(uid) {
            return Err(ApiError::unprocessable(format!(
                "the report names study {uid}, which is not a study of case {case_id}"
            )));
        }
        if !seen.insert(uid) {
            return Err(ApiError::unprocessable(format!(
                "the report names study {uid} twice"
            )));
        }
    }
    Ok(())
}

/// Whether a stored report is what was received, checked again from its stored bytes: the
/// signature verifies against its registered key, the key belongs to the author, the report
/// is for this case, and its canonical bytes and hash are the ones stored and receipted.
fn stored_report_holds(
    signed: &SignedReport,
    case_id: &str,
    hash: &str,
    canonical: &[u8],
    key_user: Option<&str>,
    public_key: Option<&str>,
) -> bool {
    let (Some(key_user), Some(public_key)) = (key_user, public_key) else {
        return false;
    };
    let report = &signed.report;
    report.case_id == case_id
        && key_user == report.author.user_id
        && canonical_bytes(report).is_ok_and(|c| c == canonical)
        && report_hash(report).is_ok_and(|h| h.0 == hash)
        && VerifyingKey::from_base64(public_key).is_ok_and(|k| verify_report(signed, &k).is_ok())
}

pub use case_protocol::StoredReport;

async fn list_reports(
    State(db): State<Db>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<StoredReport>>, ApiError> {
    visible_case(&db, &caller, &id).await?;
    // Arrival order: SQLite's rowid, PostgreSQL's identity column `seq`.
    let sql = match db.backend {
        Backend::Sqlite => {
            "SELECT reports.report_hash AS hash, reports.signed_json AS signed,
                    reports.canonical AS canonical, reports.received_at AS at,
                    signing_keys.public_key AS public_key, signing_keys.user_id AS key_user
             FROM reports LEFT JOIN signing_keys ON signing_keys.key_id = reports.key_id
             WHERE reports.case_id = $1 ORDER BY reports.rowid"
        }
        Backend::Postgres => {
            "SELECT reports.report_hash AS hash, reports.signed_json AS signed,
                    reports.canonical AS canonical, reports.received_at AS at,
                    signing_keys.public_key AS public_key, signing_keys.user_id AS key_user
             FROM reports LEFT JOIN signing_keys ON signing_keys.key_id = reports.key_id
             WHERE reports.case_id = $1 ORDER BY reports.seq"
        }
    };
    let rows = sqlx::query(sql).bind(&id).fetch_all(&db.pool).await?;
    let mut out = Vec::new();
    for r in rows {
        let signed: SignedReport =
            serde_json::from_str(r.get::<&str, _>("signed")).map_err(stored_data_error)?;
        let hash: String = r.get("hash");
        let verified = stored_report_holds(
            &signed,
            &id,
            &hash,
            &r.get::<Vec<u8>, _>("canonical"),
            r.get::<Option<String>, _>("key_user").as_deref(),
            r.get::<Option<String>, _>("public_key").as_deref(),
        );
        out.push(StoredReport {
            receipt: Receipt {
                case_id: id.clone(),
                report_hash: hash,
                received_at: r.get("at"),
                duplicate: false,
            },
            signed,
            verified,
        });
    }
    caller
        .audit(
            &db,
            "reports_read",
            Some(&id),
            &format!("{} reports", out.len()),
        )
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub case_id: Option<String>,
    /// Rows after this id (the last `id` of the page before).
    pub after: Option<i64>,
    /// At most this many rows ([`AUDIT_PAGE`] by default and at most).
    pub limit: Option<i64>,
}

/// The most audit rows one answer holds: the trail is append-only and only grows, so it is
/// read page by page (`?after=` the last row's id; a full page carries it in the
/// `x-audit-next-after` header). A page holds no row with a higher id than one still
/// to commit, on both databases ([`Db::audit_page`]), so paging never passes a row.
pub const AUDIT_PAGE: i64 = 5000;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditRow {
    /// Increasing: the next page starts after the last one's.
    pub id: i64,
    pub at: String,
    pub user_id: Option<String>,
    pub action: String,
    pub case_id: Option<String>,
    pub remote_addr: Option<String>,
    pub detail: String,
}

async fn audit_log(
    State(db): State<Db>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    caller.require(&[Role::Admin])?;
    // A trail asked of a case that does not exist is no trail (and its "id", which could be
    // anything typed, is never written into the trail below).
    if let Some(id) = &q.case_id {
        visible_case(&db, &caller, id).await?;
    }
    let limit = q.limit.unwrap_or(AUDIT_PAGE).clamp(1, AUDIT_PAGE);
    let after = q.after.unwrap_or(0);
    let rows = db.audit_page(q.case_id.as_deref(), after, limit).await?;
    let page: Vec<AuditRow> = rows
        .iter()
        .map(|r| AuditRow {
            id: r.get("id"),
            at: r.get("at"),
            user_id: r.get("user_id"),
            action: r.get("action"),
            case_id: r.get("case_id"),
            remote_addr: r.get("remote_addr"),
            detail: r.get("detail"),
        })
        .collect();
    // A full page says where the next one starts (a client that does not page is told
    // there is more).
    let next = (page.len() as i64 == limit)
        .then(|| page.last().map(|r| r.id.to_string()))
        .flatten();
    // Reading the trail is an access too (it names who read which case when): recorded,
    // in the case's own trail when one case's was read, before the answer goes. A page of
    // nothing but such records (or of nothing) is not: otherwise each read would write the
    // row the next one reads, and a reader paging one row at a time, or polling for what is
    // new, would never reach the end.
    if page.iter().any(|r| r.action != "audit_read") {
        caller
            .audit(
                &db,
                "audit_read",
                q.case_id.as_deref(),
                &format!("after {after}: {} rows", page.len()),
            )
            .await?;
    }
    let mut response = Json(page).into_response();
    if let Some(next) = next
        && let Ok(value) = axum::http::HeaderValue::from_str(&next)
    {
        response.headers_mut().insert(AUDIT_NEXT_HEADER, value);
    }
    Ok(response)
}

/// The response header of a full `/audit` page: the `after` of the next page.
pub const AUDIT_NEXT_HEADER: &str = "x-audit-next-after";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use case_protocol::{Author, SigningKey, sign_report};

    /// "verified" in a case's report list is every check again, not the signature alone: a
    /// stored report whose key is another user's, whose case, canonical bytes or hash differ
    /// from those stored, or whose key is gone, is not verified.
    #[test]
    fn a_stored_report_is_verified_by_key_owner_case_bytes_and_hash() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let report = Report {
            case_id: "C-1".into(),
            kind: ReportKind::Final,
            author: Author {
                user_id: "rad1".into(),
                display_name: "Dr One".into(),
            },
            key_id: key.verifying_key().id().0,
            signed_at: "2026-11-24T10:00:00Z".into(),
            study_instance_uids: vec!["1.2.3".into()],
            findings: "No nodule.".into(),
            impression: "Normal.".into(),
            measurements: vec![],
        };
        let signed = sign_report(report.clone(), &key).unwrap();
        let canonical = canonical_bytes(&report).unwrap();
        let hash = report_hash(&report).unwrap().0;
        let public = key.verifying_key().to_base64();
        let holds =
            |case: &str, hash: &str, canonical: &[u8], user: Option<&str>, k: Option<&str>| {
                stored_report_holds(&signed, case, hash, canonical, user, k)
            };
        assert!(holds("C-1", &hash, &canonical, Some("rad1"), Some(&public)));
        assert!(!holds(
            "C-2",
            &hash,
            &canonical,
            Some("rad1"),
            Some(&public)
        ));
        assert!(!holds(
            "C-1",
            &"0".repeat(64),
            &canonical,
            Some("rad1"),
            Some(&public)
        ));
        assert!(!holds(
            "C-1",
            &hash,
            b"OVERREAD-REPORT/1\n",
            Some("rad1"),
            Some(&public)
        ));
        assert!(!holds(
            "C-1",
            &hash,
            &canonical,
            Some("rad2"),
            Some(&public)
        ));
        assert!(!holds("C-1", &hash, &canonical, None, None));
        let other_public = other.verifying_key().to_base64();
        assert!(!holds(
            "C-1",
            &hash,
            &canonical,
            Some("rad1"),
            Some(&other_public)
        ));
    }
}
