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
//!
//! `Δz` is Spacing Between Slices (0018,0088). Without it, the slices' centres that the
//! protocol prescribed (the "Phoenix" protocol in the CSA Series Header (0029,1020),
//! `sSliceArray.asSlice[i].sPosition`) give it. Slice Thickness does not: EPI is usually
//! acquired with a gap (a distance factor of 10-20%), so stepping by the thickness would place
//! every slice but the first too close (dcm2niix does step by it). With neither, the mosaic is
//! not unpacked.

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

/// The step between a mosaic's slice centres as the protocol prescribed them: the Phoenix
/// protocol's `sSliceArray.asSlice[i].sPosition.{dSag,dCor,dTra}` (a component left out is 0),
/// in the ASCII block (`### ASCCONV BEGIN` .. `### ASCCONV END`) that Siemens writes into the
/// CSA Series Header. `None` unless it lists exactly `images` slices, evenly spaced (within
/// 1% of their mean step, which must be positive): anything else is no spacing to trust.
pub(crate) fn phoenix_slice_spacing(csa_series: &[u8], images: u32) -> Option<f64> {
    let text = String::from_utf8_lossy(csa_series);
    let begin = text.find("### ASCCONV BEGIN")?;
    let body = &text[begin..];
    let body = &body[..body.find("### ASCCONV END")?];
    let n = usize::try_from(images).ok()?;
    let mut centres = vec![[0.0f64; 3]; n];
    let mut listed = vec![false; n];
    for line in body.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(rest) = key.trim().strip_prefix("sSliceArray.asSlice[") else {
            continue;
        };
        let Some((index, field)) = rest.split_once("].sPosition.") else {
            continue;
        };
        let axis = match field {
            "dSag" => 0,
            "dCor" => 1,
            "dTra" => 2,
            _ => continue,
        };
        // An index past the mosaic's slices: the protocol is of another volume.
        let index: usize = index.parse().ok()?;
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        if index >= n || !value.is_finite() {
            return None;
        }
        centres[index][axis] = value;
        listed[index] = true;
    }
    if n < 2 || listed.iter().any(|l| !l) {
        return None;
    }
    let distance = |a: [f64; 3], b: [f64; 3]| {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    };
    let mean = distance(centres[0], centres[n - 1]) / (n - 1) as f64;
    let even = centres
        .windows(2)
        .all(|w| (distance(w[0], w[1]) - mean).abs() <= 0.01 * mean);
    (mean > 0.0 && even).then_some(mean)
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

    fn phoenix(slices: &[[f64; 3]]) -> Vec<u8> {
        let mut text = String::from(
            "<XProtocol> junk\n### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData ###\nulVersion\t = 0x14b44b6\n",
        );
        for (i, p) in slices.iter().enumerate() {
            for (axis, v) in ["dSag", "dCor", "dTra"].iter().zip(p) {
                // Siemens leaves out a component that is 0.
                if *v != 0.0 {
                    text += &format!("sSliceArray.asSlice[{i}].sPosition.{axis}\t = {v}\n");
                }
            }
            text += &format!("sSliceArray.asSlice[{i}].dThickness\t = 3\n");
        }
        text += "sSliceArray.lSize\t = 3\n### ASCCONV END ###\n";
        text.into_bytes()
    }

    #[test]
    fn phoenix_spacing_is_the_step_between_prescribed_centres() {
        // Three oblique slices 3.6 mm apart (3 mm thick, 20% gap), the first at dSag 0.
        let step = [0.0, 0.6437, 3.542];
        let len: f64 = step[1] * step[1] + step[2] * step[2];
        let at = |i: f64| [0.0, -52.0 + i * step[1], -72.0 + i * step[2]];
        let csa = phoenix(&[at(0.0), at(1.0), at(2.0)]);
        let spacing = phoenix_slice_spacing(&csa, 3).unwrap();
        assert!((spacing - len.sqrt()).abs() < 1e-9, "{spacing}");
        assert!((spacing - 3.6).abs() < 1e-3, "{spacing}");
        // Another number of slices than the mosaic holds, uneven steps, every slice at one
        // place, no end to the ASCCONV block: no spacing.
        assert_eq!(phoenix_slice_spacing(&csa, 2), None);
        assert_eq!(phoenix_slice_spacing(&csa, 4), None);
        assert_eq!(
            phoenix_slice_spacing(&phoenix(&[at(0.0), at(1.0), at(2.5)]), 3),
            None
        );
        assert_eq!(
            phoenix_slice_spacing(&phoenix(&[at(0.0), at(0.0), at(0.0)]), 3),
            None
        );
        let text = String::from_utf8(csa).unwrap();
        let cut = text.replace("### ASCCONV END ###", "");
        assert_eq!(phoenix_slice_spacing(cut.as_bytes(), 3), None);
        assert_eq!(phoenix_slice_spacing(b"garbage", 3), None);
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
