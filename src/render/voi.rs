//! Display: the VOI transform (PS3.3 C.11.2.1.2 window functions, or a VOI LUT, C.11.2.1.1),
//! MONOCHROME1 and user inversion, and the output bit depth.
//!
//! [`voi_normalized`] is the CPU twin of `display.wgsl`'s `voi` and must stay line for line
//! the same math.

use bytemuck::{Pod, Zeroable};
use serde::Serialize;

use super::RenderError;

/// The VOI function of a window (VOI LUT Function (0028,1056)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VoiFunction {
    /// LINEAR (the default): PS3.3 C.11.2.1.2.1, with the half-unit offsets of the standard.
    Linear,
    /// LINEAR_EXACT: C.11.2.1.3.2.
    LinearExact,
    /// SIGMOID: C.11.2.1.3.1.
    Sigmoid,
}

/// A VOI LUT (VOI LUT Sequence (0028,3010)): modality value `first_mapped + n` shows entry `n`;
/// values below and above the table take the first and last entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VoiLut {
    /// LUT Descriptor value 2: the first input value mapped.
    pub first_mapped: i32,
    /// LUT Descriptor value 3: bits per entry (entries range 0 ..= 2^bits - 1).
    pub bits: u8,
    /// LUT Data.
    pub data: Vec<u16>,
}

/// The narrowest LINEAR_EXACT or SIGMOID window drawn (a width an f32 still divides by).
pub const MIN_EXACT_WIDTH: f64 = 1e-3;

/// The VOI transform.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Voi {
    /// Window center and width in modality units (HU for CT).
    Window {
        center: f64,
        width: f64,
        function: VoiFunction,
    },
    Lut(VoiLut),
}

impl Voi {
    pub fn linear(center: f64, width: f64) -> Voi {
        Voi::Window {
            center,
            width,
            function: VoiFunction::Linear,
        }
    }

    /// The window a file gives (Window Center/Width with its VOI LUT Function).
    pub fn from_window(w: &imaging::header::Window) -> Voi {
        use imaging::header::WindowFunction;
        Voi::Window {
            center: w.center,
            width: w.width,
            function: match w.function {
                WindowFunction::Linear => VoiFunction::Linear,
                WindowFunction::LinearExact => VoiFunction::LinearExact,
                WindowFunction::Sigmoid => VoiFunction::Sigmoid,
            },
        }
    }

    /// The VOI LUT a file gives.
    pub fn from_lut(t: &imaging::header::VoiLutTable) -> Voi {
        Voi::Lut(VoiLut {
            first_mapped: t.first_mapped,
            bits: t.bits.clamp(1, 16) as u8,
            data: t.data.clone(),
        })
    }

    /// What a file says to show: the window of a slice (width >= 1) or else its VOI LUT.
    pub fn from_slice(slice: &imaging::series::SliceRef) -> Option<Voi> {
        Voi::file_choices(slice).into_iter().next()
    }

    /// Every VOI the slice's file gives, in its order, each once: each Window Center/Width
    /// pair that can be drawn (a CT's brain, then its bone window; a pair the file repeats
    /// is one choice, or the key would stop on it), then its VOI LUT.
    pub fn file_choices(slice: &imaging::series::SliceRef) -> Vec<Voi> {
        let mut choices: Vec<Voi> = Vec::new();
        let all = slice
            .window
            .iter()
            .chain(&slice.more_windows)
            .map(Voi::from_window)
            .filter(Voi::validate_window)
            .chain(slice.voi_lut.as_deref().map(Voi::from_lut));
        for voi in all {
            if !choices.contains(&voi) {
                choices.push(voi);
            }
        }
        choices
    }

    /// A window spanning modality values `min..=max`: LINEAR, at least 1 wide (PS3.3
    /// C.11.2.1.2.1), for data that spans 1 or more; LINEAR_EXACT over data that spans less
    /// (a quantitative map scaled to 0..0.5, which a width of 1 would show as a threshold).
    pub fn spanning(min: f64, max: f64) -> Voi {
        let range = max - min;
        if range.is_finite() && range < 1.0 {
            let width = range.max(MIN_EXACT_WIDTH);
            return Voi::Window {
                center: min + width / 2.0,
                width,
                function: VoiFunction::LinearExact,
            };
        }
        let width = range.max(1.0);
        Voi::linear(min + width / 2.0, width)
    }

    /// Whether a window's values can be drawn (as [`Display::validate`] requires).
    fn validate_window(&self) -> bool {
        Display::new(self.clone()).validate().is_ok()
    }

    /// Named window presets (center, width in HU), as radiologists use them.
    pub fn preset(name: &str) -> Option<Voi> {
        PRESETS
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, c, w)| Voi::linear(*c, *w))
    }

    /// Parse `W,L` (width first, as on a viewer's overlay: "W 400 L 40").
    pub fn parse_wl(s: &str) -> Result<Voi, RenderError> {
        let parts: Vec<&str> = s.split(',').collect();
        let [w, l] = parts.as_slice() else {
            return Err(RenderError::View(format!(
                "window {s:?}: give width,level such as 400,40"
            )));
        };
        let w: f64 = w
            .trim()
            .parse()
            .map_err(|e| RenderError::View(format!("window width {w:?}: {e}")))?;
        let l: f64 = l
            .trim()
            .parse()
            .map_err(|e| RenderError::View(format!("window level {l:?}: {e}")))?;
        if !(w.is_finite() && l.is_finite() && w >= 1.0) {
            return Err(RenderError::View(format!(
                "window {s:?}: the width must be at least 1"
            )));
        }
        Ok(Voi::linear(l, w))
    }
}

/// Presets: name, center (level), width, in HU.
pub const PRESETS: &[(&str, f64, f64)] = &[
    ("brain", 40.0, 80.0),
    ("subdural", 75.0, 215.0),
    ("stroke", 40.0, 40.0),
    ("bone", 400.0, 1800.0),
    ("lung", -600.0, 1500.0),
    ("mediastinum", 50.0, 350.0),
    ("abdomen", 50.0, 400.0),
    ("liver", 60.0, 160.0),
];

/// Output depth of the displayed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OutputDepth {
    /// 8 bits per channel (Rgba8Unorm).
    Eight,
    /// 10 bits per channel (Rgb10a2Unorm), for displays that take it.
    Ten,
}

impl OutputDepth {
    pub fn max_value(self) -> u16 {
        match self {
            OutputDepth::Eight => 255,
            OutputDepth::Ten => 1023,
        }
    }
}

/// Everything that turns modality values into grey levels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Display {
    pub voi: Voi,
    /// Photometric Interpretation MONOCHROME1: minimum value shown white (PS3.3 C.7.6.3.1.2).
    pub monochrome1: bool,
    /// The user's invert toggle (applied after MONOCHROME1, so the two cancel).
    pub invert: bool,
    pub depth: OutputDepth,
}

impl Display {
    pub fn new(voi: Voi) -> Display {
        Display {
            voi,
            monochrome1: false,
            invert: false,
            depth: OutputDepth::Eight,
        }
    }

    pub fn validate(&self) -> Result<(), RenderError> {
        match &self.voi {
            Voi::Window {
                center,
                width,
                function,
            } => {
                // LINEAR needs w >= 1 (PS3.3); the others need w > 0, kept to a width an f32
                // still divides by without overflowing.
                let min_width = if *function == VoiFunction::Linear {
                    1.0
                } else {
                    MIN_EXACT_WIDTH
                };
                if !center.is_finite() || !width.is_finite() || *width < min_width {
                    return Err(RenderError::View(format!(
                        "window center {center} width {width}: the width must be >= 1 for LINEAR, >= 0.001 otherwise"
                    )));
                }
            }
            Voi::Lut(lut) => {
                if lut.data.is_empty() || lut.bits == 0 || lut.bits > 16 {
                    return Err(RenderError::View(format!(
                        "VOI LUT with {} entries of {} bits",
                        lut.data.len(),
                        lut.bits
                    )));
                }
            }
        }
        Ok(())
    }
}

pub const VOI_LINEAR: u32 = 0;
pub const VOI_LINEAR_EXACT: u32 = 1;
pub const VOI_SIGMOID: u32 = 2;
pub const VOI_LUT: u32 = 3;

/// The display step's parameters, laid out as `display.wgsl`'s `Params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct DisplayParams {
    /// center, width, LUT first mapped value, LUT maximum entry value (2^bits - 1).
    pub window: [f32; 4],
    /// function (VOI_*), invert (0/1), LUT length, unused.
    pub mode: [u32; 4],
}

impl DisplayParams {
    /// Parameters and LUT entries (one u32 per entry; a single zero when there is no LUT, as a
    /// storage buffer may not be empty).
    pub fn new(display: &Display) -> (DisplayParams, Vec<u32>) {
        let invert = u32::from(display.monochrome1 != display.invert);
        match &display.voi {
            Voi::Window {
                center,
                width,
                function,
            } => {
                let f = match function {
                    VoiFunction::Linear => VOI_LINEAR,
                    VoiFunction::LinearExact => VOI_LINEAR_EXACT,
                    VoiFunction::Sigmoid => VOI_SIGMOID,
                };
                (
                    DisplayParams {
                        window: [*center as f32, *width as f32, 0.0, 1.0],
                        mode: [f, invert, 0, 0],
                    },
                    vec![0],
                )
            }
            Voi::Lut(lut) => {
                let max = ((1u32 << lut.bits.clamp(1, 16)) - 1) as f32;
                let data: Vec<u32> = if lut.data.is_empty() {
                    vec![0]
                } else {
                    lut.data.iter().map(|v| u32::from(*v)).collect()
                };
                (
                    DisplayParams {
                        window: [0.0, 1.0, lut.first_mapped as f32, max],
                        mode: [VOI_LUT, invert, data.len() as u32, 0],
                    },
                    data,
                )
            }
        }
    }
}

/// The VOI transform of one modality value, normalized to 0..=1 (before inversion). Mirrors
/// `voi()` in `display.wgsl`.
pub fn voi_normalized(p: &DisplayParams, lut: &[u32], x: f32) -> f32 {
    let c = p.window[0];
    let w = p.window[1];
    match p.mode[0] {
        VOI_LINEAR => {
            // PS3.3 C.11.2.1.2.1: if x <= c - 0.5 - (w-1)/2 then ymin; else if
            // x > c - 0.5 + (w-1)/2 then ymax; else ((x - (c - 0.5)) / (w-1) + 0.5).
            if w <= 1.0 {
                if x > c - 0.5 { 1.0 } else { 0.0 }
            } else if x <= c - 0.5 - (w - 1.0) / 2.0 {
                0.0
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                1.0
            } else {
                (x - (c - 0.5)) / (w - 1.0) + 0.5
            }
        }
        VOI_LINEAR_EXACT => {
            if x <= c - w / 2.0 {
                0.0
            } else if x > c + w / 2.0 {
                1.0
            } else {
                (x - c) / w + 0.5
            }
        }
        VOI_SIGMOID => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        _ => {
            let n = p.mode[2].max(1) as i32;
            let idx = ((x + 0.5).floor() - p.window[2]).clamp(0.0, (n - 1) as f32) as usize;
            lut.get(idx).copied().unwrap_or(0) as f32 / p.window[3]
        }
    }
}

/// Grey level of one resampled pixel (value, coverage): background (no data) is black.
pub fn grey(p: &DisplayParams, lut: &[u32], value: f32, coverage: f32, depth: OutputDepth) -> u16 {
    if coverage <= 0.0 {
        return 0;
    }
    let mut y = voi_normalized(p, lut, value).clamp(0.0, 1.0);
    if p.mode[1] != 0 {
        y = 1.0 - y;
    }
    let max = f32::from(depth.max_value());
    (y * max).round() as u16
}

/// A colour channel's display level (resampled 0..255, no VOI), as `fs_display_rgb`.
pub fn rgb_level(channel: f32, coverage: f32, inverted: bool, depth: OutputDepth) -> u16 {
    if coverage <= 0.0 {
        return 0;
    }
    // Ties to even, as WGSL's round().
    let mut c = (channel.round_ties_even() / 255.0).clamp(0.0, 1.0);
    if inverted {
        c = 1.0 - c;
    }
    (c * f32::from(depth.max_value())).round() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(voi: Voi) -> (DisplayParams, Vec<u32>) {
        DisplayParams::new(&Display::new(voi))
    }

    #[test]
    fn linear_window_follows_ps3_3_c_11_2_1_2_1() {
        // Window 40/400 (the standard's example shape): bottom edge c - 0.5 - (w-1)/2 = -160,
        // top edge c - 0.5 + (w-1)/2 = 239.
        let (p, lut) = params(Voi::linear(40.0, 400.0));
        assert_eq!(voi_normalized(&p, &lut, -160.0), 0.0);
        assert_eq!(voi_normalized(&p, &lut, 240.0), 1.0);
        // Centre - 0.5 maps to exactly one half.
        assert!((voi_normalized(&p, &lut, 39.5) - 0.5).abs() < 1e-6);
        // A 2-wide window: x <= c - 1 is black, x > c is white, c - 0.5 is the middle.
        let (p, lut) = params(Voi::linear(100.0, 2.0));
        assert_eq!(voi_normalized(&p, &lut, 99.0), 0.0);
        assert_eq!(voi_normalized(&p, &lut, 100.0), 1.0);
        assert!((voi_normalized(&p, &lut, 99.5) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn exact_and_sigmoid_windows() {
        let exact = Voi::Window {
            center: 0.0,
            width: 100.0,
            function: VoiFunction::LinearExact,
        };
        let (p, lut) = params(exact);
        assert_eq!(voi_normalized(&p, &lut, -50.0), 0.0);
        assert!((voi_normalized(&p, &lut, 25.0) - 0.75).abs() < 1e-6);
        let sigmoid = Voi::Window {
            center: 0.0,
            width: 100.0,
            function: VoiFunction::Sigmoid,
        };
        let (p, lut) = params(sigmoid);
        assert!((voi_normalized(&p, &lut, 0.0) - 0.5).abs() < 1e-6);
        // y = 1 / (1 + exp(-4 (x - c) / w)) at x = 25: 1 / (1 + e^-1).
        let expected = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((voi_normalized(&p, &lut, 25.0) - expected).abs() < 1e-6);
    }

    #[test]
    fn lut_clamps_below_and_above_the_table() {
        let lut = VoiLut {
            first_mapped: -10,
            bits: 8,
            data: vec![0, 51, 255],
        };
        let (p, data) = params(Voi::Lut(lut));
        assert_eq!(voi_normalized(&p, &data, -100.0), 0.0);
        assert!((voi_normalized(&p, &data, -9.0) - 0.2).abs() < 1e-6);
        assert_eq!(voi_normalized(&p, &data, 1000.0), 1.0);
    }

    #[test]
    fn monochrome1_and_invert_cancel() {
        let mut d = Display::new(Voi::linear(0.0, 100.0));
        let (p, lut) = DisplayParams::new(&d);
        let plain = grey(&p, &lut, 40.0, 1.0, OutputDepth::Eight);
        d.monochrome1 = true;
        let (p, lut) = DisplayParams::new(&d);
        assert_eq!(grey(&p, &lut, 40.0, 1.0, OutputDepth::Eight), 255 - plain);
        d.invert = true;
        let (p, lut) = DisplayParams::new(&d);
        assert_eq!(grey(&p, &lut, 40.0, 1.0, OutputDepth::Eight), plain);
        // No data stays black whatever the inversion.
        assert_eq!(grey(&p, &lut, 40.0, 0.0, OutputDepth::Eight), 0);
    }
}
