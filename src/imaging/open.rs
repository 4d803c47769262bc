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
    let strict = match options.open_file(path) {
        Ok(obj) => return Ok(obj),
        Err(e) => e,
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
    lenient(&bytes).ok_or_else(|| err(strict))
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
    let meta = walk_meta(bytes, &mut pos);
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
        flate2::read::DeflateDecoder::new(body)
            .read_to_end(&mut inflated)
            .ok()?;
        let ts = TransferSyntaxRegistry.get(EXPLICIT_VR_LE)?;
        InMemDicomObject::read_dataset_with_ts(inflated.as_slice(), ts).ok()?
    } else {
        let ts = TransferSyntaxRegistry.get(read_as)?;
        match InMemDicomObject::read_dataset_with_ts(body, ts) {
            Ok(obj) => obj,
            // Bytes after a complete Pixel Data element (seen on real CDs) are not a data set:
            // read up to the end of Pixel Data and ignore the rest.
            Err(_) => InMemDicomObject::read_dataset_with_ts(
                through_pixel_data(body, read_as == EXPLICIT_VR_LE)?,
                ts,
            )
            .ok()?,
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
        let (len, header) = if matches!(
            &vr,
            b"OB" | b"OW" | b"OF" | b"SQ" | b"UT" | b"UN" | b"UC" | b"UR" | b"OD" | b"OL" | b"OV"
        ) {
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
            0x0010 => meta.transfer_syntax = as_text(),
            0x0002 => meta.sop_class = as_text(),
            0x0003 => meta.sop_instance = as_text(),
            _ => {}
        }
        *pos += header + len;
    }
    meta
}

/// The data set up to the end of a defined-length Pixel Data (7FE0,0010) element.
fn through_pixel_data(body: &[u8], explicit: bool) -> Option<&[u8]> {
    let tag = [0xE0, 0x7F, 0x10, 0x00];
    let mut from = 0;
    while let Some(offset) = body.get(from..)?.windows(4).position(|w| w == tag) {
        let at = from + offset;
        let end = if explicit {
            let vr = body.get(at + 4..at + 6)?;
            if vr == b"OB" || vr == b"OW" {
                let len = u32::from_le_bytes(body.get(at + 8..at + 12)?.try_into().ok()?);
                (len != u32::MAX).then(|| at + 12 + len as usize)
            } else {
                None
            }
        } else {
            let len = u32::from_le_bytes(body.get(at + 4..at + 8)?.try_into().ok()?);
            (len != u32::MAX).then(|| at + 8 + len as usize)
        };
        if let Some(end) = end.filter(|e| *e <= body.len()) {
            return body.get(..end);
        }
        from = at + 4;
    }
    None
}

/// An explicit VR data set has two upper-case letters where implicit VR has a length.
fn looks_explicit(body: &[u8]) -> bool {
    body.get(4..6)
        .is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase))
}
