//! The resampling math every renderer shares.
//!
//! [`VolumeInfo`] is computed once per volume (f64): how patient points map to voxels and the
//! table of real slice positions and rescales. [`ResampleParams`] is computed once per frame
//! (f64, stored as f32) and handed unchanged to `resample.wgsl` and to [`resample_pixel`],
//! the CPU twin of the shader, which must stay line for line the same math.
//!
//! Two ways from a patient point to a voxel:
//! - **Affine** (regular and gantry-tilted stacks): voxel = `voxel_from_patient` * p. The
//!   matrix is sheared for tilt, so every slice is placed where it really is.
//! - **Slice table** (uneven spacing, missing slices, slices off a line): the point is
//!   expressed in the stack's frame (distance along the slice normal, offsets along the row and
//!   column directions from the first slice's position); the slice pair around its distance
//!   is found by binary search and the in-plane offsets are interpolated between the two real
//!   slice positions. Across a gap of missing slices, only points within half a slice step of
//!   a real slice show data.

use bytemuck::{Pod, Zeroable};
use glam::{DMat3, DMat4, DVec3};

use imaging::{RescalePolicy, Volume, VolumeGeometry, Voxels};

use super::RenderError;
use super::view::{Interpolation, SlabMode, SliceView};

/// Flag bits of `ResampleParams::dims[3]`.
pub const FLAG_SIGNED: u32 = 1;
pub const FLAG_TABLE: u32 = 2;
pub const FLAG_TRILINEAR: u32 = 4;

/// Slab modes of `ResampleParams::fold[3]`.
pub const MODE_AVERAGE: u32 = 0;
pub const MODE_MIP: u32 = 1;
pub const MODE_MINIP: u32 = 2;

/// At most this many samples across a slab (a 200 mm slab at 0.2 mm).
pub const MAX_SLAB_SAMPLES: u32 = 1000;

/// How a slab is sampled across its thickness ([`slab_sampling`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlabSampling {
    /// Samples across the slab: odd, one of them on the plane itself.
    pub samples: u32,
    /// Distance between samples, mm.
    pub step_mm: f64,
    /// The slab lies along the stack's slices (its normal is theirs): on a plane at a slice,
    /// each sample is on a slice.
    pub along_slices: bool,
    /// Sampled more coarsely than the voxels along its normal (thicker than
    /// [`MAX_SLAB_SAMPLES`] voxel steps): the overlay says how far apart.
    pub coarser_than_voxels: bool,
}

impl SlabSampling {
    /// The thickness the samples span, centre to centre, plus one step: what the shader's
    /// and the CPU twin's `(m + 0.5) * t / n - t / 2` needs as `t` to put the samples
    /// `step_mm` apart, the middle one at 0.
    pub fn span_mm(&self) -> f64 {
        f64::from(self.samples) * self.step_mm
    }
}

/// How a slab of `slab_mm` across a plane of normal `normal` is sampled: one voxel step
/// apart along the normal (the slice spacing for a slab along the stack's slices, the pixel
/// spacing along rows or columns, else the finest spacing), centred on the plane (a sample
/// lies on it), the odd number of samples nearest to the thickness in steps (ties up): a
/// 10 mm slab of 0.625 mm slices, centred on a slice, takes its 17 slices, each on its own
/// (16 samples would have blended pairs of slices, never reading the middle one, so a bright
/// one-slice structure showed at half its value in a MIP). At most [`MAX_SLAB_SAMPLES`] (an
/// odd number of them), spread over the thickness.
pub fn slab_sampling(info: &VolumeInfo, normal: DVec3, slab_mm: f64) -> SlabSampling {
    let n = normal.normalize_or_zero();
    let along = |a: usize| n.dot(info.axes[a]).abs() > 1.0 - 1e-6;
    let along_slices = info.dims[2] > 1 && along(2);
    let voxel_step = if along_slices {
        info.spacing_mm[2]
    } else if along(0) {
        info.spacing_mm[0]
    } else if along(1) {
        info.spacing_mm[1]
    } else {
        info.min_spacing_mm()
    };
    let voxel_step = if voxel_step.is_finite() && voxel_step > 0.0 {
        voxel_step.min(100.0)
    } else {
        1.0
    };
    let steps = (slab_mm / voxel_step).max(0.0);
    let half = ((steps - 1.0) / 2.0 + 0.5 + 1e-9).floor().max(0.0);
    let max_half = f64::from((MAX_SLAB_SAMPLES - 1) / 2);
    if half > max_half {
        let samples = 2 * ((MAX_SLAB_SAMPLES - 1) / 2) + 1;
        return SlabSampling {
            samples,
            step_mm: slab_mm / f64::from(samples - 1),
            along_slices,
            coarser_than_voxels: true,
        };
    }
    SlabSampling {
        samples: 2 * half as u32 + 1,
        step_mm: voxel_step,
        along_slices,
        coarser_than_voxels: false,
    }
}

/// One slice of the table: where it is and how its stored values become modality values.
/// Laid out as `resample.wgsl`'s `Slice` (two vec4<f32>).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct SliceEntry {
    /// Distance of the slice plane from the first one along the normal, mm.
    pub z: f32,
    /// Offset of the slice's position from the first one along the row direction, mm.
    pub ox: f32,
    /// ... along the column direction, mm.
    pub oy: f32,
    /// 1.0 when slices are missing between this slice and the next.
    pub gap_after: f32,
    pub slope: f32,
    pub intercept: f32,
    /// 1.0 when the slice's file failed to decode: its slot holds zeros, not the patient, so
    /// no sample reads it (coverage 0, like a gap).
    pub failed: f32,
    pub pad: f32,
}

/// How slices are packed into one 3D texture when the volume has more slices than the device's
/// 3D texture limit: slice `k` goes to tile `k / depth` (tiles laid out `tiles_x` across and as
/// many rows as needed), layer `k % depth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldLayout {
    pub depth: u32,
    pub tiles_x: u32,
    pub tiles_y: u32,
}

impl FoldLayout {
    /// The smallest fold that keeps every texture dimension within `max_dim`.
    pub fn new(dims: [usize; 3], max_dim: u32) -> Result<FoldLayout, RenderError> {
        let [w, h, k] = dims.map(|d| d as u64);
        let max = u64::from(max_dim);
        if w == 0 || h == 0 || k == 0 {
            return Err(RenderError::TooLarge(format!("empty volume {w}x{h}x{k}")));
        }
        if w > max || h > max {
            return Err(RenderError::TooLarge(format!(
                "slices of {w}x{h} exceed the device's 3D texture limit {max}"
            )));
        }
        let per_row = max / w;
        let per_col = max / h;
        let max_tiles = per_row * per_col;
        let tiles = k.div_ceil(max);
        if tiles > max_tiles {
            return Err(RenderError::TooLarge(format!(
                "{k} slices of {w}x{h} exceed what a {max}^3 texture holds"
            )));
        }
        let depth = k.div_ceil(tiles);
        let tiles_x = tiles.min(per_row);
        let tiles_y = tiles.div_ceil(tiles_x);
        Ok(FoldLayout {
            depth: depth as u32,
            tiles_x: tiles_x as u32,
            tiles_y: tiles_y as u32,
        })
    }

    /// Texel of voxel (i, j, k).
    pub fn texel(&self, dims: [usize; 3], i: u32, j: u32, k: u32) -> [u32; 3] {
        let tile = k / self.depth;
        let z = k - tile * self.depth;
        let tx = tile % self.tiles_x;
        let ty = tile / self.tiles_x;
        [i + tx * dims[0] as u32, j + ty * dims[1] as u32, z]
    }

    pub fn texture_size(&self, dims: [usize; 3]) -> [u32; 3] {
        [
            dims[0] as u32 * self.tiles_x,
            dims[1] as u32 * self.tiles_y,
            self.depth,
        ]
    }
}

/// At most this many textures (bricks) hold one volume (bindings in `resample.wgsl`).
pub const MAX_BRICKS: u32 = 8;

/// How a volume is laid out on the GPU: runs of `slices_per_brick` slices in up to
/// [`MAX_BRICKS`] textures (each within the device's largest allocation), each folded by `fold`
/// when it has more slices than the 3D texture limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextureLayout {
    pub slices_per_brick: u32,
    pub bricks: u32,
    pub fold: FoldLayout,
}

impl TextureLayout {
    /// The layout of 2-byte (grey) voxels.
    pub fn new(
        dims: [usize; 3],
        max_dim: u32,
        max_brick_bytes: u64,
    ) -> Result<TextureLayout, RenderError> {
        Self::with_texel_bytes(dims, max_dim, max_brick_bytes, 2)
    }

    /// The layout of voxels of `texel_bytes` each (4 for colour's RGBA texels).
    pub fn with_texel_bytes(
        dims: [usize; 3],
        max_dim: u32,
        max_brick_bytes: u64,
        texel_bytes: u64,
    ) -> Result<TextureLayout, RenderError> {
        let slice_bytes = (dims[0] as u64 * dims[1] as u64 * texel_bytes).max(1);
        let by_bytes = (max_brick_bytes / slice_bytes).max(1);
        let [w, h, _] = dims.map(|d| d as u64);
        let max = u64::from(max_dim);
        let by_fold = (max / w.max(1)) * (max / h.max(1)) * max;
        let mut per_brick = (dims[2] as u64).min(by_bytes).min(by_fold).max(1);
        // Folding rounds tiles up: shrink until the folded texture itself fits the budget.
        loop {
            let fold = FoldLayout::new([dims[0], dims[1], per_brick as usize], max_dim)?;
            let [tw, th, td] = fold.texture_size([dims[0], dims[1], per_brick as usize]);
            let bytes = u64::from(tw) * u64::from(th) * u64::from(td) * texel_bytes;
            if bytes <= max_brick_bytes.max(slice_bytes) || per_brick == 1 {
                break;
            }
            per_brick = (per_brick * 15 / 16).max(1);
        }
        let bricks = (dims[2] as u64).div_ceil(per_brick);
        if bricks > u64::from(MAX_BRICKS) {
            return Err(RenderError::TooLarge(format!(
                "{} slices of {}x{} need {bricks} textures of at most {max_brick_bytes} bytes; this device allows {MAX_BRICKS}",
                dims[2], dims[0], dims[1]
            )));
        }
        let fold = FoldLayout::new([dims[0], dims[1], per_brick as usize], max_dim)?;
        Ok(TextureLayout {
            slices_per_brick: per_brick as u32,
            bricks: bricks as u32,
            fold,
        })
    }

    /// One unfolded texture (the CPU renderer's view of the voxels).
    pub fn single(dims: [usize; 3]) -> TextureLayout {
        TextureLayout {
            slices_per_brick: dims[2].max(1) as u32,
            bricks: 1,
            fold: FoldLayout {
                depth: dims[2].max(1) as u32,
                tiles_x: 1,
                tiles_y: 1,
            },
        }
    }

    /// Brick and texel of the first voxel of slice `k`.
    pub fn locate(&self, dims: [usize; 3], k: u32) -> (u32, [u32; 3]) {
        let brick = k / self.slices_per_brick;
        let local = k - brick * self.slices_per_brick;
        (brick, self.fold.texel(dims, 0, 0, local))
    }

    /// Texture size of brick `b` (the last one may hold fewer slices).
    pub fn brick_size(&self, dims: [usize; 3], b: u32) -> [u32; 3] {
        let k = dims[2] as u32;
        let count = (k - b * self.slices_per_brick).min(self.slices_per_brick);
        let tiles = count.div_ceil(self.fold.depth);
        let tiles_x = self.fold.tiles_x.min(tiles);
        [
            dims[0] as u32 * tiles_x,
            dims[1] as u32 * tiles.div_ceil(self.fold.tiles_x),
            self.fold.depth.min(count),
        ]
    }
}

/// What every renderer needs to know about a volume, computed once.
#[derive(Debug, Clone)]
pub struct VolumeInfo {
    /// [columns, rows, slices].
    pub dims: [usize; 3],
    pub signed: bool,
    /// RGB voxels (8 bits a channel, no rescale): resampled per channel, shown as they are.
    pub colour: bool,
    /// Patient point -> voxel, used when `use_table` is false.
    pub voxel_from_patient: DMat4,
    /// True for stacks the affine cannot place exactly (uneven, gappy, nonlinear).
    pub use_table: bool,
    /// The stack frame of the slice table: origin (first slice position) and unit row, column
    /// and normal directions (the normal pointing from the first slice to the last).
    pub origin: DVec3,
    pub axes: [DVec3; 3],
    pub slices: Vec<SliceEntry>,
    /// [column, row, slice-step] spacing; the slice step is the smallest real step.
    pub spacing_mm: [f64; 3],
    pub geometry: VolumeGeometry,
    /// Each slice's padding (stored values that are not patient), or empty: measurements
    /// read no value from it (`imaging::decode::stack_padding`). The display shows it as stored.
    pub padding: Vec<Option<imaging::header::PixelPadding>>,
}

impl VolumeInfo {
    pub fn new(volume: &Volume) -> Result<VolumeInfo, RenderError> {
        let mut info = Self::from_parts(
            &volume.geometry,
            &volume.rescale,
            volume.voxels.is_signed(),
            volume.voxels.is_colour(),
        )?;
        for f in &volume.failed_slices {
            if let Some(s) = info.slices.get_mut(f.k) {
                s.failed = 1.0;
            }
        }
        info.padding.clone_from(&volume.padding);
        Ok(info)
    }

    /// Whether stored value `stored` of slice `k` is padding.
    pub fn is_padding(&self, k: usize, stored: i32) -> bool {
        self.padding
            .get(k)
            .copied()
            .flatten()
            .is_some_and(|p| p.contains(stored))
    }

    /// As [`VolumeInfo::new`] before the voxels exist (a progressive load).
    pub fn from_parts(
        g: &VolumeGeometry,
        rescale: &RescalePolicy,
        signed: bool,
        colour: bool,
    ) -> Result<VolumeInfo, RenderError> {
        let dims = g.dims;
        if dims.contains(&0) {
            return Err(RenderError::TooLarge(format!("empty volume {dims:?}")));
        }
        let k = dims[2];
        let irr = &g.irregularity;
        let use_table = k >= 2
            && (irr.uneven_spacing || !irr.missing_slices.is_empty() || irr.nonlinear_positions);
        let det = g.patient_from_voxel.determinant();
        if !det.is_finite() || det.abs() < 1e-12 {
            return Err(RenderError::View(
                "the stack's geometry is degenerate (zero spacing or parallel directions)".into(),
            ));
        }
        let voxel_from_patient = g.patient_from_voxel.inverse();
        let x = DVec3::from(g.row_direction).normalize_or_zero();
        let y = DVec3::from(g.column_direction).normalize_or_zero();
        let mut n = DVec3::from(g.slice_normal).normalize_or_zero();
        let origin = g
            .slice_positions_mm
            .first()
            .map(|p| DVec3::from(*p))
            .unwrap_or(DVec3::ZERO);
        if let Some(last) = g.slice_positions_mm.last()
            && (DVec3::from(*last) - origin).dot(n) < 0.0
        {
            n = -n;
        }
        let gaps: Vec<usize> = irr
            .missing_slices
            .iter()
            .map(|(before, _)| *before)
            .collect();
        let slices = (0..k)
            .map(|s| {
                let p = g
                    .slice_positions_mm
                    .get(s)
                    .map(|p| DVec3::from(*p) - origin)
                    .unwrap_or(DVec3::ZERO);
                // Colour has no modality units, whatever a caller passes (the GPU's colour
                // path applies none either).
                let r = if colour {
                    imaging::Rescale::IDENTITY
                } else {
                    rescale.for_slice(s)
                };
                SliceEntry {
                    z: p.dot(n) as f32,
                    ox: p.dot(x) as f32,
                    oy: p.dot(y) as f32,
                    gap_after: if gaps.contains(&s) { 1.0 } else { 0.0 },
                    slope: r.slope as f32,
                    intercept: r.intercept as f32,
                    failed: 0.0,
                    pad: 0.0,
                }
            })
            .collect();
        let step = if k >= 2 && irr.min_step_mm > 0.0 {
            irr.min_step_mm
        } else {
            g.spacing_mm[2]
        };
        Ok(VolumeInfo {
            dims,
            signed,
            colour,
            voxel_from_patient,
            use_table,
            origin,
            axes: [x, y, n],
            slices,
            spacing_mm: [g.spacing_mm[0], g.spacing_mm[1], step],
            geometry: g.clone(),
            padding: Vec::new(),
        })
    }

    /// The eight corners of the volume (voxel centres at the extremes), patient mm.
    pub fn corners_mm(&self) -> Vec<[f64; 3]> {
        let [w, h, k] = self.dims.map(|d| (d.max(1) - 1) as f64);
        let mut out = Vec::with_capacity(8);
        for kk in [0.0, k] {
            for jj in [0.0, h] {
                for ii in [0.0, w] {
                    out.push(self.geometry.patient_from_voxel_exact([ii, jj, kk]));
                }
            }
        }
        out
    }

    /// The smallest voxel spacing: the step between slab samples.
    pub fn min_spacing_mm(&self) -> f64 {
        self.spacing_mm
            .iter()
            .copied()
            .filter(|s| *s > 0.0)
            .fold(f64::MAX, f64::min)
            .min(100.0)
    }
}

/// One frame's resampling parameters, laid out as `resample.wgsl`'s `Params`.
///
/// Sample point of output pixel centre (px, py) (px = x + 0.5) at slab offset s (mm):
/// `c = base + px * step_x + py * step_y + s * step_s`, in voxel coordinates (affine) or in
/// the stack frame (table).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct ResampleParams {
    pub base: [f32; 4],
    pub step_x: [f32; 4],
    pub step_y: [f32; 4],
    pub step_s: [f32; 4],
    /// columns, rows, slices, flags (FLAG_*).
    pub dims: [u32; 4],
    /// fold depth, fold tiles across, slab samples, slab mode (MODE_*).
    pub fold: [u32; 4],
    /// 1 / column spacing, 1 / row spacing, half a slice step (mm), the slab's samples'
    /// span (mm, `SlabSampling::span_mm`: samples one step apart, the middle one on the plane).
    pub scale: [f32; 4],
    /// slices per brick, number of bricks, unused, unused.
    pub brick: [u32; 4],
    /// For the GPU's one-slice variant only: texel x, y, z of voxel (0, 0, k) of the slice the
    /// plane lies on, and its brick (set by `Renderer::resample`; the CPU twin reads voxels
    /// by index and ignores it).
    pub one_slice: [i32; 4],
    /// For the one-slice variant too: that slice's rescale slope, intercept and failed flag
    /// (1.0: it did not decode), the same for every pixel, so read once from here rather
    /// than from the slice table at each (the CPU twin reads the table).
    pub one_rescale: [f32; 4],
}

impl ResampleParams {
    pub fn new(
        info: &VolumeInfo,
        layout: &TextureLayout,
        view: &SliceView,
    ) -> Result<ResampleParams, RenderError> {
        let fold = layout.fold;
        view.validate()?;
        let u = DVec3::from(view.right) * view.pixel_mm;
        let v = DVec3::from(view.down) * view.pixel_mm;
        let n = view.normal();
        let corner = DVec3::from(view.center_mm)
            - u * (f64::from(view.width) / 2.0)
            - v * (f64::from(view.height) / 2.0);
        let (base, sx, sy, ss) = if info.use_table {
            let m = DMat3::from_cols(info.axes[0], info.axes[1], info.axes[2]).transpose();
            (m * (corner - info.origin), m * u, m * v, m * n)
        } else {
            let m = &info.voxel_from_patient;
            (
                m.transform_point3(corner),
                m.transform_vector3(u),
                m.transform_vector3(v),
                m.transform_vector3(n),
            )
        };
        let thin = view.slab_mm <= 0.0;
        let slab = slab_sampling(info, n, view.slab_mm);
        let samples = if thin { 1 } else { slab.samples };
        let mode = match view.slab_mode {
            SlabMode::Average => MODE_AVERAGE,
            SlabMode::Mip => MODE_MIP,
            SlabMode::MinIp => MODE_MINIP,
        };
        let mut flags = 0;
        if info.signed {
            flags |= FLAG_SIGNED;
        }
        if info.use_table {
            flags |= FLAG_TABLE;
        }
        if view.interpolation == Interpolation::Trilinear {
            flags |= FLAG_TRILINEAR;
        }
        let f4 = |d: DVec3| [d.x as f32, d.y as f32, d.z as f32, 0.0];
        Ok(ResampleParams {
            base: f4(base),
            step_x: f4(sx),
            step_y: f4(sy),
            step_s: f4(ss),
            dims: [
                info.dims[0] as u32,
                info.dims[1] as u32,
                info.dims[2] as u32,
                flags,
            ],
            fold: [fold.depth, fold.tiles_x, samples, mode],
            scale: [
                (1.0 / info.spacing_mm[0]) as f32,
                (1.0 / info.spacing_mm[1]) as f32,
                (0.5 * info.spacing_mm[2]) as f32,
                if thin { 0.0 } else { slab.span_mm() as f32 },
            ],
            brick: [layout.slices_per_brick, layout.bricks, 0, 0],
            one_slice: [0; 4],
            one_rescale: [1.0, 0.0, 0.0, 0.0],
        })
    }
}

/// The modality value voxel `[i, j, k]` of a grey volume holds, as the renderer reads it (its
/// slice's rescale, in f32); `None` outside the volume or on a slice that failed to decode.
pub fn voxel_value(voxels: &Voxels, table: &[SliceEntry], [i, j, k]: [usize; 3]) -> Option<f32> {
    let slice = table.get(k)?;
    voxels.get(i, j, k)?;
    (slice.failed <= 0.5).then(|| {
        value(
            voxels,
            table,
            Voxel {
                i,
                j,
                k,
                channel: 0,
            },
        )
    })
}

/// Stored value at (i, j, k) in modality units, by the slice's own rescale. Mirrors `value()`.
#[inline]
fn value(voxels: &Voxels, table: &[SliceEntry], at: Voxel) -> f32 {
    let s = &table[at.k];
    stored(voxels, at) * s.slope + s.intercept
}

/// A voxel, and for colour the channel (0 red, 1 green, 2 blue) asked for.
#[derive(Debug, Clone, Copy)]
struct Voxel {
    i: usize,
    j: usize,
    k: usize,
    channel: usize,
}

#[inline]
fn stored(voxels: &Voxels, at: Voxel) -> f32 {
    let Voxel { i, j, k, channel } = at;
    match voxels {
        Voxels::U16(a) => a.get([k, j, i]).map_or(0.0, |v| f32::from(*v)),
        Voxels::I16(a) => a.get([k, j, i]).map_or(0.0, |v| f32::from(*v)),
        Voxels::Rgb(a) => a
            .get([k, j, i])
            .and_then(|v| v.get(channel))
            .map_or(0.0, |v| f32::from(*v)),
    }
}

/// Bilinear in stored units within slice k, then the slice's rescale. Mirrors `plane_value()`.
#[inline]
fn plane_value(
    voxels: &Voxels,
    table: &[SliceEntry],
    (k, channel): (usize, usize),
    [x0, x1, y0, y1]: [usize; 4],
    fi: f32,
    fj: f32,
) -> f32 {
    let at = |i, j| Voxel { i, j, k, channel };
    let s00 = stored(voxels, at(x0, y0));
    let s10 = stored(voxels, at(x1, y0));
    let s01 = stored(voxels, at(x0, y1));
    let s11 = stored(voxels, at(x1, y1));
    let top = s00 * (1.0 - fi) + s10 * fi;
    let bottom = s01 * (1.0 - fi) + s11 * fi;
    let s = &table[k];
    (top * (1.0 - fj) + bottom * fj) * s.slope + s.intercept
}

/// Voxel coordinates of a sample point, or `None` outside the volume or inside a gap.
/// Mirrors `to_voxel()`.
#[inline]
pub fn to_voxel(p: &ResampleParams, table: &[SliceEntry], c: [f32; 3]) -> Option<[f32; 3]> {
    let w = p.dims[0] as f32;
    let h = p.dims[1] as f32;
    let kk = p.dims[2];
    let (i, j, k);
    if p.dims[3] & FLAG_TABLE != 0 {
        let z = c[2];
        let mut lo = 0u32;
        let mut hi = kk - 2;
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if table[mid as usize].z <= z {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        // Beyond the ends: at most half a slice step.
        if z < table[0].z - p.scale[2] || z > table[kk as usize - 1].z + p.scale[2] {
            return None;
        }
        let a = &table[lo as usize];
        let b = &table[lo as usize + 1];
        let dz = b.z - a.z;
        let mut f = 0.0;
        if dz > 0.0 {
            f = ((z - a.z) / dz).clamp(0.0, 1.0);
        }
        if a.gap_after > 0.5 && f > 0.0 && f < 1.0 {
            if z - a.z <= p.scale[2] {
                f = 0.0;
            } else if b.z - z <= p.scale[2] {
                f = 1.0;
            } else {
                return None;
            }
        }
        k = lo as f32 + f;
        let ox = a.ox * (1.0 - f) + b.ox * f;
        let oy = a.oy * (1.0 - f) + b.oy * f;
        i = (c[0] - ox) * p.scale[0];
        j = (c[1] - oy) * p.scale[1];
    } else {
        i = c[0];
        j = c[1];
        k = c[2];
    }
    let inside =
        i >= -0.5 && i <= w - 0.5 && j >= -0.5 && j <= h - 0.5 && k >= -0.5 && k <= kk as f32 - 0.5;
    if inside { Some([i, j, k]) } else { None }
}

/// The voxel a nearest-neighbour sample at `c` reads: `None` outside the volume, in a gap or
/// on a slice that failed. Mirrors the nearest branch of `sample()`.
#[inline]
fn nearest_index(p: &ResampleParams, table: &[SliceEntry], c: [f32; 3]) -> Option<[usize; 3]> {
    let [i, j, k] = to_voxel(p, table, c)?;
    let wm = p.dims[0] as i32 - 1;
    let hm = p.dims[1] as i32 - 1;
    let km = p.dims[2] as i32 - 1;
    let x = ((i + 0.5).floor() as i32).clamp(0, wm) as usize;
    let y = ((j + 0.5).floor() as i32).clamp(0, hm) as usize;
    let z = ((k + 0.5).floor() as i32).clamp(0, km) as usize;
    (table[z].failed <= 0.5).then_some([x, y, z])
}

/// The voxel (i, j, k) output pixel (x, y) of a thin nearest-neighbour view reads, exactly as
/// [`resample_pixel`] reads it there, and its modality value: for measurements, which need
/// the stored value too (padding is no value).
pub fn nearest_voxel(
    p: &ResampleParams,
    table: &[SliceEntry],
    voxels: &Voxels,
    x: u32,
    y: u32,
) -> Option<([usize; 3], f32)> {
    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
    let c: [f32; 3] = std::array::from_fn(|a| p.base[a] + px * p.step_x[a] + py * p.step_y[a]);
    let [i, j, k] = nearest_index(p, table, c)?;
    let at = Voxel {
        i,
        j,
        k,
        channel: 0,
    };
    Some(([i, j, k], value(voxels, table, at)))
}

/// One sample in modality units (of one channel, for colour). Mirrors `sample()` and
/// `sample_rgb()`.
#[inline]
fn sample(
    p: &ResampleParams,
    table: &[SliceEntry],
    voxels: &Voxels,
    c: [f32; 3],
    channel: usize,
) -> Option<f32> {
    if p.dims[3] & FLAG_TRILINEAR == 0 {
        let [x, y, z] = nearest_index(p, table, c)?;
        return Some(value(
            voxels,
            table,
            Voxel {
                i: x,
                j: y,
                k: z,
                channel,
            },
        ));
    }
    let [i, j, k] = to_voxel(p, table, c)?;
    let wm = p.dims[0] as i32 - 1;
    let hm = p.dims[1] as i32 - 1;
    let km = p.dims[2] as i32 - 1;
    let failed = |k: usize| table[k].failed > 0.5;
    let i0 = i.floor();
    let j0 = j.floor();
    let k0 = k.floor();
    let fi = i - i0;
    let fj = j - j0;
    // A sample within ON_SLICE of a slice is on it (as the GPU's one-slice variant takes it):
    // a stack off its axis by rounding puts v.z a hair off the slice, which would otherwise
    // weigh in, and refuse for, a failed neighbour.
    let fk = snap_to_slice(k - k0);
    let x0 = (i0 as i32).clamp(0, wm) as usize;
    let x1 = (i0 as i32 + 1).clamp(0, wm) as usize;
    let y0 = (j0 as i32).clamp(0, hm) as usize;
    let y1 = (j0 as i32 + 1).clamp(0, hm) as usize;
    let z0 = (k0 as i32).clamp(0, km) as usize;
    let z1 = (k0 as i32 + 1).clamp(0, km) as usize;
    // A failed slice weighs in nowhere: no sample is made of it.
    if (fk < 1.0 && failed(z0)) || (fk > 0.0 && failed(z1)) {
        return None;
    }
    let c0 = plane_value(voxels, table, (z0, channel), [x0, x1, y0, y1], fi, fj);
    let c1 = plane_value(voxels, table, (z1, channel), [x0, x1, y0, y1], fi, fj);
    Some(c0 * (1.0 - fk) + c1 * fk)
}

/// How far (in slices) a plane or sample may lie from a slice and be taken as on it: the
/// GPU's one-slice variant (`gpu::one_slice_of`), this kernel (`snap_to_slice`), the shader
/// (`ON_SLICE`) and the corner's slice number (`Viewport::native_slice`) all take this one.
/// A thousandth of a slice: well beyond the noise of f32 slice places and parameters; a
/// neighbour weighed by it would change a 4000 HU edge by 4 HU.
pub const ON_SLICE: f32 = 1e-3;

/// `fk` (a sample's fraction of the way to the next slice) of 0 or 1 within [`ON_SLICE`].
/// Mirrors the same step in `resample.wgsl`.
pub fn snap_to_slice(fk: f32) -> f32 {
    if fk < ON_SLICE {
        0.0
    } else if fk > 1.0 - ON_SLICE {
        1.0
    } else {
        fk
    }
}

/// Largest finite f32 magnitude used as the start of MIP/MinIP (WGSL has no infinity literal).
pub const BIG: f32 = 3.0e38;

/// The resampled value of output pixel (x, y): (modality value, fraction of slab samples
/// inside the volume). Mirrors the fragment shader `fs_resample`.
pub fn resample_pixel(
    p: &ResampleParams,
    table: &[SliceEntry],
    voxels: &Voxels,
    x: u32,
    y: u32,
) -> [f32; 2] {
    resample_channel(p, table, voxels, x, y, 0)
}

/// The resampled colour of output pixel (x, y): (red, green, blue, coverage), each channel
/// resampled and combined over the slab on its own. Mirrors `fs_resample_rgb`.
pub fn resample_rgb_pixel(
    p: &ResampleParams,
    table: &[SliceEntry],
    voxels: &Voxels,
    x: u32,
    y: u32,
) -> [f32; 4] {
    let [r, coverage] = resample_channel(p, table, voxels, x, y, 0);
    let [g, _] = resample_channel(p, table, voxels, x, y, 1);
    let [b, _] = resample_channel(p, table, voxels, x, y, 2);
    [r, g, b, coverage]
}

fn resample_channel(
    p: &ResampleParams,
    table: &[SliceEntry],
    voxels: &Voxels,
    x: u32,
    y: u32,
    channel: usize,
) -> [f32; 2] {
    let px = x as f32 + 0.5;
    let py = y as f32 + 0.5;
    let n = p.fold[2];
    let mode = p.fold[3];
    let t = p.scale[3];
    let mut acc = match mode {
        MODE_MIP => -BIG,
        MODE_MINIP => BIG,
        _ => 0.0,
    };
    let mut count = 0u32;
    for m in 0..n {
        let s = (m as f32 + 0.5) * t / n as f32 - 0.5 * t;
        let c: [f32; 3] = std::array::from_fn(|a| {
            p.base[a] + px * p.step_x[a] + py * p.step_y[a] + s * p.step_s[a]
        });
        if let Some(v) = sample(p, table, voxels, c, channel) {
            count += 1;
            acc = match mode {
                MODE_MIP => acc.max(v),
                MODE_MINIP => acc.min(v),
                _ => acc + v,
            };
        }
    }
    if count == 0 {
        return [0.0, 0.0];
    }
    let value = if mode == MODE_AVERAGE {
        acc / count as f32
    } else {
        acc
    };
    [value, count as f32 / n as f32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_every_dimension_within_the_limit() {
        let f = FoldLayout::new([512, 512, 5000], 2048).ok();
        let Some(f) = f else {
            panic!("5000 slices must fold into 2048^3");
        };
        let size = f.texture_size([512, 512, 5000]);
        assert!(size.iter().all(|s| *s <= 2048), "{size:?}");
        assert!(f.depth * f.tiles_x * f.tiles_y >= 5000);
        // Every slice has its own texel layer.
        let mut seen = std::collections::HashSet::new();
        for k in 0..5000 {
            let t = f.texel([512, 512, 5000], 0, 0, k);
            assert!(t[0] < size[0] && t[1] < size[1] && t[2] < size[2]);
            assert!(seen.insert(t));
        }
        // Small volumes are not folded.
        let f = FoldLayout::new([512, 512, 300], 2048).ok();
        assert_eq!(
            f,
            Some(FoldLayout {
                depth: 300,
                tiles_x: 1,
                tiles_y: 1
            })
        );
        assert!(FoldLayout::new([4096, 512, 10], 2048).is_err());
    }

    #[test]
    fn bricks_keep_each_texture_under_the_allocation_limit() {
        let dims = [512, 512, 5000];
        let l = TextureLayout::new(dims, 4096, 1 << 30).ok();
        let Some(l) = l else {
            panic!("5000 slices must fit in bricks of 1 GiB");
        };
        assert_eq!((l.slices_per_brick, l.bricks), (2048, 3));
        let mut total = 0;
        for b in 0..l.bricks {
            let [w, h, d] = l.brick_size(dims, b);
            assert!(u64::from(w) * u64::from(h) * u64::from(d) * 2 <= 1 << 30);
            total += (w / 512) * (h / 512) * d;
        }
        assert!(total >= 5000);
        assert_eq!(l.locate(dims, 4999).0, 2);
        assert!(TextureLayout::new([512, 512, 50_000], 4096, 1 << 30).is_err());
        // Folding rounds tiles up; no brick may exceed the budget after it.
        let dims = [1000, 130, 5000];
        let l = TextureLayout::new(dims, 2048, 1 << 30).ok();
        let Some(l) = l else {
            panic!("1000x130x5000 must fit")
        };
        for b in 0..l.bricks {
            let [w, h, d] = l.brick_size(dims, b);
            assert!(
                u64::from(w) * u64::from(h) * u64::from(d) * 2 <= 1 << 30,
                "brick {b}"
            );
            assert!(w <= 2048 && h <= 2048 && d <= 2048);
        }
    }
}
