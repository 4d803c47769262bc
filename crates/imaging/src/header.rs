//! Header-only reading of one DICOM file into an [`InstanceHeader`].
//!
//! Reads stop before Pixel Data (7FE0,0010), so scanning a CD-ROM costs a few kilobytes a file.
//! Classic single-frame images, Enhanced CT/MR and Legacy Converted Enhanced multi-frame objects
//! all become one [`FrameHeader`] per frame: the shared and per-frame functional groups
//! (PS3.3 C.7.6.16) are resolved here, so grouping and geometry never see the difference.
//!
//! Owns: attribute extraction. Must not decode pixels or touch the file system beyond one open.

use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use glam::DVec3;
use serde::Serialize;

use super::ImagingError;
use super::identity::Phi;
use super::mosaic::{MAX_MOSAIC_IMAGES, MosaicLayout, csa_values, phoenix_slice_spacing};

/// Media Storage SOP Class UID of a DICOMDIR (Media Storage Directory Storage).
pub const MEDIA_STORAGE_DIRECTORY_STORAGE: &str = "1.2.840.10008.1.3.10";

/// Siemens CSA "NumberOfImagesInMosaic" (0019,100A), private to "SIEMENS MR HEADER".
const SIEMENS_NUMBER_OF_IMAGES_IN_MOSAIC: Tag = Tag(0x0019, 0x100A);

/// The modality LUT of PS3.3 C.11.1: `output = slope * stored + intercept`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rescale {
    /// Rescale Slope (0028,1053)
    pub slope: f64,
    /// Rescale Intercept (0028,1052)
    pub intercept: f64,
}

impl Rescale {
    pub const IDENTITY: Rescale = Rescale {
        slope: 1.0,
        intercept: 0.0,
    };

    /// Modality value (HU for CT) of a stored value.
    pub fn apply(&self, stored: f64) -> f64 {
        self.slope * stored + self.intercept
    }
}

/// A VOI window from the header (PS3.3 C.11.2.1.2), in modality units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    /// Window Center (0028,1050)
    pub center: f64,
    /// Window Width (0028,1051)
    pub width: f64,
    /// VOI LUT Function (0028,1056); LINEAR when absent.
    pub function: WindowFunction,
}

/// VOI LUT Function (0028,1056), PS3.3 C.11.2.1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum WindowFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

/// The first item of VOI LUT Sequence (0028,3010), PS3.3 C.11.2.1.1: modality value
/// `first_mapped + n` shows entry `n`, on a scale of `2^bits - 1`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VoiLutTable {
    /// LUT Descriptor (0028,3002) value 2.
    pub first_mapped: i32,
    /// LUT Descriptor value 3.
    pub bits: u16,
    /// LUT Data (0028,3006).
    #[serde(skip)]
    pub data: Vec<u16>,
    /// LUT Explanation (0028,3003).
    pub explanation: Option<String>,
}

/// The Modality LUT (Modality LUT Sequence (0028,3000), PS3.3 C.11.1), which some
/// radiographs (CR, XA, MG) carry instead of Rescale Slope and Intercept: stored value
/// `first_mapped + n` has the modality value of entry `n` (optical density, say); stored values
/// below the first mapped take the first entry, those past the last the last (C.11.1.1.1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModalityLut {
    /// LUT Descriptor (0028,3002) value 2, signed as the stored values are.
    pub first_mapped: i32,
    /// LUT Data (0028,3006): the modality values, unsigned, of at most 16 bits.
    #[serde(skip)]
    pub data: Vec<u16>,
    /// Modality LUT Type (0028,3004): what the values are ("OD", "US", ...).
    pub lut_type: Option<String>,
}

impl ModalityLut {
    /// The modality value of stored value `stored`.
    pub fn map(&self, stored: i32) -> u16 {
        let last = self.data.len().saturating_sub(1);
        let n = (i64::from(stored) - i64::from(self.first_mapped)).clamp(0, last as i64);
        self.data.get(n as usize).copied().unwrap_or(0)
    }
}

/// Stored values that are not the patient but padding (PS3.3 C.7.5.1.1.2: Pixel Padding
/// Value (0028,0120), and Pixel Padding Range Limit (0028,0121) where a range is padding): a CT
/// fills the corners outside its reconstruction circle with it (-2000 or -3024 HU, say). In
/// the stored values' own representation; the range is inclusive, either way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PixelPadding {
    pub lo: i32,
    pub hi: i32,
}

impl PixelPadding {
    pub fn contains(&self, stored: i32) -> bool {
        (self.lo..=self.hi).contains(&stored)
    }
}

/// Identity of the patient, study and series an instance belongs to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Provenance {
    /// Patient's Name (0010,0010)
    pub patient_name: Phi,
    /// Patient ID (0010,0020)
    pub patient_id: Phi,
    /// Patient's Birth Date (0010,0030)
    pub patient_birth_date: Phi,
    /// Accession Number (0008,0050)
    pub accession_number: Phi,
    /// Study Instance UID (0020,000D)
    pub study_instance_uid: String,
    /// Study Date (0008,0020)
    pub study_date: Option<String>,
    /// Study Description (0008,1030)
    pub study_description: Option<String>,
    /// Series Instance UID (0020,000E)
    pub series_instance_uid: String,
    /// Series Number (0020,0011)
    pub series_number: Option<i64>,
    /// Series Description (0008,103E)
    pub series_description: Option<String>,
    /// Modality (0008,0060)
    pub modality: Option<String>,
    /// Frame of Reference UID (0020,0052)
    pub frame_of_reference_uid: Option<String>,
}

/// What one frame says about where it is and how its values map to modality units.
#[derive(Debug, Clone, Serialize)]
pub struct FrameHeader {
    /// 0-based frame number inside its file.
    pub frame_index: u32,
    /// Image Position (Patient) (0020,0032): centre of the first transmitted pixel, LPS mm.
    pub image_position_patient: Option<[f64; 3]>,
    /// Image Orientation (Patient) (0020,0037): row direction then column direction cosines.
    pub image_orientation_patient: Option<[f64; 6]>,
    /// Pixel Spacing (0028,0030): [between rows (vertical), between columns (horizontal)] in mm;
    /// without it, a projection image's Imager Pixel Spacing (0018,1164), which is at the
    /// detector, not in the patient (see `spacing_at_detector`).
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// `pixel_spacing_mm` is Imager Pixel Spacing: lengths are at the detector plane, larger
    /// than in the patient by the geometric magnification (PS3.3 10.7.1.3).
    pub spacing_at_detector: bool,
    /// Slice Thickness (0018,0050)
    pub slice_thickness_mm: Option<f64>,
    /// Rescale Slope/Intercept (0028,1053)/(0028,1052) or the Pixel Value Transformation
    /// functional group (0028,9145).
    pub rescale: Rescale,
    /// Pixel Padding Value and Range Limit: stored values that are padding, not patient
    /// (never read as such by a measurement; not where a Modality LUT replaced the stored
    /// values: `decode::stack_padding`).
    pub padding: Option<PixelPadding>,
    /// Modality LUT Sequence (0028,3000): the modality values of a radiograph that carries a
    /// table instead of a rescale (`rescale` is then the identity, never used with it).
    #[serde(skip)]
    pub modality_lut: Option<std::sync::Arc<ModalityLut>>,
    /// First Window Center/Width pair, or the Frame VOI LUT functional group (0028,9132).
    pub window: Option<Window>,
    /// The pairs after the first, in the file's order (PS3.3 C.11.2.1.2: alternative views,
    /// a CT's brain and then its bone window), from where `window` came.
    pub more_windows: Vec<Window>,
    /// First VOI LUT of VOI LUT Sequence (0028,3010).
    #[serde(skip)]
    pub voi_lut: Option<std::sync::Arc<VoiLutTable>>,
    /// Temporal Position Identifier (0020,0100) or Temporal Position Index (0020,9128).
    pub temporal_position: Option<i64>,
    /// The frame's echo in words: "echo 2" from Echo Numbers (0018,0086), or "TE 30 ms" from
    /// the Effective Echo Time (0018,9082) of enhanced MR (to a hundredth of a ms).
    pub echo: Option<String>,
    /// Acquisition Number (0020,0012)
    pub acquisition_number: Option<i64>,
    /// When the frame was acquired, as `YYYYMMDDHHMMSS.FFFFFF` (a text that sorts in time):
    /// Frame Acquisition DateTime (0018,9074) of an enhanced object's frame, else Acquisition
    /// DateTime (0008,002A), Acquisition Date and Time (0008,0022/0032), or Content Date and
    /// Time (0008,0023/0033). Orders the repetitions of a position that nothing else orders.
    pub acquired_at: Option<String>,
    /// Image Type (0008,0008) values 3.. or Complex Image Component (0008,9208): what kind
    /// of image (magnitude, phase, real ...) the frame is.
    pub image_flavour: Option<String>,
    /// Convolution Kernel (0018,1210), its first value: a CT reconstruction's filter.
    pub kernel: Option<String>,
    /// Diffusion b-value (0018,9087) and gradient direction in words ("b=1000 dir (0, 0.6,
    /// 0.8)"; enhanced MR's functional group, or the same attributes at the top level of a
    /// classic image).
    pub diffusion: Option<String>,
    /// Referenced Segment Number (0062,000B) of a segmentation's Segment Identification
    /// functional group (0062,000A): which segment the frame is a mask of.
    pub segment: Option<i64>,
    /// For a Siemens mosaic: which tile of the stored frame this slice is.
    pub mosaic_tile: Option<u32>,
}

/// Everything scanning needs to know about one file, without its pixels.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceHeader {
    pub path: PathBuf,
    /// SOP Class UID (0008,0016)
    pub sop_class_uid: String,
    /// SOP Instance UID (0002,0003)/(0008,0018)
    pub sop_instance_uid: String,
    /// Transfer Syntax UID (0002,0010)
    pub transfer_syntax_uid: String,
    pub provenance: Provenance,
    /// Instance Number (0020,0013)
    pub instance_number: Option<i64>,
    /// Image Type (0008,0008)
    pub image_type: Vec<String>,
    /// Rows (0028,0010)
    pub rows: u16,
    /// Columns (0028,0011)
    pub columns: u16,
    /// Samples per Pixel (0028,0002)
    pub samples_per_pixel: u16,
    /// Bits Allocated (0028,0100)
    pub bits_allocated: u16,
    /// Bits Stored (0028,0101)
    pub bits_stored: u16,
    /// High Bit (0028,0102), where given: one below Bits Stored in every current IOD; an
    /// uncompressed file where it is not is not read (`decode::high_bit_mismatch`).
    pub high_bit: Option<i64>,
    /// Pixel Representation (0028,0103): true when stored values are two's complement.
    pub signed: bool,
    /// Photometric Interpretation (0028,0004)
    pub photometric_interpretation: String,
    /// Number of Frames (0028,0008), 1 for single-frame objects.
    pub number_of_frames: u32,
    /// Siemens mosaic layout when Image Type says MOSAIC and the tiling is known; its frames
    /// are then the tiles (one [`FrameHeader`] per slice, `mosaic_tile` set).
    pub mosaic: Option<MosaicLayout>,
    /// One entry per frame.
    pub frames: Vec<FrameHeader>,
    /// What the file says that could not be used, in words ("its Modality LUT ... could not
    /// be read: ..."): the image is shown as far as it can be, and its series says so
    /// (`Series::warnings`).
    pub caveats: Vec<String>,
}

impl InstanceHeader {
    /// True for Siemens mosaics (Image Type contains MOSAIC).
    pub fn is_mosaic(&self) -> bool {
        self.image_type.iter().any(|v| v == "MOSAIC")
    }

    /// Rows of one slice: the tile for a mosaic, else Rows (0028,0010).
    pub fn slice_rows(&self) -> u16 {
        self.mosaic.map_or(self.rows, |m| m.tile_rows)
    }

    /// Columns of one slice: the tile for a mosaic, else Columns (0028,0011).
    pub fn slice_columns(&self) -> u16 {
        self.mosaic.map_or(self.columns, |m| m.tile_columns)
    }

    /// True when Image Type says LOCALIZER (scouts, topograms).
    pub fn is_localizer(&self) -> bool {
        self.image_type.iter().any(|v| v == "LOCALIZER")
    }
}

/// What a file turned out to be.
#[derive(Debug)]
pub enum FileKind {
    /// An image with rows and columns: it can become part of a stack.
    Image(Box<InstanceHeader>),
    /// A DICOMDIR file-set directory.
    Dicomdir,
    /// A DICOM object without pixels (structured report, presentation state, ...).
    NonImage { sop_class_uid: String },
}

/// Read the header of `path` (stopping before Pixel Data) and classify it.
pub fn read_header(path: &Path) -> Result<FileKind, ImagingError> {
    read_header_with_object(path).map(|(kind, _)| kind)
}

/// [`read_header`], also giving the parsed data set (without Pixel Data), for callers that
/// need more of it (the case server keeps an instance's DICOM JSON) without a second parse.
pub fn read_header_with_object(
    path: &Path,
) -> Result<(FileKind, DefaultDicomObject), ImagingError> {
    let obj = super::open::open_dicom(path, true)?;
    let kind = classify(path, &obj)?;
    Ok((kind, obj))
}

fn classify(path: &Path, obj: &DefaultDicomObject) -> Result<FileKind, ImagingError> {
    let meta = obj.meta();
    let media_class = trim_uid(&meta.media_storage_sop_class_uid);
    if media_class == MEDIA_STORAGE_DIRECTORY_STORAGE {
        return Ok(FileKind::Dicomdir);
    }
    let transfer_syntax_uid = trim_uid(&meta.transfer_syntax);
    let media_instance = trim_uid(&meta.media_storage_sop_instance_uid);
    header_from_dataset(path, obj, transfer_syntax_uid, media_class, media_instance)
}

/// Transfer syntaxes whose Pixel Data is the samples as they lie, not encapsulated (Implicit
/// and Explicit VR Little Endian, Explicit VR Big Endian, Deflated).
pub(crate) fn is_uncompressed(ts_uid: &str) -> bool {
    matches!(
        ts_uid.trim_end_matches('\0'),
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
    )
}

/// The pixels a header claims must fit in its file: a damaged file of a kilobyte that says it
/// has two billion frames, or a 65535-square uncompressed image, is refused here, before a
/// frame list or a volume is allocated for it (an allocation that fails aborts the process;
/// it cannot be caught). Uncompressed pixels may be cut short (the slice then fails to decode
/// and the rest of the series loads), so the bound leaves room: 16 times the file plus
/// 16 MiB (deflated files: 1,032 times, deflate's greatest ratio). Compressed frames each
/// need a fragment (an 8-byte item header at least), and their pixels may be 1,032 times the
/// file and 256 MiB. No frame may hold more than 2^28 pixels.
/// `len`: the file's size (`None` where unknown: only the frame size is checked).
fn claims_fit_the_file(
    len: Option<u64>,
    transfer_syntax_uid: &str,
    [rows, columns, samples, bits_allocated]: [u16; 4],
    frames: u32,
) -> Result<(), String> {
    // No radiology image has frames of more than 2^28 pixels (16384 x 16384); a header that
    // claims more asks for gigabytes before its first frame is read.
    let frame_samples = u64::from(rows) * u64::from(columns) * u64::from(samples.max(1));
    if u64::from(rows) * u64::from(columns) > 1 << 28 {
        return Err(format!(
            "the header claims frames of {rows}x{columns} with {samples} samples per pixel, \
             more than any image this reads"
        ));
    }
    let Some(len) = len else {
        return Ok(());
    };
    let deflated = transfer_syntax_uid == "1.2.840.10008.1.2.1.99";
    let native = is_uncompressed(transfer_syntax_uid) && !deflated;
    if native || deflated {
        let bits = u128::from(rows)
            * u128::from(columns)
            * u128::from(samples.max(1))
            * u128::from(bits_allocated.max(1))
            * u128::from(frames);
        let claimed = bits.div_ceil(8);
        let ratio = if deflated { 1032 } else { 16 };
        let room = u128::from(len) * ratio + (16 << 20);
        if claimed > room {
            return Err(format!(
                "the header claims {frames} frame(s) of {rows}x{columns} ({claimed} bytes of \
                 pixels) in a file of {len} bytes"
            ));
        }
    } else if u64::from(frames) > len / 8 + 1 {
        return Err(format!(
            "the header claims {frames} compressed frame(s) in a file of {len} bytes"
        ));
    } else {
        // Compressed pixels: at most 1032 times the file (deflate's limit; no codec of a
        // real image does better over a whole file) and 256 MiB more for a blank frame or
        // two, which any codec shrinks to almost nothing. A 1 kB JPEG claiming 65535 x 65535
        // had a volume of 8.6 GB filled before its frame was found to be another size.
        let bits =
            u128::from(frame_samples) * u128::from(bits_allocated.max(1)) * u128::from(frames);
        let claimed = bits.div_ceil(8);
        let room = u128::from(len) * 1032 + (256 << 20);
        if claimed > room {
            return Err(format!(
                "the header claims {frames} compressed frame(s) of {rows}x{columns} \
                 ({claimed} bytes of pixels) in a file of {len} bytes"
            ));
        }
    }
    Ok(())
}

/// Heap bytes one frame description holds of its own (the text it carries per frame).
fn frame_heap_bytes(frame: &FrameHeader) -> usize {
    [
        &frame.echo,
        &frame.image_flavour,
        &frame.diffusion,
        &frame.kernel,
    ]
    .into_iter()
    .flatten()
    .map(String::capacity)
    .sum()
}

/// The frame list a header asks for must stay in proportion to its file, as its pixels must
/// ([`claims_fit_the_file`]): `frames` descriptions of `per_frame_bytes` heap bytes each may take
/// 16 MiB and 16 times the file. Tiny frames (a 300-byte file claiming 134 million 1x1 frames
/// of 1 bit, whose pixels fit the pixel bound) or a long text value copied into every frame
/// (a 1 MB Echo Numbers in 131,000 frames) would otherwise build a list of tens of gigabytes,
/// and an allocation that fails aborts the process (found by review).
fn frame_list_fits(len: Option<u64>, frames: u64, per_frame_bytes: usize) -> Result<(), String> {
    let Some(len) = len else {
        return Ok(());
    };
    let each = (size_of::<FrameHeader>() + per_frame_bytes) as u128;
    let need = u128::from(frames) * each;
    let room = u128::from(len) * 16 + (16 << 20);
    if need > room {
        return Err(format!(
            "the header claims {frames} frame(s), {each} bytes of description each, in a file \
             of {len} bytes"
        ));
    }
    Ok(())
}

fn trim_uid(uid: &str) -> String {
    uid.trim_end_matches(['\0', ' ']).to_string()
}

/// Build the header from an already parsed data set (also used by decode, which opens the
/// whole file).
pub(crate) fn header_from_dataset(
    path: &Path,
    obj: &InMemDicomObject,
    transfer_syntax_uid: String,
    media_class: String,
    media_instance: String,
) -> Result<FileKind, ImagingError> {
    let sop_class_uid = text(obj, tags::SOP_CLASS_UID).unwrap_or(media_class);
    let (Some(rows), Some(columns)) = (int(obj, tags::ROWS), int(obj, tags::COLUMNS)) else {
        return Ok(FileKind::NonImage { sop_class_uid });
    };
    let bad = |what: &str| ImagingError::BadAttribute {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let rows = u16::try_from(rows).map_err(|_| bad("Rows (0028,0010) out of range"))?;
    let columns = u16::try_from(columns).map_err(|_| bad("Columns (0028,0011) out of range"))?;
    if rows == 0 || columns == 0 {
        return Err(bad("Rows or Columns is zero"));
    }
    let bits_allocated = int(obj, tags::BITS_ALLOCATED).unwrap_or(16);
    let bits_allocated = u16::try_from(bits_allocated)
        .map_err(|_| bad("Bits Allocated (0028,0100) out of range"))?;
    let bits_stored = int(obj, tags::BITS_STORED)
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| *v > 0 && *v <= bits_allocated)
        // Without Bits Stored (Type 1, but missing in old files), High Bit + 1 says it.
        .or_else(|| {
            int(obj, tags::HIGH_BIT)
                .and_then(|h| u16::try_from(h + 1).ok())
                .filter(|v| *v > 0 && *v <= bits_allocated)
        })
        .unwrap_or(bits_allocated);
    let number_of_frames = int(obj, tags::NUMBER_OF_FRAMES)
        .filter(|n| *n > 0)
        .map(|n| u32::try_from(n).map_err(|_| bad("Number of Frames (0028,0008) out of range")))
        .transpose()?
        .unwrap_or(1);
    let samples_per_pixel = int(obj, tags::SAMPLES_PER_PIXEL)
        .and_then(|v| u16::try_from(v).ok())
        .unwrap_or(1);
    // PS3.3 C.7.6.3.1.1 and PS3.5 8.1.1: 1 or 3 samples (4 in retired models); Bits
    // Allocated 1 or a multiple of 8. Anything else is damage, and would size buffers.
    if !(1..=4).contains(&samples_per_pixel) {
        return Err(bad(&format!(
            "Samples per Pixel (0028,0002) is {samples_per_pixel}"
        )));
    }
    if bits_allocated == 0
        || bits_allocated > 64
        || (bits_allocated != 1 && bits_allocated % 8 != 0)
    {
        return Err(bad(&format!(
            "Bits Allocated (0028,0100) is {bits_allocated}"
        )));
    }
    // The file's size bounds what its header may claim (read once for both bounds).
    let file_len = std::fs::metadata(path).map(|m| m.len()).ok();
    claims_fit_the_file(
        file_len,
        &transfer_syntax_uid,
        [rows, columns, samples_per_pixel, bits_allocated],
        number_of_frames,
    )
    .map_err(|m| bad(&m))?;
    let image_type = strings(obj, tags::IMAGE_TYPE);

    let provenance = Provenance {
        patient_name: Phi::new(text(obj, tags::PATIENT_NAME).unwrap_or_default()),
        patient_id: Phi::new(text(obj, tags::PATIENT_ID).unwrap_or_default()),
        patient_birth_date: Phi::new(text(obj, tags::PATIENT_BIRTH_DATE).unwrap_or_default()),
        accession_number: Phi::new(text(obj, tags::ACCESSION_NUMBER).unwrap_or_default()),
        study_instance_uid: text(obj, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        study_date: text(obj, tags::STUDY_DATE),
        study_description: text(obj, tags::STUDY_DESCRIPTION),
        series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        series_number: int(obj, tags::SERIES_NUMBER),
        series_description: text(obj, tags::SERIES_DESCRIPTION),
        modality: text(obj, tags::MODALITY),
        frame_of_reference_uid: text(obj, tags::FRAME_OF_REFERENCE_UID),
    };

    let is_mosaic = image_type.iter().any(|v| v == "MOSAIC");

    let classic = classic_frame(obj, &image_type);
    let top_lut = TopVoiLut::of(obj);
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    // Every frame copies the classic attributes and the shared functional groups' (what a
    // per-frame item holds is its own bytes in the file); a mosaic lists up to
    // MAX_MOSAIC_IMAGES tiles of its one frame.
    let per_frame_bytes = frame_heap_bytes(&classic).max(shared.map_or(0, |s| {
        frame_heap_bytes(&functional_group_frame(
            0,
            &classic,
            &top_lut,
            Some(s),
            None,
        ))
    }));
    let listed = if is_mosaic && number_of_frames == 1 {
        u64::from(MAX_MOSAIC_IMAGES)
    } else {
        u64::from(number_of_frames)
    };
    frame_list_fits(file_len, listed, per_frame_bytes).map_err(|m| bad(&m))?;
    let mut frames: Vec<FrameHeader> = match (
        shared,
        obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|e| e.items()),
    ) {
        (shared, Some(per_frame)) if !per_frame.is_empty() => (0..number_of_frames)
            .map(|f| {
                let item = per_frame.get(f as usize);
                functional_group_frame(f, &classic, &top_lut, shared, item)
            })
            .collect(),
        (Some(shared), _) => (0..number_of_frames)
            .map(|f| functional_group_frame(f, &classic, &top_lut, Some(shared), None))
            .collect(),
        _ => (0..number_of_frames)
            .map(|f| FrameHeader {
                frame_index: f,
                ..classic.clone()
            })
            .collect(),
    };

    let mut mosaic = None;
    if is_mosaic
        && number_of_frames == 1
        && let Some((layout, tiles)) = unpack_mosaic(obj, rows, columns, &classic)
    {
        mosaic = Some(layout);
        frames = tiles;
    }

    let sop_instance_uid = text(obj, tags::SOP_INSTANCE_UID).unwrap_or(media_instance);
    let caveats = caveats_of(obj);
    Ok(FileKind::Image(Box::new(InstanceHeader {
        caveats,
        path: path.to_path_buf(),
        sop_class_uid,
        sop_instance_uid,
        transfer_syntax_uid,
        provenance,
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        image_type,
        rows,
        columns,
        samples_per_pixel,
        bits_allocated,
        bits_stored,
        high_bit: int(obj, tags::HIGH_BIT),
        signed: int(obj, tags::PIXEL_REPRESENTATION) == Some(1),
        photometric_interpretation: text(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap_or_else(|| "MONOCHROME2".to_string()),
        number_of_frames,
        mosaic,
        frames,
    })))
}

/// Whether the spacing lengths are measured with is at the detector (or the film), not in
/// the patient: there is only Imager (or Nominal Scanned) Pixel Spacing, or Pixel Spacing
/// holds the same values without a Pixel Spacing Calibration Type (0028,0A02). PS3.3
/// 10.7.1.1: Pixel Spacing of an image not calibrated "shall be the same as" Imager Pixel
/// Spacing or Nominal Scanned Pixel Spacing; a radiograph's magnification (about 1.1 for a
/// PA chest) is then still in it.
fn at_detector(
    obj: &InMemDicomObject,
    pixel_spacing: Option<[f64; 2]>,
    imager_spacing: Option<[f64; 2]>,
) -> bool {
    let Some(pixel) = pixel_spacing else {
        return imager_spacing.is_some();
    };
    if text(obj, tags::PIXEL_SPACING_CALIBRATION_TYPE).is_some_and(|t| !t.trim().is_empty()) {
        return false;
    }
    let scanned = floats_n::<2>(obj, tags::NOMINAL_SCANNED_PIXEL_SPACING);
    [imager_spacing, scanned]
        .into_iter()
        .flatten()
        .any(|s| (0..2).all(|i| (s[i] - pixel[i]).abs() <= 1e-4 * s[i].abs().max(1.0)))
}

/// The frame description of a classic (single-frame) object, also the fallback for
/// attributes a functional group leaves out.
fn classic_frame(obj: &InMemDicomObject, image_type: &[String]) -> FrameHeader {
    let windows = windows_of(obj);
    let flavour = image_flavour(image_type.iter().skip(2).map(String::as_str));
    let pixel_spacing = spacing_of(obj, tags::PIXEL_SPACING);
    let imager_spacing = floats_n::<2>(obj, tags::IMAGER_PIXEL_SPACING)
        .filter(|s| s.iter().all(|v| v.is_finite() && *v > 0.0));
    let signed_pixels = int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let modality_lut = modality_lut_of(obj, signed_pixels).map(std::sync::Arc::new);
    FrameHeader {
        frame_index: 0,
        image_position_patient: floats_n::<3>(obj, tags::IMAGE_POSITION_PATIENT),
        image_orientation_patient: orientation_of(obj),
        pixel_spacing_mm: pixel_spacing.or(imager_spacing),
        kernel: strings(obj, tags::CONVOLUTION_KERNEL)
            .into_iter()
            .next()
            .filter(|k| !k.is_empty()),
        spacing_at_detector: at_detector(obj, pixel_spacing, imager_spacing),
        slice_thickness_mm: float(obj, tags::SLICE_THICKNESS),
        // A Modality LUT wins over a rescale the file should not carry beside it (as
        // pydicom's apply_modality_lut has it); its values are never negative.
        rescale: match &modality_lut {
            Some(_) => Rescale::IDENTITY,
            None => rescale_of(obj).unwrap_or(Rescale::IDENTITY),
        },
        window: windows.first().copied(),
        more_windows: windows.get(1..).unwrap_or_default().to_vec(),
        voi_lut: voi_lut_of(
            obj,
            modality_lut.is_none()
                && (signed_pixels || rescale_of(obj).is_some_and(|r| r.intercept < 0.0)),
        )
        .map(std::sync::Arc::new),
        padding: padding_of(obj, signed_pixels),
        modality_lut,
        temporal_position: int(obj, tags::TEMPORAL_POSITION_IDENTIFIER),
        echo: text(obj, tags::ECHO_NUMBERS).map(|n| format!("echo {n}")),
        acquisition_number: int(obj, tags::ACQUISITION_NUMBER),
        acquired_at: acquired_at(obj),
        image_flavour: flavour,
        diffusion: diffusion_of(obj),
        segment: None,
        mosaic_tile: None,
    }
}

/// Siemens CSA Image Header Info (0029,1010), private to "SIEMENS CSA HEADER".
const SIEMENS_CSA_IMAGE_HEADER: Tag = Tag(0x0029, 0x1010);
/// Siemens CSA Series Header Info (0029,1020): holds the "Phoenix" protocol.
const SIEMENS_CSA_SERIES_HEADER: Tag = Tag(0x0029, 0x1020);

/// One frame header per mosaic tile, placed as `mosaic` describes (see that module).
fn unpack_mosaic(
    obj: &InMemDicomObject,
    rows: u16,
    columns: u16,
    classic: &FrameHeader,
) -> Option<(MosaicLayout, Vec<FrameHeader>)> {
    let csa = obj
        .get(SIEMENS_CSA_IMAGE_HEADER)
        .and_then(|e| e.to_bytes().ok())
        .map(|b| b.into_owned());
    let csa_floats = |name: &str| -> Option<Vec<f64>> {
        csa_values(csa.as_deref()?, name)?
            .iter()
            .map(|v| v.parse().ok())
            .collect()
    };
    let images = int(obj, SIEMENS_NUMBER_OF_IMAGES_IN_MOSAIC)
        .or_else(|| {
            csa_floats("NumberOfImagesInMosaic")?
                .first()
                .map(|v| *v as i64)
        })
        .and_then(|n| u32::try_from(n).ok())?;
    let layout = MosaicLayout::new(rows, columns, images)?;
    let [x0, x1, x2, y0, y1, y2] = classic.image_orientation_patient?;
    let ipp = classic.image_position_patient?;
    let [row_spacing, column_spacing] = classic.pixel_spacing_mm?;
    let x = [x0, x1, x2];
    let y = [y0, y1, y2];
    // The tiles' order runs along the CSA SliceNormalVector, which may be either way along
    // X x Y: without it (an anonymiser dropped the CSA header) the slab could be mirrored
    // and shifted by its thickness, so the mosaic is not unpacked (shown as stored).
    let normal = match csa_floats("SliceNormalVector") {
        Some(n) if n.len() == 3 && n.iter().all(|v| v.is_finite()) => [n[0], n[1], n[2]],
        _ => return None,
    };
    // Spacing Between Slices, else the protocol's slice centres; never Slice Thickness (a
    // gap between slices would go unseen): without either, shown as stored.
    let dz = float(obj, tags::SPACING_BETWEEN_SLICES)
        .map(f64::abs)
        .filter(|d| *d > 0.0)
        .or_else(|| {
            let series = obj.get(SIEMENS_CSA_SERIES_HEADER)?.to_bytes().ok()?;
            phoenix_slice_spacing(&series, images)
        })?;
    let shift_c = column_spacing * f64::from(columns - layout.tile_columns) / 2.0;
    let shift_r = row_spacing * f64::from(rows - layout.tile_rows) / 2.0;
    let p0: [f64; 3] = std::array::from_fn(|a| ipp[a] + x[a] * shift_c + y[a] * shift_r);
    let tiles = (0..images)
        .map(|s| FrameHeader {
            image_position_patient: Some(std::array::from_fn(|a| {
                p0[a] + f64::from(s) * dz * normal[a]
            })),
            mosaic_tile: Some(s),
            ..classic.clone()
        })
        .collect();
    Some((layout, tiles))
}

/// The top-level VOI LUT of an object, read both ways: whether its first value mapped is
/// signed depends on whether its input (the modality values) can be negative, which an
/// enhanced object says per frame (its rescale lives in the functional groups). Read once,
/// shared by the frames.
struct TopVoiLut {
    /// Pixel Representation is 1: the input is signed whatever the rescale.
    signed_pixels: bool,
    unsigned_input: Option<std::sync::Arc<VoiLutTable>>,
    signed_input: Option<std::sync::Arc<VoiLutTable>>,
}

impl TopVoiLut {
    fn of(obj: &InMemDicomObject) -> TopVoiLut {
        TopVoiLut {
            signed_pixels: int(obj, tags::PIXEL_REPRESENTATION) == Some(1),
            unsigned_input: voi_lut_of(obj, false).map(std::sync::Arc::new),
            signed_input: voi_lut_of(obj, true).map(std::sync::Arc::new),
        }
    }

    /// Whether the modality values can be negative: never the output of a Modality LUT
    /// (`lut_output`), else with signed pixels or a negative intercept.
    fn input_signed(&self, rescale: Rescale, lut_output: bool) -> bool {
        !lut_output && (self.signed_pixels || rescale.intercept < 0.0)
    }

    fn for_rescale(
        &self,
        rescale: Rescale,
        lut_output: bool,
    ) -> Option<std::sync::Arc<VoiLutTable>> {
        if self.input_signed(rescale, lut_output) {
            self.signed_input.clone()
        } else {
            self.unsigned_input.clone()
        }
    }
}

/// Resolve one frame of an enhanced multi-frame object: per-frame groups win over shared ones,
/// which win over the top-level (classic) attributes (PS3.3 C.7.6.16).
fn functional_group_frame(
    frame_index: u32,
    classic: &FrameHeader,
    top_lut: &TopVoiLut,
    shared: Option<&InMemDicomObject>,
    per_frame: Option<&InMemDicomObject>,
) -> FrameHeader {
    let groups: Vec<&InMemDicomObject> = per_frame.into_iter().chain(shared).collect();
    let find = |seq: Tag| groups.iter().find_map(|g| first_item(g, seq));

    let position = find(tags::PLANE_POSITION_SEQUENCE)
        .and_then(|i| floats_n::<3>(i, tags::IMAGE_POSITION_PATIENT));
    let orientation = find(tags::PLANE_ORIENTATION_SEQUENCE).and_then(orientation_of);
    let measures = find(tags::PIXEL_MEASURES_SEQUENCE);
    let rescale = find(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE).and_then(rescale_of);
    let frame_voi = find(tags::FRAME_VOILUT_SEQUENCE);
    let frame_windows = frame_voi.map(windows_of).unwrap_or_default();
    // A LUT in the frame's VOI LUT group (PS3.3 C.7.6.16.2.10) wins over the top-level one;
    // either is read with the sign this frame's rescale gives its input.
    let frame_rescale = rescale.unwrap_or(classic.rescale);
    // The top-level Modality LUT gives this frame its values unless the frame has a rescale
    // of its own.
    let lut_output = rescale.is_none() && classic.modality_lut.is_some();
    let signed_input = top_lut.input_signed(frame_rescale, lut_output);
    let voi_lut = match frame_voi.and_then(|item| voi_lut_of(item, signed_input)) {
        Some(lut) => Some(std::sync::Arc::new(lut)),
        None => top_lut.for_rescale(frame_rescale, lut_output),
    };
    let content = find(tags::FRAME_CONTENT_SEQUENCE);
    let echo = find(tags::MR_ECHO_SEQUENCE).and_then(|i| text(i, tags::EFFECTIVE_ECHO_TIME));
    let flavour = find(tags::MR_IMAGE_FRAME_TYPE_SEQUENCE)
        .or_else(|| find(tags::CT_IMAGE_FRAME_TYPE_SEQUENCE))
        .and_then(|i| {
            let component = text(i, tags::COMPLEX_IMAGE_COMPONENT);
            image_flavour(component.iter().map(String::as_str)).or_else(|| {
                image_flavour(
                    strings(i, tags::FRAME_TYPE)
                        .iter()
                        .skip(2)
                        .map(String::as_str),
                )
            })
        });
    let diffusion = find(tags::MR_DIFFUSION_SEQUENCE).and_then(diffusion_of);

    let measured_spacing = measures.and_then(|m| spacing_of(m, tags::PIXEL_SPACING));
    FrameHeader {
        frame_index,
        image_position_patient: position.or(classic.image_position_patient),
        image_orientation_patient: orientation.or(classic.image_orientation_patient),
        pixel_spacing_mm: measured_spacing.or(classic.pixel_spacing_mm),
        spacing_at_detector: measured_spacing.is_none() && classic.spacing_at_detector,
        slice_thickness_mm: measures
            .and_then(|m| float(m, tags::SLICE_THICKNESS))
            .or(classic.slice_thickness_mm),
        rescale: rescale.unwrap_or(classic.rescale),
        padding: classic.padding,
        // A frame's own Pixel Value Transformation replaces the top-level Modality LUT.
        modality_lut: match rescale {
            Some(_) => None,
            None => classic.modality_lut.clone(),
        },
        // The frame's own windows, else the top level's.
        window: frame_windows.first().copied().or(classic.window),
        more_windows: match frame_windows.get(1..) {
            Some(more) => more.to_vec(),
            None if frame_windows.is_empty() => classic.more_windows.clone(),
            None => Vec::new(),
        },
        voi_lut,
        temporal_position: content
            .and_then(|c| int(c, tags::TEMPORAL_POSITION_INDEX))
            .or(classic.temporal_position),
        echo: echo.map(|e| echo_time(&e)).or_else(|| classic.echo.clone()),
        acquisition_number: classic.acquisition_number,
        acquired_at: content
            .and_then(|c| text(c, tags::FRAME_ACQUISITION_DATE_TIME))
            .and_then(|dt| sortable_datetime(&dt))
            .or_else(|| classic.acquired_at.clone()),
        image_flavour: flavour.or_else(|| classic.image_flavour.clone()),
        diffusion: diffusion.or_else(|| classic.diffusion.clone()),
        // Enhanced CT gives its kernel in the CT Reconstruction functional group.
        kernel: find(tags::CT_RECONSTRUCTION_SEQUENCE)
            .and_then(|i| strings(i, tags::CONVOLUTION_KERNEL).into_iter().next())
            .filter(|k| !k.is_empty())
            .or_else(|| classic.kernel.clone()),
        segment: find(tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .and_then(|i| int(i, tags::REFERENCED_SEGMENT_NUMBER)),
        mosaic_tile: None,
    }
}

/// A frame's diffusion weighting in words ("b=1000 dir (0.707, 0.707, 0)"), from Diffusion
/// b-value (0018,9087) and the Diffusion Gradient Orientation (0018,9089) of its direction
/// sequence (or beside the b-value, where classic images put it): frames of other weightings
/// are other volumes. The b-value as a number and the direction to three decimals, so that
/// repeats of one direction whose text differs in the last digits stay one volume, and the
/// browser's labels stay short; "b=0" alone without a direction (or with a zero one, as
/// some write for b=0).
fn diffusion_of(item: &InMemDicomObject) -> Option<String> {
    let b = text(item, tags::DIFFUSION_B_VALUE)?;
    let b = match b.parse::<f64>() {
        Ok(v) if v.is_finite() => format!("{}", v + 0.0),
        _ => b,
    };
    let direction = first_item(item, tags::DIFFUSION_GRADIENT_DIRECTION_SEQUENCE)
        .and_then(|d| floats_n::<3>(d, tags::DIFFUSION_GRADIENT_ORIENTATION))
        .or_else(|| floats_n::<3>(item, tags::DIFFUSION_GRADIENT_ORIENTATION))
        .filter(|d| d.iter().all(|c| c.is_finite()) && d.iter().any(|c| *c != 0.0));
    Some(match direction {
        Some(d) => {
            let [x, y, z] = d.map(|c| (c * 1000.0).round() / 1000.0 + 0.0);
            format!("b={b} dir ({x}, {y}, {z})")
        }
        None => format!("b={b}"),
    })
}

/// An enhanced frame's echo, by its Effective Echo Time ("TE 30 ms"): to a hundredth of a
/// millisecond, so that frames of one echo whose times differ in the last digits of their
/// text (30.0 and 30.000001) stay one volume (text that is not a number is kept as it is).
/// A classic image's is its Echo Number ("echo 2").
fn echo_time(text: &str) -> String {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() => format!("TE {} ms", (ms * 100.0).round() / 100.0),
        _ => format!("TE {}", text.trim()),
    }
}

/// The kind of value an MR image holds (magnitude, phase, real, imaginary), from Image Type
/// values 3 and on (Siemens `M`/`P`, Philips `M_FFE`/`P_SE` ...) or Complex Image Component
/// (0008,9208). Other Image Type values (GE's `ADD`, reformat flags) do not split stacks.
fn image_flavour<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    for v in values {
        let v = v.trim().to_ascii_uppercase();
        let head = v.split('_').next().unwrap_or("");
        let kind = match (v.as_str(), head) {
            ("MAGNITUDE", _) | (_, "M") => "magnitude",
            ("PHASE", _) | (_, "P") => "phase",
            ("REAL", _) | (_, "R") => "real",
            ("IMAGINARY", _) | (_, "I") => "imaginary",
            _ => continue,
        };
        return Some(kind.to_string());
    }
    None
}

fn rescale_of(obj: &InMemDicomObject) -> Option<Rescale> {
    let slope = float(obj, tags::RESCALE_SLOPE);
    let intercept = float(obj, tags::RESCALE_INTERCEPT);
    if slope.is_none() && intercept.is_none() {
        return None;
    }
    Some(Rescale {
        slope: slope.filter(|s| *s != 0.0 && s.is_finite()).unwrap_or(1.0),
        intercept: intercept.filter(|i| i.is_finite()).unwrap_or(0.0),
    })
}

/// Every Window Center/Width pair of `obj`, in order (the n-th center with the n-th width;
/// a value without its partner, a width not above zero or a center not finite left out).
fn windows_of(obj: &InMemDicomObject) -> Vec<Window> {
    let (Some(centers), Some(widths)) = (
        floats(obj, tags::WINDOW_CENTER),
        floats(obj, tags::WINDOW_WIDTH),
    ) else {
        return Vec::new();
    };
    let function = match text(obj, tags::VOILUT_FUNCTION).as_deref().map(str::trim) {
        Some("LINEAR_EXACT") => WindowFunction::LinearExact,
        Some("SIGMOID") => WindowFunction::Sigmoid,
        _ => WindowFunction::Linear,
    };
    centers
        .into_iter()
        .zip(widths)
        .filter(|(center, width)| *width > 0.0 && center.is_finite() && width.is_finite())
        .map(|(center, width)| Window {
            center,
            width,
            function,
        })
        .collect()
}

/// The first VOI LUT of `obj` (PS3.3 C.11.2.1.1); `None` when absent or inconsistent (a
/// descriptor whose entry count disagrees with the data, bits outside 8..=16: `lut_of`).
/// `signed_input`: the LUT's input (the modality values) can be
/// negative (signed pixels, or a negative rescale intercept, as in CT). The descriptor's
/// values are 16-bit and its VR (US or SS) says little (PS3.3 C.11.2.1.1): the entry count is
/// always unsigned, the first value mapped is signed when the input is, whichever VR carried
/// it (a US 64512 is -1024 for HU input), and the table's entries are unsigned.
fn voi_lut_of(obj: &InMemDicomObject, signed_input: bool) -> Option<VoiLutTable> {
    let item = first_item(obj, tags::VOILUT_SEQUENCE)?;
    let (first_mapped, bits, data) = lut_of(item, signed_input)?;
    Some(VoiLutTable {
        first_mapped,
        bits,
        data,
        explanation: text(item, tags::LUT_EXPLANATION),
    })
}

/// The Modality LUT of `obj` (PS3.3 C.11.1.1.1: its descriptor's first value mapped is signed
/// when the stored values are, `signed_pixels`); `None` when absent or inconsistent, as a VOI
/// LUT. An item without a descriptor (an emptied sequence, met in real files) is no LUT.
fn modality_lut_of(obj: &InMemDicomObject, signed_pixels: bool) -> Option<ModalityLut> {
    let item = first_item(obj, tags::MODALITY_LUT_SEQUENCE)?;
    let (first_mapped, _bits, data) = lut_of(item, signed_pixels)?;
    Some(ModalityLut {
        first_mapped,
        data,
        lut_type: text(item, tags::MODALITY_LUT_TYPE),
    })
}

/// The tables `obj` carries that cannot be read, in words: a Modality LUT or VOI LUT item with
/// a descriptor or data that [`lut_of`] refuses (its entries not as many as it says, say). An
/// emptied item (no descriptor, no data) is no table and no caveat.
fn caveats_of(obj: &InMemDicomObject) -> Vec<String> {
    let has_table = |sequence| {
        first_item(obj, sequence).is_some_and(|item| {
            item.get(tags::LUT_DESCRIPTOR).is_some() || item.get(tags::LUT_DATA).is_some()
        })
    };
    let mut out = Vec::new();
    if has_table(tags::MODALITY_LUT_SEQUENCE) && modality_lut_of(obj, false).is_none() {
        out.push(
            "its Modality LUT (0028,3000) could not be read: values are shown without it, not in \
             the table's units"
                .to_string(),
        );
    }
    if has_table(tags::VOILUT_SEQUENCE) && voi_lut_of(obj, false).is_none() {
        out.push(
            "its VOI LUT (0028,3010) could not be read: windowed by Window Center and Width, or \
             by the values' range"
                .to_string(),
        );
    }
    out
}

/// The padding of `obj`'s stored values (PS3.3 C.7.5.1.1.2), read as the pixels are: its
/// 16 bits (its VR, US or SS, is meant to match Pixel Representation and often does not)
/// kept to Bits Stored and sign-extended from its top bit for signed pixels, as each voxel is
/// when it is decoded. A US 63536 of signed 16-bit pixels is -2000; of signed 12-bit pixels,
/// -3024 (0xF430) is stored as 0x430, +1072, and so is its padding.
fn padding_of(obj: &InMemDicomObject, signed_pixels: bool) -> Option<PixelPadding> {
    let bits = int(obj, tags::BITS_STORED)
        .and_then(|b| u32::try_from(b).ok())
        .filter(|b| (1..=16).contains(b))
        .unwrap_or(16);
    let as_pixels = |v: i64| -> Option<i32> {
        let raw = (v & 0xFFFF) as u32 & ((1u32 << bits) - 1);
        let top = 1u32 << (bits - 1);
        let v = if signed_pixels && raw & top != 0 {
            i64::from(raw) - (1i64 << bits)
        } else {
            i64::from(raw)
        };
        i32::try_from(v).ok()
    };
    let value = as_pixels(int(obj, tags::PIXEL_PADDING_VALUE)?)?;
    let limit = int(obj, tags::PIXEL_PADDING_RANGE_LIMIT)
        .and_then(as_pixels)
        .unwrap_or(value);
    Some(PixelPadding {
        lo: value.min(limit),
        hi: value.max(limit),
    })
}

/// LUT Descriptor and LUT Data of a LUT item (modality or VOI): the first value mapped, the
/// bits of an entry, the entries.
fn lut_of(item: &InMemDicomObject, signed_input: bool) -> Option<(i32, u16, Vec<u16>)> {
    let element = item.get(tags::LUT_DESCRIPTOR)?;
    let desc = element.to_multi_int::<i64>().ok()?;
    let [entries, first, bits] = desc.get(..3)?.try_into().ok()?;
    let entries = entries & 0xFFFF;
    // Written as SS: signed as it stands. As US (or anything else): 16 bits, signed when the
    // input can be negative.
    let first = if element.vr() == dicom_core::VR::SS {
        first
    } else {
        let first = first & 0xFFFF;
        if signed_input && first > 0x7FFF {
            first - 0x1_0000
        } else {
            first
        }
    };
    let data: Vec<u16> = item
        .get(tags::LUT_DATA)?
        .to_multi_int::<i64>()
        .ok()?
        .into_iter()
        .map(|v| (v & 0xFFFF) as u16)
        .collect();
    // PS3.3: 0 entries means 65536.
    let entries = if entries == 0 { 65_536 } else { entries } as usize;
    if !(8..=16).contains(&bits) {
        return None;
    }
    // 8-bit entries are "stored in a format equivalent to 8 bits allocated" (PS3.3
    // C.11.1.1.1, C.11.2.1.1): two a 16-bit word, the first in the low byte. Many writers put
    // one in each word instead; the count of words says which.
    let data = if data.len() == entries {
        data
    } else if bits == 8 && data.len() == entries.div_ceil(2) {
        data.iter()
            .flat_map(|w| [w & 0xFF, w >> 8])
            .take(entries)
            .collect()
    } else {
        return None;
    };
    Some((i32::try_from(first).ok()?, bits as u16, data))
}

// --- attribute access: absent, empty or malformed values are `None`, never a panic -------------

pub(crate) fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag).and_then(|e| e.items()).and_then(|i| i.first())
}

/// When `obj` was acquired (see [`FrameHeader::acquired_at`]).
fn acquired_at(obj: &InMemDicomObject) -> Option<String> {
    text(obj, tags::ACQUISITION_DATE_TIME)
        .and_then(|dt| sortable_datetime(&dt))
        .or_else(|| {
            [
                (tags::ACQUISITION_DATE, tags::ACQUISITION_TIME),
                (tags::CONTENT_DATE, tags::CONTENT_TIME),
            ]
            .into_iter()
            .find_map(|(date, time)| {
                let time = sortable_time(&text(obj, time)?)?;
                // A date (ACR-NEMA dots dropped) before it where there is one: a series
                // without dates sorts by its times alone.
                let date: String = text(obj, date)
                    .unwrap_or_default()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                Some(if date.len() == 8 {
                    format!("{date}{time}")
                } else {
                    time
                })
            })
        })
}

/// A TM value as `HHMMSS.FFFFFF` (ACR-NEMA colons dropped, missing parts zero), or `None` for
/// one that is not a time.
fn sortable_time(tm: &str) -> Option<String> {
    let tm: String = tm.trim().chars().filter(|c| *c != ':').collect();
    let (whole, fraction) = tm.split_once('.').unwrap_or((&tm, ""));
    if whole.is_empty()
        || whole.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let fraction: String = fraction.chars().take(6).collect();
    Some(format!("{whole:0<6}.{fraction:0<6}"))
}

/// A DT value as `YYYYMMDDHHMMSS.FFFFFF` (missing parts zero; a UTC offset dropped: frames of
/// one series share theirs), or `None` for one that is not a date and time.
fn sortable_datetime(dt: &str) -> Option<String> {
    let dt = dt.trim();
    let dt = dt.split(['+', '-']).next().unwrap_or(dt);
    let (whole, fraction) = dt.split_once('.').unwrap_or((dt, ""));
    if whole.len() < 4
        || whole.len() > 14
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let fraction: String = fraction.chars().take(6).collect();
    Some(format!("{whole:0<14}.{fraction:0<6}"))
}

pub(crate) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = obj.get(tag)?.to_str().ok()?;
    let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

pub(crate) fn strings(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    text(obj, tag)
        .map(|t| t.split('\\').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

pub(crate) fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let element = obj.get(tag)?;
    element
        .to_int::<i64>()
        .ok()
        .or_else(|| element.to_float64().ok().map(|f| f.round() as i64))
}

pub(crate) fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    floats(obj, tag)?.first().copied()
}

pub(crate) fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let values = obj.get(tag)?.to_multi_float64().ok()?;
    (!values.is_empty() && values.iter().all(|v| v.is_finite())).then_some(values)
}

/// Image Orientation (Patient) where it is one: two unit vectors (within 1%), at right
/// angles (within about half a degree). An all-zero or otherwise degenerate orientation
/// (some secondary captures write 0\0\0\0\0\0) is none: taken as given it gave every frame the
/// same depth along a zero normal (each frame then a stack of its own) and a volume no view
/// could be made of.
fn orientation_of(obj: &InMemDicomObject) -> Option<[f64; 6]> {
    let o = floats_n::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT)?;
    let (r, c) = (DVec3::new(o[0], o[1], o[2]), DVec3::new(o[3], o[4], o[5]));
    let unit = |v: DVec3| (v.length() - 1.0).abs() <= 0.01;
    (unit(r) && unit(c) && r.dot(c).abs() <= 0.01).then_some(o)
}

/// A pixel spacing where it is one: both values greater than zero (0\0 is none).
fn spacing_of(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 2]> {
    floats_n::<2>(obj, tag).filter(|s| s.iter().all(|v| *v > 0.0))
}

fn floats_n<const N: usize>(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; N]> {
    let values = floats(obj, tag)?;
    values.get(..N)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR, value::DataSetSequence};

    fn with_lut(descriptor: [u16; 3], data: &[u16]) -> InMemDicomObject {
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::LUT_DESCRIPTOR,
                VR::US,
                PrimitiveValue::U16(descriptor.into_iter().collect()),
            ),
            DataElement::new(
                tags::LUT_DATA,
                VR::OW,
                PrimitiveValue::U16(data.iter().copied().collect()),
            ),
        ]);
        InMemDicomObject::from_element_iter([DataElement::new(
            tags::MODALITY_LUT_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        )])
    }

    /// 8-bit entries two a word (low byte first, PS3.3 C.11.1.1.1) or one a word read alike;
    /// a count of words that fits neither is no table. The first value mapped is signed for
    /// signed stored values, and values outside the table take its ends.
    #[test]
    fn modality_luts_are_read_packed_or_not() {
        let packed = with_lut([5, 0, 8], &[0x0201, 0x0403, 0x0005]);
        let lut = modality_lut_of(&packed, false).unwrap();
        assert_eq!(lut.data, [1, 2, 3, 4, 5]);
        let one_a_word = with_lut([5, 0, 8], &[1, 2, 3, 4, 5]);
        assert_eq!(
            modality_lut_of(&one_a_word, false).unwrap().data,
            [1, 2, 3, 4, 5]
        );
        assert!(modality_lut_of(&with_lut([5, 0, 8], &[1, 2]), false).is_none());
        assert!(modality_lut_of(&with_lut([5, 0, 16], &[1, 2, 3]), false).is_none());
        assert!(modality_lut_of(&with_lut([2, 0, 4], &[1, 2]), false).is_none());

        let signed = with_lut([3, 0xFFFE, 16], &[100, 200, 300]);
        let lut = modality_lut_of(&signed, true).unwrap();
        assert_eq!(lut.first_mapped, -2);
        assert_eq!(
            [-5, -2, -1, 0, 7].map(|v| lut.map(v)),
            [100, 100, 200, 300, 300]
        );
        assert_eq!(modality_lut_of(&signed, false).unwrap().first_mapped, 65534);
    }

    /// Echo times a hair apart are one echo; whole ones read as written.
    #[test]
    fn echo_times_are_keyed_to_a_hundredth() {
        assert_eq!(echo_time("30.0"), echo_time("30.000001"));
        assert_eq!(echo_time("30"), "TE 30 ms");
        assert_eq!(echo_time(" 4.92 "), "TE 4.92 ms");
        assert_eq!(echo_time("194.39999999999998"), "TE 194.4 ms");
        assert_ne!(echo_time("4.92"), echo_time("7.38"));
        assert_eq!(echo_time("n/a"), "TE n/a");
    }

    /// Padding in the pixels' representation, a range either way round.
    /// A compressed file's claims are held to its size too: a kilobyte claiming a 65535-square
    /// frame is refused, a blank frame compressed to almost nothing is not; no frame of more
    /// than 2^28 samples is read, whatever the file's size is known to be.
    #[test]
    fn compressed_claims_fit_the_file() {
        let jpeg = "1.2.840.10008.1.2.4.70";
        let e = claims_fit_the_file(Some(1024), jpeg, [65535, 65535, 1, 16], 1).unwrap_err();
        assert!(e.contains("65535x65535"), "{e}");
        assert_eq!(
            claims_fit_the_file(Some(200), jpeg, [512, 512, 1, 16], 1),
            Ok(())
        );
        assert_eq!(
            claims_fit_the_file(Some(50 << 20), jpeg, [4096, 5120, 1, 16], 100),
            Ok(())
        );
        let e = claims_fit_the_file(None, jpeg, [20000, 20000, 1, 8], 1).unwrap_err();
        assert!(e.contains("20000x20000"), "{e}");
        assert_eq!(
            claims_fit_the_file(
                Some(2 << 30),
                "1.2.840.10008.1.2.1",
                [16384, 16384, 1, 8],
                1
            ),
            Ok(())
        );
        // The bound is on pixels: a large colour scan of 12000 x 12000 is read.
        assert_eq!(
            claims_fit_the_file(
                Some(450 << 20),
                "1.2.840.10008.1.2.1",
                [12000, 12000, 3, 8],
                1
            ),
            Ok(())
        );
    }

    /// Times of acquisition as texts that sort in time, whatever their form.
    #[test]
    fn acquisition_times_sort_in_time() {
        assert_eq!(
            sortable_datetime("20240131235959.5+0100").as_deref(),
            Some("20240131235959.500000")
        );
        assert_eq!(
            sortable_datetime("202401").as_deref(),
            Some("20240100000000.000000")
        );
        assert_eq!(sortable_datetime("noon"), None);
        assert_eq!(sortable_time("10:05").as_deref(), Some("100500.000000"));
        assert_eq!(sortable_time("1005").as_deref(), Some("100500.000000"));
        assert_eq!(sortable_time("100501.25").as_deref(), Some("100501.250000"));
        assert_eq!(sortable_time("1234567"), None);
        let with = |date: Option<&str>, time: &str| {
            let mut obj = InMemDicomObject::new_empty();
            if let Some(d) = date {
                obj.put(DataElement::new(
                    tags::CONTENT_DATE,
                    VR::DA,
                    PrimitiveValue::from(d),
                ));
            }
            obj.put(DataElement::new(
                tags::CONTENT_TIME,
                VR::TM,
                PrimitiveValue::from(time),
            ));
            acquired_at(&obj)
        };
        // Over midnight: the date decides.
        assert!(with(Some("20240131"), "235959") < with(Some("20240201"), "000001"));
        assert_eq!(
            with(Some("2024.01.31"), "23:59:59").as_deref(),
            Some("20240131235959.000000")
        );
        assert_eq!(with(None, "0930").as_deref(), Some("093000.000000"));
        // Acquisition DateTime wins over the content's date and time.
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::ACQUISITION_DATE_TIME,
            VR::DT,
            PrimitiveValue::from("20240131080000"),
        ));
        obj.put(DataElement::new(
            tags::CONTENT_TIME,
            VR::TM,
            PrimitiveValue::from("090000"),
        ));
        assert_eq!(acquired_at(&obj).as_deref(), Some("20240131080000.000000"));
    }

    #[test]
    fn padding_is_read_as_the_pixels_are() {
        let obj = |value: PrimitiveValue, vr: VR, limit: Option<u16>| {
            let mut o = InMemDicomObject::from_element_iter([DataElement::new(
                tags::PIXEL_PADDING_VALUE,
                vr,
                value,
            )]);
            if let Some(l) = limit {
                o.put(DataElement::new(
                    tags::PIXEL_PADDING_RANGE_LIMIT,
                    VR::US,
                    PrimitiveValue::from(l),
                ));
            }
            o
        };
        let ss = obj(PrimitiveValue::from(-2000i16), VR::SS, None);
        assert_eq!(
            padding_of(&ss, true),
            Some(PixelPadding {
                lo: -2000,
                hi: -2000
            })
        );
        let us = obj(PrimitiveValue::from(63536u16), VR::US, None);
        assert_eq!(
            padding_of(&us, true),
            Some(PixelPadding {
                lo: -2000,
                hi: -2000
            })
        );
        assert_eq!(
            padding_of(&us, false),
            Some(PixelPadding {
                lo: 63536,
                hi: 63536
            })
        );
        let range = obj(PrimitiveValue::from(30u16), VR::US, Some(0));
        let p = padding_of(&range, false).unwrap();
        assert_eq!(p, PixelPadding { lo: 0, hi: 30 });
        assert!(p.contains(0) && p.contains(24) && p.contains(30) && !p.contains(31));
        assert_eq!(padding_of(&InMemDicomObject::new_empty(), false), None);
        // 12 bits stored, as the voxels are read: -3024 (0xF430) is +1072; 0x830 is -2000.
        let twelve = |value: PrimitiveValue, vr: VR| {
            let mut o = obj(value, vr, None);
            o.put(DataElement::new(
                tags::BITS_STORED,
                VR::US,
                PrimitiveValue::from(12u16),
            ));
            o
        };
        assert_eq!(
            padding_of(&twelve(PrimitiveValue::from(-3024i16), VR::SS), true),
            Some(PixelPadding { lo: 1072, hi: 1072 })
        );
        assert_eq!(
            padding_of(&twelve(PrimitiveValue::from(0x830u16), VR::US), true),
            Some(PixelPadding {
                lo: -2000,
                hi: -2000
            })
        );
        assert_eq!(
            padding_of(&twelve(PrimitiveValue::from(0xF430u16), VR::US), false),
            Some(PixelPadding {
                lo: 0x430,
                hi: 0x430
            })
        );
    }
}
