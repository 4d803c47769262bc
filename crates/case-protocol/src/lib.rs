//! The Overread case protocol: what the workstation and the case server say to each other.
//!
//! - [`types`]: cases, referrals, patients, reports, addenda, peer reviews, receipts (serde).
//! - [`canonical`]: the canonical bytes of a report (documented, deterministic, versioned):
//!   what is hashed and signed.
//! - [`printable`]: the characters a report may hold (those its printed copy shows).
//! - [`sign`]: ed25519 keys with key ids, signing and verifying reports.
//! - [`multipart`]: `multipart/related` bodies as DICOMweb sends them (STOW-RS uploads,
//!   WADO-RS answers), read and written the same way on both sides.
//!
//! No tokio, no wgpu: both the workstation and the server link this crate.

pub mod canonical;
pub mod multipart;
pub mod printable;
pub mod sign;
pub mod types;

pub use canonical::{CANONICAL_VERSION, ReportHash, canonical_bytes, report_hash};
pub use sign::{KeyId, SignError, SigningKey, VerifyingKey, sign_report, verify_report};
pub use types::*;
