//! Wire types. Everything that crosses the wire refuses unknown fields, so a misspelt or
//! unexpected field is an error, not silently dropped data. Patient identity prints as
//! `<redacted>` in `Debug` so it never reaches a log line.

use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Radiologist,
    QaReviewer,
    Coordinator,
    Admin,
}

/// Where a case is. The only moves are received -> ready -> reading -> reported -> delivered
/// (see [`CaseStatus::can_move_to`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Created; studies or referral still missing.
    Received,
    /// Studies and referral present; waiting for its radiologist.
    Ready,
    /// The radiologist opened it.
    Reading,
    /// A signed final report is stored.
    Reported,
    /// The report reached the referring physician.
    Delivered,
}

impl CaseStatus {
    /// The one legal next status.
    pub fn next(self) -> Option<CaseStatus> {
        match self {
            CaseStatus::Received => Some(CaseStatus::Ready),
            CaseStatus::Ready => Some(CaseStatus::Reading),
            CaseStatus::Reading => Some(CaseStatus::Reported),
            CaseStatus::Reported => Some(CaseStatus::Delivered),
            CaseStatus::Delivered => None,
        }
    }

    pub fn can_move_to(self, to: CaseStatus) -> bool {
        self.next() == Some(to)
    }
}

/// How soon a case must be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Stat,
    Urgent,
    Routine,
}

/// Patient demographics. `Debug` prints `<redacted>`: identity never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    pub name: String,
    /// Medical record number at the sending hospital.
    pub id: String,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// "F", "M", "O" or "U".
    pub sex: String,
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Patient(<redacted>)")
    }
}

/// The physician who asked for the second opinion; the report goes to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferringPhysician {
    pub name: String,
    /// E.164 fax number, e.g. "+14165550100".
    pub fax: String,
    pub institution: Option<String>,
}

/// The referral: the physician's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Referral {
    pub physician: ReferringPhysician,
    pub clinical_question: String,
    /// sha256 (hex) of the referral document as received (PDF or image).
    pub document_sha256: Option<String>,
}

/// What a coordinator sends to create a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub patient: Patient,
    pub referral: Referral,
    /// e.g. "neuro", "msk", "body", "chest".
    pub subspecialty: String,
    pub priority: Priority,
}

/// A case as a worklist shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSummary {
    pub id: String,
    pub status: CaseStatus,
    pub priority: Priority,
    pub subspecialty: String,
    /// RFC 3339 UTC; one week after the case became ready.
    pub due_at: Option<String>,
    pub assigned_to: Option<String>,
    pub created_at: String,
}

/// A measurement quoted in a report, with what it was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportMeasurement {
    /// As dictated, e.g. "right lower lobe nodule".
    pub label: String,
    /// "length", "angle", "area", "mean", "value".
    pub kind: String,
    pub value: f64,
    /// "mm", "deg", "mm2", "HU".
    pub unit: String,
    pub series_instance_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    /// The points the value was measured between, patient LPS mm.
    pub points_mm: Vec<[f64; 3]>,
}

/// Who signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    pub user_id: String,
    pub display_name: String,
}

/// A final report, or an addendum to one (a new signed document that names what it amends;
/// signed reports are never changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReportKind {
    Final,
    Addendum {
        /// Report hash (hex) of the report this amends.
        amends: String,
    },
}

/// The report a radiologist signs: exactly these fields, in [`crate::canonical`] form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub case_id: String,
    pub kind: ReportKind,
    pub author: Author,
    /// The id of the key that signs it ([`crate::KeyId`]).
    pub key_id: String,
    /// When it was signed, RFC 3339 UTC with seconds: "2026-11-23T16:36:45Z".
    pub signed_at: String,
    pub study_instance_uids: Vec<String>,
    pub findings: String,
    pub impression: String,
    pub measurements: Vec<ReportMeasurement>,
}

/// A report with its signature, as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    pub report: Report,
    /// ed25519 signature of the canonical bytes, base64 (standard alphabet, padded).
    pub signature: String,
}

/// A stored report as `GET /cases/{id}/reports` lists it (in arrival order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    pub receipt: Receipt,
    pub signed: SignedReport,
    /// Checked again now (by the server): the signature against the registered key
    /// (revoked keys included: old signatures stay verifiable), the key's owner against the
    /// author, the case, the canonical bytes and the hash against those stored.
    pub verified: bool,
}

/// What the server answers for a stored report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub case_id: String,
    /// sha256 (hex) of the report's canonical bytes.
    pub report_hash: String,
    /// Server time of storage, RFC 3339 UTC.
    pub received_at: String,
    /// True when this exact report was already stored (a retry): nothing new was stored.
    pub duplicate: bool,
}

/// A QA reviewer's score of the first read against the second (RADPEER-style).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerReview {
    pub case_id: String,
    /// The report reviewed.
    pub report_hash: String,
    pub reviewer_id: String,
    /// 1: concur; 2: discrepancy, not ordinarily expected to be made; 3: should be made most
    /// of the time; 4: should be made almost every time.
    pub score: u8,
    /// Whether the discrepancy is likely to matter clinically (scores 2-4).
    pub clinically_significant: bool,
    pub comment: String,
    pub reviewed_at: String,
}

impl PeerReview {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4).contains(&self.score) {
            return Err(format!("peer review score {} (1 to 4)", self.score));
        }
        if self.score == 1 && self.clinically_significant {
            return Err("a concurring review (score 1) has no significant discrepancy".into());
        }
        Ok(())
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// True for "YYYY-MM-DDTHH:MM:SSZ" with real calendar values (the one timestamp form the
/// protocol uses).
pub fn is_rfc3339_utc_seconds(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| {
        std::str::from_utf8(&b[r])
            .ok()
            .and_then(|t| t.parse::<u32>().ok())
            .unwrap_or(99)
    };
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
        && (1..=12).contains(&num(5..7))
        && (1..=days_in_month(num(0..4), num(5..7))).contains(&num(8..10))
        && num(11..13) < 24
        && num(14..16) < 60
        && num(17..19) < 61
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_moves_only_forward_one_step() {
        use CaseStatus::*;
        assert!(Received.can_move_to(Ready));
        assert!(Reading.can_move_to(Reported));
        assert!(!Received.can_move_to(Reading));
        assert!(!Reported.can_move_to(Reading));
        assert!(!Delivered.can_move_to(Delivered));
    }

    #[test]
    fn patient_identity_never_prints() {
        let p = Patient {
            name: "DOE^JANE".into(),
            id: "MRN123".into(),
            birth_date: "1970-01-01".into(),
            sex: "F".into(),
        };
        let printed = format!("{p:?}");
        assert!(
            !printed.contains("DOE") && !printed.contains("MRN123"),
            "{printed}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"name":"A","fax":"+1","institution":null,"email":"x"}"#;
        assert!(serde_json::from_str::<ReferringPhysician>(json).is_err());
    }

    #[test]
    fn timestamps_have_one_form() {
        assert!(is_rfc3339_utc_seconds("2026-11-23T16:36:45Z"));
        assert!(is_rfc3339_utc_seconds("2024-02-29T10:00:00Z"));
        for bad in [
            "2026-11-23T16:36:45",
            "2026-11-23 16:36:45Z",
            "2026-13-23T16:36:45Z",
            "2026-02-29T10:00:00Z",
            "2026-04-31T10:00:00Z",
            "2026-11-23T16:36:45.123Z",
            "2026-11-23T16:36:45+00:00",
        ] {
            assert!(!is_rfc3339_utc_seconds(bad), "{bad}");
        }
    }

    #[test]
    fn peer_review_scores_are_checked() {
        let mut r = PeerReview {
            case_id: "c".into(),
            report_hash: "h".into(),
            reviewer_id: "q".into(),
            score: 1,
            clinically_significant: false,
            comment: String::new(),
            reviewed_at: "2026-11-23T16:36:45Z".into(),
        };
        assert!(r.validate().is_ok());
        r.clinically_significant = true;
        assert!(r.validate().is_err());
        r.score = 5;
        assert!(r.validate().is_err());
    }
}

/// `unix_secs` as "YYYY-MM-DDTHH:MM:SSZ" (UTC), the protocol's one timestamp form.
pub fn rfc3339_utc(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// "YYYY-MM-DDTHH:MM:SSZ" as seconds since the Unix epoch (the inverse of [`rfc3339_utc`]);
/// None for any other form.
pub fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    if !is_rfc3339_utc_seconds(s) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn unix_times_format_as_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        // 2026-11-23T16:36:45Z (date -u -d @1795451805).
        assert_eq!(rfc3339_utc(1_795_451_805), "2026-11-23T16:36:45Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert!(is_rfc3339_utc_seconds(&rfc3339_utc(unix_now())));
    }

    #[test]
    fn timestamps_parse_back() {
        for t in [
            0,
            951_782_400,
            1_795_451_805,
            4_107_542_399,
            86_399,
            68_169_600,
        ] {
            assert_eq!(parse_rfc3339_utc(&rfc3339_utc(t)), Some(t), "{t}");
        }
        assert_eq!(
            parse_rfc3339_utc("2026-11-23T16:36:45Z"),
            Some(1_795_451_805)
        );
        assert_eq!(parse_rfc3339_utc("2026-11-23 16:36:45Z"), None);
        assert_eq!(parse_rfc3339_utc("2026-02-30T00:00:00Z"), None);
    }
}
