//! The characters a report may hold: those its printed copy shows as signed.
//!
//! The report goes to the referring physician as a PDF (a fax) set in the PDF base-14 fonts,
//! whose text encoding is WinAnsi (Windows-1252): Latin-1 and the common typographic marks.
//! A character outside it cannot be printed; printed as "?" it could change the meaning of
//! what was signed ("≥ 50%" and "≤ 50%" would fax the same). So a report's printed fields hold
//! only WinAnsi's printing characters, with line breaks in the findings and impression; tabs,
//! carriage returns and other control characters are refused too (the PDF keeps runs of spaces
//! as typed, so nothing is lost by using spaces). The workstation checks this before signing
//! and the server again at intake.

use crate::types::{NewCase, Report};

/// The WinAnsiEncoding byte of a printing character, or None (control characters, and the
/// soft hyphen, which some readers print and others hide).
pub fn win_ansi(c: char) -> Option<u8> {
    Some(match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' if c != '\u{ad}' => c as u32 as u8,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8a,
        '‹' => 0x8b,
        'Œ' => 0x8c,
        'Ž' => 0x8e,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9a,
        '›' => 0x9b,
        'œ' => 0x9c,
        'ž' => 0x9e,
        'Ÿ' => 0x9f,
        _ => return None,
    })
}

/// A character of a report that its printed copy cannot show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field} holds {} at line {line}, column {column}, which the printed report cannot show{}",
    describe(*character),
    hint(*character)
)]
pub struct Unprintable {
    /// The report field (`findings`, `impression`, `author_name`, `measurement 2 label`, ...).
    pub field: String,
    pub character: char,
    /// 1-based, in characters.
    pub line: usize,
    pub column: usize,
    /// Byte offset in the field's text.
    pub offset: usize,
}

fn describe(c: char) -> String {
    match c {
        '\t' => "a tab".into(),
        '\r' => "a carriage return".into(),
        '\n' => "a line break".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("\"{c}\" (U+{:04X})", c as u32),
    }
}

fn hint(c: char) -> &'static str {
    match c {
        '\t' | '\r' | '\n' => ": use spaces",
        '≥' => ": write \">=\" or \"greater than or equal to\"",
        '≤' => ": write \"<=\" or \"less than or equal to\"",
        '→' => ": write \"->\" or \"to\"",
        '≈' | '∼' => ": write \"approximately\"",
        '−' | '‐' | '‑' => ": write \"-\"",
        '\u{ad}' => ": remove the soft hyphen",
        _ => "",
    }
}

/// Every character of `text` that cannot be printed, in order (`multiline`: line breaks
/// allowed).
pub fn unprintables<'a>(
    field: &'a str,
    text: &'a str,
    multiline: bool,
) -> impl Iterator<Item = Unprintable> + 'a {
    let (mut line, mut column) = (1, 0);
    text.char_indices().filter_map(move |(offset, c)| {
        column += 1;
        if c == '\n' && multiline {
            line += 1;
            column = 0;
            return None;
        }
        win_ansi(c).is_none().then(|| Unprintable {
            field: field.to_string(),
            character: c,
            line,
            column,
            offset,
        })
    })
}

/// The first character of `text` that cannot be printed (`multiline`: line breaks allowed).
pub fn first_unprintable(field: &str, text: &str, multiline: bool) -> Result<(), Unprintable> {
    match unprintables(field, text, multiline).next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether every printed field of `report` can be printed as signed: the author's name and
/// id, the key id, the findings and impression (line breaks allowed), each measurement's
/// label, kind and unit. (UIDs and the timestamp are checked by their own rules.)
pub fn check_report(report: &Report) -> Result<(), Unprintable> {
    first_unprintable("author_id", &report.author.user_id, false)?;
    first_unprintable("author_name", &report.author.display_name, false)?;
    first_unprintable("key_id", &report.key_id, false)?;
    first_unprintable("findings", &report.findings, true)?;
    first_unprintable("impression", &report.impression, true)?;
    for (i, m) in report.measurements.iter().enumerate() {
        let n = i + 1;
        first_unprintable(&format!("measurement {n} label"), &m.label, false)?;
        first_unprintable(&format!("measurement {n} kind"), &m.kind, false)?;
        first_unprintable(&format!("measurement {n} unit"), &m.unit, false)?;
    }
    Ok(())
}

/// Whether a new case's fields that the report's PDF prints (the patient, the referring
/// physician, the clinical question) can be printed: the fax must name the patient truly, so a
/// name with a character it lacks is given in the form it can show.
pub fn check_new_case(new: &NewCase) -> Result<(), Unprintable> {
    let p = &new.patient;
    first_unprintable("the patient's name", &p.name, false)?;
    first_unprintable("the patient's ID", &p.id, false)?;
    first_unprintable("the patient's birth date", &p.birth_date, false)?;
    first_unprintable("the patient's sex", &p.sex, false)?;
    let r = &new.referral;
    first_unprintable("the referring physician's name", &r.physician.name, false)?;
    first_unprintable("the referring physician's fax", &r.physician.fax, false)?;
    if let Some(institution) = &r.physician.institution {
        first_unprintable("the referring institution", institution, false)?;
    }
    first_unprintable("the clinical question", &r.clinical_question, true)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn win_ansi_holds_latin1_and_the_windows_marks_only() {
        assert_eq!(win_ansi('A'), Some(b'A'));
        assert_eq!(win_ansi('é'), Some(0xe9));
        assert_eq!(win_ansi('°'), Some(0xb0));
        assert_eq!(win_ansi('±'), Some(0xb1));
        assert_eq!(win_ansi('µ'), Some(0xb5));
        assert_eq!(win_ansi('×'), Some(0xd7));
        assert_eq!(win_ansi('²'), Some(0xb2));
        assert_eq!(win_ansi('–'), Some(0x96));
        assert_eq!(win_ansi('™'), Some(0x99));
        for c in [
            '≥', '≤', '→', '−', 'μ', '中', '\t', '\r', '\n', '\u{0}', '\u{85}', '\u{ad}',
        ] {
            assert_eq!(win_ansi(c), None, "{c:?}");
        }
        // Every byte WinAnsi defines is reached by exactly one character.
        let mut seen = std::collections::BTreeSet::new();
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            if let Some(b) = win_ansi(c) {
                assert!(seen.insert(b), "{b:#x} twice");
            }
        }
        // 95 ASCII, 27 of 0x80-0x9f, 95 of 0xa0-0xff (soft hyphen left out).
        assert_eq!(seen.len(), 95 + 27 + 95);
    }

    #[test]
    fn the_first_unprintable_character_is_named_with_its_place() {
        let e = first_unprintable("impression", "Stenosis\nof ≥ 50%.", true).unwrap_err();
        assert_eq!((e.character, e.line, e.column, e.offset), ('≥', 2, 4, 12));
        assert!(e.to_string().contains("U+2265"), "{e}");
        assert!(e.to_string().contains(">="), "{e}");
        assert!(first_unprintable("findings", "a\nb", true).is_ok());
        let e = first_unprintable("label", "a\nb", false).unwrap_err();
        assert_eq!(e.character, '\n');
        let e = first_unprintable("findings", "a\tb", true).unwrap_err();
        assert!(e.to_string().contains("a tab"), "{e}");
        assert!(first_unprintable("findings", "Größe 12 × 8 mm, 3 °C ± 1", true).is_ok());
    }
}
