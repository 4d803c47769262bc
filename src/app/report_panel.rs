//! The report panel: a template, the findings and impression being written, dictation into
//! them (the microphone or a WAV file, transcribed by whisper on a background thread, voice
//! commands applied), measurements inserted with their values and linked, words whisper was
//! unsure of to confirm, and the pre-sign checks, live; then signing: the exact canonical text
//! that will be signed is shown, the key (sealed under a passphrase) is opened on a background
//! thread, the signed report goes into the durable outbox and to the case server, and the
//! receipt is shown. Signing is only ever this button: no voice command signs. With checks
//! open, signing needs the radiologist to tick that they sign anyway.

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

/// Where signed reports go (from the settings).
#[derive(Debug, Clone, Default)]
pub struct SignSetup {
    /// The case server, `https://host:port` (plain `http://` only on loopback).
    pub server: Option<String>,
    /// A CA certificate to trust for it (a self-signed server).
    pub server_ca: Option<PathBuf>,
    /// The radiologist's sealed signing key (`overread key new`).
    pub key_file: Option<PathBuf>,
    /// The outbox folder (default: the data folder's `outbox`).
    pub outbox: Option<PathBuf>,
}

/// What the radiologist types to sign (cleared after each attempt: passphrase, password).
#[derive(Debug, Clone, Default)]
pub struct SignForm {
    pub case_id: String,
    pub user: String,
    pub display_name: String,
    pub passphrase: String,
    pub password: String,
    /// Sign although checks are open, knowingly.
    pub override_checks: bool,
}

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
    pub setup: SignSetup,
    pub form: SignForm,
    /// Study Instance UIDs of the open study (the report is about them).
    pub study_uids: Vec<String>,
    sign_job: Option<Receiver<Result<case_protocol::Receipt, String>>>,
    /// The server's receipt of the last signed report.
    pub receipt: Option<case_protocol::Receipt>,
    pub sign_message: String,
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
            setup: SignSetup::default(),
            form: SignForm::default(),
            study_uids: Vec::new(),
            sign_job: None,
            receipt: None,
            sign_message: String::new(),
        }
    }

    /// Signing is running.
    pub fn signing(&self) -> bool {
        self.sign_job.is_some()
    }

    /// The report as it would be signed now (key id from the key file; time now).
    pub fn report_to_sign(&self) -> Result<case_protocol::Report, String> {
        let key_file = self
            .setup
            .key_file
            .as_ref()
            .ok_or("no signing key in the settings (signing_key)")?;
        let sealed = crate::cases::EncryptedKey::read(key_file).map_err(|e| e.to_string())?;
        Ok(case_protocol::Report {
            case_id: self.form.case_id.trim().to_string(),
            kind: case_protocol::ReportKind::Final,
            author: case_protocol::Author {
                user_id: self.form.user.trim().to_string(),
                display_name: self.form.display_name.trim().to_string(),
            },
            key_id: sealed.key_id,
            signed_at: case_protocol::rfc3339_utc(case_protocol::unix_now()),
            study_instance_uids: self.study_uids.clone(),
            findings: self.draft.findings.trim().to_string(),
            impression: self.draft.impression.trim().to_string(),
            measurements: self
                .linked
                .iter()
                .map(|m| case_protocol::ReportMeasurement {
                    label: m.label.clone(),
                    kind: if m.unit == "mm" { "length" } else { "angle" }.into(),
                    value: (m.value * 10.0).round() / 10.0,
                    unit: m.unit.clone(),
                    series_instance_uid: None,
                    frame_of_reference_uid: None,
                    points_mm: Vec::new(),
                })
                .collect(),
        })
    }

    /// Sign the report and send it through the outbox, on a background thread; the receipt (or
    /// why there is none yet) comes back to [`ReportState::poll`].
    pub fn sign_and_send(&mut self, ctx: &egui::Context) {
        if self.sign_job.is_some() {
            return;
        }
        let report = match self.report_to_sign() {
            Ok(r) => r,
            Err(e) => {
                self.sign_message = e;
                return;
            }
        };
        let Some(server) = self.setup.server.clone() else {
            self.sign_message = "no case server in the settings (case_server)".into();
            return;
        };
        let setup = self.setup.clone();
        let passphrase = std::mem::take(&mut self.form.passphrase);
        let password = std::mem::take(&mut self.form.password);
        let user = report.author.user_id.clone();
        let (tx, rx) = channel();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let result = sign_and_send(report, &setup, &server, &user, &passphrase, &password);
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        self.sign_job = Some(rx);
        self.receipt = None;
        self.sign_message = "signing...".into();
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
        if let Some(rx) = &self.sign_job
            && let Ok(result) = rx.try_recv()
        {
            self.sign_job = None;
            match result {
                Ok(receipt) => {
                    self.sign_message = format!(
                        "Signed and received by the case server at {}; report {}",
                        receipt.received_at, receipt.report_hash
                    );
                    self.receipt = Some(receipt);
                }
                Err(e) => self.sign_message = e,
            }
        }
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

/// The background half of signing: open the key, sign, put the signed report in the outbox
/// (on disk before anything is sent), log in, send it; the receipt, or why it waits.
fn sign_and_send(
    report: case_protocol::Report,
    setup: &SignSetup,
    server: &str,
    user: &str,
    passphrase: &str,
    password: &str,
) -> Result<case_protocol::Receipt, String> {
    use crate::cases::{CaseClient, Delivery, EncryptedKey, Outbox};
    let key_file = setup.key_file.as_ref().ok_or("no signing key")?;
    let key = EncryptedKey::read(key_file)
        .and_then(|sealed| sealed.open(passphrase))
        .map_err(|e| e.to_string())?;
    let signed = case_protocol::sign_report(report, &key).map_err(|e| e.to_string())?;
    let outbox = Outbox::open(&setup.outbox.clone().unwrap_or_else(Outbox::default_dir))
        .map_err(|e| format!("outbox: {e}"))?;
    let hash = outbox.enqueue(&signed)?;
    let kept = |why: String| {
        format!(
            "Signed; not yet received by the server ({why}). It is kept in {} and will be sent.",
            outbox.dir().display()
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| kept(e.to_string()))?;
    runtime.block_on(async {
        let mut client =
            CaseClient::new(server, setup.server_ca.as_deref()).map_err(|e| kept(e.to_string()))?;
        client
            .login(user, password)
            .await
            .map_err(|e| kept(e.to_string()))?;
        match outbox
            .deliver_one(&client, &hash, 3, std::time::Duration::from_millis(300))
            .await
        {
            Delivery::Delivered(receipt) => Ok(receipt),
            Delivery::Refused {
                status, message, ..
            } => Err(format!(
                "The case server refused the report ({status}): {message}"
            )),
            Delivery::Pending { error, .. } => Err(kept(error)),
        }
    })
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
            // Checks and signing stay in view below; the editors scroll above them. (The bottom
            // panel comes first: it takes its place from the whole panel.)
            egui::Panel::bottom("report-sign")
                .resizable(false)
                .show(ui, |ui| {
                    let checks = pre_sign_checks(
                        &r.draft.findings,
                        &r.draft.impression,
                        &r.linked,
                        &r.unsure,
                    );
                    if checks.is_empty() {
                        ui.label("No open checks: ready to sign.");
                    } else {
                        ui.label(format!("Before signing ({})", checks.len()));
                        egui::ScrollArea::vertical()
                            .id_salt("checks")
                            .max_height(110.0)
                            .show(ui, |ui| {
                                for c in &checks {
                                    ui.colored_label(
                                        egui::Color32::from_rgb(230, 160, 60),
                                        &c.message,
                                    );
                                }
                            });
                        ui.checkbox(
                            &mut r.form.override_checks,
                            "I have seen these checks and sign anyway",
                        );
                    }
                    ui.separator();
                    ui.strong("Signing");
                    egui::Grid::new("sign").num_columns(2).show(ui, |ui| {
                        ui.label("Case");
                        ui.text_edit_singleline(&mut r.form.case_id);
                        ui.end_row();
                        ui.label("User");
                        ui.text_edit_singleline(&mut r.form.user);
                        ui.end_row();
                        ui.label("Name");
                        ui.text_edit_singleline(&mut r.form.display_name);
                        ui.end_row();
                        ui.label("Key passphrase");
                        ui.add(egui::TextEdit::singleline(&mut r.form.passphrase).password(true));
                        ui.end_row();
                        ui.label("Server password");
                        ui.add(egui::TextEdit::singleline(&mut r.form.password).password(true));
                        ui.end_row();
                    });
                    egui::CollapsingHeader::new("The text to be signed").show(ui, |ui| {
                        let text = r
                            .report_to_sign()
                            .and_then(|rep| {
                                case_protocol::canonical_bytes(&rep).map_err(|e| e.to_string())
                            })
                            .map(|b| String::from_utf8_lossy(&b).into_owned());
                        egui::ScrollArea::vertical()
                            .id_salt("canonical")
                            .max_height(160.0)
                            .show(ui, |ui| match text {
                                Ok(t) => {
                                    ui.monospace(t);
                                }
                                Err(e) => {
                                    ui.label(e);
                                }
                            });
                    });
                    let allowed = (checks.is_empty() || r.form.override_checks)
                        && !r.signing()
                        && !r.form.case_id.trim().is_empty();
                    if ui
                        .add_enabled(allowed, egui::Button::new("Sign and send"))
                        .clicked()
                    {
                        r.sign_and_send(&ctx);
                    }
                    if !r.sign_message.is_empty() {
                        ui.label(&r.sign_message);
                    }
                });
            ui.heading("Report");
            egui::ScrollArea::vertical()
                .id_salt("report-editors")
                .show(ui, |ui| {
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
                    let edited = ui
                        .add(
                            egui::TextEdit::multiline(&mut r.draft.findings)
                                .desired_rows(10)
                                .desired_width(f32::INFINITY),
                        )
                        .changed();
                    if edited {
                        r.draft.typed(crate::report::Section::Findings);
                    }
                    ui.label("Impression");
                    let edited = ui
                        .add(
                            egui::TextEdit::multiline(&mut r.draft.impression)
                                .desired_rows(3)
                                .desired_width(f32::INFINITY),
                        )
                        .changed();
                    if edited {
                        r.draft.typed(crate::report::Section::Impression);
                    }
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
                            if ui.button(format!("Insert #{id} {text}")).clicked() {
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
                });
        });
}
