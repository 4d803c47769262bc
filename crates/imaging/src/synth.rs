//! Synthetic chest CT phantoms written as real DICOM series: for tests, benchmarks and the
//! demo case.
//!
//! The phantom is defined in patient space (LPS mm), so every slice samples the same anatomy
//! whatever the slice spacing, gantry tilt or missing slices: a correct loader reproduces it
//! undeformed, a naive one shows it sheared. Anatomy (HU): air -1000 outside; body (soft tissue
//! 40, subcutaneous fat -100); two lungs -850; heart 45; aorta 180 (contrast); vertebral body
//! 300 with a 900 cortex; spinal canal 10; and a spherical solid nodule (30 HU) of known
//! diameter in the right lung.
//!
//! Stored values are `HU + 1024` (unsigned, Rescale Intercept -1024, Slope 1).
//! Series are named by their parameters, e.g. `chest_phantom_512x512x300_sp0.7x0.7x1.0_tilt15`.

use std::path::{Path, PathBuf};

use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use rayon::prelude::*;
use serde::Serialize;

use super::ImagingError;
use super::decode::{LoadTimings, RescalePolicy, Volume, Voxels};
use super::geometry::VolumeGeometry;
use super::header::Rescale;

/// Transfer syntaxes the synthesizer writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum SynthSyntax {
    /// Explicit VR Little Endian (1.2.840.10008.1.2.1)
    ExplicitLe,
    /// Implicit VR Little Endian (1.2.840.10008.1.2)
    ImplicitLe,
    /// Explicit VR Big Endian, retired (1.2.840.10008.1.2.2)
    ExplicitBe,
    /// Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99)
    Deflate,
    /// RLE Lossless (1.2.840.10008.1.2.5)
    Rle,
    /// JPEG-LS Lossless (1.2.840.10008.1.2.4.80), encoded by CharLS
    JpegLs,
    /// JPEG Lossless, first-order prediction (1.2.840.10008.1.2.4.70), by libjpeg-turbo
    JpegLossless,
    /// JPEG Extended, 12-bit lossy DCT at quality 90 (1.2.840.10008.1.2.4.51), by libjpeg-turbo.
    /// (JPEG Baseline holds 8 bits only and the phantom has 12.)
    JpegExtended,
    /// JPEG 2000 Lossless Only (1.2.840.10008.1.2.4.90), by OpenJPEG
    J2kLossless,
    /// JPEG 2000 lossy, 10:1 (1.2.840.10008.1.2.4.91), by OpenJPEG
    J2k,
}

impl SynthSyntax {
    pub fn uid(self) -> &'static str {
        match self {
            SynthSyntax::ExplicitLe => uids::EXPLICIT_VR_LITTLE_ENDIAN,
            SynthSyntax::ImplicitLe => uids::IMPLICIT_VR_LITTLE_ENDIAN,
            SynthSyntax::ExplicitBe => "1.2.840.10008.1.2.2",
            SynthSyntax::Deflate => uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
            SynthSyntax::Rle => uids::RLE_LOSSLESS,
            SynthSyntax::JpegLs => uids::JPEGLS_LOSSLESS,
            SynthSyntax::JpegLossless => uids::JPEG_LOSSLESS_SV1,
            SynthSyntax::JpegExtended => uids::JPEG_EXTENDED12_BIT,
            SynthSyntax::J2kLossless => uids::JPEG2000_LOSSLESS,
            SynthSyntax::J2k => uids::JPEG2000,
        }
    }

    /// True when decoding gives back other values than were written.
    pub fn is_lossy(self) -> bool {
        matches!(self, SynthSyntax::JpegExtended | SynthSyntax::J2k)
    }

    /// Compress one frame of 12-bit stored values, for the syntaxes whose Pixel Data is
    /// encapsulated (PS3.5 A.4); `None` for native ones.
    fn encode_frame(
        self,
        frame: &[u16],
        columns: u16,
        rows: u16,
    ) -> Option<Result<Vec<u8>, String>> {
        use super::j2k::J2kEncoding;
        use super::jpeg::JpegEncoding;
        let (w, h) = (usize::from(columns), usize::from(rows));
        // 12 bits stored, as the phantom's CT values need.
        let jpeg = |e| super::jpeg::encode_grey(frame, w, h, 12, e);
        let j2k = |e| super::j2k::encode_grey(frame, w, h, 12, e);
        Some(match self {
            SynthSyntax::Rle => Ok(super::rle::encode_u16(frame)),
            SynthSyntax::JpegLossless => jpeg(JpegEncoding::LosslessSv1),
            SynthSyntax::JpegExtended => jpeg(JpegEncoding::Lossy { quality: 90 }),
            SynthSyntax::J2kLossless => j2k(J2kEncoding::Lossless),
            SynthSyntax::J2k => j2k(J2kEncoding::Lossy { ratio: 10.0 }),
            _ => return None,
        })
    }
}

/// Everything that shapes a synthetic series.
#[derive(Debug, Clone, Serialize)]
pub struct PhantomSpec {
    pub columns: u16,
    pub rows: u16,
    pub slices: usize,
    /// In-plane pixel size (square pixels), mm.
    pub pixel_mm: f64,
    /// Table increment between slices, mm (before `step_pattern`).
    pub spacing_mm: f64,
    /// Gantry tilt about the patient x axis, degrees (0 = axial).
    pub tilt_deg: f64,
    /// Multipliers applied to successive table steps, cycled (uneven spacing); empty = even.
    pub step_pattern: Vec<f64>,
    /// Slice indices left out of the written series (missing slices).
    pub drop: Vec<usize>,
    /// Number of time points (4D); the nodule moves 2 mm in z per time point.
    pub phases: usize,
    /// Nodule diameter, mm.
    pub nodule_diameter_mm: f64,
    /// Standard deviation of deterministic noise, HU.
    pub noise_hu: f64,
    pub syntax: SynthSyntax,
    /// Write one Enhanced CT multi-frame object instead of one file per slice.
    pub enhanced: bool,
    /// Study Date (0008,0020), YYYYMMDD.
    pub study_date: String,
    pub seed: u64,
}

impl Default for PhantomSpec {
    fn default() -> Self {
        PhantomSpec {
            columns: 512,
            rows: 512,
            slices: 100,
            pixel_mm: 0.7,
            spacing_mm: 1.0,
            tilt_deg: 0.0,
            step_pattern: Vec::new(),
            drop: Vec::new(),
            phases: 1,
            nodule_diameter_mm: 10.0,
            noise_hu: 8.0,
            syntax: SynthSyntax::ExplicitLe,
            enhanced: false,
            study_date: today_yyyymmdd(),
            seed: 1,
        }
    }
}

impl PhantomSpec {
    /// The fixture name: parameters in the name, so a failing test says what it used.
    pub fn name(&self) -> String {
        let mut name = format!(
            "chest_phantom_{}x{}x{}_sp{}x{}x{}",
            self.columns, self.rows, self.slices, self.pixel_mm, self.pixel_mm, self.spacing_mm
        );
        if self.tilt_deg != 0.0 {
            name += &format!("_tilt{}", self.tilt_deg);
        }
        if !self.step_pattern.is_empty() {
            name += "_uneven";
        }
        if !self.drop.is_empty() {
            name += &format!("_missing{}", self.drop.len());
        }
        if self.phases > 1 {
            name += &format!("_{}phases", self.phases);
        }
        if self.enhanced {
            name += "_enhanced";
        }
        name += &format!("_{:?}", self.syntax).to_lowercase();
        name
    }

    /// Table position (z, mm) of slice k, before tilt.
    pub fn table_position_mm(&self, k: usize) -> f64 {
        let mut z = 0.0;
        for step in 0..k {
            let m = if self.step_pattern.is_empty() {
                1.0
            } else {
                self.step_pattern[step % self.step_pattern.len()]
            };
            z += self.spacing_mm * m;
        }
        // Slices go from head (high z) to foot, as a scanner numbers them.
        -z
    }

    /// Row and column direction cosines (Image Orientation (Patient)).
    pub fn orientation(&self) -> [f64; 6] {
        let t = self.tilt_deg.to_radians();
        [1.0, 0.0, 0.0, 0.0, t.cos(), t.sin()]
    }

    /// Image Position (Patient) of slice k: the image centre sits on the table axis at its
    /// table position.
    pub fn position_mm(&self, k: usize) -> [f64; 3] {
        let o = self.orientation();
        let half_i = (f64::from(self.columns) - 1.0) / 2.0 * self.pixel_mm;
        let half_j = (f64::from(self.rows) - 1.0) / 2.0 * self.pixel_mm;
        let z = self.table_position_mm(k) + self.slab_centre_offset();
        [
            -half_i * o[0] - half_j * o[3],
            -half_i * o[1] - half_j * o[4],
            z - half_i * o[2] - half_j * o[5],
        ]
    }

    /// Offset that puts the middle of the scanned range at z = 0.
    fn slab_centre_offset(&self) -> f64 {
        -self.table_position_mm(self.slices.saturating_sub(1)) / 2.0
    }

    /// Centre of the nodule in patient space (LPS mm) at time point `phase`.
    pub fn nodule_centre_mm(&self, phase: usize) -> [f64; 3] {
        [-70.0, -20.0, 2.0 * phase as f64]
    }
}

/// Hounsfield units of the phantom at a patient-space point (time point `phase`).
pub fn phantom_hu(spec: &PhantomSpec, p: [f64; 3], phase: usize) -> f64 {
    let [x, y, z] = p;
    let ellipse =
        |cx: f64, cy: f64, a: f64, b: f64| ((x - cx) / a).powi(2) + ((y - cy) / b).powi(2) <= 1.0;
    let circle = |cx: f64, cy: f64, r: f64| (x - cx).powi(2) + (y - cy).powi(2) <= r * r;
    let c = spec.nodule_centre_mm(phase);
    let r = spec.nodule_diameter_mm / 2.0;
    if (x - c[0]).powi(2) + (y - c[1]).powi(2) + (z - c[2]).powi(2) <= r * r {
        return 30.0;
    }
    if !ellipse(0.0, 0.0, 165.0, 115.0) {
        return -1000.0;
    }
    if !ellipse(0.0, 0.0, 155.0, 105.0) {
        return -100.0;
    }
    if circle(0.0, 95.0, 8.0) {
        return 10.0;
    }
    if circle(0.0, 70.0, 16.0) {
        return 300.0;
    }
    if circle(0.0, 70.0, 18.0) {
        return 900.0;
    }
    if circle(20.0, 30.0, 12.0) {
        return 180.0;
    }
    if ellipse(10.0, -15.0, 45.0, 50.0) {
        return 45.0;
    }
    if ellipse(-75.0, -5.0, 55.0, 80.0) || ellipse(75.0, -5.0, 55.0, 80.0) {
        return -850.0;
    }
    40.0
}

/// Deterministic noise in [-1, 1) scaled to the requested standard deviation (uniform:
/// sd = range / sqrt(3)).
fn noise(seed: u64, k: usize, j: usize, i: usize, sd: f64) -> f64 {
    if sd == 0.0 {
        return 0.0;
    }
    let mut h = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= (i as u64).wrapping_mul(0x1656_67B1_9E37_79F9);
    h = (h ^ (h >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 29;
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    unit * sd * 3f64.sqrt()
}

/// Stored values (HU + 1024) of slice k at time point `phase`, row-major.
pub fn phantom_slice(spec: &PhantomSpec, k: usize, phase: usize) -> Vec<u16> {
    let o = spec.orientation();
    let s = spec.position_mm(k);
    let mut out = Vec::with_capacity(usize::from(spec.rows) * usize::from(spec.columns));
    for j in 0..usize::from(spec.rows) {
        for i in 0..usize::from(spec.columns) {
            let (fi, fj) = (i as f64 * spec.pixel_mm, j as f64 * spec.pixel_mm);
            let p = [
                s[0] + fi * o[0] + fj * o[3],
                s[1] + fi * o[1] + fj * o[4],
                s[2] + fi * o[2] + fj * o[5],
            ];
            let hu = phantom_hu(spec, p, phase)
                + noise(spec.seed, k + phase * 100_000, j, i, spec.noise_hu);
            out.push((hu.round() + 1024.0).clamp(0.0, 4095.0) as u16);
        }
    }
    out
}

/// The phantom as a loaded volume, without writing files (first time point; the spec's tilt,
/// spacing and dropped slices; stored values HU + 1024 with intercept -1024, as written).
/// For renderer tests and benchmarks; `write_series` + `load_stack` give the same voxels.
pub fn phantom_volume(spec: &PhantomSpec) -> Volume {
    let kept: Vec<usize> = (0..spec.slices)
        .filter(|k| !spec.drop.contains(k))
        .collect();
    let positions = kept.iter().map(|k| spec.position_mm(*k)).collect();
    let geometry = VolumeGeometry::from_slices(
        usize::from(spec.columns),
        usize::from(spec.rows),
        spec.orientation(),
        [spec.pixel_mm, spec.pixel_mm],
        positions,
        None,
        None,
    );
    let (w, h) = (usize::from(spec.columns), usize::from(spec.rows));
    let slices: Vec<Vec<u16>> = kept
        .par_iter()
        .map(|k| phantom_slice(spec, *k, 0))
        .collect();
    let data: Vec<u16> = slices.into_iter().flatten().collect();
    let voxels = match ndarray::Array3::from_shape_vec((kept.len(), h, w), data) {
        Ok(a) => Voxels::U16(a),
        // The shape is built from the same numbers as the data: unreachable, but no panic.
        Err(_) => Voxels::U16(ndarray::Array3::zeros((kept.len(), h, w))),
    };
    Volume {
        geometry,
        voxels,
        rescale: RescalePolicy::Uniform(Rescale {
            slope: 1.0,
            intercept: -1024.0,
        }),
        default_window: None,
        failed_slices: Vec::new(),
        padding: Vec::new(),
        timings: LoadTimings::default(),
    }
}

/// A DICOM UID under the UUID-derived root 2.25 (PS3.5 B.2), deterministic in its inputs.
fn uid(seed: u64, parts: &[u64]) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for v in std::iter::once(seed).chain(parts.iter().copied()) {
        h ^= u128::from(v);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
    }
    format!("2.25.{}", h >> 1)
}

/// A 64-bit key of `text` (FNV-1a), to derive UIDs from another UID.
fn text_key(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Today's date as YYYYMMDD (UTC), from the system clock.
pub fn today_yyyymmdd() -> String {
    // One calendar conversion in the project: the protocol's UTC timestamp, "YYYY-MM-DD...".
    case_protocol::rfc3339_utc(case_protocol::unix_now())[..10].replace('-', "")
}

/// What `write_series` produced.
#[derive(Debug, Clone, Serialize)]
pub struct SynthOutput {
    pub name: String,
    pub folder: PathBuf,
    pub files: usize,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
}

fn put(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, value.into()));
}

fn ds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| {
            format!("{v:.6}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        })
        .map(|s| if s == "-0" { "0".into() } else { s })
        .collect::<Vec<_>>()
        .join("\\")
}

/// Write the phantom series into `folder` (created), one file per slice and time point (or one
/// Enhanced CT object), in parallel.
pub fn write_series(spec: &PhantomSpec, folder: &Path) -> Result<SynthOutput, ImagingError> {
    std::fs::create_dir_all(folder).map_err(|source| ImagingError::Io {
        path: folder.to_path_buf(),
        source,
    })?;
    let study_uid = uid(spec.seed, &[1]);
    let series_uid = uid(
        spec.seed,
        &[
            2,
            spec.slices as u64,
            spec.tilt_deg.to_bits(),
            spec.enhanced as u64,
        ],
    );
    let frame_uid = uid(spec.seed, &[3]);
    let kept: Vec<usize> = (0..spec.slices)
        .filter(|k| !spec.drop.contains(k))
        .collect();
    let items: Vec<(usize, usize)> = (0..spec.phases.max(1))
        .flat_map(|t| kept.iter().map(move |&k| (t, k)))
        .collect();

    let base = |sop_class: &str, sop_uid: &str| {
        let mut obj = InMemDicomObject::new_empty();
        put(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
        put(
            &mut obj,
            tags::IMAGE_TYPE,
            VR::CS,
            "ORIGINAL\\PRIMARY\\AXIAL",
        );
        put(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
        put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, sop_uid);
        put(&mut obj, tags::STUDY_DATE, VR::DA, spec.study_date.as_str());
        put(
            &mut obj,
            tags::SERIES_DATE,
            VR::DA,
            spec.study_date.as_str(),
        );
        put(&mut obj, tags::STUDY_TIME, VR::TM, "090000");
        put(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "SYNTH0001");
        put(&mut obj, tags::MODALITY, VR::CS, "CT");
        put(
            &mut obj,
            tags::MANUFACTURER,
            VR::LO,
            "Overread synthetic phantom",
        );
        put(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
        put(
            &mut obj,
            tags::STUDY_DESCRIPTION,
            VR::LO,
            "CT CHEST (synthetic phantom)",
        );
        put(
            &mut obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            spec.name().as_str(),
        );
        put(&mut obj, tags::PATIENT_NAME, VR::PN, "PHANTOM^CHEST");
        put(&mut obj, tags::PATIENT_ID, VR::LO, "SYNTH0001");
        put(&mut obj, tags::PATIENT_BIRTH_DATE, VR::DA, "19700101");
        put(&mut obj, tags::PATIENT_SEX, VR::CS, "O");
        put(
            &mut obj,
            tags::SLICE_THICKNESS,
            VR::DS,
            ds(&[spec.spacing_mm]),
        );
        put(&mut obj, tags::KVP, VR::DS, "120");
        put(
            &mut obj,
            tags::GANTRY_DETECTOR_TILT,
            VR::DS,
            ds(&[spec.tilt_deg]),
        );
        put(&mut obj, tags::PATIENT_POSITION, VR::CS, "HFS");
        put(
            &mut obj,
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            study_uid.as_str(),
        );
        put(
            &mut obj,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            series_uid.as_str(),
        );
        put(&mut obj, tags::STUDY_ID, VR::SH, "1");
        put(&mut obj, tags::SERIES_NUMBER, VR::IS, "2");
        put(
            &mut obj,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            frame_uid.as_str(),
        );
        put(&mut obj, tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
        put(
            &mut obj,
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(1u16),
        );
        put(
            &mut obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2",
        );
        put(
            &mut obj,
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(spec.rows),
        );
        put(
            &mut obj,
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(spec.columns),
        );
        put(
            &mut obj,
            tags::PIXEL_SPACING,
            VR::DS,
            ds(&[spec.pixel_mm, spec.pixel_mm]),
        );
        put(
            &mut obj,
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16u16),
        );
        put(
            &mut obj,
            tags::BITS_STORED,
            VR::US,
            PrimitiveValue::from(12u16),
        );
        put(
            &mut obj,
            tags::HIGH_BIT,
            VR::US,
            PrimitiveValue::from(11u16),
        );
        put(
            &mut obj,
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        );
        put(&mut obj, tags::WINDOW_CENTER, VR::DS, "40");
        put(&mut obj, tags::WINDOW_WIDTH, VR::DS, "400");
        put(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
        put(&mut obj, tags::RESCALE_SLOPE, VR::DS, "1");
        put(&mut obj, tags::RESCALE_TYPE, VR::LO, "HU");
        obj
    };

    if spec.enhanced {
        let sop_uid = uid(spec.seed, &[4, 0, text_key(&series_uid)]);
        let mut obj = base(uids::ENHANCED_CT_IMAGE_STORAGE, &sop_uid);
        put(
            &mut obj,
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            items.len().to_string().as_str(),
        );
        let mut shared = InMemDicomObject::new_empty();
        let mut measures = InMemDicomObject::new_empty();
        put(
            &mut measures,
            tags::PIXEL_SPACING,
            VR::DS,
            ds(&[spec.pixel_mm, spec.pixel_mm]),
        );
        put(
            &mut measures,
            tags::SLICE_THICKNESS,
            VR::DS,
            ds(&[spec.spacing_mm]),
        );
        shared.put(DataElement::new(
            tags::PIXEL_MEASURES_SEQUENCE,
            VR::SQ,
            Value::from(dicom_core::value::DataSetSequence::from(vec![measures])),
        ));
        let mut orient = InMemDicomObject::new_empty();
        put(
            &mut orient,
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            ds(&spec.orientation()),
        );
        shared.put(DataElement::new(
            tags::PLANE_ORIENTATION_SEQUENCE,
            VR::SQ,
            Value::from(dicom_core::value::DataSetSequence::from(vec![orient])),
        ));
        let mut transform = InMemDicomObject::new_empty();
        put(&mut transform, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
        put(&mut transform, tags::RESCALE_SLOPE, VR::DS, "1");
        put(&mut transform, tags::RESCALE_TYPE, VR::LO, "HU");
        shared.put(DataElement::new(
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            VR::SQ,
            Value::from(dicom_core::value::DataSetSequence::from(vec![transform])),
        ));
        obj.put(DataElement::new(
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            VR::SQ,
            Value::from(dicom_core::value::DataSetSequence::from(vec![shared])),
        ));
        let per_frame: Vec<InMemDicomObject> = items
            .iter()
            .map(|&(t, k)| {
                let mut item = InMemDicomObject::new_empty();
                let mut pos = InMemDicomObject::new_empty();
                put(
                    &mut pos,
                    tags::IMAGE_POSITION_PATIENT,
                    VR::DS,
                    ds(&spec.position_mm(k)),
                );
                item.put(DataElement::new(
                    tags::PLANE_POSITION_SEQUENCE,
                    VR::SQ,
                    Value::from(dicom_core::value::DataSetSequence::from(vec![pos])),
                ));
                let mut content = InMemDicomObject::new_empty();
                put(
                    &mut content,
                    tags::TEMPORAL_POSITION_INDEX,
                    VR::UL,
                    PrimitiveValue::from(t as u32 + 1),
                );
                item.put(DataElement::new(
                    tags::FRAME_CONTENT_SEQUENCE,
                    VR::SQ,
                    Value::from(dicom_core::value::DataSetSequence::from(vec![content])),
                ));
                item
            })
            .collect();
        obj.put(DataElement::new(
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            VR::SQ,
            Value::from(dicom_core::value::DataSetSequence::from(per_frame)),
        ));
        let frames: Vec<Vec<u16>> = items
            .par_iter()
            .map(|&(t, k)| phantom_slice(spec, k, t))
            .collect();
        let path = folder.join("enhanced_ct.dcm");
        write_object(obj, &frames, spec.syntax, &path)?;
        return Ok(SynthOutput {
            name: spec.name(),
            folder: folder.to_path_buf(),
            files: 1,
            study_instance_uid: study_uid,
            series_instance_uid: series_uid,
        });
    }

    items.par_iter().enumerate().try_for_each(|(n, &(t, k))| {
        // The series in the key: two series of one study (same seed) never share an
        // instance UID.
        let sop_uid = uid(spec.seed, &[4, t as u64, k as u64, text_key(&series_uid)]);
        let mut obj = base(uids::CT_IMAGE_STORAGE, &sop_uid);
        put(
            &mut obj,
            tags::INSTANCE_NUMBER,
            VR::IS,
            (n + 1).to_string().as_str(),
        );
        put(&mut obj, tags::ACQUISITION_NUMBER, VR::IS, "1");
        if spec.phases > 1 {
            put(
                &mut obj,
                tags::TEMPORAL_POSITION_IDENTIFIER,
                VR::IS,
                (t + 1).to_string().as_str(),
            );
            put(
                &mut obj,
                tags::NUMBER_OF_TEMPORAL_POSITIONS,
                VR::IS,
                spec.phases.to_string().as_str(),
            );
        }
        put(
            &mut obj,
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            ds(&spec.position_mm(k)),
        );
        put(
            &mut obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            ds(&spec.orientation()),
        );
        put(
            &mut obj,
            tags::SLICE_LOCATION,
            VR::DS,
            ds(&[spec.position_mm(k)[2]]),
        );
        let pixels = phantom_slice(spec, k, t);
        let path = folder.join(format!("IM{:05}.dcm", n + 1));
        write_object(obj, &[pixels], spec.syntax, &path)
    })?;
    Ok(SynthOutput {
        name: spec.name(),
        folder: folder.to_path_buf(),
        files: items.len(),
        study_instance_uid: study_uid,
        series_instance_uid: series_uid,
    })
}

fn write_object(
    mut obj: InMemDicomObject,
    frames: &[Vec<u16>],
    syntax: SynthSyntax,
    path: &Path,
) -> Result<(), ImagingError> {
    let werr = |reason: String| ImagingError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let columns = obj
        .get(tags::COLUMNS)
        .and_then(|e| e.to_int::<u16>().ok())
        .unwrap_or(0);
    let rows = obj
        .get(tags::ROWS)
        .and_then(|e| e.to_int::<u16>().ok())
        .unwrap_or(0);
    let encoded: Option<Vec<Vec<u8>>> = frames
        .iter()
        .map(|f| syntax.encode_frame(f, columns, rows))
        .collect::<Option<Vec<_>>>()
        .map(|all| all.into_iter().collect::<Result<Vec<_>, _>>())
        .transpose()
        .map_err(werr)?;
    let ts = match encoded {
        Some(mut fragments) => {
            // One fragment a frame, each of even length (PS3.5 A.4; a trailing zero byte after
            // a JPEG EOI or J2K EOC marker is ignored by decoders), and a Basic Offset Table.
            let mut offsets = Vec::with_capacity(fragments.len());
            let mut at = 0u32;
            for f in &mut fragments {
                if f.len() % 2 == 1 {
                    f.push(0);
                }
                offsets.push(at);
                at += 8 + f.len() as u32;
            }
            if syntax.is_lossy() {
                put(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01");
                let written: usize = fragments.iter().map(Vec::len).sum();
                let original: usize = frames.iter().map(|f| f.len() * 2).sum();
                put(
                    &mut obj,
                    tags::LOSSY_IMAGE_COMPRESSION_RATIO,
                    VR::DS,
                    ds(&[original as f64 / written.max(1) as f64]),
                );
                let method = if syntax == SynthSyntax::J2k {
                    "ISO_15444_1"
                } else {
                    "ISO_10918_1"
                };
                put(
                    &mut obj,
                    tags::LOSSY_IMAGE_COMPRESSION_METHOD,
                    VR::CS,
                    method,
                );
            }
            obj.put(DataElement::new_with_len(
                tags::PIXEL_DATA,
                VR::OB,
                Length::UNDEFINED,
                Value::PixelSequence(PixelFragmentSequence::new(offsets, fragments)),
            ));
            syntax.uid()
        }
        None => {
            let all: Vec<u16> = frames.concat();
            put(
                &mut obj,
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(all.into()),
            );
            if syntax == SynthSyntax::JpegLs {
                uids::EXPLICIT_VR_LITTLE_ENDIAN
            } else {
                syntax.uid()
            }
        }
    };
    let mut file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(ts)
                .implementation_class_uid("2.25.1"),
        )
        .map_err(|e| werr(e.to_string()))?;
    if syntax == SynthSyntax::JpegLs {
        use dicom_pixeldata::Transcode;
        file.transcode(
            &dicom_transfer_syntax_registry::entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased(),
        )
        .map_err(|e| werr(e.to_string()))?;
    }
    file.write_to_file(path).map_err(|e| werr(e.to_string()))
}
