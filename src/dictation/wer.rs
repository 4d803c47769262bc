//! Word error rate, for tests and benchmarks of speech-to-text: (substitutions + deletions +
//! insertions) / reference words, after the usual normalisation, applied alike to the reference
//! and the hypothesis: lower case; punctuation dropped (an apostrophe too: "patient's" and
//! "patients" are one word); letters and digits split ("L4" is "l four"); numbers spoken
//! ("12" is "twelve", "2.3" is "two point three", "%" is "percent"); the unit abbreviations
//! said aloud in full ("mm" is "millimeter") and unit plurals singular.

/// Normalised words of `text` (see the module docs).
pub fn normalize(text: &str) -> Vec<String> {
    let lower = text
        .to_lowercase()
        .replace('%', " percent ")
        .replace('°', " degree ")
        .replace('×', " x ");
    // Split between letters and digits, keep a decimal point between digits, and turn
    // everything else that is not a letter, digit or apostrophe into a space.
    let chars: Vec<char> = lower.chars().collect();
    let mut spaced = String::with_capacity(lower.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(i + 1).copied();
        if c == '.'
            && prev.is_some_and(|p| p.is_ascii_digit())
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            spaced.push('.');
            continue;
        }
        if c == ','
            && prev.is_some_and(|p| p.is_ascii_digit())
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            // Three digits and no more after it: a thousands separator (1,000); otherwise a
            // decimal comma (1,4 cm).
            let digits_after = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits_after != 3 {
                spaced.push('.');
            }
            continue;
        }
        if c == '.'
            && !prev.is_some_and(|p| p.is_alphanumeric())
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            spaced.push_str(" 0."); // .5 cm
            continue;
        }
        if c == '\'' || c == '\u{2019}' {
            continue;
        }
        if !c.is_alphanumeric() {
            spaced.push(' ');
            continue;
        }
        if let Some(p) = prev
            && p.is_alphanumeric()
            && p.is_ascii_digit() != c.is_ascii_digit()
        {
            spaced.push(' ');
        }
        spaced.push(c);
    }
    let mut out = Vec::new();
    for word in spaced.split_whitespace() {
        if word.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            out.extend(super::numbers::digits_to_words(word));
            continue;
        }
        let word = match word {
            "mm" | "millimeters" | "millimetres" | "millimetre" => "millimeter",
            "cm" | "centimeters" | "centimetres" | "centimetre" => "centimeter",
            "deg" | "degs" | "degrees" => "degree",
            other => other,
        };
        out.push(word.to_string());
    }
    out
}

/// Word-level edit counts between a reference and a hypothesis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WordErrors {
    pub substitutions: usize,
    pub deletions: usize,
    pub insertions: usize,
    /// Words in the reference.
    pub reference_words: usize,
}

impl WordErrors {
    pub fn errors(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }

    /// The word error rate (0 for an empty reference with an empty hypothesis).
    pub fn rate(&self) -> f64 {
        if self.reference_words == 0 {
            return if self.insertions == 0 { 0.0 } else { 1.0 };
        }
        self.errors() as f64 / self.reference_words as f64
    }

    /// Sums for a corpus (its WER is total errors over total reference words).
    pub fn add(&mut self, other: WordErrors) {
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
        self.reference_words += other.reference_words;
    }
}

/// Minimum edit alignment (Levenshtein over words) of normalised `reference` and `hypothesis`.
pub fn word_errors(reference: &str, hypothesis: &str) -> WordErrors {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    // cost[j] with (subs, dels, ins) carried along for the chosen path.
    let mut prev: Vec<(usize, WordErrors)> = (0..=h.len())
        .map(|j| {
            (
                j,
                WordErrors {
                    insertions: j,
                    ..Default::default()
                },
            )
        })
        .collect();
    for (i, rw) in r.iter().enumerate() {
        let mut row = Vec::with_capacity(h.len() + 1);
        row.push((
            i + 1,
            WordErrors {
                deletions: i + 1,
                ..Default::default()
            },
        ));
        for (j, hw) in h.iter().enumerate() {
            let same = rw == hw;
            let diag = {
                let (c, mut e) = prev[j];
                if !same {
                    e.substitutions += 1;
                }
                (c + usize::from(!same), e)
            };
            let up = {
                let (c, mut e) = prev[j + 1];
                e.deletions += 1;
                (c + 1, e)
            };
            let left = {
                let (c, mut e) = row[j];
                e.insertions += 1;
                (c + 1, e)
            };
            let best = [diag, up, left]
                .into_iter()
                .min_by_key(|(c, _)| *c)
                .unwrap_or(diag);
            row.push(best);
        }
        prev = row;
    }
    let mut result = prev[h.len()].1;
    result.reference_words = r.len();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_speaks_numbers_and_units() {
        assert_eq!(
            normalize("A 12-mm nodule; 2.3 cm cyst at L4-L5 (patient's), 100%."),
            [
                "a",
                "twelve",
                "millimeter",
                "nodule",
                "two",
                "point",
                "three",
                "centimeter",
                "cyst",
                "at",
                "l",
                "four",
                "l",
                "five",
                "patients",
                "one",
                "hundred",
                "percent"
            ]
        );
        assert_eq!(
            normalize("1,204"),
            ["one", "thousand", "two", "hundred", "four"]
        );
        assert_eq!(normalize("40"), ["forty"]);
        assert_eq!(normalize("Twelve millimeters."), ["twelve", "millimeter"]);
    }

    #[test]
    fn word_errors_count_each_kind() {
        let e = word_errors("the cat sat on the mat", "the cat sat on mat");
        assert_eq!((e.substitutions, e.deletions, e.insertions), (0, 1, 0));
        let e = word_errors("the cat sat", "a cat sat down");
        assert_eq!((e.substitutions, e.deletions, e.insertions), (1, 0, 1));
        assert_eq!(e.reference_words, 3);
        assert!((e.rate() - 2.0 / 3.0).abs() < 1e-12);
        let e = word_errors(
            "There is a twelve millimeter nodule.",
            "There is a 12 mm nodule",
        );
        assert_eq!(e.errors(), 0);
        assert_eq!(word_errors("", "").rate(), 0.0);
        assert_eq!(word_errors("", "hello").rate(), 1.0);
    }
}
