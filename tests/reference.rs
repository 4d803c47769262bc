//! Issue 2, item 8: every stack with an independent reference (dcm2niix or dicom2nifti NIfTI in
//! `../shared/dicom`) matches it in patient space: voxel positions within 0.01 mm, voxel values
//! equal (raw, or after the reference's scl_slope/scl_inter).
//!
//! How a match is made: for each reference volume, each of our stacks with the same voxel count
//! is tried; the map from reference voxel to our voxel comes from the two affines (dcm2niix may
//! flip or permute axes), positions are compared at every voxel of the 8 corners and centre of
//! the grid, and values at every voxel.

use std::path::Path;

use glam::{DVec3, DVec4};
use imaging::{self, Stack, Volume};

use crate::support::{nifti::Nifti, shared_dicom};

/// How one reference volume compares with one of our stacks.
#[derive(Debug)]
struct Comparison {
    stack_id: String,
    /// Largest distance between the reference's voxel position and ours (mm).
    max_position_error_mm: f64,
    /// Voxels whose values differ (raw and scaled).
    value_mismatches: usize,
    voxels: usize,
}

/// Map reference voxel (i, j, k) to our voxel index, or None when the grids do not line up
/// to within a tenth of a voxel.
fn index_map(
    reference: &Nifti,
    volume: &Volume,
) -> Option<impl Fn(usize, usize, usize) -> [usize; 3]> {
    let ours_from_lps = volume.geometry.patient_from_voxel.inverse();
    let lps_from_ras = glam::DMat4::from_diagonal(DVec4::new(-1.0, -1.0, 1.0, 1.0));
    let m = ours_from_lps * lps_from_ras * reference.ras_from_voxel;
    // Must be a signed permutation with integer translation.
    for c in 0..4 {
        for r in 0..3 {
            let v = m.col(c)[r];
            if (v - v.round()).abs() > 0.1 {
                return None;
            }
        }
    }
    let dims = volume.geometry.dims;
    Some(move |i: usize, j: usize, k: usize| {
        let p = m * DVec4::new(i as f64, j as f64, k as f64, 1.0);
        let idx = [p.x.round(), p.y.round(), p.z.round()];
        std::array::from_fn(|a| (idx[a].max(0.0) as usize).min(dims[a].saturating_sub(1)))
    })
}

fn compare(
    reference: &Nifti,
    t: usize,
    stack: &Stack,
    volume: &Volume,
    exact_positions: bool,
) -> Option<Comparison> {
    let [nx, ny, nz, _] = reference.dims;
    if nx * ny * nz != volume.geometry.voxel_count() {
        return None;
    }
    let map = index_map(reference, volume)?;
    let mut max_err: f64 = 0.0;
    let probes = [0, 1].iter().flat_map(|&a| {
        [0, 1]
            .iter()
            .flat_map(move |&b| [0, 1].map(move |c| (a, b, c)))
    });
    for (a, b, c) in probes.chain(std::iter::once((2, 2, 2))) {
        let pick = |n: usize, w: usize| match w {
            0 => 0,
            1 => n - 1,
            _ => n / 2,
        };
        let (i, j, k) = (pick(nx, a), pick(ny, b), pick(nz, c));
        let ours = map(i, j, k);
        let p_ref = reference.lps_of(i as f64, j as f64, k as f64);
        let ours_f = ours.map(|v| v as f64);
        let p_ours = DVec3::from(if exact_positions {
            volume.geometry.patient_from_voxel_exact(ours_f)
        } else {
            volume.geometry.patient_from_voxel_affine(ours_f)
        });
        max_err = max_err.max((p_ref - p_ours).length());
    }
    let mut mismatches = 0;
    for k in 0..nz {
        let rescale = volume.rescale.for_slice(0);
        for j in 0..ny {
            for i in 0..nx {
                let [oi, oj, ok] = map(i, j, k);
                // Colour voxels compare as packed 0xRRGGBB, as the reader gives RGB NIfTI.
                let stored = match volume.voxels.rgb(oi, oj, ok) {
                    Some([r, g, b]) => f64::from(u32::from_be_bytes([0, r, g, b])),
                    None => f64::from(volume.voxels.get(oi, oj, ok).unwrap_or(i32::MIN)),
                };
                let raw = reference.raw(i, j, k, t);
                if raw == stored {
                    continue;
                }
                if volume.voxels.is_colour() {
                    // Colour has no scaling: anything but equality is a mismatch.
                    mismatches += 1;
                    continue;
                }
                // The reference may hold modality values, or scale differently.
                let ours = volume.rescale.for_slice(ok).apply(stored);
                let theirs = raw * reference.scl_slope + reference.scl_inter;
                let tolerance = 1e-3 * ours.abs().max(1.0) + 0.5 * rescale.slope.abs() * 1e-3;
                if (ours - theirs).abs() > tolerance {
                    mismatches += 1;
                }
            }
        }
    }
    Some(Comparison {
        stack_id: stack.id.clone(),
        max_position_error_mm: max_err,
        value_mismatches: mismatches,
        voxels: nx * ny * nz,
    })
}

/// Compare every volume of `reference` with the stacks found in `dicom`; every reference volume
/// must match a different stack of ours. Returns the matches for case-specific checks.
fn check_case(dicom: &Path, reference: &Path, tolerance_mm: f64) -> Vec<Comparison> {
    let report = imaging::scan(&[dicom.to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stacks: Vec<&Stack> = patients
        .iter()
        .flat_map(|p| p.stacks())
        .filter(|s| s.geometry.trusted)
        .collect();
    let nifti = Nifti::read(reference);
    let volumes: Vec<Option<Volume>> = stacks
        .iter()
        .map(|s| {
            let [nx, ny, nz, _] = nifti.dims;
            (s.geometry.voxel_count() == nx * ny * nz)
                .then(|| imaging::load_stack(s, &Default::default(), &|_| {}).unwrap())
        })
        .collect();
    let mut used = vec![false; stacks.len()];
    let mut matches = Vec::new();
    for t in 0..nifti.dims[3] {
        let mut best: Option<(usize, Comparison)> = None;
        for (n, (stack, volume)) in stacks.iter().zip(&volumes).enumerate() {
            let Some(volume) = volume else { continue };
            if used[n] {
                continue;
            }
            let Some(c) = compare(&nifti, t, stack, volume, true) else {
                continue;
            };
            if c.value_mismatches == 0 {
                best = Some((n, c));
                break;
            }
            if best
                .as_ref()
                .is_none_or(|(_, b)| c.value_mismatches < b.value_mismatches)
            {
                best = Some((n, c));
            }
        }
        let (n, c) = best.unwrap_or_else(|| {
            panic!(
                "{}: reference volume {t} matches no stack of ours (stacks: {:?})",
                reference.display(),
                stacks
                    .iter()
                    .map(|s| (&s.id, s.geometry.dims))
                    .collect::<Vec<_>>()
            )
        });
        assert_eq!(
            c.value_mismatches,
            0,
            "{}: volume {t} vs our stack {}: {} of {} voxel values differ",
            reference.display(),
            c.stack_id,
            c.value_mismatches,
            c.voxels
        );
        assert!(
            c.max_position_error_mm <= tolerance_mm,
            "{}: volume {t} vs our stack {}: voxel positions differ by {:.4} mm (> {tolerance_mm} mm)",
            reference.display(),
            c.stack_id,
            c.max_position_error_mm
        );
        if stacks[n].geometry.irregularity.affine_is_exact()
            && let Some(volume) = &volumes[n]
        {
            check_written_nifti(&nifti, volume, tolerance_mm);
        }
        used[n] = true;
        matches.push(c);
    }
    matches
}

/// The NIfTI Overread writes of `volume` places its voxels where the reference places
/// the same voxels (sform, and the qform alone when it is set), and holds our stored values.
/// The reference check above compares the reference with our geometry; this one compares it
/// with our writer's file, read back by the independent test reader.
fn check_written_nifti(reference: &Nifti, volume: &Volume, tolerance_mm: f64) {
    let dir = crate::support::tempdir();
    let path = dir.path().join("ours.nii");
    imaging::nifti::write_nifti(volume, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let ours = Nifti::parse(&bytes);
    let map = index_map(reference, volume).expect("the reference matched this volume");
    let [nx, ny, nz, _] = reference.dims;
    let mut readers = vec![("sform", ours.clone())];
    if ours.qform_code != 0 {
        let mut qform_only = bytes.clone();
        qform_only[254..256].copy_from_slice(&0i16.to_le_bytes());
        readers.push(("qform", Nifti::parse(&qform_only)));
    }
    for (which, n) in &readers {
        // A qform is written only where a reader places voxels by it within 0.01 mm of the
        // sform (three float32 numbers cannot hold every rotation near 180 degrees).
        let tolerance = tolerance_mm.max(1e-3) + if *which == "qform" { 0.01 } else { 0.0 };
        for (i, j, k) in [
            (0, 0, 0),
            (nx - 1, 0, 0),
            (0, ny - 1, 0),
            (0, 0, nz - 1),
            (nx - 1, ny - 1, nz - 1),
            (nx / 2, ny / 2, nz / 2),
        ] {
            let [oi, oj, ok] = map(i, j, k);
            let theirs = reference.lps_of(i as f64, j as f64, k as f64);
            let written = n.lps_of(oi as f64, oj as f64, ok as f64);
            assert!(
                (theirs - written).length() <= tolerance,
                "our NIfTI's {which} puts reference voxel ({i},{j},{k}) at {written}, the reference at {theirs}"
            );
        }
    }
    let [ox, oy, oz] = volume.geometry.dims;
    for k in 0..oz {
        for j in 0..oy {
            for i in 0..ox {
                let stored = match volume.voxels.rgb(i, j, k) {
                    Some([r, g, b]) => f64::from(u32::from_be_bytes([0, r, g, b])),
                    None => f64::from(volume.voxels.get(i, j, k).unwrap()),
                };
                let written = ours.raw(i, j, k, 0);
                let expected = match &volume.rescale {
                    imaging::RescalePolicy::PerSlice(_) if !volume.voxels.is_colour() => {
                        f64::from(volume.rescale.for_slice(k).apply(stored) as f32)
                    }
                    _ => stored,
                };
                assert_eq!(written, expected, "our NIfTI at ({i},{j},{k})");
            }
        }
    }
}

macro_rules! reference_case {
    ($name:ident, $dicom:expr, $reference:expr) => {
        reference_case!($name, $dicom, $reference, 0.01);
    };
    ($name:ident, $dicom:expr, $reference:expr, $tol:expr) => {
        #[test]
        fn $name() {
            let Some(root) = shared_dicom() else { return };
            let matches = check_case(&root.join($dicom), &root.join($reference), $tol);
            assert!(!matches.is_empty());
        }
    };
}

// dcm2niix references: positions within 0.01 mm, values equal.
reference_case!(
    dcm2niix_ge_fmri_4d,
    "mr/ge_fmri_4d/dicom",
    "mr/ge_fmri_4d/ref_upstream_dcm2niix/DCM2NIIX_regression_test_4.nii.gz"
);
reference_case!(
    dcm2niix_ge_multiphase,
    "mr/ge_multiphase/dicom",
    "mr/ge_multiphase/ref_upstream_dcm2niix/fMRI_Multiphase_Des_2.nii.gz"
);
reference_case!(
    dcm2niix_philips_oblique_4d,
    "mr/philips_fmri_oblique_4d/dicom",
    "mr/philips_fmri_oblique_4d/ref_upstream_dcm2niix/EPI_asc_CLEAR_201.nii.gz"
);
reference_case!(
    dcm2niix_philips_classic,
    "mr/philips_enhanced_vs_classic/dicom",
    "mr/philips_enhanced_vs_classic/ref_upstream_dcm2niix/1901_WIP_3DpCASL_cl.nii.gz"
);
reference_case!(
    dcm2niix_philips_enhanced,
    "mr/philips_enhanced_vs_classic/dicom",
    "mr/philips_enhanced_vs_classic/ref_upstream_dcm2niix/1901_WIP_3DpCASL_enh_real.nii.gz"
);
reference_case!(
    dcm2niix_canon_enhanced_dti,
    "mr/canon_enhanced_oblique/dicom",
    "mr/canon_enhanced_oblique/ref_upstream_dcm2niix/8000_DTI_PA-ALL_20d_enh.nii.gz"
);

// dicom2nifti ground truths.
reference_case!(
    dicom2nifti_ct_two_slices,
    "ct/dicom2nifti_ct_edge_cases/dicom/slicecount/001",
    "ct/dicom2nifti_ct_edge_cases/ref_dicom2nifti/slicecount__001_ground_truth.nii.gz"
);

/// Image Position / Orientation read straight from the files with dicom-object (not through
/// Overread's header code), sorted along the normal as PS3.3 C.7.6.2.1.1 defines it.
fn dicom_positions(dir: &Path) -> (Vec<DVec3>, DVec3, DVec3) {
    let mut slices = Vec::new();
    let mut axes = None;
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let Ok(obj) = dicom_object::OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
            .open_file(entry.path())
        else {
            continue;
        };
        let ipp = obj
            .element(dicom_dictionary_std::tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        let iop = obj
            .element(dicom_dictionary_std::tags::IMAGE_ORIENTATION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap();
        axes = Some((
            DVec3::new(iop[0], iop[1], iop[2]),
            DVec3::new(iop[3], iop[4], iop[5]),
        ));
        slices.push(DVec3::new(ipp[0], ipp[1], ipp[2]));
    }
    let (x, y) = axes.unwrap();
    let normal = x.cross(y);
    slices.sort_by(|a, b| a.dot(normal).total_cmp(&b.dot(normal)));
    (slices, x, y)
}

/// Tilted and uneven stacks: dcm2niix's plain output is a best-fit affine (and dicom2nifti
/// resamples), so positions are checked against the DICOM files themselves: every voxel of
/// every slice is where Image Position + i Δi X + j Δj Y puts it.
fn check_exact_positions(
    dir: &Path,
    expect_tilt_deg: Option<f64>,
    expect_uneven: bool,
    expect_missing: bool,
) {
    let report = imaging::scan(&[dir.to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    let g = &stack.geometry;
    let (positions, x, y) = dicom_positions(dir);
    assert_eq!(g.dims[2], positions.len());
    for (k, s) in positions.iter().enumerate() {
        for (i, j) in [
            (0, 0),
            (g.dims[0] - 1, 0),
            (0, g.dims[1] - 1),
            (g.dims[0] - 1, g.dims[1] - 1),
            (17, 33),
        ] {
            let expected = *s + x * (i as f64 * g.spacing_mm[0]) + y * (j as f64 * g.spacing_mm[1]);
            let ours = DVec3::from(g.patient_from_voxel_exact([i as f64, j as f64, k as f64]));
            assert!(
                (ours - expected).length() < 1e-6,
                "{} slice {k} voxel ({i},{j}): {ours} vs {expected}",
                dir.display()
            );
        }
    }
    let irr = &g.irregularity;
    match expect_tilt_deg {
        Some(t) => assert!(
            (irr.shear_deg - t).abs() < 0.05,
            "tilt {} vs {t}",
            irr.shear_deg
        ),
        None => assert!(irr.shear_deg < 0.05, "unexpected shear {}", irr.shear_deg),
    }
    assert_eq!(irr.uneven_spacing, expect_uneven, "{irr:?}");
    assert_eq!(!irr.missing_slices.is_empty(), expect_missing, "{irr:?}");
}

#[test]
fn ge_tilted_uneven_ct_positions_are_exact() {
    let Some(root) = shared_dicom() else { return };
    check_exact_positions(
        &root.join("ct/ge_hispeed_tilt_nonuniform/dicom"),
        Some(18.5),
        true,
        false,
    );
}

#[test]
fn dicom2nifti_tilted_ct_positions_are_exact() {
    let Some(root) = shared_dicom() else { return };
    let cases = root.join("ct/dicom2nifti_ct_edge_cases/dicom");
    check_exact_positions(&cases.join("gantrytilting/001"), Some(14.0), false, false);
    check_exact_positions(&cases.join("sliceincrement/002"), Some(15.5), true, true);
    check_exact_positions(&cases.join("sliceincrement/001"), None, true, true);
}

/// The GE HiSpeed CT of 28 tilted, unevenly spaced slices, loaded.
fn ge_tilted_volume(root: &Path) -> Volume {
    let dir = root.join("ct/ge_hispeed_tilt_nonuniform/dicom");
    let report = imaging::scan(&[dir]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    imaging::load_stack(stack, &Default::default(), &|_| {}).unwrap()
}

/// The GE tilted CT's voxel values equal dcm2niix's plain (unresampled) output slice for slice,
/// under the axis flips dcm2niix applies; positions were checked above against the DICOM files.
#[test]
fn ge_tilted_ct_values_equal_dcm2niix() {
    let Some(root) = shared_dicom() else { return };
    let volume = ge_tilted_volume(&root);
    let nifti =
        Nifti::read(&root.join("ct/ge_hispeed_tilt_nonuniform/ref_dcm2niix_local/_2.nii.gz"));
    let [nx, ny, nz, _] = nifti.dims;
    assert_eq!([nx, ny, nz], volume.geometry.dims);
    // Try the 8 flips of the three axes; exactly the one dcm2niix used must match everywhere.
    let matching: Vec<[bool; 3]> = (0..8)
        .map(|m| [m & 1 != 0, m & 2 != 0, m & 4 != 0])
        .filter(|flip| {
            (0..nz).step_by(3).all(|k| {
                (0..ny).step_by(7).all(|j| {
                    (0..nx).step_by(5).all(|i| {
                        let (oi, oj, ok) = (
                            if flip[0] { nx - 1 - i } else { i },
                            if flip[1] { ny - 1 - j } else { j },
                            if flip[2] { nz - 1 - k } else { k },
                        );
                        volume.voxels.get(oi, oj, ok).map(f64::from) == Some(nifti.raw(i, j, k, 0))
                    })
                })
            })
        })
        .collect();
    assert_eq!(matching.len(), 1, "flips matching dcm2niix: {matching:?}");
}

/// A region on a slice of the GE tilted, unevenly spaced CT reads what numpy reads: the voxels
/// whose centres lie inside the ellipse, placed from each file's Image Position, Orientation
/// and Pixel Spacing, in HU through its rescale. The ellipse (40 x 15 mm semi-axes, turned
/// 30 degrees, on slice 14 of 28) and the figures are `scripts/roi_reference.py`'s output.
#[test]
fn ge_tilted_ct_region_equals_numpy() {
    use overread::render::kernel::VolumeInfo;
    use overread::viewer::measure::{Measurement, Shape, Value};
    let Some(root) = shared_dicom() else { return };
    let volume = ge_tilted_volume(&root);
    let info = VolumeInfo::new(&volume).unwrap();
    let region = Measurement {
        id: 1,
        shape: Shape::Ellipse {
            center: [-2.7832156399999946, -30.143547376930442, 30.585887000213212],
            semi_axis_1: [34.64101615137755, 18.966473999999998, -6.346093999999999],
            semi_axis_2: [-7.499999999999999, 12.319086228162794, -4.121908964103002],
        },
        frame_of_reference_uid: None,
        stack_id: None,
    };
    let Value::Region {
        mean,
        sd,
        min,
        max,
        samples,
        without_data,
        ..
    } = region.value(&info, &volume.voxels)
    else {
        panic!("not a region")
    };
    // numpy: count 7907 mean 27.63525989629442 sd 6.1145578789277595 min -2.0 max 45.0
    assert_eq!((samples, without_data), (7907, 0));
    assert!((mean - 27.63525989629442).abs() < 1e-9, "mean {mean}");
    assert!((sd - 6.1145578789277595).abs() < 1e-9, "sd {sd}");
    assert_eq!((min, max), (-2.0, 45.0));
}

/// dicom2nifti's multi-vendor excerpts: every folder with a ground truth, explicit and implicit
/// VR, compressed series, Philips and Siemens enhanced, and an RGB series (J2K-compressed,
/// oblique; dicom2nifti writes it as RGBA32).
#[test]
fn dicom2nifti_multivendor_ground_truths() {
    let Some(root) = shared_dicom() else { return };
    let base = root.join("mr/dicom2nifti_multivendor");
    let mut checked = 0;
    let mut colour = 0;
    for entry in walkdir::WalkDir::new(base.join("dicom"))
        .min_depth(2)
        .max_depth(3)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = entry.path().strip_prefix(base.join("dicom")).unwrap();
        let name = rel.to_string_lossy().replace('/', "__");
        let reference = base
            .join("ref_dicom2nifti")
            .join(format!("{name}_ground_truth.nii.gz"));
        if !entry.file_type().is_dir() || !reference.exists() {
            continue;
        }
        let matches = check_case(entry.path(), &reference, 0.01);
        assert!(!matches.is_empty());
        checked += 1;
        colour += usize::from(name.contains("rgb"));
    }
    assert!(checked >= 16, "only {checked} ground truths compared");
    assert_eq!(colour, 1, "the RGB ground truth was not compared");
}

/// An RGB volume exported as NIfTI RGB24 reads back (through the independent reader) with every
/// voxel's colour and position, and equals dicom2nifti's RGBA32 ground truth the same way.
#[test]
fn rgb_volume_exports_as_nifti_rgb24() {
    let Some(root) = shared_dicom() else { return };
    let base = root.join("mr/dicom2nifti_multivendor");
    let report = imaging::scan(&[base.join("dicom/generic/rgb/001")]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap().clone();
    let volume = imaging::load_stack(&stack, &Default::default(), &|_| {}).unwrap();
    assert!(volume.voxels.is_colour());
    let dir = crate::support::tempdir();
    let path = dir.path().join("rgb.nii");
    imaging::nifti::write_nifti(&volume, &path).unwrap();
    let ours = Nifti::read(&path);
    assert_eq!(ours.datatype, 128);
    let reference =
        Nifti::read(&base.join("ref_dicom2nifti/generic__rgb__001_ground_truth.nii.gz"));
    for nifti in [&ours, &reference] {
        let c = compare(nifti, 0, &stack, &volume, true).unwrap();
        assert_eq!(c.value_mismatches, 0);
        assert!(
            c.max_position_error_mm < 0.01,
            "{}",
            c.max_position_error_mm
        );
    }
    // Not all grey: the colour survived.
    assert!(ours.values.iter().any(|v| {
        let [_, r, g, b] = (*v as u32).to_be_bytes();
        r != g || g != b
    }));
}

// Siemens mosaics, unpacked into slices (positions from the CSA SliceNormalVector): 12-bit
// stored values with garbage high bits (unsigned and signed), ascending, descending and
// foot-to-head slice order, axial and coronal, and one mosaic in nine transfer syntaxes.
reference_case!(
    dcm2niix_siemens_12bit_unsigned,
    "mr/siemens_12bit/dicom/12bitUnsigned.dcm",
    "mr/siemens_12bit/ref_upstream_dcm2niix/2.nii.gz"
);
reference_case!(
    dcm2niix_siemens_12bit_unsigned_stripes,
    "mr/siemens_12bit/dicom/12bitUnsigned_0x0F0F.dcm",
    "mr/siemens_12bit/ref_upstream_dcm2niix/3.nii.gz"
);
reference_case!(
    dcm2niix_siemens_12bit_signed_stripes,
    "mr/siemens_12bit/dicom/12bitSigned_0x0F0F.dcm",
    "mr/siemens_12bit/ref_upstream_dcm2niix/4.nii.gz"
);
reference_case!(
    dcm2niix_mosaic_axial_ascending,
    "mr/siemens_mosaic_orientation/dicom/ax/axasc35",
    "mr/siemens_mosaic_orientation/ref_upstream_dcm2niix/ax_asc_35sl_6.nii.gz"
);
reference_case!(
    dcm2niix_mosaic_axial_descending,
    "mr/siemens_mosaic_orientation/dicom/ax/axdesc36",
    "mr/siemens_mosaic_orientation/ref_upstream_dcm2niix/ax_desc_36sl_10.nii.gz"
);
reference_case!(
    dcm2niix_mosaic_coronal_ascending,
    "mr/siemens_mosaic_orientation/dicom/cor/corasc35",
    "mr/siemens_mosaic_orientation/ref_upstream_dcm2niix/cor_asc_35sl_16.nii.gz"
);
reference_case!(
    dcm2niix_mosaic_foot_to_head,
    "mr/siemens_mosaic_F2H/dicom/ep2d_Asc_HF_10",
    "mr/siemens_mosaic_F2H/ref_upstream_dcm2niix/10_ep2d_Asc_HF.nii.gz"
);

#[test]
fn dcm2niix_mosaic_in_nine_transfer_syntaxes() {
    let Some(root) = shared_dicom() else { return };
    let base = root.join("mr/siemens_mosaic_transfer_syntaxes");
    for n in 1..=9 {
        let matches = check_case(
            &base.join(format!("dicom/{n}.dcm")),
            &base.join(format!("ref_upstream_dcm2niix/{n}.nii.gz")),
            0.01,
        );
        assert_eq!(matches.len(), 1);
    }
}

/// A mosaic without Spacing Between Slices (0018,0088) is placed by the slice centres its
/// protocol prescribed (CSA Series Header, `sSliceArray`): still dcm2niix's positions within
/// 0.01 mm. These EPI slices are 3 mm thick, 3.6 mm apart: stepping by Slice Thickness (as
/// dcm2niix does without the attribute) would place the last of 36 slices 21 mm off. Without
/// the protocol too, the mosaic is shown as stored, not unpacked with a guessed step.
#[test]
fn a_mosaic_without_spacing_between_slices_is_placed_by_its_protocol() {
    let Some(root) = shared_dicom() else { return };
    let base = root.join("mr/siemens_mosaic_orientation");
    let dir = crate::support::tempdir();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(base.join("dicom/ax/axdesc36")).unwrap() {
        let from = entry.unwrap().path();
        let to = dir.path().join(from.file_name().unwrap());
        let mut obj = dicom_object::open_file(&from).unwrap();
        assert!(
            obj.element(dicom_dictionary_std::tags::SLICE_THICKNESS)
                .is_ok()
        );
        obj.remove_element(dicom_dictionary_std::tags::SPACING_BETWEEN_SLICES);
        obj.write_to_file(&to).unwrap();
        files.push(to);
    }
    let matches = check_case(
        dir.path(),
        &base.join("ref_upstream_dcm2niix/ax_desc_36sl_10.nii.gz"),
        0.01,
    );
    assert_eq!(matches.len(), 2, "both volumes of the series: {matches:?}");

    for file in &files {
        let mut obj = dicom_object::open_file(file).unwrap();
        assert!(obj.remove_element(dicom_core::Tag(0x0029, 0x1020)));
        obj.write_to_file(file).unwrap();
    }
    let report = imaging::scan(&[dir.path().to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stacks: Vec<&Stack> = patients.iter().flat_map(|p| p.stacks()).collect();
    assert!(!stacks.is_empty());
    for stack in stacks {
        assert!(stack.unpacked_mosaic_failed);
        assert_eq!(stack.geometry.dims[2], 1, "shown as stored");
        assert!(!stack.geometry.trusted);
    }
}

/// Every Implicit VR Little Endian file of the shared data (70 real files: CT, MR of five
/// vendors, Philips enhanced multi-frame with its nested functional groups, private tags)
/// written in Explicit VR Little Endian by `imaging::open::implicit_to_explicit_le`, byte by
/// byte, reads back (dicom-rs, strictly) to the same elements, VRs and values as the file
/// itself, and its "US or SS" elements take the VR its Pixel Representation gives them; what
/// the case server sends for the default transfer syntax.
#[test]
fn implicit_vr_files_convert_to_explicit_vr_element_for_element() {
    let Some(root) = shared_dicom() else { return };
    let (mut converted, mut signed_with_ambiguous) = (0, 0);
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(original) = dicom_object::open_file(entry.path()) else {
            continue;
        };
        if original.meta().transfer_syntax().trim_end_matches('\0') != "1.2.840.10008.1.2" {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let data_set = 132 + 12 + original.meta().information_group_length as usize;
        let explicit = imaging::open::implicit_to_explicit_le(&bytes[data_set..])
            .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        // As the case server sends it: its own File Meta group, naming the new syntax.
        let mut file = case_server::part10::header(
            original.meta().media_storage_sop_class_uid(),
            original.meta().media_storage_sop_instance_uid(),
            "1.2.840.10008.1.2.1",
        )
        .unwrap();
        file.extend_from_slice(&explicit);
        let back = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(file.as_slice())
            .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        if let Some(difference) = first_difference(back.iter(), original.iter()) {
            panic!("{}: {difference}", entry.path().display());
        }
        // A "US or SS" element is SS where the pixels are signed, on the wire (dicom-rs reads
        // either as the Pixel Representation says; pydicom and dcmtk take the VR written).
        let signed = original
            .element(dicom_dictionary_std::tags::PIXEL_REPRESENTATION)
            .ok()
            .and_then(|e| e.to_int::<u16>().ok())
            == Some(1);
        if signed
            && original
                .element(dicom_dictionary_std::tags::SMALLEST_IMAGE_PIXEL_VALUE)
                .is_ok()
        {
            let header = [0x28, 0x00, 0x06, 0x01, b'S', b'S'];
            assert!(
                explicit.windows(6).any(|w| w == header),
                "{}: Smallest Image Pixel Value is not SS",
                entry.path().display()
            );
            signed_with_ambiguous += 1;
        }
        converted += 1;
    }
    assert!(converted >= 60, "{converted} implicit VR files converted");
    assert!(
        signed_with_ambiguous >= 1,
        "no file tested the US or SS choice"
    );
}

/// Where two data sets' elements first differ in tag, VR or value, items of sequences
/// compared element by element (a sequence's or item's length, defined or not, is how it was
/// written, not what it holds; group lengths are not compared); `None` where they do not.
fn first_difference<'a>(
    a: impl Iterator<Item = &'a dicom_object::mem::InMemElement>,
    b: impl Iterator<Item = &'a dicom_object::mem::InMemElement>,
) -> Option<String> {
    use dicom_core::value::Value;
    // Group lengths (retired) are left out by the conversion: not compared.
    let data = |e: &&dicom_object::mem::InMemElement| e.header().tag.element() != 0x0000;
    let (a, b): (Vec<_>, Vec<_>) = (a.filter(data).collect(), b.filter(data).collect());
    if a.len() != b.len() {
        return Some(format!("{} elements against {}", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(&b) {
        let (tag, vr) = (x.header().tag, x.header().vr);
        if (tag, vr) != (y.header().tag, y.header().vr) {
            return Some(format!(
                "{tag} {vr:?} against {} {:?}",
                y.header().tag,
                y.header().vr
            ));
        }
        match (x.value(), y.value()) {
            (Value::Sequence(s), Value::Sequence(t)) => {
                if s.items().len() != t.items().len() {
                    return Some(format!("{tag}: items differ in number"));
                }
                for (i, j) in s.items().iter().zip(t.items()) {
                    if let Some(d) = first_difference(i.iter(), j.iter()) {
                        return Some(format!("{tag} > {d}"));
                    }
                }
            }
            (p, q) if p != q => return Some(format!("{tag} {vr:?}: values differ")),
            _ => {}
        }
    }
    None
}
