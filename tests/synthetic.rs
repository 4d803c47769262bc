//! Synthetic series test what real data lacks: every voxel of a loaded phantom must hold the
//! phantom's value at that voxel's patient position, for tilted, uneven, gappy, 4D and
//! multi-frame series and for every transfer syntax the synthesizer writes.
//!
//! The phantom is analytic in patient space (`phantom_hu(spec, p)`), so this checks geometry
//! and values together: a loader that ignored the tilt or the real slice positions would read
//! anatomy from the wrong place.

use std::path::Path;

use imaging::synth::{PhantomSpec, SynthSyntax, phantom_hu, phantom_slice, write_series};
use imaging::{self, Patient, Stack, Volume, stats::voxel_stats};

use crate::support::tempdir;

fn small(spec: PhantomSpec) -> PhantomSpec {
    PhantomSpec {
        columns: 96,
        rows: 96,
        pixel_mm: 3.5,
        noise_hu: 0.0,
        ..spec
    }
}

/// Four slices of 48 x 48 at 8 mm: the whole body and the air around it (stored air 24, soft
/// tissue 1069, bone 1324), no noise.
fn coarse() -> PhantomSpec {
    PhantomSpec {
        columns: 48,
        rows: 48,
        pixel_mm: 8.0,
        slices: 4,
        noise_hu: 0.0,
        ..PhantomSpec::default()
    }
}

/// Every file in `dir` opened, edited by `f` and written back.
fn edit_each(dir: &Path, mut f: impl FnMut(&mut dicom_object::DefaultDicomObject)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut obj = dicom_object::open_file(&path).unwrap();
        f(&mut obj);
        obj.write_to_file(&path).unwrap();
    }
}

/// Put a US value into `obj`.
fn put_us(obj: &mut dicom_object::DefaultDicomObject, tag: dicom_core::Tag, value: u16) {
    obj.put(dicom_core::DataElement::new(
        tag,
        dicom_core::VR::US,
        dicom_core::PrimitiveValue::from(value),
    ));
}

fn scan_group(dir: &Path) -> Vec<Patient> {
    let report = imaging::scan(&[dir.to_path_buf()]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    imaging::group(&report.instances)
}

fn load(stack: &Stack) -> Volume {
    let v = imaging::load_stack(stack, &Default::default(), &|_| {}).unwrap();
    assert!(v.failed_slices.is_empty(), "{:?}", v.failed_slices);
    v
}

/// Every voxel's HU equals the phantom at `patient_from_voxel_exact` of that voxel.
fn assert_matches_phantom(spec: &PhantomSpec, volume: &Volume, phase: usize) {
    let [nx, ny, nz] = volume.geometry.dims;
    let mut wrong = 0;
    for k in 0..nz {
        let r = volume.rescale.for_slice(k);
        for j in 0..ny {
            for i in 0..nx {
                let p = volume
                    .geometry
                    .patient_from_voxel_exact([i as f64, j as f64, k as f64]);
                let expected = phantom_hu(spec, p, phase);
                let hu = r.apply(f64::from(volume.voxels.get(i, j, k).unwrap()));
                if (hu - expected).abs() > 1e-9 {
                    wrong += 1;
                }
            }
        }
    }
    assert_eq!(
        wrong,
        0,
        "{}: {wrong} voxels differ from the phantom",
        spec.name()
    );
}

#[test]
fn tilted_phantom_is_placed_exactly() {
    let dir = tempdir();
    let spec = small(PhantomSpec {
        slices: 24,
        spacing_mm: 2.5,
        tilt_deg: 15.0,
        ..PhantomSpec::default()
    });
    write_series(&spec, dir.path()).unwrap();
    let patients = scan_group(dir.path());
    let stack = imaging::default_stack(&patients).unwrap();
    let g = &stack.geometry;
    // Positions and orientations are written as DS with 6 decimals (PS3.5 allows 16 characters).
    assert!(
        (g.irregularity.shear_deg - 15.0).abs() < 1e-4,
        "{:?}",
        g.irregularity
    );
    assert!((g.spacing_mm[2] - 2.5 * 15f64.to_radians().cos()).abs() < 1e-5);
    let volume = load(stack);
    assert_matches_phantom(&spec, &volume, 0);
    // The nodule (30 HU, 10 mm) is found where the phantom put it.
    let c = spec.nodule_centre_mm(0);
    let hits = (0..g.dims[2])
        .flat_map(|k| (0..g.dims[1]).flat_map(move |j| (0..g.dims[0]).map(move |i| (i, j, k))))
        .filter(|&(i, j, k)| {
            let p = volume
                .geometry
                .patient_from_voxel_exact([i as f64, j as f64, k as f64]);
            let d = ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2)).sqrt();
            d < 3.0
                && volume
                    .rescale
                    .for_slice(k)
                    .apply(f64::from(volume.voxels.get(i, j, k).unwrap()))
                    == 30.0
        });
    assert!(hits.count() > 0, "no nodule voxel near its centre");
}

#[test]
fn uneven_and_missing_slices_are_reported_and_placed_exactly() {
    let dir = tempdir();
    let spec = small(PhantomSpec {
        slices: 20,
        spacing_mm: 2.0,
        step_pattern: vec![1.0, 1.0, 1.5],
        drop: vec![7, 13],
        ..PhantomSpec::default()
    });
    write_series(&spec, dir.path()).unwrap();
    let patients = scan_group(dir.path());
    let stack = imaging::default_stack(&patients).unwrap();
    let irr = &stack.geometry.irregularity;
    assert_eq!(stack.geometry.dims[2], 18);
    assert!(irr.uneven_spacing);
    assert_eq!(irr.missing_slices.len(), 2, "{irr:?}");
    let volume = load(stack);
    assert_matches_phantom(&spec, &volume, 0);
}

#[test]
fn four_d_series_splits_into_one_stack_per_time_point() {
    let dir = tempdir();
    let spec = small(PhantomSpec {
        slices: 12,
        spacing_mm: 3.0,
        phases: 3,
        ..PhantomSpec::default()
    });
    write_series(&spec, dir.path()).unwrap();
    let patients = scan_group(dir.path());
    let stacks: Vec<&Stack> = patients.iter().flat_map(Patient::stacks).collect();
    assert_eq!(stacks.len(), 3);
    for (t, stack) in stacks.iter().enumerate() {
        assert_eq!(stack.label.temporal_position, Some(t as i64 + 1));
        assert_eq!(stack.geometry.dims[2], 12);
        assert_matches_phantom(&spec, &load(stack), t);
    }
}

#[test]
fn enhanced_multiframe_equals_classic_series() {
    let classic_dir = tempdir();
    let enhanced_dir = tempdir();
    let spec = small(PhantomSpec {
        slices: 16,
        spacing_mm: 2.0,
        tilt_deg: -10.0,
        ..PhantomSpec::default()
    });
    write_series(&spec, classic_dir.path()).unwrap();
    write_series(
        &PhantomSpec {
            enhanced: true,
            ..spec.clone()
        },
        enhanced_dir.path(),
    )
    .unwrap();
    let classic = load(imaging::default_stack(&scan_group(classic_dir.path())).unwrap());
    let enhanced_patients = scan_group(enhanced_dir.path());
    let enhanced_stack = imaging::default_stack(&enhanced_patients).unwrap();
    assert_eq!(enhanced_stack.slices.len(), 16);
    assert!(
        enhanced_stack
            .slices
            .iter()
            .all(|s| s.path == enhanced_stack.slices[0].path)
    );
    let enhanced = load(enhanced_stack);
    assert_eq!(voxel_stats(&enhanced).sha256, voxel_stats(&classic).sha256);
    assert_eq!(
        enhanced.geometry.slice_positions_mm,
        classic.geometry.slice_positions_mm
    );
    assert_matches_phantom(&spec, &enhanced, 0);
}

/// `spec` written in `syntax` into `dir`, scanned (every file in that syntax) and loaded.
fn write_and_load(spec: &PhantomSpec, syntax: SynthSyntax, dir: &Path) -> Volume {
    write_series(
        &PhantomSpec {
            syntax,
            ..spec.clone()
        },
        dir,
    )
    .unwrap();
    let patients = scan_group(dir);
    let stack = imaging::default_stack(&patients).unwrap();
    for slice in &stack.slices {
        assert_eq!(slice.transfer_syntax_uid, syntax.uid(), "{syntax:?}");
    }
    load(stack)
}

#[test]
fn every_synthesized_syntax_loads_to_the_same_voxels() {
    let base = small(PhantomSpec {
        slices: 6,
        spacing_mm: 5.0,
        noise_hu: 8.0,
        ..PhantomSpec::default()
    });
    let reference_dir = tempdir();
    write_series(&base, reference_dir.path()).unwrap();
    let reference = voxel_stats(&load(
        imaging::default_stack(&scan_group(reference_dir.path())).unwrap(),
    ));
    for syntax in [
        SynthSyntax::ImplicitLe,
        SynthSyntax::ExplicitBe,
        SynthSyntax::Deflate,
        SynthSyntax::Rle,
        SynthSyntax::JpegLs,
        SynthSyntax::JpegLossless,
        SynthSyntax::J2kLossless,
    ] {
        assert!(!syntax.is_lossy());
        let dir = tempdir();
        let volume = write_and_load(&base, syntax, dir.path());
        assert_eq!(voxel_stats(&volume).sha256, reference.sha256, "{syntax:?}");
    }
}

/// The lossy syntaxes decode close to the phantom, and their files say they are lossy
/// (Lossy Image Compression "01", ratio and method, PS3.3 C.7.6.1.1.5).
#[test]
fn lossy_syntaxes_stay_close_and_say_so() {
    let base = PhantomSpec {
        slices: 2,
        spacing_mm: 5.0,
        noise_hu: 8.0,
        ..PhantomSpec::default()
    };
    let reference_dir = tempdir();
    write_series(&base, reference_dir.path()).unwrap();
    let reference = load(imaging::default_stack(&scan_group(reference_dir.path())).unwrap());
    for (syntax, method) in [
        (SynthSyntax::JpegExtended, "ISO_10918_1"),
        (SynthSyntax::J2k, "ISO_15444_1"),
    ] {
        assert!(syntax.is_lossy());
        let dir = tempdir();
        let volume = write_and_load(&base, syntax, dir.path());
        let [nx, ny, nz] = volume.geometry.dims;
        let (mut sum, mut worst, mut differing) = (0.0, 0i32, 0usize);
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let d = (volume.voxels.get(i, j, k).unwrap()
                        - reference.voxels.get(i, j, k).unwrap())
                    .abs();
                    sum += f64::from(d);
                    worst = worst.max(d);
                    differing += usize::from(d != 0);
                }
            }
        }
        let mean = sum / (nx * ny * nz) as f64;
        assert!(differing > 0, "{syntax:?} decoded without loss");
        // Lossy, but the same image: on average the error is below the phantom's own noise
        // (uniform, mean absolute deviation sd * sqrt(3) / 2 = 6.9 HU), and nowhere a block
        // or an edge out of place.
        let noise = base.noise_hu * 3f64.sqrt() / 2.0;
        assert!(mean < noise, "{syntax:?}: mean error {mean:.2} HU");
        assert!(worst < 100, "{syntax:?}: largest error {worst} HU");

        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let obj = imaging::open::open_dicom(&file, true).unwrap();
        let text = |tag| {
            obj.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        use dicom_dictionary_std::tags;
        assert_eq!(text(tags::LOSSY_IMAGE_COMPRESSION), "01");
        assert_eq!(text(tags::LOSSY_IMAGE_COMPRESSION_METHOD), method);
        let ratio: f64 = text(tags::LOSSY_IMAGE_COMPRESSION_RATIO).parse().unwrap();
        assert!(ratio > 1.5, "{syntax:?}: ratio {ratio}");
    }
}

/// What `synth` writes as JPEG Lossless is read by another decoder than Overread's
/// (dicom-rs with the jpeg-decoder crate; Overread reads JPEG with libjpeg-turbo, which also
/// wrote it), value for value.
#[test]
fn jpeg_lossless_writer_is_read_by_an_independent_decoder() {
    use dicom_pixeldata::PixelDecoder;
    let dir = tempdir();
    let spec = small(PhantomSpec {
        slices: 2,
        noise_hu: 30.0,
        syntax: SynthSyntax::JpegLossless,
        ..PhantomSpec::default()
    });
    write_series(&spec, dir.path()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (k, file) in files.iter().enumerate() {
        let obj = dicom_object::open_file(file).unwrap();
        let decoded = obj.decode_pixel_data().unwrap();
        let values: Vec<u16> = decoded
            .data()
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(values, phantom_slice(&spec, k, 0), "{}", file.display());
    }
}

/// The RLE encoder against the decoder of an independent implementation (dicom-rs), on runs,
/// literals and the 128-byte limits of PackBits.
#[test]
fn rle_encoder_round_trips_through_dicom_rs() {
    let dir = tempdir();
    let spec = small(PhantomSpec {
        slices: 2,
        noise_hu: 30.0,
        syntax: SynthSyntax::Rle,
        ..PhantomSpec::default()
    });
    write_series(&spec, dir.path()).unwrap();
    let patients = scan_group(dir.path());
    let volume = load(imaging::default_stack(&patients).unwrap());
    let expected: Vec<u16> = phantom_slice(&spec, 1, 0);
    let got: Vec<i32> = (0..96)
        .flat_map(|j| (0..96).map(move |i| (i, j)))
        .map(|(i, j)| volume.voxels.get(i, j, 0).unwrap())
        .collect();
    // Slice order is along the normal (foot to head), the synthesizer writes head first.
    assert_eq!(
        got,
        expected.iter().map(|v| i32::from(*v)).collect::<Vec<_>>()
    );
}

/// Two series written with one seed are two series of one study and frame of reference (a thin
/// and a thick reconstruction), and no instance UID is shared between them.
#[test]
fn two_series_of_one_seed_share_the_study_and_frame_but_no_instance() {
    let dir = tempdir();
    let thin = small(PhantomSpec {
        slices: 12,
        spacing_mm: 2.5,
        ..PhantomSpec::default()
    });
    let thick = PhantomSpec {
        slices: 6,
        spacing_mm: 5.0,
        ..thin.clone()
    };
    write_series(&thin, &dir.path().join("thin")).unwrap();
    write_series(&thick, &dir.path().join("thick")).unwrap();
    let report = imaging::scan(&[dir.path().to_path_buf()]);
    assert_eq!(report.instances.len(), 18, "{:?}", report.warnings);
    let patients = imaging::group(&report.instances);
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0].studies.len(), 1);
    let series = &patients[0].studies[0].series;
    assert_eq!(series.len(), 2);
    let frames: Vec<_> = series
        .iter()
        .flat_map(|s| &s.stacks)
        .map(|k| k.geometry.frame_of_reference_uid.clone())
        .collect();
    assert!(frames[0].is_some() && frames[0] == frames[1]);
    let mut slices: Vec<usize> = series
        .iter()
        .flat_map(|s| &s.stacks)
        .map(|k| k.slices.len())
        .collect();
    slices.sort();
    assert_eq!(slices, [6, 12]);
}

/// A radiograph may carry a Modality LUT (0028,3000) instead of Rescale Slope and Intercept
/// (PS3.3 C.11.1): every voxel then holds the table's value for its stored value, the first
/// entry below the first value mapped and the last past the table's end (C.11.1.1.1), computed
/// here from the file's stored values and the table as the standard says. Unsigned and signed
/// stored values (the first value mapped then read as signed from its US descriptor, and table
/// values above 32767 kept exact in a signed volume); a rescale left beside the table is not
/// applied, as pydicom's `apply_modality_lut` has it.
#[test]
fn a_modality_lut_gives_every_voxel_its_value() {
    use dicom_core::{DataElement, PrimitiveValue, VR, value::DataSetSequence};
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;

    // Stored values of the phantom: air 24, soft tissue 1069, bone 1324.
    const ENTRIES: usize = 600;
    let table: Vec<u16> = (0..ENTRIES).map(|n| 40_000 - 17 * n as u16).collect();
    for (signed, first_mapped) in [(false, 500i32), (true, -900)] {
        let dir = tempdir();
        write_series(&coarse(), dir.path()).unwrap();
        edit_each(dir.path(), |obj| {
            if signed {
                // 11 stored bits in two's complement: air stays 24, soft tissue and bone
                // turn negative (-979, -724).
                put_us(obj, tags::PIXEL_REPRESENTATION, 1);
                put_us(obj, tags::BITS_STORED, 11);
                put_us(obj, tags::HIGH_BIT, 10);
                obj.put(DataElement::new(
                    tags::RESCALE_SLOPE,
                    VR::DS,
                    PrimitiveValue::from("2"),
                ));
            } else {
                obj.remove_element(tags::RESCALE_SLOPE);
                obj.remove_element(tags::RESCALE_INTERCEPT);
                obj.remove_element(tags::RESCALE_TYPE);
            }
            let descriptor = [ENTRIES as u16, first_mapped as u16, 16];
            let item = InMemDicomObject::from_element_iter([
                DataElement::new(
                    tags::LUT_DESCRIPTOR,
                    VR::US,
                    PrimitiveValue::U16(descriptor.into_iter().collect()),
                ),
                DataElement::new(tags::MODALITY_LUT_TYPE, VR::LO, PrimitiveValue::from("OD")),
                DataElement::new(
                    tags::LUT_DATA,
                    VR::US,
                    PrimitiveValue::U16(table.iter().copied().collect()),
                ),
            ]);
            obj.put(DataElement::new(
                tags::MODALITY_LUT_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ));
        });
        let patients = scan_group(dir.path());
        let stack = patients[0].stacks().next().unwrap();
        let volume = imaging::load_stack(stack, &Default::default(), &|_| {}).unwrap();
        assert!(volume.failed_slices.is_empty());
        assert_eq!(volume.voxels.is_signed(), signed);
        let (mut below, mut inside, mut past) = (0, 0, 0);
        for (k, slice) in stack.slices.iter().enumerate() {
            let stored = imaging::decode::decode_frame_values(&slice.path, slice.frame).unwrap();
            let rescale = volume.rescale.for_slice(k);
            for j in 0..48 {
                for i in 0..48 {
                    let s = stored.values[j * 48 + i];
                    let n = s - first_mapped;
                    let expected = table[n.clamp(0, ENTRIES as i32 - 1) as usize];
                    match n {
                        ..0 => below += 1,
                        n if n >= ENTRIES as i32 => past += 1,
                        _ => inside += 1,
                    }
                    let value = rescale.apply(f64::from(volume.voxels.get(i, j, k).unwrap()));
                    assert_eq!(value, f64::from(expected), "stored {s} at {i},{j},{k}");
                }
            }
        }
        // Each rule was met.
        assert!(
            below > 0 && inside > 0 && past > 0,
            "{below} {inside} {past}"
        );
    }
}

/// A Modality LUT or VOI LUT that cannot be read (fewer entries than its descriptor says) is
/// not used, and the series says so in its warnings, which the browser marks and `scan`
/// shows, with how many files said it; the files still load, with the values they have without the table.
#[test]
fn unreadable_tables_are_said_in_the_series_warnings() {
    use dicom_core::{DataElement, PrimitiveValue, VR, value::DataSetSequence};
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;

    let plain = tempdir();
    write_series(&coarse(), plain.path()).unwrap();
    let dir = tempdir();
    write_series(&coarse(), dir.path()).unwrap();
    let mut edited = 0;
    edit_each(dir.path(), |obj| {
        edited += 1;
        if edited > 2 {
            return;
        }
        for sequence in [tags::MODALITY_LUT_SEQUENCE, tags::VOILUT_SEQUENCE] {
            let item = InMemDicomObject::from_element_iter([
                DataElement::new(
                    tags::LUT_DESCRIPTOR,
                    VR::US,
                    PrimitiveValue::U16([600, 0, 16].into_iter().collect()),
                ),
                DataElement::new(
                    tags::LUT_DATA,
                    VR::US,
                    PrimitiveValue::U16([1, 2].into_iter().collect()),
                ),
            ]);
            obj.put(DataElement::new(
                sequence,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ));
        }
    });
    let patients = scan_group(dir.path());
    let series = &patients[0].studies[0].series[0];
    let notes = series.warnings.join("\n");
    assert!(
        notes.contains("2 of 4 files: its Modality LUT (0028,3000) could not be read"),
        "{notes}"
    );
    assert!(
        notes.contains("2 of 4 files: its VOI LUT (0028,3010) could not be read"),
        "{notes}"
    );
    assert!(
        scan_group(plain.path())[0].studies[0].series[0]
            .warnings
            .is_empty()
    );
    // Loaded as the files without the tables are.
    let load = |patients: &[Patient]| {
        let stack = patients[0].stacks().next().unwrap().clone();
        imaging::load_stack(&stack, &Default::default(), &|_| {}).unwrap()
    };
    let (volume, without) = (load(&patients), load(&scan_group(plain.path())));
    assert!(volume.failed_slices.is_empty());
    let (a, b) = (voxel_stats(&volume), voxel_stats(&without));
    assert!(a.sha256.is_some());
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.mean_modality, b.mean_modality);
}

/// Pixel Padding Value (0028,0120) marks stored values that are not the patient (a CT's
/// corners outside its reconstruction circle): a probe there reads no value, and a region
/// over them leaves them out and says so. Here the phantom's air (stored 24, -1000 HU) is
/// declared padding, then a range around it (Pixel Padding Range Limit): the samples left
/// out are exactly the air ones (the region's sum drops by -1000 HU for each), the rest
/// unchanged.
#[test]
fn padding_is_no_value_to_a_measurement() {
    use dicom_dictionary_std::tags;
    use overread::render::kernel::VolumeInfo;
    use overread::viewer::measure::{Measurement, Shape, Value};

    let dir = tempdir();
    write_series(&coarse(), dir.path()).unwrap();
    let measure = |dir: &Path| {
        let patients = scan_group(dir);
        let stack = patients[0].stacks().next().unwrap();
        let volume = imaging::load_stack(stack, &Default::default(), &|_| {}).unwrap();
        let info = VolumeInfo::new(&volume).unwrap();
        let z = info.corners_mm()[0][2];
        let corner = info.corners_mm()[0];
        let of = |shape: Shape| {
            Measurement {
                id: 1,
                shape,
                frame_of_reference_uid: None,
                stack_id: None,
            }
            .value(&info, &volume.voxels)
        };
        let probe = of(Shape::Probe { at: corner });
        let region = of(Shape::Ellipse {
            center: [0.0, 0.0, z],
            semi_axis_1: [170.0, 0.0, 0.0],
            semi_axis_2: [0.0, 170.0, 0.0],
        });
        let Value::Region {
            mean,
            min,
            samples,
            without_data,
            ..
        } = region
        else {
            panic!("not a region: {region:?}")
        };
        (probe, mean, min, samples, without_data)
    };
    let (probe, mean, min, samples, without) = measure(dir.path());
    assert_eq!(probe, Value::Point(Some(-1000.0)));
    assert_eq!((min, without), (-1000.0, 0));

    for limit in [None, Some(30u16)] {
        edit_each(dir.path(), |obj| {
            put_us(
                obj,
                tags::PIXEL_PADDING_VALUE,
                if limit.is_some() { 0 } else { 24 },
            );
            if let Some(l) = limit {
                put_us(obj, tags::PIXEL_PADDING_RANGE_LIMIT, l);
            }
        });
        let (probe, padded_mean, padded_min, kept, left_out) = measure(dir.path());
        assert_eq!(probe, Value::Point(None), "{limit:?}");
        assert!(
            left_out > 0 && padded_min > -1000.0,
            "{limit:?}: {padded_min}"
        );
        assert_eq!(kept + left_out, samples, "{limit:?}");
        let sum = padded_mean * kept as f64 + -1000.0 * left_out as f64;
        assert!(
            (sum - mean * samples as f64).abs() < 1e-6 * samples as f64,
            "{limit:?}: {sum} vs {}",
            mean * samples as f64
        );
    }
}
