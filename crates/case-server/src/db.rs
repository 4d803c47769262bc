//! The database: a SQLite file by default (WAL, synchronous FULL: a receipt is only sent for a
//! report that is on disk) or PostgreSQL by URL, migrations on open, and the operations the API
//! and the command line share.
//!
//! Both backends run the same SQL through sqlx's `Any` driver: `$N` placeholders (both accept
//! them), text timestamps (RFC 3339 UTC, which sort as time), `BIGINT`/`INTEGER` for every
//! integer (both decode as `i64`). The few places where the dialects differ ask
//! [`Db::backend`]. Each backend has its own migration folder with the same tables and rules.

use case_protocol::{
    CaseStatus, CaseSummary, NewCase, Priority, Role, SignError, VerifyingKey, rfc3339_utc,
    unix_now,
};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

/// Due date: one week after the case is ready.
pub const DUE_AFTER_READY_SECS: i64 = 7 * 86_400;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// SQLite has one writer at a time. Writers queue here, in order, rather than in SQLite's
    /// busy handler, which sleeps in growing steps (up to 100 ms) and wakes them unfairly.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Signed reports are stored through one group-committing writer.
    pub reports: crate::report_writer::ReportWriter,
    /// Reports this server sent whose outcome could not be recorded (a database fault after
    /// the send): the next round records them without sending them again.
    pub(crate) sent_unrecorded:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, crate::delivery::Sent>>>,
    /// Sends that did not answer within the transport's time and may still be going (a hung
    /// network folder): the report is not sent again while its send runs, and its outcome is
    /// recorded when it ends.
    pub(crate) still_sending: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, crate::delivery::StillSending>>,
    >,
}

/// A write transaction (see [`Db::begin_write`]); dropped without [`WriteTx::commit`], it
/// rolls back.
#[allow(missing_debug_implementations)]
pub struct WriteTx {
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// What a PostgreSQL advisory lock is for: the first key of the pair (the second names the
/// thing locked). Every advisory lock this server takes is a transaction lock, gone with its
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum LockPurpose {
    /// An upload's object keys, by the first hex digit of each ([`Db::lock_objects`]).
    ObjectKeys = 7004,
    /// The audit trail's id order ([`Db::hold_audit_order`], [`Db::audit_page`]).
    AuditOrder = 7005,
    /// One report's delivery, by the first 32 bits of its hash (`delivery`).
    Delivery = 7006,
}

/// Admin operation errors (the command line prints them).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
    /// A field the report's PDF prints holds a character it cannot print, or a field that
    /// delivery or intake relies on is not what it must be (a fax number, a birth date): the
    /// client's 422.
    #[error("{0}")]
    Unprintable(String),
}

/// A fax number the gateway can dial, as the sidecar names it (E.164): "+", then 8 to 15
/// digits, with the spaces, dots, dashes and parentheses people write between them; given
/// back as E.164 itself ("+" and the digits), as cases keep it.
pub fn check_fax(fax: &str) -> Result<String, String> {
    let fax = fax.trim();
    let digits = fax.chars().filter(char::is_ascii_digit).count();
    let well_formed = fax.starts_with('+')
        && fax[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')'))
        && (8..=15).contains(&digits);
    if well_formed {
        Ok(std::iter::once('+')
            .chain(fax.chars().filter(char::is_ascii_digit))
            .collect())
    } else {
        Err(format!(
            "the referring physician's fax number {fax:?} is not one a fax can be sent to: \
             \"+\" and the country code, then the number (8 to 15 digits in all)"
        ))
    }
}

/// A birth date as cases hold it: YYYY-MM-DD, a real day (intake compares it with the
/// studies', and every faxed page prints it), or none where it is not known (an unidentified
/// patient).
pub fn check_birth_date(date: &str) -> Result<(), String> {
    if date.is_empty() {
        return Ok(());
    }
    let bad = || format!("the patient's birth date {date:?} is not a date as YYYY-MM-DD");
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || ![y, m, d].iter().all(|p| digits(p)) {
        return Err(bad());
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return Err(bad());
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if (1800..=9999).contains(&y) && (1..=days).contains(&d) {
        Ok(())
    } else {
        Err(bad())
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Radiologist => "radiologist",
        Role::QaReviewer => "qa_reviewer",
        Role::Coordinator => "coordinator",
        Role::Admin => "admin",
    }
}

pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "radiologist" => Some(Role::Radiologist),
        "qa_reviewer" => Some(Role::QaReviewer),
        "coordinator" => Some(Role::Coordinator),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

pub fn status_name(s: CaseStatus) -> &'static str {
    match s {
        CaseStatus::Received => "received",
        CaseStatus::Ready => "ready",
        CaseStatus::Reading => "reading",
        CaseStatus::Reported => "reported",
        CaseStatus::Delivered => "delivered",
    }
}

pub fn parse_status(s: &str) -> Option<CaseStatus> {
    [
        CaseStatus::Received,
        CaseStatus::Ready,
        CaseStatus::Reading,
        CaseStatus::Reported,
        CaseStatus::Delivered,
    ]
    .into_iter()
    .find(|x| status_name(*x) == s)
}

pub fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Stat => "stat",
        Priority::Urgent => "urgent",
        Priority::Routine => "routine",
    }
}

pub fn parse_priority(s: &str) -> Option<Priority> {
    [Priority::Stat, Priority::Urgent, Priority::Routine]
        .into_iter()
        .find(|x| priority_name(*x) == s)
}

fn priority_rank(p: Priority) -> i64 {
    match p {
        Priority::Stat => 0,
        Priority::Urgent => 1,
        Priority::Routine => 2,
    }
}

pub fn now() -> String {
    rfc3339_utc(unix_now())
}

/// The backend a `Db::open` URL names, and the URL to connect to.
fn connection_url(url: &str) -> (Backend, String) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        (Backend::Postgres, url.to_string())
    } else if url.starts_with("sqlite:") {
        (Backend::Sqlite, url.to_string())
    } else {
        // `mode=rwc`: create the file when it is missing.
        (Backend::Sqlite, format!("sqlite://{url}?mode=rwc"))
    }
}

fn migrations(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

impl Db {
    /// Open (creating a SQLite file if missing) and migrate. `url` is a `postgres://` or
    /// `postgresql://` URL, a `sqlite:` URL, or a file path (SQLite).
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = connection_url(url);
        let options = AnyPoolOptions::new().after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Per connection: a receipt is sent only for a report on disk (WAL,
                    // synchronous FULL), references are enforced, writers wait for each other.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                }
                Ok(())
            })
        });
        let pool = match backend {
            // SQLite has one writer at a time; more connections only queue on its lock. On
            // PostgreSQL 8 did better than 16 and 32 under 64 clients on 2 cores (fewer
            // server processes switching; benches/README.md).
            Backend::Sqlite | Backend::Postgres => options.max_connections(8),
        }
        .connect(&url)
        .await?;
        migrations(backend).run(&pool).await?;
        Ok(Db {
            pool,
            backend,
            write_lock: Default::default(),
            reports: Default::default(),
            sent_unrecorded: Default::default(),
            still_sending: Default::default(),
        })
    }

    /// Begin a write transaction. On SQLite it waits its turn among this server's writers and
    /// then takes the database's write lock at once (`BEGIN IMMEDIATE`): a deferred
    /// transaction that read first could not upgrade while another writer committed and would
    /// fail instead of waiting.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let turn = self.write_lock.clone().lock_owned().await;
                Ok(WriteTx {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: Some(turn),
                })
            }
            Backend::Postgres => Ok(WriteTx {
                tx: self.pool.begin().await?,
                _turn: None,
            }),
        }
    }

    /// Holds `keys` (object store keys) for the rest of `tx`, against another transaction
    /// that holds any of them: an upload's inserts and a refused upload's deletion of its
    /// unused objects take turns. SQLite needs nothing more than the write transaction (one
    /// writer at a time). PostgreSQL takes a transaction advisory lock per bucket of keys (the
    /// first hex digit of the sha256: 16 at most, in order, so no deadlock and no lock table
    /// filled by an upload of thousands of objects).
    pub async fn lock_objects(&self, tx: &mut WriteTx, keys: &[&str]) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Sqlite {
            return Ok(());
        }
        let mut buckets: Vec<i32> = keys
            .iter()
            .filter_map(|k| k.chars().next().and_then(|c| c.to_digit(16)))
            .filter_map(|d| i32::try_from(d).ok())
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        for bucket in buckets {
            sqlx::query("SELECT 1 AS one FROM pg_advisory_xact_lock($1, $2)")
                .bind(LockPurpose::ObjectKeys as i32)
                .bind(bucket)
                .fetch_one(&mut *tx.tx)
                .await?;
        }
        Ok(())
    }

    /// On PostgreSQL, a transaction that writes audit rows holds this (shared, with every
    /// other such writer) from before its first row takes an id until its commit; a reader
    /// of the trail ([`Db::audit_page`]) holds it alone for as long as it takes to read the
    /// highest id, so every row up to that id has committed (or never will), and a reader
    /// paging by id (`/audit?after=`) never passes a row. Writers never wait for one another
    /// here. SQLite has one writer: nothing to do.
    pub async fn hold_audit_order(
        backend: Backend,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), sqlx::Error> {
        if backend == Backend::Postgres {
            sqlx::query("SELECT 1 AS one FROM pg_advisory_xact_lock_shared($1, 0)")
                .bind(LockPurpose::AuditOrder as i32)
                .fetch_one(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Up to `limit` audit rows after id `after` (of one case, or all), in id order, none
    /// above the horizon: the highest id while no transaction that writes audit rows is in
    /// flight (read on PostgreSQL under the exclusive side of [`Db::hold_audit_order`], a
    /// moment's wait for writers), so every row up to it has committed or never will, and
    /// the page, read after, passes none. Whatever the isolation level: the page is read in
    /// a snapshot taken after the horizon.
    pub async fn audit_page(
        &self,
        case_id: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let horizon: i64 = {
            let mut tx = self.pool.begin().await?;
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT 1 AS one FROM pg_advisory_xact_lock($1, 0)")
                    .bind(LockPurpose::AuditOrder as i32)
                    .fetch_one(&mut *tx)
                    .await?;
            }
            let horizon =
                sqlx::query("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS horizon FROM audit")
                    .fetch_one(&mut *tx)
                    .await?
                    .get("horizon");
            tx.commit().await?;
            horizon
        };
        sqlx::query(
            "SELECT id, at, user_id, action, case_id, remote_addr, detail FROM audit
             WHERE ($1 IS NULL OR case_id = $1) AND id > $2 AND id <= $3 ORDER BY id LIMIT $4",
        )
        .bind(case_id)
        .bind(after)
        .bind(horizon)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// This server's turn to write on SQLite (none needed on PostgreSQL), for writes outside
    /// [`Db::begin_write`]: every write method here takes it, so no writer of this server
    /// ever waits in SQLite's busy handler.
    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        }
    }

    pub async fn add_user(
        &self,
        id: &str,
        role: Role,
        display_name: &str,
        subspecialties: &[String],
        password: &str,
    ) -> Result<(), DbError> {
        if id.is_empty() || password.len() < 8 {
            return Err(DbError::Invalid(
                "a user needs an id and a password of at least 8 characters".into(),
            ));
        }
        // A radiologist signs under this name and the report's PDF prints it: a name the PDF
        // cannot print could never sign (`case_protocol::printable`).
        case_protocol::printable::first_unprintable("the display name", display_name, false)
            .map_err(|e| {
                DbError::Unprintable(format!(
                    "{e}; give the name as the printed report can show it (\"Lukasz\" for \"Łukasz\")"
                ))
            })?;
        let hash = crate::auth::hash_password(password).map_err(DbError::Invalid)?;
        // The turn after the (slow, deliberately) password hash, not around it.
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO users (id, role, display_name, subspecialties, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(role_name(role))
        .bind(display_name)
        .bind(subspecialties.join(","))
        .bind(hash)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Register a public key (base64) for `user_id`; returns its key id.
    pub async fn add_key(&self, user_id: &str, public_key: &str) -> Result<String, DbError> {
        let _turn = self.write_turn().await;
        let key = VerifyingKey::from_base64(public_key)
            .map_err(|e: SignError| DbError::Invalid(e.to_string()))?;
        let id = key.id().0;
        sqlx::query(
            "INSERT INTO signing_keys (key_id, user_id, public_key, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(key.to_base64())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Revoke a key: no new report may be submitted under it; reports already stored stay
    /// verifiable with it.
    pub async fn revoke_key(&self, key_id: &str) -> Result<bool, DbError> {
        let _turn = self.write_turn().await;
        let r = sqlx::query(
            "UPDATE signing_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn create_case(&self, new: &NewCase) -> Result<CaseSummary, DbError> {
        // The report's PDF prints these: a character it lacks would fax as "?".
        case_protocol::printable::check_new_case(new).map_err(|e| {
            DbError::Unprintable(format!("{e}; enter it as the faxed report can print it"))
        })?;
        let fax = check_fax(&new.referral.physician.fax).map_err(DbError::Unprintable)?;
        check_birth_date(&new.patient.birth_date).map_err(DbError::Unprintable)?;
        let mut new = new.clone();
        new.referral.physician.fax = fax;
        let new = &new;
        let _turn = self.write_turn().await;
        let id = format!(
            "C-{}",
            &crate::auth::token_hash(&crate::auth::new_token())[..12]
        );
        let created_at = now();
        let patient =
            serde_json::to_string(&new.patient).map_err(|e| DbError::Invalid(e.to_string()))?;
        let referral =
            serde_json::to_string(&new.referral).map_err(|e| DbError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO cases (id, status, priority, subspecialty, patient_json, referral_json,
                                created_at, priority_rank)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(status_name(CaseStatus::Received))
        .bind(priority_name(new.priority))
        .bind(&new.subspecialty)
        .bind(patient)
        .bind(referral)
        .bind(&created_at)
        .bind(priority_rank(new.priority))
        .execute(&self.pool)
        .await?;
        Ok(CaseSummary {
            id,
            status: CaseStatus::Received,
            priority: new.priority,
            subspecialty: new.subspecialty.clone(),
            due_at: None,
            assigned_to: None,
            created_at,
        })
    }

    pub async fn case_summary(&self, id: &str) -> Result<Option<CaseSummary>, DbError> {
        let row = sqlx::query(
            "SELECT id, status, priority, subspecialty, due_at, assigned_to, created_at
             FROM cases WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| summary_of(&r)))
    }

    /// Move a case to its next status (refusing any other move). Ready sets the due date.
    pub async fn set_status(&self, id: &str, to: CaseStatus) -> Result<CaseSummary, DbError> {
        let _turn = self.write_turn().await;
        let current = self
            .case_summary(id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("no case {id}")))?;
        if to == CaseStatus::Reported {
            return Err(DbError::Invalid(
                "a case becomes reported only with a signed report".into(),
            ));
        }
        if !current.status.can_move_to(to) {
            return Err(DbError::Invalid(format!(
                "case {id} is {}: it cannot become {}",
                status_name(current.status),
                status_name(to)
            )));
        }
        if to == CaseStatus::Ready && crate::intake::instance_count(self, id).await? == 0 {
            return Err(DbError::Invalid(format!(
                "case {id} has no studies yet: import or upload them before it is ready"
            )));
        }
        let now_unix = unix_now();
        let moved = if to == CaseStatus::Ready {
            sqlx::query(
                "UPDATE cases SET status = $1, ready_at = $2, due_at = $3 WHERE id = $4 AND status = $5",
            )
            .bind(status_name(to))
            .bind(rfc3339_utc(now_unix))
            .bind(rfc3339_utc(now_unix + DUE_AFTER_READY_SECS))
            .bind(id)
            .bind(status_name(current.status))
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query("UPDATE cases SET status = $1 WHERE id = $2 AND status = $3")
                .bind(status_name(to))
                .bind(id)
                .bind(status_name(current.status))
                .execute(&self.pool)
                .await?
        };
        if moved.rows_affected() != 1 {
            return Err(DbError::Invalid(format!(
                "case {id} changed status meanwhile"
            )));
        }
        self.case_summary(id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("no case {id}")))
    }

    /// Assign a case to a radiologist whose subspecialties include the case's.
    pub async fn assign(&self, case_id: &str, radiologist: &str) -> Result<CaseSummary, DbError> {
        let _turn = self.write_turn().await;
        let case = self
            .case_summary(case_id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("no case {case_id}")))?;
        let user = sqlx::query(
            "SELECT role, subspecialties,
                    CAST(CASE WHEN disabled_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS disabled
             FROM users WHERE id = $1",
        )
        .bind(radiologist)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| DbError::Invalid(format!("no user {radiologist}")))?;
        if user.get::<i64, _>("disabled") != 0 {
            return Err(DbError::Invalid(format!(
                "{radiologist}'s account is disabled"
            )));
        }
        let role: String = user.get("role");
        let subs: String = user.get("subspecialties");
        if role != "radiologist" {
            return Err(DbError::Invalid(format!(
                "{radiologist} is not a radiologist"
            )));
        }
        if !subs.split(',').any(|s| s == case.subspecialty) {
            return Err(DbError::Invalid(format!(
                "{radiologist} does not read {} (reads: {subs})",
                case.subspecialty
            )));
        }
        if matches!(case.status, CaseStatus::Reported | CaseStatus::Delivered) {
            return Err(DbError::Invalid(format!(
                "case {case_id} is already reported"
            )));
        }
        let moved = sqlx::query(
            "UPDATE cases SET assigned_to = $1
             WHERE id = $2 AND status IN ('received', 'ready', 'reading')
               AND EXISTS (SELECT 1 FROM users WHERE id = $1 AND disabled_at IS NULL)",
        )
        .bind(radiologist)
        .bind(case_id)
        .execute(&self.pool)
        .await?;
        if moved.rows_affected() != 1 {
            // Reported, or the account was disabled, since the reads above.
            return Err(DbError::Invalid(format!(
                "case {case_id} is already reported or {radiologist}'s account is disabled"
            )));
        }
        self.case_summary(case_id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("no case {case_id}")))
    }

    /// Disable an account: it cannot log in, and its sessions end now (its tokens stop
    /// working at once). False when there is no such account or it was disabled already.
    pub async fn disable_user(&self, id: &str) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let changed =
            sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(changed.rows_affected() == 1)
    }

    /// Enable a disabled account again: it can log in (with its old password; no session
    /// comes back: any the account holds now are ended too). False when there is no such
    /// account or it is not disabled.
    pub async fn enable_user(&self, id: &str) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE users SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL",
        )
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        let enabled = changed.rows_affected() == 1;
        // Only an account that was disabled: enabling one that is not logs nobody out.
        if enabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await?;
        Ok(enabled)
    }

    /// Start a session of `user_id` (its token's hash, expiring at `expires_unix`), only if
    /// the account is enabled at that moment: a login checks the account, then its password
    /// (a while, on a blocking thread), and an account disabled meanwhile, its sessions
    /// deleted, must not get one after (a session so made would have come back to life when
    /// the account was enabled). On PostgreSQL the account's row is held (FOR SHARE) against
    /// a disable running at the same moment; SQLite has one writer. False: no session.
    pub async fn start_session(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_unix: i64,
    ) -> Result<bool, sqlx::Error> {
        let sql = match self.backend {
            Backend::Postgres => {
                "INSERT INTO sessions (token_hash, user_id, expires_unix)
                 SELECT $1, id, $3 FROM users WHERE id = $2 AND disabled_at IS NULL FOR SHARE"
            }
            Backend::Sqlite => {
                "INSERT INTO sessions (token_hash, user_id, expires_unix)
                 SELECT $1, id, $3 FROM users WHERE id = $2 AND disabled_at IS NULL"
            }
        };
        let _turn = self.write_turn().await;
        let done = sqlx::query(sql)
            .bind(token_hash)
            .bind(user_id)
            .bind(expires_unix)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Append an audit row. Never carries patient identity: ids and actions only.
    pub async fn audit(
        &self,
        user_id: Option<&str>,
        action: &str,
        case_id: Option<&str>,
        remote_addr: Option<&str>,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        self.audit_cases(user_id, action, &[case_id], remote_addr, detail)
            .await
    }

    /// An audit row written inside `tx`, so that it commits with the change it records, or
    /// neither does.
    pub async fn audit_in(
        &self,
        tx: &mut WriteTx,
        user_id: Option<&str>,
        action: &str,
        case_id: Option<&str>,
        remote_addr: Option<&str>,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        Self::hold_audit_order(self.backend, &mut tx.tx).await?;
        sqlx::query(
            "INSERT INTO audit (at, user_id, action, case_id, remote_addr, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now())
        .bind(user_id)
        .bind(action)
        .bind(case_id)
        .bind(remote_addr)
        .bind(detail)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    /// One audit row per case in `case_ids` (one access that touched several cases, such as
    /// a search: each case's own trail must show it), all in one transaction.
    pub async fn audit_cases(
        &self,
        user_id: Option<&str>,
        action: &str,
        case_ids: &[Option<&str>],
        remote_addr: Option<&str>,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin_write().await?;
        for case_id in case_ids {
            self.audit_in(&mut tx, user_id, action, *case_id, remote_addr, detail)
                .await?;
        }
        tx.commit().await
    }
}

/// `url` with any password replaced by `***` (in the user part, and the `password` and
/// `sslpassword` query parameters sqlx also accepts); a file path comes back as is.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) =
        before_query.split_at(before_query.find('/').unwrap_or(before_query.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password")
                        || k.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// For tests and benchmarks: the URL of a fresh, empty database. With `DATABASE_URL` set to a
/// PostgreSQL server, a new database `overread_test_<random>` created on it (the URL's own
/// database is only used to run `CREATE DATABASE`); otherwise a SQLite file in `dir`.
pub async fn scratch_database(dir: &std::path::Path) -> Result<String, DbError> {
    match std::env::var("DATABASE_URL") {
        Ok(admin) if admin.starts_with("postgres://") || admin.starts_with("postgresql://") => {
            sqlx::any::install_default_drivers();
            let name = format!(
                "overread_test_{}",
                &crate::auth::token_hash(&crate::auth::new_token())[..16]
            );
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await?;
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await?;
            <sqlx::AnyConnection as sqlx::Connection>::close(conn).await?;
            let (base, query) = match admin.split_once('?') {
                Some((b, q)) => (b, format!("?{q}")),
                None => (admin.as_str(), String::new()),
            };
            let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
            let authority = rest.split('/').next().unwrap_or(rest);
            Ok(format!("{scheme}://{authority}/{name}{query}"))
        }
        Ok(other) if !other.is_empty() => Err(DbError::Invalid(format!(
            "DATABASE_URL must be a postgres:// URL, not {}",
            redacted(&other)
        ))),
        _ => Ok(dir.join("cases.db").to_string_lossy().into_owned()),
    }
}

pub fn summary_of(r: &AnyRow) -> CaseSummary {
    CaseSummary {
        id: r.get("id"),
        status: parse_status(r.get::<&str, _>("status")).unwrap_or(CaseStatus::Received),
        priority: parse_priority(r.get::<&str, _>("priority")).unwrap_or(Priority::Routine),
        subspecialty: r.get("subspecialty"),
        due_at: r.get("due_at"),
        assigned_to: r.get("assigned_to"),
        created_at: r.get("created_at"),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    /// Migration 0007 fills the QIDO study keys of the instances stored before it from their
    /// metadata, as intake fills them for new ones (`intake::StudyKeys`), on both databases:
    /// the metadata and keys of real objects, as intake makes them, against what the
    /// migration makes of that metadata.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn migration_7_fills_the_study_keys_of_instances_stored_before_it() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let url = super::scratch_database(dir.path()).await.unwrap();
        sqlx::any::install_default_drivers();
        let (backend, connect) = super::connection_url(&url);
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&connect)
            .await
            .unwrap();
        let before = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                super::migrations(backend)
                    .migrations
                    .iter()
                    .filter(|m| m.version < 7)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        before.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO cases (id, status, priority, subspecialty, patient_json, referral_json,
                 created_at, priority_rank) VALUES ('C-1', 'new', 'routine', 'chest', '{}', '{}',
                 '2026-01-01T00:00:00Z', 2)",
        )
        .execute(&pool)
        .await
        .unwrap();
        // Two real objects (synthetic CT files, edited): the metadata and the keys intake
        // gives them, against what the migration makes of that metadata. A time with
        // colons and two values, a name with an ideographic group and two values, a study
        // without any of them.
        let folder = dir.path().join("synth");
        let spec = imaging::synth::PhantomSpec {
            columns: 8,
            rows: 8,
            slices: 2,
            ..Default::default()
        };
        imaging::synth::write_series(&spec, &folder).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let put = |path: &std::path::Path, edits: &[(dicom_core::Tag, VR, &str)]| {
            let mut obj = dicom_object::open_file(path).unwrap();
            for (tag, vr, value) in edits {
                if value.is_empty() {
                    obj.remove_element(*tag);
                } else {
                    obj.put(dicom_core::DataElement::new(
                        *tag,
                        *vr,
                        dicom_core::PrimitiveValue::from(value.to_string()),
                    ));
                }
            }
            obj.write_to_file(path).unwrap();
        };
        use dicom_core::VR;
        use dicom_dictionary_std::tags;
        put(
            &files[0],
            &[
                (tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
                (tags::STUDY_TIME, VR::TM, "09:30\\1000"),
                (
                    tags::REFERRING_PHYSICIAN_NAME,
                    VR::PN,
                    "WELBY^MARCUS=ウェルビー\\KILDARE^JAMES",
                ),
                (tags::STUDY_ID, VR::SH, "S-77"),
            ],
        );
        put(
            &files[1],
            &[
                (tags::STUDY_TIME, VR::TM, ""),
                (tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
                (tags::STUDY_ID, VR::SH, ""),
            ],
        );
        let mut expected = Vec::new();
        for (n, path) in files.iter().enumerate() {
            let (kind, obj) = imaging::header::read_header_with_object(path).unwrap();
            let imaging::header::FileKind::Image(header) = kind else {
                panic!("not an image")
            };
            let metadata = crate::intake::metadata_json(&obj, &header).unwrap();
            let keys = crate::intake::StudyKeys::of(&obj);
            expected.push((keys.study_time, keys.referring_physician, keys.study_id));
            sqlx::query(
                "INSERT INTO instances (case_id, study_uid, series_uid, sop_uid, sop_class_uid,
                     transfer_syntax_uid, object_key, size_bytes, modality, study_date,
                     study_description, accession_number, patient_id, patient_name,
                     series_number, series_description, instance_number, pixel_rows,
                     pixel_columns, number_of_frames, metadata_json, stored_at)
                 VALUES ('C-1', '1.2', '1.2.3', $1, '1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1',
                     'k', 1, 'CT', '20260101', '', '', '', '', 1, '', 1, 1, 1, 1, $2,
                     '2026-01-01T00:00:00Z')",
            )
            .bind(format!("1.2.3.{n}"))
            .bind(metadata)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
        let db = super::Db::open(&url).await.unwrap();
        let rows = sqlx::query(
            "SELECT study_time, referring_physician, study_id FROM instances ORDER BY sop_uid",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let got: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let t = |s: &str| s.to_string();
        assert_eq!(
            expected,
            [
                (t("093000"), t("WELBY^MARCUS"), t("S-77")),
                (t(""), t(""), t("")),
            ]
        );
        assert_eq!(got, expected, "the migration fills what intake would");
        assert_eq!(crate::intake::normalized_time("140510.123"), "140510");
        assert_eq!(crate::intake::normalized_time(" "), "");
    }

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redacted("postgres://ci:s3cret@127.0.0.1:5432/overread?sslmode=disable"),
            "postgres://ci:***@127.0.0.1:5432/overread?sslmode=disable"
        );
        assert_eq!(
            redacted("postgres://ci@127.0.0.1/overread"),
            "postgres://ci@127.0.0.1/overread"
        );
        assert_eq!(redacted("/var/lib/cases.db"), "/var/lib/cases.db");
        assert_eq!(
            redacted("postgres://db/overread?user=ci&password=s3cret&sslpassword=k"),
            "postgres://db/overread?user=ci&password=***&sslpassword=***"
        );
        // An '@' in the path is not a password.
        assert_eq!(redacted("sqlite:///data/a@b.db"), "sqlite:///data/a@b.db");
    }
}
