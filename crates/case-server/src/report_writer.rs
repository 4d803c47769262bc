//! Group commit of signed reports. Every accepted report is written by one writer task: it
//! takes the reports waiting at that moment (up to [`MAX_BATCH`]), writes them in one
//! transaction (for each: the report, the case's new status, the audit row, with the checks
//! made again inside it), commits once, and only then answers each request. One disk sync
//! serves the whole batch, so under load a report waits for about one commit instead of
//! queueing behind one commit per report; alone, a report is committed at once.
//!
//! A report whose checks fail writes nothing and is refused; the others go on. If a report
//! cannot be written cleanly (a database error, or a change by another server between check
//! and write), the whole batch is rolled back and written again one report per transaction, so
//! only that report fails. If a commit fails, its reports get the error and none is stored; the
//! workstation's outbox sends them again.

use std::sync::atomic::{AtomicU64, Ordering};

use case_protocol::Receipt;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Backend, Db, now};

/// The most reports committed together.
pub const MAX_BATCH: usize = 128;

/// One report to store (already verified by the API).
#[derive(Debug)]
pub struct ReportWrite {
    pub report_hash: String,
    pub case_id: String,
    /// `Some(hash)` for an addendum: the report it amends.
    pub amends: Option<String>,
    pub author_id: String,
    pub key_id: String,
    pub signed_json: String,
    pub canonical: Vec<u8>,
    pub remote_addr: Option<String>,
}

/// What became of a [`ReportWrite`].
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// Stored now; the receipt to send.
    Stored(Receipt),
    /// Stored before (a retry, or a concurrent copy): the original receipt.
    Duplicate(Receipt),
    /// The key was revoked or the case changed between the API's checks and the write.
    Changed(String),
    /// Another server on the same database is storing the same report: ask again.
    Retry(String),
}

type Job = (
    ReportWrite,
    oneshot::Sender<Result<WriteOutcome, sqlx::Error>>,
);

/// The handle the API holds; clones share one writer task, started on first use in the
/// runtime that first uses it.
#[derive(Debug, Clone, Default)]
pub struct ReportWriter {
    sender: std::sync::Arc<std::sync::OnceLock<mpsc::Sender<Job>>>,
    stats: std::sync::Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    reports: AtomicU64,
    rewritten: AtomicU64,
}

/// What the writer has done since the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (or tried) for a batch.
    pub batches: u64,
    /// Reports handled.
    pub reports: u64,
    /// Batches rolled back and written again one report at a time.
    pub rewritten: u64,
}

impl ReportWriter {
    /// Store `write` with the next batch; resolves once the batch is committed.
    pub async fn write(&self, db: &Db, write: ReportWrite) -> Result<WriteOutcome, sqlx::Error> {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
            tokio::spawn(writer_loop(db.clone(), receiver, self.stats.clone()));
            sender
        });
        let (reply, answer) = oneshot::channel();
        let closed = || sqlx::Error::PoolClosed;
        sender.send((write, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            reports: self.stats.reports.load(Ordering::Relaxed),
            rewritten: self.stats.rewritten.load(Ordering::Relaxed),
        }
    }
}

/// The one writer. One on SQLite, which has one writer at a time anyway; one on PostgreSQL
/// too, measured: concurrent writers there contend for shared row locks on the same user and
/// key rows (foreign-key checks) and were slower at every load tried (benches/README.md).
async fn writer_loop(db: Db, mut receiver: mpsc::Receiver<Job>, stats: std::sync::Arc<Counters>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // Take what is waiting (or wait for one report).
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .reports
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let outcomes = write_batch(&db, &batch, &stats).await;
        match outcomes {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    // The caller may have gone (connection closed): the report is stored anyway.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!("report batch not committed: {e}");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(sqlx::Error::Protocol(
                        "the report batch could not be committed".into(),
                    )));
                }
            }
        }
    }
}

/// Write a batch in one transaction. When a report of it cannot be written cleanly (a
/// database error, or a case another server moved between check and write), the batch is
/// rolled back and its reports are written again one transaction each, so that report alone
/// fails. `Err` only when the batch's transaction as a whole failed to begin or commit.
async fn write_batch(
    db: &Db,
    batch: &[Job],
    stats: &Counters,
) -> Result<Vec<Result<WriteOutcome, sqlx::Error>>, sqlx::Error> {
    let mut write = db.begin_write().await?;
    let jobs: Vec<&ReportWrite> = batch.iter().map(|(job, _)| job).collect();
    let written = write_jobs(db, &mut write.tx, &jobs).await;
    let mut outcomes = Vec::with_capacity(batch.len());
    for w in written.iter().flatten() {
        match w {
            Written::Clean(outcome) => outcomes.push(Ok(outcome.clone())),
            Written::Undo(_) => break,
        }
    }
    if outcomes.len() != batch.len() {
        drop(write); // rolls back
        stats.rewritten.fetch_add(1, Ordering::Relaxed);
        return Ok(write_each(db, batch).await);
    }
    write.commit().await?;
    Ok(outcomes)
}

/// Write `jobs` in the transaction, in order; one [`Written`] per job, or fewer when a job's
/// outcome is unknown (the caller then rewrites them one per transaction).
async fn write_jobs(
    db: &Db,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    jobs: &[&ReportWrite],
) -> Result<Vec<Written>, sqlx::Error> {
    match db.backend {
        Backend::Sqlite => {
            let mut all = Vec::with_capacity(jobs.len());
            for job in jobs {
                all.push(write_one_sqlite(tx, job).await?);
            }
            Ok(all)
        }
        Backend::Postgres => write_set_postgres(tx, jobs).await,
    }
}

/// PostgreSQL: the checks and writes of [`write_one_sqlite`] for a whole set of reports in one
/// statement (data-modifying common table expressions; one round trip instead of four per
/// report). The reports go in as a JSON array (`json_to_recordset`; sqlx's `Any` driver has no
/// array parameters). All parts of one statement see the same snapshot, so a report whose hash
/// or case came earlier in the set waits for the next round's statement, where it sees the
/// earlier one (a copy gets its receipt; a second final report finds the case reported).
async fn write_set_postgres(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    jobs: &[&ReportWrite],
) -> Result<Vec<Written>, sqlx::Error> {
    // The batch's cases first (in order), then the audit trail's turn
    // ([`Db::hold_audit_order`]): the turn is taken last, never held while waiting for a case
    // row another transaction holds (an upload into the case), where a reader of the trail
    // would wait behind it and every audited writer behind the reader.
    // `= ANY(ARRAY(...))`: looked up in the primary key. As `IN (SELECT ...)` the planner,
    // guessing 100 rows from the JSON, scanned the whole table below a few thousand cases,
    // once a batch, inside the serialized write.
    let cases: Vec<&str> = jobs.iter().map(|j| j.case_id.as_str()).collect();
    sqlx::query(
        "SELECT c.id FROM cases c
         WHERE c.id = ANY(ARRAY(SELECT json_array_elements_text($1::json)))
         ORDER BY c.id FOR UPDATE",
    )
    .bind(serde_json::to_string(&cases).unwrap_or_else(|_| "[]".into()))
    .fetch_all(&mut **tx)
    .await?;
    Db::hold_audit_order(Backend::Postgres, tx).await?;
    let mut out: Vec<Option<Written>> = (0..jobs.len()).map(|_| None).collect();
    let mut remaining: Vec<usize> = (0..jobs.len()).collect();
    while !remaining.is_empty() {
        let mut round = Vec::with_capacity(remaining.len());
        let mut later = Vec::new();
        let mut hashes = std::collections::HashSet::new();
        let mut cases = std::collections::HashSet::new();
        for i in remaining {
            let job = jobs[i];
            if hashes.insert(job.report_hash.as_str()) && cases.insert(job.case_id.as_str()) {
                round.push(i);
            } else {
                later.push(i);
            }
        }
        postgres_round(tx, jobs, &round, &mut out).await?;
        remaining = later;
    }
    // Every report has its outcome, or the batch is written again one by one.
    Ok(out.into_iter().map_while(|w| w).collect())
}

/// One statement over `jobs[round]` (distinct hashes and cases), outcomes into `out`.
async fn postgres_round(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    jobs: &[&ReportWrite],
    round: &[usize],
    out: &mut [Option<Written>],
) -> Result<(), sqlx::Error> {
    use base64::Engine as _;
    let received_at = now();
    let input: Vec<serde_json::Value> = round
        .iter()
        .map(|&i| {
            let job = jobs[i];
            serde_json::json!({
                "ord": i as i64,
                "report_hash": job.report_hash,
                "case_id": job.case_id,
                "kind": if job.amends.is_some() { "addendum" } else { "final" },
                "amends": job.amends,
                "author_id": job.author_id,
                "key_id": job.key_id,
                "signed_json": job.signed_json,
                "canonical": base64::engine::general_purpose::STANDARD.encode(&job.canonical),
                "received_at": received_at,
                "remote_addr": job.remote_addr,
                "is_addendum": i64::from(job.amends.is_some()),
            })
        })
        .collect();
    let rows = sqlx::query(
        "WITH input AS (
             SELECT * FROM json_to_recordset(CAST($1 AS json)) AS x(
                 ord bigint, report_hash text, case_id text, kind text, amends text,
                 author_id text, key_id text, signed_json text, canonical text,
                 received_at text, remote_addr text, is_addendum bigint)
         ), prior AS (
             -- One primary-key lookup a report: joined, the planner (guessing 100 rows from
             -- the JSON) hashed the whole reports table below a few thousand rows, once a
             -- round. LIMIT 1 (the hash is unique) keeps the subquery from being pulled up
             -- into that join.
             SELECT input.ord, r.case_id, r.received_at
             FROM input CROSS JOIN LATERAL (
                 SELECT reports.case_id, reports.received_at FROM reports
                 WHERE reports.report_hash = input.report_hash LIMIT 1
             ) AS r
         ), valid AS (
             SELECT input.* FROM input
             JOIN signing_keys ON signing_keys.key_id = input.key_id
                  AND signing_keys.user_id = input.author_id
                  AND signing_keys.revoked_at IS NULL
             JOIN cases ON cases.id = input.case_id AND cases.assigned_to = input.author_id
                  AND (input.is_addendum = 1 OR cases.status = 'reading')
             WHERE NOT EXISTS (SELECT 1 FROM prior WHERE prior.ord = input.ord)
         ), ins AS (
             INSERT INTO reports (report_hash, case_id, kind, amends, author_id, key_id,
                                  signed_json, canonical, received_at)
             SELECT report_hash, case_id, kind, amends, author_id, key_id, signed_json,
                    decode(canonical, 'base64'), received_at
             FROM valid ORDER BY ord
             ON CONFLICT (report_hash) DO NOTHING
             RETURNING report_hash
         ), upd AS (
             UPDATE cases SET status = 'reported' FROM valid
             WHERE cases.id = valid.case_id AND valid.is_addendum = 0
               AND cases.status = 'reading' AND cases.assigned_to = valid.author_id
               AND valid.report_hash IN (SELECT report_hash FROM ins)
             RETURNING cases.id
         ), aud AS (
             INSERT INTO audit (at, user_id, action, case_id, remote_addr, detail)
             SELECT received_at, author_id, 'report_submit', case_id, remote_addr, report_hash
             FROM valid WHERE report_hash IN (SELECT report_hash FROM ins) ORDER BY ord
             RETURNING detail
         )
         SELECT input.ord AS ord,
                (SELECT case_id FROM prior WHERE prior.ord = input.ord) AS stored_case,
                (SELECT received_at FROM prior WHERE prior.ord = input.ord) AS stored_at,
                CAST((SELECT count(*) FROM valid WHERE valid.ord = input.ord) AS BIGINT) AS valid,
                CAST((SELECT count(*) FROM ins WHERE ins.report_hash = input.report_hash)
                     AS BIGINT) AS inserted,
                CAST((SELECT count(*) FROM upd WHERE upd.id = input.case_id) AS BIGINT)
                    AS updated,
                CAST((SELECT count(*) FROM aud WHERE aud.detail = input.report_hash) AS BIGINT)
                    AS audited
         FROM input ORDER BY input.ord",
    )
    .bind(serde_json::Value::Array(input).to_string())
    .fetch_all(&mut **tx)
    .await?;
    for row in &rows {
        let i = usize::try_from(row.get::<i64, _>("ord")).unwrap_or(usize::MAX);
        let Some(job) = jobs.get(i) else { continue };
        out[i] = Some(postgres_outcome(
            job,
            row,
            received_at.clone(),
            i64::from(job.amends.is_some()),
        ));
    }
    Ok(())
}

/// Each report in a transaction of its own (after a batch had to be rolled back).
async fn write_each(db: &Db, batch: &[Job]) -> Vec<Result<WriteOutcome, sqlx::Error>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for (job, _) in batch {
        let outcome = async {
            let mut write = db.begin_write().await?;
            let written = write_jobs(db, &mut write.tx, &[job]).await?;
            match written.into_iter().next() {
                None => Err(sqlx::Error::Protocol("no outcome for the report".into())),
                Some(Written::Clean(outcome)) => {
                    write.commit().await?;
                    Ok(outcome)
                }
                Some(Written::Undo(outcome)) => Ok(outcome), // dropped: rolled back
            }
        }
        .await;
        outcomes.push(outcome);
    }
    outcomes
}

/// What one report's statements left in the transaction.
enum Written {
    /// All of it written, or none of it: the transaction may go on.
    Clean(WriteOutcome),
    /// Part of it written before a conflict showed: the transaction must be rolled back.
    Undo(WriteOutcome),
}

/// What one report's row of [`write_set_postgres`] says.
fn postgres_outcome(
    job: &ReportWrite,
    row: &sqlx::any::AnyRow,
    received_at: String,
    is_addendum: i64,
) -> Written {
    if let (Some(case_id), Some(stored_at)) = (
        row.get::<Option<String>, _>("stored_case"),
        row.get::<Option<String>, _>("stored_at"),
    ) {
        return Written::Clean(WriteOutcome::Duplicate(Receipt {
            case_id,
            report_hash: job.report_hash.clone(),
            received_at: stored_at,
            duplicate: true,
        }));
    }
    if row.get::<i64, _>("valid") != 1 {
        return Written::Clean(WriteOutcome::Changed(
            "the key was revoked, or the case reassigned or moved on, while the report was \
             checked"
                .into(),
        ));
    }
    if row.get::<i64, _>("inserted") != 1 {
        // Another server on the database stored the same report after this one looked.
        return Written::Clean(WriteOutcome::Retry(
            "the report is being stored: send it again for its receipt".into(),
        ));
    }
    // A final report moves its case; another server on the database may have moved it first.
    if row.get::<i64, _>("updated") != 1 - is_addendum || row.get::<i64, _>("audited") != 1 {
        return Written::Undo(WriteOutcome::Changed(format!(
            "case {} changed status meanwhile",
            job.case_id
        )));
    }
    Written::Clean(WriteOutcome::Stored(Receipt {
        case_id: job.case_id.clone(),
        report_hash: job.report_hash.clone(),
        received_at,
        duplicate: false,
    }))
}

/// SQLite (which has no data-modifying common table expressions): the checks and writes one
/// statement at a time, each a cheap call into the library. This server is SQLite's only
/// writer while the batch runs, so nothing changes between the check and the writes.
async fn write_one_sqlite(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    job: &ReportWrite,
) -> Result<Written, sqlx::Error> {
    let received_at = now();
    // In one statement: a copy stored before (a retry racing its original), and what the API
    // checked, checked again where nothing can change it meanwhile: the key is the author's
    // and not revoked, the case is the author's and (for a final report) being read.
    let row = sqlx::query(
        "SELECT (SELECT case_id FROM reports WHERE report_hash = $1) AS stored_case,
                (SELECT received_at FROM reports WHERE report_hash = $1) AS stored_at,
                CAST(CASE WHEN EXISTS (
                    SELECT 1 FROM signing_keys JOIN cases ON cases.id = $2
                    WHERE signing_keys.key_id = $3 AND signing_keys.user_id = $4
                      AND signing_keys.revoked_at IS NULL AND cases.assigned_to = $4
                      AND ($5 = 1 OR cases.status = 'reading')
                ) THEN 1 ELSE 0 END AS BIGINT) AS valid",
    )
    .bind(&job.report_hash)
    .bind(&job.case_id)
    .bind(&job.key_id)
    .bind(&job.author_id)
    .bind(i64::from(job.amends.is_some()))
    .fetch_one(&mut **tx)
    .await?;
    if let (Some(case_id), Some(received_at)) = (
        row.get::<Option<String>, _>("stored_case"),
        row.get::<Option<String>, _>("stored_at"),
    ) {
        return Ok(Written::Clean(WriteOutcome::Duplicate(Receipt {
            case_id,
            report_hash: job.report_hash.clone(),
            received_at,
            duplicate: true,
        })));
    }
    if row.get::<i64, _>("valid") != 1 {
        return Ok(Written::Clean(WriteOutcome::Changed(
            "the key was revoked, or the case reassigned or moved on, while the report was \
             checked"
                .into(),
        )));
    }
    sqlx::query(
        "INSERT INTO reports (report_hash, case_id, kind, amends, author_id, key_id, signed_json,
                              canonical, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&job.report_hash)
    .bind(&job.case_id)
    .bind(if job.amends.is_some() {
        "addendum"
    } else {
        "final"
    })
    .bind(&job.amends)
    .bind(&job.author_id)
    .bind(&job.key_id)
    .bind(&job.signed_json)
    .bind(&job.canonical)
    .bind(&received_at)
    .execute(&mut **tx)
    .await?;
    if job.amends.is_none() {
        let moved = sqlx::query(
            "UPDATE cases SET status = 'reported'
             WHERE id = $1 AND status = 'reading' AND assigned_to = $2",
        )
        .bind(&job.case_id)
        .bind(&job.author_id)
        .execute(&mut **tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(Written::Undo(WriteOutcome::Changed(format!(
                "case {} changed status meanwhile",
                job.case_id
            ))));
        }
    }
    sqlx::query(
        "INSERT INTO audit (at, user_id, action, case_id, remote_addr, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&received_at)
    .bind(&job.author_id)
    .bind("report_submit")
    .bind(&job.case_id)
    .bind(&job.remote_addr)
    .bind(&job.report_hash)
    .execute(&mut **tx)
    .await?;
    Ok(Written::Clean(WriteOutcome::Stored(Receipt {
        case_id: job.case_id.clone(),
        report_hash: job.report_hash.clone(),
        received_at,
        duplicate: false,
    })))
}
