//! Scanning: DICOMDIR (CD-ROM layout), folders, parallel header reads, warnings.

use imaging::{self, Patient};

use crate::support::shared_dicom;

#[test]
fn dcmtk_cd_dicomdir_finds_every_image_and_agrees_with_a_folder_walk() {
    let Some(root) = shared_dicom() else { return };
    let cd = root.join("dicomdir/dcmtk_generated_cd/cd");
    let by_dicomdir = imaging::scan(&[cd.join("DICOMDIR")]);
    assert_eq!(by_dicomdir.instances.len(), 38);
    assert!(
        by_dicomdir.warnings.is_empty(),
        "{:?}",
        by_dicomdir.warnings
    );
    let by_walk = imaging::scan(std::slice::from_ref(&cd));
    assert_eq!(by_walk.instances.len(), 38);
    assert_eq!(by_walk.dicomdirs.len(), 1);
    let mut a: Vec<&str> = by_dicomdir
        .instances
        .iter()
        .map(|h| h.sop_instance_uid.as_str())
        .collect();
    let mut b: Vec<&str> = by_walk
        .instances
        .iter()
        .map(|h| h.sop_instance_uid.as_str())
        .collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    // Philips fMRI (3 time points of 9 slices) and the Siemens scout in several orientations.
    let patients = imaging::group(&by_dicomdir.instances);
    let stacks: Vec<_> = patients.iter().flat_map(Patient::stacks).collect();
    assert_eq!(
        stacks
            .iter()
            .filter(|s| s.geometry.dims == [64, 64, 9])
            .count(),
        3
    );
}

#[test]
fn pydicom_dicomdir_variants_never_panic_and_name_what_they_cannot_use() {
    let Some(root) = shared_dicom() else { return };
    let dir = root.join("dicomdir/pydicom_dicomdirtests/dicom");
    for name in [
        "DICOMDIR",
        "DICOMDIR-bigEnd",
        "DICOMDIR-implicit",
        "DICOMDIR-reordered",
        "DICOMDIR-nooffset",
        "DICOMDIR-nopatient",
        "DICOMDIR-empty.dcm",
    ] {
        let report = imaging::scan(&[dir.join(name)]);
        for w in &report.warnings {
            assert!(!w.message.is_empty(), "{name}: empty warning");
        }
        // Every image it found has the header fields grouping needs.
        for h in &report.instances {
            assert!(h.rows > 0 && h.columns > 0, "{name}: {}", h.path.display());
        }
        eprintln!(
            "{name}: {} images, {} warnings",
            report.instances.len(),
            report.warnings.len()
        );
    }
    let main = imaging::scan(&[dir.join("DICOMDIR")]);
    assert!(
        !main.instances.is_empty(),
        "the main DICOMDIR leads to images: {:?}",
        main.warnings
    );
}

#[test]
fn scanning_every_shared_file_never_panics_and_finds_thousands_of_frames() {
    let Some(root) = shared_dicom() else { return };
    let report = imaging::scan(std::slice::from_ref(&root));
    let patients = imaging::group(&report.instances);
    let frames: usize = report.instances.iter().map(|h| h.frames.len()).sum();
    assert!(frames > 1000, "{frames} frames");
    // Every file that is not an image is named, and nothing named is a real image of ours.
    for w in &report.warnings {
        assert!(w.path.starts_with(&root));
    }
    // Stack ids are unique.
    let mut ids: Vec<&str> = patients
        .iter()
        .flat_map(Patient::stacks)
        .map(|s| s.id.as_str())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

/// One person written two ways (trailing empty name components, other letter case, a padded
/// Patient ID) is one patient in the browser, shown by the fullest name; another ID or another
/// name is another patient.
#[test]
fn one_person_written_two_ways_is_one_patient() {
    let dir = crate::support::tempdir();
    let spec = imaging::synth::PhantomSpec {
        columns: 16,
        rows: 16,
        slices: 6,
        ..Default::default()
    };
    imaging::synth::write_series(&spec, dir.path()).unwrap();
    let scanned = imaging::scan(&[dir.path().to_path_buf()]).instances;
    assert_eq!(scanned.len(), 6);
    let named = |names: &[(&str, &str)]| {
        let mut headers = scanned.clone();
        for (h, (id, name)) in headers.iter_mut().zip(names.iter().cycle()) {
            h.provenance.patient_id = imaging::Phi::new(*id);
            h.provenance.patient_name = imaging::Phi::new(*name);
        }
        imaging::group(&headers)
    };
    let one = named(&[
        ("123", "DOE^JANE"),
        ("123 ", "Doe^Jane^^"),
        ("123", "DOE^JANE^MARIE"),
    ]);
    assert_eq!(one.len(), 2, "a middle name is another name");
    let one = named(&[
        ("123", "DOE^JANE"),
        ("123 ", "Doe^Jane^^"),
        ("123", "DOE ^JANE="),
    ]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name.reveal(), "DOE^JANE");
    assert_eq!(one[0].id.reveal(), "123");
    assert_eq!(one[0].stacks().map(|s| s.slices.len()).sum::<usize>(), 6);
    assert_eq!(named(&[("123", "DOE^JANE"), ("124", "DOE^JANE")]).len(), 2);
    assert_eq!(named(&[("abc", "DOE^JANE"), ("ABC", "DOE^JANE")]).len(), 2);
}

/// A radiograph without Pixel Spacing but with Imager Pixel Spacing (a DX of 0.4 mm and CRs of
/// 0.1 mm, as pydicom reads them) is measured at the detector: the spacing is Imager Pixel
/// Spacing and the geometry says it is at the detector; a CT's is not.
#[test]
fn imager_pixel_spacing_calibrates_radiographs_at_the_detector() {
    let Some(root) = shared_dicom() else { return };
    for (file, spacing) in [
        (
            "codecs/pydicom_misc/dicom/j2k/JPEG2KLossless_1s_1f_u_16_16.dcm",
            0.4,
        ),
        (
            "dicomdir/pydicom_dicomdirtests/dicom/77654033/CR1/6154",
            0.1,
        ),
    ] {
        let scanned = imaging::scan(&[root.join(file)]);
        assert_eq!(scanned.instances.len(), 1, "{file}: {:?}", scanned.warnings);
        let frame = &scanned.instances[0].frames[0];
        assert_eq!(frame.pixel_spacing_mm, Some([spacing, spacing]), "{file}");
        assert!(frame.spacing_at_detector, "{file}");
        let patients = imaging::group(&scanned.instances);
        let stack = patients[0].stacks().next().unwrap();
        assert!(stack.geometry.pixel_spacing_known && stack.geometry.spacing_at_detector);
        assert!(
            (stack.geometry.spacing_mm[0] - spacing).abs() < 1e-12,
            "{file}"
        );
    }
    let dir = crate::support::tempdir();
    let spec = imaging::synth::PhantomSpec {
        columns: 16,
        rows: 16,
        slices: 2,
        ..Default::default()
    };
    imaging::synth::write_series(&spec, dir.path()).unwrap();
    let ct = imaging::group(&imaging::scan(&[dir.path().to_path_buf()]).instances);
    let stack = ct[0].stacks().next().unwrap();
    assert!(stack.geometry.pixel_spacing_known && !stack.geometry.spacing_at_detector);
}

/// Pixel Spacing that only repeats Imager Pixel Spacing, without a Pixel Spacing Calibration
/// Type, is still at the detector (PS3.3 10.7.1.1: an image not calibrated carries the same
/// values; a PA chest's magnification, about 1.1, is still in them): lengths are "mm at
/// detector", never patient mm. Calibrated (a calibration type, or other values than the
/// detector's: corrected for magnification), it is the patient's.
#[test]
fn pixel_spacing_that_repeats_the_detector_is_at_the_detector() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let dir = crate::support::tempdir();
    let spec = imaging::synth::PhantomSpec {
        columns: 16,
        rows: 16,
        slices: 1,
        ..Default::default()
    };
    let cases: [(&str, &str, Option<&str>, bool); 4] = [
        ("same", "0.15\\0.15", None, true),
        ("same-by-value", "0.150000\\0.15", None, true),
        ("calibrated-type", "0.15\\0.15", Some("GEOMETRY"), false),
        ("magnification-corrected", "0.1333\\0.1333", None, false),
    ];
    for (name, pixel, calibration, at_detector) in cases {
        let folder = dir.path().join(name);
        imaging::synth::write_series(&spec, &folder).unwrap();
        let file = std::fs::read_dir(&folder)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut obj = dicom_object::open_file(&file).unwrap();
        obj.put(DataElement::new(
            tags::PIXEL_SPACING,
            VR::DS,
            PrimitiveValue::from(pixel),
        ));
        obj.put(DataElement::new(
            tags::IMAGER_PIXEL_SPACING,
            VR::DS,
            PrimitiveValue::from("0.15\\0.15"),
        ));
        if let Some(c) = calibration {
            obj.put(DataElement::new(
                tags::PIXEL_SPACING_CALIBRATION_TYPE,
                VR::CS,
                PrimitiveValue::from(c),
            ));
        }
        obj.write_to_file(&file).unwrap();
        let scanned = imaging::scan(&[file]);
        assert_eq!(scanned.instances.len(), 1, "{name}: {:?}", scanned.warnings);
        let frame = &scanned.instances[0].frames[0];
        assert_eq!(frame.spacing_at_detector, at_detector, "{name}");
        let patients = imaging::group(&scanned.instances);
        let stack = patients[0].stacks().next().unwrap();
        assert_eq!(stack.geometry.spacing_at_detector, at_detector, "{name}");
    }
}

/// A stack takes one frame's word on where its spacing was measured, so frames of one
/// series that say differently (Pixel Spacing in one, only Imager Pixel Spacing in another)
/// are two stacks: otherwise the second would be measured in patient mm, or the first at the
/// detector.
#[test]
fn spacing_at_the_detector_parts_a_series() {
    let dir = crate::support::tempdir();
    let spec = imaging::synth::PhantomSpec {
        columns: 16,
        rows: 16,
        slices: 4,
        ..Default::default()
    };
    imaging::synth::write_series(&spec, dir.path()).unwrap();
    let mut scanned = imaging::scan(&[dir.path().to_path_buf()]);
    assert_eq!(scanned.instances.len(), 4);
    let together = imaging::group(&scanned.instances);
    assert_eq!(together[0].stacks().count(), 1);
    scanned.instances[3].frames[0].spacing_at_detector = true;
    let parted = imaging::group(&scanned.instances);
    let stacks: Vec<_> = parted[0].stacks().collect();
    assert_eq!(stacks.len(), 2);
    let at_detector: Vec<(usize, bool)> = stacks
        .iter()
        .map(|s| (s.slices.len(), s.geometry.spacing_at_detector))
        .collect();
    assert!(
        at_detector.contains(&(3, false)) && at_detector.contains(&(1, true)),
        "{at_detector:?}"
    );
}

/// Every Window Center/Width pair of a file is read, in order, as pydicom reads them: a file
/// of the shared data carries three (40/100, 40/100, 40/200), the first the window it opens
/// with, the others offered in turn by the file-window key.
#[test]
fn every_window_pair_of_a_file_is_read_in_order() {
    let Some(root) = shared_dicom() else { return };
    let path = root.join("codecs/pydicom_misc/dicom/j2k/J2K_pixelrep_mismatch.dcm");
    let Ok(imaging::header::FileKind::Image(header)) = imaging::header::read_header(&path) else {
        panic!("{} is an image", path.display());
    };
    let frame = &header.frames[0];
    let pair = |w: &imaging::header::Window| (w.center, w.width);
    assert_eq!(frame.window.as_ref().map(pair), Some((40.0, 100.0)));
    let more: Vec<(f64, f64)> = frame.more_windows.iter().map(pair).collect();
    assert_eq!(more, [(40.0, 100.0), (40.0, 200.0)]);
    // The file-window key offers each once: the repeated pair would hold it on 40/100.
    let patients = imaging::group(&[*header]);
    let slice = &patients[0].stacks().next().unwrap().slices[0];
    let choices = overread::render::Voi::file_choices(slice);
    assert_eq!(
        choices,
        [
            overread::render::Voi::linear(40.0, 100.0),
            overread::render::Voi::linear(40.0, 200.0)
        ]
    );
}

/// A patient's studies come newest first, by Study Date (the current study above its prior),
/// whatever their UIDs: checked with the dates either way round between two studies.
#[test]
fn studies_come_newest_first() {
    for (first, second) in [("20230101", "20240315"), ("20240315", "20230101")] {
        let dir = crate::support::tempdir();
        for (seed, date) in [(1, first), (2, second)] {
            let spec = imaging::synth::PhantomSpec {
                columns: 16,
                rows: 16,
                slices: 2,
                seed,
                study_date: date.into(),
                ..Default::default()
            };
            imaging::synth::write_series(&spec, &dir.path().join(date)).unwrap();
        }
        let patients = imaging::group(&imaging::scan(&[dir.path().to_path_buf()]).instances);
        assert_eq!(patients.len(), 1);
        let dates: Vec<Option<&str>> = patients[0]
            .studies
            .iter()
            .map(|s| s.date.as_deref())
            .collect();
        assert_eq!(dates, [Some("20240315"), Some("20230101")]);
    }
}

/// A scan given up (another folder dropped meanwhile) ends without reading on; one not given
/// up finds what `scan` finds.
#[test]
fn a_scan_can_be_given_up() {
    use std::sync::atomic::AtomicBool;
    let dir = crate::support::tempdir();
    let spec = imaging::synth::PhantomSpec {
        columns: 16,
        rows: 16,
        slices: 3,
        ..Default::default()
    };
    imaging::synth::write_series(&spec, dir.path()).unwrap();
    let paths = [dir.path().to_path_buf()];
    assert!(imaging::scan_until(&paths, &AtomicBool::new(true)).is_none());
    let whole = imaging::scan_until(&paths, &AtomicBool::new(false)).unwrap();
    assert_eq!(whole.instances.len(), 3);
    assert_eq!(whole.files_seen, imaging::scan(&paths).files_seen);
}
