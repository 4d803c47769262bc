//! Viewport state, independent of any UI toolkit: which plane a viewport shows and where, its
//! zoom, pan, rotation and flips, window/level, slab; orientation markers that follow every
//! rotate and flip; screen <-> patient mapping; measurements in patient coordinates.
//!
//! Owns: what a radiologist manipulates in a viewport and the numbers shown about it.
//! Must not: draw (that is `app`), touch the GPU (that is `render`), read files.

pub mod bindings;
pub mod measure;

use glam::DVec3;
use serde::Serialize;

use crate::render::view::direction_letters;
use crate::render::{Display, Interpolation, Plane, SlabMode, SliceView, Voi, VolumeInfo};

/// One viewport's view of one volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Viewport {
    /// The base plane (its screen axes before rotation and flips).
    pub plane: Plane,
    /// Quarter turns clockwise on screen.
    pub rotation_quarters: u8,
    /// Mirror left-right / top-bottom on screen.
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
    /// Patient point at the centre of the viewport (LPS mm): pan moves it in the plane,
    /// scrolling moves it along the plane normal.
    pub center_mm: [f64; 3],
    /// 1.0 fits the whole volume in the viewport; 2.0 shows it twice as large.
    pub zoom: f64,
    pub display: Display,
    pub slab_mm: f64,
    pub slab_mode: SlabMode,
    pub interpolation: Interpolation,
}

/// Why a viewport's corner text and markers say what they say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overlay {
    /// Markers at the left, right, top and bottom edges; `None` when the geometry cannot be
    /// trusted (no position or orientation in the files).
    pub markers: Option<[String; 4]>,
    /// Plane position along its normal, mm (axial: z, coronal: y, sagittal: x).
    pub position_mm: f64,
    /// Slice number (1-based) and count when the plane is the stack's own and lies on one of
    /// its slices; else `None`.
    pub slice: Option<(usize, usize)>,
    /// On a plane of the stack's own between two of its slices (a crosshair dragged in MPR,
    /// a measurement gone to): the slice before (1-based) and the count. What is shown there
    /// is a blend of the two, which no slice number names.
    pub between: Option<(usize, usize)>,
    /// On a plane of the stack's own in a gap of missing slices, away from both (no data
    /// shown): the slice before it (1-based) and the count.
    pub gap: Option<(usize, usize)>,
    /// The point whose position the corner names (`position_text`): where the plane crosses
    /// the line through the volume's centre along the patient axis nearest its normal.
    pub centre_mm: [f64; 3],
    /// Window width and level, when a window (not a LUT) is applied.
    pub window: Option<(f64, f64)>,
    pub slab_mm: f64,
}

impl Viewport {
    /// A viewport showing `plane` through the centre of the volume, fitted, with `voi`. When
    /// the plane is the stack's own, it sits on the middle slice (image K/2 + 1 of K).
    pub fn new(info: &VolumeInfo, plane: Plane, voi: Voi) -> Viewport {
        let mut centre = volume_centre(info);
        let n = plane.normal();
        if along_slices(info, n)
            && let Some(mid) = info.slices.get(info.dims[2] / 2)
        {
            // Onto the middle slice where the plane's centre crosses it (as `native_slice`
            // and scrolling measure it: along the stack's axis through the centre).
            let here = (centre - info.origin).dot(info.axes[2]);
            centre += n * ((f64::from(mid.z) - here) / n.dot(info.axes[2]));
        }
        Viewport {
            plane,
            rotation_quarters: 0,
            flip_horizontal: false,
            flip_vertical: false,
            center_mm: centre.to_array(),
            zoom: 1.0,
            display: Display::new(voi),
            slab_mm: 0.0,
            slab_mode: SlabMode::Average,
            interpolation: Interpolation::Trilinear,
        }
    }

    /// Screen right and down in patient space after rotation and flips.
    pub fn screen_axes(&self) -> (DVec3, DVec3) {
        let (mut right, mut down) = self.plane.screen_axes();
        for _ in 0..(self.rotation_quarters % 4) {
            // Turning the image a quarter clockwise: what was up now points right.
            let (r, d) = (-down, right);
            right = r;
            down = d;
        }
        if self.flip_horizontal {
            right = -right;
        }
        if self.flip_vertical {
            down = -down;
        }
        (right, down)
    }

    /// The plane normal (fixed by the base plane; rotation and flips do not change it).
    pub fn normal(&self) -> DVec3 {
        self.plane.normal()
    }

    /// The frame to draw in a `width` x `height` pixel viewport.
    pub fn slice_view(&self, info: &VolumeInfo, width: u32, height: u32) -> SliceView {
        let (right, down) = self.screen_axes();
        SliceView {
            center_mm: self.center_mm,
            right: right.to_array(),
            down: down.to_array(),
            pixel_mm: fit_pixel_mm(info, right, down, width, height) / self.zoom.max(1e-3),
            width: width.max(1),
            height: height.max(1),
            slab_mm: self.slab_mm,
            slab_mode: self.slab_mode,
            interpolation: self.interpolation,
        }
    }

    /// Distance between neighbouring planes when scrolling: the voxel spacing along the normal.
    pub fn scroll_step_mm(&self, info: &VolumeInfo) -> f64 {
        let n = self.normal();
        let s: f64 = (0..3)
            .map(|a| (n.dot(info.axes[a]) / info.spacing_mm[a]).powi(2))
            .sum();
        if s > 0.0 { 1.0 / s.sqrt() } else { 1.0 }
    }

    /// Move `steps` planes along the normal (positive: towards +normal), staying within the
    /// volume. On the stack's own plane a step is a slice: from slice to slice at the slices'
    /// real positions (an unevenly spaced stack is never shown between two of its slices).
    pub fn scroll(&mut self, info: &VolumeInfo, steps: f64) {
        if let Some(position) = self.slice_steps_away(info, steps) {
            self.set_position(position);
            return;
        }
        let along = self.position_mm() + steps * self.scroll_step_mm(info);
        self.set_position_within(info, along);
    }

    /// Where `steps` (a whole number) slices away from this plane is, along its normal, when
    /// the plane is parallel to the stack's slices: the first step goes to the nearest slice
    /// beyond the plane (the plane itself may lie between two), the rest slice by slice, and
    /// the ends stop it.
    fn slice_steps_away(&self, info: &VolumeInfo, steps: f64) -> Option<f64> {
        let n = self.normal();
        if !along_slices(info, n) || steps.fract() != 0.0 || steps == 0.0 || info.slices.is_empty()
        {
            return None;
        }
        let z: Vec<f64> = info.slices.iter().map(|e| f64::from(e.z)).collect();
        // The slice table ascends along the stack's normal (it is sorted along it).
        if z.windows(2).any(|w| w[1] < w[0]) {
            return None;
        }
        let here = (DVec3::from(self.center_mm) - info.origin).dot(info.axes[2]);
        // Towards larger z when the steps go along the stack's normal.
        let up = (steps > 0.0) == (n.dot(info.axes[2]) > 0.0);
        let count = steps.abs().min(z.len() as f64) as usize;
        // Positions within a micrometre count as on the slice (f32 table).
        let eps = 1e-3;
        let last = z.len() - 1;
        let target = if up {
            let first_beyond = z.iter().position(|&s| s > here + eps).unwrap_or(last);
            (first_beyond + count - 1).min(last)
        } else {
            let first_beyond = z.iter().rposition(|&s| s < here - eps).unwrap_or(0);
            first_beyond.saturating_sub(count - 1)
        };
        // Measured as `here` is, through this plane's centre: a plane a hair off the stack's
        // axis (within `along_slices`) then lands on the slice where the centre crosses it,
        // and the next step starts from that slice, not from beside it.
        Some(self.position_mm() + (z[target] - here) / n.dot(info.axes[2]))
    }

    /// Move the plane along its normal to `position_mm`, keeping the pan.
    pub fn set_position(&mut self, position_mm: f64) {
        let n = self.normal();
        let c = DVec3::from(self.center_mm);
        self.center_mm = (c + n * (position_mm - c.dot(n))).to_array();
    }

    /// The same, kept within the volume.
    pub fn set_position_within(&mut self, info: &VolumeInfo, position_mm: f64) {
        let (lo, hi) = extent_along(info, self.normal());
        self.set_position(position_mm.clamp(lo, hi));
    }

    /// Follow another series' plane `n·x = position` (same frame of reference, nearly
    /// parallel to this one): go to where that plane crosses this viewport's line of sight
    /// through its centre, and onto the nearest slice there when this plane is the stack's
    /// own (measured through the centre, as scrolling measures). A number alone is no point:
    /// between planes 2.5 degrees apart, the same distance from the patient origin lands
    /// millimetres off at the anatomy. Returns false when that point lies beyond the volume
    /// (the plane then stops at its end).
    pub fn follow_plane(&mut self, info: &VolumeInfo, n: DVec3, position: f64) -> bool {
        let m = self.normal();
        let cos = n.dot(m);
        if cos.abs() < 1e-3 {
            return false;
        }
        let t = DVec3::from(self.center_mm);
        let target = m.dot(t) + (position - n.dot(t)) / cos;
        let (lo, hi) = extent_along(info, m);
        // Half a voxel beyond the outermost slice centres still shows that slice.
        let reach = 0.5 * self.scroll_step_mm(info);
        let inside = (lo - reach..=hi + reach).contains(&target);
        self.set_position_within(info, target);
        if along_slices(info, m) && !info.slices.is_empty() {
            let here = (DVec3::from(self.center_mm) - info.origin).dot(info.axes[2]);
            if let Some(nearest) = info
                .slices
                .iter()
                .map(|e| f64::from(e.z))
                .min_by(|a, b| (a - here).abs().total_cmp(&(b - here).abs()))
            {
                self.set_position(self.position_mm() + (nearest - here) / m.dot(info.axes[2]));
            }
        }
        inside
    }

    /// Go to the first (`false`) or last (`true`) plane.
    pub fn scroll_to_end(&mut self, info: &VolumeInfo, last: bool) {
        self.scroll(
            info,
            if last {
                f64::MAX / 4.0
            } else {
                -f64::MAX / 4.0
            },
        );
    }

    /// Pan by a screen displacement in viewport pixels (the image follows the pointer).
    pub fn pan_pixels(&mut self, view: &SliceView, dx: f64, dy: f64) {
        let c = DVec3::from(self.center_mm)
            - DVec3::from(view.right) * dx * view.pixel_mm
            - DVec3::from(view.down) * dy * view.pixel_mm;
        self.center_mm = c.to_array();
    }

    /// Window/level by a drag: right widens the window, down raises the level (as most
    /// viewers do), scaled so a 500-pixel drag spans the current width.
    pub fn drag_window(&mut self, dx: f64, dy: f64) {
        if let Voi::Window {
            center,
            width,
            function,
        } = &mut self.display.voi
        {
            // LINEAR is at least 1 wide (PS3.3 C.11.2.1.2.1), and half a unit a pixel keeps HU
            // windows responsive. Other functions may be narrower than 1 (data spanning less):
            // their width changes by a factor (e^2 for 500 pixels), so a window of 0.001 widens
            // to hundreds as readily as 0.5 to 2.
            if *function == crate::render::voi::VoiFunction::Linear {
                let scale = (*width / 500.0).max(0.5);
                *width = (*width + dx * scale).max(1.0);
                *center += dy * scale;
            } else {
                *center += dy * *width / 500.0;
                *width =
                    (*width * (dx / 250.0).exp()).clamp(crate::render::voi::MIN_EXACT_WIDTH, 1e9);
            }
        }
    }

    /// Turn the image a quarter clockwise on screen. Rotation is applied before the flips, so
    /// under exactly one flip a clockwise turn on screen is a counter-clockwise one underneath.
    pub fn rotate_clockwise(&mut self) {
        let quarters = if self.flip_horizontal != self.flip_vertical {
            3
        } else {
            1
        };
        self.rotation_quarters = (self.rotation_quarters + quarters) % 4;
    }

    /// Fit: the whole volume in view, centred (zoom and pan undone; not the rotation, flips,
    /// window or the plane position).
    pub fn fit(&mut self, info: &VolumeInfo) {
        let along = self.position_mm();
        self.center_mm = volume_centre(info).to_array();
        self.set_position(along);
        self.zoom = 1.0;
    }

    /// Reset zoom, pan, rotation and flips (not the window or the plane position).
    pub fn reset(&mut self, info: &VolumeInfo) {
        self.fit(info);
        self.rotation_quarters = 0;
        self.flip_horizontal = false;
        self.flip_vertical = false;
    }

    /// How far from this plane a point may lie and still be shown on it: half the slab, or
    /// half a scroll step for a thin plane.
    pub fn cut_tolerance_mm(&self, info: &VolumeInfo) -> f64 {
        (self.slab_mm / 2.0).max(self.scroll_step_mm(info) / 2.0)
    }

    /// This viewport switched to `plane` through the volume centre, keeping its display.
    pub fn with_plane(&self, info: &VolumeInfo, plane: Plane) -> Viewport {
        let mut fresh = Viewport::new(info, plane, self.display.voi.clone());
        fresh.display = self.display.clone();
        fresh
    }

    /// Position along the normal, mm.
    pub fn position_mm(&self) -> f64 {
        DVec3::from(self.center_mm).dot(self.normal())
    }

    /// What the corners and edges of the viewport say.
    pub fn overlay(&self, info: &VolumeInfo) -> Overlay {
        let (right, down) = self.screen_axes();
        let markers = info
            .geometry
            .trusted
            .then(|| [-right, right, -down, down].map(direction_letters));
        // One look at where the plane lies, three ways of saying it.
        let place = self.slice_place(info);
        let count = info.slices.len();
        let slice = match place {
            Some(SlicePlace::On(k)) => Some((k + 1, count)),
            _ => None,
        };
        let between = match place {
            Some(SlicePlace::Between(k)) => Some((k + 1, count)),
            _ => None,
        };
        let gap = match place {
            Some(SlicePlace::Gap(k)) => Some((k + 1, count)),
            _ => None,
        };
        let window = match &self.display.voi {
            Voi::Window { center, width, .. } => Some((*width, *center)),
            Voi::Lut(_) => None,
        };
        Overlay {
            markers,
            position_mm: self.position_mm(),
            slice,
            between,
            gap,
            centre_mm: volume_centre(info).to_array(),
            window,
            slab_mm: self.slab_mm,
        }
    }

    /// Slice number (1-based) and count when this plane is parallel to the stack's slices and
    /// shows one of them: lies on it (within the renderer's own tolerance,
    /// `kernel::ON_SLICE` of a slice step: a plane between two shows a blend of them, and
    /// naming the nearer one's number and thickness would cite an image that does not show
    /// what is seen), or lies in a gap of missing slices within half a step of it (where the
    /// renderer shows that slice alone).
    pub fn native_slice(&self, info: &VolumeInfo) -> Option<(usize, usize)> {
        match self.slice_place(info)? {
            SlicePlace::On(k) => Some((k + 1, info.slices.len())),
            SlicePlace::Between(_) | SlicePlace::Gap(_) => None,
        }
    }

    /// Where this plane lies among the stack's slices, when it is parallel to them: where it
    /// crosses the stack's axis through the volume's centre (so that panning a plane tilted
    /// by the f64 noise of its orientation does not move it), as the renderer's slice table
    /// places it (`kernel::to_voxel`: within a gap, half a step from a slice is that slice).
    fn slice_place(&self, info: &VolumeInfo) -> Option<SlicePlace> {
        let n = self.normal();
        if !along_slices(info, n) {
            return None;
        }
        let axis = info.axes[2];
        let middle = volume_centre(info);
        let t = (self.position_mm() - n.dot(middle)) / n.dot(axis);
        let z = (middle + axis * t - info.origin).dot(axis);
        // The slices around the plane (places ascend along the axis): found by halving, no
        // list made (this runs for every viewport every frame).
        let z_of = |k: usize| f64::from(info.slices[k].z);
        let after = info.slices.partition_point(|s| f64::from(s.z) <= z);
        let below = after.checked_sub(1);
        let above = (after < info.slices.len()).then_some(after);
        let step = info.spacing_mm[2].max(1e-3);
        // The renderer's tolerance is a fraction of the step between the two slices around
        // the plane (its slice coordinate there is the fraction of their gap).
        let local = match (below, above) {
            (Some(b), Some(a)) => (z_of(a) - z_of(b)).max(1e-3),
            _ => step,
        };
        let on = f64::from(crate::render::kernel::ON_SLICE) * local;
        for k in [below, above].into_iter().flatten() {
            if (z_of(k) - z).abs() <= on {
                return Some(SlicePlace::On(k));
            }
        }
        let (k, next) = (below?, above?);
        if info.slices[k].gap_after > 0.5 {
            let half = 0.5 * step;
            return Some(if z - z_of(k) <= half {
                SlicePlace::On(k)
            } else if z_of(next) - z <= half {
                SlicePlace::On(next)
            } else {
                SlicePlace::Gap(k)
            });
        }
        Some(SlicePlace::Between(k))
    }
}

/// Where a plane of the stack's own lies: on a slice, between two (a blend), or in a gap of
/// missing slices (no data); by 0-based slice, the one before for the last two.
#[derive(Clone, Copy)]
enum SlicePlace {
    On(usize),
    Between(usize),
    Gap(usize),
}

/// The stack's own plane: the standard plane its slices lie in, or else the oblique plane of
/// its slices, so that a tilted or oblique acquisition opens on its own slices (not on a
/// reformat near them). The oblique normal points the way of the nearest standard normal, so
/// its positions read like that plane's (axial: z, coronal: y, sagittal: x), and its screen
/// axes are that plane's, tilted into it.
/// One image pixel, mm: the finer in-plane spacing (what 1:1 shows as one screen pixel).
pub fn image_pixel_mm(info: &VolumeInfo) -> f64 {
    info.spacing_mm[0].min(info.spacing_mm[1])
}

/// The magnification of `view`: screen pixels per image pixel (1:1 is 1.0), which the corner
/// shows, comparable between cells of any size.
pub fn magnification(info: &VolumeInfo, view: &SliceView) -> f64 {
    image_pixel_mm(info) / view.pixel_mm.max(1e-9)
}

pub fn native_plane(info: &VolumeInfo) -> Plane {
    let n = info.axes[2];
    let nearest = [Plane::Axial, Plane::Coronal, Plane::Sagittal]
        .into_iter()
        .max_by(|a, b| a.normal().dot(n).abs().total_cmp(&b.normal().dot(n).abs()))
        .unwrap_or(Plane::Axial);
    // Exactly a standard plane (f64 noise of the orientation's normalization aside).
    if nearest.normal().dot(n).abs() > 1.0 - 1e-12 {
        return nearest;
    }
    let n = if nearest.normal().dot(n) < 0.0 { -n } else { n };
    Plane::Oblique(n.to_array())
}

/// Whether a plane of normal `n` is parallel to the stack's slices (within 1e-6 of the cosine:
/// 0.08 degrees), so that it can sit on one of them.
pub fn along_slices(info: &VolumeInfo, n: DVec3) -> bool {
    n.dot(info.axes[2]).abs() > 1.0 - 1e-6
}

/// Whether distances on `view` are millimetres, for a scale bar: the files give Pixel Spacing,
/// and either their positions or the view lies in the stack's own plane (frames without
/// positions are stacked 1 mm apart for display: a screen axis across the stack is not mm).
pub fn mm_on_screen(info: &VolumeInfo, view: &SliceView) -> bool {
    let g = &info.geometry;
    let across_stack = [view.right, view.down]
        .iter()
        .any(|a| DVec3::from(*a).dot(info.axes[2]).abs() > 1e-6);
    g.pixel_spacing_known && (g.trusted || !across_stack)
}

/// Centre of the volume's bounding box, patient mm.
pub fn volume_centre(info: &VolumeInfo) -> DVec3 {
    let corners = info.corners_mm();
    corners
        .iter()
        .map(|c| DVec3::from(*c))
        .fold(DVec3::ZERO, |a, b| a + b)
        / corners.len().max(1) as f64
}

/// Smallest and largest position of the volume's corners along `n`.
fn extent_along(info: &VolumeInfo, n: DVec3) -> (f64, f64) {
    info.corners_mm()
        .iter()
        .map(|c| DVec3::from(*c).dot(n))
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Pixel size that fits the whole volume in a `width` x `height` viewport with these axes.
fn fit_pixel_mm(info: &VolumeInfo, right: DVec3, down: DVec3, width: u32, height: u32) -> f64 {
    let (mut r0, mut r1, mut d0, mut d1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for c in info.corners_mm() {
        let c = DVec3::from(c);
        r0 = r0.min(c.dot(right));
        r1 = r1.max(c.dot(right));
        d0 = d0.min(c.dot(down));
        d1 = d1.max(c.dot(down));
    }
    // Half a voxel of margin on each side, so the edge voxels show whole.
    let margin = info.spacing_mm[0].max(info.spacing_mm[1]);
    ((r1 - r0 + margin) / f64::from(width.max(1)))
        .max((d1 - d0 + margin) / f64::from(height.max(1)))
        .max(1e-3)
}

/// A plane's position as the corner shows it: the patient axis nearest its normal, the side of
/// the patient it lies towards and how far, "H 12.5 mm" (LPS: +x is the patient's left, +y
/// posterior, +z head). The number alone reads wrongly across systems (LPS or RAS), so the
/// letter says which side it is. It is where the plane crosses the line along that axis
/// through `centre` (the volume's centre): for a standard plane its own distance along the
/// axis; for a plane turned more than about 2.6 degrees from every patient axis (a tilted
/// gantry's own slices, oblique MPR), said "(obl)", where it cuts the middle of the anatomy.
/// (Its distance along its own normal is no table position, and named the other side: "F" for
/// a tilted slice lying towards the head.)
pub fn position_text(normal: DVec3, position_mm: f64, centre: DVec3) -> String {
    let n = normal.normalize_or_zero();
    let axis = (0..3)
        .max_by(|a, b| n[*a].abs().total_cmp(&n[*b].abs()))
        .unwrap_or(2);
    let coordinate = if n[axis] == 0.0 {
        0.0
    } else {
        centre[axis] + (position_mm - n.dot(centre)) / n[axis]
    };
    // Rounded first, then + 0.0: never "-0.0" for a position a hair below zero.
    let rounded = (coordinate * 10.0).round() / 10.0 + 0.0;
    let letter = if rounded == 0.0 {
        ""
    } else {
        match (axis, rounded > 0.0) {
            (0, true) => "L ",
            (0, false) => "R ",
            (1, true) => "P ",
            (1, false) => "A ",
            (_, true) => "H ",
            (_, false) => "F ",
        }
    };
    let oblique = if n[axis].abs() < 0.999 { " (obl)" } else { "" };
    format!("Pos {letter}{:.1} mm{oblique}", rounded.abs())
}

/// Wheel motion turned into whole slices: what a notch, a trackpad's small movements or a
/// high-resolution wheel's fractions of a notch add up to, a slice for each whole line, the
/// rest kept for the next event. A turn the other way starts afresh, so no part of a notch
/// is lost to the motion before it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WheelSteps {
    lines: f64,
}

impl WheelSteps {
    /// Add `lines` of wheel motion (positive: away from the user); returns the whole slices
    /// to scroll now, in its direction.
    pub fn add(&mut self, lines: f64) -> f64 {
        if !lines.is_finite() {
            return 0.0;
        }
        if lines * self.lines < 0.0 {
            self.lines = 0.0;
        }
        self.lines += lines;
        // A notch reported as 0.9999999 still counts as one.
        let steps = (self.lines + self.lines.signum() * 1e-6).trunc();
        self.lines -= steps;
        steps
    }
}

#[cfg(test)]
mod tests {
    /// A notch is a slice; a trackpad's small movements and a high-resolution wheel's eighths
    /// of a notch add up to one, not a slice each; turning back starts afresh.
    #[test]
    fn wheel_motion_scrolls_a_slice_a_notch() {
        let mut w = WheelSteps::default();
        assert_eq!(w.add(1.0), 1.0);
        assert_eq!(w.add(-3.0), -3.0);
        // Eight eighths: one slice, on the eighth.
        let steps: Vec<f64> = (0..8).map(|_| w.add(0.125)).collect();
        assert_eq!(steps, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        // A trackpad's 2-point movements (2 / 40 of a line each): one slice in 20.
        let trackpad: f64 = (0..40).map(|_| w.add(2.0 / 40.0)).sum();
        assert_eq!(trackpad, 2.0);
        // Half a notch one way, then a whole one back: one slice back, not none.
        w.add(0.5);
        assert_eq!(w.add(-1.0), -1.0);
        assert_eq!(w.add(f64::NAN), 0.0);
    }

    #[test]
    fn a_position_says_which_side_of_the_patient_it_lies() {
        // LPS: +x left, +y posterior, +z head; a normal may point either way along its axis.
        let cases = [
            (DVec3::Z, 45.04, "Pos H 45.0 mm"),
            (DVec3::Z, -12.0, "Pos F 12.0 mm"),
            (DVec3::NEG_Z, 12.0, "Pos F 12.0 mm"),
            (DVec3::X, 12.0, "Pos L 12.0 mm"),
            (DVec3::NEG_X, 12.0, "Pos R 12.0 mm"),
            (DVec3::Y, -30.0, "Pos A 30.0 mm"),
            (DVec3::NEG_Y, -30.0, "Pos P 30.0 mm"),
            (DVec3::Z, -0.04, "Pos 0.0 mm"),
        ];
        for (normal, pos, said) in cases {
            assert_eq!(
                position_text(normal, pos, DVec3::ZERO),
                said,
                "{normal} {pos}"
            );
            // Wherever the volume lies, a standard plane is its own distance.
            let elsewhere = DVec3::new(-40.0, 130.0, -250.0);
            assert_eq!(
                position_text(normal, pos, elsewhere),
                said,
                "{normal} {pos}"
            );
        }
        // A 20-degree gantry tilt through a volume whose middle is 100 mm anterior and 20 mm
        // towards the head: where the tilted plane cuts the middle, H 20. (Its distance along
        // its own normal, -15.4 mm, read "F 15.4": the other side.)
        let tilted = DVec3::new(0.0, 20f64.to_radians().sin(), 20f64.to_radians().cos());
        let middle = DVec3::new(0.0, -100.0, 20.0);
        assert_eq!(
            position_text(tilted, tilted.dot(middle), middle),
            "Pos H 20.0 mm (obl)"
        );
        // Scrolled 10 mm along the tilted normal: 10.6 mm further towards the head.
        assert_eq!(
            position_text(tilted, tilted.dot(middle) + 10.0, middle),
            "Pos H 30.6 mm (obl)"
        );
        // Within 2.6 degrees of an axis, a plane is named by it, where it cuts the middle.
        let nearly = DVec3::new(0.0, 0.02, 1.0).normalize();
        assert_eq!(
            position_text(nearly, nearly.dot(middle), middle),
            "Pos H 20.0 mm"
        );
    }
    use super::*;
    use imaging::{RescalePolicy, VolumeGeometry, header::Rescale};

    fn axial_info() -> VolumeInfo {
        axial_info_at((0..50).map(|k| k as f64 * 2.0).collect())
    }

    /// An axial stack of 200x200 1 mm pixels with slices at `z` (mm).
    fn axial_info_at(z: Vec<f64>) -> VolumeInfo {
        let positions = z.iter().map(|z| [-100.0, -100.0, *z]).collect();
        let g = VolumeGeometry::from_slices(
            200,
            200,
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 1.0],
            positions,
            None,
            None,
        );
        match VolumeInfo::from_parts(&g, &RescalePolicy::Uniform(Rescale::IDENTITY), false, false) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    /// The slice a plane shows does not hang on where it is panned: a plane tilted from the
    /// stack by the noise of its orientation (1e-4 rad) and panned 100 mm is still on its
    /// slice (measured where it crosses the stack's axis through the volume's middle).
    #[test]
    fn the_slice_shown_does_not_move_with_panning() {
        let info = axial_info();
        let tilted = Plane::Oblique([0.0, 1e-4, 1.0]);
        let mut v = Viewport::new(&info, tilted, Voi::linear(40.0, 400.0));
        let middle = volume_centre(&info);
        let n = v.normal();
        // Through slice 5 (z = 8) where it crosses the axis through the middle.
        v.center_mm = [middle.x, middle.y, 8.0];
        assert_eq!(v.native_slice(&info), Some((5, 50)));
        let before = v.position_mm();
        v.center_mm = [middle.x, middle.y + 100.0, 8.0 - 100.0 * n.y / n.z];
        assert!(
            (v.position_mm() - before).abs() < 1e-9,
            "panned in its plane"
        );
        assert_eq!(v.native_slice(&info), Some((5, 50)));
    }

    /// In a gap of missing slices the corner says what the renderer shows: within half a
    /// step of a slice, that slice alone; in the middle, no slice.
    #[test]
    fn in_a_gap_the_corner_says_what_is_shown() {
        // Slices at 0, 2, 4, then 10, 12: two missing after the third.
        let info = axial_info_at(vec![0.0, 2.0, 4.0, 10.0, 12.0]);
        assert!(info.slices[2].gap_after > 0.5, "{:?}", info.slices);
        let mut v = Viewport::new(&info, Plane::Axial, Voi::linear(40.0, 400.0));
        let at = |v: &mut Viewport, z: f64| {
            v.set_position(z);
            let o = v.overlay(&info);
            (o.slice, o.between, o.gap)
        };
        assert_eq!(at(&mut v, 3.0), (None, Some((2, 5)), None), "a blend");
        assert_eq!(at(&mut v, 4.9), (Some((3, 5)), None, None), "slice 3 alone");
        assert_eq!(at(&mut v, 7.0), (None, None, Some((3, 5))), "no slice");
        assert_eq!(at(&mut v, 9.2), (Some((4, 5)), None, None), "slice 4 alone");
    }

    /// A slab is sampled a voxel step apart along its normal, an odd number of samples (one
    /// on the plane), up to 999; thicker, the overlay is told how far apart its samples are.
    #[test]
    fn a_slab_sampled_coarser_than_the_voxels_says_so() {
        use crate::render::kernel::slab_sampling;
        let info = axial_info();
        assert_eq!(info.min_spacing_mm(), 1.0);
        let at = |n: DVec3, t: f64| {
            let s = slab_sampling(&info, n, t);
            (s.samples, s.step_mm, s.along_slices, s.coarser_than_voxels)
        };
        // Along the slices (2 mm apart): a 10 mm slab is 5 slices, 8 mm the odd number
        // nearest 4, ties up.
        assert_eq!(at(DVec3::Z, 10.0), (5, 2.0, true, false));
        assert_eq!(at(-DVec3::Z, 8.0), (5, 2.0, true, false));
        assert_eq!(at(DVec3::Z, 1.0), (1, 2.0, true, false));
        // Along the rows (1 mm pixels), then too thick for 999 samples a pixel apart.
        assert_eq!(at(DVec3::X, 200.0), (201, 1.0, false, false));
        assert_eq!(at(DVec3::X, 998.0), (999, 1.0, false, false));
        assert_eq!(at(DVec3::X, 1500.0), (999, 1500.0 / 998.0, false, true));
        // Oblique: the finest spacing.
        assert_eq!(at(DVec3::new(1.0, 0.0, 1.0), 3.0), (3, 1.0, false, false));
    }

    /// A scale bar only where screen distances are mm: not without Pixel Spacing, and on
    /// frames without positions only in their own plane.
    #[test]
    fn millimetres_on_screen_need_spacing_and_for_reformats_positions() {
        let mut info = axial_info();
        let axial = SliceView::fit(&info, Plane::Axial, None, 64, 64).unwrap();
        let coronal = SliceView::fit(&info, Plane::Coronal, None, 64, 64).unwrap();
        assert!(mm_on_screen(&info, &axial) && mm_on_screen(&info, &coronal));
        info.geometry.trusted = false;
        assert!(mm_on_screen(&info, &axial));
        assert!(!mm_on_screen(&info, &coronal));
        info.geometry.pixel_spacing_known = false;
        assert!(!mm_on_screen(&info, &axial));
    }

    #[test]
    fn markers_follow_rotation_and_flips() {
        let info = axial_info();
        let mut v = Viewport::new(&info, Plane::Axial, Voi::linear(40.0, 400.0));
        let m = |v: &Viewport| v.overlay(&info).markers.unwrap_or_default();
        assert_eq!(m(&v), ["R", "L", "A", "P"].map(String::from));
        v.rotate_clockwise();
        // Anterior (top) turned to the right; patient right now at the top.
        assert_eq!(m(&v), ["P", "A", "R", "L"].map(String::from));
        v.rotate_clockwise();
        assert_eq!(m(&v), ["L", "R", "P", "A"].map(String::from));
        v.reset(&info);
        v.flip_horizontal = true;
        assert_eq!(m(&v), ["L", "R", "A", "P"].map(String::from));
        v.flip_vertical = true;
        assert_eq!(m(&v), ["L", "R", "P", "A"].map(String::from));
        // Flip, then rotate: the image still turns clockwise on screen (what was at the top,
        // A, goes to the right).
        v.reset(&info);
        v.flip_horizontal = true;
        assert_eq!(m(&v), ["L", "R", "A", "P"].map(String::from));
        v.rotate_clockwise();
        assert_eq!(m(&v), ["P", "A", "L", "R"].map(String::from));
        // Rotate, flip, rotate: two clockwise turns and a mirror.
        v.reset(&info);
        v.rotate_clockwise();
        v.flip_horizontal = true;
        assert_eq!(m(&v), ["A", "P", "R", "L"].map(String::from));
        v.rotate_clockwise();
        assert_eq!(m(&v), ["L", "R", "A", "P"].map(String::from));
    }

    #[test]
    fn untrusted_geometry_has_no_markers() {
        let g = VolumeGeometry::untrusted(10, 10, 3, None);
        let info =
            VolumeInfo::from_parts(&g, &RescalePolicy::Uniform(Rescale::IDENTITY), false, false);
        let Ok(info) = info else { panic!("info") };
        let v = Viewport::new(&info, Plane::Axial, Voi::linear(0.0, 100.0));
        assert_eq!(v.overlay(&info).markers, None);
    }

    #[test]
    fn scrolling_moves_one_slice_and_stops_at_the_ends() {
        let info = axial_info();
        let mut v = Viewport::new(&info, Plane::Axial, Voi::linear(40.0, 400.0));
        assert_eq!(v.scroll_step_mm(&info), 2.0);
        v.scroll_to_end(&info, false);
        assert_eq!(v.position_mm(), 0.0);
        assert_eq!(v.native_slice(&info), Some((1, 50)));
        v.scroll(&info, 3.0);
        assert_eq!(v.position_mm(), 6.0);
        assert_eq!(v.native_slice(&info), Some((4, 50)));
        v.scroll_to_end(&info, true);
        assert_eq!(v.native_slice(&info), Some((50, 50)));
        // Put between two slices (a crosshair dragged in another view): no slice number, a
        // blend of slices 2 and 3 (z 2 and 4) said as such; a hair off a slice is on it.
        v.set_position(3.0);
        assert_eq!(v.native_slice(&info), None);
        assert_eq!(v.overlay(&info).between, Some((2, 50)));
        v.set_position(3.9);
        assert_eq!(v.native_slice(&info), None);
        v.set_position(4.0 + 1e-4);
        assert_eq!(v.native_slice(&info), Some((3, 50)));
        assert_eq!(v.overlay(&info).between, None);
        // Coronal planes step by the row spacing and have no native slice number.
        let mut c = Viewport::new(&info, Plane::Coronal, Voi::linear(40.0, 400.0));
        assert_eq!(c.scroll_step_mm(&info), 1.0);
        c.scroll(&info, 1.0);
        assert_eq!(c.native_slice(&info), None);
    }

    fn info_of(orientation: [f64; 6], positions: Vec<[f64; 3]>) -> VolumeInfo {
        let g =
            VolumeGeometry::from_slices(200, 200, orientation, [1.0, 1.0], positions, None, None);
        match VolumeInfo::from_parts(&g, &RescalePolicy::Uniform(Rescale::IDENTITY), false, false) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    /// Linked scrolling from an axial series to one planned 2.5 degrees off axial (same frame
    /// of reference): the other series goes to the slice that the axial plane crosses at its
    /// image centre, 100 mm in front of the origin. Taking the axial plane's distance from
    /// the origin as its own position (as before) put it slices away; a plane beyond the
    /// stack says so.
    #[test]
    fn a_linked_plane_is_followed_through_the_image_centre() {
        let t = 2.5f64.to_radians();
        let m = DVec3::new(0.0, t.sin(), t.cos());
        let ipp = |k: usize| DVec3::new(-100.0, 0.0, -60.0) + m * (3.0 * k as f64);
        let info = info_of(
            [1.0, 0.0, 0.0, 0.0, t.cos(), -t.sin()],
            (0..40).map(|k| ipp(k).to_array()).collect(),
        );
        let mut v = Viewport::new(&info, native_plane(&info), Voi::linear(40.0, 400.0));
        let centre = DVec3::from(v.center_mm);
        assert!((centre.y - 100.0).abs() < 5.0, "{centre}");
        let axial = DVec3::Z;
        let z = 0.0; // the source's plane: z = 0
        // Independently: where each slice's plane meets the line through the centre along
        // the stack's normal, and the slice whose meeting point is nearest z = 0.
        let meet = |k: usize| centre + m * (ipp(k) - centre).dot(m);
        let expected = (0..40)
            .min_by(|&a, &b| (meet(a).z - z).abs().total_cmp(&(meet(b).z - z).abs()))
            .unwrap();
        let by_number = (0..40)
            .min_by(|&a, &b| {
                (ipp(a).dot(m) - z)
                    .abs()
                    .total_cmp(&(ipp(b).dot(m) - z).abs())
            })
            .unwrap();
        assert!(
            by_number.abs_diff(expected) >= 1,
            "the case must tell the two apart"
        );
        assert!(v.follow_plane(&info, axial, z));
        assert_eq!(v.native_slice(&info), Some((expected + 1, 40)));
        // The plane is then exactly on that slice.
        assert!((v.position_mm() - ipp(expected).dot(m)).abs() < 1e-6);
        // Far beyond the stack: the end slice, and said.
        assert!(!v.follow_plane(&info, axial, 900.0));
        assert_eq!(v.native_slice(&info), Some((40, 40)));
    }

    /// A gantry-tilted CT (15 degrees: Image Orientation 1\0\0\0\cos\-sin, the table moving
    /// 2 mm along z) opens on its own slices, not on an axial reformat: the middle image, its
    /// number, and one slice a step at the slices' own positions (each Image Position along
    /// the image plane's normal, row x column, PS3.3 C.7.6.2.1.1).
    #[test]
    fn a_tilted_stack_opens_and_scrolls_on_its_own_slices() {
        let t = 15f64.to_radians();
        let ipp = |k: usize| DVec3::new(-100.0, -100.0, k as f64 * 2.0);
        let info = info_of(
            [1.0, 0.0, 0.0, 0.0, t.cos(), -t.sin()],
            (0..40).map(|k| ipp(k).to_array()).collect(),
        );
        // Row x column = (1, 0, 0) x (0, cos, -sin), on the head side like axial's +z.
        let normal = DVec3::new(0.0, t.sin(), t.cos());
        let plane = native_plane(&info);
        let Plane::Oblique(n) = plane else {
            panic!("{plane:?}")
        };
        assert!(
            (DVec3::from(n).normalize() - normal).length() < 1e-9,
            "{n:?}"
        );
        let mut v = Viewport::new(&info, plane, Voi::linear(40.0, 400.0));
        let at = |v: &Viewport, k: usize| {
            assert_eq!(v.native_slice(&info), Some((k + 1, 40)));
            assert!((v.position_mm() - ipp(k).dot(normal)).abs() < 1e-4);
        };
        at(&v, 20);
        v.scroll(&info, 1.0);
        at(&v, 21);
        v.scroll(&info, -3.0);
        at(&v, 18);
        v.scroll_to_end(&info, true);
        at(&v, 39);
        // Left and right as on an axial image; the top leans to the head with the gantry.
        let markers = v.overlay(&info).markers.unwrap_or_default();
        assert_eq!(markers[0..2], ["R", "L"].map(String::from));
        assert_eq!(markers[2..4], ["A", "P"].map(String::from));
        // A stack exactly in a standard plane keeps that plane.
        assert_eq!(native_plane(&axial_info()), Plane::Axial);
        let sagittal = info_of(
            [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
            (0..5).map(|k| [k as f64, 0.0, 0.0]).collect(),
        );
        assert_eq!(native_plane(&sagittal), Plane::Sagittal);
    }

    /// An axial plane on a stack a thousandth of a degree off axial (orientation rounding)
    /// scrolls slice by slice both ways: each step lands where the plane's centre crosses the
    /// next slice, so the step after it moves on (it used to stay on the slice in one
    /// direction).
    #[test]
    fn a_plane_a_hair_off_the_stack_scrolls_both_ways() {
        for sign in [1.0, -1.0] {
            let t = f64::to_radians(0.001) * sign;
            let info = info_of(
                [1.0, 0.0, 0.0, 0.0, t.cos(), -t.sin()],
                (0..40).map(|k| [-250.0, -250.0, k as f64 * 2.0]).collect(),
            );
            let mut v = Viewport::new(&info, Plane::Axial, Voi::linear(40.0, 400.0));
            let start = v.native_slice(&info).unwrap().0;
            let mut seen = Vec::new();
            for step in [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0] {
                v.scroll(&info, step);
                seen.push(v.native_slice(&info).unwrap().0);
            }
            let expected: Vec<usize> = [-1, -2, -3, -2, -1, 0, 1]
                .iter()
                .map(|d: &i64| (start as i64 + d) as usize)
                .collect();
            assert_eq!(seen, expected, "tilt {sign}");
        }
    }

    /// Slices at 0, 2.5, ... 10, then 15, 20, 25 mm: scrolling goes from slice to slice at
    /// their own positions, never to a plane between two of them, and from a plane between
    /// two slices one step goes to the next slice on that side.
    #[test]
    fn an_uneven_stack_scrolls_from_slice_to_slice() {
        let zs = [0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0];
        let info = info_of(
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            zs.iter().map(|z| [-100.0, -100.0, *z]).collect(),
        );
        let mut v = Viewport::new(&info, native_plane(&info), Voi::linear(40.0, 400.0));
        v.scroll_to_end(&info, false);
        assert_eq!(v.position_mm(), 0.0);
        for (k, z) in zs.iter().enumerate().skip(1) {
            v.scroll(&info, 1.0);
            assert!(
                (v.position_mm() - z).abs() < 1e-4,
                "{k}: {}",
                v.position_mm()
            );
            assert_eq!(v.native_slice(&info), Some((k + 1, 8)));
        }
        v.scroll(&info, 1.0);
        assert!((v.position_mm() - 25.0).abs() < 1e-4);
        v.scroll(&info, -2.0);
        assert!((v.position_mm() - 15.0).abs() < 1e-4);
        v.set_position(12.0);
        v.scroll(&info, 1.0);
        assert!((v.position_mm() - 15.0).abs() < 1e-4);
        v.set_position(12.0);
        v.scroll(&info, -1.0);
        assert!((v.position_mm() - 10.0).abs() < 1e-4);
        v.scroll(&info, -10.0);
        assert!(v.position_mm().abs() < 1e-4);
    }

    #[test]
    fn window_drag_widens_and_raises() {
        let info = axial_info();
        let mut v = Viewport::new(&info, Plane::Axial, Voi::linear(40.0, 400.0));
        v.drag_window(500.0, -250.0);
        assert_eq!(v.overlay(&info).window, Some((800.0, -160.0)));
        v.drag_window(-10_000.0, 0.0);
        assert_eq!(v.overlay(&info).window.map(|w| w.0), Some(1.0));
        // Data spanning less than 1 (a map scaled to 0..0.5) opens in LINEAR_EXACT over its
        // range (a LINEAR window is 1 wide at least: a threshold there) and narrows below 1.
        let mut q = Viewport::new(&info, Plane::Axial, Voi::spanning(0.0, 0.5));
        assert_eq!(q.overlay(&info).window, Some((0.5, 0.25)));
        assert!(matches!(
            q.display.voi,
            Voi::Window {
                function: crate::render::voi::VoiFunction::LinearExact,
                ..
            }
        ));
        q.drag_window(-250.0 * 2f64.ln(), 0.0);
        let w = q.overlay(&info).window.unwrap().0;
        assert!((w - 0.25).abs() < 1e-12, "{w}");
        assert!(q.display.validate().is_ok());
        // From the narrowest, a few drags reach hundreds.
        q.drag_window(-100_000.0, 0.0);
        assert_eq!(q.overlay(&info).window.unwrap().0, 1e-3);
        q.drag_window(3000.0, 0.0);
        assert!(q.overlay(&info).window.unwrap().0 > 100.0);
    }
}
