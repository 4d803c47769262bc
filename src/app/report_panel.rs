//! The report panel: a template, the findings and impression being written, dictation into
//! them (the microphone or a WAV file, transcribed by whisper on a background thread, voice
//! commands applied), measurements inserted with their values and linked, words whisper was
//! unsure of to confirm, and the pre-sign checks, live. Signing from the panel is not built yet
//! (the CLI signs: `overread report sign`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use eframe::egui;

use crate::dictation::capture::Recorder;
use crate::dictation::stt::{Engine, Options, find_model};
use crate::dictation::{Clip, commands, read_wav, vocabulary};
use crate::report::{Draft, LinkedMeasurement, Template, UnsureWord, pre_sign_checks, templates};
use crate::viewer::measure::Value;

use super::OverreadApp;

/// Words under this confidence are listed to confirm.
pub const UNSURE_BELOW: f32 = 0.5;

type Job = Receiver<Result<(Arc<Engine>, crate::dictation::Transcript), String>>;

/// The panel's state.
pub struct ReportState {
    pub open: bool,
    pub templates: Vec<Template>,
    pub template: usize,
    pub draft: Draft,
    pub linked: Vec<LinkedMeasurement>,
    pub unsure: Vec<UnsureWord>,
    /// The model named in the settings (else the usual search).
    model: Option<PathBuf>,
    /// The input device named in the settings (else the default input).
    device: Option<String>,
    engine: Option<Arc<Engine>>,
    recorder: Option<Recorder>,
    job: Option<Job>,
    pub message: String,
}

impl std::fmt::Debug for ReportState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportState")
            .field("draft", &self.draft)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl ReportState {
    pub fn new(model: Option<PathBuf>, device: Option<String>) -> ReportState {
        ReportState {
            open: false,
            templates: templates(),
            template: 0,
            draft: Draft::default(),
            linked: Vec::new(),
            unsure: Vec::new(),
            model,
            device,
            engine: None,
            recorder: None,
            job: None,
            message: String::new(),
        }
    }

    /// A transcription is running.
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    pub fn recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// Start the draft over from the chosen template.
    pub fn use_template(&mut self) {
        if let Some(t) = self.templates.get(self.template) {
            self.draft = Draft::from_template(t);
            self.linked.clear();
            self.unsure.clear();
        }
    }

    /// Transcribe `clip` on a background thread (the model is loaded there the first time).
    pub fn dictate(&mut self, clip: Clip, ctx: &egui::Context) {
        if self.job.is_some() {
            self.message = "still transcribing the last dictation".into();
            return;
        }
        let (tx, rx) = channel();
        let engine = self.engine.clone();
        let model = self.model.clone();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let result = (|| {
                let engine = match engine {
                    Some(e) => e,
                    None => {
                        let path = find_model(model.as_deref()).map_err(|e| e.to_string())?;
                        Arc::new(Engine::load(&path).map_err(|e| e.to_string())?)
                    }
                };
                let options = Options::overread(Some(vocabulary::default_prompt()));
                let t = engine
                    .transcribe(&clip, &options)
                    .map_err(|e| e.to_string())?;
                Ok((engine, t))
            })();
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        self.job = Some(rx);
        self.message = "transcribing...".into();
    }

    /// Dictate a WAV file (tests and scripted use).
    pub fn dictate_wav(&mut self, path: &std::path::Path, ctx: &egui::Context) {
        match read_wav(path) {
            Ok(clip) => self.dictate(clip, ctx),
            Err(e) => self.message = e.to_string(),
        }
    }

    fn toggle_recording(&mut self, ctx: &egui::Context) {
        match self.recorder.take() {
            Some(r) => {
                let clip = r.stop();
                self.dictate(clip, ctx);
            }
            None => match Recorder::start(self.device.as_deref(), None) {
                Ok(r) => {
                    self.recorder = Some(r);
                    self.message = "listening...".into();
                }
                Err(e) => self.message = e.to_string(),
            },
        }
    }

    /// Take a finished transcription: commands applied, text into the draft, unsure words
    /// listed.
    pub fn poll(&mut self) {
        let Some(rx) = &self.job else { return };
        let Ok(result) = rx.try_recv() else { return };
        self.job = None;
        match result {
            Ok((engine, t)) => {
                self.engine = Some(engine);
                if self.draft.section.is_none() && self.draft.findings.is_empty() {
                    self.draft.section = Some(crate::report::Section::Findings);
                }
                self.draft.apply(
                    &commands::parse(&t.text),
                    &self.templates,
                    &Default::default(),
                );
                for w in t.words.iter().filter(|w| w.confidence < UNSURE_BELOW) {
                    self.unsure.push(UnsureWord {
                        text: w.text.clone(),
                        confidence: w.confidence,
                        resolved: false,
                    });
                }
                self.message = format!(
                    "{:.1} s of speech transcribed in {:.2} s",
                    t.audio_s, t.compute_s
                );
            }
            Err(e) => self.message = e,
        }
    }
}

pub fn report_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    if !app.report.open {
        return;
    }
    let ctx = ui.ctx().clone();
    app.report.poll();
    let values: Vec<(u64, Value)> = app
        .measurements
        .iter()
        .filter_map(|m| app.measurement_value(m).map(|v| (m.id, v)))
        .collect();
    let r = &mut app.report;
    egui::Panel::right("report")
        .resizable(true)
        .default_size(380.0)
        .min_size(280.0)
        .show(ui, |ui| {
            ui.heading("Report");
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.horizontal(|ui| {
                    let title = r
                        .templates
                        .get(r.template)
                        .map(|t| t.title.clone())
                        .unwrap_or_default();
                    egui::ComboBox::from_id_salt("template")
                        .selected_text(title)
                        .show_ui(ui, |ui| {
                            for (i, t) in r.templates.iter().enumerate() {
                                ui.selectable_value(&mut r.template, i, &t.title);
                            }
                        });
                    if ui.button("Use template").clicked() {
                        r.use_template();
                    }
                });
                ui.label("Findings");
                ui.add(
                    egui::TextEdit::multiline(&mut r.draft.findings)
                        .desired_rows(10)
                        .desired_width(f32::INFINITY),
                );
                ui.label("Impression");
                ui.add(
                    egui::TextEdit::multiline(&mut r.draft.impression)
                        .desired_rows(3)
                        .desired_width(f32::INFINITY),
                );
                ui.horizontal(|ui| {
                    let label = if r.recording() {
                        "Stop dictation"
                    } else {
                        "Dictate"
                    };
                    if ui
                        .add_enabled(!r.busy(), egui::Button::new(label))
                        .clicked()
                    {
                        r.toggle_recording(&ctx);
                    }
                    if let Some(rec) = &r.recorder {
                        let level = ((rec.level_dbfs() + 60.0) / 60.0).clamp(0.0, 1.0);
                        ui.add(egui::ProgressBar::new(level).desired_width(80.0));
                        ctx.request_repaint();
                    }
                    ui.label(&r.message);
                });
                if !values.is_empty() {
                    ui.separator();
                    ui.label("Insert a measurement");
                    for (id, v) in &values {
                        let (value, unit) = match v {
                            Value::LengthMm(mm) => (*mm, "mm"),
                            Value::AngleDeg(d) => (*d, "deg"),
                            _ => continue,
                        };
                        let text = super::panels::format_value(v);
                        if ui.button(format!("#{id} {text}")).clicked() {
                            let shown = if unit == "mm" {
                                format!("{value:.1} mm")
                            } else {
                                format!("{value:.1} degrees")
                            };
                            r.draft.apply(
                                &[commands::Piece::Text(shown)],
                                &r.templates,
                                &Default::default(),
                            );
                            r.linked.push(LinkedMeasurement {
                                id: format!("#{id}"),
                                label: String::new(),
                                value,
                                unit: unit.into(),
                            });
                        }
                    }
                }
                if !r.linked.is_empty() {
                    ui.label("Linked measurements (name each as the text does)");
                    for m in &mut r.linked {
                        ui.horizontal(|ui| {
                            ui.label(format!("{} {:.1} {}", m.id, m.value, m.unit));
                            ui.text_edit_singleline(&mut m.label);
                        });
                    }
                }
                let open_unsure = r.unsure.iter().filter(|w| !w.resolved).count();
                if open_unsure > 0 {
                    ui.separator();
                    ui.label("Words to confirm");
                    for w in r.unsure.iter_mut().filter(|w| !w.resolved) {
                        ui.horizontal(|ui| {
                            ui.label(format!("{} ({:.0}%)", w.text, 100.0 * w.confidence));
                            if ui.small_button("OK").clicked() {
                                w.resolved = true;
                            }
                        });
                    }
                }
                ui.separator();
                let checks =
                    pre_sign_checks(&r.draft.findings, &r.draft.impression, &r.linked, &r.unsure);
                if checks.is_empty() {
                    ui.label("No open checks: ready to sign.");
                } else {
                    ui.label(format!("Before signing ({})", checks.len()));
                    for c in &checks {
                        ui.colored_label(egui::Color32::from_rgb(230, 160, 60), &c.message);
                    }
                }
            });
        });
}
