//! The worklist: sign in to the case server, see the cases assigned to you (and those you
//! reported in the last 30 days), read it again, open one. Opening a case finds its studies
//! (QIDO-RS on `/cases/{id}/dicomweb`) and hands the first study's URL to
//! [`OverreadApp::scan`], which retrieves it over WADO-RS and shows the first image while the
//! rest arrives. The case id goes into the report's sign form, and the case's final report,
//! where the server holds one (verified), becomes what the draft amends.
//!
//! Signing in also starts the outbox's background sender with that login (reports signed
//! while the server was away are sent), and signing reports uses it (no password again).
//!
//! Network work runs on the one network runtime ([`crate::cases::net`]); the frame loop only
//! polls the channels its answers come back on. The password is kept only until the sign-in
//! request takes it.

use std::path::PathBuf;

use case_protocol::CaseSummary;
use crossbeam_channel::{Receiver, TryRecvError};
use eframe::egui;

use super::OverreadApp;
use crate::cases::CaseClient;

/// A sign-in's answer: the token and the caller's cases.
/// A sign-in: the login's token, the user it is for, and the worklist.
type SignedIn = Result<(String, String, Vec<CaseSummary>), String>;
/// A case opened, or why not (and whether the login expired).
type Opened = Result<OpenedCase, (String, bool)>;
/// The worklist read again, or why not (and whether the login expired).
type Refreshed = Result<Vec<CaseSummary>, (String, bool)>;

/// A case of the worklist, opened.
#[derive(Debug)]
struct OpenedCase {
    case: String,
    /// Its first study's URL.
    study: PathBuf,
    /// The case's final report, as the server holds and verified it: what the draft amends.
    signed_final: Option<super::report_panel::SignedFinal>,
    /// Why a final report the server holds is not amended here (it does not verify, or the
    /// reports could not be read): said in the report panel.
    final_problem: Option<String>,
}

/// What the worklist holds between frames.
#[derive(Default)]
pub struct WorklistState {
    pub password: String,
    pub cases: Vec<CaseSummary>,
    pub message: String,
    signing_in: Option<Receiver<SignedIn>>,
    refreshing: Option<Receiver<Refreshed>>,
    opening: Option<Receiver<Opened>>,
}

impl std::fmt::Debug for WorklistState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorklistState")
            .field("cases", &self.cases.len())
            .finish_non_exhaustive()
    }
}

impl OverreadApp {
    /// Sign in with the report form's user and the typed password; fetch the worklist.
    pub fn sign_in(&mut self, ctx: &egui::Context) {
        let Some(server) = self.report.setup.server.clone() else {
            self.worklist.message = "no case server in the settings (case_server)".into();
            return;
        };
        let ca = self.report.setup.server_ca.clone();
        let user = self.report.form.user.trim().to_string();
        let password = std::mem::take(&mut self.worklist.password);
        let answer = in_background(
            ctx,
            async move {
                let mut client =
                    CaseClient::new(&server, ca.as_deref()).map_err(|e| e.to_string())?;
                client
                    .login(&user, &password)
                    .await
                    .map_err(|e| e.to_string())?;
                let cases = client.worklist().await.map_err(|e| e.to_string())?;
                let token = client.token().unwrap_or_default().to_string();
                // The user the login is for, as sent (the form may change meanwhile).
                Ok((token, user, cases))
            },
            Err,
        );
        self.worklist.message = "signing in".into();
        self.worklist.signing_in = Some(answer);
    }

    /// Sign out: the login ends on the server (in the background; best effort: an
    /// unreachable server lets it expire) and is forgotten here. Reports signed from now on
    /// wait in the outbox until the next sign-in.
    pub fn sign_out(&mut self) {
        let Some(token) = self.report.setup.token.take() else {
            return;
        };
        self.report.setup.token_user = None;
        self.dicomweb_token = None;
        self.dicomweb_token_origin = None;
        // A study still being retrieved with the login stops: no images land after it ends.
        self.stop_retrieval();
        self.worklist.cases.clear();
        // A case still being opened, or the worklist still being read again, does not land
        // after the sign-out (the worklist's login would come back with it).
        self.worklist.opening = None;
        self.worklist.refreshing = None;
        self.report.disconnect_outbox();
        self.report.put_away_draft();
        self.report.leave_worklist_case();
        self.report.forget_finals();
        self.worklist.message = "signed out".into();
        if let Some(server) = self.report.setup.server.clone() {
            let ca = self.report.setup.server_ca.clone();
            let ended = crate::cases::net::spawn(async move {
                if let Ok(client) = CaseClient::new(&server, ca.as_deref()) {
                    let mut client = client.with_token(token);
                    if let Err(e) = client.logout().await {
                        tracing::warn!("sign-out: the server did not end the login: {e}");
                    }
                }
            });
            if let Err(e) = ended {
                tracing::warn!("sign-out: the server was not told ({e})");
            }
        }
    }

    /// Fetch the worklist again with the login held (cases assigned or reported since).
    pub fn refresh_worklist(&mut self, ctx: &egui::Context) {
        let Some((server, token, ca)) = self.signed_in() else {
            return;
        };
        let answer = in_background(
            ctx,
            async move {
                CaseClient::new(&server, ca.as_deref())
                    .map_err(request_failed)?
                    .with_token(token)
                    .worklist()
                    .await
                    .map_err(request_failed)
            },
            |e| Err((e, false)),
        );
        self.worklist.message = "reading the worklist".into();
        self.worklist.refreshing = Some(answer);
    }

    /// Open a case of the worklist: its first study, retrieved over DICOMweb; for a reported
    /// case, also its final report (the report panel then writes an addendum to it).
    pub fn open_case(&mut self, case_id: &str, ctx: &egui::Context) {
        let Some((server, token, ca)) = self.signed_in() else {
            return;
        };
        let case = case_id.to_string();
        let answer = in_background(
            ctx,
            async move {
                let root = format!("{}/cases/{case}/dicomweb", server.trim_end_matches('/'));
                let client = crate::cases::DicomWebClient::new(ca.as_deref())
                    .map_err(request_failed)?
                    .with_token(token.clone());
                let studies = client.studies(&root).await.map_err(request_failed)?;
                // Its reports too, whatever the list last said of it (it may have been
                // reported since): a final report there is what the draft amends.
                let stored = match CaseClient::new(&server, ca.as_deref()) {
                    Ok(c) => c
                        .with_token(token)
                        .reports(&case)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let first = studies
                    .into_iter()
                    .next()
                    .ok_or_else(|| (format!("case {case} has no studies"), false))?;
                // The images open whatever became of the reports.
                let (signed_final, final_problem) = match stored {
                    Ok(stored) => match final_report_of(&case, &stored) {
                        Ok(f) => (f, None),
                        Err(e) => (None, Some(e)),
                    },
                    Err(e) => (
                        None,
                        Some(format!("the reports of case {case} could not be read: {e}")),
                    ),
                };
                Ok(OpenedCase {
                    case: case.clone(),
                    study: PathBuf::from(format!("{root}/studies/{first}")),
                    signed_final,
                    final_problem,
                })
            },
            |e| Err((e, false)),
        );
        self.worklist.message = format!("opening case {case_id}");
        self.worklist.opening = Some(answer);
    }

    /// The case server, the login's token and the CA file, for a request that needs the
    /// login (`None`, said in the worklist: not signed in).
    fn signed_in(&mut self) -> Option<(String, String, Option<PathBuf>)> {
        let (Some(server), Some(token)) = (
            self.report.setup.server.clone(),
            self.report.setup.token.clone(),
        ) else {
            self.worklist.message = "sign in first".into();
            return None;
        };
        Some((server, token, self.report.setup.server_ca.clone()))
    }

    /// A request with the login failed: said, and an expired login ends here too.
    fn worklist_request_failed(&mut self, why: String, expired: bool) {
        if expired {
            self.login_expired(&why);
        } else {
            self.worklist.message = why;
        }
    }

    /// The server no longer takes the login (a login lasts hours, not a workday): the sign-in
    /// form comes back, and nothing here goes on using it (the study retrieval's token, the
    /// cases listed with it). The outbox's sender keeps what waits until the next sign-in.
    fn login_expired(&mut self, why: &str) {
        self.report.setup.token = None;
        self.report.setup.token_user = None;
        self.dicomweb_token = None;
        self.dicomweb_token_origin = None;
        self.worklist.cases.clear();
        self.worklist.opening = None;
        self.worklist.refreshing = None;
        self.worklist.message = format!("{why}: sign in again");
    }

    /// Take what the worklist's threads sent.
    pub(super) fn poll_worklist(&mut self, ctx: &egui::Context) {
        if let Some(rx) = &self.worklist.signing_in {
            match rx.try_recv() {
                Ok(Ok((token, user, cases))) => {
                    self.worklist.message = format!("{} case(s)", cases.len());
                    self.worklist.cases = cases;
                    self.worklist.signing_in = None;
                    // One login for the session: the worklist's case requests and signing use
                    // it, and the outbox sends what waits in it (reports signed while the
                    // server was away, in this run or an earlier one).
                    if let Some(server) = self.report.setup.server.clone() {
                        match CaseClient::new(&server, self.report.setup.server_ca.as_deref()) {
                            Ok(client) => self
                                .report
                                .connect_outbox(client.with_token(token.clone()).with_user(&user)),
                            Err(e) => self.report.outbox_message = e.to_string(),
                        }
                    }
                    self.report.setup.token = Some(token);
                    self.report.setup.token_user = Some(user);
                }
                Ok(Err(e)) => {
                    self.worklist.message = e;
                    self.worklist.signing_in = None;
                }
                Err(TryRecvError::Disconnected) => self.worklist.signing_in = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        if let Some(rx) = &self.worklist.refreshing {
            match rx.try_recv() {
                Ok(Ok(cases)) => {
                    self.worklist.refreshing = None;
                    self.worklist.message = format!("{} case(s)", cases.len());
                    self.worklist.cases = cases;
                }
                Ok(Err((e, expired))) => {
                    self.worklist.refreshing = None;
                    self.worklist_request_failed(e, expired);
                }
                Err(TryRecvError::Disconnected) => self.worklist.refreshing = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        if let Some(rx) = &self.worklist.opening {
            match rx.try_recv() {
                Ok(Ok(OpenedCase {
                    case,
                    study: url,
                    signed_final,
                    final_problem,
                })) => {
                    self.worklist.opening = None;
                    self.worklist.message = format!("case {case}: retrieving its study");
                    let study = url
                        .to_str()
                        .and_then(crate::cases::dicomweb::StudyUrl::parse);
                    self.report
                        .start_case(&case, study.as_ref().map(|u| u.study_uid.as_str()));
                    // Reported (perhaps in an earlier session): what is written now is an
                    // addendum to the final report the server holds.
                    if let Some(f) = signed_final {
                        self.report.amend(f);
                    }
                    if let Some(problem) = final_problem {
                        self.report.sign_message = problem;
                    }
                    self.dicomweb_token.clone_from(&self.report.setup.token);
                    self.dicomweb_token_origin = self
                        .report
                        .setup
                        .server
                        .as_deref()
                        .map(crate::cases::dicomweb::origin_of);
                    self.close_all();
                    self.scan(vec![url], ctx.clone());
                }
                Ok(Err((e, expired))) => {
                    self.worklist.opening = None;
                    self.worklist_request_failed(e, expired);
                }
                Err(TryRecvError::Disconnected) => self.worklist.opening = None,
                Err(TryRecvError::Empty) => {}
            }
        }
    }
}

/// Run `request` on the network runtime ([`crate::cases::net`]); its answer comes back on the
/// channel returned, and the window is woken for it. `unstarted` makes the answer when the
/// runtime cannot start.
fn in_background<T, F>(
    ctx: &egui::Context,
    request: F,
    unstarted: impl FnOnce(String) -> T,
) -> Receiver<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (answer, repaint) = (tx.clone(), ctx.clone());
    let started = crate::cases::net::spawn(async move {
        let _ = answer.send(request.await);
        repaint.request_repaint();
    });
    if let Err(e) = started {
        let _ = tx.send(unstarted(e));
    }
    rx
}

/// A failed request as the worklist says it: why, and whether the login expired.
fn request_failed(e: crate::cases::ClientError) -> (String, bool) {
    let expired = matches!(e, crate::cases::ClientError::Unauthorized(_));
    (e.to_string(), expired)
}

/// The final report of a case, from the server's list: the one an addendum amends (`None`:
/// not reported yet). One the server no longer verifies is not built on (said instead).
fn final_report_of(
    case: &str,
    stored: &[case_protocol::StoredReport],
) -> Result<Option<super::report_panel::SignedFinal>, String> {
    let Some(last) = stored
        .iter()
        .rfind(|s| s.signed.report.kind == case_protocol::ReportKind::Final)
    else {
        return Ok(None);
    };
    if !last.verified {
        return Err(format!(
            "the final report of case {case} ({}) does not verify on the server: not amended \
             here; tell the administrator",
            last.receipt.report_hash
        ));
    }
    // The server's word is checked here too: the text shown and amended is the report the
    // hash names, of this case (a fault on the server or between could send another).
    let hash = case_protocol::report_hash(&last.signed.report).map(|h| h.0);
    if hash.as_deref().ok() != Some(last.receipt.report_hash.as_str())
        || last.signed.report.case_id != case
        || last.receipt.case_id != case
    {
        return Err(format!(
            "the final report the server sent for case {case} is not the one it names ({}): \
             not amended here; tell the administrator",
            last.receipt.report_hash
        ));
    }
    Ok(Some(super::report_panel::SignedFinal {
        case_id: last.signed.report.case_id.clone(),
        report_hash: last.receipt.report_hash.clone(),
        findings: last.signed.report.findings.clone(),
        impression: last.signed.report.impression.clone(),
    }))
}

/// The worklist section at the top of the browser.
pub fn worklist_ui(app: &mut OverreadApp, ui: &mut egui::Ui) {
    let ctx = ui.ctx().clone();
    let mut open = None;
    egui::CollapsingHeader::new("Worklist")
        .default_open(app.report.setup.server.is_some())
        .show(ui, |ui| {
            if app.report.setup.token.is_none() {
                ui.horizontal(|ui| {
                    let label = ui.label("User");
                    ui.text_edit_singleline(&mut app.report.form.user)
                        .labelled_by(label.id);
                });
                ui.horizontal(|ui| {
                    let label = ui.label("Password");
                    ui.add(egui::TextEdit::singleline(&mut app.worklist.password).password(true))
                        .labelled_by(label.id);
                });
                let busy = app.worklist.signing_in.is_some();
                if ui
                    .add_enabled(!busy, egui::Button::new("Sign in"))
                    .clicked()
                {
                    app.sign_in(&ctx);
                }
            } else {
                ui.horizontal(|ui| {
                    if ui
                        .add_enabled(
                            app.worklist.refreshing.is_none(),
                            egui::Button::new("Refresh"),
                        )
                        .on_hover_text("Read the worklist again")
                        .clicked()
                    {
                        app.refresh_worklist(&ctx);
                    }
                    if ui.button("Sign out").clicked() {
                        app.sign_out();
                    }
                });
            }
            for c in &app.worklist.cases {
                ui.horizontal(|ui| {
                    if ui.button("Open").on_hover_text(&c.id).clicked() {
                        open = Some(c.id.clone());
                    }
                    ui.label(format!(
                        "{} {:?} {} {:?}{}",
                        c.id,
                        c.priority,
                        c.subspecialty,
                        c.status,
                        c.due_at
                            .as_deref()
                            .map(|d| format!(", due {d}"))
                            .unwrap_or_default()
                    ));
                });
            }
            if !app.worklist.message.is_empty() {
                ui.small(&app.worklist.message);
            }
        });
    if let Some(id) = open {
        app.open_case(&id, &ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(case: &str, findings: &str) -> case_protocol::StoredReport {
        let key = case_protocol::SigningKey::generate();
        let report = case_protocol::Report {
            case_id: case.into(),
            kind: case_protocol::ReportKind::Final,
            author: case_protocol::Author {
                user_id: "rad1".into(),
                display_name: "Dr One".into(),
            },
            key_id: key.verifying_key().id().0,
            signed_at: "2026-11-24T10:00:00Z".into(),
            study_instance_uids: vec!["1.2.3".into()],
            findings: findings.into(),
            impression: "Follow up.".into(),
            measurements: Vec::new(),
        };
        let signed = case_protocol::sign_report(report, &key).unwrap();
        let hash = case_protocol::report_hash(&signed.report).unwrap().0;
        case_protocol::StoredReport {
            receipt: case_protocol::Receipt {
                case_id: case.into(),
                report_hash: hash,
                received_at: "2026-11-24T10:00:01Z".into(),
                duplicate: false,
            },
            signed,
            verified: true,
        }
    }

    /// The final an addendum amends is the one its hash names, of its case: a text that does
    /// not hash to the receipt's hash, or a report of another case, is not built on, whatever
    /// the server says of it.
    #[test]
    fn a_final_is_amended_only_when_its_text_is_the_report_its_hash_names() {
        let good = stored("C-1", "Nodule 14 mm.");
        let f = final_report_of("C-1", std::slice::from_ref(&good))
            .unwrap()
            .unwrap();
        assert_eq!(f.report_hash, good.receipt.report_hash);
        assert_eq!(f.findings, "Nodule 14 mm.");

        let mut altered = good.clone();
        altered.signed.report.findings = "Nodule 41 mm.".into();
        let e = final_report_of("C-1", &[altered]).unwrap_err();
        assert!(e.contains("not the one it names"), "{e}");

        let other = stored("C-2", "Nodule 14 mm.");
        let e = final_report_of("C-1", &[other]).unwrap_err();
        assert!(e.contains("not the one it names"), "{e}");

        let mut unverified = good;
        unverified.verified = false;
        let e = final_report_of("C-1", &[unverified]).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        assert_eq!(final_report_of("C-1", &[]), Ok(None));
    }
}
