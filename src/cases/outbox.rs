//! The durable outbox: `pending/<report hash>.json` holds a signed report from before it is
//! sent until its receipt is written to `receipts/`; a report the server refuses for good moves
//! to `refused/` beside a note of why, listed by [`Outbox::refused`] until the text is taken
//! back into a draft and a report of its case is signed ([`Outbox::taken_back`] then moves it
//! to `refused/taken-back/`, kept for good). Every file is written to a temporary name, synced and
//! renamed, so a crash leaves either the whole file or none. Retrying is safe: the server
//! answers a resent report with its original receipt.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use case_protocol::{Receipt, SignedReport, report_hash};

use super::client::{CaseClient, ClientError};

/// Reports sent at once by [`Outbox::deliver`].
pub const CONCURRENCY: usize = 8;

/// What happened to one pending report.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Delivered(Receipt),
    Refused {
        report_hash: String,
        status: u16,
        message: String,
    },
    /// Still pending (kept for the next attempt).
    Pending {
        report_hash: String,
        error: String,
        /// The login expired: no attempt can succeed until the user logs in again.
        needs_login: bool,
    },
}

/// A signed report the case server refused for good, kept in `refused/` with why.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedReport {
    pub hash: String,
    pub signed: SignedReport,
    /// The server's answer ("409: ...").
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A temporary name of its own, so two writers of the same file (the app and the CLI) do
    // not rename each other's half-written copy; owner-only (0600): a report's text.
    let mut partial = imaging::partial::private_beside(path)?;
    partial.write_all(bytes)?;
    imaging::partial::persist(partial, path)
}

/// The hashes of the reports in `dir` (its `HASH.json` files), sorted; none where it cannot
/// be read.
fn hashes_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".json").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `dir/HASH.json` and the note of why beside it. An error says what failed, never the
/// file's text (a parse error's message can quote it: only its kind and place are given).
fn read_refused(dir: &Path, hash: &str) -> Result<RefusedReport, String> {
    let bytes = std::fs::read(dir.join(format!("{hash}.json"))).map_err(|e| e.to_string())?;
    let signed = serde_json::from_slice::<SignedReport>(&bytes).map_err(|e| {
        format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let reason = std::fs::read_to_string(dir.join(format!("{hash}.error.txt")))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|_| "no reason kept".into());
    Ok(RefusedReport {
        hash: hash.to_string(),
        signed,
        reason,
    })
}

impl Outbox {
    /// The outbox in `dir` (created with its subfolders), owner-only (0700; its files 0600):
    /// signed reports hold findings and impressions, as drafts do.
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        imaging::partial::private_dir(dir)?;
        for sub in ["pending", "receipts", "refused"] {
            imaging::partial::private_dir(&dir.join(sub))?;
        }
        Ok(Outbox {
            dir: dir.to_path_buf(),
        })
    }

    /// The outbox in `dir` if one was made there (nothing is created): for reading what it
    /// holds without making folders for the asking.
    pub fn existing(dir: &Path) -> Option<Outbox> {
        dir.join("pending").is_dir().then(|| Outbox {
            dir: dir.to_path_buf(),
        })
    }

    /// `outbox` in the user's data folder ([`crate::data_dir`]).
    pub fn default_dir() -> PathBuf {
        crate::data_dir().join("outbox")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keep a signed report until it is receipted. Returns its hash.
    pub fn enqueue(&self, signed: &SignedReport) -> Result<String, String> {
        let hash = report_hash(&signed.report).map_err(|e| e.to_string())?.0;
        if self
            .dir
            .join("receipts")
            .join(format!("{hash}.json"))
            .exists()
        {
            return Ok(hash);
        }
        let text = serde_json::to_vec_pretty(signed).map_err(|e| e.to_string())?;
        write_atomic(
            &self.dir.join("pending").join(format!("{hash}.json")),
            &text,
        )
        .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        Ok(hash)
    }

    /// Hashes of the signed reports whose outbox file was damaged and set aside (never sent).
    pub fn damaged(&self) -> Vec<String> {
        hashes_in(&self.dir.join("damaged"))
    }

    /// Hashes of the reports waiting to be sent.
    pub fn pending(&self) -> Vec<String> {
        hashes_in(&self.dir.join("pending"))
    }

    /// The stored receipt of a report, if it was delivered.
    pub fn receipt(&self, hash: &str) -> Option<Receipt> {
        let text =
            std::fs::read_to_string(self.dir.join("receipts").join(format!("{hash}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Reports the server refused for good that no draft has taken back yet
    /// ([`Outbox::taken_back`]), in the order they were signed. A file that cannot be read is
    /// left where it is and said in the log (by its hash only).
    pub fn refused(&self) -> Vec<RefusedReport> {
        let dir = self.dir.join("refused");
        let mut out: Vec<RefusedReport> = hashes_in(&dir)
            .into_iter()
            .filter_map(|hash| match read_refused(&dir, &hash) {
                Ok(refused) => Some(refused),
                Err(e) => {
                    tracing::warn!("outbox: refused report {hash} unreadable: {e}");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.signed.report.signed_at, &a.hash).cmp(&(&b.signed.report.signed_at, &b.hash))
        });
        out
    }

    /// A refused report's text went back into a draft (to be signed again): it moves, with
    /// its note, to `refused/taken-back/`, kept there for good (a signed report is never
    /// deleted) and no longer offered by [`Outbox::refused`].
    pub fn taken_back(&self, hash: &str) -> std::io::Result<()> {
        let from = self.dir.join("refused");
        let to = from.join("taken-back");
        imaging::partial::private_dir(&to)?;
        for name in [format!("{hash}.json"), format!("{hash}.error.txt")] {
            match std::fs::rename(from.join(&name), to.join(&name)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        std::fs::File::open(&from)?.sync_all()?;
        std::fs::File::open(&to)?.sync_all()
    }

    /// Whether a refused report was taken back into a draft and set aside
    /// ([`Outbox::taken_back`]).
    pub fn was_taken_back(&self, hash: &str) -> bool {
        self.dir
            .join("refused")
            .join("taken-back")
            .join(format!("{hash}.json"))
            .exists()
    }

    /// Send every pending report, up to [`CONCURRENCY`] at a time, each with up to `attempts`
    /// tries (waiting `first_wait`, then twice as long each time) while the server cannot be
    /// reached or is unavailable. A refused report moves aside; an expired login leaves
    /// everything pending. Final reports go before addenda, and an addendum whose final report
    /// is still pending waits for it (the server refuses an addendum to a report it has not
    /// received, and a refusal is for good). Returns one [`Delivery`] per pending report, in
    /// hash order.
    pub async fn deliver(
        &self,
        client: &CaseClient,
        attempts: u32,
        first_wait: Duration,
    ) -> Vec<Delivery> {
        // Each pending report read once: what it amends, and (a final) its case and signing.
        let read: Vec<(usize, String, Option<SignedReport>)> = self
            .pending()
            .into_iter()
            .enumerate()
            .map(|(i, hash)| {
                let signed = self.read_pending(&hash);
                (i, hash, signed)
            })
            .collect();
        let amends_of =
            |signed: &Option<SignedReport>| match signed.as_ref().map(|s| &s.report.kind) {
                Some(case_protocol::ReportKind::Addendum { amends }) => Some(amends.clone()),
                _ => None,
            };
        // One final report a case a round, the first signed: two (a restart or a crash left
        // the panel unaware of the first) sent at once made the server's choice between them
        // chance; this way the first is the report and the second is refused after it (and
        // listed, for its text to be taken back into an addendum). An unreadable file goes to
        // `deliver_one`, which sets a damaged one aside (`damaged/`) and says so.
        let mut first_of_case: std::collections::HashMap<&str, (&str, &str)> =
            std::collections::HashMap::new();
        for (_, hash, signed) in &read {
            if let Some(s) = signed
                && amends_of(signed).is_none()
            {
                let key = (s.report.signed_at.as_str(), hash.as_str());
                let earliest = first_of_case
                    .entry(s.report.case_id.as_str())
                    .or_insert(key);
                if key < *earliest {
                    *earliest = key;
                }
            }
        }
        let mut firsts = Vec::new();
        let mut held = Vec::new();
        let mut addenda = Vec::new();
        for (i, hash, signed) in &read {
            match (amends_of(signed), signed) {
                (Some(amends), _) => addenda.push((*i, hash.clone(), Some(amends))),
                (None, Some(s))
                    if first_of_case
                        .get(s.report.case_id.as_str())
                        .is_some_and(|(_, first)| *first != hash.as_str()) =>
                {
                    held.push((*i, hash.clone()));
                }
                (None, _) => firsts.push((*i, hash.clone())),
            }
        }
        let mut out = self.deliver_all(client, firsts, attempts, first_wait).await;
        for (i, hash) in held {
            out.push((
                i,
                Delivery::Pending {
                    error: "another final report of its case, signed before it, goes first".into(),
                    report_hash: hash,
                    needs_login: false,
                },
            ));
        }
        let still: std::collections::HashSet<String> = self.pending().into_iter().collect();
        let mut ready = Vec::new();
        for (i, hash, amends) in addenda {
            match amends.filter(|a| still.contains(a)) {
                Some(base) => out.push((
                    i,
                    Delivery::Pending {
                        error: format!(
                            "waits for the report it amends ({base}) to be received first"
                        ),
                        report_hash: hash,
                        needs_login: false,
                    },
                )),
                None => ready.push((i, hash)),
            }
        }
        out.extend(self.deliver_all(client, ready, attempts, first_wait).await);
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, d)| d).collect()
    }

    /// A pending report as signed (None for an unreadable file).
    fn read_pending(&self, hash: &str) -> Option<SignedReport> {
        let path = self.dir.join("pending").join(format!("{hash}.json"));
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// The final report of `case_id` waiting in the outbox (the first signed, where a crash or
    /// a restart left two), with its hash: the report a new draft of the case amends.
    pub fn pending_final(&self, case_id: &str) -> Option<(String, SignedReport)> {
        self.pending()
            .into_iter()
            .filter_map(|hash| self.read_pending(&hash).map(|s| (hash, s)))
            .filter(|(_, s)| {
                s.report.case_id == case_id
                    && matches!(s.report.kind, case_protocol::ReportKind::Final)
            })
            .min_by(|a, b| (&a.1.report.signed_at, &a.0).cmp(&(&b.1.report.signed_at, &b.0)))
    }

    /// `hashes` (with their places in the answer) sent at once, [`CONCURRENCY`] in flight.
    async fn deliver_all(
        &self,
        client: &CaseClient,
        hashes: Vec<(usize, String)>,
        attempts: u32,
        first_wait: Duration,
    ) -> Vec<(usize, Delivery)> {
        let mut tasks = tokio::task::JoinSet::new();
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        for (i, hash) in hashes {
            let (outbox, client, limit) = (self.clone(), client.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (
                    i,
                    outbox
                        .deliver_one(&client, &hash, attempts, first_wait)
                        .await,
                )
            });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(d) => out.push(d),
                Err(e) => tracing::error!("outbox: a delivery task failed: {e}"),
            }
        }
        out
    }

    /// Send one pending report (see [`Outbox::deliver`]).
    pub async fn deliver_one(
        &self,
        client: &CaseClient,
        hash: &str,
        attempts: u32,
        first_wait: Duration,
    ) -> Delivery {
        let hash = hash.to_string();
        let path = self.dir.join("pending").join(format!("{hash}.json"));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Another sender may have settled it meanwhile.
                if let Some(receipt) = self.receipt(&hash) {
                    return Delivery::Delivered(receipt);
                }
                return Delivery::Pending {
                    report_hash: hash,
                    error: format!("unreadable outbox file: {e}"),
                    needs_login: false,
                };
            }
        };
        let signed: SignedReport = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                // Written whole or not at all (`write_atomic`), so damaged on disk: set aside
                // in `damaged/`, kept and said, not tried again every round (where it would
                // hold the outbox busy and hide that the case has a report signed).
                let aside = self.set_aside_damaged(&path, &hash);
                return Delivery::Pending {
                    report_hash: hash.clone(),
                    error: match aside {
                        Ok(to) => format!(
                            "outbox file {hash}.json is damaged ({e}); moved to {}: nothing \
                             of it can be sent",
                            to.display()
                        ),
                        Err(io) => format!(
                            "outbox file {hash}.json is damaged ({e}) and could not be set \
                             aside ({io})"
                        ),
                    },
                    needs_login: false,
                };
            }
        };
        // One workstation, several radiologists: a report goes with its author's login only
        // (the server refuses another's, and a refusal would set it aside for good). A
        // login whose user is not known sends nothing.
        if client.user() != Some(signed.report.author.user_id.as_str()) {
            return Delivery::Pending {
                report_hash: hash,
                error: format!(
                    "signed by {}: sent when they sign in",
                    signed.report.author.user_id
                ),
                // Without a user there is no login to send with at all.
                needs_login: client.user().is_none(),
            };
        }
        let mut wait = first_wait;
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match client.submit(&signed).await {
                Err(e) if e.is_retryable() && attempt < attempts.max(1) => {
                    tokio::time::sleep(e.wait_before_retry(wait)).await;
                    wait *= 2;
                }
                other => break other,
            }
        };
        match result {
            // A receipt is for this report or for none: one naming another hash or case is
            // not taken as delivery (the report stays pending, said).
            Ok(receipt)
                if receipt.report_hash != hash || receipt.case_id != signed.report.case_id =>
            {
                tracing::error!(
                    "outbox: the case server's receipt names report {} of case {}, not the one sent",
                    receipt.report_hash,
                    receipt.case_id
                );
                Delivery::Pending {
                    report_hash: hash,
                    error: "the case server's receipt names another report; kept, will resend"
                        .into(),
                    needs_login: false,
                }
            }
            Ok(receipt) => match self.settle(&hash, &receipt) {
                Ok(()) => Delivery::Delivered(receipt),
                Err(e) => Delivery::Pending {
                    report_hash: hash,
                    error: format!("receipted but not recorded ({e}); will resend"),
                    needs_login: false,
                },
            },
            Err(ClientError::Refused { status, message }) => {
                let note = format!("{status}: {message}\n");
                let moved = write_atomic(
                    &self.dir.join("refused").join(format!("{hash}.error.txt")),
                    note.as_bytes(),
                )
                .and_then(|()| {
                    std::fs::rename(&path, self.dir.join("refused").join(format!("{hash}.json")))
                })
                // Both folders' entries survive a power loss: the report never comes back
                // to pending (to be sent again) after its text was given back.
                .and_then(|()| std::fs::File::open(self.dir.join("refused"))?.sync_all())
                .and_then(|()| std::fs::File::open(self.dir.join("pending"))?.sync_all());
                match moved {
                    Ok(()) => Delivery::Refused {
                        report_hash: hash,
                        status,
                        message,
                    },
                    // Still in `pending/`: not given back as refused (the next round, refused
                    // again, tries the move again), so it is never both.
                    Err(e) => {
                        tracing::error!("outbox: could not move a refused report aside: {e}");
                        Delivery::Pending {
                            report_hash: hash,
                            error: format!(
                                "refused by the case server ({status}: {message}) but not set \
                                 aside ({e}): kept pending"
                            ),
                            needs_login: false,
                        }
                    }
                }
            }
            Err(e) => Delivery::Pending {
                report_hash: hash,
                needs_login: matches!(e, ClientError::Unauthorized(_)),
                error: e.to_string(),
            },
        }
    }

    /// Move a damaged pending file to `damaged/` (folder made owner-only, both folders
    /// synced); where it went.
    fn set_aside_damaged(&self, path: &Path, hash: &str) -> std::io::Result<PathBuf> {
        let damaged = self.dir.join("damaged");
        imaging::partial::private_dir(&damaged)?;
        let to = damaged.join(format!("{hash}.json"));
        std::fs::rename(path, &to)?;
        std::fs::File::open(&damaged)?.sync_all()?;
        std::fs::File::open(self.dir.join("pending"))?.sync_all()?;
        tracing::error!(
            "outbox: a damaged pending file was moved to {}",
            to.display()
        );
        Ok(to)
    }

    /// Record the receipt, then (only then) drop the pending copy.
    fn settle(&self, hash: &str, receipt: &Receipt) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(receipt).map_err(std::io::Error::other)?;
        write_atomic(
            &self.dir.join("receipts").join(format!("{hash}.json")),
            &text,
        )?;
        match std::fs::remove_file(self.dir.join("pending").join(format!("{hash}.json"))) {
            // Another sender (the CLI beside the app) settled it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// How the [`OutboxWorker`] paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Wait after the first failed round; doubled after each further one.
    pub first: Duration,
    /// The longest wait between failed rounds.
    pub max: Duration,
    /// Wait between rounds while nothing fails (reports queued by another program, such as
    /// `overread report submit`, are picked up then; the app nudges for its own).
    pub idle: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_secs(2),
            max: Duration::from_secs(300),
            idle: Duration::from_secs(60),
        }
    }
}

/// What the [`OutboxWorker`] last saw, for the app to show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxStatus {
    /// Reports still waiting for a receipt.
    pub pending: usize,
    /// Receipts of the reports delivered since the worker started, oldest first.
    pub delivered: Vec<Receipt>,
    /// Reports the server refused for good since the worker started: (hash, reason).
    pub refused: Vec<(String, String)>,
    /// Why the last round left reports pending.
    pub last_error: Option<String>,
    /// The login expired: nothing is sent until [`OutboxWorker::set_client`] gives a new one.
    pub needs_login: bool,
    /// Signed reports whose outbox file was found damaged and set aside in `damaged/` (this
    /// session's and earlier ones'): never sent, kept there, said until someone removes them.
    pub damaged: usize,
    /// Rounds run so far.
    pub rounds: u64,
}

#[derive(Debug, Default)]
struct WorkerState {
    status: OutboxStatus,
    client: Option<CaseClient>,
    /// Counts `set_client` calls: a round's refused login only counts if no new login came
    /// while it ran.
    generation: u64,
    woken: bool,
    stop: bool,
}

#[derive(Debug, Default)]
struct WorkerShared {
    state: std::sync::Mutex<WorkerState>,
    wake: std::sync::Condvar,
}

impl WorkerShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorkerState> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The outbox's background sender: a thread of its own that waits on the network runtime
/// ([`super::net`]), so the frame loop never waits on the network. It sends what is pending at once (reports left by an earlier run of the app
/// included), again after every [`OutboxWorker::nudge`], and while the server is away it
/// retries with doubling waits ([`Backoff`]). Dropping it asks the thread to stop, without
/// waiting for a round in flight; nothing pending is lost, since the pending files stay on
/// disk for the next start.
#[derive(Debug)]
pub struct OutboxWorker {
    shared: std::sync::Arc<WorkerShared>,
}

impl OutboxWorker {
    pub fn spawn(
        outbox: Outbox,
        client: CaseClient,
        backoff: Backoff,
    ) -> std::io::Result<OutboxWorker> {
        let shared = std::sync::Arc::new(WorkerShared::default());
        shared.lock().client = Some(client);
        let runtime = super::net::runtime().map_err(std::io::Error::other)?;
        let thread_shared = shared.clone();
        // Never joined (see the Drop below): the handle is not kept.
        std::thread::Builder::new()
            .name("outbox".into())
            .spawn(move || worker_loop(&outbox, &thread_shared, runtime, backoff))?;
        Ok(OutboxWorker { shared })
    }

    /// Send now (a report was just queued).
    pub fn nudge(&self) {
        self.shared.lock().woken = true;
        self.shared.wake.notify_all();
    }

    /// A new login (after [`OutboxStatus::needs_login`]); sends at once.
    pub fn set_client(&self, client: CaseClient) {
        {
            let mut state = self.shared.lock();
            state.client = Some(client);
            state.generation += 1;
            state.status.needs_login = false;
            state.woken = true;
        }
        self.shared.wake.notify_all();
    }

    /// The user whose login sends (only their reports go: the server takes a report from its
    /// author alone).
    pub fn sender(&self) -> Option<String> {
        self.shared
            .lock()
            .client
            .as_ref()
            .and_then(|c| c.user().map(str::to_string))
    }

    /// The login expired (what [`OutboxWorker::status`] says, without copying it all).
    pub fn needs_login(&self) -> bool {
        self.shared.lock().status.needs_login
    }

    pub fn status(&self) -> OutboxStatus {
        self.shared.lock().status.clone()
    }

    /// How many reports the server refused since the worker started (cheaper than
    /// [`OutboxWorker::status`], for asking every frame).
    pub fn refusals(&self) -> usize {
        self.shared.lock().status.refused.len()
    }
}

impl Drop for OutboxWorker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        // Not joined: the window drops this as it closes, and a round in flight (8 requests,
        // each up to the client's 30 s on a server that accepts and never answers) would
        // hold the close (found by review). The thread ends at its next look at `stop`, or
        // with the process; what it had not sent stays pending for the next start, and a
        // report sent twice is received once.
    }
}

fn worker_loop(
    outbox: &Outbox,
    shared: &WorkerShared,
    runtime: &tokio::runtime::Runtime,
    backoff: Backoff,
) {
    let mut failed_rounds: u32 = 0;
    loop {
        let (client, generation) = {
            let mut state = shared.lock();
            if state.stop {
                return;
            }
            state.woken = false;
            let client = if state.status.needs_login {
                None
            } else {
                state.client.clone()
            };
            (client, state.generation)
        };
        let wait = match client {
            None => backoff.max,
            Some(client) => {
                let results = runtime.block_on(outbox.deliver(&client, 1, Duration::ZERO));
                // Counted before the lock is taken: the window asks for the status every frame,
                // and a folder listing (a network home) must not hold it up.
                let pending = outbox.pending().len();
                let damaged = outbox.damaged().len();
                let mut state = shared.lock();
                // A login given while this round ran is not undone by its refusals.
                let current = state.generation == generation;
                let status = &mut state.status;
                status.rounds += 1;
                status.last_error = None;
                for d in results {
                    match d {
                        Delivery::Delivered(receipt) => status.delivered.push(receipt),
                        Delivery::Refused {
                            report_hash,
                            status: code,
                            message,
                        } => status
                            .refused
                            .push((report_hash, format!("{code}: {message}"))),
                        Delivery::Pending {
                            error, needs_login, ..
                        } => {
                            status.needs_login |= needs_login && current;
                            status.last_error = Some(error);
                        }
                    }
                }
                status.pending = pending;
                status.damaged = damaged;
                if status.pending == 0 {
                    failed_rounds = 0;
                    backoff.idle
                } else {
                    failed_rounds = failed_rounds.saturating_add(1);
                    let doubled = backoff
                        .first
                        .saturating_mul(1u32 << (failed_rounds - 1).min(16));
                    doubled.min(backoff.max)
                }
            }
        };
        let state = shared.lock();
        let (state, _) = shared
            .wake
            .wait_timeout_while(state, wait, |s| !s.woken && !s.stop)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.stop {
            return;
        }
    }
}
