//! Studies over DICOMweb (issue 6): the workstation's command line loads a study from the
//! case server and from a real Orthanc (a PACS no one here wrote) by its URL, with the same
//! result as loading the files from disk; Orthanc retrieves a study from Overread's server.

use std::path::{Path, PathBuf};
use std::process::Command;

use case_protocol::Role;
use case_server::store::content_key;
use serde_json::Value;

use super::support::{shared_dicom, tempdir, with_test_drafts};

const PASSWORD: &str = "password-123";

fn overread(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overread"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("OVERREAD_DICOMWEB_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `overread load TARGET --json` without its timings and memory (which differ by nature).
fn load_json(target: &str, env: &[(&str, &str)]) -> Value {
    let (ok, out, err) = overread(&["load", target, "--json"], env);
    assert!(ok, "overread load {target}: {err}");
    let mut v: Value = serde_json::from_str(&out).unwrap();
    let map = v.as_object_mut().unwrap();
    map.remove("timings");
    map.remove("peak_rss_bytes");
    v
}

/// The content keys (sha256) of the `.dcm` files in a folder, sorted.
fn dcm_hashes(folder: &Path) -> Vec<String> {
    let mut h: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .map(|p| content_key(&std::fs::read(p).unwrap()))
        .collect();
    h.sort();
    h
}

/// rad1's bearer token from the case server at `base` (a login, as the workstation makes).
fn rad1_token(rt: &tokio::runtime::Runtime, base: &str) -> String {
    rt.block_on(async {
        let mut client = overread::cases::CaseClient::new(base, None).unwrap();
        client.login("rad1", PASSWORD).await.unwrap();
        client.token().unwrap().to_string()
    })
}

/// A real, dated study (GE multiphase MR, 100 files: undated studies are refused at intake).
fn real_study() -> Option<PathBuf> {
    Some(shared_dicom()?.join("mr/ge_multiphase/dicom"))
}

/// Study UID and birth date (YYYY-MM-DD) of the first file in `folder`.
fn study_of(folder: &Path) -> (String, String) {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    let obj = dicom_object::open_file(&files[0]).unwrap();
    let text = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let birth = text(dicom_dictionary_std::tags::PATIENT_BIRTH_DATE);
    let birth = if birth.len() == 8 {
        format!("{}-{}-{}", &birth[0..4], &birth[4..6], &birth[6..8])
    } else {
        String::new()
    };
    (text(dicom_dictionary_std::tags::STUDY_INSTANCE_UID), birth)
}

/// A case server on loopback holding `folder` (imported as `overread-server import` does) in
/// a case assigned to rad1 (rad2 is another radiologist). Returns (runtime, base URL, case).
fn server_with(folder: &Path, dir: &Path) -> (tokio::runtime::Runtime, String, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (base, case) = rt.block_on(async {
        let url = case_server::db::scratch_database(dir).await.unwrap();
        let db = case_server::Db::open(&url).await.unwrap();
        for (id, subs) in [
            ("rad1", vec!["chest".to_string()]),
            ("rad2", vec!["chest".to_string()]),
        ] {
            db.add_user(id, Role::Radiologist, id, &subs, PASSWORD)
                .await
                .unwrap();
        }
        let (_, birth) = study_of(folder);
        let case = db
            .create_case(
                &serde_json::from_value(serde_json::json!({
                "patient": {"name": "DOE^J", "id": "M1", "birth_date": birth, "sex": "O"},
                "referral": {"physician": {"name": "Dr R", "fax": "+14165550100", "institution": null},
                             "clinical_question": "?", "document_sha256": null},
                "subspecialty": "chest", "priority": "routine"}))
                .unwrap(),
            )
            .await
            .unwrap();
        db.assign(&case.id, "rad1").await.unwrap();
        let store = case_server::Store::open(dir.join("objects").to_str().unwrap()).unwrap();
        let mut server = case_server::Server::new(db, store);
        server.rules.max_study_age_days = 100_000;
        let report = case_server::intake::import(&server, &[folder.to_path_buf()], &case.id)
            .await
            .unwrap();
        assert!(report.refused.is_empty(), "{:?}", report.refused);
        server
            .db
            .set_status(&case.id, case_protocol::CaseStatus::Ready)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(case_server::serve(server, listener));
        (base, case.id)
    });
    (rt, base, case)
}

#[test]
fn load_by_url_from_the_case_server_equals_load_from_disk() {
    let Some(folder) = real_study() else { return };
    let dir = tempdir();
    let (rt, base, case) = server_with(&folder, dir.path());
    let (study, _) = study_of(&folder);
    let url = format!("{base}/cases/{case}/dicomweb/studies/{study}");
    let rad1 = [("OVERREAD_USER", "rad1"), ("OVERREAD_PASSWORD", PASSWORD)];

    let from_disk = load_json(folder.to_str().unwrap(), &[]);
    let over_web = load_json(&url, &rad1);
    assert_eq!(from_disk, over_web);
    assert_eq!(
        from_disk["geometry"]["dims"],
        serde_json::json!([64, 64, 10])
    );

    // `fetch` keeps the files: byte for byte the originals.
    let out = dir.path().join("fetched");
    let (ok, stdout, err) = overread(
        &["fetch", &url, "-o", out.to_str().unwrap(), "--json"],
        &rad1,
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["instances"], 100);
    assert!(v["first_instance_secs"].as_f64().unwrap() <= v["total_secs"].as_f64().unwrap());
    assert_eq!(dcm_hashes(&out), dcm_hashes(&folder));
    // Not again into a folder that holds files: the study would open mixed with them.
    let (ok, _, err) = overread(&["fetch", &url, "-o", out.to_str().unwrap()], &rad1);
    assert!(!ok && err.contains("holds files already"), "{err}");

    // Listed a page at a time (a server gives 1,000 at most unasked): with pages of 7 the
    // list is the same 100 instances (the last page short), not the first 7.
    let token = rad1_token(&rt, &base);
    let study_url = overread::cases::dicomweb::StudyUrl::parse(&url).unwrap();
    let listed = |page: usize| {
        let client = overread::cases::dicomweb::DicomWebClient::new(None)
            .unwrap()
            .with_token(token.clone())
            .with_page_size(page);
        rt.block_on(client.instances(&study_url)).unwrap()
    };
    let whole = listed(1000);
    assert_eq!(whole.len(), 100);
    assert_eq!(listed(7), whole);
    assert_eq!(listed(100), whole);

    // Another radiologist's workstation gets no study, and says why.
    let (ok, _, err) = overread(
        &["load", &url, "--json"],
        &[("OVERREAD_USER", "rad2"), ("OVERREAD_PASSWORD", PASSWORD)],
    );
    assert!(!ok);
    assert!(err.contains("404") && err.contains(&case), "{err}");
    // Without a login: the server's 401 is named.
    let (ok, _, err) = overread(&["load", &url], &[]);
    assert!(!ok && err.contains("new login"), "{err}");
}

/// A private Orthanc on loopback with the DICOMweb plugin, stopped when dropped.
struct Orthanc {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const ORTHANC: &str = "/usr/sbin/Orthanc";
const ORTHANC_DICOMWEB: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

impl Orthanc {
    /// None (with a message) where the Debian packages are missing, except in CI.
    fn start() -> Option<Orthanc> {
        // reqwest's rustls needs a process-wide provider (the workstation uses ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        if !(Path::new(ORTHANC).exists() && Path::new(ORTHANC_DICOMWEB).exists()) {
            assert!(
                std::env::var("CI").map(|v| v != "true").unwrap_or(true),
                "Orthanc and its DICOMweb plugin must be installed in CI (.ci/run installs them)"
            );
            eprintln!("SKIPPED: Orthanc is not installed (apt install orthanc orthanc-dicomweb)");
            return None;
        }
        let dir = tempdir();
        let port = free_port();
        let config = serde_json::json!({
            "Name": "overread-test",
            "StorageDirectory": dir.path().join("db"),
            "IndexDirectory": dir.path().join("db"),
            "HttpPort": port,
            "DicomServerEnabled": false,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "HttpServerEnabled": true,
            "Plugins": [ORTHANC_DICOMWEB],
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "EnableWado": false },
        });
        let path = dir.path().join("orthanc.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let child = Command::new(ORTHANC)
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let orthanc = Orthanc {
            child,
            base,
            _dir: dir,
        };
        let client = reqwest::blocking::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/system", orthanc.base))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return Some(orthanc);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("Orthanc did not answer on {}", orthanc.base);
    }
}

#[test]
fn the_workstation_loads_a_study_from_orthanc_and_orthanc_retrieves_one_from_overread() {
    let Some(folder) = real_study() else { return };
    let Some(orthanc) = Orthanc::start() else {
        return;
    };
    let (study, _) = study_of(&folder);
    let http = reqwest::blocking::Client::new();

    // Orthanc -> Overread: the files go into Orthanc by its REST API; the workstation loads
    // the study by its DICOMweb URL.
    for e in std::fs::read_dir(&folder).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "dcm") {
            continue;
        }
        let r = http
            .post(format!("{}/instances", orthanc.base))
            .body(std::fs::read(&p).unwrap())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
    }
    let url = format!("{}/dicom-web/studies/{study}", orthanc.base);
    assert_eq!(
        load_json(folder.to_str().unwrap(), &[]),
        load_json(&url, &[])
    );

    // Overread -> Orthanc: Orthanc's DICOMweb client retrieves the study from Overread's
    // case server (QIDO-RS and WADO-RS, with the radiologist's bearer token).
    let dir = tempdir();
    let (rt, base, case) = server_with(&folder, dir.path());
    let token = rad1_token(&rt, &base);
    // Empty Orthanc first, so what it holds next came from Overread.
    let r = http
        .delete(format!(
            "{}/studies/{}",
            orthanc.base,
            orthanc_study_id(&http, &orthanc.base, &study)
        ))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let r = http
        .put(format!("{}/dicom-web/servers/overread", orthanc.base))
        .json(&serde_json::json!({
            "Url": format!("{base}/cases/{case}/dicomweb/"),
            "HttpHeaders": { "Authorization": format!("Bearer {token}") },
        }))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let r = http
        .post(format!(
            "{}/dicom-web/servers/overread/retrieve",
            orthanc.base
        ))
        .json(&serde_json::json!({ "Resources": [ { "Study": study } ] }))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    // Orthanc now holds the 100 files, byte for byte.
    let id = orthanc_study_id(&http, &orthanc.base, &study);
    let instances: Value = http
        .get(format!("{}/studies/{id}/instances", orthanc.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut got: Vec<String> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let bytes = http
                .get(format!(
                    "{}/instances/{}/file",
                    orthanc.base,
                    i["ID"].as_str().unwrap()
                ))
                .send()
                .unwrap()
                .bytes()
                .unwrap();
            content_key(&bytes)
        })
        .collect();
    got.sort();
    assert_eq!(got, dcm_hashes(&folder));
}

/// Orthanc's own id of a study, by its Study Instance UID.
fn orthanc_study_id(http: &reqwest::blocking::Client, base: &str, study: &str) -> String {
    let found: Value = http
        .post(format!("{base}/tools/lookup"))
        .body(study.to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    found
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Type"] == "Study")
        .unwrap_or_else(|| panic!("study {study} not in Orthanc: {found}"))["ID"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The workstation opens a study by its URL: the first image shows from the first file that
/// arrives (a one-slice preview), then the whole stack loads, equal to loading the files from
/// disk.
#[test]
fn the_workstation_opens_a_study_url_showing_the_first_file_first() {
    use eframe::egui;
    use egui_kittest::Harness;
    use overread::app::OverreadApp;
    use overread::app::settings::Settings;
    use std::time::{Duration, Instant};

    let Some(folder) = real_study() else { return };
    let dir = tempdir();
    let (rt, base, case) = server_with(&folder, dir.path());
    let (study, _) = study_of(&folder);
    let token = rad1_token(&rt, &base);
    let url = PathBuf::from(format!("{base}/cases/{case}/dicomweb/studies/{study}"));
    let settings = Settings {
        dicomweb_token: Some(token),
        ..Settings::default()
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .with_max_steps(100_000)
        .wgpu()
        .build_eframe(move |cc| {
            OverreadApp::with_settings(cc, vec![url], &with_test_drafts(settings))
        });
    let start = Instant::now();
    while !(harness.state().loaded() && harness.state().opened_stacks().len() >= 2) {
        harness.step();
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the study did not load: {} (opened {:?})",
            harness.state().status(),
            harness.state().opened_stacks()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    harness.step();
    let opened = harness.state().opened_stacks().to_vec();
    assert_eq!(opened[0].1, 1, "a one-slice preview first: {opened:?}");
    // The full stack is the one `overread load` picks from the files on disk, voxel for voxel.
    let report = imaging::scan(std::slice::from_ref(&folder));
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    assert_eq!(
        opened.last().unwrap(),
        &(stack.id.clone(), stack.slices.len())
    );
    let from_disk = imaging::load_stack(stack, &imaging::LoadOptions::default(), &|_| {}).unwrap();
    let shown = harness.state().loaded_voxels().unwrap();
    assert_eq!(shown.shape(), from_disk.voxels.shape());
    let [nk, nj, ni] = shown.shape();
    for k in 0..nk {
        for j in (0..nj).step_by(7) {
            for i in (0..ni).step_by(5) {
                assert_eq!(
                    shown.get(i, j, k),
                    from_disk.voxels.get(i, j, k),
                    "voxel {i},{j},{k}"
                );
            }
        }
    }
    assert!(harness.state().gpu_error().is_none());
}

/// The worklist: sign in, see the assigned case, open it; its study arrives over DICOMweb and
/// the case goes into the report's sign form.
#[test]
fn the_worklist_opens_a_case_and_loads_its_study_over_dicomweb() {
    use eframe::egui;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;
    use overread::app::OverreadApp;
    use overread::app::settings::Settings;
    use std::time::{Duration, Instant};

    let Some(folder) = real_study() else { return };
    let dir = tempdir();
    let (_rt, base, case) = server_with(&folder, dir.path());
    let settings = Settings {
        case_server: Some(base),
        user: Some("rad1".into()),
        ..Settings::default()
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .with_max_steps(100_000)
        .wgpu()
        .build_eframe(move |cc| {
            OverreadApp::with_settings(cc, Vec::new(), &with_test_drafts(settings))
        });
    harness.step();
    harness.state_mut().worklist.password = PASSWORD.into();
    harness.get_by_label("Sign in").click();
    let start = Instant::now();
    while harness.state().worklist.cases.is_empty() {
        harness.step();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no worklist: {}",
            harness.state().worklist.message
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        harness.state().worklist.password.is_empty(),
        "the password is not kept"
    );
    let cases: Vec<String> = harness
        .state()
        .worklist
        .cases
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(cases, std::slice::from_ref(&case));
    harness.step();
    harness.get_by_label("Open").click();
    while !(harness.state().loaded() && harness.state().opened_stacks().len() >= 2) {
        harness.step();
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the case did not open: {} / {}",
            harness.state().worklist.message,
            harness.state().status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    harness.step();
    assert_eq!(harness.state().report.form.case_id, case);
    let report = imaging::scan(std::slice::from_ref(&folder));
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap();
    let opened = harness.state().opened_stacks().to_vec();
    assert_eq!(
        opened.last().unwrap(),
        &(stack.id.clone(), stack.slices.len())
    );
    assert!(harness.state().gpu_error().is_none());
}

/// A server that answers every QIDO-RS page with 1,000 series never seen before (a broken or
/// hostile one: real servers are tested above) fills no memory: the search is refused once it
/// passes `MAX_QIDO_RESULTS`, and says so. A plain HTTP/1.1 responder on loopback.
#[test]
fn a_server_listing_without_end_is_refused() {
    static PAGES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    // A thousand new series on every page, whatever the offset.
    let (study, client) = stand_in_study(|_| {
        let page = PAGES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = Value::Array(
            (0..1000)
                .map(|i| {
                    serde_json::json!({
                        "0020000E": {"vr": "UI", "Value": [format!("2.25.{page}.{i}")]}
                    })
                })
                .collect(),
        );
        (200, "", body.to_string())
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(client.instances(&study)).unwrap_err();
    assert!(
        err.to_string().contains("more than 200000 results"),
        "{err}"
    );
    let asked = PAGES.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        asked,
        overread::cases::dicomweb::MAX_QIDO_RESULTS / 1000 + 1,
        "pages asked for"
    );
}

/// Study 1.2.3 on a stand-in server answering by `answer`, and a client without access.
fn stand_in_study(
    answer: Answer,
) -> (
    overread::cases::dicomweb::StudyUrl,
    overread::cases::dicomweb::DicomWebClient,
) {
    let base = stand_in(answer);
    let study =
        overread::cases::dicomweb::StudyUrl::parse(&format!("{base}/dicomweb/studies/1.2.3"))
            .unwrap();
    let client = overread::cases::dicomweb::DicomWebClient::new(None).unwrap();
    (study, client)
}

/// How a stand-in server answers a request's path: status, extra header lines, body.
type Answer = fn(&str) -> (u16, &'static str, String);

/// A stand-in DICOMweb server on loopback answering each request by `answer(path)`.
fn stand_in(answer: Answer) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
            let (status, headers, body) = answer(&path);
            // A search's type unless the answer gives its own.
            let content_type = if headers.to_ascii_lowercase().contains("content-type:") {
                ""
            } else {
                "content-type: application/dicom+json\r\n"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{content_type}{headers}\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

/// A study whose list the server gives short is refused, never opened short of slices or
/// series without a word: a series listing fewer instances than its Number of Series
/// Related Instances, a search answered with an object instead of a list, and one that says
/// more results exist (Warning 299) but gives none.
#[test]
fn a_study_listed_short_is_refused() {
    let cases: [(Answer, &str); 3] = [
        (
            |path| {
                if path.contains("/instances") {
                    let list: Vec<Value> = (1..=2)
                        .map(|n| {
                            serde_json::json!({
                                "00080018": {"vr": "UI", "Value": [format!("1.2.3.4.{n}")]}
                            })
                        })
                        .collect();
                    (200, "", Value::Array(list).to_string())
                } else {
                    let series = serde_json::json!([{
                        "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
                        "00201209": {"vr": "IS", "Value": [3]}
                    }]);
                    (200, "", series.to_string())
                }
            },
            "series 1.2.3.4 lists 2 of its 3 instances",
        ),
        (
            |path| {
                if path.contains("/instances") {
                    (200, "", r#"{"error": "busy"}"#.to_string())
                } else {
                    let series =
                        serde_json::json!([{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}]);
                    (200, "", series.to_string())
                }
            },
            "not a list of results",
        ),
        (
            |path| {
                if path.contains("/instances") {
                    (
                        200,
                        "warning: 299 pacs \"There are additional results that can be requested\"\r\n",
                        "[]".to_string(),
                    )
                } else {
                    let series =
                        serde_json::json!([{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}]);
                    (200, "", series.to_string())
                }
            },
            "says more results exist but gives no more",
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (answer, said) in cases {
        let (study, client) = stand_in_study(answer);
        let err = rt.block_on(client.instances(&study)).unwrap_err();
        assert!(err.to_string().contains(said), "{err} / {said}");
    }
}

/// An instance answered with a part that is not a DICOM object (an error page, JSON) or with
/// no multipart at all is refused, not written as a file for the scan to leave out later.
#[test]
fn an_instance_answered_with_something_else_is_refused() {
    let cases: [(Answer, &str); 2] = [
        (
            |_| {
                (
                    200,
                    "content-type: multipart/related; type=\"application/dicom\"; boundary=b\r\n",
                    "--b\r\ncontent-type: application/json\r\n\r\n{}\r\n--b--\r\n".to_string(),
                )
            },
            "its part is application/json",
        ),
        (
            |_| {
                (
                    200,
                    "content-type: text/html\r\n",
                    "<html>maintenance</html>".to_string(),
                )
            },
            "the answer is text/html, not a DICOM object",
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (answer, said) in cases {
        let (study, client) = stand_in_study(answer);
        let i = overread::cases::dicomweb::InstanceRef {
            series_uid: "1.2.3.4".into(),
            sop_uid: "1.2.3.4.5".into(),
            instance_number: None,
        };
        let dir = tempdir();
        let path = dir.path().join("instance.dcm");
        let err = rt
            .block_on(client.instance_into(&study, &i, &path))
            .unwrap_err();
        assert!(err.to_string().contains(said), "{err} / {said}");
        assert!(!path.exists(), "{said}: a file was left");
    }
}

/// A stand-in's answer for a study of one series (1.2.3.4) of one instance (1.2.3.4.5): the
/// instance list where `path` asks for instances, else the series list.
fn one_instance_or_series(path: &str) -> (u16, &'static str, String) {
    let list = if path.contains("/instances") {
        serde_json::json!([{"00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]}}])
    } else {
        serde_json::json!([{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}])
    };
    (200, "", list.to_string())
}

/// A server that answers 503 with Retry-After is asked again no sooner than it said (the
/// client's own first wait is half a second).
#[test]
fn a_search_is_asked_again_when_the_server_says() {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static ASKED_AT: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    let (study, client) = stand_in_study(|path| {
        if path.contains("/instances") {
            return one_instance_or_series(path);
        }
        let mut asked = ASKED_AT.lock().unwrap();
        asked.push(Instant::now());
        if asked.len() == 1 {
            (503, "retry-after: 2\r\n", "down for a moment".to_string())
        } else {
            one_instance_or_series(path)
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = rt.block_on(client.instances(&study)).unwrap();
    assert_eq!(list.len(), 1);
    let asked = ASKED_AT.lock().unwrap();
    assert!(asked.len() >= 2, "{} searches", asked.len());
    let waited = asked[1] - asked[0];
    assert!(
        waited >= Duration::from_secs(2),
        "asked again after {waited:?}"
    );
}

/// A search answered 503 once (a server busy for a moment) is asked again, and the study's
/// list comes whole: one dropped answer does not fail it.
#[test]
fn a_search_the_server_drops_once_is_asked_again() {
    static ASKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (study, client) = stand_in_study(|path| {
        if path.contains("/instances") {
            one_instance_or_series(path)
        } else if ASKED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            (503, "", "busy".to_string())
        } else {
            one_instance_or_series(path)
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = rt.block_on(client.instances(&study)).unwrap();
    assert_eq!(list.len(), 1);
    // Dropped once, asked again, then the page after it (which brings nothing new).
    assert_eq!(ASKED.load(std::sync::atomic::Ordering::SeqCst), 3);
}
