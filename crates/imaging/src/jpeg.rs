//! JPEG frames (PS3.5 A.4.1: baseline, extended 12-bit, lossless process 14) through
//! libjpeg-turbo 3, the one maintained decoder that covers 8-bit and 12-bit DCT and 2-16 bit
//! lossless. jpeg-decoder (dicom-rs's default) has no 12-bit DCT path, and 12-bit lossy JPEG is
//! common on older CT and MR CDs.
//!
//! This is the only module with `unsafe`: a handful of calls into TurboJPEG's C API, each with
//! the buffer sizes it is given checked here first.

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

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle; tj3Get only reads a parameter.
        unsafe { tj::tj3Get(self.0, param as CInt) }
    }
}

type CInt = std::os::raw::c_int;

/// Decode one JPEG stream (one DICOM frame).
///
/// Some encoders (older GE and Philips lossy JPEG among them) write sequential DCT scans with
/// spectral selection values that only progressive JPEG may carry (ITU-T T.81 B.2.3: Ss = 0,
/// Se = 63, Ah = Al = 0 for sequential DCT). IJG libjpeg 6b, which such files were made and
/// read with, ignores them; libjpeg-turbo refuses them. When it does, the scan headers are set
/// to the only values T.81 allows and the stream is decoded again.
pub fn decode(jpeg: &[u8]) -> Result<JpegFrame, String> {
    match decode_stream(jpeg) {
        Err(e) if e.contains("SOS") => {
            let mut fixed = jpeg.to_vec();
            if normalize_sequential_scans(&mut fixed) {
                decode_stream(&fixed)
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

/// Rewrite Ss/Se/Ah/Al of every scan of a sequential DCT JPEG (SOF0/SOF1) to 0/63/0/0.
/// Returns true when anything changed.
fn normalize_sequential_scans(data: &mut [u8]) -> bool {
    let mut changed = false;
    let mut sequential = false;
    let mut i = 2; // after SOI
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return changed;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        if matches!(marker, 0xC0 | 0xC1) {
            sequential = true;
        }
        if marker == 0xDA {
            let Some(&ns) = data.get(i + 4) else { break };
            let at = i + 5 + 2 * usize::from(ns);
            if sequential
                && at + 2 < data.len()
                && (data[at] != 0 || data[at + 1] != 63 || data[at + 2] != 0)
            {
                data[at] = 0;
                data[at + 1] = 63;
                data[at + 2] = 0;
                changed = true;
            }
            // Skip the entropy-coded segment: to the next marker that is not a stuffed byte
            // or a restart marker.
            i += 2 + len;
            while i + 1 < data.len()
                && !(data[i] == 0xFF && data[i + 1] != 0 && !(0xD0..=0xD7).contains(&data[i + 1]))
            {
                i += 1;
            }
            continue;
        }
        i += 2 + len;
    }
    changed
}

fn decode_stream(jpeg: &[u8]) -> Result<JpegFrame, String> {
    // SAFETY: tj3Init has no preconditions; a null return is handled.
    let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as CInt) };
    if raw.is_null() {
        return Err("libjpeg-turbo could not start a decompressor".into());
    }
    let handle = Handle(raw);
    let len = u64::try_from(jpeg.len()).map_err(|_| "JPEG stream too long")?;
    // SAFETY: the pointer and length describe `jpeg`, which outlives the call.
    if unsafe { tj::tj3DecompressHeader(handle.0, jpeg.as_ptr(), len) } != 0 {
        return Err(handle.error());
    }
    let width =
        usize::try_from(handle.get(tj::TJPARAM_TJPARAM_JPEGWIDTH)).map_err(|_| "bad JPEG width")?;
    let height = usize::try_from(handle.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT))
        .map_err(|_| "bad JPEG height")?;
    let precision = handle.get(tj::TJPARAM_TJPARAM_PRECISION);
    let grey = handle.get(tj::TJPARAM_TJPARAM_COLORSPACE) == tj::TJCS_TJCS_GRAY as CInt;
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
            if rc != 0 {
                return Err(handle.error());
            }
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
            if rc != 0 {
                return Err(handle.error());
            }
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
            if rc != 0 {
                return Err(handle.error());
            }
            JpegSamples::U16(out)
        }
        other => return Err(format!("JPEG data precision {other} is not supported")),
    };
    Ok(JpegFrame {
        width,
        height,
        components,
        samples,
    })
}
