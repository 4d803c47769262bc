//! `overread-server`: cases, worklists, signed-report intake and verification, audit.
//!
//! - [`db`]: the database (SQLite file by default), migrations, and the admin operations the
//!   command line uses (users, keys, cases).
//! - [`auth`]: argon2 password hashes and expiring bearer tokens.
//! - [`api`]: the HTTP API (axum): login, users, keys, cases, worklist, reports, audit.
//! - [`report_writer`]: signed reports stored by one writer with group commit.
//! - [`store`]: DICOM objects in an `object_store` (a folder, or S3), content-addressed.
//! - [`intake`]: eligibility rules and storing studies into a case (import and STOW-RS).
//! - [`dicomweb`]: STOW-RS, QIDO-RS and WADO-RS, scoped by role and assignment.
//! - [`delivery`]: signed reports as PDFs to the referring physician (a fax folder by default).
//! - [`export`]: the patient copy (studies with a DICOMDIR, reports as PDF and signed JSON).
//! - [`part10`]: objects made PS3.10 files where they leave the server (export, WADO-RS).
//! - [`tls`]: rustls configuration, self-signed first-start certificates, the TLS listener.
//!
//! Owns: the case record and every signed report, forever. Must not: log patient identity,
//! link wgpu, egui or whisper.

pub mod api;
pub mod auth;
pub mod db;
pub mod delivery;
pub mod dicomweb;
pub mod error;
pub mod export;
pub mod intake;
pub mod part10;
pub mod report_writer;
pub mod store;
pub mod tls;

#[cfg(test)]
pub(crate) mod testing {
    //! What the unit tests of several modules share.

    /// Write the one-slice synthetic CT `spec` (its `slices` set to 1) into `dir`; its file.
    #[allow(clippy::unwrap_used)]
    pub(crate) fn one_synthetic_file(
        dir: &std::path::Path,
        spec: imaging::synth::PhantomSpec,
    ) -> std::path::PathBuf {
        let spec = imaging::synth::PhantomSpec { slices: 1, ..spec };
        imaging::synth::write_series(&spec, dir).unwrap();
        std::fs::read_dir(dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    }
}

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
pub use intake::IntakeRules;
pub use store::Store;

/// Default largest STOW-RS request: 1 GiB (a CD-ROM's worth; bigger studies go in parts).
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 1 << 30;

/// Default time a refused STOW-RS request's body is drained: 30 s (64 MiB at about 2 MB/s).
pub const DEFAULT_STOW_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// What every request handler shares: the database, the object store and the intake rules.
#[derive(Debug, Clone)]
pub struct Server {
    pub db: Db,
    pub store: Store,
    pub rules: IntakeRules,
    /// Largest STOW-RS body, bytes.
    pub max_upload_bytes: usize,
    /// How long the body of a STOW-RS request refused before it was read is read and dropped
    /// (so the client, still sending, gets the answer) before the connection is closed
    /// instead: a client sending slowly holds nothing longer ([`DEFAULT_STOW_DRAIN`]).
    pub stow_drain: std::time::Duration,
    /// `https` or `http`, for the URLs the server writes (set by [`serve`] and [`serve_tls`]).
    pub scheme: &'static str,
    /// Report delivery; `None`: reports wait in the outbox until a server with delivery runs.
    pub delivery: Option<delivery::DeliveryConfig>,
    /// Wakes the delivery task when a report is stored.
    pub nudge: delivery::Nudge,
}

impl Server {
    pub fn new(db: Db, store: Store) -> Server {
        Server {
            db,
            store,
            rules: IntakeRules::default(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            stow_drain: DEFAULT_STOW_DRAIN,
            scheme: "https",
            delivery: None,
            nudge: delivery::Nudge::default(),
        }
    }

    /// Start the delivery task when delivery is configured.
    fn start_delivery(&self) {
        if let Some(config) = &self.delivery {
            delivery::spawn(
                self.db.clone(),
                self.store.clone(),
                config.clone(),
                self.nudge.clone(),
            );
        }
    }
}

impl axum::extract::FromRef<Server> for Db {
    fn from_ref(server: &Server) -> Db {
        server.db.clone()
    }
}

/// Serve the API over TLS on `listener` until the task is dropped.
pub async fn serve_tls(
    mut server: Server,
    listener: tokio::net::TcpListener,
    config: std::sync::Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    server.scheme = "https";
    server.start_delivery();
    let tls = tls::TlsListener::new(listener, config)?;
    let app = router(server).into_make_service_with_connect_info::<Peer>();
    axum::serve(tls, app).await
}

/// Serve the API over plain HTTP on `listener` (loopback only: the caller checks) until the
/// task is dropped.
pub async fn serve(mut server: Server, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    server.scheme = "http";
    server.start_delivery();
    let app = router(server).into_make_service_with_connect_info::<Peer>();
    axum::serve(listener, app).await
}
