//! `overread-server`: cases, worklists, signed-report intake and verification, audit.
//!
//! - [`db`]: the database (SQLite file by default), migrations, and the admin operations the
//!   command line uses (users, keys, cases).
//! - [`auth`]: argon2 password hashes and expiring bearer tokens.
//! - [`api`]: the HTTP API (axum): login, keys, cases, worklist, reports, audit.
//!
//! Owns: the case record and every signed report, forever. Must not: log patient identity,
//! link wgpu, egui or whisper.

pub mod api;
pub mod auth;
pub mod db;
pub mod error;

use std::net::SocketAddr;

pub use api::router;
pub use db::Db;
pub use error::ApiError;

/// Serve the API on `listener` until the task is dropped.
pub async fn serve(db: Db, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = router(db).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}
