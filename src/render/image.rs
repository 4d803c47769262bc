//! Rendered images (grey, or colour for RGB volumes): PNG output, burned-in orientation labels
//! and a mm scale bar (for key images made without a display), and the comparison used by the
//! GPU/CPU tests.

use std::io::BufWriter;
use std::path::Path;

use glam::DVec3;

use super::RenderError;
use super::view::{SliceView, direction_letters, scale_bar_mm};
use super::voi::OutputDepth;

/// A displayed frame, row by row: levels 0..=255 (8-bit) or 0..=1023 (10-bit). For a colour
/// volume `colour` holds the red, green and blue levels and `pixels` their luma.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedImage {
    pub width: u32,
    pub height: u32,
    pub depth: OutputDepth,
    pub pixels: Vec<u16>,
    pub colour: Option<Vec<[u16; 3]>>,
}

impl RenderedImage {
    /// A colour image from its levels (`pixels` becomes their luma).
    pub fn from_colour(width: u32, height: u32, depth: OutputDepth, colour: Vec<[u16; 3]>) -> Self {
        let pixels = colour.iter().map(|c| luma_level(*c)).collect();
        RenderedImage {
            width,
            height,
            depth,
            pixels,
            colour: Some(colour),
        }
    }

    pub fn get(&self, x: u32, y: u32) -> u16 {
        self.pixels
            .get((y * self.width + x) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Red, green and blue levels at (x, y); grey images give the grey level three times.
    pub fn get_rgb(&self, x: u32, y: u32) -> [u16; 3] {
        let i = (y * self.width + x) as usize;
        match &self.colour {
            Some(c) => c.get(i).copied().unwrap_or([0; 3]),
            None => [self.get(x, y); 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, v: u16) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = (y as u32 * self.width + x as u32) as usize;
            self.pixels[i] = v;
            if let Some(c) = self.colour.as_mut().and_then(|c| c.get_mut(i)) {
                *c = [v; 3];
            }
        }
    }

    /// Write as PNG: 8-bit grey, or 16-bit grey for 10-bit images (values scaled to 16 bits).
    pub fn write_png(&self, path: &Path) -> Result<(), RenderError> {
        let err = |e: &dyn std::fmt::Display| RenderError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let file = std::fs::File::create(path).map_err(|e| err(&e))?;
        let mut enc = png::Encoder::new(BufWriter::new(file), self.width, self.height);
        let samples: Vec<u16> = match &self.colour {
            Some(colour) => {
                enc.set_color(png::ColorType::Rgb);
                colour.iter().flatten().copied().collect()
            }
            None => {
                enc.set_color(png::ColorType::Grayscale);
                self.pixels.clone()
            }
        };
        let data: Vec<u8> = match self.depth {
            OutputDepth::Eight => {
                enc.set_depth(png::BitDepth::Eight);
                samples.iter().map(|v| (*v).min(255) as u8).collect()
            }
            OutputDepth::Ten => {
                enc.set_depth(png::BitDepth::Sixteen);
                samples
                    .iter()
                    .flat_map(|v| {
                        let v = (*v).min(1023);
                        ((v << 6) | (v >> 4)).to_be_bytes()
                    })
                    .collect()
            }
        };
        let mut w = enc.write_header().map_err(|e| err(&e))?;
        w.write_image_data(&data).map_err(|e| err(&e))?;
        w.finish().map_err(|e| err(&e))
    }

    /// Largest absolute difference and the number of pixels that differ at all.
    pub fn compare(&self, other: &RenderedImage) -> Option<(u16, usize)> {
        if (self.width, self.height, self.depth) != (other.width, other.height, other.depth) {
            return None;
        }
        if self.colour.is_some() != other.colour.is_some() {
            return None;
        }
        let mut max = 0;
        let mut count = 0;
        for i in 0..self.pixels.len().min(other.pixels.len()) {
            let (x, y) = ((i as u32) % self.width, (i as u32) / self.width);
            let (a, b) = (self.get_rgb(x, y), other.get_rgb(x, y));
            let d = (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap_or(0);
            max = max.max(d);
            count += usize::from(d > 0);
        }
        Some((max, count))
    }

    /// |a - b| (the largest over the channels) scaled so one level shows as 64 (for looking
    /// at a failed comparison).
    pub fn diff(&self, other: &RenderedImage) -> RenderedImage {
        let pixels = (0..self.pixels.len().min(other.pixels.len()))
            .map(|i| {
                let (x, y) = ((i as u32) % self.width, (i as u32) / self.width);
                let (a, b) = (self.get_rgb(x, y), other.get_rgb(x, y));
                let d = (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap_or(0);
                d.saturating_mul(64).min(255)
            })
            .collect();
        RenderedImage {
            width: self.width,
            height: self.height,
            depth: OutputDepth::Eight,
            pixels,
            colour: None,
        }
    }

    fn white(&self) -> u16 {
        self.depth.max_value()
    }

    /// Draw `text` with its top-left corner at (x, y), white with a black outline.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64) {
        let white = self.white();
        for pass in 0..2 {
            let mut cx = x;
            for ch in text.chars() {
                let rows = glyph(ch);
                for (ry, bits) in rows.iter().enumerate() {
                    for rx in 0..5 {
                        if bits & (0x10 >> rx) == 0 {
                            continue;
                        }
                        let px = cx + rx * scale;
                        let py = y + ry as i64 * scale;
                        for dy in 0..scale {
                            for dx in 0..scale {
                                if pass == 0 {
                                    for (ox, oy) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
                                        self.set(px + dx + ox, py + dy + oy, 0);
                                    }
                                } else {
                                    self.set(px + dx, py + dy, white);
                                }
                            }
                        }
                    }
                }
                cx += 6 * scale;
            }
        }
    }

    fn text_width(text: &str, scale: i64) -> i64 {
        (text.chars().count() as i64 * 6 - 1) * scale
    }

    fn scale(&self) -> i64 {
        i64::from(self.width.min(self.height) / 256).max(1)
    }

    /// Burn in the patient-direction letters at the middle of each edge (e.g. R on the left
    /// and L on the right of an axial image). Call only for trusted geometry.
    pub fn burn_orientation_labels(&mut self, view: &SliceView) {
        let s = self.scale();
        let right = DVec3::from(view.right);
        let down = DVec3::from(view.down);
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let margin = 4 * s;
        let left = direction_letters(-right);
        let rt = direction_letters(right);
        let top = direction_letters(-down);
        let bottom = direction_letters(down);
        self.text(margin, h / 2 - 3 * s, &left, s);
        self.text(w - margin - Self::text_width(&rt, s), h / 2 - 3 * s, &rt, s);
        self.text(w / 2 - Self::text_width(&top, s) / 2, margin, &top, s);
        self.text(
            w / 2 - Self::text_width(&bottom, s) / 2,
            h - margin - 7 * s,
            &bottom,
            s,
        );
    }

    /// Burn in a horizontal scale bar of a round length (1, 2 or 5 x 10^n mm, at most a quarter
    /// of the width) with its length written above it, at the bottom right. Returns the length.
    pub fn burn_scale_bar(&mut self, view: &SliceView) -> f64 {
        let s = self.scale();
        let mm = scale_bar_mm(f64::from(self.width) * view.pixel_mm / 4.0);
        let len = (mm / view.pixel_mm).round() as i64;
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let x1 = w - 8 * s;
        let x0 = x1 - len;
        let y = h - 8 * s;
        let white = self.white();
        for x in x0..=x1 {
            for t in 0..s {
                self.set(x, y + t, white);
            }
        }
        for t in 0..4 * s {
            for d in 0..s {
                self.set(x0 + d, y - t, white);
                self.set(x1 - d, y - t, white);
            }
        }
        let label = if mm >= 1.0 {
            format!("{mm:.0} mm")
        } else {
            format!("{mm:.1} mm")
        };
        let tw = Self::text_width(&label, s);
        self.text(x1 - tw, y - 6 * s - 7 * s, &label, s);
        mm
    }
}

/// The luma (BT.601) of display levels.
fn luma_level([r, g, b]: [u16; 3]) -> u16 {
    ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000) as u16
}

/// 5x7 glyphs (one byte a row, bit 4 leftmost) for the characters labels and scale bars use.
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'P' => [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        'H' => [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'F' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
        'm' => [0x00, 0x00, 0x1a, 0x15, 0x15, 0x15, 0x15],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c],
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        _ => [0; 7],
    }
}
