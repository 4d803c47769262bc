//! Studies into a case: the eligibility rules, then the objects into the [`Store`] and their
//! rows into the database, for `overread-server import` (files on disk) and STOW-RS (parts of
//! an upload, spooled to files) alike.
//!
//! Order of work, so that refused input stores nothing: every file's header is read and every
//! rule checked first; only then are objects written (atomically, content-addressed) and their
//! rows inserted in one transaction. If that transaction fails, the objects it wrote and no
//! row uses are deleted again.
//!
//! Rules (a refusal names the study by its Study Instance UID, never by patient identity):
//! - only CT and MR images (by Modality (0008,0060));
//! - Study Date (0008,0020) present and no older than [`IntakeRules::max_study_age_days`];
//! - one study belongs to one case; the instance's patient birth date, when present, is the
//!   case's; a SOP Instance UID already stored with other bytes is refused.
//!
//! Owns: the `instances` table. Must not: log patient identity.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use case_protocol::{Patient, unix_now};
use imaging::header::{FileKind, InstanceHeader};
use sqlx::Row;

use crate::db::{Db, now};
use crate::store::{Store, StoreError};

/// What a case accepts.
#[derive(Debug, Clone)]
pub struct IntakeRules {
    /// Modalities accepted, upper case (default CT and MR).
    pub modalities: Vec<String>,
    /// Oldest accepted study, in days before today (UTC); default 365.
    pub max_study_age_days: u32,
}

impl Default for IntakeRules {
    fn default() -> Self {
        IntakeRules {
            modalities: vec!["CT".into(), "MR".into()],
            max_study_age_days: 365,
        }
    }
}

/// One file offered for a case: where its bytes are and how to name it in a message (a path
/// relative to what was imported, or "part 3" of an upload).
#[derive(Debug, Clone)]
pub struct Offered {
    pub path: PathBuf,
    pub label: String,
}

/// Why something offered was not stored. Messages name files, parts and Study Instance UIDs.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The input itself is wrong (not DICOM, not an image, another study): the client's 4xx.
    #[error("{0}")]
    Refused(String),
    /// Readable but outside the rules (modality, age): 422.
    #[error("{0}")]
    Ineligible(String),
    /// Stored data conflicts (a study of another case, an instance with other bytes): 409.
    #[error("{0}")]
    Conflict(String),
    #[error("no case {0}")]
    NoCase(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {label}: {message}")]
    Io { label: String, message: String },
    /// Offered files refused the upload: each (its index in the order offered) with its
    /// reason, and `error`, the first of them, in words.
    #[error("{error}{}", more_parts(.failed))]
    Parts {
        failed: Vec<(usize, FailureReason)>,
        error: Box<IntakeError>,
    },
}

fn more_parts(failed: &[(usize, FailureReason)]) -> String {
    match failed.len() {
        0 | 1 => String::new(),
        2 => " (and 1 more part refused)".into(),
        n => format!(" (and {} more parts refused)", n - 1),
    }
}

/// Why an offered instance was not stored, as a STOW-RS answer says it: the Failure Reason
/// (0008,1197) of its item in the Failed SOP Sequence (PS3.18 10.5.3, the codes of PS3.4
/// Annex B storage status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// 0xC000 Cannot Understand: not a DICOM object that could be read.
    CannotUnderstand,
    /// 0x0122 SOP Class Not Supported: not an image, or of a modality this server does not
    /// take.
    ClassNotSupported,
    /// 0x0110 Processing Failure: any other refusal (of another study than the one it was
    /// sent to, of another patient than the case's, a rule, a conflict with what is stored;
    /// PS3.4 has no code of its own for these), and an instance not stored because another
    /// of its upload was refused.
    ProcessingFailure,
}

impl FailureReason {
    pub fn code(self) -> u16 {
        match self {
            FailureReason::CannotUnderstand => 0xC000,
            FailureReason::ClassNotSupported => 0x0122,
            FailureReason::ProcessingFailure => 0x0110,
        }
    }
}

/// One instance as stored (or found already stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredInstance {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub sop_class_uid: String,
    /// False when the same bytes were already stored for this case (a retry).
    pub new: bool,
}

/// A header read and checked, with its file's content key.
struct Checked {
    header: InstanceHeader,
    /// The file as offered, and its content key (sha256) when it was checked: its bytes are
    /// read again, one file at a time, when they are stored (an upload of gigabytes is never
    /// held whole), and must be what was checked.
    file: OfferedFile,
    metadata_json: String,
    keys: StudyKeys,
}

/// An offered file checked: where it is, its label in messages, its content key.
#[derive(Debug, Clone)]
struct OfferedFile {
    path: PathBuf,
    label: String,
    key: String,
    size: u64,
}

impl OfferedFile {
    /// Its bytes, read again; the same as were checked, or an error naming it.
    async fn bytes(&self) -> Result<bytes::Bytes, IntakeError> {
        let io = |message: String| IntakeError::Io {
            label: self.label.clone(),
            message,
        };
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| io(e.to_string()))?;
        if crate::store::content_key(&bytes) != self.key {
            return Err(io("it changed after it was checked".into()));
        }
        Ok(bytes.into())
    }
}

/// Study attributes QIDO-RS matches on that the header does not keep (PS3.18 Table 6.7.1-1),
/// as the `instances` columns hold them (migration 0007 fills them the same way for rows
/// stored before it).
pub(crate) struct StudyKeys {
    /// Study Time (0008,0030) as [`normalized_time`] has it.
    pub(crate) study_time: String,
    /// Referring Physician's Name (0008,0090), its alphabetic group.
    pub(crate) referring_physician: String,
    /// Study ID (0020,0010).
    pub(crate) study_id: String,
}

impl StudyKeys {
    pub(crate) fn of(obj: &dicom_object::DefaultDicomObject) -> StudyKeys {
        use dicom_dictionary_std::tags;
        // The first value, as migration 0007 takes `Value[0]` of the metadata.
        let value = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
                .map(|v| {
                    v.split('\\')
                        .next()
                        .unwrap_or("")
                        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                        .to_string()
                })
                .unwrap_or_default()
        };
        let physician = value(tags::REFERRING_PHYSICIAN_NAME);
        StudyKeys {
            study_time: normalized_time(&value(tags::STUDY_TIME)),
            referring_physician: physician.split('=').next().unwrap_or("").trim().to_string(),
            study_id: value(tags::STUDY_ID),
        }
    }
}

/// A TM value as the `study_time` column holds it, for range matching as text: colons (of
/// ACR-NEMA times) and spaces dropped, a fraction dropped, padded with zeros to HHMMSS; ""
/// for none. The same rule as migration 0007's SQL.
pub(crate) fn normalized_time(tm: &str) -> String {
    let t: String = tm
        .trim()
        .chars()
        .filter(|c| *c != ':' && *c != ' ')
        .collect();
    if t.is_empty() {
        return t;
    }
    format!("{t}000000").chars().take(6).collect()
}

/// Read and check every offered file; refuse all of them when one fails a rule.
/// `expect_study`: the Study Instance UID the upload was addressed to (STOW-RS on a study).
pub async fn ingest(
    db: &Db,
    store: &Store,
    rules: &IntakeRules,
    case_id: &str,
    expect_study: Option<&str>,
    offered: Vec<Offered>,
) -> Result<Vec<StoredInstance>, IntakeError> {
    let patient = case_patient(db, case_id).await?;
    let rules_for_check = rules.clone();
    let expect = expect_study.map(str::to_string);
    let checked = tokio::task::spawn_blocking(move || {
        read_and_check(&offered, &rules_for_check, expect.as_deref(), &patient)
    })
    .await
    .map_err(|e| IntakeError::Io {
        label: "upload".into(),
        message: e.to_string(),
    })??;
    check_against_stored(db, case_id, &checked).await?;
    store_checked(db, store, case_id, checked).await
}

/// Images are the case's as read: once a report is signed (the case reported or delivered)
/// no instance is added, so the studies a report names, the patient copy and a QA review hold
/// what the radiologist saw. An instance already stored, sent again as it is, is accepted (a
/// PACS retrying a transfer).
fn refuse_new_instance(case_id: &str, status: &str, sop_uid: &str) -> Result<(), IntakeError> {
    if matches!(status, "reported" | "delivered") {
        return Err(IntakeError::Conflict(format!(
            "case {case_id} is {status}: SOP Instance {sop_uid} was not stored before its report \
             was signed and cannot be added now (the report names what was read)"
        )));
    }
    Ok(())
}

async fn case_patient(db: &Db, case_id: &str) -> Result<Patient, IntakeError> {
    let row = sqlx::query("SELECT patient_json FROM cases WHERE id = $1")
        .bind(case_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| IntakeError::NoCase(case_id.to_string()))?;
    serde_json::from_str(row.get::<&str, _>("patient_json")).map_err(|_| IntakeError::Io {
        label: format!("case {case_id}"),
        message: "its stored patient record is unreadable".into(),
    })
}

/// `YYYYMMDD` (DICOM DA) -> days since the epoch; None when it is not a real date.
pub fn parse_da(da: &str) -> Option<i64> {
    let da = da.trim();
    if da.len() != 8 || !da.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = da[0..4].parse().ok()?;
    let m: i64 = da[4..6].parse().ok()?;
    let d: i64 = da[6..8].parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    Some(case_protocol::days_from_civil(y, m, d))
}

fn read_and_check(
    offered: &[Offered],
    rules: &IntakeRules,
    expect_study: Option<&str>,
    patient: &Patient,
) -> Result<Vec<Checked>, IntakeError> {
    use rayon::prelude::*;
    let today = unix_now().div_euclid(86_400);
    let case_birth = patient.birth_date.replace('-', "");
    let results: Vec<Result<Checked, IntakeError>> = offered
        .par_iter()
        .enumerate()
        .map(|(index, o)| {
            let part = |reason, error| IntakeError::Parts {
                failed: vec![(index, reason)],
                error: Box::new(error),
            };
            let refuse = |reason, why: String| {
                part(
                    reason,
                    IntakeError::Refused(format!("{}: {why}", o.label)),
                )
            };
            let ineligible = |reason, why: String| {
                part(
                    reason,
                    IntakeError::Ineligible(format!("{}: {why}", o.label)),
                )
            };
            let conflict = |reason, why: String| {
                part(
                    reason,
                    IntakeError::Conflict(format!("{}: {why}", o.label)),
                )
            };
            use FailureReason::*;
            // The content key is taken before the header is read: the bytes stored later are
            // read again and must be these (`OfferedFile::bytes`), so what was checked is
            // what is stored, whatever else writes to the file meanwhile.
            let (key, size) = match std::fs::read(&o.path) {
                Ok(bytes) => (crate::store::content_key(&bytes), bytes.len() as u64),
                Err(e) => {
                    return Err(IntakeError::Io {
                        label: o.label.clone(),
                        message: e.to_string(),
                    });
                }
            };
            let (header, object) = match imaging::header::read_header_with_object(&o.path) {
                Ok((FileKind::Image(h), object)) => (*h, object),
                Ok((FileKind::Dicomdir, _)) => {
                    return Err(refuse(ClassNotSupported, "a DICOMDIR, not an image".into()));
                }
                Ok((FileKind::NonImage { sop_class_uid }, _)) => {
                    return Err(refuse(
                        ClassNotSupported,
                        format!(
                            "not an image (SOP Class {sop_class_uid}); only CT and MR images are accepted"
                        ),
                    ));
                }
                Err(e) => {
                    return Err(refuse(
                        CannotUnderstand,
                        format!("not a readable DICOM object: {e}"),
                    ));
                }
            };
            let study = header.provenance.study_instance_uid.clone();
            if let Some(expected) = expect_study
                && study != expected
            {
                return Err(conflict(
                    ProcessingFailure,
                    format!("belongs to study {study}, not to study {expected} it was sent to"),
                ));
            }
            let modality = header
                .provenance
                .modality
                .clone()
                .unwrap_or_default()
                .to_ascii_uppercase();
            if !rules.modalities.contains(&modality) {
                return Err(ineligible(
                    ClassNotSupported,
                    format!(
                        "study {study}: modality {:?} is not accepted (only {})",
                        modality,
                        rules.modalities.join(" and ")
                    ),
                ));
            }
            let date = header.provenance.study_date.clone().unwrap_or_default();
            let Some(days) = parse_da(&date) else {
                return Err(ineligible(
                    ProcessingFailure,
                    format!("study {study}: no valid Study Date (0008,0020); studies must be dated"),
                ));
            };
            let age = today - days;
            // The refusal is kept in the append-only audit trail: it says which rule, never the
            // date (a date of service identifies, and with the row's own time an age would
            // give it back).
            if age > i64::from(rules.max_study_age_days) {
                return Err(ineligible(
                    ProcessingFailure,
                    format!(
                        "study {study}: its Study Date is more than {} days ago; older studies \
                         are not accepted",
                        rules.max_study_age_days
                    ),
                ));
            }
            if age < -1 {
                return Err(ineligible(
                    ProcessingFailure,
                    format!("study {study}: its Study Date is in the future"),
                ));
            }
            let birth = header.provenance.patient_birth_date.reveal().trim().to_string();
            if !birth.is_empty() && !case_birth.is_empty() && birth != case_birth {
                return Err(conflict(ProcessingFailure, format!(
                    "study {study}: the patient's birth date differs from the case's (wrong study for this case?)"
                )));
            }
            let metadata_json = metadata_json(&object, &header)
                .map_err(|why| refuse(CannotUnderstand, why))?;
            Ok(Checked {
                keys: StudyKeys::of(&object),
                header,
                file: OfferedFile {
                    path: o.path.clone(),
                    label: o.label.clone(),
                    key,
                    size,
                },
                metadata_json,
            })
        })
        .collect();
    // Every part refused is named with its reason (the words are the first's); the server's
    // own failure (a spooled file unread) is that, not a refusal.
    let mut checked = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    let mut first = None;
    for result in results {
        match result {
            Ok(c) => checked.push(c),
            Err(IntakeError::Parts { failed: f, error }) => {
                failed.extend(f);
                first.get_or_insert(error);
            }
            Err(other) => return Err(other),
        }
    }
    if let Some(error) = first {
        return Err(IntakeError::Parts { failed, error });
    }
    // The same instance twice in one upload with different bytes is ambiguous.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &checked {
        if let Some(prev) = seen.insert(&c.header.sop_instance_uid, &c.file.key)
            && prev != c.file.key
        {
            return Err(IntakeError::Refused(format!(
                "SOP Instance {} is offered twice with different contents",
                c.header.sop_instance_uid
            )));
        }
    }
    Ok(checked)
}

/// The instance's DICOM JSON (PS3.18 F.2) without the file meta group and Pixel Data, with
/// Available Transfer Syntax UID (0008,3002) saying how its pixels are stored.
pub(crate) fn metadata_json(
    obj: &dicom_object::DefaultDicomObject,
    header: &InstanceHeader,
) -> Result<String, String> {
    let mut value = dicom_json::to_value(&**obj).map_err(|e| e.to_string())?;
    if let Some(map) = value.as_object_mut() {
        map.remove("7FE00010");
        map.insert(
            "00083002".into(),
            serde_json::json!({"vr": "UI", "Value": [header.transfer_syntax_uid]}),
        );
    }
    serde_json::to_string(&value).map_err(|e| e.to_string())
}

/// A study stored for another case, or an instance stored with other bytes, refuses all.
async fn check_against_stored(
    db: &Db,
    case_id: &str,
    checked: &[Checked],
) -> Result<(), IntakeError> {
    let studies: BTreeSet<&str> = checked
        .iter()
        .map(|c| c.header.provenance.study_instance_uid.as_str())
        .collect();
    for study in studies {
        let other = sqlx::query(
            "SELECT case_id FROM instances WHERE study_uid = $1 AND case_id <> $2 LIMIT 1",
        )
        .bind(study)
        .bind(case_id)
        .fetch_optional(&db.pool)
        .await?;
        if let Some(other) = other {
            return Err(IntakeError::Conflict(format!(
                "study {study} is already stored for case {}",
                other.get::<&str, _>("case_id")
            )));
        }
    }
    Ok(())
}

/// An instance whose object is written: its row to insert, and its file (kept until the row
/// is in, to write the object again if a refused upload deleted it meanwhile).
struct Written {
    header: InstanceHeader,
    metadata_json: String,
    keys: StudyKeys,
    key: String,
    file: OfferedFile,
}

async fn store_checked(
    db: &Db,
    store: &Store,
    case_id: &str,
    checked: Vec<Checked>,
) -> Result<Vec<StoredInstance>, IntakeError> {
    // Objects first (each write atomic), rows after: a row never points at a missing object.
    let mut written = Vec::new();
    let mut rows = Vec::with_capacity(checked.len());
    for c in checked {
        // One file in memory at a time.
        let put = match c.file.bytes().await {
            Ok(bytes) => store.put(bytes).await.map_err(IntakeError::from),
            Err(e) => Err(e),
        };
        let (key, new) = match put {
            Ok(k) => k,
            Err(e) => {
                forget_unused(db, store, &written).await;
                return Err(e);
            }
        };
        if new {
            written.push(key.clone());
        }
        rows.push(Written {
            header: c.header,
            metadata_json: c.metadata_json,
            keys: c.keys,
            key,
            file: c.file,
        });
    }
    match insert_rows(db, store, case_id, &rows, &mut written).await {
        Ok(stored) => Ok(stored),
        Err(e) => {
            forget_unused(db, store, &written).await;
            Err(e)
        }
    }
}

/// Delete objects this upload wrote that no stored row uses (after a refused transaction).
/// Another upload of the same bytes may have found them stored and not written them again:
/// the check and the deletion hold the keys ([`Db::lock_objects`]), so that upload's insert
/// either comes first (its row keeps the object) or sees the object gone and writes it again.
async fn forget_unused(db: &Db, store: &Store, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    if let Err(e) = forget_unused_in_turn(db, store, keys).await {
        tracing::warn!("could not delete the unused objects of a refused upload: {e}");
    }
}

async fn forget_unused_in_turn(db: &Db, store: &Store, keys: &[String]) -> Result<(), IntakeError> {
    let mut tx = db.begin_write().await?;
    let held: Vec<&str> = keys.iter().map(String::as_str).collect();
    db.lock_objects(&mut tx, &held).await?;
    for key in keys {
        let used = sqlx::query("SELECT 1 AS one FROM instances WHERE object_key = $1 LIMIT 1")
            .bind(key)
            .fetch_optional(&mut *tx.tx)
            .await?;
        if used.is_none()
            && let Err(e) = store.delete(key).await
        {
            tracing::warn!("could not delete unused object {key}: {e}");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Writes again any of `objects` (key, the file checked) that is not stored (16 checks at a
/// time; each file read again, and refused if it changed),
/// adding each key written to `written` (also when another fails: a refused upload deletes
/// them).
async fn ensure_objects(
    store: &Store,
    objects: Vec<(String, OfferedFile)>,
    written: &mut Vec<String>,
) -> Result<(), IntakeError> {
    use futures_util::StreamExt;
    let results: Vec<Result<Option<String>, IntakeError>> = futures_util::stream::iter(objects)
        .map(|(key, file)| {
            let store = store.clone();
            async move {
                if !store.exists(&key).await? {
                    tracing::warn!(
                        "object {key} was deleted by a refused upload; writing it again"
                    );
                    store.put(file.bytes().await?).await?;
                    return Ok(Some(key));
                }
                Ok(None)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(Some(key)) => written.push(key),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `written`: the objects this upload wrote, to which any written again here is added (a
/// refused insert deletes them).
async fn insert_rows(
    db: &Db,
    store: &Store,
    case_id: &str,
    rows: &[Written],
    written: &mut Vec<String>,
) -> Result<Vec<StoredInstance>, IntakeError> {
    let mut tx = db.begin_write().await?;
    // One study, one case, inside the transaction: the check before the upload's objects
    // were written (`check_against_stored`) may have raced another upload of the study.
    let studies: BTreeSet<&str> = rows
        .iter()
        .map(|w| w.header.provenance.study_instance_uid.as_str())
        .collect();
    for study in studies {
        sqlx::query(
            "INSERT INTO study_cases (study_uid, case_id) VALUES ($1, $2)
             ON CONFLICT (study_uid) DO NOTHING",
        )
        .bind(study)
        .bind(case_id)
        .execute(&mut *tx.tx)
        .await?;
        let owner = sqlx::query("SELECT case_id FROM study_cases WHERE study_uid = $1")
            .bind(study)
            .fetch_one(&mut *tx.tx)
            .await?;
        let owner: &str = owner.get("case_id");
        if owner != case_id {
            return Err(IntakeError::Conflict(format!(
                "study {study} is already stored for case {owner}"
            )));
        }
    }
    // The objects are held from here to the commit, and each is checked to be there: a
    // refused upload of the same bytes may have deleted one this upload found stored.
    let keys: Vec<&str> = rows.iter().map(|w| w.key.as_str()).collect();
    db.lock_objects(&mut tx, &keys).await?;
    ensure_objects(
        store,
        rows.iter()
            .map(|w| (w.key.clone(), w.file.clone()))
            .collect(),
        written,
    )
    .await?;
    // The case's status, read in the transaction that inserts (after the objects are written,
    // so no lock waits on the store): a report stored meanwhile closes the case to new
    // instances. SQLite has one writer; on PostgreSQL the case row is held against the report
    // writer's status update until this commits.
    let sql = match db.backend {
        crate::db::Backend::Postgres => "SELECT status FROM cases WHERE id = $1 FOR UPDATE",
        crate::db::Backend::Sqlite => "SELECT status FROM cases WHERE id = $1",
    };
    let status: String = sqlx::query_scalar::<_, Option<String>>(sql)
        .bind(case_id)
        .fetch_optional(&mut *tx.tx)
        .await?
        .flatten()
        .ok_or_else(|| IntakeError::NoCase(case_id.to_string()))?;
    let stored_at = now();
    let mut out = Vec::with_capacity(rows.len());
    for Written {
        header: h,
        metadata_json: metadata,
        keys,
        key,
        file,
    } in rows
    {
        let size = i64::try_from(file.size).unwrap_or(i64::MAX);
        let existing =
            sqlx::query("SELECT object_key FROM instances WHERE case_id = $1 AND sop_uid = $2")
                .bind(case_id)
                .bind(&h.sop_instance_uid)
                .fetch_optional(&mut *tx.tx)
                .await?;
        let new = match existing {
            Some(row) if row.get::<&str, _>("object_key") == key => false,
            Some(_) => {
                return Err(IntakeError::Conflict(format!(
                    "SOP Instance {} is already stored with other contents",
                    h.sop_instance_uid
                )));
            }
            None => {
                refuse_new_instance(case_id, &status, &h.sop_instance_uid)?;
                let p = &h.provenance;
                sqlx::query(
                    "INSERT INTO instances (case_id, study_uid, series_uid, sop_uid, sop_class_uid,
                        transfer_syntax_uid, object_key, size_bytes, modality, study_date,
                        study_description, accession_number, patient_id, patient_name,
                        series_number, series_description, instance_number, pixel_rows,
                        pixel_columns, number_of_frames, metadata_json, stored_at, study_time,
                        referring_physician, study_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                        $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)",
                )
                .bind(case_id)
                .bind(&p.study_instance_uid)
                .bind(&p.series_instance_uid)
                .bind(&h.sop_instance_uid)
                .bind(&h.sop_class_uid)
                .bind(&h.transfer_syntax_uid)
                .bind(key)
                .bind(size)
                .bind(p.modality.clone().unwrap_or_default())
                .bind(p.study_date.clone().unwrap_or_default())
                .bind(p.study_description.clone().unwrap_or_default())
                .bind(p.accession_number.reveal().to_string())
                .bind(p.patient_id.reveal().to_string())
                .bind(p.patient_name.reveal().to_string())
                .bind(p.series_number)
                .bind(p.series_description.clone().unwrap_or_default())
                .bind(h.instance_number)
                .bind(i64::from(h.rows))
                .bind(i64::from(h.columns))
                .bind(i64::from(h.number_of_frames))
                .bind(metadata)
                .bind(&stored_at)
                .bind(&keys.study_time)
                .bind(&keys.referring_physician)
                .bind(&keys.study_id)
                .execute(&mut *tx.tx)
                .await?;
                true
            }
        };
        out.push(StoredInstance {
            study_uid: h.provenance.study_instance_uid.clone(),
            series_uid: h.provenance.series_instance_uid.clone(),
            sop_uid: h.sop_instance_uid.clone(),
            sop_class_uid: h.sop_class_uid.clone(),
            new,
        });
    }
    tx.commit().await?;
    Ok(out)
}

/// What `import` did, study by study.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportReport {
    pub stored: Vec<StudyStored>,
    pub refused: Vec<Refusal>,
    /// Files not imported: not DICOM, unreadable.
    pub skipped: Vec<Skipped>,
    /// DICOM objects without pixels (reports, presentation states), not imported.
    pub non_image_objects: usize,
}

/// A study not imported (nothing of it stored).
#[derive(Debug, serde::Serialize)]
pub struct Refusal {
    pub study_uid: String,
    /// Why, its files said as "<file>" (as the audit trail has it): file names and folders
    /// often name the patient.
    pub why: String,
    /// Why, naming its files: for an operator's screen only, never a log.
    pub why_naming_files: String,
}

/// A file not imported and why (the reason without its path).
#[derive(Debug, serde::Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: String,
}

#[derive(Debug, serde::Serialize)]
pub struct StudyStored {
    pub study_uid: String,
    pub series: usize,
    pub instances: usize,
    pub new: usize,
}

/// Import DICOMDIRs, folders or files into a case (`overread-server import`): scan them,
/// group the images by study, and store each study all or nothing. Refusals are per study
/// and audited (user "cli").
pub async fn import(
    server: &crate::Server,
    paths: &[PathBuf],
    case_id: &str,
) -> Result<ImportReport, IntakeError> {
    case_patient(&server.db, case_id).await?;
    let list = paths.to_vec();
    let scan = tokio::task::spawn_blocking(move || imaging::scan::scan(&list))
        .await
        .map_err(|e| IntakeError::Io {
            label: "scan".into(),
            message: e.to_string(),
        })?;
    let mut report = ImportReport {
        skipped: scan
            .warnings
            .iter()
            .map(|w| Skipped {
                path: w.path.clone(),
                why: w.message.replace(&w.path.display().to_string(), "<file>"),
            })
            .collect(),
        non_image_objects: scan.non_image_objects,
        ..Default::default()
    };
    let mut studies: BTreeMap<String, Vec<Offered>> = BTreeMap::new();
    for h in scan.instances {
        let label = paths
            .iter()
            .find_map(|p| h.path.strip_prefix(p).ok())
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(&h.path)
            .display()
            .to_string();
        studies
            .entry(h.provenance.study_instance_uid.clone())
            .or_default()
            .push(Offered {
                path: h.path.clone(),
                label,
            });
    }
    for (study, offered) in studies {
        let n = offered.len();
        // The audit trail is append-only and never carries patient identity; file names and
        // folders often do (a CD copied into a folder named after the patient), so a refusal
        // is audited with every offered file's path and label said as "<file>".
        let names: Vec<(String, String)> = offered
            .iter()
            .map(|o| (o.path.display().to_string(), o.label.clone()))
            .collect();
        match ingest(
            &server.db,
            &server.store,
            &server.rules,
            case_id,
            Some(&study),
            offered,
        )
        .await
        {
            Ok(stored) => {
                let new = stored.iter().filter(|s| s.new).count();
                let series: BTreeSet<&str> = stored.iter().map(|s| s.series_uid.as_str()).collect();
                server
                    .db
                    .audit(
                        Some("cli"),
                        "import",
                        Some(case_id),
                        Some("local"),
                        &format!("study {study}: {n} instances ({new} new)"),
                    )
                    .await?;
                report.stored.push(StudyStored {
                    study_uid: study,
                    series: series.len(),
                    instances: n,
                    new,
                });
            }
            // A file that cannot be read refuses its study (nothing of it is kept: every file
            // is read before any is stored, and what was stored before a file went missing or
            // changed is deleted again); the other studies go on.
            Err(
                e @ (IntakeError::Refused(_)
                | IntakeError::Ineligible(_)
                | IntakeError::Conflict(_)
                | IntakeError::Parts { .. }
                | IntakeError::Io { .. }),
            ) => {
                let why = without_names(&e.to_string(), &names);
                server
                    .db
                    .audit(
                        Some("cli"),
                        "import_refused",
                        Some(case_id),
                        Some("local"),
                        &format!("study {study}: {why}"),
                    )
                    .await?;
                report.refused.push(Refusal {
                    study_uid: study,
                    why,
                    why_naming_files: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// An intake error's text without the files it names: each file's full path (wherever it
/// stands: a reading error quotes it) and the label the message starts with ("label: why"),
/// said as "<file>". A label is replaced only there, where it stands as a label: a short
/// one ("1") would otherwise take digits out of the UIDs.
fn without_names(text: &str, names: &[(String, String)]) -> String {
    let mut out = names
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .fold(text.to_string(), |t, (path, _)| {
            t.replace(path.as_str(), "<file>")
        });
    let mut labels: Vec<&str> = names.iter().map(|(_, label)| label.as_str()).collect();
    labels.sort_by_key(|l| std::cmp::Reverse(l.len()));
    // "label: why", or a reading error's "reading label: why".
    for lead in ["", "reading "] {
        if let Some(rest) = out.strip_prefix(lead).and_then(|after| {
            labels
                .iter()
                .find_map(|label| after.strip_prefix(label)?.strip_prefix(": "))
        }) {
            out = format!("{lead}<file>: {rest}");
            break;
        }
    }
    out
}

/// Store a small synthetic chest CT (4 slices of 32 x 32, dated today; `imaging::synth`,
/// study UID derived from `seed`) into a case, through the same checks as any study: for
/// demo servers, benchmarks and tests that need a case with images. Returns the Study
/// Instance UID.
pub async fn store_synthetic_study(
    db: &Db,
    store: &Store,
    case_id: &str,
    seed: u64,
) -> Result<String, IntakeError> {
    let dir = tempfile::tempdir().map_err(|e| IntakeError::Io {
        label: "synthetic study".into(),
        message: e.to_string(),
    })?;
    let spec = imaging::synth::PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 4,
        pixel_mm: 10.0,
        spacing_mm: 5.0,
        seed,
        ..Default::default()
    };
    let io = |e: String| IntakeError::Io {
        label: "synthetic study".into(),
        message: e,
    };
    imaging::synth::write_series(&spec, dir.path()).map_err(|e| io(e.to_string()))?;
    let offered = std::fs::read_dir(dir.path())
        .map_err(|e| io(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| Offered {
            label: e.file_name().to_string_lossy().into_owned(),
            path: e.path(),
        })
        .collect();
    let stored = ingest(db, store, &IntakeRules::default(), case_id, None, offered).await?;
    Ok(stored
        .first()
        .map(|s| s.study_uid.clone())
        .unwrap_or_default())
}

/// Instances stored for a case (for readiness and the case record).
pub async fn instance_count(db: &Db, case_id: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM instances WHERE case_id = $1")
        .bind(case_id)
        .fetch_one(&db.pool)
        .await?;
    row.try_get::<i64, _>("n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_audited_without_the_files_names() {
        let names = [
            ("/cd/DOE^JOHN/IM1".to_string(), "DOE^JOHN/IM1".to_string()),
            ("/cd/1".to_string(), "1".to_string()),
        ];
        assert_eq!(
            without_names(
                "DOE^JOHN/IM1: study 1.2.1: its Study Date is in the future",
                &names
            ),
            "<file>: study 1.2.1: its Study Date is in the future"
        );
        // A short label is taken only where it stands as one; a full path wherever it is.
        assert_eq!(
            without_names("1: not readable: /cd/1 is cut short (study 1.2.1)", &names),
            "<file>: not readable: <file> is cut short (study 1.2.1)"
        );
        // A file that could not be read, as `IntakeError::Io` says it.
        assert_eq!(
            without_names(
                "reading DOE^JOHN/IM1: Permission denied (os error 13)",
                &names
            ),
            "reading <file>: Permission denied (os error 13)"
        );
    }

    /// An object a refused upload deleted after this upload found it stored is written again
    /// before this upload's rows go in.
    #[tokio::test]
    async fn a_deleted_object_is_written_again_before_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let kept = bytes::Bytes::from_static(b"kept object");
        let lost = bytes::Bytes::from_static(b"object a refused upload deleted");
        let (kept_key, _) = store.put(kept.clone()).await.unwrap();
        let (lost_key, _) = store.put(lost.clone()).await.unwrap();
        store.delete(&lost_key).await.unwrap();
        assert!(!store.exists(&lost_key).await.unwrap());
        // The files the upload offered, still where they were.
        let file = |name: &str, bytes: &bytes::Bytes| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            OfferedFile {
                path,
                label: name.into(),
                key: crate::store::content_key(bytes),
                size: bytes.len() as u64,
            }
        };
        let (kept_file, lost_file) = (file("kept", &kept), file("lost", &lost));
        let mut rewritten = Vec::new();
        ensure_objects(
            &store,
            vec![
                (kept_key.clone(), kept_file),
                (lost_key.clone(), lost_file.clone()),
            ],
            &mut rewritten,
        )
        .await
        .unwrap();
        assert_eq!(rewritten, vec![lost_key.clone()]);
        assert!(store.exists(&kept_key).await.unwrap());
        assert_eq!(store.get(&lost_key).await.unwrap(), lost);
        // A file changed since it was checked is not written in its place.
        store.delete(&lost_key).await.unwrap();
        std::fs::write(&lost_file.path, b"other bytes").unwrap();
        let e = ensure_objects(&store, vec![(lost_key.clone(), lost_file)], &mut rewritten)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("changed after it was checked"),
            "{e}"
        );
        assert!(!store.exists(&lost_key).await.unwrap());
    }

    #[test]
    fn dicom_dates() {
        assert_eq!(parse_da("19700101"), Some(0));
        assert_eq!(parse_da("20000301"), Some(11_017));
        assert_eq!(parse_da("20240229"), Some(19_782));
        assert_eq!(parse_da("20230229"), None);
        assert_eq!(parse_da("2023-01-01"), None);
        assert_eq!(parse_da(""), None);
        assert_eq!(parse_da("20231301"), None);
    }
}
