//! Rendering: the CPU reference against analytic phantoms (known values at known patient
//! points), and the GPU (wgpu on lavapipe, the software adapter, so every machine draws the
//! same) against the CPU reference to one grey level, for synthetic and real series.
//!
//! On a failed comparison the expected (CPU), actual (GPU) and diff images are written to
//! `target/render-failures/`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use glam::{DMat3, DVec3};
use imaging::decode::LoadTimings;
use imaging::synth::{PhantomSpec, phantom_volume};
use imaging::{self, Rescale, RescalePolicy, Volume, VolumeGeometry, Voxels};
use ndarray::Array3;
use overread::render::gpu::{DISPLAY_WGSL, RESAMPLE_WGSL, ViewTarget};
use overread::render::{
    AdapterChoice, Display, GpuContext, Interpolation, OutputDepth, Plane, RenderedImage, Renderer,
    SlabMode, SliceView, Voi, VoiFunction, VoiLut, VolumeInfo, VolumeTexture, cpu,
};

use crate::support::shared_dicom;

/// The software adapter, opened once. Absent: skip with a message, except in CI (a missing
/// adapter there is a failure: `.ci/run` installs lavapipe).
fn gpu() -> Option<&'static (GpuContext, Renderer)> {
    static GPU: OnceLock<Option<(GpuContext, Renderer)>> = OnceLock::new();
    GPU.get_or_init(|| match GpuContext::new(AdapterChoice::Software) {
        Ok(ctx) => {
            let renderer = Renderer::new(&ctx);
            Some((ctx, renderer))
        }
        Err(e) => {
            assert!(
                std::env::var("CI").map(|v| v != "true").unwrap_or(true),
                "CI must have a software Vulkan adapter (mesa-vulkan-drivers): {e}"
            );
            eprintln!("SKIPPED: no software graphics adapter ({e}); GPU tests did not run");
            None
        }
    })
    .as_ref()
}

fn failure_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/render-failures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Render on the GPU and the CPU; fail (writing the images) when any pixel differs by more
/// than one grey level. Returns the CPU image.
fn assert_gpu_matches_cpu(
    name: &str,
    texture: &VolumeTexture,
    volume: &Volume,
    view: &SliceView,
    display: &Display,
) -> Option<RenderedImage> {
    let (ctx, renderer) = gpu()?;
    let actual = renderer.render(ctx, texture, view, display).unwrap();
    let expected = cpu::render(&texture.info, &volume.voxels, view, display).unwrap();
    let (max, differing) = actual.compare(&expected).unwrap();
    if max > 1 {
        let dir = failure_dir();
        expected
            .write_png(&dir.join(format!("{name}-expected.png")))
            .unwrap();
        actual
            .write_png(&dir.join(format!("{name}-actual.png")))
            .unwrap();
        actual
            .diff(&expected)
            .write_png(&dir.join(format!("{name}-diff.png")))
            .unwrap();
        panic!(
            "{name}: GPU differs from the CPU reference by up to {max} grey levels at {differing} pixels; images in {}",
            dir.display()
        );
    }
    // A comparison of two blank images proves nothing.
    let distinct: std::collections::HashSet<u16> = expected.pixels.iter().copied().collect();
    assert!(
        distinct.len() > 3,
        "{name}: the reference image is nearly uniform ({} grey levels)",
        distinct.len()
    );
    Some(expected)
}

fn volume_of(geometry: VolumeGeometry, voxels: Voxels, rescale: RescalePolicy) -> Volume {
    Volume {
        geometry,
        voxels,
        rescale,
        default_window: None,
        failed_slices: Vec::new(),
        padding: Vec::new(),
        timings: LoadTimings::default(),
    }
}

fn small_phantom() -> PhantomSpec {
    PhantomSpec {
        columns: 128,
        rows: 128,
        slices: 80,
        pixel_mm: 2.7,
        spacing_mm: 2.5,
        noise_hu: 0.0,
        nodule_diameter_mm: 20.0,
        ..PhantomSpec::default()
    }
}

fn upload(volume: &Volume) -> Option<VolumeTexture> {
    let (ctx, renderer) = gpu()?;
    Some(VolumeTexture::upload(ctx, renderer, volume).unwrap())
}

fn view(volume: &Volume, plane: Plane, size: u32) -> SliceView {
    let info = VolumeInfo::new(volume).unwrap();
    SliceView::fit(&info, plane, None, size, size).unwrap()
}

#[test]
fn shaders_validate_with_naga() {
    for (name, src) in [("resample", RESAMPLE_WGSL), ("display", DISPLAY_WGSL)] {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}.wgsl: {e:?}"));
    }
}

/// A ramp stored value 3i + 5j + 7k - 1000 (slope 0.5, intercept -24) in a gantry-tilted,
/// oblique stack: trilinear interpolation of a linear function is exact, so every pixel of an
/// oblique view must equal the ramp at that pixel's patient point, with voxel coordinates
/// solved here from the DICOM image plane equation (PS3.3 C.7.6.2.1.1).
#[test]
fn cpu_reference_is_exact_on_a_ramp_in_a_tilted_stack() {
    let (w, h, n) = (40usize, 30usize, 25usize);
    let tilt = 15f64.to_radians();
    let orientation = [1.0, 0.0, 0.0, 0.0, tilt.cos(), tilt.sin()];
    let (sx, sy, dz) = (1.3, 0.9, 2.0);
    // Table moves along z; slices are tilted, so the stack is sheared.
    let positions: Vec<[f64; 3]> = (0..n)
        .map(|k| [-20.0, -15.0, 10.0 + k as f64 * dz])
        .collect();
    let geometry =
        VolumeGeometry::from_slices(w, h, orientation, [sy, sx], positions.clone(), None, None);
    assert!(
        geometry.irregularity.shear_deg > 10.0,
        "{:?}",
        geometry.irregularity
    );
    let stored = |i: usize, j: usize, k: usize| (3 * i + 5 * j + 7 * k) as i32 - 1000;
    let voxels = Voxels::I16(Array3::from_shape_fn((n, h, w), |(k, j, i)| {
        stored(i, j, k) as i16
    }));
    let rescale = Rescale {
        slope: 0.5,
        intercept: -24.0,
    };
    let volume = volume_of(geometry, voxels, RescalePolicy::Uniform(rescale));
    let info = VolumeInfo::new(&volume).unwrap();

    // p = P0 + i sx X + j sy Y + k (P1 - P0): solve for (i, j, k).
    let x = DVec3::new(orientation[0], orientation[1], orientation[2]);
    let y = DVec3::new(orientation[3], orientation[4], orientation[5]);
    let p0 = DVec3::from(positions[0]);
    let step = DVec3::from(positions[1]) - p0;
    let inv = DMat3::from_cols(x * sx, y * sy, step).inverse();

    for plane in [
        Plane::Oblique([0.3, -0.4, 1.0]),
        Plane::Coronal,
        Plane::Sagittal,
    ] {
        let mut v = SliceView::fit(&info, plane, None, 96, 96).unwrap();
        v.interpolation = Interpolation::Trilinear;
        let r = cpu::resample(&info, &volume.voxels, &v).unwrap();
        let (mut checked, mut outside) = (0, 0);
        for py in 0..v.height {
            for px in 0..v.width {
                let p = v.patient_at_pixel(f64::from(px), f64::from(py));
                let ijk = inv * (p - p0);
                let lim = [w, h, n].map(|d| d as f64 - 1.0);
                let inner = (0..3).all(|a| ijk[a] >= 1e-3 && ijk[a] <= lim[a] - 1e-3);
                let far = (0..3).any(|a| ijk[a] < -0.5 - 1e-3 || ijk[a] > lim[a] + 0.5 + 1e-3);
                let got = r.value(px, py);
                if inner {
                    let expected = rescale.slope
                        * (3.0 * ijk.x + 5.0 * ijk.y + 7.0 * ijk.z - 1000.0)
                        + rescale.intercept;
                    let got = got.unwrap_or_else(|| panic!("{plane:?} ({px},{py}) has no sample"));
                    assert!(
                        (f64::from(got) - expected).abs() < 2e-2,
                        "{plane:?} pixel ({px},{py}) at {p:?}: {got} vs {expected}"
                    );
                    checked += 1;
                } else if far {
                    assert!(
                        got.is_none(),
                        "{plane:?} ({px},{py}) outside but shows {got:?}"
                    );
                    outside += 1;
                }
            }
        }
        assert!(
            checked > 1000 && outside > 100,
            "{plane:?}: {checked} checked, {outside} outside"
        );
    }
}

/// A slab along the slices, centred on one, combines exactly the slices within it, each read
/// on its own, as the maximum, minimum and mean of the voxel columns taken here from the
/// stored values (not from the renderer): a 10 mm slab of 2.5 mm slices centred on slice 40
/// is slices 38 to 42, and a voxel bright on slice 42 alone shows at its full value in the MIP
/// (ten samples 1 mm apart blended pairs of slices and never read one alone). The GPU draws
/// what the CPU does.
#[test]
fn a_slab_along_the_slices_combines_whole_slices() {
    let (w, h, n) = (16usize, 16usize, 60usize);
    let positions: Vec<[f64; 3]> = (0..n).map(|k| [0.0, 0.0, k as f64 * 2.5]).collect();
    let geometry = VolumeGeometry::from_slices(
        w,
        h,
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        [1.0, 1.0],
        positions,
        None,
        None,
    );
    let stored = |i: usize, j: usize, k: usize| ((i * 7 + j * 13 + k * 29) % 200) as i16 - 100;
    let mut array = Array3::from_shape_fn((n, h, w), |(k, j, i)| stored(i, j, k));
    array[[42, 6, 5]] = 3000;
    let volume = volume_of(
        geometry,
        Voxels::I16(array.clone()),
        RescalePolicy::Uniform(Rescale::IDENTITY),
    );
    let info = VolumeInfo::new(&volume).unwrap();
    // Pixel (px, py) centred on voxel (px, py) of slice 40 (z = 100 mm).
    let mut v = SliceView::fit(&info, Plane::Axial, Some(100.0), 16, 16).unwrap();
    v.center_mm = [7.5, 7.5, 100.0];
    v.pixel_mm = 1.0;
    v.slab_mm = 10.0;
    for mode in [SlabMode::Mip, SlabMode::MinIp, SlabMode::Average] {
        v.slab_mode = mode;
        let r = cpu::resample(&info, &volume.voxels, &v).unwrap();
        for py in 0..16 {
            for px in 0..16 {
                let column: Vec<f32> = (38..=42)
                    .map(|k| f32::from(array[[k, py as usize, px as usize]]))
                    .collect();
                let expected = match mode {
                    SlabMode::Mip => column.iter().copied().fold(f32::MIN, f32::max),
                    SlabMode::MinIp => column.iter().copied().fold(f32::MAX, f32::min),
                    SlabMode::Average => column.iter().sum::<f32>() / 5.0,
                };
                let got = r.value(px, py).expect("inside the volume");
                assert!(
                    (got - expected).abs() < 1e-3,
                    "{mode:?} ({px}, {py}): {got} vs {expected} of {column:?}"
                );
            }
        }
        if mode == SlabMode::Mip {
            assert_eq!(r.value(5, 6), Some(3000.0));
        }
        let Some(texture) = upload(&volume) else {
            continue;
        };
        let display = Display::new(Voi::linear(0.0, 400.0));
        assert_gpu_matches_cpu(
            &format!("whole-slices-{mode:?}"),
            &texture,
            &volume,
            &v,
            &display,
        );
    }
}

/// Uneven spacing and two missing slices: the slice table places every slice at its real
/// position. The stored value is 4 z (mm from the first slice) + 3i + 5j, so between two real
/// neighbouring slices the value is linear in z; inside the gap only points within half a
/// slice step of a real slice show data.
#[test]
fn cpu_reference_places_uneven_and_gappy_slices_exactly() {
    let zs = [0.0, 1.0, 2.0, 3.0, 4.5, 5.5, 6.5, 9.5, 10.5, 11.5, 12.5];
    let (w, h) = (24usize, 20usize);
    let positions: Vec<[f64; 3]> = zs.iter().map(|z| [0.0, 0.0, *z]).collect();
    let geometry = VolumeGeometry::from_slices(
        w,
        h,
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        [1.0, 1.0],
        positions,
        None,
        None,
    );
    assert!(geometry.irregularity.uneven_spacing);
    assert_eq!(geometry.irregularity.missing_slices, vec![(6, 2)]);
    let voxels = Voxels::U16(Array3::from_shape_fn((zs.len(), h, w), |(k, j, i)| {
        (zs[k] * 4.0) as u16 + (3 * i + 5 * j) as u16
    }));
    let volume = volume_of(geometry, voxels, RescalePolicy::Uniform(Rescale::IDENTITY));
    let info = VolumeInfo::new(&volume).unwrap();
    assert!(info.use_table);
    // Coronal plane through row j = 7 (y = 7 mm), 0.1 mm pixels along z.
    let v = SliceView {
        center_mm: [11.5, 7.0, 6.25],
        right: [1.0, 0.0, 0.0],
        down: [0.0, 0.0, -1.0],
        pixel_mm: 0.1,
        width: 24,
        height: 120,
        slab_mm: 0.0,
        slab_mode: SlabMode::Average,
        interpolation: Interpolation::Trilinear,
    };
    let r = cpu::resample(&info, &volume.voxels, &v).unwrap();
    let (mut in_gap, mut checked) = (0, 0);
    for py in 0..v.height {
        let p = v.patient_at_pixel(5.0, f64::from(py));
        let z = p.z;
        let got = r.value(5, py);
        let base = 3.0 * p.x + 5.0 * 7.0;
        if z > 7.0 + 1e-6 && z < 9.0 - 1e-6 {
            assert!(got.is_none(), "z {z}: inside the gap but shows {got:?}");
            in_gap += 1;
        } else if (6.5..=7.0).contains(&z) {
            // Within half a step of the last slice before the gap: that slice.
            let got = got.unwrap();
            assert!(
                (f64::from(got) - (base + 26.0)).abs() < 1e-3,
                "z {z}: {got}"
            );
            checked += 1;
        } else if z > 0.0 && z < 6.5 || z > 9.5 && z < 12.5 {
            let got = got.unwrap();
            assert!(
                (f64::from(got) - (base + 4.0 * z)).abs() < 1e-2,
                "z {z}: {got} vs {}",
                base + 4.0 * z
            );
            checked += 1;
        }
    }
    assert!(
        in_gap > 10 && checked > 80,
        "{in_gap} in gap, {checked} checked"
    );
}

#[test]
fn gpu_matches_cpu_on_the_synthetic_phantom_in_every_plane_and_mode() {
    let volume = phantom_volume(&small_phantom());
    let Some(texture) = upload(&volume) else {
        return;
    };
    let lung = Display::new(Voi::preset("lung").unwrap());
    let soft = Display::new(Voi::preset("mediastinum").unwrap());
    for (name, plane) in [
        ("axial", Plane::Axial),
        ("coronal", Plane::Coronal),
        ("sagittal", Plane::Sagittal),
        ("oblique", Plane::Oblique([0.4, -0.3, 1.0])),
        ("oblique-steep", Plane::Oblique([1.0, 1.0, 0.2])),
    ] {
        let mut v = view(&volume, plane, 200);
        assert_gpu_matches_cpu(
            &format!("phantom-{name}-trilinear"),
            &texture,
            &volume,
            &v,
            &soft,
        );
        v.interpolation = Interpolation::Nearest;
        // Nearest on oblique planes can flip at exact half-voxel ties; orthogonal planes have
        // none, so nearest is compared there.
        if !matches!(plane, Plane::Oblique(_)) {
            assert_gpu_matches_cpu(
                &format!("phantom-{name}-nearest"),
                &texture,
                &volume,
                &v,
                &lung,
            );
        }
    }
    // On a slice (the commonest frame: scrolling a stack in its own plane) the renderer reads
    // that slice alone; it must still equal the reference, on several slices and at a zoom.
    for k in [0.0, 13.0, 40.0, 79.0] {
        let z = volume.geometry.patient_from_voxel_affine([0.0, 0.0, k])[2];
        let info = VolumeInfo::new(&volume).unwrap();
        let mut v = SliceView::fit(&info, Plane::Axial, Some(z), 230, 170).unwrap();
        v.pixel_mm *= 0.6;
        assert_gpu_matches_cpu(
            &format!("phantom-on-slice-{k}"),
            &texture,
            &volume,
            &v,
            &soft,
        );
    }
    for (mode, thickness) in [
        (SlabMode::Mip, 10.0),
        (SlabMode::Mip, 30.0),
        (SlabMode::MinIp, 10.0),
        (SlabMode::Average, 15.0),
    ] {
        let mut v = view(&volume, Plane::Coronal, 160);
        v.slab_mm = thickness;
        v.slab_mode = mode;
        let cpu_image = assert_gpu_matches_cpu(
            &format!("phantom-slab-{mode:?}-{thickness}"),
            &texture,
            &volume,
            &v,
            &lung,
        );
        // The slab really combines several samples: it differs from the thin plane.
        if let Some(slab) = cpu_image {
            v.slab_mm = 0.0;
            let thin = cpu::render(&texture.info, &volume.voxels, &v, &lung).unwrap();
            assert!(
                slab.compare(&thin).unwrap().1 > 100,
                "{mode:?} slab equals the thin plane"
            );
        }
    }
}

/// A slice whose file failed to decode holds zeros (here a value no tissue has, to see it),
/// not the patient: no sample is made of it, on the GPU or the CPU. On the slice itself there
/// is no image; a reformat has no data where it would weigh in (one slice step either side,
/// trilinear) and the patient elsewhere; a probe there reads nothing, and a region over it
/// leaves it out.
#[test]
fn a_failed_slice_is_never_read_as_the_patient() {
    use overread::viewer::measure::{Measurement, Shape, Value};
    let mut volume = phantom_volume(&small_phantom());
    let failed = 40;
    let marker = match &mut volume.voxels {
        Voxels::U16(a) => {
            a.index_axis_mut(ndarray::Axis(0), failed).fill(4000);
            4000.0
        }
        Voxels::I16(a) => {
            a.index_axis_mut(ndarray::Axis(0), failed).fill(4000);
            4000.0
        }
        Voxels::Rgb(_) => unreachable!("a grey phantom"),
    };
    let rescale = volume.rescale.for_slice(failed);
    let marker_hu = (marker * rescale.slope + rescale.intercept) as f32;
    volume.failed_slices.push(imaging::decode::SliceFailure {
        k: failed,
        path: PathBuf::from("slice-41.dcm"),
        message: "JPEG: premature end of data".into(),
    });
    let info = VolumeInfo::new(&volume).unwrap();
    assert_eq!(info.slices[failed].failed, 1.0);
    let z = |k: usize| {
        volume
            .geometry
            .patient_from_voxel_affine([0.0, 0.0, k as f64])[2]
    };

    // On the failed slice: nothing, nearest or trilinear; on its neighbour, the patient.
    for interpolation in [Interpolation::Nearest, Interpolation::Trilinear] {
        let mut on = SliceView::fit(&info, Plane::Axial, Some(z(failed)), 64, 64).unwrap();
        on.interpolation = interpolation;
        let r = cpu::resample(&info, &volume.voxels, &on).unwrap();
        assert!((0..64).all(|y| (0..64).all(|x| r.value(x, y).is_none())));
        let mut next = SliceView::fit(&info, Plane::Axial, Some(z(failed + 1)), 64, 64).unwrap();
        next.interpolation = interpolation;
        let r = cpu::resample(&info, &volume.voxels, &next).unwrap();
        assert!((0..64).all(|y| (0..64).all(|x| r.value(x, y).is_some())));
    }

    // A hair off the next slice towards the failed one (where a stack off its axis by
    // rounding puts its own planes): that slice still, whole, on the CPU as on the GPU (whose
    // one-slice variant reads it alone; the CPU refused the whole plane for the failed one).
    let hair = z(failed + 1) + (z(failed) - z(failed + 1)) * 3e-6;
    let near = SliceView::fit(&info, Plane::Axial, Some(hair), 64, 64).unwrap();
    assert_eq!(near.interpolation, Interpolation::Trilinear);
    let r = cpu::resample(&info, &volume.voxels, &near).unwrap();
    assert!((0..64).all(|y| (0..64).all(|x| r.value(x, y).is_some())));
    if let Some(texture) = upload(&volume) {
        assert_gpu_matches_cpu(
            "next-to-a-failed-slice",
            &texture,
            &volume,
            &near,
            &Display::new(Voi::linear(40.0, 400.0)),
        );
    }

    // A coronal reformat: no value anywhere comes near the failed slice's zeros, and only the
    // rows within a slice step of it have no data.
    let coronal = SliceView::fit(&info, Plane::Coronal, None, 200, 200).unwrap();
    let r = cpu::resample(&info, &volume.voxels, &coronal).unwrap();
    let mut empty_rows = 0;
    for y in 0..200 {
        let row: Vec<Option<f32>> = (0..200).map(|x| r.value(x, y)).collect();
        assert!(row.iter().flatten().all(|v| (*v - marker_hu).abs() > 500.0));
        let p = coronal.patient_at_pixel(100.0, f64::from(y));
        let slices_away = (p[2] - z(failed)).abs() / volume.geometry.spacing_mm[2];
        // Rows beyond the stack's ends have no data anyway.
        let inside = p[2] > z(0).min(z(79)) && p[2] < z(0).max(z(79));
        if !inside {
            continue;
        }
        if row.iter().all(Option::is_none) {
            empty_rows += 1;
            assert!(
                slices_away < 1.0 + 1e-3,
                "row {y} is {slices_away} slices away"
            );
        } else {
            assert!(
                slices_away >= 1.0 - 1e-3,
                "row {y} is {slices_away} slices away"
            );
        }
    }
    assert!(
        empty_rows > 0,
        "the failed slice left no trace in the reformat"
    );

    // A probe on it reads nothing; a region across it leaves it out.
    let on_failed = |shape: Shape| Measurement {
        id: 1,
        shape,
        frame_of_reference_uid: None,
        stack_id: None,
    };
    let probe = on_failed(Shape::Probe {
        at: [0.0, -60.0, z(failed)],
    });
    assert_eq!(probe.value(&info, &volume.voxels), Value::Point(None));
    // A coronal ellipse 20 mm tall centred on the failed slice.
    let region = on_failed(Shape::Ellipse {
        center: [0.0, 0.0, z(failed)],
        semi_axis_1: [30.0, 0.0, 0.0],
        semi_axis_2: [0.0, 0.0, 10.0],
    });
    let Value::Region { max, samples, .. } = region.value(&info, &volume.voxels) else {
        panic!("not a region")
    };
    let whole = VolumeInfo::new(&Volume {
        failed_slices: Vec::new(),
        ..volume.clone()
    })
    .unwrap();
    let Value::Region {
        max: max_read,
        samples: all,
        ..
    } = region.value(&whole, &volume.voxels)
    else {
        panic!("not a region")
    };
    assert!(samples > 0 && samples < all, "{samples} of {all}");
    assert!(f64::from(marker_hu) - max > 500.0, "max {max}");
    assert!(
        (max_read - f64::from(marker_hu)).abs() < 1.0,
        "read as data: {max_read}"
    );

    // The GPU draws exactly what the CPU does.
    let Some(texture) = upload(&volume) else {
        return;
    };
    assert_eq!(texture.info.slices[failed].failed, 1.0);
    let soft = Display::new(Voi::preset("mediastinum").unwrap());
    for (name, plane) in [
        ("coronal", Plane::Coronal),
        ("oblique", Plane::Oblique([0.4, -0.3, 1.0])),
    ] {
        let v = view(&volume, plane, 200);
        assert_gpu_matches_cpu(
            &format!("failed-slice-{name}"),
            &texture,
            &volume,
            &v,
            &soft,
        );
    }
    let (ctx, renderer) = gpu().unwrap();
    for interpolation in [Interpolation::Nearest, Interpolation::Trilinear] {
        let mut on = SliceView::fit(&info, Plane::Axial, Some(z(failed)), 64, 64).unwrap();
        on.interpolation = interpolation;
        let gpu_image = renderer.render(ctx, &texture, &on, &soft).unwrap();
        let cpu_image = cpu::render(&info, &volume.voxels, &on, &soft).unwrap();
        assert_eq!(gpu_image.compare(&cpu_image).unwrap().0, 0);
        let mut slab = view(&volume, Plane::Coronal, 120);
        slab.slab_mm = 10.0;
        slab.slab_mode = SlabMode::Mip;
        slab.interpolation = interpolation;
        assert_gpu_matches_cpu("failed-slice-mip", &texture, &volume, &slab, &soft);
    }

    // As the app loads: the texture made before the load knew of the failure (no slice
    // failed in its table), filled slice by slice, then given the load's table at its end
    // (`with_table`, no voxels uploaded again): it draws what the CPU does with the failure.
    let mut unknowing = VolumeInfo::new(&volume).unwrap();
    unknowing.slices[failed].failed = 0.0;
    let early = VolumeTexture::new(ctx, renderer, Arc::new(unknowing)).unwrap();
    early
        .write_slices(ctx, &volume.voxels, 0..volume.geometry.dims[2])
        .unwrap();
    let on = SliceView::fit(&info, Plane::Axial, Some(z(failed)), 64, 64).unwrap();
    let before = renderer.render(ctx, &early, &on, &soft).unwrap();
    let cpu_image = cpu::render(&info, &volume.voxels, &on, &soft).unwrap();
    assert!(
        before.compare(&cpu_image).unwrap().0 > 0,
        "without the failure in its table the marker shows"
    );
    let known = early.with_table(ctx, Arc::new(info.clone())).unwrap();
    let after = renderer.render(ctx, &known, &on, &soft).unwrap();
    assert_eq!(after.compare(&cpu_image).unwrap().0, 0);
    let slab = {
        let mut v = view(&volume, Plane::Coronal, 120);
        v.slab_mm = 10.0;
        v.slab_mode = SlabMode::Mip;
        v
    };
    assert_gpu_matches_cpu("failed-slice-late-table", &known, &volume, &slab, &soft);
}

#[test]
fn gpu_matches_cpu_for_every_voi_function_lut_inversion_and_10_bit() {
    let volume = phantom_volume(&small_phantom());
    let Some(texture) = upload(&volume) else {
        return;
    };
    let v = view(&volume, Plane::Axial, 160);
    let mut displays = vec![
        Display::new(Voi::linear(40.0, 400.0)),
        Display::new(Voi::Window {
            center: 40.0,
            width: 400.0,
            function: VoiFunction::LinearExact,
        }),
        Display::new(Voi::Window {
            center: -200.0,
            width: 900.0,
            function: VoiFunction::Sigmoid,
        }),
        Display::new(Voi::Lut(VoiLut {
            first_mapped: -1024,
            bits: 12,
            data: (0..2048u32).map(|i| ((i * i) >> 10) as u16).collect(),
        })),
    ];
    let mut inverted = Display::new(Voi::linear(40.0, 400.0));
    inverted.monochrome1 = true;
    displays.push(inverted);
    let mut ten = Display::new(Voi::linear(40.0, 400.0));
    ten.depth = OutputDepth::Ten;
    displays.push(ten);
    for (n, d) in displays.iter().enumerate() {
        assert_gpu_matches_cpu(&format!("voi-{n}"), &texture, &volume, &v, d);
    }
}

#[test]
fn gpu_matches_cpu_on_tilted_uneven_and_gappy_synthetic_stacks() {
    let tilted = PhantomSpec {
        tilt_deg: 20.0,
        ..small_phantom()
    };
    let gappy = PhantomSpec {
        step_pattern: vec![1.0, 1.0, 1.6],
        drop: vec![30, 31, 50],
        ..small_phantom()
    };
    let display = Display::new(Voi::preset("mediastinum").unwrap());
    for (name, spec, table) in [("tilted", tilted, false), ("uneven-gappy", gappy, true)] {
        let volume = phantom_volume(&spec);
        let info = VolumeInfo::new(&volume).unwrap();
        assert_eq!(
            info.use_table, table,
            "{name}: {:?}",
            volume.geometry.irregularity
        );
        let Some(texture) = upload(&volume) else {
            return;
        };
        for plane in [
            Plane::Coronal,
            Plane::Sagittal,
            Plane::Oblique([0.2, 1.0, 0.5]),
        ] {
            let v = view(&volume, plane, 180);
            assert_gpu_matches_cpu(
                &format!("{name}-{plane:?}"),
                &texture,
                &volume,
                &v,
                &display,
            );
        }
    }
}

/// More slices than the 3D texture limit: slices are folded into tiles; more bytes than one
/// allocation: split into bricks. The image is the same.
#[test]
fn a_volume_deeper_than_the_texture_limit_renders_folded() {
    let volume = phantom_volume(&deep_phantom());
    let Some((ctx, renderer)) = gpu() else { return };
    let info = Arc::new(VolumeInfo::new(&volume).unwrap());
    // 150 slices under a limit of 100: two tiles of 75 layers side by side.
    let folded = VolumeTexture::with_limits(ctx, renderer, info.clone(), 100, u64::MAX).unwrap();
    let fold = folded.layout.fold;
    assert!(fold.tiles_x * fold.tiles_y > 1, "{fold:?}");
    assert_eq!(fold.depth, 75);
    folded
        .write_slices(ctx, &volume.voxels, 0..volume.geometry.dims[2])
        .unwrap();
    let display = Display::new(Voi::preset("lung").unwrap());
    for (name, v) in layout_views(&volume, &[0, 74, 75, 149]) {
        assert_gpu_matches_cpu(&format!("folded-{name}"), &folded, &volume, &v, &display);
    }
    assert_bricked_matches_cpu("bricked", &volume, 2, &display);
}

/// 150 slices of 48 x 48: deeper than a 3D texture limit of 100. Noisy, so that no two slices
/// are alike (a plane drawn from the wrong slice differs from the reference).
fn deep_phantom() -> PhantomSpec {
    PhantomSpec {
        columns: 48,
        rows: 48,
        slices: 150,
        pixel_mm: 7.0,
        spacing_mm: 2.0,
        noise_hu: 40.0,
        ..small_phantom()
    }
}

/// Planes that cross a folded or bricked layout: sagittal and oblique (every tile and brick in
/// one image), and axial planes on `slices` (the one-slice variant, which binds the slice's
/// brick alone and takes the slice's place in it from the CPU). The axial images must differ
/// from one another, or drawing from the wrong slice would go unseen.
fn layout_views(volume: &Volume, slices: &[usize]) -> Vec<(String, SliceView)> {
    let info = VolumeInfo::new(volume).unwrap();
    let mut views: Vec<(String, SliceView)> = [Plane::Sagittal, Plane::Oblique([0.1, 0.7, 0.7])]
        .into_iter()
        .map(|plane| (format!("{plane:?}"), view(volume, plane, 160)))
        .collect();
    let mut axial_images = Vec::new();
    for &k in slices {
        let z = volume
            .geometry
            .patient_from_voxel_affine([0.0, 0.0, k as f64])[2];
        let v = SliceView::fit(&info, Plane::Axial, Some(z), 160, 160).unwrap();
        let display = Display::new(Voi::preset("lung").unwrap());
        axial_images.push(cpu::render(&info, &volume.voxels, &v, &display).unwrap());
        views.push((format!("axial-slice-{k}"), v));
    }
    for (a, img_a) in axial_images.iter().enumerate() {
        for img_b in &axial_images[a + 1..] {
            let (max, _) = img_a.compare(img_b).unwrap();
            assert!(max > 1, "two of the slices {slices:?} look alike");
        }
    }
    views
}

/// A `deep_phantom` volume of `texel_bytes` a voxel renders as the CPU reference does, in two
/// bricked layouts: bricks of 120 slices, each folded into two tiles of 60 under a 3D limit of
/// 100; and three unfolded bricks of 50 (a read chooses among three).
fn assert_bricked_matches_cpu(name: &str, volume: &Volume, texel_bytes: u64, display: &Display) {
    let Some((ctx, renderer)) = gpu() else { return };
    let info = Arc::new(VolumeInfo::new(volume).unwrap());
    for (per_brick, bricks, folded) in [(120, 2, true), (50, 3, false)] {
        let bricked = VolumeTexture::with_limits(
            ctx,
            renderer,
            info.clone(),
            100,
            48 * 48 * texel_bytes * u64::from(per_brick),
        )
        .unwrap();
        assert_eq!(
            (bricked.layout.bricks, bricked.layout.slices_per_brick),
            (bricks, per_brick)
        );
        assert_eq!(
            bricked.layout.fold.tiles_x * bricked.layout.fold.tiles_y > 1,
            folded
        );
        bricked
            .write_slices(ctx, &volume.voxels, 0..volume.geometry.dims[2])
            .unwrap();
        // Each brick's first and last slice, and (folded) the first of each brick's second
        // tile.
        for (plane, v) in layout_views(volume, &[0, 49, 50, 60, 99, 100, 119, 120, 149]) {
            assert_gpu_matches_cpu(
                &format!("{name}-{bricks}-{plane}"),
                &bricked,
                volume,
                &v,
                display,
            );
        }
    }
}

/// A 5,000-slice stack renders with the device's own limits (in-plane size kept small so the
/// test stays light; the layout test in `render::kernel` covers 512 x 512 x 5,000).
#[test]
fn a_5000_slice_stack_renders() {
    let volume = phantom_volume(&PhantomSpec {
        columns: 64,
        rows: 64,
        slices: 5000,
        pixel_mm: 5.5,
        spacing_mm: 0.1,
        noise_hu: 40.0,
        ..small_phantom()
    });
    let Some(texture) = upload(&volume) else {
        return;
    };
    let display = Display::new(Voi::preset("lung").unwrap());
    for plane in [Plane::Coronal, Plane::Sagittal] {
        let v = view(&volume, plane, 128);
        assert_gpu_matches_cpu(&format!("5000-{plane:?}"), &texture, &volume, &v, &display);
    }
    // On single slices past the first tile of the fold (the one-slice variant).
    for k in [2047, 2048, 4321] {
        let z = volume
            .geometry
            .patient_from_voxel_affine([0.0, 0.0, k as f64])[2];
        let info = VolumeInfo::new(&volume).unwrap();
        let v = SliceView::fit(&info, Plane::Axial, Some(z), 128, 128).unwrap();
        assert_gpu_matches_cpu(&format!("5000-slice-{k}"), &texture, &volume, &v, &display);
    }
}

/// A volume still loading: slices not yet uploaded read as zero; the slices that arrived
/// already draw exactly.
#[test]
fn slices_uploaded_one_by_one_draw_as_they_arrive() {
    let volume = phantom_volume(&small_phantom());
    let Some((ctx, renderer)) = gpu() else { return };
    let info = Arc::new(VolumeInfo::new(&volume).unwrap());
    let texture = VolumeTexture::new(ctx, renderer, info.clone()).unwrap();
    // Voxels of another shape are refused, not written or panicked on.
    let other = phantom_volume(&PhantomSpec {
        slices: 3,
        ..small_phantom()
    });
    assert!(texture.write_slices(ctx, &other.voxels, 0..3).is_err());
    let k = 40;
    let Voxels::U16(a) = &volume.voxels else {
        panic!("phantom is unsigned")
    };
    let slice: Vec<u16> = a.index_axis(ndarray::Axis(0), k).iter().copied().collect();
    texture.write_slice_values(ctx, k, &slice);
    let display = Display::new(Voi::preset("lung").unwrap());
    let axial_mm = volume.geometry.slice_positions_mm[k][2];
    let mut axial = SliceView::fit(&info, Plane::Axial, Some(axial_mm), 128, 128).unwrap();
    axial.interpolation = Interpolation::Nearest;
    assert_gpu_matches_cpu("progressive-axial", &texture, &volume, &axial, &display);
    let coronal = view(&volume, Plane::Coronal, 128);
    let partial = renderer.render(ctx, &texture, &coronal, &display).unwrap();
    let full = cpu::render(&info, &volume.voxels, &coronal, &display).unwrap();
    assert!(
        partial.compare(&full).unwrap().0 > 1,
        "missing slices must not draw"
    );
    texture
        .write_slices(ctx, &volume.voxels, 0..volume.geometry.dims[2])
        .unwrap();
    assert_gpu_matches_cpu(
        "progressive-complete",
        &texture,
        &volume,
        &coronal,
        &display,
    );
}

fn load_dir(dir: &std::path::Path) -> (Volume, String) {
    let report = imaging::scan(&[dir.to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    let volume = imaging::load_stack(stack, &Default::default(), &|_| {}).unwrap();
    assert!(volume.failed_slices.is_empty());
    (volume, stack.format.photometric_interpretation.clone())
}

#[test]
fn gpu_matches_cpu_on_real_ct_and_mr_series() {
    let Some(root) = shared_dicom() else { return };
    let cases = [
        (
            "ge-tilt-uneven-ct",
            "ct/ge_hispeed_tilt_nonuniform/dicom",
            "bone",
        ),
        (
            "gantry-tilt-ct",
            "ct/dicom2nifti_ct_edge_cases/dicom/gantrytilting/001",
            // Four slices of air and noise (-1024..-770 HU): the full range shows them.
            "",
        ),
        (
            "missing-slices-ct",
            "ct/dicom2nifti_ct_edge_cases/dicom/sliceincrement/002",
            "",
        ),
        ("siemens-mr", "mr/siemens_12bit", ""),
    ];
    for (name, rel, preset) in cases {
        let dir = root.join(rel);
        let (volume, photometric) = load_dir(&dir);
        let Some(texture) = upload(&volume) else {
            return;
        };
        let mut display = match Voi::preset(preset) {
            Some(v) => Display::new(v),
            None => {
                let s = imaging::stats::voxel_range(&volume);
                Display::new(Voi::linear(
                    (s.min_modality + s.max_modality) / 2.0,
                    (s.max_modality - s.min_modality).max(1.0),
                ))
            }
        };
        display.monochrome1 = photometric == "MONOCHROME1";
        for (plane_name, plane) in [
            ("axial", Plane::Axial),
            ("coronal", Plane::Coronal),
            ("sagittal", Plane::Sagittal),
            ("oblique", Plane::Oblique([0.3, 0.5, 1.0])),
        ] {
            let v = view(&volume, plane, 192);
            assert_gpu_matches_cpu(
                &format!("{name}-{plane_name}"),
                &texture,
                &volume,
                &v,
                &display,
            );
        }
        let mut slab = view(&volume, Plane::Coronal, 192);
        slab.slab_mm = 10.0;
        slab.slab_mode = SlabMode::Mip;
        assert_gpu_matches_cpu(&format!("{name}-mip10"), &texture, &volume, &slab, &display);
    }
}

/// A VOI LUT Sequence in the files is read (descriptor, data, explanation) and drives the
/// display: modality value v shows LUT entry v - first mapped, clamped to the table.
#[test]
fn a_files_voi_lut_is_read_and_applied() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;
    use imaging::synth::write_series;
    use overread::render::voi::{DisplayParams, voi_normalized};

    let dir = crate::support::tempdir();
    let spec = PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 3,
        pixel_mm: 11.0,
        ..small_phantom()
    };
    write_series(&spec, dir.path()).unwrap();
    let data: Vec<u16> = (0..2048u32).map(|n| (2 * n).min(4095) as u16).collect();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut obj = dicom_object::open_file(&path).unwrap();
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::LUT_DESCRIPTOR,
                VR::US,
                PrimitiveValue::U16(vec![2048u16, 0, 12].into()),
            ),
            DataElement::new(
                tags::LUT_EXPLANATION,
                VR::LO,
                PrimitiveValue::from("test ramp"),
            ),
            DataElement::new(
                tags::LUT_DATA,
                VR::US,
                PrimitiveValue::U16(data.clone().into()),
            ),
        ]);
        obj.put(DataElement::new(
            tags::VOILUT_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        ));
        obj.write_to_file(&path).unwrap();
    }
    let report = imaging::scan(&[dir.path().to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    let lut = stack.slices[1]
        .voi_lut
        .as_deref()
        .expect("the VOI LUT was not read");
    assert_eq!((lut.first_mapped, lut.bits, lut.data.len()), (0, 12, 2048));
    assert_eq!(lut.explanation.as_deref(), Some("test ramp"));
    let (p, table) = DisplayParams::new(&Display::new(Voi::from_lut(lut)));
    for (hu, entry) in [
        (-1000.0, 0.0),
        (40.0, 80.0),
        (900.0, 1800.0),
        (3000.0, 4094.0),
    ] {
        let y = voi_normalized(&p, &table, hu);
        assert!((y - entry / 4095.0).abs() < 1e-6, "{hu} HU: {y}");
    }

    // (3000 HU is above the table: the last entry, 2 x 2047.)

    // The first value mapped written as US for HU input (64512 = -1024 as 16 bits, PS3.3
    // C.11.2.1.1): read as -1024, so -1024 HU shows the first entry and 0 HU entry 1024
    // (read as 64512, every voxel fell below the table: a flat image).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut obj = dicom_object::open_file(&path).unwrap();
        let mut seq = obj
            .element(tags::VOILUT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .to_vec();
        seq[0].put(DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16(vec![2048u16, 64512, 12].into()),
        ));
        obj.put(DataElement::new(
            tags::VOILUT_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(seq),
        ));
        obj.write_to_file(&path).unwrap();
    }
    let report = imaging::scan(&[dir.path().to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    let lut = stack.slices[1].voi_lut.as_deref().unwrap();
    assert_eq!(lut.first_mapped, -1024);
    let (p, table) = DisplayParams::new(&Display::new(Voi::from_lut(lut)));
    for (hu, entry) in [(-1024.0, 0.0), (0.0, 2048.0), (-2000.0, 0.0)] {
        let y = voi_normalized(&p, &table, hu);
        assert!((y - entry / 4095.0).abs() < 1e-6, "{hu} HU: {y}");
    }

    // An empty VOI LUT item (pydicom's JPEG lossless sample has one) is no LUT, and no panic.
    if let Some(root) = shared_dicom() {
        let path = root.join("codecs/pydicom_misc/dicom/jpeg/JPEGLosslessP14SV1_1s_1f_u_16_16.dcm");
        let report = imaging::scan(&[path]);
        let patients = imaging::group(&report.instances);
        let stack = imaging::default_stack(&patients).unwrap();
        assert!(stack.slices[0].voi_lut.is_none());
    }
}

/// An enhanced CT keeps its rescale in the functional groups (intercept -1024 there, none at
/// the top level): a top-level VOI LUT whose first value mapped is written as US 64512 is
/// -1024 for that HU input too. It was read from the top-level attributes only: 64512, every
/// voxel below the table, a flat image.
#[test]
fn an_enhanced_objects_voi_lut_takes_its_sign_from_the_frames_rescale() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;
    use imaging::synth::write_series;

    let dir = crate::support::tempdir();
    let spec = PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 3,
        enhanced: true,
        ..small_phantom()
    };
    write_series(&spec, dir.path()).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut obj = dicom_object::open_file(&files[0]).unwrap();
    // As the Enhanced CT IOD has it: no top-level rescale (PS3.3 A.38.1).
    for tag in [
        tags::RESCALE_INTERCEPT,
        tags::RESCALE_SLOPE,
        tags::RESCALE_TYPE,
    ] {
        obj.remove_element(tag);
    }
    let item = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            PrimitiveValue::U16(vec![2048u16, 64512, 12].into()),
        ),
        DataElement::new(
            tags::LUT_DATA,
            VR::US,
            PrimitiveValue::U16((0..2048u16).map(|n| 2 * n).collect()),
        ),
    ]);
    obj.put(DataElement::new(
        tags::VOILUT_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    obj.write_to_file(&files[0]).unwrap();
    let report = imaging::scan(&[dir.path().to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    assert_eq!(stack.slices.len(), 3);
    for slice in &stack.slices {
        assert_eq!(slice.rescale.intercept, -1024.0);
        let lut = slice.voi_lut.as_deref().expect("the VOI LUT was not read");
        assert_eq!((lut.first_mapped, lut.data.len()), (-1024, 2048));
    }
}

/// The ends of a slice-table stack: data reaches half the smallest slice step beyond the first
/// and last slices and no further, whatever the spacing next to the ends (here a gap right
/// after the first slice).
#[test]
fn slice_table_stacks_end_half_a_step_beyond_their_last_slices() {
    let zs = [0.0, 3.75, 5.0, 6.25, 7.5];
    let positions: Vec<[f64; 3]> = zs.iter().map(|z| [0.0, 0.0, *z]).collect();
    let geometry = VolumeGeometry::from_slices(
        8,
        8,
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        [1.0, 1.0],
        positions,
        None,
        None,
    );
    let volume = volume_of(
        geometry,
        Voxels::U16(Array3::from_elem((zs.len(), 8, 8), 100u16)),
        RescalePolicy::Uniform(Rescale::IDENTITY),
    );
    let info = VolumeInfo::new(&volume).unwrap();
    assert!(info.use_table);
    for (z, inside) in [
        (-1.8, false),
        (-0.7, false),
        (-0.5, true),
        (1.0, false),
        (8.0, true),
        (8.2, false),
    ] {
        let v = SliceView {
            center_mm: [3.0, 3.0, z],
            right: [1.0, 0.0, 0.0],
            down: [0.0, 1.0, 0.0],
            pixel_mm: 1.0,
            width: 1,
            height: 1,
            slab_mm: 0.0,
            slab_mode: SlabMode::Average,
            interpolation: Interpolation::Trilinear,
        };
        let got = cpu::resample(&info, &volume.voxels, &v)
            .unwrap()
            .value(0, 0);
        assert_eq!(got.is_some(), inside, "z = {z}: {got:?}");
    }
}

/// Read a 4-byte-per-texel texture back (rows unpadded).
fn read_texture(ctx: &GpuContext, texture: &wgpu::Texture) -> Vec<[u8; 4]> {
    let (w, h) = (texture.width(), texture.height());
    let row =
        (w * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: u64::from(row * h),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: Some(h),
            },
        },
        texture.size(),
    );
    ctx.queue.submit([encoder.finish()]);
    buffer.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    let data = buffer.get_mapped_range(..).unwrap();
    data.chunks_exact(row as usize)
        .flat_map(|r| r[..(w * 4) as usize].chunks_exact(4))
        .map(|p| [p[0], p[1], p[2], p[3]])
        .collect()
}

/// The workstation draws a view's display pass straight into its window, into the view's
/// rectangle of a larger target (an egui paint callback): every pixel must be the same grey
/// level as the offscreen image (which matches the CPU reference, above), in each format a
/// window may have (8-bit RGBA or BGRA, sRGB-encoded, 10-bit), and nothing outside the
/// rectangle may change.
#[test]
fn a_view_drawn_into_a_window_equals_its_offscreen_image_in_every_format() {
    let volume = phantom_volume(&small_phantom());
    let Some(texture) = upload(&volume) else {
        return;
    };
    let (ctx, renderer) = gpu().unwrap();
    let v = view(&volume, Plane::Coronal, 150);
    let (w, h) = (v.width, v.height);
    let (left, top) = (17u32, 11u32);
    for (format, depth) in [
        (wgpu::TextureFormat::Rgba8Unorm, OutputDepth::Eight),
        (wgpu::TextureFormat::Bgra8Unorm, OutputDepth::Eight),
        (wgpu::TextureFormat::Rgba8UnormSrgb, OutputDepth::Eight),
        (wgpu::TextureFormat::Rgb10a2Unorm, OutputDepth::Ten),
    ] {
        let mut display = Display::new(Voi::linear(-300.0, 1400.0));
        display.depth = depth;
        let mut target = ViewTarget::new(ctx, w, h, depth);
        renderer.resample(ctx, &texture, &v, &mut target).unwrap();
        renderer.display(ctx, &display, &mut target).unwrap();
        let expected = target.read(ctx).unwrap();
        let distinct: std::collections::HashSet<u16> = expected.pixels.iter().copied().collect();
        assert!(distinct.len() > 3, "the offscreen image is nearly uniform");

        let window = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("window"),
            size: wgpu::Extent3d {
                width: w + 37,
                height: h + 23,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let draw = renderer
            .display_on_screen(ctx, &display, &target, format)
            .unwrap();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let view = window.create_view(&Default::default());
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: None,
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        // A marker colour that no grey level has.
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: 1.0,
                            g: 0.0,
                            b: 0.0,
                            a: 1.0,
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_viewport(left as f32, top as f32, w as f32, h as f32, 0.0, 1.0);
            draw.draw(&mut pass);
        }
        ctx.queue.submit([encoder.finish()]);
        let texels = read_texture(ctx, &window);
        let width = w + 37;
        let mut wrong = 0;
        for (n, t) in texels.iter().enumerate() {
            let (x, y) = (n as u32 % width, n as u32 / width);
            let inside = (left..left + w).contains(&x) && (top..top + h).contains(&y);
            let grey = match format {
                wgpu::TextureFormat::Rgb10a2Unorm => {
                    let bits = u32::from_le_bytes(*t);
                    let (r, g, b) = (bits & 0x3ff, (bits >> 10) & 0x3ff, (bits >> 20) & 0x3ff);
                    (r == g && g == b).then_some(r as u16)
                }
                _ => (t[0] == t[1] && t[1] == t[2]).then_some(u16::from(t[0])),
            };
            let ok = if inside {
                grey == Some(expected.pixels[((y - top) * w + (x - left)) as usize])
            } else {
                // Untouched: the marker (red in RGBA order, blue in BGRA's bytes).
                grey.is_none()
            };
            if !ok {
                wrong += 1;
            }
        }
        assert_eq!(
            wrong, 0,
            "{format:?}: {wrong} pixels differ from the offscreen image"
        );
    }
}

/// Resident memory of this process, bytes (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Scrolling and windowing draw new parameters every frame; memory must not grow with the
/// frames. lavapipe (Mesa 22.3) compiled a shader variant for the values of any uniform that a
/// branch or loop condition read alone, at every draw, and never freed it: 0.5 MB a frame
/// (a 5,000-slice reading grew 1.4 GB). 400 frames here would grow 200 MB that way.
#[test]
fn memory_does_not_grow_with_frames() {
    // In a process of its own: the other tests of this binary run in parallel threads, and
    // their volumes come and go in the same resident memory.
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "render::memory_frames_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    if run.status.success() && stdout.contains("MEMORY SKIPPED") {
        eprintln!("SKIPPED: {stdout}");
        return;
    }
    assert!(
        run.status.success() && stdout.contains("MEMORY CHECKED"),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The process `memory_does_not_grow_with_frames` runs (alone in its process).
#[test]
#[ignore = "run by memory_does_not_grow_with_frames in a process of its own"]
fn memory_frames_process() {
    let volume = phantom_volume(&small_phantom());
    let Some(texture) = upload(&volume) else {
        println!("MEMORY SKIPPED: no software adapter");
        return;
    };
    let (ctx, renderer) = gpu().unwrap();
    let info = VolumeInfo::new(&volume).unwrap();
    let Some(_) = resident_bytes() else {
        println!("MEMORY SKIPPED: no /proc/self/status here");
        return;
    };
    let frame = |n: usize| {
        let k = (n % 80) as f64;
        let z = volume.geometry.patient_from_voxel_affine([0.0, 0.0, k])[2];
        let plane = if n.is_multiple_of(2) {
            Plane::Axial
        } else {
            Plane::Coronal
        };
        let v = SliceView::fit(&info, plane, Some(z + 0.3 * (n % 3) as f64), 64, 64).unwrap();
        let mut target = ViewTarget::new(ctx, v.width, v.height, OutputDepth::Eight);
        renderer.resample(ctx, &texture, &v, &mut target).unwrap();
        let display = Display::new(Voi::linear(40.0 + n as f64, 400.0 + n as f64));
        renderer.display(ctx, &display, &mut target).unwrap();
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
    };
    // Pipelines, allocator pools and caches fill during the first frames.
    for n in 0..100 {
        frame(n);
    }
    let before = resident_bytes().unwrap();
    for n in 100..500 {
        frame(n);
    }
    let grown = resident_bytes().unwrap().saturating_sub(before);
    assert!(
        grown < 40 << 20,
        "400 frames grew resident memory by {} MB",
        grown >> 20
    );
    println!("MEMORY CHECKED: {} MB over 400 frames", grown >> 20);
}

/// The phantom painted in colour: each channel a different function of its HU, so a swapped
/// or dropped channel shows.
fn colour_phantom(spec: &PhantomSpec) -> Volume {
    let grey = phantom_volume(spec);
    let Voxels::U16(stored) = &grey.voxels else {
        panic!("the phantom is unsigned")
    };
    let rgb = stored.mapv(|v| {
        let hu = i32::from(v) - 1024;
        [
            ((hu + 1000) / 8).clamp(0, 255) as u8,
            ((hu + 200) / 2).clamp(0, 255) as u8,
            (255 - (hu + 1000) / 6).clamp(0, 255) as u8,
        ]
    });
    volume_of(
        grey.geometry.clone(),
        Voxels::Rgb(rgb),
        RescalePolicy::Uniform(Rescale::IDENTITY),
    )
}

/// Colour volumes: the GPU equals the CPU reference (one level a channel) in every plane,
/// interpolation and slab mode, inverted and at 10 bits, on a tilted phantom and on a real
/// oblique RGB series; and the CPU reference shows a voxel's own colour at its centre.
#[test]
fn colour_volumes_render_the_same_on_gpu_and_cpu() {
    let spec = PhantomSpec {
        tilt_deg: 12.0,
        ..small_phantom()
    };
    let volume = colour_phantom(&spec);
    let info = VolumeInfo::new(&volume).unwrap();
    assert!(info.colour);
    // Analytic: nearest neighbour on a slice at the stack's own pixel size gives the voxels.
    let z = volume.geometry.patient_from_voxel_affine([0.0, 0.0, 30.0]);
    let mut on_slice = SliceView::fit(&info, Plane::Axial, Some(z[2]), 128, 128).unwrap();
    on_slice.interpolation = Interpolation::Nearest;
    let r = cpu::resample(&info, &volume.voxels, &on_slice).unwrap();
    let colour = r.colour.as_ref().unwrap();
    let mut checked = 0;
    for (n, [red, green, blue, coverage]) in colour.iter().enumerate() {
        if *coverage == 0.0 {
            continue;
        }
        let (x, y) = ((n % 128) as f64 + 0.5, (n / 128) as f64 + 0.5);
        let p = DVec3::from(on_slice.center_mm)
            + DVec3::from(on_slice.right) * (x - 64.0) * on_slice.pixel_mm
            + DVec3::from(on_slice.down) * (y - 64.0) * on_slice.pixel_mm;
        let v = info.voxel_from_patient.transform_point3(p).to_array();
        let [i, j, k] = v.map(|c| c.round() as usize);
        if (v[0] - v[0].round()).abs() < 0.3 && (v[1] - v[1].round()).abs() < 0.3 {
            let expected = volume.voxels.rgb(i, j, k).unwrap();
            assert_eq!([*red, *green, *blue], expected.map(f32::from), "pixel {n}");
            checked += 1;
        }
    }
    assert!(
        checked > 1000,
        "only {checked} pixels fell near voxel centres"
    );

    let Some(texture) = upload(&volume) else {
        return;
    };
    let plain = Display::new(Voi::linear(0.0, 1.0));
    let mut inverted = plain.clone();
    inverted.invert = true;
    let mut ten = plain.clone();
    ten.depth = OutputDepth::Ten;
    for (name, plane) in [
        ("axial", Plane::Axial),
        ("coronal", Plane::Coronal),
        ("oblique", Plane::Oblique([0.4, -0.3, 1.0])),
    ] {
        let mut v = view(&volume, plane, 160);
        let image =
            assert_gpu_matches_cpu(&format!("colour-{name}"), &texture, &volume, &v, &plain)
                .unwrap();
        assert!(image.colour.is_some());
        assert_gpu_matches_cpu(
            &format!("colour-{name}-inv"),
            &texture,
            &volume,
            &v,
            &inverted,
        );
        assert_gpu_matches_cpu(&format!("colour-{name}-10bit"), &texture, &volume, &v, &ten);
        v.interpolation = Interpolation::Nearest;
        if !matches!(plane, Plane::Oblique(_)) {
            assert_gpu_matches_cpu(
                &format!("colour-{name}-nearest"),
                &texture,
                &volume,
                &v,
                &plain,
            );
        }
    }
    // On a slice of the stack, in its own orientation (the one-slice reading), zoomed.
    for k in [0.0, 21.0, 79.0] {
        let z = volume.geometry.patient_from_voxel_affine([0.0, 0.0, k]);
        let mut v = SliceView::fit(&info, Plane::Axial, None, 170, 130).unwrap();
        v.right = volume.geometry.row_direction;
        v.down = volume.geometry.column_direction;
        v.center_mm =
            (DVec3::from(z) + DVec3::from(v.right) * 60.0 + DVec3::from(v.down) * 70.0).to_array();
        v.pixel_mm *= 0.7;
        assert_gpu_matches_cpu(
            &format!("colour-on-slice-{k}"),
            &texture,
            &volume,
            &v,
            &plain,
        );
    }
    for mode in [SlabMode::Mip, SlabMode::MinIp, SlabMode::Average] {
        let mut v = view(&volume, Plane::Coronal, 120);
        v.slab_mm = 12.0;
        v.slab_mode = mode;
        assert_gpu_matches_cpu(
            &format!("colour-slab-{mode:?}"),
            &texture,
            &volume,
            &v,
            &plain,
        );
    }

    // Folded into tiles and split into bricks, as a long colour stack would be, at 4 bytes a
    // texel (the grey test's layout).
    assert_bricked_matches_cpu(
        "colour-bricked",
        &colour_phantom(&deep_phantom()),
        4,
        &plain,
    );

    let Some(root) = shared_dicom() else { return };
    let report = imaging::scan(&[root.join("mr/dicom2nifti_multivendor/dicom/generic/rgb/001")]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    let real = imaging::load_stack(stack, &Default::default(), &|_| {}).unwrap();
    let texture = upload(&real).unwrap();
    for plane in [Plane::Axial, Plane::Coronal] {
        let v = view(&real, plane, 150);
        assert_gpu_matches_cpu(
            &format!("colour-real-{plane:?}"),
            &texture,
            &real,
            &v,
            &plain,
        );
    }
    // In the stack's own (oblique) orientation, on its slices, as a viewer opens it.
    let info = VolumeInfo::new(&real).unwrap();
    for k in 0..4 {
        let mut v = SliceView::fit(&info, Plane::Axial, None, 300, 400).unwrap();
        v.right = real.geometry.row_direction;
        v.down = real.geometry.column_direction;
        v.center_mm = real
            .geometry
            .patient_from_voxel_affine([25.5, 38.0, k as f64]);
        assert_gpu_matches_cpu(
            &format!("colour-real-slice-{k}"),
            &texture,
            &real,
            &v,
            &plain,
        );
    }
}
