//! Marks on the report text that must survive editing: where each word the speech engine was
//! unsure of stands, so the editor can highlight it and a click on it can replay its audio.
//!
//! A mark is a byte range in one section's text. Every change to a section (dictation, a
//! typed edit, an inserted measurement or macro) is reduced to one [`Change`]: the common
//! prefix and suffix of the old and new text, with the part between replaced. Marks before the
//! change stay, marks after it move by the length difference, and a mark the change touches is
//! gone: the radiologist has edited that word, which corrects it.

use std::ops::Range;

/// One replaced span: `old[start..old_end]` became `new[start..new_end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub start: usize,
    pub old_end: usize,
    pub new_end: usize,
}

impl Change {
    /// The change from `old` to `new`, or `None` when they are equal. Offsets are on character
    /// boundaries of both texts.
    pub fn between(old: &str, new: &str) -> Option<Change> {
        if old == new {
            return None;
        }
        let (a, b) = (old.as_bytes(), new.as_bytes());
        let mut start = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        while !old.is_char_boundary(start) || !new.is_char_boundary(start) {
            start -= 1;
        }
        let most = a.len().min(b.len()) - start;
        let mut suffix = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take(most)
            .take_while(|(x, y)| x == y)
            .count();
        while !old.is_char_boundary(a.len() - suffix) || !new.is_char_boundary(b.len() - suffix) {
            suffix -= 1;
        }
        Some(Change {
            start,
            old_end: a.len() - suffix,
            new_end: b.len() - suffix,
        })
    }

    /// Where `range` (in the old text) is in the new text; `None` when the change touched it.
    pub fn map(&self, range: &Range<usize>) -> Option<Range<usize>> {
        if range.end <= self.start {
            Some(range.clone())
        } else if range.start >= self.old_end {
            let shift = |x: usize| x - self.old_end + self.new_end;
            Some(shift(range.start)..shift(range.end))
        } else {
            None
        }
    }

    /// The new text's changed part.
    pub fn inserted(&self) -> Range<usize> {
        self.start..self.new_end
    }
}

/// A word as compared: lower case, without the punctuation around it.
pub fn bare(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// Find `words` (in order) in `text[within]`, each after the one before, at word boundaries
/// and ignoring case and surrounding punctuation. Each word's byte range, or `None` where it
/// is not in the text (a voice command, or a word the commands turned into punctuation).
pub fn locate_in_order(
    text: &str,
    within: Range<usize>,
    words: &[&str],
) -> Vec<Option<Range<usize>>> {
    let mut from = within.start.min(text.len());
    let end = within.end.min(text.len());
    let lower = text.to_lowercase();
    // Lower-casing can change lengths outside ASCII; then locate nothing rather than wrongly.
    let comparable = lower.len() == text.len();
    words
        .iter()
        .map(|w| {
            let w = bare(w);
            if w.is_empty() || !comparable {
                return None;
            }
            let mut search = from;
            while search < end {
                let found = lower.get(search..end)?.find(&w)? + search;
                let stop = found + w.len();
                let before_ok = lower[..found]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric());
                let after_ok = lower[stop..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric());
                if before_ok && after_ok {
                    from = stop;
                    return Some(found..stop);
                }
                search = found + lower[found..].chars().next().map_or(1, char::len_utf8);
            }
            None
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_before_a_change_stay_after_it_move_and_touched_ones_go() {
        let old = "The nodule is spiculated. Liver normal.";
        let word = 14..24; // "spiculated"
        assert_eq!(&old[word.clone()], "spiculated");
        // Typing before the word moves it.
        let new = "The new nodule is spiculated. Liver normal.";
        let c = Change::between(old, new).unwrap();
        assert_eq!(&new[c.map(&word).unwrap()], "spiculated");
        // Typing after it leaves it.
        let new = "The nodule is spiculated. Liver is normal.";
        let c = Change::between(old, new).unwrap();
        assert_eq!(c.map(&word), Some(word.clone()));
        // Correcting the word removes the mark.
        let new = "The nodule is speculated. Liver normal.";
        let c = Change::between(old, new).unwrap();
        assert_eq!(c.map(&word), None);
        assert_eq!(Change::between(old, old), None);
    }

    #[test]
    fn changes_never_split_a_character() {
        let old = "lesion 5 mm × 4 mm";
        let new = "lesion 5 mm ÷ 4 mm";
        let c = Change::between(old, new).unwrap();
        assert_eq!(&old[c.start..c.old_end], "×");
        assert_eq!(&new[c.inserted()], "÷");
    }

    #[test]
    fn words_are_found_in_order_at_word_boundaries() {
        let text = "Lungs: the hemangioma, an angioma and another angioma.";
        let found = locate_in_order(text, 0..text.len(), &["Angioma,", "angioma.", "period"]);
        // "hemangioma" is not "angioma": the first match is the whole word after it.
        assert_eq!(found[0], Some(26..33));
        assert_eq!(found[1], Some(46..53));
        assert_eq!(found[2], None);
        // Only inside the given range.
        assert_eq!(locate_in_order(text, 0..20, &["angioma"]), vec![None]);
    }
}
