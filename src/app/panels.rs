//! The panels of the window: toolbar, study browser, measurement list, the viewport (with its
//! overlays) and the key-binding table. Each `*_ui` function draws one panel.

use eframe::egui::{self, Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Vec2};

use super::{OverreadApp, Tool};
use crate::render::SliceView;
use crate::viewer::measure::{Shape, Value, project, visible_on};

const OVERLAY: Color32 = Color32::from_rgb(255, 220, 120);
const MEASURE: Color32 = Color32::from_rgb(80, 220, 255);

pub fn toolbar_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    egui::Panel::top("toolbar").show(ui, |ui| {
        ui.horizontal(|ui| {
            for (tool, label) in [
                (Tool::WindowLevel, "W/L"),
                (Tool::Length, "Length"),
                (Tool::Probe, "Probe"),
            ] {
                if ui.selectable_label(app.tool == tool, label).clicked() {
                    app.tool = tool;
                    app.pending_point = None;
                }
            }
            ui.separator();
            if ui.button("Keys (?)").clicked() {
                app.show_bindings = !app.show_bindings;
            }
            ui.separator();
            if let Some(e) = &app.gpu_error {
                ui.colored_label(Color32::RED, e);
            }
            ui.label(&app.status);
        });
    });
}

pub fn browser_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    let mut open_id = None;
    egui::Panel::left("browser")
        .resizable(true)
        .default_size(300.0)
        .min_size(220.0)
        .show(ui, |ui| {
            ui.heading("Studies");
            if app.scan_rx.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("scanning");
                });
            }
            egui::ScrollArea::vertical().show(ui, |ui| {
                for patient in &app.patients {
                    // The screen may show identity; logs may not.
                    ui.strong(patient.name.reveal());
                    for study in &patient.studies {
                        ui.label(format!(
                            "{} {}",
                            study.date.as_deref().unwrap_or("(no date)"),
                            study.description.as_deref().unwrap_or("")
                        ));
                        for series in &study.series {
                            for stack in &series.stacks {
                                let open =
                                    app.open.as_ref().is_some_and(|o| o.stack.id == stack.id);
                                let [w, h, n] = stack.geometry.dims;
                                let mut text = format!(
                                    "{} {} {} — {n} images, {w}x{h}",
                                    series.number.map(|n| n.to_string()).unwrap_or_default(),
                                    series.modality.as_deref().unwrap_or("?"),
                                    series.description.as_deref().unwrap_or("")
                                );
                                if open
                                    && let Some((done, total)) = app.load_progress()
                                    && done < total
                                {
                                    text += &format!(" (loading {done}/{total})");
                                }
                                if ui.selectable_label(open, text).double_clicked() {
                                    open_id = Some(stack.id.clone());
                                }
                            }
                        }
                    }
                }
            });
        });
    if let Some(id) = open_id {
        let ctx = ui.ctx().clone();
        app.open_stack(&id, &ctx);
    }
}

pub fn measurements_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    let mut delete = None;
    egui::Panel::right("measurements")
        .resizable(true)
        .default_size(240.0)
        .min_size(180.0)
        .show(ui, |ui| {
            ui.heading("Measurements");
            for m in &app.measurements {
                ui.horizontal(|ui| {
                    let text = match app.measurement_value(m) {
                        Some(v) => format_value(&v),
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
        app.measurements.retain(|m| m.id != id);
    }
}

pub fn format_value(v: &Value) -> String {
    match v {
        Value::LengthMm(mm) => format!("{mm:.1} mm"),
        Value::AngleDeg(d) => format!("{d:.1}°"),
        Value::Region {
            area_mm2,
            mean,
            sd,
            min,
            max,
            ..
        } => format!("{area_mm2:.0} mm² mean {mean:.1} sd {sd:.1} [{min:.0}, {max:.0}]"),
        Value::Point(Some(v)) => format!("{v:.0}"),
        Value::Point(None) => "outside".into(),
    }
}

pub fn viewport_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    egui::CentralPanel::default()
        .frame(egui::Frame::new().fill(Color32::BLACK))
        .show(ui, |ui| {
            let (rect, response) =
                ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
            app.viewport_rect = Some(rect);
            let ppp = ui.ctx().pixels_per_point();
            let size_px = [
                (rect.width() * ppp).round().max(1.0) as u32,
                (rect.height() * ppp).round().max(1.0) as u32,
            ];
            let (Some(viewport), Some(open)) = (&mut app.viewport, &app.open) else {
                ui.painter().text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    "open a folder, a file or a DICOMDIR (drop it here)",
                    FontId::proportional(16.0),
                    Color32::GRAY,
                );
                return;
            };
            let info = open.info.clone();
            let mut view = viewport.slice_view(&info, size_px[0], size_px[1]);
            let to_screen = |x: f64, y: f64| {
                Pos2::new(
                    rect.min.x + (x / f64::from(ppp)) as f32,
                    rect.min.y + (y / f64::from(ppp)) as f32,
                )
            };
            let patient_at = |pos: Pos2, view: &SliceView| {
                let x = f64::from((pos.x - rect.min.x) * ppp) - 0.5;
                let y = f64::from((pos.y - rect.min.y) * ppp) - 0.5;
                view.patient_at_pixel(x, y)
            };

            // Input.
            if response.hovered() {
                let (wheel_lines, zoom) = ui.input(|i| {
                    let lines: f32 = i
                        .raw
                        .events
                        .iter()
                        .filter_map(|e| match e {
                            egui::Event::MouseWheel {
                                unit,
                                delta,
                                modifiers,
                                ..
                            } if !modifiers.ctrl => Some(match unit {
                                egui::MouseWheelUnit::Point => delta.y / 40.0,
                                egui::MouseWheelUnit::Line => delta.y,
                                egui::MouseWheelUnit::Page => delta.y * 10.0,
                            }),
                            _ => None,
                        })
                        .sum();
                    (lines, i.zoom_delta())
                });
                if wheel_lines != 0.0 {
                    viewport.scroll(
                        &info,
                        -f64::from(wheel_lines.signum() * wheel_lines.abs().ceil()),
                    );
                    app.dirty = true;
                }
                if zoom != 1.0 {
                    viewport.zoom = (viewport.zoom * f64::from(zoom)).clamp(0.1, 50.0);
                    app.dirty = true;
                }
            }
            let delta = response.drag_delta() * ppp;
            if response.dragged_by(egui::PointerButton::Middle) {
                viewport.pan_pixels(&view, f64::from(delta.x), f64::from(delta.y));
                app.dirty = true;
            } else if response.dragged_by(egui::PointerButton::Secondary) {
                viewport.scroll(&info, f64::from(delta.y / 4.0).round());
                app.dirty = true;
            } else if response.dragged_by(egui::PointerButton::Primary)
                && app.tool == Tool::WindowLevel
            {
                viewport.drag_window(f64::from(delta.x), f64::from(delta.y));
                app.dirty = true;
            }
            if app.dirty {
                view = viewport.slice_view(&info, size_px[0], size_px[1]);
            }
            if response.clicked()
                && let Some(pos) = response.interact_pointer_pos()
            {
                let p = patient_at(pos, &view);
                match app.tool {
                    Tool::Length => match app.pending_point.take() {
                        None => app.pending_point = Some(p),
                        Some(a) => app.add_measurement(Shape::Length {
                            a: a.to_array(),
                            b: p.to_array(),
                        }),
                    },
                    Tool::Probe => app.add_measurement(Shape::Probe { at: p.to_array() }),
                    Tool::WindowLevel => {}
                }
            }
            let Some(viewport) = &app.viewport else {
                return;
            };
            let Some(open) = &app.open else { return };

            // Draw: render when something changed, then paint the texture.
            if let Some(gpu) = &mut app.gpu
                && let Some(texture) = &open.texture
            {
                let resized = gpu.target.as_ref().is_none_or(|t| t.2 != size_px);
                if resized {
                    let target = crate::render::gpu::ViewTarget::new(
                        &gpu.ctx,
                        size_px[0],
                        size_px[1],
                        viewport.display.depth,
                    );
                    let mut egui_renderer = gpu.egui_renderer.write();
                    if let Some((_, old, _)) = gpu.target.take() {
                        egui_renderer.free_texture(&old);
                    }
                    let id = egui_renderer.register_native_texture(
                        &gpu.ctx.device,
                        target.output_view(),
                        wgpu::FilterMode::Nearest,
                    );
                    gpu.target = Some((target, id, size_px));
                    app.dirty = true;
                }
                if let Some((target, id, _)) = &mut gpu.target {
                    if app.dirty {
                        let drawn = gpu
                            .renderer
                            .resample(&gpu.ctx, texture, &view, target)
                            .and_then(|()| {
                                gpu.renderer.display(&gpu.ctx, &viewport.display, target)
                            });
                        if let Err(e) = drawn {
                            app.status = format!("cannot draw: {e}");
                        }
                        app.dirty = false;
                    }
                    ui.painter().image(
                        *id,
                        rect,
                        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                        Color32::WHITE,
                    );
                }
            }
            overlay_ui(app, ui, rect, &view, &to_screen);
        });
}

fn overlay_ui(
    app: &OverreadApp,
    ui: &egui::Ui,
    rect: Rect,
    view: &SliceView,
    to_screen: &dyn Fn(f64, f64) -> Pos2,
) {
    let (Some(viewport), Some(open)) = (&app.viewport, &app.open) else {
        return;
    };
    let painter = ui.painter_at(rect);
    let font = FontId::monospace(13.0);
    let info = &open.info;
    let o = viewport.overlay(info);
    let m = 6.0;
    let mut top_left = String::new();
    if let Some(p) = app.patients.iter().find(|p| {
        p.studies.iter().any(|s| {
            s.series
                .iter()
                .any(|se| se.stacks.iter().any(|st| st.id == open.stack.id))
        })
    }) {
        top_left += &format!("{}\n{}", p.name.reveal(), p.id.reveal());
    }
    painter.text(
        rect.min + Vec2::new(m, m),
        Align2::LEFT_TOP,
        top_left,
        font.clone(),
        OVERLAY,
    );
    let mut bottom_left = match o.slice {
        Some((k, n)) => format!("Im {k}/{n}\n"),
        None => String::new(),
    };
    bottom_left += &format!("Pos {:.1} mm", o.position_mm);
    if o.slab_mm > 0.0 {
        bottom_left += &format!("\nSlab {:.1} mm {:?}", o.slab_mm, viewport.slab_mode);
    } else {
        bottom_left += &format!("\nThk {:.2} mm", info.spacing_mm[2]);
    }
    if let Some((done, total)) = app.load_progress()
        && done < total
    {
        bottom_left += &format!("\nloading {done}/{total}");
    }
    painter.text(
        Pos2::new(rect.min.x + m, rect.max.y - m),
        Align2::LEFT_BOTTOM,
        bottom_left,
        font.clone(),
        OVERLAY,
    );
    let mut bottom_right = match o.window {
        Some((w, l)) => format!("W {w:.0} L {l:.0}"),
        None => "VOI LUT".into(),
    };
    bottom_right += &format!("\nZoom {:.2}", o.zoom);
    if viewport.display.invert {
        bottom_right += "\nInverted";
    }
    painter.text(
        rect.max - Vec2::new(m, m),
        Align2::RIGHT_BOTTOM,
        bottom_right,
        font.clone(),
        OVERLAY,
    );
    if let Some([l, r, t, b]) = &o.markers {
        let big = FontId::proportional(18.0);
        painter.text(
            Pos2::new(rect.min.x + m, rect.center().y),
            Align2::LEFT_CENTER,
            l,
            big.clone(),
            OVERLAY,
        );
        painter.text(
            Pos2::new(rect.max.x - m, rect.center().y),
            Align2::RIGHT_CENTER,
            r,
            big.clone(),
            OVERLAY,
        );
        painter.text(
            Pos2::new(rect.center().x, rect.min.y + m),
            Align2::CENTER_TOP,
            t,
            big.clone(),
            OVERLAY,
        );
        painter.text(
            Pos2::new(rect.center().x, rect.max.y - m),
            Align2::CENTER_BOTTOM,
            b,
            big,
            OVERLAY,
        );
    }
    // Measurements that this plane cuts (within half a scroll step or half the slab).
    let tolerance = (viewport.slab_mm / 2.0).max(viewport.scroll_step_mm(info) / 2.0);
    let frame = &info.geometry.frame_of_reference_uid;
    for meas in app
        .measurements
        .iter()
        .filter(|m| visible_on(m, view, tolerance, frame))
    {
        let projected: Vec<((f64, f64), f64)> = meas
            .shape
            .points()
            .iter()
            .map(|p| project(view, *p))
            .collect();
        let screen: Vec<Pos2> = projected
            .iter()
            .map(|((x, y), _)| to_screen(*x - 0.5, *y - 0.5))
            .collect();
        for w in screen.windows(2) {
            painter.line_segment([w[0], w[1]], Stroke::new(1.5, MEASURE));
        }
        for p in &screen {
            painter.circle_stroke(*p, 3.0, Stroke::new(1.5, MEASURE));
        }
        if let (Some(last), Some(v)) = (screen.last(), app.measurement_value(meas)) {
            painter.text(
                *last + Vec2::new(6.0, -6.0),
                Align2::LEFT_BOTTOM,
                format_value(&v),
                font.clone(),
                MEASURE,
            );
        }
    }
    if let Some(p) = app.pending_point {
        let ((x, y), _) = project(view, p.to_array());
        painter.circle_stroke(to_screen(x - 0.5, y - 0.5), 3.0, Stroke::new(1.5, MEASURE));
    }
    // Scale bar: 1, 2 or 5 x 10^n mm, at most a quarter of the width, bottom centre-right.
    let width_mm = f64::from(view.width) * view.pixel_mm;
    let mut bar_mm = 1.0;
    for e in -1..5 {
        for s in [1.0, 2.0, 5.0] {
            let v = s * 10f64.powi(e);
            if v <= width_mm / 4.0 {
                bar_mm = v;
            }
        }
    }
    let len_px = bar_mm / view.pixel_mm;
    let y = f64::from(view.height) - 40.0;
    let x1 = f64::from(view.width) * 0.75;
    let a = to_screen(x1 - len_px, y);
    let b = to_screen(x1, y);
    painter.line_segment([a, b], Stroke::new(1.5, OVERLAY));
    painter.text(
        Pos2::new((a.x + b.x) / 2.0, a.y - 3.0),
        Align2::CENTER_BOTTOM,
        format!("{bar_mm} mm"),
        font,
        OVERLAY,
    );
}

pub fn bindings_ui(app: &mut OverreadApp, ctx: &egui::Context) {
    let mut open = app.show_bindings;
    egui::Window::new("Keys").open(&mut open).show(ctx, |ui| {
        egui::Grid::new("bindings").striped(true).show(ui, |ui| {
            for (key, action) in &app.bindings {
                ui.monospace(key.name());
                ui.label(action.describe());
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
