//! The report as a PDF for the referring physician (pdf-writer; the PDF base fonts Helvetica
//! and Helvetica-Bold, nothing embedded but key images).
//!
//! Layout (A4): a header with the patient, the referral and the studies read; the findings and
//! the impression; optional key images (grey PNGs, two a row); the signature block (signer,
//! signing time, key id, the report's sha256, where the server received it); on every page a
//! footer with the case, the patient (name, birth date, record number), the short hash and
//! "page n of N". Text is wrapped by the fonts' own
//! widths (Adobe's AFM metrics) and set in WinAnsiEncoding, spaces as typed; a report holds only
//! characters it has (`case_protocol::printable`, as do the case's fields); a study description
//! read from the images is transliterated where it holds others; anything else it lacks (a
//! report received before those rules) prints as '?'.

use case_protocol::{Patient, Referral, Report, ReportKind};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// A grey key image (8-bit, row-major).
#[derive(Debug, Clone)]
pub struct KeyImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    pub caption: String,
}

impl KeyImage {
    /// The cell of a key image whose stored copy could not be read or decoded: a light grey
    /// square, its caption saying so.
    pub fn unavailable(caption: &str) -> KeyImage {
        KeyImage {
            width: 4,
            height: 3,
            pixels: vec![230; 12],
            caption: format!("{caption} (image unavailable: its stored copy could not be read)"),
        }
    }

    /// Decode a PNG (grey or colour, 8 or 16 bits) to 8-bit grey.
    pub fn from_png(bytes: &[u8], caption: &str) -> Result<KeyImage, String> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
        let size = reader
            .output_buffer_size()
            .ok_or("PNG too large to decode")?;
        if size > 64 << 20 {
            return Err("PNG larger than 64 MB decoded".into());
        }
        let mut buf = vec![0u8; size];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| format!("PNG: {e}"))?;
        let channels = info.color_type.samples();
        let pixels = buf[..info.buffer_size()]
            .chunks_exact(channels)
            .map(|p| match channels {
                1 | 2 => p[0],
                _ => {
                    ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000)
                        as u8
                }
            })
            .collect();
        Ok(KeyImage {
            width: info.width,
            height: info.height,
            pixels,
            caption: caption.to_string(),
        })
    }
}

/// One study read, as the header lists it.
#[derive(Debug, Clone)]
pub struct StudyLine {
    pub uid: String,
    pub date: String,
    pub modality: String,
    pub description: String,
}

/// Everything the document shows.
#[derive(Debug)]
pub struct ReportDocument<'a> {
    pub case_id: &'a str,
    pub patient: &'a Patient,
    pub referral: &'a Referral,
    pub studies: &'a [StudyLine],
    pub report: &'a Report,
    pub report_hash: &'a str,
    pub received_at: &'a str,
    /// The report this one amends (addenda), by hash.
    pub amends: Option<&'a str>,
    pub key_images: &'a [KeyImage],
}

impl ReportDocument<'_> {
    /// The key images this document prints: a final report's (an addendum's PDF does not
    /// print them again).
    fn printed_key_images(&self) -> &[KeyImage] {
        match self.report.kind {
            ReportKind::Final => self.key_images,
            ReportKind::Addendum { .. } => &[],
        }
    }
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN;
const BOTTOM: f32 = 70.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Font {
    Regular,
    Bold,
}

/// Advance widths (1/1000 em) of WinAnsi 32..=126, Adobe Helvetica AFM.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// Advance widths of WinAnsi 32..=126, Adobe Helvetica-Bold AFM.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667,
    611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556,
    278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
];

/// Advance widths of WinAnsi 128..=255, Adobe Helvetica AFM (Core14 metrics, by glyph name
/// through the WinAnsi encoding; codes WinAnsi leaves undefined are never produced).
const HELVETICA_HIGH: [u16; 128] = [
    556, 350, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350, 350, 222,
    222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 350, 500, 667, 278, 333, 556, 556,
    556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333, 400, 584, 333, 333, 333, 556, 537,
    278, 333, 333, 365, 556, 834, 834, 834, 611, 667, 667, 667, 667, 667, 667, 1000, 722, 667, 667,
    667, 667, 278, 278, 278, 278, 722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722,
    667, 667, 611, 556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500,
];

/// Advance widths of WinAnsi 128..=255, Adobe Helvetica-Bold AFM.
const HELVETICA_BOLD_HIGH: [u16; 128] = [
    556, 350, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 350, 611, 350, 350, 278,
    278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 350, 500, 667, 278, 333, 556, 556,
    556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333, 400, 584, 333, 333, 333, 611, 556,
    278, 333, 333, 365, 556, 834, 834, 834, 611, 722, 722, 722, 722, 722, 722, 1000, 722, 667, 667,
    667, 667, 278, 278, 278, 278, 722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722,
    667, 667, 611, 556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278,
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556,
];

/// A character in WinAnsiEncoding, else '?' (reports received before the protocol refused
/// unprintable characters; case fields typed at intake).
fn win_ansi(c: char) -> u8 {
    case_protocol::printable::win_ansi(c).unwrap_or(b'?')
}

/// Text read from the images (a study's description, in whatever character set the scanner
/// wrote) as the PDF can print it: composed (NFC), then each character WinAnsi lacks is
/// transliterated (deunicode: "КТ грудной клетки" -> "KT grudnoi kletki", "头部" -> "Tou
/// Bu") and the text says so ("[transliterated]"), never a silent '?'. A character with no
/// transliteration is written as its code point ("U+E000").
fn from_the_images(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    // Composed first: "a" and a combining diaeresis is "ä", which WinAnsi has.
    let text: String = text.nfc().collect();
    let mut out = String::with_capacity(text.len());
    let mut transliterated = false;
    // The last space came with a transliteration (a syllable of a script written without
    // spaces, "Tou "): a space of the text after it is not doubled.
    let mut soft_space = false;
    for c in text.chars() {
        if case_protocol::printable::win_ansi(c).is_some() {
            if !(c == ' ' && soft_space) {
                out.push(c);
            }
            soft_space = false;
            continue;
        }
        transliterated = true;
        match deunicode::deunicode_char(c) {
            Some(latin)
                if !latin.trim().is_empty()
                    && latin
                        .chars()
                        .all(|l| case_protocol::printable::win_ansi(l).is_some()) =>
            {
                out.push_str(latin);
                soft_space = latin.ends_with(' ');
            }
            _ => {
                out.push_str(&format!("U+{:04X}", u32::from(c)));
                soft_space = false;
            }
        }
    }
    if transliterated {
        out.truncate(out.trim_end().len());
        out.push_str(" [transliterated]");
    }
    out
}

fn width_pt(text: &str, font: Font, size: f32) -> f32 {
    let units: u32 = text.chars().map(|c| char_units(c, font)).sum();
    units as f32 * size / 1000.0
}

/// A character's advance in `font`, thousandths of the font size (AFM widths).
fn char_units(c: char, font: Font) -> u32 {
    let (low, high) = match font {
        Font::Regular => (&HELVETICA, &HELVETICA_HIGH),
        Font::Bold => (&HELVETICA_BOLD, &HELVETICA_BOLD_HIGH),
    };
    let b = win_ansi(c);
    u32::from(match b {
        32..=126 => low[usize::from(b - 32)],
        128..=255 => high[usize::from(b - 128)],
        _ => 556,
    })
}

/// Words into lines no wider than `max` points (a word longer than a line is cut). Spaces are
/// kept as typed (a run of them, an indent), except where a line breaks; a tab is a space.
fn wrap(text: &str, font: Font, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let text = text.replace('\r', "").replace('\t', " ");
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut rest = paragraph;
        // Whether `line` is the paragraph's first (its leading spaces are an indent).
        let mut first = true;
        while !rest.is_empty() {
            let word_at = rest.find(|c| c != ' ').unwrap_or(rest.len());
            let (gap, after) = rest.split_at(word_at);
            let word_end = after.find(' ').unwrap_or(after.len());
            let (word, after) = after.split_at(word_end);
            rest = after;
            if word.is_empty() {
                break; // trailing spaces print nothing
            }
            let candidate = if line.is_empty() && !first {
                word.to_string()
            } else {
                format!("{line}{gap}{word}")
            };
            if width_pt(&candidate, font, size) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            first = false;
            // Cut into the longest pieces that fit (at least a character each), adding up the
            // characters' widths once: measuring every prefix again cost the cube of the
            // word's length (a pasted token of 20,000 characters held delivery for minutes).
            let mut rest = word;
            loop {
                let cut = fitting(rest, max, font, size);
                if cut == rest.len() {
                    break;
                }
                lines.push(rest[..cut].to_string());
                rest = &rest[cut..];
            }
            line = rest.to_string();
        }
        lines.push(line);
    }
    lines
}

/// What goes on a page, in page coordinates.
enum Op {
    Text {
        x: f32,
        y: f32,
        font: Font,
        size: f32,
        text: String,
    },
    Rule {
        y: f32,
    },
    Image {
        index: usize,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Layout {
    fn new() -> Layout {
        Layout {
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
        }
    }
    fn need(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.pages.push(Vec::new());
            self.y = PAGE_H - MARGIN;
        }
    }
    fn push(&mut self, op: Op) {
        if let Some(p) = self.pages.last_mut() {
            p.push(op);
        }
    }
    fn line(&mut self, x: f32, font: Font, size: f32, text: &str) {
        let lead = size * 1.35;
        self.need(lead);
        self.y -= lead;
        let y = self.y;
        self.push(Op::Text {
            x,
            y,
            font,
            size,
            text: text.to_string(),
        });
    }
    fn paragraph(&mut self, font: Font, size: f32, text: &str) {
        for l in wrap(text, font, size, TEXT_W) {
            self.line(MARGIN, font, size, &l);
        }
    }
    fn label_value(&mut self, label: &str, value: &str) {
        let size = 10.0;
        let indent = 110.0;
        let lines = wrap(value, Font::Regular, size, TEXT_W - indent);
        for (i, l) in lines.iter().enumerate() {
            self.line(MARGIN + indent, Font::Regular, size, l);
            if i == 0 {
                let y = self.y;
                self.push(Op::Text {
                    x: MARGIN,
                    y,
                    font: Font::Bold,
                    size,
                    text: label.to_string(),
                });
            }
        }
    }
    fn heading(&mut self, text: &str) {
        self.need(40.0);
        self.y -= 8.0;
        self.line(MARGIN, Font::Bold, 12.0, text);
    }
    fn rule(&mut self) {
        self.need(10.0);
        self.y -= 6.0;
        let y = self.y;
        self.push(Op::Rule { y });
    }
}

fn dash_date(da: &str) -> String {
    if da.len() == 8 && da.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &da[0..4], &da[4..6], &da[6..8])
    } else {
        da.to_string()
    }
}

fn lay_out(doc: &ReportDocument<'_>) -> Layout {
    let mut l = Layout::new();
    let r = doc.report;
    let title = match &r.kind {
        ReportKind::Final => "Second-opinion radiology report",
        ReportKind::Addendum { .. } => "Addendum to a second-opinion radiology report",
    };
    l.line(MARGIN, Font::Bold, 16.0, title);
    l.line(
        MARGIN,
        Font::Regular,
        9.0,
        &format!("Overread case {}", doc.case_id),
    );
    l.rule();
    let p = doc.patient;
    l.label_value("Patient", &p.name.replace('^', ", "));
    l.label_value(
        "Date of birth",
        if p.birth_date.trim().is_empty() {
            "not given"
        } else {
            &p.birth_date
        },
    );
    l.label_value("Sex", &p.sex);
    l.label_value("Record number", &p.id);
    let physician = &doc.referral.physician;
    let mut referred = physician.name.clone();
    if let Some(inst) = &physician.institution {
        referred += &format!(", {inst}");
    }
    l.label_value("Referred by", &referred);
    l.label_value("Fax", &physician.fax);
    l.label_value("Clinical question", &doc.referral.clinical_question);
    for s in doc.studies {
        let mut text = format!("{} {}", s.modality, dash_date(&s.date))
            .trim()
            .to_string();
        if !s.description.is_empty() {
            text += &format!(", {}", from_the_images(&s.description));
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text += &format!("(Study Instance UID {})", s.uid);
        l.label_value("Study", &text);
    }
    if let Some(amends) = doc.amends {
        l.label_value("Amends report", amends);
    }
    l.rule();
    let addendum = matches!(r.kind, ReportKind::Addendum { .. });
    // An addendum is what the radiologist wrote under "Addendum" and "Revised impression
    // (optional)": printed under those names, and an impression left empty is said to stand
    // (a blank "Impression" read as withdrawn).
    l.heading(if addendum { "Addendum" } else { "Findings" });
    l.paragraph(Font::Regular, 11.0, &r.findings);
    if !r.measurements.is_empty() {
        l.heading("Measurements");
        for m in &r.measurements {
            l.paragraph(
                Font::Regular,
                10.0,
                &format!(
                    "• {}: {} {} ({})",
                    m.label,
                    // As signed, not rounded (a 0.04 mm² area signed printed as "0").
                    case_protocol::canonical::number_text(m.value),
                    m.unit,
                    m.kind
                ),
            );
        }
    }
    if addendum && r.impression.trim().is_empty() {
        l.heading("Impression");
        l.paragraph(
            Font::Regular,
            11.0,
            "Unchanged: the impression of the report amended stands.",
        );
    } else {
        l.heading(if addendum {
            "Revised impression"
        } else {
            "Impression"
        });
        l.paragraph(Font::Bold, 11.0, &r.impression);
    }
    // The signature block stays on one page.
    l.need(130.0);
    l.rule();
    l.heading("Electronically signed");
    l.label_value(
        "Signed by",
        &format!("{} ({})", r.author.display_name, r.author.user_id),
    );
    l.label_value("Signed at", &utc_text(&r.signed_at));
    l.label_value("Signing key", &r.key_id);
    l.label_value("Report sha256", doc.report_hash);
    l.label_value(
        "Received",
        &format!("{} by the Overread case server", utc_text(doc.received_at)),
    );
    l.paragraph(
        Font::Regular,
        8.0,
        "The signature covers the canonical text of this report (case-protocol version 1); its sha256 above identifies it. Any change makes a new report with a new hash.",
    );
    // Key images go with the final report only (an addendum does not print them again), after
    // the signature: they are not in the signed text, and say so.
    if !doc.printed_key_images().is_empty() {
        l.heading("Key images");
        l.paragraph(
            Font::Regular,
            8.0,
            "Chosen by the reading radiologist for this case; not part of the signed text above.",
        );
        let cell_w = (TEXT_W - 16.0) / 2.0;
        let caption_lead = 8.0 * 1.35;
        for (row, pair) in doc.printed_key_images().chunks(2).enumerate() {
            let h = pair
                .iter()
                .map(|k| cell_w * k.height as f32 / k.width.max(1) as f32)
                .fold(0.0f32, f32::max)
                .min(300.0);
            // Each caption wrapped to its cell, whole.
            let captions: Vec<Vec<String>> = pair
                .iter()
                .map(|k| wrap(&k.caption, Font::Regular, 8.0, cell_w))
                .collect();
            let caption_h = captions.iter().map(Vec::len).max().unwrap_or(0) as f32 * caption_lead;
            l.need(h + caption_h + 12.0);
            l.y -= h + 6.0;
            for (col, k) in pair.iter().enumerate() {
                let scale = (cell_w / k.width.max(1) as f32).min(h / k.height.max(1) as f32);
                let (w, ih) = (k.width as f32 * scale, k.height as f32 * scale);
                let x = MARGIN + col as f32 * (cell_w + 16.0);
                let y = l.y;
                l.push(Op::Image {
                    index: row * 2 + col,
                    x,
                    y: y + (h - ih),
                    w,
                    h: ih,
                });
                for (n, text) in captions[col].iter().enumerate() {
                    l.push(Op::Text {
                        x,
                        y: y - caption_lead * (n as f32 + 1.0),
                        font: Font::Regular,
                        size: 8.0,
                        text: text.clone(),
                    });
                }
            }
            l.y -= caption_h + 6.0;
        }
    }
    l
}

fn encode(text: &str) -> Vec<u8> {
    text.chars().map(win_ansi).collect()
}

/// The PDF bytes of `doc`.
pub fn render_pdf(doc: &ReportDocument<'_>) -> Vec<u8> {
    let layout = lay_out(doc);
    let n_pages = layout.pages.len();
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let mut next = 6;
    let mut alloc = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    let key_images = doc.printed_key_images();
    let image_refs: Vec<Ref> = key_images.iter().map(|_| alloc()).collect();
    let page_refs: Vec<(Ref, Ref)> = (0..n_pages).map(|_| (alloc(), alloc())).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_refs.iter().map(|(p, _)| *p))
        .count(n_pages as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&format!("Overread report, case {}", doc.case_id)))
        .producer(TextStr("Overread case server"));
    for (k, r) in key_images.iter().zip(&image_refs) {
        let data = {
            use std::io::Write;
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = z.write_all(&k.pixels);
            z.finish().unwrap_or_default()
        };
        let mut image = pdf.image_xobject(*r, &data);
        image.filter(Filter::FlateDecode);
        image.width(k.width as i32);
        image.height(k.height as i32);
        image.color_space().device_gray();
        image.bits_per_component(8);
        image.finish();
    }
    let short_hash: String = doc.report_hash.chars().take(16).collect();
    for (i, (ops, (page_ref, content_ref))) in layout.pages.iter().zip(&page_refs).enumerate() {
        let mut page = pdf.page(*page_ref);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(*content_ref);
        let mut resources = page.resources();
        resources
            .fonts()
            .pair(Name(b"F1"), regular)
            .pair(Name(b"F2"), bold);
        let names: Vec<String> = (0..image_refs.len()).map(|i| format!("Im{i}")).collect();
        {
            let mut x = resources.x_objects();
            for (name, r) in names.iter().zip(&image_refs) {
                x.pair(Name(name.as_bytes()), *r);
            }
        }
        resources.finish();
        page.finish();
        let mut c = Content::new();
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    font,
                    size,
                    text,
                } => {
                    let f = match font {
                        Font::Regular => Name(b"F1"),
                        Font::Bold => Name(b"F2"),
                    };
                    c.begin_text();
                    c.set_font(f, *size);
                    c.next_line(*x, *y);
                    c.show(Str(&encode(text)));
                    c.end_text();
                }
                Op::Rule { y } => {
                    c.set_line_width(0.5);
                    c.move_to(MARGIN, *y);
                    c.line_to(PAGE_W - MARGIN, *y);
                    c.stroke();
                }
                Op::Image { index, x, y, w, h } => {
                    c.save_state();
                    c.transform([*w, 0.0, 0.0, *h, *x, *y]);
                    c.x_object(Name(names[*index].as_bytes()));
                    c.restore_state();
                }
            }
        }
        let [patient_line, report_line] = footer(doc, &short_hash, i + 1, n_pages);
        for (line, y) in [(patient_line, 46.0), (report_line, 36.0)] {
            c.begin_text();
            c.set_font(Name(b"F1"), 8.0);
            c.next_line(MARGIN, y);
            c.show(Str(&encode(&line)));
            c.end_text();
        }
        pdf.stream(*content_ref, &c.finish());
    }
    pdf.finish()
}

/// A page's footer, two lines: the patient (name, birth date, record number: a faxed page
/// that comes apart from the first still says whose it is), then the case, the report and the
/// page. The patient has the first line to themselves: a record number longer than 40
/// characters is cut, and a name too long for the rest of the line, each said with "…".
fn footer(doc: &ReportDocument<'_>, short_hash: &str, page: usize, pages: usize) -> [String; 2] {
    let p = doc.patient;
    let record: String = if p.id.chars().count() > 40 {
        p.id.chars().take(39).collect::<String>() + "…"
    } else {
        p.id.clone()
    };
    let born = if p.birth_date.trim().is_empty() {
        "birth date not given".to_string()
    } else {
        format!("born {}", p.birth_date)
    };
    let patient = |name: &str| format!("Patient {name} · {born} · record {record}");
    let name = p.name.split('=').next().unwrap_or("").replace('^', ", ");
    let room = PAGE_W - 2.0 * MARGIN - width_pt(&patient(""), Font::Regular, 8.0);
    [
        patient(&fitted(&name, room, Font::Regular, 8.0)),
        format!(
            "Overread case {} · report {short_hash}… · page {page} of {pages}",
            doc.case_id
        ),
    ]
}

/// An RFC 3339 UTC time as the report prints it: "2026-11-25 09:59:00 UTC" (the zone said);
/// as given where it does not read as one.
fn utc_text(rfc3339: &str) -> String {
    match case_protocol::parse_rfc3339_utc(rfc3339) {
        Some(t) => case_protocol::rfc3339_utc(t)
            .replace('T', " ")
            .replace('Z', " UTC"),
        None => rfc3339.to_string(),
    }
}

/// `text` if it is no wider than `room` points, else its longest beginning that fits with
/// "…" after it (one pass over the characters' widths); at least one character.
fn fitted(text: &str, room: f32, font: Font, size: f32) -> String {
    if width_pt(text, font, size) <= room {
        return text.to_string();
    }
    let cut = fitting(text, room - width_pt("…", font, size), font, size);
    format!("{}…", &text[..cut])
}

/// How much of `text` (in bytes, at a character's end) fits in `room` points: its longest
/// beginning no wider, at least one character; the whole of it where it fits. One pass over
/// the characters' widths (measuring every beginning again cost the cube of a word's length).
fn fitting(text: &str, room: f32, font: Font, size: f32) -> usize {
    let mut units = 0u32;
    for (i, c) in text.char_indices() {
        units += char_units(c, font);
        if i > 0 && units as f32 * size / 1000.0 > room {
            return i;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patient DOE^JANE (born 1960-01-01, record number `id`) and her referral.
    fn people(id: &str) -> (Patient, Referral) {
        let patient = Patient {
            name: "DOE^JANE".into(),
            id: id.into(),
            birth_date: "1960-01-01".into(),
            sex: "F".into(),
        };
        let referral = Referral {
            physician: case_protocol::ReferringPhysician {
                name: "Dr Ref".into(),
                fax: "+14165550100".into(),
                institution: None,
            },
            clinical_question: "Nodule?".into(),
            document_sha256: None,
        };
        (patient, referral)
    }

    /// The text lines a document lays out, in order, and how many images.
    fn laid_out(report: &Report, key_images: &[KeyImage]) -> (Vec<String>, usize) {
        let (patient, referral) = people("123");
        let doc = ReportDocument {
            case_id: "C-1",
            patient: &patient,
            referral: &referral,
            studies: &[],
            report,
            report_hash: "ab12",
            received_at: "2026-11-25T10:00:00Z",
            amends: None,
            key_images,
        };
        let layout = lay_out(&doc);
        let mut texts = Vec::new();
        let mut images = 0;
        for op in layout.pages.iter().flatten() {
            match op {
                Op::Text { text, .. } => texts.push(text.clone()),
                Op::Image { .. } => images += 1,
                _ => {}
            }
        }
        (texts, images)
    }

    fn report(kind: ReportKind, findings: &str, impression: &str) -> Report {
        Report {
            case_id: "C-1".into(),
            kind,
            author: case_protocol::Author {
                user_id: "rad1".into(),
                display_name: "Dr One".into(),
            },
            key_id: "k".into(),
            signed_at: "2026-11-25T09:59:00Z".into(),
            study_instance_uids: vec!["1.2.3".into()],
            findings: findings.into(),
            impression: impression.into(),
            measurements: Vec::new(),
        }
    }

    /// Every page says whose it is (a faxed page that comes apart from the first): the
    /// patient's name, birth date and record number in each page's footer.
    #[test]
    fn every_page_names_the_patient() {
        let (patient, referral) = people("MRN-123");
        let long = "The liver is normal in size. ".repeat(40);
        let findings = vec![long; 12].join("\n\n");
        let r = report(ReportKind::Final, &findings, "No acute finding.");
        let doc = ReportDocument {
            case_id: "C-1",
            patient: &patient,
            referral: &referral,
            studies: &[],
            report: &r,
            report_hash: "ab12",
            received_at: "2026-11-25T10:00:00Z",
            amends: None,
            key_images: &[],
        };
        let pages = lay_out(&doc).pages.len();
        assert!(pages >= 3, "{pages} pages");
        let pdf = render_pdf(&doc);
        // Written as a hex string (it holds bytes beyond ASCII: the middle dots).
        let patient_line: Vec<u8> = encode("Patient DOE, JANE · born 1960-01-01 · record MRN-123")
            .iter()
            .flat_map(|b| format!("{b:02X}").into_bytes())
            .collect();
        let found = pdf
            .windows(patient_line.len())
            .filter(|w| *w == patient_line)
            .count();
        assert_eq!(found, pages);
        // With identifiers as long as real ones (a case id of 14, a report hash shown by 16
        // hex digits, a record number of 18), a full name is printed whole.
        let mut real = patient.clone();
        real.name = "JOHNSON^ELIZABETH^ANNE".into();
        real.id = "MRN-2026-000481516".into();
        let long_ids = ReportDocument {
            case_id: "C-7F3A9B2C1D4E",
            patient: &real,
            ..doc
        };
        let [patient_line, report_line] = footer(&long_ids, "9f86d081884c7d65", 12, 12);
        assert_eq!(
            patient_line,
            "Patient JOHNSON, ELIZABETH, ANNE · born 1960-01-01 · record MRN-2026-000481516"
        );
        assert_eq!(
            report_line,
            "Overread case C-7F3A9B2C1D4E · report 9f86d081884c7d65… · page 12 of 12"
        );
        // An unidentified patient's unknown birth date is said, not left blank.
        let mut unknown = patient.clone();
        unknown.birth_date = String::new();
        let [line, _] = footer_of(&doc, &unknown);
        assert_eq!(
            line,
            "Patient DOE, JANE · birth date not given · record MRN-123"
        );
        // A name too long for its line is cut, the rest of the line kept; a name of 360,000
        // characters at once (one pass); a record number past 40 characters cut too.
        for repeat in [8, 20_000] {
            let mut long = patient.clone();
            long.name = format!("{}^JANE", "VERYLONGFAMILYNAME".repeat(repeat));
            long.id = "R".repeat(200);
            let [cut, _] = footer_of(&doc, &long);
            assert!(cut.starts_with("Patient VERYLONG"), "{cut}");
            assert!(
                cut.ends_with(&format!("… · born 1960-01-01 · record {}…", "R".repeat(39))),
                "{cut}"
            );
            assert!(width_pt(&cut, Font::Regular, 8.0) <= PAGE_W - 2.0 * MARGIN);
        }
    }

    fn footer_of(doc: &ReportDocument<'_>, patient: &Patient) -> [String; 2] {
        let doc = ReportDocument { patient, ..*doc };
        footer(&doc, "ab12", 1, 3)
    }

    /// An addendum prints under the names the radiologist wrote it under ("Addendum",
    /// "Revised impression"); an impression left empty stands, said so (a blank "Impression"
    /// read as withdrawn); and no key images (the final's) print again.
    #[test]
    fn an_addendum_prints_as_written_without_the_finals_key_images() {
        let image = KeyImage {
            width: 4,
            height: 4,
            pixels: vec![128; 16],
            caption: "Nodule, series 3 image 41".into(),
        };
        let addendum = report(
            ReportKind::Addendum {
                amends: "ff".into(),
            },
            "The nodule measures 15 mm on coronal images.",
            "",
        );
        let (texts, images) = laid_out(&addendum, std::slice::from_ref(&image));
        assert!(texts.contains(&"Addendum".to_string()), "{texts:?}");
        assert!(!texts.contains(&"Findings".to_string()), "{texts:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.contains("Unchanged: the impression of the report amended stands")),
            "{texts:?}"
        );
        assert_eq!(images, 0);
        assert!(!texts.iter().any(|t| t.contains("Key images")), "{texts:?}");

        let revised = report(
            ReportKind::Addendum {
                amends: "ff".into(),
            },
            "More.",
            "Benign.",
        );
        let (texts, _) = laid_out(&revised, &[]);
        let at = texts
            .iter()
            .position(|t| t == "Revised impression")
            .unwrap();
        assert_eq!(texts[at + 1], "Benign.");
    }

    /// Key images come after the signature, said not to be signed, and a long caption is
    /// wrapped whole within its cell (it ran across the next one and off the page).
    #[test]
    fn key_images_follow_the_signature_with_their_captions_wrapped() {
        let caption = "Right lower lobe nodule, series 3 image 41, lung window, ".repeat(3);
        let images = [
            KeyImage {
                width: 4,
                height: 4,
                pixels: vec![128; 16],
                caption: caption.trim().to_string(),
            },
            KeyImage {
                width: 4,
                height: 4,
                pixels: vec![128; 16],
                caption: "Second".into(),
            },
        ];
        let (texts, n) = laid_out(&report(ReportKind::Final, "Nodule.", "Follow up."), &images);
        assert_eq!(n, 2);
        let signed = texts
            .iter()
            .position(|t| t == "Electronically signed")
            .unwrap();
        let keys = texts.iter().position(|t| t == "Key images").unwrap();
        assert!(keys > signed, "{texts:?}");
        assert!(texts[keys + 1].contains("not part of the signed text"));
        let cell_w = (TEXT_W - 16.0) / 2.0;
        let caption_lines: Vec<&String> = texts[keys + 2..]
            .iter()
            .filter(|t| *t != "Second")
            .collect();
        assert!(caption_lines.len() > 1, "{caption_lines:?}");
        for line in &caption_lines {
            assert!(width_pt(line, Font::Regular, 8.0) <= cell_w, "{line}");
        }
        let rejoined: Vec<&str> = caption_lines.iter().map(|l| l.trim()).collect();
        assert_eq!(rejoined.join(" "), caption.trim());
    }

    #[test]
    fn widths_follow_the_afm_metrics() {
        // "Hello" in Helvetica: H 722 + e 556 + l 222 + l 222 + o 556 = 2278 units.
        assert!((width_pt("Hello", Font::Regular, 10.0) - 22.78).abs() < 1e-3);
        assert!((width_pt("Hello", Font::Bold, 10.0) - 24.45).abs() < 1e-3);
        // Beyond ASCII: em dash and ellipsis 1000, degree 400, bullet 350, NBSP as a space,
        // "é" as "e" (AFM: emdash, ellipsis, degree, bullet, space, eacute).
        assert!((width_pt("—…°•\u{a0}é", Font::Regular, 1.0) - 3.584).abs() < 1e-3);
        assert!((width_pt("Æ½", Font::Bold, 1.0) - 1.834).abs() < 1e-3);
    }

    #[test]
    fn wrapping_keeps_every_word_and_the_width() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let lines = wrap(&text, Font::Regular, 11.0, 200.0);
        assert!(lines.len() > 5);
        assert!(
            lines
                .iter()
                .all(|l| width_pt(l, Font::Regular, 11.0) <= 200.0)
        );
        assert_eq!(
            lines.join(" ").split_whitespace().count(),
            text.split_whitespace().count()
        );
        let long = wrap(&"x".repeat(500), Font::Regular, 11.0, 100.0);
        assert!(
            long.len() > 1
                && long
                    .iter()
                    .all(|l| width_pt(l, Font::Regular, 11.0) <= 100.0)
        );
        // A word longer than a line is cut into the longest pieces that fit, every
        // character kept in order, each piece as wide as it can be; a pasted token of
        // 200,000 characters is laid out at once (the old cut measured every prefix again).
        let word: String = (0..200_000u32)
            .map(|n| char::from(b'a' + (n % 26) as u8))
            .collect();
        let text = format!("See {word} here.");
        let lines = wrap(&text, Font::Regular, 11.0, 100.0);
        assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
        assert!(
            lines
                .iter()
                .all(|l| width_pt(l, Font::Regular, 11.0) <= 100.0)
        );
        let pieces = &lines[1..lines.len() - 1];
        assert!(pieces.len() > 1000);
        for (piece, next) in pieces.iter().zip(&lines[2..]) {
            let first = next.chars().next().unwrap_or(' ').to_string();
            assert!(width_pt(&format!("{piece}{first}"), Font::Regular, 11.0) > 100.0);
        }
    }

    #[test]
    fn wrapping_keeps_spaces_as_typed_but_at_a_break() {
        assert_eq!(
            wrap("  Liver:   normal.\n\tSpleen  ", Font::Regular, 11.0, 400.0),
            ["  Liver:   normal.", " Spleen"]
        );
        let lines = wrap("aaaa    bbbb", Font::Regular, 10.0, 30.0);
        assert_eq!(
            lines,
            ["aaaa", "bbbb"],
            "no spaces carried to the next line"
        );
        assert_eq!(wrap("", Font::Regular, 10.0, 30.0), [""]);
    }

    #[test]
    fn win_ansi_maps_latin1_and_marks_others() {
        assert_eq!(encode("Müller – 5 mm • x"), b"M\xfcller \x96 5 mm \x95 x");
        assert_eq!(encode("李"), b"?");
    }

    /// A study description outside WinAnsi prints transliterated and says so; one inside it
    /// prints as it is (checked against deunicode's own tables for the scripts: Cyrillic by
    /// its ISO 9-like scheme, Han by pinyin).
    #[test]
    fn descriptions_from_the_images_are_transliterated_not_lost() {
        assert_eq!(from_the_images("CT Thorax/Abdomen"), "CT Thorax/Abdomen");
        assert_eq!(from_the_images("Schädel nativ"), "Schädel nativ");
        assert_eq!(
            from_the_images("Scha\u{308}del"),
            "Schädel",
            "composed first"
        );
        assert_eq!(
            from_the_images("КТ грудной клетки"),
            "KT grudnoi kletki [transliterated]"
        );
        assert_eq!(from_the_images("头部 CT"), "Tou Bu CT [transliterated]");
        assert_eq!(from_the_images("A\u{e000}"), "AU+E000 [transliterated]");
        assert_eq!(from_the_images("Knee？"), "Knee? [transliterated]");
        for text in ["КТ", "头部 CT", "\u{e000}"] {
            assert!(!encode(&from_the_images(text)).contains(&b'?'), "{text}");
        }
    }
}
