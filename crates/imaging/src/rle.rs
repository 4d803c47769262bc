//! RLE Lossless (PS3.5 Annex G), both ways, with every length checked.
//!
//! A frame is a 64-byte header (segment count, then up to 15 segment offsets) and one PackBits
//! segment per byte plane: for each sample, its most significant byte first. Decoding is ours
//! rather than dicom-rs's because a truncated RLE frame made that decoder panic; here a short
//! or inconsistent frame is an error that names what is wrong.

/// Decode one frame into little-endian samples, interleaved (`samples_per_pixel` per pixel).
pub fn decode(
    data: &[u8],
    pixels: usize,
    samples_per_pixel: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, String> {
    let word = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(data.get(4 * i..4 * i + 4)?.try_into().ok()?) as usize)
    };
    let segments = word(0).ok_or("RLE frame shorter than its 64-byte header")?;
    let expected = samples_per_pixel * bytes_per_sample;
    if segments != expected || segments > 15 {
        return Err(format!(
            "RLE header has {segments} segments, {expected} expected"
        ));
    }
    let offsets: Vec<usize> = (1..=segments)
        .map(word)
        .collect::<Option<_>>()
        .ok_or("RLE header truncated")?;
    // PackBits gives at most 128 bytes for 2 (a replicate run): a frame too short to hold
    // its pixels is refused before anything is allocated for them.
    if data.len().saturating_mul(64) < pixels.saturating_mul(segments) {
        return Err(format!(
            "RLE frame of {} bytes cannot hold {segments} planes of {pixels} pixels",
            data.len()
        ));
    }
    let mut out = Vec::new();
    let len = pixels
        .checked_mul(expected)
        .filter(|&len| out.try_reserve_exact(len).is_ok())
        .ok_or_else(|| format!("RLE frame of {pixels} pixels is too large"))?;
    out.resize(len, 0);
    for (s, &start) in offsets.iter().enumerate() {
        let end = offsets.get(s + 1).copied().unwrap_or(data.len());
        let segment = data
            .get(start..end.min(data.len()))
            .filter(|seg| start >= 64 && !seg.is_empty())
            .ok_or_else(|| {
                format!(
                    "RLE segment {s} at {start}..{end} lies outside the {} byte frame",
                    data.len()
                )
            })?;
        if segment.len().saturating_mul(64) < pixels {
            return Err(format!(
                "RLE segment {s} of {} bytes cannot hold {pixels} pixels",
                segment.len()
            ));
        }
        let plane = unpack(segment, pixels).map_err(|e| format!("RLE segment {s}: {e}"))?;
        // Segment s is byte (s % bps) of sample (s / bps), most significant byte first.
        let (sample, byte_msb_first) = (s / bytes_per_sample, s % bytes_per_sample);
        let byte_le = bytes_per_sample - 1 - byte_msb_first;
        for (p, &b) in plane.iter().enumerate() {
            out[(p * samples_per_pixel + sample) * bytes_per_sample + byte_le] = b;
        }
    }
    Ok(out)
}

/// PackBits (PS3.5 G.3.1) into exactly `len` bytes.
fn unpack(segment: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        let Some(&control) = segment.get(i) else {
            return Err(format!("ends after {} of {len} bytes", out.len()));
        };
        i += 1;
        let n = control as i8;
        if n >= 0 {
            let count = n as usize + 1;
            let literal = segment
                .get(i..i + count)
                .ok_or("literal run past the end")?;
            out.extend_from_slice(literal);
            i += count;
        } else if n != -128 {
            let &value = segment.get(i).ok_or("repeat run past the end")?;
            out.extend(std::iter::repeat_n(value, (1 - isize::from(n)) as usize));
            i += 1;
        }
    }
    out.truncate(len);
    Ok(out)
}

/// Encode one 16-bit monochrome frame: two PackBits segments (high bytes, then low).
pub fn encode_u16(frame: &[u16]) -> Vec<u8> {
    let high: Vec<u8> = frame.iter().map(|v| (v >> 8) as u8).collect();
    let low: Vec<u8> = frame.iter().map(|v| (v & 0xFF) as u8).collect();
    let mut segments = vec![pack(&high), pack(&low)];
    for s in &mut segments {
        if s.len() % 2 == 1 {
            s.push(0x80); // a no-op byte keeps every segment even
        }
    }
    let mut out = vec![0u8; 64];
    out[0..4].copy_from_slice(&2u32.to_le_bytes());
    let mut offset = 64u32;
    for (n, s) in segments.iter().enumerate() {
        out[4 + 4 * n..8 + 4 * n].copy_from_slice(&offset.to_le_bytes());
        offset += s.len() as u32;
    }
    for s in segments {
        out.extend(s);
    }
    out
}

/// PackBits: runs of 2..=128 equal bytes as (1 - n, byte), literals of 1..=128 as (n - 1, bytes).
fn pack(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 2);
    let mut i = 0;
    while i < data.len() {
        let mut run = 1;
        while i + run < data.len() && run < 128 && data[i + run] == data[i] {
            run += 1;
        }
        if run >= 2 {
            out.push((1 - run as i16) as i8 as u8);
            out.push(data[i]);
            i += run;
            continue;
        }
        let start = i;
        while i < data.len() && i - start < 128 && !(i + 1 < data.len() && data[i + 1] == data[i]) {
            i += 1;
        }
        if i == start {
            i += 1; // a lone byte before a run: take it as a literal of one
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&data[start..i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PS3.5 G.3.1's own example shape: literal runs, repeat runs and a no-op byte.
    #[test]
    fn packbits_decodes_literals_repeats_and_noops() {
        let segment = [0x02, 1, 2, 3, 0xFE, 9, 0x80, 0x00, 7];
        assert_eq!(unpack(&segment, 7).unwrap(), vec![1, 2, 3, 9, 9, 9, 7]);
        assert!(unpack(&segment[..4], 7).is_err());
    }

    #[test]
    fn round_trip_and_truncation_is_an_error() {
        let frame: Vec<u16> = (0..5000u32)
            .map(|i| {
                if i % 700 < 300 {
                    1000
                } else {
                    (i * 7919 % 4096) as u16
                }
            })
            .collect();
        let encoded = encode_u16(&frame);
        let decoded = decode(&encoded, frame.len(), 1, 2).unwrap();
        let words: Vec<u16> = decoded
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(words, frame);
        for cut in [0, 10, 63, 64, 65, encoded.len() / 2, encoded.len() - 1] {
            assert!(
                decode(&encoded[..cut], frame.len(), 1, 2).is_err(),
                "cut at {cut}"
            );
        }
    }

    /// A few bytes claiming a 65535 x 65535 frame of 16-bit samples asked for 8 GiB before
    /// the first segment was read; the bound refuses it before anything is allocated.
    #[test]
    fn a_frame_too_short_for_its_pixels_is_refused_before_allocating() {
        let mut frame = vec![0u8; 64];
        frame[0..4].copy_from_slice(&2u32.to_le_bytes());
        frame[4..8].copy_from_slice(&64u32.to_le_bytes());
        frame[8..12].copy_from_slice(&66u32.to_le_bytes());
        frame.extend_from_slice(&[0x81, 0, 0x81, 0]);
        let message = decode(&frame, 65535 * 65535, 1, 2).unwrap_err();
        assert!(message.contains("cannot hold"), "{message}");
        // The same segments hold 128 pixels exactly (a run of 128 each).
        assert_eq!(decode(&frame, 128, 1, 2).unwrap(), vec![0; 256]);
    }
}
