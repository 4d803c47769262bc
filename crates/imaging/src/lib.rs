//! DICOM files -> exact patient-space volumes. No GPU, no UI, no network.
//!
//! The pipeline, one module a step:
//! 1. [`scan`]: files, folders and DICOMDIRs -> [`InstanceHeader`]s (headers only, parallel).
//! 2. [`series`]: headers -> patients, studies, series and [`Stack`]s (one geometric volume each).
//! 3. [`geometry`]: [`VolumeGeometry`], the Image Plane math (PS3.3 C.7.6.2), tilt and gaps.
//! 4. [`decode`]: a stack -> a [`Volume`] of 2-byte stored values, parallel, middle slice first.
//! 5. [`nifti`]: a volume -> NIfTI-1, to compare with dcm2niix and other tools.
//! 6. [`synth`]: synthetic CT phantoms written as DICOM, for tests, benchmarks and the demo.
//!
//! Patient identity is carried in [`Phi`] and never reaches a log line or error message.

pub mod decode;
pub mod geometry;
pub mod header;
pub mod identity;
mod j2k;
mod jpeg;
pub mod mosaic;
pub mod nifti;
pub mod open;
pub mod partial;
pub mod rle;
pub mod scan;
pub mod series;
pub mod stats;
pub mod synth;
pub mod transcode;

use std::path::PathBuf;

pub use decode::{LoadOptions, RescalePolicy, SliceEvent, Volume, Voxels, load_stack};
pub use geometry::VolumeGeometry;
pub use header::{InstanceHeader, Rescale};
pub use identity::Phi;
pub use scan::{ScanReport, ScanWarning, scan, scan_until};
pub use series::{Patient, Stack, group};

/// Errors of the imaging layer. Each names the file it is about, never the patient.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error("{path}: not readable as DICOM: {source}")]
    Open {
        path: PathBuf,
        source: Box<dicom_object::ReadError>,
    },
    #[error("{path}: {what}")]
    BadAttribute { path: PathBuf, what: String },
    #[error("{path}: frame {frame} cannot be decoded: {reason}")]
    Decode {
        path: PathBuf,
        frame: u32,
        reason: String,
    },
    #[error("{path}: unsupported: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write DICOM: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("loading was cancelled")]
    Cancelled,
    #[error("the stack's {voxels} voxels need more memory than can be had")]
    TooLarge { voxels: u128 },
    #[error("the stack has no slices")]
    EmptyStack,
}

/// Find a stack by id across scanned patients.
pub fn find_stack<'a>(patients: &'a [Patient], id: &str) -> Option<&'a Stack> {
    patients
        .iter()
        .flat_map(Patient::stacks)
        .find(|s| s.id == id)
}

/// The stack a user most likely means when none is named: the one with most slices,
/// localizers last.
pub fn default_stack(patients: &[Patient]) -> Option<&Stack> {
    patients.iter().flat_map(Patient::stacks).max_by_key(|s| {
        (
            !s.is_localizer,
            s.slices.len(),
            std::cmp::Reverse(s.id.parse::<usize>().unwrap_or(0)),
        )
    })
}
