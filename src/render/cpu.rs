//! The CPU reference renderer: the same two steps and the same math as the GPU pipeline
//! (`kernel::resample_pixel` and `voi::grey`; for colour `resample_rgb_pixel` and `rgb_level`),
//! one row per rayon task. The GPU must match it to one level; analytic tests check it against
//! known values at known patient points.

use rayon::prelude::*;

use imaging::Voxels;

use super::RenderError;
use super::image::RenderedImage;
use super::kernel::{
    ResampleParams, TextureLayout, VolumeInfo, resample_pixel, resample_rgb_pixel,
};
use super::view::SliceView;
use super::voi::{Display, DisplayParams, grey, rgb_level};

/// A resampled frame: per pixel (modality value, fraction of slab samples inside the volume).
/// A colour frame also has (red, green, blue, coverage) per pixel, and its values are the luma.
#[derive(Debug, Clone)]
pub struct Resampled {
    pub width: u32,
    pub height: u32,
    pub values: Vec<[f32; 2]>,
    pub colour: Option<Vec<[f32; 4]>>,
}

impl Resampled {
    /// Modality value at (x, y), `None` where no sample fell inside the volume.
    pub fn value(&self, x: u32, y: u32) -> Option<f32> {
        let v = self.values.get((y * self.width + x) as usize)?;
        (v[1] > 0.0).then_some(v[0])
    }
}

/// Step 1: resample `voxels` on `view`.
pub fn resample(
    info: &VolumeInfo,
    voxels: &Voxels,
    view: &SliceView,
) -> Result<Resampled, RenderError> {
    let shape = voxels.shape();
    if [shape[2], shape[1], shape[0]] != info.dims {
        return Err(RenderError::View(format!(
            "voxels {shape:?} do not match the geometry {:?}",
            info.dims
        )));
    }
    let p = ResampleParams::new(info, &TextureLayout::single(info.dims), view)?;
    let (w, h) = (view.width, view.height);
    if voxels.is_colour() {
        let colour = per_pixel(w, h, |x, y| {
            resample_rgb_pixel(&p, &info.slices, voxels, x, y)
        });
        let values = colour
            .iter()
            .map(|[r, g, b, coverage]| [0.299 * r + 0.587 * g + 0.114 * b, *coverage])
            .collect();
        return Ok(Resampled {
            width: w,
            height: h,
            values,
            colour: Some(colour),
        });
    }
    let values = per_pixel(w, h, |x, y| resample_pixel(&p, &info.slices, voxels, x, y));
    Ok(Resampled {
        width: w,
        height: h,
        values,
        colour: None,
    })
}

/// `f(x, y)` for every pixel of a `w` x `h` image, row by row on rayon's threads.
fn per_pixel<T: Copy + Default + Send>(w: u32, h: u32, f: impl Fn(u32, u32) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::default(); (w as usize) * (h as usize)];
    out.par_chunks_mut(w.max(1) as usize)
        .enumerate()
        .for_each(|(y, row)| {
            for (x, v) in row.iter_mut().enumerate() {
                *v = f(x as u32, y as u32);
            }
        });
    out
}

/// Step 2: window a resampled frame.
pub fn display(resampled: &Resampled, display: &Display) -> Result<RenderedImage, RenderError> {
    display.validate()?;
    let (p, lut) = DisplayParams::new(display);
    if let Some(colour) = &resampled.colour {
        let inverted = p.mode[1] != 0;
        let levels = colour
            .par_iter()
            .map(|[r, g, b, coverage]| {
                [*r, *g, *b].map(|c| rgb_level(c, *coverage, inverted, display.depth))
            })
            .collect();
        return Ok(RenderedImage::from_colour(
            resampled.width,
            resampled.height,
            display.depth,
            levels,
        ));
    }
    let pixels = resampled
        .values
        .par_iter()
        .map(|v| grey(&p, &lut, v[0], v[1], display.depth))
        .collect();
    Ok(RenderedImage {
        width: resampled.width,
        height: resampled.height,
        depth: display.depth,
        pixels,
        colour: None,
    })
}

/// Both steps.
pub fn render(
    info: &VolumeInfo,
    voxels: &Voxels,
    view: &SliceView,
    d: &Display,
) -> Result<RenderedImage, RenderError> {
    display(&resample(info, voxels, view)?, d)
}
