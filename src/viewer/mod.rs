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
    /// Slice number (1-based) and count when the plane is the stack's own; else `None`.
    pub slice: Option<(usize, usize)>,
    /// Window width and level, when a window (not a LUT) is applied.
    pub window: Option<(f64, f64)>,
    pub zoom: f64,
    pub slab_mm: f64,
}

impl Viewport {
    /// A viewport showing `plane` through the centre of the volume, fitted, with `voi`. When
    /// the plane is the stack's own, it sits on the middle slice (image K/2 + 1 of K).
    pub fn new(info: &VolumeInfo, plane: Plane, voi: Voi) -> Viewport {
        let mut centre = volume_centre(info);
        let n = plane.normal();
        if n.dot(info.axes[2]).abs() > 1.0 - 1e-6
            && let Some(mid) = info.geometry.slice_positions_mm.get(info.dims[2] / 2)
        {
            centre += n * (DVec3::from(*mid) - centre).dot(n);
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
    /// volume.
    pub fn scroll(&mut self, info: &VolumeInfo, steps: f64) {
        let along = self.position_mm() + steps * self.scroll_step_mm(info);
        self.set_position_within(info, along);
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
        if let Voi::Window { center, width, .. } = &mut self.display.voi {
            let scale = (*width / 500.0).max(0.5);
            *width = (*width + dx * scale).max(1.0);
            *center += dy * scale;
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

    /// Reset zoom, pan, rotation and flips (not the window or the plane position).
    pub fn reset(&mut self, info: &VolumeInfo) {
        let along = self.position_mm();
        self.center_mm = volume_centre(info).to_array();
        self.set_position(along);
        self.zoom = 1.0;
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
        let slice = self.native_slice(info);
        let window = match &self.display.voi {
            Voi::Window { center, width, .. } => Some((*width, *center)),
            Voi::Lut(_) => None,
        };
        Overlay {
            markers,
            position_mm: self.position_mm(),
            slice,
            window,
            zoom: self.zoom,
            slab_mm: self.slab_mm,
        }
    }

    /// Slice number (1-based) and count when this plane is parallel to the stack's slices and
    /// sits on one of them.
    pub fn native_slice(&self, info: &VolumeInfo) -> Option<(usize, usize)> {
        let n = self.normal();
        if n.dot(info.axes[2]).abs() < 1.0 - 1e-6 {
            return None;
        }
        let c = DVec3::from(self.center_mm);
        let z = (c - info.origin).dot(info.axes[2]);
        let (k, entry) = info.slices.iter().enumerate().min_by(|a, b| {
            (f64::from(a.1.z) - z)
                .abs()
                .total_cmp(&(f64::from(b.1.z) - z).abs())
        })?;
        ((f64::from(entry.z) - z).abs() < 0.5 * info.spacing_mm[2].max(1e-3))
            .then_some((k + 1, info.slices.len()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use imaging::{RescalePolicy, VolumeGeometry, header::Rescale};

    fn axial_info() -> VolumeInfo {
        let positions = (0..50).map(|k| [-100.0, -100.0, k as f64 * 2.0]).collect();
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
        // Coronal planes step by the row spacing and have no native slice number.
        let mut c = Viewport::new(&info, Plane::Coronal, Voi::linear(40.0, 400.0));
        assert_eq!(c.scroll_step_mm(&info), 1.0);
        c.scroll(&info, 1.0);
        assert_eq!(c.native_slice(&info), None);
    }

    #[test]
    fn window_drag_widens_and_raises() {
        let info = axial_info();
        let mut v = Viewport::new(&info, Plane::Axial, Voi::linear(40.0, 400.0));
        v.drag_window(500.0, -250.0);
        assert_eq!(v.overlay(&info).window, Some((800.0, -160.0)));
        v.drag_window(-10_000.0, 0.0);
        assert_eq!(v.overlay(&info).window.map(|w| w.0), Some(1.0));
    }
}
