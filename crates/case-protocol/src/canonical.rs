//! The canonical bytes of a report: what is hashed (the report hash) and signed.
//!
//! # Version 1
//!
//! ```text
//! OVERREAD-REPORT/1\n
//! <name> <length>:<value>\n      one line per field, in the order below
//! ```
//!
//! `<length>` is the byte length (decimal) of the UTF-8 `<value>`, so a value may hold any
//! bytes, newlines included, and no two reports share an encoding. Fields, in order:
//!
//! 1. `case_id`, `kind` (`final` or `addendum`), `amends` (the amended report's hash, empty
//!    for a final report), `author_id`, `author_name`, `key_id`, `signed_at`;
//! 2. `studies` (the count), then one `study` per Study Instance UID, in the order given;
//! 3. `findings`, `impression`;
//! 4. `measurements` (the count), then per measurement `label`, `kind`, `value`, `unit`,
//!    `series` and `frame` (UIDs, empty when absent; a UID given as empty would share that
//!    encoding, so [`check_new_report`] refuses it at signing and intake, while reports
//!    stored before still verify), `points` (the count), then one `point` per point as
//!    `x y z`.
//!
//! Numbers are Rust's shortest round-trip decimal form of the f64 (`14.2`, `-3`, `0.1`),
//! with negative zero written `0`; NaN and infinities are refused. Strings are taken byte for
//! byte, without Unicode normalization: what is signed is exactly what the radiologist was
//! shown. `signed_at` must be `YYYY-MM-DDTHH:MM:SSZ`. A later version changes the first line.

use sha2::{Digest, Sha256};

use crate::types::{Report, ReportKind, is_rfc3339_utc_seconds};

/// The version this crate writes (the first line says it).
pub const CANONICAL_VERSION: u32 = 1;

/// Why a report has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("{field} is not a finite number")]
    NotFinite { field: String },
    #[error("signed_at {0:?} is not YYYY-MM-DDTHH:MM:SSZ")]
    Timestamp(String),
    #[error("{0} is empty")]
    Empty(&'static str),
}

/// sha256 (lower-case hex) of a report's canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportHash(pub String);

impl std::fmt::Display for ReportHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn field(&mut self, name: &str, value: &str) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b' ');
        self.0.extend_from_slice(value.len().to_string().as_bytes());
        self.0.push(b':');
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(b'\n');
    }

    fn count(&mut self, name: &str, n: usize) {
        self.field(name, &n.to_string());
    }
}

fn number(v: f64, field: &str) -> Result<String, CanonicalError> {
    if !v.is_finite() {
        return Err(CanonicalError::NotFinite {
            field: field.to_string(),
        });
    }
    Ok(number_text(v))
}

/// A measurement value as it is signed: the shortest decimal that parses back to the same
/// f64 (`{}`), no exponent, -0 as 0. Whatever shows a signed report's numbers (the PDF) shows
/// them so, not rounded: 14.26 signed is 14.26 read.
pub fn number_text(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else {
        format!("{v}")
    }
}

/// The canonical bytes (version 1) of `report`.
pub fn canonical_bytes(report: &Report) -> Result<Vec<u8>, CanonicalError> {
    if !is_rfc3339_utc_seconds(&report.signed_at) {
        return Err(CanonicalError::Timestamp(report.signed_at.clone()));
    }
    if report.case_id.is_empty() {
        return Err(CanonicalError::Empty("case_id"));
    }
    if report.key_id.is_empty() {
        return Err(CanonicalError::Empty("key_id"));
    }
    if report.author.user_id.is_empty() {
        return Err(CanonicalError::Empty("author.user_id"));
    }
    let mut w = Writer(format!("OVERREAD-REPORT/{CANONICAL_VERSION}\n").into_bytes());
    w.field("case_id", &report.case_id);
    let (kind, amends) = match &report.kind {
        ReportKind::Final => ("final", ""),
        ReportKind::Addendum { amends } => ("addendum", amends.as_str()),
    };
    if kind == "addendum" && amends.is_empty() {
        return Err(CanonicalError::Empty("amends"));
    }
    w.field("kind", kind);
    w.field("amends", amends);
    w.field("author_id", &report.author.user_id);
    w.field("author_name", &report.author.display_name);
    w.field("key_id", &report.key_id);
    w.field("signed_at", &report.signed_at);
    w.count("studies", report.study_instance_uids.len());
    for uid in &report.study_instance_uids {
        w.field("study", uid);
    }
    w.field("findings", &report.findings);
    w.field("impression", &report.impression);
    w.count("measurements", report.measurements.len());
    for (i, m) in report.measurements.iter().enumerate() {
        w.field("label", &m.label);
        w.field("kind", &m.kind);
        w.field(
            "value",
            &number(m.value, &format!("measurements[{i}].value"))?,
        );
        w.field("unit", &m.unit);
        w.field("series", m.series_instance_uid.as_deref().unwrap_or(""));
        w.field("frame", m.frame_of_reference_uid.as_deref().unwrap_or(""));
        w.count("points", m.points_mm.len());
        for (j, p) in m.points_mm.iter().enumerate() {
            let f = |a: usize| number(p[a], &format!("measurements[{i}].points_mm[{j}]"));
            w.field("point", &format!("{} {} {}", f(0)?, f(1)?, f(2)?));
        }
    }
    Ok(w.0)
}

/// What a report must be to be signed or taken in now (beyond its canonical bytes): no
/// measurement UID given as empty (one absent is `None`; the two would share an encoding and
/// so a signature). Reports stored before this rule still verify.
pub fn check_new_report(report: &Report) -> Result<(), CanonicalError> {
    for m in &report.measurements {
        if m.series_instance_uid.as_deref() == Some("")
            || m.frame_of_reference_uid.as_deref() == Some("")
        {
            return Err(CanonicalError::Empty(
                "a measurement's UID (an absent one is none)",
            ));
        }
    }
    Ok(())
}

/// sha256 of the canonical bytes: the report's identity (receipts, addenda, idempotency).
pub fn report_hash(report: &Report) -> Result<ReportHash, CanonicalError> {
    let bytes = canonical_bytes(report)?;
    Ok(ReportHash(format!("{:x}", Sha256::digest(&bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Author, ReportMeasurement};

    pub(crate) fn sample() -> Report {
        Report {
            case_id: "C-1".into(),
            kind: ReportKind::Final,
            author: Author {
                user_id: "rad7".into(),
                display_name: "Dr Ana Lee".into(),
            },
            key_id: "ed25519:0123456789abcdef".into(),
            signed_at: "2026-11-23T16:36:45Z".into(),
            study_instance_uids: vec!["1.2.3".into()],
            findings: "14.2 mm nodule, right lower lobe.\nNo effusion.".into(),
            impression: "Nodule: follow-up CT in 3 months.".into(),
            measurements: vec![ReportMeasurement {
                label: "RLL nodule".into(),
                kind: "length".into(),
                value: 14.2,
                unit: "mm".into(),
                series_instance_uid: Some("1.2.3.4".into()),
                frame_of_reference_uid: None,
                points_mm: vec![[-70.0, -20.5, -0.0], [-55.8, -20.5, 0.1]],
            }],
        }
    }

    /// The exact bytes of version 1 for a sample report, written out by hand from the spec
    /// above (not produced by the code under test).
    #[test]
    fn version_1_bytes_are_as_documented() {
        let expected = "OVERREAD-REPORT/1\n\
            case_id 3:C-1\n\
            kind 5:final\n\
            amends 0:\n\
            author_id 4:rad7\n\
            author_name 10:Dr Ana Lee\n\
            key_id 24:ed25519:0123456789abcdef\n\
            signed_at 20:2026-11-23T16:36:45Z\n\
            studies 1:1\n\
            study 5:1.2.3\n\
            findings 46:14.2 mm nodule, right lower lobe.\nNo effusion.\n\
            impression 33:Nodule: follow-up CT in 3 months.\n\
            measurements 1:1\n\
            label 10:RLL nodule\n\
            kind 6:length\n\
            value 4:14.2\n\
            unit 2:mm\n\
            series 7:1.2.3.4\n\
            frame 0:\n\
            points 1:2\n\
            point 11:-70 -20.5 0\n\
            point 15:-55.8 -20.5 0.1\n";
        let bytes = canonical_bytes(&sample()).unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&bytes), expected);
    }

    /// Floats survive the wire exactly (serde_json's `float_roundtrip`): values that the
    /// default parser reads one step off give the same canonical bytes after a JSON round trip.
    #[test]
    fn measurements_survive_a_json_round_trip_exactly() {
        for v in [
            0.09144338512092887,
            14.2,
            1e-300,
            123456.78901234567,
            -0.0,
            5e-324,
        ] {
            let mut r = sample();
            r.measurements[0].value = v;
            r.measurements[0].points_mm[0] = [v, -v, v * 3.0];
            let text = serde_json::to_string(&r).unwrap_or_default();
            let back: Report = match serde_json::from_str(&text) {
                Ok(b) => b,
                Err(e) => panic!("{e}"),
            };
            assert_eq!(canonical_bytes(&back), canonical_bytes(&r), "{v:e}");
        }
    }

    /// A UID given empty would be written as one absent: two reports, one encoding. A new
    /// report with one is refused (signing and the server's intake check it); one stored
    /// before still has its bytes, so it still verifies.
    #[test]
    fn an_empty_uid_is_refused_in_a_new_report_and_old_ones_still_encode() {
        for series in [true, false] {
            let mut r = sample();
            if series {
                r.measurements[0].series_instance_uid = Some(String::new());
            } else {
                r.measurements[0].frame_of_reference_uid = Some(String::new());
            }
            assert!(
                matches!(check_new_report(&r), Err(CanonicalError::Empty(_))),
                "{series}"
            );
            assert!(canonical_bytes(&r).is_ok());
        }
        let mut absent = sample();
        absent.measurements[0].frame_of_reference_uid = None;
        assert!(check_new_report(&absent).is_ok());
        // Signing refuses it.
        let key = crate::SigningKey::generate();
        let mut r = sample();
        r.key_id = key.verifying_key().id().0;
        assert!(crate::sign_report(r.clone(), &key).is_ok());
        r.measurements[0].series_instance_uid = Some(String::new());
        assert!(crate::sign_report(r, &key).is_err());
    }

    #[test]
    fn any_change_changes_the_hash() {
        let a = report_hash(&sample());
        let mut b = sample();
        b.findings.push(' ');
        assert_ne!(a, report_hash(&b));
        let mut c = sample();
        c.measurements[0].value = 14.200000000000001;
        assert_ne!(a, report_hash(&c));
        // Field boundaries cannot be shifted: moving a character between fields changes it.
        let mut d = sample();
        d.findings = "14.2 mm nodule, right lower lobe.\nNo effusion.N".into();
        d.impression = "odule: follow-up CT in 3 months.".into();
        assert_ne!(a, report_hash(&d));
    }

    #[test]
    fn bad_reports_have_no_canonical_form() {
        let mut r = sample();
        r.measurements[0].value = f64::NAN;
        assert!(matches!(
            canonical_bytes(&r),
            Err(CanonicalError::NotFinite { .. })
        ));
        let mut r = sample();
        r.signed_at = "2026-11-23 16:36".into();
        assert!(matches!(
            canonical_bytes(&r),
            Err(CanonicalError::Timestamp(_))
        ));
        let mut r = sample();
        r.kind = ReportKind::Addendum {
            amends: String::new(),
        };
        assert_eq!(canonical_bytes(&r), Err(CanonicalError::Empty("amends")));
    }
}
