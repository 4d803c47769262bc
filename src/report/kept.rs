//! Drafts kept on disk: an unsigned report survives the window closing, a crash, and the
//! radiologist moving to another case and back.
//!
//! A draft is kept under its case (the Case field), or under its study while no case is named
//! yet, as one JSON file of its own in a folder of its own (by default `drafts` in the data
//! folder; drafts are patient data: the folder is made owner-only and each file is written
//! owner-only). Every draft has an id, so two drafts of one case (one kept, another dictated
//! beside it) are two files and neither is ever written over by the other. The file's name is
//! a hash of the key and the id, so no case number or UID appears in a path. What is kept:
//! the text, the cursor, who wrote it, the report it amends, the linked measurements (with
//! their points), the unsure words (without their audio, which is never written anywhere)
//! and the refused reports taken back into the text.
//!
//! Files are written whole or not at all (`imaging::partial`) on a thread of their own, so the
//! window never waits for a disk; the folder is read once, when the panel is made (like the
//! macros). A file that cannot be read is named (never quoted: it holds report text) and left
//! where it is.
//!
//! Owns: the file format and where it goes. Must not: decide when a draft is kept or given
//! back (the report panel does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checks::{LinkedMeasurement, MeasurementSource, Section, UnsureWord};

/// The version of the file format written here.
const VERSION: u32 = 1;

/// The default folder.
pub fn default_dir() -> PathBuf {
    crate::data_dir().join("drafts")
}

/// What a draft is kept under: its case, or its study while no case is named.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DraftKey {
    Case(String),
    /// The report's Study Instance UIDs, as the report would name them.
    Study(Vec<String>),
}

impl DraftKey {
    /// The key of a draft for `case_id` (trimmed) about `study_uids`; none where neither is
    /// known (nothing to find it by again).
    pub fn of(case_id: &str, study_uids: &[String]) -> Option<DraftKey> {
        let case_id = case_id.trim();
        if !case_id.is_empty() {
            Some(DraftKey::Case(case_id.to_string()))
        } else if !study_uids.is_empty() {
            Some(DraftKey::Study(study_uids.to_vec()))
        } else {
            None
        }
    }

    /// The file draft `id` is kept in: a hash of the key, and the id (no identifier of the
    /// patient or case in the path).
    fn file_name(&self, id: u64) -> String {
        let mut h = Sha256::new();
        match self {
            DraftKey::Case(id) => {
                h.update(b"case\0");
                h.update(id.as_bytes());
            }
            DraftKey::Study(uids) => {
                h.update(b"study");
                for u in uids {
                    h.update(b"\0");
                    h.update(u.as_bytes());
                }
            }
        }
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{hex}-{id:016x}.json")
    }
}

/// A new draft's id (random).
pub fn new_id() -> u64 {
    rand_core::RngCore::next_u64(&mut rand_core::OsRng)
}

/// A place in the text: a section and a byte range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptPlace {
    pub section: Section,
    pub start: usize,
    pub end: usize,
}

fn kept_place(p: &Option<(Section, std::ops::Range<usize>)>) -> Option<KeptPlace> {
    p.as_ref().map(|(s, r)| KeptPlace {
        section: *s,
        start: r.start,
        end: r.end,
    })
}

/// A place read back, where it still lies on character boundaries of its text.
fn place_in(
    p: &Option<KeptPlace>,
    findings: &str,
    impression: &str,
) -> Option<(Section, std::ops::Range<usize>)> {
    let p = p.as_ref()?;
    let text = match p.section {
        Section::Findings => findings,
        Section::Impression => impression,
    };
    (p.start <= p.end && text.is_char_boundary(p.start) && text.is_char_boundary(p.end))
        .then_some((p.section, p.start..p.end))
}

/// A linked measurement as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptMeasurement {
    pub id: String,
    pub label: String,
    pub value: f64,
    pub unit: String,
    pub kind: Option<String>,
    pub viewer_id: Option<u64>,
    pub series_instance_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    pub points_mm: Vec<[f64; 3]>,
    pub place: Option<KeptPlace>,
}

/// An unsure word as kept (its audio is not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptWord {
    pub text: String,
    pub confidence: f32,
    pub resolved: bool,
    pub at: Option<KeptPlace>,
}

/// A refused report taken back into a draft: its hash and its case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptTakenBack {
    pub hash: String,
    pub case_id: String,
}

/// What a draft holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftContent {
    pub case_id: String,
    pub study_uids: Vec<String>,
    /// Who wrote it (the sign form's user): given back on its own only to them.
    pub user: String,
    /// The final report it amended when it was kept (none: it was a final report itself).
    pub amends: Option<String>,
    pub findings: String,
    pub impression: String,
    pub section: Option<Section>,
    pub cursor: usize,
    pub linked: Vec<KeptMeasurement>,
    pub unsure: Vec<KeptWord>,
    /// Refused reports whose text is in this draft.
    pub taken_back: Vec<KeptTakenBack>,
    /// The run of the workstation that kept it: the viewer's measurement ids mean something
    /// only within it.
    pub session: u64,
}

impl DraftContent {
    /// Nothing worth keeping: no text and no measurement.
    pub fn is_empty(&self) -> bool {
        self.findings.trim().is_empty()
            && self.impression.trim().is_empty()
            && self.linked.is_empty()
    }

    pub fn kept_linked(linked: &[LinkedMeasurement]) -> Vec<KeptMeasurement> {
        linked
            .iter()
            .map(|m| {
                let s = m.source.clone().unwrap_or_default();
                KeptMeasurement {
                    id: m.id.clone(),
                    label: m.label.clone(),
                    value: m.value,
                    unit: m.unit.clone(),
                    kind: m.source.as_ref().map(|s| s.kind.clone()),
                    viewer_id: s.viewer_id,
                    series_instance_uid: s.series_instance_uid,
                    frame_of_reference_uid: s.frame_of_reference_uid,
                    points_mm: s.points_mm,
                    place: kept_place(&m.place),
                }
            })
            .collect()
    }

    pub fn kept_unsure(unsure: &[UnsureWord]) -> Vec<KeptWord> {
        unsure
            .iter()
            .map(|w| KeptWord {
                text: w.text.clone(),
                confidence: w.confidence,
                resolved: w.resolved,
                at: kept_place(&w.at),
            })
            .collect()
    }

    /// The linked measurements again. A viewer id is kept only within the run that kept it
    /// (another run numbers its measurements anew).
    pub fn linked(&self) -> Vec<LinkedMeasurement> {
        let same_run = self.session == session();
        self.linked
            .iter()
            .map(|m| LinkedMeasurement {
                id: m.id.clone(),
                label: m.label.clone(),
                value: m.value,
                unit: m.unit.clone(),
                source: m.kind.as_ref().map(|kind| MeasurementSource {
                    viewer_id: m.viewer_id.filter(|_| same_run),
                    kind: kind.clone(),
                    series_instance_uid: m.series_instance_uid.clone(),
                    frame_of_reference_uid: m.frame_of_reference_uid.clone(),
                    points_mm: m.points_mm.clone(),
                }),
                place: place_in(&m.place, &self.findings, &self.impression),
            })
            .collect()
    }

    /// The unsure words again, without audio.
    pub fn unsure(&self) -> Vec<UnsureWord> {
        self.unsure
            .iter()
            .map(|w| UnsureWord {
                text: w.text.clone(),
                confidence: w.confidence,
                resolved: w.resolved,
                at: place_in(&w.at, &self.findings, &self.impression),
                audio: None,
            })
            .collect()
    }
}

/// This run of the workstation (random, made once).
pub fn session() -> u64 {
    static SESSION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SESSION.get_or_init(|| rand_core::RngCore::next_u64(&mut rand_core::OsRng))
}

/// A draft as its file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptDraft {
    pub version: u32,
    /// The draft's id (its file is named by it and its key).
    pub id: u64,
    /// When it was kept, seconds since 1970.
    pub saved_at: u64,
    #[serde(flatten)]
    pub content: DraftContent,
}

impl KeptDraft {
    /// "kept 5 min ago", for the panel.
    pub fn age(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let s = now.saturating_sub(self.saved_at);
        match s {
            0..60 => "kept less than a minute ago".into(),
            60..7200 => format!("kept {} min ago", s / 60),
            7200..172_800 => format!("kept {} h ago", s / 3600),
            _ => format!("kept {} days ago", s / 86_400),
        }
    }
}

enum Job {
    Write { path: PathBuf, bytes: Vec<u8> },
    Remove(PathBuf),
    Flush(Sender<()>),
}

/// The drafts in a folder, as this run knows them, and the thread that writes them.
pub struct DraftStore {
    dir: PathBuf,
    kept: HashMap<(DraftKey, u64), KeptDraft>,
    jobs: Sender<Job>,
    /// Writes that failed: the file, and why.
    failures: Receiver<(PathBuf, String)>,
}

/// Removes a draft's file through the store's own queue (after any write of it still
/// queued), from another thread: the signing's.
#[derive(Debug, Clone)]
pub struct DraftRemover {
    jobs: Sender<Job>,
}

impl DraftRemover {
    /// Remove `path` and wait (at most `limit`) until it is gone. False when not done in
    /// time.
    pub fn remove_now(&self, path: &Path, limit: Duration) -> bool {
        let (tx, rx) = channel();
        self.jobs.send(Job::Remove(path.to_path_buf())).is_ok()
            && self.jobs.send(Job::Flush(tx)).is_ok()
            && rx.recv_timeout(limit).is_ok()
    }
}

impl std::fmt::Debug for DraftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DraftStore")
            .field("drafts", &self.kept.len())
            .finish_non_exhaustive()
    }
}

impl DraftStore {
    /// The drafts kept in `dir` (a missing folder has none), and a message per file that
    /// could not be read (left where it is).
    pub fn open(dir: &Path) -> (DraftStore, Vec<String>) {
        let mut kept = HashMap::new();
        let mut problems = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".json") || name.starts_with('.') {
                        continue;
                    }
                    match read_draft(&path) {
                        Ok(d) => {
                            // Filed under the name its key gives (a file renamed by hand
                            // is not kept twice).
                            if let Some(key) =
                                DraftKey::of(&d.content.case_id, &d.content.study_uids)
                                && key.file_name(d.id) == name
                            {
                                kept.insert((key, d.id), d);
                            } else {
                                problems.push(format!("draft {name}: not where its case puts it"));
                            }
                        }
                        Err(e) => problems.push(format!("draft {name}: {e}")),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("drafts folder not read: {e}")),
        }
        let (jobs, rx) = channel();
        let (failed, failures) = channel();
        let folder = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("overread-drafts".into())
            .spawn(move || write_jobs(&folder, &rx, &failed));
        if let Err(e) = spawned {
            problems.push(format!("drafts will not be kept: {e}"));
        }
        (
            DraftStore {
                dir: dir.to_path_buf(),
                kept,
                jobs,
                failures,
            },
            problems,
        )
    }

    /// Draft `id` kept under `key`.
    pub fn get(&self, key: &DraftKey, id: u64) -> Option<&KeptDraft> {
        self.kept.get(&(key.clone(), id))
    }

    /// The drafts kept under `key`, newest first.
    pub fn drafts_of(&self, key: &DraftKey) -> Vec<&KeptDraft> {
        let mut of: Vec<&KeptDraft> = self
            .kept
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|(_, d)| d)
            .collect();
        of.sort_by(|a, b| b.saved_at.cmp(&a.saved_at).then(b.id.cmp(&a.id)));
        of
    }

    /// The file draft `id` under `key` is (or would be) kept in.
    pub fn path_of(&self, key: &DraftKey, id: u64) -> PathBuf {
        self.dir.join(key.file_name(id))
    }

    /// Keep `content` as draft `id` under `key` (written on the store's thread).
    pub fn keep(&mut self, key: &DraftKey, id: u64, content: DraftContent) {
        let draft = KeptDraft {
            version: VERSION,
            id,
            saved_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            content,
        };
        match serde_json::to_vec_pretty(&draft) {
            Ok(bytes) => {
                let _ = self.jobs.send(Job::Write {
                    path: self.path_of(key, id),
                    bytes,
                });
                self.kept.insert((key.clone(), id), draft);
            }
            Err(e) => tracing::warn!("draft not kept: {e}"),
        }
    }

    /// Forget draft `id` under `key` (its file removed on the store's thread, if still there).
    pub fn remove(&mut self, key: &DraftKey, id: u64) {
        self.kept.remove(&(key.clone(), id));
        let _ = self.jobs.send(Job::Remove(self.path_of(key, id)));
    }

    /// Forget draft `id` under `key` here only (its file, if any, is left): the next `keep`
    /// of it writes it whatever this run thought was on disk.
    pub fn forget(&mut self, key: &DraftKey, id: u64) {
        self.kept.remove(&(key.clone(), id));
    }

    /// Remove every draft kept under `key` by one of `authors` (or by no one named) but
    /// `except`: another radiologist's draft of the case stays theirs, to be offered.
    pub fn remove_all(&mut self, key: &DraftKey, authors: &[&str], except: Option<u64>) {
        let ids: Vec<u64> = self
            .kept
            .iter()
            .filter(|((k, id), d)| {
                k == key
                    && Some(*id) != except
                    && (d.content.user.is_empty() || authors.contains(&d.content.user.as_str()))
            })
            .map(|((_, id), _)| *id)
            .collect();
        for id in ids {
            self.remove(key, id);
        }
    }

    /// The last failure to write a draft, if any since asked. A draft whose write failed is
    /// forgotten here, so its next `keep` writes it again (this run does not count it as on
    /// disk).
    pub fn failure(&mut self) -> Option<String> {
        let failed: Vec<(PathBuf, String)> = self.failures.try_iter().collect();
        for (path, _) in &failed {
            let dir = &self.dir;
            self.kept
                .retain(|(key, id), _| dir.join(key.file_name(*id)) != *path);
        }
        failed.into_iter().last().map(|(_, why)| why)
    }

    /// A handle that removes drafts' files in this store's order, from another thread.
    pub fn remover(&self) -> DraftRemover {
        DraftRemover {
            jobs: self.jobs.clone(),
        }
    }

    /// Wait (at most `limit`) until everything asked of the store is on disk. False when it
    /// was not done in time (or the thread is gone).
    pub fn flush(&self, limit: Duration) -> bool {
        let (tx, rx) = channel();
        self.jobs.send(Job::Flush(tx)).is_ok() && rx.recv_timeout(limit).is_ok()
    }
}

/// Why JSON could not be read, without quoting it (a draft's text is patient data, and this
/// goes to the log).
fn unquoted(e: &serde_json::Error) -> String {
    format!(
        "not a draft this workstation reads ({:?} error at line {}, column {})",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn read_draft(path: &Path) -> Result<KeptDraft, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    // A draft is text: a file of more than 16 MiB is not one.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > 16 << 20 {
        return Err(format!("{} bytes, too large for a draft", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    // The version first: a later format is said as such, not as a damaged file.
    let v: Version = serde_json::from_slice(&bytes).map_err(|e| unquoted(&e))?;
    if v.version != VERSION {
        return Err(format!(
            "version {} (this workstation reads {VERSION})",
            v.version
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| unquoted(&e))
}

/// The store's thread: each job in turn, the folder made owner-only on first write.
fn write_jobs(dir: &Path, jobs: &Receiver<Job>, failed: &Sender<(PathBuf, String)>) {
    for job in jobs {
        match job {
            Job::Write { path, bytes } => {
                if let Err(e) = write(dir, &path, &bytes) {
                    tracing::warn!("draft not written: {e}");
                    let _ = failed.send((path, e.to_string()));
                }
            }
            Job::Remove(path) => match std::fs::remove_file(&path) {
                Ok(()) => {
                    if let Ok(d) = std::fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("draft not removed: {e}"),
            },
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn write(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    imaging::partial::private_dir(dir)?;
    // Owner-only whatever the folder (a drafts folder set to a shared place): not
    // `imaging::partial::beside`, whose files are for others to read.
    let mut partial = imaging::partial::private_beside(path)?;
    partial.write_all(bytes)?;
    imaging::partial::persist(partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(case: &str, findings: &str) -> DraftContent {
        DraftContent {
            case_id: case.into(),
            study_uids: vec!["1.2.3".into()],
            user: "rad1".into(),
            amends: None,
            findings: findings.into(),
            impression: "Follow up.".into(),
            section: Some(Section::Impression),
            cursor: 3,
            linked: DraftContent::kept_linked(&[LinkedMeasurement {
                id: "#1".into(),
                label: "nodule".into(),
                value: 14.2,
                unit: "mm".into(),
                source: Some(MeasurementSource {
                    viewer_id: Some(4),
                    kind: "length".into(),
                    series_instance_uid: Some("1.2.3.4".into()),
                    frame_of_reference_uid: Some("1.2.3.5".into()),
                    points_mm: vec![[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]],
                }),
                place: Some((Section::Findings, 7..14)),
            }]),
            unsure: DraftContent::kept_unsure(&[UnsureWord {
                text: "Nodule".into(),
                confidence: 0.3,
                resolved: true,
                at: Some((Section::Findings, 0..6)),
                audio: Some((0, 0.0, 0.5)),
            }]),
            taken_back: vec![KeptTakenBack {
                hash: "abc".into(),
                case_id: case.into(),
            }],
            session: session(),
        }
    }

    #[test]
    fn a_kept_draft_is_read_back_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let drafts = dir.path().join("drafts");
        let (mut store, problems) = DraftStore::open(&drafts);
        assert!(problems.is_empty(), "{problems:?}");
        let key = DraftKey::Case("C-7".into());
        store.keep(&key, 7, content("C-7", "Nodule 14.2 mm."));
        assert!(store.flush(Duration::from_secs(10)));
        drop(store);

        let (again, problems) = DraftStore::open(&drafts);
        assert!(problems.is_empty(), "{problems:?}");
        let d = again.get(&key, 7).expect("kept");
        assert_eq!(d.content, content("C-7", "Nodule 14.2 mm."));
        let linked = d.content.linked();
        assert_eq!(linked[0].place, Some((Section::Findings, 7..14)));
        let source = linked[0].source.as_ref().unwrap();
        assert_eq!(source.points_mm, vec![[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]);
        // The same run: the viewer's id still means the same measurement.
        assert_eq!(source.viewer_id, Some(4));
        let words = d.content.unsure();
        assert_eq!(words[0].at, Some((Section::Findings, 0..6)));
        assert!(words[0].resolved);
        assert_eq!(words[0].audio, None, "audio is never written");

        // No case number in any path; the folder and the file are the owner's alone.
        let names: Vec<String> = std::fs::read_dir(&drafts)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(!names[0].contains("C-7"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&drafts), 0o700);
            assert_eq!(mode(&drafts.join(&names[0])), 0o600);
        }
    }

    /// A drafts folder that exists already (set to a shared place) still gets owner-only files.
    #[cfg(unix)]
    #[test]
    fn a_draft_in_a_shared_folder_is_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let (mut store, _) = DraftStore::open(dir.path());
        let key = DraftKey::Case("C-1".into());
        store.keep(&key, 1, content("C-1", "x"));
        assert!(store.flush(Duration::from_secs(10)));
        let file = store.path_of(&key, 1);
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// A removal from another thread goes after any write of the file still queued: the
    /// write cannot bring the file back. A write that failed is forgotten, so it is tried
    /// again.
    #[test]
    fn a_removal_follows_the_queued_write_and_a_failed_write_is_not_counted_as_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DraftStore::open(dir.path());
        let key = DraftKey::Case("C-1".into());
        for round in 0..20 {
            store.keep(&key, round, content("C-1", "signed text"));
            let path = store.path_of(&key, round);
            assert!(store.remover().remove_now(&path, Duration::from_secs(10)));
            assert!(!path.exists(), "round {round}");
        }
        // A folder that cannot be made (a file is in its place): the write fails, is said,
        // and the draft is not counted as on disk.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        let (mut store, _) = DraftStore::open(&blocked.join("drafts"));
        store.keep(&key, 1, content("C-1", "x"));
        assert!(store.flush(Duration::from_secs(10)));
        assert!(store.failure().is_some());
        assert!(store.get(&key, 1).is_none());
    }

    #[test]
    fn another_run_does_not_trust_the_viewer_ids() {
        let mut c = content("C-7", "x");
        c.session = session().wrapping_add(1);
        assert_eq!(c.linked()[0].source.as_ref().unwrap().viewer_id, None);
    }

    /// Two drafts of one case are two files; one removed leaves the other; a damaged file is
    /// named (its text never quoted) and left where it is.
    #[test]
    fn drafts_of_one_case_stand_side_by_side_and_a_damaged_file_is_named_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DraftStore::open(dir.path());
        let key = DraftKey::Case("C-1".into());
        store.keep(&key, 1, content("C-1", "first"));
        store.keep(&key, 2, content("C-1", "second"));
        let study = DraftKey::Study(vec!["1.2.3".into()]);
        store.keep(&study, 3, content("", "x"));
        store.remove(&study, 3);
        assert!(store.flush(Duration::from_secs(10)));
        std::fs::write(
            dir.path().join("0123.json"),
            br#"{"version": 1, "findings": "Nodule of DOE JANE"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("0124.json"), br#"{"version": 9}"#).unwrap();

        let (mut again, mut problems) = DraftStore::open(dir.path());
        problems.sort();
        assert_eq!(
            again
                .drafts_of(&key)
                .iter()
                .map(|d| d.content.findings.as_str())
                .collect::<std::collections::BTreeSet<_>>(),
            ["first", "second"].into()
        );
        assert!(again.drafts_of(&study).is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("draft 0123.json: not a draft"),
            "{problems:?}"
        );
        assert!(!problems[0].contains("DOE"), "{problems:?}");
        assert!(problems[1].contains("version 9"), "{problems:?}");
        assert!(dir.path().join("0123.json").exists());

        again.remove_all(&key, &["rad1"], Some(2));
        assert!(again.flush(Duration::from_secs(10)));
        let (third, _) = DraftStore::open(dir.path());
        let left: Vec<u64> = third.drafts_of(&key).iter().map(|d| d.id).collect();
        assert_eq!(left, [2]);
    }

    /// A signed case's drafts by its signer (or by no one named) go, but the one kept;
    /// another radiologist's stay theirs.
    #[test]
    fn remove_all_takes_only_the_authors_drafts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DraftStore::open(dir.path());
        let key = DraftKey::Case("C-1".into());
        let by = |user: &str, text: &str| DraftContent {
            user: user.into(),
            ..content("C-1", text)
        };
        store.keep(&key, 1, by("rad1", "first"));
        store.keep(&key, 2, by("rad1", "second"));
        store.keep(&key, 3, by("", "nobody's"));
        store.keep(&key, 4, by("rad2", "theirs"));
        store.keep(&key, 5, by("rad", "a typo's"));
        store.remove_all(&key, &["rad1", "rad"], Some(2));
        assert!(store.flush(Duration::from_secs(10)));
        let (again, _) = DraftStore::open(dir.path());
        let mut left: Vec<u64> = again.drafts_of(&key).iter().map(|d| d.id).collect();
        left.sort();
        assert_eq!(left, [2, 4]);
    }

    #[test]
    fn places_off_the_text_are_dropped() {
        let mut c = content("C-1", "Nodule ≥ 14 mm.");
        // "≥" is three bytes from 7: 8 is inside it.
        c.linked[0].place = Some(KeptPlace {
            section: Section::Findings,
            start: 8,
            end: 9,
        });
        c.unsure[0].at = Some(KeptPlace {
            section: Section::Impression,
            start: 0,
            end: 400,
        });
        assert_eq!(c.linked()[0].place, None);
        assert_eq!(c.unsure()[0].at, None);
    }

    #[test]
    fn keys_follow_the_case_then_the_study() {
        assert_eq!(
            DraftKey::of(" C-1 ", &["1.2".into()]),
            Some(DraftKey::Case("C-1".into()))
        );
        assert_eq!(
            DraftKey::of("", &["1.2".into()]),
            Some(DraftKey::Study(vec!["1.2".into()]))
        );
        assert_eq!(DraftKey::of("  ", &[]), None);
        assert_ne!(
            DraftKey::Case("1.2".into()).file_name(1),
            DraftKey::Study(vec!["1.2".into()]).file_name(1)
        );
        assert_ne!(
            DraftKey::Case("1.2".into()).file_name(1),
            DraftKey::Case("1.2".into()).file_name(2)
        );
    }
}
