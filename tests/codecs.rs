//! Issue 2, item 5: every transfer syntax in `../shared/dicom` decodes, and every lossless file
//! is bit-identical to its uncompressed twin; lossy files decode to an image that correlates with
//! their original.

use std::path::{Path, PathBuf};

use imaging::decode::{DecodedFrame, decode_all_frame_values, decode_frame_values};
use imaging::{self, open::open_dicom, stats::voxel_stats};

use crate::support::shared_dicom;

/// Files that do not decode, each with the reason. Anything else that fails is a regression.
const KNOWN_UNDECODABLE: &[(&str, &str)] = &[
    (
        "nema_wg04_subset/dicom/JLSL/MR1_JLSL",
        "CharLS rejects this stream's scan data; CT1/MR3 JLSL decode",
    ),
    ("mr_small/MR_truncated.dcm", "truncated on purpose"),
    (
        "misc/no_meta.dcm",
        "bare data set that neither pydicom nor dicom-rs parses",
    ),
];

fn known_undecodable(path: &Path) -> bool {
    let p = path.to_string_lossy();
    KNOWN_UNDECODABLE
        .iter()
        .any(|(suffix, _)| p.contains(suffix))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| !p.extension().is_some_and(|e| e == "txt" || e == "md"))
        .collect();
    out.sort();
    out
}

fn frames_of(path: &Path) -> u32 {
    let obj = open_dicom(path, true).unwrap_or_else(|e| panic!("{e}"));
    obj.get(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1)
}

fn decode_all(path: &Path) -> Vec<DecodedFrame> {
    let frames = decode_all_frame_values(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(frames.len() as u32, frames_of(path));
    frames
}

fn assert_identical(reference: &Path, other: &Path) {
    let a = decode_all(reference);
    let b = decode_all(other);
    assert_eq!(
        a.len(),
        b.len(),
        "{}: frame count differs from {}",
        other.display(),
        reference.display()
    );
    for (n, (fa, fb)) in a.iter().zip(&b).enumerate() {
        assert_eq!(
            fa.values.len(),
            fb.values.len(),
            "{} frame {n}: sample count",
            other.display()
        );
        let differing = fa
            .values
            .iter()
            .zip(&fb.values)
            .filter(|(x, y)| x != y)
            .count();
        assert_eq!(
            differing,
            0,
            "{} frame {n}: {differing} samples differ from {}",
            other.display(),
            reference.display()
        );
    }
}

/// Pearson correlation of two equally long sample vectors.
fn correlation(a: &[i32], b: &[i32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&v| f64::from(v)).sum::<f64>() / n,
        b.iter().map(|&v| f64::from(v)).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

fn assert_close_lossy(reference: &Path, lossy: &Path) {
    let a = decode_all(reference);
    let b = decode_all(lossy);
    assert_eq!(a.len(), b.len());
    for (fa, fb) in a.iter().zip(&b) {
        assert_eq!(fa.values.len(), fb.values.len(), "{}", lossy.display());
        let r = correlation(&fa.values, &fb.values);
        assert!(
            r > 0.98,
            "{}: correlation with {} is only {r:.4}",
            lossy.display(),
            reference.display()
        );
    }
}

#[test]
fn every_file_in_codecs_and_derived_decodes() {
    let Some(root) = shared_dicom() else { return };
    let mut failures = Vec::new();
    let mut frames_decoded = 0;
    for dir in ["codecs", "derived"] {
        for path in files_under(&root.join(dir)) {
            if known_undecodable(&path) {
                continue;
            }
            let frames = match open_dicom(&path, true) {
                Ok(obj) => obj
                    .get(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
                    .and_then(|e| e.to_int::<u32>().ok())
                    .unwrap_or(1),
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            match decode_all_frame_values(&path) {
                Ok(decoded) => {
                    assert_eq!(decoded.len() as u32, frames, "{}", path.display());
                    for frame in decoded {
                        let f = &frame.format;
                        assert_eq!(
                            frame.values.len(),
                            usize::from(f.rows)
                                * usize::from(f.columns)
                                * usize::from(f.samples_per_pixel)
                        );
                        frames_decoded += 1;
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} frames decoded, but:\n{}",
        frames_decoded,
        failures.join("\n")
    );
    assert!(
        frames_decoded > 500,
        "only {frames_decoded} frames found: is the data set complete?"
    );
}

#[test]
fn known_undecodable_files_fail_with_a_named_error_not_a_panic() {
    let Some(root) = shared_dicom() else { return };
    for (suffix, _) in KNOWN_UNDECODABLE {
        let matches: Vec<PathBuf> = files_under(&root.join("codecs"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(suffix))
            .collect();
        assert!(!matches.is_empty(), "{suffix} not found");
        for path in matches {
            // If one of these starts to decode, take it off the list (and check it against
            // its twin): this test fails so that the list stays true.
            let e = decode_frame_values(&path, 0).err().unwrap_or_else(|| {
                panic!("{} now decodes: update KNOWN_UNDECODABLE", path.display())
            });
            assert!(
                e.to_string().contains(&*path.to_string_lossy()),
                "error does not name the file: {e}"
            );
        }
    }
}

#[test]
fn ct_slice_in_every_lossless_syntax_is_bit_identical() {
    let Some(root) = shared_dicom() else { return };
    let dir = root.join("codecs/ct_single_slice_all_transfer_syntaxes/dicom");
    let base = dir.join("CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm");
    for name in [
        "CTImage.dcm",
        "CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
        "CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
        "CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm",
        "CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
        "CTImage.dcm_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm",
        "CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
        "CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
        "CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    ] {
        assert_identical(&base, &dir.join(name));
    }
    for name in [
        "CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm",
        "CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm",
        "CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm",
        "CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm",
        "CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm",
    ] {
        assert_close_lossy(&base, &dir.join(name));
    }
    // 8-bit baseline of 16-bit data: dcmtk rescales to 8 bits, so only the picture can agree.
    assert_close_lossy(
        &base,
        &dir.join("CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm"),
    );
}

#[test]
fn nema_wg04_lossless_codecs_match_the_reference_images() {
    let Some(root) = shared_dicom() else { return };
    let dir = root.join("codecs/nema_wg04_subset/dicom");
    for image in ["CT1", "MR1", "MR3"] {
        let reference = dir.join(format!("REF/{image}_UNC"));
        for codec in ["J2KR", "JLSL", "JPLL", "RLE"] {
            let path = dir.join(format!("{codec}/{image}_{codec}"));
            if !path.exists() || known_undecodable(&path) {
                continue;
            }
            assert_identical(&reference, &path);
        }
        for codec in ["J2KI", "JLSN", "JPLY"] {
            let path = dir.join(format!("{codec}/{image}_{codec}"));
            if path.exists() {
                assert_close_lossy(&reference, &path);
            }
        }
    }
}

#[test]
fn htj2k_lossless_matches_uncompressed() {
    let Some(root) = shared_dicom() else { return };
    let dir = root.join("codecs/htj2k/dicom");
    for image in ["CT1", "MR1", "MR2"] {
        assert_identical(
            &dir.join(format!("uncompressed/{image}_UNC")),
            &dir.join(format!("htj2k/{image}_JPH")),
        );
    }
    // 8-bit RGB: lossy correlates with lossless.
    let lossless = decode_all(&dir.join("pydicom_rgb/HTJ2KLossless_08_RGB.dcm"));
    assert_eq!(lossless[0].format.samples_per_pixel, 3);
    assert_close_lossy(
        &dir.join("pydicom_rgb/HTJ2KLossless_08_RGB.dcm"),
        &dir.join("pydicom_rgb/HTJ2K_08_RGB.dcm"),
    );
}

#[test]
fn pydicom_twins_are_bit_identical() {
    let Some(root) = shared_dicom() else { return };
    let dir = root.join("codecs/pydicom_misc/dicom");
    let groups: &[(&str, &[&str])] = &[
        (
            "mr_small/MR_small.dcm",
            &[
                "mr_small/MR_small_bigendian.dcm",
                "mr_small/MR_small_expb.dcm",
                "mr_small/MR_small_implicit.dcm",
                "mr_small/MR_small_padded.dcm",
                "mr_small/MR_small_RLE.dcm",
                "mr_small/MR_small_jp2klossless.dcm",
                "mr_small/MR_small_jpeg_ls_lossless.dcm",
            ],
        ),
        (
            "emri/emri_small.dcm",
            &[
                "emri/emri_small_big_endian.dcm",
                "emri/emri_small_RLE.dcm",
                "emri/emri_small_jpeg_2k_lossless.dcm",
                "emri/emri_small_jpeg_ls_lossless.dcm",
            ],
        ),
        ("j2k/693_UNCR.dcm", &["j2k/693_J2KR.dcm"]),
    ];
    for (reference, twins) in groups {
        for twin in *twins {
            assert_identical(&dir.join(reference), &dir.join(twin));
        }
    }
}

/// Whole series: independent encoders (dcmtk, gdcm) on the tilted GE CT must load to the same
/// voxels as the uncompressed series, and the Legacy Converted Enhanced CT to the same voxels
/// and the same slice positions.
#[test]
fn transcoded_series_load_to_identical_volumes() {
    let Some(root) = shared_dicom() else { return };
    let load = |dir: &Path| {
        let report = imaging::scan(&[dir.to_path_buf()]);
        let patients = imaging::group(&report.instances);
        let stack = imaging::default_stack(&patients).unwrap().clone();
        let volume = imaging::load_stack(&stack, &Default::default(), &|_| {}).unwrap();
        assert!(
            volume.failed_slices.is_empty(),
            "{}: {:?}",
            dir.display(),
            volume.failed_slices
        );
        volume
    };
    let classic = load(&root.join("ct/ge_hispeed_tilt_nonuniform/dicom"));
    let classic_hash = voxel_stats(&classic).sha256;
    for variant in [
        "j2k_lossless",
        "jpeg_lossless_sv1",
        "jpegls_lossless_fragmented",
    ] {
        let v = load(
            &root
                .join("derived/ge_ct_tilt_transcoded/dicom")
                .join(variant),
        );
        assert_eq!(voxel_stats(&v).sha256, classic_hash, "{variant}");
    }
    let enhanced = load(&root.join("derived/ge_ct_tilt_legacy_enhanced_ct/dicom"));
    assert_eq!(
        voxel_stats(&enhanced).sha256,
        classic_hash,
        "legacy enhanced CT voxels"
    );
    assert_eq!(
        enhanced.geometry.slice_positions_mm,
        classic.geometry.slice_positions_mm
    );
    assert_eq!(enhanced.geometry.dims, classic.geometry.dims);

    let lossy = load(&root.join("derived/ge_ct_tilt_transcoded/dicom/j2k_lossy_rate10"));
    assert_eq!(lossy.geometry.dims, classic.geometry.dims);

    let philips = load(&root.join("mr/philips_fmri_oblique_4d/dicom"));
    let philips_hash = voxel_stats(&philips).sha256;
    for variant in ["implicit_le", "explicit_be", "deflate"] {
        let dir = root
            .join("derived/philips_fmri_transcoded/dicom")
            .join(variant);
        assert_eq!(voxel_stats(&load(&dir)).sha256, philips_hash, "{variant}");
    }
}

/// 1-bit segmentations (Bits Allocated 1): the pydicom liver SEG, 3 frames of one segment, in
/// every syntax it comes in, 512x512 and a 510x510 crop whose frames do not start on a byte
/// (PS3.5 8.1.1: bits run on across frames). The reference is pydicom 3.0.2's own unpacking
/// (`pixel_array` of liver.dcm and liver_nonbyte_aligned.dcm as little-endian u16, k j i):
/// RLE and deflated frames, which pydicom cannot decode, must equal it too.
#[test]
fn one_bit_segmentations_load_as_masks_equal_to_pydicom() {
    let Some(root) = shared_dicom() else { return };
    let dir = root.join("codecs/pydicom_misc/dicom/liver");
    let cases = [
        (
            "liver",
            [512, 512, 3],
            "4a5fc13506b4cb55dc0315b2ad3d6a2a869a659740118cf2698dbbc3254bac19",
            &["", "_deflate", "_expb", "_j2k", "_rle"][..],
        ),
        (
            "liver_nonbyte_aligned",
            [510, 510, 3],
            "691b356d28a9095f2517116451ae9a565c040eea0c301aff018167bb5c9c129f",
            &["", "_deflate", "_j2k", "_rle"][..],
        ),
    ];
    for (stem, dims, pydicom_sha256, variants) in cases {
        for variant in variants {
            let path = dir.join(format!("{stem}{variant}.dcm"));
            let report = imaging::scan(std::slice::from_ref(&path));
            let patients = imaging::group(&report.instances);
            let stack = imaging::default_stack(&patients).unwrap().clone();
            assert_eq!(stack.label.segment, Some(1), "{}", path.display());
            let volume = imaging::load_stack(&stack, &Default::default(), &|_| {})
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                volume.failed_slices.is_empty(),
                "{}: {:?}",
                path.display(),
                volume.failed_slices
            );
            assert_eq!(volume.geometry.dims, dims, "{}", path.display());
            let stats = voxel_stats(&volume);
            assert_eq!(
                stats.sha256.as_deref(),
                Some(pydicom_sha256),
                "{}",
                path.display()
            );
            // 36233 + 35645 + 35220 pixels of liver (pydicom's per-frame sums).
            assert_eq!(
                (stats.mean_stored * stats.count as f64).round() as u64,
                107_098,
                "{}",
                path.display()
            );
            assert_eq!((stats.min_stored, stats.max_stored), (0, 1));
        }
    }
}
