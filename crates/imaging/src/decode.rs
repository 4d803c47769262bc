//! Pixel data into one preallocated volume, in parallel, middle slice first, cancellable.
//!
//! [`load_stack`] allocates one `Array3` of voxels `[k][j][i]` (2-byte grey values, or 3-byte
//! RGB for colour stacks) and lets rayon workers decode frames straight into their slots: no
//! per-slice `f32`, no second copy of the volume.
//! Stored values are kept exactly (masked to Bits Stored, sign-extended when Pixel
//! Representation is 1); the modality transform travels beside them as [`RescalePolicy`].
//!
//! Order: the middle slice first, then coarse to fine (every 2^n-th slice), so a viewer that
//! listens to [`SliceEvent`]s can show an image at once and a whole-volume preview soon after.
//! A file that fails to decode is named in [`Volume::failed_slices`]; its slot stays zero and
//! every other slice still loads. A cancelled load returns [`ImagingError::Cancelled`].
//!
//! Owns: decoding. Must not group or sort (see `series`), nor know about rendering.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_encoding::adapters::PixelDataObject;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use ndarray::Array3;
use rayon::prelude::*;
use serde::Serialize;

use super::ImagingError;
use super::geometry::VolumeGeometry;
use super::header::{ModalityLut, PixelPadding, Rescale, Window};
use super::series::{PixelFormat, Stack};

/// The voxels of a volume, `[k][j][i]`: grey stored values, two bytes each, or colour.
#[derive(Debug, Clone)]
pub enum Voxels {
    U16(Array3<u16>),
    I16(Array3<i16>),
    /// 8-bit colour (RGB, or YBR converted to RGB on load), three bytes a voxel. Colour images
    /// have no modality units: their rescale is the identity.
    Rgb(Array3<[u8; 3]>),
}

/// Luma of an RGB triple (ITU-R BT.601, the weights of PS3.3 C.7.6.3.1.2's YBR_FULL), rounded:
/// the one number a colour voxel gives where one is asked for (statistics, a probe).
pub fn luma([r, g, b]: [u8; 3]) -> i32 {
    ((299 * i32::from(r) + 587 * i32::from(g) + 114 * i32::from(b) + 500) / 1000).min(255)
}

impl Voxels {
    /// Stored value at (i, j, k) as i32 (for colour, its [`luma`]), or `None` outside the
    /// volume.
    pub fn get(&self, i: usize, j: usize, k: usize) -> Option<i32> {
        match self {
            Voxels::U16(a) => a.get([k, j, i]).map(|v| i32::from(*v)),
            Voxels::I16(a) => a.get([k, j, i]).map(|v| i32::from(*v)),
            Voxels::Rgb(a) => a.get([k, j, i]).map(|v| luma(*v)),
        }
    }

    /// Colour at (i, j, k); `None` outside the volume or for grey voxels.
    pub fn rgb(&self, i: usize, j: usize, k: usize) -> Option<[u8; 3]> {
        match self {
            Voxels::Rgb(a) => a.get([k, j, i]).copied(),
            _ => None,
        }
    }

    pub fn is_colour(&self) -> bool {
        matches!(self, Voxels::Rgb(_))
    }

    /// The voxel buffer as little-endian bytes (for hashing and export).
    pub fn to_le_bytes_slice(&self, k: usize) -> Vec<u8> {
        match self {
            Voxels::U16(a) => a
                .index_axis(ndarray::Axis(0), k)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            Voxels::I16(a) => a
                .index_axis(ndarray::Axis(0), k)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            Voxels::Rgb(a) => a
                .index_axis(ndarray::Axis(0), k)
                .iter()
                .flatten()
                .copied()
                .collect(),
        }
    }

    /// Shape `[k, j, i]`.
    pub fn shape(&self) -> [usize; 3] {
        let s = match self {
            Voxels::U16(a) => a.shape(),
            Voxels::I16(a) => a.shape(),
            Voxels::Rgb(a) => a.shape(),
        };
        [s[0], s[1], s[2]]
    }

    pub fn is_signed(&self) -> bool {
        matches!(self, Voxels::I16(_))
    }
}

/// How stored values become modality values (HU for CT), PS3.3 C.11.1.
///
/// Policy: voxels always hold the stored values exactly; the transform is applied by whoever
/// reads them (renderer, measurement, export), per volume when every slice agrees and per slice
/// otherwise (Philips MR and some PET scale each slice differently).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RescalePolicy {
    Uniform(Rescale),
    PerSlice(Vec<Rescale>),
}

impl RescalePolicy {
    pub fn for_slice(&self, k: usize) -> Rescale {
        match self {
            RescalePolicy::Uniform(r) => *r,
            RescalePolicy::PerSlice(v) => v.get(k).copied().unwrap_or(Rescale::IDENTITY),
        }
    }
}

/// A slice that could not be decoded.
#[derive(Debug, Clone, Serialize)]
pub struct SliceFailure {
    pub k: usize,
    pub path: PathBuf,
    pub message: String,
}

/// A loaded stack.
#[derive(Debug, Clone)]
pub struct Volume {
    pub geometry: VolumeGeometry,
    pub voxels: Voxels,
    pub rescale: RescalePolicy,
    /// The window of the middle slice's header, if any (modality units).
    pub default_window: Option<Window>,
    pub failed_slices: Vec<SliceFailure>,
    /// Each slice's padding (stored values that are not patient; `padding_of`), or empty
    /// where no slice has any.
    pub padding: Vec<Option<PixelPadding>>,
    pub timings: LoadTimings,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadTimings {
    /// From the start of the load to the first decoded slice.
    pub first_slice_secs: f64,
    pub total_secs: f64,
}

/// Pixels of one decoded slice, borrowed from the volume being filled.
#[derive(Debug, Clone, Copy)]
pub enum SlicePixels<'a> {
    U16(&'a [u16]),
    I16(&'a [i16]),
    Rgb(&'a [[u8; 3]]),
}

/// Reported once per slice as it lands, from a worker thread.
#[derive(Debug, Clone, Copy)]
pub struct SliceEvent<'a> {
    /// Index of the slice in the stack.
    pub k: usize,
    /// Slices done so far, including this one.
    pub done: usize,
    pub total: usize,
    /// The slice's stored values (rows x columns), ready to show or upload.
    pub pixels: SlicePixels<'a>,
}

/// Options for [`load_stack`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Set to true from any thread to stop the load.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The order slices are decoded in: the middle one, then coarse to fine.
pub fn arrival_order(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut order = Vec::with_capacity(n);
    let mut taken = vec![false; n];
    let mut take = |k: usize, order: &mut Vec<usize>| {
        if !taken[k] {
            taken[k] = true;
            order.push(k);
        }
    };
    take(n / 2, &mut order);
    let mut step = n.next_power_of_two();
    while step >= 1 {
        let mut k = 0;
        while k < n {
            take(k, &mut order);
            k += step;
        }
        step /= 2;
    }
    order
}

/// How the volume `load_stack` makes of `stack` maps what it holds to modality values, known
/// before any slice is decoded (a progressive display needs it from the first slice): each
/// slice's rescale, or for a slice with a Modality LUT, whose values the volume holds already
/// (`Sample::through_lut`), the identity (less [`LUT_OFFSET_IN_I16`] in a signed volume, so
/// added back). Colour has none.
pub fn rescale_policy(stack: &Stack) -> RescalePolicy {
    let rescales: Vec<Rescale> = if stack.format.is_colour() {
        vec![Rescale::IDENTITY]
    } else {
        stack
            .slices
            .iter()
            .map(|s| match (&s.modality_lut, stack.format.signed) {
                (None, _) => s.rescale,
                (Some(_), true) => Rescale {
                    slope: 1.0,
                    intercept: f64::from(LUT_OFFSET_IN_I16),
                },
                (Some(_), false) => Rescale::IDENTITY,
            })
            .collect()
    };
    if rescales.windows(2).all(|w| w[0] == w[1]) {
        RescalePolicy::Uniform(rescales.first().copied().unwrap_or(Rescale::IDENTITY))
    } else {
        RescalePolicy::PerSlice(rescales)
    }
}

/// Each slice's padding (Pixel Padding Value and Range Limit) as the volume holds it: none
/// for colour or for a slice whose Modality LUT put its values in; an empty list where no
/// slice has any.
pub fn stack_padding(stack: &Stack) -> Vec<Option<PixelPadding>> {
    if stack.format.is_colour() {
        return Vec::new();
    }
    let padding: Vec<Option<PixelPadding>> = stack
        .slices
        .iter()
        .map(|s| s.padding.filter(|_| s.modality_lut.is_none()))
        .collect();
    if padding.iter().all(Option::is_none) {
        Vec::new()
    } else {
        padding
    }
}

/// Decode every slice of `stack` into one volume. `on_slice` is called from worker threads
/// as each slice lands (progress and early display).
pub fn load_stack(
    stack: &Stack,
    options: &LoadOptions,
    on_slice: &(dyn Fn(SliceEvent<'_>) + Sync),
) -> Result<Volume, ImagingError> {
    let started = Instant::now();
    let format = &stack.format;
    check_format(stack)?;
    let [columns, rows, n] = stack.geometry.dims;
    if n == 0 {
        return Err(ImagingError::EmptyStack);
    }
    let shape = (n, rows, columns);
    let first_slice_at = Mutex::new(None::<f64>);
    let at = (stack, options, on_slice, &first_slice_at, started);
    let (voxels, failed) = if format.is_colour() {
        let (a, failed) = filled([0u8; 3], shape, at)?;
        (Voxels::Rgb(a), failed)
    } else if format.signed {
        let (a, failed) = filled(0i16, shape, at)?;
        (Voxels::I16(a), failed)
    } else {
        let (a, failed) = filled(0u16, shape, at)?;
        (Voxels::U16(a), failed)
    };

    let rescale = rescale_policy(stack);
    let first_slice_secs = first_slice_at.lock().ok().and_then(|g| *g).unwrap_or(0.0);
    Ok(Volume {
        geometry: stack.geometry.clone(),
        voxels,
        rescale,
        default_window: stack.slices.get(n / 2).and_then(|s| s.window),
        failed_slices: failed,
        padding: stack_padding(stack),
        timings: LoadTimings {
            first_slice_secs,
            total_secs: started.elapsed().as_secs_f64(),
        },
    })
}

/// Refuse what cannot become a volume (2-byte grey, or 8-bit colour), with a reason.
fn check_format(stack: &Stack) -> Result<(), ImagingError> {
    let path = stack
        .slices
        .first()
        .map(|s| s.path.clone())
        .unwrap_or_default();
    check_pixel_format(&stack.format, stack.mosaic.is_some(), path)
}

/// Refuse a pixel format the decoders cannot give (`mosaic`: frames holding a Siemens mosaic).
fn check_pixel_format(f: &PixelFormat, mosaic: bool, path: PathBuf) -> Result<(), ImagingError> {
    if f.is_palette() {
        if !matches!(f.bits_allocated, 8 | 16) || mosaic {
            return Err(ImagingError::Unsupported {
                path,
                what: format!(
                    "palette colour images of {} bits allocated",
                    f.bits_allocated
                ),
            });
        }
        return Ok(());
    }
    if f.samples_per_pixel == 3 {
        let photometric = f.photometric_interpretation.trim();
        if mosaic {
            return Err(ImagingError::Unsupported {
                path,
                what: "a colour mosaic".into(),
            });
        }
        if f.bits_allocated != 8 || !COLOUR_PHOTOMETRICS.contains(&photometric) {
            return Err(ImagingError::Unsupported {
                path,
                what: format!(
                    "colour images of {} bits in {photometric} (8-bit {} are supported)",
                    f.bits_allocated,
                    COLOUR_PHOTOMETRICS.join(", ")
                ),
            });
        }
        return Ok(());
    }
    if f.samples_per_pixel != 1 {
        return Err(ImagingError::Unsupported {
            path,
            what: format!(
                "images of {} samples per pixel ({})",
                f.samples_per_pixel, f.photometric_interpretation
            ),
        });
    }
    if !matches!(f.bits_allocated, 1 | 8 | 16) {
        return Err(ImagingError::Unsupported {
            path,
            what: format!(
                "Bits Allocated {} (only 1, 8 and 16 are supported)",
                f.bits_allocated
            ),
        });
    }
    Ok(())
}

/// Colour models a colour volume is read from (PS3.3 C.7.6.3.1.2); all become RGB.
const COLOUR_PHOTOMETRICS: [&str; 5] = ["RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"];

/// A Modality LUT's values are unsigned 16-bit; a volume of signed stored values holds them
/// less this, and its rescale adds it back (exact: slope 1).
const LUT_OFFSET_IN_I16: i32 = 32_768;

/// A sample type a slot can hold.
trait Sample: bytemuck::Pod + Send + Sync + 'static {
    fn from_stored(raw: u16, bits_stored: u16, signed: bool) -> Self;
    /// The 16 stored bits as read.
    fn raw(self) -> u16;
    fn event(slice: &[Self]) -> SlicePixels<'_>;
    /// The value a slot holds for a stored value whose Modality LUT gives it a modality value:
    /// that value, less [`LUT_OFFSET_IN_I16`] in a signed volume (which reads it back through
    /// its rescale). Colour has no Modality LUT.
    fn through_lut(self, lut: &ModalityLut) -> Self;
    /// Decode frame `frame` of `obj` into `slot`.
    fn decode_frame(
        obj: &DefaultDicomObject,
        path: &std::path::Path,
        frame: u32,
        format: &PixelFormat,
        slot: &mut [Self],
    ) -> Result<(), ImagingError> {
        decode_frame_into(obj, path, frame, format, slot)
    }
}

/// Colour voxels. Grey samples (a mosaic tile, never met in colour) would be shown grey.
impl Sample for [u8; 3] {
    fn from_stored(raw: u16, _bits_stored: u16, _signed: bool) -> Self {
        [raw.min(255) as u8; 3]
    }
    fn raw(self) -> u16 {
        u16::from(self[0])
    }
    fn event(slice: &[Self]) -> SlicePixels<'_> {
        SlicePixels::Rgb(slice)
    }
    fn through_lut(self, _lut: &ModalityLut) -> Self {
        self
    }
    fn decode_frame(
        obj: &DefaultDicomObject,
        path: &std::path::Path,
        frame: u32,
        format: &PixelFormat,
        slot: &mut [Self],
    ) -> Result<(), ImagingError> {
        decode_rgb_frame_into(obj, path, frame, format, slot, false).map(|_| ())
    }
}

impl Sample for u16 {
    fn from_stored(raw: u16, bits_stored: u16, _signed: bool) -> Self {
        if bits_stored >= 16 {
            raw
        } else {
            raw & ((1u16 << bits_stored) - 1)
        }
    }
    fn raw(self) -> u16 {
        self
    }
    fn event(slice: &[Self]) -> SlicePixels<'_> {
        SlicePixels::U16(slice)
    }
    fn through_lut(self, lut: &ModalityLut) -> Self {
        lut.map(i32::from(self))
    }
}

impl Sample for i16 {
    fn from_stored(raw: u16, bits_stored: u16, _signed: bool) -> Self {
        if bits_stored >= 16 {
            raw as i16
        } else {
            // Keep the low `bits_stored` bits and sign-extend from the top one of them.
            let shift = 16 - bits_stored;
            ((raw << shift) as i16) >> shift
        }
    }
    fn raw(self) -> u16 {
        self as u16
    }
    fn event(slice: &[Self]) -> SlicePixels<'_> {
        SlicePixels::I16(slice)
    }
    fn through_lut(self, lut: &ModalityLut) -> Self {
        (i32::from(lut.map(i32::from(self))) - LUT_OFFSET_IN_I16) as i16
    }
}

/// One file and the slices it fills, in arrival order.
struct FileJob {
    path: PathBuf,
    /// (frame in file, k, mosaic tile)
    frames: Vec<(u32, usize, Option<u32>)>,
}

/// What `fill` reads a stack with: the stack, the options, the slice callback, the first
/// slice's time and the load's start.
type FillFrom<'a> = (
    &'a Stack,
    &'a LoadOptions,
    &'a (dyn Fn(SliceEvent<'_>) + Sync),
    &'a Mutex<Option<f64>>,
    Instant,
);

/// A zero-filled array of `shape`, filled from the stack (`fill`); the slices that failed.
fn filled<T: Sample>(
    zero: T,
    shape: (usize, usize, usize),
    (stack, options, on_slice, first_slice_at, started): FillFrom<'_>,
) -> Result<(Array3<T>, Vec<SliceFailure>), ImagingError> {
    // Reserved first, failing with an error rather than aborting the process (headers are
    // bounded by their files, but a stack of many may still ask for more than there is).
    let too_large = || ImagingError::TooLarge {
        voxels: shape.0 as u128 * shape.1 as u128 * shape.2 as u128,
    };
    let n = shape
        .0
        .checked_mul(shape.1)
        .and_then(|v| v.checked_mul(shape.2))
        .ok_or_else(too_large)?;
    let mut voxels = Vec::new();
    voxels.try_reserve_exact(n).map_err(|_| too_large())?;
    voxels.resize(n, zero);
    let mut a = Array3::from_shape_vec(shape, voxels).map_err(|_| too_large())?;
    let failed = fill(
        stack,
        a.as_slice_mut(),
        options,
        on_slice,
        first_slice_at,
        started,
    )?;
    Ok((a, failed))
}

fn fill<T: Sample>(
    stack: &Stack,
    slots: Option<&mut [T]>,
    options: &LoadOptions,
    on_slice: &(dyn Fn(SliceEvent<'_>) + Sync),
    first_slice_at: &Mutex<Option<f64>>,
    started: Instant,
) -> Result<Vec<SliceFailure>, ImagingError> {
    let Some(slots) = slots else {
        return Err(ImagingError::EmptyStack);
    };
    let format = &stack.format;
    let slice_len = usize::from(format.rows) * usize::from(format.columns);
    let total = stack.slices.len();
    let slot_cells: Vec<Mutex<Option<&mut [T]>>> = slots
        .chunks_mut(slice_len)
        .map(|c| Mutex::new(Some(c)))
        .collect();

    // Files in order of their most urgent slice; a multi-frame file is one job.
    let order = arrival_order(total);
    let mut jobs: Vec<FileJob> = Vec::new();
    let mut job_of_path: std::collections::HashMap<&std::path::Path, usize> = Default::default();
    for &k in &order {
        let slice = &stack.slices[k];
        let idx = *job_of_path.entry(slice.path.as_path()).or_insert_with(|| {
            jobs.push(FileJob {
                path: slice.path.clone(),
                frames: Vec::new(),
            });
            jobs.len() - 1
        });
        jobs[idx].frames.push((slice.frame, k, slice.mosaic_tile));
    }

    let next_job = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let cancelled = || {
        options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };

    // A slice is in its slot: its modality values put in for stored ones where a Modality
    // LUT gives them (so that what the caller is told is what the volume will hold), then
    // counted, the first noted, the caller told.
    let landed = |k: usize, slot: &mut [T]| {
        if !format.is_colour()
            && let Some(lut) = stack.slices.get(k).and_then(|s| s.modality_lut.as_deref())
        {
            slot.iter_mut().for_each(|v| *v = v.through_lut(lut));
        }
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut first) = first_slice_at.lock() {
            first.get_or_insert_with(|| started.elapsed().as_secs_f64());
        }
        on_slice(SliceEvent {
            k,
            done: d,
            total,
            pixels: T::event(slot),
        });
    };

    let worker = || {
        loop {
            if cancelled() {
                return;
            }
            let j = next_job.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(j) else { return };
            let fail = |k: usize, message: String| {
                if let Ok(mut f) = failures.lock() {
                    f.push(SliceFailure {
                        k,
                        path: job.path.clone(),
                        message,
                    });
                }
            };
            if let [(0, k, None)] = job.frames[..]
                && let Some(slice) = stack.slices.get(k)
                && let Some(slot) = slot_cells.get(k).and_then(|c| c.lock().ok()?.take())
            {
                // The fast path reads the words as they lie: only samples in their low bits.
                if let Some(why) = high_bit_mismatch(slice.high_bit, format)
                    && super::header::is_uncompressed(&slice.transfer_syntax_uid)
                {
                    let e = ImagingError::Decode {
                        path: job.path.clone(),
                        frame: 0,
                        reason: why,
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                    fail(k, e.to_string());
                    continue;
                }
                if read_native_tail(&job.path, &slice.transfer_syntax_uid, format, slot) {
                    landed(k, slot);
                    continue;
                }
                // Not the simple layout: put the slot back for the general path.
                if let Some(cell) = slot_cells.get(k)
                    && let Ok(mut guard) = cell.lock()
                {
                    *guard = Some(slot);
                }
            }
            let obj = match open_full(&job.path) {
                Ok(obj) => obj,
                Err(e) => {
                    for &(_, k, _) in &job.frames {
                        fail(k, e.to_string());
                    }
                    done.fetch_add(job.frames.len(), Ordering::Relaxed);
                    continue;
                }
            };
            // A mosaic frame is decoded once and cut into its tiles.
            let mosaic_words = stack.mosaic.map(|layout| {
                let full = PixelFormat {
                    rows: layout.full_rows,
                    columns: layout.full_columns,
                    ..format.clone()
                };
                frame_samples(&obj, &job.path, 0, &full).map(|s| (layout, raw_words(s)))
            });
            job.frames.par_iter().for_each(|&(frame, k, tile)| {
                if cancelled() {
                    return;
                }
                let Some(slot) = slot_cells.get(k).and_then(|c| c.lock().ok()?.take()) else {
                    return;
                };
                let result = match (&mosaic_words, tile) {
                    (Some(Ok((layout, words))), Some(tile)) => {
                        copy_tile(words, layout, tile, format, slot);
                        Ok(())
                    }
                    (Some(Err(e)), _) => Err(ImagingError::Decode {
                        path: job.path.clone(),
                        frame,
                        reason: e.to_string(),
                    }),
                    _ => T::decode_frame(&obj, &job.path, frame, format, slot),
                };
                match result {
                    Ok(()) => landed(k, slot),
                    Err(e) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        fail(k, e.to_string());
                    }
                }
            });
        }
    };
    // The load's workers take files until the stack is done: on the global pool they would
    // hold it whole, and a second series opened beside this one (its first image), a scan of
    // a dropped folder or the browser's thumbnails would wait for this load to end. So each
    // load has threads of its own, as many as the pool it is called from (RAYON_NUM_THREADS
    // still sets them).
    // No more threads than files to read (a thumbnail's one file, one thread).
    let workers = rayon::current_num_threads().clamp(1, jobs.len().max(1));
    let run = || {
        rayon::scope(|s| {
            for _ in 0..workers {
                s.spawn(|_| worker());
            }
        })
    };
    // (One file's frames are shared out finely by `par_iter`, which holds no thread long.)
    let pool = (workers > 1)
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .thread_name(|i| format!("overread-load-{i}"))
                .build()
                .ok()
        })
        .flatten();
    match pool {
        Some(pool) => pool.install(run),
        None => run(),
    }
    if cancelled() {
        return Err(ImagingError::Cancelled);
    }
    let mut failures = failures.into_inner().unwrap_or_default();
    failures.sort_by_key(|f| f.k);
    Ok(failures)
}

fn open_full(path: &std::path::Path) -> Result<DefaultDicomObject, ImagingError> {
    super::open::open_dicom(path, false)
}

/// The stored samples of one frame, as decoded, before they go into a slot.
enum FrameSamples<'a> {
    /// Native 16-bit values already in host order.
    Words(Cow<'a, [u16]>),
    /// Little-endian bytes, `bytes_per_sample` each.
    Bytes {
        data: Cow<'a, [u8]>,
        bytes_per_sample: usize,
    },
}

/// Decode frame `frame` of `obj` (native or encapsulated) into its raw samples.
/// JPEG 2000 and HTJ2K transfer syntaxes (PS3.5 A.4.4, A.4.11).
/// Encapsulated transfer syntaxes whose frames decode to the stored words as they lie (RLE,
/// Deflated Image Frame Compression, Encapsulated Uncompressed): their samples must end at the
/// words' low bits too ([`samples_in_low_bits`]). Image codecs give samples, not words.
fn holds_words_as_they_lie(ts_uid: &str) -> bool {
    matches!(
        ts_uid,
        "1.2.840.10008.1.2.5" | "1.2.840.10008.1.2.8.1" | "1.2.840.10008.1.2.1.98"
    )
}

fn is_jpeg_2000(ts_uid: &str) -> bool {
    ts_uid.starts_with("1.2.840.10008.1.2.4.9") || ts_uid.starts_with("1.2.840.10008.1.2.4.20")
}

/// The image a JPEG 2000 codestream declares in its SIZ marker segment (ISO/IEC 15444-1
/// A.5.1): width, height and components. A JP2 file's is its codestream box's.
fn j2k_declared_size(data: &[u8]) -> Option<(u64, u64, u16)> {
    let at = data
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    // Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz.
    let siz = data.get(at + 4..)?;
    let be32 =
        |o: usize| -> Option<u32> { Some(u32::from_be_bytes(siz.get(o..o + 4)?.try_into().ok()?)) };
    let (x, y, x0, y0) = (be32(4)?, be32(8)?, be32(12)?, be32(16)?);
    let components = u16::from_be_bytes(siz.get(36..38)?.try_into().ok()?);
    Some((
        u64::from(x.checked_sub(x0)?),
        u64::from(y.checked_sub(y0)?),
        components,
    ))
}

fn frame_samples<'a>(
    obj: &'a DefaultDicomObject,
    path: &std::path::Path,
    frame: u32,
    format: &PixelFormat,
) -> Result<FrameSamples<'a>, ImagingError> {
    if format.bits_allocated == 1 {
        return bit_frame(obj, path, frame, format).map(|values| FrameSamples::Bytes {
            data: Cow::Owned(values),
            bytes_per_sample: 1,
        });
    }
    let decode_err = decode_error(path, frame);
    let samples = usize::from(format.rows)
        * usize::from(format.columns)
        * usize::from(format.samples_per_pixel);
    let ts_uid = obj.transfer_syntax_uid().trim_end_matches('\0').to_string();
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| decode_err("no Pixel Data (7FE0,0010)".into()))?;

    if let Value::PixelSequence(sequence) = pixel_data.value() {
        if holds_words_as_they_lie(&ts_uid) {
            samples_in_low_bits(obj, format).map_err(decode_err)?;
        }
        let data = encapsulated_frame(obj, sequence, frame, &ts_uid).map_err(decode_err)?;
        if is_jpeg(&ts_uid) {
            let size = [usize::from(format.columns), usize::from(format.rows)];
            let jpeg = super::jpeg::decode(&data, Some(size)).map_err(decode_err)?;
            if jpeg.width != usize::from(format.columns) || jpeg.height != usize::from(format.rows)
            {
                return Err(decode_err(format!(
                    "JPEG stream is {}x{}, header says {}x{}",
                    jpeg.width, jpeg.height, format.columns, format.rows
                )));
            }
            if jpeg.components != usize::from(format.samples_per_pixel) {
                return Err(decode_err(format!(
                    "JPEG stream has {} components, header says {} samples per pixel",
                    jpeg.components, format.samples_per_pixel
                )));
            }
            return Ok(match jpeg.samples {
                super::jpeg::JpegSamples::U8(bytes) => FrameSamples::Bytes {
                    data: Cow::Owned(bytes),
                    bytes_per_sample: 1,
                },
                super::jpeg::JpegSamples::U16(words) => FrameSamples::Words(Cow::Owned(words)),
            });
        }
        if ts_uid == "1.2.840.10008.1.2.5" {
            let bytes_per_sample = usize::from(format.bits_allocated.div_ceil(8));
            let pixels = usize::from(format.rows) * usize::from(format.columns);
            let out = super::rle::decode(
                &data,
                pixels,
                usize::from(format.samples_per_pixel),
                bytes_per_sample,
            )
            .map_err(decode_err)?;
            return Ok(FrameSamples::Bytes {
                data: Cow::Owned(out),
                bytes_per_sample,
            });
        }
        if is_jpeg_2000(&ts_uid) {
            // OpenJPEG allocates what the codestream declares before it decodes a byte
            // (found by fuzzing: 8.4 GB for a 54 kB file): the declared size must be the
            // header's.
            let declared = j2k_declared_size(&data);
            let expected = (
                u64::from(format.columns),
                u64::from(format.rows),
                format.samples_per_pixel,
            );
            if declared != Some(expected) {
                return Err(decode_err(match declared {
                    Some((w, h, c)) => format!(
                        "JPEG 2000 codestream is {w}x{h} with {c} components, header says \
                         {}x{} with {} samples per pixel",
                        format.columns, format.rows, format.samples_per_pixel
                    ),
                    None => "JPEG 2000 frame without a codestream header (SOC, SIZ)".into(),
                }));
            }
        }
        let out = registry_decode(path, frame, &ts_uid, format, data, samples * 2)?;
        let bytes_per_sample = if out.len() >= samples * 2 { 2 } else { 1 };
        if out.len() < samples * bytes_per_sample {
            return Err(decode_err(format!(
                "decoder gave {} bytes, {} samples expected",
                out.len(),
                samples
            )));
        }
        return Ok(FrameSamples::Bytes {
            data: Cow::Owned(out),
            bytes_per_sample,
        });
    }

    let Value::Primitive(value) = pixel_data.value() else {
        return Err(decode_err("Pixel Data is a sequence".into()));
    };
    samples_in_low_bits(obj, format).map_err(decode_err)?;
    let start = samples * frame as usize;
    match value {
        // 8-bit samples that dicom-rs read as 16-bit words (implicit VR, or OW): two a word,
        // the first in the low byte (PS3.5 8.1.1).
        PrimitiveValue::U16(_) if format.bits_allocated <= 8 => Ok(FrameSamples::Bytes {
            data: native_bytes(value, start, samples).map_err(decode_err)?,
            bytes_per_sample: 1,
        }),
        PrimitiveValue::U16(words) => {
            let words = words.get(start..start + samples).ok_or_else(|| {
                decode_err(format!(
                    "Pixel Data holds {} words, frame needs {start}+{samples}",
                    words.len()
                ))
            })?;
            Ok(FrameSamples::Words(Cow::Borrowed(words)))
        }
        other => {
            let bytes_per_sample = usize::from(format.bits_allocated.div_ceil(8));
            let bytes = other.to_bytes();
            let range = start * bytes_per_sample..(start + samples) * bytes_per_sample;
            if bytes.len() < range.end {
                return Err(decode_err(format!(
                    "Pixel Data holds {} bytes, frame needs {}",
                    bytes.len(),
                    range.end
                )));
            }
            let data = match bytes {
                Cow::Borrowed(b) => Cow::Borrowed(&b[range]),
                Cow::Owned(b) => Cow::Owned(b[range].to_vec()),
            };
            Ok(FrameSamples::Bytes {
                data,
                bytes_per_sample,
            })
        }
    }
}

/// Decode one encapsulated frame with the transfer syntax's dicom-rs decoder.
fn registry_decode(
    path: &std::path::Path,
    frame: u32,
    ts_uid: &str,
    format: &PixelFormat,
    data: Vec<u8>,
    capacity: usize,
) -> Result<Vec<u8>, ImagingError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| ImagingError::Unsupported {
            path: path.to_path_buf(),
            what: format!("unknown transfer syntax {ts_uid}"),
        })?;
    let Codec::EncapsulatedPixelData(Some(reader), _) = ts.codec() else {
        return Err(ImagingError::Unsupported {
            path: path.to_path_buf(),
            what: format!("no decoder for transfer syntax {} ({ts_uid})", ts.name()),
        });
    };
    let decode_err = decode_error(path, frame);
    // Deflated Image Frame Compression: inflated here, within what the frame can hold
    // (`capacity`); dicom-rs's adapter inflates without end (10 MB of zeros is 10 GB).
    if ts_uid == "1.2.840.10008.1.2.8.1" {
        return super::open::inflate_within(&data, capacity as u64)
            .map_err(|e| decode_err(e.replace("data set", "frame")));
    }
    // CharLS allocates what the JPEG-LS frame header declares before it decodes a byte (and
    // a failed allocation aborts the process): the declared size must be the header's.
    if matches!(ts_uid, "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81") {
        check_jpeg_ls_frame(&data, format).map_err(decode_err)?;
    }
    let single = OneFrame {
        ts_uid,
        format,
        data,
    };
    let mut out = Vec::with_capacity(capacity);
    // Third-party decoders must not take the process down on a corrupt frame.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        reader.decode_frame(&single, 0, &mut out)
    }))
    .map_err(|_| decode_err("the decoder failed on corrupt data".into()))?
    .map_err(|e| decode_err(e.to_string()))?;
    Ok(out)
}

/// Uncompressed samples are read from the low Bits Stored bits of each word, as every current
/// IOD has them (High Bit one below Bits Stored, PS3.5 8.1.1). Samples higher in the word
/// (old files: High Bit 15 with 12 bits stored) would be read wrong, their low bits kept: such
/// a frame fails, named, and is never shown with wrong values. (The file itself is kept: the
/// case server stores and serves it as received.)
fn samples_in_low_bits(obj: &DefaultDicomObject, format: &PixelFormat) -> Result<(), String> {
    high_bit_mismatch(super::header::int(obj, tags::HIGH_BIT), format).map_or(Ok(()), Err)
}

/// Why uncompressed samples of `format` with High Bit `high_bit` are not read, if they are not
/// (see [`samples_in_low_bits`]).
fn high_bit_mismatch(high_bit: Option<i64>, format: &PixelFormat) -> Option<String> {
    let high_bit = high_bit?;
    (format.bits_allocated > 1 && high_bit != i64::from(format.bits_stored) - 1).then(|| {
        format!(
            "High Bit (0028,0102) is {high_bit} with {} bits stored: samples that do not end at \
             the word's low bits are not read",
            format.bits_stored
        )
    })
}

/// A JPEG-LS frame whose frame header (SOF55) gives the size, components and (at most) the
/// precision the DICOM header does: any other would be decoded to a size the header does not
/// give, or allocated by CharLS at whatever size it names. A header of 0 lines or columns
/// (sized later by an LSE marker) is refused too.
fn check_jpeg_ls_frame(data: &[u8], format: &PixelFormat) -> Result<(), String> {
    match super::jpeg::jpeg_ls_frame(data) {
        Some((precision, rows, columns, components))
            if (rows, columns, u16::from(components))
                == (format.rows, format.columns, format.samples_per_pixel)
                && u16::from(precision) <= format.bits_allocated.max(8) =>
        {
            Ok(())
        }
        Some((precision, rows, columns, components)) => Err(format!(
            "JPEG-LS stream is {columns}x{rows} with {components} components of {precision} \
             bits, header says {}x{} with {} samples per pixel of {} bits",
            format.columns, format.rows, format.samples_per_pixel, format.bits_allocated
        )),
        None => Err("JPEG-LS frame without a frame header (SOI, SOF55)".into()),
    }
}

/// One frame of a 1-bit image (Bits Allocated 1: segmentations, overlays kept as images) as
/// one 0/1 byte a pixel.
///
/// Native Pixel Data packs the bits of all frames in one run, first pixel in the least
/// significant bit of the first byte, and a frame starts right after the previous one's last
/// bit, not at a byte boundary (PS3.5 8.1.1 and 8.2). 16-bit words hold their bits the same
/// way in the word's value, so big-endian OW is read as words. An encapsulated frame is
/// compressed on its own: RLE and deflate hold its packed bits padded to a byte (PS3.5 G.2,
/// A.4.11 for Deflated Image Frame Compression); JPEG 2000 holds 1-bit samples, which the
/// decoder gives back one a byte.
fn bit_frame(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
    frame: u32,
    format: &PixelFormat,
) -> Result<Vec<u8>, ImagingError> {
    let decode_err = decode_error(path, frame);
    if format.samples_per_pixel != 1 {
        return Err(ImagingError::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "1-bit images with {} samples per pixel",
                format.samples_per_pixel
            ),
        });
    }
    let pixels = usize::from(format.rows) * usize::from(format.columns);
    let packed = pixels.div_ceil(8);
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| decode_err("no Pixel Data (7FE0,0010)".into()))?;
    let ts_uid = obj.transfer_syntax_uid().trim_end_matches('\0').to_string();
    match pixel_data.value() {
        Value::PixelSequence(sequence) => {
            let data = encapsulated_frame(obj, sequence, frame, &ts_uid).map_err(decode_err)?;
            let image_codec = ts_uid.starts_with("1.2.840.10008.1.2.4.");
            let out = if ts_uid == "1.2.840.10008.1.2.5" {
                super::rle::decode(&data, packed, 1, 1).map_err(decode_err)?
            } else if image_codec {
                // The codec stream holds 1-bit samples; its decoder writes them a byte each.
                let as_bytes = PixelFormat {
                    bits_allocated: 8,
                    ..format.clone()
                };
                registry_decode(path, frame, &ts_uid, &as_bytes, data, pixels)?
            } else {
                registry_decode(path, frame, &ts_uid, format, data, packed)?
            };
            let expected = if image_codec { pixels } else { packed };
            if out.len() < expected {
                return Err(decode_err(format!(
                    "decoder gave {} bytes, {expected} expected for {pixels} 1-bit pixels",
                    out.len()
                )));
            }
            Ok(if image_codec {
                out[..pixels].iter().map(|&v| u8::from(v != 0)).collect()
            } else {
                unpack_bits(&out, 0, pixels)
            })
        }
        Value::Primitive(value) => {
            // The bytes the frame's bits lie in, then its bits from the first one's offset.
            let first_bit = pixels * frame as usize;
            let (first_byte, end_byte) = (first_bit / 8, (first_bit + pixels).div_ceil(8));
            let bytes =
                native_bytes(value, first_byte, end_byte - first_byte).map_err(decode_err)?;
            Ok(unpack_bits(&bytes, first_bit % 8, pixels))
        }
        Value::Sequence(_) => Err(decode_err("Pixel Data is a sequence".into())),
    }
}

/// `count` bits from bit `first` on, least significant bit of each byte first, one a byte.
fn unpack_bits(bytes: &[u8], first: usize, count: usize) -> Vec<u8> {
    (first..first + count)
        .map(|b| bytes.get(b / 8).map_or(0, |byte| (byte >> (b % 8)) & 1))
        .collect()
}

/// The fast path for the commonest file on a CD: one native little-endian frame whose Pixel
/// Data is the file's last element. The element header just before the last `rows x columns x 2`
/// bytes is checked (tag (7FE0,0010), VR OW/OB or implicit, exact length), then the pixels are
/// read straight into the slot: one read, no data-set parse, no intermediate copy. Anything else
/// returns false and the file goes the general way.
fn read_native_tail<T: Sample>(
    path: &std::path::Path,
    ts_uid: &str,
    format: &PixelFormat,
    slot: &mut [T],
) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    if cfg!(target_endian = "big")
        || format.bits_allocated != 16
        || format.samples_per_pixel != 1
        || format.is_colour()
    {
        return false;
    }
    let explicit = match ts_uid.trim_end_matches('\0') {
        "1.2.840.10008.1.2.1" => true,
        "1.2.840.10008.1.2" => false,
        _ => return false,
    };
    let expected = slot.len() * 2;
    let head = if explicit { 12 } else { 8 };
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    let Ok(len) = usize::try_from(len) else {
        return false;
    };
    let Some(at) = len.checked_sub(expected + head).filter(|at| *at >= 132) else {
        return false;
    };
    let mut h = [0u8; 12];
    if file.seek(SeekFrom::Start(at as u64)).is_err() || file.read_exact(&mut h[..head]).is_err() {
        return false;
    }
    let length_ok =
        |b: &[u8]| b.try_into().map(u32::from_le_bytes).ok() == u32::try_from(expected).ok();
    let header_ok = h[..4] == [0xE0, 0x7F, 0x10, 0x00]
        && if explicit {
            matches!(&h[4..8], b"OW\0\0" | b"OB\0\0") && length_ok(&h[8..12])
        } else {
            length_ok(&h[4..8])
        };
    if !header_ok || file.read_exact(bytemuck::cast_slice_mut(slot)).is_err() {
        return false;
    }
    if format.bits_stored < 16 || format.signed {
        for v in slot.iter_mut() {
            *v = T::from_stored(v.raw(), format.bits_stored, format.signed);
        }
    }
    true
}

/// Raw stored words of a frame, for cutting mosaics into tiles.
fn raw_words(samples: FrameSamples<'_>) -> Vec<u16> {
    match samples {
        FrameSamples::Words(w) => w.into_owned(),
        FrameSamples::Bytes {
            data,
            bytes_per_sample: 2,
        } => data
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect(),
        FrameSamples::Bytes { data, .. } => data.iter().map(|&b| u16::from(b)).collect(),
    }
}

/// Copy tile `tile` of a decoded mosaic into a slice slot.
fn copy_tile<T: Sample>(
    words: &[u16],
    layout: &super::mosaic::MosaicLayout,
    tile: u32,
    format: &PixelFormat,
    slot: &mut [T],
) {
    let columns = usize::from(layout.tile_columns);
    for (y, row) in slot.chunks_mut(columns).enumerate() {
        let start = layout.row_offset(tile, y);
        if let Some(src) = words.get(start..start + columns) {
            for (dst, &raw) in row.iter_mut().zip(src) {
                *dst = T::from_stored(raw, format.bits_stored, format.signed);
            }
        }
    }
}

/// JPEG transfer syntaxes (PS3.5 A.4.1), decoded by libjpeg-turbo.
pub(crate) fn is_jpeg(ts_uid: &str) -> bool {
    matches!(
        ts_uid,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.53"
            | "1.2.840.10008.1.2.4.55"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70"
    )
}

/// Number of Frames (0028,0008); 1 when absent or not positive.
fn number_of_frames(obj: &DefaultDicomObject) -> u32 {
    super::header::int(obj, tags::NUMBER_OF_FRAMES)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// The codec bytes of frame `frame` of `obj`'s encapsulated Pixel Data `sequence`.
fn encapsulated_frame(
    obj: &DefaultDicomObject,
    sequence: &dicom_core::value::PixelFragmentSequence<dicom_core::value::InMemFragment>,
    frame: u32,
    ts_uid: &str,
) -> Result<Vec<u8>, String> {
    frame_fragments(
        sequence.offset_table(),
        sequence.fragments(),
        frame,
        number_of_frames(obj),
        ts_uid,
    )
}

/// The error of a frame that cannot be decoded, for `map_err` on a reason.
fn decode_error(path: &std::path::Path, frame: u32) -> impl Fn(String) -> ImagingError + Copy + '_ {
    move |reason| ImagingError::Decode {
        path: path.to_path_buf(),
        frame,
        reason,
    }
}

/// The bytes of frame `frame` in an encapsulated Pixel Data (PS3.5 A.4): by the Basic Offset
/// Table when there is one, one fragment a frame when the counts agree, and otherwise by the
/// codec's start-of-image marker (a fragment that begins with it starts a new frame), which is
/// how frames are found in multi-frame files written without an offset table.
pub(crate) fn frame_fragments(
    offset_table: &[u32],
    fragments: &[Vec<u8>],
    frame: u32,
    frames: u32,
    ts_uid: &str,
) -> Result<Vec<u8>, String> {
    let frame_usize = frame as usize;
    if frame >= frames {
        return Err(format!("frame {frame} asked of {frames}"));
    }
    if frames == 1 {
        return Ok(fragments.concat());
    }
    // A table is used only when it can be right: it starts at 0, rises, and every entry is
    // where a fragment starts (a table of zeros sent every frame's bytes to the last one).
    let fragment_starts: Vec<usize> = fragments
        .iter()
        .scan(0usize, |at, f| {
            let start = *at;
            *at += f.len() + 8;
            Some(start)
        })
        .collect();
    let table_sound = offset_table.first() == Some(&0)
        && offset_table.windows(2).all(|w| w[0] < w[1])
        && offset_table
            .iter()
            .all(|o| fragment_starts.binary_search(&(*o as usize)).is_ok());
    if table_sound && offset_table.len() == frames as usize {
        let start = offset_table[frame_usize] as usize;
        let end = offset_table.get(frame_usize + 1).map(|o| *o as usize);
        let mut at = 0usize;
        let mut out = Vec::new();
        for f in fragments {
            if at >= start && end.is_none_or(|e| at < e) {
                out.extend_from_slice(f);
            }
            at += f.len() + 8;
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    if fragments.len() == frames as usize {
        return Ok(fragments[frame_usize].clone());
    }
    let starts_frame = |f: &Vec<u8>| match ts_uid {
        // JPEG and JPEG-LS: SOI marker.
        t if is_jpeg(t) || t.starts_with("1.2.840.10008.1.2.4.8") => f.starts_with(&[0xFF, 0xD8]),
        // JPEG 2000 and HTJ2K: SOC marker or a JP2 signature box.
        t if is_jpeg_2000(t) => f.starts_with(&[0xFF, 0x4F]) || f.get(4..8) == Some(b"jP  "),
        _ => false,
    };
    let mut grouped: Vec<Vec<u8>> = Vec::new();
    for f in fragments {
        match grouped.last_mut() {
            Some(current) if !starts_frame(f) => current.extend_from_slice(f),
            _ => grouped.push(f.clone()),
        }
    }
    if grouped.len() == frames as usize {
        return Ok(grouped.swap_remove(frame_usize));
    }
    Err(format!(
        "cannot find frame {frame}: {} fragments, no usable offset table, {} frames",
        fragments.len(),
        frames
    ))
}

/// One frame's bytes presented to a dicom-rs decoder as a single-frame object, so frame
/// lookup is ours (see [`frame_fragments`]) and the decoder never needs an offset table.
struct OneFrame<'a> {
    ts_uid: &'a str,
    format: &'a PixelFormat,
    data: Vec<u8>,
}

impl PixelDataObject for OneFrame<'_> {
    fn transfer_syntax_uid(&self) -> &str {
        self.ts_uid
    }
    fn rows(&self) -> Option<u16> {
        Some(self.format.rows)
    }
    fn cols(&self) -> Option<u16> {
        Some(self.format.columns)
    }
    fn samples_per_pixel(&self) -> Option<u16> {
        Some(self.format.samples_per_pixel)
    }
    fn bits_allocated(&self) -> Option<u16> {
        Some(self.format.bits_allocated)
    }
    fn bits_stored(&self) -> Option<u16> {
        Some(self.format.bits_stored)
    }
    fn photometric_interpretation(&self) -> Option<&str> {
        Some(self.format.photometric_interpretation.as_str())
    }
    fn number_of_frames(&self) -> Option<u32> {
        Some(1)
    }
    fn number_of_fragments(&self) -> Option<u32> {
        Some(1)
    }
    fn fragment(&self, fragment: usize) -> Option<Cow<'_, [u8]>> {
        (fragment == 0).then_some(Cow::Borrowed(self.data.as_slice()))
    }
    fn offset_table(&self) -> Option<Cow<'_, [u32]>> {
        Some(Cow::Owned(Vec::new()))
    }
    fn raw_pixel_data(&self) -> Option<dicom_encoding::adapters::RawPixelData> {
        Some(dicom_encoding::adapters::RawPixelData {
            fragments: vec![self.data.clone()].into(),
            offset_table: Vec::new().into(),
        })
    }
}

fn decode_frame_into<T: Sample>(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
    frame: u32,
    format: &PixelFormat,
    slot: &mut [T],
) -> Result<(), ImagingError> {
    let samples = frame_samples(obj, path, frame, format)?;
    let (bits, signed) = (format.bits_stored, format.signed);
    match samples {
        FrameSamples::Words(words) => {
            for (dst, &raw) in slot.iter_mut().zip(words.iter()) {
                *dst = T::from_stored(raw, bits, signed);
            }
        }
        FrameSamples::Bytes {
            data,
            bytes_per_sample: 2,
        } => {
            for (dst, b) in slot.iter_mut().zip(data.chunks_exact(2)) {
                *dst = T::from_stored(u16::from_le_bytes([b[0], b[1]]), bits, signed);
            }
        }
        FrameSamples::Bytes { data, .. } => {
            for (dst, &b) in slot.iter_mut().zip(data.iter()) {
                *dst = T::from_stored(u16::from(b), bits.min(8), signed);
            }
        }
    }
    // Planar/colour frames never reach here (check_format); monochrome frames fill the slot.
    Ok(())
}

/// One colour frame into RGB voxels.
///
/// Where the frame's bytes are laid out as stored (native Pixel Data, Deflated Image Frame
/// Compression, Encapsulated Uncompressed) they are pixel-interleaved or, with Planar
/// Configuration 1, one plane a colour; YBR_FULL is converted to RGB, and YBR_FULL_422 (two
/// lumas, then the pair's Cb and Cr) upsampled first, by PS3.3 C.7.6.3.1.2. Codecs give three
/// samples a pixel, interleaved: RLE and JPEG-LS in the stored model (neither has a colour
/// transform); JPEG 2000 as RGB when the codestream carries its own transform (YBR_ICT,
/// YBR_RCT), else in the stored model; JPEG as RGB when libjpeg-turbo found the stream in YCbCr
/// and converted it, else as stored.
///
/// With `keep_ybr`, samples that come out of the codec (or the file) in YBR_FULL stay so,
/// and YBR_FULL_422 is upsampled to YBR_FULL without conversion: nothing is rounded, as
/// writing a lossless object again natively needs. Returns the model the slot holds: `RGB`,
/// or `YBR_FULL` with `keep_ybr`.
fn decode_rgb_frame_into(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
    frame: u32,
    format: &PixelFormat,
    slot: &mut [[u8; 3]],
    keep_ybr: bool,
) -> Result<&'static str, ImagingError> {
    let decode_err = decode_error(path, frame);
    let pixels = usize::from(format.rows) * usize::from(format.columns);
    if format.is_palette() {
        let palette = Palette::of(obj, format.signed).map_err(|e| ImagingError::Unsupported {
            path: path.to_path_buf(),
            what: e,
        })?;
        let mut indices = vec![0u16; pixels];
        decode_frame_into(obj, path, frame, format, &mut indices)?;
        let signed_bits = format.signed.then_some(format.bits_stored);
        for (dst, index) in slot.iter_mut().zip(&indices) {
            *dst = palette.colour(*index, signed_bits);
        }
        return Ok("RGB");
    }
    let photometric = format.photometric_interpretation.trim();
    // The stored layout's frame length (YBR_FULL_422 keeps two bytes a pixel).
    let stored_len = if photometric == "YBR_FULL_422" {
        pixels * 2
    } else {
        pixels * 3
    };
    let stored_planar = super::header::int(obj, tags::PLANAR_CONFIGURATION) == Some(1)
        && photometric != "YBR_FULL_422";
    // What a codec that gives three samples a pixel leaves to convert.
    let decoded_model = match photometric {
        "YBR_FULL_422" => "YBR_FULL",
        "YBR_ICT" | "YBR_RCT" => "RGB",
        other => other,
    };
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| decode_err("no Pixel Data (7FE0,0010)".into()))?;
    let ts_uid = obj.transfer_syntax_uid().trim_end_matches('\0').to_string();
    let (bytes, planar, model): (Cow<[u8]>, bool, &str) = match pixel_data.value() {
        Value::Primitive(value) => {
            samples_in_low_bits(obj, format).map_err(decode_err)?;
            let bytes =
                native_bytes(value, stored_len * frame as usize, stored_len).map_err(decode_err)?;
            (bytes, stored_planar, photometric)
        }
        Value::PixelSequence(sequence) => {
            if holds_words_as_they_lie(&ts_uid) {
                samples_in_low_bits(obj, format).map_err(decode_err)?;
            }
            let data = encapsulated_frame(obj, sequence, frame, &ts_uid).map_err(decode_err)?;
            match ts_uid.as_str() {
                "1.2.840.10008.1.2.5" => {
                    let out = super::rle::decode(&data, pixels, 3, 1).map_err(decode_err)?;
                    (Cow::Owned(out), false, decoded_model)
                }
                // Frames stored as native ones, compressed whole or not at all.
                "1.2.840.10008.1.2.8.1" | "1.2.840.10008.1.2.1.98" => {
                    let out = registry_decode(path, frame, &ts_uid, format, data, stored_len)?;
                    (Cow::Owned(out), stored_planar, photometric)
                }
                t if is_jpeg(t) => {
                    let size = [usize::from(format.columns), usize::from(format.rows)];
                    let jpeg = super::jpeg::decode(&data, Some(size)).map_err(decode_err)?;
                    if (jpeg.width, jpeg.height, jpeg.components)
                        != (usize::from(format.columns), usize::from(format.rows), 3)
                    {
                        return Err(decode_err(format!(
                            "JPEG stream is {}x{} with {} components, header says {}x{} colour",
                            jpeg.width, jpeg.height, jpeg.components, format.columns, format.rows
                        )));
                    }
                    let super::jpeg::JpegSamples::U8(out) = jpeg.samples else {
                        return Err(decode_err("colour JPEG of more than 8 bits".into()));
                    };
                    let model = if jpeg.converted_from_ycbcr {
                        "RGB"
                    } else {
                        decoded_model
                    };
                    (Cow::Owned(out), false, model)
                }
                t if t.starts_with("1.2.840.10008.1.2.4.8") => {
                    // CharLS gives a stream without interleave (a scan a component) plane by
                    // plane, interleaved ones pixel by pixel.
                    let planar = super::jpeg::first_scan_components(&data) == Some(1);
                    let out = registry_decode(path, frame, &ts_uid, format, data, pixels * 3)?;
                    (Cow::Owned(out), planar, decoded_model)
                }
                _ => {
                    let out = registry_decode(path, frame, &ts_uid, format, data, pixels * 3)?;
                    (Cow::Owned(out), false, decoded_model)
                }
            }
        }
        Value::Sequence(_) => return Err(decode_err("Pixel Data is a sequence".into())),
    };
    let needed = if model == "YBR_FULL_422" {
        pixels * 2
    } else {
        pixels * 3
    };
    if bytes.len() < needed || slot.len() < pixels {
        return Err(decode_err(format!(
            "{} colour bytes for {pixels} pixels",
            bytes.len()
        )));
    }
    // Decided once, not per pixel.
    let ybr = model == "YBR_FULL" || model == "YBR_FULL_422";
    let convert = ybr && !keep_ybr;
    let pixel = |v: [u8; 3]| {
        if convert {
            ybr_to_rgb(v[0], v[1], v[2])
        } else {
            v
        }
    };
    match (model, planar) {
        ("YBR_FULL_422", _) => {
            for (pair, chunk) in slot.chunks_mut(2).zip(bytes.chunks_exact(4)) {
                let (cb, cr) = (chunk[2], chunk[3]);
                for (dst, y) in pair.iter_mut().zip([chunk[0], chunk[1]]) {
                    *dst = pixel([y, cb, cr]);
                }
            }
        }
        (_, true) => {
            let (r, rest) = bytes.split_at(pixels);
            let (g, b) = rest.split_at(pixels);
            for (p, dst) in slot.iter_mut().enumerate() {
                *dst = pixel([r[p], g[p], b[p]]);
            }
        }
        (_, false) => {
            for (dst, v) in slot.iter_mut().zip(bytes.chunks_exact(3)) {
                *dst = pixel([v[0], v[1], v[2]]);
            }
        }
    }
    Ok(if ybr && keep_ybr { "YBR_FULL" } else { "RGB" })
}

/// The red, green and blue Palette Color Lookup Tables of a PALETTE COLOR image (PS3.3
/// C.7.6.3.1.5-6), as 8-bit levels.
#[derive(Debug, Clone)]
struct Palette {
    /// The stored value mapped to each table's first entry (one descriptor for all three).
    first_mapped: [i64; 3],
    tables: [Vec<u8>; 3],
}

impl Palette {
    /// The tables of `obj`, whose pixel data is `signed` (Pixel Representation 1).
    fn of(obj: &DefaultDicomObject, signed: bool) -> Result<Palette, String> {
        let descriptors = [
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        ];
        let data = [
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ];
        let mut first_mapped = [0i64; 3];
        let mut tables: [Vec<u8>; 3] = Default::default();
        for c in 0..3 {
            let descriptor = obj
                .get(descriptors[c])
                .and_then(|e| e.to_multi_int::<i64>().ok())
                .filter(|d| d.len() >= 3)
                .ok_or("palette colour without a Palette Color Lookup Table Descriptor")?;
            // PS3.3 C.7.6.3.1.5: the entry count and the bits are unsigned 16-bit (0 entries
            // means 65536); the first mapped value is unsigned, or signed for signed pixel
            // data. dicom-rs may read the descriptor as US or SS either way: its 16 bits are
            // taken and read as the standard says.
            let entries = match descriptor[0] as u16 {
                0 => 65_536,
                n => usize::from(n),
            };
            let first = if signed {
                i64::from(descriptor[1] as i16)
            } else {
                i64::from(descriptor[1] as u16)
            };
            let bits = descriptor[2] as u16;
            let element = obj.get(data[c]).ok_or(
                "palette colour without Palette Color Lookup Table Data (segmented palettes are not supported)",
            )?;
            let bytes = element.to_bytes().map_err(|e| e.to_string())?;
            // The entries' width in the data: as the descriptor says, except that 8-bit
            // entries may be stored one a 16-bit word (C.7.6.3.1.5's note), which the data's
            // length shows.
            if !matches!(bits, 8 | 16) {
                return Err(format!("palette entries of {bits} bits"));
            }
            let wide = bytes.len() >= 2 * entries;
            let levels: Vec<u8> = match (bits, wide) {
                (8, false) => bytes.iter().take(entries).copied().collect(),
                // An 8-bit value in the low byte of each word.
                (8, true) => bytes.chunks_exact(2).take(entries).map(|b| b[0]).collect(),
                // 16-bit entries, little-endian: the high byte is the 8-bit level.
                _ => bytes.chunks_exact(2).take(entries).map(|b| b[1]).collect(),
            };
            if levels.len() < entries || entries == 0 {
                return Err(format!(
                    "palette table of {} entries, descriptor says {entries}",
                    levels.len()
                ));
            }
            first_mapped[c] = first;
            tables[c] = levels;
        }
        Ok(Palette {
            first_mapped,
            tables,
        })
    }

    /// The colour of stored index `raw` (its Bits Stored, sign-extended when `signed_bits`
    /// says how many): below the first mapped value the first entry, past the last the last
    /// (C.7.6.3.1.5).
    fn colour(&self, raw: u16, signed_bits: Option<u16>) -> [u8; 3] {
        let value = match signed_bits {
            Some(bits) if (1..16).contains(&bits) => {
                let shift = 16 - bits;
                i64::from(((raw << shift) as i16) >> shift)
            }
            Some(_) => i64::from(raw as i16),
            None => i64::from(raw),
        };
        std::array::from_fn(|c| {
            let table = &self.tables[c];
            let at = (value - self.first_mapped[c]).clamp(0, table.len() as i64 - 1) as usize;
            table.get(at).copied().unwrap_or(0)
        })
    }
}

/// Bytes `start..start + len` of a native Pixel Data value, little-endian, copying only what
/// the range covers (a multi-frame OW value is not converted whole once a frame).
fn native_bytes(value: &PrimitiveValue, start: usize, len: usize) -> Result<Cow<'_, [u8]>, String> {
    let short = |have: usize| format!("Pixel Data holds {have} bytes, frame needs {}", start + len);
    match value {
        PrimitiveValue::U16(words) => {
            let (first, last) = (start / 2, (start + len).div_ceil(2));
            let covering = words
                .get(first..last)
                .ok_or_else(|| short(words.len() * 2))?;
            let bytes: Vec<u8> = covering.iter().flat_map(|w| w.to_le_bytes()).collect();
            let skip = start - first * 2;
            Ok(Cow::Owned(bytes[skip..skip + len].to_vec()))
        }
        other => match other.to_bytes() {
            Cow::Borrowed(b) => b
                .get(start..start + len)
                .map(Cow::Borrowed)
                .ok_or_else(|| short(b.len())),
            Cow::Owned(b) => b
                .get(start..start + len)
                .map(|r| Cow::Owned(r.to_vec()))
                .ok_or_else(|| short(b.len())),
        },
    }
}

/// YCbCr (full range, 8-bit) to RGB, PS3.3 C.7.6.3.1.2.
fn ybr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let channel = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [
        channel(y + 1.402 * cr),
        channel(y - 0.344_136 * cb - 0.714_136 * cr),
        channel(y + 1.772 * cb),
    ]
}

/// Decode one frame of one file into stored values (any transfer syntax, any samples per
/// pixel), without grouping: for codec checks and thumbnails.
pub fn decode_frame_values(
    path: &std::path::Path,
    frame: u32,
) -> Result<DecodedFrame, ImagingError> {
    let obj = open_full(path)?;
    decode_opened_frame(&obj, path, frame)
}

/// Every frame of one file, opened once (codec checks of multi-frame files).
pub fn decode_all_frame_values(path: &std::path::Path) -> Result<Vec<DecodedFrame>, ImagingError> {
    let obj = open_full(path)?;
    let format = format_of(&obj, path)?;
    (0..number_of_frames(&obj))
        .map(|f| decode_frame_of(&obj, path, f, &format, false))
        .collect()
}

/// One frame exactly as stored: the codec stream of an encapsulated frame, or the
/// little-endian sample bytes of a native one (WADO-RS frame retrieval, PS3.18 10.4.1.1.3).
#[derive(Debug, Clone)]
pub struct StoredFrame {
    pub transfer_syntax_uid: String,
    /// True when the bytes are a compressed stream (the transfer syntax says which codec).
    pub encapsulated: bool,
    pub bytes: Vec<u8>,
}

/// Frames `frames` (0-based) of one file, without decoding them.
pub fn stored_frames(
    path: &std::path::Path,
    frames: &[u32],
) -> Result<Vec<StoredFrame>, ImagingError> {
    let obj = open_full(path)?;
    let ts_uid = obj.transfer_syntax_uid().trim_end_matches('\0').to_string();
    let count = number_of_frames(&obj);
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| decode_error(path, 0)("no Pixel Data (7FE0,0010)".into()))?;
    let header = image_header(&obj, path)?;
    let (rows, columns, bits) = (header.rows, header.columns, header.bits_allocated);
    // YBR_FULL_422 keeps two samples a pixel (PS3.3 C.7.6.3.1.2).
    let spp = if header.photometric_interpretation.trim() == "YBR_FULL_422" {
        2
    } else {
        header.samples_per_pixel
    };
    frames
        .iter()
        .map(|&frame| {
            let err = decode_error(path, frame);
            if frame >= count {
                return Err(err(format!("frame {} asked of {count}", frame + 1)));
            }
            let bytes = match pixel_data.value() {
                Value::PixelSequence(seq) => {
                    frame_fragments(seq.offset_table(), seq.fragments(), frame, count, &ts_uid)
                        .map_err(err)?
                }
                Value::Primitive(value) => {
                    if bits % 8 != 0 {
                        return Err(err(format!("{bits}-bit packed frames are not served")));
                    }
                    let len = usize::from(rows)
                        .checked_mul(usize::from(columns))
                        .and_then(|v| v.checked_mul(usize::from(spp)))
                        .and_then(|v| v.checked_mul(usize::from(bits / 8)))
                        .ok_or_else(|| err("implausible frame size".into()))?;
                    let start = len
                        .checked_mul(frame as usize)
                        .ok_or_else(|| err("implausible frame size".into()))?;
                    native_bytes(value, start, len).map_err(err)?.into_owned()
                }
                Value::Sequence(_) => return Err(err("Pixel Data is a sequence".into())),
            };
            Ok(StoredFrame {
                transfer_syntax_uid: ts_uid.clone(),
                encapsulated: matches!(pixel_data.value(), Value::PixelSequence(_)),
                bytes,
            })
        })
        .collect()
}

/// Frames of one file decoded to the samples uncompressed Pixel Data holds (PS3.5 8.1.1):
/// what a compressed object becomes when it is sent in Explicit VR Little Endian (WADO-RS's
/// default transfer syntax, PS3.18 8.7.3.5.2).
#[derive(Debug, Clone)]
pub struct NativeFrames {
    /// The format the samples are in: the file's for grey frames (Bits Allocated 8 or 16);
    /// 8 bits, three samples a pixel, interleaved (Planar Configuration 0), for colour ones:
    /// `RGB`, or `YBR_FULL` where the codec gives that (RLE, JPEG-LS, lossless JPEG, Deflated
    /// Image Frame: converting would round, and the object is lossless), YBR_FULL_422 upsampled
    /// to it. JPEG 2000's YBR_ICT and YBR_RCT, and JPEG in YCbCr, decode to RGB.
    pub format: PixelFormat,
    /// Bytes a frame: Rows x Columns x samples x Bits Allocated / 8.
    pub frame_len: usize,
    /// The frames asked for, one after another, little-endian.
    pub bytes: Vec<u8>,
}

impl NativeFrames {
    /// Each frame's bytes.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.chunks(self.frame_len.max(1))
    }
}

/// Whether frames of this format are written as native samples here ([`native_frames`]):
/// grey of 8 or 16 bits allocated, or 8-bit colour in a model the decoder reads. Palette
/// colour (its indices would be expanded) and 1-bit images (packed across frames) are not.
pub fn writes_natively(
    photometric: &str,
    samples_per_pixel: u16,
    bits_allocated: u16,
) -> Result<(), String> {
    let photometric = photometric.trim();
    match samples_per_pixel {
        1 if photometric == "PALETTE COLOR" => {
            Err("palette colour is not written as native samples here".into())
        }
        1 if matches!(bits_allocated, 8 | 16) => Ok(()),
        1 => Err(format!(
            "Bits Allocated {bits_allocated} is not written as native samples here (8 and 16 are)"
        )),
        3 if bits_allocated == 8 && COLOUR_PHOTOMETRICS.contains(&photometric) => Ok(()),
        n => Err(format!(
            "{n} samples a pixel of {bits_allocated} bits in {photometric} are not written as \
             native samples here"
        )),
    }
}

/// Frames `frames` (0-based; all when `None`) of one file, decoded to native samples
/// ([`NativeFrames`]), refused before decoding when they would take more than `cap` bytes or
/// are not written natively ([`writes_natively`]). Each frame is written into the one buffer
/// as it is decoded.
pub fn native_frames(
    path: &std::path::Path,
    frames: Option<&[u32]>,
    cap: u64,
) -> Result<NativeFrames, ImagingError> {
    let obj = open_full(path)?;
    let header = format_of(&obj, path)?;
    let unsupported = |what: String| ImagingError::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    writes_natively(
        &header.photometric_interpretation,
        header.samples_per_pixel,
        header.bits_allocated,
    )
    .map_err(unsupported)?;
    let count = number_of_frames(&obj);
    let all: Vec<u32> = (0..count).collect();
    let frames = frames.unwrap_or(&all);
    if let Some(f) = frames.iter().find(|f| **f >= count) {
        return Err(decode_error(path, *f)(format!(
            "frame {} asked of {count}",
            f + 1
        )));
    }
    let frame_len = u64::from(header.rows)
        * u64::from(header.columns)
        * u64::from(header.samples_per_pixel)
        * u64::from(header.bits_allocated / 8);
    let total = frame_len.saturating_mul(frames.len() as u64);
    if total > cap {
        return Err(unsupported(format!(
            "{} frames of {frame_len} bytes are more than the {cap} bytes allowed",
            frames.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut format = None;
    for &f in frames {
        let decoded = decode_frame_of(&obj, path, f, &header, true)?;
        if decoded.format.bits_allocated == 16 {
            for v in &decoded.values {
                bytes.extend_from_slice(&if decoded.format.signed {
                    (*v as i16).to_le_bytes()
                } else {
                    (*v as u16).to_le_bytes()
                });
            }
        } else {
            bytes.extend(decoded.values.iter().map(|v| *v as u8));
        }
        format = Some(decoded.format);
    }
    let format = format.ok_or_else(|| unsupported("no frame asked for".into()))?;
    Ok(NativeFrames {
        format,
        frame_len: usize::try_from(frame_len).unwrap_or(usize::MAX),
        bytes,
    })
}

/// The checked header of an opened image file (Rows and Columns 16-bit and not zero, the
/// pixels within what the file can hold, plausible samples and bits), as the scan reads it.
fn image_header(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
) -> Result<Box<super::header::InstanceHeader>, ImagingError> {
    let ts_uid = obj
        .meta()
        .transfer_syntax
        .trim_end_matches(['\0', ' '])
        .to_string();
    match super::header::header_from_dataset(path, obj, ts_uid, String::new(), String::new())? {
        super::header::FileKind::Image(h) => Ok(h),
        _ => Err(ImagingError::BadAttribute {
            path: path.to_path_buf(),
            what: "not an image".into(),
        }),
    }
}

fn decode_opened_frame(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
    frame: u32,
) -> Result<DecodedFrame, ImagingError> {
    decode_opened_frame_as(obj, path, frame, false)
}

/// [`decode_opened_frame`], colour frames that decode in YBR_FULL (or YBR_FULL_422) kept in
/// YBR_FULL when `keep_ybr` (the format says which model the values are in).
fn decode_opened_frame_as(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
    frame: u32,
    keep_ybr: bool,
) -> Result<DecodedFrame, ImagingError> {
    decode_frame_of(obj, path, frame, &format_of(obj, path)?, keep_ybr)
}

/// The pixel format of an opened image file (its checked header's).
fn format_of(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
) -> Result<PixelFormat, ImagingError> {
    let header = image_header(obj, path)?;
    Ok(PixelFormat {
        rows: header.rows,
        columns: header.columns,
        samples_per_pixel: header.samples_per_pixel,
        bits_allocated: header.bits_allocated,
        bits_stored: header.bits_stored,
        signed: header.signed,
        photometric_interpretation: header.photometric_interpretation.clone(),
    })
}

/// [`decode_opened_frame_as`] with the file's format read once by the caller (a multi-frame
/// file's header, functional groups and all, is not read again for every frame).
fn decode_frame_of(
    obj: &DefaultDicomObject,
    path: &std::path::Path,
    frame: u32,
    format: &PixelFormat,
    keep_ybr: bool,
) -> Result<DecodedFrame, ImagingError> {
    let format = format.clone();
    // The server renders frames of any file it was sent: what a volume cannot hold, a frame
    // cannot either (and a Samples per Pixel of 65535 would size the buffer below).
    check_pixel_format(&format, false, path.to_path_buf())?;
    let n = usize::from(format.rows)
        * usize::from(format.columns)
        * usize::from(format.samples_per_pixel);
    // Colour as the loader reads it: RGB, interleaved, whatever the stored layout and model,
    // palettes expanded through their tables; the format then says RGB.
    let palette = format.is_palette() && matches!(format.bits_allocated, 8 | 16);
    let three = format.samples_per_pixel == 3
        && format.bits_allocated == 8
        && COLOUR_PHOTOMETRICS.contains(&format.photometric_interpretation.trim());
    if palette || three {
        let mut rgb = vec![[0u8; 3]; usize::from(format.rows) * usize::from(format.columns)];
        let model = decode_rgb_frame_into(obj, path, frame, &format, &mut rgb, keep_ybr)?;
        let values = rgb.iter().flatten().map(|v| i32::from(*v)).collect();
        let format = PixelFormat {
            samples_per_pixel: 3,
            bits_allocated: 8,
            bits_stored: 8,
            signed: false,
            photometric_interpretation: model.into(),
            ..format
        };
        return Ok(DecodedFrame { format, values });
    }
    let mut values = vec![0i32; n];
    let samples = frame_samples(obj, path, frame, &format)?;
    let (bits, signed) = (format.bits_stored, format.signed);
    let convert = |raw: u16, bits: u16| -> i32 {
        if signed {
            i32::from(i16::from_stored(raw, bits, true))
        } else {
            i32::from(u16::from_stored(raw, bits, false))
        }
    };
    match samples {
        FrameSamples::Words(w) => values
            .iter_mut()
            .zip(w.iter())
            .for_each(|(d, &r)| *d = convert(r, bits)),
        FrameSamples::Bytes {
            data,
            bytes_per_sample: 2,
        } => values
            .iter_mut()
            .zip(data.chunks_exact(2))
            .for_each(|(d, b)| *d = convert(u16::from_le_bytes([b[0], b[1]]), bits)),
        FrameSamples::Bytes { data, .. } => values
            .iter_mut()
            .zip(data.iter())
            .for_each(|(d, &b)| *d = convert(u16::from(b), bits.min(8))),
    }
    Ok(DecodedFrame { format, values })
}

/// One frame's stored values (for 8-bit colour, RGB interleaved as the loader converts it; a
/// palette colour frame expanded to RGB, its format saying so).
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    pub format: PixelFormat,
    pub values: Vec<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(rows: u16, columns: u16, bits: u16) -> PixelFormat {
        PixelFormat {
            rows,
            columns,
            samples_per_pixel: 1,
            bits_allocated: bits,
            bits_stored: bits,
            signed: false,
            photometric_interpretation: "MONOCHROME2".into(),
        }
    }

    /// A deflated frame (Deflated Image Frame Compression) inflates within what the frame
    /// holds: a bomb of 10 MB of zeros for a 64 x 64 frame is refused, not inflated to its
    /// end; a frame of its own size inflates.
    #[test]
    fn a_deflated_frame_inflates_only_to_its_size() {
        use std::io::Write;
        let deflate = |bytes: &[u8]| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let format = grey(64, 64, 16);
        let path = std::path::Path::new("bomb.dcm");
        let ts = "1.2.840.10008.1.2.8.1";
        let bomb = deflate(&vec![0u8; 10 << 20]);
        let e = registry_decode(path, 0, ts, &format, bomb, 64 * 64 * 2).unwrap_err();
        assert!(e.to_string().contains("more than 8192 bytes"), "{e}");
        let frame: Vec<u8> = (0..64 * 64 * 2).map(|i| (i % 251) as u8).collect();
        let out = registry_decode(path, 0, ts, &format, deflate(&frame), 64 * 64 * 2).unwrap();
        assert_eq!(out, frame);
    }

    /// A JPEG-LS frame header that names another size, more components or more bits than
    /// the DICOM header is refused before CharLS allocates what it names (65535 x 65535 x
    /// 255 components: 2.2 TB).
    #[test]
    fn a_jpeg_ls_frame_of_another_size_is_refused() {
        let stream = |precision: u8, lines: u16, columns: u16, components: u8| {
            let mut s = vec![0xFF, 0xD8, 0xFF, 0xF7];
            s.extend_from_slice(&(8 + 3 * u16::from(components)).to_be_bytes());
            s.push(precision);
            s.extend_from_slice(&lines.to_be_bytes());
            s.extend_from_slice(&columns.to_be_bytes());
            s.push(components);
            for c in 0..components {
                s.extend_from_slice(&[c + 1, 0x11, 0]);
            }
            s.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0]);
            s
        };
        let format = grey(512, 512, 16);
        assert_eq!(
            check_jpeg_ls_frame(&stream(16, 512, 512, 1), &format),
            Ok(())
        );
        assert_eq!(
            check_jpeg_ls_frame(&stream(12, 512, 512, 1), &format),
            Ok(())
        );
        for (bad, said) in [
            (
                stream(16, 65535, 65535, 255),
                "65535x65535 with 255 components",
            ),
            (stream(16, 512, 511, 1), "511x512"),
            (stream(16, 0, 512, 1), "512x0"),
            (stream(16, 512, 512, 3), "3 components"),
            (vec![0xFF, 0xD8, 0xFF, 0xD9], "without a frame header"),
        ] {
            let e = check_jpeg_ls_frame(&bad, &format).unwrap_err();
            assert!(e.contains(said), "{e} / {said}");
        }
        let e = check_jpeg_ls_frame(&stream(16, 512, 512, 1), &grey(512, 512, 8)).unwrap_err();
        assert!(e.contains("of 16 bits"), "{e}");
        // The decoding path checks before CharLS sees the frame.
        let path = std::path::Path::new("jls.dcm");
        for ts in ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"] {
            let e = registry_decode(path, 0, ts, &format, stream(16, 512, 511, 1), 512 * 512 * 2)
                .unwrap_err();
            assert!(
                e.to_string().contains("JPEG-LS stream is 511x512"),
                "{ts}: {e}"
            );
        }
    }

    /// 1-bit frames run on from bit to bit across frame boundaries, least significant first.
    #[test]
    fn unpack_bits_reads_from_any_bit() {
        let bytes = [0b1010_0101u8, 0b0000_0011];
        assert_eq!(unpack_bits(&bytes, 0, 4), vec![1, 0, 1, 0]);
        assert_eq!(unpack_bits(&bytes, 6, 4), vec![0, 1, 1, 1]);
        // Past the data: zero, never a panic.
        assert_eq!(unpack_bits(&bytes, 15, 3), vec![0, 0, 0]);
    }

    /// An offset table that cannot be right (all zeros, falling, or pointing between
    /// fragments) is passed over for the frames' own start markers; a sound one is used.
    #[test]
    fn an_unsound_offset_table_is_not_followed() {
        const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
        // Three frames, the second in two fragments.
        let fragments = vec![
            vec![0xFF, 0xD8, 1, 1],
            vec![0xFF, 0xD8, 2, 2],
            vec![2, 2],
            vec![0xFF, 0xD8, 3, 3],
        ];
        let frame = |table: &[u32], f: u32| frame_fragments(table, &fragments, f, 3, JPEG_BASELINE);
        let expected = [
            vec![0xFF, 0xD8, 1, 1],
            vec![0xFF, 0xD8, 2, 2, 2, 2],
            vec![0xFF, 0xD8, 3, 3],
        ];
        for table in [
            &[0u32, 0, 0][..],
            &[0, 24, 12],
            &[0, 13, 34],
            &[4, 12, 34],
            &[0, 12, 34],
        ] {
            for (f, want) in expected.iter().enumerate() {
                assert_eq!(
                    &frame(table, f as u32).unwrap(),
                    want,
                    "table {table:?}, frame {f}"
                );
            }
        }
    }
}
