//! Siemens mosaics: one stored frame tiling every slice of a volume (EPI, DTI), and the Siemens
//! CSA header that says how to undo it.
//!
//! A mosaic of `n` slices is a grid of `ceil(sqrt(n))` tiles a side, filled row by row in slice
//! order. Image Position (Patient) of a mosaic is that of the *whole grid's* first pixel, so the
//! first tile's real position is found by moving from the grid centre to the tile centre
//! (the correction dcm2niix, nibabel and SPM all apply):
//!
//! ```text
//! P0 = IPP + X Δc (C - c)/2 + Y Δr (R - r)/2        (R, C mosaic size; r, c tile size)
//! Ps = P0 + s Δz N                                   (N = CSA SliceNormalVector)
//! ```
//!
//! `N` comes from the CSA Image Header (0029,1010) because tiles may be stored head-to-foot or
//! foot-to-head: it points the way slice numbers increase, which `X × Y` does not say.

use serde::Serialize;

/// How a mosaic frame tiles its slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MosaicLayout {
    /// Rows and Columns of the stored frame (the whole grid).
    pub full_rows: u16,
    pub full_columns: u16,
    /// Size of one tile (one slice).
    pub tile_rows: u16,
    pub tile_columns: u16,
    pub tiles_per_row: u16,
    /// Number of slices (Siemens NumberOfImagesInMosaic).
    pub images: u32,
}

/// Most slices a mosaic is unpacked into. Siemens mosaics hold up to a few hundred (a
/// multiband EPI or DTI volume); a header claiming more is damaged, and each slice becomes a
/// frame description (65535² claimed 1x1 tiles: 4.3 billion of them, found by review).
pub const MAX_MOSAIC_IMAGES: u32 = 1024;

impl MosaicLayout {
    /// The layout for `images` slices in a `rows` x `columns` frame, if it tiles evenly (at
    /// most [`MAX_MOSAIC_IMAGES`]).
    pub fn new(rows: u16, columns: u16, images: u32) -> Option<Self> {
        if !(2..=MAX_MOSAIC_IMAGES).contains(&images) {
            return None;
        }
        let per_row = (f64::from(images)).sqrt().ceil() as u16;
        if per_row == 0 || !rows.is_multiple_of(per_row) || !columns.is_multiple_of(per_row) {
            return None;
        }
        Some(MosaicLayout {
            full_rows: rows,
            full_columns: columns,
            tile_rows: rows / per_row,
            tile_columns: columns / per_row,
            tiles_per_row: per_row,
            images,
        })
    }

    /// Offset (in samples) of row `y` of tile `tile` in the stored frame.
    pub fn row_offset(&self, tile: u32, y: usize) -> usize {
        let per_row = u32::from(self.tiles_per_row);
        let (tile_row, tile_col) = ((tile / per_row) as usize, (tile % per_row) as usize);
        (tile_row * usize::from(self.tile_rows) + y) * usize::from(self.full_columns)
            + tile_col * usize::from(self.tile_columns)
    }
}

/// Values of one element of a Siemens CSA header ("SV10" format, as documented by nibabel's
/// `nibabel.nicom.csareader`): a 16-byte preamble, then for each tag a 64-byte name, VM, VR,
/// SyngoDT, item count and a marker, then its items (four 32-bit words, the second the length,
/// then the text padded to 4 bytes). Returns `None` for anything malformed.
pub fn csa_values(csa: &[u8], name: &str) -> Option<Vec<String>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(csa.get(at..at + 4)?.try_into().ok()?))
    };
    if csa.get(0..4) != Some(b"SV10") {
        return None;
    }
    let n_tags = u32_at(8)?;
    if n_tags == 0 || n_tags > 1000 {
        return None;
    }
    let mut at = 16;
    for _ in 0..n_tags {
        let raw_name = csa.get(at..at + 64)?;
        let tag_name = raw_name.split(|b| *b == 0).next().unwrap_or_default();
        let n_items = u32_at(at + 76)?;
        if n_items > 10_000 {
            return None;
        }
        at += 84;
        let mut values = Vec::new();
        for _ in 0..n_items {
            let len = u32_at(at + 4)? as usize;
            at += 16;
            let data = csa.get(at..at + len)?;
            let text = String::from_utf8_lossy(data.split(|b| *b == 0).next().unwrap_or_default())
                .trim()
                .to_string();
            if !text.is_empty() {
                values.push(text);
            }
            at += len.div_ceil(4) * 4;
        }
        if tag_name == name.as_bytes() {
            return Some(values);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csa(tags: &[(&str, &[&str])]) -> Vec<u8> {
        let mut out = b"SV10\x04\x03\x02\x01".to_vec();
        out.extend((tags.len() as u32).to_le_bytes());
        out.extend(77u32.to_le_bytes());
        for (name, values) in tags {
            let mut n = name.as_bytes().to_vec();
            n.resize(64, 0);
            out.extend(n);
            out.extend(1i32.to_le_bytes()); // vm
            out.extend(b"FD\0\0"); // vr
            out.extend(0i32.to_le_bytes()); // syngodt
            out.extend((values.len() as u32).to_le_bytes());
            out.extend(77u32.to_le_bytes());
            for v in *values {
                let mut data = v.as_bytes().to_vec();
                data.push(0);
                let len = data.len() as u32;
                for w in [len, len, 77, len] {
                    out.extend(w.to_le_bytes());
                }
                data.resize(data.len().div_ceil(4) * 4, 0);
                out.extend(data);
            }
        }
        out
    }

    #[test]
    fn reads_values_by_name_and_rejects_garbage() {
        let bytes = csa(&[
            ("EchoLinePosition", &["64"]),
            ("SliceNormalVector", &["0.0", "-0.16", "0.987"]),
        ]);
        assert_eq!(
            csa_values(&bytes, "SliceNormalVector"),
            Some(vec!["0.0".into(), "-0.16".into(), "0.987".into()])
        );
        assert_eq!(
            csa_values(&bytes, "EchoLinePosition"),
            Some(vec!["64".into()])
        );
        assert_eq!(csa_values(&bytes, "Missing"), None);
        assert_eq!(csa_values(&bytes[..40], "SliceNormalVector"), None);
        assert_eq!(
            csa_values(b"garbage garbage garbage", "SliceNormalVector"),
            None
        );
    }

    #[test]
    fn layout_tiles_row_by_row() {
        let l = MosaicLayout::new(384, 384, 36).unwrap();
        assert_eq!((l.tiles_per_row, l.tile_rows, l.tile_columns), (6, 64, 64));
        assert_eq!(l.row_offset(0, 0), 0);
        assert_eq!(l.row_offset(1, 0), 64);
        assert_eq!(l.row_offset(6, 0), 64 * 384);
        assert_eq!(l.row_offset(7, 2), (64 + 2) * 384 + 64);
        assert!(
            MosaicLayout::new(100, 100, 36).is_none(),
            "does not tile evenly"
        );
        // 65535² 1x1 tiles tile evenly, but no mosaic holds so many (4.3 billion slices).
        assert!(MosaicLayout::new(65535, 65535, 65535 * 65535).is_none());
        assert!(MosaicLayout::new(32 * 32, 32 * 32, 1024).is_some());
        assert!(MosaicLayout::new(33 * 32, 33 * 32, 1025).is_none());
    }
}
