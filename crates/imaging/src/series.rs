//! Grouping scanned headers into patient -> study -> series -> stacks.
//!
//! A [`Stack`] is one geometric volume: slices of one size, one orientation, one kind of image
//! (echo, magnitude/phase, diffusion direction, segment) and one time point, sorted along the slice
//! normal. A series splits into several stacks when it holds localizers in three planes, echoes,
//! time points (4D) or repeated acquisitions; repeated positions are never stacked together.
//!
//! Owns: grouping and sorting. Must not read files (headers come from `scan`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use glam::DVec3;
use serde::Serialize;

use super::geometry::VolumeGeometry;
use super::header::{
    InstanceHeader, ModalityLut, PixelPadding, Provenance, Rescale, VoiLutTable, Window,
};
use super::identity::Phi;
use super::mosaic::MosaicLayout;

/// One frame of one file, placed in a stack.
#[derive(Debug, Clone, Serialize)]
pub struct SliceRef {
    pub path: PathBuf,
    /// 0-based frame within the file.
    pub frame: u32,
    /// SOP Instance UID (0008,0018) of the file the frame is in.
    pub sop_instance_uid: String,
    /// Instance Number (0020,0013)
    pub instance_number: Option<i64>,
    /// Image Position (Patient) of this slice, LPS mm (zeros when untrusted).
    pub position_mm: [f64; 3],
    pub rescale: Rescale,
    /// The file's Modality LUT, which replaces `rescale` (applied as the slice is decoded:
    /// the volume holds its values, see `imaging::decode`).
    #[serde(skip)]
    pub modality_lut: Option<std::sync::Arc<ModalityLut>>,
    /// The file's Pixel Padding Value (and Range Limit): stored values that are not patient.
    pub padding: Option<PixelPadding>,
    /// The file's first window, and those after it (`FrameHeader::more_windows`).
    pub window: Option<Window>,
    pub more_windows: Vec<Window>,
    /// The file's first VOI LUT, if any.
    #[serde(skip)]
    pub voi_lut: Option<std::sync::Arc<VoiLutTable>>,
    /// Transfer Syntax UID of the file.
    pub transfer_syntax_uid: String,
    /// The file's High Bit (0028,0102), where given.
    pub high_bit: Option<i64>,
    /// For a Siemens mosaic: the tile of the stored frame that is this slice.
    pub mosaic_tile: Option<u32>,
    /// Slice Thickness (0018,0050), mm: the nominal thickness of the reconstructed slice,
    /// which may differ from the spacing between slices (overlapping or gapped slices).
    pub thickness_mm: Option<f64>,
}

/// How the stored samples look, common to every slice of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PixelFormat {
    pub rows: u16,
    pub columns: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric_interpretation: String,
}

impl PixelFormat {
    /// Three samples a pixel, or palette colour: loaded as an RGB volume (`Voxels::Rgb`),
    /// without rescale.
    pub fn is_colour(&self) -> bool {
        self.samples_per_pixel == 3 || self.is_palette()
    }

    /// PALETTE COLOR (PS3.3 C.7.6.3.1.2): one index a pixel, shown through the file's red,
    /// green and blue lookup tables.
    pub fn is_palette(&self) -> bool {
        self.samples_per_pixel == 1 && self.photometric_interpretation.trim() == "PALETTE COLOR"
    }
}

/// What distinguishes one stack of a series from another.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StackLabel {
    pub echo: Option<String>,
    pub image_flavour: Option<String>,
    pub diffusion: Option<String>,
    /// A segmentation's segment number (one stack a segment).
    pub segment: Option<i64>,
    pub temporal_position: Option<i64>,
    /// A CT reconstruction's Convolution Kernel.
    pub kernel: Option<String>,
    /// Index of the repetition when positions repeat with nothing else telling them apart.
    pub repetition: Option<usize>,
}

impl StackLabel {
    /// The label's parts in words, each where it has one: echo ("echo 2", "TE 30 ms"), image
    /// type, diffusion ("b=1000 dir=..."), segment, time, kernel, repetition.
    fn parts(&self) -> [Option<String>; 7] {
        [
            self.echo.clone(),
            self.image_flavour.clone(),
            self.diffusion.clone(),
            self.segment.map(|n| format!("segment {n}")),
            self.temporal_position.map(|t| format!("time {t}")),
            self.kernel.as_ref().map(|k| format!("kernel {k}")),
            self.repetition.map(|r| format!("repetition {r}")),
        ]
    }

    /// Every part of the label in words ("echo 2, b=1000 dir=..., kernel BONE"); empty when it
    /// has none.
    pub fn describe(&self) -> String {
        self.parts()
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Series {
    /// What tells each of its stacks from the others, in words, one per stack: the parts of
    /// their labels that differ among them (not what all share: "echo 1" on every volume of a
    /// DTI, Philips' "b=0" on a plain series), the plane where planes differ, and "volume i of
    /// n" where two would still read alike. Empty for a series of one stack.
    pub fn stack_labels(&self) -> Vec<String> {
        let n = self.stacks.len();
        if n < 2 {
            return vec![String::new(); n];
        }
        let parts: Vec<Vec<Option<String>>> = self
            .stacks
            .iter()
            .map(|s| {
                let mut p = s.label.parts().to_vec();
                p.push(plane_name(&s.geometry).map(str::to_string));
                p
            })
            .collect();
        let differs = |field: usize| parts.iter().any(|p| p[field] != parts[0][field]);
        let mut labels: Vec<String> = parts
            .iter()
            .map(|p| {
                p.iter()
                    .enumerate()
                    .filter(|(field, _)| differs(*field))
                    .filter_map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let alike: Vec<bool> = labels
            .iter()
            .map(|l| labels.iter().filter(|m| *m == l).count() > 1)
            .collect();
        for (i, (label, alike)) in labels.iter_mut().zip(alike).enumerate() {
            if alike {
                let volume = format!("volume {} of {n}", i + 1);
                *label = if label.is_empty() {
                    volume
                } else {
                    format!("{label}, {volume}")
                };
            }
        }
        labels
    }
}

/// The plane a placed stack lies in, by its normal: "axial", "coronal", "sagittal" (within
/// about 18 degrees of one) or "oblique"; `None` where its geometry is not placed.
fn plane_name(g: &VolumeGeometry) -> Option<&'static str> {
    if !g.trusted {
        return None;
    }
    let n = DVec3::from(g.slice_normal).normalize_or_zero().abs();
    Some(if n.z >= 0.95 {
        "axial"
    } else if n.y >= 0.95 {
        "coronal"
    } else if n.x >= 0.95 {
        "sagittal"
    } else {
        "oblique"
    })
}

/// One geometric volume.
#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    /// Stable within one scan: "1", "2", ... in patient/study/series order.
    pub id: String,
    pub label: StackLabel,
    pub format: PixelFormat,
    pub slices: Vec<SliceRef>,
    pub geometry: VolumeGeometry,
    pub is_localizer: bool,
    /// Siemens mosaic: how each stored frame tiles this stack's slices (see `mosaic`).
    pub mosaic: Option<MosaicLayout>,
    /// Image Type says MOSAIC but the tiling could not be worked out: shown as tiles.
    pub unpacked_mosaic_failed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Series Instance UID (0020,000E)
    pub uid: String,
    /// Series Number (0020,0011)
    pub number: Option<i64>,
    /// Series Description (0008,103E)
    pub description: Option<String>,
    /// Modality (0008,0060)
    pub modality: Option<String>,
    pub stacks: Vec<Stack>,
    pub instance_count: usize,
    /// Things a reader should know (split into several stacks, mixed sizes ...).
    pub notes: Vec<String>,
    /// What its files could not give, so that it is shown otherwise than they mean (a mosaic
    /// left as tiles, a table that could not be read and is not applied), with how many
    /// files said it: marked in the browser.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Study {
    /// Study Instance UID (0020,000D)
    pub uid: String,
    /// Study Date (0008,0020)
    pub date: Option<String>,
    /// Study Description (0008,1030)
    pub description: Option<String>,
    /// Accession Number (0008,0050)
    pub accession_number: Phi,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Patient {
    /// Patient's Name (0010,0010)
    pub name: Phi,
    /// Patient ID (0010,0020)
    pub id: Phi,
    /// Patient's Birth Date (0010,0030)
    pub birth_date: Phi,
    pub studies: Vec<Study>,
}

impl Patient {
    pub fn stacks(&self) -> impl Iterator<Item = &Stack> {
        self.studies
            .iter()
            .flat_map(|s| &s.series)
            .flat_map(|s| &s.stacks)
    }
}

/// A Patient's Name tidied: each component trimmed, empty trailing components and component
/// groups dropped ("DOE^JANE^^ " and "DOE ^JANE=" are "DOE^JANE", PS3.5 6.2 PN).
pub fn tidy_name(name: &str) -> String {
    let groups: Vec<String> = name
        .split('=')
        .map(|group| {
            let components: Vec<&str> = group.split('^').map(str::trim).collect();
            components.join("^").trim_end_matches('^').to_string()
        })
        .collect();
    groups.join("=").trim_end_matches('=').to_string()
}

/// A Patient's Name as names are compared when telling patients apart: [`tidy_name`] with
/// ASCII letters in upper case (systems differ in case: "Doe^Jane").
pub fn normalized_name(name: &str) -> String {
    tidy_name(name).to_ascii_uppercase()
}

/// Study UID -> series UID -> headers.
type StudiesBySeries<'a> = BTreeMap<String, BTreeMap<String, Vec<&'a InstanceHeader>>>;

/// Group headers into patients, studies, series and stacks, and number the stacks. A patient
/// is a Patient ID (trimmed, compared exactly, as DICOM compares IDs) with a name as
/// [`normalized_name`] compares them; the name shown is the fullest [`tidy_name`] seen (the
/// most characters; the first in order among equals).
pub fn group(instances: &[InstanceHeader]) -> Vec<Patient> {
    // BTreeMaps keep a deterministic order whatever order files were read in.
    let mut by_patient: BTreeMap<(Phi, Phi), StudiesBySeries> = BTreeMap::new();
    let mut shown: BTreeMap<(Phi, Phi), Phi> = BTreeMap::new();
    for h in instances {
        let p = &h.provenance;
        let key = (
            Phi::new(p.patient_id.reveal().trim()),
            Phi::new(normalized_name(p.patient_name.reveal())),
        );
        let this = tidy_name(p.patient_name.reveal());
        let name = shown
            .entry(key.clone())
            .or_insert_with(|| Phi::new(this.clone()));
        let kept = name.reveal();
        if this.len() > kept.len() || (this.len() == kept.len() && this.as_str() < kept) {
            *name = Phi::new(this);
        }
        by_patient
            .entry(key)
            .or_default()
            .entry(p.study_instance_uid.clone())
            .or_default()
            .entry(p.series_instance_uid.clone())
            .or_default()
            .push(h);
    }

    let mut next_id = 1usize;
    let mut patients = Vec::new();
    for ((id, key_name), studies) in by_patient {
        let name = shown
            .get(&(id.clone(), key_name.clone()))
            .cloned()
            .unwrap_or(key_name);
        let mut patient = Patient {
            name,
            id,
            birth_date: Phi::default(),
            studies: Vec::new(),
        };
        // The newest study first (a current study above its priors), by Study Date as
        // YYYYMMDD, studies without one last; the UID only breaks ties (in UID order they
        // came as "1.2.10" before "1.2.9": no order a reader can follow).
        let mut studies: Vec<_> = studies.into_iter().collect();
        studies.sort_by_cached_key(|(uid, series_map)| {
            let date = series_map
                .values()
                .flat_map(|headers| headers.iter())
                .find_map(|h| h.provenance.study_date.as_deref().map(str::trim))
                .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string);
            (std::cmp::Reverse(date), uid.clone())
        });
        for (study_uid, series_map) in studies {
            let mut study: Option<Study> = None;
            // A series is its UID (one file without a Series Number made it two); series in
            // order of their number, then UID.
            let mut series_list: Vec<(String, Vec<&InstanceHeader>)> =
                series_map.into_iter().collect();
            series_list.sort_by_cached_key(|(uid, headers)| (series_number(headers), uid.clone()));
            for (series_uid, headers) in series_list {
                let first: &Provenance = &headers[0].provenance;
                // The first birth date given (not whichever series came last).
                if patient.birth_date.reveal().trim().is_empty() {
                    patient.birth_date = first.patient_birth_date.clone();
                }
                let study = study.get_or_insert_with(|| Study {
                    uid: study_uid.clone(),
                    date: first.study_date.clone(),
                    description: first.study_description.clone(),
                    accession_number: first.accession_number.clone(),
                    series: Vec::new(),
                });
                let mut series = build_series(series_uid, &headers);
                for stack in &mut series.stacks {
                    stack.id = next_id.to_string();
                    next_id += 1;
                }
                study.series.push(series);
            }
            patient.studies.extend(study);
        }
        patients.push(patient);
    }
    patients
}

/// One frame with everything that decides its stack.
#[derive(Debug, Clone)]
struct FrameEntry<'a> {
    header: &'a InstanceHeader,
    frame: u32,
    position: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
    pixel_spacing: Option<[f64; 2]>,
    /// `pixel_spacing` is Imager Pixel Spacing (at the detector).
    spacing_at_detector: bool,
    thickness: Option<f64>,
    temporal: Option<i64>,
    acquisition: Option<i64>,
    acquired_at: Option<String>,
    rescale: Rescale,
    modality_lut: Option<std::sync::Arc<ModalityLut>>,
    padding: Option<PixelPadding>,
    window: Option<Window>,
    more_windows: Vec<Window>,
    voi_lut: Option<std::sync::Arc<VoiLutTable>>,
    mosaic_tile: Option<u32>,
}

/// What must be equal for two frames to share a stack (before time points are split).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PartitionKey {
    orientation: Option<[i64; 6]>,
    pixel_spacing: Option<[i64; 2]>,
    /// Whether that spacing is at the detector (Imager Pixel Spacing) or in the patient: a
    /// stack takes one frame's word for all, so frames that say differently part.
    spacing_at_detector: bool,
    format: (u16, u16, u16, u16, u16, bool, String),
    echo: Option<String>,
    flavour: Option<String>,
    diffusion: Option<String>,
    /// Convolution Kernel (0018,1210): a CT series holding a soft-tissue and a bone
    /// reconstruction over partly the same range is two volumes, never one that alternates.
    kernel: Option<String>,
    segment: Option<i64>,
    mosaic: Option<MosaicLayout>,
    mosaic_flag: bool,
    localizer: bool,
}

/// Direction cosines agree to 1e-4 (about 0.006 degrees); pixel spacing to 1 µm.
fn quantize<const N: usize>(v: [f64; N], scale: f64) -> [i64; N] {
    v.map(|x| (x * scale).round() as i64)
}

/// Values that agree within `tolerance` (every component) take the first one's place: a key
/// is the representative's, quantized. Rounding each value to a grid instead split values a
/// hair apart across a grid line (0.00004999 and 0.00005001) into two stacks.
struct Representatives<const N: usize> {
    tolerance: f64,
    scale: f64,
    seen: Vec<[f64; N]>,
}

impl<const N: usize> Representatives<N> {
    fn new(tolerance: f64) -> Self {
        Representatives {
            tolerance,
            scale: 1.0 / tolerance,
            seen: Vec::new(),
        }
    }

    fn key(&mut self, v: [f64; N]) -> [i64; N] {
        let close = |r: &[f64; N]| {
            r.iter()
                .zip(&v)
                .all(|(a, b)| (a - b).abs() <= self.tolerance)
        };
        let rep = match self.seen.iter().find(|r| close(r)) {
            Some(r) => *r,
            None => {
                self.seen.push(v);
                v
            }
        };
        quantize(rep, self.scale)
    }
}

/// A series' number: the smallest its files give (files of one series should agree; one
/// without is not a series of its own).
fn series_number(headers: &[&InstanceHeader]) -> i64 {
    headers
        .iter()
        .filter_map(|h| h.provenance.series_number)
        .min()
        .unwrap_or(i64::MAX)
}

fn build_series(uid: String, headers: &[&InstanceHeader]) -> Series {
    let mut partitions: BTreeMap<PartitionKey, Vec<FrameEntry>> = BTreeMap::new();
    let mut orientations = Representatives::<6>::new(1e-4);
    let mut spacings = Representatives::<2>::new(1e-3);
    for h in headers {
        for f in &h.frames {
            let key = PartitionKey {
                orientation: f.image_orientation_patient.map(|o| orientations.key(o)),
                pixel_spacing: f.pixel_spacing_mm.map(|s| spacings.key(s)),
                spacing_at_detector: f.spacing_at_detector,
                format: (
                    h.slice_rows(),
                    h.slice_columns(),
                    h.samples_per_pixel,
                    h.bits_allocated,
                    h.bits_stored,
                    h.signed,
                    h.photometric_interpretation.clone(),
                ),
                echo: f.echo.clone(),
                flavour: f.image_flavour.clone(),
                diffusion: f.diffusion.clone(),
                kernel: f.kernel.clone(),
                segment: f.segment,
                mosaic: h.mosaic,
                mosaic_flag: h.is_mosaic(),
                localizer: h.is_localizer(),
            };
            partitions.entry(key).or_default().push(FrameEntry {
                header: h,
                frame: f.frame_index,
                position: f.image_position_patient,
                orientation: f.image_orientation_patient,
                pixel_spacing: f.pixel_spacing_mm,
                spacing_at_detector: f.spacing_at_detector,
                thickness: f.slice_thickness_mm,
                temporal: f.temporal_position,
                acquisition: f.acquisition_number,
                acquired_at: f.acquired_at.clone(),
                rescale: f.rescale,
                modality_lut: f.modality_lut.clone(),
                padding: f.padding,
                window: f.window,
                more_windows: f.more_windows.clone(),
                voi_lut: f.voi_lut.clone(),
                mosaic_tile: f.mosaic_tile,
            });
        }
    }

    let mut notes = Vec::new();
    let mut stacks = Vec::new();
    let partition_count = partitions.len();
    for (key, mut frames) in partitions {
        // Acquisition order first: it decides which repetition a repeated position belongs to
        // (by acquisition, whose Instance Numbers may each start again at 1, then instance,
        // then frame, then the time of acquisition where files tie on all of those (no
        // numbers); a time missing sorts after those given). Within one multi-frame file the
        // frame order decides, never the times (a gated series' phases come from different
        // beats). Frames tied on all of them keep the scan's order.
        frames.sort_by_cached_key(|f| {
            (
                f.acquisition.unwrap_or(i64::MAX),
                f.header.instance_number.unwrap_or(i64::MAX),
                f.frame,
                f.acquired_at.is_none(),
                f.acquired_at.clone(),
            )
        });
        for (mut label, group) in split_repeats(frames) {
            label.echo = key.echo.clone();
            label.image_flavour = key.flavour.clone();
            label.diffusion = key.diffusion.clone();
            label.kernel = key.kernel.clone();
            label.segment = key.segment;
            stacks.push(make_stack(
                label,
                group,
                key.mosaic,
                key.mosaic_flag,
                key.localizer,
            ));
        }
    }
    if partition_count > 1 {
        let sizes: std::collections::BTreeSet<(u16, u16)> = stacks
            .iter()
            .map(|s| (s.format.columns, s.format.rows))
            .collect();
        if sizes.len() > 1 {
            notes.push(format!(
                "series holds images of {} different sizes: split into {} stacks",
                sizes.len(),
                stacks.len()
            ));
        } else {
            notes.push(format!(
                "series holds {} kinds of image (orientation, echo, type): split into {} stacks",
                partition_count,
                stacks.len()
            ));
        }
    }
    let mut warnings = Vec::new();
    if stacks.iter().any(|s| s.unpacked_mosaic_failed) {
        warnings
            .push("Siemens mosaic without a usable tile count or geometry: shown as tiles".into());
    }
    // What files could not give (an unreadable table), once each, with how many said it.
    let mut caveats: Vec<(&str, usize)> = Vec::new();
    for caveat in headers.iter().flat_map(|h| &h.caveats) {
        match caveats.iter_mut().find(|(c, _)| *c == caveat.as_str()) {
            Some((_, n)) => *n += 1,
            None => caveats.push((caveat, 1)),
        }
    }
    for (caveat, n) in caveats {
        warnings.push(if n == headers.len() {
            format!("every file: {caveat}")
        } else {
            format!("{n} of {} files: {caveat}", headers.len())
        });
    }
    Series {
        uid,
        number: Some(series_number(headers)).filter(|n| *n != i64::MAX),
        description: headers
            .iter()
            .find_map(|h| h.provenance.series_description.clone()),
        modality: headers.iter().find_map(|h| h.provenance.modality.clone()),
        instance_count: headers.len(),
        stacks,
        notes,
        warnings,
    }
}

/// Slices from which an acquisition is a volume of its own whatever else covers the places.
const MIN_VOLUME: usize = 16;

/// Split frames that share positions into separate volumes: by temporal position, then by
/// acquisition number (where the acquisitions are volumes), and finally by the order in which
/// a position repeats.
fn split_repeats(frames: Vec<FrameEntry<'_>>) -> Vec<(StackLabel, Vec<FrameEntry<'_>>)> {
    if !has_repeated_positions(&frames) {
        return vec![(StackLabel::default(), frames)];
    }
    let temporal: BTreeMap<Option<i64>, Vec<FrameEntry>> = group_by(&frames, |f| f.temporal);
    if temporal.len() > 1 {
        return temporal
            .into_iter()
            .flat_map(|(t, group)| {
                split_repeats(group).into_iter().map(move |(mut label, g)| {
                    label.temporal_position = t;
                    (label, g)
                })
            })
            .collect();
    }
    // Acquisitions are volumes when each covers most of the places (two passes over the same
    // anatomy, two stations at the same depths) or is a volume in itself (16 slices or more:
    // stations of a spine that overlap at their ends); not when each is a slab of a few (a
    // sequential CT numbers each rotation: one position scanned again would have cut the
    // series into a stack per rotation).
    let acquisitions: BTreeMap<Option<i64>, Vec<FrameEntry>> = group_by(&frames, |f| f.acquisition);
    let places = {
        let mut p = slice_places(&frames);
        p.sort_unstable();
        p.dedup();
        p.len()
    };
    if acquisitions.len() > 1
        && acquisitions
            .values()
            .all(|g| !has_repeated_positions(g) && (g.len() * 2 >= places || g.len() >= MIN_VOLUME))
    {
        return acquisitions
            .into_values()
            .enumerate()
            .map(|(i, g)| {
                (
                    StackLabel {
                        repetition: Some(i + 1),
                        ..StackLabel::default()
                    },
                    g,
                )
            })
            .collect();
    }
    // The n-th time a position is seen (in acquisition order) belongs to volume n.
    let keys = slice_places(&frames);
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut volumes: Vec<Vec<FrameEntry>> = Vec::new();
    for (f, key) in frames.into_iter().zip(keys) {
        let n = seen.entry(key).or_insert(0);
        if volumes.len() <= *n {
            volumes.push(Vec::new());
        }
        volumes[*n].push(f);
        *n += 1;
    }
    volumes
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            (
                StackLabel {
                    repetition: Some(i + 1),
                    ..StackLabel::default()
                },
                g,
            )
        })
        .collect()
}

fn group_by<'a, K: Ord>(
    frames: &[FrameEntry<'a>],
    key: impl Fn(&FrameEntry) -> K,
) -> BTreeMap<K, Vec<FrameEntry<'a>>> {
    let mut out: BTreeMap<K, Vec<FrameEntry>> = BTreeMap::new();
    for f in frames {
        out.entry(key(f)).or_default().push(f.clone());
    }
    out
}

/// Where each frame lies along the slice normal, as the index of its place: frames within
/// 1 µm of each other along the normal share a place, wherever they are in the plane (two
/// stations of a spine at the same depth but shifted in-plane are two volumes, not one
/// interleaved stack). Places follow the normal's order.
fn slice_places(frames: &[FrameEntry]) -> Vec<usize> {
    // One normal for all (the first frame's): orientations within the grouping tolerance
    // would otherwise tilt each frame's depth by more than 1 µm at 300 mm from the origin.
    let normal = frames
        .iter()
        .find_map(|f| f.orientation)
        .map_or(DVec3::Z, |o| {
            DVec3::new(o[0], o[1], o[2]).cross(DVec3::new(o[3], o[4], o[5]))
        });
    let depth: Vec<f64> = frames
        .iter()
        .map(|f| f.position.map_or(f64::NAN, |p| DVec3::from(p).dot(normal)))
        .collect();
    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by(|a, b| depth[*a].total_cmp(&depth[*b]));
    let mut places = vec![0; frames.len()];
    let mut place = 0;
    let mut start = f64::NAN;
    for (n, &i) in order.iter().enumerate() {
        // A new place when this frame is more than 1 µm past where the last place began.
        let within = depth[i] - start <= 1e-3;
        if n > 0 && !within {
            place += 1;
        }
        if n == 0 || place != places[order[n - 1]] {
            start = depth[i];
        }
        places[i] = place;
    }
    places
}

fn has_repeated_positions(frames: &[FrameEntry]) -> bool {
    // Unplaced frames (no position, or no orientation to say where along which normal) are
    // never repeats: a secondary capture with zero orientation and zero position on every
    // frame is one stack of frames, not a stack per frame.
    if frames
        .iter()
        .any(|f| f.position.is_none() || f.orientation.is_none())
    {
        return false;
    }
    let mut places = slice_places(frames);
    places.sort_unstable();
    places.windows(2).any(|w| w[0] == w[1])
}

fn make_stack(
    label: StackLabel,
    mut frames: Vec<FrameEntry<'_>>,
    mosaic: Option<MosaicLayout>,
    mosaic_flag: bool,
    is_localizer: bool,
) -> Stack {
    let h = frames[0].header;
    let format = PixelFormat {
        rows: h.slice_rows(),
        columns: h.slice_columns(),
        samples_per_pixel: h.samples_per_pixel,
        bits_allocated: h.bits_allocated,
        bits_stored: h.bits_stored,
        signed: h.signed,
        photometric_interpretation: h.photometric_interpretation.clone(),
    };
    // A mosaic shown as stored (not unpacked) has the mosaic's Image Position, which is no
    // slice's: its tiles are different slices, so it has no position to show or measure by.
    let placed = frames
        .iter()
        .all(|f| f.position.is_some() && f.orientation.is_some())
        && !(mosaic_flag && mosaic.is_none());
    let mut geometry = if placed {
        let orientation = frames[0]
            .orientation
            .unwrap_or([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let x = DVec3::new(orientation[0], orientation[1], orientation[2]);
        let y = DVec3::new(orientation[3], orientation[4], orientation[5]);
        let normal = x.cross(y);
        // Sort along the slice normal (never by Instance Number alone); ties keep acquisition order.
        frames.sort_by(|a, b| {
            let da = DVec3::from(a.position.unwrap_or_default()).dot(normal);
            let db = DVec3::from(b.position.unwrap_or_default()).dot(normal);
            da.total_cmp(&db)
        });
        let mut g = VolumeGeometry::from_slices(
            usize::from(h.slice_columns()),
            usize::from(h.slice_rows()),
            orientation,
            frames[0].pixel_spacing.unwrap_or([1.0, 1.0]),
            frames
                .iter()
                .map(|f| f.position.unwrap_or_default())
                .collect(),
            frames[0].thickness,
            h.provenance.frame_of_reference_uid.clone(),
        );
        g.pixel_spacing_known = frames[0].pixel_spacing.is_some();
        g
    } else {
        VolumeGeometry::untrusted(
            usize::from(h.slice_columns()),
            usize::from(h.slice_rows()),
            frames.len(),
            frames[0].pixel_spacing,
        )
    };
    geometry.spacing_at_detector = frames[0].spacing_at_detector;
    let slices = frames
        .iter()
        .map(|f| SliceRef {
            path: f.header.path.clone(),
            frame: f.frame,
            sop_instance_uid: f.header.sop_instance_uid.clone(),
            instance_number: f.header.instance_number,
            position_mm: f.position.unwrap_or_default(),
            rescale: f.rescale,
            modality_lut: f.modality_lut.clone(),
            padding: f.padding,
            window: f.window,
            more_windows: f.more_windows.clone(),
            voi_lut: f.voi_lut.clone(),
            transfer_syntax_uid: f.header.transfer_syntax_uid.clone(),
            high_bit: f.header.high_bit,
            mosaic_tile: f.mosaic_tile,
            thickness_mm: f.thickness,
        })
        .collect();
    Stack {
        id: String::new(),
        label,
        format,
        slices,
        geometry,
        is_localizer,
        mosaic,
        unpacked_mosaic_failed: mosaic_flag && mosaic.is_none(),
    }
}
