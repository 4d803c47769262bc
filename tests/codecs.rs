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

/// A small colour image, 16 x 8: gentle ramps (as a JPEG test image should be), each channel
/// its own way, so a swapped or unconverted channel is off by tens of levels. The colour
/// changes only every second column, so YBR_FULL_422's shared chroma loses nothing.
fn colour_image() -> Vec<[u8; 3]> {
    (0..8)
        .flat_map(|y| (0..16).map(move |x| (x / 2, y)))
        .map(|(x, y)| [60 + 12 * x, 90 + 10 * y, 200 - 6 * x - 5 * y].map(|v| v as u8))
        .collect()
}

/// RGB to YBR_FULL, PS3.3 C.7.6.3.1.2 (the forward direction: the loader has the inverse).
fn to_ybr([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
    [
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.1687 * r - 0.3313 * g + 0.5 * b + 128.0,
        0.5 * r - 0.4187 * g - 0.0813 * b + 128.0,
    ]
    .map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// A one-slice colour file: a synthetic grey slice turned into 8-bit colour with `bytes` as its
/// Pixel Data in `photometric` (planar configuration `planar`).
fn colour_file(dir: &Path, name: &str, photometric: &str, planar: u16, bytes: Vec<u8>) -> PathBuf {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let grey = dir.join(format!("{name}_grey"));
    imaging::synth::write_series(
        &imaging::synth::PhantomSpec {
            columns: 16,
            rows: 8,
            slices: 1,
            pixel_mm: 2.0,
            ..Default::default()
        },
        &grey,
    )
    .unwrap();
    let source = std::fs::read_dir(&grey)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut obj = dicom_object::open_file(&source).unwrap();
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    obj.put(us(tags::SAMPLES_PER_PIXEL, 3));
    obj.put(us(tags::PLANAR_CONFIGURATION, planar));
    obj.put(us(tags::BITS_ALLOCATED, 8));
    obj.put(us(tags::BITS_STORED, 8));
    obj.put(us(tags::HIGH_BIT, 7));
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(photometric),
    ));
    for tag in [
        tags::RESCALE_INTERCEPT,
        tags::RESCALE_SLOPE,
        tags::RESCALE_TYPE,
        tags::WINDOW_CENTER,
        tags::WINDOW_WIDTH,
    ] {
        obj.remove_element(tag);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(bytes),
    ));
    let path = dir.join(format!("{name}.dcm"));
    obj.write_to_file(&path).unwrap();
    path
}

fn load_colour(path: &Path) -> Vec<[u8; 3]> {
    let report = imaging::scan(std::slice::from_ref(&path.to_path_buf()));
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap().clone();
    let volume = imaging::load_stack(&stack, &Default::default(), &|_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        volume.failed_slices.is_empty(),
        "{:?}",
        volume.failed_slices
    );
    assert!(volume.voxels.is_colour());
    assert_eq!(volume.rescale.for_slice(0), imaging::Rescale::IDENTITY);
    (0..8)
        .flat_map(|j| (0..16).map(move |i| (i, j)))
        .map(|(i, j)| volume.voxels.rgb(i, j, 0).unwrap())
        .collect()
}

/// Rewrite `path` with `fragment` as its one encapsulated frame, in transfer syntax `ts`.
fn encapsulate(path: &Path, ts: &str, fragment: Vec<u8>) {
    let mut obj = dicom_object::open_file(path).unwrap();
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::PIXEL_DATA,
        dicom_core::VR::OB,
        dicom_core::value::Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
            vec![0],
            vec![fragment],
        )),
    ));
    obj.into_inner()
        .with_meta(
            dicom_object::FileMetaTableBuilder::new()
                .transfer_syntax(ts)
                .implementation_class_uid("2.25.1"),
        )
        .unwrap()
        .write_to_file(path)
        .unwrap();
}

/// An RLE Lossless frame of three 8-bit planes (PS3.5 G.3): the 64-byte header, then each
/// plane as literal runs of at most 128 bytes, each segment padded to an even length.
fn rle_frame(pixels: &[[u8; 3]]) -> Vec<u8> {
    let segments: Vec<Vec<u8>> = (0..3)
        .map(|c| {
            let plane: Vec<u8> = pixels.iter().map(|p| p[c]).collect();
            let mut out = Vec::new();
            for run in plane.chunks(128) {
                out.push((run.len() - 1) as u8);
                out.extend_from_slice(run);
            }
            if out.len() % 2 == 1 {
                out.push(0x80); // PackBits no-op
            }
            out
        })
        .collect();
    let mut header = vec![0u8; 64];
    header[..4].copy_from_slice(&3u32.to_le_bytes());
    let mut at = 64u32;
    for (n, segment) in segments.iter().enumerate() {
        header[4 + 4 * n..8 + 4 * n].copy_from_slice(&at.to_le_bytes());
        at += segment.len() as u32;
    }
    header.into_iter().chain(segments.concat()).collect()
}

fn largest_difference(a: &[[u8; 3]], b: &[[u8; 3]]) -> u8 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| (0..3).map(move |c| x[c].abs_diff(y[c])))
        .max()
        .unwrap_or(0)
}

/// Colour files load as RGB whatever their layout and colour model: pixel-interleaved and
/// planar RGB exactly; YBR_FULL and YBR_FULL_422 (made here with the standard's forward
/// transform) within the rounding of the two conversions; RLE in RGB and in YBR_FULL; Deflated
/// Image Frame Compression in planar RGB and in YBR_FULL; JPEG-LS from dcmtk in its three
/// interleave modes; and a JPEG baseline encoded by another library (dicom-rs with
/// jpeg-encoder, YBR_FULL_422) close to the original.
#[test]
fn colour_layouts_and_models_load_as_the_same_rgb() {
    use dicom_pixeldata::Transcode;
    let dir = crate::support::tempdir();
    let rgb = colour_image();
    let interleaved: Vec<u8> = rgb.iter().flatten().copied().collect();
    let planar: Vec<u8> = (0..3).flat_map(|c| rgb.iter().map(move |p| p[c])).collect();
    let ybr: Vec<[u8; 3]> = rgb.iter().map(|p| to_ybr(*p)).collect();
    let ybr_full: Vec<u8> = ybr.iter().flatten().copied().collect();
    let ybr_422: Vec<u8> = ybr
        .chunks_exact(2)
        .flat_map(|pair| [pair[0][0], pair[1][0], pair[0][1], pair[0][2]])
        .collect();

    let exact = colour_file(dir.path(), "rgb", "RGB", 0, interleaved.clone());
    assert_eq!(load_colour(&exact), rgb);
    let planar = colour_file(dir.path(), "planar", "RGB", 1, planar);
    assert_eq!(load_colour(&planar), rgb);
    let full = colour_file(dir.path(), "ybr_full", "YBR_FULL", 0, ybr_full.clone());
    assert!(largest_difference(&load_colour(&full), &rgb) <= 2);
    let half = colour_file(dir.path(), "ybr_422", "YBR_FULL_422", 0, ybr_422);
    assert!(largest_difference(&load_colour(&half), &rgb) <= 2);

    // RLE (PS3.5 G): one segment a colour, in the stored model, made here with literal
    // PackBits runs only.
    for (name, photometric, pixels) in [("rle_rgb", "RGB", &rgb), ("rle_ybr", "YBR_FULL", &ybr)] {
        let path = colour_file(dir.path(), name, photometric, 0, Vec::new());
        encapsulate(&path, "1.2.840.10008.1.2.5", rle_frame(pixels));
        let loaded = load_colour(&path);
        if photometric == "RGB" {
            assert_eq!(loaded, rgb, "{name}");
        } else {
            assert!(largest_difference(&loaded, &rgb) <= 2, "{name}");
        }
    }

    // Deflated Image Frame Compression keeps the stored layout and model: planar RGB
    // (transcoded by dicom-rs) and YBR_FULL (deflated here: dicom-rs relabels YBR data as RGB
    // without converting it).
    use dicom_transfer_syntax_registry::entries::DEFLATED_IMAGE_FRAME_COMPRESSION;
    let deflated_ybr = colour_file(dir.path(), "deflated_ybr", "YBR_FULL", 0, Vec::new());
    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut deflater, &ybr_full).unwrap();
    let mut fragment = deflater.finish().unwrap();
    if fragment.len() % 2 == 1 {
        fragment.push(0);
    }
    encapsulate(&deflated_ybr, "1.2.840.10008.1.2.8.1", fragment);
    assert!(largest_difference(&load_colour(&deflated_ybr), &rgb) <= 2);
    let mut obj = dicom_object::open_file(&planar).unwrap();
    obj.transcode(&DEFLATED_IMAGE_FRAME_COMPRESSION.erased())
        .unwrap();
    let deflated_planar = dir.path().join("deflated_planar.dcm");
    obj.write_to_file(&deflated_planar).unwrap();
    let reopened = dicom_object::open_file(&deflated_planar).unwrap();
    assert_eq!(
        reopened.meta().transfer_syntax().trim_end_matches('\0'),
        "1.2.840.10008.1.2.8.1"
    );
    // Still planar: the layout the loader must undo.
    assert_eq!(
        reopened
            .element(dicom_dictionary_std::tags::PLANAR_CONFIGURATION)
            .unwrap()
            .to_int::<u16>()
            .unwrap(),
        1
    );
    assert_eq!(load_colour(&deflated_planar), rgb, "deflated planar");

    // JPEG-LS colour from an independent encoder (dcmtk) in its three interleave modes:
    // without interleave CharLS gives the components plane by plane (tests/fixtures).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg_ls_colour");
    for mode in ["none", "line", "sample"] {
        let path = fixtures.join(format!("interleave_{mode}.dcm"));
        assert_eq!(load_colour(&path), rgb, "JPEG-LS, interleave {mode}");
    }

    let mut jpeg = dicom_object::open_file(&exact).unwrap();
    jpeg.transcode(&dicom_transfer_syntax_registry::entries::JPEG_BASELINE.erased())
        .unwrap();
    let jpeg_path = dir.path().join("jpeg.dcm");
    jpeg.write_to_file(&jpeg_path).unwrap();
    let decoded = load_colour(&jpeg_path);
    let mean: f64 = decoded
        .iter()
        .zip(&rgb)
        .flat_map(|(x, y)| (0..3).map(move |c| f64::from(x[c].abs_diff(y[c]))))
        .sum::<f64>()
        / (rgb.len() * 3) as f64;
    assert!(mean < 4.0, "JPEG colour differs by {mean:.1} on average");
}

/// The red, green and blue Palette Color Lookup Table Descriptor and Data tags.
const PALETTE_TABLES: [(dicom_core::Tag, dicom_core::Tag); 3] = {
    use dicom_dictionary_std::tags;
    [
        (
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
    ]
};

/// PALETTE COLOR images load as colour through their lookup tables: the real palette
/// ultrasound frame (RLE, 256 16-bit entries) equals pydicom 3.0.2's `apply_color_lut` (its
/// 16-bit levels' high bytes, sha256 of the RGB bytes), and a palette whose first mapped value
/// is 10 clamps indices below and above its four entries (PS3.3 C.7.6.3.1.5).
#[test]
fn palette_colour_loads_through_its_lookup_tables() {
    let Some(root) = shared_dicom() else { return };
    let path = root.join("codecs/ct_single_slice_all_transfer_syntaxes/dicom/no-pixel-spacing.dcm");
    let report = imaging::scan(std::slice::from_ref(&path));
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap().clone();
    assert!(stack.format.is_palette());
    let volume = imaging::load_stack(&stack, &Default::default(), &|_| {}).unwrap();
    assert!(volume.failed_slices.is_empty());
    assert!(volume.voxels.is_colour());
    assert_eq!(
        voxel_stats(&volume).sha256.as_deref(),
        Some("d4c564cf88bf9fe0654d380ad45744c9579b4e456150e40e5577f87103949c4a")
    );

    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let dir = crate::support::tempdir();
    // Indices 0..128 along each row of a 16 x 8 frame (8 bits), through a 4-entry palette.
    let indices: Vec<u8> = (0..8u8).flat_map(|_| (0..16u8).map(|x| x * 2)).collect();
    let file = colour_file(dir.path(), "palette", "PALETTE COLOR", 0, indices.clone());
    let mut obj = dicom_object::open_file(&file).unwrap();
    obj.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    obj.remove_element(tags::PLANAR_CONFIGURATION);
    let entries: [[u16; 4]; 3] = [
        [0x1000, 0x2000, 0x3000, 0xff00],
        [0x0000, 0x4000, 0x8000, 0xc000],
        [0xff00, 0x8000, 0x4000, 0x0000],
    ];
    for (c, (descriptor, data)) in PALETTE_TABLES.into_iter().enumerate() {
        obj.put(DataElement::new(
            descriptor,
            VR::US,
            PrimitiveValue::U16(vec![4u16, 10, 16].into()),
        ));
        obj.put(DataElement::new(
            data,
            VR::OW,
            PrimitiveValue::U16(entries[c].to_vec().into()),
        ));
    }
    obj.write_to_file(&file).unwrap();
    let expected: Vec<[u8; 3]> = indices
        .iter()
        .map(|index| {
            let entry = (i32::from(*index) - 10).clamp(0, 3) as usize;
            std::array::from_fn(|c| (entries[c][entry] >> 8) as u8)
        })
        .collect();
    assert_eq!(load_colour(&file), expected);

    // The same in implicit VR, where dicom-rs reads the 8-bit indices as 16-bit words.
    let implicit = dir.path().join("palette_implicit.dcm");
    dicom_object::open_file(&file)
        .unwrap()
        .into_inner()
        .with_meta(
            dicom_object::FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2")
                .implementation_class_uid("2.25.1"),
        )
        .unwrap()
        .write_to_file(&implicit)
        .unwrap();
    assert_eq!(load_colour(&implicit), expected, "implicit VR");

    // 8-bit entries stored one a 16-bit word (C.7.6.3.1.5's note): the low bytes.
    let mut obj = dicom_object::open_file(&file).unwrap();
    for (descriptor, data) in PALETTE_TABLES {
        obj.put(DataElement::new(
            descriptor,
            VR::US,
            PrimitiveValue::U16(vec![4u16, 10, 8].into()),
        ));
        obj.put(DataElement::new(
            data,
            VR::OW,
            PrimitiveValue::U16(vec![0x11u16, 0x22, 0x33, 0xee].into()),
        ));
    }
    obj.write_to_file(&file).unwrap();
    let levels = [0x11u8, 0x22, 0x33, 0xee];
    for (got, index) in load_colour(&file).iter().zip(&indices) {
        let level = levels[(i32::from(*index) - 10).clamp(0, 3) as usize];
        assert_eq!(*got, [level; 3], "index {index}");
    }
}

/// A decompressed data set (`imaging::transcode`) read back by dicom-rs under a File Meta
/// group naming Explicit VR Little Endian, as the case server sends it.
fn decompressed(path: &Path) -> Result<dicom_object::DefaultDicomObject, String> {
    let original = open_dicom(path, true).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let data_set = imaging::transcode::decompressed_data_set(path, &bytes, u64::MAX)?.concat();
    // Read back by dicom-rs below, which sorts what it reads: the order is checked here.
    let tags: Vec<(u16, u16)> = imaging::open::top_level_elements(&data_set)?
        .iter()
        .map(|e| (e.group, e.element))
        .collect();
    if !tags.windows(2).all(|w| w[0] < w[1]) {
        return Err(format!(
            "{}: elements out of order: {tags:04X?}",
            path.display()
        ));
    }
    let meta = original.meta();
    let mut file = imaging::open::part10_header(
        meta.media_storage_sop_class_uid(),
        meta.media_storage_sop_instance_uid(),
        "1.2.840.10008.1.2.1",
        None,
    )?;
    file.extend_from_slice(&data_set);
    dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(&file[..])
        .map_err(|e| {
            format!(
                "{}: the decompressed file does not read: {e}",
                path.display()
            )
        })
}

/// Pixel Data as the words (or bytes) it holds, each masked to `stored` bits: the bits above
/// Bits Stored are not part of a sample (PS3.5 8.1.1), and writers differ in them for signed
/// samples (the decompressed copy sign-extends; an uncompressed twin may leave them zero).
fn stored_samples(obj: &dicom_object::DefaultDicomObject, stored: u16) -> Vec<u16> {
    use dicom_dictionary_std::tags;
    let int = |tag| obj.element(tag).unwrap().to_int::<u16>().unwrap();
    let allocated = int(tags::BITS_ALLOCATED);
    let mask = if stored >= 16 {
        u16::MAX
    } else {
        (1u16 << stored) - 1
    };
    let bytes = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .value()
        .to_bytes()
        .unwrap()
        .into_owned();
    if allocated == 16 {
        bytes
            .chunks_exact(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]) & mask)
            .collect()
    } else {
        bytes.iter().map(|b| u16::from(*b) & mask).collect()
    }
}

/// Every compressed file of the shared data written again in Explicit VR Little Endian with
/// its pixels decoded (what the case server sends to a WADO-RS request for the default
/// syntax): each lossless one holds its uncompressed twin's samples exactly (the twins come
/// from dcmtk, pydicom and NEMA, not from this code); every one reads back with dicom-rs, in
/// Explicit VR Little Endian, its Pixel Data as long as its frames, colour as interleaved RGB,
/// and a lossy one says it is (it said so already, or is marked now).
#[test]
fn compressed_files_decompress_to_explicit_little_endian_as_their_twins() {
    use dicom_dictionary_std::tags;
    let Some(root) = shared_dicom() else { return };
    let codecs = root.join("codecs");
    let ct = "ct_single_slice_all_transfer_syntaxes/dicom/CTImage.dcm_";
    let mut pairs: Vec<(String, String)> = [
        "RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
        "JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm",
        "JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
        "JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
        "JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    ]
    .iter()
    .map(|name| {
        (
            format!("{ct}LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm"),
            format!("{ct}{name}"),
        )
    })
    .collect();
    for image in ["CT1", "MR1", "MR3"] {
        for codec in ["J2KR", "JLSL", "JPLL", "RLE"] {
            pairs.push((
                format!("nema_wg04_subset/dicom/REF/{image}_UNC"),
                format!("nema_wg04_subset/dicom/{codec}/{image}_{codec}"),
            ));
        }
    }
    for image in ["CT1", "MR1", "MR2"] {
        pairs.push((
            format!("htj2k/dicom/uncompressed/{image}_UNC"),
            format!("htj2k/dicom/htj2k/{image}_JPH"),
        ));
    }
    let pydicom = "pydicom_misc/dicom";
    for (reference, twin) in [
        ("mr_small/MR_small.dcm", "mr_small/MR_small_RLE.dcm"),
        (
            "mr_small/MR_small.dcm",
            "mr_small/MR_small_jp2klossless.dcm",
        ),
        (
            "mr_small/MR_small.dcm",
            "mr_small/MR_small_jpeg_ls_lossless.dcm",
        ),
        ("emri/emri_small.dcm", "emri/emri_small_RLE.dcm"),
        (
            "emri/emri_small.dcm",
            "emri/emri_small_jpeg_2k_lossless.dcm",
        ),
        (
            "emri/emri_small.dcm",
            "emri/emri_small_jpeg_ls_lossless.dcm",
        ),
        ("j2k/693_UNCR.dcm", "j2k/693_J2KR.dcm"),
    ] {
        pairs.push((
            format!("{pydicom}/{reference}"),
            format!("{pydicom}/{twin}"),
        ));
    }
    let mut exact = 0;
    for (reference, compressed) in &pairs {
        let path = codecs.join(compressed);
        if !path.exists() || known_undecodable(&path) {
            continue;
        }
        let back = decompressed(&path).unwrap_or_else(|e| panic!("{compressed}: {e}"));
        let twin = open_dicom(&codecs.join(reference), false).unwrap();
        // The twin's Bits Stored (693_J2KR says 16 of the 14 its twin holds).
        let bits = twin
            .element(tags::BITS_STORED)
            .unwrap()
            .to_int::<u16>()
            .unwrap();
        assert!(
            stored_samples(&back, bits) == stored_samples(&twin, bits),
            "{compressed}: samples differ from {reference}"
        );
        exact += 1;
    }
    assert!(exact >= 25, "only {exact} lossless pairs found");

    let mut written = 0;
    let mut refused = Vec::new();
    for dir in ["codecs", "derived"] {
        for path in files_under(&root.join(dir)) {
            let Ok(original) = open_dicom(&path, true) else {
                continue;
            };
            let ts = original.meta().transfer_syntax().trim_end_matches('\0');
            if !imaging::transcode::is_decompressed(ts) || known_undecodable(&path) {
                continue;
            }
            let back = match decompressed(&path) {
                Ok(back) => back,
                Err(e) => {
                    refused.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let what = path.display();
            assert_eq!(
                back.meta().transfer_syntax().trim_end_matches('\0'),
                "1.2.840.10008.1.2.1"
            );
            let int = |tag| back.element(tag).unwrap().to_int::<usize>().unwrap();
            let frames = back
                .element(tags::NUMBER_OF_FRAMES)
                .ok()
                .and_then(|e| e.to_int::<usize>().ok())
                .unwrap_or(1);
            let len = int(tags::ROWS)
                * int(tags::COLUMNS)
                * int(tags::SAMPLES_PER_PIXEL)
                * (int(tags::BITS_ALLOCATED) / 8)
                * frames;
            let pixels = back.element(tags::PIXEL_DATA).unwrap().value().to_bytes();
            assert_eq!(pixels.unwrap().len(), len + len % 2, "{what}");
            // The decoded samples are the decoder's, in the file's own frame order.
            let decoded: Vec<u8> = imaging::decode::native_frames(&path, None, u64::MAX)
                .unwrap()
                .bytes;
            assert_eq!(
                &back
                    .element(tags::PIXEL_DATA)
                    .unwrap()
                    .value()
                    .to_bytes()
                    .unwrap()[..len],
                &decoded[..],
                "{what}"
            );
            if int(tags::SAMPLES_PER_PIXEL) == 3 {
                let text = |tag| {
                    back.element(tag)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .trim()
                        .to_string()
                };
                let photometric = text(tags::PHOTOMETRIC_INTERPRETATION);
                assert!(photometric == "RGB" || photometric == "YBR_FULL", "{what}");
                assert_eq!(int(tags::PLANAR_CONFIGURATION), 0, "{what}");
            }
            if matches!(
                ts,
                "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.91"
            ) {
                let lossy = back.element(tags::LOSSY_IMAGE_COMPRESSION).unwrap();
                assert_eq!(lossy.to_str().unwrap().trim(), "01", "{what}");
            }
            written += 1;
        }
    }
    // Refused, each with its reason: palette colour and 1-bit images are not written again.
    for r in &refused {
        assert!(
            r.contains("palette colour") || r.contains("Bits Allocated 1 "),
            "{r}"
        );
    }
    assert!(written >= 60, "only {written} files decompressed");
    eprintln!(
        "{exact} lossless files equal their twins; {written} decompressed, {} refused",
        refused.len()
    );
}

/// Colour written again natively (`imaging::transcode`), checked against the image the files
/// were made from: RLE in RGB gives its RGB, and RLE in YBR_FULL its YBR_FULL samples, exactly
/// (a lossless object is not rounded through a colour conversion; its Photometric
/// Interpretation says which); planar RGB deflated (Deflated Image Frame Compression) comes out
/// interleaved; dcmtk's JPEG-LS in each interleave mode gives the RGB; a JPEG baseline
/// (YBR_FULL_422, by dicom-rs's encoder) comes out as RGB close to the original, said lossy.
#[test]
fn colour_decompresses_to_the_image_it_was_made_from() {
    use dicom_dictionary_std::tags;
    use dicom_pixeldata::Transcode;
    let dir = crate::support::tempdir();
    let rgb = colour_image();
    let interleaved: Vec<u8> = rgb.iter().flatten().copied().collect();
    let planar: Vec<u8> = (0..3).flat_map(|c| rgb.iter().map(move |p| p[c])).collect();
    let ybr: Vec<[u8; 3]> = rgb.iter().map(|p| to_ybr(*p)).collect();
    let ybr_bytes: Vec<u8> = ybr.iter().flatten().copied().collect();
    let text = |o: &dicom_object::DefaultDicomObject, tag| {
        o.element(tag).unwrap().to_str().unwrap().trim().to_string()
    };
    let pixels = |o: &dicom_object::DefaultDicomObject| {
        o.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .into_owned()
    };
    for (name, photometric, samples, expected) in [
        ("rle_rgb", "RGB", &rgb, &interleaved),
        ("rle_ybr", "YBR_FULL", &ybr, &ybr_bytes),
    ] {
        let path = colour_file(dir.path(), name, photometric, 0, Vec::new());
        encapsulate(&path, "1.2.840.10008.1.2.5", rle_frame(samples));
        let back = decompressed(&path).unwrap();
        assert_eq!(
            text(&back, tags::PHOTOMETRIC_INTERPRETATION),
            photometric,
            "{name}"
        );
        assert_eq!(&pixels(&back)[..expected.len()], &expected[..], "{name}");
    }
    let planar_rgb = colour_file(dir.path(), "planar", "RGB", 1, planar);
    let mut obj = dicom_object::open_file(&planar_rgb).unwrap();
    obj.transcode(
        &dicom_transfer_syntax_registry::entries::DEFLATED_IMAGE_FRAME_COMPRESSION.erased(),
    )
    .unwrap();
    let deflated = dir.path().join("deflated_planar.dcm");
    obj.write_to_file(&deflated).unwrap();
    let back = decompressed(&deflated).unwrap();
    assert_eq!(text(&back, tags::PHOTOMETRIC_INTERPRETATION), "RGB");
    assert_eq!(
        back.element(tags::PLANAR_CONFIGURATION)
            .unwrap()
            .to_int::<u16>()
            .unwrap(),
        0
    );
    assert_eq!(&pixels(&back)[..interleaved.len()], &interleaved[..]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg_ls_colour");
    for mode in ["none", "line", "sample"] {
        let back = decompressed(&fixtures.join(format!("interleave_{mode}.dcm"))).unwrap();
        assert_eq!(
            text(&back, tags::PHOTOMETRIC_INTERPRETATION),
            "RGB",
            "{mode}"
        );
        assert_eq!(
            &pixels(&back)[..interleaved.len()],
            &interleaved[..],
            "{mode}"
        );
    }
    let exact = colour_file(dir.path(), "rgb", "RGB", 0, interleaved.clone());
    let mut jpeg = dicom_object::open_file(&exact).unwrap();
    jpeg.transcode(&dicom_transfer_syntax_registry::entries::JPEG_BASELINE.erased())
        .unwrap();
    let jpeg_path = dir.path().join("jpeg.dcm");
    jpeg.write_to_file(&jpeg_path).unwrap();
    let back = decompressed(&jpeg_path).unwrap();
    assert_eq!(text(&back, tags::PHOTOMETRIC_INTERPRETATION), "RGB");
    assert_eq!(text(&back, tags::LOSSY_IMAGE_COMPRESSION), "01");
    let got = pixels(&back);
    let mean = got
        .iter()
        .zip(&interleaved)
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / interleaved.len() as f64;
    assert!(mean < 4.0, "JPEG colour differs by {mean:.1} on average");
}
