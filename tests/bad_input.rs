//! Issue 2, item 9: bad input gets a clear per-file error naming the file, the rest of the series
//! still loads, and nothing panics.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use imaging::synth::{PhantomSpec, write_series};
use imaging::{self, Patient, Stack};

use crate::support::tempdir;

const SLICES: usize = 8;

fn series(dir: &Path) -> Vec<PathBuf> {
    series_of(&series_spec(), dir)
}

/// The series [`series`] writes: 8 slices of 48 x 48, 7 mm pixels, 5 mm apart, no noise.
fn series_spec() -> PhantomSpec {
    PhantomSpec {
        columns: 48,
        rows: 48,
        pixel_mm: 7.0,
        slices: SLICES,
        spacing_mm: 5.0,
        noise_hu: 0.0,
        ..PhantomSpec::default()
    }
}

/// Write `spec` into `dir`; its files, sorted.
fn series_of(spec: &PhantomSpec, dir: &Path) -> Vec<PathBuf> {
    write_series(spec, dir).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn scan(dir: &Path) -> (imaging::ScanReport, Vec<Patient>) {
    let report = imaging::scan(&[dir.to_path_buf()]);
    let patients = imaging::group(&report.instances);
    (report, patients)
}

fn stacks(patients: &[Patient]) -> Vec<&Stack> {
    patients.iter().flat_map(Patient::stacks).collect()
}

fn warning_for<'a>(report: &'a imaging::ScanReport, path: &Path) -> &'a imaging::ScanWarning {
    report
        .warnings
        .iter()
        .find(|w| w.path == path)
        .unwrap_or_else(|| panic!("no warning names {}: {:?}", path.display(), report.warnings))
}

/// The Pixel Data of a native file as bytes.
fn pixel_bytes(obj: &dicom_object::DefaultDicomObject) -> Vec<u8> {
    obj.element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned()
}

/// Rewrite one file of the series with `edit` applied to its data set.
fn edit(path: &Path, edit: impl FnOnce(&mut dicom_object::DefaultDicomObject)) {
    let mut obj = dicom_object::open_file(path).unwrap();
    edit(&mut obj);
    obj.write_to_file(path).unwrap();
}

#[test]
fn truncated_header_garbage_and_empty_files_become_warnings_and_the_rest_loads() {
    let dir = tempdir();
    let files = series(dir.path());
    let bytes = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &bytes[..300]).unwrap(); // cut inside the header
    let garbage = dir.path().join("garbage.dcm");
    std::fs::write(
        &garbage,
        (0..5000u32)
            .map(|v| (v * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "referral letter").unwrap();

    let (report, patients) = scan(dir.path());
    for path in [&files[2], &garbage, &empty, &text] {
        let w = warning_for(&report, path);
        assert!(!w.message.is_empty());
    }
    assert!(
        warning_for(&report, &garbage)
            .message
            .contains("not a DICOM file")
    );
    let all = stacks(&patients);
    assert_eq!(all.len(), 1);
    let volume = imaging::load_stack(all[0], &Default::default(), &|_| {}).unwrap();
    assert_eq!(volume.geometry.dims[2], SLICES - 1);
    assert!(volume.failed_slices.is_empty());
}

#[test]
fn truncated_pixel_data_fails_that_slice_only_and_names_the_file() {
    let dir = tempdir();
    let files = series(dir.path());
    let bytes = std::fs::read(&files[4]).unwrap();
    std::fs::write(&files[4], &bytes[..bytes.len() - 1000]).unwrap(); // cut inside Pixel Data
    let (_, patients) = scan(dir.path());
    let all = stacks(&patients);
    assert_eq!(
        all.len(),
        1,
        "a header-intact file still belongs to its stack"
    );
    let volume = imaging::load_stack(all[0], &Default::default(), &|_| {}).unwrap();
    assert_eq!(volume.geometry.dims[2], SLICES);
    assert_eq!(volume.failed_slices.len(), 1, "{:?}", volume.failed_slices);
    let failure = &volume.failed_slices[0];
    assert_eq!(failure.path, files[4]);
    assert!(
        failure.message.contains(&*files[4].to_string_lossy()),
        "{}",
        failure.message
    );
    // Every other slice has its pixels (the phantom's body is never all zero).
    for k in (0..SLICES).filter(|k| *k != failure.k) {
        assert!(
            (0..48).any(|i| volume.voxels.get(i, 24, k).unwrap() != 0),
            "slice {k} empty"
        );
    }
}

/// A header that claims far more pixels than its file could hold (two billion frames, a
/// 65535-square image in a 10 kB file) is refused at the scan and named: a frame list or a
/// volume of that size would abort the process. The rest of the series loads.
#[test]
fn a_header_claiming_more_pixels_than_its_file_holds_is_refused() {
    let dir = tempdir();
    let files = series(dir.path());
    edit(&files[2], |obj| {
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("2000000000"),
        ));
    });
    edit(&files[5], |obj| {
        for tag in [tags::ROWS, tags::COLUMNS] {
            obj.put(DataElement::new(
                tag,
                VR::US,
                PrimitiveValue::from(65535u16),
            ));
        }
    });
    let (report, patients) = scan(dir.path());
    for f in [&files[2], &files[5]] {
        let w = warning_for(&report, f);
        assert!(w.message.contains("claims"), "{}", w.message);
    }
    let stacks = stacks(&patients);
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].slices.len(), SLICES - 2);
    let volume = imaging::load_stack(stacks[0], &Default::default(), &|_| {}).unwrap();
    assert!(volume.failed_slices.is_empty());
}

/// A frame list out of proportion to its file is refused at the scan, though its pixels fit:
/// four million 1x1 frames of one bit (half a megabyte of pixels, 1.3 GB of frame
/// descriptions; 134 million would ask for about 40 GB), and a 256 kB Echo Numbers copied into each
/// of 2,000 frames (512 MB). The rest of the series loads.
#[test]
fn a_frame_list_out_of_proportion_to_its_file_is_refused() {
    let dir = tempdir();
    let files = series(dir.path());
    edit(&files[2], |obj| {
        for tag in [
            tags::ROWS,
            tags::COLUMNS,
            tags::BITS_ALLOCATED,
            tags::BITS_STORED,
        ] {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(1u16)));
        }
        obj.put(DataElement::new(
            tags::HIGH_BIT,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("4000000"),
        ));
    });
    edit(&files[5], |obj| {
        obj.put(DataElement::new(
            tags::ECHO_NUMBERS,
            VR::UT,
            PrimitiveValue::from("1".repeat(256 << 10)),
        ));
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            PrimitiveValue::from("2000"),
        ));
    });
    let (report, patients) = scan(dir.path());
    for f in [&files[2], &files[5]] {
        let w = warning_for(&report, f);
        assert!(
            w.message.contains("bytes of description each"),
            "{}",
            w.message
        );
    }
    let stacks = stacks(&patients);
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].slices.len(), SLICES - 2);
}

/// Samples per Pixel and Bits Allocated size every buffer of a compressed frame (the file's
/// length bounds only native pixels): 65535 samples a pixel asked the server's frame
/// renderer for 600 MB a frame here, and Bits Allocated 0 shifted by 16. Both are refused at
/// the header with the attribute named, by the scan and by the server's frame decoder.
#[test]
fn impossible_samples_per_pixel_and_bits_allocated_are_refused() {
    let dir = tempdir();
    let spec = PhantomSpec {
        columns: 48,
        rows: 48,
        slices: 4,
        syntax: imaging::synth::SynthSyntax::JpegLossless,
        ..PhantomSpec::default()
    };
    let files = series_of(&spec, dir.path());
    edit(&files[1], |obj| {
        obj.put(DataElement::new(
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(65535u16),
        ));
    });
    edit(&files[2], |obj| {
        obj.put(DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    });
    let (report, patients) = scan(dir.path());
    for (file, attribute) in [
        (&files[1], "Samples per Pixel"),
        (&files[2], "Bits Allocated"),
    ] {
        let message = &warning_for(&report, file).message;
        assert!(message.contains(attribute), "{message}");
        let refused = imaging::decode::decode_frame_values(file, 0).unwrap_err();
        assert!(refused.to_string().contains(attribute), "{refused}");
    }
    assert_eq!(stacks(&patients)[0].slices.len(), 2);
    assert!(imaging::decode::decode_frame_values(&files[0], 0).is_ok());
}

/// Without Pixel Spacing the geometry says so (the app then shows lengths in pixels and no
/// scale bar, never a 1 mm default as mm); with it, it is known.
#[test]
fn a_series_without_pixel_spacing_has_no_mm() {
    let dir = tempdir();
    let files = series(dir.path());
    let (_, patients) = scan(dir.path());
    assert!(stacks(&patients)[0].geometry.pixel_spacing_known);
    for f in &files {
        edit(f, |obj| {
            obj.remove_element(tags::PIXEL_SPACING);
        });
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    assert_eq!(stacks.len(), 1);
    let g = &stacks[0].geometry;
    assert!(g.trusted, "position and orientation are still there");
    assert!(!g.pixel_spacing_known);
    assert_eq!(&g.spacing_mm[..2], &[1.0, 1.0]);
}

/// A Siemens mosaic whose CSA header was stripped (anonymisers do) has no SliceNormalVector,
/// and X x Y may point against the tiles' order: it is shown as stored, not unpacked into a
/// slab that could be mirrored. Its neighbour with the CSA header unpacks.
#[test]
fn a_mosaic_without_its_slice_normal_is_not_unpacked() {
    let Some(shared) = crate::support::shared_dicom() else {
        return;
    };
    let source = shared.join("mr/siemens_mosaic_orientation/dicom/ax/axasc35");
    let dir = tempdir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let file = dir.path().join("mosaic.dcm");
    std::fs::copy(&files[0], &file).unwrap();
    let (_, patients) = scan(dir.path());
    let stack = stacks(&patients)[0];
    assert!(!stack.unpacked_mosaic_failed);
    assert!(stack.slices.len() > 1, "unpacked into tiles");
    edit(&file, |obj| {
        obj.remove_element(dicom_core::Tag(0x0029, 0x1010));
    });
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    assert_eq!(stacks.len(), 1);
    assert!(stacks[0].unpacked_mosaic_failed);
    assert_eq!(stacks[0].slices.len(), 1, "shown as stored");
    // And its series says so, for the browser to mark.
    assert_eq!(
        patients[0].studies[0].series[0].warnings,
        ["Siemens mosaic without a usable tile count or geometry: shown as tiles"]
    );
    // Its Image Position is the mosaic's, no tile's: no position, markers or reformat
    // distances are offered from it.
    assert!(!stacks[0].geometry.trusted);
    assert!(stacks[0].geometry.pixel_spacing_known);
}

/// Grouping by tolerance, not by rounding to a grid: orientations 2e-8 apart on either side
/// of a grid line (0.00004999 and 0.00005001) are one stack (they were two, each "missing
/// slices").
#[test]
fn orientations_a_hair_apart_are_one_stack() {
    let dir = tempdir();
    let files = series(dir.path());
    for (n, f) in files.iter().enumerate() {
        let tilt = if n % 2 == 0 {
            "0.00004999"
        } else {
            "0.00005001"
        };
        edit(f, |obj| {
            obj.put(DataElement::new(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                PrimitiveValue::from(format!("1\\0\\0\\0\\1\\{tilt}")),
            ));
        });
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].slices.len(), SLICES);
}

/// Two stations of one series at the same depths but shifted in the plane (a whole spine in
/// two acquisitions) are two volumes, not one stack whose slices alternate between them.
#[test]
fn stations_at_the_same_depths_are_two_volumes() {
    let dir = tempdir();
    let files = series(dir.path());
    let half = SLICES / 2;
    for n in half..SLICES {
        // The depth of slice n - half, 150 mm lower in the plane.
        let [x, y, z] = position_of(&dicom_object::open_file(&files[n - half]).unwrap());
        edit(&files[n], |obj| {
            put_position(obj, [x, y + 150.0, z]);
            put_text(obj, tags::ACQUISITION_NUMBER, VR::IS, "2");
        });
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    assert_eq!(
        stacks.len(),
        2,
        "{:?}",
        stacks.iter().map(|s| s.slices.len()).collect::<Vec<_>>()
    );
    for s in &stacks {
        assert_eq!(s.slices.len(), half);
    }
    assert_regular(&stacks);
}

#[test]
fn missing_pixel_data_is_a_per_file_error() {
    let dir = tempdir();
    let files = series(dir.path());
    edit(&files[1], |obj| {
        obj.remove_element(tags::PIXEL_DATA);
    });
    let (_, patients) = scan(dir.path());
    let volume = imaging::load_stack(stacks(&patients)[0], &Default::default(), &|_| {}).unwrap();
    assert_eq!(volume.failed_slices.len(), 1);
    assert!(
        volume.failed_slices[0].message.contains("no Pixel Data"),
        "{}",
        volume.failed_slices[0].message
    );
}

#[test]
fn slices_of_another_size_or_orientation_become_their_own_stacks() {
    let dir = tempdir();
    let files = series(dir.path());
    // One slice 48 -> 24 columns (pixel data cut to match), one slice sagittal.
    edit(&files[3], |obj| {
        obj.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(24u16),
        ));
        let pixels = pixel_bytes(obj);
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(pixels[..48 * 24 * 2].to_vec()),
        ));
    });
    edit(&files[5], |obj| {
        obj.put(DataElement::new(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            PrimitiveValue::from("0\\1\\0\\0\\0\\-1"),
        ));
    });
    let (report, patients) = scan(dir.path());
    assert!(report.warnings.is_empty());
    let all = stacks(&patients);
    assert_eq!(
        all.len(),
        3,
        "{:?}",
        all.iter().map(|s| s.geometry.dims).collect::<Vec<_>>()
    );
    let main = imaging::default_stack(&patients).unwrap();
    assert_eq!(main.geometry.dims, [48, 48, SLICES - 2]);
    assert!(
        !patients[0].studies[0].series[0].notes.is_empty(),
        "the split is explained"
    );
    for s in all {
        let v = imaging::load_stack(s, &Default::default(), &|_| {}).unwrap();
        assert!(v.failed_slices.is_empty());
    }
}

#[test]
fn unsupported_transfer_syntax_is_a_clear_error() {
    let dir = tempdir();
    let files = series(dir.path());
    // Rewrite one file's meta to claim MPEG2 video, which no one decodes as an image.
    let mut obj = dicom_object::open_file(&files[6]).unwrap();
    obj.update_meta(|meta| meta.transfer_syntax = "1.2.840.10008.1.2.4.100".to_string());
    let pixels = pixel_bytes(&obj);
    obj.put(DataElement::new_with_len(
        tags::PIXEL_DATA,
        VR::OB,
        dicom_core::Length::UNDEFINED,
        dicom_core::value::Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
            Vec::<u32>::new(),
            vec![pixels],
        )),
    ));
    obj.write_to_file(&files[6]).unwrap();
    let (report, patients) = scan(dir.path());
    let loaded: usize = stacks(&patients)
        .iter()
        .map(|s| {
            let v = imaging::load_stack(s, &Default::default(), &|_| {}).unwrap();
            for f in &v.failed_slices {
                assert!(
                    f.message.contains("1.2.840.10008.1.2.4.100")
                        || f.message.contains("unsupported")
                        || f.message.contains("decoder"),
                    "{}",
                    f.message
                );
            }
            v.geometry.dims[2] - v.failed_slices.len()
        })
        .sum();
    let warned = report.warnings.iter().any(|w| w.path == files[6]);
    assert_eq!(
        loaded,
        SLICES - 1,
        "seven slices load; the MPEG2 one fails (warned at scan: {warned})"
    );
}

#[test]
fn a_dicomdir_pointing_at_missing_files_warns_for_each() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let dir = tempdir();
    let cd = root.join("dicomdir/dcmtk_generated_cd/cd");
    std::fs::copy(cd.join("DICOMDIR"), dir.path().join("DICOMDIR")).unwrap();
    let report = imaging::scan(&[dir.path().join("DICOMDIR")]);
    assert!(report.instances.is_empty());
    assert_eq!(
        report.warnings.len(),
        38,
        "one warning per referenced image"
    );
    assert!(
        report
            .warnings
            .iter()
            .all(|w| w.message.contains("missing"))
    );
}

/// A DICOMDIR's Referenced File IDs name files inside its own folder: one that climbs out
/// (".."), starts at a root or passes through a link to elsewhere is not followed, and says
/// so; the file it named is not read
/// (it was, found by review: a CD could make the workstation or the server's import read
/// any file the process may open).
#[test]
fn a_dicomdir_reference_outside_its_folder_is_not_followed() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let dir = tempdir();
    let outside = dir.path().join("OUTSIDE");
    series(&outside);
    let image = std::fs::read_dir(&outside)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let image_name = image.file_name().to_string_lossy().into_owned();
    let cd = dir.path().join("cd");
    std::fs::create_dir(&cd).unwrap();
    let mut dicomdir =
        dicom_object::open_file(root.join("dicomdir/dcmtk_generated_cd/cd/DICOMDIR")).unwrap();
    let absolute = image.path().to_string_lossy().replace('/', "\\");
    let records: Vec<dicom_object::InMemDicomObject> =
        // Climbing out, from a root, and through a link inside the folder (as a CD's Rock
        // Ridge links or a copy of it can hold).
        [
            format!("..\\OUTSIDE\\{image_name}"),
            absolute,
            format!("LINK\\{image_name}"),
        ]
            .into_iter()
            .map(|id| {
                dicom_object::InMemDicomObject::from_element_iter([DataElement::new(
                    tags::REFERENCED_FILE_ID,
                    VR::CS,
                    PrimitiveValue::from(id),
                )])
            })
            .collect();
    dicomdir.put(DataElement::new(
        tags::DIRECTORY_RECORD_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(records),
    ));
    dicomdir.write_to_file(cd.join("DICOMDIR")).unwrap();
    std::os::unix::fs::symlink(&outside, cd.join("LINK")).unwrap();
    let report = imaging::scan(&[cd.join("DICOMDIR")]);
    assert!(report.instances.is_empty(), "a file outside was read");
    assert_eq!(report.warnings.len(), 3, "{:?}", report.warnings);
    let said = |what: &str| {
        report
            .warnings
            .iter()
            .filter(|w| w.message.contains(what))
            .count()
    };
    assert_eq!(said("not a path inside the DICOMDIR's folder"), 2);
    assert_eq!(said("leads out of the DICOMDIR's folder through a link"), 1);
}

/// A DICOMDIR is input like any file: one with a damaged length is a warning naming it, read
/// through the same length walk as the images (it was opened by dicom-rs directly, which
/// reserved what the length said: here 3.5 GB behind the last record).
#[test]
fn a_dicomdir_with_a_damaged_length_is_a_warning() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let dir = tempdir();
    let cd = root.join("dicomdir/dcmtk_generated_cd/cd");
    let mut bytes = std::fs::read(cd.join("DICOMDIR")).unwrap();
    // A private OB after the records (explicit VR little endian) claiming 3.5 GB.
    bytes.extend_from_slice(&[0x09, 0x00, 0x00, 0x10, b'O', b'B', 0, 0]);
    bytes.extend_from_slice(&0xE000_0000u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 16]);
    let path = dir.path().join("DICOMDIR");
    std::fs::write(&path, &bytes).unwrap();
    let report = imaging::scan(std::slice::from_ref(&path));
    assert!(report.instances.is_empty());
    let w = warning_for(&report, &path);
    assert!(
        w.message.contains("not a readable DICOMDIR"),
        "{}",
        w.message
    );
    assert!(
        w.message.contains("claims 3758096384 bytes"),
        "{}",
        w.message
    );
}

/// A JPEG 2000 frame whose codestream declares another size than the header is refused
/// before OpenJPEG allocates it (found by fuzzing: a 54 kB file's codestream declared an
/// image OpenJPEG reserved 8.4 GB for).
#[test]
fn a_jpeg_2000_codestream_larger_than_its_header_is_refused() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let source = root.join(
        "codecs/ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    );
    let dir = tempdir();
    let path = dir.path().join("j2k.dcm");
    let mut bytes = std::fs::read(&source).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    assert!(imaging::decode::decode_frame_values(&path, 0).is_ok());
    // Xsiz (ISO/IEC 15444-1 A.5.1) of the codestream: 8 bytes after SOC and SIZ.
    let siz = bytes
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .unwrap();
    bytes[siz + 8..siz + 12].copy_from_slice(&60_000u32.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = imaging::decode::decode_frame_values(&path, 0).unwrap_err();
    assert!(
        e.to_string().contains("JPEG 2000 codestream is 60000x"),
        "{e}"
    );
}

/// A copy of `from` under a new SOP Instance UID (`n` makes it unique), edited by `change`.
fn copy_as(from: &Path, n: usize, change: impl FnOnce(&mut dicom_object::DefaultDicomObject)) {
    let to = from.with_file_name(format!("copy-{n}.dcm"));
    std::fs::copy(from, &to).unwrap();
    edit(&to, |obj| {
        put_text(
            obj,
            tags::SOP_INSTANCE_UID,
            VR::UI,
            format!("2.25.{}", 999_000 + n),
        );
        change(obj);
    });
}

/// Put a value written as text (DS, IS, SH, UI ...) into `obj`.
fn put_text(
    obj: &mut dicom_object::DefaultDicomObject,
    tag: dicom_core::Tag,
    vr: VR,
    value: impl Into<String>,
) {
    obj.put(DataElement::new(
        tag,
        vr,
        PrimitiveValue::from(value.into()),
    ));
}

/// Image Position (Patient) of `obj`.
fn position_of(obj: &dicom_object::DefaultDicomObject) -> [f64; 3] {
    let text = obj
        .element(tags::IMAGE_POSITION_PATIENT)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let v: Vec<f64> = text
        .split('\\')
        .map(|v| v.trim().parse().unwrap())
        .collect();
    [v[0], v[1], v[2]]
}

fn put_position(obj: &mut dicom_object::DefaultDicomObject, [x, y, z]: [f64; 3]) {
    put_text(
        obj,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        format!("{x}\\{y}\\{z}"),
    );
}

/// Convolution Kernel (0018,1210) `name`.
fn kernel(obj: &mut dicom_object::DefaultDicomObject, name: &str) {
    put_text(obj, tags::CONVOLUTION_KERNEL, VR::SH, name);
}

/// Diffusion b-value (0018,9087) `b`.
fn b_value(obj: &mut dicom_object::DefaultDicomObject, b: f64) {
    obj.put(DataElement::new(
        tags::DIFFUSION_B_VALUE,
        VR::FD,
        PrimitiveValue::from(b),
    ));
}

/// Every stack's slices evenly spaced, none missing.
fn assert_regular(stacks: &[&Stack]) {
    for s in stacks {
        assert!(
            s.geometry.irregularity.is_regular(),
            "{:?}",
            s.geometry.irregularity
        );
    }
}

/// An Image Orientation (Patient) of zeros (some secondary captures write it) is none: the
/// series is one stack, shown without positions, and a view can be made of it. Taken as
/// given, every frame had the same depth along a zero normal: eight one-frame stacks, none of
/// which could be shown. So is a Pixel Spacing of 0\0.
#[test]
fn a_degenerate_orientation_or_spacing_is_none() {
    let dir = tempdir();
    let files = series(dir.path());
    for f in &files {
        edit(f, |obj| {
            put_text(
                obj,
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                "0\\0\\0\\0\\0\\0",
            );
            put_text(obj, tags::PIXEL_SPACING, VR::DS, "0\\0");
            // Zero positions too: without an orientation no frame is a repeat of another.
            put_position(obj, [0.0; 3]);
        });
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].slices.len(), SLICES);
    let g = &stacks[0].geometry;
    assert!(!g.trusted && !g.pixel_spacing_known);
    let volume = imaging::load_stack(stacks[0], &Default::default(), &|_| {}).unwrap();
    assert!(overread::render::kernel::VolumeInfo::new(&volume).is_ok());
}

/// A slice whose samples do not sit in the low bits of their words (High Bit 15 with 12 bits
/// stored, as old files have them) fails to load, named, not shown with its low bits read as
/// the value, whether its words lie as they are or in RLE; the rest of the series loads. A
/// file without Bits Stored whose High Bit is 11 has 12 bits stored, and loads.
#[test]
fn samples_in_the_high_bits_are_named_not_misread() {
    use imaging::synth::SynthSyntax;
    for syntax in [SynthSyntax::ExplicitLe, SynthSyntax::Rle] {
        let dir = tempdir();
        let spec = PhantomSpec {
            syntax,
            ..series_spec()
        };
        let files = series_of(&spec, dir.path());
        let high_bit = |obj: &mut dicom_object::DefaultDicomObject, h: u16| {
            obj.put(DataElement::new(
                tags::HIGH_BIT,
                VR::US,
                PrimitiveValue::from(h),
            ));
        };
        edit(&files[3], |obj| {
            obj.put(DataElement::new(
                tags::BITS_STORED,
                VR::US,
                PrimitiveValue::from(12u16),
            ));
            high_bit(obj, 15);
        });
        edit(&files[5], |obj| {
            obj.remove_element(tags::BITS_STORED);
            high_bit(obj, 11);
        });
        let (_, patients) = scan(dir.path());
        let stacks = stacks(&patients);
        let stack = stacks
            .iter()
            .find(|s| s.slices.iter().any(|slice| slice.path == files[3]))
            .unwrap();
        assert!(
            stack.slices.iter().any(|slice| slice.path == files[5]),
            "{syntax:?}: the file without Bits Stored is in another stack"
        );
        let volume = imaging::load_stack(stack, &Default::default(), &|_| {}).unwrap();
        assert_eq!(
            volume.failed_slices.len(),
            1,
            "{syntax:?}: {:?}",
            volume.failed_slices
        );
        let failed = &volume.failed_slices[0];
        assert!(
            failed
                .message
                .contains("High Bit (0028,0102) is 15 with 12 bits stored")
                && failed.path == files[3],
            "{syntax:?}: {}",
            failed.message
        );
        // Decoded on its own (a server's rendering, an export), the same.
        let e = imaging::decode::decode_frame_values(&files[3], 0).unwrap_err();
        assert!(e.to_string().contains("High Bit (0028,0102) is 15"), "{e}");
        assert!(imaging::decode::decode_frame_values(&files[5], 0).is_ok());
    }
}

/// A sequential CT numbers each rotation's slices as an acquisition; one level scanned again
/// (after the patient moved) is one volume and one repeated slice, not a stack per rotation.
/// Acquisitions that each cover the volume are still volumes of their own (see
/// `stations_at_the_same_depths_are_two_volumes`).
#[test]
fn a_rotation_scanned_again_does_not_split_a_sequential_ct() {
    let dir = tempdir();
    let files = series(dir.path());
    for (n, f) in files.iter().enumerate() {
        edit(f, |obj| {
            put_text(
                obj,
                tags::ACQUISITION_NUMBER,
                VR::IS,
                (n / 2 + 1).to_string(),
            );
        });
    }
    copy_as(&files[3], 1, |obj| {
        put_text(
            obj,
            tags::ACQUISITION_NUMBER,
            VR::IS,
            (SLICES / 2 + 1).to_string(),
        );
    });
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    let mut sizes: Vec<usize> = stacks.iter().map(|s| s.slices.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [1, SLICES]);
    // The volume is whole and even; the slice scanned again is the one alone.
    let (alone, whole): (Vec<&Stack>, Vec<&Stack>) =
        stacks.iter().partition(|s| s.slices.len() == 1);
    assert!(
        alone[0].slices[0].path.ends_with("copy-1.dcm"),
        "{:?}",
        alone[0].slices[0].path
    );
    assert_regular(&whole);
    assert_eq!(
        patients[0].studies[0].series[0].stack_labels(),
        ["repetition 1", "repetition 2"]
    );
}

/// Two volumes at the same positions in one series, with neither Instance nor Acquisition
/// Numbers (nor temporal positions) to tell them apart: each volume is the slices of one time
/// of acquisition (Content Date and Time), whatever order the files lie in. (Taken in the
/// order of the files, the first volume had been every first file of a position: here half of
/// one time and half of the other.)
#[test]
fn repetitions_without_numbers_are_told_apart_by_their_times() {
    let dir = tempdir();
    let files = series(dir.path());
    let mut time_of: std::collections::HashMap<PathBuf, &str> = Default::default();
    let timed = |obj: &mut dicom_object::DefaultDicomObject, time: &str| {
        for tag in [
            tags::INSTANCE_NUMBER,
            tags::ACQUISITION_NUMBER,
            tags::ACQUISITION_DATE_TIME,
            tags::ACQUISITION_DATE,
            tags::ACQUISITION_TIME,
            tags::TEMPORAL_POSITION_IDENTIFIER,
        ] {
            obj.remove_element(tag);
        }
        put_text(obj, tags::CONTENT_DATE, VR::DA, "20240131");
        put_text(obj, tags::CONTENT_TIME, VR::TM, time);
    };
    let (early, late) = ("100000", "100500");
    for (k, f) in files.iter().enumerate() {
        // Every other position's later volume lies in the file that comes first.
        let (first, second) = if k % 2 == 0 {
            (late, early)
        } else {
            (early, late)
        };
        edit(f, |obj| timed(obj, first));
        copy_as(f, k, |obj| timed(obj, second));
        time_of.insert(f.clone(), first);
        time_of.insert(f.with_file_name(format!("copy-{k}.dcm")), second);
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    assert_eq!(stacks.len(), 2);
    let mut times: Vec<&str> = stacks
        .iter()
        .map(|stack| {
            assert_eq!(stack.slices.len(), SLICES);
            let mut of_stack: Vec<&str> = stack.slices.iter().map(|s| time_of[&s.path]).collect();
            of_stack.dedup();
            assert_eq!(of_stack.len(), 1, "a volume of two times: {of_stack:?}");
            of_stack[0]
        })
        .collect();
    times.sort();
    assert_eq!(times, [early, late]);
    assert_regular(&stacks);
    // The earlier one is the first repetition.
    assert_eq!(
        patients[0].studies[0].series[0].stack_labels(),
        ["repetition 1", "repetition 2"]
    );
    assert_eq!(time_of[&stacks[0].slices[0].path], early);
}

/// Three stations of a spine in one series, 20 slices each, overlapping by 4 (52 places, so
/// no station covers half of them): each station is a volume of its own, never one long
/// stack that mixes them where they overlap.
#[test]
fn overlapping_stations_are_volumes() {
    let dir = tempdir();
    let spec = PhantomSpec {
        columns: 32,
        rows: 32,
        pixel_mm: 10.0,
        slices: 52,
        spacing_mm: 5.0,
        noise_hu: 0.0,
        ..PhantomSpec::default()
    };
    let files = series_of(&spec, dir.path());
    let acquisition = |obj: &mut dicom_object::DefaultDicomObject, n: usize| {
        put_text(obj, tags::ACQUISITION_NUMBER, VR::IS, n.to_string());
    };
    for (k, f) in files.iter().enumerate() {
        let station = if k < 20 {
            1
        } else if k < 36 {
            2
        } else {
            3
        };
        edit(f, |obj| acquisition(obj, station));
    }
    for (n, k) in (16..20).chain(32..36).enumerate() {
        copy_as(&files[k], n, |obj| {
            acquisition(obj, if k < 20 { 2 } else { 3 })
        });
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    assert_eq!(
        stacks.iter().map(|s| s.slices.len()).collect::<Vec<_>>(),
        [20, 20, 20]
    );
    assert_regular(&stacks);
}

/// Two reconstructions of one CT series over partly the same range (a soft-tissue kernel
/// over slices 0-7, a bone kernel over 4-11) are two volumes of 8: before, the repeats were
/// split by order of occurrence and the first volume ran from soft tissue into bone at
/// slice 8.
#[test]
fn reconstructions_with_other_kernels_are_other_volumes() {
    let dir = tempdir();
    let files = series(dir.path());
    for f in &files {
        edit(f, |obj| kernel(obj, "STANDARD"));
    }
    for (n, f) in files.iter().enumerate() {
        copy_as(f, n, |obj| {
            // Four slices (5 mm apart) further along.
            let [x, y, z] = position_of(obj);
            put_position(obj, [x, y, z + 20.0]);
            kernel(obj, "BONE");
            put_text(obj, tags::INSTANCE_NUMBER, VR::IS, (100 + n).to_string());
        });
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    let sizes: Vec<usize> = stacks.iter().map(|s| s.slices.len()).collect();
    assert_eq!(sizes, [SLICES, SLICES]);
    assert_regular(&stacks);
    let mut labels: Vec<String> = stacks.iter().map(|s| s.label.describe()).collect();
    labels.sort();
    assert_eq!(labels, ["kernel BONE", "kernel STANDARD"]);
}

/// The browser's words for a series' stacks name only what differs: a b-value of 0 on every
/// stack (Philips writes one on plain images) is not shown, the kernel that differs is, and so
/// is the plane; stacks that nothing in words tells apart are numbered.
#[test]
fn stack_labels_name_what_differs() {
    let dir = tempdir();
    let files = series(dir.path());
    for f in &files {
        edit(f, |obj| {
            b_value(obj, 0.0);
            kernel(obj, "STANDARD");
        });
    }
    let (_, patients) = scan(dir.path());
    assert_eq!(patients[0].studies[0].series[0].stack_labels(), [""]);
    for (n, f) in files.iter().enumerate() {
        copy_as(f, n, |obj| kernel(obj, "BONE"));
    }
    let (_, patients) = scan(dir.path());
    let mut labels = patients[0].studies[0].series[0].stack_labels();
    labels.sort();
    assert_eq!(labels, ["kernel BONE", "kernel STANDARD"]);

    // A third volume of bone, coronal: the plane tells it apart. A fourth like the second
    // but for its pixel spacing: nothing in words does, so the alike are numbered.
    for (n, f) in files.iter().enumerate() {
        copy_as(f, 100 + n, |obj| {
            kernel(obj, "BONE");
            put_text(
                obj,
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                "1\\0\\0\\0\\0\\-1",
            );
            // Coronal slices step along y.
            let [x, y, z] = position_of(obj);
            put_position(obj, [x, z, y]);
        });
        copy_as(f, 200 + n, |obj| {
            kernel(obj, "BONE");
            put_text(obj, tags::PIXEL_SPACING, VR::DS, "3.5\\3.5");
        });
    }
    let (_, patients) = scan(dir.path());
    let series = &patients[0].studies[0].series[0];
    let mut labels: Vec<(String, usize)> = series
        .stack_labels()
        .into_iter()
        .zip(series.stacks.iter().map(|k| k.slices.len()))
        .collect();
    labels.sort();
    let n = series.stacks.len();
    assert_eq!(n, 4, "{labels:?}");
    let words: Vec<&str> = labels.iter().map(|(l, _)| l.as_str()).collect();
    assert!(words.contains(&"kernel BONE, coronal"), "{words:?}");
    assert!(words.contains(&"kernel STANDARD, axial"), "{words:?}");
    let numbered: Vec<&&str> = words
        .iter()
        .filter(|w| w.starts_with("kernel BONE, axial, volume "))
        .collect();
    assert_eq!(numbered.len(), 2, "{words:?}");
    assert_ne!(numbered[0], numbered[1]);
}

/// Classic diffusion images carry their b-value and gradient at the top level: each
/// weighting is a volume of its own, named by it (the direction to three decimals, b=0
/// without one).
#[test]
fn classic_diffusion_weightings_are_volumes() {
    let dir = tempdir();
    let files = series(dir.path());
    for f in &files {
        edit(f, |obj| b_value(obj, 0.0));
    }
    for (n, f) in files.iter().enumerate() {
        copy_as(f, n, |obj| {
            b_value(obj, 1000.0);
            // One direction, written with a difference in its last digits on every other
            // file: one volume still.
            let y = if n % 2 == 0 { 0.6 } else { 0.600_000_000_1 };
            obj.put(DataElement::new(
                tags::DIFFUSION_GRADIENT_ORIENTATION,
                VR::FD,
                PrimitiveValue::F64([0.0, y, 0.8].into_iter().collect()),
            ));
        });
    }
    let (_, patients) = scan(dir.path());
    let stacks = stacks(&patients);
    let mut labels: Vec<(Option<String>, usize)> = stacks
        .iter()
        .map(|s| (s.label.diffusion.clone(), s.slices.len()))
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            (Some("b=0".to_string()), SLICES),
            (Some("b=1000 dir (0, 0.6, 0.8)".to_string()), SLICES)
        ]
    );
    let mut described: Vec<String> = stacks.iter().map(|s| s.label.describe()).collect();
    described.sort();
    assert_eq!(described, ["b=0", "b=1000 dir (0, 0.6, 0.8)"]);
    let mut shown = patients[0].studies[0].series[0].stack_labels();
    shown.sort();
    assert_eq!(shown, described, "they differ only by it");
}

/// A series is its Series Instance UID: one file without a Series Number (or description, or
/// modality) is not a series of its own, and the series keeps the number its files give.
#[test]
fn a_file_without_a_series_number_stays_in_its_series() {
    let dir = tempdir();
    let files = series(dir.path());
    let number = |path: &Path| {
        dicom_object::open_file(path)
            .unwrap()
            .element(tags::SERIES_NUMBER)
            .unwrap()
            .to_int::<i64>()
            .unwrap()
    };
    let expected = number(&files[0]);
    edit(&files[0], |obj| {
        obj.remove_element(tags::SERIES_NUMBER);
        obj.remove_element(tags::SERIES_DESCRIPTION);
        obj.remove_element(tags::MODALITY);
    });
    let (_, patients) = scan(dir.path());
    let series: Vec<_> = patients[0].studies[0].series.iter().collect();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].number, Some(expected));
    assert_eq!(series[0].modality.as_deref(), Some("CT"));
    assert!(series[0].description.is_some());
    assert_eq!(series[0].stacks.len(), 1);
    assert_eq!(series[0].stacks[0].slices.len(), SLICES);
}
