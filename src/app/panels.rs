//! The panels of the window: toolbar, study browser, measurement list, the viewport (with its
//! overlays) and the key-binding table. Each `*_ui` function draws one panel.

use eframe::egui::{self, Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Vec2};
use glam::DVec3;

use super::{Layout, OverreadApp, PixelGrid, Tool};
use crate::render::ScreenDraw;
use crate::render::SliceView;
use crate::render::gpu::ViewTarget;
use crate::viewer::measure::{Shape, Value, project};

const OVERLAY: Color32 = Color32::from_rgb(255, 220, 120);
const MEASURE: Color32 = Color32::from_rgb(80, 220, 255);

/// A side or top panel's frame without its fill: the window is cleared to the panels' colour
/// (`OverreadApp::clear_color`), so the fill would only paint the same colour again. On a
/// software rasterizer (lavapipe: virtual desktops, machines without a GPU) every filled pixel
/// goes through egui's fragment shader, and the panels' fills were most of a frame's cost
/// (benches/README.md).
pub fn unfilled(ui: &egui::Ui) -> egui::Frame {
    egui::Frame::side_top_panel(ui.style()).fill(Color32::TRANSPARENT)
}

pub fn toolbar_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    egui::Panel::top("toolbar")
        .frame(unfilled(ui))
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                for (tool, label) in [
                    (Tool::WindowLevel, "W/L"),
                    (Tool::Length, "Length"),
                    (Tool::Angle, "Angle"),
                    (Tool::Cobb, "Cobb"),
                    (Tool::Ellipse, "Ellipse"),
                    (Tool::Probe, "Probe"),
                ] {
                    if ui.selectable_label(app.tool == tool, label).clicked() {
                        app.tool = tool;
                        app.pending_points.clear();
                    }
                }
                ui.separator();
                for (layout, label) in [
                    (Layout::One, "1x1"),
                    (Layout::OneByTwo, "1x2"),
                    (Layout::TwoByOne, "2x1"),
                    (Layout::TwoByTwo, "2x2"),
                    (Layout::Mpr, "MPR"),
                ] {
                    if ui.selectable_label(app.layout == layout, label).clicked() {
                        app.set_layout(layout);
                    }
                }
                if app.cells.len() > 1 && app.layout != Layout::Mpr {
                    ui.checkbox(&mut app.link_series, "Link")
                        .on_hover_text("Scroll the series of one frame of reference together");
                }
                ui.separator();
                slab_ui(app, ui);
                ui.separator();
                if ui.button("Keys (?)").clicked() {
                    app.show_bindings = !app.show_bindings;
                }
                if ui.selectable_label(app.report.open, "Report").clicked() {
                    app.report.open = !app.report.open;
                }
                ui.separator();
                if let Some(e) = &app.gpu_error {
                    ui.colored_label(Color32::RED, e);
                }
                if !app.settings_problems.is_empty() {
                    ui.colored_label(
                        Color32::from_rgb(255, 170, 60),
                        format!("settings: {} problem(s)", app.settings_problems.len()),
                    )
                    .on_hover_text(app.settings_problems.join("\n"));
                }
                ui.label(&app.status);
            });
        });
}

/// The active view's slab: thickness in mm (0: the plane alone) and how the slab is projected.
fn slab_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    use crate::render::SlabMode;
    let Some(cell) = app.cells.get_mut(app.active) else {
        return;
    };
    let v = &mut cell.viewport;
    let label = ui.label("Slab");
    let thickness = ui
        .add(
            egui::DragValue::new(&mut v.slab_mm)
                .range(0.0..=200.0)
                .speed(0.5)
                .max_decimals(1)
                .suffix(" mm"),
        )
        .labelled_by(label.id)
        .on_hover_text("Slab thickness of the active view (0: the plane alone)");
    let before = v.slab_mode;
    let name = |m: SlabMode| match m {
        SlabMode::Mip => "MIP",
        SlabMode::MinIp => "MinIP",
        SlabMode::Average => "Avg",
    };
    egui::ComboBox::from_id_salt("slab-mode")
        .selected_text(name(v.slab_mode))
        .width(64.0)
        .show_ui(ui, |ui| {
            for m in [SlabMode::Mip, SlabMode::MinIp, SlabMode::Average] {
                ui.selectable_value(&mut v.slab_mode, m, name(m));
            }
        })
        .response
        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ComboBox, true, "Slab projection"));
    if thickness.changed() || v.slab_mode != before {
        cell.dirty = true;
    }
}

pub fn browser_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    let mut open_id = None;
    egui::Panel::left("browser")
        .frame(unfilled(ui))
        .resizable(true)
        .default_size(300.0)
        .min_size(220.0)
        .show(ui, |ui| {
            super::worklist::worklist_ui(app, ui);
            ui.heading("Studies");
            if app.scan_rx.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("scanning");
                });
            }
            if !app.skipped.is_empty() {
                egui::CollapsingHeader::new(format!("Files left out ({})", app.skipped.len()))
                    .id_salt("skipped")
                    .show(ui, |ui| {
                        egui::ScrollArea::vertical()
                            .id_salt("skipped list")
                            .max_height(160.0)
                            .show(ui, |ui| {
                                for line in &app.skipped {
                                    ui.small(line);
                                }
                            });
                    });
            }
            egui::ScrollArea::vertical().show(ui, |ui| {
                for patient in &app.patients {
                    // The screen may show identity; logs may not. Two patients of one name
                    // (or two anonymised ones) are told apart by their record number and
                    // birth date.
                    ui.strong(patient.name.reveal());
                    let birth = patient.birth_date.reveal().trim();
                    ui.label(format!(
                        "ID {}{}",
                        patient.id.reveal(),
                        if birth.is_empty() {
                            String::new()
                        } else {
                            format!(", born {}", study_date(birth))
                        }
                    ));
                    for study in &patient.studies {
                        ui.label(format!(
                            "{} {}",
                            study.date.as_deref().unwrap_or("(no date)"),
                            study.description.as_deref().unwrap_or("")
                        ));
                        for series in &study.series {
                            let labels = series.stack_labels();
                            for (stack, label) in series.stacks.iter().zip(&labels) {
                                let open =
                                    app.active_open().is_some_and(|o| o.stack.id == stack.id);
                                let [w, h, n] = stack.geometry.dims;
                                let mut text = format!(
                                    "{} {} {} — {n} {}, {w}x{h}",
                                    series.number.map(|n| n.to_string()).unwrap_or_default(),
                                    series.modality.as_deref().unwrap_or("?"),
                                    series.description.as_deref().unwrap_or(""),
                                    if n == 1 { "image" } else { "images" },
                                );
                                // A series of several volumes says what tells each apart
                                // (echo, b-value, kernel, plane ...): else rows read alike.
                                if !label.is_empty() {
                                    text += &format!(" — {label}");
                                }
                                if open
                                    && let Some((done, total)) = app.load_progress()
                                    && done < total
                                {
                                    text += &format!(" (loading {done}/{total})");
                                }
                                // What the series' files could not give (an unreadable table,
                                // a mosaic left as tiles) and slices that look missing: marked.
                                // On hover, with the stack's geometry (tilt, uneven spacing).
                                let irregular = &stack.geometry.irregularity;
                                let mut hover = series.warnings.clone();
                                if !hover.is_empty() || irregular.missing_description().is_some() {
                                    text += " (warning)";
                                }
                                hover.extend(irregular.describe());
                                ui.horizontal(|ui| {
                                    if let Some(t) = app.thumbnails.get(&stack.id) {
                                        ui.image((t.id(), Vec2::splat(48.0)));
                                    }
                                    let mut row = ui.add(
                                        egui::Button::selectable(open, text)
                                            .sense(Sense::click_and_drag()),
                                    );
                                    if !hover.is_empty() {
                                        row = row.on_hover_text(hover.join("\n"));
                                    }
                                    // Dragged onto a viewport, it opens there.
                                    row.dnd_set_drag_payload(StackDrag {
                                        id: stack.id.clone(),
                                        first_frame: super::first_frame(stack),
                                    });
                                    if row.double_clicked() {
                                        open_id = Some(stack.id.clone());
                                    }
                                });
                            }
                        }
                    }
                }
            });
        });
    if let Some(id) = open_id {
        let ctx = ui.ctx().clone();
        app.open_stack_here(&id, &ctx);
    }
}

/// A series being dragged from the study browser: its stack id, and its first frame (SOP
/// Instance UID, frame), which must still be that stack's when it is dropped (a scan that
/// replaced the study meanwhile numbers other series with the same ids).
#[derive(Debug, Clone)]
struct StackDrag {
    id: String,
    first_frame: Option<(String, u32)>,
}

impl StackDrag {
    /// The stack id, where the browser's stack of that id is still the one dragged.
    fn still_in(&self, patients: &[imaging::series::Patient]) -> Option<&str> {
        let first = super::first_frame_of(patients, &self.id)?;
        (Some(first) == self.first_frame).then_some(self.id.as_str())
    }
}

pub fn measurements_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    let mut delete = None;
    egui::Panel::right("measurements")
        .frame(unfilled(ui))
        .resizable(true)
        .default_size(240.0)
        .min_size(180.0)
        .show(ui, |ui| {
            ui.heading("Measurements");
            for m in &app.measurements {
                ui.horizontal(|ui| {
                    // As the active viewport labels it (whose values over another series,
                    // of its own plane under a slab), on one line.
                    let text = match app.measurement_label(m, app.active) {
                        Some(label) => label.replace('\n', "; "),
                        None => "(loading)".into(),
                    };
                    ui.label(format!("#{} {text}", m.id));
                    if ui.small_button("x").clicked() {
                        delete = Some(m.id);
                    }
                });
            }
        });
    if let Some(id) = delete {
        app.delete_measurement(id);
    }
}

/// What a measurement's lengths and areas are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnits {
    /// No Pixel Spacing: pixels, and said so.
    Pixels,
    /// Pixel Spacing: mm in the patient.
    Millimetres,
    /// Only Imager Pixel Spacing (a radiograph): mm at the detector, larger than in the
    /// patient by the magnification, and said so.
    DetectorMillimetres,
}

/// The corner's window line: "W 400 L 40", with the VOI LUT Function where it is not LINEAR
/// (a sigmoid's or an exact window's numbers mean something else); "VOI LUT" under a table;
/// "Colour" for colour images, which no window applies to (PS3.3 C.11.2 is for grey).
pub fn window_line(window: Option<(f64, f64)>, voi: &crate::render::Voi, colour: bool) -> String {
    use crate::render::voi::VoiFunction;
    match window {
        _ if colour => "Colour".to_string(),
        Some((w, l)) => {
            let function = match voi {
                crate::render::Voi::Window {
                    function: VoiFunction::Sigmoid,
                    ..
                } => " (sigmoid)",
                crate::render::Voi::Window {
                    function: VoiFunction::LinearExact,
                    ..
                } => " (linear exact)",
                _ => "",
            };
            format!("W {} L {}{function}", sample(w), sample(l))
        }
        None => "VOI LUT".into(),
    }
}

/// A measurement's value as shown, its lengths and areas in `units`; a probe's or region's
/// values named HU where they are (`hu`: a CT's modality values, PS3.3 C.8.2.1.1.6),
/// otherwise the image's own units, unnamed. SD is the sample standard deviation (n - 1).
pub fn format_value(v: &Value, units: LengthUnits, hu: bool) -> String {
    let unit = if hu { " HU" } else { "" };
    let (len, area) = match units {
        LengthUnits::Millimetres => ("mm", "mm²"),
        LengthUnits::DetectorMillimetres => ("mm at detector", "mm² at detector"),
        LengthUnits::Pixels => ("px", "px²"),
    };
    match v {
        Value::LengthMm(mm) => format!("{mm:.1} {len}"),
        Value::AngleDeg(d) => format!("{d:.1}°"),
        Value::Region {
            area_mm2,
            mean,
            sd,
            min,
            max,
            samples,
            without_data,
        } => {
            // A small region's area to a tenth (3.1 mm², not 3), a large one's whole.
            let area_mm2 = if *area_mm2 < 100.0 {
                format!("{area_mm2:.1}")
            } else {
                format!("{area_mm2:.0}")
            };
            let stats = format!(
                "{area_mm2} {area} mean {mean:.1} SD {sd:.1} [{}, {}]{unit}",
                sample(*min),
                sample(*max)
            );
            // Statistics of part of the region only (beyond the volume, a gap, a slice that
            // failed): said, with how much of it they cover.
            if *without_data == 0 {
                stats
            } else if *samples == 0 {
                format!("{area_mm2} {area}: no data inside")
            } else {
                let covered = 100.0 * *samples as f64 / (*samples + *without_data) as f64;
                format!("{stats} (of {covered:.0}% of it: the rest has no data)")
            }
        }
        Value::Point(Some(v)) => format!("{}{unit}", sample(*v)),
        Value::Point(None) | Value::Colour(None) => "no data".into(),
        Value::Colour(Some([r, g, b])) => format!("RGB {r} {g} {b}"),
    }
}

/// A voxel's value as read: whole numbers (HU, most stored values) as they are, values of a
/// fractional rescale (SUV, quantitative maps) with the decimals their size needs ("2.46",
/// not "2").
fn sample(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn viewport_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    // No fill behind the viewports: each cell paints its own background only where no image
    // covers it (a software rasterizer shades every filled pixel, and a full-area fill under
    // the images cost as much as the images themselves). The gaps between cells are painted.
    egui::CentralPanel::default()
        .frame(egui::Frame::NONE)
        .show(ui, |ui| {
            let area = ui.available_rect_before_wrap();
            ui.allocate_rect(area, Sense::hover());
            // Only the part inside the window: in a window narrower than the side panels the
            // central panel lies (partly) past its edge, where egui clamps an image's paint
            // callback but would lay overlays and the pointer out on the whole cell.
            let area = area.intersect(ui.ctx().viewport_rect());
            if !area.is_positive() {
                for cell in &mut app.cells {
                    cell.rect = None;
                }
                return;
            }
            if app.cells.is_empty() || app.opens.is_empty() {
                ui.painter().rect_filled(area, 0.0, Color32::BLACK);
                ui.painter().text(
                    area.center(),
                    Align2::CENTER_CENTER,
                    "open a folder, a file or a DICOMDIR (drop it here)",
                    FontId::proportional(16.0),
                    Color32::GRAY,
                );
                return;
            }
            let (rows, cols) = app.layout.grid();
            let gap = 2.0;
            let w = (area.width() - gap * (cols as f32 - 1.0)) / cols as f32;
            let h = (area.height() - gap * (rows as f32 - 1.0)) / rows as f32;
            for c in 1..cols {
                let x = area.min.x + c as f32 * (w + gap) - gap;
                let gap_rect =
                    Rect::from_min_max(Pos2::new(x, area.min.y), Pos2::new(x + gap, area.max.y));
                ui.painter().rect_filled(gap_rect, 0.0, Color32::BLACK);
            }
            for r in 1..rows {
                let y = area.min.y + r as f32 * (h + gap) - gap;
                let gap_rect =
                    Rect::from_min_max(Pos2::new(area.min.x, y), Pos2::new(area.max.x, y + gap));
                ui.painter().rect_filled(gap_rect, 0.0, Color32::BLACK);
            }
            for i in 0..rows * cols {
                let (r, c) = (i / cols, i % cols);
                let min = area.min + Vec2::new(c as f32 * (w + gap), r as f32 * (h + gap));
                let rect = Rect::from_min_size(min, Vec2::new(w.max(1.0), h.max(1.0)));
                if i < app.cells.len() {
                    cell_ui(app, ui, i, rect);
                } else {
                    ui.painter().rect_filled(rect, 0.0, Color32::BLACK);
                }
            }
        });
}

/// Patient point under a screen position.
fn patient_of(grid: PixelGrid, view: &SliceView, pos: Pos2) -> DVec3 {
    let (x, y) = grid.pixel(pos);
    // `patient_at_pixel` counts pixel centres at whole numbers.
    view.patient_at_pixel(x - 0.5, y - 0.5)
}

fn cell_ui(app: &mut OverreadApp, ui: &mut egui::Ui, i: usize, rect: Rect) {
    // The image goes under everything else drawn in the cell; black where there is none yet.
    let background = ui.painter().add(egui::Shape::Noop);
    let image = cell_contents_ui(app, ui, i, rect);
    ui.painter().set(
        background,
        match image {
            Some(screen) => {
                eframe::egui_wgpu::Callback::new_paint_callback(rect, ViewportPaint(screen)).into()
            }
            None => egui::Shape::rect_filled(rect, 0.0, Color32::BLACK),
        },
    );
}

/// Cell `i`'s interaction and overlays; returns its image's display pass, when it has one.
fn cell_contents_ui(
    app: &mut OverreadApp,
    ui: &mut egui::Ui,
    i: usize,
    rect: Rect,
) -> Option<ScreenDraw> {
    let response = ui.interact(
        rect,
        ui.scope_id().with(("viewport", i)),
        Sense::click_and_drag(),
    );
    let ppp = ui.ctx().pixels_per_point();
    let grid = PixelGrid::new(rect, ppp);
    let size_px = viewport_pixels(ui.ctx(), rect);
    let info = app.open_at(i).map(|o| o.info.clone())?;
    app.cells[i].rect = Some(rect);
    app.cells[i].ppp = ppp;
    // A series dropped here from the browser opens in this viewport.
    if let Some(dropped) = response.dnd_release_payload::<StackDrag>() {
        match dropped.still_in(&app.patients) {
            Some(id) => {
                app.active = i;
                let ctx = ui.ctx().clone();
                app.open_stack_here(id, &ctx);
                return None;
            }
            None => {
                app.status = "the study changed while the series was dragged: not opened".into();
            }
        }
    }
    if response.is_pointer_button_down_on()
        || response.clicked()
        || response.hovered() && ui.input(|inp| inp.pointer.any_pressed())
    {
        app.active = i;
    }
    let view_now = app.cells[i]
        .viewport
        .slice_view(&info, size_px[0], size_px[1]);

    // Wheel: scroll; ctrl+wheel: zoom.
    if response.hovered() {
        let (wheel_lines, zoom) = ui.input(|inp| {
            let lines: f32 = inp
                .raw
                .events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::MouseWheel {
                        unit,
                        delta,
                        modifiers,
                        ..
                    } if !modifiers.ctrl && !modifiers.command => Some(match unit {
                        egui::MouseWheelUnit::Point => delta.y / 40.0,
                        egui::MouseWheelUnit::Line => delta.y,
                        egui::MouseWheelUnit::Page => delta.y * 10.0,
                    }),
                    _ => None,
                })
                .sum();
            (lines, inp.zoom_delta())
        });
        let cell = &mut app.cells[i];
        if wheel_lines != 0.0 {
            let steps = cell.wheel.add(f64::from(wheel_lines));
            if steps != 0.0 {
                cell.viewport.scroll(&info, -steps);
                cell.dirty = true;
                app.follow_scroll(i);
            }
        }
        if zoom != 1.0 {
            // About the pointer: the patient point under it stays under it.
            let pointer = ui.input(|inp| inp.pointer.hover_pos());
            let cell = &mut app.cells[i];
            cell.viewport.zoom = (cell.viewport.zoom * f64::from(zoom)).clamp(0.1, 50.0);
            if let Some(pos) = pointer {
                let before = patient_of(grid, &view_now, pos);
                let view = cell.viewport.slice_view(&info, size_px[0], size_px[1]);
                let after = patient_of(grid, &view, pos);
                // In the plane only: a scroll in the same frame moved it along its normal.
                let n = cell.viewport.normal();
                let shift = before - after;
                let c = DVec3::from(cell.viewport.center_mm) + (shift - n * shift.dot(n));
                cell.viewport.center_mm = c.to_array();
            }
            cell.dirty = true;
        }
    }

    // Drags: the MPR crosshair centre, pan, scroll, window/level.
    let cursor_screen = {
        let ((x, y), _) = project(&view_now, app.cursor_mm.to_array());
        grid.screen(x, y)
    };
    if response.drag_started_by(egui::PointerButton::Primary)
        && app.layout == Layout::Mpr
        && let Some(p) = response.interact_pointer_pos()
        && p.distance(cursor_screen) <= 12.0
    {
        app.dragging_cursor = Some(i);
    }
    // A measurement's handle, or an MPR rotation handle, grabbed where the press began.
    if response.drag_started_by(egui::PointerButton::Primary)
        && app.dragging_cursor != Some(i)
        && let Some(origin) = ui.input(|inp| inp.pointer.press_origin())
    {
        app.dragging_handle = handle_at(app, i, &view_now, grid, origin).map(|(id, k)| (i, id, k));
        if app.dragging_handle.is_none()
            && app
                .rotation_handles(i)
                .iter()
                .any(|(_, h)| h.distance(origin) <= 8.0)
        {
            app.rotating = Some((i, patient_of(grid, &view_now, origin)));
        }
    }
    if response.drag_stopped() {
        app.cells[i].scroll_drag_px = 0.0;
        app.dragging_cursor = None;
        app.dragging_handle = None;
        app.rotating = None;
    }
    // Pan moves the image with the pointer (device pixels); scroll and window/level go by
    // the hand's movement (points), alike on every display scale.
    let delta_points = response.drag_delta();
    let delta = delta_points * ppp;
    if app.dragging_cursor == Some(i) {
        if let Some(p) = response.interact_pointer_pos() {
            let target = patient_of(grid, &view_now, p);
            app.set_cursor(target, Some(i));
        }
    } else if let Some((cell, from)) = app.rotating
        && cell == i
    {
        if let Some(p) = response.interact_pointer_pos() {
            let to = patient_of(grid, &view_now, p);
            app.rotate_mpr(i, from, to);
            app.rotating = Some((i, to));
        }
    } else if let Some((cell, id, k)) = app.dragging_handle
        && cell == i
    {
        if let Some(p) = response.interact_pointer_pos() {
            let target = patient_of(grid, &view_now, p);
            if let Some(m) = app.measurements.iter_mut().find(|m| m.id == id) {
                // Never onto another of its points: a handle stops a pixel short.
                let mut moved = m.shape.clone();
                moved.drag_handle(k, target, view_now.normal());
                if !moved.is_degenerate(view_now.pixel_mm) {
                    m.shape = moved;
                }
            }
        }
    } else if response.dragged_by(egui::PointerButton::Middle) {
        let cell = &mut app.cells[i];
        cell.viewport
            .pan_pixels(&view_now, f64::from(delta.x), f64::from(delta.y));
        cell.dirty = true;
    } else if response.dragged_by(egui::PointerButton::Secondary) {
        // A slice per 4 points; what a frame's drag leaves over carries to the next, so a slow
        // drag scrolls too.
        let cell = &mut app.cells[i];
        cell.scroll_drag_px += f64::from(delta_points.y);
        let steps = (cell.scroll_drag_px / 4.0).trunc();
        if steps != 0.0 {
            cell.scroll_drag_px -= steps * 4.0;
            cell.viewport.scroll(&info, steps);
            cell.dirty = true;
            app.follow_scroll(i);
        }
    } else if response.dragged_by(egui::PointerButton::Primary) && app.tool == Tool::WindowLevel {
        let cell = &mut app.cells[i];
        cell.viewport
            .drag_window(f64::from(delta_points.x), f64::from(delta_points.y));
        let display = cell.viewport.display.clone();
        app.share_display(&display);
    }
    let view = app.cells[i]
        .viewport
        .slice_view(&info, size_px[0], size_px[1]);

    // Clicks: measurement tools.
    if response.clicked()
        && let Some(pos) = response.interact_pointer_pos()
    {
        let p = patient_of(grid, &view, pos);
        if app.tool != Tool::WindowLevel {
            let here = (
                i,
                app.cells[i].viewport.normal(),
                app.cells[i].viewport.position_mm(),
            );
            let same_plane = app.pending_plane.is_some_and(|(cell, n, at)| {
                cell == here.0 && n.dot(here.1) > 1.0 - 1e-9 && (at - here.2).abs() < 1e-6
            });
            if !same_plane {
                app.pending_points.clear();
            }
            app.pending_plane = Some(here);
            app.pending_points.push(p);
            // A point that closes a segment (a line's end, an angle's vertex or second end)
            // within a pixel of where the segment starts (a double click) is taken back, so
            // no shape collapses.
            let n = app.pending_points.len();
            let closes_segment = match app.tool {
                Tool::Length | Tool::Angle => n >= 2,
                Tool::Cobb => n == 2 || n == 4,
                _ => false,
            };
            if closes_segment
                && app.pending_points[n - 1].distance(app.pending_points[n - 2]) < view.pixel_mm
            {
                app.pending_points.pop();
                app.status =
                    "two points of the measurement fell together: click that point again".into();
            }
        }
        if app.tool.clicks() > 0 && app.pending_points.len() >= app.tool.clicks() {
            let pts: Vec<[f64; 3]> = app.pending_points.iter().map(|p| p.to_array()).collect();
            let shape = match (app.tool, pts.as_slice()) {
                (Tool::Probe, [at]) => Some(Shape::Probe { at: *at }),
                (Tool::Length, [a, b]) => Some(Shape::Length { a: *a, b: *b }),
                (Tool::Angle, [a, vertex, b]) => Some(Shape::Angle {
                    a: *a,
                    vertex: *vertex,
                    b: *b,
                }),
                (Tool::Cobb, [a, b, c, d]) => Some(Shape::Cobb {
                    line1: [*a, *b],
                    line2: [*c, *d],
                }),
                (Tool::Ellipse, [centre, corner]) => {
                    // Semi-axes along the screen's axes, in patient space.
                    let d = DVec3::from(*corner) - DVec3::from(*centre);
                    let right = DVec3::from(view.right);
                    let down = DVec3::from(view.down);
                    Some(Shape::Ellipse {
                        center: *centre,
                        semi_axis_1: (right * d.dot(right).abs()).to_array(),
                        semi_axis_2: (down * d.dot(down).abs()).to_array(),
                    })
                }
                _ => None,
            };
            match shape {
                // Two points within a screen pixel (a double click): the last one is taken
                // back, and the measurement waits for it again.
                Some(shape) if shape.is_degenerate(view.pixel_mm) => {
                    app.pending_points.pop();
                    app.status =
                        "two points of the measurement fell together: click that point again"
                            .into();
                }
                Some(shape) => {
                    app.pending_points.clear();
                    app.add_measurement(shape);
                }
                None => app.pending_points.clear(),
            }
        }
    }

    // Render when something changed, then paint the texture.
    let OverreadApp {
        gpu,
        cells,
        opens,
        status,
        ..
    } = app;
    let cell = &mut cells[i];
    let mut image = None;
    if let (Some(gpu), Some(texture)) = (
        gpu.as_mut(),
        opens.get(cell.volume).and_then(|o| o.texture.as_ref()),
    ) {
        if cell.target.as_ref().is_none_or(|t| t.size() != size_px) {
            cell.target = Some(ViewTarget::new(
                &gpu.ctx,
                size_px[0],
                size_px[1],
                cell.viewport.display.depth,
            ));
            cell.dirty = true;
        }
        if let Some(target) = &mut cell.target
            && (cell.dirty || cell.display_dirty || cell.screen.is_none())
        {
            // A window change alone redoes only the display pass.
            let resampled = if cell.dirty {
                gpu.renderer.resample(&gpu.ctx, texture, &view, target)
            } else {
                Ok(())
            };
            let screen = resampled.and_then(|()| {
                gpu.renderer.display_on_screen(
                    &gpu.ctx,
                    &cell.viewport.display,
                    target,
                    gpu.target_format,
                )
            });
            match screen {
                Ok(screen) => {
                    cell.screen = Some(screen);
                    cell.dirty = false;
                    cell.display_dirty = false;
                }
                Err(e) => {
                    // Black, and tried again next frame: an older image must not pass for
                    // this one.
                    cell.screen = None;
                    *status = format!("cannot draw: {e}");
                }
            }
        }
        image = cell.screen.clone();
    }
    // Without a volume texture (none yet, or its upload failed) the cell shows nothing: never
    // an image drawn from an earlier texture.
    overlay_ui(app, ui, i, rect, &view);
    image
}

/// A viewport's size in pixels: the viewport egui gives the cell's paint callback (edges
/// rounded to pixels, clamped to the window), so the view's image and the window's pixels
/// correspond one to one.
fn viewport_pixels(ctx: &egui::Context, rect: Rect) -> [u32; 2] {
    let ppp = ctx.pixels_per_point();
    let window = ctx.viewport_rect().size() * ppp;
    let px = egui::epaint::ViewportInPixels::from_points(
        &rect,
        ppp,
        [window.x.round() as u32, window.y.round() as u32],
    );
    [px.width_px.max(1) as u32, px.height_px.max(1) as u32]
}

/// Draws a viewport's display pass straight into the window (egui's render pass, its viewport
/// set to the cell's rectangle).
struct ViewportPaint(ScreenDraw);

impl eframe::egui_wgpu::CallbackTrait for ViewportPaint {
    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        _resources: &eframe::egui_wgpu::CallbackResources,
    ) {
        self.0.draw(render_pass);
    }
}

/// A viewport's corner texts and orientation markers, placed so that none covers another: in
/// a narrow view the patient block moves below the top marker and the bottom blocks stack
/// above the bottom marker.
struct CornerTexts {
    top_left: String,
    top_right: String,
    bottom_left: String,
    bottom_right: String,
    /// Left, right, top, bottom.
    markers: Option<[String; 4]>,
}

impl CornerTexts {
    /// Paint them in `rect` with margin `m`; returns the top of the bottom texts.
    fn paint(self, painter: &egui::Painter, rect: Rect, m: f32, font: &FontId) -> f32 {
        let big = FontId::proportional(18.0);
        let layout =
            |text: String, font: &FontId| painter.layout_no_wrap(text, font.clone(), OVERLAY);
        let place = |g: &std::sync::Arc<egui::Galley>, anchor: Pos2, align: Align2| {
            align.anchor_size(anchor, g.size())
        };
        let markers = self
            .markers
            .map(|[l, r, t, b]| [l, r, t, b].map(|x| layout(x, &big)));
        // The top texts (names, descriptions: any length) each keep to their half of the
        // view beside the top marker, a line too long cut short with "…"; in a view too
        // narrow for that, each takes the whole width, the right one under the left one.
        let glyph = layout("M".into(), font).size().x.max(1.0);
        let beside = rect.width() / 2.0
            - m
            - markers
                .as_ref()
                .map_or(0.0, |[_, _, t, _]| t.size().x / 2.0 + 4.0);
        let chars = if beside / glyph >= 16.0 {
            beside / glyph
        } else {
            (rect.width() - 2.0 * m) / glyph
        };
        let fit = |text: String| fit_lines(&text, chars.max(0.0).floor() as usize);
        let [tl, tr, bl, br] = [
            fit(self.top_left),
            fit(self.top_right),
            self.bottom_left,
            self.bottom_right,
        ]
        .map(|t| layout(t, font));

        let mut tl_rect = place(&tl, rect.min + Vec2::new(m, m), Align2::LEFT_TOP);
        let mut tr_rect = place(
            &tr,
            Pos2::new(rect.max.x - m, rect.min.y + m),
            Align2::RIGHT_TOP,
        );
        let mut floor = rect.max.y - m;
        if let Some([l, r, t, b]) = &markers {
            let l_rect = place(
                l,
                Pos2::new(rect.min.x + m, rect.center().y),
                Align2::LEFT_CENTER,
            );
            let r_rect = place(
                r,
                Pos2::new(rect.max.x - m, rect.center().y),
                Align2::RIGHT_CENTER,
            );
            let t_rect = place(
                t,
                Pos2::new(rect.center().x, rect.min.y + m),
                Align2::CENTER_TOP,
            );
            let b_rect = place(
                b,
                Pos2::new(rect.center().x, rect.max.y - m),
                Align2::CENTER_BOTTOM,
            );
            for (g, at) in [(l, l_rect), (r, r_rect), (t, t_rect), (b, b_rect)] {
                painter.galley(at.min, g.clone(), OVERLAY);
            }
            if tl_rect.intersects(t_rect) {
                tl_rect = tl_rect.translate(Vec2::new(0.0, t_rect.max.y + 2.0 - tl_rect.min.y));
            }
            if tr_rect.intersects(t_rect) {
                tr_rect = tr_rect.translate(Vec2::new(0.0, t_rect.max.y + 2.0 - tr_rect.min.y));
            }
            let bl_at = place(&bl, Pos2::new(rect.min.x + m, floor), Align2::LEFT_BOTTOM);
            let br_at = place(&br, Pos2::new(rect.max.x - m, floor), Align2::RIGHT_BOTTOM);
            if bl_at.intersects(b_rect) || br_at.intersects(b_rect) || bl_at.intersects(br_at) {
                floor = b_rect.min.y - 2.0;
            }
        }
        // In a narrow view the right text goes under the left one.
        if tr_rect.intersects(tl_rect) {
            tr_rect = tr_rect.translate(Vec2::new(0.0, tl_rect.max.y + 2.0 - tr_rect.min.y));
        }
        painter.galley(tl_rect.min, tl.clone(), OVERLAY);
        painter.galley(tr_rect.min, tr.clone(), OVERLAY);
        let bl_rect = place(&bl, Pos2::new(rect.min.x + m, floor), Align2::LEFT_BOTTOM);
        let mut br_rect = place(&br, Pos2::new(rect.max.x - m, floor), Align2::RIGHT_BOTTOM);
        if br_rect.intersects(bl_rect) {
            br_rect = br_rect.translate(Vec2::new(0.0, bl_rect.min.y - 2.0 - br_rect.max.y));
        }
        painter.galley(bl_rect.min, bl, OVERLAY);
        painter.galley(br_rect.min, br, OVERLAY);
        bl_rect.min.y.min(br_rect.min.y)
    }
}

/// The measurement handle (measurement id, handle number) nearest to screen position `pos`
/// within 8 points, among the measurements cell `i`'s `view` cuts and may be edited on
/// (`Shape::editable_on`).
fn handle_at(
    app: &OverreadApp,
    i: usize,
    view: &SliceView,
    grid: PixelGrid,
    pos: Pos2,
) -> Option<(u64, usize)> {
    app.measurements_on(i, view)
        .filter(|m| m.shape.editable_on(view.normal()))
        .flat_map(|m| {
            m.shape
                .handles()
                .into_iter()
                .enumerate()
                .map(move |(k, p)| {
                    let ((x, y), _) = project(view, p);
                    (m.id, k, grid.screen(x, y).distance(pos))
                })
        })
        .filter(|(_, _, d)| *d <= 8.0)
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(id, k, _)| (id, k))
}

/// Colour of cell `j`'s reference line (and its rotation handles): in MPR by the cell's own
/// view (axial blue, coronal green, sagittal red), whatever it has been turned to, so a
/// line keeps its colour past 45 degrees of rotation; elsewhere by the plane's nearest axis.
fn cell_colour(app: &OverreadApp, j: usize) -> Color32 {
    const AXIAL: Color32 = Color32::from_rgb(90, 160, 255);
    const CORONAL: Color32 = Color32::from_rgb(110, 220, 110);
    const SAGITTAL: Color32 = Color32::from_rgb(255, 110, 110);
    if app.layout == Layout::Mpr {
        // `set_layout` fills the MPR cells in this order.
        return [AXIAL, CORONAL, SAGITTAL][j % 3];
    }
    let a = app
        .cells
        .get(j)
        .map_or(DVec3::Z, |c| c.viewport.normal())
        .abs();
    if a.z >= a.x.max(a.y) {
        AXIAL
    } else if a.y >= a.x {
        CORONAL
    } else {
        SAGITTAL
    }
}

/// The line where plane (n1, through p1) cuts plane (n2, through p2): a point and direction.
fn plane_intersection(n1: DVec3, p1: DVec3, n2: DVec3, p2: DVec3) -> Option<(DVec3, DVec3)> {
    let d = n1.cross(n2);
    if d.length() < 1e-6 {
        return None;
    }
    let (h1, h2) = (n1.dot(p1), n2.dot(p2));
    let (a, b, c) = (n1.dot(n1), n2.dot(n2), n1.dot(n2));
    let det = a * b - c * c;
    let p = n1 * ((h1 * b - h2 * c) / det) + n2 * ((h2 * a - h1 * c) / det);
    Some((p, d.normalize()))
}

/// Where the plane (`n_other` through `p_other`) cuts the view's plane (`n_view` through its
/// centre `c_view`): the line's point nearest the view's centre and its direction; none for
/// parallel planes. The segment drawn is centred on that point: the point nearest the
/// patient origin may lie far outside a zoomed view (of a volume centred 600 mm from it).
fn reference_line(
    n_view: DVec3,
    c_view: DVec3,
    n_other: DVec3,
    p_other: DVec3,
) -> Option<(DVec3, DVec3)> {
    let (p, d) = plane_intersection(n_other, p_other, n_view, c_view)?;
    Some((p + d * (c_view - p).dot(d), d))
}

fn overlay_ui(app: &OverreadApp, ui: &egui::Ui, i: usize, rect: Rect, view: &SliceView) {
    let (Some(cell), Some(open)) = (app.cells.get(i), app.open_at(i)) else {
        return;
    };
    let viewport = &cell.viewport;
    let ppp = ui.ctx().pixels_per_point();
    let grid = PixelGrid::new(rect, ppp);
    let to_screen = |x: f64, y: f64| grid.screen(x, y);
    let painter = ui.painter_at(rect);
    let font = FontId::monospace(13.0);
    let info = &open.info;
    let o = viewport.overlay(info);
    let m = 6.0;
    if app.cells.len() > 1 && i == app.active {
        painter.rect_stroke(
            rect.shrink(1.0),
            0.0,
            Stroke::new(1.0, Color32::from_gray(90)),
            egui::StrokeKind::Inside,
        );
    }
    // Reference lines: where the other viewports' planes cut this one (only within one frame
    // of reference: across two, patient coordinates do not correspond; a series without a
    // Frame of Reference UID is in its own, as in MPR of it).
    let frame = &info.geometry.frame_of_reference_uid;
    for (j, other) in app.cells.iter().enumerate() {
        let same_frame = other.volume == cell.volume
            || frame.is_some()
                && app
                    .open_at(j)
                    .map(|o| &o.info.geometry.frame_of_reference_uid)
                    == Some(frame);
        if j == i || !same_frame {
            continue;
        }
        let Some((p, d)) = reference_line(
            viewport.normal(),
            DVec3::from(view.center_mm),
            other.viewport.normal(),
            DVec3::from(other.viewport.center_mm),
        ) else {
            continue;
        };
        let ((x, y), _) = project(view, p.to_array());
        let dir = Vec2::new(
            d.dot(DVec3::from(view.right)) as f32,
            d.dot(DVec3::from(view.down)) as f32,
        );
        let centre = to_screen(x, y);
        let reach = rect.width() + rect.height();
        painter.line_segment(
            [centre - dir * reach, centre + dir * reach],
            Stroke::new(1.0, cell_colour(app, j)),
        );
    }
    if app.layout == Layout::Mpr {
        let ((x, y), _) = project(view, app.cursor_mm.to_array());
        painter.circle_stroke(to_screen(x, y), 6.0, Stroke::new(1.0, Color32::WHITE));
        // Drag one of these to turn the other planes (oblique MPR).
        for (j, at) in app.rotation_handles(i) {
            if j < app.cells.len() {
                painter.circle_filled(at, 4.0, cell_colour(app, j));
            }
        }
    }
    // Whose images, of which study and series: a prior beside the current study is told
    // apart by its date and series, not by its pixels.
    let (top_left, top_right) = identity_corners(&app.patients, &open.stack.id);
    let mut bottom_left = match (o.slice, o.between, o.gap) {
        (Some((k, n)), _, _) => slice_line(&open.stack.slices, k, n),
        // A blend of two slices, no one image shows it: "Im 20-21/40".
        (None, Some((k, n)), _) => format!("Im {k}-{}/{n}\n", k + 1),
        // Between two slices with missing ones between them: nothing to show.
        (None, None, Some((k, n))) => format!("Slices missing after Im {k}/{n}\n"),
        (None, None, None) => String::new(),
    };
    if app.link_series && app.cells.get(i).is_some_and(|c| c.beyond_link) {
        bottom_left += "Linked position beyond this series\n";
    }
    let placed = info.geometry.trusted;
    if placed {
        bottom_left += &crate::viewer::position_text(
            viewport.normal(),
            o.position_mm,
            DVec3::from(o.centre_mm),
        );
    } else {
        // Frames without Image Position/Orientation are stacked 1 mm apart for display
        // only: no position, step or reformat distance of theirs is real.
        bottom_left += "No position in the files";
    }
    // On one of the stack's slices, its Slice Thickness; on a thin reformat (or without a
    // thickness in the file), the step between planes, named as such.
    let thickness = o
        .slice
        .and_then(|(k, _)| open.stack.slices.get(k - 1))
        .and_then(|s| s.thickness_mm);
    if o.slab_mm > 0.0 {
        bottom_left += &format!("\nSlab {:.1} mm {:?}", o.slab_mm, viewport.slab_mode);
        // What it combines: along the stack, how many slices; thicker than the samples a
        // slab takes at the voxels' spacing, how far apart its samples are.
        let sampling = crate::render::kernel::slab_sampling(info, viewport.normal(), o.slab_mm);
        if sampling.coarser_than_voxels {
            bottom_left += &format!(" (every {:.2} mm)", sampling.step_mm);
        } else if sampling.along_slices {
            bottom_left += &format!(" ({} slices)", sampling.samples);
        }
    } else if let Some(t) = thickness {
        bottom_left += &format!("\nThk {t:.2} mm");
    } else if placed {
        // On a slice, the gap to the next one (an uneven stack's gaps differ); between two,
        // or in a gap, the distance between the two slices around it.
        let z = |k: usize| info.slices.get(k).map(|s| f64::from(s.z));
        let gap = o.slice.or(o.between).or(o.gap).and_then(|(k, _)| {
            let here = z(k - 1)?;
            z(k).or_else(|| z(k.checked_sub(2)?))
                .map(|next| (next - here).abs())
        });
        let step = gap.unwrap_or_else(|| viewport.scroll_step_mm(info));
        bottom_left += &format!("\nStep {step:.2} mm");
    }
    if let Some((done, total)) = app.load_progress_of(i)
        && done < total
    {
        bottom_left += &format!("\nloading {done}/{total}");
    }
    let mut bottom_right = window_line(o.window, &viewport.display.voi, info.colour);
    // Magnification, not the zoom over the fit: 1:1 (its key) reads 1.00.
    bottom_right += &format!("\nZoom {:.2}", crate::viewer::magnification(info, view));
    if viewport.display.invert {
        bottom_right += "\nInverted";
    }
    if let (fps, true) = app.cine() {
        bottom_right += &format!("\nCine {fps:.0} fps");
    }
    let corners = CornerTexts {
        top_left,
        top_right,
        bottom_left,
        bottom_right,
        markers: o.markers.clone(),
    };
    let floor = corners.paint(&painter, rect, m, &font);
    for meas in app.measurements_on(i, view) {
        let paths: Vec<Vec<[f64; 3]>> = match &meas.shape {
            Shape::Length { a, b } => vec![vec![*a, *b]],
            Shape::Angle { a, vertex, b } => vec![vec![*a, *vertex, *b]],
            Shape::Cobb { line1, line2 } => vec![line1.to_vec(), line2.to_vec()],
            Shape::Probe { at } => vec![vec![*at]],
            Shape::Ellipse {
                center,
                semi_axis_1,
                semi_axis_2,
            } => {
                let (c, a, b) = (
                    DVec3::from(*center),
                    DVec3::from(*semi_axis_1),
                    DVec3::from(*semi_axis_2),
                );
                let tolerance = app
                    .cells
                    .get(i)
                    .map_or(0.0, |c| c.viewport.cut_tolerance_mm(info));
                // Whole on its own plane; where another plane cuts it, the chord it cuts.
                match crate::viewer::measure::ellipse_on_view(
                    view,
                    *center,
                    *semi_axis_1,
                    *semi_axis_2,
                    tolerance,
                ) {
                    crate::viewer::measure::EllipseOnView::Chord(p, q) => vec![vec![p, q]],
                    _ => vec![
                        (0..=64)
                            .map(|k| {
                                let t = f64::from(k) / 64.0 * std::f64::consts::TAU;
                                (c + a * t.cos() + b * t.sin()).to_array()
                            })
                            .collect(),
                    ],
                }
            }
        };
        let mut screen: Vec<Pos2> = Vec::new();
        for path in &paths {
            let pts: Vec<Pos2> = path
                .iter()
                .map(|p| {
                    let ((x, y), _) = project(view, *p);
                    to_screen(x, y)
                })
                .collect();
            for w in pts.windows(2) {
                painter.line_segment([w[0], w[1]], Stroke::new(1.5, MEASURE));
            }
            if !matches!(meas.shape, Shape::Ellipse { .. }) {
                for p in &pts {
                    painter.circle_stroke(*p, 3.0, Stroke::new(1.5, MEASURE));
                }
            }
            screen.extend(pts);
        }
        if let (Some(last), Some(label)) = (screen.last(), app.measurement_label(meas, i)) {
            painter.text(
                *last + Vec2::new(6.0, -6.0),
                Align2::LEFT_BOTTOM,
                label,
                font.clone(),
                MEASURE,
            );
        }
    }
    if i == app.active {
        for p in &app.pending_points {
            let ((x, y), _) = project(view, p.to_array());
            painter.circle_stroke(to_screen(x, y), 3.0, Stroke::new(1.5, MEASURE));
        }
    }
    // Scale bar: 1, 2 or 5 x 10^n mm, at most a quarter of the width; none without Pixel
    // Spacing (there are no mm to show), nor on a reformat of frames without positions (they
    // are stacked 1 mm apart for display: a screen axis along the stack is not mm), as the
    // lengths measured there say (`calibrated`).
    let info_of_cell = app
        .cells
        .get(i)
        .and_then(|c| app.opens.get(c.volume))
        .map(|o| &o.info);
    let geometry = info_of_cell.map(|info| &info.geometry);
    let calibrated = info_of_cell.is_none_or(|info| crate::viewer::mm_on_screen(info, view));
    let at_detector = if geometry.is_some_and(|g| g.spacing_at_detector) {
        " at detector"
    } else {
        ""
    };
    let bar_mm = crate::render::view::scale_bar_mm(f64::from(view.width) * view.pixel_mm / 4.0);
    let len_px = bar_mm / view.pixel_mm;
    // Above the corner texts, which may be stacked in a narrow view.
    let y = (f64::from(view.height) - 40.0 * f64::from(ppp))
        .min(f64::from((floor - rect.min.y - 8.0) * ppp));
    let x1 = f64::from(view.width) * 0.75;
    let a = to_screen(x1 - len_px, y);
    let b = to_screen(x1, y);
    if calibrated {
        painter.line_segment([a, b], Stroke::new(1.5, OVERLAY));
        painter.text(
            Pos2::new((a.x + b.x) / 2.0, a.y - 3.0),
            Align2::CENTER_BOTTOM,
            format!("{bar_mm} mm{at_detector}"),
            font,
            OVERLAY,
        );
    }
}

pub fn bindings_ui(app: &mut OverreadApp, ctx: &egui::Context) {
    let mut open = app.show_bindings;
    egui::Window::new("Keys").open(&mut open).show(ctx, |ui| {
        for problem in &app.settings_problems {
            ui.colored_label(Color32::from_rgb(255, 170, 60), problem);
        }
        // The third column is the action's name in the settings file's `[keys]` table.
        egui::Grid::new("bindings").striped(true).show(ui, |ui| {
            for (key, action) in &app.bindings {
                ui.monospace(key.name());
                ui.label(action.describe());
                ui.weak(action.name());
                ui.end_row();
            }
            let talk = &app.report.push_to_talk;
            if let Some(key) = talk.key {
                ui.monospace(format!("{} (held)", key.name()));
                ui.label("dictate while held (push to talk)");
                ui.weak("dictation_key");
                ui.end_row();
            }
            if let Some(button) = talk.button {
                ui.monospace(format!("{button:?} button (held)"));
                ui.label("dictate while held (push to talk)");
                ui.weak("dictation_mouse_button");
                ui.end_row();
            }
            ui.monospace("wheel / right drag");
            ui.label("scroll");
            ui.end_row();
            ui.monospace("left drag");
            ui.label("window/level (W/L tool)");
            ui.end_row();
            ui.monospace("middle drag");
            ui.label("pan");
            ui.end_row();
            ui.monospace("ctrl + wheel");
            ui.label("zoom");
            ui.end_row();
        });
    });
    app.show_bindings = open;
}

/// The top corners' texts for the stack `stack_id`: the patient (name, then ID) at the left;
/// at the right the study (its date, as YYYY-MM-DD where the file gives eight digits, and its
/// description) and the series ("CT series 3 (Chest 1.0 B70f)", and which of its volumes,
/// as `series_name` names it). Empty where the stack is not among `patients`.
fn identity_corners(patients: &[imaging::series::Patient], stack_id: &str) -> (String, String) {
    for patient in patients {
        for study in &patient.studies {
            for series in &study.series {
                if !series.stacks.iter().any(|st| st.id == stack_id) {
                    continue;
                }
                let left = format!("{}\n{}", patient.name.reveal(), patient.id.reveal());
                let date = study.date.as_deref().map(study_date);
                let study_line = [date.as_deref(), study.description.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|t| !t.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                // Named as everywhere else on screen ("values of series 3 (ARTERIAL)").
                let named = super::series_name(Some(series), stack_id);
                let series_line = match series.modality.as_deref().map(str::trim) {
                    Some(m) if !m.is_empty() => format!("{m} {named}"),
                    _ => named,
                };
                let right = [study_line, series_line]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                return (left, right);
            }
        }
    }
    (String::new(), String::new())
}

/// Each line of `text` at most `chars` characters, a longer one cut and ended with "…".
fn fit_lines(text: &str, chars: usize) -> String {
    text.lines()
        .map(|line| {
            if line.chars().count() <= chars {
                line.to_string()
            } else {
                let mut cut: String = line.chars().take(chars.saturating_sub(1)).collect();
                cut.push('…');
                cut
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A DA value (YYYYMMDD) as YYYY-MM-DD; anything else (an old "YYYY.MM.DD", a damaged value)
/// as it is, trimmed.
fn study_date(da: &str) -> String {
    let d = da.trim();
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    } else {
        d.to_string()
    }
}

/// The corner text's slice line: slice `k` of `n` in this stack, and the slice's Instance
/// Number when that differs from `k` (the number the referring site's PACS shows, often
/// counted from the other end, which a report's "image N" must name); for a multi-frame
/// object, whose slices are its frames, the frame number.
fn slice_line(slices: &[imaging::series::SliceRef], k: usize, n: usize) -> String {
    let named = slices.get(k.wrapping_sub(1)).and_then(|s| {
        if let Some(tile) = s.mosaic_tile {
            // A mosaic's slices are tiles of one image: its number and the tile.
            let instance = s
                .instance_number
                .map(|i| format!("Inst {i}, "))
                .unwrap_or_default();
            Some(format!(" ({instance}tile {})", tile + 1))
        } else if slices.len() > 1 && slices[0].path == slices[1].path {
            // One file's frames (checked on two slices, not all of them every frame).
            Some(format!(" (Fr {})", s.frame + 1)).filter(|_| s.frame as usize + 1 != k)
        } else {
            s.instance_number
                .filter(|&i| i != k as i64)
                .map(|i| format!(" (Inst {i})"))
        }
    });
    format!("Im {k}/{n}{}\n", named.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window line names a VOI LUT Function other than LINEAR.
    #[test]
    fn the_window_line_names_its_function() {
        use crate::render::Voi;
        use crate::render::voi::VoiFunction;
        let window = |function| Voi::Window {
            center: 40.0,
            width: 400.0,
            function,
        };
        let line = |function| window_line(Some((400.0, 40.0)), &window(function), false);
        assert_eq!(line(VoiFunction::Linear), "W 400 L 40");
        assert_eq!(line(VoiFunction::Sigmoid), "W 400 L 40 (sigmoid)");
        assert_eq!(line(VoiFunction::LinearExact), "W 400 L 40 (linear exact)");
        assert_eq!(
            window_line(None, &window(VoiFunction::Linear), false),
            "VOI LUT"
        );
        assert_eq!(
            window_line(Some((1.0, 1.0)), &window(VoiFunction::Linear), true),
            "Colour"
        );
    }

    fn slice(instance: Option<i64>, frame: u32) -> imaging::series::SliceRef {
        imaging::series::SliceRef {
            // One file per instance: a multi-frame object's frames share theirs.
            path: format!("{instance:?}.dcm").into(),
            frame,
            sop_instance_uid: String::new(),
            instance_number: instance,
            position_mm: [0.0; 3],
            rescale: imaging::header::Rescale::IDENTITY,
            modality_lut: None,
            padding: None,
            window: None,
            more_windows: Vec::new(),
            voi_lut: None,
            transfer_syntax_uid: String::new(),
            high_bit: None,
            mosaic_tile: None,
            thickness_mm: None,
        }
    }

    /// A CT numbered from the head lies here from the feet up: slice 1 of 3 is instance 3,
    /// and the corner says so; numbers that agree are not repeated; frames name their frame.
    #[test]
    fn the_slice_line_names_the_instance_number_where_it_differs() {
        let reversed = [slice(Some(3), 0), slice(Some(2), 0), slice(Some(1), 0)];
        assert_eq!(slice_line(&reversed, 1, 3), "Im 1/3 (Inst 3)\n");
        assert_eq!(slice_line(&reversed, 2, 3), "Im 2/3\n");
        let plain = [slice(Some(1), 0), slice(None, 0)];
        assert_eq!(slice_line(&plain, 1, 2), "Im 1/2\n");
        assert_eq!(slice_line(&plain, 2, 2), "Im 2/2\n");
        let mut tile = slice(Some(7), 0);
        tile.mosaic_tile = Some(4);
        assert_eq!(slice_line(&[tile], 1, 1), "Im 1/1 (Inst 7, tile 5)\n");
        let frames = [slice(Some(7), 1), slice(Some(7), 0)];
        assert_eq!(slice_line(&frames, 1, 2), "Im 1/2 (Fr 2)\n");
        assert_eq!(slice_line(&frames, 2, 2), "Im 2/2 (Fr 1)\n");
    }

    /// A series dragged from the browser opens where it is dropped only if its stack id
    /// still names it: a scan that replaced the study meanwhile gives the id to another.
    #[test]
    fn a_dragged_series_is_checked_when_dropped() {
        let write = |seed| {
            let dir = tempfile::tempdir().unwrap();
            let spec = imaging::synth::PhantomSpec {
                columns: 16,
                rows: 16,
                slices: 2,
                seed,
                ..Default::default()
            };
            imaging::synth::write_series(&spec, dir.path()).unwrap();
            let patients = imaging::group(&imaging::scan(&[dir.path().to_path_buf()]).instances);
            (dir, patients)
        };
        let (_a, first) = write(1);
        let (_b, second) = write(2);
        let stack = first[0].stacks().next().unwrap();
        let drag = StackDrag {
            id: stack.id.clone(),
            first_frame: Some((stack.slices[0].sop_instance_uid.clone(), 0)),
        };
        assert_eq!(drag.still_in(&first), Some(stack.id.as_str()));
        assert_eq!(
            second[0].stacks().next().unwrap().id,
            stack.id,
            "the same id"
        );
        assert_eq!(drag.still_in(&second), None);
    }

    /// The top corners name the patient, and the study's date and description and the
    /// series, of the stack shown (a prior beside a current study is told apart by them).
    #[test]
    fn the_top_corners_name_patient_study_and_series() {
        let dir = tempfile::tempdir().unwrap();
        let spec = imaging::synth::PhantomSpec {
            columns: 32,
            rows: 32,
            slices: 3,
            study_date: "20240315".into(),
            ..Default::default()
        };
        imaging::synth::write_series(&spec, dir.path()).unwrap();
        let patients = imaging::group(&imaging::scan(&[dir.path().to_path_buf()]).instances);
        let stack = &patients[0].studies[0].series[0].stacks[0];
        let (left, right) = identity_corners(&patients, &stack.id);
        assert_eq!(left, "PHANTOM^CHEST\nSYNTH0001");
        assert_eq!(
            right,
            format!(
                "2024-03-15 CT CHEST (synthetic phantom)\nCT series 2 ({})",
                spec.name()
            )
        );
        assert_eq!(
            identity_corners(&patients, "no such stack"),
            (String::new(), String::new())
        );
        assert_eq!(study_date("20240315"), "2024-03-15");
        assert_eq!(fit_lines("Se 2 CT abcdef\nshort", 8), "Se 2 CT…\nshort");
        assert_eq!(fit_lines("exactly8", 8), "exactly8");
        assert_eq!(fit_lines("ab", 0), "…");
        assert_eq!(study_date(" 2024.03.15"), "2024.03.15");
    }

    /// A reference line is placed at its point nearest the view's centre: a sagittal plane
    /// at x = 10 cuts a coronal view centred 600 mm below the patient origin at (10, 0, -600),
    /// not at (10, 0, 0), which a zoomed view would not show.
    #[test]
    fn a_reference_line_is_placed_where_the_view_is() {
        let centre = DVec3::new(0.0, 0.0, -600.0);
        let (p, d) = reference_line(DVec3::Y, centre, DVec3::X, DVec3::new(10.0, 5.0, 3.0))
            .expect("perpendicular planes cut");
        assert!((p - DVec3::new(10.0, 0.0, -600.0)).length() < 1e-9, "{p}");
        assert!((d.abs() - DVec3::Z).length() < 1e-12, "{d}");
        // Parallel planes: none.
        assert!(reference_line(DVec3::Y, centre, DVec3::Y, DVec3::ZERO).is_none());
    }

    /// Whole values as they are; fractional ones (a rescale of 0.001) keep their decimals.
    #[test]
    fn samples_keep_the_decimals_they_have() {
        assert_eq!(
            format_value(&Value::Point(Some(40.0)), LengthUnits::Millimetres, false),
            "40"
        );
        assert_eq!(
            format_value(
                &Value::Point(Some(-1000.0)),
                LengthUnits::Millimetres,
                false
            ),
            "-1000"
        );
        assert_eq!(
            format_value(&Value::Point(Some(2.4567)), LengthUnits::Millimetres, false),
            "2.46"
        );
        assert_eq!(
            format_value(&Value::Point(Some(0.0312)), LengthUnits::Millimetres, false),
            "0.031"
        );
        assert_eq!(
            format_value(&Value::Point(Some(153.26)), LengthUnits::Millimetres, false),
            "153.3"
        );
    }

    #[test]
    fn a_cts_values_are_named_hu() {
        assert_eq!(
            format_value(&Value::Point(Some(-1000.0)), LengthUnits::Millimetres, true),
            "-1000 HU"
        );
        let region = Value::Region {
            area_mm2: 120.0,
            mean: 40.0,
            sd: 2.0,
            min: 35.0,
            max: 45.0,
            samples: 10,
            without_data: 0,
        };
        assert_eq!(
            format_value(&region, LengthUnits::Millimetres, true),
            "120 mm² mean 40.0 SD 2.0 [35, 45] HU"
        );
        assert_eq!(
            format_value(&region, LengthUnits::Millimetres, false),
            "120 mm² mean 40.0 SD 2.0 [35, 45]"
        );
        // Lengths and angles are not values of the image.
        assert_eq!(
            format_value(&Value::LengthMm(14.25), LengthUnits::Millimetres, true),
            "14.2 mm"
        );
    }

    #[test]
    fn values_without_pixel_spacing_are_in_pixels() {
        assert_eq!(
            format_value(&Value::LengthMm(14.25), LengthUnits::Millimetres, false),
            "14.2 mm"
        );
        assert_eq!(
            format_value(&Value::LengthMm(14.25), LengthUnits::Pixels, false),
            "14.2 px"
        );
        let region_sized = |area_mm2, samples, without_data| Value::Region {
            area_mm2,
            mean: 40.0,
            sd: 2.0,
            min: 35.0,
            max: 45.0,
            samples,
            without_data,
        };
        let region_of = |samples, without_data| region_sized(120.0, samples, without_data);
        let region = region_of(10, 0);
        assert!(format_value(&region, LengthUnits::Pixels, false).starts_with("120 px²"));
        assert!(format_value(&region, LengthUnits::Millimetres, false).starts_with("120 mm²"));
        assert!(!format_value(&region, LengthUnits::Millimetres, false).contains("no data"));
        assert!(
            format_value(&region_of(10, 10), LengthUnits::Millimetres, false)
                .ends_with("(of 50% of it: the rest has no data)")
        );
        assert_eq!(
            format_value(&region_of(0, 20), LengthUnits::Millimetres, false),
            "120 mm²: no data inside"
        );
        let small = region_sized(std::f64::consts::PI, 10, 0);
        assert!(format_value(&small, LengthUnits::Millimetres, false).starts_with("3.1 mm² mean"));
        assert_eq!(
            format_value(&Value::AngleDeg(32.0), LengthUnits::Pixels, false),
            "32.0°"
        );
        // Imager Pixel Spacing only: mm at the detector, said so.
        assert_eq!(
            format_value(
                &Value::LengthMm(14.25),
                LengthUnits::DetectorMillimetres,
                false
            ),
            "14.2 mm at detector"
        );
        assert!(
            format_value(&region, LengthUnits::DetectorMillimetres, false)
                .starts_with("120 mm² at detector")
        );
    }
}
