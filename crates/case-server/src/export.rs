//! The patient copy: a case's record as one ZIP archive laid out like a CD-ROM, for the patient
//! to take to any viewer.
//!
//! ```text
//! README.TXT                what is inside, with sha256 of every report
//! DICOMDIR                  PS3.10 file-set directory (PATIENT/STUDY/SERIES/IMAGE records)
//! DICOM/ST0001/SE0001/IM000001 ...   the instances exactly as stored
//! REPORTS/REPORT01.PDF      each signed report as delivered
//! REPORTS/REPORT01.JSON     and as signed (verifiable with the signer's public key)
//! ```
//!
//! The DICOMDIR is written here (explicit VR little endian, records of defined length) so every
//! directory-record offset (PS3.3 F.3.2.2, from the first byte of the file) is exact.
//!
//! Owns: the archive layout. Must not: log patient identity.

use std::collections::BTreeMap;
use std::io::Write;

use case_protocol::unix_now;
use sqlx::Row;

use crate::db::Db;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no case {0}")]
    NoCase(String),
    #[error("case {0} has no studies to export")]
    Empty(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("writing the archive: {0}")]
    Io(String),
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
}

fn io(e: impl std::fmt::Display) -> ExportError {
    ExportError::Io(e.to_string())
}

/// One instance as the DICOMDIR lists it.
#[derive(Debug, Clone)]
struct Entry {
    patient_id: String,
    patient_name: String,
    study_uid: String,
    study_date: String,
    study_description: String,
    accession: String,
    /// Study Time as the `instances` column keeps it (HHMMSS), "" when the files have none.
    study_time: String,
    study_id: String,
    series_uid: String,
    series_number: Option<i64>,
    modality: String,
    sop_uid: String,
    sop_class_uid: String,
    transfer_syntax_uid: String,
    instance_number: Option<i64>,
    object_key: String,
    /// "DICOM/ST0001/SE0001/IM000001"
    file_id: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    pub studies: usize,
    pub series: usize,
    pub instances: usize,
    pub reports: usize,
    pub bytes: u64,
}

/// Write the case's patient copy as a ZIP into `out` (a file the caller then streams).
pub async fn patient_copy(
    db: &Db,
    store: &Store,
    case_id: &str,
    out: std::fs::File,
) -> Result<ExportSummary, ExportError> {
    db.case_summary(case_id)
        .await
        .map_err(|e| ExportError::Io(e.to_string()))?
        .ok_or_else(|| ExportError::NoCase(case_id.to_string()))?;
    let rows = sqlx::query(
        "SELECT patient_id, patient_name, study_uid, study_date, study_description,
                accession_number, study_time, study_id, series_uid, series_number, modality,
                sop_uid, sop_class_uid, transfer_syntax_uid, instance_number, object_key
         FROM instances WHERE case_id = $1",
    )
    .bind(case_id)
    .fetch_all(&db.pool)
    .await?;
    if rows.is_empty() {
        return Err(ExportError::Empty(case_id.to_string()));
    }
    let mut entries: Vec<Entry> = rows
        .iter()
        .map(|r| Entry {
            patient_id: r.get("patient_id"),
            patient_name: r.get("patient_name"),
            study_uid: r.get("study_uid"),
            study_date: r.get("study_date"),
            study_description: r.get("study_description"),
            accession: r.get("accession_number"),
            study_time: r.get("study_time"),
            study_id: r.get("study_id"),
            series_uid: r.get("series_uid"),
            series_number: r.try_get("series_number").ok().flatten(),
            modality: r.get("modality"),
            sop_uid: r.get("sop_uid"),
            sop_class_uid: r.get("sop_class_uid"),
            transfer_syntax_uid: r.get("transfer_syntax_uid"),
            instance_number: r.try_get("instance_number").ok().flatten(),
            object_key: r.get("object_key"),
            file_id: Vec::new(),
        })
        .collect();
    in_directory_order(&mut entries);
    // ISO 9660 names: upper case, at most 8 characters a component.
    let mut study_no: BTreeMap<String, usize> = BTreeMap::new();
    let mut series_no: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut image_no: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &mut entries {
        let next = study_no.len() + 1;
        let st = *study_no.entry(e.study_uid.clone()).or_insert(next);
        let within = series_no.keys().filter(|(s, _)| *s == e.study_uid).count() + 1;
        let se = *series_no
            .entry((e.study_uid.clone(), e.series_uid.clone()))
            .or_insert(within);
        let n = image_no
            .entry((e.study_uid.clone(), e.series_uid.clone()))
            .or_insert(0);
        *n += 1;
        e.file_id = vec![
            "DICOM".into(),
            format!("ST{st:04}"),
            format!("SE{se:04}"),
            format!("IM{:06}", *n),
        ];
    }
    let reports = sqlx::query(
        "SELECT report_hash, signed_json, kind FROM reports WHERE case_id = $1
         ORDER BY received_at, amends IS NOT NULL, report_hash",
    )
    .bind(case_id)
    .fetch_all(&db.pool)
    .await?;
    let mut report_files = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let hash: String = r.get("report_hash");
        let (pdf, note) = delivered_pdf(db, store, &hash).await?;
        let signed: String = r.get("signed_json");
        let kind: String = r.get("kind");
        report_files.push((i + 1, hash, kind, pdf, signed, note));
    }

    // The archive is written on a blocking thread, fed one file at a time (at most four
    // waiting): its file writes of up to gigabytes never stall the server's async workers.
    let (files, mut to_write) = tokio::sync::mpsc::channel::<(String, bool, bytes::Bytes)>(4);
    let writer = tokio::task::spawn_blocking(move || -> Result<(), ExportError> {
        let mut zip = zip::ZipWriter::new(out);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(false);
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        while let Some((name, deflate, data)) = to_write.blocking_recv() {
            zip.start_file(name, if deflate { deflated } else { stored })
                .map_err(io)?;
            zip.write_all(&data).map_err(io)?;
        }
        zip.finish().map_err(io)?;
        Ok(())
    });
    let mut bytes = 0u64;
    let fed = async {
        let dicomdir = dicomdir(&entries).map_err(io)?;
        let closed = || ExportError::Io("the archive writer stopped".into());
        files
            .send(("DICOMDIR".into(), false, dicomdir.into()))
            .await
            .map_err(|_| closed())?;
        for e in &entries {
            // A file-set's files are PS3.10 files, whatever intake accepted (a bare data set).
            let data = crate::part10::file(
                store.get(&e.object_key).await?,
                &e.sop_class_uid,
                &e.sop_uid,
                &e.transfer_syntax_uid,
            )
            .map_err(|why| ExportError::Io(format!("instance {}: {why}", e.sop_uid)))?;
            bytes += data.len() as u64;
            files
                .send((e.file_id.join("/"), false, data))
                .await
                .map_err(|_| closed())?;
        }
        let mut readme = format!(
            "Overread patient copy of case {case_id}, written {}.\r\n\r\n\
             DICOMDIR and DICOM/: {} images in {} series of {} studies, as received. Open the\r\n\
             folder (or DICOMDIR) in any DICOM viewer.\r\n\r\nREPORTS/:\r\n",
            case_protocol::rfc3339_utc(unix_now()),
            entries.len(),
            series_no.len(),
            study_no.len()
        );
        for (n, hash, kind, pdf, signed, note) in report_files.iter() {
            files
                .send((format!("REPORTS/REPORT{n:02}.PDF"), true, pdf.clone().into()))
                .await
                .map_err(|_| closed())?;
            files
                .send((
                    format!("REPORTS/REPORT{n:02}.JSON"),
                    true,
                    signed.clone().into_bytes().into(),
                ))
                .await
                .map_err(|_| closed())?;
            readme += &format!(
                "  REPORT{n:02}.PDF / .JSON: {kind} report, sha256 {hash} (the JSON is the signed report)\r\n    {note}\r\n"
            );
        }
        files
            .send(("README.TXT".into(), true, readme.into_bytes().into()))
            .await
            .map_err(|_| closed())?;
        drop(files);
        Ok::<(), ExportError>(())
    }
    .await;
    // The writer's own error first (a full disk): it is why feeding it stopped.
    writer
        .await
        .map_err(|e| ExportError::Io(format!("the archive writer failed: {e}")))??;
    fed?;
    Ok(ExportSummary {
        studies: study_no.len(),
        series: series_no.len(),
        instances: entries.len(),
        reports: report_files.len(),
        bytes,
    })
}

/// A report's PDF for the patient copy, and what the README says of it: the bytes sent to
/// the referring physician where the delivery kept them (checked against the sha256 recorded
/// with the delivery); else a rendering now, said to be one, and whether it matches the copy
/// sent.
pub async fn delivered_pdf(
    db: &Db,
    store: &Store,
    hash: &str,
) -> Result<(Vec<u8>, String), ExportError> {
    let sent: Option<String> = sqlx::query_scalar(
        "SELECT document_sha256 FROM deliveries WHERE report_hash = $1 AND status = 'sent'",
    )
    .bind(hash)
    .fetch_optional(&db.pool)
    .await?
    .flatten();
    if let Some(sha) = &sent
        && let Ok(bytes) = store.get(sha).await
    {
        // `get` checks the bytes against their key, the sha256 recorded when sent.
        return Ok((bytes.to_vec(), format!("the PDF as sent, sha256 {sha}")));
    }
    let (pdf, _) = crate::delivery::report_pdf(db, store, hash).await?;
    let now = crate::store::content_key(&pdf);
    let note = match sent {
        None => "not sent yet: the PDF as it would be sent now".to_string(),
        Some(sha) if sha == now => format!("the PDF as sent, sha256 {sha}"),
        Some(sha) => {
            tracing::warn!("report {hash}'s PDF rendered now differs from the one sent (not kept)");
            format!(
                "rendered again: the copy sent (sha256 {sha}) was not kept, and this one \
                 (sha256 {now}) differs from it"
            )
        }
    };
    Ok((pdf, note))
}

/// Explicit VR little endian element bytes.
fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(if matches!(vr, b"UI" | b"OB") { 0 } else { b' ' });
    }
    let mut out = Vec::with_capacity(12 + v.len());
    out.extend_from_slice(&tag.0.to_le_bytes());
    out.extend_from_slice(&tag.1.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    } else {
        // Every value given here is cut to its VR's maximum (`text_value`) or is a UID, date
        // or number; this bound only keeps a mistake from writing a wrong length.
        v.truncate(usize::from(u16::MAX - 1));
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&v);
    out
}

/// The number in a file ID component ("SE0003": "3"), for a Type 1 attribute the files left
/// empty.
fn file_number(component: Option<&String>, prefix: &str) -> String {
    component
        .and_then(|c| c.strip_prefix(prefix))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or_else(|| "1".to_string(), |n| n.to_string())
}

/// Put `entries` in directory order, one record a UID: each study takes the patient and
/// study attributes of its first instance (by SOP Instance UID), each series its number and
/// modality likewise, so that a study whose files differ in Patient ID or Study Date, or a
/// series in Series Number, is one STUDY or SERIES record, not two of one UID. Then by patient,
/// study date, study, series number (none last), series, instance number (none last) and SOP
/// Instance UID, compared here byte by byte (the same on either database).
fn in_directory_order(entries: &mut [Entry]) {
    entries.sort_by(|a, b| a.sop_uid.cmp(&b.sop_uid));
    let mut studies: BTreeMap<String, Entry> = BTreeMap::new();
    let mut series: BTreeMap<String, (Option<i64>, String)> = BTreeMap::new();
    for e in entries.iter() {
        studies
            .entry(e.study_uid.clone())
            .or_insert_with(|| e.clone());
        series
            .entry(e.series_uid.clone())
            .or_insert_with(|| (e.series_number, e.modality.clone()));
    }
    for e in entries.iter_mut() {
        if let Some(first) = studies.get(&e.study_uid) {
            e.patient_id.clone_from(&first.patient_id);
            e.patient_name.clone_from(&first.patient_name);
            e.study_date.clone_from(&first.study_date);
            e.study_description.clone_from(&first.study_description);
            e.accession.clone_from(&first.accession);
            e.study_time.clone_from(&first.study_time);
            e.study_id.clone_from(&first.study_id);
        }
        if let Some((number, modality)) = series.get(&e.series_uid) {
            e.series_number = *number;
            e.modality.clone_from(modality);
        }
    }
    let last_if_none = |n: Option<i64>| (n.is_none(), n);
    entries.sort_by(|a, b| {
        (
            &a.patient_id,
            &a.study_date,
            &a.study_uid,
            last_if_none(a.series_number),
            &a.series_uid,
            last_if_none(a.instance_number),
            &a.sop_uid,
        )
            .cmp(&(
                &b.patient_id,
                &b.study_date,
                &b.study_uid,
                last_if_none(b.series_number),
                &b.series_uid,
                last_if_none(b.instance_number),
                &b.sop_uid,
            ))
    });
}

/// `s` in the default character repertoire (anything outside ASCII becomes '?'), cut to
/// `max` characters, its VR's maximum (PS3.5 6.2: LO 64, SH 16, CS 16; PN 64 a component
/// group: the caller gives the first, alphabetic one). A value from an uploaded file may be
/// longer than its VR allows; written whole it could overflow a 16-bit length.
fn text_value(s: &str, max: usize) -> Vec<u8> {
    s.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_control() {
                // LO, SH, PN and CS hold no control characters (PS3.5 6.2): a line break
                // in an uploaded description is a space here.
                b' '
            } else if c.is_ascii() && c != '\\' {
                c as u8
            } else {
                b'?'
            }
        })
        .collect()
}

/// One directory record: its type, its key attributes (ascending tags) and its links.
struct Record {
    kind: &'static str,
    attributes: Vec<u8>,
    next: Option<usize>,
    lower: Option<usize>,
}

/// Make record `new` the next sibling of `prev`, or the first child of `parent`.
fn link(records: &mut [Record], prev: Option<usize>, parent: Option<usize>, new: usize) {
    match (prev, parent) {
        (Some(p), _) => records[p].next = Some(new),
        (None, Some(parent)) => records[parent].lower = Some(new),
        (None, None) => {}
    }
}

/// A record's item bytes with the offsets filled in.
fn record_bytes(r: &Record, offsets: &[u32]) -> Vec<u8> {
    let at = |i: Option<usize>| i.map_or(0, |i| offsets[i]);
    let mut body = Vec::new();
    body.extend(element((0x0004, 0x1400), b"UL", &at(r.next).to_le_bytes()));
    body.extend(element((0x0004, 0x1410), b"US", &0xFFFFu16.to_le_bytes()));
    body.extend(element((0x0004, 0x1420), b"UL", &at(r.lower).to_le_bytes()));
    body.extend(element((0x0004, 0x1430), b"CS", r.kind.as_bytes()));
    body.extend_from_slice(&r.attributes);
    let mut item = Vec::with_capacity(body.len() + 8);
    item.extend_from_slice(&0xFFFEu16.to_le_bytes());
    item.extend_from_slice(&0xE000u16.to_le_bytes());
    item.extend_from_slice(&(body.len() as u32).to_le_bytes());
    item.extend(body);
    item
}

/// The DICOMDIR file for `entries` (already in directory order).
fn dicomdir(entries: &[Entry]) -> Result<Vec<u8>, String> {
    let mut records: Vec<Record> = Vec::new();
    let mut last_patient: Option<usize> = None;
    let mut last_study: Option<usize> = None;
    let mut last_series: Option<usize> = None;
    let mut last_image: Option<usize> = None;
    let mut current: (String, String, String) = Default::default();
    for e in entries {
        if last_patient.is_none() || current.0 != e.patient_id {
            let mut a = Vec::new();
            a.extend(element(
                (0x0010, 0x0010),
                b"PN",
                &text_value(e.patient_name.split('=').next().unwrap_or(""), 64),
            ));
            a.extend(element(
                (0x0010, 0x0020),
                b"LO",
                &text_value(&e.patient_id, 64),
            ));
            let i = records.len();
            records.push(Record {
                kind: "PATIENT",
                attributes: a,
                next: None,
                lower: None,
            });
            link(&mut records, last_patient, None, i);
            last_patient = Some(i);
            (last_study, last_series, last_image) = (None, None, None);
            current = (e.patient_id.clone(), String::new(), String::new());
        }
        if last_study.is_none() || current.1 != e.study_uid {
            let mut a = Vec::new();
            a.extend(element((0x0008, 0x0020), b"DA", e.study_date.as_bytes()));
            // Type 1 in a STUDY record (PS3.3 F.5): the files' own where it is a time
            // (HHMMSS, as the column keeps it), else midnight.
            let valid = e.study_time.len() == 6
                && e.study_time.bytes().all(|b| b.is_ascii_digit())
                && e.study_time[..2] < *"24"
                && e.study_time[2..4] < *"60"
                && e.study_time[4..] <= *"60";
            let time = if valid {
                e.study_time.as_str()
            } else {
                "000000"
            };
            a.extend(element((0x0008, 0x0030), b"TM", time.as_bytes()));
            a.extend(element(
                (0x0008, 0x0050),
                b"SH",
                &text_value(&e.accession, 16),
            ));
            a.extend(element(
                (0x0008, 0x1030),
                b"LO",
                &text_value(&e.study_description, 64),
            ));
            a.extend(element((0x0020, 0x000D), b"UI", e.study_uid.as_bytes()));
            // Type 1 too: the files' own, else the study's number in this file-set.
            let id = if e.study_id.is_empty() {
                file_number(e.file_id.get(1), "ST")
            } else {
                e.study_id.clone()
            };
            a.extend(element((0x0020, 0x0010), b"SH", &text_value(&id, 16)));
            let i = records.len();
            records.push(Record {
                kind: "STUDY",
                attributes: a,
                next: None,
                lower: None,
            });
            link(&mut records, last_study, last_patient, i);
            last_study = Some(i);
            (last_series, last_image) = (None, None);
            current.1 = e.study_uid.clone();
            current.2 = String::new();
        }
        if last_series.is_none() || current.2 != e.series_uid {
            let mut a = Vec::new();
            a.extend(element(
                (0x0008, 0x0060),
                b"CS",
                &text_value(&e.modality, 16),
            ));
            a.extend(element((0x0020, 0x000E), b"UI", e.series_uid.as_bytes()));
            // Type 1: the files' own, else the series' number in its study here.
            let number = e
                .series_number
                .map_or_else(|| file_number(e.file_id.get(2), "SE"), |n| n.to_string());
            a.extend(element((0x0020, 0x0011), b"IS", number.as_bytes()));
            let i = records.len();
            records.push(Record {
                kind: "SERIES",
                attributes: a,
                next: None,
                lower: None,
            });
            link(&mut records, last_series, last_study, i);
            last_series = Some(i);
            last_image = None;
            current.2 = e.series_uid.clone();
        }
        let mut a = Vec::new();
        a.extend(element(
            (0x0004, 0x1500),
            b"CS",
            e.file_id.join("\\").as_bytes(),
        ));
        a.extend(element((0x0004, 0x1510), b"UI", e.sop_class_uid.as_bytes()));
        a.extend(element((0x0004, 0x1511), b"UI", e.sop_uid.as_bytes()));
        a.extend(element(
            (0x0004, 0x1512),
            b"UI",
            e.transfer_syntax_uid.as_bytes(),
        ));
        // Type 1: the file's own, else its number in the series here.
        let number = e
            .instance_number
            .map_or_else(|| file_number(e.file_id.get(3), "IM"), |n| n.to_string());
        a.extend(element((0x0020, 0x0013), b"IS", number.as_bytes()));
        let i = records.len();
        records.push(Record {
            kind: "IMAGE",
            attributes: a,
            next: None,
            lower: None,
        });
        link(&mut records, last_image, last_series, i);
        last_image = Some(i);
    }
    // The 0004 elements before the key attributes keep each record's tags ascending, and the
    // IMAGE record's (0004,15xx) come after (0004,1430) as they must.
    let preamble_and_meta = crate::part10::header(
        "1.2.840.10008.1.3.10",
        &format!("2.25.{}", uid_suffix(entries)),
        "1.2.840.10008.1.2.1",
    )?;
    let file_set_id = element((0x0004, 0x1130), b"CS", b"OVERREAD");
    let header_len = preamble_and_meta.len()
        + file_set_id.len()
        + 3 * 12 // (0004,1200) UL, (0004,1202) UL, (0004,1212) US: 8 + 4 or 8 + 2 bytes
        - 2
        + 12; // the sequence element header (explicit VR SQ: 12 bytes)
    // Sizes do not depend on offset values (fixed-size UL): lay out once with zeros.
    let zeros = vec![0u32; records.len()];
    let mut offsets = Vec::with_capacity(records.len());
    let mut at = header_len as u32;
    for r in &records {
        offsets.push(at);
        at += record_bytes(r, &zeros).len() as u32;
    }
    let items: Vec<u8> = records
        .iter()
        .flat_map(|r| record_bytes(r, &offsets))
        .collect();
    let roots: Vec<usize> = (0..records.len())
        .filter(|i| records[*i].kind == "PATIENT")
        .collect();
    let first_root = roots.first().map_or(0, |i| offsets[*i]);
    let last_root = roots.last().map_or(0, |i| offsets[*i]);
    let mut out = preamble_and_meta;
    out.extend(file_set_id);
    out.extend(element((0x0004, 0x1200), b"UL", &first_root.to_le_bytes()));
    out.extend(element((0x0004, 0x1202), b"UL", &last_root.to_le_bytes()));
    out.extend(element((0x0004, 0x1212), b"US", &0u16.to_le_bytes()));
    if out.len() + 12 != header_len {
        return Err(format!(
            "DICOMDIR layout: header is {} bytes, {} expected",
            out.len() + 12,
            header_len
        ));
    }
    out.extend(element((0x0004, 0x1220), b"SQ", &items));
    Ok(out)
}

/// A number for the DICOMDIR's SOP Instance UID, from what it lists.
fn uid_suffix(entries: &[Entry]) -> u128 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for e in entries {
        h.update(e.sop_uid.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_be_bytes(b) >> 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dicom_object::mem::InMemDicomObject;

    /// Values longer than their VR allows (an uploaded file's) are cut to the VR's maximum,
    /// so every length fits and the DICOMDIR parses (a 70,000-character description wrapped
    /// its 16-bit length and corrupted the file).
    #[test]
    fn overlong_values_are_cut_to_their_vr_and_the_dicomdir_parses() {
        let entry = Entry {
            patient_id: "P1".into(),
            patient_name: "DOE^JANE=IDEOGRAPHIC^NAME".into(),
            study_uid: "1.2.3".into(),
            study_date: "20260101".into(),
            study_description: "A".repeat(70_000),
            accession: "ACC-0123456789-0123456789".into(),
            study_time: String::new(),
            study_id: String::new(),
            series_uid: "1.2.3.4".into(),
            series_number: Some(2),
            modality: "CT".into(),
            sop_uid: "1.2.3.4.5".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            instance_number: Some(1),
            object_key: "00".repeat(32),
            file_id: vec![
                "DICOM".into(),
                "ST0001".into(),
                "SE0001".into(),
                "IM000001".into(),
            ],
        };
        let bytes = dicomdir(&[entry]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("DICOMDIR");
        std::fs::write(&path, &bytes).unwrap();
        let obj = dicom_object::open_file(&path).unwrap();
        let records: Vec<InMemDicomObject> = obj
            .element(dicom_object::Tag(0x0004, 0x1220))
            .unwrap()
            .items()
            .unwrap()
            .to_vec();
        let text = |i: usize, tag: (u16, u16)| {
            records[i]
                .element(dicom_object::Tag(tag.0, tag.1))
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end()
                .to_string()
        };
        assert_eq!(records.len(), 4);
        assert_eq!(text(0, (0x0010, 0x0010)), "DOE^JANE");
        assert_eq!(text(1, (0x0008, 0x1030)), "A".repeat(64));
        assert_eq!(text(1, (0x0008, 0x0050)), "ACC-0123456789-0");
        assert_eq!(text(2, (0x0008, 0x0060)), "CT");
        // No control characters in a text value: a line break is a space.
        assert_eq!(
            text_value("CHEST\r\nWITH\tCONTRAST", 64),
            b"CHEST  WITH CONTRAST"
        );
    }
}
