//! The real `overread-server` binary: init, user add (password on stdin), key add, case create,
//! import (CD-ROM folder with an ineligible study and a non-DICOM file), readiness, and the
//! transport rule (plain HTTP only on loopback, asked for).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

/// The database URL and the object-store folder of one test's server.
struct Ctx {
    db: String,
    store: std::path::PathBuf,
    /// Extra environment (the object store's S3 settings).
    env: Vec<(String, String)>,
}

fn server(ctx: &Ctx, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_overread-server"))
        .arg("--db")
        .arg(&ctx.db)
        .arg("--store")
        .arg(&ctx.store)
        // The runner's own settings do not stand in for what a test names (or leaves out).
        .env_remove("OVERREAD_FAX_DIR")
        .envs(ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `overread-server case create` for a chest case of DOE^J (born 1970-01-01); its id.
fn create_case(ctx: &Ctx, dir: &std::path::Path) -> String {
    let case_json = dir.join("case.json");
    std::fs::write(
        &case_json,
        r#"{"patient":{"name":"DOE^J","id":"M1","birth_date":"1970-01-01","sex":"F"},
            "referral":{"physician":{"name":"Dr R","fax":"+14165550100","institution":null},
                        "clinical_question":"?","document_sha256":null},
            "subspecialty":"chest","priority":"urgent"}"#,
    )
    .unwrap();
    let (ok, out, err) = server(ctx, &["case", "create", case_json.to_str().unwrap()], None);
    assert!(ok, "{err}");
    out.trim().to_string()
}

#[test]
fn the_admin_commands_work_and_the_transport_rule_holds() {
    let dir = tempfile::tempdir().unwrap();
    // A SQLite file, or a fresh PostgreSQL database when DATABASE_URL names a server.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ctx = Ctx {
        db: runtime
            .block_on(case_server::db::scratch_database(dir.path()))
            .unwrap(),
        store: dir.path().join("objects"),
        env: Vec::new(),
    };
    let tls_dir = dir.path().to_str().unwrap();
    let (ok, out, err) = server(&ctx, &["init", "--self-signed", "--tls-dir", tls_dir], None);
    assert!(ok, "{err}");
    assert!(out.contains("server-cert.pem") && dir.path().join("server-key.pem").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the key file is readable by others: {mode:o}"
        );
    }
    let (ok, out, err) = server(
        &ctx,
        &[
            "user",
            "add",
            "rad1",
            "--role",
            "radiologist",
            "--name",
            "Dr One",
            "--subspecialty",
            "chest,neuro",
        ],
        Some("a-long-password\n"),
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = server(
        &ctx,
        &["user", "add", "x", "--role", "surgeon", "--name", "X"],
        Some("a-long-password"),
    );
    assert!(!ok && err.contains("unknown role"), "{err}");
    let (ok, _, err) = server(
        &ctx,
        &["user", "add", "y", "--role", "admin", "--name", "Y"],
        Some("short"),
    );
    assert!(!ok && err.contains("at least 8"), "{err}");

    let key = case_protocol::SigningKey::generate();
    let (ok, out, err) = server(
        &ctx,
        &[
            "key",
            "add",
            "rad1",
            "--public-key",
            &key.verifying_key().to_base64(),
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), key.verifying_key().id().0);
    let (ok, _, err) = server(
        &ctx,
        &["key", "add", "rad1", "--public-key", "bm9wZQ=="],
        None,
    );
    assert!(!ok && err.contains("32 bytes"), "{err}");

    let case_id = create_case(&ctx, dir.path());
    assert!(case_id.starts_with("C-"));
    let (ok, _, err) = server(&ctx, &["case", "status", &case_id, "reading"], None);
    assert!(!ok && err.contains("cannot become reading"), "{err}");
    assert!(
        server(
            &ctx,
            &["case", "assign", &case_id, "--radiologist", "rad1"],
            None
        )
        .0
    );
    // Not ready without its studies.
    let (ok, _, err) = server(&ctx, &["case", "status", &case_id, "ready"], None);
    assert!(!ok && err.contains("no studies yet"), "{err}");
    // Import: a study from today is stored; one older than the rule allows is refused by name
    // and rule, and nothing of it is stored.
    let recent = dir.path().join("cd/recent");
    // Named as CD copies often are: after the patient.
    let old = dir.path().join("cd/DOE^JOHN_19600101");
    let spec = |seed, date: &str| imaging::synth::PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 3,
        seed,
        study_date: date.to_string(),
        ..Default::default()
    };
    imaging::synth::write_series(&spec(7, &imaging::synth::today_yyyymmdd()), &recent).unwrap();
    imaging::synth::write_series(&spec(8, "20190301"), &old).unwrap();
    std::fs::write(dir.path().join("cd/README.TXT"), "not DICOM").unwrap();
    let cd = dir.path().join("cd");
    let (ok, out, err) = server(
        &ctx,
        &["import", cd.to_str().unwrap(), "--case", &case_id],
        None,
    );
    assert!(!ok, "a refused study makes import fail: {out}");
    assert!(
        out.contains("3 instances in 1 series stored (3 new)"),
        "{out}"
    );
    let old_study = out
        .lines()
        .find(|l| l.contains("refused"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(old_study.contains("more than 365 days ago"), "{old_study}");
    // Files are not named unless asked for: their names and folders often name the patient,
    // and this output may end in a log.
    assert!(!out.contains("DOE") && !err.contains("DOE"), "{out}{err}");
    assert!(
        out.contains("skipped <file>: ") && !out.contains("README.TXT"),
        "{out}"
    );
    assert!(old_study.contains("<file>: study"), "{old_study}");
    // Asked for, they are named on standard output (the operator's screen), never on the
    // standard error the log goes to.
    let (ok, named, err) = server(
        &ctx,
        &[
            "import",
            cd.to_str().unwrap(),
            "--case",
            &case_id,
            "--name-files",
        ],
        None,
    );
    assert!(!ok, "{named}");
    assert!(
        named.contains("README.TXT") && named.contains("DOE^JOHN"),
        "the files are named: {named}"
    );
    assert!(!err.contains("DOE") && !err.contains("README"), "{err}");
    // The append-only audit trail, which never carries patient identity, keeps the reason
    // without them.
    let audited = |action: &'static str| -> Vec<String> {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let db = case_server::Db::open(&ctx.db).await.unwrap();
            sqlx::query_scalar("SELECT detail FROM audit WHERE action = $1 ORDER BY id")
                .bind(action)
                .fetch_all(&db.pool)
                .await
                .unwrap()
        })
    };
    // Accounts added from the shell are in the trail, as those added through the API are.
    assert_eq!(audited("user_add"), ["rad1"]);
    let refusals = audited("import_refused");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(
        refusals[0].contains("<file>: study") && refusals[0].contains("more than 365 days ago"),
        "{}",
        refusals[0]
    );
    // Neither the name nor the date of service (an identifier too).
    assert!(!refusals[0].contains("DOE"), "{}", refusals[0]);
    assert!(!refusals[0].contains("20190301"), "{}", refusals[0]);
    // Imported again: nothing new; the old study still refused.
    let (_, out, _) = server(
        &ctx,
        &["import", recent.to_str().unwrap(), "--case", &case_id],
        None,
    );
    assert!(out.contains("stored (0 new)"), "{out}");
    // The rule is configurable: a longer limit takes the old study.
    let (ok, out, err) = server(
        &ctx,
        &[
            "import",
            old.to_str().unwrap(),
            "--case",
            &case_id,
            "--max-study-age-days",
            "100000",
        ],
        None,
    );
    assert!(ok && out.contains("(3 new)"), "{out}{err}");
    assert!(server(&ctx, &["case", "status", &case_id, "ready"], None).0);
    assert!(server(&ctx, &["case", "status", &case_id, "reading"], None).0);
    let (ok, _, err) = server(&ctx, &["case", "status", &case_id, "reported"], None);
    assert!(!ok && err.contains("only with a signed report"), "{err}");

    // Delivery is named: a fax folder, or none.
    let (ok, _, err) = server(&ctx, &["serve", "--insecure-http"], None);
    assert!(!ok && err.contains("--fax-dir"), "{err}");
    let (ok, _, err) = server(
        &ctx,
        &["serve", "--listen", "127.0.0.1:0", "--no-delivery"],
        None,
    );
    assert!(!ok && err.contains("--cert and --key"), "{err}");
    let (ok, _, err) = server(
        &ctx,
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--insecure-http",
            "--no-delivery",
        ],
        None,
    );
    assert!(!ok && err.contains("only on loopback"), "{err}");
    // A server that delivers nothing has no fax folder to name.
    let (ok, _, err) = server(
        &ctx,
        &[
            "serve",
            "--insecure-http",
            "--no-delivery",
            "--fax-dir",
            "fax",
        ],
        None,
    );
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}

/// An S3-compatible server on loopback (moto's, from PyPI; `.ci/run` installs it), stopped
/// when dropped. Absent: skip with a message, except in CI.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    fn start() -> Option<S3Server> {
        let found = Command::new("moto_server").arg("--help").output().is_ok();
        if !found {
            assert!(
                std::env::var("CI").map(|v| v != "true").unwrap_or(true),
                "moto_server must be installed in CI (.ci/run installs moto[server])"
            );
            eprintln!("SKIPPED: no S3-compatible server (pip install 'moto[server]')");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the S3 server did not start");
    }

    /// `curl`'s answer to an unsigned request (the emulator accepts them).
    fn request(&self, method: &str, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sf", "-X", method, &format!("{}{path}", self.endpoint)])
            .output()
            .unwrap();
        assert!(out.status.success(), "{method} {path}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn studies_live_in_s3_compatible_storage_by_url() {
    let Some(s3) = S3Server::start() else { return };
    s3.request("PUT", "/overread-studies");
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ctx = Ctx {
        db: runtime
            .block_on(case_server::db::scratch_database(dir.path()))
            .unwrap(),
        store: "s3://overread-studies/site-a".into(),
        env: [
            ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "overread-test"),
            ("AWS_SECRET_ACCESS_KEY", "overread-test-secret"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    assert!(server(&ctx, &["init"], None).0);
    let case_id = create_case(&ctx, dir.path());
    let study = dir.path().join("study");
    let spec = imaging::synth::PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 3,
        seed: 11,
        ..Default::default()
    };
    imaging::synth::write_series(&spec, &study).unwrap();
    let (ok, out, err) = server(
        &ctx,
        &["import", study.to_str().unwrap(), "--case", &case_id],
        None,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("(3 new)"), "{out}");
    // The objects are in the bucket, under the prefix, by content.
    let listing = s3.request("GET", "/overread-studies?list-type=2&prefix=site-a/");
    let mut keys: Vec<String> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(|k| k.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    keys.sort();
    let mut want: Vec<String> = std::fs::read_dir(&study)
        .unwrap()
        .map(|e| case_server::store::content_key(&std::fs::read(e.unwrap().path()).unwrap()))
        .collect();
    want.sort();
    assert_eq!(keys, want, "{listing}");
    // Read back from S3: the patient copy holds the files byte for byte.
    let zip_path = dir.path().join("copy.zip");
    let export = [
        "export",
        "--case",
        &case_id,
        "-o",
        zip_path.to_str().unwrap(),
    ];
    let (ok, out, err) = server(&ctx, &export, None);
    assert!(ok, "{out}{err}");
    let exported = std::fs::read(&zip_path).unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut got = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        if f.name().unwrap().starts_with("DICOM/") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes).unwrap();
            got.push(case_server::store::content_key(&bytes));
        }
    }
    got.sort();
    assert_eq!(got, want);
    // With the S3 server gone an import fails and says where; nothing is recorded.
    drop(s3);
    let other = dir.path().join("other");
    imaging::synth::write_series(&imaging::synth::PhantomSpec { seed: 12, ..spec }, &other)
        .unwrap();
    let (ok, out, err) = server(
        &ctx,
        &["import", other.to_str().unwrap(), "--case", &case_id],
        None,
    );
    assert!(!ok, "{out}");
    assert!(err.contains("object store"), "{err}");
    let (ok, out, err) = server(&ctx, &export, None);
    assert!(!ok && err.contains("object store"), "{out}{err}");
    // The failed export left the earlier copy whole (it wrote over it in place before), and
    // no partial file beside it.
    assert!(
        std::fs::read(&zip_path).unwrap() == exported,
        "the earlier copy changed"
    );
    let beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}
