//! `overread-server`: cases, worklists, signed-report intake and verification, audit.
//!
//! - [`db`]: the database (SQLite file by default), migrations, and the admin operations the
//!   command line uses (users, keys, cases).
//! - [`auth`]: argon2 password hashes and expiring bearer tokens.
//! - [`api`]: the HTTP API (axum): login, users, keys, cases, worklist, reports, audit.
//! - [`report_writer`]: signed reports stored by one writer with group commit.
//! - [`tls`]: rustls configuration, self-signed first-start certificates, the TLS listener.
//!
//! Owns: the case record and every signed report, forever. Must not: log patient identity,
//! link wgpu, egui or whisper.

pub mod api;
pub mod auth;
pub mod db;
pub mod error;
pub mod report_writer;
pub mod tls;

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

pub use api::router;

/// The peer's address, recorded in every audit row (plain and TLS connections alike).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}
pub use db::Db;
pub use error::ApiError;

/// Serve the API over TLS on `listener` until the task is dropped.
pub async fn serve_tls(
    db: Db,
    listener: tokio::net::TcpListener,
    config: std::sync::Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let tls = tls::TlsListener::new(listener, config)?;
    let app = router(db).into_make_service_with_connect_info::<Peer>();
    axum::serve(tls, app).await
}

/// Serve the API over plain HTTP on `listener` (loopback only: the caller checks) until the
/// task is dropped.
pub async fn serve(db: Db, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = router(db).into_make_service_with_connect_info::<Peer>();
    axum::serve(listener, app).await
}
