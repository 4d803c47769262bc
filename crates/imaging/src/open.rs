//! Opening DICOM files, strictly first and leniently second.
//!
//! dicom-rs reads well-formed Part 10 files. Real CDs also hold files whose File Meta group
//! breaks the rules (odd-length or over-long values, stray elements: dcmtk's own test CT has a
//! one-byte Source AE Title) and files with no meta group at all. For those, the meta group is
//! walked here by hand (PS3.10 7.1: group 0002, always explicit VR little endian), the Transfer
//! Syntax UID taken from it, and the data set read with that syntax. A file without a meta group
//! is read as implicit or explicit VR little endian, whichever its first element looks like.

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
    let meta = walk_meta(bytes, &mut pos);
    // With a meta group, trust it only when its own length agrees with its elements and it
    // names the transfer syntax: guessing over a damaged group parses garbage.
    if had_preamble
        && (meta.transfer_syntax.is_none() || meta.group_end.is_some_and(|end| end != pos))
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
    let obj = if ts_uid == DEFLATED_EXPLICIT_VR_LE {
        let mut inflated = Vec::new();
        // Deflate expands at most 1032:1; more means the stream is damaged.
        let cap = (body.len() as u64).saturating_mul(1032) + (1 << 20);
        flate2::read::DeflateDecoder::new(body)
            .take(cap)
            .read_to_end(&mut inflated)
            .ok()?;
        let stop = Walker::whole(&inflated, true, false)
            .elements(0, None, 0)
            .ok()?;
        let ts = TransferSyntaxRegistry.get(EXPLICIT_VR_LE)?;
        InMemDicomObject::read_dataset_with_ts(inflated.get(..stop)?, ts).ok()?
    } else {
        let ts = TransferSyntaxRegistry.get(read_as)?;
        // The same length check as a strict open gets, on the data set as found; parsing
        // stops after Pixel Data (bytes some writers leave behind it are not a data set).
        let stop = Walker::whole(
            body,
            read_as != IMPLICIT_VR_LE,
            read_as == "1.2.840.10008.1.2.2",
        )
        .elements(0, None, 0)
        .ok()?;
        let body = body.get(..stop)?;
        InMemDicomObject::read_dataset_with_ts(body, ts).ok()?
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
}

/// Walk group 0002 (explicit VR little endian), leaving `pos` after it.
fn walk_meta(bytes: &[u8], pos: &mut usize) -> Meta {
    let mut meta = Meta::default();
    while let Some(head) = bytes.get(*pos..*pos + 8) {
        let group = u16::from_le_bytes([head[0], head[1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([head[2], head[3]]);
        let vr = [head[4], head[5]];
        let (len, header) = if long_length_vr(&vr) {
            let Some(l) = bytes.get(*pos + 8..*pos + 12) else {
                break;
            };
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, 12)
        } else {
            (usize::from(u16::from_le_bytes([head[6], head[7]])), 8)
        };
        let Some(value) = bytes.get(*pos + header..*pos + header + len) else {
            break;
        };
        let as_text = || {
            Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            )
        };
        match element {
            0x0000 if len == 4 => {
                let length = u32::from_le_bytes([value[0], value[1], value[2], value[3]]) as usize;
                meta.group_end = Some(*pos + header + len + length);
            }
            0x0010 => meta.transfer_syntax = as_text(),
            0x0002 => meta.sop_class = as_text(),
            0x0003 => meta.sop_instance = as_text(),
            _ => {}
        }
        *pos += header + len;
    }
    meta
}

/// A damaged length field makes a parser allocate what the field says (up to 4 GiB) before it
/// finds the file too short. Before dicom-rs sees a Part 10 file, its elements are walked here
/// (explicit or implicit VR, either byte order, deflated bodies inflated first; into sequences,
/// items and encapsulated fragments) and a file whose element claims more bytes than it holds is
/// refused with the element named. For a header-only read, the first 64 KiB are walked.
fn implausible_length(path: &Path, header_only: bool) -> Option<Result<bool, String>> {
    let mut file = std::fs::File::open(path).ok()?;
    let size = usize::try_from(file.metadata().ok()?.len()).ok()?;
    let mut bytes = Vec::with_capacity(if header_only { size.min(1 << 16) } else { size });
    let limit = if header_only { 1 << 16 } else { u64::MAX };
    file.by_ref().take(limit).read_to_end(&mut bytes).ok()?;
    // A deflated body must be inflated whole to be walked (such files are rare and small).
    if header_only
        && bytes.len() < size
        && find_subslice(&bytes, DEFLATED_EXPLICIT_VR_LE.as_bytes())
    {
        file.read_to_end(&mut bytes).ok()?;
    }
    if bytes.get(128..132) != Some(b"DICM") {
        return None;
    }
    let mut pos = 132;
    let meta = walk_meta(&bytes, &mut pos);
    let ts = meta.transfer_syntax?;
    let inflated;
    let (body, complete, total) = if ts == DEFLATED_EXPLICIT_VR_LE {
        let mut out = Vec::new();
        // A deflate stream that will not inflate is the parser's to report; stop at 2 GiB.
        if let Err(e) = flate2::read::DeflateDecoder::new(bytes.get(pos..)?)
            .take(1 << 31)
            .read_to_end(&mut out)
        {
            return Some(Err(format!("the deflated data set is damaged: {e}")));
        }
        inflated = out;
        (inflated.as_slice(), true, inflated.len())
    } else {
        (
            bytes.get(pos..)?,
            !header_only || size <= bytes.len(),
            size - pos,
        )
    };
    let walker = Walker {
        header_only,
        bytes: body,
        complete,
        total,
        explicit: ts != IMPLICIT_VR_LE,
        big_endian: ts == "1.2.840.10008.1.2.2",
    };
    // Ok(true): bytes follow top-level Pixel Data, which the strict reader may choke on.
    Some(
        walker
            .elements(0, None, 0)
            .map(|stop| !header_only && walker.complete && stop < walker.total),
    )
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
    explicit: bool,
    big_endian: bool,
}

const UNDEFINED: u32 = u32::MAX;

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
            explicit,
            big_endian,
        }
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
        if depth > 16 {
            return Ok(end.unwrap_or(self.total));
        }
        loop {
            if end.is_some_and(|e| pos >= e) || pos == self.total {
                return Ok(pos);
            }
            let (Some(group), Some(element)) = (self.u16_at(pos), self.u16_at(pos + 2)) else {
                return if self.complete {
                    Err(format!(
                        "data set ends inside an element header at offset {pos}"
                    ))
                } else {
                    Ok(pos)
                };
            };
            if group == 0xFFFE && element == 0xE00D {
                return Ok(pos + 8); // item delimitation: end of this item's data set
            }
            let mut sequence = false;
            let (len, header) = if self.explicit && group != 0xFFFE {
                let Some(vr) = self.bytes.get(pos + 4..pos + 6) else {
                    return Ok(pos);
                };
                sequence = vr == b"SQ";
                if !KNOWN_VRS.contains(&vr) {
                    return Err(format!(
                        "element ({group:04X},{element:04X}) at offset {pos} has no valid VR: damaged"
                    ));
                }
                if long_length_vr(vr) {
                    let Some(len) = self.u32_at(pos + 8) else {
                        return Ok(pos);
                    };
                    (len, 12)
                } else {
                    let Some(len) = self.u16_at(pos + 6) else {
                        return Ok(pos);
                    };
                    (u32::from(len), 8)
                }
            } else {
                let Some(len) = self.u32_at(pos + 4) else {
                    return Ok(pos);
                };
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
                } else {
                    pos = self.items(start, depth)?;
                }
                continue;
            }
            let stop = start + len as usize;
            if stop > self.total {
                return self.too_long(&format!("element ({group:04X},{element:04X})"), pos, len);
            }
            if sequence && self.bytes.len() >= stop {
                self.items_until(start, stop, depth)?;
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
                    Ok(self.total)
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

    /// Items of a sequence of defined length.
    fn items_until(&self, mut pos: usize, stop: usize, depth: u32) -> Result<(), String> {
        while pos + 8 <= stop {
            let (Some(element), Some(len)) = (self.u16_at(pos + 2), self.u32_at(pos + 4)) else {
                return Ok(());
            };
            if element != 0xE000 {
                return Ok(());
            }
            pos = if len == UNDEFINED {
                self.elements(pos + 8, None, depth + 1)?
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
                    Ok(self.total)
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

/// An explicit VR data set has two upper-case letters where implicit VR has a length.
fn looks_explicit(body: &[u8]) -> bool {
    body.get(4..6)
        .is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase))
}
