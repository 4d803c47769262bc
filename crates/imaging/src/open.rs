//! Opening DICOM files, strictly first and leniently second.
//!
//! dicom-rs reads well-formed Part 10 files. Real CDs also hold files whose File Meta group
//! breaks the rules (odd-length or over-long values, stray elements: dcmtk's own test CT has a
//! one-byte Source AE Title) and files with no meta group at all. For those, the meta group is
//! walked here by hand (PS3.10 7.1: group 0002, always explicit VR little endian), the Transfer
//! Syntax UID taken from it, and the data set read with that syntax. A file without a meta group
//! is read as implicit or explicit VR little endian, whichever its first element looks like.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::ImagingError;
use super::header::text;

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
/// The syntaxes whose data set is deflated (PS3.5 A.5; the JPIP referenced ones too, as
/// dicom-rs reads them): walked after inflating, never as the raw stream (found by fuzzing: a
/// JPIP Referenced Deflate file walked raw, then inflated by dicom-rs into a 3.5 GB length).
const DEFLATED_SYNTAXES: [&str; 3] = [
    DEFLATED_EXPLICIT_VR_LE,
    "1.2.840.10008.1.2.4.95",
    "1.2.840.10008.1.2.4.205",
];

fn deflated(ts: &str) -> bool {
    DEFLATED_SYNTAXES.contains(&ts)
}

/// Open `path`; with `header_only`, stop before Pixel Data when the strict reader can.
pub fn open_dicom(path: &Path, header_only: bool) -> Result<DefaultDicomObject, ImagingError> {
    let options = OpenFileOptions::new();
    let options = if header_only {
        options.read_until(tags::PIXEL_DATA)
    } else {
        options
    };
    let trailing = match implausible_length(path, header_only) {
        Some(Err(problem)) => {
            return Err(ImagingError::BadAttribute {
                path: path.to_path_buf(),
                what: problem,
            });
        }
        Some(Ok(trailing)) => trailing,
        None => false,
    };
    // A parser bug must not take the process down: a panic is a file that cannot be read.
    let unreadable = || ImagingError::BadAttribute {
        path: path.to_path_buf(),
        what: "not readable as DICOM (the parser failed on corrupt data)".into(),
    };
    let strict = if trailing {
        None // straight to the lenient reader, which stops after Pixel Data
    } else {
        match std::panic::catch_unwind(|| options.open_file(path)) {
            Ok(Ok(obj)) => return Ok(obj),
            Ok(Err(e)) => Some(e),
            Err(_) => return Err(unreadable()),
        }
    };
    let err = |source| ImagingError::Open {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| ImagingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    match std::panic::catch_unwind(|| lenient(&bytes)) {
        Ok(Some(obj)) => Ok(obj),
        Ok(None) => Err(strict.map_or_else(unreadable, err)),
        Err(_) => Err(unreadable()),
    }
}

fn lenient(bytes: &[u8]) -> Option<DefaultDicomObject> {
    let mut pos = if bytes.get(128..132) == Some(b"DICM") {
        132
    } else if bytes.get(0..4) == Some(b"DICM") {
        4 // a Part 10 file without its preamble, as dicom-rs reads one
    } else {
        0
    };
    // Without a preamble, only a data set that starts like one (group 0002 or 0008, as every
    // bare DICOM data set does) is tried: a parser let loose on arbitrary bytes can spend
    // seconds chasing lengths that mean nothing.
    if pos == 0 && !matches!(bytes.get(0..2), Some([0x02, 0x00] | [0x08, 0x00])) {
        return None;
    }
    let had_preamble = pos > 0;
    let meta = walk_meta(bytes, &mut pos, bytes.len());
    // With a meta group, trust it only when its own length agrees with its elements and it
    // names the transfer syntax: guessing over a damaged group parses garbage.
    if had_preamble
        && (meta.transfer_syntax.is_none()
            || meta.group_end.is_some_and(|end| end != pos)
            || meta.more_after_end)
    {
        return None;
    }
    let body = bytes.get(pos..)?;
    let ts_uid = match &meta.transfer_syntax {
        Some(uid) => uid.clone(),
        None if pos == 0 && looks_explicit(body) => EXPLICIT_VR_LE.to_string(),
        None => IMPLICIT_VR_LE.to_string(),
    };
    // Encapsulated syntaxes the registry does not list (retired JPEG processes) are explicit VR
    // little endian data sets all the same (PS3.5 A.4).
    let read_as = if TransferSyntaxRegistry.get(&ts_uid).is_some() {
        ts_uid.as_str()
    } else {
        EXPLICIT_VR_LE
    };
    let obj = if deflated(&ts_uid) {
        let inflated = inflate(body, bytes.len()).ok()?;
        let walker = Walker::whole(&inflated, true, false);
        let stop = walker.elements(0, None, 0).ok()?;
        let ts = TransferSyntaxRegistry.get(EXPLICIT_VR_LE)?;
        let body = inflated.get(..stop)?;
        if walker.un_sequences.get() {
            let converted = cp246_to_explicit(body).ok()?;
            InMemDicomObject::read_dataset_with_ts(converted.as_slice(), ts).ok()?
        } else {
            InMemDicomObject::read_dataset_with_ts(body, ts).ok()?
        }
    } else {
        let ts = TransferSyntaxRegistry.get(read_as)?;
        // The same length check as a strict open gets, on the data set as found; parsing
        // stops after Pixel Data (bytes some writers leave behind it are not a data set).
        let walker = Walker::whole(
            body,
            read_as != IMPLICIT_VR_LE,
            read_as == "1.2.840.10008.1.2.2",
        );
        let stop = walker.elements(0, None, 0).ok()?;
        let body = body.get(..stop)?;
        // Every syntax but implicit VR and big endian is explicit VR little endian (the
        // encapsulated ones too, PS3.5 A.4).
        if walker.un_sequences.get()
            && read_as != IMPLICIT_VR_LE
            && read_as != "1.2.840.10008.1.2.2"
        {
            let converted = cp246_to_explicit(body).ok()?;
            InMemDicomObject::read_dataset_with_ts(converted.as_slice(), ts).ok()?
        } else {
            InMemDicomObject::read_dataset_with_ts(body, ts).ok()?
        }
    };
    // Without a meta group, accept only what is plainly an image or a DICOM object.
    let sop_class = text(&obj, tags::SOP_CLASS_UID).or(meta.sop_class);
    if sop_class.is_none() && obj.get(tags::ROWS).is_none() {
        return None;
    }
    let sop_class = sop_class.unwrap_or_default();
    let sop_instance = text(&obj, tags::SOP_INSTANCE_UID)
        .or(meta.sop_instance)
        .unwrap_or_default();
    let table = FileMetaTableBuilder::new()
        .transfer_syntax(ts_uid)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .implementation_class_uid("2.25.1")
        .build()
        .ok()?;
    Some(obj.with_exact_meta(table))
}

#[derive(Default)]
struct Meta {
    /// Where File Meta Information Group Length (0002,0000) says the group ends.
    group_end: Option<usize>,
    transfer_syntax: Option<String>,
    sop_class: Option<String>,
    sop_instance: Option<String>,
    /// An element whose length, read as dicom-rs reads it, runs past the end of the file
    /// (`file_size`): dicom-rs would allocate that length before finding the file short.
    overrun: Option<String>,
    /// Elements of group 0002 go on past where (0002,0000) says the group ends (dicom-rs
    /// reads them as part of the data set): the group's length is wrong.
    more_after_end: bool,
}

/// Walk group 0002 (explicit VR little endian), leaving `pos` after it. `bytes` may be the
/// start of a file of `file_size` bytes. As dicom-rs does, the walk reads elements while it
/// has read less than (0002,0000) says, whatever their group (a damaged or odd group): it must
/// end where dicom-rs ends and see what dicom-rs reads. Without a group length (dicom-rs
/// refuses such a file; the lenient reader walks it), the group's own elements.
fn walk_meta(bytes: &[u8], pos: &mut usize, file_size: usize) -> Meta {
    let mut meta = Meta::default();
    while let Some(head) = bytes.get(*pos..pos.saturating_add(8)) {
        let group = u16::from_le_bytes([head[0], head[1]]);
        let ended = match meta.group_end {
            Some(end) => *pos >= end,
            None => group != 0x0002,
        };
        if ended {
            meta.more_after_end = group == 0x0002;
            break;
        }
        let element = u16::from_le_bytes([head[2], head[3]]);
        let vr = [head[4], head[5]];
        // dicom-rs reads a VR it does not know as UN: two reserved bytes, a 4-byte length;
        // an item tag has no VR (a 4-byte length after the tag).
        let (len, header) = if group == 0xFFFE {
            (
                u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize,
                8,
            )
        } else if long_length_vr(&vr) || !KNOWN_VRS.contains(&&vr[..]) {
            let Some(l) = bytes.get(*pos + 8..*pos + 12) else {
                break;
            };
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, 12)
        } else {
            (usize::from(u16::from_le_bytes([head[6], head[7]])), 8)
        };
        if len != u32::MAX as usize && (*pos + header).saturating_add(len) > file_size {
            meta.overrun = Some(format!(
                "File Meta element ({group:04X},{element:04X}) at offset {} claims {len} bytes, \
                 but only {} remain: damaged or truncated",
                *pos,
                file_size.saturating_sub(*pos + header)
            ));
            break;
        }
        let Some(value) = bytes.get(*pos + header..(*pos + header).saturating_add(len)) else {
            break;
        };
        let as_text = || {
            Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            )
        };
        match (group, element) {
            // dicom-rs takes the first (0002,0000) only.
            (0x0002, 0x0000) if len == 4 && meta.group_end.is_none() => {
                let length = u32::from_le_bytes([value[0], value[1], value[2], value[3]]) as usize;
                meta.group_end = Some((*pos + header + len).saturating_add(length));
            }
            (0x0002, 0x0010) => meta.transfer_syntax = as_text(),
            (0x0002, 0x0002) => meta.sop_class = as_text(),
            (0x0002, 0x0003) => meta.sop_instance = as_text(),
            _ => {}
        }
        *pos += header + len;
    }
    meta
}

/// The start of a PS3.10 file: a 128-byte preamble, `DICM` and a File Meta group (explicit VR
/// little endian, its group length counted) for an object of SOP Class `class`, SOP Instance
/// `instance`, written in `ts`, by the implementation `implementation` names (class UID,
/// version name; dicom-rs's own where none is named). What precedes a data set written again
/// in another syntax ([`implicit_to_explicit_le`], `transcode`).
pub fn part10_header(
    class: &str,
    instance: &str,
    ts: &str,
    implementation: Option<(&str, &str)>,
) -> Result<Vec<u8>, String> {
    let mut builder = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(instance)
        .transfer_syntax(ts);
    if let Some((class_uid, version)) = implementation {
        builder = builder
            .implementation_class_uid(class_uid)
            .implementation_version_name(version);
    }
    let meta = builder.build().map_err(|e| e.to_string())?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Where the data set of a PS3.10 file (a 128-byte preamble, `DICM`, then the File Meta
/// group) starts, and the transfer syntax its meta group names; `None` when `bytes` is not one.
pub(crate) fn part10_data_set(bytes: &[u8]) -> Option<(usize, String)> {
    if bytes.get(128..132) != Some(b"DICM") {
        return None;
    }
    let mut pos = 132;
    let meta = walk_meta(bytes, &mut pos, bytes.len());
    if meta.overrun.is_some() || meta.more_after_end {
        return None;
    }
    Some((pos, meta.transfer_syntax?))
}

/// A damaged length field makes a parser allocate what the field says (up to 4 GiB) before it
/// finds the file too short. Before dicom-rs sees a Part 10 file, its elements are walked here
/// (explicit or implicit VR, either byte order, deflated bodies inflated first; into sequences,
/// items and encapsulated fragments) and a file whose element claims more bytes than it holds is
/// refused with the element named. For a header-only read, the first 64 KiB are walked.
fn implausible_length(path: &Path, header_only: bool) -> Option<Result<bool, String>> {
    let mut file = std::fs::File::open(path).ok()?;
    let size = usize::try_from(file.metadata().ok()?.len()).ok()?;
    // A header-only read starts with the first 64 KiB and reads on (doubling) while the walk
    // runs out before Pixel Data: a header longer than that (private groups, a big icon) is
    // checked whole, as dicom-rs will read it whole.
    let mut limit: usize = if header_only { 1 << 16 } else { size };
    let mut bytes = Vec::with_capacity(limit.min(size));
    file.by_ref()
        .take(limit as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    // A deflated body must be inflated whole to be walked (such files are rare and small).
    if header_only
        && bytes.len() < size
        && DEFLATED_SYNTAXES
            .iter()
            .any(|uid| find_subslice(&bytes, uid.as_bytes()))
    {
        file.read_to_end(&mut bytes).ok()?;
    }
    // Where dicom-rs looks for the magic: after a 128-byte preamble, or at the start (a file
    // without its preamble, found by fuzzing: such a file went unchecked).
    let mut pos = if bytes.get(128..132) == Some(b"DICM") {
        132
    } else if bytes.get(0..4) == Some(b"DICM") {
        4
    } else {
        return None;
    };
    let start = pos;
    let mut meta = walk_meta(&bytes, &mut pos, size);
    if meta.overrun.is_none()
        && bytes.len() < size
        && (meta.transfer_syntax.is_none() || meta.group_end.is_some_and(|end| pos < end))
    {
        // The first read ended inside the meta group (a long element in it): the group is
        // walked whole, never left unchecked.
        file.read_to_end(&mut bytes).ok()?;
        pos = start;
        meta = walk_meta(&bytes, &mut pos, size);
    }
    if let Some(overrun) = meta.overrun {
        return Some(Err(overrun));
    }
    let ts = meta.transfer_syntax?;
    let explicit = ts != IMPLICIT_VR_LE;
    let big_endian = ts == "1.2.840.10008.1.2.2";
    if deflated(&ts) {
        let inflated = match inflate(bytes.get(pos..)?, size) {
            Ok(inflated) => inflated,
            Err(e) => return Some(Err(e)),
        };
        let walker = Walker::whole(&inflated, true, false);
        return Some(
            walker
                .elements(0, None, 0)
                .map(|stop| !header_only && stop < inflated.len()),
        );
    }
    loop {
        let walker = Walker {
            header_only,
            bytes: bytes.get(pos..)?,
            complete: size <= bytes.len(),
            total: size - pos,
            explicit: Cell::new(explicit),
            big_endian,
            ran_out: Cell::new(false),
            un_sequences: Cell::new(false),
        };
        // Ok(true): for the lenient reader. Bytes follow top-level Pixel Data, which the
        // strict reader may choke on, or a UN sequence holds implicit VR, which it misreads.
        let walked = walker.elements(0, None, 0).map(|stop| {
            (!header_only && walker.complete && stop < walker.total) || walker.un_sequences.get()
        });
        let more_needed = walked.is_ok() && walker.ran_out.get() && bytes.len() < size;
        if more_needed {
            limit = limit.saturating_mul(2);
            let more = limit.saturating_sub(bytes.len()).max(1 << 16) as u64;
            // A file cut shorter while it is read gives nothing more: walk what there is.
            if file.by_ref().take(more).read_to_end(&mut bytes).ok()? > 0 {
                continue;
            }
        }
        return Some(walked);
    }
}

/// The greatest data set a deflated file may inflate to: deflate's own limit (1,032 to 1)
/// bounds a damaged stream, and 1 GiB bounds a crafted one (a deflate bomb of 1 MB would
/// otherwise take 1 GB per file, several files at once).
const INFLATED_MAX: u64 = 1 << 30;

/// Inflate a deflated data set (PS3.5 A.5) of a file of `file_size` bytes, or say why not.
fn inflate(body: &[u8], file_size: usize) -> Result<Vec<u8>, String> {
    let cap = (file_size as u64)
        .saturating_mul(1032)
        .saturating_add(1 << 20)
        .min(INFLATED_MAX);
    inflate_within(body, cap).map_err(|e| format!("{e} (a file of {file_size} bytes)"))
}

pub(crate) fn inflate_within(body: &[u8], cap: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(body)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the deflated data set is damaged: {e}"))?;
    if out.len() as u64 > cap {
        return Err(format!(
            "the deflated data set inflates to more than {cap} bytes"
        ));
    }
    Ok(out)
}

fn find_subslice(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct Walker<'a> {
    /// A header-only read stops at Pixel Data: whether the pixels are all there is the
    /// decoder's question, and it answers per slice.
    header_only: bool,
    bytes: &'a [u8],
    /// Whether `bytes` is the whole data set (else a prefix: running out is not an error).
    complete: bool,
    /// Size of the whole data set in bytes.
    total: usize,
    /// Explicit VR; false inside a CP-246 sequence (implicit VR within an explicit data set).
    explicit: Cell<bool>,
    big_endian: bool,
    /// Set when the walk stopped because a prefix ended (there is more to read).
    ran_out: Cell<bool>,
    /// Set when a UN element of undefined length was walked (see [`cp246_to_explicit`]).
    un_sequences: Cell<bool>,
}

const UNDEFINED: u32 = u32::MAX;

/// The deepest nesting of sequences a file may have. dicom-rs builds nested data sets
/// recursively, and a file of thousands of nested items overflows a thread's stack, which
/// aborts the process; real objects nest a handful of levels (SR content trees a dozen or so).
const MAX_DEPTH: u32 = 32;

/// The dictionary's VR for (group,element), as dicom-rs's implicit VR decoder takes it (UN
/// for tags it does not know).
fn implicit_vr(group: u16, element: u16) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, element))
        .map_or(*b"UN", |entry| match entry.vr() {
            // "US or SS" (Smallest Image Pixel Value, Pixel Padding Value, LUT Descriptors):
            // SS where the pixels are signed (PS3.5 A.1; as pydicom and dcmtk resolve it).
            VirtualVr::Xs if SIGNED_PIXELS.get() => *b"SS",
            vr => vr.relaxed().to_bytes(),
        })
}

thread_local! {
    /// Whether the data set [`implicit_to_explicit_le`] is converting has signed pixels
    /// (Pixel Representation 1, read as it goes by): the VR its "US or SS" elements take.
    static SIGNED_PIXELS: Cell<bool> = const { Cell::new(false) };
}

/// The size of one value of a binary VR (1 for text and byte VRs): a value length must be a
/// whole number of them (PS3.5 6.2).
fn value_unit(vr: &[u8]) -> usize {
    match vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"FL" | b"OF" | b"OL" | b"AT" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// Explicit VRs whose element header has two reserved bytes and a 4-byte length (PS3.5 7.1.2).
fn long_length_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// Value representations of PS3.5 6.2.
const KNOWN_VRS: [&[u8]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

impl<'a> Walker<'a> {
    /// A walker over a whole data set held in memory.
    fn whole(bytes: &'a [u8], explicit: bool, big_endian: bool) -> Self {
        Walker {
            header_only: false,
            bytes,
            complete: true,
            total: bytes.len(),
            explicit: Cell::new(explicit),
            big_endian,
            ran_out: Cell::new(false),
            un_sequences: Cell::new(false),
        }
    }

    /// Where a prefix ended: quietly `at`, remembering that more was needed.
    fn out_of_prefix(&self, at: usize) -> Result<usize, String> {
        self.ran_out.set(true);
        Ok(at)
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn too_long(&self, what: &str, pos: usize, len: u32) -> Result<usize, String> {
        Err(format!(
            "{what} at offset {pos} claims {len} bytes, but only {} remain: damaged or truncated",
            self.total.saturating_sub(pos)
        ))
    }

    /// Walk elements from `pos` until `end` (or an item delimiter when `end` is None inside a
    /// sequence item). Returns where the walk stopped; stops quietly where the prefix ends.
    fn elements(&self, mut pos: usize, end: Option<usize>, depth: u32) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "sequences nested more than {MAX_DEPTH} deep at offset {pos}: damaged or crafted"
            ));
        }
        loop {
            // An item's end binds what is in it: walked past it, the same bytes would be
            // walked again from the end on (twice for every level of nesting).
            if let Some(e) = end
                && pos > e
            {
                return Err(format!(
                    "an element runs past the end of its sequence item at offset {e}: damaged"
                ));
            }
            if end == Some(pos) || pos == self.total {
                return Ok(pos);
            }
            let (Some(group), Some(element)) = (self.u16_at(pos), self.u16_at(pos + 2)) else {
                return if self.complete {
                    Err(format!(
                        "data set ends inside an element header at offset {pos}"
                    ))
                } else {
                    self.out_of_prefix(pos)
                };
            };
            if group == 0xFFFE && element == 0xE00D {
                if depth == 0 {
                    // Outside any sequence dicom-rs skips it and reads on, and so does the
                    // walk (found by fuzzing: taken for the end, it left what follows
                    // unchecked).
                    pos += 8;
                    continue;
                }
                if end.is_some_and(|e| pos + 8 != e) {
                    // In an item of defined length, before its end: what dicom-rs reads after
                    // it is not what the walk would check.
                    return Err(format!(
                        "an item delimiter inside an item of defined length at offset {pos}: \
                         damaged"
                    ));
                }
                return Ok(pos + 8); // item delimitation: end of this item's data set
            }
            if group == 0xFFFE && !matches!(element, 0xE000 | 0xE0DD) {
                // No such item tag: dicom-rs reads it otherwise than the walk would (found
                // by fuzzing a DICOMDIR: 82 bytes, 4.3 GB reserved).
                return Err(format!(
                    "an item tag (FFFE,{element:04X}) that DICOM does not define at offset \
                     {pos}: damaged"
                ));
            }
            let sequence;
            let mut un = false;
            let unit;
            let (len, header) = if self.explicit.get() && group != 0xFFFE {
                let Some(vr) = self.bytes.get(pos + 4..pos + 6) else {
                    return self.out_of_prefix(pos);
                };
                sequence = vr == b"SQ";
                un = vr == b"UN";
                if !KNOWN_VRS.contains(&vr) {
                    return Err(format!(
                        "element ({group:04X},{element:04X}) at offset {pos} has no valid VR: damaged"
                    ));
                }
                unit = value_unit(vr);
                if long_length_vr(vr) {
                    let Some(len) = self.u32_at(pos + 8) else {
                        return self.out_of_prefix(pos);
                    };
                    (len, 12)
                } else {
                    let Some(len) = self.u16_at(pos + 6) else {
                        return self.out_of_prefix(pos);
                    };
                    (u32::from(len), 8)
                }
            } else {
                let Some(len) = self.u32_at(pos + 4) else {
                    return self.out_of_prefix(pos);
                };
                // Implicit VR says nothing of sequences or value sizes: dicom-rs takes the
                // dictionary's VR, and so does the walk, to look inside the same elements and
                // read the same values it will parse.
                let vr = if group == 0xFFFE {
                    *b"UN"
                } else {
                    implicit_vr(group, element)
                };
                sequence = &vr == b"SQ";
                unit = value_unit(&vr);
                (len, 8)
            };
            let start = pos + header;
            if self.header_only && depth == 0 && (group, element) == (0x7FE0, 0x0010) {
                return Ok(pos);
            }
            if len == UNDEFINED {
                if (group, element) == (0x7FE0, 0x0010) {
                    let after = self.fragments(start)?;
                    if depth == 0 {
                        return Ok(after);
                    }
                    pos = after;
                } else if un {
                    // PS3.5 6.2.2 (CP-246): a UN of undefined length is a sequence whose
                    // items are implicit VR little endian.
                    self.un_sequences.set(true);
                    self.explicit.set(false);
                    let walked = self.items(start, depth);
                    self.explicit.set(true);
                    pos = walked?;
                } else {
                    pos = self.items(start, depth)?;
                }
                continue;
            }
            let stop = start + len as usize;
            if stop > self.total || end.is_some_and(|e| stop > e) {
                return self.too_long(&format!("element ({group:04X},{element:04X})"), pos, len);
            }
            // dicom-rs reads whole values only (a 17-byte UL as four) and goes on from one
            // byte short, reading lengths out of values: found by fuzzing, 4 GB reserved for a
            // 182-byte file. Top-level Pixel Data is left alone (nothing after it is parsed;
            // in an icon's sequence it is not).
            let top_pixel_data = depth == 0 && (group, element) == (0x7FE0, 0x0010);
            if !top_pixel_data && !(len as usize).is_multiple_of(unit) {
                return Err(format!(
                    "element ({group:04X},{element:04X}) at offset {pos}: {len} bytes are not a \
                     whole number of its {unit}-byte values: damaged"
                ));
            }
            if sequence {
                if self.bytes.len() >= stop {
                    self.items_until(start, stop, depth)?;
                } else {
                    self.ran_out.set(true);
                }
            }
            pos = stop;
            // Whatever follows top-level Pixel Data (padding, or garbage some writers leave)
            // is the lenient reader's business, not a reason to refuse the file.
            if depth == 0 && (group, element) == (0x7FE0, 0x0010) {
                return Ok(pos);
            }
        }
    }

    /// Items of a sequence of undefined length, up to its delimiter (FFFE,E0DD).
    fn items(&self, mut pos: usize, depth: u32) -> Result<usize, String> {
        loop {
            let (Some(group), Some(element), Some(len)) =
                (self.u16_at(pos), self.u16_at(pos + 2), self.u32_at(pos + 4))
            else {
                return if self.complete {
                    Err(format!("sequence unterminated at offset {pos}"))
                } else {
                    self.out_of_prefix(self.total)
                };
            };
            match (group, element) {
                (0xFFFE, 0xE0DD) => return Ok(pos + 8),
                (0xFFFE, 0xE000) if len == UNDEFINED => {
                    pos = self.elements(pos + 8, None, depth + 1)?
                }
                (0xFFFE, 0xE000) => {
                    let stop = pos + 8 + len as usize;
                    if stop > self.total {
                        return self.too_long("sequence item", pos, len);
                    }
                    if self.bytes.len() >= stop {
                        self.elements(pos + 8, Some(stop), depth + 1)?;
                    } else {
                        self.ran_out.set(true);
                    }
                    pos = stop;
                }
                _ => {
                    return Err(format!(
                        "expected a sequence item at offset {pos}, found ({group:04X},{element:04X})"
                    ));
                }
            }
        }
    }

    /// Items of a sequence of defined length: items up to its end, or a sequence delimiter
    /// exactly there. dicom-rs reads an item header wherever an item may start, so anything
    /// else (another element, an item delimiter, bytes too few for a header) is refused: an
    /// item delimiter closes the sequence in dicom-rs, which then reads on from there, and
    /// a header cut by the end is read across it; either way it would parse bytes the walk
    /// stepped over.
    fn items_until(&self, mut pos: usize, stop: usize, depth: u32) -> Result<(), String> {
        while pos < stop {
            if pos + 8 > stop {
                return Err(format!(
                    "{} bytes at offset {pos} before the end of a sequence of defined length \
                     are too few for an item: damaged",
                    stop - pos
                ));
            }
            let (Some(group), Some(element), Some(len)) =
                (self.u16_at(pos), self.u16_at(pos + 2), self.u32_at(pos + 4))
            else {
                return Ok(());
            };
            if (group, element) == (0xFFFE, 0xE0DD) && pos + 8 != stop {
                // A sequence delimiter before its defined end: dicom-rs closes the sequence
                // there and reads the rest as elements, which the walk must not skip.
                return Err(format!(
                    "a sequence delimiter inside a sequence of defined length at offset {pos}: \
                     damaged"
                ));
            }
            if (group, element) == (0xFFFE, 0xE0DD) {
                return Ok(());
            }
            if (group, element) != (0xFFFE, 0xE000) {
                return Err(format!(
                    "expected a sequence item at offset {pos}, found ({group:04X},{element:04X}): \
                     damaged"
                ));
            }
            pos = if len == UNDEFINED {
                let after = self.elements(pos + 8, None, depth + 1)?;
                if after > stop {
                    return Err(format!(
                        "a sequence item at offset {pos} runs past its sequence's end at {stop}"
                    ));
                }
                after
            } else {
                let end = pos + 8 + len as usize;
                if end > stop {
                    return self.too_long("sequence item", pos, len).map(|_| ());
                }
                self.elements(pos + 8, Some(end), depth + 1)?;
                end
            };
        }
        Ok(())
    }

    /// Fragments of encapsulated Pixel Data, up to the sequence delimiter.
    fn fragments(&self, mut pos: usize) -> Result<usize, String> {
        loop {
            let (Some(element), Some(len)) = (self.u16_at(pos + 2), self.u32_at(pos + 4)) else {
                return if self.complete {
                    Err(format!(
                        "encapsulated Pixel Data unterminated at offset {pos}"
                    ))
                } else {
                    self.out_of_prefix(self.total)
                };
            };
            if element == 0xE0DD {
                return Ok(pos + 8);
            }
            if len == UNDEFINED || pos + 8 + len as usize > self.total {
                return self.too_long("Pixel Data fragment", pos, len);
            }
            pos += 8 + len as usize;
        }
    }
}

/// A data set in Implicit VR Little Endian (PS3.5 A.1) written in Explicit VR Little Endian
/// (A.2), byte by byte: every element's value as it lies (no text decoded and encoded again,
/// whatever its character set), its VR the dictionary's (UN for tags it does not know, and for
/// values too long for a 2-byte length), every sequence and item of undefined length with its
/// delimiter; group lengths (retired, and no longer true) left out, and anything after
/// top-level Pixel Data too. What a case server sends to a request for the default transfer
/// syntax.
pub fn implicit_to_explicit_le(data_set: &[u8]) -> Result<Vec<u8>, String> {
    // As far as the length walk reads it: what follows top-level Pixel Data (padding, or
    // garbage some writers leave, which intake takes as the lenient reader does) is left out.
    let end = Walker::whole(data_set, false, false).elements(0, None, 0)?;
    let data_set = data_set
        .get(..end)
        .ok_or("the walk ran past the data set")?;
    let mut out = Vec::with_capacity(data_set.len() + data_set.len() / 8 + 1024);
    let mut pos = 0;
    // Pixel Representation (0028,0103) precedes every "US or SS" element of the top level and
    // of the sequences after it: read as the conversion passes it.
    SIGNED_PIXELS.set(false);
    let converted = elements(data_set, &mut pos, None, &mut out, 0, true);
    SIGNED_PIXELS.set(false);
    converted?;
    if pos != data_set.len() {
        return Err(format!(
            "the data set stops making sense at byte {pos} of {}",
            data_set.len()
        ));
    }
    Ok(out)
}

/// One top-level element of an explicit VR little endian data set ([`top_level_elements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopElement {
    pub group: u16,
    pub element: u16,
    pub vr: [u8; 2],
    /// Its bytes in the data set, header included.
    pub bytes: std::ops::Range<usize>,
    /// Where its value starts (its header's end).
    pub value_start: usize,
    /// Of undefined length (a sequence, a CP-246 UN sequence, encapsulated Pixel Data).
    pub undefined_length: bool,
}

/// The top-level elements of an explicit VR little endian data set (PS3.5 A.2, as every
/// encapsulated transfer syntax encodes it), in the order they lie, through top-level Pixel
/// Data: what follows it (padding, or garbage some writers leave) is not listed. The data set
/// must pass the same length walk a file does before it is read ([`Walker`]).
pub fn top_level_elements(data_set: &[u8]) -> Result<Vec<TopElement>, String> {
    let walker = Walker::whole(data_set, true, false);
    let end = walker.elements(0, None, 0)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < end {
        let (group, element) = (le_u16(data_set, pos)?, le_u16(data_set, pos + 2)?);
        if (group, element) == (0xFFFE, 0xE00D) {
            // An item delimiter outside any sequence, which the walk and dicom-rs step over.
            pos += 8;
            continue;
        }
        if group == 0xFFFE {
            return Err(format!(
                "an item tag among the top-level elements at offset {pos}"
            ));
        }
        let vr: [u8; 2] = data_set
            .get(pos + 4..pos + 6)
            .and_then(|v| v.try_into().ok())
            .ok_or("data set ends in a header")?;
        let (len, header) = if long_length_vr(&vr) {
            (le_u32(data_set, pos + 8)?, 12)
        } else {
            (u32::from(le_u16(data_set, pos + 6)?), 8)
        };
        let start = pos + header;
        let stop = if len != UNDEFINED {
            start + len as usize
        } else if (group, element) == (0x7FE0, 0x0010) {
            walker.fragments(start)?
        } else if &vr == b"UN" {
            // PS3.5 6.2.2 (CP-246): its items are implicit VR.
            walker.explicit.set(false);
            let after = walker.items(start, 0);
            walker.explicit.set(true);
            after?
        } else {
            walker.items(start, 0)?
        };
        if stop > end {
            return Err(format!(
                "element ({group:04X},{element:04X}) runs past the data set's end"
            ));
        }
        out.push(TopElement {
            group,
            element,
            vr,
            bytes: pos..stop,
            value_start: start,
            undefined_length: len == UNDEFINED,
        });
        pos = stop;
    }
    Ok(out)
}

/// A Deflated Explicit VR Little Endian data set (PS3.5 A.5) inflated: Explicit VR Little
/// Endian, within what a file of `file_size` bytes may hold (1,032 times, 1 GiB at most) and
/// `cap` bytes.
pub fn inflated_data_set(deflated: &[u8], file_size: usize, cap: u64) -> Result<Vec<u8>, String> {
    let within = (file_size as u64)
        .saturating_mul(1032)
        .saturating_add(1 << 20)
        .min(INFLATED_MAX)
        .min(cap);
    inflate_within(deflated, within)
}

/// An explicit VR little endian data set with its CP-246 sequences made explicit.
///
/// A writer that turns implicit VR into explicit VR without knowing an element's VR writes it
/// as UN; a sequence so written keeps an undefined length and its items stay implicit VR
/// (PS3.5 6.2.2, CP-246; dcmtk and PACS exports write such files, and pydicom and dcmtk read
/// them). dicom-rs would read those items as explicit VR. Here each such element becomes an
/// SQ, its items' elements explicit with the dictionary's VR (UN for tags it does not know,
/// and for values too long for a 2-byte length), every item and nested sequence of undefined
/// length with its delimiter. Everything else is copied as it stands. The input has passed
/// the length walk, so every length here is within the data set.
fn cp246_to_explicit(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    let mut pos = 0;
    elements(body, &mut pos, None, &mut out, 0, false)?;
    out.extend_from_slice(&body[pos.min(body.len())..]);
    Ok(out)
}

fn le_u16(bytes: &[u8], at: usize) -> Result<u16, String> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| format!("data set ends at offset {at}"))
}

fn le_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("data set ends at offset {at}"))
}

/// Elements of one item (or the top level), from `pos` until `end`, or through the item
/// delimiter (consumed, not copied: [`items`] writes every item's own) when `end` is None. One
/// outside any sequence is dropped, as dicom-rs skips it.
/// Explicit VR elements are copied, converting CP-246 sequences; implicit VR ones (inside
/// those) are written as explicit VR.
fn elements(
    body: &[u8],
    pos: &mut usize,
    end: Option<usize>,
    out: &mut Vec<u8>,
    depth: u32,
    implicit: bool,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("sequences nested too deep".into());
    }
    while end.is_none_or(|e| *pos < e) && *pos < body.len() {
        let at = *pos;
        let (group, element) = (le_u16(body, at)?, le_u16(body, at + 2)?);
        if (group, element) == (0xFFFE, 0xE00D) {
            *pos = at + 8;
            if depth == 0 {
                // Outside any sequence: dicom-rs skips it and reads on, and so does the walk;
                // ending here would leave the rest unconverted, its CP-246 items then read
                // by dicom-rs as explicit VR, lengths the walk never checked.
                continue;
            }
            return within(*pos, end);
        }
        if implicit {
            implicit_element(body, pos, out, depth)?;
        } else {
            explicit_element(body, pos, end, out, depth)?;
        }
    }
    within(*pos, end)
}

/// One explicit VR element at `pos`, copied (a CP-246 UN sequence, or a sequence holding
/// one, rewritten).
fn explicit_element(
    body: &[u8],
    pos: &mut usize,
    end: Option<usize>,
    out: &mut Vec<u8>,
    depth: u32,
) -> Result<(), String> {
    let at = *pos;
    let (group, element) = (le_u16(body, at)?, le_u16(body, at + 2)?);
    let past = |stop: usize| end.is_some_and(|e| stop > e);
    if group == 0xFFFE {
        // A stray item tag among elements (the walk steps over it the same way).
        let len = le_u32(body, at + 4)?;
        let stop = (len != UNDEFINED)
            .then(|| at + 8 + len as usize)
            .filter(|&stop| !past(stop))
            .ok_or("an item tag among elements")?;
        out.extend_from_slice(body.get(at..stop).ok_or("item past the data set's end")?);
        *pos = stop;
        return Ok(());
    }
    let vr = body
        .get(at + 4..at + 6)
        .ok_or("data set ends in a header")?;
    let (len, header) = if long_length_vr(vr) {
        (le_u32(body, at + 8)?, 12)
    } else {
        (u32::from(le_u16(body, at + 6)?), 8)
    };
    if len != UNDEFINED {
        let stop = at + header + len as usize;
        if past(stop) {
            return Err("an element runs past its item's end".into());
        }
        let value = body
            .get(at..stop)
            .ok_or("element past the data set's end")?;
        if vr == b"SQ" && find_subslice(value, b"UN\0\0\xFF\xFF\xFF\xFF") {
            // A defined-length sequence that may hold a CP-246 one: rewritten whole, of
            // undefined length, its items too.
            out.extend_from_slice(&body[at..at + 8]);
            out.extend_from_slice(&UNDEFINED.to_le_bytes());
            *pos = at + header;
            items_until(body, pos, stop, out, depth, false)?;
            out.extend_from_slice(&SEQUENCE_DELIMITER);
        } else {
            out.extend_from_slice(value);
        }
        *pos = stop;
        return Ok(());
    }
    *pos = at + 12;
    if (group, element) == (0x7FE0, 0x0010) {
        out.extend_from_slice(&body[at..at + 12]);
        return copy_fragments(body, pos, out);
    }
    // A sequence of undefined length: as it stands, or, a UN one, as an SQ of implicit VR
    // items (PS3.5 6.2.2).
    let implicit = vr == b"UN";
    out.extend_from_slice(&body[at..at + 4]);
    out.extend_from_slice(b"SQ\0\0");
    out.extend_from_slice(&UNDEFINED.to_le_bytes());
    items(body, pos, out, depth, implicit)
}

/// One implicit VR element at `pos`, written as explicit VR: the dictionary's VR (UN for
/// tags it does not know, and for values too long for a 2-byte length); a sequence of
/// undefined length, its items converted.
fn implicit_element(
    body: &[u8],
    pos: &mut usize,
    out: &mut Vec<u8>,
    depth: u32,
) -> Result<(), String> {
    let at = *pos;
    let (group, element, len) = (
        le_u16(body, at)?,
        le_u16(body, at + 2)?,
        le_u32(body, at + 4)?,
    );
    *pos = at + 8;
    if depth == 0 && (group, element) == (0x0028, 0x0103) && len == 2 {
        SIGNED_PIXELS.set(le_u16(body, *pos)? == 1);
    }
    // A group length (retired outside the meta group, PS3.5 7.2) counts the bytes of its
    // group as they were: left out, as written again they are not the same.
    if element == 0x0000 && group != 0x0002 && len == 4 {
        *pos += 4;
        return Ok(());
    }
    let mut code = implicit_vr(group, element);
    out.extend_from_slice(&body[at..at + 4]);
    if len == UNDEFINED || &code == b"SQ" {
        out.extend_from_slice(b"SQ\0\0");
        out.extend_from_slice(&UNDEFINED.to_le_bytes());
        if len == UNDEFINED {
            return items(body, pos, out, depth, true);
        }
        let stop = *pos + len as usize;
        items_until(body, pos, stop, out, depth, true)?;
        *pos = stop;
        out.extend_from_slice(&SEQUENCE_DELIMITER);
        return Ok(());
    }
    let value = body
        .get(*pos..*pos + len as usize)
        .ok_or("element past the data set's end")?;
    if !long_length_vr(&code) && len > 0xFFFF {
        code = *b"UN";
    }
    out.extend_from_slice(&code);
    if long_length_vr(&code) {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
    *pos += len as usize;
    Ok(())
}

/// An item's end binds what is in it (as in the walk: no byte is converted twice).
fn within(pos: usize, end: Option<usize>) -> Result<(), String> {
    match end {
        Some(e) if pos > e => Err(format!("an element runs past its item's end at {e}")),
        _ => Ok(()),
    }
}

const ITEM_UNDEFINED: [u8; 8] = [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];
const ITEM_DELIMITER: [u8; 8] = [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0];
const SEQUENCE_DELIMITER: [u8; 8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];

/// One item at `pos` (its header, then its elements), written as an item of undefined length
/// with its delimiter.
fn item(
    body: &[u8],
    pos: &mut usize,
    out: &mut Vec<u8>,
    depth: u32,
    implicit: bool,
) -> Result<(), String> {
    let at = *pos;
    let len = le_u32(body, at + 4)?;
    out.extend_from_slice(&ITEM_UNDEFINED);
    *pos = at + 8;
    let end = (len != UNDEFINED).then(|| at + 8 + len as usize);
    elements(body, pos, end, out, depth + 1, implicit)?;
    out.extend_from_slice(&ITEM_DELIMITER);
    Ok(())
}

/// The items of a sequence of undefined length, through its delimiter.
fn items(
    body: &[u8],
    pos: &mut usize,
    out: &mut Vec<u8>,
    depth: u32,
    implicit: bool,
) -> Result<(), String> {
    while le_u16(body, *pos + 2)? != 0xE0DD {
        item(body, pos, out, depth, implicit)?;
    }
    *pos += 8;
    out.extend_from_slice(&SEQUENCE_DELIMITER);
    Ok(())
}

/// The items of a sequence of defined length ending at `stop`.
fn items_until(
    body: &[u8],
    pos: &mut usize,
    stop: usize,
    out: &mut Vec<u8>,
    depth: u32,
    implicit: bool,
) -> Result<(), String> {
    while *pos + 8 <= stop {
        // A sequence delimiter right at the defined end (some writers add one; the walk and
        // dicom-rs take it as the end): not an item.
        if le_u16(body, *pos)? == 0xFFFE && le_u16(body, *pos + 2)? == 0xE0DD {
            *pos += 8;
            break;
        }
        item(body, pos, out, depth, implicit)?;
        within(*pos, Some(stop))?;
    }
    Ok(())
}

/// Encapsulated Pixel Data fragments, copied through the sequence delimiter.
fn copy_fragments(body: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Result<(), String> {
    loop {
        let at = *pos;
        let (element, len) = (le_u16(body, at + 2)?, le_u32(body, at + 4)?);
        let stop = if element == 0xE0DD {
            at + 8
        } else {
            at + 8 + len as usize
        };
        out.extend_from_slice(body.get(at..stop).ok_or("fragment past the end")?);
        *pos = stop;
        if element == 0xE0DD {
            return Ok(());
        }
    }
}

/// An explicit VR data set has two upper-case letters where implicit VR has a length.
fn looks_explicit(body: &[u8]) -> bool {
    body.get(4..6)
        .is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::first_item;

    /// An element of explicit VR little endian with a 2-byte length.
    fn short_element(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    /// SOP Class UID (0008,0016), the first element of the data sets crafted here.
    fn sop_class() -> Vec<u8> {
        short_element(8, 0x16, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0")
    }

    /// A private OB (0009,1000) claiming `len` bytes, with 16 behind it: the damaged length
    /// that made dicom-rs reserve what it said.
    fn private_ob(len: u32) -> Vec<u8> {
        let mut out = vec![0x09, 0x00, 0x00, 0x10, b'O', b'B', 0, 0];
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0; 16]);
        out
    }

    /// A Part 10 file: preamble, a File Meta group naming `ts`, then `body` as given.
    fn part10(ts: &str, body: &[u8]) -> Vec<u8> {
        let uid = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            v
        };
        let mut group = Vec::new();
        group.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1]);
        group.extend(short_element(
            2,
            2,
            b"UI",
            &uid("1.2.840.10008.5.1.4.1.1.7"),
        ));
        group.extend(short_element(2, 3, b"UI", &uid("2.25.42")));
        group.extend(short_element(2, 0x10, b"UI", &uid(ts)));
        group.extend(short_element(2, 0x12, b"UI", &uid("2.25.1")));
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        out.extend(short_element(
            2,
            0,
            b"UL",
            &(group.len() as u32).to_le_bytes(),
        ));
        out.extend(group);
        out.extend_from_slice(body);
        out
    }

    fn write(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crafted.dcm");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn refusal(path: &Path, header_only: bool) -> String {
        match open_dicom(path, header_only) {
            Ok(_) => panic!("opened (header_only {header_only})"),
            Err(e) => e.to_string(),
        }
    }

    /// Content Sequence items nested `depth` deep, all of undefined length (explicit VR).
    fn nested(depth: usize) -> Vec<u8> {
        let mut body = sop_class();
        for _ in 0..depth {
            body.extend_from_slice(&[0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0]);
            body.extend_from_slice(&[0xFF; 4]);
            body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        for _ in 0..depth {
            body.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            body.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        body
    }

    /// dicom-rs builds nested items recursively: 100,000 levels overflowed the stack (SIGSEGV,
    /// the whole process). Such a file is refused by the walk; real nesting still opens.
    #[test]
    fn sequences_nested_past_the_limit_are_refused_and_real_depths_open() {
        let (_dir, deep) = write(&part10(EXPLICIT_VR_LE, &nested(100_000)));
        for header_only in [false, true] {
            let message = refusal(&deep, header_only);
            assert!(message.contains("nested more than 32"), "{message}");
        }
        let (_dir, fine) = write(&part10(EXPLICIT_VR_LE, &nested(MAX_DEPTH as usize)));
        // Run where a rayon worker would (a 2 MiB stack), not on the main thread's 8 MiB.
        let opened = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                open_dicom(&fine, false)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(opened, Ok(()));
    }

    /// In implicit VR only the dictionary says (0008,1140) is a sequence; the walk looked
    /// past its defined length without reading the items, so an element inside claiming
    /// 4 GB reached dicom-rs, which reserved and zero-filled it.
    #[test]
    fn an_implicit_vr_sequence_is_walked_into() {
        let mut inner = Vec::new();
        inner.extend_from_slice(&[0x08, 0x00, 0x50, 0x11]); // (0008,1150)
        inner.extend_from_slice(&0xF000_0000u32.to_le_bytes());
        inner.extend_from_slice(b"1.2.3\0");
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend(inner);
        let mut body = vec![0x08, 0x00, 0x16, 0x00, 26, 0, 0, 0];
        body.extend_from_slice(b"1.2.840.10008.5.1.4.1.1.7\0");
        body.extend_from_slice(&[0x08, 0x00, 0x40, 0x11]); // (0008,1140), an SQ
        body.extend_from_slice(&(item.len() as u32).to_le_bytes());
        body.extend(item);
        let (_dir, path) = write(&part10(IMPLICIT_VR_LE, &body));
        for header_only in [false, true] {
            let message = refusal(&path, header_only);
            assert!(message.contains("(0008,1150)"), "{message}");
            assert!(message.contains("claims 4026531840 bytes"), "{message}");
        }
    }

    /// A damaged length in the File Meta group (found by fuzzing): a 434-byte file whose
    /// (0002,0002) had lost its VR made dicom-rs, which reads an unknown VR as UN with a 4-byte
    /// length, reserve 3.6 GB for it. The meta walk now checks lengths as dicom-rs reads them.
    #[test]
    fn a_damaged_length_in_the_meta_group_is_refused() {
        let body = sop_class();
        let good = part10(EXPLICIT_VR_LE, &body);
        assert!(open_dicom(&write(&good).1, false).is_ok());
        let at = good
            .windows(6)
            .position(|w| w == [2, 0, 2, 0, b'U', b'I'])
            .unwrap();
        // The fuzzer's bytes: VR "U\x91", then what dicom-rs takes for reserved bytes and a
        // length of 0xD7DB9191.
        let mut unknown_vr = good.clone();
        unknown_vr[at + 5..at + 12].copy_from_slice(&[0x91, 0x91, 0x91, 0x91, 0x91, 0xDB, 0xD7]);
        // A known long VR with a length past the end.
        let mut long_vr = good.clone();
        let ob = good
            .windows(6)
            .position(|w| w == [2, 0, 1, 0, b'O', b'B'])
            .unwrap();
        long_vr[ob + 8..ob + 12].copy_from_slice(&0xF000_0000u32.to_le_bytes());
        for (bytes, element, claimed) in [
            (unknown_vr, "(0002,0002)", "claims 3621491089 bytes"),
            (long_vr, "(0002,0001)", "claims 4026531840 bytes"),
        ] {
            let (_dir, path) = write(&bytes);
            for header_only in [false, true] {
                let message = refusal(&path, header_only);
                assert!(message.contains(element), "{message}");
                assert!(message.contains(claimed), "{message}");
            }
        }
    }

    /// dicom-rs reads the File Meta group as far as (0002,0000) says, through elements of
    /// other groups (found by fuzzing: a damaged UID value put a (0031,0003) inside the
    /// group, the walk stopped there without a transfer syntax and checked nothing, and
    /// dicom-rs then read the data set and reserved 3.2 GB for an OB). The walk now goes as
    /// far as dicom-rs and checks the data set after it.
    #[test]
    fn an_element_of_another_group_inside_the_meta_group_is_walked_past() {
        let mut body = sop_class();
        body.extend(private_ob(0xC000_0000));
        let mut file = part10(EXPLICIT_VR_LE, &body);
        // An element of group 0031 first in the meta group, inside its length.
        let stray = short_element(0x31, 3, b"UI", b"1.2\0");
        let first = 132 + 12;
        file.splice(first..first, stray.iter().copied());
        let length = u32::from_le_bytes(file[140..144].try_into().unwrap());
        file[140..144].copy_from_slice(&(length + stray.len() as u32).to_le_bytes());
        let (_dir, path) = write(&file);
        for header_only in [false, true] {
            let message = refusal(&path, header_only);
            assert!(message.contains("(0009,1000)"), "{message}");
            assert!(message.contains("claims 3221225472 bytes"), "{message}");
            // Found by the data set's walk, after the group (not by walking on to the end).
            assert!(!message.contains("File Meta element"), "{message}");
        }
        // The same file without the damaged OB opens (strictly: the stray element is
        // skipped inside the group's length).
        let good = {
            let cut = file.len() - 28;
            let mut good = file[..cut].to_vec();
            good.truncate(cut);
            good
        };
        assert!(open_dicom(&write(&good).1, false).is_ok());
    }

    /// A binary value whose length is not a whole number of its values (a 3-byte US) made
    /// dicom-rs read one value, go on a byte short and take lengths out of the data (found by
    /// fuzzing: 4 GB reserved for a 182-byte file). Refused, explicit and implicit VR alike.
    #[test]
    fn a_binary_value_of_a_broken_length_is_refused() {
        let uid = sop_class();
        let mut explicit = uid.clone();
        explicit.extend(short_element(0x28, 0x10, b"US", &[1, 2, 3]));
        explicit.extend(short_element(0x28, 0x11, b"US", &[0, 2]));
        let mut implicit = vec![0x08, 0x00, 0x16, 0x00, 26, 0, 0, 0];
        implicit.extend_from_slice(b"1.2.840.10008.5.1.4.1.1.7\0");
        implicit.extend_from_slice(&[0x28, 0x00, 0x10, 0x00, 3, 0, 0, 0, 1, 2, 3]);
        implicit.extend_from_slice(&[0x28, 0x00, 0x11, 0x00, 2, 0, 0, 0, 0, 2]);
        for (ts, body) in [(EXPLICIT_VR_LE, explicit), (IMPLICIT_VR_LE, implicit)] {
            let (_dir, path) = write(&part10(ts, &body));
            for header_only in [false, true] {
                let message = refusal(&path, header_only);
                assert!(message.contains("(0028,0010)"), "{message}");
                assert!(message.contains("not a whole number"), "{message}");
            }
        }
    }

    /// An item delimiter outside any sequence ended the walk, as if the data set ended there;
    /// dicom-rs skips it and reads on, and reserved 3.8 GB for an OB behind one (found by
    /// fuzzing). The walk skips it too: what follows is checked, and a file with nothing
    /// wrong behind it still opens.
    #[test]
    fn an_item_delimiter_outside_a_sequence_is_walked_past() {
        let mut body = sop_class();
        body.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        body.extend(short_element(0x10, 0x20, b"LO", b"ID01"));
        let (_dir, fine) = write(&part10(EXPLICIT_VR_LE, &body));
        assert!(open_dicom(&fine, false).is_ok());
        body.extend(private_ob(0xE000_0000));
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &body));
        for header_only in [false, true] {
            let message = refusal(&path, header_only);
            assert!(message.contains("(0009,1000)"), "{message}");
            assert!(message.contains("claims 3758096384 bytes"), "{message}");
        }
    }

    /// Top-level Pixel Data of an odd length is left to the readers (nothing after it is
    /// parsed), but inside a sequence (an icon) it would put dicom-rs a byte behind: refused.
    #[test]
    fn odd_pixel_data_is_refused_only_inside_a_sequence() {
        let uid = sop_class();
        let mut top = uid.clone();
        top.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 3, 0, 0, 0, 1, 2, 3,
        ]);
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &top));
        assert!(implausible_length(&path, false).is_some_and(|walked| walked.is_ok()));
        let mut item = vec![
            0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 3, 0, 0, 0, 1, 2, 3,
        ];
        item.extend(short_element(0x28, 0x10, b"US", &[1, 0]));
        let mut icon = uid;
        icon.extend_from_slice(&[0x88, 0x00, 0x00, 0x02, b'S', b'Q', 0, 0]);
        icon.extend_from_slice(&((item.len() + 8) as u32).to_le_bytes());
        icon.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        icon.extend_from_slice(&(item.len() as u32).to_le_bytes());
        icon.extend(item);
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &icon));
        let message = refusal(&path, false);
        assert!(message.contains("(7FE0,0010)"), "{message}");
        assert!(message.contains("not a whole number"), "{message}");
    }

    /// A Part 10 file without its preamble, with bytes after its Pixel Data: the walk sends
    /// it to the lenient reader, which reads it from the magic at the start.
    #[test]
    fn a_file_without_its_preamble_and_with_trailing_bytes_opens() {
        let mut body = sop_class();
        body.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4,
        ]);
        body.extend_from_slice(&[0xFC, 0xFF, 0xFC, 0xFF, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 0]);
        let file = part10(EXPLICIT_VR_LE, &body);
        let (_dir, path) = write(&file[128..]);
        let obj = open_dicom(&path, false).expect("opens");
        assert!(obj.element(tags::PIXEL_DATA).is_ok());
    }

    /// A header read starts with the first 64 KiB: a meta group longer than that (a 70 kB
    /// element of another group inside it, before the transfer syntax) was left unwalked,
    /// and what dicom-rs read after it went unchecked. It is walked whole now.
    #[test]
    fn a_meta_group_longer_than_the_first_read_is_walked_whole() {
        let mut body = sop_class();
        body.extend(private_ob(0xC000_0000));
        let mut file = part10(EXPLICIT_VR_LE, &body);
        let mut stray = vec![0x31, 0x00, 0x03, 0x00, b'O', b'B', 0, 0];
        stray.extend_from_slice(&70_000u32.to_le_bytes());
        stray.extend(std::iter::repeat_n(7u8, 70_000));
        let first = 132 + 12;
        file.splice(first..first, stray.iter().copied());
        let length = u32::from_le_bytes(file[140..144].try_into().unwrap());
        file[140..144].copy_from_slice(&(length + stray.len() as u32).to_le_bytes());
        let (_dir, path) = write(&file);
        let message = refusal(&path, true);
        assert!(message.contains("(0009,1000)"), "{message}");
        assert!(message.contains("claims 3221225472 bytes"), "{message}");
    }

    /// A meta group whose (0002,0000) ends it early: dicom-rs reads the group's last elements
    /// as the data set. The lenient reader does not trust such a group.
    #[test]
    fn a_meta_group_going_on_past_its_length_is_not_trusted() {
        let body = sop_class();
        let mut file = part10(EXPLICIT_VR_LE, &body);
        let length = u32::from_le_bytes(file[140..144].try_into().unwrap());
        // Short by its last element, (0002,0012) (8 bytes of header, 6 of value).
        file[140..144].copy_from_slice(&(length - 14).to_le_bytes());
        let mut pos = 132;
        let meta = walk_meta(&file, &mut pos, file.len());
        assert!(meta.more_after_end);
        assert!(lenient(&file).is_none());
    }

    /// dicom-rs reads a Part 10 file without its 128-byte preamble (the magic at the start);
    /// the walk did not look at such a file, and a DICOMDIR of 439 bytes had dicom-rs
    /// reserve 2.5 GB (found by fuzzing).
    #[test]
    fn a_file_without_its_preamble_is_walked_too() {
        let mut body = sop_class();
        body.extend(private_ob(0x9000_0000));
        let file = part10(EXPLICIT_VR_LE, &body);
        let (_dir, path) = write(&file[128..]);
        for header_only in [false, true] {
            let message = refusal(&path, header_only);
            assert!(message.contains("claims 2415919104 bytes"), "{message}");
        }
        let good = part10(EXPLICIT_VR_LE, &body[..body.len() - 28]);
        assert!(open_dicom(&write(&good[128..]).1, false).is_ok());
    }

    /// A header read walks the first 64 KiB, then reads on: a damaged length behind a long
    /// private block (a big icon, vendor groups) was not checked before.
    #[test]
    fn a_header_longer_than_the_first_read_is_checked_whole() {
        let mut body = sop_class();
        body.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'L', b'O', 8, 0]);
        body.extend_from_slice(b"OVERREAD");
        body.extend_from_slice(&[0x09, 0x00, 0x00, 0x10, b'O', b'B', 0, 0]);
        body.extend_from_slice(&(200_000u32).to_le_bytes());
        body.extend(std::iter::repeat_n(7u8, 200_000));
        body.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'U', b'T', 0, 0]); // Patient's Name as UT
        body.extend_from_slice(&0xFFF0_0000u32.to_le_bytes());
        body.extend_from_slice(b"A^B ");
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &body));
        let message = refusal(&path, true);
        assert!(message.contains("element (0010,0010)"), "{message}");
    }

    /// A deflate stream that inflates past its bound is refused, not truncated and parsed.
    #[test]
    fn a_deflate_bomb_is_refused_at_its_bound() {
        use std::io::Write;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 4 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 8 << 10, "{}", bomb.len());
        // 4 MiB from a few kB is within deflate's own ratio, so only the bound refuses it.
        let message = inflate_within(&bomb, 1 << 20).unwrap_err();
        assert!(message.contains("more than 1048576 bytes"), "{message}");
        assert_eq!(inflate_within(&bomb, 4 << 20).unwrap().len(), 4 << 20);
    }

    /// JPIP Referenced Deflate deflates its data set like Deflated Explicit VR Little Endian,
    /// and dicom-rs inflates it: the walk must too (found by fuzzing: walked as the raw stream,
    /// a damaged length inside went unchecked and dicom-rs reserved 3.5 GB).
    #[test]
    fn every_deflated_syntax_is_walked_inflated() {
        use std::io::Write;
        let mut body = sop_class();
        body.extend(private_ob(0xC000_0000));
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&body).unwrap();
        let deflated_body = encoder.finish().unwrap();
        for ts in DEFLATED_SYNTAXES {
            let (_dir, path) = write(&part10(ts, &deflated_body));
            for header_only in [false, true] {
                let message = refusal(&path, header_only);
                assert!(message.contains("(0009,1000)"), "{ts}: {message}");
                assert!(
                    message.contains("claims 3221225472 bytes"),
                    "{ts}: {message}"
                );
            }
        }
    }

    /// Delimiters inside a sequence or an item of defined length, before its end: dicom-rs
    /// closes the sequence or item there and reads on from that place, so the walk, which
    /// stepped over the rest by the length, would not check what dicom-rs reads. Refused; a
    /// delimiter exactly at the end (some writers add one) is still read.
    #[test]
    fn delimiters_before_a_defined_end_are_refused() {
        let uid = sop_class();
        let sequence = |item_body: &[u8], after_items: &[u8]| {
            let mut items = vec![0xFE, 0xFF, 0x00, 0xE0];
            items.extend_from_slice(&(item_body.len() as u32).to_le_bytes());
            items.extend_from_slice(item_body);
            items.extend_from_slice(after_items);
            let mut out = uid.clone();
            out.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            out.extend(items);
            out
        };
        let code = short_element(8, 0x0100, b"SH", b"T-D1\0\0");
        let item_delim = [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0];
        let seq_delim = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];
        // Inside the item, before its end.
        let mut early = item_delim.to_vec();
        early.extend(&code);
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &sequence(&early, &[])));
        let message = refusal(&path, false);
        assert!(
            message.contains("inside an item of defined length"),
            "{message}"
        );
        // Inside the sequence, before its end.
        let mut early = seq_delim.to_vec();
        early.extend(&code);
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &sequence(&code, &early)));
        let message = refusal(&path, false);
        assert!(
            message.contains("inside a sequence of defined length"),
            "{message}"
        );
        // At the very end: read.
        let mut at_end = code.clone();
        at_end.extend_from_slice(&item_delim);
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &sequence(&at_end, &seq_delim)));
        assert!(implausible_length(&path, false).is_some_and(|w| w.is_ok()));
    }

    /// A sequence of defined length holds items, and a sequence delimiter only at its end.
    /// Anything else ended its walk quietly, while dicom-rs reads an item header there: an
    /// item delimiter closes the sequence in dicom-rs, which then reads an item and its
    /// elements from bytes the walk stepped over (here a 3.7 GB OB), and a header cut by the
    /// sequence's end is read across it. Each is refused with its place.
    #[test]
    fn a_sequence_of_defined_length_holds_only_items() {
        let uid = sop_class();
        let code = short_element(8, 0x0100, b"SH", b"T-D1\0\0");
        let huge = private_ob(0xE000_0000);
        // An item of defined length holding `code`, then `after` inside the same sequence,
        // the sequence nested in an item of undefined length of an outer sequence.
        let file = |after: &[u8]| {
            let mut items = vec![0xFE, 0xFF, 0x00, 0xE0];
            items.extend_from_slice(&(code.len() as u32).to_le_bytes());
            items.extend(&code);
            items.extend_from_slice(after);
            let mut body = uid.clone();
            body.extend_from_slice(&[0x40, 0x00, 0x75, 0x02, b'S', b'Q', 0, 0]);
            body.extend_from_slice(&[0xFF; 4]);
            body.extend_from_slice(&ITEM_UNDEFINED);
            body.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            body.extend_from_slice(&(items.len() as u32).to_le_bytes());
            body.extend(items);
            body.extend_from_slice(&ITEM_DELIMITER);
            body.extend_from_slice(&SEQUENCE_DELIMITER);
            body
        };
        let refused = |body: &[u8], expected: &str| {
            let walker = Walker::whole(body, true, false);
            let message = walker.elements(0, None, 0).unwrap_err();
            assert!(message.contains(expected), "{message}");
            let (_dir, path) = write(&part10(EXPLICIT_VR_LE, body));
            for header_only in [false, true] {
                let message = refusal(&path, header_only);
                assert!(message.contains(expected), "{message}");
            }
        };
        // An item delimiter where an item belongs, then an item whose OB dicom-rs would read.
        let mut after = ITEM_DELIMITER.to_vec();
        after.extend_from_slice(&ITEM_UNDEFINED);
        after.extend(&huge);
        refused(&file(&after), "found (FFFE,E00D)");
        // Another element where an item belongs.
        refused(&file(&huge), "found (0009,1000)");
        // Bytes too few for an item header before the sequence's end.
        refused(&file(&[0, 0, 0, 0]), "4 bytes at offset");
        // The same sequence with nothing after its item, or its delimiter at its end, opens.
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &file(&[])));
        assert!(open_dicom(&path, false).is_ok());
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &file(&SEQUENCE_DELIMITER)));
        assert!(implausible_length(&path, false).is_some_and(|w| w.is_ok()));
    }

    /// A tag of group FFFE other than the item and its delimiters is refused (the fuzzer's
    /// 82-byte DICOMDIR: a bare data set starting with (FFFE,0000), which dicom-rs read into
    /// a 4.3 GB UL).
    #[test]
    fn an_undefined_item_tag_is_refused() {
        let mut bytes = vec![0x02, 0x00, 0x00, 0x05, 0x00, 0xFF, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0x00, 0x1A, 0, 0, 0]);
        bytes.extend(std::iter::repeat_n(0u8, 26));
        bytes.extend_from_slice(&[0x08, 0x00, 0x00, 0x00, 4, 0, 0, 0, 0, 0, 0, 0xFF]);
        let walker = Walker::whole(&bytes[12..], false, false);
        let message = walker.elements(0, None, 0).unwrap_err();
        assert!(message.contains("(FFFE,0000)"), "{message}");
        assert!(lenient(&bytes).is_none());
    }

    /// An implicit VR element (tag, 4-byte length, value).
    fn implicit(group: u16, element: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    /// An Implicit VR data set written as Explicit VR: a defined-length sequence that ends
    /// with a sequence delimiter keeps its one item (the delimiter is not a second, empty
    /// one); a group length is left out (it counted the bytes as they were); what follows
    /// top-level Pixel Data (three bytes of garbage) is left out, not a reason to refuse.
    #[test]
    fn an_implicit_data_set_is_written_as_explicit_vr() {
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        let inner = implicit(0x0008, 0x1150, b"1.2.840.10008.5.1.4.1.1.2\0");
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend(inner);
        item.extend_from_slice(&SEQUENCE_DELIMITER);
        let mut body = implicit(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.2\0");
        body.extend(implicit(0x0008, 0x1140, &item)); // Referenced Image Sequence
        body.extend(implicit(0x0028, 0x0000, &8u32.to_le_bytes())); // a group length
        body.extend(implicit(0x0028, 0x0010, &1u16.to_le_bytes()));
        body.extend(implicit(0x7FE0, 0x0010, &[1, 0, 2, 0]));
        body.extend_from_slice(&[0xAB, 0xCD, 0xEF]);
        let explicit = implicit_to_explicit_le(&body).unwrap();
        let mut file =
            part10_header("1.2.840.10008.5.1.4.1.1.2", "2.25.1", EXPLICIT_VR_LE, None).unwrap();
        file.extend_from_slice(&explicit);
        let obj = OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(file.as_slice())
            .unwrap();
        let items = obj
            .element(tags::REFERENCED_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(items.len(), 1);
        assert!(
            obj.element_opt(dicom_core::Tag(0x0028, 0x0000))
                .unwrap()
                .is_none()
        );
        let pixels = obj.element(tags::PIXEL_DATA).unwrap();
        assert_eq!(pixels.header().vr, dicom_core::VR::OW);
        assert_eq!(pixels.to_bytes().unwrap().as_ref(), &[1, 0, 2, 0]);
        assert_eq!(obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 1);
    }

    /// A file as dcmtk writes one converted from implicit VR with a sequence it did not know:
    /// Request Attributes Sequence as UN of undefined length, its item implicit VR (with a
    /// nested defined-length sequence), then explicit elements again.
    pub(super) fn cp246_file() -> Vec<u8> {
        cp246_file_in(EXPLICIT_VR_LE)
    }

    /// The same in transfer syntax `ts`; an encapsulated syntax gets encapsulated Pixel Data
    /// (an empty offset table and one fragment).
    fn cp246_file_in(ts: &str) -> Vec<u8> {
        let mut inner = implicit(0x0008, 0x0100, b"C123");
        inner.extend(implicit(0x0008, 0x0102, b"99OVR "));
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend(inner);
        let mut body = sop_class();
        body.extend_from_slice(&[0x40, 0x00, 0x75, 0x02, b'U', b'N', 0, 0]);
        body.extend_from_slice(&[0xFF; 4]);
        body.extend_from_slice(&ITEM_UNDEFINED);
        body.extend(implicit(0x0040, 0x0009, b"SPS1"));
        body.extend(implicit(0x0040, 0x0008, &item)); // an SQ by the dictionary
        body.extend(implicit(0x0029, 0x1010, &[1, 2, 3, 4, 5, 6])); // private: UN
        body.extend_from_slice(&ITEM_DELIMITER);
        body.extend_from_slice(&SEQUENCE_DELIMITER);
        body.extend(short_element(0x10, 0x10, b"PN", b"Doe^J "));
        if ts != EXPLICIT_VR_LE {
            body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
            body.extend_from_slice(&[0xFF; 4]);
            body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
            body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0xFF, 0xD8, 0xFF, 0xD9]);
            body.extend_from_slice(&SEQUENCE_DELIMITER);
        }
        part10(ts, &body)
    }

    /// A UN of undefined length holds implicit VR items (PS3.5 6.2.2, CP-246). The walk
    /// refused such a file as damaged ("no valid VR"), and dicom-rs reads the items as
    /// explicit VR; they are made explicit first, and the whole file reads as pydicom reads it.
    #[test]
    fn a_un_sequence_of_undefined_length_reads_as_implicit_vr() {
        let (_dir, path) = write(&cp246_file());
        let (_dir2, jpeg) = write(&cp246_file_in("1.2.840.10008.1.2.4.50"));
        for (path, header_only) in [(&path, false), (&path, true), (&jpeg, false), (&jpeg, true)] {
            let obj = open_dicom(path, header_only).unwrap();
            let items = obj
                .get(dicom_core::Tag(0x0040, 0x0275))
                .and_then(|e| e.items())
                .expect("read as a sequence");
            assert_eq!(items.len(), 1);
            assert_eq!(
                text(&items[0], dicom_core::Tag(0x0040, 0x0009)).as_deref(),
                Some("SPS1")
            );
            let code = first_item(&items[0], dicom_core::Tag(0x0040, 0x0008)).unwrap();
            assert_eq!(text(code, tags::CODE_VALUE).as_deref(), Some("C123"));
            assert_eq!(
                text(code, tags::CODING_SCHEME_DESIGNATOR).as_deref(),
                Some("99OVR")
            );
            let private = items[0].get(dicom_core::Tag(0x0029, 0x1010)).unwrap();
            assert_eq!(private.to_bytes().unwrap().as_ref(), &[1, 2, 3, 4, 5, 6]);
            assert_eq!(text(&obj, tags::PATIENT_NAME).as_deref(), Some("Doe^J"));
            if path == &jpeg && !header_only {
                let pixels = obj.get(tags::PIXEL_DATA).expect("encapsulated Pixel Data");
                let fragments = pixels.value().fragments().expect("fragments");
                assert_eq!(fragments, [vec![0xFF, 0xD8, 0xFF, 0xD9]]);
            }
        }
    }

    /// An item delimiter outside any sequence, before a CP-246 sequence: dicom-rs skips it,
    /// and so does the walk, but the converter stopped there and left the sequence after it
    /// unconverted, its implicit VR items then read by dicom-rs as explicit VR. It is dropped
    /// and the conversion goes on.
    #[test]
    fn the_converter_reads_on_past_a_stray_item_delimiter() {
        let mut file = cp246_file();
        let un = file
            .windows(6)
            .position(|w| w == [0x40, 0x00, 0x75, 0x02, b'U', b'N'])
            .unwrap();
        file.splice(un..un, ITEM_DELIMITER);
        let (_dir, path) = write(&file);
        for header_only in [false, true] {
            let obj = open_dicom(&path, header_only).unwrap();
            let items = obj
                .get(dicom_core::Tag(0x0040, 0x0275))
                .and_then(|e| e.items())
                .expect("read as a sequence");
            assert_eq!(
                text(&items[0], dicom_core::Tag(0x0040, 0x0009)).as_deref(),
                Some("SPS1")
            );
            assert_eq!(text(&obj, tags::PATIENT_NAME).as_deref(), Some("Doe^J"));
        }
    }

    /// Sequences of defined length each holding an item of undefined length, 30 deep, whose
    /// one item delimiter ends them all: the walk went into each item to its delimiter, then
    /// on from its sequence's end over the same bytes (2^31 steps: minutes a file). An item's
    /// end now binds what is in it, and the file is refused at once.
    #[test]
    fn items_overrunning_their_sequence_are_refused_at_once() {
        let mut body = sop_class();
        for _ in 0..30 {
            body.extend_from_slice(&[0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 8, 0, 0, 0]);
            body.extend_from_slice(&ITEM_UNDEFINED);
        }
        body.extend_from_slice(&ITEM_DELIMITER);
        let walker = Walker::whole(&body, true, false);
        let message = walker.elements(0, None, 0).unwrap_err();
        assert!(message.contains("past its sequence's end"), "{message}");
        let (_dir, path) = write(&part10(EXPLICIT_VR_LE, &body));
        assert!(refusal(&path, true).contains("past"));
        // The same in implicit VR inside a CP-246 sequence: the walk and the converter
        // (which wrote the repeated bytes out again, gigabytes) both refuse it.
        let mut body = sop_class();
        body.extend_from_slice(&[0x40, 0x00, 0x75, 0x02, b'U', b'N', 0, 0]);
        body.extend_from_slice(&[0xFF; 4]);
        body.extend_from_slice(&ITEM_UNDEFINED);
        for _ in 0..30 {
            body.extend_from_slice(&[0x08, 0x00, 0x40, 0x11, 8, 0, 0, 0]);
            body.extend_from_slice(&ITEM_UNDEFINED);
        }
        body.extend_from_slice(&ITEM_DELIMITER);
        body.extend_from_slice(&SEQUENCE_DELIMITER);
        let walker = Walker::whole(&body, true, false);
        assert!(walker.elements(0, None, 0).is_err());
        assert!(cp246_to_explicit(&body).is_err());
    }

    /// The converter and the walk on every cut and every overwritten byte of a CP-246 data
    /// set: an answer (converted or an error), never a panic or a hang.
    #[test]
    fn the_converter_survives_cut_and_damaged_bytes() {
        let file = cp246_file();
        let body = &file[file.windows(4).position(|w| w == b"DICM").unwrap() + 4..];
        let meta_end = {
            let mut pos = 0;
            walk_meta(body, &mut pos, body.len());
            pos
        };
        let body = &body[meta_end..];
        let check = |bytes: &[u8]| {
            let walker = Walker::whole(bytes, true, false);
            let _ = walker.elements(0, None, 0);
            let _ = cp246_to_explicit(bytes);
        };
        for cut in 0..body.len() {
            check(&body[..cut]);
        }
        for at in 0..body.len() {
            for value in [0x00, 0xFF, 0xE0, 0x7F] {
                let mut damaged = body.to_vec();
                damaged[at] = value;
                check(&damaged);
            }
        }
        assert!(cp246_to_explicit(body).is_ok());
    }
}
