//! DICOMweb (PS3.18) on the case server: STOW-RS, QIDO-RS and WADO-RS.
//!
//! Two roots serve the same resources:
//! - `/cases/{case}/dicomweb` — one case's studies; STOW-RS uploads go here (a study needs a
//!   case). A workstation opens `https://HOST/cases/C-1/dicomweb/studies/UID`.
//! - `/dicomweb` — every study the caller may see.
//!
//! Who sees what is the case rule of the API ([`crate::api`]): the assigned radiologist,
//! QA reviewers once a case is reported, coordinators and admins. A study the caller may not
//! see does not exist for them (404). Uploads are for coordinators. Every answer leaves an
//! audit row naming the case and the study, series or instance (UIDs only), and so does every
//! read refused to a signed-in caller (`dicomweb_refused`: status and path, never the query).
//!
//! | resource | methods |
//! | --- | --- |
//! | `/studies` | GET (QIDO), POST (STOW, case root only) |
//! | `/studies/{study}` | GET (WADO: every instance), POST (STOW into that study) |
//! | `/studies/{study}/metadata`, `.../series/{series}/metadata`, `.../instances/{sop}/metadata` | GET (DICOM JSON) |
//! | `/series`, `/instances`, `/studies/{study}/series`, `/studies/{study}/instances`, `.../series/{series}/instances` | GET (QIDO) |
//! | `/studies/{study}/series/{series}`, `.../instances/{sop}` | GET (WADO) |
//! | `.../instances/{sop}/frames/{list}` | GET (frames as stored, as their media type or as octet-stream where `transfer-syntax=*` takes them; compressed ones decoded for octet-stream in the default syntax; 1-based list) |
//! | `.../instances/{sop}/rendered`, `.../thumbnail`, `.../series/{series}/thumbnail`, `/studies/{study}/thumbnail` | GET (PNG) |
//!
//! Objects go as stored where the request takes their transfer syntax, and otherwise in the
//! default, Explicit VR Little Endian, where that is taken: written again byte by byte from
//! Implicit VR, inflated, or decompressed (`part10::explicit_le`). A request that insists on
//! a syntax neither is gets 406 and says which one the objects have.

mod qido;
mod render;
mod stow;
mod wado;

use std::collections::HashMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use case_protocol::Role;
use sqlx::any::AnyRow;

use crate::Server;
use crate::api::{Caller, visible_case};
use crate::db::Db;
use crate::error::ApiError;

/// The DICOMweb routes, to be nested under `/dicomweb` and `/cases/{id}/dicomweb`.
pub fn routes(server: &Server) -> Router<Server> {
    Router::new()
        // An upload runs to its end even when its client goes away (its audit row follows
        // its commit): `api::run_to_completion`.
        .route(
            "/studies",
            post(stow::store)
                .route_layer(axum::middleware::from_fn(crate::api::run_to_completion))
                .get(qido::studies),
        )
        .route(
            "/studies/{study}",
            post(stow::store)
                .route_layer(axum::middleware::from_fn(crate::api::run_to_completion))
                .get(wado::retrieve),
        )
        // All series and all instances (PS3.18 10.6.1): searched across studies.
        .route("/series", get(qido::series))
        .route("/instances", get(qido::instances))
        .route("/studies/{study}/metadata", get(wado::metadata))
        .route("/studies/{study}/thumbnail", get(render::thumbnail))
        .route("/studies/{study}/series", get(qido::series))
        .route("/studies/{study}/instances", get(qido::instances))
        .route("/studies/{study}/series/{series}", get(wado::retrieve))
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(wado::metadata),
        )
        .route(
            "/studies/{study}/series/{series}/thumbnail",
            get(render::thumbnail),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(qido::instances),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}",
            get(wado::retrieve),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/metadata",
            get(wado::metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
            get(wado::frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/rendered",
            get(render::rendered),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{sop}/thumbnail",
            get(render::thumbnail),
        )
        .layer(DefaultBodyLimit::max(server.max_upload_bytes))
}

/// What a request may see: one case, or every case visible to the caller.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    Case(String),
    Visible { role: Role, user: String },
}

/// Path parameters of a DICOMweb request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub case: Option<String>,
    pub study: Option<String>,
    pub series: Option<String>,
    pub sop: Option<String>,
}

impl Target {
    pub fn from_params(params: &HashMap<String, String>) -> Target {
        Target {
            case: params.get("id").cloned(),
            study: params.get("study").cloned(),
            series: params.get("series").cloned(),
            sop: params.get("sop").cloned(),
        }
    }

    /// "study S series SE instance I" for messages and audit rows (UIDs only).
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        if let Some(s) = &self.study {
            out.push(format!("study {s}"));
        }
        if let Some(s) = &self.series {
            out.push(format!("series {s}"));
        }
        if let Some(s) = &self.sop {
            out.push(format!("instance {s}"));
        }
        if out.is_empty() {
            "all studies".into()
        } else {
            out.join(" ")
        }
    }
}

pub(crate) async fn scope(db: &Db, caller: &Caller, target: &Target) -> Result<Scope, ApiError> {
    match &target.case {
        Some(case) => {
            visible_case(db, caller, case).await?;
            Ok(Scope::Case(case.clone()))
        }
        None => Ok(Scope::Visible {
            role: caller.role,
            user: caller.id.clone(),
        }),
    }
}

/// A bound value of a [`Sql`] statement.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// SQL built from pieces with `$N` placeholders (sqlx's query builder writes `?` for the Any
/// driver, which PostgreSQL refuses). Values are always bound, never spliced.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    binds: Vec<Bind>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            binds: Vec::new(),
        }
    }
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }
    pub fn bind(&mut self, value: Bind) -> &mut Sql {
        self.binds.push(value);
        self.text.push_str(&format!("${}", self.binds.len()));
        self
    }
    pub fn text(&mut self, value: &str) -> &mut Sql {
        self.bind(Bind::Text(value.to_string()))
    }
    /// `AND <the scope's rule>` for a query over `instances JOIN cases`.
    pub fn scope(&mut self, scope: &Scope) -> &mut Sql {
        match scope {
            Scope::Case(case) => {
                self.push(" AND instances.case_id = ");
                self.text(case);
            }
            Scope::Visible { role, user } => match role {
                Role::Radiologist => {
                    self.push(" AND cases.assigned_to = ");
                    self.text(user);
                }
                Role::QaReviewer => {
                    self.push(" AND cases.status IN ('reported', 'delivered')");
                }
                Role::Coordinator | Role::Admin => {}
            },
        }
        self
    }
    /// `AND instances.<uid columns> = ...` for the target's path.
    pub fn target(&mut self, target: &Target) -> &mut Sql {
        if let Some(s) = &target.study {
            self.push(" AND instances.study_uid = ");
            self.text(s);
        }
        if let Some(s) = &target.series {
            self.push(" AND instances.series_uid = ");
            self.text(s);
        }
        if let Some(s) = &target.sop {
            self.push(" AND instances.sop_uid = ");
            self.text(s);
        }
        self
    }
    pub async fn fetch_all(&self, db: &Db) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text.clone()));
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q.fetch_all(&db.pool).await
    }
}

/// The cases a target's rows belong to, each once (for the audit: one row per case, so every
/// case's trail shows the access): the scope's case, or every row's. No rows: one entry
/// without a case (the access is still recorded).
pub(crate) fn audit_cases(scope: &Scope, rows: &[AnyRow]) -> Vec<String> {
    use sqlx::Row;
    match scope {
        Scope::Case(c) => vec![c.clone()],
        Scope::Visible { .. } => {
            let mut cases: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get::<String, _>("case_id").ok())
                .collect();
            cases.sort();
            cases.dedup();
            cases
        }
    }
}

/// Records a DICOMweb access in the audit trail of every case its rows belong to.
pub(crate) async fn audit_access(
    server: &Server,
    caller: &Caller,
    action: &str,
    scope: &Scope,
    rows: &[AnyRow],
    detail: &str,
) -> Result<(), ApiError> {
    let cases = audit_cases(scope, rows);
    let ids: Vec<Option<&str>> = if cases.is_empty() {
        vec![None]
    } else {
        cases.iter().map(|c| Some(c.as_str())).collect()
    };
    caller.audit_cases(&server.db, action, &ids, detail).await
}

/// Whether an `Accept` header allows a multipart/related response whose parts are
/// `part_type` (or a single `part_type` body): absent, `*/*`, `multipart/related` with no
/// type or a matching type, or `part_type` itself.
pub(crate) fn accepts(headers: &HeaderMap, part_type: &str) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|range| {
        let m = case_protocol::multipart::MediaType::parse(range);
        // A range of quality 0 refuses what it names.
        if refused(&m) {
            return false;
        }
        let matches = |t: &str| {
            t == "*" || t == "*/*" || t.eq_ignore_ascii_case(part_type) || {
                let (a, _) = t.split_once('/').unwrap_or((t, ""));
                t.ends_with("/*") && part_type.starts_with(&format!("{a}/"))
            }
        };
        match m.essence.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => m.param("type").is_none_or(matches),
            other => matches(other),
        }
    })
}

/// Explicit VR Little Endian: the transfer syntax of an `application/dicom` range that names
/// none (PS3.18 8.7.3.5.2, Table 8.7.3-5).
pub(crate) const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// The transfer syntaxes an `Accept` header takes, where it limits them: every
/// `transfer-syntax=` of its ranges (PS3.18 8.7.3.5.2 offers alternatives as several ranges),
/// and where a range (or the absent header) names none, the default, Explicit VR Little Endian
/// (`default`); ranges of quality 0 (refused) left out. `None` when a range takes any (`*`).
pub(crate) fn accepted_transfer_syntaxes(headers: &HeaderMap) -> Option<Syntaxes> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(Syntaxes {
            named: Vec::new(),
            default: true,
        });
    };
    let accept = accept.to_str().ok()?;
    let mut wanted = Syntaxes {
        named: Vec::new(),
        default: false,
    };
    for range in accept.split(',') {
        let m = case_protocol::multipart::MediaType::parse(range);
        if refused(&m) {
            continue;
        }
        match m.param("transfer-syntax") {
            Some("*") => return None,
            Some(ts) => wanted.named.push(ts.to_string()),
            None => wanted.default = true,
        }
    }
    Some(wanted)
}

/// Transfer syntaxes a request takes (`accepted_transfer_syntaxes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Syntaxes {
    /// Those its ranges name.
    pub named: Vec<String>,
    /// Whether a range names none: Explicit VR Little Endian, the default.
    pub default: bool,
}

/// How an object goes to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// In the transfer syntax it was stored in.
    AsStored,
    /// Its data set written again in Explicit VR Little Endian (`crate::part10::explicit_le`).
    ExplicitLittleEndian,
}

/// The transfer syntaxes whose data set this server writes again in Explicit VR Little Endian
/// (`crate::part10::explicit_le`): Implicit VR Little Endian, converted byte by byte; Deflated
/// Explicit VR Little Endian, inflated; and the compressed syntaxes the imaging crate decodes
/// (JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE, Deflated Image Frame, Encapsulated Uncompressed),
/// decompressed. (Explicit VR Big Endian, retired, is not: its values would have to be swapped
/// by type; nor are syntaxes without a decoder here, JPEG XL say.)
pub(crate) fn is_converted(ts: &str) -> bool {
    matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1.99")
        || imaging::transcode::is_decompressed(ts)
}

/// How an object stored in `stored` goes to a caller taking `wanted` (`None`: any): as stored
/// where that is taken; in Explicit VR Little Endian, written again, where that is taken (by
/// name or as the default) and the object is `convertible` (in a syntax [`is_converted`]
/// takes, its pixels ones that can be written natively: `wado::convertible`); any other (Big
/// Endian, a compressed syntax without a decoder here, palette colour) as stored to a request
/// that names no syntax (the part names its syntax); else `None`, not acceptable.
pub(crate) fn served(wanted: Option<&Syntaxes>, stored: &str, convertible: bool) -> Option<Served> {
    let Some(w) = wanted else {
        return Some(Served::AsStored);
    };
    let explicit_le = w.default || w.named.iter().any(|t| t == EXPLICIT_VR_LITTLE_ENDIAN);
    if w.named.iter().any(|t| t == stored) || (explicit_le && stored == EXPLICIT_VR_LITTLE_ENDIAN) {
        Some(Served::AsStored)
    } else if explicit_le && convertible {
        Some(Served::ExplicitLittleEndian)
    } else if w.default && !convertible {
        Some(Served::AsStored)
    } else {
        None
    }
}

/// An Accept range of quality 0: what it names is not acceptable (RFC 9110 12.4.2).
pub(crate) fn refused(range: &case_protocol::multipart::MediaType) -> bool {
    range
        .param("q")
        .and_then(|q| q.trim().parse::<f64>().ok())
        .is_some_and(|q| q <= 0.0)
}

/// A Warning header (PS3.18 8.10.3: code 299, the service, the text): the text in visible
/// ASCII (anything else, a line break say, as "?"; quotes and backslashes escaped), so that
/// what a caller typed, quoted back, cannot make a header of its own.
pub(crate) fn warning(text: &str) -> axum::http::HeaderValue {
    let words: String = text
        .chars()
        .map(|c| match c {
            '"' | '\\' => format!("\\{c}"),
            c if c.is_ascii_graphic() || c == ' ' => c.to_string(),
            _ => "?".into(),
        })
        .collect();
    axum::http::HeaderValue::from_str(&format!("299 overread-server \"{words}\""))
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("299 overread-server"))
}

pub(crate) fn not_acceptable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_ACCEPTABLE, message)
}

/// Run `f` on a private temporary copy of a stored object (the imaging crate reads files).
pub(crate) fn on_disk<T>(
    bytes: &[u8],
    f: impl FnOnce(&std::path::Path) -> Result<T, String>,
) -> Result<T, String> {
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(file.path(), bytes).map_err(|e| e.to_string())?;
    f(file.path())
}

/// `http(s)://host` of the request, for Retrieve URLs.
pub(crate) fn origin(server: &Server, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", server.scheme)
}

/// The URL root a target was addressed under (`.../dicomweb`).
pub(crate) fn root(server: &Server, headers: &HeaderMap, target: &Target) -> String {
    match &target.case {
        Some(c) => format!("{}/cases/{c}/dicomweb", origin(server, headers)),
        None => format!("{}/dicomweb", origin(server, headers)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn accept_rules() {
        assert!(accepts(&HeaderMap::new(), "application/dicom"));
        assert!(accepts(
            &with_accept(r#"multipart/related; type="application/dicom"; transfer-syntax=*"#),
            "application/dicom"
        ));
        assert!(!accepts(
            &with_accept(r#"multipart/related; type="application/octet-stream""#),
            "application/dicom"
        ));
        assert!(accepts(&with_accept("image/*"), "image/png"));
        assert!(!accepts(&with_accept("image/jpeg"), "image/png"));
        assert!(accepts(&with_accept("text/html, */*;q=0.1"), "image/png"));
        assert!(!accepts(
            &with_accept("image/png;q=0, image/jpeg"),
            "image/png"
        ));
        let accepted = |v: &str| accepted_transfer_syntaxes(&with_accept(v));
        let named = |ts: &[&str]| {
            Some(Syntaxes {
                named: ts.iter().map(|t| t.to_string()).collect(),
                default: false,
            })
        };
        assert_eq!(
            accepted(
                r#"multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1"#
            ),
            named(&["1.2.840.10008.1.2.1"])
        );
        assert_eq!(
            accepted(r#"multipart/related; type="application/dicom"; transfer-syntax=*"#),
            None
        );
        // Alternatives in several ranges, all taken; a range of quality 0 refuses its own.
        assert_eq!(
            accepted(
                r#"multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90, multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; q=0.5, multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50; q=0"#
            ),
            named(&["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"])
        );
        // A range naming none takes the default, Explicit VR Little Endian; so does a request
        // without an Accept.
        let default = Some(Syntaxes {
            named: Vec::new(),
            default: true,
        });
        assert_eq!(
            accepted("multipart/related; type=\"application/dicom\""),
            default
        );
        assert_eq!(accepted_transfer_syntaxes(&HeaderMap::new()), default);
    }

    /// What goes how (PS3.18 8.7.3.5.2): as stored where taken; an Implicit VR, Deflated or
    /// decodable compressed object written again in Explicit VR Little Endian where that is
    /// taken; Big Endian or a compressed syntax without a decoder here (JPEG XL) as stored to a
    /// request naming no syntax; else nothing.
    #[test]
    fn objects_go_in_a_syntax_the_caller_takes() {
        let (implicit, explicit, jpeg, jpeg_xl) = (
            "1.2.840.10008.1.2",
            EXPLICIT_VR_LITTLE_ENDIAN,
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.110",
        );
        let default = Syntaxes {
            named: Vec::new(),
            default: true,
        };
        let named = |ts: &str| Syntaxes {
            named: vec![ts.to_string()],
            default: false,
        };
        let cases = [
            (None, implicit, Some(Served::AsStored)),
            (Some(&default), explicit, Some(Served::AsStored)),
            (Some(&default), implicit, Some(Served::ExplicitLittleEndian)),
            // Big Endian is not converted: as stored, as a compressed object without a
            // decoder here is.
            (
                Some(&default),
                "1.2.840.10008.1.2.2",
                Some(Served::AsStored),
            ),
            (Some(&default), jpeg, Some(Served::ExplicitLittleEndian)),
            (Some(&default), jpeg_xl, Some(Served::AsStored)),
        ];
        for (wanted, stored, expected) in cases {
            assert_eq!(
                served(wanted, stored, is_converted(stored)),
                expected,
                "{wanted:?} {stored}"
            );
        }
        let (as_explicit, as_implicit, as_jpeg) = (named(explicit), named(implicit), named(jpeg));
        assert_eq!(
            served(Some(&as_explicit), implicit, is_converted(implicit)),
            Some(Served::ExplicitLittleEndian)
        );
        assert_eq!(
            served(Some(&as_implicit), implicit, is_converted(implicit)),
            Some(Served::AsStored)
        );
        assert_eq!(
            served(Some(&as_implicit), explicit, is_converted(explicit)),
            None
        );
        assert_eq!(
            served(Some(&as_explicit), jpeg, is_converted(jpeg)),
            Some(Served::ExplicitLittleEndian)
        );
        assert_eq!(
            served(Some(&as_explicit), jpeg_xl, is_converted(jpeg_xl)),
            None
        );
        assert_eq!(
            served(Some(&as_jpeg), jpeg, is_converted(jpeg)),
            Some(Served::AsStored)
        );
        assert_eq!(
            served(Some(&as_jpeg), implicit, is_converted(implicit)),
            None
        );
        // A compressed object whose pixels are not written natively (palette colour, say):
        // as stored to a default request, refused to one naming Explicit VR Little Endian.
        assert_eq!(served(Some(&default), jpeg, false), Some(Served::AsStored));
        assert_eq!(served(Some(&as_explicit), jpeg, false), None);
    }
}
