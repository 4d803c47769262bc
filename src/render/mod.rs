//! Rendering: resliced, windowed images of a [`Volume`](imaging::Volume), on the GPU (wgpu)
//! and on the CPU with the same math.
//!
//! A frame is two steps, drawn the same way by both renderers:
//! 1. **Resample** ([`kernel`]): every output pixel is a point on a plane in patient space (any
//!    orientation, see [`view::SliceView`]); the point is mapped to voxel coordinates (by the
//!    affine for regular and gantry-tilted stacks, by the table of real slice positions for
//!    uneven or gappy ones), sampled (nearest or trilinear) in modality units (HU for CT, with
//!    each slice's own rescale), and combined over a thick slab (MIP, MinIP, average).
//!    The result is a float image of modality values with a coverage flag.
//! 2. **Display** ([`voi`]): the VOI transform of PS3.3 C.11.2.1.2 (linear, linear exact,
//!    sigmoid) or a VOI LUT, MONOCHROME1 and user inversion, quantized to 8 or 10 bits.
//!
//! A window/level change redoes only step 2. [`cpu`] is the reference; [`gpu`] must match it to
//! one grey level (tests/render.rs).
//!
//! Owns: view planes, sampling, VOI, GPU device/textures/pipelines, PNG output with burned-in
//! labels. Must not: read DICOM files (that is `imaging`), know about the UI.

pub mod cpu;
pub mod gpu;
pub mod image;
pub mod kernel;
pub mod view;
pub mod voi;

pub use gpu::{AdapterChoice, GpuContext, Renderer, ScreenDraw, VolumeTexture};
pub use image::RenderedImage;
pub use kernel::VolumeInfo;
pub use view::{Interpolation, Plane, SlabMode, SliceView};
pub use voi::{Display, OutputDepth, Voi, VoiFunction, VoiLut};

/// Why a frame could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "no graphics adapter found ({0}); install a Vulkan driver (Mesa's lavapipe works without a GPU: apt install mesa-vulkan-drivers)"
    )]
    NoAdapter(String),
    #[error("the graphics device could not be opened: {0}")]
    Device(String),
    #[error("the graphics adapter lacks what rendering needs: {0}")]
    Unsupported(String),
    #[error("the volume does not fit this device: {0}")]
    TooLarge(String),
    #[error("reading the rendered image back failed: {0}")]
    Readback(String),
    #[error("invalid view: {0}")]
    View(String),
    #[error("writing {path}: {message}")]
    Write {
        path: std::path::PathBuf,
        message: String,
    },
}
