//! A scripted reading for the frame-time benchmark (`overread bench-reading`): scroll through
//! the stack, drag window/level, switch to MPR and drag the crosshair, one step per frame,
//! recording the time between frames (render, paint and present included). When done it
//! prints p50/p99 per phase as JSON and closes the window.

use std::path::PathBuf;
use std::time::Instant;

use eframe::egui;
use serde::Serialize;

/// One step of the script, applied at the start of a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Scroll one slice (wrapping at the ends).
    Scroll,
    /// Drag the window by (dx, dy) pixels.
    Window(f64, f64),
    /// Switch to the MPR layout.
    Mpr,
    /// Move the MPR point by (dx, dy) mm in the coronal plane (x and z).
    Crosshair(f64, f64),
    /// Nothing: a frame of an empty window ([`EmptyWindow`]).
    Idle,
}

/// The standard reading: 500 scroll steps, 200 window drags, 200 crosshair moves.
pub fn standard() -> Vec<(&'static str, Step)> {
    let mut steps = Vec::new();
    steps.extend((0..500).map(|_| ("scroll", Step::Scroll)));
    steps.extend((0..200).map(|i| {
        let d = if (i / 50) % 2 == 0 { 4.0 } else { -4.0 };
        ("window_level", Step::Window(d, -d / 2.0))
    }));
    steps.push(("mpr_switch", Step::Mpr));
    steps.extend((0..200).map(|i| {
        let d = if (i / 50) % 2 == 0 { 0.5 } else { -0.5 };
        ("mpr_crosshair", Step::Crosshair(d, d))
    }));
    steps
}

/// Frame times of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTimes {
    pub phase: String,
    pub frames: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Every frame's time, in the order they were drawn (where the slow ones fall: a burst
    /// while something else ran, or spread evenly).
    pub frame_ms: Vec<f64>,
}

/// A running script.
#[derive(Debug)]
pub struct Script {
    steps: Vec<(&'static str, Step)>,
    next: usize,
    last_frame: Option<Instant>,
    /// (phase, frame time in ms) of each completed frame.
    times: Vec<(&'static str, f64)>,
    /// Frames to wait before the first step (the series must be loaded and drawn).
    pub warmup: usize,
}

impl Script {
    pub fn new(steps: Vec<(&'static str, Step)>) -> Script {
        Script {
            steps,
            next: 0,
            last_frame: None,
            times: Vec::new(),
            warmup: 5,
        }
    }

    /// The step for this frame (recording the time since the last one), or `None` when done.
    pub fn frame(&mut self) -> Option<Step> {
        let now = Instant::now();
        if let Some(last) = self.last_frame
            && self.next > 0
            && self.next <= self.steps.len()
        {
            let phase = self.steps[self.next - 1].0;
            self.times
                .push((phase, now.duration_since(last).as_secs_f64() * 1e3));
        }
        self.last_frame = Some(now);
        let step = self.steps.get(self.next).map(|s| s.1);
        self.next += 1;
        step
    }

    pub fn done(&self) -> bool {
        self.next > self.steps.len()
    }

    /// p50/p99/max per phase, in the order phases first appear.
    pub fn results(&self) -> Vec<PhaseTimes> {
        let mut phases: Vec<&str> = Vec::new();
        for (p, _) in &self.times {
            if !phases.contains(p) {
                phases.push(p);
            }
        }
        phases
            .into_iter()
            .map(|phase| {
                let mut t: Vec<f64> = self
                    .times
                    .iter()
                    .filter(|(p, _)| *p == phase)
                    .map(|(_, t)| *t)
                    .collect();
                let frame_ms = t.iter().map(|t| (t * 100.0).round() / 100.0).collect();
                t.sort_by(f64::total_cmp);
                let pct = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
                PhaseTimes {
                    phase: phase.to_string(),
                    frames: t.len(),
                    p50_ms: pct(0.5),
                    p99_ms: pct(0.99),
                    max_ms: t.last().copied().unwrap_or(0.0),
                    frame_ms,
                }
            })
            .collect()
    }
}

/// Print the results of a finished script as JSON (and write them to `out`), then close the
/// window.
pub fn finish(
    script: &Script,
    out: Option<&PathBuf>,
    ctx: &egui::Context,
    adapter: Option<String>,
) {
    let json = serde_json::json!({
        "window_points": ctx.content_rect().size().to_string(),
        "pixels_per_point": ctx.pixels_per_point(),
        "adapter": adapter,
        "phases": script.results(),
    });
    println!("{json:#}");
    if let Some(out) = out
        && let Err(e) = std::fs::write(out, format!("{json:#}"))
    {
        eprintln!("writing {}: {e}", out.display());
    }
    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
}

/// The floor under every frame of the reading: a window of the same size and options that
/// draws nothing, so that each frame is only egui's clear of the window and its present.
/// `overread bench-reading --empty-window`.
#[derive(Debug)]
pub struct EmptyWindow {
    pub script: Script,
    pub out: Option<PathBuf>,
    pub done: bool,
}

impl EmptyWindow {
    /// 300 frames, after the usual warm-up.
    pub fn new(out: Option<PathBuf>) -> EmptyWindow {
        EmptyWindow {
            script: Script::new(vec![("empty_window", Step::Idle); 300]),
            out,
            done: false,
        }
    }
}

impl eframe::App for EmptyWindow {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if self.done {
            return;
        }
        ctx.request_repaint();
        if self.script.warmup > 0 {
            self.script.warmup -= 1;
            return;
        }
        if self.script.frame().is_none() {
            let adapter = frame
                .wgpu_render_state()
                .map(|rs| crate::render::gpu::describe_adapter(&rs.adapter.get_info()));
            finish(&self.script, self.out.as_ref(), &ctx, adapter);
            self.done = true;
        }
    }
}
