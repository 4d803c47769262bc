//! Voice commands in dictated text. A transcript is split into text to insert and commands:
//! "next field", "previous field", "new paragraph", "new line", punctuation words ("period",
//! "full stop", "comma", "colon", "semicolon", "question mark", "hyphen", "open/close
//! parenthesis"), "scratch that" (undo the last dictated insertion), and "insert template X" /
//! "insert macro X". Commands are matched on whole words, ignoring case and the punctuation
//! whisper puts around them ("Next field." is the command). There is no command to sign: a
//! report is signed only by the radiologist's own hand in the report panel.

/// One piece of a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text to insert, as whisper wrote it (trimmed).
    Text(String),
    NextField,
    PreviousField,
    NewParagraph,
    NewLine,
    /// A punctuation mark said as a word; it attaches to the text before it.
    Punctuation(&'static str),
    ScratchThat,
    InsertTemplate(String),
    InsertMacro(String),
}

const PHRASES: [(&[&str], Piece); 14] = [
    (&["next", "field"], Piece::NextField),
    (&["previous", "field"], Piece::PreviousField),
    (&["new", "paragraph"], Piece::NewParagraph),
    (&["new", "line"], Piece::NewLine),
    (&["scratch", "that"], Piece::ScratchThat),
    (&["full", "stop"], Piece::Punctuation(".")),
    (&["period"], Piece::Punctuation(".")),
    (&["comma"], Piece::Punctuation(",")),
    (&["colon"], Piece::Punctuation(":")),
    (&["semicolon"], Piece::Punctuation(";")),
    (&["question", "mark"], Piece::Punctuation("?")),
    (&["hyphen"], Piece::Punctuation("-")),
    (&["open", "parenthesis"], Piece::Punctuation("(")),
    (&["close", "parenthesis"], Piece::Punctuation(")")),
];

/// "colon" and "period" are also words radiologists say ("the sigmoid colon", "the
/// postoperative period"): after these they are words, not punctuation.
fn is_a_word_here(phrase: &[&str], previous: Option<&str>) -> bool {
    const BEFORE_COLON: [&str; 14] = [
        "the",
        "a",
        "sigmoid",
        "transverse",
        "ascending",
        "descending",
        "rectosigmoid",
        "right",
        "left",
        "distal",
        "proximal",
        "normal",
        "entire",
        "redundant",
    ];
    const BEFORE_PERIOD: [&str; 13] = [
        "the",
        "a",
        "this",
        "that",
        "postoperative",
        "postpartum",
        "perioperative",
        "interval",
        "recovery",
        "follow",
        "up",
        "short",
        "long",
    ];
    match (phrase, previous) {
        (["colon"], Some(p)) => BEFORE_COLON.contains(&p),
        (["period"], Some(p)) => BEFORE_PERIOD.contains(&p),
        _ => false,
    }
}

/// A word's bare lower-case form: what commands and names are matched on ("Chest." is
/// "chest").
pub fn bare(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// A word of the transcript: its text as written and its bare lower-case form.
struct Word<'a> {
    text: &'a str,
    bare: String,
}

/// Split `transcript` into text and commands, in order.
pub fn parse(transcript: &str) -> Vec<Piece> {
    let words: Vec<Word> = transcript
        .split_whitespace()
        .map(|w| Word {
            text: w,
            bare: bare(w),
        })
        .collect();
    let mut out = Vec::new();
    let mut text: Vec<&str> = Vec::new();
    let flush = |text: &mut Vec<&str>, out: &mut Vec<Piece>, before_punctuation: bool| {
        if text.is_empty() {
            return;
        }
        let mut joined = text.join(" ");
        if before_punctuation {
            // Whisper's own punctuation before a spoken mark ("normal, period") goes; before
            // other commands ("No effusion. Next field.") it is the radiologist's sentence.
            let trimmed = joined.trim_end_matches([',', '.', ';', ':']).to_string();
            joined = trimmed;
        }
        if joined.chars().any(char::is_alphanumeric) {
            out.push(Piece::Text(joined));
        }
        text.clear();
    };
    let mut i = 0;
    while i < words.len() {
        // "insert template NAME" / "insert macro NAME": the name runs to the end of the
        // sentence (the word that carries whisper's '.', or the end).
        if words[i].bare == "insert"
            && let Some(kind) = words.get(i + 1).map(|w| w.bare.as_str())
            && (kind == "template" || kind == "macro")
        {
            // The words are kept as said: the draft matches the longest known name among
            // their first words and dictates the rest ("insert macro normal chest next field
            // no effusion": the macro, then a field change, then text), so a name may hold
            // words that are commands elsewhere ("insert macro colon").
            let mut j = i + 2;
            let mut name = Vec::new();
            while let Some(w) = words.get(j) {
                if !w.bare.is_empty() {
                    name.push(w.text);
                }
                j += 1;
                if w.text.ends_with(['.', '!', '?']) {
                    break;
                }
            }
            if !name.is_empty() {
                flush(&mut text, &mut out, false);
                let name = name.join(" ");
                out.push(if kind == "template" {
                    Piece::InsertTemplate(name)
                } else {
                    Piece::InsertMacro(name)
                });
                i = j;
                continue;
            }
        }
        if let Some((phrase, piece)) = command_at(&words, i) {
            flush(&mut text, &mut out, matches!(piece, Piece::Punctuation(_)));
            out.push(piece.clone());
            i += phrase.len();
            continue;
        }
        text.push(words[i].text);
        i += 1;
    }
    flush(&mut text, &mut out, false);
    out
}

/// The command phrase that starts at word `i`, if any.
fn command_at<'p>(words: &[Word], i: usize) -> Option<&'p (&'static [&'static str], Piece)> {
    PHRASES.iter().find(|(phrase, _)| {
        phrase.len() <= words.len() - i
            && phrase
                .iter()
                .zip(&words[i..])
                .all(|(p, w)| *p == w.bare.as_str())
            && !is_a_word_here(phrase, i.checked_sub(1).map(|p| words[p].bare.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.into())
    }

    #[test]
    fn commands_are_found_among_the_words() {
        assert_eq!(
            parse("The liver is normal. Next field. Spleen normal, period. New paragraph."),
            vec![
                text("The liver is normal."),
                Piece::NextField,
                text("Spleen normal"),
                Piece::Punctuation("."),
                Piece::NewParagraph,
            ]
        );
        assert_eq!(
            parse("small cyst, scratch that. Insert macro normal chest. Previous field"),
            vec![
                text("small cyst,"),
                Piece::ScratchThat,
                Piece::InsertMacro("normal chest.".into()),
                Piece::PreviousField,
            ]
        );
        assert_eq!(
            parse(
                "insert template CT head. L4 hyphen L5 disc open parenthesis mild close parenthesis"
            ),
            vec![
                Piece::InsertTemplate("CT head.".into()),
                text("L4"),
                Piece::Punctuation("-"),
                text("L5 disc"),
                Piece::Punctuation("("),
                text("mild"),
                Piece::Punctuation(")"),
            ]
        );
    }

    #[test]
    fn colon_and_period_stay_words_where_they_are_anatomy_or_time() {
        assert_eq!(
            parse("Diverticulosis of the sigmoid colon."),
            vec![text("Diverticulosis of the sigmoid colon.")]
        );
        assert_eq!(
            parse("No collection in the postoperative period."),
            vec![text("No collection in the postoperative period.")]
        );
        assert_eq!(
            parse("Impression colon no acute findings period"),
            vec![
                text("Impression"),
                Piece::Punctuation(":"),
                text("no acute findings"),
                Piece::Punctuation("."),
            ]
        );
    }

    /// A macro or template name runs to the sentence's end, as said (whisper often writes
    /// no full stop after it); the draft finds the name in it and dictates the rest.
    #[test]
    fn a_name_is_kept_as_said_to_the_sentence_end() {
        assert_eq!(
            parse("insert macro normal chest next field Small nodule, stable."),
            vec![Piece::InsertMacro(
                "normal chest next field Small nodule, stable.".into()
            )]
        );
        assert_eq!(
            parse("Insert macro colon. Next field"),
            vec![Piece::InsertMacro("colon.".into()), Piece::NextField]
        );
        // Nothing nameable after it: the words stay text.
        assert_eq!(parse("insert macro ..."), vec![text("insert macro ...")]);
    }

    #[test]
    fn signing_is_never_a_voice_command() {
        assert_eq!(parse("Sign the report."), vec![text("Sign the report.")]);
        assert_eq!(parse("sign and send"), vec![text("sign and send")]);
    }
}
