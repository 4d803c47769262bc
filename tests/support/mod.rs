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

thread_local! {
    /// Each test's own drafts folder, removed when its thread ends.
    static DRAFTS: tempfile::TempDir = tempdir();
}

/// This test's own drafts folder (where [`with_test_drafts`] puts them).
pub fn test_drafts() -> PathBuf {
    DRAFTS.with(|d| d.path().join("drafts"))
}

/// Where the app of this test keeps its drafts, unless the test says: a folder of its own
/// (never the user's data folder), the same for every app the test opens (a second app is
/// the workstation opened again).
pub fn with_test_drafts(
    settings: overread::app::settings::Settings,
) -> overread::app::settings::Settings {
    overread::app::settings::Settings {
        drafts_dir: settings.drafts_dir.clone().or_else(|| Some(test_drafts())),
        ..settings
    }
}

/// A temporary HOME whose `.asoundrc` makes ALSA's default device its `file` plugin: what is
/// recorded is read from `in.raw` (the samples given, 16-bit little-endian), what is played is
/// written to `out.raw`; neither is paced in real time. Programs started through
/// [`AlsaHome::command`] use it (their HOME is it; no `ALSA_CONFIG_PATH`).
pub struct AlsaHome {
    pub dir: tempfile::TempDir,
}

impl AlsaHome {
    pub fn new(recorded: &[i16]) -> AlsaHome {
        let dir = tempdir();
        let bytes: Vec<u8> = recorded.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(dir.path().join("in.raw"), bytes).unwrap();
        std::fs::write(
            dir.path().join(".asoundrc"),
            format!(
                "pcm.!default {{\n    type file\n    slave.pcm \"null\"\n    file \"{}\"\n    \
                 infile \"{}\"\n    format \"raw\"\n}}\n",
                dir.path().join("out.raw").display(),
                dir.path().join("in.raw").display()
            ),
        )
        .unwrap();
        AlsaHome { dir }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `program` with this HOME.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut command = std::process::Command::new(program);
        command
            .env("HOME", self.path())
            .env_remove("ALSA_CONFIG_PATH");
        command
    }

    /// What was played so far (16-bit samples).
    pub fn played(&self) -> Vec<i16> {
        std::fs::read(self.path().join("out.raw"))
            .unwrap()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }
}
