//! `overread render`: one resliced, windowed image of a stack as PNG, on the GPU or (`--cpu`)
//! with the reference renderer. Also how key images are made without a display.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use crate::render::{
    self, AdapterChoice, Display, GpuContext, Interpolation, OutputDepth, Plane, Renderer,
    SlabMode, SliceView, Voi, VolumeInfo, VolumeTexture,
};
use imaging::stats::voxel_range;

use super::{check_failed_slices, load_with_progress, pick_output_stack};

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Files, folders, DICOMDIRs or DICOMweb study URLs holding the stack.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Stack id from `overread scan` (default: the largest non-localizer stack).
    #[arg(long)]
    pub stack: Option<String>,
    /// Render even when slices failed to decode (they hold zeros, shown as such).
    #[arg(long)]
    pub allow_failed_slices: bool,
    /// axial, coronal, sagittal or oblique:NX,NY,NZ (the plane normal, patient LPS).
    #[arg(long, default_value = "axial")]
    pub plane: String,
    /// Plane position along its normal, patient mm (axial: z, coronal: y, sagittal: x);
    /// default the centre of the volume.
    #[arg(long, allow_hyphen_values = true)]
    pub position_mm: Option<f64>,
    /// Window width,level in modality units (HU for CT), e.g. 400,40.
    #[arg(long, allow_hyphen_values = true, conflicts_with = "preset")]
    pub wl: Option<String>,
    /// Window preset: brain, subdural, stroke, bone, lung, mediastinum, abdomen, liver.
    #[arg(long)]
    pub preset: Option<String>,
    /// Use the file's VOI LUT (VOI LUT Sequence) instead of its window.
    #[arg(long, conflicts_with_all = ["wl", "preset"])]
    pub voi_lut: bool,
    /// Slab thickness, mm (0: a thin plane).
    #[arg(long, default_value_t = 0.0)]
    pub slab: f64,
    /// How the slab combines: mip, minip or avg.
    #[arg(long, default_value = "avg")]
    pub mode: String,
    /// Output width and height, pixels.
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    /// nearest or trilinear.
    #[arg(long, default_value = "trilinear")]
    pub interpolation: String,
    /// Invert the grey scale.
    #[arg(long)]
    pub invert: bool,
    /// Use the CPU reference renderer instead of the GPU.
    #[arg(long)]
    pub cpu: bool,
    /// Burn in orientation letters at the edges (only where the geometry is trusted).
    #[arg(long)]
    pub labels: bool,
    /// Burn in a mm scale bar.
    #[arg(long)]
    pub scale_bar: bool,
    /// Write a 16-bit PNG holding 10-bit grey levels.
    #[arg(long)]
    pub ten_bit: bool,
    /// Output PNG.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Print a JSON summary (renderer, view, window, timings).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct RenderJson {
    renderer: String,
    output: PathBuf,
    view: SliceView,
    display: Display,
    labels: Option<[String; 4]>,
    scale_bar_mm: Option<f64>,
    load_secs: f64,
    upload_secs: f64,
    render_secs: f64,
}

pub fn render_cmd(args: &RenderArgs) -> Result<()> {
    let plane = Plane::parse(&args.plane)?;
    let slab_mode = SlabMode::parse(&args.mode)?;
    let interpolation = match args.interpolation.to_ascii_lowercase().as_str() {
        "nearest" => Interpolation::Nearest,
        "trilinear" | "linear" => Interpolation::Trilinear,
        other => bail!("unknown interpolation {other:?} (nearest or trilinear)"),
    };
    if !(args.slab.is_finite() && args.slab >= 0.0) {
        bail!("--slab must be a thickness in mm, 0 or more");
    }
    let stack = pick_output_stack(&args.paths, args.stack.as_deref())?;
    let t0 = Instant::now();
    let volume = load_with_progress(&stack)?;
    check_failed_slices(&volume, args.allow_failed_slices)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let info = Arc::new(VolumeInfo::new(&volume)?);

    let middle = stack.slices.get(stack.slices.len() / 2);
    let file_lut = middle.and_then(|s| s.voi_lut.as_deref());
    let voi = match (&args.wl, &args.preset) {
        (Some(wl), _) => Voi::parse_wl(wl)?,
        (None, Some(p)) => Voi::preset(p).with_context(|| {
            let names: Vec<&str> = render::voi::PRESETS.iter().map(|p| p.0).collect();
            format!("unknown preset {p:?} (one of {})", names.join(", "))
        })?,
        (None, None) if args.voi_lut => {
            Voi::from_lut(file_lut.context("--voi-lut: the file has no usable VOI LUT")?)
        }
        (None, None) => match (volume.default_window, file_lut) {
            (Some(w), _) if w.width >= 1.0 => Voi::from_window(&w),
            (_, Some(lut)) => Voi::from_lut(lut),
            _ => {
                let s = voxel_range(&volume);
                Voi::spanning(s.min_modality, s.max_modality)
            }
        },
    };
    let mut display = Display::new(voi);
    display.monochrome1 = stack.format.photometric_interpretation == "MONOCHROME1";
    display.invert = args.invert;
    display.depth = if args.ten_bit {
        OutputDepth::Ten
    } else {
        OutputDepth::Eight
    };

    let mut view = SliceView::fit(&info, plane, args.position_mm, args.size, args.size)?;
    view.slab_mm = args.slab;
    view.slab_mode = slab_mode;
    view.interpolation = interpolation;

    let (renderer_name, upload_secs, render_secs, mut image) = if args.cpu {
        let t = Instant::now();
        let image = render::cpu::render(&info, &volume.voxels, &view, &display)?;
        (
            "cpu reference".to_string(),
            0.0,
            t.elapsed().as_secs_f64(),
            image,
        )
    } else {
        let ctx = GpuContext::new(AdapterChoice::from_env())
            .context("no GPU renderer (use --cpu for the CPU reference renderer)")?;
        let renderer = Renderer::new(&ctx);
        let t = Instant::now();
        let texture = VolumeTexture::new(&ctx, &renderer, info.clone())?;
        texture.write_slices(&ctx, &volume.voxels, 0..info.dims[2])?;
        let upload_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let image = renderer.render(&ctx, &texture, &view, &display)?;
        (
            ctx.describe(),
            upload_secs,
            t.elapsed().as_secs_f64(),
            image,
        )
    };

    let labels = if args.labels {
        if volume.geometry.trusted {
            image.burn_orientation_labels(&view);
            let r = glam::DVec3::from(view.right);
            let d = glam::DVec3::from(view.down);
            Some([-r, r, -d, d].map(render::view::direction_letters))
        } else {
            eprintln!("orientation labels left out: the stack's geometry cannot be trusted");
            None
        }
    } else {
        None
    };
    let scale_bar_mm = if args.scale_bar && !volume.geometry.pixel_spacing_known {
        eprintln!("scale bar left out: the stack gives no Pixel Spacing (0028,0030)");
        None
    } else if args.scale_bar && volume.geometry.spacing_at_detector {
        // A bar burned in as "50 mm" would be read as the patient's 50 mm wherever the PNG
        // goes; at the detector it is larger (the radiograph's magnification).
        eprintln!(
            "scale bar left out: the spacing is at the detector (Imager Pixel Spacing), not in \
             the patient"
        );
        None
    } else {
        args.scale_bar.then(|| image.burn_scale_bar(&view))
    };
    image.write_png(&args.output)?;
    if args.json {
        let json = RenderJson {
            renderer: renderer_name,
            output: args.output.clone(),
            view,
            display,
            labels,
            scale_bar_mm,
            load_secs,
            upload_secs,
            render_secs,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "wrote {} ({}x{}, {renderer_name}, render {:.1} ms)",
            args.output.display(),
            image.width,
            image.height,
            render_secs * 1e3
        );
    }
    Ok(())
}
