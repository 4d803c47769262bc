//! The report panel: a template, the findings and impression being written, dictation into
//! them (the microphone by a held key or mouse button or the Dictate toggle, or a WAV file,
//! transcribed by whisper on a background thread, voice commands applied), the radiologist's
//! saved macros, measurements inserted with their values and a link back to the image, words
//! whisper was unsure of marked in the text (a click replays what was said there), and the
//! pre-sign checks, live; then signing: the exact canonical text that will be signed is shown,
//! the key (sealed under a passphrase) is opened on a background thread, the signed report goes
//! into the durable outbox and to the case server, and the receipt is shown; after it, addenda.
//! Signing is only ever this button: no voice command signs. With checks open, signing needs
//! the radiologist to tick that they sign anyway.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use eframe::egui;

use crate::cases::{Backoff, CaseClient, Outbox, OutboxStatus, OutboxWorker};
use crate::dictation::capture::Recorder;
use crate::dictation::playback::{Player, excerpt};
use crate::dictation::stt::{Engine, Options, find_model};
use crate::dictation::{Clip, commands, macros, read_wav, vocabulary};
use crate::report::kept::{
    DraftContent, DraftKey, DraftRemover, DraftStore, KeptDraft, KeptTakenBack,
};
use crate::report::marks::locate_in_order;
use crate::report::{
    CheckKind, Draft, Edit, LinkedMeasurement, MeasurementSource, Section, Template, UnsureWord,
    pre_sign_checks, templates,
};
use crate::viewer::measure::{Shape, Value};

use super::OverreadApp;

/// Words under this confidence are marked to confirm (unless the settings say otherwise).
pub const UNSURE_BELOW: f32 = 0.5;

/// Audio played around an unsure word, before and after it (a word alone is hard to hear).
const REPLAY_PAD_S: f64 = 0.15;

type Job = Receiver<Result<(Arc<Engine>, crate::dictation::Transcript), String>>;

/// Where signed reports go (from the settings), and the login the worklist made.
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
    /// The session token of the worklist's sign-in: signing needs no password then.
    pub token: Option<String>,
    /// The user that login is for (a report goes with its author's login only).
    pub token_user: Option<String>,
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

/// How dictation is started and stopped besides the Dictate toggle: held down, it records;
/// let go, it transcribes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushToTalk {
    pub key: Option<egui::Key>,
    pub button: Option<egui::PointerButton>,
    /// It was held in the last frame.
    held: bool,
}

impl PushToTalk {
    pub fn new(key: Option<egui::Key>, button: Option<egui::PointerButton>) -> PushToTalk {
        PushToTalk {
            key,
            button,
            held: false,
        }
    }
}

/// A final report that was signed and received: what addenda to its case amend.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedFinal {
    pub case_id: String,
    pub report_hash: String,
    pub findings: String,
    pub impression: String,
}

/// A report signed and put in the outbox (on disk): received by the server at once, or kept
/// there (why) until the outbox's sender delivers it.
#[derive(Debug)]
struct Signed {
    report: case_protocol::Report,
    hash: String,
    receipt: Result<case_protocol::Receipt, String>,
    /// The login signing made with the typed password: the outbox's sender takes it when
    /// none runs yet (no worklist sign-in), so a kept report is sent without one.
    login: Option<String>,
    /// What became of the report this one amends, when it was still in the outbox and went
    /// first.
    others: Vec<crate::cases::Delivery>,
}

/// A signed report kept in the outbox: its hash, and what the editors held when it was
/// signed (text, linked measurements, unsure words), to give back if the server refuses it.
#[derive(Debug, Clone)]
struct Awaiting {
    hash: String,
    case_id: String,
    findings: String,
    impression: String,
    linked: Vec<LinkedMeasurement>,
    unsure: Vec<UnsureWord>,
    /// The dictations its unsure words replay from (their `audio` indexes this list).
    clips: Vec<Arc<Clip>>,
}

/// Why a report is not signed (or was refused for good), and what became of the report it
/// amends when that went first.
#[derive(Debug)]
struct Unsigned {
    why: String,
    others: Vec<crate::cases::Delivery>,
    /// The report the server refused for good (kept in the outbox's refused folder): its
    /// hash and case.
    refused: Option<(String, String)>,
}

impl From<String> for Unsigned {
    fn from(why: String) -> Unsigned {
        Unsigned {
            why,
            others: Vec::new(),
            refused: None,
        }
    }
}

/// A refused report whose text is back in the editors: not offered again while it is, and
/// set aside in the outbox (`refused/taken-back`) once a report of its case is signed. If
/// the draft is dropped instead (another case, a template, the app closed) it is offered
/// again: its file never left the refused folder.
#[derive(Debug, Clone)]
struct TakenBack {
    hash: String,
    case_id: String,
}

/// Settings the panel takes from the settings file.
#[derive(Debug, Clone, Default)]
pub struct PanelSettings {
    pub model: Option<PathBuf>,
    pub input_device: Option<String>,
    pub output_device: Option<String>,
    pub unsure_below: Option<f32>,
    pub macros_dir: Option<PathBuf>,
    pub push_to_talk: PushToTalk,
    /// Where unsigned drafts are kept (`None`: not kept on disk).
    pub drafts_dir: Option<PathBuf>,
}

/// How long a failed read of the signing key file stands before it is tried again.
const KEY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the draft is kept on disk when it changed: a crash loses at most this much.
const KEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Why the report cannot be signed while a dictation is landing.
const DICTATION_FIRST: &str = "signing waits for the dictation: its words are not in the report yet (stop it and let it land)";

/// How long leaving a case or study waits for its draft to be on disk.
const LEAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The panel's state.
pub struct ReportState {
    pub open: bool,
    pub templates: Vec<Template>,
    pub template: usize,
    pub draft: Draft,
    pub linked: Vec<LinkedMeasurement>,
    pub unsure: Vec<UnsureWord>,
    /// The audio of each dictation of this report (in memory only), for replaying words.
    clips: Vec<Arc<Clip>>,
    /// The dictation being transcribed.
    pending_clip: Option<Arc<Clip>>,
    /// A dictation made while another was transcribed: transcribed next.
    queued: Option<Clip>,
    player: Option<Player>,
    settings: PanelSettings,
    pub push_to_talk: PushToTalk,
    /// Saved macros by spoken name.
    pub macros: BTreeMap<String, String>,
    pub macro_name: String,
    pub macro_text: String,
    pub macro_message: String,
    engine: Option<Arc<Engine>>,
    recorder: Option<Recorder>,
    job: Option<Job>,
    pub message: String,
    pub setup: SignSetup,
    pub form: SignForm,
    /// The studies the report is about when no case from the worklist is open: the open
    /// study's while no case is named; for a case typed in, those it was first shown with.
    pub study_uids: Vec<String>,
    /// The study of the case opened from the worklist: the report is about it, whatever else
    /// is put on screen beside it.
    case_studies: Option<Vec<String>>,
    /// The studies last put on screen (`show_studies`): for a case typed in, the report stays
    /// about the study it was first shown with, and the signing area offers these instead
    /// where they differ.
    screen_studies: Vec<String>,
    /// The case was opened from the worklist: the Case field shows it and cannot be edited
    /// (until a study is opened from a folder or the radiologist signs out).
    from_worklist: bool,
    /// Signing in the background: the report that was signed and what became of it.
    sign_job: Option<Receiver<Result<Signed, Unsigned>>>,
    /// Reports signed and kept in the outbox, waiting for their receipts.
    awaiting: Vec<Awaiting>,
    /// The checks the reader saw when ticking "sign anyway": another set unticks it.
    override_seen: Vec<String>,
    /// The server's receipt of the last signed report or addendum.
    pub receipt: Option<case_protocol::Receipt>,
    pub sign_message: String,
    /// The canonical text to be signed is shown.
    pub show_signed_text: bool,
    /// The final reports known signed and received (or kept in the outbox), by case: while
    /// the Case field names one of these cases the draft is an addendum to its final
    /// ([`ReportState::amending`]). Forgotten at sign-out; a refused one is dropped.
    finals: std::collections::HashMap<String, SignedFinal>,
    /// The outbox's background sender, running once the worklist has signed in.
    outbox: Option<OutboxWorker>,
    pub outbox_message: String,
    /// Signed reports the server refused for good, kept in the outbox's refused folder, that
    /// no draft has taken back yet: read from disk when first shown, after each refusal and
    /// after each taking back (`None`: not read yet).
    refused: Option<Vec<crate::cases::RefusedReport>>,
    /// How many refusals the outbox's sender had reported when `refused` was read.
    refusals_seen: usize,
    /// Refused reports whose text is in the editors now.
    taken_back: Vec<TakenBack>,
    /// Counts the drafts dropped ([`ReportState::forget_report`]): a signing that comes back
    /// to another draft than the one it signed changes nothing in the editors.
    draft_generation: u64,
    /// `draft_generation` when the signing in flight started.
    sign_generation: u64,
    /// The signing key's id, once read ([`ReportState::key_id`]).
    key_id: std::cell::OnceCell<String>,
    /// The last failure to read it, and when: asked again at most every
    /// [`KEY_RETRY`] (a key file made meanwhile is then found), not on every frame.
    key_id_failed: std::cell::RefCell<Option<(std::time::Instant, String)>>,
    /// Unsigned drafts kept on disk, by case (or study while no case is named).
    drafts: Option<DraftStore>,
    /// The key the draft in the editors is kept under (its file written, or given back
    /// from), and its id, for `kept_generation`: a draft only ever writes its own file.
    kept_as: Option<DraftKey>,
    draft_id: u64,
    /// The draft's author (see `own_draft`).
    draft_user: String,
    kept_generation: u64,
    /// The kept draft being signed (its file is removed by the signing once the report is in
    /// the outbox).
    signing_kept: Option<(DraftKey, u64)>,
    /// The name the draft being signed was first kept under (its author then): its drafts of
    /// the case go with the signing too, whatever the editors hold by the time it ends.
    signing_author: String,
    /// The final report the draft given back last amended when it was kept.
    restored_amends: Option<Option<String>>,
    /// When the draft was last written (at most every [`KEEP_EVERY`] unless asked now).
    last_keep: Option<std::time::Instant>,
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
    pub fn new(settings: PanelSettings) -> ReportState {
        let macros_dir = settings
            .macros_dir
            .clone()
            .unwrap_or_else(macros::default_dir);
        let (saved, problems) = macros::load(&macros_dir);
        for p in &problems {
            tracing::warn!("macro not loaded: {p}");
        }
        // Kept drafts that cannot be read are named (by file, never by case) and left.
        let mut message = String::new();
        let drafts = settings.drafts_dir.as_deref().map(|dir| {
            let (store, unread) = DraftStore::open(dir);
            for p in &unread {
                tracing::warn!("{p}");
            }
            message = unread.join("; ");
            store
        });
        ReportState {
            open: false,
            templates: templates(),
            template: 0,
            draft: Draft::default(),
            linked: Vec::new(),
            unsure: Vec::new(),
            clips: Vec::new(),
            pending_clip: None,
            queued: None,
            player: None,
            push_to_talk: settings.push_to_talk,
            settings,
            macros: saved,
            macro_name: String::new(),
            macro_text: String::new(),
            macro_message: problems.join("; "),
            engine: None,
            recorder: None,
            job: None,
            message,
            setup: SignSetup::default(),
            form: SignForm::default(),
            study_uids: Vec::new(),
            case_studies: None,
            screen_studies: Vec::new(),
            from_worklist: false,
            sign_job: None,
            awaiting: Vec::new(),
            override_seen: Vec::new(),
            receipt: None,
            sign_message: String::new(),
            show_signed_text: false,
            finals: std::collections::HashMap::new(),
            outbox: None,
            outbox_message: String::new(),
            refused: None,
            refusals_seen: 0,
            taken_back: Vec::new(),
            draft_generation: 0,
            sign_generation: 0,
            key_id: std::cell::OnceCell::new(),
            key_id_failed: std::cell::RefCell::new(None),
            drafts,
            kept_as: None,
            draft_id: crate::report::kept::new_id(),
            draft_user: String::new(),
            kept_generation: 0,
            signing_kept: None,
            signing_author: String::new(),
            restored_amends: None,
            last_keep: None,
        }
    }

    /// Signing is running.
    pub fn signing(&self) -> bool {
        self.sign_job.is_some()
    }

    /// Words under this confidence are marked.
    pub fn unsure_below(&self) -> f32 {
        self.settings.unsure_below.unwrap_or(UNSURE_BELOW)
    }

    /// The signed final report that the draft amends: the one of the case in the Case field.
    /// A case has one final report, so a draft of a reported case is always an addendum; the
    /// Case field changed to another case makes it that case's final report.
    pub fn amending(&self) -> Option<&SignedFinal> {
        self.finals.get(self.form.case_id.trim())
    }

    /// Signed out: the finals known (their text among them) are not kept for whoever signs
    /// in next; opening a case reads its final from the server again.
    pub fn forget_finals(&mut self) {
        self.finals.clear();
    }

    /// `signed` is its case's final report: later drafts of the case amend it.
    fn set_final(&mut self, signed: SignedFinal) {
        self.finals.insert(signed.case_id.clone(), signed);
    }

    /// A final report of `case_id` signed here and still in the outbox (an earlier session's,
    /// one signed after its case was left, or one a crash left there with its draft): what a
    /// new draft of the case amends, where none is known. Without it the draft was signed as
    /// a second final report, and the server took whichever came first.
    fn final_from_outbox(&mut self, case_id: &str) {
        let case_id = case_id.trim();
        if case_id.is_empty() || self.finals.contains_key(case_id) {
            return;
        }
        if let Some((hash, signed)) =
            Outbox::existing(&self.outbox_dir()).and_then(|o| o.pending_final(case_id))
        {
            self.set_final(SignedFinal {
                case_id: case_id.to_string(),
                report_hash: hash,
                findings: signed.report.findings,
                impression: signed.report.impression,
            });
        }
    }

    /// The server refused `hash`: if it was a case's final report, that case has none to
    /// amend.
    fn final_refused(&mut self, hash: &str) {
        self.finals.retain(|_, f| f.report_hash != hash);
    }

    /// The report as it would be signed now (key id from the key file; time now): the final
    /// report, or once its case's final has been signed, an addendum to it.
    pub fn report_to_sign(&self) -> Result<case_protocol::Report, String> {
        let key_id = self.key_id()?;
        Ok(case_protocol::Report {
            case_id: self.form.case_id.trim().to_string(),
            kind: match self.amending() {
                None => case_protocol::ReportKind::Final,
                Some(f) => case_protocol::ReportKind::Addendum {
                    amends: f.report_hash.clone(),
                },
            },
            author: case_protocol::Author {
                user_id: self.form.user.trim().to_string(),
                display_name: self.form.display_name.trim().to_string(),
            },
            key_id,
            signed_at: case_protocol::rfc3339_utc(case_protocol::unix_now()),
            study_instance_uids: self.report_studies(),
            findings: self.draft.findings.trim().to_string(),
            impression: self.draft.impression.trim().to_string(),
            measurements: self.linked.iter().map(report_measurement).collect(),
        })
    }

    /// The studies on screen where the report of a case typed in is about others (a prior
    /// opened after the case was named, files dropped over a worklist case's study): the
    /// signing area names them and offers to report on them instead. `None` otherwise.
    pub fn other_studies_on_screen(&self) -> Option<&[String]> {
        let typed = self.case_studies.is_none() && !self.form.case_id.trim().is_empty();
        (typed && !self.screen_studies.is_empty() && self.screen_studies != self.study_uids)
            .then_some(self.screen_studies.as_slice())
    }

    /// The report of the case typed in is about the studies on screen from now on (the
    /// radiologist's choice in the signing area). Not while a report is signed.
    pub fn report_on_screen_studies(&mut self) {
        if !self.signing() && self.other_studies_on_screen().is_some() {
            self.study_uids = self.screen_studies.clone();
        }
    }

    /// The studies the report is about: the worklist case's, else the open study's.
    pub fn report_studies(&self) -> Vec<String> {
        self.case_studies
            .clone()
            .unwrap_or_else(|| self.study_uids.clone())
    }

    /// The signing key's id, read from the key file once: the text to be signed is shown every
    /// frame, and a file read each frame has no place on the frame loop.
    fn key_id(&self) -> Result<String, String> {
        if let Some(id) = self.key_id.get() {
            return Ok(id.clone());
        }
        if let Some((at, why)) = &*self.key_id_failed.borrow()
            && at.elapsed() < KEY_RETRY
        {
            return Err(why.clone());
        }
        let read = self
            .setup
            .key_file
            .as_ref()
            .ok_or_else(|| "no signing key in the settings (signing_key)".to_string())
            .and_then(|key_file| {
                crate::cases::EncryptedKey::read(key_file).map_err(|e| e.to_string())
            });
        match read {
            Ok(sealed) => Ok(self.key_id.get_or_init(|| sealed.key_id).clone()),
            Err(why) => {
                *self.key_id_failed.borrow_mut() = Some((std::time::Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    /// What must be fixed or knowingly overridden before signing. An addendum may leave the
    /// impression as it was, but not be empty.
    pub fn checks(&self) -> Vec<crate::report::Check> {
        let mut checks = pre_sign_checks(
            &self.draft.findings,
            &self.draft.impression,
            &self.linked,
            &self.unsure,
        );
        // The server refuses a report that names no study, and one whose author's name the
        // printed report cannot show: said here, before signing, and never overridden.
        if self.report_studies().is_empty() {
            checks.insert(
                0,
                crate::report::Check {
                    kind: CheckKind::NoStudy,
                    section: None,
                    range: None,
                    message: "The report names no study: open the case's study.".into(),
                },
            );
        }
        if let Err(e) = case_protocol::printable::first_unprintable(
            "your name",
            self.form.display_name.trim(),
            false,
        ) {
            checks.insert(
                0,
                crate::report::Check {
                    kind: CheckKind::Unprintable {
                        character: e.character,
                    },
                    section: None,
                    range: None,
                    message: format!(
                        "The name {e}: it must be your name as registered on the case server."
                    ),
                },
            );
        }
        if self.amending().is_some() {
            checks.retain(|c| c.kind != CheckKind::EmptyImpression);
            if !self.draft.findings.chars().any(char::is_alphanumeric) {
                checks.insert(
                    0,
                    crate::report::Check {
                        kind: CheckKind::EmptyAddendum,
                        section: Some(Section::Findings),
                        range: None,
                        message: "The addendum is empty.".into(),
                    },
                );
            }
        }
        checks
    }

    /// "Sign anyway" holds for the checks it was ticked for: when `checks` differ (a new
    /// mismatch, another unfilled field), it is unticked. `ticked`: ticked this frame.
    fn keep_override_for(&mut self, checks: &[crate::report::Check], ticked: bool) {
        let seen: Vec<String> = checks.iter().map(|c| c.message.clone()).collect();
        if ticked {
            self.override_seen = seen;
        } else if self.form.override_checks && self.override_seen != seen {
            self.form.override_checks = false;
        }
    }

    /// Sign the report (or addendum) and send it through the outbox, on a background thread;
    /// the receipt (or why there is none yet) comes back to [`ReportState::poll`].
    pub fn sign_and_send(&mut self, ctx: &egui::Context) {
        if self.sign_job.is_some() {
            return;
        }
        // Words spoken and not yet in the editors would be left out of what is signed (and
        // land in the next draft): signing waits for them.
        if self.dictation_in_flight() {
            self.sign_message = DICTATION_FIRST.into();
            return;
        }
        // A final of the case already in the outbox makes this an addendum to it.
        let case_id = self.form.case_id.clone();
        self.final_from_outbox(&case_id);
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
        // The draft as it stands goes to its file first (a signing that fails keeps it).
        self.keep_draft(true);
        let kept_file = self.kept_file_to_sign();
        let (tx, rx) = channel();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let result = sign_and_send(
                report,
                &setup,
                &server,
                &user,
                (&passphrase, &password),
                kept_file.as_ref(),
            );
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        self.sign_job = Some(rx);
        self.sign_generation = self.draft_generation;
        self.receipt = None;
        self.sign_message = "signing...".into();
    }

    /// Start (or hand a new login to) the outbox's background sender: reports signed earlier
    /// and not yet received, by this run or an earlier one, are sent now.
    pub fn connect_outbox(&mut self, client: CaseClient) {
        if let Some(worker) = &self.outbox {
            worker.set_client(client);
            return;
        }
        let dir = self
            .setup
            .outbox
            .clone()
            .unwrap_or_else(Outbox::default_dir);
        let started = Outbox::open(&dir)
            .and_then(|outbox| OutboxWorker::spawn(outbox, client, Backoff::default()));
        match started {
            Ok(worker) => self.outbox = Some(worker),
            Err(e) => self.outbox_message = format!("outbox {}: {e}", dir.display()),
        }
    }

    /// The login ended (signed out): the outbox's sender keeps what waits, without a login,
    /// until the next sign-in hands it one (it says it needs one).
    pub fn disconnect_outbox(&mut self) {
        let (Some(worker), Some(server)) = (&self.outbox, &self.setup.server) else {
            return;
        };
        match CaseClient::new(server, self.setup.server_ca.as_deref()) {
            Ok(client) => worker.set_client(client),
            Err(e) => self.outbox_message = e.to_string(),
        }
    }

    /// Studies were opened from folders or files, not from the worklist: the Case field can
    /// be edited again. The case stays named, and its report about the case's study (a study
    /// dropped in after it, a prior say, is offered in the signing area, never taken on its
    /// own: a report naming it would be refused as not of the case).
    pub fn leave_worklist_case(&mut self) {
        if let Some(studies) = self.case_studies.take() {
            self.study_uids = studies;
        }
        self.from_worklist = false;
    }

    /// The Case field was edited. Emptied, the report is the study on screen's again, with
    /// what the editors hold (it was the case's; no case is named now).
    pub fn case_field_edited(&mut self) {
        if self.form.case_id.trim().is_empty() && !self.signing() && !self.screen_studies.is_empty()
        {
            self.study_uids = self.screen_studies.clone();
        }
    }

    /// What the outbox's sender last saw, once it runs.
    pub fn outbox_status(&self) -> Option<OutboxStatus> {
        self.outbox.as_ref().map(OutboxWorker::status)
    }

    /// A transcription is running.
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    pub fn recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// Samples the running recording holds (0 when none runs).
    pub fn recorded_samples(&self) -> usize {
        self.recorder.as_ref().map_or(0, Recorder::samples)
    }

    /// Start the draft over from the chosen template (a new report: no marks, no linked
    /// measurements). A draft that amends its case's signed final report starts over as an
    /// empty addendum to it: the case has its final report, and a second would be refused.
    pub fn use_template(&mut self) {
        let Some(t) = self.templates.get(self.template) else {
            return;
        };
        let amending = self.amending().is_some();
        self.draft = if amending {
            let mut addendum = Draft::default();
            addendum.section = Some(Section::Findings);
            addendum
        } else {
            Draft::from_template(t)
        };
        // A final report still waiting in the outbox stays followed: refused, it is no
        // longer what the addendum amends, and its text comes back.
        let awaiting = std::mem::take(&mut self.awaiting);
        // The template starts this draft over, in its own file (a draft written over by the
        // radiologist's choice, not another's).
        let owned = self.kept_generation == self.draft_generation;
        self.forget_report();
        if owned {
            self.kept_generation = self.draft_generation;
        }
        if amending {
            self.awaiting = awaiting;
        }
    }

    /// Forget what belonged to the last report besides its text: linked measurements, marked
    /// words and their audio, the reports waiting for receipts, the last receipt and the
    /// signing message. The finals of cases stay known (a case keeps its final report).
    fn forget_report(&mut self) {
        self.linked.clear();
        self.unsure.clear();
        self.clips.clear();
        self.receipt = None;
        self.awaiting.clear();
        self.sign_message.clear();
        self.form.override_checks = false;
        self.draft_generation += 1;
        // Refused reports taken back into the dropped text are offered again.
        if !self.taken_back.is_empty() {
            self.taken_back.clear();
            self.refused = None;
        }
    }

    /// A case was opened: the report is for it. Another case than the one in the form starts
    /// a new, empty report (nothing of the last case's text, measurements, words or signed
    /// report carries over).
    /// `study_uid`: the case's study (the report is about it, not about whatever else is
    /// shown beside it).
    pub fn start_case(&mut self, case_id: &str, study_uid: Option<&str>) {
        // A dictation still landing belongs to the last case: the report stays that case's
        // until it has (it was dropped unheard).
        if self.form.case_id != case_id && self.dictation_in_flight() {
            self.message = format!(
                "the report is still of case {} while its dictation runs: stop it and let it \
                 land, then open case {case_id} again",
                self.form.case_id.trim()
            );
            return;
        }
        // What the last case's editors hold is kept before they are emptied; if it cannot be,
        // they are not emptied (nor is the report moved to the new case).
        if self.form.case_id != case_id
            && let Err(why) = self.keep_before_leaving()
        {
            self.message = format!(
                "the draft in the editors could not be kept on disk ({why}): it stays there, \
                 still of case {}; sign, copy or clear it, then open case {case_id} again",
                self.form.case_id.trim()
            );
            return;
        }
        self.case_studies = study_uid.map(|u| vec![u.to_string()]);
        self.from_worklist = true;
        if self.form.case_id == case_id {
            return;
        }
        self.form.case_id = case_id.to_string();
        self.form.override_checks = false;
        self.study_uids.clear();
        self.empty_editors("case");
        self.final_from_outbox(case_id);
        self.give_back_own("the unsigned draft of this case is back");
    }

    /// The studies on screen are `uids` now (opened from folders, files or a URL). While no
    /// case is named the report is the open study's, and so is its draft: what the editors
    /// hold of the last study is kept under that study before they are emptied (it was
    /// refiled under the new one, becoming a report of a study it never read), and this
    /// radiologist's own draft of the new study comes back (others' are offered), as for a
    /// case. With a case named, the case's draft stays in the editors.
    pub fn show_studies(&mut self, uids: Vec<String>) {
        // A stack of no known study (nothing to say what the report is about) changes nothing.
        if uids.is_empty() {
            return;
        }
        self.screen_studies.clone_from(&uids);
        if uids == self.study_uids {
            return;
        }
        let study_keyed = self.case_studies.is_none() && self.form.case_id.trim().is_empty();
        // A case typed in: its report is about the study it was first shown with. A study
        // opened after it (a prior, for comparison) does not change that: the report was
        // signed about the prior, naming a study the case does not hold. The signing area
        // says so and offers the one on screen (`report_on_screen_studies`).
        if !study_keyed && self.case_studies.is_none() && !self.study_uids.is_empty() {
            return;
        }
        // Text typed before any study was open (no key to keep it under), or with no drafts
        // folder to keep it in, stays in the editors for the new study.
        if !study_keyed || self.signing() || self.study_uids.is_empty() || self.drafts.is_none() {
            self.study_uids = uids;
            return;
        }
        // A dictation running or still being transcribed belongs to the last study: the report
        // stays that study's until it has landed (its audio is not kept with a draft).
        if self.dictation_in_flight() {
            self.message = "the report is still of the last study while its dictation runs: \
                            stop it, then open this study's series again"
                .into();
            return;
        }
        if let Err(why) = self.keep_before_leaving() {
            self.message = format!(
                "the draft in the editors could not be kept on disk ({why}): it stays there, \
                 still of the last study; copy or clear it, then open this study's series again"
            );
            return;
        }
        self.study_uids = uids;
        self.empty_editors("study");
        self.give_back_own("the unsigned draft of this study is back");
    }

    /// Keep what the editors hold and wait until it is on disk (at most [`LEAVE_WAIT`]), before
    /// they are emptied for another case or study: a write that failed would otherwise leave
    /// the text nowhere (the store forgets a draft whose write failed, so that the editors'
    /// next change writes it again). Without a drafts folder nothing can be kept: `Ok`.
    fn keep_before_leaving(&mut self) -> Result<(), String> {
        self.keep_draft(true);
        let Some(store) = self.drafts.as_mut() else {
            return Ok(());
        };
        if !store.flush(LEAVE_WAIT) {
            return Err("the disk did not answer in time".into());
        }
        match store.failure() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// A dictation is recording, being transcribed or waiting to be: its words are not in
    /// the editors yet.
    pub fn dictation_in_flight(&self) -> bool {
        self.recorder.is_some()
            || self.job.is_some()
            || self.pending_clip.is_some()
            || self.queued.is_some()
    }

    /// Another case or study is read: the editors are emptied and nothing of the last
    /// report's text, audio, measurements or words carries over (`what`: "case" or "study",
    /// for the message).
    fn empty_editors(&mut self, what: &str) {
        self.message.clear();
        // Audio of the last case is not transcribed into this one: a running recording is
        // stopped and dropped, a replay stopped.
        if self.recorder.take().is_some() {
            self.message = format!("the dictation running for the last {what} was discarded");
        }
        self.player = None;
        // A dictation of the last case still being transcribed does not land in this one
        // (its thread finishes unheard). A signature in flight goes on: its receipt is shown
        // for its own case.
        self.job = None;
        self.pending_clip = None;
        self.queued = None;
        self.draft = Draft::default();
        self.forget_report();
    }

    /// This radiologist's newest draft under the editors' key, kept when it was left (or when
    /// the window closed), comes back (`message` said); others' (and older ones) are offered.
    fn give_back_own(&mut self, message: &str) {
        let Some(key) = DraftKey::of(&self.form.case_id, &self.report_studies()) else {
            return;
        };
        let user = self.form.user.trim().to_string();
        let mine = self
            .kept_offers()
            .into_iter()
            .find(|d| d.content.user == user)
            .map(|d| d.id);
        if let Some(id) = mine
            && self.restore_kept(&key, id)
        {
            // After what emptying the editors said (a dictation discarded), not instead of it.
            self.message = if self.message.is_empty() {
                message.into()
            } else {
                format!("{}; {message}", self.message)
            };
        }
    }

    /// What the editors hold, as a kept draft.
    fn draft_content(&self) -> DraftContent {
        DraftContent {
            case_id: self.form.case_id.trim().to_string(),
            study_uids: self.report_studies(),
            user: if self.draft_user.is_empty() {
                self.form.user.trim().to_string()
            } else {
                self.draft_user.clone()
            },
            amends: self.amending().map(|f| f.report_hash.clone()),
            findings: self.draft.findings.clone(),
            impression: self.draft.impression.clone(),
            section: self.draft.section,
            cursor: self.draft.cursor,
            linked: DraftContent::kept_linked(&self.linked),
            unsure: DraftContent::kept_unsure(&self.unsure),
            taken_back: self
                .taken_back
                .iter()
                .map(|t| KeptTakenBack {
                    hash: t.hash.clone(),
                    case_id: t.case_id.clone(),
                })
                .collect(),
            session: crate::report::kept::session(),
        }
    }

    /// The draft in the editors is this one (a new draft gets an id of its own).
    fn own_draft(&mut self) {
        if self.kept_generation != self.draft_generation {
            self.kept_as = None;
            self.draft_id = crate::report::kept::new_id();
            self.draft_user.clear();
            self.kept_generation = self.draft_generation;
        }
        // Its author: who the sign form named when it was first kept with a name (a change
        // of the User field later, another radiologist's sign-in, does not make it theirs).
        if self.draft_user.is_empty() {
            self.draft_user = self.form.user.trim().to_string();
        }
    }

    /// Keep the draft on disk if it differs from what is kept (written at most every
    /// [`KEEP_EVERY`] unless `now`), under its case, or its study while no case is named, in a file of its own
    /// (its id's): it never writes over another draft. A draft emptied by hand is removed.
    /// The draft being signed is left to the signing (which removes its file once the report
    /// is in the outbox). True when a write was put off: ask again in [`KEEP_EVERY`].
    pub fn keep_draft(&mut self, now: bool) -> bool {
        if self.drafts.is_none()
            || (self.signing() && self.sign_generation == self.draft_generation)
        {
            return false;
        }
        // A write that failed is tried again (the store forgets it: it is not kept).
        if let Some(why) = self.drafts.as_mut().and_then(DraftStore::failure) {
            self.message = format!("the draft could not be kept on disk: {why}");
        }
        let content = self.draft_content();
        if self.settled(&content) {
            return false;
        }
        if !now && self.last_keep.is_some_and(|t| t.elapsed() < KEEP_EVERY) {
            return true;
        }
        self.last_keep = Some(std::time::Instant::now());
        self.own_draft();
        let key = DraftKey::of(&content.case_id, &content.study_uids);
        let id = self.draft_id;
        let Some(store) = self.drafts.as_mut() else {
            return false;
        };
        if content.is_empty() {
            if let Some(old) = self.kept_as.take() {
                store.remove(&old, id);
            }
            return false;
        }
        let Some(key) = key else {
            return false;
        };
        if store.get(&key, id).is_some_and(|k| k.content == content) {
            self.kept_as = Some(key);
            return false;
        }
        store.keep(&key, id, content);
        if let Some(old) = self.kept_as.replace(key.clone())
            && old != key
        {
            // The draft moved (a case named for a study's draft): its old file goes.
            store.remove(&old, id);
        }
        false
    }

    /// Whether the store holds what the editors do, as this draft's (nothing to write or
    /// remove): asked every frame, it reads the store as it is, whatever changed it (a write
    /// that failed, a signing, another draft's removal).
    fn settled(&self, content: &DraftContent) -> bool {
        if self.kept_generation != self.draft_generation {
            return content.is_empty();
        }
        match (
            &self.kept_as,
            DraftKey::of(&content.case_id, &content.study_uids),
        ) {
            (kept, _) if content.is_empty() => kept.is_none(),
            (_, None) => true,
            (Some(kept), Some(key)) => {
                *kept == key
                    && self
                        .drafts
                        .as_ref()
                        .and_then(|s| s.get(&key, self.draft_id))
                        .is_some_and(|d| d.content == *content)
            }
            (None, Some(_)) => false,
        }
    }

    /// Drafts kept under the editors' key that are not the editors' own (nor the one being
    /// signed), newest first: offered to be given back.
    pub fn kept_offers(&self) -> Vec<&KeptDraft> {
        let Some(key) = DraftKey::of(&self.form.case_id, &self.report_studies()) else {
            return Vec::new();
        };
        let own = (self.kept_generation == self.draft_generation).then_some(self.draft_id);
        let signing = self.signing_kept.as_ref().map(|(_, id)| *id);
        self.drafts.as_ref().map_or_else(Vec::new, |store| {
            store
                .drafts_of(&key)
                .into_iter()
                .filter(|d| Some(d.id) != own && Some(d.id) != signing)
                .collect()
        })
    }

    /// Put draft `id` kept under `key` into the editors. What they held is kept first, as a
    /// draft of its own: giving one back never loses another. False when none is kept.
    pub fn restore_kept(&mut self, key: &DraftKey, id: u64) -> bool {
        if self.signing() && self.sign_generation == self.draft_generation {
            return false;
        }
        let Some(kept) = self.drafts.as_ref().and_then(|s| s.get(key, id)).cloned() else {
            return false;
        };
        self.keep_draft(true);
        let c = kept.content;
        self.forget_report();
        let mut draft = Draft::default();
        draft.findings.clone_from(&c.findings);
        draft.impression.clone_from(&c.impression);
        draft.section = c.section;
        if let Some(s) = draft.section
            && draft.text(s).is_char_boundary(c.cursor)
        {
            draft.cursor = c.cursor;
        }
        self.draft = draft;
        self.linked = c.linked();
        self.unsure = c.unsure();
        self.taken_back = c
            .taken_back
            .iter()
            .map(|t| TakenBack {
                hash: t.hash.clone(),
                case_id: t.case_id.clone(),
            })
            .collect();
        // The refused list is read again without those taken back.
        self.refused = None;
        // The editors' own now: its next change writes its file. Another radiologist's draft
        // is taken as a copy (a new draft of this one's), their file left as it is.
        let me = self.form.user.trim();
        if c.user.is_empty() || c.user == me {
            self.kept_as = Some(key.clone());
            self.draft_id = id;
            self.draft_user.clone_from(&c.user);
        } else {
            self.kept_as = None;
            self.draft_id = crate::report::kept::new_id();
            self.draft_user = me.to_string();
        }
        self.kept_generation = self.draft_generation;
        self.restored_amends = Some(c.amends);
        true
    }

    /// The newest draft [`ReportState::kept_offers`] offers: its key and id.
    fn offered(&self) -> Option<(DraftKey, u64)> {
        let key = DraftKey::of(&self.form.case_id, &self.report_studies())?;
        let id = self.kept_offers().first()?.id;
        Some((key, id))
    }

    /// Give back the newest draft [`ReportState::kept_offers`] offers.
    pub fn restore_offered(&mut self) {
        let Some((key, id)) = self.offered() else {
            return;
        };
        if self.restore_kept(&key, id) {
            self.message = "the kept draft is back in the editors".into();
        }
    }

    /// Delete the newest draft [`ReportState::kept_offers`] offers (the radiologist chose to).
    pub fn discard_offered(&mut self) {
        let Some((key, id)) = self.offered() else {
            return;
        };
        if let Some(store) = self.drafts.as_mut() {
            store.remove(&key, id);
            self.message = "the kept draft was deleted".into();
        }
    }

    /// The file of the draft in the editors, to be removed by the signing once the report is
    /// in the outbox; the draft is marked as the one being signed.
    fn kept_file_to_sign(&mut self) -> Option<(DraftRemover, PathBuf)> {
        self.signing_kept = None;
        self.signing_author.clone_from(&self.draft_user);
        if self.kept_generation != self.draft_generation {
            return None;
        }
        let key = self.kept_as.clone()?;
        let store = self.drafts.as_ref()?;
        let kept = (store.remover(), store.path_of(&key, self.draft_id));
        self.signing_kept = Some((key, self.draft_id));
        Some(kept)
    }

    /// The signing ended: `in_outbox` when the report reached the outbox (its draft's file
    /// was removed there: forgotten here too). Otherwise the draft is written again at its
    /// next comparison (whatever the signing did to its file).
    fn signing_ended(&mut self, in_outbox: bool) {
        let (Some((key, id)), Some(store)) = (self.signing_kept.take(), self.drafts.as_mut())
        else {
            return;
        };
        if in_outbox {
            store.remove(&key, id);
        } else if self.sign_generation == self.draft_generation {
            // Still in the editors: written again at its next comparison. (A draft left
            // meanwhile is still on disk, known and offered as before.)
            store.forget(&key, id);
        }
    }

    /// A report of `case_id` is signed by `author` (in the outbox): no draft of theirs of the
    /// case is kept any more (they are superseded), but the one in the editors when they hold
    /// a newer draft. Another radiologist's draft of the case stays theirs (offered, and said
    /// to be an addendum now).
    fn forget_kept(&mut self, case_id: &str, author: &str, same_draft: bool) {
        let own =
            (!same_draft && self.kept_generation == self.draft_generation).then_some(self.draft_id);
        let Some(store) = self.drafts.as_mut() else {
            return;
        };
        // The signer's, and those of the name the signed draft was first kept under (the User
        // field corrected since: the same radiologist's); not the author of whatever draft
        // the editors hold now (another case's, perhaps another radiologist's).
        let authors = [author, self.signing_author.as_str()];
        store.remove_all(&DraftKey::Case(case_id.to_string()), &authors, own);
        if same_draft && let Some(key) = self.kept_as.take() {
            store.remove(&key, self.draft_id);
        }
    }

    /// The radiologist signed out: their draft is kept, and the editors and Case field are
    /// emptied (the next to sign in does not find it in front of them; it is theirs to be
    /// offered, not given). While a report is signed, nothing changes.
    pub fn put_away_draft(&mut self) {
        if self.signing() {
            return;
        }
        // A dictation still landing would put its words in front of whoever signs in next:
        // it is dropped, and said.
        if self.dictation_in_flight() {
            self.recorder = None;
            self.job = None;
            self.pending_clip = None;
            self.queued = None;
            self.message = "signed out: the dictation still being transcribed was discarded".into();
        }
        self.keep_draft(true);
        self.form.case_id.clear();
        self.draft = Draft::default();
        self.forget_report();
    }

    /// Keep the draft now and wait (at most `limit`) until it is on disk: the window closes.
    pub fn keep_draft_before_closing(&mut self, limit: std::time::Duration) {
        self.keep_draft(true);
        if let Some(store) = &self.drafts
            && !store.flush(limit)
        {
            tracing::warn!("the draft was not written before the window closed");
        }
    }

    /// The open case was reported (perhaps in an earlier session): the draft is an addendum
    /// to `signed`, the final report the server holds.
    pub fn amend(&mut self, signed: SignedFinal) {
        // A draft given back that was kept before this final was signed (perhaps on another
        // workstation) is an addendum to it now: said, so it is read again before signing.
        if let Some(amended) = self.restored_amends.take()
            && amended.as_deref() != Some(signed.report_hash.as_str())
            && signed.case_id == self.form.case_id.trim()
            && !(self.draft.findings.trim().is_empty() && self.draft.impression.trim().is_empty())
        {
            self.message = format!(
                "The draft given back was kept before case {}'s final report {} was signed: it \
                 is an addendum to that report now. Read it again before signing.",
                signed.case_id,
                short_hash(&signed.report_hash)
            );
        }
        self.set_final(signed);
    }

    /// Transcribe `clip` on a background thread (the model is loaded there the first time).
    pub fn dictate(&mut self, clip: Clip, ctx: &egui::Context) {
        if self.job.is_some() {
            // Said while the last dictation was transcribed: it follows it, nothing is lost.
            match &mut self.queued {
                Some(q) if q.rate == clip.rate => q.samples.extend_from_slice(&clip.samples),
                Some(_) => self.message = "a dictation at another sample rate is waiting".into(),
                None => self.queued = Some(clip),
            }
            return;
        }
        let clip = Arc::new(clip);
        self.pending_clip = Some(clip.clone());
        let (tx, rx) = channel();
        let engine = self.engine.clone();
        let model = self.settings.model.clone();
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

    fn start_recording(&mut self) {
        if self.recorder.is_some() {
            return;
        }
        // The device opens on its own thread (it can take a second); one that fails is
        // said by `poll`, as any device error while recording.
        self.recorder = Some(Recorder::start_in_background(
            self.settings.input_device.as_deref(),
            None,
        ));
        self.message = "listening...".into();
    }

    fn stop_recording(&mut self, ctx: &egui::Context) {
        if let Some(r) = self.recorder.take() {
            let clip = r.stop();
            self.dictate(clip, ctx);
        }
    }

    fn toggle_recording(&mut self, ctx: &egui::Context) {
        if self.recorder.is_some() {
            self.stop_recording(ctx);
        } else {
            self.start_recording();
        }
    }

    /// The push-to-talk key or mouse button: pressed, recording starts (the panel opens);
    /// released, what was said is transcribed. Works while typing in the editors.
    pub fn handle_push_to_talk(&mut self, ctx: &egui::Context) {
        let PushToTalk { key, button, held } = self.push_to_talk;
        if key.is_none() && button.is_none() {
            return;
        }
        let down = ctx.input(|i| {
            key.is_some_and(|k| i.key_down(k)) || button.is_some_and(|b| i.pointer.button_down(b))
        });
        if down && !held {
            self.open = true;
            self.start_recording();
        } else if !down && held {
            self.stop_recording(ctx);
        }
        self.push_to_talk.held = down;
        if down {
            // Keep frames coming: the level meter, and the release is seen at once.
            ctx.request_repaint();
        }
    }

    /// Apply dictated or inserted pieces to the draft, one at a time, the unsure-word marks
    /// following each (a dictation that moves between fields touches only what it writes).
    /// Returns where the pieces' text now stands, in the order it was written.
    fn apply_pieces(
        &mut self,
        pieces: &[commands::Piece],
    ) -> Vec<(Section, std::ops::Range<usize>)> {
        let mut written: Vec<(Section, std::ops::Range<usize>)> = Vec::new();
        // One call, one utterance (a transcript, a button): "scratch that" keeps them apart.
        self.draft.next_utterance();
        // Dictated text in the form the printed report can show ("5 μm" as "5 µm").
        let pieces: Vec<commands::Piece> = pieces
            .iter()
            .map(|p| match p {
                commands::Piece::Text(t) => {
                    commands::Piece::Text(crate::report::printable::printable_form(t))
                }
                other => other.clone(),
            })
            .collect();
        for piece in &pieces {
            let before = (self.draft.findings.clone(), self.draft.impression.clone());
            self.draft
                .apply(std::slice::from_ref(piece), &self.templates, &self.macros);
            for (section, old) in [
                (Section::Findings, before.0),
                (Section::Impression, before.1),
            ] {
                let Some(edit) = Edit::between(&old, self.draft.text(section)) else {
                    continue;
                };
                self.follow_edit(section, &edit);
                written = written
                    .into_iter()
                    .filter_map(|(s, r)| {
                        if s == section {
                            edit.map(&r).map(|r| (s, r))
                        } else {
                            Some((s, r))
                        }
                    })
                    .collect();
                // The reading that ends at the cursor: dictation writes at the cursor.
                let cursor = (self.draft.section == Some(section)).then_some(self.draft.cursor);
                let range = edit.inserted_ending_at(cursor);
                if !range.is_empty() {
                    written.push((section, range));
                }
            }
        }
        written
    }

    /// Move the marks of `section` through `edit`; a mark it touched was edited, so the word
    /// is settled.
    fn follow_edit(&mut self, section: Section, edit: &Edit) {
        let text = self.draft.text(section).to_string();
        for m in &mut self.linked {
            if let Some((s, range)) = &m.place
                && *s == section
            {
                m.place = edit.map_span(range).map(|r| (section, r));
            }
        }
        for w in &mut self.unsure {
            if let Some((s, range)) = &w.at
                && *s == section
            {
                match edit.map_word(range, &text) {
                    Some(moved) => w.at = Some((section, moved)),
                    None => {
                        w.at = None;
                        w.resolved = true;
                    }
                }
            }
        }
    }

    /// Replace what the printed report cannot show by its printable equivalent, in both
    /// sections (the pre-sign check's button). Each character (with the combining marks after
    /// it) is its own edit, from the end back, so unsure-word marks and measurement places
    /// elsewhere keep their places; what has no equivalent stays, named by the checks.
    pub fn make_printable(&mut self) {
        use unicode_normalization::char::is_combining_mark;
        // The editors are read-only while a report is signed (see `insert_macro`).
        if self.signing() {
            return;
        }
        for section in [Section::Findings, Section::Impression] {
            let text = self.draft.text(section).to_string();
            let mut units: Vec<std::ops::Range<usize>> = Vec::new();
            for (i, c) in text.char_indices() {
                match units.last_mut() {
                    Some(last) if is_combining_mark(c) => last.end = i + c.len_utf8(),
                    _ => units.push(i..i + c.len_utf8()),
                }
            }
            for unit in units.into_iter().rev() {
                let fixed = crate::report::printable::printable_form(&text[unit.clone()]);
                if fixed == text[unit.clone()] {
                    continue;
                }
                let old = self.draft.text(section).to_string();
                let mut new = old.clone();
                new.replace_range(unit, &fixed);
                match section {
                    Section::Findings => self.draft.findings = new,
                    Section::Impression => self.draft.impression = new,
                }
                self.typed(section, &old);
            }
        }
    }

    /// The radiologist typed in `section`, whose text was `old`.
    fn typed(&mut self, section: Section, old: &str) {
        if let Some(edit) = Edit::between(old, self.draft.text(section)) {
            self.follow_edit(section, &edit);
        }
        self.draft.typed(section);
    }

    /// Insert a saved macro at the cursor. Not while a report is signed: the text signed is
    /// what the editors held at the click, and what is added meanwhile would be shown, then
    /// dropped with the signed draft, never signed.
    pub fn insert_macro(&mut self, name: &str) {
        if self.signing() {
            self.message = "a report is being signed: insert the macro when it is done".into();
            return;
        }
        let pieces = crate::report::draft::expand(
            &[commands::Piece::InsertMacro(name.to_string())],
            &self.templates,
            &self.macros,
        );
        self.apply_pieces(&pieces);
    }

    /// Save the macro being edited (name and text) to the macro folder.
    pub fn save_macro(&mut self) {
        let dir = self.macros_dir();
        match macros::save(&dir, &self.macro_name, &self.macro_text) {
            Ok(name) => {
                self.macros
                    .insert(name.clone(), self.macro_text.trim().to_string());
                self.macro_message = format!("saved \"{name}\": say \"insert macro {name}\"");
                self.macro_name.clear();
                self.macro_text.clear();
            }
            Err(e) => self.macro_message = e,
        }
    }

    fn delete_macro(&mut self, name: &str) {
        match macros::delete(&self.macros_dir(), name) {
            Ok(()) => {
                self.macros.remove(name);
                self.macro_message = format!("deleted \"{name}\"");
            }
            Err(e) => self.macro_message = e,
        }
    }

    fn macros_dir(&self) -> PathBuf {
        self.settings
            .macros_dir
            .clone()
            .unwrap_or_else(macros::default_dir)
    }

    /// Take linked measurement `i` off the report (its text, if any, stays as written). Not
    /// while a report is signed.
    pub fn remove_linked(&mut self, i: usize) {
        if !self.signing() && i < self.linked.len() {
            self.linked.remove(i);
        }
    }

    /// Link a measurement from the viewer: its value goes into the text at the cursor.
    pub fn insert_measurement(&mut self, value: f64, unit: &str, source: MeasurementSource) {
        if self.signing() {
            self.message =
                "a report is being signed: insert the measurement when it is done".into();
            return;
        }
        let shown = crate::report::checks::inserted_text(value, unit);
        let written = self.apply_pieces(&[commands::Piece::Text(shown.clone())]);
        // Where the value went (the text written ends with it): checked against the
        // measurement there, even unnamed.
        let place = written.last().and_then(|(section, r)| {
            let text = self.draft.text(*section);
            let at = text.get(r.clone())?.rfind(&shown)? + r.start;
            Some((*section, at..at + shown.len()))
        });
        self.linked.push(LinkedMeasurement {
            id: source
                .viewer_id
                .map_or_else(|| "signed".into(), |id| format!("#{id}")),
            label: String::new(),
            value,
            unit: unit.into(),
            source: Some(source),
            place,
        });
    }

    /// Replay the audio of unsure word `i`.
    pub fn replay(&mut self, i: usize) {
        let Some(w) = self.unsure.get(i) else { return };
        let Some((clip, start, end)) = w.audio else {
            self.message = format!("no audio kept for \"{}\"", w.text);
            return;
        };
        let Some(clip) = self.clips.get(clip) else {
            return;
        };
        let part = excerpt(clip, start, end, REPLAY_PAD_S);
        match Player::start_in_background(self.settings.output_device.as_deref(), &part) {
            Ok(p) => {
                self.message = format!("playing \"{}\"", w.text);
                self.player = Some(p);
            }
            Err(e) => self.message = e.to_string(),
        }
    }

    /// A replay is running.
    pub fn playing(&self) -> bool {
        self.player.is_some()
    }

    /// The unsure word (index) whose mark covers byte `at` of `section`.
    pub fn unsure_at(&self, section: Section, at: usize) -> Option<usize> {
        self.unsure.iter().position(|w| {
            !w.resolved
                && w.at
                    .as_ref()
                    .is_some_and(|(s, r)| *s == section && r.start <= at && at <= r.end)
        })
    }

    /// Byte ranges of `section` to mark (unresolved unsure words).
    pub fn marks(&self, section: Section) -> Vec<std::ops::Range<usize>> {
        let mut out: Vec<_> = self
            .unsure
            .iter()
            .filter(|w| !w.resolved)
            .filter_map(|w| w.at.as_ref())
            .filter(|(s, _)| *s == section)
            .map(|(_, r)| r.clone())
            .collect();
        out.sort_by_key(|r| r.start);
        out
    }

    /// Take what the background work sent: a receipt, a transcription (commands applied, text
    /// into the draft, unsure words marked), the end of a replay.
    pub fn poll(&mut self, ctx: &egui::Context) {
        // A recording that reached its limit (ten minutes) or whose device failed is stopped
        // and what it holds is transcribed, with a message: it went on showing "listening"
        // while what was said after was dropped.
        if let Some(rec) = &self.recorder {
            let (full, error) = (rec.is_full(), rec.error());
            if full || error.is_some() {
                let clip = self.recorder.take().map(Recorder::stop);
                let heard = clip.as_ref().is_some_and(|c| !c.samples.is_empty());
                if let Some(clip) = clip.filter(|_| heard) {
                    self.dictate(clip, ctx);
                }
                let why = match error {
                    Some(e) => format!("recording stopped: {e}"),
                    None => "recording stopped at its 10-minute limit".into(),
                };
                self.message = if heard {
                    format!("{why}; what was recorded is being transcribed")
                } else {
                    format!("{why}; nothing was recorded")
                };
            }
        }
        if self.player.as_ref().is_some_and(Player::finished)
            && let Some(e) = self.player.take().and_then(|p| p.error())
        {
            self.message = e;
        }
        let signing = match &self.sign_job {
            Some(rx) => match rx.try_recv() {
                Ok(result) => Some(result),
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                // The signing thread ended without a word (a panic): the editors are given
                // back; whatever it put in the outbox is sent and listed from there.
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Err(Unsigned {
                    why: "Signing failed unexpectedly; check the outbox before signing again."
                        .into(),
                    others: Vec::new(),
                    refused: None,
                })),
            },
            None => None,
        };
        if let Some(result) = signing {
            self.sign_job = None;
            // The report reached the outbox (signed, or refused for good there): its draft's
            // file went with it.
            self.signing_ended(matches!(
                result,
                Ok(_)
                    | Err(Unsigned {
                        refused: Some(_),
                        ..
                    })
            ));
            match result {
                Ok(mut signed) => {
                    let others = std::mem::take(&mut signed.others);
                    let same_draft = self.sign_generation == self.draft_generation;
                    self.signed(signed, same_draft);
                    self.settle_deliveries(&others);
                }
                Err(Unsigned {
                    why,
                    others,
                    refused,
                }) => {
                    self.sign_message = why;
                    self.settle_deliveries(&others);
                    // The key file may have changed under the id read once (a key renewed
                    // while the app ran: every signing would name the old id and fail): read
                    // again for the next signing.
                    self.key_id = std::cell::OnceCell::new();
                    // Refused as it was signed: its text is still in the editors, unless the
                    // draft was dropped meanwhile (then it is offered to be taken back).
                    if let Some((hash, case_id)) = refused {
                        if self.sign_generation == self.draft_generation
                            && case_id == self.form.case_id.trim()
                        {
                            self.taken_back.push(TakenBack { hash, case_id });
                        }
                        self.refused = None;
                    }
                }
            }
        }
        self.follow_outbox();
        if let Some(refusals) = self.outbox.as_ref().map(OutboxWorker::refusals)
            && refusals != self.refusals_seen
        {
            self.refusals_seen = refusals;
            self.refused = None;
            // A final report refused while nothing here waited for it (the draft was
            // dropped since): its case has no final to amend.
            if let Some(status) = self.outbox_status() {
                for (hash, _) in &status.refused {
                    self.final_refused(hash);
                }
            }
        }
        // The outbox's login expired: the worklist's sign-in form comes back for a new one
        // (what waits is sent with it).
        if self.setup.token.is_some() && self.outbox.as_ref().is_some_and(OutboxWorker::needs_login)
        {
            self.setup.token = None;
            self.setup.token_user = None;
        }
        // A dictation that ends while a report is being signed waits: it must not land in
        // the text being signed, nor be cleared with it.
        if self.sign_job.is_some() {
            return;
        }
        let Some(rx) = &self.job else { return };
        let result = match rx.try_recv() {
            Ok(result) => result,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            // The transcription thread ended without an answer (it panicked): dictation must
            // not wait on it for good.
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the transcription stopped without a result; dictate again".to_string())
            }
        };
        self.job = None;
        let clip = self.pending_clip.take();
        match result {
            Ok((engine, t)) => {
                self.engine = Some(engine);
                self.take_transcript(&t, clip);
                self.message = format!(
                    "{:.1} s of speech transcribed in {:.2} s",
                    t.audio_s, t.compute_s
                );
            }
            Err(e) => self.message = e,
        }
        if let Some(next) = self.queued.take() {
            self.dictate(next, ctx);
        }
    }

    /// Put a transcript into the report: voice commands applied, text at the cursor, words
    /// under the confidence bound marked where they landed (with their audio in `clip`).
    pub fn take_transcript(&mut self, t: &crate::dictation::Transcript, clip: Option<Arc<Clip>>) {
        if self.draft.section.is_none() && self.draft.findings.is_empty() {
            self.draft.section = Some(Section::Findings);
        }
        let pieces =
            crate::report::draft::expand(&commands::parse(&t.text), &self.templates, &self.macros);
        let changed = self.apply_pieces(&pieces);
        let clip_index = clip.map(|c| {
            self.clips.push(c);
            self.clips.len() - 1
        });
        // Where each word landed: searched in order through what the dictation wrote.
        let words: Vec<&str> = t.words.iter().map(|w| w.text.as_str()).collect();
        let mut found: Vec<Option<(Section, std::ops::Range<usize>)>> = vec![None; words.len()];
        let mut next = 0;
        for (section, range) in changed {
            let hits = locate_in_order(self.draft.text(section), range, &words[next..]);
            let mut last = None;
            for (k, hit) in hits.into_iter().enumerate() {
                if let Some(r) = hit {
                    found[next + k] = Some((section, r));
                    last = Some(next + k);
                }
            }
            if let Some(l) = last {
                next = l + 1;
            }
        }
        let below = self.unsure_below();
        for (w, at) in t.words.iter().zip(found) {
            if w.confidence < below {
                self.unsure.push(UnsureWord {
                    text: w.text.clone(),
                    confidence: w.confidence,
                    resolved: false,
                    at,
                    audio: clip_index.map(|c| (c, w.start_s, w.end_s)),
                });
            }
        }
    }

    /// `report` was signed and is in the outbox: received by the server, or kept until the
    /// outbox's sender delivers it. Either way it is signed: a final report becomes what
    /// addenda amend (its text as signed), and the draft starts over, so the same report is
    /// never signed twice in two versions.
    /// `same_draft`: the editors still hold the draft that was signed (none was dropped
    /// since the signing started).
    fn signed(&mut self, signed: Signed, same_draft: bool) {
        let Signed {
            report,
            hash,
            receipt,
            login,
            ..
        } = signed;
        if self.outbox.is_none()
            && let (Some(token), Some(server)) = (login, self.setup.server.clone())
        {
            match CaseClient::new(&server, self.setup.server_ca.as_deref()) {
                // The login is the report's author's: the sender sends theirs only.
                Ok(client) => {
                    self.connect_outbox(client.with_token(token).with_user(&report.author.user_id))
                }
                Err(e) => self.outbox_message = e.to_string(),
            }
        }
        let addendum = matches!(report.kind, case_protocol::ReportKind::Addendum { .. });
        let what = if addendum {
            "Addendum signed"
        } else {
            "Signed"
        };
        let said = match &receipt {
            Ok(r) => format!(
                "{what} and received by the case server at {}; report {}",
                r.received_at, r.report_hash
            ),
            Err(why) => format!(
                "{what} (report {hash}); not yet received by the case server ({why}). It is \
                 kept in the outbox and {}.",
                match self.outbox.as_ref().map(|w| w.sender()) {
                    // The sender sends its own user's reports only.
                    Some(Some(sender)) if sender != report.author.user_id => format!(
                        "will be sent when {} signs in to the worklist",
                        report.author.user_id
                    ),
                    Some(_) => "will be sent".to_string(),
                    None => "will be sent once you sign in to the worklist".to_string(),
                }
            ),
        };
        if report.case_id != self.form.case_id.trim() && !same_draft {
            // Signed for a case that is no longer open: said; its kept draft (what was signed)
            // goes, and a final is what the case's next draft amends (opened again before the
            // server has it, the case would otherwise be signed a second final report).
            self.sign_message = format!("Case {}: {said}", report.case_id);
            self.forget_kept(&report.case_id, &report.author.user_id, false);
            if !addendum {
                self.set_final(SignedFinal {
                    case_id: report.case_id.clone(),
                    report_hash: hash,
                    findings: report.findings.clone(),
                    impression: report.impression.clone(),
                });
            }
            if receipt.is_err()
                && let Some(worker) = &self.outbox
            {
                worker.nudge();
            }
            return;
        }
        if !same_draft {
            // The case's kept draft was what is now signed: it goes, and where the newer
            // draft is that text given back, the editors are emptied (signing it again would
            // repeat the report).
            let given_back = self.draft.findings.trim() == report.findings
                && self.draft.impression.trim() == report.impression;
            self.forget_kept(&report.case_id, &report.author.user_id, given_back);
            if given_back {
                self.draft = Draft::default();
                self.draft.section = Some(Section::Findings);
                self.forget_report();
            }
            // Its case is open again in a newer draft (it was left and opened again while
            // signing): the editors keep what they hold, but the report is signed, so a final
            // one is what the newer draft amends, and one kept in the outbox comes back (its
            // own text) if the server refuses it.
            self.sign_message = said;
            if !addendum {
                self.set_final(SignedFinal {
                    case_id: report.case_id.clone(),
                    report_hash: hash.clone(),
                    findings: report.findings.clone(),
                    impression: report.impression.clone(),
                });
            }
            match receipt {
                Ok(r) => self.receipt = Some(r),
                Err(_) => self.awaiting.push(Awaiting {
                    hash,
                    case_id: report.case_id,
                    findings: report.findings,
                    impression: report.impression,
                    linked: Vec::new(),
                    unsure: Vec::new(),
                    clips: Vec::new(),
                }),
            }
            return;
        }
        self.sign_message = said;
        self.forget_kept(&report.case_id, &report.author.user_id, true);
        // The editors are cleared below: refused reports taken back into them are answered.
        self.set_aside_taken_back(&report.case_id);
        // As the editors held it (marks and places are offsets into this text).
        let awaiting = Awaiting {
            hash: hash.clone(),
            case_id: report.case_id.clone(),
            findings: std::mem::take(&mut self.draft.findings),
            impression: std::mem::take(&mut self.draft.impression),
            linked: std::mem::take(&mut self.linked),
            unsure: std::mem::take(&mut self.unsure),
            clips: std::mem::take(&mut self.clips),
        };
        if !addendum {
            // The signed text stays as it was; what is written now is an addendum to it.
            self.set_final(SignedFinal {
                case_id: report.case_id.clone(),
                report_hash: hash,
                findings: report.findings,
                impression: report.impression,
            });
        }
        self.draft = Draft::default();
        self.draft.section = Some(Section::Findings);
        self.linked.clear();
        self.unsure.clear();
        self.clips.clear();
        self.form.override_checks = false;
        match receipt {
            Ok(r) => self.receipt = Some(r),
            Err(_) => {
                self.receipt = None;
                self.awaiting.push(awaiting);
                if let Some(worker) = &self.outbox {
                    worker.nudge();
                }
            }
        }
    }

    /// Kept reports that a signing sent on its way (the final report an addendum amends).
    fn settle_deliveries(&mut self, deliveries: &[crate::cases::Delivery]) {
        use crate::cases::Delivery;
        let delivered: Vec<case_protocol::Receipt> = deliveries
            .iter()
            .filter_map(|d| match d {
                Delivery::Delivered(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        let refused: Vec<(String, String)> = deliveries
            .iter()
            .filter_map(|d| match d {
                Delivery::Refused {
                    report_hash,
                    status,
                    message,
                } => Some((report_hash.clone(), format!("{status}: {message}"))),
                _ => None,
            })
            .collect();
        self.settle(&delivered, &refused, false);
        // A refusal the signing thread met (not the outbox's sender): the list is read again.
        if !refused.is_empty() {
            self.refused = None;
        }
    }

    /// Reports kept in the outbox that the outbox's sender has since delivered or refused.
    fn follow_outbox(&mut self) {
        if self.awaiting.is_empty() {
            return;
        }
        if let Some(status) = self.outbox_status() {
            self.settle(&status.delivered, &status.refused, true);
        }
    }

    /// Kept reports that were received (the receipt is shown) or refused (said; a refused
    /// final report is no longer what addenda amend, and what the editors held when it was
    /// signed comes back in front of what they hold now, measurements and marks with it).
    /// `announce`: a receipt is shown (not when it came with another report's signing, whose
    /// own receipt is the one to show); a refusal is always said.
    fn settle(
        &mut self,
        delivered: &[case_protocol::Receipt],
        refused: &[(String, String)],
        announce: bool,
    ) {
        let awaiting = std::mem::take(&mut self.awaiting);
        for a in awaiting {
            let hash = a.hash.clone();
            if let Some(r) = delivered.iter().find(|r| r.report_hash == hash) {
                if announce {
                    self.sign_message = format!(
                        "Report {hash} was received by the case server at {}",
                        r.received_at
                    );
                    self.receipt = Some(r.clone());
                }
            } else if let Some((_, why)) = refused.iter().find(|(h, _)| *h == hash)
                && a.case_id != self.form.case_id.trim()
            {
                self.final_refused(&hash);
                // The Case field names another case now: its text does not go into this
                // draft; it is offered to be taken back in its own.
                self.sign_message = format!(
                    "The case server refused report {hash} of case {}: {why}. It was not \
                     received (kept in the outbox's refused folder): open case {} to take it \
                     back.",
                    a.case_id, a.case_id
                );
                self.refused = None;
            } else if let Some((_, why)) = refused.iter().find(|(h, _)| *h == hash) {
                self.sign_message = format!(
                    "The case server refused report {hash}: {why}. It was not received (kept \
                     in the outbox's refused folder); its text is back in the editors."
                );
                self.final_refused(&hash);
                let case_id = a.case_id.clone();
                self.give_back(a);
                // Its text is in the editors now: not offered again to be taken back.
                self.taken_back.push(TakenBack { hash, case_id });
                self.refused = None;
            } else {
                self.awaiting.push(a);
            }
        }
    }

    /// A report of `case_id` was signed from the editors: the refused reports of that case
    /// taken back into them are answered by it, and move to the refused folder's
    /// `taken-back` (kept); those of another case (the Case field changed after taking them
    /// back) are offered again.
    fn set_aside_taken_back(&mut self, case_id: &str) {
        let taken: Vec<TakenBack> = std::mem::take(&mut self.taken_back);
        if taken.is_empty() {
            return;
        }
        self.refused = None;
        let answered: Vec<TakenBack> = taken.into_iter().filter(|t| t.case_id == case_id).collect();
        if answered.is_empty() {
            return;
        }
        match Outbox::open(&self.outbox_dir()) {
            Ok(outbox) => {
                for t in answered {
                    if let Err(e) = outbox.taken_back(&t.hash) {
                        tracing::warn!("outbox: refused report {} not set aside: {e}", t.hash);
                    }
                }
            }
            Err(e) => tracing::warn!("outbox: refused reports not set aside: {e}"),
        }
    }

    /// The outbox folder signing writes to.
    fn outbox_dir(&self) -> PathBuf {
        self.setup
            .outbox
            .clone()
            .unwrap_or_else(Outbox::default_dir)
    }

    /// Read the outbox's refused reports again (those still awaited in this session are
    /// given back on their own when the refusal is seen).
    pub fn refresh_refused(&mut self) {
        // Nothing signed here yet: no outbox is made for the asking.
        let list = Outbox::existing(&self.outbox_dir())
            .map(|outbox| outbox.refused())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                !self.awaiting.iter().any(|a| a.hash == r.hash)
                    && !self.taken_back.iter().any(|t| t.hash == r.hash)
            })
            .collect();
        self.refused = Some(list);
    }

    /// The signed reports the server refused that no draft has taken back.
    pub fn refused_reports(&mut self) -> &[crate::cases::RefusedReport] {
        if self.refused.is_none() {
            self.refresh_refused();
        }
        self.refused.as_deref().unwrap_or_default()
    }

    /// Take a report the server refused for good (kept in the outbox, perhaps from an
    /// earlier session) back into the editors, to be corrected and signed again: its text
    /// goes in front of what the editors hold, its measurements come back linked (with their
    /// points, not in this viewer), and an addendum goes back as an addendum to the report it
    /// amends. Only into its own case. Its file stays in the refused folder until a report of
    /// the case is signed (then it moves to `taken-back`, kept): a draft dropped before that
    /// (another case, a template, the app closed) leaves it offered again.
    pub fn take_back_refused(&mut self, hash: &str) {
        if self.signing() {
            self.sign_message =
                "a report is being signed: take the refused one back after it".into();
            return;
        }
        let Some(refused) = self
            .refused_reports()
            .iter()
            .find(|r| r.hash == hash)
            .cloned()
        else {
            return;
        };
        let report = refused.signed.report;
        let short = short_hash(hash);
        if report.case_id != self.form.case_id.trim() {
            self.sign_message = format!(
                "Report {short} is of case {}: open that case to take it back",
                report.case_id
            );
            return;
        }
        // An addendum goes back as one, unless the report it amends was refused as well
        // (then there is nothing on the server to amend: it goes back into a final report).
        let base_refused = |r: &mut Self, amends: &str| {
            r.taken_back.iter().any(|t| t.hash == amends)
                || r.refused_reports().iter().any(|x| x.hash == amends)
                || Outbox::existing(&r.outbox_dir()).is_some_and(|o| o.was_taken_back(amends))
        };
        if let case_protocol::ReportKind::Addendum { amends } = &report.kind
            && self.amending().is_none()
            && !base_refused(self, amends)
        {
            self.set_final(SignedFinal {
                case_id: report.case_id.clone(),
                report_hash: amends.clone(),
                findings: format!(
                    "Report {} (signed before this session; its text is kept by the case \
                     server)",
                    short_hash(amends)
                ),
                impression: String::new(),
            });
        }
        let linked = report
            .measurements
            .iter()
            .enumerate()
            .map(|(i, m)| LinkedMeasurement {
                id: format!("signed-{}", i + 1),
                label: m.label.clone(),
                value: m.value,
                unit: m.unit.clone(),
                source: Some(MeasurementSource {
                    viewer_id: None,
                    kind: m.kind.clone(),
                    series_instance_uid: m.series_instance_uid.clone(),
                    frame_of_reference_uid: m.frame_of_reference_uid.clone(),
                    points_mm: m.points_mm.clone(),
                }),
                place: None,
            })
            .collect();
        self.give_back(Awaiting {
            hash: hash.to_string(),
            case_id: report.case_id.clone(),
            findings: report.findings,
            impression: report.impression,
            linked,
            unsure: Vec::new(),
            clips: Vec::new(),
        });
        self.taken_back.push(TakenBack {
            hash: hash.to_string(),
            case_id: report.case_id.clone(),
        });
        self.sign_message = format!(
            "Report {short}, refused ({}), is back in the editors: correct it and sign again \
             (it stays in the outbox's refused folder until a report of this case is signed).",
            refused.reason
        );
        self.refresh_refused();
    }

    /// Put a refused report's text back in front of each section, moving what is there now
    /// (and its marks and measurement places) after it; the refused report's own
    /// measurements and marks come back at their places, its unsure words with their audio.
    fn give_back(&mut self, a: Awaiting) {
        for (section, text) in [
            (Section::Findings, a.findings),
            (Section::Impression, a.impression),
        ] {
            if text.trim().is_empty() {
                continue;
            }
            let old = self.draft.text(section).to_string();
            let new = if old.trim().is_empty() {
                text
            } else {
                format!("{text}\n\n{old}")
            };
            // The edit is known exactly (everything before the old text, or all of it when
            // it was blank): a common prefix of the two texts must not pass for unchanged.
            let change = if old.trim().is_empty() {
                crate::report::Change {
                    start: 0,
                    old_end: old.len(),
                    new_end: new.len(),
                }
            } else {
                crate::report::Change {
                    start: 0,
                    old_end: 0,
                    new_end: new.len() - old.len(),
                }
            };
            match section {
                Section::Findings => self.draft.findings = new,
                Section::Impression => self.draft.impression = new,
            }
            self.follow_edit(
                section,
                &Edit {
                    right: change,
                    left: change,
                },
            );
        }
        // Dictation goes on at the end of the findings; an undo no longer points into text
        // that has moved.
        self.draft.typed(Section::Findings);
        self.linked.extend(a.linked);
        // Its clips go after the ones dictated since; its words' audio indexes move along.
        let offset = self.clips.len();
        self.clips.extend(a.clips);
        self.unsure.extend(a.unsure.into_iter().map(|w| UnsureWord {
            audio: w.audio.map(|(clip, from, to)| (clip + offset, from, to)),
            ..w
        }));
        self.form.override_checks = false;
    }
}

/// A linked measurement as the signed report carries it.
/// `v` to a tenth exactly as the text and the panel write it (`{:.1}`: a tie goes to the
/// even digit, 2.25 to 2.2), so the signed value never differs from the number in the text.
fn tenths(v: f64) -> f64 {
    format!("{v:.1}").parse().unwrap_or(v)
}

fn report_measurement(m: &LinkedMeasurement) -> case_protocol::ReportMeasurement {
    let source = m.source.clone().unwrap_or_default();
    case_protocol::ReportMeasurement {
        label: m.label.clone(),
        kind: if source.kind.is_empty() {
            if m.unit == "mm" { "length" } else { "angle" }.into()
        } else {
            source.kind
        },
        value: tenths(m.value),
        unit: m.unit.clone(),
        // An empty UID is none (the canonical form refuses one given empty).
        series_instance_uid: source.series_instance_uid.filter(|u| !u.is_empty()),
        frame_of_reference_uid: source.frame_of_reference_uid.filter(|u| !u.is_empty()),
        points_mm: source.points_mm,
    }
}

/// The background half of signing: open the key, sign, put the signed report in the outbox
/// (on disk before anything is sent), log in (or use the worklist's login), send it. Once in
/// the outbox the report is signed ([`Signed`]: its receipt, or why it waits there); an error
/// means nothing was signed, or the server refused it for good.
fn sign_and_send(
    report: case_protocol::Report,
    setup: &SignSetup,
    server: &str,
    user: &str,
    (passphrase, password): (&str, &str),
    kept_file: Option<&(DraftRemover, PathBuf)>,
) -> Result<Signed, Unsigned> {
    use crate::cases::{Delivery, EncryptedKey};
    let key_file = setup
        .key_file
        .as_ref()
        .ok_or_else(|| String::from("no signing key"))?;
    let key = EncryptedKey::read(key_file)
        .and_then(|sealed| sealed.open(passphrase))
        .map_err(|e| e.to_string())?;
    let signed = case_protocol::sign_report(report, &key).map_err(|e| e.to_string())?;
    let outbox = Outbox::open(&setup.outbox.clone().unwrap_or_else(Outbox::default_dir))
        .map_err(|e| format!("outbox: {e}"))?;
    let hash = outbox.enqueue(&signed)?;
    // Signed and in the outbox: its draft is no longer one (a crash from here on must not
    // give it back as unsigned).
    // Through the drafts' own queue, after any write of it still queued (a write landing
    // after the removal would bring the file back).
    if let Some((remover, file)) = kept_file
        && !remover.remove_now(file, std::time::Duration::from_secs(5))
    {
        tracing::warn!("the signed draft's file was not removed in time");
    }
    let report = signed.report.clone();
    let amends = match &report.kind {
        case_protocol::ReportKind::Addendum { amends } => Some(amends.clone()),
        case_protocol::ReportKind::Final => None,
    };
    let mut login = None;
    let mut others = Vec::new();
    let receipt = crate::cases::net::block_on(async {
        let mut client =
            CaseClient::new(server, setup.server_ca.as_deref()).map_err(|e| Err(e.to_string()))?;
        match &setup.token {
            Some(token) if password.is_empty() => {
                client = client.with_token(token.clone());
                if let Some(u) = &setup.token_user {
                    client = client.with_user(u);
                }
            }
            _ => {
                client
                    .login(user, password)
                    .await
                    .map_err(|e| Err(e.to_string()))?;
                login = client.token().map(str::to_string);
            }
        }
        // An addendum whose final report still waits in the outbox sends it first (sent
        // alone, the addendum would be refused for good); other waiting reports are the
        // outbox's sender's.
        let wait = std::time::Duration::from_millis(300);
        if let Some(base) = amends.filter(|b| outbox.pending().contains(b)) {
            let d = outbox.deliver_one(&client, &base, 3, wait).await;
            let received = matches!(d, Delivery::Delivered(_));
            others.push(d);
            if !received {
                return Err(Err(format!(
                    "it waits for the report it amends ({base}) to be received first"
                )));
            }
        }
        let delivered = outbox.deliver_one(&client, &hash, 3, wait).await;
        match delivered {
            Delivery::Delivered(receipt) => Ok(receipt),
            Delivery::Refused {
                status, message, ..
            } => Err(Ok(format!(
                "The case server refused the report ({status}): {message}"
            ))),
            Delivery::Pending { error, .. } => Err(Err(error)),
        }
    })
    // No network runtime: kept in the outbox like any report the server did not answer.
    .unwrap_or_else(|e| Err(Err(e)));
    match receipt {
        Ok(r) => Ok(Signed {
            report,
            hash,
            receipt: Ok(r),
            login,
            others,
        }),
        // Refused for good: not signed as far as the case goes (the editors keep the text).
        Err(Ok(refused)) => Err(Unsigned {
            why: refused,
            others,
            refused: Some((hash, report.case_id)),
        }),
        Err(Err(why)) => Ok(Signed {
            report,
            hash,
            receipt: Err(why),
            login,
            others,
        }),
    }
}

/// The text of one section laid out with its unsure words marked.
fn marked_layout(
    ui: &egui::Ui,
    text: &str,
    marks: &[std::ops::Range<usize>],
    wrap_width: f32,
) -> Arc<egui::Galley> {
    let font = egui::TextStyle::Body.resolve(ui.style());
    let color = ui.visuals().widgets.inactive.text_color();
    let plain = egui::TextFormat::simple(font.clone(), color);
    let marked = egui::TextFormat {
        background: egui::Color32::from_rgba_unmultiplied(230, 160, 60, 70),
        underline: egui::Stroke::new(1.5, egui::Color32::from_rgb(230, 160, 60)),
        ..plain.clone()
    };
    let mut job = egui::text::LayoutJob::default();
    let mut at = 0;
    for r in marks {
        let (start, end) = (r.start.max(at).min(text.len()), r.end.min(text.len()));
        if start >= end || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        job.append(&text[at..start], 0.0, plain.clone());
        job.append(&text[start..end], 0.0, marked.clone());
        at = end;
    }
    job.append(&text[at..], 0.0, plain);
    job.wrap.max_width = wrap_width;
    ui.fonts_mut(|f| f.layout_job(job))
}

/// One section's editor: typing keeps the marks in place, a click on a mark replays it.
fn section_editor(r: &mut ReportState, ui: &mut egui::Ui, section: Section, rows: usize) {
    let marks = r.marks(section);
    let old = r.draft.text(section).to_string();
    let mut layouter = |ui: &egui::Ui, buf: &dyn egui::TextBuffer, wrap: f32| {
        marked_layout(ui, buf.as_str(), &marks, wrap)
    };
    let text = match section {
        Section::Findings => &mut r.draft.findings,
        Section::Impression => &mut r.draft.impression,
    };
    let out = egui::TextEdit::multiline(text)
        .desired_rows(rows)
        .desired_width(f32::INFINITY)
        .layouter(&mut layouter)
        .show(ui);
    if out.response.changed() {
        r.typed(section, &old);
    } else if out.response.clicked()
        && let Some(cursor) = out.cursor_range
    {
        let text = r.draft.text(section);
        let byte = text
            .char_indices()
            .nth(cursor.primary.index.0)
            .map_or(text.len(), |(b, _)| b);
        if let Some(i) = r.unsure_at(section, byte) {
            r.replay(i);
        }
    }
}

/// The measurements the viewer has, as the panel offers them: (id, value, unit, source).
type Offer = (u64, f64, &'static str, MeasurementSource);

pub fn report_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    // Kept on disk whether the panel shows or not (an edit just before it was closed); a
    // write put off comes back in a second, input or not.
    if app.report.keep_draft(false) {
        ui.ctx().request_repaint_after(KEEP_EVERY);
    }
    if !app.report.open {
        return;
    }
    let ctx = ui.ctx().clone();
    app.report.poll(&ctx);
    let offers: Vec<Offer> = app
        .measurements
        .iter()
        // Lengths and angles are quoted in reports (and cost nothing to compute each frame;
        // a region's statistics would).
        .filter(|m| {
            matches!(
                m.shape,
                Shape::Length { .. } | Shape::Angle { .. } | Shape::Cobb { .. }
            )
        })
        // A length without Pixel Spacing is in pixels, one with only Imager Pixel Spacing is
        // at the detector (magnified): neither is offered as mm in the patient. An angle at
        // the detector is the angle on the film, as a Cobb angle is read (magnification
        // scales both arms alike); in pixels of unknown shape it is not offered either.
        .filter(|m| match app.measurement_units(m) {
            crate::app::panels::LengthUnits::Millimetres => true,
            crate::app::panels::LengthUnits::DetectorMillimetres => {
                matches!(m.shape, Shape::Angle { .. } | Shape::Cobb { .. })
            }
            crate::app::panels::LengthUnits::Pixels => false,
        })
        .filter_map(|m| {
            let (value, unit) = match app.measurement_value(m)? {
                Value::LengthMm(mm) => (mm, "mm"),
                Value::AngleDeg(d) => (d, "deg"),
                _ => return None,
            };
            Some((m.id, value, unit, app.measurement_source(m)))
        })
        .collect();
    // The studies in words ("2026-03-01 CT CHEST"), for the signing area to say what the
    // report is about.
    let study_names: std::collections::HashMap<String, String> = app
        .patients
        .iter()
        .flat_map(|p| &p.studies)
        .map(|st| {
            let date = st.date.as_deref().unwrap_or("(no date)");
            let description = st.description.as_deref().unwrap_or("(no description)");
            (st.uid.clone(), format!("{date} {description}"))
        })
        .collect();
    let mut go_to = None;
    let r = &mut app.report;
    // A linked measurement edited in the viewer (its handles dragged) links its new value, so
    // the checks compare the text with what the image now shows.
    for m in &mut r.linked {
        if let Some(source) = &mut m.source
            && let Some((_, value, _, now)) = offers.iter().find(|o| Some(o.0) == source.viewer_id)
        {
            m.value = *value;
            source.points_mm.clone_from(&now.points_mm);
        }
    }
    egui::Panel::right("report")
        .frame(super::panels::unfilled(ui))
        .resizable(true)
        .default_size(380.0)
        .min_size(280.0)
        .show(ui, |ui| {
            // Checks and signing stay in view below; the editors scroll above them. (The bottom
            // panel comes first: it takes its place from the whole panel.) A panel is placed by
            // its size in the last frame: when its contents grow (checks appear, the signed
            // text is shown) the frame is laid out again at once, and since every part of it
            // has a height of its own (scroll areas at fixed heights once they scroll), the
            // second layout is the final one: the button never lies below the window's edge.
            let bottom = ui.available_rect_before_wrap().bottom();
            let sign_area = egui::Panel::bottom("report-sign")
                .frame(super::panels::unfilled(ui))
                .resizable(false)
                .show(ui, |ui| sign_area_ui(r, ui, &ctx, &study_names));
            if sign_area.response.rect.bottom() > bottom + 0.5
                || sign_area.response.rect.top() < ui.max_rect().top()
            {
                ctx.request_discard("the report's signing area grew");
            }
            ui.heading("Report");
            kept_offer_ui(r, ui);
            egui::ScrollArea::vertical()
                .id_salt("report-editors")
                .show(ui, |ui| {
                    editors_ui(r, ui, &ctx);
                    measurements_ui(r, ui, &offers, &mut go_to);
                    unsure_ui(r, ui);
                    macros_ui(r, ui);
                });
        });
    if let Some(id) = go_to
        && let Err(e) = app.go_to_measurement(id)
    {
        app.report.message = e;
    }
}

/// A draft kept for this case (or study) that the editors do not hold: give it back, or
/// delete it.
fn kept_offer_ui(r: &mut ReportState, ui: &mut egui::Ui) {
    let offers = r.kept_offers();
    let Some(kept) = offers.first() else {
        return;
    };
    let whose = if kept.content.case_id.is_empty() {
        "this study".to_string()
    } else {
        format!("case {}", kept.content.case_id)
    };
    let by = if kept.content.user.is_empty() || kept.content.user == r.form.user.trim() {
        String::new()
    } else {
        format!(" by {}", kept.content.user)
    };
    let mut said = format!("An unsigned draft of {whose}{by} is kept ({}).", kept.age());
    if offers.len() > 1 {
        said += &format!(" {} older ones too.", offers.len() - 1);
    }
    let signing = r.signing();
    ui.group(|ui| {
        ui.label(said);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!signing, egui::Button::new("Restore the draft"))
                .on_hover_text(
                    "Put it in the editors; what they hold is kept as a draft of its own",
                )
                .clicked()
            {
                r.restore_offered();
            }
            if ui
                .add_enabled(!signing, egui::Button::new("Delete the draft"))
                .clicked()
            {
                r.discard_offered();
            }
        });
    });
}

fn editors_ui(r: &mut ReportState, ui: &mut egui::Ui, ctx: &egui::Context) {
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
        let amending = r.amending().map(|f| f.case_id.clone());
        let label = if amending.is_some() {
            "Start the addendum over"
        } else {
            "Use template"
        };
        let button = ui.add_enabled(!r.signing(), egui::Button::new(label));
        let button = match &amending {
            Some(case) => button.on_hover_text(format!(
                "Case {case} has its signed final report: what is written here is an \
                 addendum to it"
            )),
            None => button,
        };
        if button.clicked() {
            r.use_template();
        }
    });
    // While a report is being signed its text is read-only: what is typed meanwhile would be
    // cleared with the signed text without having been signed.
    let signing = r.signing();
    if let Some(signed) = r.amending() {
        egui::CollapsingHeader::new(format!("Signed report of case {}", signed.case_id)).show(
            ui,
            |ui| {
                ui.label(&signed.findings);
                ui.strong(&signed.impression);
            },
        );
        ui.add_enabled_ui(!signing, |ui| {
            ui.label("Addendum");
            section_editor(r, ui, Section::Findings, 6);
            ui.label("Revised impression (optional)");
            section_editor(r, ui, Section::Impression, 2);
        });
    } else {
        ui.add_enabled_ui(!signing, |ui| {
            ui.label("Findings");
            section_editor(r, ui, Section::Findings, 10);
            ui.label("Impression");
            section_editor(r, ui, Section::Impression, 3);
        });
    }
    ui.horizontal(|ui| {
        let label = if r.recording() {
            "Stop dictation"
        } else {
            "Dictate"
        };
        let mut hint = String::from("Click to start and stop");
        if let Some(k) = r.push_to_talk.key {
            hint += &format!("; or hold {}", k.name());
        }
        if let Some(b) = r.push_to_talk.button {
            hint += &format!("; or hold the {b:?} mouse button");
        }
        if ui
            .add_enabled(!r.busy(), egui::Button::new(label))
            .on_hover_text(hint)
            .clicked()
        {
            r.toggle_recording(ctx);
        }
        if let Some(rec) = &r.recorder {
            let level = ((rec.level_dbfs() + 60.0) / 60.0).clamp(0.0, 1.0);
            ui.add(egui::ProgressBar::new(level).desired_width(80.0));
            ctx.request_repaint();
        }
        ui.label(&r.message);
    });
}

fn measurements_ui(
    r: &mut ReportState,
    ui: &mut egui::Ui,
    offers: &[Offer],
    go_to: &mut Option<u64>,
) {
    if !offers.is_empty() {
        ui.separator();
        ui.label("Insert a measurement");
        for (id, value, unit, source) in offers {
            let shown = if *unit == "mm" {
                format!("{value:.1} mm")
            } else {
                format!("{value:.1}°")
            };
            if ui.button(format!("Insert #{id} {shown}")).clicked() {
                r.insert_measurement(*value, unit, source.clone());
            }
        }
    }
    if !r.linked.is_empty() {
        ui.label("Linked measurements (name each as the text does)");
        let signing = r.signing();
        let mut remove = None;
        for (i, m) in r.linked.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                if let Some(viewer_id) = m.source.as_ref().and_then(|s| s.viewer_id)
                    && ui
                        .small_button(format!("Show {}", m.id))
                        .on_hover_text("Show it in the viewer")
                        .clicked()
                {
                    *go_to = Some(viewer_id);
                }
                ui.label(format!("{:.1} {}", m.value, m.unit));
                // The label is signed with the measurement: read-only while a report is
                // signed. Narrower than a default field, so the row with Remove still fits
                // the panel.
                ui.add_enabled(
                    !signing,
                    egui::TextEdit::singleline(&mut m.label).desired_width(160.0),
                );
                if ui
                    .add_enabled(!signing, egui::Button::new("Remove").small())
                    .on_hover_text("Not part of this report: it is not signed with it")
                    .clicked()
                {
                    remove = Some(i);
                }
            });
        }
        if let Some(i) = remove {
            r.remove_linked(i);
        }
    }
}

fn unsure_ui(r: &mut ReportState, ui: &mut egui::Ui) {
    let open: Vec<usize> = (0..r.unsure.len())
        .filter(|&i| !r.unsure[i].resolved)
        .collect();
    if open.is_empty() {
        return;
    }
    ui.separator();
    ui.label("Words to confirm (marked in the text; click one there or here to hear it)");
    let mut play = None;
    for i in open {
        let w = &mut r.unsure[i];
        ui.horizontal(|ui| {
            ui.label(format!("{} ({:.0}%)", w.text, 100.0 * w.confidence));
            if w.audio.is_some() && ui.small_button(format!("Play \"{}\"", w.text)).clicked() {
                play = Some(i);
            }
            if ui.small_button("OK").clicked() {
                w.resolved = true;
            }
        });
    }
    if let Some(i) = play {
        r.replay(i);
    }
}

fn macros_ui(r: &mut ReportState, ui: &mut egui::Ui) {
    ui.separator();
    // A fixed id: the title changes with the count, and the header must stay open.
    egui::CollapsingHeader::new(format!("Macros ({})", r.macros.len()))
        .id_salt("macros")
        .show(ui, |ui| {
            let mut insert = None;
            let mut delete = None;
            let signing = r.signing();
            for name in r.macros.keys() {
                ui.horizontal(|ui| {
                    if ui
                        .add_enabled(
                            !signing,
                            egui::Button::new(format!("Insert {name}")).small(),
                        )
                        .clicked()
                    {
                        insert = Some(name.clone());
                    }
                    if ui.small_button(format!("Delete {name}")).clicked() {
                        delete = Some(name.clone());
                    }
                });
            }
            if let Some(name) = insert {
                r.insert_macro(&name);
            }
            if let Some(name) = delete {
                r.delete_macro(&name);
            }
            ui.horizontal(|ui| {
                let label = ui.label("Macro name");
                ui.text_edit_singleline(&mut r.macro_name)
                    .labelled_by(label.id);
            });
            let label = ui.label("Macro text");
            ui.add(
                egui::TextEdit::multiline(&mut r.macro_text)
                    .desired_rows(3)
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
            if ui.button("Save macro").clicked() {
                r.save_macro();
            }
            if !r.macro_message.is_empty() {
                ui.small(&r.macro_message);
            }
        });
}

/// Checks, the sign form, the text to be signed, the button and the outbox.
fn sign_area_ui(
    r: &mut ReportState,
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    study_names: &std::collections::HashMap<String, String>,
) {
    let named = |uids: &[String]| -> String {
        uids.iter()
            .map(|u| {
                study_names
                    .get(u)
                    .cloned()
                    .unwrap_or_else(|| format!("study {u}"))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let checks = r.checks();
    if checks.is_empty() {
        ui.label("No open checks: ready to sign.");
    } else {
        ui.label(format!("Before signing ({})", checks.len()));
        egui::ScrollArea::vertical()
            .id_salt("checks")
            .max_height(110.0)
            .min_scrolled_height(110.0)
            .show(ui, |ui| {
                for c in &checks {
                    ui.colored_label(egui::Color32::from_rgb(230, 160, 60), &c.message);
                }
            });
        if checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Unprintable { .. }) && c.section.is_some())
        {
            ui.label("Characters the printed report cannot show must be replaced before signing.");
            if ui
                .button("Replace them by printable forms (≥ as >=, tab as space)")
                .clicked()
            {
                r.make_printable();
            }
        }
        let ticked = ui
            .checkbox(
                &mut r.form.override_checks,
                "I have seen these checks and sign anyway",
            )
            .changed()
            && r.form.override_checks;
        r.keep_override_for(&checks, ticked);
    }
    ui.separator();
    ui.strong("Signing");
    egui::Grid::new("sign").num_columns(2).show(ui, |ui| {
        ui.label("Case");
        if r.from_worklist {
            // Opened from the worklist: the report is that case's, about its study.
            ui.label(&r.form.case_id)
                .on_hover_text("The case opened from the worklist");
        } else {
            // Fixed while a report is signed: the signing's case, and its draft's key, stay.
            if ui
                .add_enabled(
                    !r.signing(),
                    egui::TextEdit::singleline(&mut r.form.case_id),
                )
                .changed()
            {
                r.case_field_edited();
            }
        }
        ui.end_row();
        // What the report is about, as it will be signed.
        ui.label("Study");
        let studies = r.report_studies();
        ui.label(if studies.is_empty() {
            "(none open)".to_string()
        } else {
            named(&studies)
        })
        .on_hover_text(studies.join("\n"));
        ui.end_row();
        if let Some(other) = r.other_studies_on_screen().map(<[String]>::to_vec) {
            ui.label("");
            ui.vertical(|ui| {
                ui.label(format!("On screen: {}", named(&other)));
                if ui
                    .add_enabled(
                        !r.signing(),
                        egui::Button::new("Report on the study on screen"),
                    )
                    .clicked()
                {
                    r.report_on_screen_studies();
                }
            });
            ui.end_row();
        }
        ui.label("User");
        ui.add_enabled(!r.signing(), egui::TextEdit::singleline(&mut r.form.user));
        ui.end_row();
        ui.label("Name");
        ui.text_edit_singleline(&mut r.form.display_name);
        ui.end_row();
        ui.label("Key passphrase");
        ui.add(egui::TextEdit::singleline(&mut r.form.passphrase).password(true));
        ui.end_row();
        if r.setup.token.is_none() {
            ui.label("Server password");
            ui.add(egui::TextEdit::singleline(&mut r.form.password).password(true));
            ui.end_row();
        }
    });
    // A toggle, not an animated header: the area grows in one frame.
    ui.toggle_value(&mut r.show_signed_text, "The text to be signed");
    if r.show_signed_text {
        let text = r
            .report_to_sign()
            .and_then(|rep| case_protocol::canonical_bytes(&rep).map_err(|e| e.to_string()))
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        egui::ScrollArea::vertical()
            .id_salt("canonical")
            .max_height(160.0)
            .min_scrolled_height(160.0)
            .show(ui, |ui| match text {
                Ok(t) => {
                    ui.monospace(t);
                }
                Err(e) => {
                    ui.label(e);
                }
            });
    }
    // A character the printed report cannot show is fixed, never signed over.
    let blocked = checks.iter().any(|c| c.kind.blocks());
    let allowed = (checks.is_empty() || r.form.override_checks)
        && !blocked
        && !r.signing()
        && !r.dictation_in_flight()
        && !r.form.case_id.trim().is_empty();
    if r.dictation_in_flight() && !r.signing() {
        ui.label(DICTATION_FIRST);
    }
    let label = if r.amending().is_some() {
        "Sign and send addendum"
    } else {
        "Sign and send"
    };
    if ui.add_enabled(allowed, egui::Button::new(label)).clicked() {
        r.sign_and_send(ctx);
    }
    if !r.sign_message.is_empty() {
        ui.label(&r.sign_message);
    }
    if let Some(status) = r.outbox_status() {
        let line = outbox_line(&status, r.awaiting.len());
        ui.small(line);
    } else if !r.outbox_message.is_empty() {
        ui.small(&r.outbox_message);
    }
    // Refusals stay in sight, from this session or an earlier one: each is a signed report
    // the server did not take, until its text is taken back into a draft of its case.
    let case = r.form.case_id.trim().to_string();
    let signing = r.signing();
    let mut take_back = None;
    for refused in r.refused_reports() {
        let report = &refused.signed.report;
        let kind = match report.kind {
            case_protocol::ReportKind::Final => "report",
            case_protocol::ReportKind::Addendum { .. } => "addendum",
        };
        ui.colored_label(
            egui::Color32::from_rgb(230, 80, 60),
            format!(
                "Refused by the case server: {kind} {} of case {}, signed {}: {} (kept in the \
                 outbox's refused folder)",
                short_hash(&refused.hash),
                report.case_id,
                report.signed_at,
                refused.reason
            ),
        );
        let own_case = report.case_id == case;
        let button = ui
            .add_enabled(
                own_case && !signing,
                egui::Button::new("Take back into the draft"),
            )
            .on_hover_text("Its text and measurements go back in front of the editors' text, to be corrected and signed again")
            .on_disabled_hover_text(format!("Open case {} to take it back", report.case_id));
        if button.clicked() {
            take_back = Some(refused.hash.clone());
        }
    }
    if let Some(hash) = take_back {
        r.take_back_refused(&hash);
    }
}

/// The first 16 hex digits of a report hash, as the panel shows one.
/// The outbox's state in a line: what waits and why, or all sent. `awaiting`: reports this
/// panel signed that have no receipt yet (the sender's count is its last round's, and a report
/// signed since waits still).
fn outbox_line(status: &OutboxStatus, awaiting: usize) -> String {
    let line = outbox_sending_line(status, awaiting);
    if status.damaged == 0 {
        return line;
    }
    // Whatever else is said: a signed report that never went stays in view.
    format!(
        "{line}; {} signed report file(s) damaged on disk and NOT sent (set aside in the \
         outbox's damaged folder): sign those reports again",
        status.damaged
    )
}

fn outbox_sending_line(status: &OutboxStatus, awaiting: usize) -> String {
    if status.needs_login {
        format!(
            "Outbox: {} waiting; the login expired: sign in again in the worklist",
            status.pending.max(awaiting)
        )
    } else if status.pending > 0 {
        format!(
            "Outbox: {} waiting ({})",
            status.pending,
            status.last_error.as_deref().unwrap_or("sending")
        )
    } else if awaiting > 0 {
        format!("Outbox: {awaiting} waiting (sending)")
    } else {
        format!("Outbox: all sent ({} this session)", status.delivered.len())
    }
}

fn short_hash(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictation::{Transcript, Word};

    fn word(text: &str, confidence: f32, start_s: f64) -> Word {
        Word {
            text: text.into(),
            confidence,
            start_s,
            end_s: start_s + 0.4,
        }
    }

    fn transcript(text: &str, words: Vec<Word>) -> Transcript {
        Transcript {
            text: text.into(),
            words,
            audio_s: 3.0,
            speech_s: Some((0.0, 3.0)),
            audio_ctx: 256,
            compute_s: 0.1,
        }
    }

    /// Final report abc123 of C-1 ("Nodule 14.2 mm." / "Follow up."), signed, in the outbox,
    /// not yet received.
    fn unreceived_final() -> Signed {
        Signed {
            report: final_report("Nodule 14.2 mm.", "Follow up."),
            hash: "abc123".into(),
            receipt: Err("the case server could not be reached".into()),
            login: None,
            others: Vec::new(),
        }
    }

    fn state() -> ReportState {
        let dir = std::env::temp_dir().join("overread-no-macros-here");
        ReportState::new(PanelSettings {
            macros_dir: Some(dir),
            ..PanelSettings::default()
        })
    }

    /// The value signed with a linked measurement is the number its text shows: an exact tie
    /// (2.25 mm, three 0.75 mm pixels) was written "2.2 mm" and signed as 2.3.
    #[test]
    fn a_signed_measurement_is_the_number_in_the_text() {
        let mut r = state();
        r.draft.section = Some(Section::Findings);
        for (value, shown) in [(2.25, 2.2), (2.35, 2.4), (14.16, 14.2), (0.75, 0.8)] {
            r.draft.findings.clear();
            r.draft.cursor = 0;
            r.linked.clear();
            r.insert_measurement(value, "mm", MeasurementSource::default());
            let signed = report_measurement(&r.linked[0]);
            assert_eq!(signed.value, shown, "{value}");
            assert!(
                r.draft
                    .findings
                    .contains(&format!("{:.1} mm", signed.value)),
                "{value}: {} / {}",
                r.draft.findings,
                signed.value
            );
        }
    }

    /// A panel keeping its drafts in `dir`.
    fn keeping(dir: &std::path::Path) -> ReportState {
        ReportState::new(PanelSettings {
            macros_dir: Some(std::env::temp_dir().join("overread-no-macros-here")),
            drafts_dir: Some(dir.to_path_buf()),
            ..PanelSettings::default()
        })
    }

    /// A panel keeping drafts in `dir`, `user` signing, case C-1 (study 1.2.3) opened from
    /// the worklist and `findings` written and kept.
    fn drafted(dir: &std::path::Path, user: &str, findings: &str) -> ReportState {
        let mut r = keeping(dir);
        r.form.user = user.into();
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = findings.into();
        keep_now(&mut r);
        r
    }

    fn kept_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    }

    /// Written, and on disk before this returns.
    fn keep_now(r: &mut ReportState) {
        r.keep_draft(true);
        flushed(r);
    }

    /// "Nodule" at the start of the findings, dictated unsure (confidence 0.3), its audio the
    /// first 0.2 s of clip 0.
    fn unsure_nodule() -> UnsureWord {
        UnsureWord {
            text: "Nodule".into(),
            confidence: 0.3,
            at: Some((Section::Findings, 0..6)),
            audio: Some((0, 0.0, 0.2)),
            ..UnsureWord::default()
        }
    }

    /// Every write and removal the drafts' queue holds is done.
    fn flushed(r: &ReportState) {
        assert!(
            r.drafts
                .as_ref()
                .unwrap()
                .flush(std::time::Duration::from_secs(10))
        );
    }

    /// The drafts of case C-1 on disk in `dir`, as "author: findings".
    fn kept_of_c1(dir: &std::path::Path) -> Vec<String> {
        let (store, _) = DraftStore::open(dir);
        store
            .drafts_of(&DraftKey::Case("C-1".into()))
            .iter()
            .map(|d| format!("{}: {}", d.content.user, d.content.findings))
            .collect()
    }

    /// rad2's draft of C-1 kept in `dir`; then rad1, at a panel keeping its drafts there,
    /// opens C-1 (rad2's draft offered, not given) and keeps the text
    /// [`unreceived_final`] signs.
    fn rad1_beside_rad2(dir: &std::path::Path) -> ReportState {
        drafted(dir, "rad2", "Their reading.");
        let mut r = keeping(dir);
        r.form.user = "rad1".into();
        r.start_case("C-1", Some("1.2.3"));
        assert!(r.draft.findings.is_empty(), "offered, not given");
        r.draft.findings = "Nodule 14.2 mm.".into();
        r.draft.impression = "Follow up.".into();
        keep_now(&mut r);
        r
    }

    /// With no case named, a draft is its study's: another study opened keeps it under its
    /// own study and empties the editors (it was refiled under the new study, a report of a
    /// study it never read), and the first study opened again gives it back. Text typed
    /// before any study was open goes with the first study.
    #[test]
    fn a_study_draft_stays_with_its_study() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = keeping(dir.path());
        r.form.user = "rad1".into();
        r.draft.findings = "Typed first.".into();
        r.show_studies(vec!["1.2.3".into()]);
        assert_eq!(r.draft.findings, "Typed first.");
        r.draft.findings = "Study one: no nodule.".into();
        keep_now(&mut r);

        r.show_studies(vec!["4.5.6".into()]);
        assert!(r.draft.findings.is_empty(), "{}", r.draft.findings);
        keep_now(&mut r);
        let store = r.drafts.as_ref().unwrap();
        let of = |uid: &str| {
            store
                .drafts_of(&DraftKey::Study(vec![uid.into()]))
                .iter()
                .map(|d| d.content.findings.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(of("1.2.3"), ["Study one: no nodule."]);
        assert!(of("4.5.6").is_empty());
        r.draft.findings = "Study two.".into();
        keep_now(&mut r);

        r.show_studies(vec!["1.2.3".into()]);
        assert_eq!(r.draft.findings, "Study one: no nodule.");
        assert_eq!(r.message, "the unsigned draft of this study is back");
        r.show_studies(vec!["4.5.6".into()]);
        assert_eq!(r.draft.findings, "Study two.");
        assert_eq!(kept_files(dir.path()), 2);

        // Dictation waiting to be transcribed belongs to the study it was spoken over: the
        // report stays that study's until it has landed.
        r.queued = Some(Clip {
            samples: vec![0.0; 1600],
            rate: 16_000,
        });
        r.show_studies(vec!["1.2.3".into()]);
        assert_eq!(r.draft.findings, "Study two.");
        assert_eq!(r.study_uids, ["4.5.6"]);
        assert!(r.message.contains("dictation runs"), "{}", r.message);
        r.queued = None;

        // A stack of no known study changes nothing.
        r.show_studies(Vec::new());
        assert_eq!(r.draft.findings, "Study two.");
        assert_eq!(r.study_uids, ["4.5.6"]);

        // A case named: its draft stays in the editors whatever study is shown.
        r.form.case_id = "C-9".into();
        r.show_studies(vec!["7.8.9".into()]);
        assert_eq!(r.draft.findings, "Study two.");
    }

    /// The outbox line never says "all sent" while a report signed here waits for its
    /// receipt (the sender's count is its last round's).
    #[test]
    fn the_outbox_line_counts_what_waits() {
        let status = OutboxStatus::default();
        assert_eq!(outbox_line(&status, 0), "Outbox: all sent (0 this session)");
        assert_eq!(outbox_line(&status, 1), "Outbox: 1 waiting (sending)");
        // A damaged report file set aside is never hidden behind "all sent".
        let damaged = OutboxStatus {
            damaged: 1,
            ..OutboxStatus::default()
        };
        let line = outbox_line(&damaged, 0);
        assert!(
            line.starts_with("Outbox: all sent")
                && line.contains("1 signed report file(s) damaged"),
            "{line}"
        );
    }

    /// A report not yet received says when it will be sent: by the sender running, or, where
    /// that sender is another user's login (it sends its own user's reports only), when its
    /// author signs in ("will be sent" made an unsent report look on its way).
    #[test]
    fn an_unreceived_report_says_whose_login_sends_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = keeping(&dir.path().join("drafts"));
        r.setup.outbox = Some(dir.path().join("outbox"));
        r.start_case("C-1", Some("1.2.3"));
        r.signed(unreceived_final(), true);
        assert!(
            r.sign_message
                .ends_with("will be sent once you sign in to the worklist."),
            "{}",
            r.sign_message
        );
        // Nothing listens there: the sender only waits.
        let client = CaseClient::new("http://127.0.0.1:9", None).unwrap();
        r.connect_outbox(client.clone().with_user("rad2"));
        r.start_case("C-2", Some("4.5.6"));
        let mut other = unreceived_final();
        other.report.case_id = "C-2".into();
        r.signed(other, true);
        assert!(
            r.sign_message
                .ends_with("will be sent when rad1 signs in to the worklist."),
            "{}",
            r.sign_message
        );
        r.connect_outbox(client.with_user("rad1"));
        r.start_case("C-3", Some("7.8.9"));
        let mut own = unreceived_final();
        own.report.case_id = "C-3".into();
        r.signed(own, true);
        assert!(
            r.sign_message.ends_with("and will be sent."),
            "{}",
            r.sign_message
        );
    }

    /// A final report of the case still in the outbox (an earlier session's, one signed
    /// after its case was left, or one a crash left beside its draft) is what a new draft of
    /// the case amends: it was signed as a second final report, and the server took
    /// whichever came first. The first signed of two is the one.
    #[test]
    fn a_final_still_in_the_outbox_is_what_the_case_amends() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let sign = |signed_at: &str, findings: &str| {
            let mut report = final_report(findings, "Follow up.");
            report.signed_at = signed_at.into();
            let key = case_protocol::SigningKey::generate();
            report.key_id = key.verifying_key().id().0;
            outbox
                .enqueue(&case_protocol::sign_report(report, &key).unwrap())
                .unwrap()
        };
        let first = sign("2026-11-24T10:00:00Z", "Nodule 14.2 mm.");
        sign("2026-11-24T11:00:00Z", "Nodule 14.3 mm.");
        let mut r = keeping(&dir.path().join("drafts"));
        r.setup.outbox = Some(dir.path().join("outbox"));
        r.form.user = "rad1".into();
        assert!(r.amending().is_none());
        r.start_case("C-1", Some("1.2.3"));
        let amended = r.amending().expect("the final in the outbox");
        assert_eq!(amended.report_hash, first);
        assert_eq!(amended.findings, "Nodule 14.2 mm.");
        // Another case has none.
        r.start_case("C-2", Some("4.5.6"));
        assert!(r.amending().is_none());
    }

    /// Words spoken and not yet in the editors: signing waits for them (they were left out
    /// of the signed report and landed in the next draft), another case waits for them (they
    /// were dropped unheard), and signing out drops them, said, rather than leave them in
    /// front of whoever signs in next.
    #[test]
    fn a_dictation_still_landing_holds_signing_and_the_case() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = keeping(dir.path());
        r.form.user = "rad1".into();
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "No nodule.".into();
        r.queued = Some(Clip {
            samples: vec![0.0; 1600],
            rate: 16_000,
        });
        r.sign_and_send(&egui::Context::default());
        assert!(!r.signing());
        assert_eq!(r.sign_message, DICTATION_FIRST);
        r.start_case("C-2", Some("4.5.6"));
        assert_eq!(r.form.case_id, "C-1");
        assert_eq!(r.draft.findings, "No nodule.");
        assert!(r.message.contains("dictation runs"), "{}", r.message);
        assert!(r.dictation_in_flight());
        r.put_away_draft();
        assert!(!r.dictation_in_flight());
        assert!(r.message.contains("discarded"), "{}", r.message);
        assert!(r.form.case_id.is_empty());
        // Landed (nothing in flight), another case opens.
        r.start_case("C-2", Some("4.5.6"));
        assert_eq!(r.form.case_id, "C-2");
    }

    /// A case typed in: its report stays about the study it was first shown with. A prior
    /// opened after it does not change what the report names (it did: the report was signed
    /// about the prior, and the case server refused it); the signing area offers the study
    /// on screen, and taking it makes the report about that one. A case from the worklist
    /// is about its own study whatever is shown, and offers nothing.
    #[test]
    fn a_typed_case_keeps_its_study_when_a_prior_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = keeping(dir.path());
        r.form.user = "rad1".into();
        r.show_studies(vec!["1.2.3".into()]);
        r.form.case_id = "C-7".into();
        assert!(r.other_studies_on_screen().is_none());
        r.draft.findings = "Current study read.".into();
        r.show_studies(vec!["9.9.9".into()]);
        assert_eq!(r.report_studies(), ["1.2.3"]);
        assert_eq!(r.draft.findings, "Current study read.");
        assert_eq!(
            r.other_studies_on_screen(),
            Some(&["9.9.9".to_string()][..])
        );
        r.show_studies(vec!["1.2.3".into()]);
        assert!(r.other_studies_on_screen().is_none());
        r.show_studies(vec!["9.9.9".into()]);
        r.report_on_screen_studies();
        assert_eq!(r.report_studies(), ["9.9.9"]);
        assert!(r.other_studies_on_screen().is_none());
        assert_eq!(r.draft.findings, "Current study read.");

        // The Case field emptied: the report is the study on screen's again.
        r.show_studies(vec!["1.2.3".into()]);
        assert!(r.other_studies_on_screen().is_some());
        r.form.case_id.clear();
        r.case_field_edited();
        assert_eq!(r.report_studies(), ["1.2.3"]);
        assert_eq!(r.draft.findings, "Current study read.");

        r.start_case("C-8", Some("4.5.6"));
        r.show_studies(vec!["7.7.7".into()]);
        assert_eq!(r.report_studies(), ["4.5.6"]);
        assert!(r.other_studies_on_screen().is_none());
        // Files dropped in (a prior) leave the worklist: the case stays named and its report
        // about the case's study, the prior offered.
        r.leave_worklist_case();
        r.show_studies(vec!["8.8.8".into()]);
        assert_eq!(r.form.case_id, "C-8");
        assert_eq!(r.report_studies(), ["4.5.6"]);
        assert_eq!(
            r.other_studies_on_screen(),
            Some(&["8.8.8".to_string()][..])
        );
    }

    /// A draft that cannot be kept on disk is never emptied from the editors: another study
    /// or case opened leaves it there, still of its own study or case, and says why (the
    /// store forgets a draft whose write failed, so emptying the editors lost it).
    #[test]
    fn a_draft_that_cannot_be_kept_stays_in_the_editors() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the drafts folder should be: every write fails.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        let mut r = keeping(&blocked.join("drafts"));
        r.form.user = "rad1".into();
        r.show_studies(vec!["1.2.3".into()]);
        r.draft.findings = "Study one: no nodule.".into();
        r.show_studies(vec!["4.5.6".into()]);
        assert_eq!(r.draft.findings, "Study one: no nodule.");
        assert_eq!(r.study_uids, ["1.2.3"]);
        assert!(r.message.contains("could not be kept"), "{}", r.message);

        // Nor is the worklist's case opened over it; cleared by hand, the case opens.
        r.start_case("C-1", Some("1.2.3"));
        assert_eq!(r.form.case_id, "");
        assert_eq!(r.draft.findings, "Study one: no nodule.");
        r.draft.findings.clear();
        r.start_case("C-1", Some("1.2.3"));
        assert_eq!(r.form.case_id, "C-1");
        r.draft.findings = "Case one.".into();
        r.start_case("C-2", Some("4.5.6"));
        assert_eq!(r.draft.findings, "Case one.");
        assert_eq!(r.form.case_id, "C-1");
        assert_eq!(r.case_studies, Some(vec!["1.2.3".to_string()]));
        assert!(r.message.contains("could not be kept"), "{}", r.message);
    }

    /// A case left for another and opened again gives its draft back: text, cursor, linked
    /// measurements at their places, unsure words (resolved or not; without audio) and the
    /// refused reports taken back into it. So does the workstation opened again.
    #[test]
    fn a_case_left_and_opened_again_gives_its_draft_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = keeping(dir.path());
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "Nodule 14.2 mm.".into();
        r.draft.impression = "Follow up.".into();
        r.draft.section = Some(Section::Impression);
        r.draft.cursor = 6;
        r.linked.push(LinkedMeasurement {
            id: "#1".into(),
            label: "nodule".into(),
            value: 14.2,
            unit: "mm".into(),
            source: Some(MeasurementSource {
                viewer_id: Some(3),
                kind: "length".into(),
                points_mm: vec![[0.0; 3], [14.2, 0.0, 0.0]],
                ..MeasurementSource::default()
            }),
            place: Some((Section::Findings, 7..14)),
        });
        r.unsure.push(unsure_nodule());
        r.taken_back.push(TakenBack {
            hash: "feed".into(),
            case_id: "C-1".into(),
        });
        keep_now(&mut r);

        r.start_case("C-2", Some("4.5.6"));
        assert!(r.draft.findings.is_empty() && r.linked.is_empty() && r.unsure.is_empty());
        keep_now(&mut r);
        assert_eq!(kept_files(dir.path()), 1, "an empty draft is not kept");

        let check = |r: &ReportState| {
            assert_eq!(r.draft.findings, "Nodule 14.2 mm.");
            assert_eq!(r.draft.impression, "Follow up.");
            assert_eq!(
                (r.draft.section, r.draft.cursor),
                (Some(Section::Impression), 6)
            );
            assert_eq!(r.linked.len(), 1);
            assert_eq!(r.linked[0].place, Some((Section::Findings, 7..14)));
            assert_eq!(r.linked[0].value, 14.2);
            assert_eq!(r.unsure.len(), 1);
            assert_eq!(r.unsure[0].at, Some((Section::Findings, 0..6)));
            assert!(!r.unsure[0].resolved);
            assert_eq!(r.unsure[0].audio, None);
            assert_eq!(r.taken_back.len(), 1);
            assert_eq!(r.taken_back[0].hash, "feed");
            // The unsure word still stops the signing as it did.
            assert!(
                r.checks()
                    .iter()
                    .any(|c| matches!(c.kind, CheckKind::UnsureWord { .. })),
                "{:?}",
                r.checks()
            );
        };
        r.start_case("C-1", Some("1.2.3"));
        check(&r);
        assert!(r.kept_offers().is_empty(), "the editors hold it");
        // Given back, it is the editors' own again: its next change writes over it.
        r.draft.findings.push_str(" Stable.");
        keep_now(&mut r);
        assert_eq!(kept_files(dir.path()), 1);
        drop(r);

        let mut again = keeping(dir.path());
        again.start_case("C-1", Some("1.2.3"));
        assert_eq!(again.draft.findings, "Nodule 14.2 mm. Stable.");
    }

    /// A draft never writes over another kept under the same key: both are kept, the other
    /// is offered, giving it back keeps what the editors held, deleting it is the
    /// radiologist's choice; and a study's draft named for a case moves to it.
    #[test]
    fn a_kept_draft_is_offered_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        drop(drafted(dir.path(), "", "First draft."));
        let texts = |dir: &std::path::Path| {
            let (store, _) = DraftStore::open(dir);
            let mut t: Vec<String> = store
                .drafts_of(&DraftKey::Case("C-1".into()))
                .iter()
                .map(|k| k.content.findings.clone())
                .collect();
            t.sort();
            t
        };

        // Another run: the case is typed, not opened from the worklist, over other text.
        let mut r = keeping(dir.path());
        r.study_uids = vec!["1.2.3".into()];
        r.draft.findings = "Second draft.".into();
        keep_now(&mut r);
        r.form.case_id = "C-1".into();
        keep_now(&mut r);
        assert_eq!(texts(dir.path()), ["First draft.", "Second draft."]);
        assert_eq!(
            kept_files(dir.path()),
            2,
            "the study's file moved to the case"
        );
        let offers: Vec<&str> = r
            .kept_offers()
            .iter()
            .map(|k| k.content.findings.as_str())
            .collect();
        assert_eq!(offers, ["First draft."]);
        r.restore_offered();
        assert_eq!(r.draft.findings, "First draft.");
        // What the editors held is offered in its turn.
        let offers: Vec<&str> = r
            .kept_offers()
            .iter()
            .map(|k| k.content.findings.as_str())
            .collect();
        assert_eq!(offers, ["Second draft."]);
        r.draft.findings.push_str(" Edited.");
        keep_now(&mut r);
        assert_eq!(texts(dir.path()), ["First draft. Edited.", "Second draft."]);

        // Deleted on request: the offered one only.
        r.discard_offered();
        keep_now(&mut r);
        assert_eq!(texts(dir.path()), ["First draft. Edited."]);
        assert!(r.kept_offers().is_empty());
    }

    /// The signing removes the signed draft's file as soon as the report is in the outbox,
    /// before anything is sent (here the server is away): a crash from then on cannot give
    /// it back as an unsigned draft. A signing that fails before the outbox leaves it.
    #[test]
    fn the_signing_removes_the_drafts_file_once_the_report_is_in_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let key = case_protocol::SigningKey::generate();
        let key_file = dir.path().join("key.sealed");
        crate::cases::EncryptedKey::seal(&key, "a long passphrase")
            .unwrap()
            .write(&key_file)
            .unwrap();
        let setup = SignSetup {
            server: None,
            server_ca: None,
            key_file: Some(key_file),
            outbox: Some(dir.path().join("outbox")),
            token: None,
            token_user: None,
        };
        let mut report = final_report("Nodule 14.2 mm.", "Follow up.");
        report.key_id = key.verifying_key().id().0;
        let mut r = keeping(&dir.path().join("drafts"));
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "Nodule 14.2 mm.".into();
        keep_now(&mut r);
        let kept = r.kept_file_to_sign().expect("a kept draft");
        let draft = kept.1.clone();
        assert!(draft.exists());
        // A wrong passphrase: nothing signed, the draft stays.
        assert!(
            sign_and_send(
                report.clone(),
                &setup,
                "http://127.0.0.1:9",
                "rad1",
                ("not it", ""),
                Some(&kept),
            )
            .is_err()
        );
        assert!(draft.exists());
        // Signed into the outbox, the server away: the draft's file is gone.
        let signed = sign_and_send(
            report,
            &setup,
            "http://127.0.0.1:9",
            "rad1",
            ("a long passphrase", "password"),
            Some(&kept),
        );
        assert!(
            matches!(
                &signed,
                Ok(Signed {
                    receipt: Err(_),
                    ..
                })
            ),
            "{signed:?}"
        );
        assert!(!draft.exists());
    }

    /// A draft is given back on its own only to who wrote it: another radiologist opening the
    /// case (reassigned, on the same workstation) is offered it, named as someone else's.
    #[test]
    fn another_radiologists_draft_is_offered_not_given() {
        let dir = tempfile::tempdir().unwrap();
        drop(drafted(dir.path(), "rad1", "rad1's words."));
        let mut r = keeping(dir.path());
        r.form.user = "rad2".into();
        r.start_case("C-1", Some("1.2.3"));
        assert!(r.draft.findings.is_empty());
        let offers = r.kept_offers();
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].content.user, "rad1");
    }

    /// A signing that fails after its draft was left (another case opened meanwhile) leaves
    /// that draft known: it comes back with its case.
    #[test]
    fn a_draft_whose_signing_failed_after_it_was_left_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = drafted(dir.path(), "", "Nodule 14 mm.");
        let _ = r.kept_file_to_sign();
        let (tx, rx) = channel();
        r.sign_job = Some(rx);
        r.sign_generation = r.draft_generation;
        r.start_case("C-2", None);
        tx.send(Err(Unsigned::from("wrong passphrase".to_string())))
            .unwrap();
        r.poll(&egui::Context::default());
        assert!(!r.signing());
        r.start_case("C-1", Some("1.2.3"));
        assert_eq!(r.draft.findings, "Nodule 14 mm.");
    }

    /// The report signed is the editors' draft whatever the Case field says by the time it
    /// comes back: its text leaves the editors and is kept under no case.
    #[test]
    fn a_signed_draft_leaves_the_editors_even_if_the_case_field_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = keeping(dir.path());
        r.study_uids = vec!["1.2.3".into()];
        r.form.case_id = "C-1".into();
        r.draft.findings = "Nodule 14.2 mm.".into();
        r.draft.impression = "Follow up.".into();
        keep_now(&mut r);
        r.form.case_id = "C-2".into();
        r.signed(
            Signed {
                report: final_report("Nodule 14.2 mm.", "Follow up."),
                hash: "abc123".into(),
                receipt: Err("away".into()),
                login: None,
                others: Vec::new(),
            },
            true,
        );
        assert!(r.draft.findings.is_empty());
        keep_now(&mut r);
        assert_eq!(kept_files(dir.path()), 0);
    }

    /// A draft stays its author's: another name in the User field (another radiologist
    /// signing in) does not make it theirs; signing out puts it away (kept, the editors and
    /// Case field emptied); given back to another radiologist it is a copy of theirs, their
    /// file left as it was.
    #[test]
    fn a_draft_stays_its_authors() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = drafted(dir.path(), "rad1", "rad1's words.");
        // Another name typed in the User field (another radiologist about to sign in), the
        // draft changed: still rad1's.
        r.form.user = "rad2".into();
        r.draft.findings.push_str(" More.");
        keep_now(&mut r);
        let (store, _) = DraftStore::open(dir.path());
        let kept = store.drafts_of(&DraftKey::Case("C-1".into()));
        assert_eq!(
            (
                kept[0].content.user.as_str(),
                kept[0].content.findings.as_str()
            ),
            ("rad1", "rad1's words. More.")
        );
        r.put_away_draft();
        assert!(r.draft.findings.is_empty() && r.form.case_id.is_empty());
        r.form.user = "rad2".into();
        r.start_case("C-1", Some("1.2.3"));
        assert!(r.draft.findings.is_empty(), "given to another");
        assert_eq!(r.kept_offers()[0].content.user, "rad1");
        r.restore_offered();
        assert_eq!(r.draft.findings, "rad1's words. More.");
        r.draft.findings.push_str(" rad2's.");
        keep_now(&mut r);
        let (store, _) = DraftStore::open(dir.path());
        let mut by: Vec<(String, String)> = store
            .drafts_of(&DraftKey::Case("C-1".into()))
            .iter()
            .map(|d| (d.content.user.clone(), d.content.findings.clone()))
            .collect();
        by.sort();
        assert_eq!(
            by,
            [
                ("rad1".to_string(), "rad1's words. More.".to_string()),
                (
                    "rad2".to_string(),
                    "rad1's words. More. rad2's.".to_string()
                )
            ]
        );
    }

    /// A draft given back that was kept before its case's final report was signed (perhaps on
    /// another workstation) is an addendum now: said when the final becomes known.
    #[test]
    fn a_draft_older_than_the_cases_final_is_said_to_be_an_addendum_now() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = drafted(dir.path(), "", "Nodule 14 mm.");
        r.start_case("C-2", None);
        r.start_case("C-1", Some("1.2.3"));
        assert_eq!(r.draft.findings, "Nodule 14 mm.");
        r.amend(SignedFinal {
            case_id: "C-1".into(),
            report_hash: "f00d".repeat(16),
            findings: "Nodule 14 mm.".into(),
            impression: "Follow up.".into(),
        });
        assert!(
            r.message.contains("it is an addendum to that report now"),
            "{}",
            r.message
        );
        assert!(!r.message.contains("  "), "{}", r.message);
    }

    /// A signed report's draft is not kept: signed from the editors, or from a draft left
    /// while it was signed, whose text given back meanwhile is emptied.
    #[test]
    fn a_signed_report_leaves_no_kept_draft() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = keeping(dir.path());
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "Nodule 14.2 mm.".into();
        r.draft.impression = "Follow up.".into();
        keep_now(&mut r);
        assert_eq!(kept_files(dir.path()), 1);
        r.signed(unreceived_final(), true);
        // Gone at once, not at the next comparison.
        flushed(&r);
        assert_eq!(kept_files(dir.path()), 0);

        // Left while signing, opened again (its kept text given back), then signed.
        let mut r = keeping(dir.path());
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "Nodule 14.2 mm.\n".into();
        r.draft.impression = "Follow up.".into();
        keep_now(&mut r);
        r.start_case("C-2", None);
        r.start_case("C-1", Some("1.2.3"));
        assert_eq!(r.draft.findings, "Nodule 14.2 mm.\n");
        r.signed(unreceived_final(), false);
        assert!(r.draft.findings.is_empty() && r.draft.impression.is_empty());
        keep_now(&mut r);
        assert_eq!(kept_files(dir.path()), 0);
    }

    /// A signing that ends after its case was left removes its author's drafts of that case,
    /// not those of whoever's draft the editors hold by then (another case's, kept under
    /// another name): rad2's draft of C-1 stays.
    #[test]
    fn a_signing_ending_elsewhere_leaves_others_drafts() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rad1_beside_rad2(dir.path());
        assert!(r.kept_file_to_sign().is_some(), "the signing starts");
        // Left for C-2, where rad2 now dictates (the User field changed).
        r.start_case("C-2", Some("4.5.6"));
        r.form.user = "rad2".into();
        r.draft.findings = "Case two.".into();
        keep_now(&mut r);
        r.signed(unreceived_final(), false);
        flushed(&r);
        assert_eq!(kept_of_c1(dir.path()), ["rad2: Their reading."]);
    }

    /// A case signed by one radiologist leaves another's draft of it: theirs, offered to them
    /// (before, every draft of the case went with the signing).
    #[test]
    fn a_signing_leaves_another_radiologists_draft() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rad1_beside_rad2(dir.path());
        assert_eq!(kept_files(dir.path()), 2);
        r.signed(unreceived_final(), true);
        flushed(&r);
        assert_eq!(kept_of_c1(dir.path()), ["rad2: Their reading."]);
    }

    /// A measurement whose inserted value was deleted from the text is flagged before
    /// signing, and once removed from the linked measurements it is not signed with the
    /// report; nothing is removed while a report is signed.
    #[test]
    fn a_measurement_deleted_from_the_text_is_flagged_and_can_be_removed() {
        let not_in_text = |r: &ReportState| {
            r.checks()
                .iter()
                .filter(|c| matches!(c.kind, CheckKind::MeasurementNotInText { .. }))
                .count()
        };
        let mut r = state();
        r.draft.findings = "Nodule, ".into();
        r.draft.typed(Section::Findings);
        r.insert_measurement(14.2, "mm", MeasurementSource::default());
        assert_eq!(not_in_text(&r), 0);
        // "Scratch that": the value goes, typed over.
        let old = r.draft.findings.clone();
        r.draft.findings = "No nodule.".into();
        r.typed(Section::Findings, &old);
        assert_eq!(not_in_text(&r), 1, "{:?}", r.checks());
        let (_tx, rx) = channel();
        r.sign_job = Some(rx);
        r.remove_linked(0);
        assert_eq!(r.linked.len(), 1, "removed while signing");
        r.sign_job = None;
        r.remove_linked(0);
        assert!(r.linked.is_empty());
        assert_eq!(not_in_text(&r), 0);
    }

    /// A macro inserted while a report is being signed changes nothing: the text signed is
    /// what the editors held at the click, and what appeared meanwhile would be dropped with
    /// it, unsigned.
    #[test]
    fn a_macro_is_not_inserted_while_a_report_is_signed() {
        let mut r = state();
        r.macros
            .insert("normal".into(), "Normal chest radiograph.".into());
        r.draft.findings = "Lungs clear.".into();
        r.draft.typed(Section::Findings);
        let (_tx, rx) = channel();
        r.sign_job = Some(rx);
        r.insert_macro("normal");
        assert_eq!(r.draft.findings, "Lungs clear.");
        assert!(r.message.contains("being signed"), "{}", r.message);
        r.sign_job = None;
        r.insert_macro("normal");
        assert!(
            r.draft.findings.contains("Normal chest radiograph."),
            "{}",
            r.draft.findings
        );
    }

    /// A value inserted from the viewer is checked where it stands, unnamed, through edits
    /// before it and inside it; a refused signature, a tick of "sign anyway" for other checks
    /// and another case each leave nothing behind.
    #[test]
    fn an_inserted_value_is_checked_where_it_stands() {
        let mismatches = |r: &ReportState| -> Vec<String> {
            r.checks()
                .into_iter()
                .filter(|c| matches!(c.kind, CheckKind::MeasurementMismatch { .. }))
                .map(|c| r.draft.findings[c.range.unwrap()].to_string())
                .collect()
        };
        let mut r = state();
        r.draft.findings = "Nodule in the right upper lobe, ".into();
        r.draft.typed(Section::Findings);
        r.insert_measurement(14.2, "mm", MeasurementSource::default());
        assert!(
            r.draft.findings.ends_with("14.2 mm"),
            "{}",
            r.draft.findings
        );
        assert!(mismatches(&r).is_empty());
        // Typed before it: the place moves with it.
        let old = r.draft.findings.clone();
        r.draft.findings.insert_str(0, "Stable. ");
        r.typed(Section::Findings, &old);
        // The handles dragged to 18 mm: the sentence with the value disagrees.
        r.linked[0].value = 18.0;
        let found = mismatches(&r);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("14.2 mm"), "{found:?}");
        // The value edited in the text to agree: no mismatch.
        let old = r.draft.findings.clone();
        r.draft.findings = r.draft.findings.replace("14.2 mm", "18 mm");
        r.typed(Section::Findings, &old);
        assert!(mismatches(&r).is_empty(), "{:?}", r.linked[0].place);
        r.linked[0].value = 25.0;
        assert_eq!(mismatches(&r).len(), 1);

        // "Sign anyway" holds for the checks it was ticked for only.
        let checks = r.checks();
        r.form.override_checks = true;
        r.keep_override_for(&checks, true);
        r.keep_override_for(&checks, false);
        assert!(r.form.override_checks);
        r.linked[0].value = 30.0;
        let changed = r.checks();
        r.keep_override_for(&changed, false);
        assert!(!r.form.override_checks, "a new mismatch unticks it");
    }

    /// A final report of case C-1 as the panel signs it.
    fn final_report(findings: &str, impression: &str) -> case_protocol::Report {
        case_protocol::Report {
            case_id: "C-1".into(),
            kind: case_protocol::ReportKind::Final,
            author: case_protocol::Author {
                user_id: "rad1".into(),
                display_name: "Dr One".into(),
            },
            key_id: "k".into(),
            signed_at: "2026-11-24T10:00:00Z".into(),
            study_instance_uids: vec!["1.2.3".into()],
            findings: findings.into(),
            impression: impression.into(),
            measurements: Vec::new(),
        }
    }

    /// A signing of case C-1 in flight comes back refused for good (`hash`, `why`), signed
    /// from the draft now in the editors (`same_draft`) or from one dropped since.
    fn refused_while_signing(r: &mut ReportState, hash: &str, why: &str, same_draft: bool) {
        let (tx, rx) = channel();
        tx.send(Err(Unsigned {
            why: why.into(),
            others: Vec::new(),
            refused: Some((hash.to_string(), "C-1".into())),
        }))
        .unwrap();
        r.sign_job = Some(rx);
        r.sign_generation = r.draft_generation + u64::from(!same_draft);
        r.poll(&egui::Context::default());
    }

    /// `report` as the outbox keeps one the server refused (`outbox/refused/HASH.json`, and
    /// the server's answer beside it where `why` is given).
    fn refused_by_the_server(
        outbox: &std::path::Path,
        hash: &str,
        report: case_protocol::Report,
        why: Option<&str>,
    ) {
        let refused = outbox.join("refused");
        let signed = case_protocol::SignedReport {
            report,
            signature: "c2ln".into(),
        };
        std::fs::write(
            refused.join(format!("{hash}.json")),
            serde_json::to_vec(&signed).unwrap(),
        )
        .unwrap();
        if let Some(why) = why {
            std::fs::write(
                refused.join(format!("{hash}.error.txt")),
                format!("{why}\n"),
            )
            .unwrap();
        }
    }

    /// Reports the server refused in an earlier session (files in the outbox's refused
    /// folder) are listed with why, and each can be taken back into a draft of its own case
    /// only: its text goes in front of what the editors hold, its measurements come back
    /// linked with their points, an addendum stays an addendum to its report, and the signed
    /// file moves to `taken-back` (kept) so it is not offered twice.
    #[test]
    fn a_report_refused_in_an_earlier_session_can_be_taken_back_and_signed_again() {
        let dir = tempfile::tempdir().unwrap();
        let refused_dir = dir.path().join("refused");
        Outbox::open(dir.path()).unwrap();
        let mut addendum = final_report("Nodule now 15.0 mm.", "");
        addendum.kind = case_protocol::ReportKind::Addendum {
            amends: "f".repeat(64),
        };
        addendum.signed_at = "2026-11-24T11:00:00Z".into();
        addendum.measurements = vec![case_protocol::ReportMeasurement {
            label: "nodule".into(),
            kind: "length".into(),
            value: 15.0,
            unit: "mm".into(),
            series_instance_uid: Some("1.2.3.4".into()),
            frame_of_reference_uid: Some("1.2.3.5".into()),
            points_mm: vec![[0.0, 0.0, 0.0], [15.0, 0.0, 0.0]],
        }];
        let mut other_case = final_report("Other case.", "Other.");
        other_case.case_id = "C-2".into();
        for (hash, report, why) in [
            (
                "a".repeat(64),
                &addendum,
                "422: signed before the case was created",
            ),
            ("b".repeat(64), &other_case, "409: case C-2 is reported"),
        ] {
            refused_by_the_server(dir.path(), &hash, report.clone(), Some(why));
        }
        // A file that is not a report is left alone, and not listed.
        std::fs::write(refused_dir.join("broken.json"), b"{").unwrap();

        let mut r = state();
        r.setup.outbox = Some(dir.path().to_path_buf());
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "Typed since.".into();
        let listed: Vec<(String, String)> = r
            .refused_reports()
            .iter()
            .map(|x| (x.signed.report.case_id.clone(), x.reason.clone()))
            .collect();
        // In the order they were signed (10:00, 11:00).
        assert_eq!(
            listed,
            [
                ("C-2".to_string(), "409: case C-2 is reported".to_string()),
                (
                    "C-1".to_string(),
                    "422: signed before the case was created".to_string()
                ),
            ]
        );

        // Not into another case's draft.
        r.take_back_refused(&"b".repeat(64));
        assert_eq!(r.draft.findings, "Typed since.");
        assert!(
            r.sign_message.contains("open that case"),
            "{}",
            r.sign_message
        );
        assert_eq!(r.refused_reports().len(), 2);

        r.take_back_refused(&"a".repeat(64));
        assert_eq!(r.draft.findings, "Nodule now 15.0 mm.\n\nTyped since.");
        assert!(
            r.sign_message.contains("back in the editors"),
            "{}",
            r.sign_message
        );
        let m = &r.linked[0];
        assert_eq!(
            (m.label.as_str(), m.value, m.unit.as_str()),
            ("nodule", 15.0, "mm")
        );
        let source = m.source.as_ref().unwrap();
        assert_eq!(source.viewer_id, None);
        assert_eq!(source.points_mm, [[0.0, 0.0, 0.0], [15.0, 0.0, 0.0]]);
        assert_eq!(source.series_instance_uid.as_deref(), Some("1.2.3.4"));
        // Signed again, it is an addendum to the same report, with the same measurement.
        r.key_id.set("k".into()).unwrap();
        let again = r.report_to_sign().unwrap();
        assert_eq!(
            again.kind,
            case_protocol::ReportKind::Addendum {
                amends: "f".repeat(64)
            }
        );
        assert_eq!(again.measurements, addendum.measurements);
        // Not offered twice while its text is in the editors; its file stays where it was.
        let hash = "a".repeat(64);
        let offered = |r: &mut ReportState| -> Vec<String> {
            r.refused_reports().iter().map(|x| x.hash.clone()).collect()
        };
        assert_eq!(offered(&mut r), ["b".repeat(64)]);
        assert!(refused_dir.join(format!("{hash}.json")).exists());
        // The draft dropped (a template over it): offered again.
        r.use_template();
        assert_eq!(offered(&mut r), ["b".repeat(64), hash.clone()]);
        // Taken back and signed again: set aside (kept), offered no more.
        r.take_back_refused(&hash);
        r.signed(
            Signed {
                report: again,
                hash: "c".repeat(64),
                receipt: Err("the case server could not be reached".into()),
                login: None,
                others: Vec::new(),
            },
            true,
        );
        assert!(!refused_dir.join(format!("{hash}.json")).exists());
        for name in [format!("{hash}.json"), format!("{hash}.error.txt")] {
            assert!(refused_dir.join("taken-back").join(name).exists());
        }
        assert_eq!(offered(&mut r), ["b".repeat(64)]);
        assert!(refused_dir.join("broken.json").exists());
    }

    /// A report the server refuses as it is signed keeps its text in the editors: it is not
    /// offered to be taken back (again) while it is there, and once the corrected report is
    /// signed its refused copy is set aside.
    #[test]
    fn a_report_refused_at_signing_is_not_offered_while_its_text_is_in_the_editors() {
        let dir = tempfile::tempdir().unwrap();
        let refused_dir = dir.path().join("refused");
        Outbox::open(dir.path()).unwrap();
        let hash = "d".repeat(64);
        let report = final_report("Nodule 9 mm.", "Benign.");
        refused_by_the_server(dir.path(), &hash, report.clone(), None);
        let mut r = state();
        r.setup.outbox = Some(dir.path().to_path_buf());
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "Nodule 9 mm.".into();
        refused_while_signing(
            &mut r,
            &hash,
            "The case server refused the report (422): no",
            true,
        );
        assert_eq!(r.draft.findings, "Nodule 9 mm.");
        assert!(
            r.refused_reports().is_empty(),
            "offered while its text is in the editors"
        );
        r.signed(
            Signed {
                report,
                hash: "e".repeat(64),
                receipt: Err("away".into()),
                login: None,
                others: Vec::new(),
            },
            true,
        );
        assert!(
            refused_dir
                .join("taken-back")
                .join(format!("{hash}.json"))
                .exists()
        );
        assert!(r.refused_reports().is_empty());
    }

    /// The edges of taking back: an addendum whose own final report was refused too goes back
    /// into a final report (there is nothing on the server to amend); a report taken back
    /// and then signed for another case (the Case field changed) is offered again, not set
    /// aside; a signing that comes back after its draft was dropped changes nothing in the
    /// editors, and its refusal is offered, not taken as being in them.
    #[test]
    fn taking_back_follows_the_case_and_the_draft() {
        let dir = tempfile::tempdir().unwrap();
        let refused_dir = dir.path().join("refused");
        Outbox::open(dir.path()).unwrap();
        let final_hash = "1".repeat(64);
        let addendum_hash = "2".repeat(64);
        let mut addendum = final_report("Addendum text.", "");
        addendum.kind = case_protocol::ReportKind::Addendum {
            amends: final_hash.clone(),
        };
        addendum.signed_at = "2026-11-24T10:30:00Z".into();
        for (hash, report) in [
            (
                &final_hash,
                final_report("Final text.", "Final impression."),
            ),
            (&addendum_hash, addendum),
        ] {
            refused_by_the_server(dir.path(), hash, report, None);
        }
        let mut r = state();
        r.setup.outbox = Some(dir.path().to_path_buf());
        r.start_case("C-1", Some("1.2.3"));
        r.take_back_refused(&addendum_hash);
        assert!(
            r.amending().is_none(),
            "its base was refused: a final report"
        );
        r.take_back_refused(&final_hash);
        assert_eq!(r.draft.findings, "Final text.\n\nAddendum text.");
        assert!(r.refused_reports().is_empty());

        // Signed for another case by a changed Case field: both are offered again.
        r.form.case_id = "C-2".into();
        let mut other = final_report("Final text.\n\nAddendum text.", "Final impression.");
        other.case_id = "C-2".into();
        r.signed(
            Signed {
                report: other,
                hash: "3".repeat(64),
                receipt: Err("away".into()),
                login: None,
                others: Vec::new(),
            },
            true,
        );
        assert_eq!(r.refused_reports().len(), 2);
        assert!(refused_dir.join(format!("{final_hash}.json")).exists());

        // A signing that comes back after its draft was dropped: the editors keep what they
        // hold, and its refusal is offered.
        r.form.case_id = "C-1".into();
        r.draft.findings = "Being written.".into();
        r.signed(
            Signed {
                report: final_report("Old draft.", "Old."),
                hash: "4".repeat(64),
                receipt: Err("away".into()),
                login: None,
                others: Vec::new(),
            },
            false,
        );
        assert_eq!(r.draft.findings, "Being written.");
        // Signed all the same: the newer draft amends it, and its own text is kept to come
        // back if the server refuses it.
        assert_eq!(r.amending().unwrap().report_hash, "4".repeat(64));
        let kept = r
            .awaiting
            .iter()
            .find(|a| a.hash == "4".repeat(64))
            .unwrap();
        assert_eq!(kept.findings, "Old draft.");
        refused_while_signing(&mut r, &final_hash, "refused", false);
        assert!(r.taken_back.is_empty());
        assert_eq!(r.refused_reports().len(), 2);
    }

    /// A report kept in the outbox (the server away) is signed: the draft starts over as an
    /// addendum to it, so pressing Sign again cannot make a second, different final report.
    #[test]
    fn a_report_kept_in_the_outbox_counts_as_signed() {
        let mut r = state();
        r.start_case("C-1", Some("1.2.3"));
        r.draft.findings = "Nodule 14.2 mm.".into();
        r.draft.impression = "Follow up.".into();
        let signed_clip = Arc::new(Clip {
            samples: vec![0.25; 3200],
            rate: 16_000,
        });
        r.clips.push(signed_clip.clone());
        r.unsure.push(unsure_nodule());
        r.linked.push(LinkedMeasurement {
            id: "#1".into(),
            value: 14.2,
            unit: "mm".into(),
            place: Some((Section::Findings, 7..14)),
            ..LinkedMeasurement::default()
        });
        r.signed(unreceived_final(), true);
        let f = r.amending().expect("a kept final report is the signed one");
        assert_eq!(f.report_hash, "abc123");
        assert_eq!(f.findings, "Nodule 14.2 mm.");
        assert!(r.draft.findings.is_empty() && r.draft.impression.is_empty());
        assert_eq!(
            r.awaiting
                .iter()
                .map(|a| a.hash.as_str())
                .collect::<Vec<_>>(),
            ["abc123"]
        );
        assert!(r.receipt.is_none());
        assert!(
            r.sign_message.contains("kept in the outbox"),
            "{}",
            r.sign_message
        );

        // The server refuses it later: it is no longer the signed report, and what the
        // editors held comes back in front of what was written since, its measurement at
        // its place, its unsure word with its audio, and the newer text's mark and audio
        // moved along.
        r.draft.findings = "Addendum text.".into();
        let newer = Arc::new(Clip {
            samples: vec![0.5; 1600],
            rate: 16_000,
        });
        r.clips.push(newer.clone());
        r.unsure.push(UnsureWord {
            text: "Addendum".into(),
            confidence: 0.2,
            at: Some((Section::Findings, 0..8)),
            audio: Some((0, 0.0, 0.1)),
            ..UnsureWord::default()
        });
        r.settle(&[], &[("abc123".into(), "409: not reading".into())], true);
        assert!(r.amending().is_none());
        assert!(r.awaiting.is_empty());
        assert_eq!(r.draft.findings, "Nodule 14.2 mm.\n\nAddendum text.");
        assert_eq!(r.draft.impression, "Follow up.");
        let place = r.linked[0].place.clone().unwrap().1;
        assert_eq!(&r.draft.findings[place], "14.2 mm");
        let marked = r.unsure[0].at.clone().unwrap().1;
        assert_eq!(&r.draft.findings[marked], "Addendum");
        let given_back = &r.unsure[1];
        assert_eq!(given_back.text, "Nodule");
        let (clip, ..) = given_back.audio.expect("its audio came back");
        assert!(Arc::ptr_eq(&r.clips[clip], &signed_clip));
        let (clip, ..) = r.unsure[0].audio.unwrap();
        assert!(Arc::ptr_eq(&r.clips[clip], &newer));
        assert!(r.sign_message.contains("refused"), "{}", r.sign_message);
    }

    /// A refused report given back in front of text that starts like it: the current text's
    /// mark moves with it (read as an edit after the shared "No " it stayed on the given-back
    /// words); a base report received with an addendum's signing leaves the addendum's
    /// message.
    #[test]
    fn a_given_back_report_moves_the_marks_of_what_follows_it() {
        let mut r = state();
        r.start_case("C-1", None);
        r.draft.findings = "No effusion.".into();
        r.signed(
            Signed {
                report: final_report("No effusion.", ""),
                hash: "h1".into(),
                receipt: Err("away".into()),
                login: None,
                others: Vec::new(),
            },
            true,
        );
        r.draft.findings = "No change.".into();
        r.unsure.push(UnsureWord {
            text: "No".into(),
            confidence: 0.2,
            at: Some((Section::Findings, 0..2)),
            ..UnsureWord::default()
        });
        r.settle(&[], &[("h1".into(), "409: refused".into())], true);
        assert_eq!(r.draft.findings, "No effusion.\n\nNo change.");
        let at = r.unsure[0].at.clone().unwrap().1;
        assert_eq!(at, 14..16, "the mark stays on the text it was on");

        // Kept again, then received with a later signing: said quietly.
        r.awaiting.push(Awaiting {
            hash: "h2".into(),
            case_id: "C-1".into(),
            findings: String::new(),
            impression: String::new(),
            linked: Vec::new(),
            unsure: Vec::new(),
            clips: Vec::new(),
        });
        r.sign_message = "Addendum signed and received".into();
        let receipt = case_protocol::Receipt {
            case_id: "C-1".into(),
            report_hash: "h2".into(),
            received_at: "2026-11-24T10:05:00Z".into(),
            duplicate: false,
        };
        r.settle_deliveries(&[crate::cases::Delivery::Delivered(receipt)]);
        assert!(r.awaiting.is_empty());
        assert_eq!(r.sign_message, "Addendum signed and received");
    }

    #[test]
    fn unsure_words_are_marked_where_they_landed_and_follow_edits() {
        let mut r = state();
        r.draft.findings = "Liver: normal.".into();
        r.draft.typed(Section::Findings);
        let clip = Arc::new(Clip {
            samples: vec![0.0; 48_000],
            rate: 16_000,
        });
        let t = transcript(
            "The hemangioma is stable, period",
            vec![
                word("The", 0.9, 0.1),
                word("hemangioma", 0.3, 0.5),
                word("is", 0.95, 1.0),
                word("stable,", 0.2, 1.3),
                word("period", 0.1, 1.8),
            ],
        );
        r.take_transcript(&t, Some(clip));
        assert_eq!(r.draft.findings, "Liver: normal. The hemangioma is stable.");
        let marked = |r: &ReportState| -> Vec<String> {
            r.marks(Section::Findings)
                .into_iter()
                .map(|m| r.draft.findings[m].to_string())
                .collect()
        };
        // "period" became punctuation: listed, not marked.
        assert_eq!(marked(&r), ["hemangioma", "stable"]);
        assert_eq!(r.unsure.len(), 3);
        assert_eq!(r.unsure[0].audio, Some((0, 0.5, 0.9)));
        assert_eq!(r.unsure_at(Section::Findings, 22), Some(0));
        assert_eq!(r.unsure_at(Section::Findings, 3), None);

        // Typing before a mark moves it; correcting a word settles it.
        let old = r.draft.findings.clone();
        r.draft.findings = format!("Small {old}");
        r.typed(Section::Findings, &old);
        assert_eq!(marked(&r), ["hemangioma", "stable"]);
        let old = r.draft.findings.clone();
        r.draft.findings = old.replace("hemangioma", "haemangioma");
        r.typed(Section::Findings, &old);
        assert!(r.unsure[0].resolved);
        assert!(!r.unsure[1].resolved);
        assert_eq!(marked(&r), ["stable"]);
    }

    #[test]
    fn typing_before_a_marked_word_that_starts_alike_keeps_it_marked() {
        let mut r = state();
        let t = transcript(
            "Nodule stable.",
            vec![word("Nodule", 0.9, 0.1), word("stable.", 0.2, 0.6)],
        );
        r.take_transcript(&t, None);
        assert_eq!(r.marks(Section::Findings), vec![(7..13)]);
        let old = r.draft.findings.clone();
        r.draft.findings = "Nodule seems stable.".into();
        r.typed(Section::Findings, &old);
        assert!(!r.unsure[0].resolved);
        assert_eq!(r.marks(Section::Findings), vec![(13..19)]);
    }

    #[test]
    fn a_dictation_across_fields_leaves_the_marks_between_them() {
        let chest = templates()
            .into_iter()
            .find(|t| t.id == "ct-chest")
            .unwrap();
        let mut r = state();
        r.draft = Draft::from_template(&chest);
        // An unsure word in the first field.
        r.take_transcript(&transcript("Clear.", vec![word("Clear.", 0.3, 0.1)]), None);
        let marked = r.marks(Section::Findings);
        assert_eq!(marked.len(), 1);
        // Then one dictation that fills two later fields, skipping one between.
        r.take_transcript(
            &transcript(
                "No effusion. Next field. Next field. Normal.",
                vec![word("No", 0.9, 0.1), word("Normal.", 0.9, 2.0)],
            ),
            None,
        );
        assert!(!r.unsure[0].resolved, "{}", r.draft.findings);
        let mark = r.marks(Section::Findings)[0].clone();
        assert_eq!(&r.draft.findings[mark], "Clear");
    }

    #[test]
    fn a_dictation_that_repeats_the_text_before_it_marks_the_new_words() {
        let mut r = state();
        r.draft.findings = "Normal.".into();
        r.draft.typed(Section::Findings);
        r.take_transcript(
            &transcript("Normal.", vec![word("Normal.", 0.2, 0.1)]),
            None,
        );
        assert_eq!(r.draft.findings, "Normal. Normal.");
        assert_eq!(r.marks(Section::Findings), vec![(8..14)]);
    }

    /// A report names its study (the worklist case's, or the open study's) and is signed
    /// under a name the printed report can show: otherwise the server refuses it, so signing
    /// waits (no override). A case opened from the worklist holds the Case field until files
    /// are opened from elsewhere.
    #[test]
    fn no_study_or_an_unprintable_name_blocks_signing() {
        let mut r = state();
        r.form.display_name = "Dr Łukasz".into();
        let blocking: Vec<CheckKind> = r
            .checks()
            .into_iter()
            .filter(|c| c.kind.blocks())
            .map(|c| c.kind)
            .collect();
        assert_eq!(
            blocking,
            [
                CheckKind::Unprintable { character: 'Ł' },
                CheckKind::NoStudy
            ]
        );
        r.form.display_name = "Dr Lukasz".into();
        r.start_case("C-1", None);
        assert!(r.from_worklist);
        assert!(r.checks().iter().any(|c| c.kind == CheckKind::NoStudy));
        r.start_case("C-2", Some("1.2.3"));
        assert!(r.checks().iter().all(|c| !c.kind.blocks()));
        // Files dropped in leave the worklist; the case's report keeps its study.
        r.leave_worklist_case();
        assert!(!r.from_worklist);
        assert_eq!(r.report_studies(), ["1.2.3"]);
        assert!(r.checks().iter().all(|c| !c.kind.blocks()));
        // A case typed in with no study open: nothing to say what the report is about.
        r.form.case_id = "C-3".into();
        r.study_uids.clear();
        assert!(r.checks().iter().any(|c| c.kind == CheckKind::NoStudy));
        r.study_uids = vec!["9.9.9".into()];
        assert!(r.checks().iter().all(|c| !c.kind.blocks()));
    }

    /// The pre-sign check's button turns what the PDF cannot print into its printable form,
    /// marks following; what has no such form stays blocked; dictation comes in printable.
    #[test]
    fn unprintable_text_is_replaced_by_its_printable_form() {
        let mut r = state();
        r.study_uids = vec!["1.2.3".into()];
        r.draft.findings = "Stenosis ≥ 50%.".into();
        r.draft.typed(Section::Findings);
        // An unsure dictated word between characters to replace keeps its mark.
        r.take_transcript(&transcript("Mild.", vec![word("Mild.", 0.2, 0.1)]), None);
        let old = r.draft.findings.clone();
        r.draft.findings.push_str("\tCalcified. 李");
        r.typed(Section::Findings, &old);
        r.draft.impression = "Stable → no change.".into();
        r.draft.typed(Section::Impression);
        assert_eq!(r.marks(Section::Findings).len(), 1);
        let unprintable = |r: &ReportState| {
            r.checks()
                .iter()
                .filter_map(|c| match c.kind {
                    CheckKind::Unprintable { character } => Some(character),
                    _ => None,
                })
                .collect::<Vec<char>>()
        };
        assert_eq!(unprintable(&r), ['≥', '\t', '李', '→']);
        r.make_printable();
        assert_eq!(r.draft.findings, "Stenosis >= 50%. Mild. Calcified. 李");
        assert_eq!(r.draft.impression, "Stable -> no change.");
        let marks = r.marks(Section::Findings);
        assert_eq!(marks.len(), 1, "the unsure word is still marked");
        assert_eq!(&r.draft.findings[marks[0].clone()], "Mild");
        assert!(r.unsure.iter().all(|w| !w.resolved));
        assert_eq!(unprintable(&r), ['李']);
        r.take_transcript(
            &transcript("Five μm.", vec![word("Five μm.", 0.9, 0.1)]),
            None,
        );
        assert!(
            r.draft.impression.ends_with("Five µm."),
            "{}",
            r.draft.impression
        );
    }

    #[test]
    fn another_case_starts_an_empty_report() {
        let mut r = state();
        r.start_case("C-1", Some("1.2.3"));
        r.study_uids = vec!["9.9.9".into()];
        r.draft.findings = "Text of case 1.".into();
        r.amend(SignedFinal {
            case_id: "C-1".into(),
            report_hash: "abc".into(),
            findings: "Text of case 1.".into(),
            impression: "One.".into(),
        });
        r.start_case("C-1", Some("1.2.3"));
        assert!(r.amending().is_some(), "the same case keeps its report");
        r.start_case("C-2", Some("4.5.6"));
        assert_eq!(r.form.case_id, "C-2");
        assert!(r.amending().is_none() && r.draft.findings.is_empty());
        // The report is about the case's study, not about what was on screen for the last.
        assert!(r.study_uids.is_empty());
        assert_eq!(r.case_studies, Some(vec!["4.5.6".to_string()]));
    }

    /// A case has one final report: once it is signed or read from the server, every draft
    /// of that case is an addendum to it, a template asked for included (a second final
    /// would be refused by the server); another case in the Case field gets its own final,
    /// and the first case is still amended when the field names it again.
    #[test]
    fn a_reported_case_is_only_amended() {
        let mut r = state();
        r.key_id.set("k".into()).unwrap();
        r.start_case("C-1", Some("1.2.3"));
        r.amend(SignedFinal {
            case_id: "C-1".into(),
            report_hash: "f".repeat(64),
            findings: "Final text.".into(),
            impression: "Final impression.".into(),
        });
        let kind = |r: &ReportState| r.report_to_sign().unwrap().kind;
        let addendum = case_protocol::ReportKind::Addendum {
            amends: "f".repeat(64),
        };
        r.draft.findings = "Addendum text.".into();
        assert_eq!(kind(&r), addendum);
        let empty_impression = |r: &ReportState| {
            r.checks()
                .iter()
                .any(|c| c.kind == CheckKind::EmptyImpression)
        };
        assert!(
            !empty_impression(&r),
            "an addendum's impression is optional"
        );

        r.use_template();
        assert_eq!(kind(&r), addendum, "still an addendum");
        assert!(
            r.draft.findings.is_empty() && r.draft.impression.is_empty(),
            "started over empty, no template text in an addendum: {:?}",
            r.draft.findings
        );

        // A study opened from a folder: the Case field is typed by hand. Another case gets
        // its own final report, signed and kept in the outbox.
        r.leave_worklist_case();
        r.form.case_id = "C-2".into();
        r.draft.findings = "Findings of case 2.".into();
        assert_eq!(kind(&r), case_protocol::ReportKind::Final);
        assert!(empty_impression(&r), "a final report needs its impression");
        let mut of_case_2 = final_report("Findings of case 2.", "Two.");
        of_case_2.case_id = "C-2".into();
        r.signed(
            Signed {
                report: of_case_2,
                hash: "2".repeat(64),
                receipt: Err("the case server could not be reached".into()),
                login: None,
                others: Vec::new(),
            },
            true,
        );
        let addendum_2 = case_protocol::ReportKind::Addendum {
            amends: "2".repeat(64),
        };
        assert_eq!(kind(&r), addendum_2);
        // Case 1 still has its final.
        r.form.case_id = " C-1 ".into();
        assert_eq!(kind(&r), addendum);

        // Case 2's addendum started over while its final waits in the outbox: refused
        // later, case 2 has no final to amend, and its text comes back.
        r.form.case_id = "C-2".into();
        r.use_template();
        r.settle(
            &[],
            &[("2".repeat(64), "409: case C-2 is reported".into())],
            true,
        );
        assert_eq!(kind(&r), case_protocol::ReportKind::Final);
        assert_eq!(r.draft.findings, "Findings of case 2.");

        // Case 1's final refused while the field names another case: not amended either.
        r.awaiting.push(Awaiting {
            hash: "f".repeat(64),
            case_id: "C-1".into(),
            findings: "Final text.".into(),
            impression: "Final impression.".into(),
            linked: Vec::new(),
            unsure: Vec::new(),
            clips: Vec::new(),
        });
        r.settle(
            &[],
            &[("f".repeat(64), "422: signed by another key".into())],
            true,
        );
        r.form.case_id = "C-1".into();
        assert_eq!(kind(&r), case_protocol::ReportKind::Final);

        // Signing out forgets the finals known.
        r.amend(SignedFinal {
            case_id: "C-1".into(),
            report_hash: "f".repeat(64),
            findings: String::new(),
            impression: String::new(),
        });
        r.forget_finals();
        assert!(r.amending().is_none());
    }

    /// The key id is shown on every frame: a key file that cannot be read is not read again
    /// on each of them (it was), but a while later, so one made meanwhile is then found.
    #[test]
    fn a_missing_key_file_is_not_read_on_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("signing.key");
        let mut r = state();
        r.setup.key_file = Some(key_file.clone());
        let first = r.key_id().unwrap_err();
        let key = case_protocol::SigningKey::generate();
        let sealed = crate::cases::EncryptedKey::seal(&key, "correct horse battery").unwrap();
        sealed.write(&key_file).unwrap();
        // The next frames keep the answer without reading the file.
        assert_eq!(r.key_id().unwrap_err(), first);
        // Once the retry interval has passed, the file is read again.
        let failed = r.key_id_failed.borrow().clone().unwrap();
        *r.key_id_failed.borrow_mut() = Some((
            failed.0 - KEY_RETRY - std::time::Duration::from_millis(1),
            failed.1,
        ));
        assert_eq!(r.key_id().unwrap(), sealed.key_id);
    }

    /// A key renewed while the app runs (a new key file where the old one was) is read again
    /// once a signing fails: the id read once at start would otherwise be signed into every
    /// report and refused, until a restart.
    #[test]
    fn a_renewed_key_is_read_again_after_a_failed_signing() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("signing.key");
        let seal = |path: &std::path::Path| {
            let key = case_protocol::SigningKey::generate();
            let sealed = crate::cases::EncryptedKey::seal(&key, "correct horse battery").unwrap();
            let _ = std::fs::remove_file(path);
            sealed.write(path).unwrap();
            sealed.key_id
        };
        let old = seal(&key_file);
        let mut r = state();
        r.setup.key_file = Some(key_file.clone());
        assert_eq!(r.key_id().unwrap(), old);
        let renewed = seal(&key_file);
        assert_ne!(renewed, old);
        // Read once: the next frames keep it without reading the file.
        assert_eq!(r.key_id().unwrap(), old);
        let (tx, rx) = channel();
        tx.send(Err(Unsigned::from("the key does not match".to_string())))
            .unwrap();
        r.sign_job = Some(rx);
        r.sign_generation = r.draft_generation;
        r.poll(&egui::Context::default());
        assert!(!r.signing());
        assert_eq!(r.key_id().unwrap(), renewed);
    }

    #[test]
    fn a_saved_macro_is_inserted_by_voice() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ReportState::new(PanelSettings {
            macros_dir: Some(dir.path().to_path_buf()),
            ..PanelSettings::default()
        });
        r.macro_name = "Normal chest".into();
        r.macro_text = "The lungs are clear. No pleural effusion.".into();
        r.save_macro();
        assert!(
            dir.path().join("normal chest.txt").is_file(),
            "{}",
            r.macro_message
        );
        // A new session finds it.
        let mut r = ReportState::new(PanelSettings {
            macros_dir: Some(dir.path().to_path_buf()),
            ..PanelSettings::default()
        });
        let t = transcript("Insert macro normal chest.", Vec::new());
        r.take_transcript(&t, None);
        assert_eq!(
            r.draft.findings,
            "The lungs are clear. No pleural effusion."
        );
    }

    /// A macro, then a field change and text in the same sentence: each goes in as its own
    /// edit, so an unsure word in a field between them keeps its mark (one edit spanning
    /// from the macro to the text after it cleared it, unchecked before signing).
    #[test]
    fn a_macro_and_what_follows_it_leave_the_marks_between_them() {
        let mut r = state();
        r.macros
            .insert("normal lungs".into(), "Clear lungs.".into());
        let chest = r.templates.iter().find(|t| t.id == "ct-chest").unwrap();
        r.draft = Draft::from_template(chest);
        r.draft.findings = r.draft.findings.replacen("[pleura]", "small effusin", 1);
        let at = r.draft.findings.find("effusin").unwrap();
        r.unsure.push(UnsureWord {
            text: "effusin".into(),
            confidence: 0.2,
            at: Some((Section::Findings, at..at + 7)),
            ..UnsureWord::default()
        });
        assert_eq!(r.draft.current_field().unwrap().0, "lungs");
        let t = transcript(
            "Insert macro normal lungs next field heart normal",
            Vec::new(),
        );
        r.take_transcript(&t, None);
        assert!(
            r.draft.findings.starts_with(
                "Lungs and airways: Clear lungs.\nPleura: small effusin\nHeart and mediastinum: heart normal"
            ),
            "{}",
            r.draft.findings
        );
        let word = &r.unsure[0];
        assert!(!word.resolved, "the unsure word was cleared");
        let (_, range) = word.at.clone().expect("still marked");
        assert_eq!(&r.draft.findings[range], "effusin");
    }
}
