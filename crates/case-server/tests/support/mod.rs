//! The real server on 127.0.0.1 (port 0) with a real database and object store, and the
//! helpers the suites share: users, cases, logins, and a small real study to upload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use case_protocol::{
    Author, CaseSummary, NewCase, Patient, Priority, Referral, ReferringPhysician, Report,
    ReportKind, ReportMeasurement, Role, SigningKey,
};
use case_server::api::LoginResponse;
use case_server::{Db, Store};
use reqwest::StatusCode;
use serde_json::json;

pub const PASSWORD: &str = "password-123";

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Db,
    /// Where `db` is: another server's handle opens the same database.
    pub db_url: String,
    pub store: Store,
    pub dir: tempfile::TempDir,
    /// The study uploaded into each case by [`upload_synthetic_study`] (what its reports name).
    pub studies: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

pub async fn start() -> Server {
    start_with(|_| {}).await
}

/// A server whose state (intake rules, upload limit) `configure` may change first.
pub async fn start_with(configure: impl FnOnce(&mut case_server::Server)) -> Server {
    // In a workspace build reqwest may carry rustls without a provider (feature unification
    // with the workstation's client): give it ring, as the workstation does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let url = case_server::db::scratch_database(dir.path()).await.unwrap();
    let db = Db::open(&url).await.unwrap();
    for (id, role, subs) in [
        ("admin", Role::Admin, vec![]),
        ("coord", Role::Coordinator, vec![]),
        (
            "rad1",
            Role::Radiologist,
            vec!["chest".to_string(), "neuro".to_string()],
        ),
        ("rad2", Role::Radiologist, vec!["chest".to_string()]),
        ("qa1", Role::QaReviewer, vec![]),
    ] {
        db.add_user(id, role, &format!("User {id}"), &subs, PASSWORD)
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let store = Store::open(dir.path().join("objects").to_str().unwrap()).unwrap();
    let mut state = case_server::Server::new(db.clone(), store.clone());
    configure(&mut state);
    tokio::spawn(case_server::serve(state, listener));
    Server {
        base,
        http: reqwest::Client::new(),
        db,
        db_url: url,
        store,
        dir,
        studies: Default::default(),
    }
}

impl Server {
    /// A login attempt with `password`, its answer as it comes.
    pub async fn try_login(&self, user: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/login", self.base))
            .json(&json!({"user": user, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, user: &str) -> String {
        let r = self.try_login(user, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<LoginResponse>().await.unwrap().token
    }

    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn report_count(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM reports")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

pub fn new_case(subspecialty: &str) -> NewCase {
    NewCase {
        patient: Patient {
            name: "DOE^JANE".into(),
            id: "MRN-555".into(),
            birth_date: "1970-01-01".into(),
            sex: "F".into(),
        },
        referral: Referral {
            physician: ReferringPhysician {
                name: "Dr Referrer".into(),
                fax: "+14165550100".into(),
                institution: None,
            },
            clinical_question: "Nodule?".into(),
            document_sha256: None,
        },
        subspecialty: subspecialty.into(),
        priority: Priority::Routine,
    }
}

/// A chest case created by `token` (a coordinator's), not assigned yet.
pub async fn create_case(s: &Server, token: &str) -> CaseSummary {
    let r = s
        .post(
            token,
            "/cases",
            &serde_json::to_value(new_case("chest")).unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

/// A case created by the coordinator, assigned to `rad`, ready, and opened (reading).
pub async fn case_in_reading(s: &Server, rad: &str) -> String {
    let coord = s.login("coord").await;
    let case = create_case(s, &coord).await;
    let r = s
        .post(
            &coord,
            &format!("/cases/{}/assign", case.id),
            &json!({"radiologist": rad}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = upload_synthetic_study(s, &coord, &case.id).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = s
        .post(
            &coord,
            &format!("/cases/{}/status", case.id),
            &json!({"status": "ready"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let ready: CaseSummary = r.json().await.unwrap();
    assert!(ready.due_at.is_some(), "a ready case has a due date");
    let rad_token = s.login(rad).await;
    let r = s
        .post(
            &rad_token,
            &format!("/cases/{}/status", case.id),
            &json!({"status": "reading"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    case.id
}

pub async fn register_key(s: &Server, token: &str) -> SigningKey {
    let key = SigningKey::generate();
    let r = s
        .post(
            token,
            "/keys",
            &json!({"public_key": key.verifying_key().to_base64()}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    key
}

/// A `multipart/related; type="application/dicom"` body of `files`, and its Content-Type.
pub fn multipart_of(files: &[Vec<u8>]) -> (Vec<u8>, String) {
    let boundary = "test-boundary-7f3a";
    let mut body = Vec::new();
    for f in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(f);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        body,
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
    )
}

/// The files of a folder, sorted by name.
pub fn files_of(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Write a small synthetic CT (imaging::synth, dated today; `seed` makes its UIDs) and return
/// its folder.
pub fn synthetic_study(parent: &std::path::Path, seed: u64) -> std::path::PathBuf {
    synthetic_study_uid(parent, seed).0
}

/// [`synthetic_study`] and its Study Instance UID.
pub fn synthetic_study_uid(parent: &std::path::Path, seed: u64) -> (std::path::PathBuf, String) {
    let folder = parent.join(format!("synth-{seed}"));
    let spec = imaging::synth::PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 4,
        pixel_mm: 10.0,
        spacing_mm: 5.0,
        seed,
        ..Default::default()
    };
    let out = imaging::synth::write_series(&spec, &folder).unwrap();
    (folder, out.study_instance_uid)
}

static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);

/// STOW-RS `files` to `path` (a `.../dicomweb/studies[/{uid}]` URL path) as `token`.
pub async fn stow(s: &Server, token: &str, path: &str, files: &[Vec<u8>]) -> reqwest::Response {
    let (body, content_type) = multipart_of(files);
    s.http
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// STOW-RS a new small synthetic study into a case (as coordinator `token`).
pub async fn upload_synthetic_study(s: &Server, token: &str, case_id: &str) -> reqwest::Response {
    let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (folder, uid) = synthetic_study_uid(s.dir.path(), seed);
    s.studies.lock().unwrap().insert(case_id.to_string(), uid);
    let path = format!("/cases/{case_id}/dicomweb/studies");
    stow(s, token, &path, &files_of(&folder)).await
}

/// A report by `author` (display name "User AUTHOR", as the test users are named), signed
/// now, naming the study uploaded into the case.
pub fn report(
    s: &Server,
    case_id: &str,
    author: &str,
    key: &SigningKey,
    kind: ReportKind,
) -> Report {
    let study = s.studies.lock().unwrap().get(case_id).cloned();
    Report {
        case_id: case_id.into(),
        kind,
        author: Author {
            user_id: author.into(),
            display_name: format!("User {author}"),
        },
        key_id: key.verifying_key().id().0,
        signed_at: case_protocol::rfc3339_utc(case_protocol::unix_now()),
        study_instance_uids: study.into_iter().collect(),
        findings: "14.2 mm nodule in the right lower lobe.".into(),
        impression: "Indeterminate nodule; CT in 3 months.".into(),
        measurements: vec![ReportMeasurement {
            label: "RLL nodule".into(),
            kind: "length".into(),
            value: 14.26,
            unit: "mm".into(),
            series_instance_uid: None,
            frame_of_reference_uid: None,
            points_mm: vec![[-70.0, -20.0, 0.0], [-55.8, -20.0, 0.0]],
        }],
    }
}

/// A grey gradient PNG with a bright disc, as `overread render` would write a key image.
pub fn key_image_png() -> Vec<u8> {
    key_image_png_marked(250)
}

/// A key image whose round mark has the shade `mark` (another shade, other bytes).
pub fn key_image_png_marked(mark: u8) -> Vec<u8> {
    let (w, h) = (96u32, 64u32);
    let pixels: Vec<u8> = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| {
                let (dx, dy) = (x as i32 - 48, y as i32 - 32);
                if dx * dx + dy * dy < 144 {
                    mark
                } else {
                    (x * 2) as u8
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}
