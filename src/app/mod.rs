//! The workstation window: eframe + egui, viewports painted from `render` through wgpu.
//!
//! Long work never runs on the frame loop: scanning and loading run on background threads and
//! send their results over channels; each frame drains what arrived. The loading threads write
//! each decoded slice straight into the volume texture (wgpu's queue takes writes from any
//! thread), so a series shows while it loads and no copy of its pixels queues up behind a slow
//! frame. GPU work is submitted, not waited for.
//!
//! Owns: panels, input handling, painting. Must not: compute geometry or measurement values
//! (that is `viewer`), read DICOM (that is `imaging`).

mod panels;
pub use panels::LengthUnits;
pub mod report_panel;
pub mod script;
pub mod settings;
pub mod worklist;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use eframe::egui;
use glam::DVec3;

use crate::render::ScreenDraw;
use crate::render::gpu::ViewTarget;
use crate::render::{GpuContext, Plane, Renderer, Voi, VolumeInfo, VolumeTexture};
use crate::viewer::Viewport;
use crate::viewer::bindings::{Action, default_bindings};
use crate::viewer::measure::{Measurement, Shape, Value};
use imaging::decode::SlicePixels;
use imaging::{self, Patient, Stack, Volume};

/// Open the workstation window on `paths` (files, folders, DICOMDIRs); blocks until it closes.
pub fn run(paths: Vec<PathBuf>) -> Result<(), eframe::Error> {
    run_with(paths, None)
}

/// Open the window and play the standard scripted reading (`script::standard`), printing the
/// frame times as JSON (and writing them to `out`), then close.
pub fn run_scripted(paths: Vec<PathBuf>, out: Option<PathBuf>) -> Result<(), eframe::Error> {
    run_with(paths, Some((script::Script::new(script::standard()), out)))
}

/// `overread bench-reading --empty-window`: the floor under the reading's frames, an empty
/// window of the reading's size and options ([`script::EmptyWindow`]).
pub fn run_empty_window(out: Option<PathBuf>) -> Result<(), eframe::Error> {
    eframe::run_native(
        "Overread",
        native_options(true),
        Box::new(|_| Ok(Box::new(script::EmptyWindow::new(out)))),
    )
}

fn run_with(
    paths: Vec<PathBuf>,
    script: Option<(script::Script, Option<PathBuf>)>,
) -> Result<(), eframe::Error> {
    eframe::run_native(
        "Overread",
        native_options(script.is_some()),
        Box::new(|cc| {
            let mut app = OverreadApp::new(cc, paths);
            app.script = script;
            Ok(Box::new(app))
        }),
    )
}

/// The window's options: 1920x1080 for a scripted reading, no dithering, the adapter's own
/// limits.
fn native_options(scripted: bool) -> eframe::NativeOptions {
    let mut options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Overread")
            .with_inner_size(if scripted {
                [1920.0, 1080.0]
            } else {
                [1600.0, 1000.0]
            })
            .with_drag_and_drop(true),
        // Grey levels must reach the display unchanged: no dithering noise.
        dithering: false,
        ..Default::default()
    };
    if let eframe::egui_wgpu::WgpuSetup::CreateNew(setup) = &mut options.wgpu_options.wgpu_setup {
        // Ask for the adapter's own limits (big 3D textures and allocations), not WebGPU's
        // defaults.
        setup.device_descriptor = Arc::new(|adapter| wgpu::DeviceDescriptor {
            label: Some("overread"),
            required_limits: adapter.limits(),
            ..Default::default()
        });
    }
    options
}

/// What a background thread sends while loading a stack.
enum LoadMsg {
    /// A slice is decoded and in the volume texture (the loader writes it there itself: no
    /// copy of the pixels waits in this channel for a slow frame).
    Slice,
    /// The volume, and its modality range when the window is to come from the data (worked
    /// out on the loading thread: a pass over the whole volume has no place in a frame).
    Done(Box<Loaded>),
}

/// A finished load: the volume and, when the window is to come from the data, its modality
/// range (lowest, highest); or why it failed.
type Loaded = Result<(Volume, Option<(f64, f64)>), String>;

/// What the scan thread sends.
enum ScanMsg {
    /// The first file of a study arriving over DICOMweb, grouped on its own: shown at once.
    Preview(Vec<Patient>),
    /// Everything, grouped; the folders downloaded for it (removed when the app closes); the
    /// files left out and why ("path: reason", for the screen only).
    Done(Vec<Patient>, Vec<tempfile::TempDir>, Vec<String>),
    Failed(String),
}

/// A stack open in one or more viewports.
struct Open {
    stack: Stack,
    info: Arc<VolumeInfo>,
    texture: Option<Arc<VolumeTexture>>,
    volume: Option<Arc<Volume>>,
    loaded: usize,
    rx: Receiver<LoadMsg>,
    cancel: Arc<AtomicBool>,
    error: Option<String>,
    /// The data's modality range, once loaded, when the window comes from it (no window in
    /// the files, not CT).
    range: Option<(f64, f64)>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The GPU side of the window.
struct Gpu {
    ctx: GpuContext,
    renderer: Renderer,
    /// The window's target format: viewports are drawn straight into it.
    target_format: wgpu::TextureFormat,
}

/// One viewport on screen: its state, the volume it shows, where it was drawn, and its GPU
/// target.
struct Cell {
    viewport: Viewport,
    /// Index of its volume in `OverreadApp::opens`.
    volume: usize,
    /// Where it was drawn last frame (screen points).
    rect: Option<egui::Rect>,
    /// The plane, zoom or voxels changed: resample (and display) again.
    dirty: bool,
    /// Only the window changed: the display pass alone.
    display_dirty: bool,
    /// The view target (its resampled image; its size is the viewport's in pixels).
    target: Option<ViewTarget>,
    /// The display pass as last set up, drawn into the window every frame.
    screen: Option<ScreenDraw>,
    /// A scrolling drag's pixels not yet turned into slices.
    scroll_drag_px: f64,
    /// Wheel motion not yet turned into slices.
    wheel: crate::viewer::WheelSteps,
    /// Pixels per point when it was drawn.
    ppp: f32,
    /// Linked scrolling asked for a position this series does not reach (it shows its end).
    beyond_link: bool,
}

impl Cell {
    fn new(viewport: Viewport, volume: usize) -> Cell {
        Cell {
            viewport,
            volume,
            rect: None,
            dirty: true,
            display_dirty: true,
            target: None,
            screen: None,
            scroll_drag_px: 0.0,
            wheel: Default::default(),
            ppp: 1.0,
            beyond_link: false,
        }
    }
}

/// Whether `shape`'s values on this volume are in mm: the files give Pixel Spacing, and
/// either their positions (the spacing between slices is real) or the shape lies within one
/// slice (frames without positions are placed 1 mm apart, which is made up: a line across
/// them in a reformat is not millimetres).
fn calibrated(info: &VolumeInfo, shape: &Shape) -> bool {
    let g = &info.geometry;
    if !g.pixel_spacing_known {
        return false;
    }
    if g.trusted {
        return true;
    }
    let n = info.axes[2];
    let along = |p: &[f64; 3]| (DVec3::from(*p) - info.origin).dot(n);
    let (lo, hi) = match shape {
        // An ellipse reaches sqrt((a1·n)² + (a2·n)²) either side of its centre along n.
        Shape::Ellipse {
            center,
            semi_axis_1,
            semi_axis_2,
        } => {
            let reach = DVec3::from(*semi_axis_1)
                .dot(n)
                .hypot(DVec3::from(*semi_axis_2).dot(n));
            (along(center) - reach, along(center) + reach)
        }
        other => {
            let at: Vec<f64> = other.points().iter().map(along).collect();
            (
                at.iter().copied().fold(f64::MAX, f64::min),
                at.iter().copied().fold(f64::MIN, f64::max),
            )
        }
    };
    hi - lo < 0.5 * info.spacing_mm[2]
}

/// A measurement's value as last computed: for this shape, on this volume (held weakly, so
/// that its address is never another volume's while the entry lives).
type CachedValue = (Shape, std::sync::Weak<Volume>, Value);

/// Where a cell's view pixels lie on screen. egui gives a cell's paint callback the cell's
/// rectangle with its corner rounded to whole pixels, so view pixel coordinates (x, y)
/// (continuous, pixel centres at .5, as `SliceView::pixel_at_patient` gives them) are that
/// corner plus (x, y) pixels. Overlays, clicks and handles all go through this one mapping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelGrid {
    /// The first view pixel's corner, in window pixels.
    origin: egui::Vec2,
    pixels_per_point: f32,
}

impl PixelGrid {
    /// The grid of a cell drawn in `rect` (points) at `pixels_per_point`.
    pub fn new(rect: egui::Rect, pixels_per_point: f32) -> PixelGrid {
        PixelGrid {
            origin: (rect.min.to_vec2() * pixels_per_point).round(),
            pixels_per_point,
        }
    }

    /// The screen point (points) of view pixel coordinates (x, y).
    pub fn screen(&self, x: f64, y: f64) -> egui::Pos2 {
        (self.origin + egui::vec2(x as f32, y as f32)).to_pos2() / self.pixels_per_point
    }

    /// The view pixel coordinates under screen point `pos`.
    pub fn pixel(&self, pos: egui::Pos2) -> (f64, f64) {
        let p = pos.to_vec2() * self.pixels_per_point - self.origin;
        (f64::from(p.x), f64::from(p.y))
    }
}

/// How viewports are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    One,
    /// Two side by side.
    OneByTwo,
    /// Two stacked.
    TwoByOne,
    TwoByTwo,
    /// Axial, coronal and sagittal through one point, with crosshairs.
    Mpr,
}

impl Layout {
    /// (rows, columns) of the grid.
    pub fn grid(self) -> (usize, usize) {
        match self {
            Layout::One => (1, 1),
            Layout::OneByTwo => (1, 2),
            Layout::TwoByOne => (2, 1),
            Layout::TwoByTwo => (2, 2),
            Layout::Mpr => (1, 3),
        }
    }
}

/// The measurement tool the primary button uses in the viewport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Drag: window/level.
    WindowLevel,
    /// Two clicks: a length.
    Length,
    /// Three clicks: the angle at the second.
    Angle,
    /// Four clicks: two lines (e.g. endplates); the angle between them.
    Cobb,
    /// Two clicks: the centre, then a corner of the ellipse's box.
    Ellipse,
    /// One click: the value at a point.
    Probe,
}

impl Tool {
    /// Clicks a measurement with this tool takes.
    pub fn clicks(self) -> usize {
        match self {
            Tool::WindowLevel => 0,
            Tool::Probe => 1,
            Tool::Length | Tool::Ellipse => 2,
            Tool::Angle => 3,
            Tool::Cobb => 4,
        }
    }
}

/// A small picture of a stack's middle slice for the study browser (None when it cannot be
/// decoded: the browser then shows text only).
pub fn thumbnail(stack: &Stack, size: u32) -> Option<egui::ColorImage> {
    let middle = stack.slices.get(stack.slices.len() / 2)?.clone();
    let g = &stack.geometry;
    let orientation = [
        g.row_direction[0],
        g.row_direction[1],
        g.row_direction[2],
        g.column_direction[0],
        g.column_direction[1],
        g.column_direction[2],
    ];
    let geometry = imaging::VolumeGeometry::from_slices(
        g.dims[0],
        g.dims[1],
        orientation,
        [g.spacing_mm[1], g.spacing_mm[0]],
        vec![middle.position_mm],
        Some(g.spacing_mm[2].max(1e-3)),
        g.frame_of_reference_uid.clone(),
    );
    let one = Stack {
        slices: vec![middle],
        geometry,
        ..stack.clone()
    };
    let volume = imaging::load_stack(&one, &imaging::LoadOptions::default(), &|_| {}).ok()?;
    if !volume.failed_slices.is_empty() {
        return None;
    }
    let info = VolumeInfo::new(&volume).ok()?;
    let s = imaging::stats::voxel_range(&volume);
    let voi = Voi::from_slice(&one.slices[0])
        .unwrap_or_else(|| Voi::spanning(s.min_modality, s.max_modality));
    let mut display = crate::render::Display::new(voi);
    display.monochrome1 = one.format.photometric_interpretation == "MONOCHROME1";
    let mut view = crate::render::SliceView::fit(&info, Plane::Axial, None, size, size).ok()?;
    // The slice's own axes, whatever its orientation.
    view.right = g.row_direction;
    view.down = g.column_direction;
    view.center_mm = crate::viewer::volume_centre(&info).to_array();
    let extent = (g.dims[0] as f64 * g.spacing_mm[0]).max(g.dims[1] as f64 * g.spacing_mm[1]);
    view.pixel_mm = extent / f64::from(size);
    let image = crate::render::cpu::render(&info, &volume.voxels, &view, &display).ok()?;
    let level = |v: u16| v.min(255) as u8;
    if let Some(colour) = &image.colour {
        let rgb: Vec<u8> = colour.iter().flatten().map(|v| level(*v)).collect();
        return Some(egui::ColorImage::from_rgb(
            [size as usize, size as usize],
            &rgb,
        ));
    }
    let grey: Vec<u8> = image.pixels.iter().map(|v| level(*v)).collect();
    Some(egui::ColorImage::from_gray(
        [size as usize, size as usize],
        &grey,
    ))
}

/// The workstation.
pub struct OverreadApp {
    gpu: Option<Gpu>,
    gpu_error: Option<String>,
    scan_rx: Option<Receiver<ScanMsg>>,
    /// Set to stop the scan under way (its DICOMweb retrieval): another scan, the case closed
    /// or the login ended.
    scan_cancel: Option<Arc<AtomicBool>>,
    /// Set to stop the scan of files under way (another scan replaces it); the retrieval's
    /// own flag is `scan_cancel` (signing out stops a retrieval, not a scan of local files).
    scan_stop: Option<Arc<AtomicBool>>,
    patients: Vec<Patient>,
    /// Studies retrieved over DICOMweb, kept until the app closes.
    downloads: Vec<tempfile::TempDir>,
    dicomweb_token: Option<String>,
    /// Where `dicomweb_token` may go: the case server's origin for the worklist's login (a
    /// study URL elsewhere is asked without it); `None` for a token the starting program
    /// handed over with the URLs it opens.
    dicomweb_token_origin: Option<String>,
    /// Every stack opened, with its slice count, in order.
    opened: Vec<(String, usize)>,
    /// The case server's worklist.
    pub worklist: worklist::WorklistState,
    /// Browser thumbnails by stack id, as they arrive from a background thread.
    thumbnails: std::collections::HashMap<String, egui::TextureHandle>,
    thumb_rx: Option<Receiver<(String, egui::ColorImage)>>,
    /// The stacks the viewports show (each cell names one); a stack no cell shows is closed.
    opens: Vec<Open>,
    cells: Vec<Cell>,
    /// Scrolling one series moves the others of the same frame of reference to the same
    /// patient position.
    pub link_series: bool,
    /// The cell keys and tools act on.
    active: usize,
    layout: Layout,
    /// The MPR point every plane passes through (patient mm).
    cursor_mm: DVec3,
    /// The MPR views as they were left for another layout, with their stack's id: going back
    /// to MPR on that stack gives them again (turned planes, pans, zooms), not new ones.
    mpr_left: Option<(String, Vec<Viewport>)>,
    /// The cell whose crosshair centre is being dragged.
    dragging_cursor: Option<usize>,
    /// A measurement handle being dragged: (cell, measurement id, handle).
    dragging_handle: Option<(usize, u64, usize)>,
    /// An MPR rotation handle being dragged: (cell, the patient point it was at last).
    rotating: Option<(usize, DVec3)>,
    bindings: Vec<(egui::Key, Action)>,
    show_bindings: bool,
    tool: Tool,
    /// Points clicked so far for the measurement being made.
    pending_points: Vec<DVec3>,
    /// Where they were clicked: the cell, and its plane (normal, position). A click in
    /// another cell or on another plane starts the measurement again, so one measurement
    /// never joins points of two series or two slices.
    pending_plane: Option<(usize, DVec3, f64)>,
    measurements: Vec<Measurement>,
    /// Each measurement's last value: by id, with the shape and the volume it is for.
    values: std::sync::Mutex<std::collections::HashMap<u64, CachedValue>>,
    next_measurement_id: u64,
    /// Cine running since (frames are counted from this instant).
    cine: Option<Instant>,
    cine_fps: f64,
    status: String,
    /// Files the last scan left out and why (shown in the browser).
    skipped: Vec<String>,
    /// What was wrong in the settings file (shown in the toolbar and the key table).
    settings_problems: Vec<String>,
    /// A scripted reading being played (benchmark), and where to write its results.
    script: Option<(script::Script, Option<PathBuf>)>,
    /// The report panel.
    pub report: report_panel::ReportState,
}

impl std::fmt::Debug for OverreadApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverreadApp")
            .field("viewport", &self.viewport())
            .field("layout", &self.layout)
            .field("measurements", &self.measurements)
            .finish_non_exhaustive()
    }
}

impl OverreadApp {
    /// The app with the user's settings file.
    pub fn new(cc: &eframe::CreationContext<'_>, paths: Vec<PathBuf>) -> OverreadApp {
        let (settings, problem) = settings::Settings::load();
        let mut app = Self::with_settings(cc, paths, &settings);
        if let Some(p) = problem {
            app.settings_problems.insert(0, p);
        }
        app
    }

    /// The app with the given settings (tests use this: no file, no environment).
    pub fn with_settings(
        cc: &eframe::CreationContext<'_>,
        paths: Vec<PathBuf>,
        settings: &settings::Settings,
    ) -> OverreadApp {
        let (gpu, gpu_error) = match &cc.wgpu_render_state {
            Some(rs) => {
                let ctx = GpuContext::from_device(
                    rs.device.clone(),
                    rs.queue.clone(),
                    rs.adapter.get_info(),
                );
                let renderer = Renderer::new(&ctx);
                (
                    Some(Gpu {
                        ctx,
                        renderer,
                        target_format: rs.target_format,
                    }),
                    None,
                )
            }
            None => (
                None,
                Some("no wgpu device: images cannot be drawn".to_string()),
            ),
        };
        // Kept apart from the status line (which the scan overwrites at once) and shown until
        // the app closes: a key that does not work must say why.
        let mut problems = Vec::new();
        let canonical = |name: &str| egui::Key::from_name(name).map(|k| k.name().to_string());
        let named =
            crate::viewer::bindings::with_overrides(default_bindings(), &settings.keys, canonical)
                // An unknown action is said and the defaults used (with no overrides, nothing
                // can fail).
                .or_else(|e| {
                    problems.push(e);
                    crate::viewer::bindings::with_overrides(
                        default_bindings(),
                        &Default::default(),
                        canonical,
                    )
                })
                .unwrap_or_else(|_| crate::viewer::bindings::Applied {
                    bindings: Vec::new(),
                    problems: Vec::new(),
                });
        problems.extend(named.problems);
        let bindings: Vec<(egui::Key, Action)> = named
            .bindings
            .iter()
            .filter_map(|(name, action)| Some((egui::Key::from_name(name)?, *action)))
            .collect();
        let push_to_talk = match settings.push_to_talk() {
            Ok((key, button)) => {
                // Held to dictate, it would also do what the key table or the mouse gives it.
                if let Some(key) = key
                    && let Some((_, action)) = bindings.iter().find(|(k, _)| *k == key)
                {
                    problems.push(format!(
                        "settings: the dictation key {} also does {}",
                        key.name(),
                        action.name()
                    ));
                }
                if button == Some(egui::PointerButton::Middle) {
                    problems.push(
                        "settings: the middle button dictates and also pans the image".into(),
                    );
                }
                report_panel::PushToTalk::new(key, button)
            }
            Err(e) => {
                problems.push(format!("settings: {e}"));
                report_panel::PushToTalk::default()
            }
        };
        let mut app = OverreadApp {
            gpu,
            gpu_error,
            scan_rx: None,
            scan_cancel: None,
            scan_stop: None,
            patients: Vec::new(),
            downloads: Vec::new(),
            dicomweb_token: settings.dicomweb_token.clone(),
            dicomweb_token_origin: None,
            opened: Vec::new(),
            worklist: worklist::WorklistState::default(),
            thumbnails: std::collections::HashMap::new(),
            thumb_rx: None,
            opens: Vec::new(),
            link_series: true,
            cells: Vec::new(),
            active: 0,
            layout: Layout::One,
            cursor_mm: DVec3::ZERO,
            mpr_left: None,
            dragging_cursor: None,
            dragging_handle: None,
            rotating: None,
            bindings,
            show_bindings: false,
            tool: Tool::WindowLevel,
            pending_points: Vec::new(),
            pending_plane: None,
            values: Default::default(),
            measurements: Vec::new(),
            next_measurement_id: 1,
            cine: None,
            cine_fps: settings
                .cine_fps
                .filter(|f| *f > 0.0)
                .unwrap_or(10.0)
                .clamp(1.0, 60.0),
            status: problems.last().cloned().unwrap_or_default(),
            skipped: Vec::new(),
            settings_problems: problems,
            script: None,
            report: report_panel::ReportState::new(report_panel::PanelSettings {
                model: settings.dictation_model.clone(),
                input_device: settings.audio_device.clone(),
                output_device: settings.audio_output.clone(),
                unsure_below: settings.unsure_below,
                macros_dir: settings.macros_dir.clone(),
                push_to_talk,
                drafts_dir: Some(
                    settings
                        .drafts_dir
                        .clone()
                        .unwrap_or_else(crate::report::kept::default_dir),
                ),
            }),
        };
        app.report.setup = report_panel::SignSetup {
            server: settings.case_server.clone(),
            server_ca: settings.case_server_ca.clone(),
            key_file: settings.signing_key.clone(),
            outbox: settings.outbox.clone(),
            token: None,
            token_user: None,
        };
        app.report.form.user = settings.user.clone().unwrap_or_default();
        if !paths.is_empty() {
            app.scan(paths, cc.egui_ctx.clone());
        }
        app
    }

    /// Stop the scan under way, its DICOMweb retrieval with it (its files, in a temporary
    /// folder, go), and forget it.
    pub(crate) fn cancel_scan(&mut self) {
        self.stop_retrieval();
        if let Some(stop) = self.scan_stop.take() {
            stop.store(true, Ordering::Relaxed);
        }
        self.scan_rx = None;
    }

    /// Stop the DICOMweb retrieval under way (the login it used ended); a scan of files on
    /// this machine goes on.
    pub(crate) fn stop_retrieval(&mut self) {
        if let Some(cancel) = self.scan_cancel.take() {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Scan `paths` in the background; the largest stack opens when the scan is done. A
    /// DICOMweb study URL among them is retrieved first ([`crate::cases::dicomweb`]); its first
    /// file (the middle of the largest series) is shown as soon as it arrives.
    pub fn scan(&mut self, paths: Vec<PathBuf>, ctx: egui::Context) {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.status = format!("scanning {} path(s)", paths.len());
        let token = self
            .dicomweb_token
            .clone()
            .map(|t| (self.dicomweb_token_origin.clone(), t));
        // The last scan's retrieval stops: its images are no longer wanted.
        self.cancel_scan();
        let cancel = Arc::new(AtomicBool::new(false));
        self.scan_cancel = Some(cancel.clone());
        let stop = Arc::new(AtomicBool::new(false));
        self.scan_stop = Some(stop.clone());
        std::thread::spawn(move || {
            let msg = match retrieve_urls(paths, token, &cancel, &tx, &ctx) {
                Ok((paths, folders)) => {
                    // Given up when another scan replaced this one: nobody waits for it.
                    let Some(report) = imaging::scan_until(&paths, &stop) else {
                        return;
                    };
                    // Paths may hold patient names (a CD's folders often do): the log gets
                    // the count, the screen the files.
                    if !report.warnings.is_empty() {
                        tracing::warn!("scan: {} file(s) left out", report.warnings.len());
                    }
                    let skipped = report
                        .warnings
                        .iter()
                        .map(|w| format!("{}: {}", w.path.display(), w.message))
                        .collect();
                    ScanMsg::Done(imaging::group(&report.instances), folders, skipped)
                }
                Err(e) => ScanMsg::Failed(e),
            };
            let _ = tx.send(msg);
            ctx.request_repaint();
        });
        self.scan_rx = Some(rx);
    }

    /// Render the browser's thumbnails on a background thread, one stack at a time.
    fn start_thumbnails(&mut self, ctx: &egui::Context) {
        let stacks: Vec<Stack> = self
            .patients
            .iter()
            .flat_map(|p| p.stacks().cloned().collect::<Vec<_>>())
            .collect();
        let (tx, rx) = crossbeam_channel::unbounded();
        let repaint = ctx.clone();
        std::thread::spawn(move || {
            for stack in stacks {
                if let Some(image) = thumbnail(&stack, 96)
                    && tx.send((stack.id.clone(), image)).is_err()
                {
                    return;
                }
                repaint.request_repaint();
            }
        });
        self.thumb_rx = Some(rx);
    }

    /// The stacks that have a browser thumbnail.
    pub fn thumbnail_ids(&self) -> Vec<&str> {
        self.thumbnails.keys().map(String::as_str).collect()
    }

    /// No thumbnail is still being made (the browser's rows have their final size).
    pub fn thumbnails_done(&self) -> bool {
        self.thumb_rx.is_none()
    }

    /// Open a stack by id (as `overread scan` prints it) and start loading it: every viewport
    /// shows it (a study opened, a case opened), in the current layout.
    pub fn open_stack(&mut self, id: &str, ctx: &egui::Context) {
        self.open_stack_with(id, ctx, false);
    }

    /// Open a stack into the active viewport (a series double-clicked in the browser or dropped
    /// on a viewport): in a grid of several viewports the others keep their series; otherwise
    /// as [`OverreadApp::open_stack`].
    pub fn open_stack_here(&mut self, id: &str, ctx: &egui::Context) {
        self.open_stack_with(id, ctx, true);
    }

    fn open_stack_with(&mut self, id: &str, ctx: &egui::Context, here: bool) {
        let Some(stack) = imaging::find_stack(&self.patients, id).cloned() else {
            self.status = format!("no stack {id}");
            return;
        };
        let into_active =
            here && matches!(
                self.layout,
                Layout::OneByTwo | Layout::TwoByOne | Layout::TwoByTwo
            ) && self.active < self.cells.len();
        // The same stack already open (the same frames of the same files) is shown again, not
        // loaded twice; a preview of it (one slice of a study still arriving) is not the same.
        let same = |o: &Open| {
            o.stack.id == stack.id
                && o.stack.slices.len() == stack.slices.len()
                && o.stack
                    .slices
                    .iter()
                    .zip(&stack.slices)
                    .all(|(a, b)| a.path == b.path && a.frame == b.frame)
        };
        let volume = match self.opens.iter().position(same) {
            Some(v) => v,
            None => match self.load(stack.clone(), ctx) {
                Some(open) => {
                    self.opens.push(open);
                    self.opens.len() - 1
                }
                None => return,
            },
        };
        let o = &self.opens[volume];
        let header_window = o
            .stack
            .slices
            .get(o.stack.slices.len() / 2)
            .and_then(Voi::from_slice);
        // Without a window in the file: a provisional full 12-bit range until the data's
        // range is known.
        let voi = header_window
            .or_else(|| window_without_the_files(&self.patients, o))
            .unwrap_or_else(provisional_window);
        let mut viewport = Viewport::new(&o.info, crate::viewer::native_plane(&o.info), voi);
        viewport.display.monochrome1 = o.stack.format.photometric_interpretation == "MONOCHROME1";
        self.pending_points.clear();
        if into_active {
            let active = self.active;
            self.cine = None;
            self.free_target(active);
            self.cells[active] = Cell::new(viewport, volume);
            self.drop_unused_volumes();
            // Indices were renumbered by the drop.
            let volume = self.cells[active].volume;
            // Shown where the other series are, when it shares their frame of reference.
            for other in 0..self.cells.len() {
                if other != active && self.cells[other].volume != volume {
                    self.follow_scroll(other);
                    break;
                }
            }
            return;
        }
        // The report is about the study this stack belongs to (a series put beside it for
        // comparison does not change that).
        let studies = self
            .patients
            .iter()
            .flat_map(|p| &p.studies)
            .filter(|st| {
                st.series
                    .iter()
                    .any(|se| se.stacks.iter().any(|k| k.id == stack.id))
            })
            .map(|st| st.uid.clone())
            .collect();
        self.report.show_studies(studies);
        self.cursor_mm = DVec3::from(viewport.center_mm);
        self.set_cells(vec![(viewport, volume)]);
        let layout = self.layout;
        self.layout = Layout::One;
        self.set_layout(layout);
    }

    /// Close every series and viewport, and the browser's study (another case is being
    /// opened: until it arrives the browser lists nothing of the last one, whose series a
    /// double-click would otherwise open beside the new case's report).
    pub(crate) fn close_all(&mut self) {
        self.cancel_scan();
        self.set_cells(Vec::new());
        self.opens.clear();
        self.replace_study(Vec::new());
        self.skipped.clear();
    }

    /// The browser's study replaced by `patients` (a scan's result). Measurements name stacks
    /// by ids each scan numbers again from "1": one whose stack's frames are among the new
    /// stacks' (the same study scanned again, or a DICOMweb study's first file, shown as a
    /// preview, arriving whole) goes with the stack that holds them now; any other is
    /// forgotten (kept, it would be drawn, valued and offered to the report on the next
    /// patient's images). Values, shapes half drawn, drags under way, the MPR views left and
    /// the browser's thumbnails (keyed by the same ids) are forgotten.
    fn replace_study(&mut self, patients: Vec<Patient>) {
        let holding = |frame: &(String, u32)| {
            patients
                .iter()
                .flat_map(Patient::stacks)
                .find(|st| {
                    st.slices
                        .iter()
                        .any(|sl| sl.sop_instance_uid == frame.0 && sl.frame == frame.1)
                })
                .map(|st| st.id.clone())
        };
        let old = std::mem::take(&mut self.measurements);
        self.measurements = old
            .into_iter()
            .filter_map(|mut m| {
                let frame = first_frame_of(&self.patients, m.stack_id.as_deref()?)?;
                m.stack_id = Some(holding(&frame)?);
                Some(m)
            })
            .collect();
        self.patients = patients;
        self.forget_study_views();
    }

    /// Forget what names the last scan's stacks by id and is not a measurement: values,
    /// shapes half drawn and drags under way, the MPR views left, the browser's thumbnails.
    fn forget_study_views(&mut self) {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.pending_points.clear();
        self.pending_plane = None;
        self.dragging_cursor = None;
        self.dragging_handle = None;
        self.rotating = None;
        self.mpr_left = None;
        self.thumbnails.clear();
        self.thumb_rx = None;
    }

    /// Start loading `stack` on a background thread: its volume, with a GPU texture filled
    /// slice by slice as they arrive.
    fn load(&mut self, stack: Stack, ctx: &egui::Context) -> Option<Open> {
        let id = stack.id.clone();
        self.opened.push((stack.id.clone(), stack.slices.len()));
        let rescale = imaging::decode::rescale_policy(&stack);
        let info = match VolumeInfo::from_parts(
            &stack.geometry,
            &rescale,
            // As `VolumeInfo::new`: colour voxels (a signed palette's too) are never signed.
            stack.format.signed && !stack.format.is_colour(),
            stack.format.is_colour(),
        ) {
            // As the loaded volume will say: what is padding, for measurements.
            Ok(i) => Arc::new(VolumeInfo {
                padding: imaging::decode::stack_padding(&stack),
                ..i
            }),
            Err(e) => {
                self.status = format!("stack {id} cannot be shown: {e}");
                return None;
            }
        };
        let texture = self.gpu.as_ref().and_then(|g| {
            VolumeTexture::new(&g.ctx, &g.renderer, info.clone())
                .map(Arc::new)
                .map_err(|e| self.status = format!("stack {id}: {e}"))
                .ok()
        });
        let upload = self
            .gpu
            .as_ref()
            .map(|g| g.ctx.clone())
            .zip(texture.clone());
        let (tx, rx) = crossbeam_channel::unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let options = imaging::LoadOptions {
            cancel: Some(cancel.clone()),
        };
        let to_load = stack.clone();
        let repaint = ctx.clone();
        let header_window = stack
            .slices
            .get(stack.slices.len() / 2)
            .and_then(Voi::from_slice);
        let auto_window = header_window.is_none() && !is_ct(&self.patients, &stack);
        std::thread::spawn(move || {
            let written = std::sync::atomic::AtomicUsize::new(0);
            let result = imaging::load_stack(&to_load, &options, &|ev| {
                if let Some((gpu, texture)) = &upload {
                    match ev.pixels {
                        SlicePixels::U16(p) => texture.write_slice_values(gpu, ev.k, p),
                        SlicePixels::I16(p) => texture.write_slice_values(gpu, ev.k, p),
                        SlicePixels::Rgb(p) => texture.write_slice_rgb(gpu, ev.k, p),
                    }
                    // Submitted every 32 slices: a fast load would otherwise hold the staging
                    // copy of every slice until the frame loop's next submission.
                    if written.fetch_add(1, Ordering::Relaxed) % 32 == 31 {
                        gpu.flush_writes();
                    }
                }
                let _ = tx.send(LoadMsg::Slice);
                repaint.request_repaint();
            });
            let done = result.map_err(|e| e.to_string()).map(|volume| {
                let range = auto_window.then(|| {
                    let s = imaging::stats::voxel_range(&volume);
                    (s.min_modality, s.max_modality)
                });
                (volume, range)
            });
            let _ = tx.send(LoadMsg::Done(Box::new(done)));
            repaint.request_repaint();
        });
        Some(Open {
            stack,
            info,
            texture,
            volume: None,
            loaded: 0,
            rx,
            cancel,
            error: None,
            range: None,
        })
    }

    /// Free cell `i`'s view target.
    fn free_target(&mut self, i: usize) {
        if let Some(c) = self.cells.get_mut(i) {
            c.target = None;
            c.screen = None;
        }
    }

    /// Close the volumes no cell shows (their loads are cancelled, their memory freed).
    fn drop_unused_volumes(&mut self) {
        let mut map = vec![None; self.opens.len()];
        let mut kept = 0;
        for (v, slot) in map.iter_mut().enumerate() {
            if self.cells.iter().any(|c| c.volume == v) {
                *slot = Some(kept);
                kept += 1;
            }
        }
        let mut index = 0;
        self.opens.retain(|_| {
            let keep = map[index].is_some();
            index += 1;
            keep
        });
        for c in &mut self.cells {
            c.volume = map[c.volume].unwrap_or(0);
        }
    }

    /// The volume cell `i` shows.
    fn open_at(&self, i: usize) -> Option<&Open> {
        self.opens.get(self.cells.get(i)?.volume)
    }

    /// The volume of the active cell.
    fn active_open(&self) -> Option<&Open> {
        self.open_at(self.active)
    }

    /// Replace the cells, each with its viewport and volume (freeing the old cells' textures
    /// and the volumes no cell shows any more).
    fn set_cells(&mut self, viewports: Vec<(Viewport, usize)>) {
        // Cine plays the series it was started on: another layout, case or series stops it.
        self.cine = None;
        self.cells = viewports
            .into_iter()
            .map(|(v, volume)| Cell::new(v, volume))
            .collect();
        self.active = 0;
        self.drop_unused_volumes();
    }

    /// Arrange the viewports: grids repeat the active viewport; MPR shows axial, coronal and
    /// sagittal through the active viewport's centre.
    pub fn set_layout(&mut self, layout: Layout) {
        let (Some(active), Some(info), Some(volume)) = (
            self.viewport().cloned(),
            self.active_open().map(|o| o.info.clone()),
            self.cells.get(self.active).map(|c| c.volume),
        ) else {
            self.layout = layout;
            return;
        };
        if layout == self.layout && !self.cells.is_empty() {
            return;
        }
        let (rows, cols) = layout.grid();
        let stack_id = self.opens.get(volume).map(|o| o.stack.id.clone());
        if self.layout == Layout::Mpr && layout != Layout::Mpr {
            self.mpr_left = stack_id
                .clone()
                .map(|id| (id, self.cells.iter().map(|c| c.viewport.clone()).collect()));
        }
        let viewports = if layout == Layout::Mpr {
            match self.mpr_left.take() {
                // Back to the MPR of this stack: its views as they were, through the point
                // they crossed at moved to where the active view now lies (scrolled meanwhile),
                // in its window.
                Some((id, kept)) if Some(&id) == stack_id.as_ref() && kept.len() == 3 => {
                    let n = active.normal();
                    let old = self.cursor_mm;
                    self.cursor_mm = old + n * (active.position_mm() - old.dot(n));
                    kept.into_iter()
                        .map(|mut v| {
                            v.display = active.display.clone();
                            v.set_position(self.cursor_mm.dot(v.normal()));
                            (v, volume)
                        })
                        .collect()
                }
                _ => {
                    self.cursor_mm = DVec3::from(active.center_mm);
                    [Plane::Axial, Plane::Coronal, Plane::Sagittal]
                        .into_iter()
                        .map(|plane| {
                            let mut v = active.with_plane(&info, plane);
                            v.center_mm = self.cursor_mm.to_array();
                            (v, volume)
                        })
                        .collect()
                }
            }
        } else if layout == Layout::One || self.layout == Layout::Mpr {
            vec![(active, volume); rows * cols]
        } else {
            // From one grid to another: a viewport that still has a place keeps its series
            // (and view); new places show the active one's, and the active one takes the last
            // place when its own is gone.
            let n = rows * cols;
            let mut cells: Vec<(Viewport, usize)> = (0..n)
                .map(|k| match self.cells.get(k) {
                    Some(c) => (c.viewport.clone(), c.volume),
                    None => (active.clone(), volume),
                })
                .collect();
            if self.active >= n
                && let Some(last) = cells.last_mut()
            {
                *last = (active, volume);
            }
            cells
        };
        // The active viewport stays active where it now is (keys and presets keep acting on
        // the series the reader was working on).
        let active_after =
            if matches!(layout, Layout::Mpr | Layout::One) || self.layout == Layout::Mpr {
                0
            } else {
                self.active.min(rows * cols - 1)
            };
        self.layout = layout;
        self.set_cells(viewports);
        self.active = active_after;
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The viewports on screen, in layout order.
    pub fn viewports(&self) -> Vec<&Viewport> {
        self.cells.iter().map(|c| &c.viewport).collect()
    }

    /// Make cell `i` the one keys and tools act on.
    pub fn set_active(&mut self, i: usize) {
        if i < self.cells.len() {
            self.active = i;
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    /// The MPR point (patient mm).
    pub fn cursor_mm(&self) -> DVec3 {
        self.cursor_mm
    }

    /// Where cell `i`'s view pixels lie on screen (as last drawn).
    pub fn cell_grid(&self, i: usize) -> Option<PixelGrid> {
        let c = self.cells.get(i)?;
        Some(PixelGrid::new(c.rect?, c.ppp))
    }

    /// Where cell `i` was drawn (screen points).
    pub fn cell_rect(&self, i: usize) -> Option<egui::Rect> {
        self.cells.get(i).and_then(|c| c.rect)
    }

    /// The frame cell `i` shows (at its last drawn size).
    pub fn cell_view(&self, i: usize) -> Option<crate::render::SliceView> {
        let (c, o) = (self.cells.get(i)?, self.open_at(i)?);
        let rect = c.rect?;
        let size = c
            .target
            .as_ref()
            .map(ViewTarget::size)
            .unwrap_or([rect.width().max(1.0) as u32, rect.height().max(1.0) as u32]);
        Some(c.viewport.slice_view(&o.info, size[0], size[1]))
    }

    /// After cell `from` moved along its normal: in MPR, move the MPR point with it and every
    /// other plane through the point; otherwise, with linking on, move the cells showing
    /// other series of the same frame of reference, in parallel planes, to the same patient
    /// position (the nearest slice of theirs when the plane is their own).
    fn follow_scroll(&mut self, from: usize) {
        if let Some(c) = self.cells.get_mut(from) {
            c.beyond_link = false;
        }
        if self.layout != Layout::Mpr {
            self.link_from(from);
            return;
        }
        let Some(c) = self.cells.get(from) else {
            return;
        };
        let n = c.viewport.normal();
        let pos = c.viewport.position_mm();
        self.cursor_mm += n * (pos - self.cursor_mm.dot(n));
        self.move_planes_to_cursor(Some(from));
    }

    fn link_from(&mut self, from: usize) {
        let Some(source) = self.cells.get(from) else {
            return;
        };
        let (n, position, volume) = (
            source.viewport.normal(),
            source.viewport.position_mm(),
            source.volume,
        );
        let frame = self
            .opens
            .get(volume)
            .and_then(|o| o.info.geometry.frame_of_reference_uid.clone());
        if !self.link_series || frame.is_none() {
            return;
        }
        for c in &mut self.cells {
            let Some(o) = self.opens.get(c.volume) else {
                continue;
            };
            if c.volume == volume
                || o.info.geometry.frame_of_reference_uid != frame
                || c.viewport.normal().dot(n).abs() < 0.999
            {
                continue;
            }
            c.beyond_link = !c.viewport.follow_plane(&o.info, n, position);
            c.dirty = true;
        }
    }

    /// Put every plane (but `except`) through the MPR point, keeping each one's pan.
    fn move_planes_to_cursor(&mut self, except: Option<usize>) {
        let cursor = self.cursor_mm;
        for (i, c) in self.cells.iter_mut().enumerate() {
            if Some(i) == except {
                continue;
            }
            c.viewport.set_position(cursor.dot(c.viewport.normal()));
            c.dirty = true;
        }
    }

    /// Where MPR cell `i` shows its rotation handles (screen points): two on each other
    /// plane's reference line, a third of the cell from the crosshair; with the cell whose
    /// plane that line is.
    pub fn rotation_handles(&self, i: usize) -> Vec<(usize, egui::Pos2)> {
        if self.layout != Layout::Mpr {
            return Vec::new();
        }
        let (Some(view), Some(rect), Some(grid), Some(cell)) = (
            self.cell_view(i),
            self.cell_rect(i),
            self.cell_grid(i),
            self.cells.get(i),
        ) else {
            return Vec::new();
        };
        let ((x, y), _) = crate::viewer::measure::project(&view, self.cursor_mm.to_array());
        let centre = grid.screen(x, y);
        let reach = rect.width().min(rect.height()) / 3.0;
        let n = cell.viewport.normal();
        let mut out = Vec::new();
        for (j, other) in self.cells.iter().enumerate() {
            let d = n.cross(other.viewport.normal());
            if j == i || d.length() < 1e-6 {
                continue;
            }
            let dir = egui::vec2(
                d.dot(DVec3::from(view.right)) as f32,
                d.dot(DVec3::from(view.down)) as f32,
            )
            .normalized();
            out.push((j, centre + dir * reach));
            out.push((j, centre - dir * reach));
        }
        out
    }

    /// Oblique MPR: turn every plane but cell `about`'s around its normal through the MPR
    /// point, by the angle from `from` to `to` (patient points in that cell's plane). The
    /// planes stay orthogonal and keep crossing at the MPR point.
    pub fn rotate_mpr(&mut self, about: usize, from: DVec3, to: DVec3) {
        let Some(n) = self.cells.get(about).map(|c| c.viewport.normal()) else {
            return;
        };
        let c = self.cursor_mm;
        let flat = |p: DVec3| {
            let v = p - c;
            v - n * v.dot(n)
        };
        let (a, b) = (flat(from), flat(to));
        if a.length() < 1e-6 || b.length() < 1e-6 {
            return;
        }
        let angle = a.cross(b).dot(n).atan2(a.dot(b));
        let turn = glam::DQuat::from_axis_angle(n, angle);
        for (j, cell) in self.cells.iter_mut().enumerate() {
            if j == about {
                continue;
            }
            // The image keeps its scale as its plane turns: the fit of a turned plane (the
            // volume's extent across it) changes with the angle, and the zoom makes up for it
            // (else the image shrinks and grows under the hand, to 71% at 45 degrees).
            let size = cell.target.as_ref().map(ViewTarget::size);
            let info = self.opens.get(cell.volume).map(|o| &o.info);
            let pixel_mm = |v: &Viewport| {
                size.zip(info)
                    .map(|([w, h], info)| v.slice_view(info, w, h).pixel_mm)
            };
            let before = pixel_mm(&cell.viewport);
            cell.viewport.plane = cell.viewport.plane.turned(turn);
            let normal = cell.viewport.normal();
            cell.viewport.set_position(c.dot(normal));
            if let (Some(before), Some(after)) = (before, pixel_mm(&cell.viewport))
                && before > 0.0
            {
                cell.viewport.zoom = (cell.viewport.zoom * after / before).clamp(0.1, 50.0);
            }
            cell.dirty = true;
        }
    }

    /// Set the MPR point (e.g. by dragging the crosshair in cell `from`).
    /// The point is kept within the volume's box (along its own axes, voxel centres): a
    /// crosshair dragged into the margin would take the other planes off the volume, and
    /// their views would go blank.
    pub fn set_cursor(&mut self, p: DVec3, from: Option<usize>) {
        let volume = from.unwrap_or(self.active);
        self.cursor_mm = match self.open_at(volume) {
            Some(o) => within_volume(&o.info, p),
            None => p,
        };
        self.move_planes_to_cursor(from);
    }

    /// The patients the browser lists.
    pub fn patients(&self) -> &[Patient] {
        &self.patients
    }

    /// The active viewport (for tests and panels).
    pub fn viewport(&self) -> Option<&Viewport> {
        self.cells.get(self.active).map(|c| &c.viewport)
    }

    /// The geometry of the active cell's volume.
    pub fn volume_info(&self) -> Option<&VolumeInfo> {
        self.active_open().map(|o| o.info.as_ref())
    }

    /// The geometry of cell `i`'s volume.
    pub fn cell_volume_info(&self, i: usize) -> Option<&VolumeInfo> {
        self.open_at(i).map(|o| o.info.as_ref())
    }

    /// The stack id cell `i` shows.
    pub fn cell_stack(&self, i: usize) -> Option<&str> {
        self.open_at(i).map(|o| o.stack.id.as_str())
    }

    /// (slices arrived, slices in the stack) of the active cell's stack while it loads.
    pub fn load_progress(&self) -> Option<(usize, usize)> {
        self.load_progress_of(self.active)
    }

    /// (slices arrived, slices in the stack) of cell `i`'s stack while it loads; `None` once
    /// the load has ended, whether every slice arrived or not.
    pub fn load_progress_of(&self, i: usize) -> Option<(usize, usize)> {
        self.open_at(i)
            .filter(|o| o.volume.is_none() && o.error.is_none())
            .map(|o| (o.loaded, o.info.dims[2]))
    }

    /// True when the open stack is completely loaded.
    /// Every stack opened so far (id, slices), in order: a study from a URL shows a one-slice
    /// preview before its full stack.
    pub fn opened_stacks(&self) -> &[(String, usize)] {
        &self.opened
    }

    /// Every open stack has finished loading (or failed, with its error in the status).
    pub fn loaded(&self) -> bool {
        !self.opens.is_empty()
            && self
                .opens
                .iter()
                .all(|o| o.volume.is_some() || o.error.is_some())
    }

    /// The voxels of the open stack, once completely loaded.
    /// The active cell's volume, once loaded.
    pub fn loaded_volume(&self) -> Option<&Volume> {
        self.active_open().and_then(|o| o.volume.as_deref())
    }

    pub fn loaded_voxels(&self) -> Option<&imaging::Voxels> {
        self.active_open()
            .and_then(|o| o.volume.as_ref())
            .map(|v| &v.voxels)
    }

    pub fn measurements(&self) -> &[Measurement] {
        &self.measurements
    }

    /// A measurement's value, from the voxels of the stack it was made on (while it is open).
    /// What `m`'s lengths are in: mm where its series gives Pixel Spacing (and the shape is
    /// placed, see `calibrated`), mm at the detector where it gives only Imager Pixel Spacing,
    /// else pixels; mm while its series is not open (nothing is shown then).
    pub fn measurement_units(&self, m: &Measurement) -> LengthUnits {
        let Some(o) = self
            .opens
            .iter()
            .find(|o| Some(&o.stack.id) == m.stack_id.as_ref())
        else {
            // Its series closed: as its stack's geometry says (a closed series' lengths are
            // valued only where they are patient mm, `measurement_value`).
            return match self.stack_geometry(m) {
                Some(g) if !g.pixel_spacing_known => LengthUnits::Pixels,
                Some(g) if g.spacing_at_detector => LengthUnits::DetectorMillimetres,
                _ => LengthUnits::Millimetres,
            };
        };
        if !calibrated(&o.info, &m.shape) {
            LengthUnits::Pixels
        } else if o.info.geometry.spacing_at_detector {
            LengthUnits::DetectorMillimetres
        } else {
            LengthUnits::Millimetres
        }
    }

    pub fn measurement_value(&self, m: &Measurement) -> Option<Value> {
        // Lengths and angles are geometry: known at once, while their series loads and after
        // it was closed (another phase shown in its place), where they are patient mm or
        // angles between patient directions; a closed series whose lengths would be pixels
        // or mm at the detector (only its open stack tells which shapes are) gives none.
        if let Some(v) = m.geometric_value() {
            let open = self
                .opens
                .iter()
                .any(|o| Some(&o.stack.id) == m.stack_id.as_ref());
            let angle = matches!(v, Value::AngleDeg(_));
            if open || angle || self.stack_geometry(m).is_some_and(in_patient_mm) {
                return Some(v);
            }
        }
        let o = self
            .opens
            .iter()
            .find(|o| Some(&o.stack.id) == m.stack_id.as_ref())?;
        let v = o.volume.as_ref()?;
        // Computed once per shape and volume, not on every frame and in every place that
        // shows it (a region's statistics resample its whole area).
        let mut cache = self
            .values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The cached volume is held weakly: its allocation, and so its address, stays taken
        // while the entry lives, so another volume can never pass for it.
        if let Some((shape, volume, value)) = cache.get(&m.id)
            && *shape == m.shape
            && std::sync::Weak::ptr_eq(volume, &Arc::downgrade(v))
        {
            return Some(value.clone());
        }
        let value = m.value(&o.info, &v.voxels);
        cache.insert(m.id, (m.shape.clone(), Arc::downgrade(v), value.clone()));
        Some(value)
    }

    /// The frame the active viewport shows now (at its last drawn size).
    pub fn current_view(&self) -> Option<crate::render::SliceView> {
        self.cell_view(self.active)
    }

    /// Ids of the measurements the current view cuts (and so draws).
    pub fn visible_measurements(&self) -> Vec<u64> {
        let Some(view) = self.current_view() else {
            return Vec::new();
        };
        self.measurements_on(self.active, &view)
            .map(|m| m.id)
            .collect()
    }

    /// The measurements cell `i`'s `view` cuts (within half a scroll step or half the slab,
    /// in its stack's space): drawn there, and grabbed there by their handles.
    fn measurements_on<'a>(
        &'a self,
        i: usize,
        view: &'a crate::render::SliceView,
    ) -> impl Iterator<Item = &'a Measurement> + 'a {
        let space = self.cells.get(i).zip(self.open_at(i)).map(|(c, o)| {
            (
                c.viewport.cut_tolerance_mm(&o.info),
                &o.info.geometry.frame_of_reference_uid,
                o.stack.id.as_str(),
            )
        });
        self.measurements.iter().filter(move |m| {
            space.is_some_and(|(tolerance, frame, stack)| {
                crate::viewer::measure::visible_on(m, view, tolerance, frame, stack)
            })
        })
    }

    /// The Series Instance UID of the active cell's stack.
    pub fn open_series_uid(&self) -> Option<String> {
        self.series_uid_of(&self.active_open()?.stack.id)
    }

    /// The Series Instance UID of stack `id`.
    pub fn series_uid_of(&self, id: &str) -> Option<String> {
        self.patients
            .iter()
            .flat_map(|p| &p.studies)
            .flat_map(|st| &st.series)
            .find(|se| se.stacks.iter().any(|k| k.id == id))
            .map(|se| se.uid.clone())
    }

    /// A measurement's label as viewport `cell` shows it: its value in its units; a probe's
    /// or region's shown on a slab (its value is of the voxels of its own plane, not of the
    /// slab's projection), or read on another series of the frame of reference than the cell
    /// shows, says so.
    pub fn measurement_label(&self, m: &Measurement, cell: usize) -> Option<String> {
        let v = self.measurement_value(m)?;
        let hu = self
            .opens
            .iter()
            .find(|o| Some(&o.stack.id) == m.stack_id.as_ref())
            .is_some_and(|o| is_ct(&self.patients, &o.stack));
        let mut label = panels::format_value(&v, self.measurement_units(m), hu);
        let sampled = matches!(v, Value::Point(_) | Value::Region { .. });
        // Values are read from the voxels on the measurement's own plane: on a slab (a MIP
        // of a vessel, say) that is not what the pixel under it shows.
        if sampled
            && self
                .cells
                .get(cell)
                .is_some_and(|c| c.viewport.slab_mm > 0.0)
        {
            label += " (its plane, not the slab)";
        }
        // A probe or region drawn on another series of the frame of reference (the arterial
        // phase's, shown over the venous) carries that series' values: said, so they are
        // never read as this image's.
        if sampled
            && let Some(made_on) = m.stack_id.as_deref()
            && let Some(shown) = self.cell_stack(cell)
            && shown != made_on
        {
            label += &format!("\nvalues of {}", self.series_name_of(made_on));
        }
        Some(label)
    }

    /// How the screen names the series of stack `id`: "series 3 (ARTERIAL)", its number
    /// and description where it has them, and which of its volumes where it has several
    /// ("series 5 (DWI), b=1000 dir=...").
    pub fn series_name_of(&self, id: &str) -> String {
        let series = self
            .patients
            .iter()
            .flat_map(|p| &p.studies)
            .flat_map(|st| &st.series)
            .find(|se| se.stacks.iter().any(|k| k.id == id));
        series_name(series, id)
    }

    /// What a measurement was made on, as a report links it: the way back to the image.
    pub fn measurement_source(&self, m: &Measurement) -> crate::report::MeasurementSource {
        crate::report::MeasurementSource {
            viewer_id: Some(m.id),
            kind: match m.shape {
                Shape::Length { .. } => "length",
                Shape::Angle { .. } => "angle",
                Shape::Cobb { .. } => "cobb",
                Shape::Ellipse { .. } => "area",
                Shape::Probe { .. } => "value",
            }
            .into(),
            // The series it was drawn on, whichever viewport is active now.
            series_instance_uid: m.stack_id.as_deref().and_then(|id| self.series_uid_of(id)),
            frame_of_reference_uid: m.frame_of_reference_uid.clone(),
            // Points in the patient only where the series places its images there: a
            // radiograph's (no position or orientation) are in its own plane, which the
            // signed report must not give as patient coordinates.
            points_mm: if self.measured_in_patient_space(m) {
                m.shape.points()
            } else {
                Vec::new()
            },
        }
    }

    /// The stack `m` was made on places its images in patient space (position and
    /// orientation in its files, spacing in the patient: a radiograph's Imager Pixel Spacing
    /// is at the detector, magnified). A closed stack is looked up in the browser's study.
    fn measured_in_patient_space(&self, m: &Measurement) -> bool {
        let open = self
            .opens
            .iter()
            .find(|o| Some(&o.stack.id) == m.stack_id.as_ref());
        match open {
            Some(o) => o.info.geometry.trusted && !o.info.geometry.spacing_at_detector,
            // Its series closed: as its stack's geometry says; unknown, not.
            None => self.stack_geometry(m).is_some_and(in_patient_mm),
        }
    }

    /// The geometry of the stack `m` was made on, from the browser's study (open or not).
    fn stack_geometry(&self, m: &Measurement) -> Option<&imaging::VolumeGeometry> {
        let id = m.stack_id.as_deref()?;
        self.patients
            .iter()
            .flat_map(Patient::stacks)
            .find(|st| st.id == id)
            .map(|st| &st.geometry)
    }

    /// Show measurement `id` again: the plane it lies in (the active view's when it does, else
    /// the standard plane closest to it), through its centre; in MPR every plane crosses it.
    pub fn go_to_measurement(&mut self, id: u64) -> Result<(), String> {
        let m = self
            .measurements
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .ok_or_else(|| format!("measurement #{id} was deleted"))?;
        // Shown in the active view when its series has the measurement's frame of reference,
        // else in the first view that has.
        let fits = |app: &Self, i: usize| {
            app.open_at(i).is_some_and(|o| {
                crate::viewer::measure::same_space(
                    &m,
                    &o.info.geometry.frame_of_reference_uid,
                    &o.stack.id,
                )
            })
        };
        if !fits(self, self.active) {
            self.active = (0..self.cells.len())
                .find(|&i| fits(self, i))
                .ok_or_else(|| {
                    format!("measurement #{id} was made on a series that is not open")
                })?;
        }
        // The handles span the shape's plane (an ellipse's centre and axis ends).
        let points: Vec<DVec3> = m.shape.handles().into_iter().map(DVec3::from).collect();
        let centre = points.iter().copied().sum::<DVec3>() / points.len().max(1) as f64;
        // How far the shape leaves a plane with normal `n` through its centre.
        let off_plane = |n: DVec3| {
            points
                .iter()
                .map(|p| (*p - centre).dot(n).abs())
                .fold(0.0, f64::max)
        };
        if self.layout != Layout::Mpr
            && let Some(v) = self.viewport()
            && off_plane(v.normal()) > 0.5
        {
            // The stack's own plane first: a measurement made on its slices goes back there.
            let native = self
                .open_at(self.active)
                .map(|o| crate::viewer::native_plane(&o.info));
            let best = native
                .into_iter()
                .chain([Plane::Axial, Plane::Coronal, Plane::Sagittal])
                .min_by(|a, b| off_plane(a.normal()).total_cmp(&off_plane(b.normal())))
                .unwrap_or(Plane::Axial);
            self.show_plane(best, centre.dot(best.normal()));
        }
        // Every view of the measurement's frame of reference goes through its centre (in MPR,
        // that is the MPR point); views of other frames stay where they are.
        self.cursor_mm = centre;
        for c in &mut self.cells {
            let Some(o) = self.opens.get(c.volume) else {
                continue;
            };
            if !crate::viewer::measure::same_space(
                &m,
                &o.info.geometry.frame_of_reference_uid,
                &o.stack.id,
            ) {
                continue;
            }
            c.viewport
                .set_position_within(&o.info, centre.dot(c.viewport.normal()));
            c.beyond_link = false;
            c.dirty = true;
        }
        Ok(())
    }

    /// Switch the viewport to `plane` through `position_mm` along its normal (keeps W/L).
    pub fn show_plane(&mut self, plane: Plane, position_mm: f64) {
        let Some(volume) = self.cells.get(self.active).map(|c| c.volume) else {
            return;
        };
        let (Some(c), Some(o)) = (self.cells.get_mut(self.active), self.opens.get(volume)) else {
            return;
        };
        c.dirty = true;
        c.viewport = c.viewport.with_plane(&o.info, plane);
        c.viewport.set_position(position_mm);
    }

    /// Where the active viewport was drawn (screen points), for tests that click in it.
    pub fn viewport_rect(&self) -> Option<egui::Rect> {
        self.cell_rect(self.active)
    }

    /// The key bindings in force (after the settings file).
    pub fn bindings(&self) -> &[(egui::Key, Action)] {
        &self.bindings
    }

    /// Cine frame rate (frames per second) and whether cine runs.
    pub fn cine(&self) -> (f64, bool) {
        (self.cine_fps, self.cine.is_some())
    }

    pub fn tool(&self) -> Tool {
        self.tool
    }

    pub fn status(&self) -> &str {
        &self.status
    }

    /// What was wrong in the settings file.
    pub fn settings_problems(&self) -> &[String] {
        &self.settings_problems
    }

    pub fn gpu_error(&self) -> Option<&str> {
        self.gpu_error.as_deref()
    }

    /// Drain what background threads sent.
    fn poll_background(&mut self, ctx: &egui::Context) {
        while let Some(rx) = &self.scan_rx {
            match rx.try_recv() {
                Ok(ScanMsg::Preview(patients)) => {
                    if self.opens.is_empty()
                        && let Some(id) = imaging::default_stack(&patients).map(|s| s.id.clone())
                    {
                        self.patients = patients;
                        self.open_stack(&id, ctx);
                        self.status = "first image; the rest of the study is arriving".into();
                    }
                }
                Ok(ScanMsg::Failed(e)) => {
                    self.status = e;
                    self.scan_rx = None;
                }
                Ok(ScanMsg::Done(patients, folders, skipped)) => {
                    self.downloads.extend(folders);
                    self.scan_rx = None;
                    self.skipped = skipped;
                    if imaging::default_stack(&patients).is_none() && !self.opens.is_empty() {
                        // Nothing to show in what was dropped: the study being read stays,
                        // with its browser and its patient in the corners.
                        self.status = "no images found there; the open study stays".into();
                        continue;
                    }
                    self.replace_study(patients);
                    let stacks: usize = self.patients.iter().map(|p| p.stacks().count()).sum();
                    self.status = format!("{stacks} stack(s) found");
                    if !self.skipped.is_empty() {
                        self.status += &format!(
                            "; {} file(s) left out (listed in the browser)",
                            self.skipped.len()
                        );
                    }
                    self.start_thumbnails(ctx);
                    let first = imaging::default_stack(&self.patients).map(|s| s.id.clone());
                    match first {
                        Some(id) => self.open_stack(&id, ctx),
                        None => self.status = "no images found".into(),
                    }
                }
                Err(TryRecvError::Disconnected) => self.scan_rx = None,
                Err(TryRecvError::Empty) => break,
            }
        }
        while let Some(rx) = &self.thumb_rx {
            match rx.try_recv() {
                Ok((id, image)) => {
                    let handle = ctx.load_texture(
                        format!("thumb {id}"),
                        image,
                        egui::TextureOptions::LINEAR,
                    );
                    self.thumbnails.insert(id, handle);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.thumb_rx = None,
            }
        }
        // At most a budget of slices per frame, so a fast load never stalls the frame loop.
        let started = Instant::now();
        for (index, open) in self.opens.iter_mut().enumerate() {
            while started.elapsed().as_millis() < 8 {
                match open.rx.try_recv() {
                    Ok(LoadMsg::Slice) => {
                        open.loaded += 1;
                        for c in self.cells.iter_mut().filter(|c| c.volume == index) {
                            c.dirty = true;
                        }
                    }
                    Ok(LoadMsg::Done(done)) => match *done {
                        Ok((volume, range)) => {
                            // The table again, with the rescales the files really carry
                            // and the slices that failed; the voxels on the GPU stay.
                            if let Ok(info) = VolumeInfo::new(&volume)
                                && info.slices != open.info.slices
                            {
                                open.info = Arc::new(info);
                                if let Some(g) = &self.gpu {
                                    let texture = match &open.texture {
                                        // (Another shape of volume than the texture's
                                        // cannot come of one load; if it did, all again.)
                                        Some(t) => {
                                            t.with_table(&g.ctx, open.info.clone()).or_else(|_| {
                                                VolumeTexture::upload(&g.ctx, &g.renderer, &volume)
                                            })
                                        }
                                        None => VolumeTexture::upload(&g.ctx, &g.renderer, &volume),
                                    };
                                    open.texture = match texture {
                                        Ok(t) => Some(Arc::new(t)),
                                        Err(e) => {
                                            self.status = format!(
                                                "stack {} cannot be shown: {e}",
                                                open.stack.id
                                            );
                                            None
                                        }
                                    };
                                }
                            }
                            if let Some(f) = volume.failed_slices.first() {
                                self.status = format!(
                                    "{} of {} slices failed (slice {}: {})",
                                    volume.failed_slices.len(),
                                    open.info.dims[2],
                                    f.k + 1,
                                    f.message
                                );
                            }
                            open.range = range;
                            for c in self.cells.iter_mut().filter(|c| c.volume == index) {
                                // The data's range, unless the reader set a window meanwhile.
                                if let Some((lo, hi)) = range
                                    && c.viewport.display.voi == provisional_window()
                                {
                                    c.viewport.display.voi = Voi::spanning(lo, hi);
                                }
                                c.dirty = true;
                            }
                            open.volume = Some(Arc::new(volume));
                        }
                        Err(e) => {
                            open.error = Some(e.clone());
                            self.status = format!("loading failed: {e}");
                        }
                    },
                    Err(_) => break,
                }
            }
            if open.volume.is_none() && open.error.is_none() {
                ctx.request_repaint();
            }
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::ShowBindings => {
                self.show_bindings = !self.show_bindings;
                return;
            }
            Action::Reset
                if self.layout == Layout::Mpr
                    && self.cells.iter().any(|c| {
                        matches!(c.viewport.plane, Plane::Oblique(_) | Plane::Turned { .. })
                    }) =>
            {
                // Oblique MPR back to axial, coronal and sagittal through the same point.
                let standard = [Plane::Axial, Plane::Coronal, Plane::Sagittal];
                let volume = self.cells.get(self.active).map_or(0, |c| c.volume);
                if let Some(o) = self.opens.get(volume) {
                    for (c, plane) in self.cells.iter_mut().zip(standard) {
                        let mut v = c.viewport.with_plane(&o.info, plane);
                        v.center_mm = self.cursor_mm.to_array();
                        c.viewport = v;
                        c.dirty = true;
                    }
                }
                return;
            }
            Action::ToggleCine => {
                self.cine = match self.cine {
                    Some(_) => None,
                    None => Some(Instant::now()),
                };
                return;
            }
            Action::CineFaster | Action::CineSlower => {
                let f = if action == Action::CineFaster {
                    1.25
                } else {
                    0.8
                };
                self.cine_fps = (self.cine_fps * f).clamp(1.0, 60.0);
                return;
            }
            Action::LayoutOne => return self.set_layout(Layout::One),
            Action::LayoutOneByTwo => return self.set_layout(Layout::OneByTwo),
            Action::LayoutTwoByTwo => return self.set_layout(Layout::TwoByTwo),
            Action::LayoutMpr => return self.set_layout(Layout::Mpr),
            _ => {}
        }
        let active = self.active;
        let Some(volume) = self.cells.get(active).map(|c| c.volume) else {
            return;
        };
        let (Some(cell), Some(o)) = (self.cells.get_mut(active), self.opens.get(volume)) else {
            return;
        };
        let target_size = cell.target.as_ref().map(ViewTarget::size);
        let v = &mut cell.viewport;
        // A window change needs only the display pass (it is shared below).
        cell.dirty = !matches!(
            action,
            Action::Preset(_) | Action::FileWindow | Action::Invert
        );
        let info = &o.info;
        let mut window_changed = false;
        match action {
            Action::NextSlice => v.scroll(info, 1.0),
            Action::PreviousSlice => v.scroll(info, -1.0),
            Action::NextPage => v.scroll(info, 10.0),
            Action::PreviousPage => v.scroll(info, -10.0),
            Action::FirstSlice => v.scroll_to_end(info, false),
            Action::LastSlice => v.scroll_to_end(info, true),
            Action::Preset(n) => {
                if let Some((_, c, w)) =
                    crate::render::voi::PRESETS.get(usize::from(n).saturating_sub(1))
                {
                    v.display.voi = Voi::linear(*c, *w);
                    window_changed = true;
                }
            }
            Action::FileWindow => {
                // The file's windows in turn (a CT's brain, then its bone window ...), then
                // its VOI LUT; without any, the window the series opened with.
                let middle = o.stack.slices.get(o.stack.slices.len() / 2);
                let choices = middle.map(Voi::file_choices).unwrap_or_default();
                let next = match choices.iter().position(|c| *c == v.display.voi) {
                    Some(i) => choices.get((i + 1) % choices.len()).cloned(),
                    None => choices.first().cloned(),
                };
                if let Some(voi) = next.or_else(|| window_without_the_files(&self.patients, o)) {
                    v.display.voi = voi;
                    window_changed = true;
                }
            }
            Action::Invert => {
                v.display.invert = !v.display.invert;
                window_changed = true;
            }
            Action::RotateClockwise => v.rotate_clockwise(),
            Action::FlipHorizontal => v.flip_horizontal = !v.flip_horizontal,
            Action::FlipVertical => v.flip_vertical = !v.flip_vertical,
            Action::Fit => v.fit(info),
            Action::OneToOne => {
                if let Some(size) = target_size {
                    let now = v.slice_view(info, size[0], size[1]);
                    v.zoom /= crate::viewer::magnification(info, &now);
                }
            }
            Action::Reset => v.reset(info),
            Action::PlaneAxial
            | Action::PlaneCoronal
            | Action::PlaneSagittal
            | Action::PlaneNative => {
                let plane = match action {
                    Action::PlaneAxial => Plane::Axial,
                    Action::PlaneCoronal => Plane::Coronal,
                    Action::PlaneSagittal => Plane::Sagittal,
                    _ => crate::viewer::native_plane(info),
                };
                *v = v.with_plane(info, plane);
            }
            _ => {}
        }
        if window_changed {
            // Every view of the series shares its window.
            let display = v.display.clone();
            self.share_display(&display);
        }
        self.follow_scroll(active);
    }

    /// Give every cell of the active cell's series the same window, inversion and depth
    /// (another series keeps its own: a CT window means nothing on an MR).
    fn share_display(&mut self, display: &crate::render::Display) {
        let volume = self.cells.get(self.active).map(|c| c.volume);
        for c in self.cells.iter_mut().filter(|c| Some(c.volume) == volume) {
            c.viewport.display = display.clone();
            c.display_dirty = true;
        }
    }

    /// Delete measurement `id` (and its remembered value).
    pub fn delete_measurement(&mut self, id: u64) {
        self.measurements.retain(|m| m.id != id);
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }

    /// Add a measurement made on the active cell's volume.
    fn add_measurement(&mut self, shape: Shape) {
        let open = self.active_open();
        let frame_of_reference_uid =
            open.and_then(|o| o.info.geometry.frame_of_reference_uid.clone());
        let stack_id = open.map(|o| o.stack.id.clone());
        self.measurements.push(Measurement {
            id: self.next_measurement_id,
            shape,
            frame_of_reference_uid,
            stack_id,
        });
        self.next_measurement_id += 1;
    }
}

/// The window of a series without one in its files, until its data's range is known: the
/// full 12-bit range.
fn provisional_window() -> Voi {
    Voi::linear(2048.0, 4096.0)
}

/// The rescale the stack's headers give, for the slice table before the voxels arrive.
/// Retrieve the DICOMweb study URLs among `paths` into temporary folders (see
/// [`crate::cases::dicomweb`]), sending a preview of the first file that lands; returns the
/// paths to scan and the folders to keep.
fn retrieve_urls(
    paths: Vec<PathBuf>,
    token: Option<(Option<String>, String)>,
    cancel: &AtomicBool,
    tx: &crossbeam_channel::Sender<ScanMsg>,
    ctx: &egui::Context,
) -> Result<(Vec<PathBuf>, Vec<tempfile::TempDir>), String> {
    use crate::cases::dicomweb::{DEFAULT_CONCURRENCY, DicomWebClient, StudyUrl};
    if !paths
        .iter()
        .any(|p| p.to_str().and_then(StudyUrl::parse).is_some())
    {
        return Ok((paths, Vec::new()));
    }
    let mut out = Vec::new();
    let mut folders = Vec::new();
    for path in paths {
        let Some(url) = path.to_str().and_then(StudyUrl::parse) else {
            out.push(path);
            continue;
        };
        let folder = tempfile::Builder::new()
            .prefix("overread-study-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let previewed = Arc::new(AtomicBool::new(false));
        let (preview_tx, repaint) = (tx.clone(), ctx.clone());
        let on_file = move |file: &std::path::Path| {
            if !previewed.swap(true, Ordering::Relaxed) {
                let report = imaging::scan(&[file.to_path_buf()]);
                let _ = preview_tx.send(ScanMsg::Preview(imaging::group(&report.instances)));
                repaint.request_repaint();
            }
        };
        crate::cases::net::block_on(async {
            let client = DicomWebClient::for_url(&url, token_for(&url, token.as_ref())).await?;
            let retrieval = client.download(&url, folder.path(), DEFAULT_CONCURRENCY, on_file);
            // Stopped (another scan, the case closed, the login ended): the requests in flight
            // are dropped with it, and so is what it wrote.
            let stopped = async {
                while !cancel.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                done = retrieval => done,
                () = stopped => Err(crate::cases::ClientError::Setup("stopped".into())),
            }
        })?
        .map_err(|e| format!("study {}: {e}", url.study_uid))?;
        out.push(folder.path().to_path_buf());
        folders.push(folder);
    }
    Ok((out, folders))
}

/// How the screen names `series` as shown by its stack `id`: "series 3 (ARTERIAL)", its
/// number and description where it has them, and which of its volumes where it has several
/// ("series 5 (DWI), b=1000 dir ..."); "another series" where it is not known.
pub(crate) fn series_name(series: Option<&imaging::series::Series>, id: &str) -> String {
    let number = series
        .and_then(|se| se.number)
        .map_or_else(|| "another series".to_string(), |n| format!("series {n}"));
    let named = match series.and_then(|se| se.description.as_deref()) {
        Some(d) if !d.trim().is_empty() => format!("{number} ({})", d.trim()),
        _ => number,
    };
    // Which of a series' volumes, where it has several (echo 1 read, echo 2 shown).
    let volume = series.and_then(|se| {
        let i = se.stacks.iter().position(|k| k.id == id)?;
        se.stack_labels().into_iter().nth(i)
    });
    match volume {
        Some(v) if !v.is_empty() => format!("{named}, {v}"),
        _ => named,
    }
}

/// The first frame (SOP Instance UID, frame) of stack `id` among `patients`: what a stack
/// is known by across scans, which number their stacks anew.
pub(crate) fn first_frame_of(patients: &[Patient], id: &str) -> Option<(String, u32)> {
    patients
        .iter()
        .flat_map(Patient::stacks)
        .find(|st| st.id == id)
        .and_then(first_frame)
}

/// A stack's first frame (SOP Instance UID, frame).
pub(crate) fn first_frame(stack: &Stack) -> Option<(String, u32)> {
    stack
        .slices
        .first()
        .map(|sl| (sl.sop_instance_uid.clone(), sl.frame))
}

/// A stack whose lengths are patient mm whatever the shape: placed (position and
/// orientation), Pixel Spacing given, not at the detector.
fn in_patient_mm(g: &imaging::VolumeGeometry) -> bool {
    g.trusted && g.pixel_spacing_known && !g.spacing_at_detector
}

/// `p` moved into the box the volume's voxel centres span, along the volume's own axes.
fn within_volume(info: &VolumeInfo, p: DVec3) -> DVec3 {
    let corners = info.corners_mm();
    let origin = DVec3::from(corners[0]);
    let mut q = origin;
    for axis in info.axes {
        let along = |c: &[f64; 3]| (DVec3::from(*c) - origin).dot(axis);
        let lo = corners.iter().map(along).fold(f64::INFINITY, f64::min);
        let hi = corners.iter().map(along).fold(f64::NEG_INFINITY, f64::max);
        q += axis * (p - origin).dot(axis).clamp(lo, hi);
    }
    q
}

/// The window of a series whose files give none: abdomen for CT; otherwise the data's full
/// range once it has loaded.
fn window_without_the_files(patients: &[Patient], o: &Open) -> Option<Voi> {
    Voi::preset("abdomen")
        .filter(|_| is_ct(patients, &o.stack))
        .or_else(|| o.range.map(|(lo, hi)| Voi::spanning(lo, hi)))
}

fn is_ct(patients: &[Patient], stack: &Stack) -> bool {
    patients.iter().any(|p| {
        p.studies.iter().any(|st| {
            st.series.iter().any(|se| {
                se.modality.as_deref() == Some("CT") && se.stacks.iter().any(|s| s.id == stack.id)
            })
        })
    })
}

impl eframe::App for OverreadApp {
    /// The panels' colour: the side panels leave their backgrounds to the clear
    /// ([`panels::unfilled`]).
    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        // An sRGB target encodes what it is given: give it the linear value (egui's own
        // shader does the same for its fills there).
        match &self.gpu {
            Some(g) if g.target_format.is_srgb() => egui::Rgba::from(visuals.panel_fill).to_array(),
            _ => visuals.panel_fill.to_normalized_gamma_f32(),
        }
    }

    /// The window closes: the unsigned draft is kept on disk first.
    fn on_exit(&mut self) {
        self.report
            .keep_draft_before_closing(Duration::from_secs(5));
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.poll_background(&ctx);
        self.poll_worklist(&ctx);
        self.handle_dropped_files(&ctx);
        self.handle_keys(&ctx);
        self.report.handle_push_to_talk(&ctx);
        self.advance_cine(&ctx);
        self.play_script(&ctx);
        panels::toolbar_ui(self, ui);
        panels::browser_ui(self, ui);
        report_panel::report_ui(self, ui);
        panels::measurements_ui(self, ui);
        panels::viewport_ui(self, ui);
        panels::bindings_ui(self, &ctx);
    }
}

impl OverreadApp {
    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if !dropped.is_empty() {
            // Files from elsewhere: the Case field can be edited again; the case's report stays
            // about its study, the dropped one offered in the signing area.
            self.report.leave_worklist_case();
            self.scan(dropped, ctx.clone());
        }
    }

    fn handle_keys(&mut self, ctx: &egui::Context) {
        if ctx.text_edit_focused() {
            return;
        }
        // Each press (a held key's repeats too) by the modifiers it came with: Ctrl, Cmd and
        // Alt with a key are the window's (egui's Ctrl+Plus zooms the whole interface) or the
        // system's, not a binding's; Shift may be part of the key ("?").
        let pressed: Vec<Action> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Key {
                        key,
                        pressed: true,
                        modifiers,
                        ..
                    } if !(modifiers.ctrl || modifiers.command || modifiers.alt) => Some(*key),
                    _ => None,
                })
                .flat_map(|key| {
                    self.bindings
                        .iter()
                        .filter(move |(k, _)| *k == key)
                        .map(|(_, a)| *a)
                })
                .collect()
        });
        for a in pressed {
            self.apply(a);
        }
    }

    fn play_script(&mut self, ctx: &egui::Context) {
        if self.script.is_none() || !self.loaded() {
            return;
        }
        ctx.request_repaint();
        let Some((script, _)) = &mut self.script else {
            return;
        };
        if script.warmup > 0 {
            script.warmup -= 1;
            return;
        }
        let step = script.frame();
        match step {
            Some(script::Step::Scroll) => {
                let before = self.viewport().map(Viewport::position_mm);
                self.apply(Action::NextSlice);
                if self.viewport().map(Viewport::position_mm) == before {
                    self.apply(Action::FirstSlice);
                }
            }
            Some(script::Step::Window(dx, dy)) => {
                if let Some(c) = self.cells.get_mut(self.active) {
                    c.viewport.drag_window(dx, dy);
                    let display = c.viewport.display.clone();
                    self.share_display(&display);
                }
            }
            Some(script::Step::Mpr) => self.set_layout(Layout::Mpr),
            Some(script::Step::Crosshair(dx, dz)) => {
                let p = self.cursor_mm + DVec3::new(dx, 0.0, dz);
                self.set_cursor(p, None);
            }
            Some(script::Step::Idle) => {}
            None => {
                if let Some((script, out)) = self.script.take() {
                    let adapter = self.gpu.as_ref().map(|g| g.ctx.describe());
                    script::finish(&script, out.as_ref(), ctx, adapter);
                }
            }
        }
    }

    fn advance_cine(&mut self, ctx: &egui::Context) {
        let Some(last) = self.cine else { return };
        let frames = (last.elapsed().as_secs_f64() * self.cine_fps).floor();
        if frames >= 1.0 {
            let active = self.active;
            let volume = self.cells.get(active).map_or(0, |c| c.volume);
            if let (Some(c), Some(o)) = (self.cells.get_mut(active), self.opens.get(volume)) {
                let v = &mut c.viewport;
                let before = v.position_mm();
                v.scroll(&o.info, frames);
                if (v.position_mm() - before).abs() < 1e-9 {
                    v.scroll_to_end(&o.info, false);
                }
                c.dirty = true;
            }
            self.follow_scroll(active);
            // The frames shown are taken off the clock, the fraction of the next one kept (a
            // restart at every frame ran slower than the rate shown); far behind (a stall),
            // start again from now.
            let next = last + Duration::from_secs_f64(frames / self.cine_fps);
            self.cine = Some(if next.elapsed() > Duration::from_secs(1) {
                Instant::now()
            } else {
                next
            });
        }
        ctx.request_repaint();
    }
}

/// The login token a retrieval from `url` may carry: the worklist's (`token`: the origin of
/// its case server, and the token) goes to that case server only, never to another host a
/// pasted URL names. (Whether it goes over the wire at all is `StudyUrl::may_carry_credentials`.)
fn token_for(
    url: &crate::cases::dicomweb::StudyUrl,
    token: Option<&(Option<String>, String)>,
) -> Option<String> {
    token
        .filter(|(origin, _)| origin.as_ref().is_none_or(|o| *o == url.origin()))
        .map(|(_, t)| t.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worklist's login token goes with a study URL of its own case server only: not to
    /// another host, another port or another scheme a pasted URL names.
    #[test]
    fn the_worklist_token_goes_to_its_case_server_only() {
        use crate::cases::dicomweb::{StudyUrl, origin_of};
        let server = "https://cases.example.org:8443";
        let login = (Some(origin_of(server)), "token".to_string());
        let study = |url: &str| StudyUrl::parse(url).unwrap();
        let on_it = study("https://cases.example.org:8443/cases/C-1/dicomweb/studies/1.2.3");
        assert_eq!(token_for(&on_it, Some(&login)), Some("token".into()));
        for elsewhere in [
            "https://pacs.example.org/dicomweb/studies/1.2.3",
            "https://cases.example.org/dicomweb/studies/1.2.3",
            "https://cases.example.org:9443/dicomweb/studies/1.2.3",
            "http://cases.example.org:8443/dicomweb/studies/1.2.3",
        ] {
            assert_eq!(
                token_for(&study(elsewhere), Some(&login)),
                None,
                "{elsewhere}"
            );
        }
        assert_eq!(token_for(&on_it, None), None);
    }

    /// A retrieval stopped (another scan, the case closed, the login ended) ends at once,
    /// its requests dropped: here against a server that accepts and never answers.
    #[test]
    fn a_stopped_retrieval_ends() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/dicomweb/studies/1.2.3",
            listener.local_addr().unwrap()
        );
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Relaxed);
        });
        let (tx, _rx) = crossbeam_channel::unbounded();
        let result = retrieve_urls(
            vec![PathBuf::from(url)],
            None,
            &cancel,
            &tx,
            &egui::Context::default(),
        );
        // The stop ended it (not the client's own wait between reads, which says otherwise).
        let err = result.err().unwrap_or_default();
        assert!(err.contains("stopped"), "{err}");
    }

    /// Frames without positions are stacked 1 mm apart for display only: a length within one
    /// frame is mm (Pixel Spacing is real), one across frames in a reformat is not; without
    /// Pixel Spacing nothing is, and with positions everything is.
    #[test]
    fn only_real_spacing_gives_millimetres() {
        use imaging::{RescalePolicy, VolumeGeometry};
        let info = |g: &VolumeGeometry| {
            VolumeInfo::from_parts(
                g,
                &RescalePolicy::Uniform(imaging::Rescale::IDENTITY),
                false,
                false,
            )
            .unwrap()
        };
        let within = Shape::Length {
            a: [1.0, 1.0, 2.0],
            b: [9.0, 5.0, 2.0],
        };
        let across = Shape::Length {
            a: [1.0, 1.0, 0.0],
            b: [1.0, 1.0, 9.0],
        };
        // An ellipse on a reformat: centred in one frame, reaching 0.3 of a frame each way.
        let ellipse_across = Shape::Ellipse {
            center: [4.0, 4.0, 4.0],
            semi_axis_1: [2.0, 0.0, 0.0],
            semi_axis_2: [0.0, 0.0, 0.3],
        };
        let unplaced = info(&VolumeGeometry::untrusted(16, 16, 10, Some([0.5, 0.5])));
        assert!(calibrated(&unplaced, &within));
        assert!(!calibrated(&unplaced, &across));
        assert!(!calibrated(&unplaced, &ellipse_across));
        let no_spacing = info(&VolumeGeometry::untrusted(16, 16, 10, None));
        assert!(!calibrated(&no_spacing, &within));
        let placed = info(&VolumeGeometry::from_slices(
            16,
            16,
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            [0.5, 0.5],
            (0..10).map(|k| [0.0, 0.0, 2.0 * f64::from(k)]).collect(),
            None,
            None,
        ));
        assert!(calibrated(&placed, &across));
    }

    /// The grid's first pixel is where egui puts the cell's paint callback (its corner rounded
    /// to whole pixels, `ViewportInPixels`), so a view pixel centre maps to the centre of the
    /// window pixel the image draws it in, and screen and pixel coordinates invert each other.
    #[test]
    fn the_pixel_grid_is_where_the_image_is_drawn() {
        for (min, ppp) in [
            ((431.5, 20.25), 1.0),
            ((431.3, 20.7), 2.0),
            ((10.0, 0.0), 1.5),
        ] {
            let rect =
                egui::Rect::from_min_size(egui::pos2(min.0, min.1), egui::vec2(300.0, 200.0));
            let grid = PixelGrid::new(rect, ppp);
            let egui_viewport =
                egui::epaint::ViewportInPixels::from_points(&rect, ppp, [4000, 4000]);
            // View pixel (0, 0)'s centre is window pixel (left, top)'s centre.
            let centre = grid.screen(0.5, 0.5);
            assert!((centre.x * ppp - (egui_viewport.left_px as f32 + 0.5)).abs() < 1e-4);
            assert!((centre.y * ppp - (egui_viewport.top_px as f32 + 0.5)).abs() < 1e-4);
            let (x, y) = grid.pixel(egui::pos2(500.0, 100.0));
            let back = grid.screen(x, y);
            assert!((back.x - 500.0).abs() < 1e-3 && (back.y - 100.0).abs() < 1e-3);
        }
    }
}
