//! The database: a SQLite file by default (WAL, synchronous FULL: a receipt is only sent for a
//! report that is on disk), migrations on open, and the operations the API and the command
//! line share.

use std::str::FromStr;

use case_protocol::{
    CaseStatus, CaseSummary, NewCase, Priority, Role, SignError, VerifyingKey, rfc3339_utc,
    unix_now,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// Due date: one week after the case is ready.
pub const DUE_AFTER_READY_SECS: i64 = 7 * 86_400;

#[derive(Debug, Clone)]
pub struct Db {
    pub pool: SqlitePool,
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

impl Db {
    /// Open (creating if missing) and migrate. `url` is a `sqlite:` URL or a file path.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        let url = if url.starts_with("sqlite:") {
            url.to_string()
        } else {
            format!("sqlite://{url}")
        };
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Db { pool })
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
        let hash = crate::auth::hash_password(password).map_err(DbError::Invalid)?;
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
        let case = self
            .case_summary(case_id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("no case {case_id}")))?;
        let user = sqlx::query("SELECT role, subspecialties FROM users WHERE id = $1")
            .bind(radiologist)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("no user {radiologist}")))?;
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
             WHERE id = $2 AND status IN ('received', 'ready', 'reading')",
        )
        .bind(radiologist)
        .bind(case_id)
        .execute(&self.pool)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(DbError::Invalid(format!(
                "case {case_id} is already reported"
            )));
        }
        self.case_summary(case_id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("no case {case_id}")))
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

pub fn summary_of(r: &sqlx::sqlite::SqliteRow) -> CaseSummary {
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
