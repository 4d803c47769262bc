//! Overread: a reading workstation for second-opinion radiology.
//!
//! Module map (see ARCHITECTURE.md for the data flow and the layer rule):
//! - [`imaging`]: DICOM files -> exact patient-space volumes. No GPU, no UI, no network.
//! - [`render`]: window/level, MPR and thick slabs on the GPU (wgpu) with a CPU twin.
//! - [`viewer`]: viewport state, orientation markers, measurements (no UI toolkit).
//! - [`app`]: the workstation window (eframe + egui).
//! - [`cases`]: the case server client, the encrypted signing key, the durable outbox.
//! - [`cli`]: the headless subcommands (`scan`, `load`, `export`, `synth`).

pub mod app;
pub mod cases;
pub mod cli;
pub mod imaging;
pub mod render;
pub mod viewer;
