//! Where every voxel is: [`VolumeGeometry`] and the Image Plane math of PS3.3 C.7.6.2.
//!
//! DICOM places each slice by Image Position (Patient) (the centre of its first pixel, LPS mm)
//! and Image Orientation (Patient) (row and column direction cosines). For voxel (i column,
//! j row) of a slice at position `S` (PS3.3 C.7.6.2.1.1, Equation C.7.6.2.1-1):
//!
//! ```text
//! P = S + i * Δi * X + j * Δj * Y
//! ```
//!
//! where `X` is the row direction (first triplet), `Y` the column direction (second triplet),
//! `Δi` the column spacing (Pixel Spacing value 2) and `Δj` the row spacing (value 1).
//!
//! A stack's third axis is the mean step between slice positions, *not* the slice normal:
//! for a gantry-tilted CT the step leans away from the normal and the volume is sheared, and
//! that shear is kept. When steps differ (uneven spacing, missing slices) the 4x4
//! `patient_from_voxel` is a best fit and [`VolumeGeometry::patient_from_voxel_exact`] uses the
//! real position of every slice; both are reported in [`SliceIrregularity`].
//!
//! Owns: geometry math. Must not read files or pixels.

use glam::{DMat4, DVec3, DVec4};
use serde::Serialize;

/// Spacing differences below this are treated as rounding in the scanner's output (mm).
pub const SPACING_TOLERANCE_MM: f64 = 0.01;

/// How far a stack departs from a regular, orthogonal grid.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SliceIrregularity {
    /// Angle between the mean slice step and the slice normal, degrees: gantry tilt or any
    /// other shear. 0 for an orthogonal stack.
    pub shear_deg: f64,
    /// Smallest and largest distance between neighbouring slice planes, along the normal, mm.
    pub min_step_mm: f64,
    pub max_step_mm: f64,
    /// True when neighbouring steps differ by more than [`SPACING_TOLERANCE_MM`].
    pub uneven_spacing: bool,
    /// Gaps that look like missing slices: (index of the slice before the gap, estimated
    /// number of slices missing).
    pub missing_slices: Vec<(usize, usize)>,
    /// True when some slice lies off the line through the others (in-plane positions that do
    /// not follow a straight line): the exact per-slice transform must be used.
    pub nonlinear_positions: bool,
}

impl SliceIrregularity {
    /// What sets the stack apart from an even, orthogonal one, in words, a line each:
    /// "gantry tilt 18.5°", "uneven slice spacing 1.08 to 7.00 mm", "about 2 slices missing
    /// (after slice 14)". The CLI's scan and the workstation's browser say it.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.shear_deg > 1e-3 {
            out.push(format!(
                "gantry tilt {:.1}°: reformats follow the tilted slices",
                self.shear_deg
            ));
        }
        if self.uneven_spacing {
            out.push(format!(
                "uneven slice spacing {:.2} to {:.2} mm: each slice is placed where it is",
                self.min_step_mm, self.max_step_mm
            ));
        }
        if let Some(missing) = self.missing_description() {
            out.push(missing);
        }
        out
    }

    /// Slices that look missing, in words, with where ("about 2 slices missing (after
    /// slices 14, 30): reformats show no data there"); `None` when none are.
    pub fn missing_description(&self) -> Option<String> {
        if self.missing_slices.is_empty() {
            return None;
        }
        let count: usize = self.missing_slices.iter().map(|m| m.1).sum();
        let after: Vec<String> = self
            .missing_slices
            .iter()
            .map(|(k, _)| (k + 1).to_string())
            .collect();
        Some(format!(
            "about {count} slice{} missing (after slice{} {}): reformats show no data there",
            if count == 1 { "" } else { "s" },
            if after.len() == 1 { "" } else { "s" },
            after.join(", ")
        ))
    }

    /// True when one affine (shear included: gantry tilt) places every slice exactly: evenly
    /// spaced slices on one straight line, none missing. A NIfTI sform can then hold it.
    pub fn affine_is_exact(&self) -> bool {
        !self.uneven_spacing && self.missing_slices.is_empty() && !self.nonlinear_positions
    }

    /// True when the 4x4 affine alone places every voxel exactly.
    pub fn is_regular(&self) -> bool {
        self.shear_deg.abs() < 1e-3
            && !self.uneven_spacing
            && self.missing_slices.is_empty()
            && !self.nonlinear_positions
    }
}

/// The geometry of one stack: voxel (i, j, k) to patient LPS millimetres.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeGeometry {
    /// [columns (i), rows (j), slices (k)].
    pub dims: [usize; 3],
    /// [along i (column spacing), along j (row spacing), between slice planes along the
    /// normal (mean)], mm.
    pub spacing_mm: [f64; 3],
    /// Row direction cosine `X`, Image Orientation (Patient) (0020,0037) values 1-3.
    pub row_direction: [f64; 3],
    /// Column direction cosine `Y`, Image Orientation (Patient) (0020,0037) values 4-6.
    pub column_direction: [f64; 3],
    /// `X × Y`: the direction slices are sorted along.
    pub slice_normal: [f64; 3],
    /// Image Position (Patient) of every slice, in voxel k order (LPS mm).
    pub slice_positions_mm: Vec<[f64; 3]>,
    /// Best-fit affine, column-major 4x4 (glam layout): exact when `irregularity.is_regular()`.
    #[serde(serialize_with = "serialize_mat")]
    pub patient_from_voxel: DMat4,
    /// Frame of Reference UID (0020,0052): positions are comparable only within one.
    pub frame_of_reference_uid: Option<String>,
    pub irregularity: SliceIrregularity,
    /// False when the files lack position or orientation: then no orientation labels or
    /// patient-space measurements may be shown.
    pub trusted: bool,
    /// False when the files give no Pixel Spacing (0028,0030) (secondary captures,
    /// projections with only Imager Pixel Spacing, at the detector): the spacing is then 1 and
    /// lengths are in pixels, never to be shown as mm.
    pub pixel_spacing_known: bool,
    /// The spacing is Imager Pixel Spacing (0018,1164), at the detector: lengths are mm at the
    /// detector plane, not in the patient (projection images without Pixel Spacing).
    pub spacing_at_detector: bool,
}

fn serialize_mat<S: serde::Serializer>(m: &DMat4, s: S) -> Result<S::Ok, S::Error> {
    // Row-major rows, as people read a matrix.
    let rows: [[f64; 4]; 4] = std::array::from_fn(|r| m.row(r).to_array());
    rows.serialize(s)
}

impl VolumeGeometry {
    /// Build from per-slice positions already sorted along the normal.
    ///
    /// `pixel_spacing_mm` is Pixel Spacing (0028,0030) as stored: [row spacing, column spacing].
    /// `single_slice_thickness_mm` gives the k spacing of a one-slice stack.
    pub fn from_slices(
        columns: usize,
        rows: usize,
        orientation: [f64; 6],
        pixel_spacing_mm: [f64; 2],
        positions: Vec<[f64; 3]>,
        single_slice_thickness_mm: Option<f64>,
        frame_of_reference_uid: Option<String>,
    ) -> Self {
        // X and Y as stored (the Image Plane equation uses them as given); the normal is unit.
        let x = DVec3::new(orientation[0], orientation[1], orientation[2]);
        let y = DVec3::new(orientation[3], orientation[4], orientation[5]);
        let normal = x.cross(y).normalize_or_zero();
        let [row_spacing, column_spacing] = pixel_spacing_mm;
        let n = positions.len().max(1);
        let first = positions
            .first()
            .map(|p| DVec3::from(*p))
            .unwrap_or(DVec3::ZERO);
        let last = positions
            .last()
            .map(|p| DVec3::from(*p))
            .unwrap_or(DVec3::ZERO);

        let step = if n > 1 {
            (last - first) / (n as f64 - 1.0)
        } else {
            normal
                * single_slice_thickness_mm
                    .filter(|t| *t > 0.0)
                    .unwrap_or(1.0)
        };
        let along_normal: Vec<f64> = positions
            .iter()
            .map(|p| DVec3::from(*p).dot(normal))
            .collect();
        let steps: Vec<f64> = along_normal.windows(2).map(|w| w[1] - w[0]).collect();
        let mean_step = step.dot(normal);
        let irregularity = irregularity(&positions, &steps, step, normal);

        let patient_from_voxel = DMat4::from_cols(
            (x * column_spacing).extend(0.0),
            (y * row_spacing).extend(0.0),
            step.extend(0.0),
            first.extend(1.0),
        );
        VolumeGeometry {
            dims: [columns, rows, positions.len()],
            spacing_mm: [column_spacing, row_spacing, mean_step.abs()],
            row_direction: x.to_array(),
            column_direction: y.to_array(),
            slice_normal: normal.to_array(),
            slice_positions_mm: positions,
            patient_from_voxel,
            frame_of_reference_uid,
            irregularity,
            trusted: true,
            pixel_spacing_known: true,
            spacing_at_detector: false,
        }
    }

    /// A geometry for images without position or orientation (secondary captures, some
    /// projections): unit spacing, identity directions, `trusted = false`.
    pub fn untrusted(
        columns: usize,
        rows: usize,
        slices: usize,
        pixel_spacing_mm: Option<[f64; 2]>,
    ) -> Self {
        let [row_spacing, column_spacing] = pixel_spacing_mm.unwrap_or([1.0, 1.0]);
        let positions = (0..slices).map(|k| [0.0, 0.0, k as f64]).collect();
        let mut g = Self::from_slices(
            columns,
            rows,
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            [row_spacing, column_spacing],
            positions,
            Some(1.0),
            None,
        );
        g.trusted = false;
        g.pixel_spacing_known = pixel_spacing_mm.is_some();
        g
    }

    /// Patient position of a (possibly fractional) voxel by the best-fit affine.
    pub fn patient_from_voxel_affine(&self, voxel: [f64; 3]) -> [f64; 3] {
        let p = self.patient_from_voxel * DVec4::new(voxel[0], voxel[1], voxel[2], 1.0);
        [p.x, p.y, p.z]
    }

    /// Patient position of a voxel using the real position of its slice (interpolated between
    /// neighbouring slices for fractional k): exact for tilted, uneven and gappy stacks.
    pub fn patient_from_voxel_exact(&self, voxel: [f64; 3]) -> [f64; 3] {
        let n = self.slice_positions_mm.len();
        if n == 0 {
            return self.patient_from_voxel_affine(voxel);
        }
        let k = voxel[2];
        let origin = if n == 1 {
            let base = DVec3::from(self.slice_positions_mm[0]);
            base + self.patient_from_voxel.z_axis.truncate() * k
        } else {
            let k0 = (k.floor().max(0.0) as usize).min(n - 2);
            let t = k - k0 as f64;
            let a = DVec3::from(self.slice_positions_mm[k0]);
            let b = DVec3::from(self.slice_positions_mm[k0 + 1]);
            a + (b - a) * t
        };
        let p = origin
            + self.patient_from_voxel.x_axis.truncate() * voxel[0]
            + self.patient_from_voxel.y_axis.truncate() * voxel[1];
        p.to_array()
    }

    /// Number of voxels.
    pub fn voxel_count(&self) -> usize {
        self.dims.iter().product()
    }
}

fn irregularity(
    positions: &[[f64; 3]],
    steps: &[f64],
    step: DVec3,
    normal: DVec3,
) -> SliceIrregularity {
    let mut out = SliceIrregularity::default();
    if positions.len() < 2 || step.length() == 0.0 {
        return out;
    }
    let along = step.dot(normal).abs();
    let across = (step - normal * step.dot(normal)).length();
    out.shear_deg = across.atan2(along).to_degrees();
    out.min_step_mm = steps.iter().copied().fold(f64::INFINITY, f64::min);
    out.max_step_mm = steps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    out.uneven_spacing = out.max_step_mm - out.min_step_mm > SPACING_TOLERANCE_MM;

    let mut sorted: Vec<f64> = steps.to_vec();
    sorted.sort_by(f64::total_cmp);
    // The usual step: the lower median, so a few gaps never become the norm.
    let usual = sorted[(sorted.len() - 1) / 2];
    if usual > SPACING_TOLERANCE_MM {
        // A gap is a missing slice when it is (close to) a whole multiple of the usual step;
        // a change of spacing (4 mm then 7 mm, as some protocols do) is only uneven.
        for (k, s) in steps.iter().enumerate() {
            let ratio = s / usual;
            if ratio >= 1.8 && (ratio - ratio.round()).abs() <= 0.15 {
                out.missing_slices
                    .push((k, (ratio.round() as usize).saturating_sub(1)));
            }
        }
    }

    // Does every slice lie on the straight line the affine assumes (in-plane)? Compare the
    // in-plane offset of each slice with the one predicted from its distance along the normal.
    let first = DVec3::from(positions[0]);
    let shear_per_mm = if along > 0.0 {
        (step - normal * step.dot(normal)) / step.dot(normal)
    } else {
        DVec3::ZERO
    };
    out.nonlinear_positions = positions.iter().any(|p| {
        let d = DVec3::from(*p) - first;
        let dn = d.dot(normal);
        let in_plane = d - normal * dn;
        (in_plane - shear_per_mm * dn).length() > SPACING_TOLERANCE_MM
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    /// PS3.3 C.7.6.2.1.1, Equation C.7.6.2.1-1, on an oblique plane with anisotropic pixels:
    /// P = S + i Δi X + j Δj Y, with Δi = column spacing (Pixel Spacing value 2) and
    /// Δj = row spacing (value 1).
    #[test]
    fn image_plane_equation_c_7_6_2_1_1() {
        let s = 1.0 / 2f64.sqrt();
        let orientation = [s, s, 0.0, 0.0, 0.0, -1.0];
        let g = VolumeGeometry::from_slices(
            4,
            3,
            orientation,
            [0.5, 0.25], // row spacing 0.5, column spacing 0.25
            vec![[10.0, 20.0, 30.0]],
            Some(2.0),
            None,
        );
        // i = 2 (columns), j = 1 (rows): S + 2*0.25*X + 1*0.5*Y
        let expected = [10.0 + 0.5 * s, 20.0 + 0.5 * s, 30.0 - 0.5];
        assert!(close(
            g.patient_from_voxel_affine([2.0, 1.0, 0.0]),
            expected,
            1e-12
        ));
        assert!(close(
            g.patient_from_voxel_exact([2.0, 1.0, 0.0]),
            expected,
            1e-12
        ));
        // Normal = X × Y = (s, s, 0) × (0, 0, -1) = (-s, s, 0)
        assert!(close(g.slice_normal, [-s, s, 0.0], 1e-12));
        assert!(close(g.spacing_mm, [0.25, 0.5, 2.0], 1e-12));
    }

    /// A gantry tilt of 20° about the patient x axis: slices are tilted planes at table
    /// positions 0, 5, 10 mm. The k axis follows the table (sheared), and the spacing between
    /// slice planes is 5 cos 20°.
    #[test]
    fn gantry_tilt_is_a_shear_not_a_rotation() {
        let t = 20f64.to_radians();
        let orientation = [1.0, 0.0, 0.0, 0.0, t.cos(), t.sin()];
        let positions = vec![[0.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 10.0]];
        let g = VolumeGeometry::from_slices(8, 8, orientation, [1.0, 1.0], positions, None, None);
        assert!(
            (g.irregularity.shear_deg - 20.0).abs() < 1e-9,
            "{:?}",
            g.irregularity
        );
        assert!((g.spacing_mm[2] - 5.0 * t.cos()).abs() < 1e-9);
        assert!(!g.irregularity.uneven_spacing);
        assert!(!g.irregularity.is_regular());
        // Voxel (0, 4, 2): slice 2 sits at z = 10; 4 rows down the tilted column direction.
        let p = g.patient_from_voxel_affine([0.0, 4.0, 2.0]);
        assert!(close(p, [0.0, 4.0 * t.cos(), 10.0 + 4.0 * t.sin()], 1e-9));
    }

    #[test]
    fn uneven_spacing_and_missing_slices_are_reported_and_kept_exact() {
        let positions = vec![
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 2.0],
            [0.0, 0.0, 5.0],
            [0.0, 0.0, 6.5],
        ];
        let g = VolumeGeometry::from_slices(
            2,
            2,
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 1.0],
            positions,
            None,
            None,
        );
        assert!(g.irregularity.uneven_spacing);
        // 3 mm after 1 mm steps: two slices missing; 1.5 mm is uneven, not a missing slice.
        assert_eq!(g.irregularity.missing_slices, vec![(2, 2)]);
        assert!((g.irregularity.max_step_mm - 3.0).abs() < 1e-12);
        // The exact transform puts slice 3 where it really is; the affine cannot.
        assert!(close(
            g.patient_from_voxel_exact([0.0, 0.0, 3.0]),
            [0.0, 0.0, 5.0],
            1e-12
        ));
        assert!(close(
            g.patient_from_voxel_exact([0.0, 0.0, 2.5]),
            [0.0, 0.0, 3.5],
            1e-12
        ));
        assert!(!close(
            g.patient_from_voxel_affine([0.0, 0.0, 3.0]),
            [0.0, 0.0, 5.0],
            0.01
        ));
    }
}
