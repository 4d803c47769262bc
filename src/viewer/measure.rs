//! Measurements in patient coordinates (LPS mm), keyed by frame of reference so they show in
//! every view that cuts them; values come from voxels and geometry, never from screen pixels.

use glam::DVec3;
use serde::Serialize;

use rayon::prelude::*;

use crate::render::kernel::{self, ResampleParams, TextureLayout, VolumeInfo, nearest_voxel};
use crate::render::{Interpolation, SlabMode, SliceView, cpu};
use imaging::Voxels;

/// What was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Shape {
    /// A straight line between two points.
    Length { a: [f64; 3], b: [f64; 3] },
    /// The angle at `vertex` between the rays to `a` and `b`.
    Angle {
        a: [f64; 3],
        vertex: [f64; 3],
        b: [f64; 3],
    },
    /// The Cobb angle between two lines (endplates), 0-180 degrees (see [`cobb_deg`]).
    Cobb {
        line1: [[f64; 3]; 2],
        line2: [[f64; 3]; 2],
    },
    /// An ellipse in a plane: centre and the two semi-axes (patient vectors, orthogonal).
    Ellipse {
        center: [f64; 3],
        semi_axis_1: [f64; 3],
        semi_axis_2: [f64; 3],
    },
    /// The value at one point.
    Probe { at: [f64; 3] },
}

/// A measurement and where it belongs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub id: u64,
    pub shape: Shape,
    /// Frame of Reference UID (0020,0052) of the volume it was drawn on.
    pub frame_of_reference_uid: Option<String>,
    /// The stack it was drawn on (its values come from that stack's voxels).
    pub stack_id: Option<String>,
}

/// The numbers a measurement shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Value {
    LengthMm(f64),
    AngleDeg(f64),
    Region {
        area_mm2: f64,
        mean: f64,
        sd: f64,
        min: f64,
        max: f64,
        samples: usize,
        /// Samples inside the ellipse with no data (beyond the volume, in a gap, on a slice
        /// that failed, or on padding): the statistics are of the rest, and the label says so.
        without_data: usize,
    },
    /// Modality value (HU for CT) of the nearest voxel; `None` outside the volume.
    Point(Option<f64>),
    /// The colour of the nearest voxel of a colour volume; `None` outside it.
    Colour(Option<[u8; 3]>),
}

fn angle_deg(u: DVec3, v: DVec3) -> f64 {
    u.angle_between(v).to_degrees()
}

/// The Cobb angle between two endplate lines (each two points, in one plane, drawn either
/// way, either first): 0-180 degrees. Two lines meet at two angles, a and 180 - a; which is
/// the curve's is told by the spine between them, whose direction is taken as the line from
/// one line's middle to the other's: each line's tilt is measured across that direction, and
/// the Cobb angle is the difference of the tilts. Endplates tilted 55 degrees each way are a
/// 110-degree curve (a severe scoliosis), not the 70 degrees between the lines; and the answer
/// does not depend on how the image lies (a film stored sideways, without orientation, reads
/// as one stored upright). Lines whose middles (nearly) meet give no such direction: the
/// smaller angle between them.
fn cobb_deg(line1: [DVec3; 2], line2: [DVec3; 2]) -> f64 {
    let (d1, d2) = (line1[1] - line1[0], line2[1] - line2[0]);
    let acute = || {
        let a = angle_deg(d1, d2);
        if a > 90.0 { 180.0 - a } else { a }
    };
    let n = d1.cross(d2);
    if n.length() <= 1e-9 * d1.length() * d2.length() {
        return 0.0;
    }
    let n = n.normalize();
    let chord = (line2[0] + line2[1] - line1[0] - line1[1]) / 2.0;
    let along = chord - n * chord.dot(n);
    if along.length() <= 1e-3 * d1.length().max(d2.length()) {
        return acute();
    }
    let along = along.normalize();
    let across = along.cross(n);
    // Each line's tilt, drawn across the spine in one sense (its across part not negative):
    // -90..90 degrees.
    let tilt = |d: DVec3| {
        let (x, y) = (d.dot(across), d.dot(along));
        let (x, y) = if x < 0.0 || (x == 0.0 && y < 0.0) {
            (-x, -y)
        } else {
            (x, y)
        };
        y.atan2(x).to_degrees()
    };
    (tilt(d1) - tilt(d2)).abs()
}

/// The pool measurement values are computed on: the window asks for them on its own thread,
/// and the global rayon pool may be held by a load for its whole length (each loader thread
/// claims slices until the stack is done), so a probe placed or a region drawn meanwhile
/// would wait for the load to end (found by review). `None` if the pool could not be made:
/// then the global pool.
fn measurement_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("overread-measure-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

impl Measurement {
    /// Compute the measurement's value on `info` / `voxels`: a probe or a region, which read
    /// voxels, on the measurement pool; a length or an angle (arithmetic) here.
    pub fn value(&self, info: &VolumeInfo, voxels: &Voxels) -> Value {
        match measurement_pool() {
            Some(pool) if matches!(self.shape, Shape::Ellipse { .. } | Shape::Probe { .. }) => {
                pool.install(|| self.value_here(info, voxels))
            }
            _ => self.value_here(info, voxels),
        }
    }

    /// A length's or angle's value, which its points alone give (no voxel is read); none for
    /// a probe or a region.
    pub fn geometric_value(&self) -> Option<Value> {
        match &self.shape {
            Shape::Length { a, b } => {
                Some(Value::LengthMm(DVec3::from(*a).distance(DVec3::from(*b))))
            }
            Shape::Angle { a, vertex, b } => {
                let v = DVec3::from(*vertex);
                Some(Value::AngleDeg(angle_deg(
                    DVec3::from(*a) - v,
                    DVec3::from(*b) - v,
                )))
            }
            Shape::Cobb { line1, line2 } => Some(Value::AngleDeg(cobb_deg(
                line1.map(DVec3::from),
                line2.map(DVec3::from),
            ))),
            Shape::Ellipse { .. } | Shape::Probe { .. } => None,
        }
    }

    fn value_here(&self, info: &VolumeInfo, voxels: &Voxels) -> Value {
        match &self.shape {
            Shape::Length { .. } | Shape::Angle { .. } | Shape::Cobb { .. } => {
                self.geometric_value().unwrap_or(Value::Point(None))
            }
            Shape::Ellipse {
                center,
                semi_axis_1,
                semi_axis_2,
            } => ellipse_stats(info, voxels, *center, *semi_axis_1, *semi_axis_2),
            Shape::Probe { at } if voxels.is_colour() => {
                Value::Colour(colour_at(info, voxels, DVec3::from(*at)))
            }
            Shape::Probe { at } => Value::Point(value_at(info, voxels, DVec3::from(*at))),
        }
    }
}

/// Colour of the voxel nearest to `p` in a colour volume (a region over one is measured in
/// its luma, BT.601).
pub fn colour_at(info: &VolumeInfo, voxels: &Voxels, p: DVec3) -> Option<[u8; 3]> {
    let r = cpu::resample(info, voxels, &probe_view(info, p)).ok()?;
    let [red, green, blue, coverage] = *r.colour.as_ref()?.first()?;
    (coverage > 0.0).then(|| [red, green, blue].map(|c| c.round().clamp(0.0, 255.0) as u8))
}

/// A 1x1 nearest-neighbour view whose only pixel centre is `p` exactly.
fn probe_view(info: &VolumeInfo, p: DVec3) -> SliceView {
    // Any orthonormal pair will do for a 1x1 view (the file's row and column directions
    // may be a little off orthogonal).
    let (right, down) = info.axes[2].any_orthonormal_pair();
    SliceView {
        center_mm: p.to_array(),
        right: right.to_array(),
        down: down.to_array(),
        pixel_mm: 1.0,
        width: 1,
        height: 1,
        slab_mm: 0.0,
        slab_mode: SlabMode::Average,
        interpolation: Interpolation::Nearest,
    }
}

/// Modality value of the voxel nearest to `p` (as a point probe shows it); `None` outside the
/// volume, in a gap, on a failed slice, or on padding.
pub fn value_at(info: &VolumeInfo, voxels: &Voxels, p: DVec3) -> Option<f64> {
    if voxels.is_colour() {
        let r = cpu::resample(info, voxels, &probe_view(info, p)).ok()?;
        return r.value(0, 0).map(f64::from);
    }
    *measured(info, voxels, &probe_view(info, p))?.first()?
}

/// What a measurement reads at each pixel of a thin nearest-neighbour `view` of a grey volume,
/// row by row: the voxel the display's nearest sampling reads there
/// ([`crate::render::kernel::nearest_voxel`]) in modality units, or `None` where it reads none
/// (outside, a gap, a failed slice) or reads padding (Pixel Padding Value: the corners outside
/// a CT's reconstruction circle, -2000 or -3024 HU, are not the patient: counted in a region's
/// mean, a tenth of a region over them moved a fat reading of -100 HU to -392). `None` for a
/// view the volume cannot be sampled with.
fn measured(info: &VolumeInfo, voxels: &Voxels, view: &SliceView) -> Option<Vec<Option<f64>>> {
    let shape = voxels.shape();
    if [shape[2], shape[1], shape[0]] != info.dims {
        return None;
    }
    let p = ResampleParams::new(info, &TextureLayout::single(info.dims), view).ok()?;
    let (w, h) = (view.width, view.height);
    let rows: Vec<Vec<Option<f64>>> = (0..h)
        .into_par_iter()
        .map(|y| {
            (0..w)
                .map(|x| {
                    let ([i, j, k], v) = nearest_voxel(&p, &info.slices, voxels, x, y)?;
                    let stored = voxels.get(i, j, k)?;
                    (!info.is_padding(k, stored)).then_some(f64::from(v))
                })
                .collect()
        })
        .collect();
    Some(rows.into_iter().flatten().collect())
}

/// An ellipse's handles are dragged only on views within this cosine of its own plane
/// (8 degrees).
const EDIT_ACROSS_COS: f64 = 0.99;

/// Most samples one region's statistics take (see [`ellipse_stats`]).
pub const MAX_SAMPLES: f64 = 4.0e6;

/// Statistics of the voxels inside an ellipse; the area is the ellipse's own, pi * a * b.
///
/// On a plane of voxels (an axial ellipse on an axial stack, a coronal or sagittal one on a
/// regular stack) they are the voxels of the layer the display shows whose centres lie inside
/// the ellipse, each once ([`ellipse_on_voxel_layer`]), as a mask over the slice would take
/// them. Elsewhere (oblique, tilted, between the slices of an uneven stack) the plane is
/// sampled at the finest voxel spacing, the nearest voxel per sample ([`ellipse_on_grid`]).
fn ellipse_stats(
    info: &VolumeInfo,
    voxels: &Voxels,
    c: [f64; 3],
    a: [f64; 3],
    b: [f64; 3],
) -> Value {
    let (c, a, b) = (DVec3::from(c), DVec3::from(a), DVec3::from(b));
    let (ra, rb) = (a.length(), b.length());
    // No region (a measurement read from a damaged file): no statistics.
    let finite = c.is_finite() && ra.is_finite() && rb.is_finite();
    if !finite || ra <= 0.0 || rb <= 0.0 {
        return no_statistics(std::f64::consts::PI * ra * rb, 0);
    }
    let region = Ellipse {
        c,
        ua: a / ra,
        ub: b / rb,
        ra,
        rb,
    };
    ellipse_on_voxel_layer(info, voxels, &region)
        .unwrap_or_else(|| ellipse_on_grid(info, voxels, &region))
}

/// An ellipse: centre, unit axes and semi-axis lengths (mm).
struct Ellipse {
    c: DVec3,
    ua: DVec3,
    ub: DVec3,
    ra: f64,
    rb: f64,
}

impl Ellipse {
    fn area_mm2(&self) -> f64 {
        std::f64::consts::PI * self.ra * self.rb
    }
}

/// A region without statistics: none of its `without_data` samples had any.
fn no_statistics(area_mm2: f64, without_data: usize) -> Value {
    Value::Region {
        area_mm2,
        mean: f64::NAN,
        sd: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
        samples: 0,
        without_data,
    }
}

/// Count, mean, sum of squared deviations, min and max of some values, merged by Chan's
/// pairwise formula (rows summarised in parallel, then combined).
#[derive(Debug, Clone, Copy)]
struct Moments {
    n: usize,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Moments {
    const NONE: Moments = Moments {
        n: 0,
        mean: 0.0,
        m2: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    fn push(self, v: f64) -> Moments {
        self.merge(Moments {
            n: 1,
            mean: v,
            m2: 0.0,
            min: v,
            max: v,
        })
    }

    fn merge(self, o: Moments) -> Moments {
        if o.n == 0 {
            return self;
        }
        if self.n == 0 {
            return o;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        let (a, b, total) = (self.n as f64, o.n as f64, n as f64);
        Moments {
            n,
            mean: self.mean + d * b / total,
            m2: self.m2 + o.m2 + d * d * a * b / total,
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
}

/// An ellipse on a plane of voxels: the voxels of that layer (the one the display's nearest
/// sampling shows there) whose centres lie inside it, each counted once, and the voxel
/// centres of the layer's lattice beyond the volume (or on a failed slice, or padding)
/// inside it counted as without data. `None` where the ellipse's plane is not a plane of
/// voxels (within a hundred-thousandth of a radian and a thousandth of a voxel), for a colour
/// volume, or where the display reads no voxel at its centre: the grid then samples it.
fn ellipse_on_voxel_layer(info: &VolumeInfo, voxels: &Voxels, e: &Ellipse) -> Option<Value> {
    let shape = voxels.shape();
    if voxels.is_colour() || [shape[2], shape[1], shape[0]] != info.dims {
        return None;
    }
    let g = &info.geometry;
    let step = |axis: usize| g.patient_from_voxel.col(axis).truncate();
    let normal = e.ua.cross(e.ub).normalize();
    // The voxel axis along the ellipse's normal: 0 (columns, a sagittal plane of an axial
    // stack), 1 (rows) or 2 (the slices' own planes).
    let along = |d: DVec3| d.normalize_or_zero().dot(normal).abs() >= 1.0 - 1e-10;
    let layer_axis = if along(info.axes[2]) {
        2
    } else if along(step(0)) {
        0
    } else if along(step(1)) {
        1
    } else {
        return None;
    };
    // The layer's lattice: origin and the steps of its two index axes (p, q).
    let (p_axis, q_axis) = match layer_axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    // Across the slices (a coronal or sagittal layer) the lattice is the affine's: the
    // slices must be evenly placed, none missing, unsheared.
    if layer_axis != 2 && info.use_table {
        return None;
    }
    let (e1, e2) = (step(p_axis), step(q_axis));
    // Across the whole volume the layer leaves the plane by less than a thousandth of a
    // voxel (a step's drift, times the steps there are).
    let thickness = step(layer_axis).length();
    let flat =
        |d: DVec3, axis: usize| d.dot(normal).abs() * info.dims[axis] as f64 <= 1e-3 * thickness;
    if !flat(e1, p_axis) || !flat(e2, q_axis) {
        return None;
    }
    // The layer the display shows at the centre (every point of a parallel plane shows it).
    let params = ResampleParams::new(
        info,
        &TextureLayout::single(info.dims),
        &probe_view(info, e.c),
    )
    .ok()?;
    let (at, _) = nearest_voxel(&params, &info.slices, voxels, 0, 0)?;
    let layer = at[layer_axis];
    let mut first = [0.0; 3];
    first[layer_axis] = layer as f64;
    let origin = DVec3::from(g.patient_from_voxel_exact(first));
    // Lattice point (p, q) lies at origin + p e1 + q e2; its in-plane coordinates in units of
    // the semi-axes are u = u0 + p u1 + q u2 and v = v0 + p v1 + q v2.
    let d0 = origin - e.c;
    let (u0, u1, u2) = (
        d0.dot(e.ua) / e.ra,
        e1.dot(e.ua) / e.ra,
        e2.dot(e.ua) / e.ra,
    );
    let (v0, v1, v2) = (
        d0.dot(e.ub) / e.rb,
        e1.dot(e.ub) / e.rb,
        e2.dot(e.ub) / e.rb,
    );
    let inside = |p: i64, q: i64| {
        let (p, q) = (p as f64, q as f64);
        let u = u0 + p * u1 + q * u2;
        let v = v0 + p * v1 + q * v2;
        u * u + v * v <= 1.0
    };
    // Rows q the ellipse reaches: the extent of q over the ellipse, from the inverse of the
    // lattice map (u, v) -> (p, q) (a voxel of margin either side).
    let det = u1 * v2 - u2 * v1;
    if det.abs() < 1e-12 {
        return None;
    }
    // q = qc + (u1 v - v1 u) / det over the unit circle in (u, v), centred where u = v = 0
    // (and p = pc + (v2 u - u2 v) / det).
    let qc = (v1 * u0 - u1 * v0) / det;
    let dq = (u1 * u1 + v1 * v1).sqrt() / det.abs();
    let pc = (u2 * v0 - v2 * u0) / det;
    let dp = (u2 * u2 + v2 * v2).sqrt() / det.abs();
    // An ellipse of more than 10^8 voxels across, or centred past 10^12 of them (no scan;
    // a measurement read from a damaged file), is left to the grid, which coarsens: the
    // lattice arithmetic stays well inside i64.
    let bounded = |c: f64, d: f64| c.is_finite() && d.is_finite() && c.abs() < 1e12 && d < 5e7;
    if !bounded(qc, dq) || !bounded(pc, dp) {
        return None;
    }
    let (q_lo, q_hi) = ((qc - dq).floor() as i64 - 1, (qc + dq).ceil() as i64 + 1);
    let (p_len, q_len) = (info.dims[p_axis] as i64, info.dims[q_axis] as i64);
    let voxel = |p: usize, q: usize| {
        let mut ijk = [0; 3];
        ijk[layer_axis] = layer;
        ijk[p_axis] = p;
        ijk[q_axis] = q;
        ijk
    };
    // Each row's run of lattice points inside (from its analytic ends, settled by `inside`),
    // and the statistics of those in the volume.
    let rows: (usize, Moments) = (q_lo..=q_hi)
        .into_par_iter()
        .map(|q| {
            let (uq, vq) = (u0 + q as f64 * u2, v0 + q as f64 * v2);
            // (uq + p u1)^2 + (vq + p v1)^2 <= 1, a quadratic in p.
            let a = u1 * u1 + v1 * v1;
            let b = 2.0 * (uq * u1 + vq * v1);
            let c = uq * uq + vq * vq - 1.0;
            let disc = b * b - 4.0 * a * c;
            if a <= 0.0 || disc.is_nan() {
                return (0, Moments::NONE);
            }
            // A row that grazes the ellipse (a root of rounding's sign) is settled by
            // `inside` like any other.
            let root = disc.max(0.0).sqrt();
            let mut lo = ((-b - root) / (2.0 * a)).ceil() as i64;
            let mut hi = ((-b + root) / (2.0 * a)).floor() as i64;
            while inside(lo - 1, q) {
                lo -= 1;
            }
            while lo <= hi && !inside(lo, q) {
                lo += 1;
            }
            while inside(hi + 1, q) {
                hi += 1;
            }
            while hi >= lo && !inside(hi, q) {
                hi -= 1;
            }
            let run = usize::try_from(hi - lo + 1).unwrap_or(0);
            let mut m = Moments::NONE;
            if (0..q_len).contains(&q) {
                for p in lo.max(0)..=hi.min(p_len - 1) {
                    let [i, j, k] = voxel(p as usize, q as usize);
                    if let Some(v) = voxel_value(info, voxels, [i, j, k]) {
                        m = m.push(v);
                    }
                }
            }
            (run, m)
        })
        .reduce(
            || (0, Moments::NONE),
            |(r1, m1), (r2, m2)| (r1.saturating_add(r2), m1.merge(m2)),
        );
    let (inside_total, m) = rows;
    if m.n == 0 {
        return Some(no_statistics(e.area_mm2(), inside_total));
    }
    Some(Value::Region {
        area_mm2: e.area_mm2(),
        mean: m.mean,
        sd: (m.m2 / (m.n as f64 - 1.0).max(1.0)).sqrt(),
        min: m.min,
        max: m.max,
        samples: m.n,
        without_data: inside_total.saturating_sub(m.n),
    })
}

/// The modality value of voxel `[i, j, k]` as the display's nearest sampling reads it, or
/// `None` on a failed slice or padding.
fn voxel_value(info: &VolumeInfo, voxels: &Voxels, [i, j, k]: [usize; 3]) -> Option<f64> {
    let value = kernel::voxel_value(voxels, &info.slices, [i, j, k])?;
    let stored = voxels.get(i, j, k)?;
    (!info.is_padding(k, stored)).then_some(f64::from(value))
}

/// An ellipse on any plane: sampled at the finest voxel spacing (nearest voxel per sample;
/// coarser only past [`MAX_SAMPLES`] within the volume).
fn ellipse_on_grid(info: &VolumeInfo, voxels: &Voxels, e: &Ellipse) -> Value {
    let Ellipse { c, ua, ub, ra, rb } = *e;
    let area_mm2 = e.area_mm2();
    let empty = |without_data| no_statistics(area_mm2, without_data);
    // The volume's extent along each axis of the ellipse, from its centre: no sample beyond it
    // can hold a voxel (the volume is convex), so an ellipse larger than the volume costs no
    // more than the volume's own cross-section. The corners are voxel centres and a sample
    // half a voxel beyond one still reads it: half the largest spacing more on each side.
    let half_voxel = 0.5 * info.spacing_mm.iter().copied().fold(0.0, f64::max);
    let extent = |u: DVec3| {
        let (lo, hi) = info
            .corners_mm()
            .iter()
            .map(|p| (DVec3::from(*p) - c).dot(u))
            .fold((f64::MAX, f64::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
        (lo - half_voxel, hi + half_voxel)
    };
    let (ext_a, ext_b) = (extent(ua), extent(ub));
    let span = |r: f64, (lo, hi): (f64, f64)| (hi.min(r) - lo.max(-r)).max(0.0);
    let mut step = info.min_spacing_mm().min(ra).min(rb);
    // At most MAX_SAMPLES samples: past that the grid coarsens (a region far larger than a
    // body at sub-millimetre spacing), so that no frame waits long on a measurement.
    let cells = (span(ra, ext_a) / step + 2.0) * (span(rb, ext_b) / step + 2.0);
    if cells > MAX_SAMPLES {
        step *= (cells / MAX_SAMPLES).sqrt();
    }
    // At most 10^7 samples across the ellipse, within the volume or not: its samples inside
    // are counted row by row (a needle 10^19 mm long from a damaged file would be rows
    // without end).
    step = step.max(2.0 * ra.max(rb) / 1e7);
    let n_a = (2.0 * ra / step).ceil().max(1.0) as i64;
    let n_b = (2.0 * rb / step).ceil().max(1.0) as i64;
    // Grid sample x sits at (x + 0.5 - n/2) * step along its axis; keep those within the
    // volume's extent (and a sample of margin).
    let range = |n: i64, (lo, hi): (f64, f64)| {
        let first = ((lo / step - 1.5 + n as f64 / 2.0).floor() as i64).clamp(0, n);
        let end = ((hi / step + 1.5 + n as f64 / 2.0).ceil() as i64).clamp(first, n);
        (first, end)
    };
    let ((x0, x1), (y0, y1)) = (range(n_a, ext_a), range(n_b, ext_b));
    // Every grid sample inside the ellipse, the volume's or not, by the very test the samples
    // below are taken by (row by row: a row's samples inside are a run, found from its
    // analytic ends and settled by that test).
    let inside = |x: i64, y: i64| {
        let u = (x as f64 + 0.5 - n_a as f64 / 2.0) * step / ra;
        let v = (y as f64 + 0.5 - n_b as f64 / 2.0) * step / rb;
        u * u + v * v <= 1.0
    };
    let inside_total: usize = (0..n_b)
        .map(|y| {
            let v = (y as f64 + 0.5 - n_b as f64 / 2.0) * step / rb;
            let half = (1.0 - v * v).max(0.0).sqrt() * ra / step;
            let mut lo = ((n_a as f64 / 2.0 - 0.5 - half).ceil().max(0.0) as i64).min(n_a - 1);
            let mut hi = ((n_a as f64 / 2.0 - 0.5 + half).floor() as i64).clamp(0, n_a - 1);
            while lo > 0 && inside(lo - 1, y) {
                lo -= 1;
            }
            while lo <= hi && !inside(lo, y) {
                lo += 1;
            }
            while hi + 1 < n_a && inside(hi + 1, y) {
                hi += 1;
            }
            while hi >= lo && !inside(hi, y) {
                hi -= 1;
            }
            usize::try_from(hi - lo + 1).unwrap_or(0)
        })
        .sum();
    if x1 <= x0 || y1 <= y0 {
        return empty(inside_total);
    }
    let (w, h) = (x1 - x0, y1 - y0);
    // Pixel (x', y') of this view is grid sample (x0 + x', y0 + y').
    let centre = c
        + ua * ((x0 as f64 + w as f64 / 2.0 - n_a as f64 / 2.0) * step)
        + ub * ((y0 as f64 + h as f64 / 2.0 - n_b as f64 / 2.0) * step);
    let view = SliceView {
        center_mm: centre.to_array(),
        right: ua.to_array(),
        down: ub.to_array(),
        pixel_mm: step,
        width: w as u32,
        height: h as u32,
        slab_mm: 0.0,
        slab_mode: SlabMode::Average,
        interpolation: Interpolation::Nearest,
    };
    // Colour is read through the resample (a region's luma); grey through the very voxels,
    // padding left out.
    let read: Vec<Option<f64>> = if voxels.is_colour() {
        let Ok(r) = cpu::resample(info, voxels, &view) else {
            return empty(inside_total);
        };
        (0..h as u32)
            .flat_map(|y| (0..w as u32).map(move |x| (x, y)))
            .map(|(x, y)| r.value(x, y).map(f64::from))
            .collect()
    } else {
        match measured(info, voxels, &view) {
            Some(read) => read,
            None => return empty(inside_total),
        }
    };
    let mut values = Vec::new();
    for y in y0..y1 {
        for x in x0..x1 {
            let u = (x as f64 + 0.5 - n_a as f64 / 2.0) * step / ra;
            let v = (y as f64 + 0.5 - n_b as f64 / 2.0) * step / rb;
            let at = (y - y0) as usize * w as usize + (x - x0) as usize;
            if u * u + v * v <= 1.0
                && let Some(val) = read.get(at).copied().flatten()
            {
                values.push(val);
            }
        }
    }
    if values.is_empty() {
        return empty(inside_total);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Value::Region {
        area_mm2,
        mean,
        sd: var.sqrt(),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        samples: values.len(),
        without_data: inside_total.saturating_sub(values.len()),
    }
}

/// Where a measurement's points fall on a view: screen pixel coordinates (pixel centres at
/// .5) and the distance from the view plane in mm. A view shows a measurement whose points lie
/// within half its slab (or half a scroll step) of the plane.
pub fn project(view: &SliceView, p: [f64; 3]) -> ((f64, f64), f64) {
    let p = DVec3::from(p);
    let d = (p - DVec3::from(view.center_mm)).dot(view.normal());
    (view.pixel_at_patient(p), d)
}

impl Shape {
    /// The points that define the shape (patient mm).
    pub fn points(&self) -> Vec<[f64; 3]> {
        match self {
            Shape::Length { a, b } => vec![*a, *b],
            Shape::Probe { at } => vec![*at],
            Shape::Angle { a, vertex, b } => vec![*a, *vertex, *b],
            Shape::Cobb { line1, line2 } => vec![line1[0], line1[1], line2[0], line2[1]],
            Shape::Ellipse { center, .. } => vec![*center],
        }
    }
}

impl Shape {
    /// The points a user can grab to change the shape: its defining points; for an ellipse
    /// its centre and the ends of its two semi-axes.
    pub fn handles(&self) -> Vec<[f64; 3]> {
        match self {
            Shape::Ellipse {
                center,
                semi_axis_1,
                semi_axis_2,
            } => {
                let c = DVec3::from(*center);
                vec![
                    *center,
                    (c + DVec3::from(*semi_axis_1)).to_array(),
                    (c + DVec3::from(*semi_axis_2)).to_array(),
                ]
            }
            other => other.points(),
        }
    }

    /// Whether the shape has collapsed below `min_mm` (a line, a side of an angle or a
    /// semi-axis shorter than that): its length or angle would be meaningless (an angle with a
    /// zero side is 0/0), so the app neither makes nor keeps such a shape.
    pub fn is_degenerate(&self, min_mm: f64) -> bool {
        let short = |a: &[f64; 3], b: &[f64; 3]| DVec3::from(*a).distance(DVec3::from(*b)) < min_mm;
        match self {
            Shape::Length { a, b } => short(a, b),
            Shape::Angle { a, vertex, b } => short(a, vertex) || short(b, vertex),
            Shape::Cobb { line1, line2 } => {
                short(&line1[0], &line1[1]) || short(&line2[0], &line2[1])
            }
            Shape::Ellipse {
                semi_axis_1,
                semi_axis_2,
                ..
            } => {
                DVec3::from(*semi_axis_1).length() < min_mm
                    || DVec3::from(*semi_axis_2).length() < min_mm
            }
            Shape::Probe { .. } => false,
        }
    }

    /// Whether its handles may be dragged on a view whose plane has `normal`: an ellipse only
    /// on a view of its own plane (within 8 degrees). Seen edge-on, its axis ends project onto
    /// its centre or along one line, and a drag there turns it in a plane the reader cannot
    /// see (its statistics changing unseen).
    pub fn editable_on(&self, normal: DVec3) -> bool {
        match self {
            Shape::Ellipse {
                semi_axis_1,
                semi_axis_2,
                ..
            } => {
                let own = DVec3::from(*semi_axis_1).cross(DVec3::from(*semi_axis_2));
                own.length() > 0.0
                    && own.normalize().dot(normal.normalize()).abs() >= EDIT_ACROSS_COS
            }
            _ => true,
        }
    }

    /// Move handle `k` to where the pointer is on a view: `on_view`, a point of the view
    /// plane, whose `normal` is given. The point keeps its own distance from the view plane:
    /// a shape drawn on a thin slice and shown on a slab or a nearby slice (which show what
    /// lies within their tolerance) stays in its plane, and its value stays what the view
    /// shows (moved onto the view plane instead, a 30 mm line seen 8 mm off read 31.0 mm
    /// after a grab that did not move it on screen).
    pub fn drag_handle(&mut self, k: usize, on_view: DVec3, normal: DVec3) {
        let Some(from) = self.handles().get(k).copied() else {
            return;
        };
        let n = normal.normalize_or_zero();
        let to = on_view + n * (DVec3::from(from) - on_view).dot(n);
        self.move_handle(k, to.to_array());
    }

    /// Move handle `k` (as [`Shape::handles`] numbers them) to `p`. An ellipse's centre moves
    /// the whole ellipse; an axis end sets that semi-axis and turns the other with it (kept
    /// perpendicular, in the ellipse's plane, its length kept). An unknown handle changes
    /// nothing.
    fn move_handle(&mut self, k: usize, p: [f64; 3]) {
        match self {
            Shape::Length { a, b } => match k {
                0 => *a = p,
                1 => *b = p,
                _ => {}
            },
            Shape::Angle { a, vertex, b } => match k {
                0 => *a = p,
                1 => *vertex = p,
                2 => *b = p,
                _ => {}
            },
            Shape::Cobb { line1, line2 } => match k {
                0 | 1 => line1[k] = p,
                2 | 3 => line2[k - 2] = p,
                _ => {}
            },
            Shape::Probe { at } => {
                if k == 0 {
                    *at = p;
                }
            }
            Shape::Ellipse {
                center,
                semi_axis_1,
                semi_axis_2,
            } => {
                let c = DVec3::from(*center);
                let (s1, s2) = (DVec3::from(*semi_axis_1), DVec3::from(*semi_axis_2));
                let normal = s1.cross(s2);
                let (moved, other) = match k {
                    0 => {
                        *center = p;
                        return;
                    }
                    1 => (DVec3::from(p) - c, s2),
                    2 => (DVec3::from(p) - c, s1),
                    _ => return,
                };
                if normal.length() < 1e-12 {
                    return;
                }
                // Kept in the ellipse's plane.
                let unit = normal.normalize();
                let moved = moved - unit * moved.dot(unit);
                if moved.length() < 1e-9 {
                    return;
                }
                // The other axis: perpendicular to the moved one within the ellipse's plane,
                // on the same side as before.
                let mut turned = normal.cross(moved).normalize() * other.length();
                if turned.dot(other) < 0.0 {
                    turned = -turned;
                }
                if k == 1 {
                    *semi_axis_1 = moved.to_array();
                    *semi_axis_2 = turned.to_array();
                } else {
                    *semi_axis_2 = moved.to_array();
                    *semi_axis_1 = turned.to_array();
                }
            }
        }
    }
}

/// Whether `m` belongs to the space of the view's stack (`frame_of_reference_uid`,
/// `stack_id`): the same frame of reference, or without one, the very stack it was drawn on.
pub fn same_space(
    m: &Measurement,
    frame_of_reference_uid: &Option<String>,
    stack_id: &str,
) -> bool {
    match (&m.frame_of_reference_uid, frame_of_reference_uid) {
        (Some(a), Some(b)) => a == b,
        _ => m.stack_id.as_deref() == Some(stack_id),
    }
}

/// True when every point of `m` lies within `tolerance_mm` of the view's plane and the
/// measurement belongs to the view's stack's space ([`same_space`]): the view cuts it, so it is
/// drawn there.
pub fn visible_on(
    m: &Measurement,
    view: &SliceView,
    tolerance_mm: f64,
    frame_of_reference_uid: &Option<String>,
    stack_id: &str,
) -> bool {
    if !same_space(m, frame_of_reference_uid, stack_id) {
        return false;
    }
    match &m.shape {
        Shape::Ellipse {
            center,
            semi_axis_1,
            semi_axis_2,
        } => {
            ellipse_on_view(view, *center, *semi_axis_1, *semi_axis_2, tolerance_mm)
                != EllipseOnView::Apart
        }
        shape => shape
            .points()
            .iter()
            .all(|p| project(view, *p).1.abs() <= tolerance_mm),
    }
}

/// How an ellipse (centre, semi-axes) lies to a view's plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EllipseOnView {
    /// All of it within `tolerance` of the plane: drawn whole.
    Whole,
    /// The plane cuts it: the chord between these two points of its rim (an axial region
    /// seen on a coronal plane through it).
    Chord([f64; 3], [f64; 3]),
    /// It does not reach the plane.
    Apart,
}

/// Where the view's plane meets the ellipse `c + a cos t + b sin t`: its rim's distance from
/// the plane is `d + (a.n) cos t + (b.n) sin t`, at most `|d| + R` with
/// `R = sqrt((a.n)^2 + (b.n)^2)`; whole within `tolerance` when that is, else cut where the
/// distance is 0, which it is somewhere when `|d| <= R`.
pub fn ellipse_on_view(
    view: &SliceView,
    center: [f64; 3],
    semi_axis_1: [f64; 3],
    semi_axis_2: [f64; 3],
    tolerance: f64,
) -> EllipseOnView {
    let n = view.normal();
    let (c, a, b) = (
        DVec3::from(center),
        DVec3::from(semi_axis_1),
        DVec3::from(semi_axis_2),
    );
    let d = project(view, center).1;
    let (an, bn) = (a.dot(n), b.dot(n));
    let r = an.hypot(bn);
    if d.abs() + r <= tolerance {
        return EllipseOnView::Whole;
    }
    if d.abs() > r {
        // The plane does not cut it, but passes within `tolerance` of it (a region seen on a
        // nearly parallel series, snapped to its own nearest slice): drawn whole, projected,
        // as a shape within tolerance is.
        return if d.abs() - r <= tolerance {
            EllipseOnView::Whole
        } else {
            EllipseOnView::Apart
        };
    }
    // R cos(t - phi) = -d.
    let phi = bn.atan2(an);
    let half = (-d / r).clamp(-1.0, 1.0).acos();
    let at = |t: f64| (c + a * t.cos() + b * t.sin()).to_array();
    EllipseOnView::Chord(at(phi - half), at(phi + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An axial circle of radius 10 at z = 0: whole on the axial plane, a chord of its
    /// diameter on the coronal plane through its centre and of 2 sqrt(100 - 36) = 16 mm on
    /// the one 6 mm off it, nothing 11 mm off; turned 30 degrees about x, its rim lies up to
    /// 5 mm off the axial plane: not whole there, cut along x.
    #[test]
    fn an_ellipse_is_whole_on_its_plane_and_a_chord_across_it() {
        let view = |normal: DVec3, at: f64| {
            let (right, down) = if normal == DVec3::Z {
                (DVec3::X, DVec3::Y)
            } else {
                (DVec3::X, -DVec3::Z)
            };
            SliceView {
                center_mm: (normal * at).to_array(),
                right: right.to_array(),
                down: down.to_array(),
                pixel_mm: 1.0,
                width: 64,
                height: 64,
                slab_mm: 0.0,
                slab_mode: SlabMode::Average,
                interpolation: Interpolation::Trilinear,
            }
        };
        let on = |v: &SliceView, a: DVec3, b: DVec3| {
            ellipse_on_view(v, [0.0; 3], a.to_array(), b.to_array(), 0.5)
        };
        let (a, b) = (DVec3::X * 10.0, DVec3::Y * 10.0);
        assert_eq!(on(&view(DVec3::Z, 0.0), a, b), EllipseOnView::Whole);
        let chord = |e: EllipseOnView| match e {
            EllipseOnView::Chord(p, q) => DVec3::from(p).distance(DVec3::from(q)),
            other => panic!("{other:?}"),
        };
        assert!((chord(on(&view(DVec3::Y, 0.0), a, b)) - 20.0).abs() < 1e-9);
        assert!((chord(on(&view(DVec3::Y, 6.0), a, b)) - 16.0).abs() < 1e-9);
        assert_eq!(on(&view(DVec3::Y, 11.0), a, b), EllipseOnView::Apart);
        // Tilted 1.2 degrees (its rim 0.2 mm either side of its centre), its centre 0.4 mm
        // off the plane: within the half-millimetre tolerance, whole; 0.8 mm off, apart.
        let tilt = 1.2f64.to_radians();
        let slight = DVec3::new(0.0, tilt.cos(), tilt.sin()) * 10.0;
        let off = |z: f64| {
            ellipse_on_view(
                &view(DVec3::Z, 0.0),
                [0.0, 0.0, z],
                a.to_array(),
                slight.to_array(),
                0.5,
            )
        };
        assert_eq!(off(0.4), EllipseOnView::Whole);
        assert_eq!(off(0.8), EllipseOnView::Apart);
        let (s, c) = 30f64.to_radians().sin_cos();
        let turned = DVec3::new(0.0, c, s) * 10.0;
        let EllipseOnView::Chord(p, q) = on(&view(DVec3::Z, 0.0), a, turned) else {
            panic!("a turned circle is cut, not whole");
        };
        assert!(
            (DVec3::from(p) - DVec3::from(q))
                .normalize()
                .dot(DVec3::X)
                .abs()
                > 1.0 - 1e-9
        );
    }

    /// A 64 x 64 x 4 chest phantom of 2 mm voxels.
    fn phantom_64() -> imaging::Volume {
        imaging::synth::phantom_volume(&imaging::synth::PhantomSpec {
            columns: 64,
            rows: 64,
            slices: 4,
            pixel_mm: 2.0,
            spacing_mm: 2.0,
            ..imaging::synth::PhantomSpec::default()
        })
    }

    /// A probe and a region are measured while every thread of the global rayon pool is taken
    /// (as a load takes them for its whole length): they waited for it to be free.
    #[test]
    fn values_do_not_wait_for_the_global_pool() {
        use std::sync::{Arc, Condvar, Mutex, mpsc};
        let volume = phantom_64();
        let info = VolumeInfo::new(&volume).unwrap();
        let centre = volume.geometry.patient_from_voxel_affine([31.5, 31.5, 1.0]);
        // Every global thread blocks until the gate opens, counting itself in first.
        let gate = Arc::new((Mutex::new((false, 0usize)), Condvar::new()));
        let threads = rayon::current_num_threads();
        for _ in 0..threads {
            let gate = gate.clone();
            rayon::spawn(move || {
                let (lock, cv) = &*gate;
                let mut state = lock.lock().unwrap();
                state.1 += 1;
                cv.notify_all();
                while !state.0 {
                    state = cv.wait(state).unwrap();
                }
            });
        }
        {
            let (lock, cv) = &*gate;
            let mut state = lock.lock().unwrap();
            while state.1 < threads {
                state = cv.wait(state).unwrap();
            }
        }
        let shapes = [
            Shape::Probe { at: centre },
            Shape::Ellipse {
                center: centre,
                semi_axis_1: [20.0, 0.0, 0.0],
                semi_axis_2: [0.0, 20.0, 0.0],
            },
        ];
        let (tx, rx) = mpsc::channel();
        let voxels = volume.voxels.clone();
        std::thread::spawn(move || {
            for shape in shapes {
                let m = Measurement {
                    id: 1,
                    shape,
                    frame_of_reference_uid: None,
                    stack_id: None,
                };
                let _ = tx.send(m.value(&info, &voxels));
            }
        });
        // A generous bound for a liveness check: without the pool of its own this waits for
        // ever (the gate opens only after it).
        let got: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(60)))
            .collect();
        let (lock, cv) = &*gate;
        lock.lock().unwrap().0 = true;
        cv.notify_all();
        assert!(
            matches!(got[0], Ok(Value::Point(Some(_)))),
            "probe: {:?}",
            got[0]
        );
        assert!(
            matches!(got[1], Ok(Value::Region { samples, .. }) if samples > 0),
            "region: {:?}",
            got[1]
        );
    }

    /// An ellipse far larger than the volume samples only the volume: 2 m and 200 m across
    /// an axial slice of a 64 x 64 phantom (2 mm voxels) give the same statistics, every
    /// voxel of the slice once (the 200 m one would have been 4e10 samples).
    #[test]
    fn a_region_larger_than_the_volume_samples_the_volume_only() {
        let volume = phantom_64();
        let info = VolumeInfo::new(&volume).unwrap();
        let centre = volume.geometry.patient_from_voxel_affine([31.5, 31.5, 1.0]);
        let stats =
            |r: f64| ellipse_stats(&info, &volume.voxels, centre, [r, 0.0, 0.0], [0.0, r, 0.0]);
        let (
            Value::Region { samples, mean, .. },
            Value::Region {
                samples: s2,
                mean: m2,
                ..
            },
        ) = (stats(2000.0), stats(200_000.0))
        else {
            panic!("not regions")
        };
        assert_eq!((samples, s2), (64 * 64, 64 * 64));
        assert_eq!(mean, m2);
        // The mean of slice 1's stored values through its rescale, from the voxels themselves.
        let r = volume.rescale.for_slice(1);
        let expected: f64 = (0..64)
            .flat_map(|j| (0..64).map(move |i| (i, j)))
            .map(|(i, j)| f64::from(volume.voxels.get(i, j, 1).unwrap()) * r.slope + r.intercept)
            .sum::<f64>()
            / 4096.0;
        assert!((mean - expected).abs() < 1e-6, "{mean} vs {expected}");
    }

    /// The statistics of voxels whose centres lie inside an ellipse, found by testing every
    /// voxel of layer `layer` (along axis `axis`) and of the lattice around it, placed by the
    /// file's geometry: (voxels read, values, lattice points inside but beyond the volume).
    fn by_every_voxel(
        volume: &imaging::Volume,
        axis: usize,
        layer: usize,
        [c, a, b]: [[f64; 3]; 3],
    ) -> (Vec<f64>, usize) {
        let g = &volume.geometry;
        let (c, a, b) = (DVec3::from(c), DVec3::from(a), DVec3::from(b));
        let (mut values, mut beyond) = (Vec::new(), 0);
        let others: Vec<usize> = (0..3).filter(|x| *x != axis).collect();
        let margin = 200i64;
        for q in -margin..g.dims[others[1]] as i64 + margin {
            for p in -margin..g.dims[others[0]] as i64 + margin {
                let mut v = [0.0; 3];
                v[axis] = layer as f64;
                v[others[0]] = p as f64;
                v[others[1]] = q as f64;
                let d = DVec3::from(g.patient_from_voxel_affine(v)) - c;
                let (u, w) = (d.dot(a) / a.length_squared(), d.dot(b) / b.length_squared());
                if u * u + w * w > 1.0 {
                    continue;
                }
                let inside = (0..g.dims[others[0]] as i64).contains(&p)
                    && (0..g.dims[others[1]] as i64).contains(&q);
                if !inside {
                    beyond += 1;
                    continue;
                }
                let [i, j, k] = v.map(|x| x as usize);
                let r = volume.rescale.for_slice(k);
                let stored = f64::from(volume.voxels.get(i, j, k).unwrap());
                values.push(stored * r.slope + r.intercept);
            }
        }
        (values, beyond)
    }

    fn summary(values: &[f64]) -> (usize, f64, f64, f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (values.len(), mean, sd, min, max)
    }

    /// A region's (samples, mean, sd, min, max), and its samples without data.
    fn figures(v: Value) -> ((usize, f64, f64, f64, f64), usize) {
        let Value::Region {
            mean,
            sd,
            min,
            max,
            samples,
            without_data,
            ..
        } = v
        else {
            panic!("not a region: {v:?}")
        };
        ((samples, mean, sd, min, max), without_data)
    }

    fn close(got: (usize, f64, f64, f64, f64), want: (usize, f64, f64, f64, f64)) -> bool {
        got.0 == want.0
            && (got.1 - want.1).abs() < 1e-9 * want.1.abs().max(1.0)
            && (got.2 - want.2).abs() < 1e-6 * want.2.abs().max(1.0)
            && got.3 == want.3
            && got.4 == want.4
    }

    /// An ellipse on a slice takes the slice's voxels whose centres lie inside it, each once,
    /// as a mask over the slice does: a circle of 5.7 voxels' radius centred on a voxel holds
    /// the 101 lattice points within 5.7 of it (Gauss's count; a grid centred on the circle
    /// with half-voxel offsets took 96 samples); a turned, off-centre ellipse the voxels found
    /// by testing every voxel of the slice.
    #[test]
    fn a_region_on_a_slice_takes_the_voxels_whose_centres_are_inside() {
        let volume = phantom_64();
        let info = VolumeInfo::new(&volume).unwrap();
        let g = &volume.geometry;
        let circle = [
            g.patient_from_voxel_affine([20.0, 33.0, 1.0]),
            [11.4, 0.0, 0.0],
            [0.0, 11.4, 0.0],
        ];
        let (turn, across) = (30f64.to_radians(), 0.2);
        let turned = [
            g.patient_from_voxel_affine([30.3, 28.6, 2.0 + across]),
            [17.0 * turn.cos(), 17.0 * turn.sin(), 0.0],
            [-7.0 * turn.sin(), 7.0 * turn.cos(), 0.0],
        ];
        for (name, [c, a, b], layer) in [("circle", circle, 1), ("turned", turned, 2)] {
            let (got, without_data) = figures(ellipse_stats(&info, &volume.voxels, c, a, b));
            let (values, beyond) = by_every_voxel(&volume, 2, layer, [c, a, b]);
            assert_eq!((without_data, beyond), (0, 0), "{name}");
            let want = summary(&values);
            assert!(close(got, want), "{name}: {got:?} vs {want:?}");
            if name == "circle" {
                assert_eq!(got.0, 101);
            }
            assert!(
                want.3 < want.4,
                "{name}: the region spans no edge: {want:?}"
            );
        }
    }

    /// Ellipses no scan draws (a measurement from a damaged file: a needle a hundred-millionth
    /// of a millimetre wide and 10^19 mm long, one centred 10^17 mm away, non-finite ones)
    /// give an answer, never a panic or a wait.
    #[test]
    fn absurd_ellipses_are_answered() {
        let volume = phantom_64();
        let info = VolumeInfo::new(&volume).unwrap();
        let c = volume.geometry.patient_from_voxel_affine([31.0, 31.0, 1.0]);
        let far = [1e17, 0.0, c[2]];
        for (c, a, b) in [
            (c, [1e19, 0.0, 0.0], [0.0, 1e-8, 0.0]),
            (c, [1e-8, 0.0, 0.0], [0.0, 1e19, 0.0]),
            (far, [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]),
            (c, [f64::NAN, 0.0, 0.0], [0.0, 10.0, 0.0]),
            (c, [f64::INFINITY, 0.0, 0.0], [0.0, 10.0, 0.0]),
        ] {
            let v = ellipse_stats(&info, &volume.voxels, c, a, b);
            assert!(matches!(v, Value::Region { .. }), "{v:?}");
        }
    }

    /// A 32 x 32 x 6 phantom of 0.7 mm pixels and 5 mm slices.
    fn thick_slice_phantom() -> imaging::Volume {
        imaging::synth::phantom_volume(&imaging::synth::PhantomSpec {
            columns: 32,
            rows: 32,
            slices: 6,
            pixel_mm: 0.7,
            spacing_mm: 5.0,
            ..imaging::synth::PhantomSpec::default()
        })
    }

    /// A coronal ellipse over the end of a stack of 0.7 mm pixels and 5 mm slices takes the
    /// voxels of its row whose centres lie inside; the lattice points inside past the last
    /// slice are its part without data.
    #[test]
    fn a_coronal_region_takes_the_voxels_of_its_row_and_counts_the_rest() {
        let volume = thick_slice_phantom();
        let info = VolumeInfo::new(&volume).unwrap();
        let g = &volume.geometry;
        // Between rows 16 and 17, nearer 16: the display shows row 16 there.
        let c = g.patient_from_voxel_affine([15.5, 16.3, 4.6]);
        let (a, b) = ([9.0, 0.0, 0.0], [0.0, 0.0, -12.0]);
        let (got, without_data) = figures(ellipse_stats(&info, &volume.voxels, c, a, b));
        let (values, beyond) = by_every_voxel(&volume, 1, 16, [c, a, b]);
        assert!(beyond > 0 && values.len() > 20, "{beyond} {}", values.len());
        assert_eq!(without_data, beyond);
        let want = summary(&values);
        assert!(close(got, want), "{got:?} vs {want:?}");
    }

    /// The grid (oblique planes) over the last slices of a stack of 0.7 mm pixels and 5 mm
    /// slices, on a coronal plane: every grid sample that falls in a voxel (up to half a
    /// slice beyond the last slice's centre) is counted, as the unclipped grid counts them
    /// (counted here from the grid and the voxel bounds directly).
    #[test]
    fn a_region_over_the_end_of_a_thick_slice_stack_keeps_its_edge_samples() {
        let volume = thick_slice_phantom();
        let info = VolumeInfo::new(&volume).unwrap();
        let g = &volume.geometry;
        let centre = g.patient_from_voxel_affine([15.5, 16.0, 5.0]);
        let (ra, rb) = (20.0, 20.0);
        let Value::Region {
            samples,
            without_data,
            ..
        } = ellipse_on_grid(
            &info,
            &volume.voxels,
            &Ellipse {
                c: DVec3::from(centre),
                ua: DVec3::X,
                ub: DVec3::NEG_Z,
                ra,
                rb,
            },
        )
        else {
            panic!("not a region")
        };
        // The grid: 0.7 mm steps centred on the ellipse; a sample is in the volume when its
        // voxel coordinates are within half a voxel of the first and last voxel centres.
        let step = 0.7;
        let n = (2.0 * ra / step).ceil() as i64;
        // Voxel coordinates by the DICOM affine's columns (the stack is axial: i along x,
        // k along z, either sign).
        let at = |v: [f64; 3]| DVec3::from(g.patient_from_voxel_affine(v));
        let origin = at([0.0, 16.0, 0.0]);
        let (e_i, e_k) = (at([1.0, 16.0, 0.0]) - origin, at([0.0, 16.0, 1.0]) - origin);
        let mut expected = 0;
        let mut in_ellipse = 0;
        for y in 0..n {
            for x in 0..n {
                let u = (x as f64 + 0.5 - n as f64 / 2.0) * step;
                let v = (y as f64 + 0.5 - n as f64 / 2.0) * step;
                if (u / ra).powi(2) + (v / rb).powi(2) > 1.0 {
                    continue;
                }
                in_ellipse += 1;
                let p = DVec3::from(centre) + DVec3::new(u, 0.0, -v);
                let i = (p - origin).dot(e_i) / e_i.length_squared();
                let k = (p - origin).dot(e_k) / e_k.length_squared();
                if (-0.5..=31.5).contains(&i) && (-0.5..=5.5).contains(&k) {
                    expected += 1;
                }
            }
        }
        assert!(expected > 500, "{expected}");
        assert_eq!(samples, expected);
        // The rest of the ellipse, past the stack's end, is counted as without data (its
        // statistics are of part of it, and the label says so).
        assert!(in_ellipse > expected);
        assert_eq!(without_data, in_ellipse - expected);
    }

    #[test]
    fn shapes_shorter_than_the_limit_are_degenerate() {
        let o = [0.0; 3];
        let x = |d: f64| [d, 0.0, 0.0];
        assert!(Shape::Length { a: o, b: x(0.4) }.is_degenerate(0.5));
        assert!(!Shape::Length { a: o, b: x(0.6) }.is_degenerate(0.5));
        let angle = |side: f64| Shape::Angle {
            a: x(10.0),
            vertex: o,
            b: [0.0, side, 0.0],
        };
        assert!(angle(0.0).is_degenerate(0.5));
        assert!(!angle(3.0).is_degenerate(0.5));
        let cobb = Shape::Cobb {
            line1: [o, x(10.0)],
            line2: [[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]],
        };
        assert!(cobb.is_degenerate(0.5));
        let ellipse = |b: f64| Shape::Ellipse {
            center: o,
            semi_axis_1: x(4.0),
            semi_axis_2: [0.0, b, 0.0],
        };
        assert!(ellipse(0.0).is_degenerate(0.5));
        assert!(!ellipse(1.0).is_degenerate(0.5));
        assert!(!Shape::Probe { at: o }.is_degenerate(0.5));
    }

    #[test]
    fn handles_move_points_and_an_ellipse_keeps_its_axes_perpendicular() {
        let mut length = Shape::Length {
            a: [0.0, 0.0, 0.0],
            b: [10.0, 0.0, 0.0],
        };
        length.move_handle(1, [0.0, 20.0, 0.0]);
        assert_eq!(length.points(), vec![[0.0, 0.0, 0.0], [0.0, 20.0, 0.0]]);
        length.move_handle(7, [1.0, 1.0, 1.0]);
        assert_eq!(length.points()[1], [0.0, 20.0, 0.0]);

        let mut cobb = Shape::Cobb {
            line1: [[0.0; 3], [1.0, 0.0, 0.0]],
            line2: [[0.0, 5.0, 0.0], [1.0, 5.0, 0.0]],
        };
        cobb.move_handle(3, [1.0, 6.0, 0.0]);
        assert_eq!(cobb.handles()[3], [1.0, 6.0, 0.0]);

        // An axial ellipse, 10 x 5 mm semi-axes.
        let mut e = Shape::Ellipse {
            center: [0.0, 0.0, 7.0],
            semi_axis_1: [10.0, 0.0, 0.0],
            semi_axis_2: [0.0, 5.0, 0.0],
        };
        assert_eq!(e.handles()[2], [0.0, 5.0, 7.0]);
        // Turn the first axis by 90 degrees (a point slightly off the plane stays in it).
        e.move_handle(1, [0.0, -8.0, 7.2]);
        let Shape::Ellipse {
            center,
            semi_axis_1,
            semi_axis_2,
        } = e
        else {
            unreachable!()
        };
        assert_eq!(center, [0.0, 0.0, 7.0]);
        assert!((DVec3::from(semi_axis_1) - DVec3::new(0.0, -8.0, 0.0)).length() < 1e-12);
        let s2 = DVec3::from(semi_axis_2);
        assert!((s2.length() - 5.0).abs() < 1e-12);
        assert!(s2.dot(DVec3::from(semi_axis_1)).abs() < 1e-12);
        assert!(s2.z.abs() < 1e-12);
        // The centre moves the whole ellipse.
        e.move_handle(0, [1.0, 2.0, 7.0]);
        assert_eq!(e.handles()[1], [1.0, -6.0, 7.0]);
    }

    /// Cobb angles past 90 degrees (a severe scoliosis: endplates tilted 55 degrees each way
    /// read 110, not the 70 between the lines), the same whichever way each line is drawn and
    /// whichever is first, on coronal and sagittal planes and on a film however it lies
    /// (stored sideways: the same curve); parallel lines 0; lines crossing at their middles
    /// the smaller angle.
    #[test]
    fn cobb_angles_are_the_difference_of_the_tilts_across_the_spine() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // A line 60 mm long centred on `at`, tilted `tilt` degrees from `across` towards `up`.
        let line = |at: DVec3, across: DVec3, up: DVec3, tilt: f64| {
            let d = (across * tilt.to_radians().cos() + up * tilt.to_radians().sin()) * 30.0;
            [at - d, at + d]
        };
        for (across, up) in [
            (DVec3::X, DVec3::Z),                                      // coronal
            (DVec3::Y, DVec3::Z),                                      // sagittal
            (DVec3::X, DVec3::Y),  // a film upright, without orientation
            (DVec3::Y, -DVec3::X), // the same film stored sideways
            (DVec3::new(0.6, 0.8, 0.0), DVec3::new(-0.48, 0.36, 0.8)), // oblique
        ] {
            let top = |tilt| line(up * 120.0, across, up, tilt);
            let bottom = |tilt| line(DVec3::ZERO, across, up, tilt);
            let cobb = |a: [DVec3; 2], b: [DVec3; 2]| cobb_deg(a, b);
            let reversed = |[a, b]: [DVec3; 2]| [b, a];
            assert!(
                close(cobb(top(55.0), bottom(-55.0)), 110.0),
                "{across} {up}"
            );
            assert!(close(cobb(reversed(top(55.0)), bottom(-55.0)), 110.0));
            assert!(close(cobb(bottom(-55.0), reversed(top(55.0))), 110.0));
            assert!(close(cobb(top(10.0), bottom(-15.0)), 25.0));
            assert!(close(cobb(top(80.0), bottom(20.0)), 60.0));
            assert!(close(cobb(top(80.0), bottom(-30.0)), 110.0));
            assert!(close(cobb(top(20.0), bottom(20.0)), 0.0));
            // A 20-degree curve is 20 however the endplates lie on the image.
            assert!(close(cobb(top(-10.0), bottom(10.0)), 20.0));
        }
        // Lines crossing at their middles: no spine between them, the smaller angle.
        let x = [DVec3::new(-30.0, 0.0, 0.0), DVec3::new(30.0, 0.0, 0.0)];
        let tilted = [DVec3::new(-30.0, 0.0, -52.0), DVec3::new(30.0, 0.0, 52.0)];
        let a = cobb_deg(x, tilted);
        assert!(close(a, (52.0f64 / 30.0).atan().to_degrees()), "{a}");
    }

    /// A handle dragged on a view that shows the shape from off its plane (a slab centred
    /// 8 mm away) moves within the shape's plane: a 30 mm line grabbed and not moved on
    /// screen stays 30 mm (it read 31.0), and moved 10 mm along the screen reads 40 mm. An
    /// axial ellipse is edited on axial views only.
    #[test]
    fn a_handle_dragged_off_the_shapes_plane_keeps_its_depth() {
        let axial = DVec3::Z;
        let mut length = Shape::Length {
            a: [0.0, 0.0, 0.0],
            b: [30.0, 0.0, 0.0],
        };
        let length_of = |s: &Shape| {
            let p = s.points();
            DVec3::from(p[0]).distance(DVec3::from(p[1]))
        };
        length.drag_handle(1, DVec3::new(30.0, 0.0, 8.0), axial);
        assert_eq!(length.points()[1], [30.0, 0.0, 0.0]);
        assert_eq!(length_of(&length), 30.0);
        length.drag_handle(1, DVec3::new(40.0, 0.0, 8.0), -axial);
        assert_eq!(length_of(&length), 40.0);
        // On a coronal view the depth kept is along y; the screen moves x and z.
        length.drag_handle(1, DVec3::new(40.0, 5.0, 3.0), DVec3::Y);
        assert_eq!(length.points()[1], [40.0, 0.0, 3.0]);
        let before = length.clone();
        length.drag_handle(9, DVec3::new(1.0, 1.0, 1.0), axial);
        assert_eq!(length, before, "no such handle");

        let mut angle = Shape::Angle {
            a: [10.0, 0.0, 0.0],
            vertex: [0.0; 3],
            b: [10.0, 10.0, 0.0],
        };
        angle.drag_handle(2, DVec3::new(10.0, 10.0, 8.0), axial);
        assert_eq!(angle.points()[2], [10.0, 10.0, 0.0]);

        let e = Shape::Ellipse {
            center: [0.0; 3],
            semi_axis_1: [10.0, 0.0, 0.0],
            semi_axis_2: [0.0, 5.0, 0.0],
        };
        assert!(e.editable_on(axial) && e.editable_on(-axial));
        assert!(e.editable_on(DVec3::new(0.0, 0.1, 1.0)));
        assert!(!e.editable_on(DVec3::Y) && !e.editable_on(DVec3::new(0.0, 0.5, 1.0)));
        assert!(length.editable_on(DVec3::Y));
    }
}
