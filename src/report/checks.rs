//! Pre-sign checks: what the radiologist must see, and fix or knowingly override, before a
//! report is signed. An empty impression; template fields left (`[liver]`); words the speech
//! engine was unsure of and nobody has confirmed; and a number in the text that refers to a
//! measurement but disagrees with it ("12 mm nodule" when the linked measurement of the nodule
//! is 14.2 mm).
//!
//! A number refers to a measurement when it stands, with a unit of the measurement's kind
//! (millimetres or centimetres for a length, degrees for an angle), in a sentence that names
//! the measurement (every word of its label of three letters or more). Numbers are read as
//! spoken or written ("12 mm", "1.2 cm", "twelve millimeters", "two point three centimeters").
//! It agrees when it equals the measurement at the precision it was stated with (14 mm and
//! 1.4 cm both agree with 14.2 mm; 12 mm does not).
//!
//! A linked measurement the text does not give at all (neither where its value was inserted,
//! nor by its label, nor as the value the viewer inserts, "14.2 mm") is flagged too: signed,
//! it would travel with a report that does not mention it.
//!
//! One check cannot be overridden: a character the printed report cannot show
//! (`case_protocol::printable`: "≥", a tab), which the signing and the server refuse.

use crate::dictation::wer::normalize;

/// A measurement from the viewer, linked to the report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkedMeasurement {
    pub id: String,
    /// As the radiologist named it, e.g. "right upper lobe nodule".
    pub label: String,
    pub value: f64,
    /// "mm" (a length) or "deg" (an angle, Cobb angle); other units are not checked.
    pub unit: String,
    /// What it was measured on: the way back to the image (signed with the report).
    pub source: Option<MeasurementSource>,
    /// Where its value was put into the text (by the viewer's Insert), following every edit:
    /// the sentence there is about it, named or not.
    pub place: Option<(Section, std::ops::Range<usize>)>,
}

/// Where a linked measurement was made, in patient space.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeasurementSource {
    /// The viewer's measurement id; `None` for one given back from a signed report the
    /// server refused (measured in an earlier session: not in this viewer).
    pub viewer_id: Option<u64>,
    /// "length", "angle" or "cobb".
    pub kind: String,
    pub series_instance_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    /// The points it was measured between, patient LPS mm.
    pub points_mm: Vec<[f64; 3]>,
}

/// A word the speech engine was unsure of.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnsureWord {
    pub text: String,
    pub confidence: f32,
    /// Confirmed or corrected by the radiologist.
    pub resolved: bool,
    /// Where it stands in the report (kept up to date by [`super::marks::Change`]); `None`
    /// when it could not be found there.
    pub at: Option<(Section, std::ops::Range<usize>)>,
    /// Its audio: the dictation it came from (an index the panel keeps) and its span in
    /// seconds.
    pub audio: Option<(usize, f64, f64)>,
}

/// The part of the report a check is about (and a kept draft's place names: "findings",
/// "impression").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Findings,
    Impression,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    EmptyImpression,
    /// An addendum with no text.
    EmptyAddendum,
    UnfilledField {
        name: String,
    },
    UnsureWord {
        word: String,
        confidence: f32,
    },
    MeasurementMismatch {
        measurement_id: String,
        said: String,
        measured: String,
    },
    /// A linked measurement the text no longer gives (its inserted value deleted or typed
    /// over, and no sentence naming it): signed, it would go with the report (and print in
    /// its measurements) though the text does not say it.
    MeasurementNotInText {
        measurement_id: String,
    },
    /// A character the printed report cannot show; never overridden.
    Unprintable {
        character: char,
    },
    /// The report names no study (the server refuses it); never overridden.
    NoStudy,
}

impl CheckKind {
    /// Signing waits until it is fixed: "sign anyway" does not cover it.
    pub fn blocks(&self) -> bool {
        matches!(self, CheckKind::Unprintable { .. } | CheckKind::NoStudy)
    }
}

/// One thing to fix or override before signing.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    pub section: Option<Section>,
    /// Byte range in the section's text, where there is one.
    pub range: Option<std::ops::Range<usize>>,
    pub message: String,
}

/// Every check that fails for a draft (empty: ready to sign).
pub fn pre_sign_checks(
    findings: &str,
    impression: &str,
    measurements: &[LinkedMeasurement],
    unsure: &[UnsureWord],
) -> Vec<Check> {
    let mut out = Vec::new();
    for (section, text) in [
        (Section::Findings, findings),
        (Section::Impression, impression),
    ] {
        let name = match section {
            Section::Findings => "findings",
            Section::Impression => "impression",
        };
        // Every such character, each named once (at its first place): the radiologist
        // fixes them in one pass.
        let mut named = Vec::new();
        for e in case_protocol::printable::unprintables(name, text, true) {
            if named.contains(&e.character) {
                continue;
            }
            named.push(e.character);
            out.push(Check {
                kind: CheckKind::Unprintable {
                    character: e.character,
                },
                section: Some(section),
                range: Some(e.offset..e.offset + e.character.len_utf8()),
                message: format!("The {e}."),
            });
        }
    }
    for m in measurements {
        if let Err(e) = case_protocol::printable::first_unprintable(
            &format!("label of measurement {}", m.id),
            &m.label,
            false,
        ) {
            out.push(Check {
                kind: CheckKind::Unprintable {
                    character: e.character,
                },
                section: None,
                range: None,
                message: format!("The {e}."),
            });
        }
    }
    let impression_without_fields = super::template::fields_in(impression)
        .iter()
        .fold(impression.to_string(), |t, (_, r)| {
            t.replace(&impression[r.clone()], "")
        });
    if !impression_without_fields.chars().any(char::is_alphanumeric) {
        out.push(Check {
            kind: CheckKind::EmptyImpression,
            section: Some(Section::Impression),
            range: None,
            message: "The impression is empty.".into(),
        });
    }
    for (section, text) in [
        (Section::Findings, findings),
        (Section::Impression, impression),
    ] {
        for (name, range) in super::template::fields_in(text) {
            out.push(Check {
                message: format!("The field [{name}] is not filled."),
                kind: CheckKind::UnfilledField { name },
                section: Some(section),
                range: Some(range),
            });
        }
    }
    for w in unsure.iter().filter(|w| !w.resolved) {
        out.push(Check {
            kind: CheckKind::UnsureWord {
                word: w.text.clone(),
                confidence: w.confidence,
            },
            section: None,
            range: None,
            message: format!(
                "\"{}\" was recognised with {:.0}% confidence: confirm or correct it.",
                w.text,
                100.0 * w.confidence
            ),
        });
    }
    for (section, text) in [
        (Section::Findings, findings),
        (Section::Impression, impression),
    ] {
        for (range, sentence) in sentences(text) {
            let words = normalize(sentence);
            for m in measurements {
                let Some(family) = UnitFamily::of(&m.unit) else {
                    continue;
                };
                let named = names(m, &words);
                let placed = m.place.as_ref().is_some_and(|(s, r)| {
                    *s == section && r.start < range.end && range.start < r.end
                });
                if !named && !placed {
                    continue;
                }
                let stated: Vec<Quantity> = quantities(&words)
                    .into_iter()
                    .filter(|q| q.family == family)
                    .collect();
                if stated.is_empty() || stated.iter().any(|q| q.agrees_with(m.value)) {
                    continue;
                }
                let said = stated
                    .iter()
                    .map(Quantity::describe)
                    .collect::<Vec<_>>()
                    .join(", ");
                let measured = format!("{:.1} {}", m.value, family.unit());
                out.push(Check {
                    message: format!(
                        "The text says {said} for the {}, but the linked measurement is \
                         {measured}.",
                        if m.label.trim().is_empty() {
                            format!("measurement {}", m.id)
                        } else {
                            m.label.clone()
                        }
                    ),
                    kind: CheckKind::MeasurementMismatch {
                        measurement_id: m.id.clone(),
                        said,
                        measured,
                    },
                    section: Some(section),
                    range: Some(range.clone()),
                });
            }
        }
    }
    for m in measurements {
        let inserted_as = inserted_text(m.value, &m.unit);
        // Given: where Insert put it, as Insert writes it, or by a sentence that names it
        // ("Right upper lobe nodule as before": the radiologist named the measurement after
        // the finding; a negation such as "No nodule." under the label "nodule" is not told
        // apart, words being all this check reads).
        let given = m.place.is_some()
            || [findings, impression].iter().any(|text| {
                text.contains(&inserted_as)
                    || sentences(text)
                        .iter()
                        .any(|(_, sentence)| names(m, &normalize(sentence)))
            });
        if !given {
            let name = if m.label.trim().is_empty() {
                format!("measurement {}", m.id)
            } else {
                m.label.clone()
            };
            out.push(Check {
                kind: CheckKind::MeasurementNotInText {
                    measurement_id: m.id.clone(),
                },
                section: None,
                range: None,
                message: format!(
                    "The {name} ({inserted_as}) is linked, but the text no longer gives it: \
                     put it back, or remove it from the linked measurements (signed, it goes \
                     with the report)."
                ),
            });
        }
    }
    out
}

/// Sentences of `text` with their byte ranges (split after '.', ';', '!', '?' and at line
/// breaks; a '.' between digits is a decimal point).
/// A measurement's value as the viewer's Insert writes it into the text ("14.2 mm", "32.0
/// degrees").
pub fn inserted_text(value: f64, unit: &str) -> String {
    if unit == "mm" {
        format!("{value:.1} mm")
    } else {
        format!("{value:.1} degrees")
    }
}

/// Whether a sentence (its normalized words) names measurement `m`: every word of its label
/// of three letters or more.
fn names(m: &LinkedMeasurement, words: &[String]) -> bool {
    let label: Vec<String> = normalize(&m.label)
        .into_iter()
        .filter(|w| w.len() >= 3)
        .collect();
    !label.is_empty() && label.iter().all(|l| words.contains(l))
}

fn sentences(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        // 2.3, or .5 after a space or a bracket: a decimal point, not a sentence's end.
        let decimal = c == '.'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            && (i == 0
                || bytes[i - 1].is_ascii_digit()
                || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'.');
        if (matches!(c, '.' | ';' | '!' | '?' | '\n')) && !decimal {
            if text[start..i].trim().chars().any(char::is_alphanumeric) {
                out.push((start..i, &text[start..i]));
            }
            start = i + c.len_utf8();
        }
    }
    if text[start..].trim().chars().any(char::is_alphanumeric) {
        out.push((start..text.len(), &text[start..]));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitFamily {
    Millimetre,
    Degree,
}

impl UnitFamily {
    fn of(unit: &str) -> Option<UnitFamily> {
        match unit {
            "mm" => Some(UnitFamily::Millimetre),
            "deg" | "°" => Some(UnitFamily::Degree),
            _ => None,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            UnitFamily::Millimetre => "mm",
            UnitFamily::Degree => "degrees",
        }
    }
}

/// A number stated with a unit, in the family's base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quantity {
    value: f64,
    /// Half a unit of the last stated digit, in the base unit (14 mm: 0.5; 1.4 cm: 0.5 mm).
    tolerance: f64,
    family: UnitFamily,
}

impl Quantity {
    fn agrees_with(&self, measured: f64) -> bool {
        (self.value - measured).abs() <= self.tolerance + 1e-6
    }

    fn describe(&self) -> String {
        format!("{} {}", trim_float(self.value), self.family.unit())
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Quantities in normalised (spoken) words: a spoken number followed by a unit word, or
/// numbers joined by "x" or "by" before one unit ("14 x 12 mm": both are millimetres).
fn quantities(words: &[String]) -> Vec<Quantity> {
    use crate::dictation::numbers::words_to_number;
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let Some(first) = words_to_number(&words[i..]) else {
            i += 1;
            continue;
        };
        // The numbers of "a x b [x c]", then the word after the last.
        let mut numbers = vec![(first.0, first.1)];
        let mut j = i + first.2.max(1);
        while matches!(words.get(j).map(String::as_str), Some("x" | "by"))
            && let Some((value, decimals, used)) = words.get(j + 1..).and_then(words_to_number)
        {
            numbers.push((value, decimals));
            j += 1 + used.max(1);
        }
        let found = match words.get(j).map(String::as_str) {
            Some("millimeter") => Some((UnitFamily::Millimetre, 1.0)),
            Some("centimeter") => Some((UnitFamily::Millimetre, 10.0)),
            Some("degree") => Some((UnitFamily::Degree, 1.0)),
            _ => None,
        };
        if let Some((family, factor)) = found {
            for (value, decimals) in numbers {
                out.push(Quantity {
                    value: value * factor,
                    tolerance: 0.5 * 10f64.powi(-(decimals as i32)) * factor,
                    family,
                });
            }
            i = j + 1;
        } else {
            i += first.2.max(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodule(value: f64) -> LinkedMeasurement {
        LinkedMeasurement {
            id: "M1".into(),
            label: "right upper lobe nodule".into(),
            value,
            unit: "mm".into(),
            source: None,
            place: None,
        }
    }

    fn cobb(value: f64) -> LinkedMeasurement {
        LinkedMeasurement {
            id: "M2".into(),
            label: "Cobb angle".into(),
            value,
            unit: "deg".into(),
            source: None,
            place: None,
        }
    }

    #[test]
    fn characters_the_printed_report_cannot_show_block_signing() {
        let findings = "Stenosis ≥ 50%.\nNo change ≥ 2 mm;\tstable × 2 → fine.";
        let mut m = nodule(14.2);
        m.label = "nodule ≤ 6 mm".into();
        let checks = pre_sign_checks(findings, "Stable nodule.", &[m], &[]);
        let unprintable: Vec<&Check> = checks.iter().filter(|c| c.kind.blocks()).collect();
        // "≥" once (twice in the text), the tab, "→" ("×" prints), the label's "≤".
        let chars: Vec<char> = unprintable
            .iter()
            .map(|c| match c.kind {
                CheckKind::Unprintable { character } => character,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(chars, ['≥', '\t', '→', '≤'], "{checks:?}");
        let first = unprintable[0];
        assert_eq!(&findings[first.range.clone().unwrap()], "≥");
        assert_eq!(first.section, Some(Section::Findings));
        assert!(
            unprintable[2].message.contains("line 2, column 30"),
            "{}",
            unprintable[2].message
        );
        assert!(unprintable[1].message.contains("a tab"));
        assert!(unprintable[3].message.contains("label of measurement M1"));
        // Nothing else blocks, and what prints is not flagged.
        assert!(
            pre_sign_checks("Größe 12 × 8 mm, ± 1 °.", "Normal.", &[], &[])
                .iter()
                .all(|c| !c.kind.blocks())
        );
    }

    /// A linked measurement the text no longer gives is flagged (signed, it would travel with
    /// a report that does not say it), and only that one: one named by a sentence, one whose
    /// inserted value still stands where it was put, or whose value stands as Insert writes it
    /// (a report given back after a refusal has no places), is not.
    #[test]
    fn a_linked_measurement_the_text_no_longer_gives_is_flagged() {
        let not_in_text = |findings: &str, m: LinkedMeasurement| -> Vec<String> {
            pre_sign_checks(findings, "Stable.", &[m], &[])
                .into_iter()
                .filter_map(|c| match c.kind {
                    CheckKind::MeasurementNotInText { measurement_id } => {
                        Some(format!("{measurement_id}: {}", c.message))
                    }
                    _ => None,
                })
                .collect()
        };
        let flagged = not_in_text("No nodule.", nodule(14.2));
        assert_eq!(flagged.len(), 1, "{flagged:?}");
        assert!(
            flagged[0].starts_with("M1: The right upper lobe nodule (14.2 mm) is linked"),
            "{flagged:?}"
        );
        let named = "A 14 mm nodule in the right upper lobe.";
        assert!(not_in_text(named, nodule(14.2)).is_empty());
        let unnamed = LinkedMeasurement {
            label: String::new(),
            ..nodule(14.2)
        };
        assert_eq!(not_in_text("No nodule.", unnamed.clone()).len(), 1);
        assert!(not_in_text("Nodule, 14.2 mm.", unnamed.clone()).is_empty());
        let placed = LinkedMeasurement {
            place: Some((Section::Findings, 0..7)),
            ..unnamed
        };
        assert!(not_in_text("No nodule.", placed).is_empty());
        let angle = LinkedMeasurement {
            label: String::new(),
            ..cobb(32.0)
        };
        assert!(not_in_text("A curve of 32.0 degrees.", angle.clone()).is_empty());
        assert_eq!(not_in_text("A mild curve.", angle).len(), 1);
    }

    #[test]
    fn a_number_that_disagrees_with_its_measurement_is_caught() {
        let findings = "There is a 12 mm spiculated nodule in the right upper lobe. \
                        No pleural effusion.";
        let checks = pre_sign_checks(findings, "Suspicious nodule.", &[nodule(14.2)], &[]);
        assert_eq!(checks.len(), 1, "{checks:?}");
        let CheckKind::MeasurementMismatch { said, measured, .. } = &checks[0].kind else {
            panic!("{checks:?}")
        };
        assert_eq!((said.as_str(), measured.as_str()), ("12 mm", "14.2 mm"));
        let range = checks[0].range.clone().unwrap();
        assert!(findings[range].contains("12 mm spiculated nodule"));
    }

    #[test]
    fn numbers_agree_at_the_precision_they_were_stated_with() {
        for text in [
            "A 14 mm nodule in the right upper lobe.",
            "A 14.2 mm nodule in the right upper lobe.",
            "A 1.4 cm nodule in the right upper lobe.",
            "A fourteen millimeter nodule in the right upper lobe.",
            "A one point four centimeter nodule in the right upper lobe.",
            // Another sentence, or no unit: not about this measurement.
            "A 12 mm nodule in the left lower lobe. Right upper lobe nodule as before.",
            "Right upper lobe nodule, series 3 image 45.",
        ] {
            let checks = pre_sign_checks(text, "Nodule.", &[nodule(14.2)], &[]);
            assert!(checks.is_empty(), "{text}: {checks:?}");
        }
        for text in [
            "A 1.3 cm nodule in the right upper lobe.",
            "A twelve millimeter nodule in the right upper lobe.",
            "A 15 mm nodule in the right upper lobe.",
        ] {
            let checks = pre_sign_checks(text, "Nodule.", &[nodule(14.2)], &[]);
            assert_eq!(checks.len(), 1, "{text}: {checks:?}");
        }
        let cobb = cobb(23.6);
        assert!(
            pre_sign_checks(
                "Cobb angle of 24 degrees.",
                "Scoliosis.",
                std::slice::from_ref(&cobb),
                &[]
            )
            .is_empty()
        );
        assert_eq!(
            pre_sign_checks("Cobb angle of 32 degrees.", "Scoliosis.", &[cobb], &[]).len(),
            1
        );
    }

    #[test]
    fn an_inserted_measurement_is_checked_where_it_was_put() {
        let findings = "Nodule in the right upper lobe, 14.2 mm. Liver normal, 3 mm cyst.";
        let at = findings.find("14.2 mm").unwrap();
        let mut m = LinkedMeasurement {
            id: "#3".into(),
            value: 14.2,
            unit: "mm".into(),
            place: Some((Section::Findings, at..at + 7)),
            ..LinkedMeasurement::default()
        };
        assert!(pre_sign_checks(findings, "Nodule.", std::slice::from_ref(&m), &[]).is_empty());
        // Its handles dragged: the text no longer says what was measured.
        m.value = 18.0;
        let checks = pre_sign_checks(findings, "Nodule.", std::slice::from_ref(&m), &[]);
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert!(
            checks[0].message.contains("measurement #3"),
            "{}",
            checks[0].message
        );
        assert!(findings[checks[0].range.clone().unwrap()].contains("14.2 mm"));
        // Without its place (and without a name) it is about no sentence: no mismatch, but
        // the text no longer gives it (18.0 mm stands nowhere).
        m.place = None;
        let checks = pre_sign_checks(findings, "Nodule.", &[m], &[]);
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert!(
            matches!(checks[0].kind, CheckKind::MeasurementNotInText { .. }),
            "{checks:?}"
        );
    }

    #[test]
    fn measurements_are_read_as_reports_write_them() {
        let agree = |text: &str, m: &LinkedMeasurement| {
            pre_sign_checks(text, "Nodule.", std::slice::from_ref(m), &[]).is_empty()
        };
        let n = nodule(14.2);
        // A number beside the stated one is not part of it (45 + 14 was read as 59 mm, and
        // 2 + 12 as a 14 mm that agreed).
        assert!(agree(
            "Right upper lobe nodule (series 3, image 45): 14 mm.",
            &n
        ));
        assert!(!agree("Right upper lobe nodule (image 2): 12 mm.", &n));
        assert!(!agree(
            "Right upper lobe nodule 1: 14 mm, nodule 13 mm.",
            &nodule(20.0)
        ));
        // Two dimensions before one unit: both are millimetres, and either may be the
        // measured one.
        assert!(agree("A 14 x 12 mm nodule in the right upper lobe.", &n));
        assert!(agree("A 12 × 14 mm nodule in the right upper lobe.", &n));
        assert!(agree("A 1.4 by 1.1 cm nodule in the right upper lobe.", &n));
        assert!(!agree("A 16 x 12 mm nodule in the right upper lobe.", &n));
        // A decimal comma, a leading decimal point.
        assert!(agree("A 1,4 cm nodule in the right upper lobe.", &n));
        assert!(agree(
            "A .5 cm nodule in the right upper lobe.",
            &nodule(5.2)
        ));
        assert!(!agree("A .5 cm nodule in the right upper lobe.", &n));
        // The degree sign and "deg" are degrees.
        let cobb = cobb(23.6);
        assert!(agree("Cobb angle of 24°.", &cobb));
        assert!(agree("Cobb angle of 24 deg.", &cobb));
        assert!(!agree("Cobb angle of 32°.", &cobb));
    }

    #[test]
    fn empty_impression_fields_and_unsure_words_are_listed() {
        let findings = "Liver: [liver]\nSpleen: normal.";
        let unsure = [
            UnsureWord {
                text: "hemangioma".into(),
                confidence: 0.31,
                ..UnsureWord::default()
            },
            UnsureWord {
                text: "lobe".into(),
                confidence: 0.4,
                resolved: true,
                ..UnsureWord::default()
            },
        ];
        let checks = pre_sign_checks(findings, "[impression]", &[], &unsure);
        let kinds: Vec<&CheckKind> = checks.iter().map(|c| &c.kind).collect();
        assert_eq!(checks.len(), 4, "{kinds:?}");
        assert!(matches!(kinds[0], CheckKind::EmptyImpression));
        assert!(matches!(kinds[1], CheckKind::UnfilledField { name } if name == "liver"));
        assert_eq!(checks[1].section, Some(Section::Findings));
        assert_eq!(&findings[checks[1].range.clone().unwrap()], "[liver]");
        assert!(matches!(kinds[2], CheckKind::UnfilledField { name } if name == "impression"));
        assert!(matches!(kinds[3], CheckKind::UnsureWord { word, .. } if word == "hemangioma"));
        assert!(checks[3].message.contains("31%"));
        assert!(pre_sign_checks("Normal.", "No acute abnormality.", &[], &[]).is_empty());
        // A decoder loop of "hundred"s does not overflow, and is not a number as anyone
        // says one ("hundred" does not follow "hundred"): no stated size, nothing to
        // compare; the same loop after a real size leaves that size compared.
        let looped = format!(
            "A one {} millimeter nodule in the right upper lobe.",
            "hundred ".repeat(12)
        );
        assert!(pre_sign_checks(&looped, "Nodule.", &[nodule(14.2)], &[]).is_empty());
        let looped = format!(
            "A 12 mm one {} nodule in the right upper lobe.",
            "hundred ".repeat(12)
        );
        assert_eq!(
            pre_sign_checks(&looped, "Nodule.", &[nodule(14.2)], &[]).len(),
            1
        );
    }
}
