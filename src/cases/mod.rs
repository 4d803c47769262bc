//! The workstation's side of the case server: the radiologist's signing key kept encrypted on
//! disk ([`keystore`]), the HTTP client ([`client`]), studies over DICOMweb from the case
//! server or any PACS ([`dicomweb`]), and the durable outbox of signed reports
//! ([`outbox`]): a signed report is written to disk before it is sent and removed only when the
//! server's receipt is in hand, so a crash, a lost network or a restart never loses one. All of
//! it runs on the one network runtime ([`net`]).
//!
//! Owns: talking to the case server, keeping signed reports until receipted. Must not: import
//! `render`, `viewer` or `app` (layer rule).

pub mod client;
pub mod dicomweb;
pub mod keystore;
pub mod net;
pub mod outbox;

pub use client::{CaseClient, ClientError};
pub use dicomweb::{DicomWebClient, StudyUrl};
pub use keystore::{EncryptedKey, KeyStoreError};
pub use outbox::{Backoff, Delivery, Outbox, OutboxStatus, OutboxWorker, RefusedReport};
