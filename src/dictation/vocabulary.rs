//! The radiology vocabulary prompt: terms shipped in `assets/dictation/vocabulary.txt` and the
//! user's own (`vocabulary.txt` in the data folder, which come first), made into the text the
//! decoder sees as coming before the dictation. Whisper reads at most 224 prompt tokens and
//! weighs the last ones most; the prompt stops at [`PROMPT_MAX_CHARS`] (about 160 tokens).

use std::path::{Path, PathBuf};

/// The shipped terms.
pub const SHIPPED: &str = include_str!("../../assets/dictation/vocabulary.txt");

/// The longest prompt built, in characters (English runs about four per token).
pub const PROMPT_MAX_CHARS: usize = 640;

/// Terms of a vocabulary file: one per line, `#` starts a comment line, blanks ignored.
pub fn parse_terms(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // A NUL (a UTF-16 file read as UTF-8) cannot go into whisper's prompt.
        .filter(|l| !l.contains('\0'))
        .map(str::to_string)
        .collect()
}

/// The user's vocabulary file: `vocabulary.txt` in the data folder ([`crate::data_dir`]).
pub fn user_file() -> PathBuf {
    crate::data_dir().join("vocabulary.txt")
}

/// The user's terms (from `path`, when it exists) then the shipped ones, without repeats.
pub fn terms(user: Option<&Path>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let user_text = user.and_then(|p| std::fs::read_to_string(p).ok());
    for term in parse_terms(user_text.as_deref().unwrap_or(""))
        .into_iter()
        .chain(parse_terms(SHIPPED))
    {
        if !out.iter().any(|t| t.eq_ignore_ascii_case(&term)) {
            out.push(term);
        }
    }
    out
}

/// The prompt: a short report-like sentence naming the terms, as many as fit.
pub fn prompt(terms: &[String]) -> String {
    let mut text = String::from("Radiology report dictation. Terms:");
    let mut first = true;
    for term in terms {
        let piece = if first {
            format!(" {term}")
        } else {
            format!(", {term}")
        };
        if text.len() + piece.len() + 1 > PROMPT_MAX_CHARS {
            break;
        }
        text.push_str(&piece);
        first = false;
    }
    text.push('.');
    text
}

/// The default prompt: the user's terms (if any) and the shipped ones.
pub fn default_prompt() -> String {
    prompt(&terms(Some(&user_file())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_terms_come_first_and_the_prompt_stays_short() {
        let dir = std::env::temp_dir().join(format!("overread-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vocabulary.txt");
        std::fs::write(&file, "# mine\nleptomeningeal\n\nNodule\n").unwrap();
        let t = terms(Some(&file));
        assert_eq!(t[0], "leptomeningeal");
        assert_eq!(t[1], "Nodule");
        assert_eq!(
            t.iter()
                .filter(|x| x.eq_ignore_ascii_case("nodule"))
                .count(),
            1
        );
        assert!(t.len() > 50, "shipped terms missing: {}", t.len());
        let p = prompt(&t);
        assert!(p.len() <= PROMPT_MAX_CHARS, "{}", p.len());
        assert!(p.starts_with("Radiology report dictation. Terms: leptomeningeal, Nodule,"));
        assert!(p.ends_with('.'));
        assert_eq!(terms(Some(&dir.join("missing.txt")))[0], "Impression");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
