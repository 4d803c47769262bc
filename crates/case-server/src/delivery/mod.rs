//! Delivery of signed reports to the referring physician: each stored report (final or
//! addendum) becomes a PDF ([`pdf`]) and is handed to a [`Transport`]; by default a folder a
//! fax gateway watches ([`FolderTransport`]).
//!
//! The outbox is durable by construction: the reports table is append-only and every report
//! without a `sent` row in `deliveries` is still to deliver, so a crash or a failed transport
//! loses nothing. One task ([`spawn`]) delivers, woken after each stored report and every few
//! seconds; a failure is recorded on the row (attempts, error, next attempt after a doubling
//! wait) and audited. A delivered final report moves its case to `delivered`. Servers sharing
//! a PostgreSQL database each run the task: a report is claimed before it is sent (a
//! transaction advisory lock by its hash, held until its outcome is recorded), so none is
//! sent twice.
//!
//! Owns: the `deliveries` and `key_images` tables. Must not: log patient identity (the PDF
//! and the fax sidecar carry it; log lines name cases and hashes).

pub mod pdf;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use case_protocol::{Patient, Referral, ReportKind, SignedReport, rfc3339_utc, unix_now};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::Db;
use crate::store::Store;
use pdf::{KeyImage, ReportDocument, StudyLine};

/// Most key images a case may carry into its report.
pub const MAX_KEY_IMAGES: i64 = 8;

/// One document to send. Its `Debug` names the case and report only: the recipient and the
/// PDF (whose text streams hold the patient's name) are left out.
pub struct Outgoing<'a> {
    pub case_id: &'a str,
    pub report_hash: &'a str,
    pub kind: ReportKind,
    /// E.164 fax number of the referring physician.
    pub fax: &'a str,
    pub recipient: &'a str,
    pub pdf: &'a [u8],
}

impl std::fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("case_id", &self.case_id)
            .field("report_hash", &self.report_hash)
            .field("pdf_bytes", &self.pdf.len())
            .finish_non_exhaustive()
    }
}

/// How documents leave. `send` returns where the document went (for the case record).
pub trait Transport: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn send(&self, doc: &Outgoing<'_>) -> Result<String, String>;
}

/// Writes `CASE-HASH16.pdf` and then `CASE-HASH16.json` (fax number, recipient, hash, size)
/// into a folder, each under a temporary name (`.overread-*.partial`), synced, renamed, and the
/// folder synced: a gateway that acts on the `.json` always finds the whole PDF beside it, and
/// both are on disk before the delivery is recorded. Each is readable by its owner and group
/// only (0640 less the umask): the gateway reads them as a member of the server's group.
#[derive(Debug, Clone)]
pub struct FolderTransport {
    pub folder: PathBuf,
}

impl Transport for FolderTransport {
    fn name(&self) -> &'static str {
        "folder"
    }

    fn send(&self, doc: &Outgoing<'_>) -> Result<String, String> {
        let stem = format!(
            "{}-{}",
            doc.case_id,
            doc.report_hash.get(..16).unwrap_or(doc.report_hash)
        );
        // Each file whole or not at all (`imaging::partial`: a temporary file of its own,
        // removed if the write fails; synced, renamed, the folder synced), so the renames
        // survive a power loss before the delivery is recorded as sent.
        let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, String> {
            let path = self.folder.join(name);
            // The patient's report, for the gateway (of the server's group) and nobody else.
            imaging::partial::group_beside(&path)
                .and_then(|mut partial| {
                    std::io::Write::write_all(&mut partial, bytes)?;
                    imaging::partial::persist(partial, &path)
                })
                .map_err(|e| format!("{}: {e}", self.folder.display()))?;
            Ok(path)
        };
        let pdf = write(&format!("{stem}.pdf"), doc.pdf)?;
        let sidecar = serde_json::json!({
            "fax": doc.fax,
            "recipient": doc.recipient,
            "case_id": doc.case_id,
            "report_hash": doc.report_hash,
            "kind": match doc.kind { ReportKind::Final => "final", ReportKind::Addendum { .. } => "addendum" },
            "pdf": pdf.file_name().map(|n| n.to_string_lossy().into_owned()),
            "pdf_sha256": hex(&Sha256::digest(doc.pdf)),
            "pdf_bytes": doc.pdf.len(),
        });
        write(&format!("{stem}.json"), sidecar.to_string().as_bytes())?;
        Ok(pdf.display().to_string())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the delivery task runs.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub transport: Arc<dyn Transport>,
    /// First wait after a failure; doubled each time, at most an hour.
    pub retry_base: Duration,
    /// How often to look for work without being woken.
    pub poll: Duration,
    /// How long a send may take before the round goes on without it (recorded as failed
    /// for now; the report is not sent again while that send runs, and what it ends with is
    /// recorded then).
    pub send_timeout: Duration,
}

impl DeliveryConfig {
    pub fn folder(folder: &Path) -> DeliveryConfig {
        DeliveryConfig {
            transport: Arc::new(FolderTransport {
                folder: folder.to_path_buf(),
            }),
            retry_base: Duration::from_secs(5),
            poll: Duration::from_secs(5),
            // Two small files on a local or network folder: seconds at worst.
            send_timeout: Duration::from_secs(120),
        }
    }
}

/// Wakes the delivery task (after a report is stored).
#[derive(Debug, Clone, Default)]
pub struct Nudge(Arc<tokio::sync::Notify>);

impl Nudge {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored record unreadable: {0}")]
    Stored(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("no report {0}")]
    NoReport(String),
    /// The PDF's rendering thread failed (a panic: a defect, said, never a half PDF).
    #[error("the PDF could not be made: {0}")]
    Render(String),
}

/// Build the PDF of a stored report, as it would be delivered.
pub async fn report_pdf(
    db: &Db,
    store: &Store,
    report_hash: &str,
) -> Result<(Vec<u8>, PdfFacts), DeliveryError> {
    let row = sqlx::query(
        "SELECT reports.case_id AS case_id, reports.signed_json AS signed_json,
                reports.amends AS amends, reports.received_at AS received_at,
                cases.patient_json AS patient_json, cases.referral_json AS referral_json
         FROM reports JOIN cases ON cases.id = reports.case_id WHERE reports.report_hash = $1",
    )
    .bind(report_hash)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| DeliveryError::NoReport(report_hash.to_string()))?;
    let unreadable = |what: &str| DeliveryError::Stored(format!("{what} of report {report_hash}"));
    let signed: SignedReport = serde_json::from_str(row.get::<&str, _>("signed_json"))
        .map_err(|_| unreadable("the signed report"))?;
    let patient: Patient = serde_json::from_str(row.get::<&str, _>("patient_json"))
        .map_err(|_| unreadable("the patient record"))?;
    let referral: Referral = serde_json::from_str(row.get::<&str, _>("referral_json"))
        .map_err(|_| unreadable("the referral"))?;
    let case_id: String = row.get("case_id");
    let amends: Option<String> = row.try_get("amends").ok().flatten();
    let received_at: String = row.get("received_at");
    // The studies the signed report names, with their details where the case holds them; a
    // report that names none lists the case's studies.
    let held: Vec<StudyLine> = sqlx::query(
        "SELECT study_uid, MIN(study_date) AS study_date, MIN(modality) AS modality,
                MIN(study_description) AS study_description
         FROM instances WHERE case_id = $1 GROUP BY study_uid ORDER BY study_date",
    )
    .bind(&case_id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| StudyLine {
        uid: r.get("study_uid"),
        date: r.get("study_date"),
        modality: r.get("modality"),
        description: r.get("study_description"),
    })
    .collect();
    let named = &signed.report.study_instance_uids;
    let studies: Vec<StudyLine> = if named.is_empty() {
        held
    } else {
        named
            .iter()
            .map(|uid| {
                held.iter()
                    .find(|s| s.uid == *uid)
                    .cloned()
                    .unwrap_or(StudyLine {
                        uid: uid.clone(),
                        date: String::new(),
                        modality: String::new(),
                        description: String::new(),
                    })
            })
            .collect()
    };
    let mut key_pngs = Vec::new();
    for r in sqlx::query(
        // Every key image of a case was added before its final report (`add_key_image`
        // refuses them after, in the transaction that holds the case). Those of the report's
        // author print: a case reassigned while being read keeps the first reader's images,
        // which the signer never chose.
        "SELECT object_key, caption FROM key_images WHERE case_id = $1 AND uploaded_by = $2
         ORDER BY uploaded_at, object_key",
    )
    .bind(&case_id)
    .bind(&signed.report.author.user_id)
    .fetch_all(&db.pool)
    .await?
    {
        // Not part of the signed text: one whose stored copy is gone or damaged prints as
        // unavailable, said, and never holds back the report. Any other failure (the store
        // unreachable a while) fails the attempt, retried: the report goes with its image.
        let key: &str = r.get("object_key");
        let bytes = match store.get(key).await {
            Ok(bytes) => Some(bytes),
            Err(
                e @ (crate::store::StoreError::Damaged { .. }
                | crate::store::StoreError::Backend(object_store::Error::NotFound { .. })),
            ) => {
                tracing::warn!("report {report_hash}: key image {key} unavailable: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        };
        key_pngs.push((bytes, r.get::<String, _>("caption")));
    }
    let facts = PdfFacts {
        case_id: case_id.clone(),
        kind: signed.report.kind.clone(),
        fax: referral.physician.fax.clone(),
        recipient: referral.physician.name.clone(),
    };
    // Decoding the key images and laying the text out are CPU work (a long report, large
    // images): on a blocking thread, never on the async workers the server's requests and
    // the delivery loop share.
    let hash = report_hash.to_string();
    let bytes = tokio::task::spawn_blocking(move || {
        let key_images: Vec<KeyImage> = key_pngs
            .iter()
            .map(|(png, caption)| {
                png.as_deref()
                    .ok_or_else(String::new)
                    .and_then(|png| KeyImage::from_png(png, caption))
                    .unwrap_or_else(|_| KeyImage::unavailable(caption))
            })
            .collect();
        let doc = ReportDocument {
            case_id: &case_id,
            patient: &patient,
            referral: &referral,
            studies: &studies,
            report: &signed.report,
            report_hash: &hash,
            received_at: &received_at,
            amends: amends.as_deref(),
            key_images: &key_images,
        };
        pdf::render_pdf(&doc)
    })
    .await
    // A panic's message may quote what it was laying out (a name, the report's text): it goes
    // nowhere, logs and audit rows included.
    .map_err(|_| DeliveryError::Render(format!("report {report_hash}: the rendering failed")))?;
    Ok((bytes, facts))
}

/// A report sent whose outcome could not be recorded: what the next round records for it,
/// without sending it again (`Db::sent_unrecorded`).
#[derive(Debug, Clone)]
pub struct Sent {
    reference: String,
    document_sha256: String,
    facts: PdfFacts,
}

/// A send that outlived [`DeliveryConfig::send_timeout`]: its task, and what its outcome is
/// recorded with.
#[derive(Debug)]
pub struct StillSending {
    task: tokio::task::JoinHandle<Result<String, String>>,
    document_sha256: String,
    facts: PdfFacts,
}

/// Whether a report's earlier send is still going ([`StillSending`]).
enum Going {
    No,
    Running,
    Ended(StillSending),
}

/// What the transport needs besides the PDF.
#[derive(Debug, Clone)]
pub struct PdfFacts {
    pub case_id: String,
    pub kind: ReportKind,
    pub fax: String,
    pub recipient: String,
}

/// Start the delivery task; it runs until the runtime ends.
pub fn spawn(db: Db, store: Store, config: DeliveryConfig, nudge: Nudge) {
    tokio::spawn(async move {
        let mut failed_rounds = 0u32;
        loop {
            match deliver_due(&db, &store, &config).await {
                Ok(n) if n > 0 => {
                    failed_rounds = 0;
                    continue;
                }
                Ok(_) => failed_rounds = 0,
                Err(e) => {
                    // A round that fails (a database fault) waits longer each time it fails
                    // again, not the poll.
                    failed_rounds = failed_rounds.saturating_add(1);
                    let wait = after_failed_rounds(config.poll, failed_rounds);
                    tracing::error!("delivery: {e}; next round in {} s", wait.as_secs());
                    // A new report (a STAT one, say) wakes it sooner: a report sent whose
                    // outcome was not recorded is recorded then, not sent again.
                    let _ = tokio::time::timeout(wait, nudge.0.notified()).await;
                    continue;
                }
            }
            let _ = tokio::time::timeout(config.poll, nudge.0.notified()).await;
        }
    });
}

/// The wait before the next delivery round after `failed` rounds failed in a row: the poll,
/// doubled each time, at most 15 minutes.
fn after_failed_rounds(poll: Duration, failed: u32) -> Duration {
    poll.saturating_mul(1u32 << failed.min(16))
        .min(Duration::from_secs(15 * 60))
}

/// Deliver every report that is due; returns how many were attempted (not those another
/// server on the database held or finished meanwhile).
pub async fn deliver_due(
    db: &Db,
    store: &Store,
    config: &DeliveryConfig,
) -> Result<usize, DeliveryError> {
    // A case's reports go in the order they arrived, each once every earlier one of its case
    // has gone: the referring physician never gets an addendum before (or without) its
    // report, nor a second addendum before the first, whatever the seconds they were received
    // in or a sending failing meanwhile.
    let arrival = arrival_column(db);
    // `arrival` is one of two column names, never input.
    let due = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT reports.report_hash AS report_hash
         FROM reports LEFT JOIN deliveries ON deliveries.report_hash = reports.report_hash
         WHERE (deliveries.report_hash IS NULL
                OR (deliveries.status <> 'sent' AND deliveries.next_attempt_unix <= $1))
           AND NOT EXISTS (SELECT 1 FROM reports AS earlier
                           LEFT JOIN deliveries AS gone
                             ON gone.report_hash = earlier.report_hash
                           WHERE earlier.case_id = reports.case_id
                             AND earlier.{arrival} < reports.{arrival}
                             AND (gone.status IS NULL OR gone.status <> 'sent'))
         ORDER BY reports.{arrival}
         LIMIT 16"
    )))
    .bind(unix_now())
    .fetch_all(&db.pool)
    .await?;
    let mut attempted = 0;
    for row in &due {
        let hash: String = row.get("report_hash");
        // Another server on the same database may be sending it now, or have sent it since
        // the list was read: then it is theirs.
        let Some(claim) = claim(db, &hash).await? else {
            continue;
        };
        let attempts: i64 = claim.attempts + 1;
        attempted += 1;
        // A send of it that outlived its time and may still be going: not sent again. Once
        // it has ended, what it ended with is this attempt's outcome.
        let going = match db.still_sending.lock() {
            Ok(mut going) => match going.get(&hash) {
                None => Going::No,
                Some(s) if !s.task.is_finished() => Going::Running,
                Some(_) => going.remove(&hash).map_or(Going::No, Going::Ended),
            },
            Err(_) => Going::No,
        };
        let ended = match going {
            // Still going: passed by this round (its claim let go).
            Going::Running => {
                attempted -= 1;
                claim.release().await?;
                continue;
            }
            Going::Ended(s) => Some(s),
            Going::No => None,
        };
        // Sent before by this server, its outcome not recorded: recorded now, not sent again.
        let unrecorded = db
            .sent_unrecorded
            .lock()
            .ok()
            .and_then(|mut sent| sent.remove(&hash));
        let outcome = if let Some(sent) = unrecorded {
            Ok((sent.reference, sent.document_sha256, sent.facts))
        } else if let Some(s) = ended {
            s.task
                .await
                .unwrap_or_else(|_| Err("the transport failed".into()))
                .map(|reference| (reference, s.document_sha256, s.facts))
        } else {
            match report_pdf(db, store, &hash).await {
                Ok((bytes, facts)) => 'sent: {
                    // The document as sent, kept by its sha256 (recorded with the delivery) before
                    // it goes: the patient copy gives these bytes, not a new rendering, and a
                    // delivery never names a document nobody can fetch again.
                    if let Err(e) = store.put(bytes.clone()).await {
                        break 'sent Err(format!(
                            "the PDF could not be kept, so it was not sent: {e}"
                        ));
                    }
                    let transport = config.transport.clone();
                    let mut task = tokio::task::spawn_blocking({
                        let bytes = bytes.clone();
                        let facts = facts.clone();
                        let hash = hash.clone();
                        move || {
                            transport.send(&Outgoing {
                                case_id: &facts.case_id,
                                report_hash: &hash,
                                kind: facts.kind.clone(),
                                fax: &facts.fax,
                                recipient: &facts.recipient,
                                pdf: &bytes,
                            })
                        }
                    });
                    let document_sha256 = hex(&Sha256::digest(&bytes));
                    let sent = match tokio::time::timeout(config.send_timeout, &mut task).await {
                        // A panic's message may quote what the transport held (the PDF's
                        // text, the recipient): it goes nowhere, the delivery row and audit
                        // included.
                        Ok(joined) => joined.unwrap_or_else(|_| Err("the transport failed".into())),
                        Err(_) => {
                            // Hung (a network folder that does not answer): the round goes on;
                            // the send is kept, and its report not sent again while it runs.
                            if let Ok(mut going) = db.still_sending.lock() {
                                going.insert(
                                    hash.clone(),
                                    StillSending {
                                        task,
                                        document_sha256: document_sha256.clone(),
                                        facts: facts.clone(),
                                    },
                                );
                            }
                            Err(format!(
                                "the transport ({}) did not answer within {} s; the report \
                                 is not sent again while that send may still be going",
                                config.transport.name(),
                                config.send_timeout.as_secs_f64()
                            ))
                        }
                    };
                    sent.map(|reference| (reference, document_sha256, facts))
                }
                Err(e) => Err(e.to_string()),
            }
        };
        if let Err(e) = record(db, config, &hash, attempts, outcome.clone()).await {
            // Sent but not recorded: kept, so the next round records it instead of faxing
            // the physician the same report again.
            if let Ok((reference, document_sha256, facts)) = outcome
                && let Ok(mut sent) = db.sent_unrecorded.lock()
            {
                sent.insert(
                    hash.clone(),
                    Sent {
                        reference,
                        document_sha256,
                        facts,
                    },
                );
            }
            // Let go of the claim now: dropped, its transaction would be rolled back only
            // when its connection is next used, and the next round (on another connection)
            // would find the report still held and pass it by.
            let _ = claim.release().await;
            return Err(e);
        }
        claim.release().await?;
    }
    Ok(attempted)
}

/// The column that orders reports by arrival: SQLite's rowid, PostgreSQL's identity column
/// `seq` (`received_at` has whole seconds, and a batch of the report writer shares one).
fn arrival_column(db: &Db) -> &'static str {
    match db.backend {
        crate::db::Backend::Sqlite => "rowid",
        crate::db::Backend::Postgres => "seq",
    }
}

/// One server's hold on one report's delivery, from before it is sent until its outcome is
/// recorded. On PostgreSQL, where several servers may share the database, a transaction
/// advisory lock keyed by the report's hash in a transaction of its own: another server's
/// claim on the same report fails at once (it goes on to the next), and the lock goes with
/// the transaction whatever happens (dropped on an error, it is rolled back). SQLite serves
/// one server: the claim only reads the row again.
struct Claim {
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    /// Attempts recorded so far.
    attempts: i64,
}

impl Claim {
    async fn release(self) -> Result<(), sqlx::Error> {
        match self.tx {
            Some(tx) => tx.rollback().await,
            None => Ok(()),
        }
    }
}

/// Claim `hash` for delivery; `None` when another server holds it, or it is no longer due
/// (sent, or waiting for its next attempt) by the time the claim is held.
async fn claim(db: &Db, hash: &str) -> Result<Option<Claim>, sqlx::Error> {
    let mut tx = None;
    if db.backend == crate::db::Backend::Postgres {
        // The first 32 bits of the sha256 as the lock's second key (the first names the
        // purpose): a collision only leaves the second report for the next round. The claim
        // lasts while its transaction is open, idle through the rendering and the send: a
        // database that ends idle transactions (`idle_in_transaction_session_timeout`, a
        // common hardening setting) would end the claim mid-send, and another server would
        // send the report again. The claim's own transaction lifts that limit for itself.
        let key = hash
            .get(..8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .map_or(0, |k| k as i32);
        let mut claim_tx = db.pool.begin().await?;
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
            .execute(&mut *claim_tx)
            .await?;
        let held: bool = sqlx::query(
            "SELECT CAST(CASE WHEN pg_try_advisory_xact_lock($1, $2) THEN 1 ELSE 0 END
                     AS BIGINT) AS held",
        )
        .bind(crate::db::LockPurpose::Delivery as i32)
        .bind(key)
        .fetch_one(&mut *claim_tx)
        .await?
        .get::<i64, _>("held")
            != 0;
        if !held {
            return Ok(None);
        }
        tx = Some(claim_tx);
    }
    // Read again now that it is held (what another server recorded before its claim ended).
    let row = sqlx::query(
        "SELECT status, attempts, next_attempt_unix FROM deliveries WHERE report_hash = $1",
    )
    .bind(hash)
    .fetch_optional(&db.pool)
    .await?;
    let attempts = match row {
        None => 0,
        Some(r) => {
            let status: String = r.get("status");
            let next: i64 = r.get("next_attempt_unix");
            if status == "sent" || next > unix_now() {
                if let Some(tx) = tx {
                    tx.rollback().await?;
                }
                return Ok(None);
            }
            r.get("attempts")
        }
    };
    Ok(Some(Claim { tx, attempts }))
}

async fn record(
    db: &Db,
    config: &DeliveryConfig,
    hash: &str,
    attempts: i64,
    outcome: Result<(String, String, PdfFacts), String>,
) -> Result<(), DeliveryError> {
    let case_id: String = sqlx::query("SELECT case_id FROM reports WHERE report_hash = $1")
        .bind(hash)
        .fetch_one(&db.pool)
        .await?
        .get("case_id");
    let now = unix_now();
    let (status, reference, document, error, next) = match &outcome {
        Ok((reference, sha, _)) => (
            "sent",
            Some(reference.clone()),
            Some(sha.clone()),
            None,
            now,
        ),
        Err(e) => {
            let wait = config
                .retry_base
                .saturating_mul(1u32 << (attempts - 1).clamp(0, 16) as u32)
                .min(Duration::from_secs(3600));
            (
                "retrying",
                None,
                None,
                Some(e.clone()),
                now + wait.as_secs().max(1) as i64,
            )
        }
    };
    // The delivery row, its audit row and (for a final report) the case's move to delivered
    // commit together: a failure after the send leaves none of them, and the report is sent
    // again (a transport takes a repeat as the same document), never left sent with its case
    // still reported.
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO deliveries (report_hash, case_id, status, attempts, transport, reference,
            document_sha256, last_error, next_attempt_unix, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (report_hash) DO UPDATE SET status = excluded.status,
            attempts = excluded.attempts, transport = excluded.transport,
            reference = excluded.reference, document_sha256 = excluded.document_sha256,
            last_error = excluded.last_error, next_attempt_unix = excluded.next_attempt_unix,
            updated_at = excluded.updated_at",
    )
    .bind(hash)
    .bind(&case_id)
    .bind(status)
    .bind(attempts)
    .bind(config.transport.name())
    .bind(reference)
    .bind(document)
    .bind(error.clone())
    .bind(next)
    .bind(rfc3339_utc(now))
    .execute(&mut *tx.tx)
    .await?;
    match outcome {
        Ok((_, _, facts)) => {
            // The case row before the audit trail's turn, which is always taken last.
            if facts.kind == ReportKind::Final && db.backend == crate::db::Backend::Postgres {
                sqlx::query("SELECT id FROM cases WHERE id = $1 FOR UPDATE")
                    .bind(&case_id)
                    .fetch_optional(&mut *tx.tx)
                    .await?;
            }
            db.audit_in(
                &mut tx,
                None,
                "report_delivered",
                Some(&case_id),
                None,
                hash,
            )
            .await?;
            if facts.kind == ReportKind::Final {
                sqlx::query(
                    "UPDATE cases SET status = 'delivered' WHERE id = $1 AND status = 'reported'",
                )
                .bind(&case_id)
                .execute(&mut *tx.tx)
                .await?;
            }
        }
        Err(e) => {
            tracing::warn!(
                "delivery of report {hash} (case {case_id}) failed, attempt {attempts}: {e}"
            );
            db.audit_in(
                &mut tx,
                None,
                "report_delivery_failed",
                Some(&case_id),
                None,
                &format!("{hash}: {e}"),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A case's deliveries, for the case record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub report_hash: String,
    /// "queued" (not tried yet), "waiting" (not tried yet because an earlier report of its
    /// case, the one an addendum amends say, is not sent: `waiting_for` names it, and its own
    /// row says why), "retrying" or "sent".
    pub status: String,
    /// For a waiting report: the hash of the earliest report of its case not sent, which must
    /// go first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    pub attempts: i64,
    pub transport: Option<String>,
    pub reference: Option<String>,
    pub document_sha256: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: Option<String>,
}

pub async fn case_deliveries(db: &Db, case_id: &str) -> Result<Vec<DeliveryStatus>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT reports.report_hash AS report_hash, deliveries.status AS status,
                deliveries.attempts AS attempts, deliveries.transport AS transport,
                deliveries.reference AS reference, deliveries.document_sha256 AS document_sha256,
                deliveries.last_error AS last_error, deliveries.updated_at AS updated_at
         FROM reports LEFT JOIN deliveries ON deliveries.report_hash = reports.report_hash
         WHERE reports.case_id = $1
         ORDER BY reports.{}",
        arrival_column(db)
    )))
    .bind(case_id)
    .fetch_all(&db.pool)
    .await?;
    // The earliest report of the case not sent: every later one not tried yet waits for it
    // (`deliver_due`'s rule).
    let mut first_unsent: Option<String> = None;
    Ok(rows
        .iter()
        .map(|r| {
            let hash: String = r.get("report_hash");
            let status: Option<String> = r.try_get("status").ok().flatten();
            let waiting_for = first_unsent.clone().filter(|_| status.is_none());
            if first_unsent.is_none() && status.as_deref() != Some("sent") {
                first_unsent = Some(hash.clone());
            }
            DeliveryStatus {
                report_hash: hash,
                status: match (status, &waiting_for) {
                    (Some(status), _) => status,
                    (None, Some(_)) => "waiting".into(),
                    (None, None) => "queued".into(),
                },
                waiting_for,
                attempts: r
                    .try_get::<Option<i64>, _>("attempts")
                    .ok()
                    .flatten()
                    .unwrap_or(0),
                transport: r.try_get("transport").ok().flatten(),
                reference: r.try_get("reference").ok().flatten(),
                document_sha256: r.try_get("document_sha256").ok().flatten(),
                last_error: r.try_get("last_error").ok().flatten(),
                updated_at: r.try_get("updated_at").ok().flatten(),
            }
        })
        .collect())
}

/// Store a key image (a PNG, e.g. from `overread render`) for a case's report, by the
/// radiologist `user_id` the case is assigned to. Returns its content key. Only before the
/// final report is signed: the report's PDF shows the key images it was signed with, and a
/// copy printed later shows the same.
pub async fn add_key_image(
    db: &Db,
    store: &Store,
    case_id: &str,
    user_id: &str,
    caption: &str,
    png: Vec<u8>,
) -> Result<String, KeyImageError> {
    KeyImage::from_png(&png, caption).map_err(KeyImageError::NotPng)?;
    // Checked before the image is stored (a refused one leaves nothing), and again below.
    // The radiologist's own: a case reassigned keeps the first reader's, which never print.
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM key_images WHERE case_id = $1 AND uploaded_by = $2",
    )
    .bind(case_id)
    .bind(user_id)
    .fetch_one(&db.pool)
    .await?;
    if count >= MAX_KEY_IMAGES {
        return Err(KeyImageError::TooMany);
    }
    let png = bytes::Bytes::from(png);
    let (key, new) = store.put(png.clone()).await?;
    let added = insert_key_image(db, store, case_id, user_id, caption, &key, png).await;
    // A refused image leaves nothing: the object this call wrote goes again, unless a row
    // took it meanwhile (the same image added by another call).
    if added.is_err() && new {
        forget_key_image(db, store, &key).await;
    }
    added.map(|()| key)
}

/// The row of key image `key` (stored), in a transaction that checks the case again.
async fn insert_key_image(
    db: &Db,
    store: &Store,
    case_id: &str,
    user_id: &str,
    caption: &str,
    key: &str,
    png: bytes::Bytes,
) -> Result<(), KeyImageError> {
    let mut tx = db.begin_write().await?;
    // The object is held against a refused call deleting it meanwhile (`forget_key_image`),
    // and written again if one did.
    db.lock_objects(&mut tx, &[key]).await?;
    if !store.exists(key).await? {
        store.put(png).await?;
    }
    // The case row is held (PostgreSQL; SQLite has one writer) against a report stored
    // meanwhile, which would make the case reported between this check and the insert, and
    // against the case going to another radiologist meanwhile (the caller's check was made
    // before the image was read and stored): their signed report would print this image.
    let sql = match db.backend {
        crate::db::Backend::Postgres => {
            "SELECT status, assigned_to FROM cases WHERE id = $1 FOR UPDATE"
        }
        crate::db::Backend::Sqlite => "SELECT status, assigned_to FROM cases WHERE id = $1",
    };
    let row = sqlx::query(sql)
        .bind(case_id)
        .fetch_optional(&mut *tx.tx)
        .await?;
    let (status, assigned_to): (String, Option<String>) = row.map_or_else(
        || (String::new(), None),
        |r| (r.get("status"), r.get("assigned_to")),
    );
    if assigned_to.as_deref() != Some(user_id) {
        return Err(KeyImageError::NotAssigned);
    }
    if matches!(status.as_str(), "reported" | "delivered") {
        return Err(KeyImageError::Reported(status));
    }
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM key_images WHERE case_id = $1 AND uploaded_by = $2",
    )
    .bind(case_id)
    .bind(user_id)
    .fetch_one(&mut *tx.tx)
    .await?;
    if count >= MAX_KEY_IMAGES {
        return Err(KeyImageError::TooMany);
    }
    sqlx::query(
        "INSERT INTO key_images (case_id, object_key, caption, uploaded_by, uploaded_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (case_id, object_key) DO UPDATE SET caption = excluded.caption,
            uploaded_by = excluded.uploaded_by, uploaded_at = excluded.uploaded_at",
    )
    .bind(case_id)
    .bind(key)
    .bind(caption)
    .bind(user_id)
    .bind(rfc3339_utc(unix_now()))
    .execute(&mut *tx.tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Delete the object of a refused key image unless a key image or an instance uses it, with
/// its key held (`Db::lock_objects`) as an insert holds it.
async fn forget_key_image(db: &Db, store: &Store, key: &str) {
    let forgotten: Result<(), KeyImageError> = async {
        let mut tx = db.begin_write().await?;
        db.lock_objects(&mut tx, &[key]).await?;
        let used = sqlx::query(
            "SELECT 1 AS one FROM key_images WHERE object_key = $1
             UNION ALL SELECT 1 AS one FROM instances WHERE object_key = $1",
        )
        .bind(key)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if used.is_none() {
            store.delete(key).await?;
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = forgotten {
        tracing::warn!("could not delete the object {key} of a refused key image: {e}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyImageError {
    #[error("{0}")]
    NotPng(String),
    #[error("a case carries at most {MAX_KEY_IMAGES} key images")]
    TooMany,
    #[error("the case is {0}: key images are added before the report is signed")]
    Reported(String),
    /// The case is not (or no longer) assigned to the one adding the image.
    #[error("the case is not assigned to the one adding the key image")]
    NotAssigned,
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failed rounds (a send whose outcome could not be recorded is sent again) come ever
    /// further apart, at most 15 minutes, not every poll.
    #[test]
    fn failed_rounds_back_off() {
        let poll = Duration::from_secs(5);
        let waits: Vec<u64> = (1..=10)
            .map(|n| after_failed_rounds(poll, n).as_secs())
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 900, 900, 900]);
        assert_eq!(after_failed_rounds(poll, u32::MAX).as_secs(), 900);
    }
}
