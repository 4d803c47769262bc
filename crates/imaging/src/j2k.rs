//! JPEG 2000 frames written by OpenJPEG (the library that also decodes them through dicom-rs):
//! a raw codestream, as PS3.5 A.4.4 requires (no JP2 box), one grey component, reversible 5/3
//! wavelet for lossless (1.2.840.10008.1.2.4.90) or irreversible 9/7 at a compression ratio
//! (1.2.840.10008.1.2.4.91). For `synth`: tests and benchmarks that need a J2K series without
//! transcoding tools.
//!
//! The second module with `unsafe` (after `jpeg`): OpenJPEG's C API, with every pointer it
//! returns checked for null and released by a guard on every path out.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_void};

use openjpeg_sys as opj;

/// How a frame is compressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum J2kEncoding {
    /// Reversible 5/3 wavelet, one quality layer: decodes to the same values.
    Lossless,
    /// Irreversible 9/7 wavelet at `ratio`:1 of the samples' size.
    Lossy { ratio: f32 },
}

/// Where OpenJPEG writes the codestream: a growable buffer it may seek in.
#[derive(Default)]
struct Sink {
    bytes: Vec<u8>,
    at: usize,
}

unsafe extern "C" fn sink_write(buffer: *mut c_void, count: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `Sink` given to opj_stream_set_user_data, alive for the stream's
    // life; OpenJPEG hands `count` readable bytes at `buffer`.
    let (sink, data) = unsafe {
        (
            &mut *user.cast::<Sink>(),
            std::slice::from_raw_parts(buffer.cast::<u8>(), count),
        )
    };
    let end = sink.at + count;
    if sink.bytes.len() < end {
        sink.bytes.resize(end, 0);
    }
    sink.bytes[sink.at..end].copy_from_slice(data);
    sink.at = end;
    count
}

unsafe extern "C" fn sink_skip(count: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    match usize::try_from(sink.at as i64 + count) {
        Ok(to) => {
            sink.at = to;
            count
        }
        Err(_) => -1,
    }
}

unsafe extern "C" fn sink_seek(to: i64, user: *mut c_void) -> i32 {
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<Sink>() };
    match usize::try_from(to) {
        Ok(to) => {
            sink.at = to;
            1
        }
        Err(_) => 0,
    }
}

unsafe extern "C" fn keep_error(message: *const c_char, user: *mut c_void) {
    if message.is_null() {
        return;
    }
    // SAFETY: `user` is the `String` given to opj_set_error_handler, alive while the codec is;
    // OpenJPEG passes a NUL-terminated message.
    let (errors, text) = unsafe { (&mut *user.cast::<String>(), CStr::from_ptr(message)) };
    errors.push_str(text.to_string_lossy().trim_end());
    errors.push_str("; ");
}

struct ImageGuard(*mut opj::opj_image_t);
impl Drop for ImageGuard {
    fn drop(&mut self) {
        // SAFETY: created by opj_image_create, destroyed once.
        unsafe { opj::opj_image_destroy(self.0) }
    }
}

struct CodecGuard(*mut opj::opj_codec_t);
impl Drop for CodecGuard {
    fn drop(&mut self) {
        // SAFETY: created by opj_create_compress, destroyed once.
        unsafe { opj::opj_destroy_codec(self.0) }
    }
}

struct StreamGuard(*mut opj::opj_stream_t);
impl Drop for StreamGuard {
    fn drop(&mut self) {
        // SAFETY: created by opj_stream_create, destroyed once (its user data is ours and has
        // no free function).
        unsafe { opj::opj_stream_destroy(self.0) }
    }
}

/// Compress one grey frame of unsigned samples below `2^precision` (row-major).
pub fn encode_grey(
    samples: &[u16],
    width: usize,
    height: usize,
    precision: u8,
    encoding: J2kEncoding,
) -> Result<Vec<u8>, String> {
    if !(1..=16).contains(&precision) {
        return Err(format!("precision {precision} (1 to 16 bits)"));
    }
    super::jpeg::check_grey_frame(samples, width, height, precision)?;
    let (w, h) = (
        u32::try_from(width).map_err(|_| "frame too wide")?,
        u32::try_from(height).map_err(|_| "frame too tall")?,
    );
    let mut component = opj::opj_image_cmptparm_t {
        dx: 1,
        dy: 1,
        w,
        h,
        x0: 0,
        y0: 0,
        prec: u32::from(precision),
        bpp: u32::from(precision),
        sgnd: 0,
    };
    // SAFETY: one component described by `component`; a null return is handled.
    let image =
        unsafe { opj::opj_image_create(1, &mut component, opj::COLOR_SPACE::OPJ_CLRSPC_GRAY) };
    if image.is_null() {
        return Err("OpenJPEG could not allocate the image".into());
    }
    let image = ImageGuard(image);
    // SAFETY: opj_image_create allocated one component of w*h samples at comps[0].data (both
    // pointers checked); the image's reference grid is ours to set.
    unsafe {
        let img = &mut *image.0;
        img.x0 = 0;
        img.y0 = 0;
        img.x1 = w;
        img.y1 = h;
        if img.comps.is_null() || (*img.comps).data.is_null() {
            return Err("OpenJPEG could not allocate the samples".into());
        }
        let comp = &mut *img.comps;
        let data = std::slice::from_raw_parts_mut(comp.data, samples.len());
        for (d, s) in data.iter_mut().zip(samples) {
            *d = i32::from(*s);
        }
    }

    let mut params = std::mem::MaybeUninit::<opj::opj_cparameters_t>::zeroed();
    // SAFETY: the call fills every field of the (zeroed) parameter block.
    let mut params = unsafe {
        opj::opj_set_default_encoder_parameters(params.as_mut_ptr());
        params.assume_init()
    };
    params.tcp_numlayers = 1;
    params.cp_disto_alloc = 1;
    match encoding {
        J2kEncoding::Lossless => {
            params.irreversible = 0;
            params.tcp_rates[0] = 0.0;
        }
        J2kEncoding::Lossy { ratio } => {
            params.irreversible = 1;
            params.tcp_rates[0] = ratio.max(1.0);
        }
    }
    // Each resolution halves the frame; the smallest must keep at least one sample.
    let smallest = width.min(height);
    params.numresolution = (1..=6).take_while(|r| smallest >> (r - 1) >= 1).count() as i32;

    // Declared before the codec and the stream, so they outlive both: locals drop in reverse
    // order, and the codec keeps a pointer to `errors` until it is destroyed.
    let mut errors = String::new();
    let mut sink = Sink::default();
    // SAFETY: a null return is handled.
    let codec = unsafe { opj::opj_create_compress(opj::CODEC_FORMAT::OPJ_CODEC_J2K) };
    if codec.is_null() {
        return Err("OpenJPEG could not start an encoder".into());
    }
    let codec = CodecGuard(codec);
    // SAFETY: `errors`, `sink`, `params` and `image` outlive the codec and the stream (see
    // above; the stream is dropped inside this block); the callbacks match OpenJPEG's
    // signatures.
    unsafe {
        opj::opj_set_error_handler(
            codec.0,
            Some(keep_error),
            (&mut errors as *mut String).cast(),
        );
        if opj::opj_setup_encoder(codec.0, &mut params, image.0) == 0 {
            return Err(format!("OpenJPEG refused the parameters: {errors}"));
        }
        let stream = opj::opj_stream_create(1 << 16, 0);
        if stream.is_null() {
            return Err("OpenJPEG could not create an output stream".into());
        }
        let stream = StreamGuard(stream);
        opj::opj_stream_set_write_function(stream.0, Some(sink_write));
        opj::opj_stream_set_skip_function(stream.0, Some(sink_skip));
        opj::opj_stream_set_seek_function(stream.0, Some(sink_seek));
        opj::opj_stream_set_user_data(stream.0, (&mut sink as *mut Sink).cast(), None);
        let ok = opj::opj_start_compress(codec.0, image.0, stream.0) == 1
            && opj::opj_encode(codec.0, stream.0) == 1
            && opj::opj_end_compress(codec.0, stream.0) == 1;
        drop(stream);
        if !ok {
            return Err(format!("OpenJPEG could not encode the frame: {errors}"));
        }
    }
    Ok(sink.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_does_not_fit() {
        assert!(encode_grey(&[0; 3], 2, 2, 12, J2kEncoding::Lossless).is_err());
        assert!(encode_grey(&[4096; 4], 2, 2, 12, J2kEncoding::Lossless).is_err());
        assert!(encode_grey(&[0; 4], 2, 2, 17, J2kEncoding::Lossless).is_err());
    }

    #[test]
    fn writes_a_raw_codestream() {
        let samples: Vec<u16> = (0..64 * 48).map(|v| (v * 7 % 4096) as u16).collect();
        let stream = encode_grey(&samples, 64, 48, 12, J2kEncoding::Lossless).unwrap();
        // SOC then SIZ (ITU-T T.800 A.4.1, A.5.1), and EOC at the end.
        assert_eq!(&stream[..4], &[0xFF, 0x4F, 0xFF, 0x51]);
        assert_eq!(&stream[stream.len() - 2..], &[0xFF, 0xD9]);
    }
}
