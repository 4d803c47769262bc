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
        let headers = std::str::from_utf8(headers)
            .map_err(|_| format!("part {} has headers that are not text", parts.len() + 1))?;
        let mut content_type: Option<String> = None;
        for line in headers.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!(
                    "part {} has a header line without a colon",
                    parts.len() + 1
                ));
            };
            if name.trim().eq_ignore_ascii_case("content-type")
                && content_type.replace(value.trim().to_string()).is_some()
            {
                return Err(format!(
                    "part {} has two Content-Type headers",
                    parts.len() + 1
                ));
            }
        }
        let content_type = content_type.unwrap_or_default();
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
