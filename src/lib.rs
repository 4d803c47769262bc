//! Overread: a reading workstation for second-opinion radiology.
//!
//! Module map (see ARCHITECTURE.md for the data flow and the layer rule):
//! - [`imaging`]: DICOM files -> exact patient-space volumes (the `crates/imaging` crate, shared
//!   with the case server). No GPU, no UI, no network.
//! - [`render`]: window/level, MPR and thick slabs on the GPU (wgpu) with a CPU twin.
//! - [`viewer`]: viewport state, orientation markers, measurements (no UI toolkit).
//! - [`app`]: the workstation window (eframe + egui).
//! - [`cases`]: the case server client, the encrypted signing key, the durable outbox.
//! - [`dictation`]: speech to text on this machine (whisper.cpp), the vocabulary prompt.
//! - [`report`]: report templates and the pre-sign checks.
//! - [`cli`]: the headless subcommands (`scan`, `load`, `export`, `synth`, `transcribe`, ...).

pub mod app;
pub mod cases;
pub mod cli;
pub mod dictation;
pub mod render;
pub mod report;
pub mod viewer;

pub use ::imaging;

/// The user's data folder (demo case, outbox, speech models, vocabulary):
/// `$OVERREAD_DATA_DIR`, else `$XDG_DATA_HOME/overread`, else `~/.local/share/overread`.
pub fn data_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::var_os("OVERREAD_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("overread")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/overread"))
        })
        .unwrap_or_else(|| PathBuf::from(".overread"))
}
