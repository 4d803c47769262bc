//! What a frame shows: a plane in patient space, its field of view, slab and interpolation.
//!
//! Directions are in DICOM patient coordinates (LPS: +x to the patient's left, +y posterior,
//! +z head). Standard planes follow the radiological convention: axial seen from the feet
//! (patient right on screen left), coronal seen from the front, sagittal seen from the patient's
//! left (anterior on screen left).

use glam::DVec3;
use serde::Serialize;

use super::RenderError;
use super::kernel::VolumeInfo;

/// A standard or oblique plane.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Plane {
    Axial,
    Coronal,
    Sagittal,
    /// An oblique plane by its normal (LPS, need not be unit length); its screen axes are the
    /// nearest standard plane's, tilted into it.
    Oblique([f64; 3]),
    /// A plane with its own screen axes: a plane turned in oblique MPR keeps its image's
    /// orientation through the turn (the nearest standard plane would change at 45 degrees
    /// and mirror the image). Unit and orthogonal up to rounding; `normal` is the direction
    /// positions are measured along.
    Turned {
        normal: [f64; 3],
        right: [f64; 3],
        down: [f64; 3],
    },
}

impl Plane {
    /// Parse `axial`, `coronal`, `sagittal` or `oblique:NX,NY,NZ`.
    pub fn parse(s: &str) -> Result<Plane, RenderError> {
        match s.to_ascii_lowercase().as_str() {
            "axial" | "ax" | "transverse" => Ok(Plane::Axial),
            "coronal" | "cor" => Ok(Plane::Coronal),
            "sagittal" | "sag" => Ok(Plane::Sagittal),
            other => {
                let Some(rest) = other.strip_prefix("oblique:") else {
                    return Err(RenderError::View(format!(
                        "unknown plane {s:?} (axial, coronal, sagittal or oblique:NX,NY,NZ)"
                    )));
                };
                let parts: Vec<f64> = rest
                    .split(',')
                    .map(|p| p.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| RenderError::View(format!("oblique normal {rest:?}: {e}")))?;
                match parts.as_slice() {
                    [x, y, z] if DVec3::new(*x, *y, *z).length() > 1e-9 => {
                        Ok(Plane::Oblique([*x, *y, *z]))
                    }
                    _ => Err(RenderError::View(format!(
                        "oblique normal {rest:?}: three numbers, not all zero"
                    ))),
                }
            }
        }
    }

    /// The plane's unit normal; standard planes use +z, +y, +x, so that a position along the
    /// normal is the familiar patient coordinate (axial: z, coronal: y, sagittal: x).
    pub fn normal(&self) -> DVec3 {
        match self {
            Plane::Axial => DVec3::Z,
            Plane::Coronal => DVec3::Y,
            Plane::Sagittal => DVec3::X,
            Plane::Oblique(n) => DVec3::from(*n).normalize(),
            Plane::Turned { normal, .. } => DVec3::from(*normal).normalize(),
        }
    }

    /// This plane turned by `turn` (about the origin): normal and screen axes together.
    pub fn turned(&self, turn: glam::DQuat) -> Plane {
        let (right, down) = self.screen_axes();
        Plane::Turned {
            normal: (turn * self.normal()).to_array(),
            right: (turn * right).to_array(),
            down: (turn * down).to_array(),
        }
    }

    /// Screen right and screen down directions (unit, orthogonal, in the plane).
    pub fn screen_axes(&self) -> (DVec3, DVec3) {
        match self {
            Plane::Axial => (DVec3::X, DVec3::Y),
            Plane::Coronal => (DVec3::X, DVec3::NEG_Z),
            Plane::Sagittal => (DVec3::Y, DVec3::NEG_Z),
            Plane::Turned { right, down, .. } => {
                // Re-orthonormalized in the plane (turns add rounding), down on its own side.
                let n = self.normal();
                let r = DVec3::from(*right);
                let right = (r - n * r.dot(n)).normalize_or(n.any_orthonormal_vector());
                let mut d = n.cross(right);
                if d.dot(DVec3::from(*down)) < 0.0 {
                    d = -d;
                }
                (right, d)
            }
            Plane::Oblique(_) => {
                // Take the screen axes of the standard plane nearest to this one and tilt them
                // into the oblique plane, so a slightly oblique axial still looks axial.
                let n = self.normal();
                let nearest = [Plane::Axial, Plane::Coronal, Plane::Sagittal]
                    .into_iter()
                    .max_by(|a, b| {
                        let da = a.normal().dot(n).abs();
                        let db = b.normal().dot(n).abs();
                        da.total_cmp(&db)
                    })
                    .unwrap_or(Plane::Axial);
                let (r0, d0) = nearest.screen_axes();
                let mut right = r0 - n * r0.dot(n);
                if right.length() < 1e-6 {
                    right = d0.cross(n);
                }
                let right = right.normalize();
                let mut down = n.cross(right).normalize();
                if down.dot(d0) < 0.0 {
                    down = -down;
                }
                (right, down)
            }
        }
    }
}

/// How voxels between sample points are interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Interpolation {
    Nearest,
    Trilinear,
}

/// How the samples across a thick slab combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SlabMode {
    /// Maximum intensity projection.
    Mip,
    /// Minimum intensity projection.
    MinIp,
    /// Mean of the samples.
    Average,
}

impl SlabMode {
    pub fn parse(s: &str) -> Result<SlabMode, RenderError> {
        match s.to_ascii_lowercase().as_str() {
            "mip" | "max" => Ok(SlabMode::Mip),
            "minip" | "min" => Ok(SlabMode::MinIp),
            "avg" | "average" | "mean" => Ok(SlabMode::Average),
            _ => Err(RenderError::View(format!(
                "unknown slab mode {s:?} (mip, minip or avg)"
            ))),
        }
    }
}

/// One frame's plane and sampling: pixel (x, y) of a `width` x `height` image shows the patient
/// point `center + (x + 0.5 - width/2) * pixel_mm * right + (y + 0.5 - height/2) * pixel_mm * down`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceView {
    /// Patient point at the centre of the image (LPS mm).
    pub center_mm: [f64; 3],
    /// Unit patient direction of screen +x.
    pub right: [f64; 3],
    /// Unit patient direction of screen +y; orthogonal to `right`.
    pub down: [f64; 3],
    /// Size of one output pixel, mm.
    pub pixel_mm: f64,
    pub width: u32,
    pub height: u32,
    /// Slab thickness, mm; 0 for a thin plane.
    pub slab_mm: f64,
    pub slab_mode: SlabMode,
    pub interpolation: Interpolation,
}

impl SliceView {
    /// A view of `plane` through the centre of the volume (or at `position_mm` along the plane
    /// normal), sized so the whole volume fits a `width` x `height` image.
    pub fn fit(
        info: &VolumeInfo,
        plane: Plane,
        position_mm: Option<f64>,
        width: u32,
        height: u32,
    ) -> Result<SliceView, RenderError> {
        if width == 0 || height == 0 || width > 16384 || height > 16384 {
            return Err(RenderError::View(format!(
                "image size {width}x{height} (1 to 16384 pixels a side)"
            )));
        }
        let n = plane.normal();
        let (right, down) = plane.screen_axes();
        let corners = info.corners_mm();
        let (mut min_r, mut max_r, mut min_d, mut max_d) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let mut centre = DVec3::ZERO;
        for c in &corners {
            let c = DVec3::from(*c);
            centre += c / corners.len() as f64;
            min_r = min_r.min(c.dot(right));
            max_r = max_r.max(c.dot(right));
            min_d = min_d.min(c.dot(down));
            max_d = max_d.max(c.dot(down));
        }
        let pixel_mm = ((max_r - min_r) / f64::from(width))
            .max((max_d - min_d) / f64::from(height))
            .max(1e-3);
        // Centre of the projected extent in the plane, then along the normal.
        let along = position_mm.unwrap_or_else(|| centre.dot(n));
        let centre = right * (0.5 * (min_r + max_r)) + down * (0.5 * (min_d + max_d)) + n * along;
        Ok(SliceView {
            center_mm: centre.to_array(),
            right: right.to_array(),
            down: down.to_array(),
            pixel_mm,
            width,
            height,
            slab_mm: 0.0,
            slab_mode: SlabMode::Average,
            interpolation: Interpolation::Trilinear,
        })
    }

    /// Unit normal of the plane (`right x down`).
    pub fn normal(&self) -> DVec3 {
        DVec3::from(self.right)
            .cross(DVec3::from(self.down))
            .normalize_or_zero()
    }

    /// Patient point at the centre of output pixel (x, y) (slab centre).
    pub fn patient_at_pixel(&self, x: f64, y: f64) -> DVec3 {
        DVec3::from(self.center_mm)
            + DVec3::from(self.right) * ((x + 0.5 - f64::from(self.width) / 2.0) * self.pixel_mm)
            + DVec3::from(self.down) * ((y + 0.5 - f64::from(self.height) / 2.0) * self.pixel_mm)
    }

    /// Output pixel coordinates (continuous, pixel centres at .5) of a patient point projected
    /// on the plane.
    pub fn pixel_at_patient(&self, p: DVec3) -> (f64, f64) {
        let d = p - DVec3::from(self.center_mm);
        (
            d.dot(DVec3::from(self.right)) / self.pixel_mm + f64::from(self.width) / 2.0,
            d.dot(DVec3::from(self.down)) / self.pixel_mm + f64::from(self.height) / 2.0,
        )
    }

    pub fn validate(&self) -> Result<(), RenderError> {
        let r = DVec3::from(self.right);
        let d = DVec3::from(self.down);
        let ok = (r.length() - 1.0).abs() < 1e-6
            && (d.length() - 1.0).abs() < 1e-6
            && r.dot(d).abs() < 1e-6
            && self.pixel_mm.is_finite()
            && self.pixel_mm > 0.0
            && self.slab_mm.is_finite()
            && self.slab_mm >= 0.0
            && DVec3::from(self.center_mm).is_finite()
            && self.width > 0
            && self.height > 0;
        if ok {
            Ok(())
        } else {
            Err(RenderError::View(format!(
                "right and down must be orthogonal unit vectors, pixel size and slab finite and positive: {self:?}"
            )))
        }
    }
}

/// The longest round scale-bar length (1, 2 or 5 x 10^n mm) that is at most `max_mm`.
pub fn scale_bar_mm(max_mm: f64) -> f64 {
    let mut mm = 0.1;
    for exp in -1..5 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(exp);
            if v <= max_mm {
                mm = v;
            }
        }
    }
    mm
}

/// The patient-direction letters of a screen direction: the components over a third of the
/// length, largest first (e.g. "L", "LA", "HRA"). LPS: +x L, -x R, +y P, -y A, +z H, -z F.
pub fn direction_letters(d: DVec3) -> String {
    let mut parts: Vec<(f64, char)> = vec![
        (d.x, if d.x >= 0.0 { 'L' } else { 'R' }),
        (d.y, if d.y >= 0.0 { 'P' } else { 'A' }),
        (d.z, if d.z >= 0.0 { 'H' } else { 'F' }),
    ];
    parts.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
    let len = d.length().max(1e-12);
    parts
        .into_iter()
        .filter(|(c, _)| c.abs() / len > 1.0 / 3.0)
        .map(|(_, l)| l)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coronal or sagittal plane turned about the z axis keeps its image's orientation: its
    /// screen axes are the standard ones turned, and from 44 to 46 degrees its screen right
    /// turns by 2 degrees. A sagittal plane given by its normal alone takes the nearest
    /// standard plane's axes, which mirror its image there.
    #[test]
    fn a_turned_plane_keeps_its_orientation_through_45_degrees() {
        let turn = |deg: f64| glam::DQuat::from_axis_angle(DVec3::Z, f64::to_radians(deg));
        for plane in [Plane::Coronal, Plane::Sagittal] {
            let (r0, d0) = plane.screen_axes();
            for deg in [10.0, 44.0, 46.0, 90.0, 135.0, 270.0] {
                let t = plane.turned(turn(deg));
                let (r, d) = t.screen_axes();
                assert!((r - turn(deg) * r0).length() < 1e-12, "{plane:?} {deg}");
                assert!((d - turn(deg) * d0).length() < 1e-12, "{plane:?} {deg}");
                assert!((t.normal() - turn(deg) * plane.normal()).length() < 1e-12);
            }
            let right = |deg: f64| plane.turned(turn(deg)).screen_axes().0;
            assert!(right(44.0).angle_between(right(46.0)).to_degrees() < 2.0 + 1e-9);
        }
        // The sagittal plane by its normal alone: coronal's axes past 45 degrees, mirrored.
        let oblique_right = |deg: f64| {
            Plane::Oblique((turn(deg) * DVec3::X).to_array())
                .screen_axes()
                .0
        };
        assert!(
            oblique_right(44.0)
                .angle_between(oblique_right(46.0))
                .to_degrees()
                > 90.0
        );
        // Turning twice is one turn of the sum.
        let twice = Plane::Coronal.turned(turn(20.0)).turned(turn(25.0));
        let once = Plane::Coronal.turned(turn(45.0));
        let (a, b) = (twice.screen_axes(), once.screen_axes());
        assert!((a.0 - b.0).length() < 1e-12 && (a.1 - b.1).length() < 1e-12);
    }

    #[test]
    fn standard_planes_follow_the_radiological_convention() {
        // Axial: patient left on screen right, posterior at the bottom.
        let (r, d) = Plane::Axial.screen_axes();
        assert_eq!(direction_letters(r), "L");
        assert_eq!(direction_letters(-r), "R");
        assert_eq!(direction_letters(d), "P");
        // Coronal: head at the top, patient left on screen right.
        let (r, d) = Plane::Coronal.screen_axes();
        assert_eq!(direction_letters(r), "L");
        assert_eq!(direction_letters(-d), "H");
        // Sagittal: anterior on screen left, head at the top.
        let (r, d) = Plane::Sagittal.screen_axes();
        assert_eq!(direction_letters(-r), "A");
        assert_eq!(direction_letters(-d), "H");
    }

    #[test]
    fn oblique_axes_are_orthonormal_and_in_plane() {
        for n in [
            [1.0, 0.2, 3.0],
            [0.0, 1.0, 1.0],
            [1.0, 1.0, 1.0],
            [0.0, 0.0, -1.0],
        ] {
            let p = Plane::Oblique(n);
            let (r, d) = p.screen_axes();
            let n = p.normal();
            assert!((r.length() - 1.0).abs() < 1e-12 && (d.length() - 1.0).abs() < 1e-12);
            assert!(r.dot(d).abs() < 1e-12 && r.dot(n).abs() < 1e-12 && d.dot(n).abs() < 1e-12);
        }
        assert!(Plane::parse("oblique:0,0,0").is_err());
        assert_eq!(
            Plane::parse("oblique:0,1,1").ok(),
            Some(Plane::Oblique([0.0, 1.0, 1.0]))
        );
    }

    #[test]
    fn scale_bars_are_round_and_fit() {
        assert_eq!(scale_bar_mm(86.0), 50.0);
        assert_eq!(scale_bar_mm(199.9), 100.0);
        assert_eq!(scale_bar_mm(200.0), 200.0);
        assert_eq!(scale_bar_mm(3.0), 2.0);
    }

    #[test]
    fn oblique_labels_name_both_directions() {
        assert_eq!(direction_letters(DVec3::new(1.0, -0.8, 0.0)), "LA");
        assert_eq!(direction_letters(DVec3::new(0.1, 0.0, -1.0)), "F");
    }
}
