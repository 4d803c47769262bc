//! The report being written: templates with fields ([`template`]) and the checks that run
//! before signing ([`checks`]). Signing itself is `case-protocol`'s canonical bytes and
//! ed25519 (see `cases` for the sealed key and the outbox).
//!
//! Owns: the draft's rules. Must not: import `render`, `viewer` or `app` (layer rule).

pub mod checks;
pub mod draft;
pub mod kept;
pub mod marks;
pub mod printable;
pub mod template;

pub use checks::{
    Check, CheckKind, LinkedMeasurement, MeasurementSource, Section, UnsureWord, pre_sign_checks,
};
pub use draft::Draft;
pub use marks::{Change, Edit};
pub use template::{Template, fields_in, templates};
