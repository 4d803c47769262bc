//! Marks on the report text that must survive editing: where each word the speech engine was
//! unsure of stands, so the editor can highlight it and a click on it can replay its audio.
//!
//! A mark is a byte range in one section's text. Every change to a section (a dictated piece,
//! a typed edit, an inserted measurement or macro) is reduced to an [`Edit`]: the common prefix
//! and suffix of the old and new text, with the part between replaced (read both ways when the
//! edit repeats its neighbours). Marks before the
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

/// An edit from one text to another, as replaced spans. An insertion or deletion next to text
/// that repeats it is ambiguous (typing "seems " before "stable" may be read as "eems s"
/// inserted after its "s"): both readings are kept, and a mark survives when either leaves it
/// untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    /// The common prefix taken first (the change as far right as it can be).
    pub right: Change,
    /// The common suffix taken first (the change as far left as it can be).
    pub left: Change,
}

impl Edit {
    /// The edit from `old` to `new`, or `None` when they are equal.
    pub fn between(old: &str, new: &str) -> Option<Edit> {
        Some(Edit {
            right: Change::between(old, new)?,
            left: Change::between_suffix_first(old, new)?,
        })
    }

    /// Where `range` (in the old text) is in the new text; `None` when the edit touched it
    /// under every reading.
    pub fn map(&self, range: &Range<usize>) -> Option<Range<usize>> {
        self.right.map(range).or_else(|| self.left.map(range))
    }

    /// Where the word at `range` is in `new`; `None` when the edit touched it, or made it part
    /// of a longer word ("stable" typed into "unstable": the word was edited).
    pub fn map_word(&self, range: &Range<usize>, new: &str) -> Option<Range<usize>> {
        let bounded = |r: &Range<usize>| {
            let before = new.get(..r.start).and_then(|t| t.chars().next_back());
            let after = new.get(r.end..).and_then(|t| t.chars().next());
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        };
        [self.right.map(range), self.left.map(range)]
            .into_iter()
            .flatten()
            .find(bounded)
    }

    /// Where a span of text (an inserted value) is in the new text, edits inside it
    /// included: an edit that touches it widens or narrows it to what replaced it. `None`
    /// when nothing of it is left.
    pub fn map_span(&self, range: &Range<usize>) -> Option<Range<usize>> {
        if let Some(moved) = self.map(range) {
            return Some(moved);
        }
        let c = self.right;
        if c.start <= range.start && c.old_end >= range.end {
            // The whole span was replaced (and maybe more): what was inserted is gone.
            return None;
        }
        let start = range.start.min(c.start);
        let end = if range.end <= c.old_end {
            c.new_end.max(start)
        } else {
            range.end - c.old_end + c.new_end
        };
        (start < end).then_some(start..end)
    }

    /// The new text's changed part: the reading that ends at `cursor` when one does (text
    /// written at a cursor), else the rightmost.
    pub fn inserted_ending_at(&self, cursor: Option<usize>) -> Range<usize> {
        if cursor == Some(self.left.new_end) {
            self.left.inserted()
        } else {
            self.right.inserted()
        }
    }
}

/// Common prefix and suffix lengths of two byte strings, the first one taken first, on
/// character boundaries of both texts.
fn common(old: &str, new: &str, prefix_first: bool) -> (usize, usize) {
    let (a, b) = (old.as_bytes(), new.as_bytes());
    let shortest = a.len().min(b.len());
    let forward = |limit: usize| {
        let mut n = a
            .iter()
            .zip(b)
            .take(limit)
            .take_while(|(x, y)| x == y)
            .count();
        while !old.is_char_boundary(n) || !new.is_char_boundary(n) {
            n -= 1;
        }
        n
    };
    let backward = |limit: usize| {
        let mut n = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .take(limit)
            .take_while(|(x, y)| x == y)
            .count();
        while !old.is_char_boundary(a.len() - n) || !new.is_char_boundary(b.len() - n) {
            n -= 1;
        }
        n
    };
    if prefix_first {
        let prefix = forward(shortest);
        (prefix, backward(shortest - prefix))
    } else {
        let suffix = backward(shortest);
        (forward(shortest - suffix), suffix)
    }
}

impl Change {
    /// The change from `old` to `new` with the longest common prefix, or `None` when they are
    /// equal. Offsets are on character boundaries of both texts.
    pub fn between(old: &str, new: &str) -> Option<Change> {
        Self::with(old, new, true)
    }

    /// The same with the longest common suffix.
    pub fn between_suffix_first(old: &str, new: &str) -> Option<Change> {
        Self::with(old, new, false)
    }

    fn with(old: &str, new: &str, prefix_first: bool) -> Option<Change> {
        if old == new {
            return None;
        }
        let (start, suffix) = common(old, new, prefix_first);
        Some(Change {
            start,
            old_end: old.len() - suffix,
            new_end: new.len() - suffix,
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
    fn typing_before_a_word_that_starts_like_the_typing_ends_keeps_its_mark() {
        let old = "Nodule stable";
        let word = 7..13;
        let new = "Nodule seems stable";
        // Read with the longest prefix, the insertion is "eems s" inside "stable".
        assert_eq!(Change::between(old, new).unwrap().map(&word), None);
        let edit = Edit::between(old, new).unwrap();
        assert_eq!(&new[edit.map_word(&word, new).unwrap()], "stable");
        // And deleting it again.
        let edit = Edit::between(new, old).unwrap();
        assert_eq!(&old[edit.map_word(&(13..19), old).unwrap()], "stable");
        // Changing the word itself takes the mark away, also when the letters of the old word
        // are still there.
        for changed in ["Nodule unstable", "Nodule stables", "Nodule stale"] {
            let edit = Edit::between(old, changed).unwrap();
            assert_eq!(edit.map_word(&word, changed), None, "{changed}");
        }
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
