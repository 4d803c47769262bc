//! Report text in the form its printed copy can show (`case_protocol::printable`), where that
//! form means the same: what dictation and pasted text bring in that the PDF's character set
//! lacks but has an equivalent for. Composed accents (macOS writes "é" as "e" and a combining
//! accent) are composed (NFC); the Greek mu whisper writes for "micro" becomes the micro sign;
//! tabs and the narrow and thin spaces of Word become spaces; soft hyphens, zero-width spaces
//! and byte-order marks go; "≥", "≤", "→", "≈" become ">=", "<=", "->", "~"; prime marks,
//! the minus sign and Unicode hyphens become their ASCII forms; Word's Symbol-font bullet
//! becomes "•". Whatever has no such equivalent is left for the pre-sign check to name.

use unicode_normalization::UnicodeNormalization;

/// `text` with every character that has a printable equivalent replaced by it.
pub fn printable_form(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfc() {
        match c {
            '\t' => out.push(' '),
            '\r' => {}
            '\u{3bc}' => out.push('µ'),
            // No-break forms keep not breaking; the others are plain spaces.
            '\u{202f}' | '\u{2007}' => out.push('\u{a0}'),
            '\u{2000}'..='\u{200a}' | '\u{205f}' | '\u{3000}' => out.push(' '),
            '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' => {}
            '≥' => out.push_str(">="),
            '≤' => out.push_str("<="),
            '→' => out.push_str("->"),
            '←' => out.push_str("<-"),
            '≈' | '∼' => out.push('~'),
            '′' => out.push('\''),
            '″' => out.push('"'),
            '−' | '‐' | '‑' | '‒' => out.push('-'),
            '\u{f0b7}' | '∙' | '●' => out.push('•'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictated_and_pasted_text_takes_its_printable_form() {
        let pasted = "\u{f0b7}\tStenosis ≥ 50%\u{ad}, 3\u{202f}mm\u{200b}, 5 \u{3bc}m, cafe\u{301}, \
                      −2, 5′, a → b\r\n";
        let clean = printable_form(pasted);
        assert_eq!(
            clean,
            "• Stenosis >= 50%, 3\u{a0}mm, 5 µm, café, -2, 5', a -> b\n"
        );
        assert!(case_protocol::printable::first_unprintable("t", &clean, true).is_ok());
        // What has no equivalent stays, for the check to name.
        assert_eq!(printable_form("李 ∑"), "李 ∑");
        // Printable text is unchanged.
        let ok = "Größe 12 × 8 mm, ± 1 °, “quoted” – fine…";
        assert_eq!(printable_form(ok), ok);
    }
}
