//! A compressed object's data set written again in Explicit VR Little Endian, its pixels
//! decoded: what a DICOMweb server sends to a request for the default transfer syntax
//! (PS3.18 8.7.3.5.2) when it stores the object compressed.
//!
//! Every element but a few is copied byte for byte (no text decoded and encoded again,
//! whatever its character set); those few are what decoding changes (PS3.5 8.2, PS3.3
//! C.7.6.3.1, C.7.6.1.1.5):
//! - Pixel Data becomes native samples ([`crate::decode::native_frames`]): OW for 16 bits
//!   allocated, OB for 8, of defined length;
//! - a colour image becomes interleaved (Planar Configuration 0), in RGB, or in YBR_FULL where
//!   the codec gives that (its Photometric Interpretation says which; lossless codecs are
//!   not rounded through a colour conversion);
//! - an image from a syntax that is always lossy (JPEG's DCT processes) is said to be (Lossy
//!   Image Compression `01`, whatever it said), and one from a syntax that may be lossy
//!   (JPEG-LS near-lossless, JPEG 2000, HTJ2K) that does not say is said to be, each with its
//!   ratio and method where it gives none, so that a reader of the uncompressed copy still
//!   knows. A lossless JPEG 2000 stream in the syntax that allows both is then marked lossy:
//!   nothing in the syntax says which, and the other way round would hide a lossy image;
//! - what is only true of encapsulated Pixel Data goes: the Extended Offset Table and its
//!   lengths, and an Icon Image Sequence whose icon is itself encapsulated (any other element
//!   holding encapsulated pixels refuses the conversion);
//! - group lengths (retired, and no longer true) go, and so does anything after Pixel Data.
//!
//! Owns: the byte layout of the converted data set. Decoding is `decode`'s.

use std::path::Path;

use crate::decode::native_frames;
use crate::open::top_level_elements;

/// Whether objects in `ts` are decompressed here: the encapsulated syntaxes `decode` reads.
pub fn is_decompressed(ts: &str) -> bool {
    crate::decode::is_jpeg(ts)
        || matches!(
            ts,
            "1.2.840.10008.1.2.4.80"
                | "1.2.840.10008.1.2.4.81"
                | "1.2.840.10008.1.2.4.90"
                | "1.2.840.10008.1.2.4.91"
                | "1.2.840.10008.1.2.4.201"
                | "1.2.840.10008.1.2.4.202"
                | "1.2.840.10008.1.2.4.203"
                | "1.2.840.10008.1.2.5"
                | "1.2.840.10008.1.2.8.1"
                | "1.2.840.10008.1.2.1.98"
        )
}

/// How lossy a syntax is, and its Lossy Image Compression Method (0028,2114, PS3.3
/// C.7.6.1.1.5.1).
enum Loss {
    /// JPEG's DCT processes: every image in them was lossy compressed.
    Always(&'static str),
    /// Lossy or not, as the encoder chose (JPEG-LS near-lossless, JPEG 2000, HTJ2K).
    Maybe(&'static str),
    /// Lossless only.
    Never,
}

fn loss(ts: &str) -> Loss {
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.53"
        | "1.2.840.10008.1.2.4.55" => Loss::Always("ISO_10918_1"),
        "1.2.840.10008.1.2.4.81" => Loss::Maybe("ISO_14495_1"),
        "1.2.840.10008.1.2.4.91" => Loss::Maybe("ISO_15444_1"),
        "1.2.840.10008.1.2.4.203" => Loss::Maybe("ISO_15444_15"),
        _ => Loss::Never,
    }
}

/// A data set written again with its pixels decoded ([`decompressed_data_set`]), in two
/// pieces, so that the pixels are never copied once more to be joined to the rest: `head`,
/// every element up to Pixel Data and Pixel Data's own header, then `pixels`, its value.
#[derive(Debug, Clone)]
pub struct Decompressed {
    pub head: Vec<u8>,
    pub pixels: Vec<u8>,
}

impl Decompressed {
    /// The whole data set in one buffer.
    pub fn concat(self) -> Vec<u8> {
        let mut out = self.head;
        out.extend_from_slice(&self.pixels);
        out
    }
}

/// The data set of `file` (a PS3.10 file, also on disk at `path` for the decoders, stored in
/// an encapsulated syntax, which encodes its data set in explicit VR little endian) with its
/// Pixel Data decoded, in Explicit VR Little Endian (see the module's notes), to follow a File
/// Meta group that names that syntax. `Err` for a syntax not decompressed here, pixels that
/// cannot be decoded or written natively (`decode::writes_natively`), more than `cap` bytes of
/// them, or a data set that does not walk.
pub fn decompressed_data_set(path: &Path, file: &[u8], cap: u64) -> Result<Decompressed, String> {
    let (start, ts) = crate::open::part10_data_set(file).ok_or("not a PS3.10 file")?;
    let ts = ts.trim_end_matches(['\0', ' ']);
    if !is_decompressed(ts) {
        return Err(format!("transfer syntax {ts} is not decompressed here"));
    }
    let data_set = &file[start..];
    let elements = top_level_elements(data_set)?;
    let pixel_data = elements
        .iter()
        .find(|e| (e.group, e.element) == (0x7FE0, 0x0010) && e.undefined_length)
        .ok_or("no encapsulated Pixel Data")?;
    // Encapsulated pixels anywhere but in Pixel Data and an icon (dropped) would be left
    // encapsulated in a native data set.
    if let Some(e) = elements.iter().find(|e| {
        !matches!((e.group, e.element), (0x7FE0, 0x0010) | (0x0088, 0x0200))
            && holds_encapsulated_pixels(&data_set[e.bytes.clone()])
    }) {
        return Err(format!(
            "element ({:04X},{:04X}) holds encapsulated pixels of its own",
            e.group, e.element
        ));
    }
    let pixels =
        native_frames(path, None, cap.min(u64::from(u32::MAX - 1))).map_err(|e| e.to_string())?;
    let native_len = pixels.bytes.len();
    let compressed_len = pixel_data.bytes.len().max(1);
    let has = |group, element| {
        elements
            .iter()
            .any(|e| (e.group, e.element) == (group, element))
    };
    let colour = pixels.format.samples_per_pixel == 3;
    let mut inserted: Vec<(u16, u16, Vec<u8>)> = Vec::new();
    if colour && !has(0x0028, 0x0006) {
        inserted.push((
            0x0028,
            0x0006,
            element(0x0028, 0x0006, *b"US", &0u16.to_le_bytes()),
        ));
    }
    let lossy = match loss(ts) {
        Loss::Always(method) => Some(method),
        Loss::Maybe(method) if !has(0x0028, 0x2110) => Some(method),
        _ => None,
    };
    if let Some(method) = lossy {
        if !has(0x0028, 0x2110) {
            inserted.push((0x0028, 0x2110, text(0x0028, 0x2110, *b"CS", "01")));
        }
        if !has(0x0028, 0x2112) {
            let ratio = native_len as f64 / compressed_len as f64;
            inserted.push((
                0x0028,
                0x2112,
                text(0x0028, 0x2112, *b"DS", &ratio_text(ratio)),
            ));
        }
        if !has(0x0028, 0x2114) {
            inserted.push((0x0028, 0x2114, text(0x0028, 0x2114, *b"CS", method)));
        }
    }
    let mut head = Vec::with_capacity(data_set.len().min(1 << 20));
    let mut pending = inserted.into_iter().peekable();
    for e in &elements {
        while let Some((_, _, bytes)) =
            pending.next_if(|(g, el, _)| (*g, *el) < (e.group, e.element))
        {
            head.extend_from_slice(&bytes);
        }
        match (e.group, e.element) {
            // Group lengths (outside the meta group, which is not here) count bytes that
            // change.
            (_, 0x0000) => {}
            (0x0028, 0x0004) if colour => head.extend(text(
                0x0028,
                0x0004,
                *b"CS",
                &pixels.format.photometric_interpretation,
            )),
            (0x0028, 0x0006) if colour => {
                head.extend(element(0x0028, 0x0006, *b"US", &0u16.to_le_bytes()))
            }
            (0x0028, 0x2110) if lossy.is_some() => head.extend(text(0x0028, 0x2110, *b"CS", "01")),
            (0x0088, 0x0200) if holds_encapsulated_pixels(&data_set[e.bytes.clone()]) => {}
            (0x7FE0, 0x0001) | (0x7FE0, 0x0002) => {}
            (0x7FE0, 0x0010) => break,
            _ => head.extend_from_slice(&data_set[e.bytes.clone()]),
        }
    }
    let words = pixels.format.bits_allocated == 16;
    let mut pixels = pixels.bytes;
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    let len = u32::try_from(pixels.len())
        .ok()
        .filter(|l| *l != u32::MAX)
        .ok_or("decoded pixels too long for one element")?;
    head.extend_from_slice(&0x7FE0u16.to_le_bytes());
    head.extend_from_slice(&0x0010u16.to_le_bytes());
    head.extend_from_slice(if words { b"OW" } else { b"OB" });
    head.extend_from_slice(&[0, 0]);
    head.extend_from_slice(&len.to_le_bytes());
    Ok(Decompressed { head, pixels })
}

/// Whether an element's bytes hold encapsulated Pixel Data (an icon compressed as the image
/// is, PS3.5 A.4): Pixel Data of undefined length, with an explicit VR (OB or OW) or, in a
/// CP-246 sequence's implicit VR items, without one.
fn holds_encapsulated_pixels(bytes: &[u8]) -> bool {
    const UNDEFINED: [u8; 4] = [0xFF; 4];
    let tag = [0xE0, 0x7F, 0x10, 0x00];
    bytes.windows(12).any(|w| {
        w[..4] == tag
            && ((matches!(&w[4..6], b"OB" | b"OW") && w[6..8] == [0, 0] && w[8..12] == UNDEFINED)
                || w[4..8] == UNDEFINED)
    })
}

/// A compression ratio as a Decimal String (at most 16 characters).
fn ratio_text(ratio: f64) -> String {
    if ratio.is_finite() && ratio < 1e9 {
        format!("{ratio:.2}")
    } else {
        "1".into()
    }
}

/// An explicit VR little endian element of a short-length VR.
fn element(group: u16, el: u16, vr: [u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&el.to_le_bytes());
    out.extend_from_slice(&vr);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// A text element, padded to an even length with a space (PS3.5 6.2).
fn text(group: u16, el: u16, vr: [u8; 2], value: &str) -> Vec<u8> {
    let mut bytes = value.trim().as_bytes().to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(b' ');
    }
    element(group, el, vr, &bytes)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use dicom_core::Tag;
    use dicom_dictionary_std::tags;
    use dicom_object::DefaultDicomObject;

    use super::*;
    use crate::synth::{PhantomSpec, SynthSyntax, write_series};

    /// The phantom's files in `syntax` (one Enhanced CT object when `enhanced`), by name.
    fn series(dir: &Path, syntax: SynthSyntax, enhanced: bool) -> Vec<PathBuf> {
        let spec = PhantomSpec {
            columns: 24,
            rows: 20,
            slices: 3,
            seed: 7,
            syntax,
            enhanced,
            ..Default::default()
        };
        let folder = dir.join(format!("{syntax:?}-{enhanced}"));
        write_series(&spec, &folder).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// The data set of the file at `path` decompressed, its layout checked: top-level tags in
    /// strictly increasing order (dicom-rs would read a data set out of order, or with an
    /// element twice, without a word), no group lengths, no Extended Offset Table, Pixel Data
    /// last and of defined length.
    fn decompress(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
        let file = std::fs::read(path).unwrap();
        let data_set = decompressed_data_set(path, &file, cap)?.concat();
        let elements = top_level_elements(&data_set).unwrap();
        let tags: Vec<(u16, u16)> = elements.iter().map(|e| (e.group, e.element)).collect();
        assert!(tags.windows(2).all(|w| w[0] < w[1]), "{tags:04X?}");
        assert!(tags.iter().all(|t| t.1 != 0), "a group length: {tags:04X?}");
        assert!(!tags.contains(&(0x7FE0, 0x0001)) && !tags.contains(&(0x7FE0, 0x0002)));
        let last = elements.last().unwrap();
        assert_eq!((last.group, last.element), (0x7FE0, 0x0010));
        assert!(!last.undefined_length);
        assert_eq!(last.bytes.end, data_set.len());
        Ok(data_set)
    }

    /// A decompressed data set read back by dicom-rs, under a File Meta group that names
    /// Explicit VR Little Endian.
    fn read_back(original: &DefaultDicomObject, data_set: &[u8]) -> DefaultDicomObject {
        let meta = original.meta();
        let mut file = crate::open::part10_header(
            meta.media_storage_sop_class_uid(),
            meta.media_storage_sop_instance_uid(),
            "1.2.840.10008.1.2.1",
            None,
        )
        .unwrap();
        file.extend_from_slice(data_set);
        dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(&file[..])
            .unwrap()
    }

    /// Every element but Pixel Data, as dicom-rs reads it.
    fn elements_but_pixels(obj: &DefaultDicomObject) -> Vec<(Tag, dicom_core::VR, String)> {
        obj.iter()
            .filter(|e| e.header().tag != tags::PIXEL_DATA)
            .map(|e| (e.header().tag, e.header().vr, format!("{:?}", e.value())))
            .collect()
    }

    /// Pixel Data's bytes as they lie.
    fn pixel_bytes(obj: &DefaultDicomObject) -> Vec<u8> {
        obj.element(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap()
            .into_owned()
    }

    /// A lossless syntax decompresses to the bytes the same phantom has uncompressed, one file
    /// a slice and one multi-frame object alike; every other element is the compressed file's
    /// (CharLS's own Lossy Image Compression `00` too), and nothing says it was lossy
    /// compressed.
    #[test]
    fn lossless_syntaxes_decompress_to_the_uncompressed_twin() {
        let dir = tempfile::tempdir().unwrap();
        for enhanced in [false, true] {
            let twins = series(dir.path(), SynthSyntax::ExplicitLe, enhanced);
            for syntax in [
                SynthSyntax::Rle,
                SynthSyntax::JpegLs,
                SynthSyntax::JpegLossless,
                SynthSyntax::J2kLossless,
            ] {
                let files = series(dir.path(), syntax, enhanced);
                assert_eq!(files.len(), twins.len());
                for (file, twin) in files.iter().zip(&twins) {
                    let what = format!("{syntax:?}, enhanced {enhanced}: {}", file.display());
                    let original = dicom_object::open_file(file).unwrap();
                    let twin = dicom_object::open_file(twin).unwrap();
                    let data_set = decompress(file, u64::MAX).unwrap();
                    let back = read_back(&original, &data_set);
                    assert_eq!(pixel_bytes(&back), pixel_bytes(&twin), "{what}");
                    assert_eq!(
                        back.element(tags::PIXEL_DATA).unwrap().header().vr,
                        dicom_core::VR::OW,
                        "{what}"
                    );
                    assert_eq!(
                        elements_but_pixels(&back),
                        elements_but_pixels(&original),
                        "{what}"
                    );
                    let lossy = back
                        .element(tags::LOSSY_IMAGE_COMPRESSION)
                        .ok()
                        .and_then(|e| e.to_str().ok().map(|t| t.trim().to_string()));
                    assert_ne!(lossy.as_deref(), Some("01"), "{what}");
                }
            }
        }
    }

    /// An image from a lossy syntax that does not say it was lossy compressed is said to be,
    /// with its ratio and method (PS3.3 C.7.6.1.1.5); its pixels are the decoder's.
    #[test]
    fn a_lossy_image_that_does_not_say_so_is_marked_lossy() {
        let dir = tempfile::tempdir().unwrap();
        for (syntax, method) in [
            (SynthSyntax::J2k, "ISO_15444_1"),
            (SynthSyntax::JpegExtended, "ISO_10918_1"),
        ] {
            let file = &series(dir.path(), syntax, false)[0];
            let mut obj = dicom_object::open_file(file).unwrap();
            assert!(obj.element(tags::LOSSY_IMAGE_COMPRESSION).is_ok());
            // As some writers leave it: nothing about the loss.
            for tag in [
                tags::LOSSY_IMAGE_COMPRESSION,
                tags::LOSSY_IMAGE_COMPRESSION_RATIO,
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            ] {
                obj.remove_element(tag);
            }
            let silent = dir.path().join(format!("{syntax:?}-silent.dcm"));
            obj.write_to_file(&silent).unwrap();
            let data_set = decompress(&silent, u64::MAX).unwrap();
            let back = read_back(&obj, &data_set);
            let text = |tag| {
                back.element(tag)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim()
                    .to_string()
            };
            assert_eq!(text(tags::LOSSY_IMAGE_COMPRESSION), "01", "{syntax:?}");
            assert_eq!(text(tags::LOSSY_IMAGE_COMPRESSION_METHOD), method);
            let ratio: f64 = text(tags::LOSSY_IMAGE_COMPRESSION_RATIO).parse().unwrap();
            assert!(ratio > 1.5, "{syntax:?}: ratio {ratio}");
            let decoded = native_frames(&silent, None, u64::MAX).unwrap();
            assert_eq!(pixel_bytes(&back), decoded.bytes, "{syntax:?}");
            // One that says so keeps its own words.
            let data_set = decompress(file, u64::MAX).unwrap();
            let back = read_back(&obj, &data_set);
            let original = dicom_object::open_file(file).unwrap();
            for tag in [
                tags::LOSSY_IMAGE_COMPRESSION,
                tags::LOSSY_IMAGE_COMPRESSION_RATIO,
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            ] {
                assert_eq!(
                    back.element(tag).unwrap().value(),
                    original.element(tag).unwrap().value(),
                    "{syntax:?}"
                );
            }
        }
    }

    /// A syntax that is always lossy (JPEG's DCT processes) is said to be whatever the file
    /// said ("00" here, wrongly); an icon compressed as the image is goes; encapsulated pixels
    /// anywhere else refuse the conversion.
    #[test]
    fn always_lossy_icons_and_nested_encapsulated_pixels() {
        use dicom_core::value::{DataSetSequence, PixelFragmentSequence, Value};
        use dicom_core::{DataElement, PrimitiveValue, VR};
        let dir = tempfile::tempdir().unwrap();
        let file = &series(dir.path(), SynthSyntax::JpegExtended, false)[0];
        let mut obj = dicom_object::open_file(file).unwrap();
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            PrimitiveValue::from("00"),
        ));
        let icon = |tag| {
            let mut item = dicom_object::InMemDicomObject::new_empty();
            item.put(DataElement::new(
                tags::ROWS,
                VR::US,
                PrimitiveValue::from(1u16),
            ));
            item.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                Value::PixelSequence(PixelFragmentSequence::new(vec![], vec![vec![1, 2]])),
            ));
            DataElement::new(tag, VR::SQ, DataSetSequence::from(vec![item]))
        };
        obj.put(icon(tags::ICON_IMAGE_SEQUENCE));
        let with_icon = dir.path().join("icon.dcm");
        obj.write_to_file(&with_icon).unwrap();
        let back = read_back(&obj, &decompress(&with_icon, u64::MAX).unwrap());
        let lossy = back.element(tags::LOSSY_IMAGE_COMPRESSION).unwrap();
        assert_eq!(lossy.to_str().unwrap().trim(), "01");
        assert!(back.element(tags::ICON_IMAGE_SEQUENCE).is_err());
        obj.put(icon(Tag(0x0009, 0x1010)));
        let private = dir.path().join("private.dcm");
        obj.write_to_file(&private).unwrap();
        let e = decompress(&private, u64::MAX).unwrap_err();
        assert!(e.contains("(0009,1010) holds encapsulated pixels"), "{e}");
    }

    /// Pixels over the cap are refused before they are decoded; syntaxes not compressed are
    /// not written again here.
    #[test]
    fn what_is_not_decompressed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = &series(dir.path(), SynthSyntax::Rle, false)[0];
        let e = decompress(file, 24 * 20 * 2 - 1).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        assert!(decompress(file, 24 * 20 * 2).is_ok());
        let plain = &series(dir.path(), SynthSyntax::ExplicitLe, false)[0];
        let e = decompress(plain, u64::MAX).unwrap_err();
        assert!(e.contains("not decompressed here"), "{e}");
    }
}
