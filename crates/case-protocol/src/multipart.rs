//! `multipart/related` (RFC 2387, RFC 2046 5.1) as DICOMweb uses it: STOW-RS bodies and WADO-RS
//! answers, read and written by the server and the workstation alike.

use memchr::memmem;

/// One part of a body: its `Content-Type` (empty when the part has none) and where its bytes
/// are in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    pub range: std::ops::Range<usize>,
}

/// A media type's main type and its parameters (names lower case, quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaType {
    pub fn parse(text: &str) -> MediaType {
        let mut pieces = split_params(text).into_iter();
        let essence = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let params = pieces
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                ))
            })
            .collect();
        MediaType { essence, params }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Split on `;` outside double quotes.
fn split_params(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            ';' if !quoted => out.push(std::mem::take(&mut current)),
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    out.push(current);
    out
}

/// The parts of a `multipart/related` body with the given boundary. Every problem is a
/// message for a 400 answer.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err("the multipart boundary must be 1-70 characters (RFC 2046)".into());
    }
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The first delimiter may open the body or follow a preamble and a line break.
    let first = if body.starts_with(delimiter) {
        0
    } else {
        memmem::find(body, &[b"\r\n", delimiter].concat())
            .map(|i| i + 2)
            .ok_or("the body has no multipart boundary line: is it multipart/related?")?
    };
    let next_delimiter = [b"\r\n", delimiter].concat();
    let finder = memmem::Finder::new(&next_delimiter);
    let mut parts = Vec::new();
    let mut at = first + delimiter.len();
    loop {
        // After a delimiter: "--" closes the body; else optional whitespace and CRLF.
        if body[at..].starts_with(b"--") {
            return if parts.is_empty() {
                Err("the multipart body has no parts".into())
            } else {
                Ok(parts)
            };
        }
        let line_end = memmem::find(&body[at..], b"\r\n")
            .ok_or("the multipart body ends inside a boundary line")?;
        if !body[at..at + line_end]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t')
        {
            return Err("a multipart boundary line has text after the boundary".into());
        }
        let headers_start = at + line_end + 2;
        let (headers, content_start) = if body[headers_start..].starts_with(b"\r\n") {
            (&body[headers_start..headers_start], headers_start + 2)
        } else {
            // The blank line must come before the next boundary: a part without one does not
            // take the next part's boundary line (which may hold a ':') as a header.
            let next = finder.find(&body[headers_start..]);
            let end = memmem::find(&body[headers_start..], b"\r\n\r\n")
                .filter(|end| next.is_none_or(|next| end + 2 <= next))
                .ok_or_else(|| {
                    format!(
                        "part {}'s headers never end (no blank line before its content)",
                        parts.len() + 1
                    )
                })?;
            (
                &body[headers_start..headers_start + end],
                headers_start + end + 4,
            )
        };
        let content_type = part_content_type(headers, parts.len() + 1)?;
        let content_end = finder
            .find(&body[content_start..])
            .map(|i| content_start + i)
            .ok_or_else(|| {
                format!(
                    "part {} is not closed by a boundary (truncated upload?)",
                    parts.len() + 1
                )
            })?;
        parts.push(Part {
            content_type,
            range: content_start..content_end,
        });
        at = content_end + next_delimiter.len();
    }
}

/// The Content-Type of part `n` from its header lines (empty where it has none).
fn part_content_type(headers: &[u8], n: usize) -> Result<String, String> {
    let headers = std::str::from_utf8(headers)
        .map_err(|_| format!("part {n} has headers that are not text"))?;
    let mut content_type: Option<String> = None;
    if headers.is_empty() {
        return Ok(String::new());
    }
    for line in headers.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("part {n} has a header line without a colon"));
        };
        if name.trim().eq_ignore_ascii_case("content-type")
            && content_type.replace(value.trim().to_string()).is_some()
        {
            return Err(format!("part {n} has two Content-Type headers"));
        }
    }
    Ok(content_type.unwrap_or_default())
}

/// Most bytes a part's header lines, or the whitespace after a boundary, may take before the
/// body is refused (a stream that never gets to its content).
const MAX_HEAD_BYTES: usize = 64 << 10;

/// What a [`PartsReader`] finds, in the order of the body.
#[derive(Debug, PartialEq, Eq)]
pub enum PartEvent<'a> {
    /// A part begins: its Content-Type (empty where it has none).
    Start { content_type: &'a str },
    /// Some of its content (a part's content comes in any number of these, none for an
    /// empty one).
    Content(&'a [u8]),
    /// It ended (its closing boundary was read).
    End,
}

/// A `multipart/related` body read as it arrives (a STOW-RS upload, a WADO-RS answer): each
/// part's content is handed on chunk by chunk, so a body of gigabytes is never held whole;
/// what is held is a chunk, a boundary and at most [`MAX_HEAD_BYTES`] of a part's headers.
/// It takes and refuses exactly what [`parse`] takes and refuses of a body held whole.
#[derive(Debug)]
pub struct PartsReader {
    /// `--boundary`, and `\r\n--boundary` (every delimiter but one opening the body).
    delimiter: Vec<u8>,
    next: Vec<u8>,
    state: Read,
    /// Bytes received and not yet settled.
    held: Vec<u8>,
    /// Whether nothing has been let go yet (a body may open with its delimiter).
    at_start: bool,
    /// Parts begun so far.
    parts: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Preamble,
    AfterDelimiter,
    Headers,
    Content,
    Closed,
}

/// Why [`PartsReader::feed`] stopped: the body is malformed, or the caller's handler failed.
#[derive(Debug)]
pub enum PartsError<E> {
    Body(String),
    Handler(E),
}

impl PartsReader {
    pub fn new(boundary: &str) -> Result<PartsReader, String> {
        if boundary.is_empty() || boundary.len() > 70 {
            return Err("the multipart boundary must be 1-70 characters (RFC 2046)".into());
        }
        let delimiter = format!("--{boundary}").into_bytes();
        Ok(PartsReader {
            next: [b"\r\n", delimiter.as_slice()].concat(),
            delimiter,
            state: Read::Preamble,
            held: Vec::new(),
            at_start: true,
            parts: 0,
        })
    }

    /// Take the next bytes of the body; `on` is given what they settle, in order.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        on: &mut impl FnMut(PartEvent<'_>) -> Result<(), E>,
    ) -> Result<(), PartsError<E>> {
        self.held.extend_from_slice(chunk);
        loop {
            let taken = match self.state {
                Read::Preamble => self.preamble().map_err(PartsError::Body)?,
                Read::AfterDelimiter => self.after_delimiter().map_err(PartsError::Body)?,
                Read::Headers => match self.headers().map_err(PartsError::Body)? {
                    Some((taken, content_type)) => {
                        self.parts += 1;
                        on(PartEvent::Start {
                            content_type: &content_type,
                        })
                        .map_err(PartsError::Handler)?;
                        Some(taken)
                    }
                    None => None,
                },
                Read::Content => {
                    let (settled, end) = match memmem::find(&self.held, &self.next) {
                        Some(i) => (i, Some(i + self.next.len())),
                        // Bytes that may begin a delimiter wait for the next chunk.
                        None => (self.held.len().saturating_sub(self.next.len() - 1), None),
                    };
                    if settled > 0 {
                        on(PartEvent::Content(&self.held[..settled]))
                            .map_err(PartsError::Handler)?;
                    }
                    match end {
                        Some(end) => {
                            on(PartEvent::End).map_err(PartsError::Handler)?;
                            self.state = Read::AfterDelimiter;
                            Some(end)
                        }
                        None => {
                            self.held.drain(..settled);
                            None
                        }
                    }
                }
                // An epilogue is ignored.
                Read::Closed => Some(self.held.len()),
            };
            match taken {
                Some(n) => {
                    self.held.drain(..n);
                    self.at_start = false;
                    if self.held.is_empty() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            }
        }
    }

    /// Before the first delimiter: `Some(bytes taken)` once it is found.
    fn preamble(&mut self) -> Result<Option<usize>, String> {
        if self.at_start {
            if self.held.len() < self.delimiter.len() && self.delimiter.starts_with(&self.held) {
                return Ok(None);
            }
            if self.held.starts_with(&self.delimiter) {
                self.state = Read::AfterDelimiter;
                return Ok(Some(self.delimiter.len()));
            }
        }
        match memmem::find(&self.held, &self.next) {
            Some(i) => {
                self.state = Read::AfterDelimiter;
                Ok(Some(i + self.next.len()))
            }
            None => {
                // Only what may begin a delimiter is kept.
                let keep = self.next.len() - 1;
                let drop = self.held.len().saturating_sub(keep);
                self.held.drain(..drop);
                if drop > 0 {
                    self.at_start = false;
                }
                Ok(None)
            }
        }
    }

    /// After a delimiter: "--" closes the body (with no part yet: refused); else optional
    /// whitespace and a line break, then a part's headers.
    fn after_delimiter(&mut self) -> Result<Option<usize>, String> {
        if self.held.len() < 2 {
            return Ok(None);
        }
        if self.held.starts_with(b"--") {
            if self.parts == 0 {
                return Err("the multipart body has no parts".into());
            }
            self.state = Read::Closed;
            return Ok(Some(2));
        }
        let Some(end) = memmem::find(&self.held, b"\r\n") else {
            return if self.held.len() > MAX_HEAD_BYTES {
                Err("a multipart boundary line never ends".into())
            } else {
                Ok(None)
            };
        };
        if !self.held[..end].iter().all(|b| *b == b' ' || *b == b'\t') {
            return Err("a multipart boundary line has text after the boundary".into());
        }
        self.state = Read::Headers;
        Ok(Some(end + 2))
    }

    /// A part's header lines, up to the blank line that must come before the next boundary:
    /// the bytes they take and the part's Content-Type.
    fn headers(&mut self) -> Result<Option<(usize, String)>, String> {
        if self.held.len() < 2 {
            return Ok(None);
        }
        let n = self.parts + 1;
        if self.held.starts_with(b"\r\n") {
            self.state = Read::Content;
            return Ok(Some((2, String::new())));
        }
        let next = memmem::find(&self.held, &self.next);
        match memmem::find(&self.held, b"\r\n\r\n") {
            Some(end) if next.is_none_or(|next| end + 2 <= next) => {
                let content_type = part_content_type(&self.held[..end], n)?;
                self.state = Read::Content;
                Ok(Some((end + 4, content_type)))
            }
            _ if next.is_some() || self.held.len() > MAX_HEAD_BYTES => Err(format!(
                "part {n}'s headers never end (no blank line before its content)"
            )),
            _ => Ok(None),
        }
    }

    /// The body has ended: how many parts it held, or why it was not a whole body.
    pub fn finish(self) -> Result<usize, String> {
        match self.state {
            Read::Closed => Ok(self.parts),
            Read::Preamble => {
                Err("the body has no multipart boundary line: is it multipart/related?".into())
            }
            Read::Content => Err(format!(
                "part {} is not closed by a boundary (truncated?)",
                self.parts
            )),
            Read::AfterDelimiter | Read::Headers => {
                Err("the multipart body ends inside a boundary line or a part's headers".into())
            }
        }
    }
}

/// A `multipart/related` body of one part (a WADO-RS instance) read as it arrives
/// ([`PartsReader`]): its content handed on chunk by chunk; a second part refused.
#[derive(Debug)]
pub struct OnePart {
    reader: PartsReader,
    content_type: Option<String>,
}

impl OnePart {
    pub fn new(boundary: &str) -> Result<OnePart, String> {
        Ok(OnePart {
            reader: PartsReader::new(boundary)?,
            content_type: None,
        })
    }

    /// Take the next bytes of the body; `content` is given the part's content as it settles.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        content: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), PartsError<E>> {
        let seen = &mut self.content_type;
        self.reader
            .feed(chunk, &mut |event| match event {
                PartEvent::Start { content_type } => {
                    if seen.is_some() {
                        return Err(PartsError::Body(
                            "the answer holds more than one part where one was expected".into(),
                        ));
                    }
                    *seen = Some(content_type.to_string());
                    Ok(())
                }
                PartEvent::Content(bytes) => content(bytes).map_err(PartsError::Handler),
                PartEvent::End => Ok(()),
            })
            .map_err(|e| match e {
                PartsError::Body(m) | PartsError::Handler(PartsError::Body(m)) => {
                    PartsError::Body(m)
                }
                PartsError::Handler(PartsError::Handler(e)) => PartsError::Handler(e),
            })
    }

    /// The part's Content-Type (empty where it has none) once its headers are read: before
    /// any of its content is handed on.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The body has ended: the part's Content-Type, or why the body was not one whole part.
    pub fn finish(self) -> Result<String, String> {
        self.reader.finish()?;
        self.content_type
            .ok_or_else(|| "the multipart body has no parts".into())
    }
}

/// A fresh boundary for a response.
pub fn new_boundary() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("overread-{hex}")
}

/// The bytes before a part's content.
pub fn part_head(boundary: &str, content_type: &str, first: bool) -> Vec<u8> {
    let lead = if first { "" } else { "\r\n" };
    format!("{lead}--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").into_bytes()
}

/// The bytes that close a body.
pub fn closing(boundary: &str, any_parts: bool) -> Vec<u8> {
    let lead = if any_parts { "\r\n" } else { "" };
    format!("{lead}--{boundary}--\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &[u8])], boundary: &str) -> Vec<u8> {
        let mut out = b"preamble to ignore\r\n".to_vec();
        for (i, (ct, bytes)) in parts.iter().enumerate() {
            out.extend(part_head(boundary, ct, i == 0));
            out.extend_from_slice(bytes);
        }
        out.extend(closing(boundary, !parts.is_empty()));
        out
    }

    #[test]
    fn round_trip_including_boundary_like_bytes() {
        let b = "xyz";
        // Near-boundaries inside content: only CRLF "--xyz" ends a part.
        let tricky: &[u8] = b"\r\n--xy not quite\r\n-xyz, --xyz without a line break";
        let data = body(
            &[
                ("application/dicom", b"DICM1"),
                ("application/dicom", tricky),
            ],
            b,
        );
        let parts = parse(&data, b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&data[parts[0].range.clone()], b"DICM1");
        assert_eq!(parts[0].content_type, "application/dicom");
        assert_eq!(&data[parts[1].range.clone()], tricky);
    }

    #[test]
    fn malformed_bodies_are_named() {
        let b = "B";
        assert!(
            parse(b"no boundary here", b)
                .unwrap_err()
                .contains("no multipart")
        );
        assert!(
            parse(b"--B\r\nContent-Type: x\r\n\r\nDICM", b)
                .unwrap_err()
                .contains("not closed")
        );
        assert!(parse(b"--B--\r\n", b).unwrap_err().contains("no parts"));
        // A part without header lines (RFC 2046 5.1.1: its type is the default) is taken, its
        // Content-Type empty.
        let parts = parse(b"--B\r\n\r\nDICM\r\n--B--", b).unwrap();
        assert_eq!(parts[0].content_type, "");
        assert!(
            parse(b"--B\r\nno colon\r\n\r\nx\r\n--B--", b)
                .unwrap_err()
                .contains("without a colon")
        );
        assert!(parse(b"--B", b).unwrap_err().contains("ends inside"));
        assert!(parse(b"", "").unwrap_err().contains("1-70"));
        // A part without a blank line after its headers does not take the next part's
        // boundary line (here with a ':') as a header and swallow that part.
        let body = b"--a:b\r\nContent-Type: application/dicom\r\nDICM:first\r\n--a:b\r\n\r\nsecond\r\n--a:b--";
        let e = parse(body, "a:b").unwrap_err();
        assert!(e.contains("part 1's headers never end"), "{e}");
        // Two Content-Types: refused, not the last one taken.
        let e = parse(
            b"--B\r\nContent-Type: text/plain\r\ncontent-type: application/dicom\r\n\r\nx\r\n--B--",
            b,
        )
        .unwrap_err();
        assert!(e.contains("two Content-Type"), "{e}");
    }

    /// Read chunk by chunk, whatever the chunks' sizes, a body gives what `parse` gives it
    /// held whole: every part's content and Content-Type (`PartsReader`), or a refusal; and
    /// for `OnePart`, the same for one part and a refusal of any other body (none, two
    /// parts, malformed). Thousands of bodies made of the pieces a body is
    /// made of (boundaries, near-boundaries, line breaks, header lines) in random order.
    #[test]
    fn one_part_read_as_it_arrives_is_what_parse_reads() {
        let b = "xyz";
        let pieces: [&[u8]; 14] = [
            b"--xyz",
            b"\r\n",
            b"\r\n--xyz",
            b"\r\n--xy",
            b"--",
            b"Content-Type: application/dicom",
            b"content-type: text/plain",
            b"DICM",
            b"\r\n\r\n",
            b" \t",
            b":",
            b"x",
            b"-",
            b"\r",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut bodies: Vec<Vec<u8>> = vec![
            body(&[("application/dicom", b"DICM\r\n--xy\r\n")], b),
            body(&[("", b"")], b),
            body(&[("a", b"1"), ("b", b"2")], b),
            b"--xyz\r\n\r\nDICM\r\n--xyz--".to_vec(),
            b"--xyz  \r\nContent-Type: x\r\n\r\n\r\n--xyz--epilogue\r\n--xyz\r\n".to_vec(),
        ];
        for _ in 0..20_000 {
            // Most bodies start well, so that the states past the first boundary are reached.
            let mut body: Vec<u8> = match random(3) {
                0 => Vec::new(),
                1 => b"--xyz\r\n".to_vec(),
                _ => b"--xyz\r\nContent-Type: application/dicom\r\n\r\n".to_vec(),
            };
            for _ in 0..random(12) {
                body.extend_from_slice(pieces[random(pieces.len())]);
            }
            // ... and most end well.
            if random(3) > 0 {
                body.extend_from_slice(b"\r\n--xyz--");
            }
            bodies.push(body);
        }
        let (mut whole_ones, mut refused, mut several) = (0, 0, 0);
        for (n, body) in bodies.iter().enumerate() {
            let all_parts: Option<Vec<(String, Vec<u8>)>> = parse(body, b).ok().map(|parts| {
                parts
                    .iter()
                    .map(|p| (p.content_type.clone(), body[p.range.clone()].to_vec()))
                    .collect()
            });
            let want = match &all_parts {
                Some(parts) if parts.len() == 1 => Some(parts[0].clone()),
                _ => None,
            };
            if all_parts.as_ref().is_some_and(|p| p.len() > 1) {
                several += 1;
            }
            for size in [1, 2, 3, 5, 8, body.len().max(1)] {
                let mut reader = OnePart::new(b).unwrap();
                let mut got = Vec::new();
                let mut fed = Ok(());
                for chunk in body.chunks(size) {
                    fed = reader.feed(chunk, &mut |c: &[u8]| {
                        got.extend_from_slice(c);
                        Ok::<(), ()>(())
                    });
                    if fed.is_err() {
                        break;
                    }
                }
                let read = match fed {
                    Ok(()) => reader.finish().ok().map(|ct| (ct, got)),
                    Err(_) => None,
                };
                assert_eq!(
                    read,
                    want,
                    "body {n} in chunks of {size}: {:?}",
                    String::from_utf8_lossy(body)
                );
                // Every part, however many.
                let mut reader = PartsReader::new(b).unwrap();
                let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
                let mut open = false;
                let mut fed = Ok(());
                for chunk in body.chunks(size) {
                    fed = reader.feed(chunk, &mut |event| {
                        match event {
                            PartEvent::Start { content_type } => {
                                assert!(!open, "a part began inside another");
                                open = true;
                                parts.push((content_type.to_string(), Vec::new()));
                            }
                            PartEvent::Content(c) => {
                                assert!(open, "content outside a part");
                                parts.last_mut().unwrap().1.extend_from_slice(c);
                            }
                            PartEvent::End => {
                                assert!(open, "a part ended that never began");
                                open = false;
                            }
                        }
                        Ok::<(), ()>(())
                    });
                    if fed.is_err() {
                        break;
                    }
                }
                let read = match fed {
                    Ok(()) => reader.finish().ok().map(|count| {
                        assert_eq!(count, parts.len());
                        assert!(!open);
                        parts
                    }),
                    Err(_) => None,
                };
                assert_eq!(
                    read,
                    all_parts,
                    "body {n} in chunks of {size}, every part: {:?}",
                    String::from_utf8_lossy(body)
                );
            }
            if want.is_some() {
                whole_ones += 1;
            } else {
                refused += 1;
            }
        }
        // Both outcomes are well represented.
        assert!(
            whole_ones > 1000 && refused > 1000 && several > 100,
            "{whole_ones} / {refused} / {several}"
        );
    }

    /// A failure to take the content (a full disk) stops the reading with that failure.
    #[test]
    fn one_part_stops_when_its_content_cannot_be_taken() {
        let data = body(&[("application/dicom", b"DICM and more")], "b");
        let mut reader = OnePart::new("b").unwrap();
        let r = reader.feed(&data, &mut |_: &[u8]| Err("disk full"));
        assert!(matches!(r, Err(PartsError::Handler("disk full"))), "{r:?}");
    }

    #[test]
    fn media_types() {
        let m = MediaType::parse(
            r#"multipart/related; type="application/dicom"; boundary="a;b"; transfer-syntax=*"#,
        );
        assert_eq!(m.essence, "multipart/related");
        assert_eq!(m.param("type"), Some("application/dicom"));
        assert_eq!(m.param("boundary"), Some("a;b"));
        assert_eq!(m.param("transfer-syntax"), Some("*"));
    }
}
