//! DICOM objects as PS3.10 files: what a file-set's files (the patient copy, PS3.10 7.1 and
//! PS3.11) and WADO-RS's `application/dicom` parts (PS3.18 8.7.3.1.1) must be: a 128-byte
//! preamble, `DICM` and a File Meta Information group, then the data set.
//!
//! Intake reads leniently what hospitals send (a bare data set, a file without its preamble)
//! and stores the bytes as received; what leaves the server is made a PS3.10 file here, the
//! data set itself untouched ([`file`]), or written again in Explicit VR Little Endian for a
//! WADO-RS request for the default syntax ([`explicit_le`]).

use bytes::Bytes;

/// This server's Implementation Class UID (0002,0012), under the UUID root 2.25.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.302473851392478950632402151296574911231";
/// Implementation Version Name (0002,0013).
pub const IMPLEMENTATION_VERSION_NAME: &str = "OVERREAD";

/// The preamble, `DICM` and a File Meta group (explicit VR little endian, its group length
/// counted) for an object of SOP Class `class`, SOP Instance `instance`, written in `ts`.
pub fn header(class: &str, instance: &str, ts: &str) -> Result<Vec<u8>, String> {
    imaging::open::part10_header(
        class,
        instance,
        ts,
        Some((IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)),
    )
}

/// `object` as a PS3.10 file. One already (`DICM` after a 128-byte preamble): as stored.
/// Otherwise a preamble, `DICM` and a File Meta group made here (naming its SOP Class and
/// Instance and `ts`, the transfer syntax intake read it in), then its data set as received:
/// what follows the meta group it came with (one after `DICM` at byte 0, as some writers
/// leave them, or a group 0002 at byte 0 without `DICM`: the lenient reader takes both, and
/// either may lack what a strict reader needs), or the whole object, a bare data set.
pub fn file(object: Bytes, class: &str, instance: &str, ts: &str) -> Result<Bytes, String> {
    if object.get(128..132) == Some(b"DICM") {
        return Ok(object);
    }
    let start = if object.get(..4) == Some(b"DICM") {
        4
    } else {
        0
    };
    let data_set = meta_group_end(&object, start).unwrap_or(start);
    let mut out = header(class, instance, ts)?;
    out.extend_from_slice(object.get(data_set..).unwrap_or_default());
    Ok(out.into())
}

/// A PS3.10 `file` (as [`file`] makes it) in Implicit VR Little Endian, Deflated Explicit VR
/// Little Endian or a compressed syntax the imaging crate decodes, written in Explicit VR
/// Little Endian under a File Meta group naming it: its data set converted byte by byte
/// (`imaging::open::implicit_to_explicit_le`: every value as it lies, text included whatever
/// its character set; each element with the dictionary's VR), inflated, or its Pixel Data
/// decoded (`imaging::transcode`: every other element as it lies but the few decoding
/// changes). In pieces to send one after the other (the meta group, the data set, and a
/// decompressed data set's pixels apart: none is copied to join them). `Err` for any other
/// syntax, a data set that cannot be, one that would inflate past `cap` bytes, or pixels that
/// would decode to more than `cap` bytes.
pub fn explicit_le(
    file: &[u8],
    class: &str,
    instance: &str,
    ts: &str,
    cap: u64,
) -> Result<Vec<Bytes>, String> {
    let data_set = file
        .get(128..132)
        .filter(|m| *m == b"DICM")
        .and_then(|_| meta_group_end(file, 132))
        .and_then(|at| file.get(at..))
        .ok_or("not a PS3.10 file")?;
    let mut out = vec![Bytes::from(header(
        class,
        instance,
        EXPLICIT_VR_LITTLE_ENDIAN,
    )?)];
    match ts {
        "1.2.840.10008.1.2" => out.push(imaging::open::implicit_to_explicit_le(data_set)?.into()),
        "1.2.840.10008.1.2.1.99" => {
            out.push(imaging::open::inflated_data_set(data_set, file.len(), cap)?.into())
        }
        compressed if imaging::transcode::is_decompressed(compressed) => {
            let decompressed = crate::dicomweb::on_disk(file, |path| {
                imaging::transcode::decompressed_data_set(path, file, cap)
            })?;
            out.push(decompressed.head.into());
            out.push(decompressed.pixels.into());
        }
        other => return Err(format!("transfer syntax {other} is not converted here")),
    }
    Ok(out)
}

/// Explicit VR Little Endian (PS3.5 A.2).
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// Where the group 0002 elements starting at `at` end (explicit VR little endian, as PS3.10
/// writes the meta group); `None` when there are none there or one runs past the end.
fn meta_group_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    while bytes.get(at..at + 2) == Some(&[0x02, 0x00]) {
        let vr = bytes.get(at + 4..at + 6)?;
        let long = matches!(
            vr,
            b"OB" | b"OW" | b"OF" | b"SQ" | b"UT" | b"UN" | b"UC" | b"UR"
        );
        let (header, len) = if long {
            let l = bytes.get(at + 8..at + 12)?;
            (12, u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
        } else {
            let l = bytes.get(at + 6..at + 8)?;
            (8, usize::from(u16::from_le_bytes([l[0], l[1]])))
        };
        at = at.checked_add(header)?.checked_add(len)?;
        if at > bytes.len() {
            return None;
        }
    }
    (at > start).then_some(at)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A synthetic CT file, and its data set alone (what follows its meta group).
    fn a_file_and_its_data_set() -> (Vec<u8>, Vec<u8>, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let spec = imaging::synth::PhantomSpec {
            columns: 8,
            rows: 8,
            ..Default::default()
        };
        let path = crate::testing::one_synthetic_file(dir.path(), spec);
        let bytes = std::fs::read(&path).unwrap();
        let obj = dicom_object::open_file(&path).unwrap();
        let meta_len = obj.meta().information_group_length as usize;
        // Preamble, DICM, (0002,0000) UL 4 of 12 bytes, then the group it counts.
        let data_set = bytes[132 + 12 + meta_len..].to_vec();
        let class = obj.meta().media_storage_sop_class_uid().to_string();
        let instance = obj.meta().media_storage_sop_instance_uid().to_string();
        (bytes, data_set, class, instance)
    }

    /// A bare data set and a file without its preamble become files a strict reader opens
    /// (dicom-rs's, as pydicom's FileSet and viewers read a file-set's files), the data set
    /// unchanged; a PS3.10 file is left as it is.
    #[test]
    fn what_leaves_the_server_is_a_part_10_file() {
        let (whole, data_set, class, instance) = a_file_and_its_data_set();
        let ts = "1.2.840.10008.1.2.1";
        let same = file(Bytes::from(whole.clone()), &class, &instance, ts).unwrap();
        assert_eq!(same, whole);
        let dir = tempfile::tempdir().unwrap();
        for (name, object) in [
            ("bare", data_set.clone()),
            ("no-preamble", whole[128..].to_vec()),
            // A meta group without the preamble or DICM before it.
            ("meta-only", whole[132..].to_vec()),
        ] {
            let made = file(Bytes::from(object), &class, &instance, ts).unwrap();
            assert_eq!(&made[128..132], b"DICM", "{name}");
            let fresh = header(&class, &instance, ts).unwrap();
            assert_eq!(
                made[fresh.len()..],
                data_set[..],
                "{name}: the data set as stored"
            );
            let path = dir.path().join(name);
            std::fs::write(&path, &made).unwrap();
            let obj = dicom_object::open_file(&path).unwrap();
            assert_eq!(obj.meta().transfer_syntax(), ts, "{name}");
            assert_eq!(
                obj.element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end_matches('\0'),
                instance,
                "{name}"
            );
        }
    }
}
