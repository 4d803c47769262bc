//! The wgpu renderer: device selection, volume textures and the resample and display pipelines.
//!
//! Voxels are uploaded as `R16Uint` 3D textures (signed data sign-extended in the shader; colour
//! volumes as `Rgba8Uint`, through their own resample and display entry points) and
//! filtered in the shader with `textureLoad`: exact for all 16 bits and the same arithmetic as
//! the CPU twin. Hardware filtering of `R16Unorm` (where the device has it) is not used: its
//! sub-texel weights have as few as 4-8 bits (Vulkan `subTexelPrecisionBits`), which moves a
//! windowed grey level by more than one step on sharp edges; `R16Float` is not exact above 2048.
//! Volumes with more slices than the 3D texture limit are folded into tiles, and volumes larger
//! than the device's largest allocation are split into up to eight bricks ([`TextureLayout`]).

use std::sync::Arc;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use imaging::{Volume, Voxels};

use super::RenderError;
use super::image::RenderedImage;
use super::kernel::{
    FLAG_SIGNED, FLAG_TABLE, FLAG_TRILINEAR, MAX_BRICKS, ON_SLICE, ResampleParams, TextureLayout,
    VolumeInfo,
};
use super::view::SliceView;
use super::voi::{Display, DisplayParams, OutputDepth};

/// Which adapter to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterChoice {
    /// A real GPU when there is one, else a software adapter (lavapipe, llvmpipe GL).
    Auto,
    /// Only a software (CPU) adapter: the test mode, the same results on every machine.
    Software,
    /// Only a real GPU.
    Hardware,
}

impl AdapterChoice {
    /// `OVERREAD_ADAPTER=cpu|software|gpu|hardware|auto` (default auto).
    pub fn from_env() -> AdapterChoice {
        match std::env::var("OVERREAD_ADAPTER")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "cpu" | "software" => AdapterChoice::Software,
            "gpu" | "hardware" => AdapterChoice::Hardware,
            _ => AdapterChoice::Auto,
        }
    }
}

/// An opened device and what it can do.
#[derive(Debug, Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The device offers 16-bit normalized textures (recorded; see the module docs for why the
    /// exact `R16Uint` path is used anyway).
    pub has_norm16: bool,
}

/// "name (backend, type, driver)" of an adapter, for logs and reports.
pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    )
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu || {
        let name = info.name.to_ascii_lowercase();
        name.contains("llvmpipe") || name.contains("lavapipe") || name.contains("swiftshader")
    }
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let kind = if is_software(info) { 4 } else { kind };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, backend)
}

impl GpuContext {
    /// Submit the queue's pending writes (texture uploads made with `write_texture`) and let
    /// finished work be cleaned up, without waiting: their staging memory is freed once the
    /// copies are done instead of piling up until the next frame's submission.
    pub fn flush_writes(&self) {
        self.queue.submit([]);
        if let Err(e) = self.device.poll(wgpu::PollType::Poll) {
            tracing::warn!("GPU poll: {e}");
        }
    }

    /// Open the best adapter for `choice`.
    pub fn new(choice: AdapterChoice) -> Result<GpuContext, RenderError> {
        pollster::block_on(Self::new_async(choice))
    }

    async fn new_async(choice: AdapterChoice) -> Result<GpuContext, RenderError> {
        // Vulkan, Metal or DX12 first; OpenGL only when none of them has a suitable adapter
        // (probing GL on a machine without a GL driver logs errors of its own).
        let mut seen = Vec::new();
        let mut found = None;
        for backends in [
            wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
            wgpu::Backends::GL,
        ] {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
            if std::env::var_os("WGPU_BACKEND").is_none() {
                desc.backends = backends;
            }
            let instance = wgpu::Instance::new(desc);
            let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
            for a in &adapters {
                let i = a.get_info();
                seen.push(format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type));
            }
            found = adapters
                .into_iter()
                .filter(|a| {
                    let info = a.get_info();
                    match choice {
                        AdapterChoice::Auto => true,
                        AdapterChoice::Software => is_software(&info),
                        AdapterChoice::Hardware => !is_software(&info),
                    }
                })
                .min_by_key(|a| rank(&a.get_info()));
            if found.is_some() || std::env::var_os("WGPU_BACKEND").is_some() {
                break;
            }
        }
        let adapter = found.ok_or_else(|| {
            RenderError::NoAdapter(format!(
                "wanted {choice:?}; found {}",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ))
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        if limits.max_storage_buffers_per_shader_stage < 2 {
            return Err(RenderError::Unsupported(format!(
                "{} has no storage buffers in fragment shaders",
                info.name
            )));
        }
        let has_norm16 = adapter
            .features()
            .contains(wgpu::Features::TEXTURE_FORMAT_16BIT_NORM);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("overread"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| RenderError::Device(e.to_string()))?;
        // Validation errors are bugs, not input: log them instead of the default panic.
        device.on_uncaptured_error(Arc::new(|e| {
            tracing::error!("graphics device error: {e}");
        }));
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            has_norm16,
        })
    }

    /// Use a device someone else opened (the window's, so its textures can be painted there).
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> GpuContext {
        let limits = device.limits();
        let has_norm16 = device
            .features()
            .contains(wgpu::Features::TEXTURE_FORMAT_16BIT_NORM);
        device.on_uncaptured_error(Arc::new(|e| {
            tracing::error!("graphics device error: {e}");
        }));
        GpuContext {
            device,
            queue,
            info,
            limits,
            has_norm16,
        }
    }

    /// "name (backend, type, driver)" for logs and reports.
    pub fn describe(&self) -> String {
        describe_adapter(&self.info)
    }

    pub fn is_software(&self) -> bool {
        is_software(&self.info)
    }
}

/// A volume on the GPU: one set of textures shared by every view of it, filled slice by slice.
#[derive(Debug)]
pub struct VolumeTexture {
    pub info: Arc<VolumeInfo>,
    pub layout: TextureLayout,
    bricks: Vec<wgpu::Texture>,
    /// Every brick, for any plane.
    bind_group: wgpu::BindGroup,
    /// Brick `b` alone (in every slot), for a plane on one of its slices.
    brick_groups: Vec<wgpu::BindGroup>,
    /// The slice table the bind groups hold (`info.slices`).
    table: wgpu::Buffer,
}

/// The largest brick: the device's largest buffer (Vulkan's maxMemoryAllocationSize bounds
/// it), at most 1 GiB.
fn max_brick_bytes(ctx: &GpuContext) -> u64 {
    ctx.limits.max_buffer_size.min(1 << 30)
}

impl VolumeTexture {
    /// Allocate the textures (zero-filled) and slice table; no voxels yet.
    pub fn new(
        ctx: &GpuContext,
        renderer: &Renderer,
        info: Arc<VolumeInfo>,
    ) -> Result<VolumeTexture, RenderError> {
        Self::with_limits(
            ctx,
            renderer,
            info,
            ctx.limits.max_texture_dimension_3d,
            max_brick_bytes(ctx),
        )
    }

    /// As [`VolumeTexture::new`] with a smaller 3D texture limit and brick size (tests of the
    /// folded and bricked layouts).
    pub fn with_limits(
        ctx: &GpuContext,
        renderer: &Renderer,
        info: Arc<VolumeInfo>,
        max_dim: u32,
        max_brick_bytes_wanted: u64,
    ) -> Result<VolumeTexture, RenderError> {
        let max_dim = max_dim.min(ctx.limits.max_texture_dimension_3d);
        let layout = TextureLayout::with_texel_bytes(
            info.dims,
            max_dim,
            max_brick_bytes_wanted.min(max_brick_bytes(ctx)),
            texel_bytes(&info) as u64,
        )?;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let bricks: Vec<wgpu::Texture> = (0..layout.bricks)
            .map(|b| {
                let [w, h, d] = layout.brick_size(info.dims, b);
                ctx.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some("volume brick"),
                    size: wgpu::Extent3d {
                        width: w,
                        height: h,
                        depth_or_array_layers: d,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D3,
                    format: if info.colour {
                        wgpu::TextureFormat::Rgba8Uint
                    } else {
                        wgpu::TextureFormat::R16Uint
                    },
                    usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                })
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(RenderError::TooLarge(format!(
                "{} slices of {}x{} in {} textures: {e}",
                info.dims[2], info.dims[0], info.dims[1], layout.bricks
            )));
        }
        let table = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("slice table"),
                contents: bytemuck::cast_slice(&info.slices),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            });
        let views: Vec<wgpu::TextureView> = bricks
            .iter()
            .map(|t| t.create_view(&wgpu::TextureViewDescriptor::default()))
            .collect();
        // Slot b of the group holds brick `brick_in(b)`.
        let group = |brick_in: &dyn Fn(usize) -> usize| {
            let mut entries: Vec<wgpu::BindGroupEntry> = (0..MAX_BRICKS as usize)
                .map(|b| wgpu::BindGroupEntry {
                    binding: b as u32,
                    resource: wgpu::BindingResource::TextureView(&views[brick_in(b)]),
                })
                .collect();
            entries.push(wgpu::BindGroupEntry {
                binding: MAX_BRICKS,
                resource: table.as_entire_binding(),
            });
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("volume"),
                layout: &renderer.volume_layout,
                entries: &entries,
            })
        };
        // Every brick (unused slots repeat brick 0), and each brick alone.
        let bind_group = group(&|b| if b < views.len() { b } else { 0 });
        let brick_groups = (0..views.len()).map(|only| group(&|_| only)).collect();
        Ok(VolumeTexture {
            info,
            layout,
            bricks,
            bind_group,
            brick_groups,
            table,
        })
    }

    /// This texture's voxels with `info`'s slice table (the rescales and failed slices a load
    /// knows at its end), written into the table in place: nothing of the voxels is uploaded
    /// again (a 5,000-slice CT with one failed slice was copied whole, 2.6 GB, in one frame).
    /// Refused where `info` is of another shape of volume.
    pub fn with_table(
        &self,
        ctx: &GpuContext,
        info: Arc<VolumeInfo>,
    ) -> Result<VolumeTexture, RenderError> {
        if info.dims != self.info.dims
            || info.colour != self.info.colour
            || info.signed != self.info.signed
            || info.slices.len() != self.info.slices.len()
        {
            return Err(RenderError::View(format!(
                "a slice table for {:?} given to a texture of {:?}",
                info.dims, self.info.dims
            )));
        }
        ctx.queue
            .write_buffer(&self.table, 0, bytemuck::cast_slice(&info.slices));
        Ok(VolumeTexture {
            info,
            layout: self.layout,
            bricks: self.bricks.clone(),
            bind_group: self.bind_group.clone(),
            brick_groups: self.brick_groups.clone(),
            table: self.table.clone(),
        })
    }

    /// Allocate and upload a whole loaded volume.
    pub fn upload(
        ctx: &GpuContext,
        renderer: &Renderer,
        volume: &Volume,
    ) -> Result<VolumeTexture, RenderError> {
        let info = Arc::new(VolumeInfo::new(volume)?);
        let tex = Self::new(ctx, renderer, info)?;
        tex.write_slices(ctx, &volume.voxels, 0..volume.geometry.dims[2])?;
        Ok(tex)
    }

    /// Upload slices `range` of `voxels` (e.g. as a progressive load delivers them). Slices
    /// not yet written read as zero.
    pub fn write_slices(
        &self,
        ctx: &GpuContext,
        voxels: &Voxels,
        range: std::ops::Range<usize>,
    ) -> Result<(), RenderError> {
        let [w, h, k] = self.info.dims;
        if voxels.shape() != [k, h, w] {
            return Err(RenderError::View(format!(
                "voxels {:?} do not match the texture's volume {:?}",
                voxels.shape(),
                self.info.dims
            )));
        }
        let end = range.end.min(k);
        let mut start = range.start;
        let depth = self.layout.fold.depth as usize;
        let per_brick = self.layout.slices_per_brick as usize;
        while start < end {
            // A run of consecutive slices within one tile of one brick is one copy.
            let local = start % per_brick;
            let tile_end = start - local + (local / depth + 1) * depth;
            let brick_end = (start / per_brick + 1) * per_brick;
            let run_end = end.min(tile_end).min(brick_end).min(start + 64);
            let slice_len = w * h;
            if let Voxels::Rgb(a) = voxels {
                // RGB into the texture's RGBA texels (no 3-byte format exists), run by run.
                let Some(all) = a.as_slice() else {
                    return Err(RenderError::View("colour voxels are not contiguous".into()));
                };
                let bytes: Vec<u8> = all[start * slice_len..run_end * slice_len]
                    .iter()
                    .flat_map(|[r, g, b]| [*r, *g, *b, 255])
                    .collect();
                self.write_run(ctx, start, run_end - start, &bytes, w, h);
                ctx.flush_writes();
                start = run_end;
                continue;
            }
            let contiguous: Option<&[u8]> = match voxels {
                Voxels::U16(a) => a
                    .as_slice()
                    .map(|v| bytemuck::cast_slice(&v[start * slice_len..run_end * slice_len])),
                Voxels::I16(a) => a
                    .as_slice()
                    .map(|v| bytemuck::cast_slice(&v[start * slice_len..run_end * slice_len])),
                Voxels::Rgb(_) => None,
            };
            match contiguous {
                // Little-endian hosts upload the voxel memory as it is.
                Some(bytes) if cfg!(target_endian = "little") => {
                    self.write_run(ctx, start, run_end - start, bytes, w, h)
                }
                _ => {
                    let bytes: Vec<u8> = (start..run_end)
                        .flat_map(|s| voxels.to_le_bytes_slice(s))
                        .collect();
                    self.write_run(ctx, start, run_end - start, &bytes, w, h);
                }
            }
            // Each run's staging copy is freed once it is copied, not after the whole volume.
            ctx.flush_writes();
            start = run_end;
        }
        Ok(())
    }

    /// Upload one slice's stored values (u16, or i16 bit patterns).
    pub fn write_slice_values<T: Pod>(&self, ctx: &GpuContext, k: usize, values: &[T]) {
        let [w, h, _] = self.info.dims;
        let bytes: &[u8] = bytemuck::cast_slice(values);
        if bytes.len() == w * h * texel_bytes(&self.info) && k < self.info.dims[2] {
            self.write_run(ctx, k, 1, bytes, w, h);
        }
    }

    /// Upload one colour slice.
    pub fn write_slice_rgb(&self, ctx: &GpuContext, k: usize, values: &[[u8; 3]]) {
        let rgba: Vec<[u8; 4]> = values.iter().map(|[r, g, b]| [*r, *g, *b, 255]).collect();
        self.write_slice_values(ctx, k, &rgba);
    }

    fn write_run(
        &self,
        ctx: &GpuContext,
        k: usize,
        count: usize,
        bytes: &[u8],
        w: usize,
        h: usize,
    ) {
        let (brick, origin) = self.layout.locate(self.info.dims, k as u32);
        let Some(texture) = self.bricks.get(brick as usize) else {
            return;
        };
        ctx.queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: origin[0],
                    y: origin[1],
                    z: origin[2],
                },
                aspect: wgpu::TextureAspect::All,
            },
            bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some((w * texel_bytes(&self.info)) as u32),
                rows_per_image: Some(h as u32),
            },
            wgpu::Extent3d {
                width: w as u32,
                height: h as u32,
                depth_or_array_layers: count as u32,
            },
        );
    }
}

/// Bytes of one voxel in the volume texture: `R16Uint`, or `Rgba8Uint` for colour.
fn texel_bytes(info: &VolumeInfo) -> usize {
    if info.colour { 4 } else { 2 }
}

/// The pipelines; one per device, shared by every view.
#[derive(Debug)]
pub struct Renderer {
    volume_layout: wgpu::BindGroupLayout,
    resample_params_layout: wgpu::BindGroupLayout,
    display_layout: wgpu::BindGroupLayout,
    resample_module: wgpu::ShaderModule,
    resample_layout: wgpu::PipelineLayout,
    /// Resample pipelines by [`ResampleVariant`], built on first use.
    resample: std::sync::Mutex<std::collections::HashMap<ResampleVariant, wgpu::RenderPipeline>>,
    display_module: wgpu::ShaderModule,
    display_layout_pl: wgpu::PipelineLayout,
    /// Display pipelines by [`DisplayVariant`] (the target's format, the VOI function,
    /// inversion), built on first use.
    display: std::sync::Mutex<std::collections::HashMap<DisplayVariant, wgpu::RenderPipeline>>,
}

/// Which display pipeline a frame needs (the shader's override constants, and the target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DisplayVariant {
    format: wgpu::TextureFormat,
    /// A colour view (`fs_display_rgb`).
    colour: bool,
    /// `DisplayParams::mode[0]`: 0 linear, 1 linear exact, 2 sigmoid, 3 LUT.
    function: u32,
    inverted: bool,
}

/// The WGSL sources (also validated by naga in the tests).
pub const RESAMPLE_WGSL: &str = include_str!("../../shaders/resample.wgsl");
pub const DISPLAY_WGSL: &str = include_str!("../../shaders/display.wgsl");

/// Format of the resampled (modality value, coverage) image.
const RESAMPLED_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rg32Float;
/// Format of a resampled colour (red, green, blue, coverage) image.
const RESAMPLED_COLOUR_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba32Float;

fn fragment_entry(binding: u32, ty: wgpu::BindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::FRAGMENT,
        ty,
        count: None,
    }
}

fn uniform_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    fragment_entry(
        binding,
        wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
    )
}

fn storage_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    fragment_entry(
        binding,
        wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only: true },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
    )
}

impl Renderer {
    pub fn new(ctx: &GpuContext) -> Renderer {
        let device = &ctx.device;
        let mut volume_entries: Vec<wgpu::BindGroupLayoutEntry> = (0..MAX_BRICKS)
            .map(|b| {
                fragment_entry(
                    b,
                    wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Uint,
                        view_dimension: wgpu::TextureViewDimension::D3,
                        multisampled: false,
                    },
                )
            })
            .collect();
        volume_entries.push(storage_entry(MAX_BRICKS));
        let volume_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("volume"),
            entries: &volume_entries,
        });
        let resample_params_layout =
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("resample params"),
                // No branch or loop of the shader may depend on uniforms alone (see
                // resample.wgsl): lavapipe would compile a shader variant per draw.
                entries: &[uniform_entry(0)],
            });
        let display_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("display"),
            entries: &[
                uniform_entry(0),
                fragment_entry(
                    1,
                    wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                ),
                storage_entry(2),
            ],
        });
        let resample_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("resample.wgsl"),
            source: wgpu::ShaderSource::Wgsl(RESAMPLE_WGSL.into()),
        });
        let display_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("display.wgsl"),
            source: wgpu::ShaderSource::Wgsl(DISPLAY_WGSL.into()),
        });
        let resample_pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("resample"),
            bind_group_layouts: &[Some(&resample_params_layout), Some(&volume_layout)],
            immediate_size: 0,
        });
        let display_pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("display"),
            bind_group_layouts: &[Some(&display_layout)],
            immediate_size: 0,
        });
        Renderer {
            volume_layout,
            resample_params_layout,
            display_layout,
            resample_module,
            resample_layout: resample_pl,
            resample: Default::default(),
            display_module,
            display_layout_pl: display_pl,
            display: Default::default(),
        }
    }

    fn resample_pipeline(&self, ctx: &GpuContext, v: ResampleVariant) -> wgpu::RenderPipeline {
        cached_pipeline(&self.resample, v, || {
            build_pipeline(
                &ctx.device,
                "resample",
                &self.resample_layout,
                &self.resample_module,
                if v.colour {
                    "fs_resample_rgb"
                } else {
                    "fs_resample"
                },
                if v.colour {
                    RESAMPLED_COLOUR_FORMAT
                } else {
                    RESAMPLED_FORMAT
                },
                &[
                    ("brick_count", f64::from(v.bricks)),
                    ("use_table", flag(v.use_table)),
                    ("trilinear", flag(v.trilinear)),
                    ("signed_data", flag(v.signed)),
                    ("on_one_slice", flag(v.on_one_slice)),
                    ("single_block", flag(v.single_block)),
                    ("folded", flag(v.folded)),
                    ("thin", flag(v.thin)),
                    ("slab_mode", f64::from(v.slab_mode)),
                ],
            )
        })
    }

    /// Step 1 of a frame: resample `volume` on `view` into `target`.
    pub fn resample(
        &self,
        ctx: &GpuContext,
        volume: &VolumeTexture,
        view: &SliceView,
        target: &mut ViewTarget,
    ) -> Result<(), RenderError> {
        let max = ctx.limits.max_texture_dimension_2d;
        if view.width > max || view.height > max {
            return Err(RenderError::View(format!(
                "{}x{} is larger than this device's 2D texture limit {max}",
                view.width, view.height
            )));
        }
        let mut params = ResampleParams::new(&volume.info, &volume.layout, view)?;
        let mut variant = ResampleVariant::of(&params, view.width, view.height);
        variant.colour = volume.info.colour;
        let mut bricks = &volume.bind_group;
        if variant.on_one_slice
            && let Some(k) = one_slice_of(&params, view.width, view.height)
        {
            // The slice's brick alone, and where the slice starts in it (a slice off the
            // stack is clamped: no pixel of such a plane reads a voxel).
            let k = k.clamp(0, volume.info.dims[2] as i64 - 1) as u32;
            let (b, at) = volume.layout.locate(volume.info.dims, k);
            params.one_slice = [at[0] as i32, at[1] as i32, at[2] as i32, b as i32];
            let slice = &volume.info.slices[k as usize];
            params.one_rescale = [slice.slope, slice.intercept, slice.failed, 0.0];
            bricks = &volume.brick_groups[b as usize];
        }
        let pipeline = self.resample_pipeline(ctx, variant);
        target.ensure(ctx, view.width, view.height, volume.info.colour);
        let buffer = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("resample params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let params_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("resample params"),
            layout: &self.resample_params_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: buffer.as_entire_binding(),
            }],
        });
        draw_fullscreen(
            ctx,
            "resample",
            &target.resampled_view,
            wgpu::Color::TRANSPARENT,
            &pipeline,
            &[&params_group, bricks],
        );
        Ok(())
    }

    /// Step 2 of a frame: window the resampled image of `target` into its output image (the
    /// only step a window/level change redoes).
    pub fn display(
        &self,
        ctx: &GpuContext,
        display: &Display,
        target: &mut ViewTarget,
    ) -> Result<(), RenderError> {
        let pass = self.display_on_screen(ctx, display, target, output_format(display.depth))?;
        target.ensure_output(ctx, display.depth);
        if let Some((_, output)) = &target.output {
            draw_fullscreen(
                ctx,
                "display",
                output,
                wgpu::Color::BLACK,
                &pass.pipeline,
                &[&pass.group],
            );
        }
        Ok(())
    }

    /// Step 2 drawn straight into a window: the display pass of [`Renderer::display`], to be
    /// recorded into the caller's render pass (an egui paint callback) whose viewport is the
    /// view's rectangle, exactly `target`'s size in pixels. No output image, and no second
    /// pass that copies one into the window: on a software rasterizer that copy cost as
    /// much as the window/level pass itself, several times over (benches/README.md).
    /// `format` is the target's format (8 or 10 bits, sRGB-encoded or not).
    ///
    /// The VOI function and the inversion are pipeline constants, one cached pipeline each (a
    /// software rasterizer runs every case of a switch on a buffer value; lavapipe's own
    /// answer, recompiling for the values, leaked).
    pub fn display_on_screen(
        &self,
        ctx: &GpuContext,
        display: &Display,
        target: &ViewTarget,
        format: wgpu::TextureFormat,
    ) -> Result<ScreenDraw, RenderError> {
        display.validate()?;
        let (params, lut) = DisplayParams::new(display);
        let variant = DisplayVariant {
            format,
            colour: target.colour,
            function: params.mode[0],
            inverted: params.mode[1] != 0,
        };
        let pipeline = cached_pipeline(&self.display, variant, || {
            build_pipeline(
                &ctx.device,
                "display",
                &self.display_layout_pl,
                &self.display_module,
                if variant.colour {
                    "fs_display_rgb"
                } else {
                    "fs_display"
                },
                format,
                &[
                    ("SRGB_TARGET", flag(format.is_srgb())),
                    ("voi_function", f64::from(variant.function)),
                    ("inverted", flag(variant.inverted)),
                ],
            )
        });
        let params_buffer = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("display params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let lut_buffer = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("voi lut"),
                contents: bytemuck::cast_slice(&lut),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("display"),
            layout: &self.display_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params_buffer.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&target.resampled_view),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: lut_buffer.as_entire_binding(),
                },
            ],
        });
        Ok(ScreenDraw { pipeline, group })
    }

    /// Resample, display and read back one frame.
    pub fn render(
        &self,
        ctx: &GpuContext,
        volume: &VolumeTexture,
        view: &SliceView,
        display: &Display,
    ) -> Result<RenderedImage, RenderError> {
        let mut target = ViewTarget::new(ctx, view.width, view.height, display.depth);
        self.resample(ctx, volume, view, &mut target)?;
        self.display(ctx, display, &mut target)?;
        target.read(ctx)
    }
}

/// One full-screen triangle into `view` (cleared to `clear` first), submitted at once.
fn draw_fullscreen(
    ctx: &GpuContext,
    label: &str,
    view: &wgpu::TextureView,
    clear: wgpu::Color,
    pipeline: &wgpu::RenderPipeline,
    groups: &[&wgpu::BindGroup],
) {
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some(label),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(clear),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        pass.set_pipeline(pipeline);
        for (i, g) in groups.iter().enumerate() {
            pass.set_bind_group(i as u32, *g, &[]);
        }
        pass.draw(0..3, 0..1);
    }
    ctx.queue.submit([encoder.finish()]);
}

/// A view's display pass, ready to record into a window's render pass
/// ([`Renderer::display_on_screen`]).
#[derive(Debug, Clone)]
pub struct ScreenDraw {
    pipeline: wgpu::RenderPipeline,
    group: wgpu::BindGroup,
}

impl ScreenDraw {
    /// Draw into `pass`, whose viewport must be the view's rectangle.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.draw(0..3, 0..1);
    }
}

/// A WGSL override constant's value for a flag.
fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The pipeline for `key` from `cache`, built by `build` the first time it is asked for.
fn cached_pipeline<K: Eq + std::hash::Hash>(
    cache: &std::sync::Mutex<std::collections::HashMap<K, wgpu::RenderPipeline>>,
    key: K,
    build: impl FnOnce() -> wgpu::RenderPipeline,
) -> wgpu::RenderPipeline {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_insert_with(build)
        .clone()
}

fn build_pipeline(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    fs: &str,
    format: wgpu::TextureFormat,
    constants: &[(&str, f64)],
) -> wgpu::RenderPipeline {
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some(label),
        layout: Some(layout),
        vertex: wgpu::VertexState {
            module,
            entry_point: Some("vs_fullscreen"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: wgpu::PrimitiveState::default(),
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module,
            entry_point: Some(fs),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            targets: &[Some(wgpu::ColorTargetState {
                format,
                blend: None,
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        multiview_mask: None,
        cache: None,
    })
}

/// Which resample pipeline a frame needs (the shader's override constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ResampleVariant {
    /// Bricks a read chooses among (1 for a plane on one slice: its brick is bound alone).
    bricks: u32,
    use_table: bool,
    trilinear: bool,
    signed: bool,
    on_one_slice: bool,
    /// One brick, not folded into tiles (its texture depth holds every slice).
    single_block: bool,
    /// Each brick's slices folded into tiles.
    folded: bool,
    /// One sample per pixel (no slab).
    thin: bool,
    /// `MODE_*` of the slab.
    slab_mode: u32,
    /// A colour volume (`fs_resample_rgb`); set by the caller, who knows the volume.
    colour: bool,
}

impl ResampleVariant {
    /// The variant for `params` drawn at `width` x `height` pixels.
    fn of(params: &ResampleParams, width: u32, height: u32) -> ResampleVariant {
        let use_table = params.dims[3] & FLAG_TABLE != 0;
        let trilinear = params.dims[3] & FLAG_TRILINEAR != 0;
        let on_one_slice = trilinear
            && !use_table
            && params.fold[2] == 1
            && one_slice_of(params, width, height).is_some();
        ResampleVariant {
            bricks: if on_one_slice { 1 } else { params.brick[1] },
            use_table,
            trilinear,
            signed: params.dims[3] & FLAG_SIGNED != 0,
            on_one_slice,
            single_block: params.brick[1] <= 1 && params.fold[0] >= params.dims[2],
            folded: params.fold[0] < params.brick[0],
            thin: params.fold[2] == 1,
            slab_mode: params.fold[3],
            colour: false,
        }
    }
}

/// The slice a single-sample plane lies on, when it lies on one: the slice coordinate (voxel
/// k, without a slice table) at the view's four corners within [`ON_SLICE`] (a thousandth of
/// a slice: f32 parameters and slice places, and planes placed from f64 positions, land
/// well within it) of a slice of the same whole number. Between the corners k is linear, so
/// it is that close everywhere. The CPU twin takes every sample that close as on the slice
/// too (`kernel::snap_to_slice`), and the corner names the slice (`Viewport::native_slice`).
fn one_slice_of(params: &ResampleParams, width: u32, height: u32) -> Option<i64> {
    let k = |x: f64, y: f64| {
        f64::from(params.base[2])
            + x * f64::from(params.step_x[2])
            + y * f64::from(params.step_y[2])
    };
    let (w, h) = (f64::from(width), f64::from(height));
    let corners = [k(0.0, 0.0), k(w, 0.0), k(0.0, h), k(w, h)];
    let slice = corners[0].round();
    corners
        .iter()
        .all(|c| (c - slice).abs() <= f64::from(ON_SLICE))
        .then_some(slice as i64)
}

/// The textures of one view: the resampled modality values and the displayed image.
#[derive(Debug)]
pub struct ViewTarget {
    width: u32,
    height: u32,
    depth: OutputDepth,
    /// The resampled image holds colour (red, green, blue, coverage).
    colour: bool,
    resampled_view: wgpu::TextureView,
    /// The displayed image, made by the first [`Renderer::display`] (a view drawn only into a
    /// window never needs one).
    output: Option<(wgpu::Texture, wgpu::TextureView)>,
}

impl ViewTarget {
    pub fn new(ctx: &GpuContext, width: u32, height: u32, depth: OutputDepth) -> ViewTarget {
        Self::with_kind(ctx, width, height, depth, false)
    }

    fn with_kind(
        ctx: &GpuContext,
        width: u32,
        height: u32,
        depth: OutputDepth,
        colour: bool,
    ) -> ViewTarget {
        let width = width.clamp(1, ctx.limits.max_texture_dimension_2d);
        let height = height.clamp(1, ctx.limits.max_texture_dimension_2d);
        let resampled = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("resampled"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: if colour {
                RESAMPLED_COLOUR_FORMAT
            } else {
                RESAMPLED_FORMAT
            },
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        });
        ViewTarget {
            width,
            height,
            depth,
            colour,
            resampled_view: resampled.create_view(&wgpu::TextureViewDescriptor::default()),
            output: None,
        }
    }

    /// The view's size in pixels.
    pub fn size(&self) -> [u32; 2] {
        [self.width, self.height]
    }

    /// A resampled image of this size and kind (a new output image with it).
    fn ensure(&mut self, ctx: &GpuContext, width: u32, height: u32, colour: bool) {
        if (width, height, colour) != (self.width, self.height, self.colour) {
            *self = ViewTarget::with_kind(ctx, width, height, self.depth, colour);
        }
    }

    /// An output image of `depth` (the resampled image is kept).
    fn ensure_output(&mut self, ctx: &GpuContext, depth: OutputDepth) {
        if self.output.is_some() && depth == self.depth {
            return;
        }
        let output = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("view output"),
            size: wgpu::Extent3d {
                width: self.width,
                height: self.height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: output_format(depth),
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT
                | wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = output.create_view(&wgpu::TextureViewDescriptor::default());
        self.output = Some((output, view));
        self.depth = depth;
    }

    /// Copy the displayed image back to the CPU (after [`Renderer::display`]).
    pub fn read(&self, ctx: &GpuContext) -> Result<RenderedImage, RenderError> {
        let Some((output, _)) = &self.output else {
            return Err(RenderError::Readback(
                "the view has no displayed image yet".into(),
            ));
        };
        let bytes_per_row = (self.width * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
            * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: u64::from(bytes_per_row) * u64::from(self.height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture: output,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(bytes_per_row),
                    rows_per_image: Some(self.height),
                },
            },
            wgpu::Extent3d {
                width: self.width,
                height: self.height,
                depth_or_array_layers: 1,
            },
        );
        ctx.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| RenderError::Readback(e.to_string()))?;
        rx.recv()
            .map_err(|e| RenderError::Readback(e.to_string()))?
            .map_err(|e| RenderError::Readback(e.to_string()))?;
        let data = buffer
            .get_mapped_range(..)
            .map_err(|e| RenderError::Readback(e.to_string()))?;
        let mut levels: Vec<[u16; 3]> = Vec::with_capacity((self.width * self.height) as usize);
        for row in data.chunks_exact(bytes_per_row as usize) {
            for px in row[..(self.width * 4) as usize].chunks_exact(4) {
                levels.push(match self.depth {
                    OutputDepth::Eight => [px[0], px[1], px[2]].map(u16::from),
                    OutputDepth::Ten => {
                        let v = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
                        [v & 0x3ff, (v >> 10) & 0x3ff, (v >> 20) & 0x3ff].map(|c| c as u16)
                    }
                });
            }
        }
        drop(data);
        buffer.unmap();
        if self.colour {
            return Ok(RenderedImage::from_colour(
                self.width,
                self.height,
                self.depth,
                levels,
            ));
        }
        Ok(RenderedImage {
            width: self.width,
            height: self.height,
            depth: self.depth,
            pixels: levels.into_iter().map(|[grey, _, _]| grey).collect(),
            colour: None,
        })
    }
}

fn output_format(depth: OutputDepth) -> wgpu::TextureFormat {
    match depth {
        OutputDepth::Eight => wgpu::TextureFormat::Rgba8Unorm,
        OutputDepth::Ten => wgpu::TextureFormat::Rgb10a2Unorm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::kernel::{TextureLayout, VolumeInfo};
    use crate::render::view::Plane;
    use imaging::synth::{PhantomSpec, phantom_volume};

    fn params(volume: &Volume, view: &SliceView) -> ResampleParams {
        let info = VolumeInfo::new(volume).unwrap();
        let layout = TextureLayout::new(volume.geometry.dims, 2048, 1 << 30).unwrap();
        ResampleParams::new(&info, &layout, view).unwrap()
    }

    /// The one-slice variant is chosen for a plane on a slice of a stack in its own orientation,
    /// and for nothing else: half a slice away, another orientation, a slab, nearest neighbour.
    #[test]
    fn one_slice_variant_only_on_a_slice() {
        let volume = phantom_volume(&PhantomSpec {
            columns: 64,
            rows: 64,
            slices: 20,
            spacing_mm: 2.5,
            ..PhantomSpec::default()
        });
        let info = VolumeInfo::new(&volume).unwrap();
        let z_of = |k: f64| volume.geometry.patient_from_voxel_affine([0.0, 0.0, k])[2];
        let at = |plane, z: f64| SliceView::fit(&info, plane, Some(z), 300, 200).unwrap();
        let variant = |v: &SliceView| ResampleVariant::of(&params(&volume, v), v.width, v.height);

        let on = at(Plane::Axial, z_of(7.0));
        assert_eq!(one_slice_of(&params(&volume, &on), 300, 200), Some(7));
        assert!(variant(&on).on_one_slice);
        assert!(!variant(&at(Plane::Axial, z_of(7.5))).on_one_slice);
        assert!(!variant(&at(Plane::Axial, z_of(7.01))).on_one_slice);
        // A ten-thousandth of a slice off is on it, a hundredth off is not (the bound is a
        // thousandth).
        assert!(variant(&at(Plane::Axial, z_of(7.0001))).on_one_slice);
        assert!(!variant(&at(Plane::Coronal, 0.0)).on_one_slice);
        let mut slab = on.clone();
        slab.slab_mm = 10.0;
        assert!(!variant(&slab).on_one_slice);
        let mut nearest = on.clone();
        nearest.interpolation = crate::render::Interpolation::Nearest;
        assert!(!variant(&nearest).on_one_slice);
    }
}
