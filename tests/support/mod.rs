//! Shared helpers for the integration tests: where the shared data is, a NIfTI-1 reader, and
//! small assertions.

#![allow(dead_code)]

pub mod nifti;

use std::path::PathBuf;

/// `../shared/dicom` relative to the project root. Absent: skip with a message, except in CI
/// (`CI=true`), where a missing data set is a failure.
pub fn shared_dicom() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/dicom");
    if path.is_dir() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").map(|v| v != "true").unwrap_or(true),
        "../shared/dicom is missing: CI must have the shared test data"
    );
    eprintln!("SKIPPED: ../shared/dicom is absent (tests that need real scanner data did not run)");
    None
}

/// A scratch folder removed when dropped.
/// `../shared/NAME` (models, dictation), with the same rule as [`shared_dicom`].
pub fn shared(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").map(|v| v != "true").unwrap_or(true),
        "../shared/{name} is missing: CI must have the shared test data"
    );
    eprintln!("SKIPPED: ../shared/{name} is absent (tests that need it did not run)");
    None
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
