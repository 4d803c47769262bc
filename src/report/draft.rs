//! The report draft as the dictation fills it: two texts (findings, impression), a cursor, and
//! what was inserted last (for "scratch that"). Dictated text replaces the field under the
//! cursor or goes in at the cursor; voice commands ([`crate::dictation::commands`]) move between
//! fields, break lines and paragraphs, punctuate, undo, and insert templates and macros.

use std::collections::BTreeMap;

use super::checks::Section;
use super::template::{Template, fields_in};
use crate::dictation::commands::{Piece, bare, parse};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Draft {
    pub findings: String,
    pub impression: String,
    /// Where dictation goes: a section and a byte offset in it.
    pub section: Option<Section>,
    pub cursor: usize,
    /// Dictated insertions, newest last.
    undo: Vec<Insertion>,
    /// Which utterance dictation is on (see [`Draft::next_utterance`]).
    utterance: u64,
}

/// One dictated insertion, for "scratch that".
#[derive(Debug, Clone, PartialEq)]
struct Insertion {
    section: Section,
    start: usize,
    inserted: String,
    /// What it replaced (a template field), put back when it is scratched.
    replaced: String,
    utterance: u64,
}

impl Draft {
    /// A draft from a template, the cursor on its first field.
    pub fn from_template(t: &Template) -> Draft {
        let mut d = Draft {
            findings: t.findings.trim().to_string(),
            impression: t.impression.trim().to_string(),
            section: Some(Section::Findings),
            cursor: 0,
            undo: Vec::new(),
            utterance: 0,
        };
        d.move_to_field(true, true);
        d
    }

    /// What follows is a new utterance (a transcript, a button): a mark said in it does not
    /// join an insertion of an earlier one ("no effusion", then "comma" said by mistake, then
    /// "scratch that" takes the comma only).
    pub fn next_utterance(&mut self) {
        self.utterance += 1;
    }

    fn text_mut(&mut self, s: Section) -> &mut String {
        match s {
            Section::Findings => &mut self.findings,
            Section::Impression => &mut self.impression,
        }
    }

    pub fn text(&self, s: Section) -> &str {
        match s {
            Section::Findings => &self.findings,
            Section::Impression => &self.impression,
        }
    }

    /// The field the cursor is on, if any: (name, byte range).
    pub fn current_field(&self) -> Option<(String, std::ops::Range<usize>)> {
        let s = self.section?;
        fields_in(self.text(s))
            .into_iter()
            .find(|(_, r)| r.start == self.cursor)
    }

    /// Move to the next (or previous) field, across sections; `inclusive` accepts one at the
    /// cursor. Stays put when there is none.
    fn move_to_field(&mut self, forward: bool, inclusive: bool) -> bool {
        let here = (self.section.unwrap_or(Section::Findings), self.cursor);
        let mut all: Vec<(Section, usize)> = Vec::new();
        for s in [Section::Findings, Section::Impression] {
            all.extend(
                fields_in(self.text(s))
                    .into_iter()
                    .map(|(_, r)| (s, r.start)),
            );
        }
        let order = |(s, o): (Section, usize)| (s == Section::Impression, o);
        let target = if forward {
            all.into_iter()
                .filter(|f| order(*f) > order(here) || (inclusive && order(*f) == order(here)))
                .min_by_key(|f| order(*f))
        } else {
            all.into_iter()
                .filter(|f| order(*f) < order(here))
                .max_by_key(|f| order(*f))
        };
        match target {
            Some((s, o)) => {
                self.section = Some(s);
                self.cursor = o;
                true
            }
            None => false,
        }
    }

    /// The radiologist typed in `section`: dictation continues at its end, and "scratch that"
    /// no longer reaches behind the typing (its offsets would be stale).
    pub fn typed(&mut self, section: Section) {
        self.section = Some(section);
        self.cursor = self.text(section).len();
        self.undo.clear();
    }

    /// Put dictated `text` at the cursor, replacing the field there if there is one.
    fn insert(&mut self, text: &str) {
        self.put(text, true);
    }

    /// Put a spoken mark or break at the cursor. It never fills a field (a "." in place of
    /// "[size]" would hide the field from the unfilled-field check); it goes in before it.
    /// It belongs to the insertion it follows, so "scratch that" takes both ("small cyst
    /// period scratch that" removes "small cyst.", not only the mark).
    fn punctuate(&mut self, mark: &str) {
        self.put(mark, false);
    }

    fn put(&mut self, text: &str, fill_field: bool) {
        let s = self.section.unwrap_or(Section::Findings);
        // Never inside a character, whatever happened to the text meanwhile.
        let mut cursor = self.cursor.min(self.text(s).len());
        while !self.text(s).is_char_boundary(cursor) {
            cursor -= 1;
        }
        self.cursor = cursor;
        let field = self.current_field().map(|(_, r)| r).filter(|_| fill_field);
        let (start, replaced) = match field {
            Some(r) => {
                let old = self.text(s)[r.clone()].to_string();
                self.text_mut(s).replace_range(r.clone(), text);
                (r.start, old)
            }
            None => {
                // A space between words, none before punctuation or after a line break.
                let before = self.text(s)[..cursor].chars().last();
                let glue = match (before, text.chars().next()) {
                    (Some(b), Some(t))
                        if !b.is_whitespace()
                            && !matches!(t, '.' | ',' | ':' | ';' | '?' | ')' | '-' | '\n')
                            && b != '('
                            && b != '-' =>
                    {
                        " "
                    }
                    _ => "",
                };
                let piece = format!("{glue}{text}");
                self.text_mut(s).insert_str(cursor, &piece);
                let utterance = self.utterance;
                match self.undo.last_mut() {
                    Some(last)
                        if !fill_field
                            && last.section == s
                            && last.utterance == utterance
                            && last.start + last.inserted.len() == cursor =>
                    {
                        last.inserted.push_str(&piece);
                    }
                    _ => self.undo.push(Insertion {
                        section: s,
                        start: cursor,
                        inserted: piece.clone(),
                        replaced: String::new(),
                        utterance,
                    }),
                }
                self.section = Some(s);
                self.cursor = cursor + piece.len();
                return;
            }
        };
        self.undo.push(Insertion {
            section: s,
            start,
            inserted: text.to_string(),
            replaced,
            utterance: self.utterance,
        });
        self.section = Some(s);
        self.cursor = start + text.len();
    }

    /// Apply dictated pieces. `templates` and `macros` answer "insert template/macro NAME"
    /// (an unknown name is inserted as text, so nothing said is lost).
    pub fn apply(
        &mut self,
        pieces: &[Piece],
        templates: &[Template],
        macros: &BTreeMap<String, String>,
    ) {
        for p in pieces {
            match p {
                Piece::Text(t) => self.insert(t),
                Piece::Punctuation(mark) => self.punctuate(mark),
                Piece::NewLine => self.punctuate("\n"),
                Piece::NewParagraph => self.punctuate("\n\n"),
                Piece::NextField => {
                    self.move_to_field(true, false);
                }
                Piece::PreviousField => {
                    self.move_to_field(false, false);
                }
                Piece::ScratchThat => {
                    if let Some(Insertion {
                        section: s,
                        start,
                        inserted,
                        replaced,
                        ..
                    }) = self.undo.pop()
                    {
                        let end = start + inserted.len();
                        if self.text(s).get(start..end) == Some(inserted.as_str()) {
                            self.text_mut(s).replace_range(start..end, &replaced);
                            self.section = Some(s);
                            self.cursor = start;
                        }
                    }
                }
                Piece::InsertTemplate(_) | Piece::InsertMacro(_) => {
                    let pieces = expand(std::slice::from_ref(p), templates, macros);
                    self.apply(&pieces, templates, macros);
                }
            }
        }
    }
}

/// `pieces` with every "insert template/macro NAME" resolved into what it inserts, as text,
/// followed by the words said after the name, parsed in turn (so each is its own edit: the
/// report panel follows marks through one piece at a time, and one edit spanning the fields
/// between a macro and the text after it would clear the marks in between).
///
/// The name is the longest run of the first words that names a macro (its key exactly, as
/// the panel's buttons give it, first) or a template (by title or id, then by a run of a
/// title's words); nothing named, the words "insert template/macro" are text and the rest
/// is dictated on, commands included.
pub fn expand(
    pieces: &[Piece],
    templates: &[Template],
    macros: &BTreeMap<String, String>,
) -> Vec<Piece> {
    let mut out = Vec::new();
    for p in pieces {
        let (name, found, kind) = match p {
            Piece::InsertMacro(name) => {
                let found = macros
                    .get(name.as_str())
                    .map(|text| (text.clone(), ""))
                    .or_else(|| longest_known(name, |wanted| macros.get(wanted).cloned()));
                (name, found, "macro")
            }
            Piece::InsertTemplate(name) => (name, find_template(name, templates), "template"),
            other => {
                out.push(other.clone());
                continue;
            }
        };
        match found {
            Some((text, rest)) => {
                out.push(Piece::Text(text));
                out.extend(expand(&parse(rest), templates, macros));
            }
            None => {
                out.push(Piece::Text(format!("insert {kind}")));
                out.extend(expand(&parse(name), templates, macros));
            }
        }
    }
    out
}

/// The template named by the first words of `name` (title or id, then a run of a title's
/// words), its findings text, and the words after the name.
fn find_template<'a>(name: &'a str, templates: &[Template]) -> Option<(String, &'a str)> {
    let plain = |t: &str| t.to_lowercase().replace(['-', '/'], " ");
    let text = |t: &Template| t.findings.trim().to_string();
    longest_known(name, |wanted| {
        let wanted = plain(wanted);
        templates
            .iter()
            .find(|t| plain(&t.title) == wanted || plain(&t.id) == wanted)
            .map(text)
    })
    .or_else(|| {
        // A run of a title's words ("insert template abdomen" for "CT abdomen and pelvis"),
        // whole words only, naming one template alone, and not only words every title may
        // hold ("CT", "with", "contrast": "insert template CT neck" must not give CT chest).
        const COMMON: [&str; 12] = [
            "ct", "mr", "mri", "and", "with", "without", "contrast", "of", "the", "a", "an", "or",
        ];
        longest_known(name, |wanted| {
            let wanted: Vec<String> = plain(wanted).split_whitespace().map(String::from).collect();
            if wanted.iter().all(|w| COMMON.contains(&w.as_str())) {
                return None;
            }
            let mut named = templates.iter().filter(|t| {
                let title: Vec<String> = plain(&t.title)
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                title.windows(wanted.len()).any(|w| w == wanted.as_slice())
            });
            match (named.next(), named.next()) {
                (Some(t), None) => Some(text(t)),
                _ => None,
            }
        })
    })
}

/// The longest run of `spoken`'s first words that `known` answers (matched on their bare
/// lower-case forms: "Normal chest." is "normal chest"), and the words after it as said
/// ("normal chest Small nodule, stable." with a macro "normal chest": that macro, then
/// "Small nodule, stable.", which is dictated on). An empty name matches nothing.
fn longest_known<T>(spoken: &str, known: impl Fn(&str) -> Option<T>) -> Option<(T, &str)> {
    let ends: Vec<usize> = spoken
        .match_indices(' ')
        .map(|(at, _)| at)
        .chain([spoken.len()])
        .collect();
    ends.iter().rev().find_map(|&end| {
        let name = bare_words(&spoken[..end]);
        if name.is_empty() {
            return None;
        }
        known(&name).map(|found| (found, spoken[end..].trim()))
    })
}

/// `words` in their bare lower-case forms, one space apart.
fn bare_words(words: &str) -> String {
    words
        .split_whitespace()
        .map(bare)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictation::commands::parse;

    /// An empty draft dictating into the findings.
    fn findings_draft() -> Draft {
        Draft {
            section: Some(Section::Findings),
            ..Draft::default()
        }
    }
    use crate::report::templates;

    #[test]
    fn dictation_fills_fields_in_order_and_scratch_that_undoes() {
        let all = templates();
        let chest = all.iter().find(|t| t.id == "ct-chest").unwrap();
        let mut d = Draft::from_template(chest);
        assert_eq!(d.current_field().unwrap().0, "lungs");
        let macros = BTreeMap::from([(
            "normal nodes".to_string(),
            "No enlarged lymph nodes.".to_string(),
        )]);
        d.apply(
            &parse(
                "A 6 mm nodule in the right upper lobe period Next field. No effusion. Next field.",
            ),
            &all,
            &macros,
        );
        assert!(
            d.findings.starts_with(
                "Lungs and airways: A 6 mm nodule in the right upper lobe.\nPleura: No effusion.\n"
            ),
            "{}",
            d.findings
        );
        assert_eq!(d.current_field().unwrap().0, "mediastinum");
        d.apply(
            &parse("Enlarged heart. Scratch that. Normal heart size."),
            &all,
            &macros,
        );
        assert!(
            d.findings
                .contains("Heart and mediastinum: Normal heart size.\n"),
            "{}",
            d.findings
        );
        d.apply(
            &parse("next field insert macro normal nodes."),
            &all,
            &macros,
        );
        assert!(
            d.findings
                .contains("Lymph nodes: No enlarged lymph nodes.\n"),
            "{}",
            d.findings
        );
        // Back and forth, then on to the impression across the sections.
        d.apply(&parse("previous field"), &all, &macros);
        assert_eq!(d.section, Some(Section::Findings));
        assert!(d.current_field().is_none()); // the nodes field is filled; back goes nowhere new
        d.apply(&parse("next field next field next field"), &all, &macros);
        assert_eq!(d.current_field().unwrap().0, "impression");
        d.apply(
            &parse("Stable nodule. New paragraph. Sign the report."),
            &all,
            &macros,
        );
        assert_eq!(d.impression, "Stable nodule.\n\nSign the report.");
    }

    #[test]
    fn typing_between_dictations_never_splits_a_character() {
        let mut d = findings_draft();
        let none = BTreeMap::new();
        d.apply(&parse("Cyst."), &[], &none);
        assert_eq!(d.cursor, 5);
        // Typed over in the editor: the old cursor (5) now falls inside 'ß'.
        d.findings = "Größe".into();
        d.apply(&parse("stable"), &[], &none);
        assert!(d.findings.starts_with("Gr"), "{}", d.findings);
        assert!(d.findings.contains("stable"));
        // With the editor's notice, dictation goes on at the end, and "scratch that" does not
        // reach behind the typing.
        d.findings = "Liver normal.".into();
        d.typed(Section::Findings);
        d.apply(
            &parse("Spleen normal. Scratch that. Scratch that."),
            &[],
            &none,
        );
        assert_eq!(d.findings, "Liver normal.");
    }

    /// "scratch that" takes back what was said last with the marks said after it; a mark
    /// said on an empty field goes in front of it and leaves it empty (and checked).
    #[test]
    fn scratch_that_takes_the_marks_with_the_words_and_marks_fill_no_field() {
        let all = templates();
        let chest = all.iter().find(|t| t.id == "ct-chest").unwrap();
        let none = BTreeMap::new();
        let mut d = Draft::from_template(chest);
        let empty = d.findings.clone();
        d.apply(&parse("small cyst period"), &all, &none);
        d.apply(&parse("scratch that"), &all, &none);
        assert_eq!(d.findings, empty);
        assert_eq!(d.current_field().unwrap().0, "lungs");
        // Within one utterance, and for a plain insertion as well as a filled field.
        d.apply(
            &parse("Clear next field no effusion comma small cyst period scratch that"),
            &all,
            &none,
        );
        assert!(
            d.findings
                .starts_with("Lungs and airways: Clear\nPleura: no effusion,\n"),
            "{}",
            d.findings
        );
        // A mark said in a later utterance is its own: scratched alone.
        let mut d = findings_draft();
        d.apply(&parse("No effusion"), &all, &none);
        d.next_utterance();
        d.apply(&parse("comma"), &all, &none);
        d.next_utterance();
        d.apply(&parse("scratch that"), &all, &none);
        assert_eq!(d.findings, "No effusion");
        let mut d = Draft::from_template(chest);
        d.apply(&parse("comma"), &all, &none);
        assert_eq!(d.current_field().unwrap().0, "lungs");
        d.apply(&parse("Clear."), &all, &none);
        assert!(
            d.findings.starts_with("Lungs and airways: ,Clear."),
            "{}",
            d.findings
        );
    }

    /// A macro or template named by its first words, with dictation after it: the longest
    /// known name wins and the rest is kept as text. An empty name matches nothing.
    #[test]
    fn the_longest_known_name_is_inserted_and_the_rest_kept() {
        let all = templates();
        let macros = BTreeMap::from([
            ("normal".to_string(), "Normal.".to_string()),
            ("normal chest".to_string(), "Normal chest.".to_string()),
        ]);
        let mut d = findings_draft();
        d.apply(
            &[Piece::InsertMacro("normal chest small effusion".into())],
            &all,
            &macros,
        );
        assert_eq!(d.findings, "Normal chest. small effusion");
        let mut d = findings_draft();
        d.apply(&[Piece::InsertTemplate(String::new())], &all, &macros);
        assert_eq!(d.findings, "insert template");
        // As parsed from speech: the name's words as said; what follows the macro is
        // dictated on, commands included, with its case and punctuation.
        let chest = all.iter().find(|t| t.id == "ct-chest").unwrap();
        let mut d = Draft::from_template(chest);
        d.apply(
            &parse("Insert macro normal chest next field Small effusion, left."),
            &all,
            &macros,
        );
        assert!(
            d.findings
                .starts_with("Lungs and airways: Normal chest.\nPleura: Small effusion, left.\n"),
            "{}",
            d.findings
        );
        // A name that names nothing: the words are text, the commands after it still act.
        let mut d = Draft::from_template(chest);
        d.apply(
            &parse("insert macro foo bar next field no effusion"),
            &all,
            &macros,
        );
        assert!(
            d.findings
                .starts_with("Lungs and airways: insert macro foo bar\nPleura: no effusion\n"),
            "{}",
            d.findings
        );
        // A run of a title's words, then dictation.
        let pieces = expand(
            &parse("insert template abdomen next field no free fluid"),
            &all,
            &macros,
        );
        let abdomen = all
            .iter()
            .find(|t| t.title.to_lowercase().contains("abdomen"))
            .unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text(abdomen.findings.trim().to_string()),
                Piece::NextField,
                Piece::Text("no free fluid".into()),
            ]
        );
        // A modality word alone names no template: "CT neck" is text, not CT chest.
        let pieces = expand(&parse("insert template CT neck"), &all, &macros);
        assert_eq!(
            pieces,
            vec![
                Piece::Text("insert template".into()),
                Piece::Text("CT neck".into())
            ]
        );
        // A name that is a command word elsewhere.
        let colon = BTreeMap::from([("colon".to_string(), "Colon unremarkable.".to_string())]);
        let mut d = findings_draft();
        d.apply(&parse("insert macro colon."), &all, &colon);
        assert_eq!(d.findings, "Colon unremarkable.");
        let mut d = findings_draft();
        d.apply(&[Piece::InsertTemplate("ct chest".into())], &all, &macros);
        let chest = all.iter().find(|t| t.id == "ct-chest").unwrap();
        assert!(
            d.findings.ends_with(chest.findings.trim()),
            "{}",
            d.findings
        );
    }
}
