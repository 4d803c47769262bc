//! JPEG frames (PS3.5 A.4.1: baseline, extended 12-bit, lossless process 14) through
//! libjpeg-turbo 3, the one maintained decoder that covers 8-bit and 12-bit DCT and 2-16 bit
//! lossless. jpeg-decoder (dicom-rs's default) has no 12-bit DCT path, and 12-bit lossy JPEG is
//! common on older CT and MR CDs.
//!
//! Frames are also encoded here (lossless process 14 and 8/12-bit DCT), for `synth`.
//!
//! One of two modules with `unsafe` (with `j2k`): a handful of calls into TurboJPEG's C API,
//! each with the buffer sizes it is given checked here first.

#![allow(unsafe_code)]

use std::ffi::CStr;

use turbojpeg_sys as tj;

/// A decoded JPEG frame: interleaved samples, 1 (grey) or 3 (RGB) per pixel.
#[derive(Debug, Clone)]
pub struct JpegFrame {
    pub width: usize,
    pub height: usize,
    pub components: usize,
    pub samples: JpegSamples,
    /// The stream was YCbCr (by its JFIF or Adobe marker, or libjpeg's reading of its
    /// component ids) and libjpeg-turbo converted it to RGB; colour streams it took for RGB
    /// come out as stored.
    pub converted_from_ycbcr: bool,
}

#[derive(Debug, Clone)]
pub enum JpegSamples {
    U8(Vec<u8>),
    /// 9..16-bit samples (12-bit DCT or lossless), never negative.
    U16(Vec<u16>),
}

/// Owns a TurboJPEG handle; destroys it on every path out.
struct Handle(tj::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { tj::tj3Destroy(self.0) };
    }
}

impl Handle {
    fn error(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle, valid
        // until the next call on it; it is copied at once.
        unsafe {
            let message = tj::tj3GetErrorStr(self.0);
            if message.is_null() {
                "unknown libjpeg-turbo error".to_string()
            } else {
                CStr::from_ptr(message).to_string_lossy().into_owned()
            }
        }
    }

    /// What a call that returned `rc` left. With stop-on-warning (every decode but one,
    /// see [`decode`]) a warning stops the call, and says which: the caller repairs what is
    /// harmless and decodes again. Without it, only "extraneous bytes" after a single
    /// scan's data pass (the frame was whole by then); anything else fails. libjpeg keeps
    /// only the first warning's text, and a fatal error after a warning still reads as a
    /// warning, so no other warning can be trusted to be the only one.
    fn outcome(&self, rc: CInt, stop_on_warning: bool) -> Result<(), Failure> {
        if rc == 0 {
            return Ok(());
        }
        let message = self.error();
        // SAFETY: valid handle; tj3GetErrorCode only reads the last call's state.
        let warning = unsafe { tj::tj3GetErrorCode(self.0) } == tj::TJERR_TJERR_WARNING as CInt;
        match (warning, stop_on_warning) {
            (true, true) => Err(Failure::Warning(message)),
            (true, false) if trailing_bytes_only(&message) => Ok(()),
            _ => Err(Failure::Error(message)),
        }
    }

    fn set(&self, param: tj::TJPARAM, value: CInt) -> Result<(), String> {
        // SAFETY: valid handle; tj3Set only stores a parameter.
        if unsafe { tj::tj3Set(self.0, param as CInt, value) } != 0 {
            return Err(self.error());
        }
        Ok(())
    }
}

/// Why a decode stopped.
#[derive(Debug)]
enum Failure {
    /// libjpeg-turbo warned (and, stopping on warnings, stopped): the message says what.
    Warning(String),
    Error(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Failure::Warning(m) | Failure::Error(m) => m,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Error(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::Error(message.to_string())
    }
}

impl Handle {
    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle; tj3Get only reads a parameter.
        unsafe { tj::tj3Get(self.0, param as CInt) }
    }
}

type CInt = std::os::raw::c_int;

/// Decode one JPEG stream (one DICOM frame).
///
/// `size` is the frame's width and height as the DICOM header gives them: a stream of another
/// size is refused before anything is allocated for it (a stream may claim 65500 x 65500).
///
/// libjpeg-turbo stops at the first warning, and what is harmless is repaired and decoded
/// again: scans of sequential DCT whose spectral selection only progressive JPEG may carry
/// (ITU-T T.81 B.2.3; older GE and Philips encoders wrote them, IJG libjpeg 6b ignored them)
/// are set to the values T.81 allows; bytes between marker segments are dropped; an unknown
/// JFIF revision or Adobe colour transform is read as libjpeg reads it; damaged ICC profiles
/// are dropped. Bytes after a single scan's data (before the end marker) are tolerated in a
/// last decode that does not stop on warnings. Every other warning (a premature end, which
/// fills the rest grey; a bad code, which garbles what follows) fails the frame: it is not
/// shown.
pub fn decode(jpeg: &[u8], size: Option<[usize; 2]>) -> Result<JpegFrame, String> {
    let mut stream = std::borrow::Cow::Borrowed(jpeg);
    let mut stop_on_warning = true;
    for _ in 0..8 {
        let failure = match decode_stream(&stream, size, stop_on_warning) {
            Ok(frame) => return Ok(frame),
            Err(failure) => failure,
        };
        let said = match &failure {
            Failure::Warning(m) | Failure::Error(m) => m.as_str(),
        };
        let warned = matches!(failure, Failure::Warning(_));
        let repaired = if said.contains("SOS") {
            let mut fixed = stream.to_vec();
            normalize_sequential_scans(&mut fixed).then_some(fixed)
        } else if !warned {
            None
        } else if said.contains("extraneous bytes") {
            match without_extraneous_bytes(&stream) {
                Some(clean) => Some(clean),
                // Before the end marker only: before a restart marker they are a damaged
                // interval inside the scan, and more may be lost after it.
                None if stop_on_warning
                    && scan_count(&stream) == 1
                    && trailing_bytes_only(said) =>
                {
                    stop_on_warning = false;
                    continue;
                }
                None => None,
            }
        } else if said.contains("JFIF revision") {
            with_app_byte(&stream, 0xE0, b"JFIF\0", 5, 1)
        } else if said.contains("Adobe color transform") {
            // libjpeg takes an unknown transform for YCbCr (1).
            with_app_byte(&stream, 0xEE, b"Adobe", 11, 1)
        } else if said.contains("ICC marker") {
            without_segments(&stream, 0xE2)
        } else {
            None
        };
        match repaired {
            Some(r) if r.as_slice() != stream.as_ref() => stream = std::borrow::Cow::Owned(r),
            _ => return Err(failure.message()),
        }
    }
    Err("JPEG stream: too many repairs".into())
}

/// Whether libjpeg's warning is of bytes between a scan's data and the end marker (EOI).
fn trailing_bytes_only(message: &str) -> bool {
    message.contains("extraneous bytes before marker 0xd9")
}

/// The number of scans (SOS markers) of a stream.
fn scan_count(stream: &[u8]) -> usize {
    segments(stream).iter().filter(|s| s.1 == 0xDA).count()
}

/// A stream without the bytes that stand between its marker segments (where a marker must
/// follow), or `None` when there are none. Entropy-coded data is copied as it is.
fn without_extraneous_bytes(stream: &[u8]) -> Option<Vec<u8>> {
    let mut out = stream.get(..2)?.to_vec();
    let mut i = 2;
    let mut dropped = false;
    while i < stream.len() {
        if stream[i] != 0xFF {
            dropped = true;
            i += 1;
            continue;
        }
        let Some(&marker) = stream.get(i + 1) else {
            break;
        };
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0x00 {
            // A stuffed zero where a marker must be: stray, as libjpeg reads it.
            dropped = true;
            i += 2;
            continue;
        }
        if marker == 0xD9 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            out.extend_from_slice(&stream[i..i + 2]);
            i += 2;
            if marker == 0xD9 {
                break;
            }
            continue;
        }
        let Some(len) = stream
            .get(i + 2..i + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            break;
        };
        let end = (i + 2 + len).min(stream.len());
        out.extend_from_slice(&stream[i..end]);
        i = end;
        if marker == 0xDA {
            let start = i;
            while i + 1 < stream.len()
                && !(stream[i] == 0xFF
                    && stream[i + 1] != 0
                    && !(0xD0..=0xD7).contains(&stream[i + 1]))
            {
                i += 1;
            }
            if i + 1 >= stream.len() {
                i = stream.len();
            }
            out.extend_from_slice(&stream[start..i]);
        }
    }
    out.extend_from_slice(&stream[i.min(stream.len())..]);
    dropped.then_some(out)
}

/// The stream with byte `offset` of every APPn segment (`marker`) whose data starts with
/// `tag` set to `value` (offset counted from the segment's data, after its length).
fn with_app_byte(
    stream: &[u8],
    marker: u8,
    tag: &[u8],
    offset: usize,
    value: u8,
) -> Option<Vec<u8>> {
    let mut out = stream.to_vec();
    let mut changed = false;
    for (at, m, _) in segments(stream) {
        if m == marker && stream.get(at + 4..at + 4 + tag.len()) == Some(tag) {
            *out.get_mut(at + 4 + offset)? = value;
            changed = true;
        }
    }
    changed.then_some(out)
}

/// The stream without its `marker` segments (before the first scan).
fn without_segments(stream: &[u8], marker: u8) -> Option<Vec<u8>> {
    let drop: Vec<(usize, usize)> = segments(stream)
        .into_iter()
        .take_while(|s| s.1 != 0xDA)
        .filter(|s| s.1 == marker)
        .map(|(at, _, len)| (at, at + 2 + len))
        .collect();
    if drop.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(stream.len());
    let mut from = 0;
    for (start, end) in drop {
        out.extend_from_slice(stream.get(from..start)?);
        from = end;
    }
    out.extend_from_slice(stream.get(from..)?);
    Some(out)
}

/// The marker segments of a JPEG or JPEG-LS stream (T.81 B.1, which T.87 shares): the offset
/// of each marker's 0xFF, the marker, and its segment's length, from after SOI to EOI. The
/// entropy-coded data after a scan header is stepped over (to the next marker that is not a
/// stuffed byte or a restart marker); the walk stops at anything that is not a marker.
pub(crate) fn segments(stream: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut i = 2; // after SOI
    while i + 4 <= stream.len() {
        if stream[i] != 0xFF {
            break;
        }
        let marker = stream[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([stream[i + 2], stream[i + 3]]));
        out.push((i, marker, len));
        i += 2 + len;
        if marker == 0xDA {
            while i + 1 < stream.len()
                && !(stream[i] == 0xFF
                    && stream[i + 1] != 0
                    && !(0xD0..=0xD7).contains(&stream[i + 1]))
            {
                i += 1;
            }
        }
    }
    out
}

/// The frame header of a JPEG-LS stream (SOF55, T.87 C.2.2): sample precision, lines,
/// columns and components; `None` for a stream without one (or not opening with SOI).
pub(crate) fn jpeg_ls_frame(stream: &[u8]) -> Option<(u8, u16, u16, u8)> {
    if stream.get(..2) != Some(&[0xFF, 0xD8]) {
        return None;
    }
    let (at, _, _) = segments(stream).into_iter().find(|s| s.1 == 0xF7)?;
    let b = stream.get(at + 4..at + 10)?;
    Some((
        b[0],
        u16::from_be_bytes([b[1], b[2]]),
        u16::from_be_bytes([b[3], b[4]]),
        b[5],
    ))
}

/// The component count (Ns) of a stream's first scan header, or `None` without one. A
/// JPEG-LS stream without interleave has one component a scan, and CharLS then gives the
/// components plane by plane.
pub(crate) fn first_scan_components(stream: &[u8]) -> Option<u8> {
    let (at, _, _) = segments(stream).into_iter().find(|s| s.1 == 0xDA)?;
    stream.get(at + 4).copied()
}

/// Rewrite Ss/Se/Ah/Al of every scan of a sequential DCT JPEG (SOF0/SOF1) to 0/63/0/0.
/// Returns true when anything changed.
fn normalize_sequential_scans(data: &mut [u8]) -> bool {
    let mut changed = false;
    let mut sequential = false;
    for (at, marker, _) in segments(data) {
        if matches!(marker, 0xC0 | 0xC1) {
            sequential = true;
        }
        if marker == 0xDA && sequential {
            let Some(&ns) = data.get(at + 4) else { break };
            let ss = at + 5 + 2 * usize::from(ns);
            if ss + 2 < data.len() && (data[ss] != 0 || data[ss + 1] != 63 || data[ss + 2] != 0) {
                data[ss] = 0;
                data[ss + 1] = 63;
                data[ss + 2] = 0;
                changed = true;
            }
        }
    }
    changed
}

/// Progressive scans decoded at most (libjpeg-turbo's advice for untrusted input: a stream of
/// thousands of tiny scans costs minutes of CPU).
const SCAN_LIMIT: CInt = 500;

/// Memory for whole-image coefficient buffers (progressive streams), in MB.
const MEMORY_LIMIT_MB: CInt = 2048;

fn decode_stream(
    jpeg: &[u8],
    size: Option<[usize; 2]>,
    stop_on_warning: bool,
) -> Result<JpegFrame, Failure> {
    // SAFETY: tj3Init has no preconditions; a null return is handled.
    let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as CInt) };
    if raw.is_null() {
        return Err("libjpeg-turbo could not start a decompressor".into());
    }
    let handle = Handle(raw);
    handle.set(
        tj::TJPARAM_TJPARAM_STOPONWARNING,
        CInt::from(stop_on_warning),
    )?;
    handle.set(tj::TJPARAM_TJPARAM_SCANLIMIT, SCAN_LIMIT)?;
    handle.set(tj::TJPARAM_TJPARAM_MAXMEMORY, MEMORY_LIMIT_MB)?;
    if let Some(pixels) = size.and_then(|[w, h]| CInt::try_from(w.checked_mul(h)?).ok()) {
        handle.set(tj::TJPARAM_TJPARAM_MAXPIXELS, pixels.max(1))?;
    }
    let len = u64::try_from(jpeg.len()).map_err(|_| "JPEG stream too long")?;
    // SAFETY: the pointer and length describe `jpeg`, which outlives the call.
    handle.outcome(
        unsafe { tj::tj3DecompressHeader(handle.0, jpeg.as_ptr(), len) },
        stop_on_warning,
    )?;
    let width =
        usize::try_from(handle.get(tj::TJPARAM_TJPARAM_JPEGWIDTH)).map_err(|_| "bad JPEG width")?;
    let height = usize::try_from(handle.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT))
        .map_err(|_| "bad JPEG height")?;
    if let Some([w, h]) = size
        && [w, h] != [width, height]
    {
        return Err(format!("JPEG stream is {width}x{height}, header says {w}x{h}").into());
    }
    let precision = handle.get(tj::TJPARAM_TJPARAM_PRECISION);
    let colorspace = handle.get(tj::TJPARAM_TJPARAM_COLORSPACE);
    let grey = colorspace == tj::TJCS_TJCS_GRAY as CInt;
    let (components, format) = if grey {
        (1, tj::TJPF_TJPF_GRAY)
    } else {
        (3, tj::TJPF_TJPF_RGB)
    };
    let count = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(components))
        .filter(|n| *n > 0 && *n <= 1 << 30)
        .ok_or("JPEG dimensions out of range")?;
    let samples = match precision {
        2..=8 => {
            let mut out = vec![0u8; count];
            // SAFETY: `out` holds width*height*components bytes, as the pixel format with pitch
            // 0 (packed rows) requires; `jpeg` outlives the call.
            let rc = unsafe {
                tj::tj3Decompress8(
                    handle.0,
                    jpeg.as_ptr(),
                    len,
                    out.as_mut_ptr(),
                    0,
                    format as CInt,
                )
            };
            handle.outcome(rc, stop_on_warning)?;
            JpegSamples::U8(out)
        }
        9..=12 => {
            let mut out = vec![0i16; count];
            // SAFETY: as above, with `count` 16-bit samples.
            let rc = unsafe {
                tj::tj3Decompress12(
                    handle.0,
                    jpeg.as_ptr(),
                    len,
                    out.as_mut_ptr(),
                    0,
                    format as CInt,
                )
            };
            handle.outcome(rc, stop_on_warning)?;
            JpegSamples::U16(out.into_iter().map(|v| v as u16).collect())
        }
        13..=16 => {
            let mut out = vec![0u16; count];
            // SAFETY: as above, with `count` 16-bit samples.
            let rc = unsafe {
                tj::tj3Decompress16(
                    handle.0,
                    jpeg.as_ptr(),
                    len,
                    out.as_mut_ptr(),
                    0,
                    format as CInt,
                )
            };
            handle.outcome(rc, stop_on_warning)?;
            JpegSamples::U16(out)
        }
        other => return Err(format!("JPEG data precision {other} is not supported").into()),
    };
    Ok(JpegFrame {
        width,
        height,
        components,
        samples,
        converted_from_ycbcr: !grey && colorspace == tj::TJCS_TJCS_YCbCr as CInt,
    })
}

/// What an encoder of one grey frame must be given: `width * height` samples, none wider
/// than `precision` bits (shared by this module's and `j2k`'s encoders).
pub(crate) fn check_grey_frame(
    samples: &[u16],
    width: usize,
    height: usize,
    precision: u8,
) -> Result<(), String> {
    if width == 0 || height == 0 || samples.len() != width * height {
        return Err(format!(
            "{} samples for a {width}x{height} frame",
            samples.len()
        ));
    }
    match samples.iter().find(|v| u32::from(**v) >> precision != 0) {
        Some(v) => Err(format!("sample {v} does not fit {precision} bits")),
        None => Ok(()),
    }
}

/// How a grey frame is compressed by [`encode_grey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegEncoding {
    /// Process 14, first-order prediction (selection value 1), no point transform: the JPEG
    /// Lossless transfer syntax 1.2.840.10008.1.2.4.70 (PS3.5 A.4.1), 2 to 16 bits.
    LosslessSv1,
    /// Sequential DCT, Huffman coded, at `quality` (1-100): baseline (4.50) for 8-bit samples,
    /// extended (4.51) for 12-bit ones.
    Lossy { quality: u8 },
}

/// Compress one grey frame of unsigned samples below `2^precision` (row-major).
pub fn encode_grey(
    samples: &[u16],
    width: usize,
    height: usize,
    precision: u8,
    encoding: JpegEncoding,
) -> Result<Vec<u8>, String> {
    let allowed = match encoding {
        JpegEncoding::LosslessSv1 => (2..=16).contains(&precision),
        JpegEncoding::Lossy { .. } => matches!(precision, 8 | 12),
    };
    if !allowed {
        return Err(format!("precision {precision} for {encoding:?}"));
    }
    check_grey_frame(samples, width, height, precision)?;
    let (w, h) = (
        CInt::try_from(width).map_err(|_| "frame too wide")?,
        CInt::try_from(height).map_err(|_| "frame too tall")?,
    );
    // SAFETY: tj3Init has no preconditions; a null return is handled.
    let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_COMPRESS as CInt) };
    if raw.is_null() {
        return Err("libjpeg-turbo could not start a compressor".into());
    }
    let handle = Handle(raw);
    let mut settings = vec![
        (tj::TJPARAM_TJPARAM_SUBSAMP, tj::TJSAMP_TJSAMP_GRAY as CInt),
        (tj::TJPARAM_TJPARAM_PRECISION, CInt::from(precision)),
    ];
    match encoding {
        JpegEncoding::LosslessSv1 => settings.extend([
            (tj::TJPARAM_TJPARAM_LOSSLESS, 1),
            (tj::TJPARAM_TJPARAM_LOSSLESSPSV, 1),
            (tj::TJPARAM_TJPARAM_LOSSLESSPT, 0),
        ]),
        JpegEncoding::Lossy { quality } => settings.push((
            tj::TJPARAM_TJPARAM_QUALITY,
            CInt::from(quality.clamp(1, 100)),
        )),
    }
    for (param, value) in settings {
        handle.set(param, value)?;
    }
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut size: tj::size_t = 0;
    let grey = tj::TJPF_TJPF_GRAY as CInt;
    // SAFETY: each source buffer holds width*height samples of the type the call takes, with
    // packed rows (pitch 0); `out` starts null so TurboJPEG allocates it, and it is freed below
    // on every path.
    let rc = unsafe {
        match precision {
            2..=8 => {
                let bytes: Vec<u8> = samples.iter().map(|&v| v as u8).collect();
                tj::tj3Compress8(handle.0, bytes.as_ptr(), w, 0, h, grey, &mut out, &mut size)
            }
            9..=12 => {
                let shorts: Vec<i16> = samples.iter().map(|&v| v as i16).collect();
                tj::tj3Compress12(
                    handle.0,
                    shorts.as_ptr(),
                    w,
                    0,
                    h,
                    grey,
                    &mut out,
                    &mut size,
                )
            }
            _ => tj::tj3Compress16(
                handle.0,
                samples.as_ptr(),
                w,
                0,
                h,
                grey,
                &mut out,
                &mut size,
            ),
        }
    };
    let result = if rc != 0 || out.is_null() {
        Err(handle.error())
    } else {
        let len = usize::try_from(size).map_err(|_| "JPEG stream too long".to_string());
        // SAFETY: on success TurboJPEG wrote `size` bytes at `out`.
        len.map(|len| unsafe { std::slice::from_raw_parts(out, len) }.to_vec())
    };
    if !out.is_null() {
        // SAFETY: `out` was allocated by TurboJPEG and is freed once.
        unsafe { tj::tj3Free(out.cast()) };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG-LS stream's first scan says whether components come a scan each (interleave
    /// mode none, which CharLS returns plane by plane) or together (T.87 C.2.3).
    #[test]
    fn jpeg_ls_scan_component_count() {
        // SOI, SOF55 (3 components of 8 bits, 2 x 2), SOS with Ns components.
        let stream = |ns: u8| {
            let mut s = vec![0xFF, 0xD8, 0xFF, 0xF7, 0x00, 0x11, 8, 0, 2, 0, 2, 3];
            s.extend_from_slice(&[1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
            s.extend_from_slice(&[0xFF, 0xDA, 0x00, 6 + 2 * ns, ns]);
            s.extend((0..ns).flat_map(|c| [c + 1, 0]));
            s.extend_from_slice(&[0, if ns == 1 { 0 } else { 2 }, 0]);
            s
        };
        assert_eq!(first_scan_components(&stream(1)), Some(1));
        assert_eq!(first_scan_components(&stream(3)), Some(3));
        assert_eq!(first_scan_components(&[0xFF, 0xD8, 0x00]), None);
    }

    fn ramp(width: usize, height: usize, max: u16) -> Vec<u16> {
        (0..width * height)
            .map(|v| ((v * 37 + v / width * 11) % (usize::from(max) + 1)) as u16)
            .collect()
    }

    #[test]
    fn lossless_round_trips_at_every_depth() {
        for (precision, max) in [(8u8, 255u16), (12, 4095), (16, 65535)] {
            let samples = ramp(40, 24, max);
            let stream = encode_grey(&samples, 40, 24, precision, JpegEncoding::LosslessSv1)
                .unwrap_or_else(|e| panic!("{precision}: {e}"));
            // SOI, and a lossless (SOF3) frame header of that precision.
            assert_eq!(&stream[..2], &[0xFF, 0xD8]);
            let sof3 = stream.windows(2).position(|m| m == [0xFF, 0xC3]).unwrap();
            assert_eq!(stream[sof3 + 4], precision);
            let back = decode(&stream, Some([40, 24])).unwrap();
            let values = match back.samples {
                JpegSamples::U8(b) => b.into_iter().map(u16::from).collect(),
                JpegSamples::U16(w) => w,
            };
            assert_eq!(values, samples, "{precision}-bit");
        }
    }

    #[test]
    fn lossy_twelve_bit_is_extended_and_close() {
        let samples: Vec<u16> = (0..64 * 64).map(|v| (1000 + v % 64 * 20) as u16).collect();
        let stream =
            encode_grey(&samples, 64, 64, 12, JpegEncoding::Lossy { quality: 95 }).unwrap();
        // SOF1: extended sequential DCT (T.81 B.1.1.3), 12-bit.
        let sof1 = stream.windows(2).position(|m| m == [0xFF, 0xC1]).unwrap();
        assert_eq!(stream[sof1 + 4], 12);
        let JpegSamples::U16(back) = decode(&stream, None).unwrap().samples else {
            panic!("12-bit samples expected")
        };
        let worst = samples
            .iter()
            .zip(&back)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(worst <= 40, "largest error {worst}");
    }

    #[test]
    fn refuses_what_a_process_cannot_hold() {
        assert!(encode_grey(&[0; 4], 2, 2, 16, JpegEncoding::Lossy { quality: 90 }).is_err());
        assert!(encode_grey(&[300; 4], 2, 2, 8, JpegEncoding::LosslessSv1).is_err());
        assert!(encode_grey(&[0; 5], 2, 2, 8, JpegEncoding::LosslessSv1).is_err());
    }

    fn grey_bytes(frame: JpegFrame) -> Vec<u8> {
        match frame.samples {
            JpegSamples::U8(b) => b,
            JpegSamples::U16(_) => panic!("8-bit samples expected"),
        }
    }

    /// libjpeg-turbo warns, and TurboJPEG returns -1, for bytes between two markers and after
    /// a scan's data, and for an unknown JFIF revision; IJG libjpeg 6b wrote such streams and
    /// showed them whole, and so do we (the same pixels as the clean stream). A stream cut
    /// short also only warns (the rest of the frame comes out grey): refused, also when a
    /// harmless warning comes first (libjpeg keeps only the first warning's text).
    #[test]
    fn harmless_warnings_pass_and_lost_pixels_do_not() {
        let samples = ramp(32, 16, 255);
        let stream = encode_grey(&samples, 32, 16, 8, JpegEncoding::Lossy { quality: 90 }).unwrap();
        let clean = grey_bytes(decode(&stream, Some([32, 16])).unwrap());
        let sos = segments(&stream).iter().find(|s| s.1 == 0xDA).unwrap().0;
        let mut padded = stream[..sos].to_vec();
        padded.extend_from_slice(&[0x00, 0x11, 0x22]);
        padded.extend_from_slice(&stream[sos..]);
        assert_eq!(grey_bytes(decode(&padded, Some([32, 16])).unwrap()), clean);
        let eoi = stream.len() - 2;
        let mut trailing = stream[..eoi].to_vec();
        trailing.extend((0..64u8).map(|b| b & 0x7F));
        trailing.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(
            grey_bytes(decode(&trailing, Some([32, 16])).unwrap()),
            clean
        );
        let app0 = segments(&stream).iter().find(|s| s.1 == 0xE0).unwrap().0;
        assert_eq!(&stream[app0 + 4..app0 + 9], b"JFIF\0");
        let mut revision = stream.clone();
        revision[app0 + 9] = 3;
        assert_eq!(
            grey_bytes(decode(&revision, Some([32, 16])).unwrap()),
            clean
        );

        let cut = &stream[..sos + (stream.len() - sos) / 2];
        let message = decode(cut, Some([32, 16])).unwrap_err();
        assert!(message.contains("Premature end"), "{message}");
        let cut = &padded[..sos + 3 + (stream.len() - sos) / 2];
        let message = decode(cut, Some([32, 16])).unwrap_err();
        assert!(message.contains("Premature end"), "{message}");
    }

    /// The header's size is checked before the frame's buffer is sized from the stream's.
    #[test]
    fn a_stream_of_another_size_is_refused() {
        let samples = ramp(32, 16, 255);
        let stream = encode_grey(&samples, 32, 16, 8, JpegEncoding::LosslessSv1).unwrap();
        let message = decode(&stream, Some([16, 16])).unwrap_err();
        assert!(message.contains("is 32x16, header says 16x16"), "{message}");
        assert!(decode(&stream, Some([32, 16])).is_ok());
    }
}
