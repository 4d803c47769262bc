//! The workstation's case-server client against the real server (in this process, on
//! 127.0.0.1, real SQLite): the outbox keeps a signed report until its receipt is stored,
//! survives an unreachable server, never makes a duplicate; the CLI signs with a sealed key
//! and submits over TLS.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use case_protocol::{
    Author, CaseStatus, NewCase, Patient, Priority, Referral, ReferringPhysician, Report,
    ReportKind, SigningKey, sign_report,
};
use case_server::Db;
use overread::cases::{
    Backoff, CaseClient, Delivery, EncryptedKey, Outbox, OutboxStatus, OutboxWorker,
};

use crate::support::tempdir;

const PASSWORD: &str = "password-123";

/// A server database with rad1 (chest) and a chest case assigned to rad1, being read.
async fn server_db(dir: &Path) -> (Db, String) {
    let url = case_server::db::scratch_database(dir).await.unwrap();
    let db = Db::open(&url).await.unwrap();
    db.add_user(
        "rad1",
        case_protocol::Role::Radiologist,
        "Dr One",
        &["chest".to_string()],
        PASSWORD,
    )
    .await
    .unwrap();
    let case = db.create_case(&chest_case()).await.unwrap();
    db.assign(&case.id, "rad1").await.unwrap();
    case_server::intake::store_synthetic_study(&db, &object_store(dir), &case.id, 1)
        .await
        .unwrap();
    db.set_status(&case.id, CaseStatus::Ready).await.unwrap();
    db.set_status(&case.id, CaseStatus::Reading).await.unwrap();
    (db, case.id)
}

/// The object store of a test's server (`DIR/objects`).
fn object_store(dir: &Path) -> case_server::Store {
    case_server::Store::open(dir.join("objects").to_str().unwrap()).unwrap()
}

/// The server state for `db` with the test's object store.
fn server_state(db: &Db, dir: &Path) -> case_server::Server {
    case_server::Server::new(db.clone(), object_store(dir))
}

/// A final report by rad1 on the case's study (as stored by the server), signed now.
async fn report(db: &Db, case_id: &str, key_id: &str) -> Report {
    let study: String = sqlx::query_scalar("SELECT study_uid FROM study_cases WHERE case_id = $1")
        .bind(case_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    report_on(case_id, key_id, &study)
}

/// A final report by rad1 on `study`, signed now.
fn report_on(case_id: &str, key_id: &str, study: &str) -> Report {
    Report {
        case_id: case_id.into(),
        kind: ReportKind::Final,
        author: Author {
            user_id: "rad1".into(),
            display_name: "Dr One".into(),
        },
        key_id: key_id.into(),
        signed_at: case_protocol::rfc3339_utc(case_protocol::unix_now()),
        study_instance_uids: vec![study.to_string()],
        findings: "No nodule.".into(),
        impression: "Normal chest CT.".into(),
        measurements: vec![],
    }
}

/// A signing key registered for rad1 on the server.
async fn registered_key(db: &Db) -> SigningKey {
    let key = SigningKey::generate();
    db.add_key("rad1", &key.verifying_key().to_base64())
        .await
        .unwrap();
    key
}

/// A client of a port nothing listens on (the server is away).
async fn offline_client() -> CaseClient {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    CaseClient::new(&format!("http://{dead_addr}"), None)
        .unwrap()
        .with_user("rad1")
}

/// The server on loopback, and rad1 logged in to it.
async fn serve_and_log_in(db: &Db, dir: &Path) -> CaseClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(case_server::serve(server_state(db, dir), listener));
    let mut client = CaseClient::new(&base, None).unwrap();
    client.login("rad1", PASSWORD).await.unwrap();
    client
}

async fn report_count(db: &Db) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM reports")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_outbox_keeps_a_report_until_receipted_and_never_duplicates() {
    let dir = tempdir();
    let (db, case_id) = server_db(dir.path()).await;
    let key = registered_key(&db).await;
    let signed = sign_report(
        report(&db, &case_id, &key.verifying_key().id().0).await,
        &key,
    )
    .unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let hash = outbox.enqueue(&signed).unwrap();
    assert_eq!(outbox.pending(), vec![hash.clone()]);
    // Signed reports hold findings and impressions: the outbox is its owner's alone, as the
    // drafts are (folders 0700, files 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for folder in ["", "pending", "receipts", "refused"] {
            assert_eq!(mode(&outbox.dir().join(folder)), 0o700, "{folder}");
        }
        assert_eq!(
            mode(&outbox.dir().join("pending").join(format!("{hash}.json"))),
            0o600
        );
    }

    // No server yet: the report stays pending after the retries.
    let offline = offline_client().await;
    let results = outbox.deliver(&offline, 2, Duration::from_millis(10)).await;
    assert!(
        matches!(&results[..], [Delivery::Pending { .. }]),
        "{results:?}"
    );
    assert_eq!(outbox.pending(), vec![hash.clone()]);

    // The server comes up.
    let client = serve_and_log_in(&db, dir.path()).await;

    // The server stored it but the answer was lost (sent outside the outbox here): the
    // outbox's resend gets the original receipt, and nothing is stored twice.
    let first = client.submit(&signed).await.unwrap();
    assert!(!first.duplicate);
    let results = outbox.deliver(&client, 3, Duration::from_millis(10)).await;
    let [Delivery::Delivered(receipt)] = &results[..] else {
        panic!("{results:?}")
    };
    assert!(receipt.duplicate);
    assert_eq!(receipt.received_at, first.received_at);
    assert!(outbox.pending().is_empty());
    assert_eq!(
        outbox.receipt(&hash).map(|r| r.report_hash),
        Some(hash.clone())
    );
    assert_eq!(report_count(&db).await, 1);
    // Queueing a receipted report again is a no-op.
    outbox.enqueue(&signed).unwrap();
    assert!(outbox.pending().is_empty());

    // A report the server refuses for good moves aside with the reason.
    let mut tampered = signed.clone();
    tampered.report.impression = "Changed.".into();
    let bad = outbox.enqueue(&tampered).unwrap();
    let results = outbox.deliver(&client, 3, Duration::from_millis(10)).await;
    assert!(
        matches!(&results[..], [Delivery::Refused { status: 422, .. }]),
        "{results:?}"
    );
    assert!(
        outbox
            .dir()
            .join("refused")
            .join(format!("{bad}.json"))
            .exists()
    );
    assert!(outbox.pending().is_empty());
    assert_eq!(report_count(&db).await, 1);
    // Listed with the server's reason until a draft takes it back; then kept aside.
    let refused = outbox.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].hash.as_str(), &refused[0].signed),
        (bad.as_str(), &tampered)
    );
    assert!(
        refused[0].reason.starts_with("422: "),
        "{}",
        refused[0].reason
    );
    outbox.taken_back(&bad).unwrap();
    assert!(outbox.refused().is_empty());
    let kept = outbox.dir().join("refused").join("taken-back");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(outbox.dir().join("receipts").join(format!("{hash}.json"))),
            0o600
        );
        assert_eq!(mode(kept.join(format!("{bad}.error.txt"))), 0o600);
    }
    assert!(
        kept.join(format!("{bad}.json")).exists() && kept.join(format!("{bad}.error.txt")).exists()
    );
}

/// A final report and addenda to it, all signed while the server was away, go in one round:
/// the final report first, then the addenda (sent together, an addendum could reach the
/// server before the report it amends and be refused for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addenda_wait_for_the_report_they_amend() {
    let dir = tempdir();
    let (db, case_id) = server_db(dir.path()).await;
    let key = registered_key(&db).await;
    let key_id = key.verifying_key().id().0;
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let final_report = sign_report(report(&db, &case_id, &key_id).await, &key).unwrap();
    let final_hash = outbox.enqueue(&final_report).unwrap();
    for n in 0..4 {
        let mut addendum = report(&db, &case_id, &key_id).await;
        addendum.kind = ReportKind::Addendum {
            amends: final_hash.clone(),
        };
        addendum.findings = format!("Addendum {n}: the nodule is unchanged.");
        outbox
            .enqueue(&sign_report(addendum, &key).unwrap())
            .unwrap();
    }

    // Offline: the addenda say what they wait for.
    let offline = offline_client().await;
    let results = outbox.deliver(&offline, 1, Duration::from_millis(10)).await;
    let waiting = results
        .iter()
        .filter(|d| matches!(d, Delivery::Pending { error, .. } if error.contains("amends")))
        .count();
    assert_eq!(waiting, 4, "{results:?}");

    let client = serve_and_log_in(&db, dir.path()).await;
    let results = outbox.deliver(&client, 3, Duration::from_millis(10)).await;
    assert_eq!(results.len(), 5);
    assert!(
        results.iter().all(|d| matches!(d, Delivery::Delivered(_))),
        "{results:?}"
    );
    assert!(outbox.pending().is_empty());
    assert_eq!(report_count(&db).await, 5);
}

/// Two final reports of one case in the outbox (a restart or a crash left the panel unaware
/// of the first): the first signed goes first, the other waits its round, and is then
/// refused by the server as the case's second final (listed, its text to be taken back into
/// an addendum). Sent together, which became the report was chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_finals_of_one_case_go_in_the_order_signed() {
    let dir = tempdir();
    let (db, case_id) = server_db(dir.path()).await;
    let key = registered_key(&db).await;
    let key_id = key.verifying_key().id().0;
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    // Signed a second apart (after the key's registration, not ahead of the server's clock);
    // the later one enqueued first (hashes may sort either way).
    let mut first_signed = report(&db, &case_id, &key_id).await;
    first_signed.findings = "Signed first.".into();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut second_signed = report(&db, &case_id, &key_id).await;
    second_signed.findings = "Signed second.".into();
    assert!(second_signed.signed_at > first_signed.signed_at);
    let second = outbox
        .enqueue(&sign_report(second_signed, &key).unwrap())
        .unwrap();
    let first = outbox
        .enqueue(&sign_report(first_signed, &key).unwrap())
        .unwrap();
    let client = serve_and_log_in(&db, dir.path()).await;
    let results = outbox.deliver(&client, 3, Duration::from_millis(10)).await;
    let of = |results: &[Delivery], hash: &str| {
        results
            .iter()
            .find(|d| match d {
                Delivery::Delivered(r) => r.report_hash == hash,
                Delivery::Pending { report_hash, .. } | Delivery::Refused { report_hash, .. } => {
                    report_hash == hash
                }
            })
            .cloned()
            .unwrap()
    };
    assert!(
        matches!(of(&results, &first), Delivery::Delivered(_)),
        "{results:?}"
    );
    assert!(
        matches!(of(&results, &second), Delivery::Pending { ref error, .. } if error.contains("goes first")),
        "{results:?}"
    );
    let results = outbox.deliver(&client, 3, Duration::from_millis(10)).await;
    assert!(
        matches!(of(&results, &second), Delivery::Refused { .. }),
        "{results:?}"
    );
    assert_eq!(report_count(&db).await, 1);
    let stored: String = sqlx::query_scalar("SELECT report_hash FROM reports")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, first, "the first signed is the case's report");
    assert_eq!(outbox.refused().len(), 1);
}

/// The CLI: a key sealed under a passphrase, a report signed with it, submitted over TLS to a
/// server with a self-signed certificate, receipted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_with_a_sealed_key_and_submits_over_tls() {
    let dir = tempdir();
    let (db, case_id) = server_db(dir.path()).await;
    let (cert, key_pem) =
        case_server::tls::write_self_signed(dir.path(), &["localhost".to_string()]).unwrap();
    let config = case_server::tls::server_config(&cert, &key_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(case_server::serve_tls(
        server_state(&db, dir.path()),
        listener,
        config,
    ));

    let key_file = dir.path().join("rad1.key");
    let run = |args: Vec<String>| {
        let out = Command::new(env!("CARGO_BIN_EXE_overread"))
            .args(&args)
            .env("OVERREAD_KEY_PASSPHRASE", "a long passphrase")
            .env("OVERREAD_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(vec![
        "key".into(),
        "new".into(),
        "-o".into(),
        key_file.display().to_string(),
    ]);
    assert!(ok, "{err}");
    let sealed = EncryptedKey::read(&key_file).unwrap();
    assert!(out.contains(&sealed.key_id));
    assert!(
        !std::fs::read_to_string(&key_file)
            .unwrap()
            .contains("secret")
    );
    db.add_key("rad1", &sealed.public_key).await.unwrap();

    // A key image rendered by `overread render` (the CPU reference renderer) is attached to
    // the case for the report PDF.
    let study = dir.path().join("study");
    let spec = imaging::synth::PhantomSpec {
        columns: 64,
        rows: 64,
        slices: 8,
        ..Default::default()
    };
    imaging::synth::write_series(&spec, &study).unwrap();
    let png = dir.path().join("key.png");
    let (ok, _, err) = run(vec![
        "render".into(),
        study.display().to_string(),
        "--cpu".into(),
        "--preset".into(),
        "lung".into(),
        "-o".into(),
        png.display().to_string(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(vec![
            "report".into(),
            "key-image".into(),
            png.display().to_string(),
            "--case".into(),
            case_id.clone(),
            "--caption".into(),
            "Nodule, lung window".into(),
            "--server".into(),
            format!("https://localhost:{port}"),
            "--ca".into(),
            cert.display().to_string(),
            "--user".into(),
            "rad1".into(),
        ])
    });
    assert!(ok, "{out}{err}");
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT object_key, caption FROM key_images WHERE case_id = $1")
            .bind(&case_id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let png_sha = case_server::store::content_key(&std::fs::read(&png).unwrap());
    assert_eq!(stored, [(png_sha, "Nodule, lung window".to_string())]);

    let draft = dir.path().join("report.json");
    std::fs::write(
        &draft,
        serde_json::to_string(&report(&db, &case_id, "").await).unwrap(),
    )
    .unwrap();
    let signed_file = dir.path().join("signed.json");
    // `report sign` of the draft with the sealed key into `out` (and `more`).
    let sign = |out: &Path, more: &[&str]| {
        let mut args: Vec<String> = vec![
            "report".into(),
            "sign".into(),
            draft.display().to_string(),
            "--key".into(),
            key_file.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ];
        args.extend(more.iter().map(|a| a.to_string()));
        run(args)
    };
    let (ok, out, err) = sign(&signed_file, &["--show"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("OVERREAD-REPORT/1") && out.contains("impression 16:Normal chest CT."),
        "{out}"
    );
    // Signing again into the same file writes nothing over the signed report; a draft
    // whose time is not now (a template reused) is signed now, and said.
    let first_signed = std::fs::read(&signed_file).unwrap();
    let mut stale = report(&db, &case_id, "").await;
    stale.signed_at = "2020-01-01T00:00:00Z".into();
    std::fs::write(&draft, serde_json::to_string(&stale).unwrap()).unwrap();
    let (ok, _, err) = sign(&signed_file, &[]);
    assert!(!ok && err.contains("never written over"), "{err}");
    assert_eq!(std::fs::read(&signed_file).unwrap(), first_signed);
    let restamped = dir.path().join("restamped.json");
    let (ok, _, err) = sign(&restamped, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("is not now"), "{err}");
    let restamped: case_protocol::SignedReport =
        serde_json::from_slice(&std::fs::read(&restamped).unwrap()).unwrap();
    let at = case_protocol::parse_rfc3339_utc(&restamped.report.signed_at).unwrap();
    assert!(
        (at - case_protocol::unix_now()).abs() < 60,
        "{}",
        restamped.report.signed_at
    );

    let outbox_dir = dir.path().join("outbox");
    let submit = |run: &dyn Fn(Vec<String>) -> (bool, String, String)| {
        run(vec![
            "report".into(),
            "submit".into(),
            signed_file.display().to_string(),
            "--server".into(),
            format!("https://localhost:{port}"),
            "--ca".into(),
            cert.display().to_string(),
            "--user".into(),
            "rad1".into(),
            "--outbox".into(),
            outbox_dir.display().to_string(),
        ])
    };
    let (ok, out, err) = tokio::task::block_in_place(|| submit(&run));
    assert!(ok, "{out}{err}");
    assert!(out.contains("receipt"), "{out}");
    assert_eq!(report_count(&db).await, 1);
    // Submitting again: already receipted, nothing new stored.
    let (ok, _, err) = tokio::task::block_in_place(|| submit(&run));
    assert!(ok, "{err}");
    assert_eq!(report_count(&db).await, 1);

    // Without the CA the self-signed server is not trusted; the report stays queued.
    let other = dir.path().join("signed2.json");
    let mut second = serde_json::from_str::<case_protocol::SignedReport>(
        &std::fs::read_to_string(&signed_file).unwrap(),
    )
    .unwrap();
    second.report.findings = "Second.".into();
    std::fs::write(&other, serde_json::to_string(&second).unwrap()).unwrap();
    let (ok, _, err) = tokio::task::block_in_place(|| {
        run(vec![
            "report".into(),
            "submit".into(),
            other.display().to_string(),
            "--server".into(),
            format!("https://localhost:{port}"),
            "--user".into(),
            "rad1".into(),
            "--outbox".into(),
            outbox_dir.display().to_string(),
            "--attempts".into(),
            "1".into(),
        ])
    });
    assert!(!ok);
    assert!(err.contains("stay in"), "{err}");
    assert_eq!(Outbox::open(&outbox_dir).unwrap().pending().len(), 1);
}

fn chest_case() -> NewCase {
    NewCase {
        patient: Patient {
            name: "DOE^J".into(),
            id: "M1".into(),
            birth_date: "1970-01-01".into(),
            sex: "F".into(),
        },
        referral: Referral {
            physician: ReferringPhysician {
                name: "Dr R".into(),
                fax: "+14165550100".into(),
                institution: None,
            },
            clinical_question: "?".into(),
            document_sha256: None,
        },
        subspecialty: "chest".into(),
        priority: Priority::Routine,
    }
}

/// Wait (up to 30 s) until the worker's status satisfies `done`.
async fn wait_for(worker: &OutboxWorker, what: &str, done: impl Fn(&OutboxStatus) -> bool) {
    let start = std::time::Instant::now();
    loop {
        let status = worker.status();
        if done(&status) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "waited 30 s for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The app's background sender: it keeps retrying (with backoff) while the server is away,
/// takes up reports a previous run of the app left pending, delivers when the server comes
/// back without being asked, and waits for a new login instead of setting a report aside when
/// its token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sender_retries_waits_for_login_and_survives_a_restart() {
    let dir = tempdir();
    let (db, case_id) = server_db(dir.path()).await;
    let key = registered_key(&db).await;
    let signed = sign_report(
        report(&db, &case_id, &key.verifying_key().id().0).await,
        &key,
    )
    .unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let hash = outbox.enqueue(&signed).unwrap();

    // A port with nothing on it (yet).
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let base = format!("http://{addr}");
    let backoff = Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(200),
        idle: Duration::from_secs(60),
    };

    // First run of the app: the server is away; the worker retries and keeps the report.
    let offline = CaseClient::new(&base, None)
        .unwrap()
        .with_token("not-a-token".into())
        .with_user("rad1");
    let worker = OutboxWorker::spawn(outbox.clone(), offline.clone(), backoff).unwrap();
    wait_for(&worker, "three failed rounds", |s| s.rounds >= 3).await;
    let status = worker.status();
    assert_eq!(status.pending, 1);
    assert!(status.delivered.is_empty() && status.refused.is_empty());
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("could not be reached")),
        "{status:?}"
    );
    drop(worker); // the app closes

    // Second run: the report from the first run is still pending; the server comes back on
    // its own address meanwhile and the worker reaches it by its own retry.
    let worker = OutboxWorker::spawn(outbox.clone(), offline, backoff).unwrap();
    wait_for(&worker, "a failed round", |s| s.rounds >= 1).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(case_server::serve(server_state(&db, dir.path()), listener));
    // Its token is refused: the report waits for a login, it is not set aside.
    wait_for(&worker, "the login to be refused", |s| s.needs_login).await;
    let status = worker.status();
    assert_eq!(status.pending, 1, "{status:?}");
    assert!(status.refused.is_empty(), "{status:?}");
    assert_eq!(outbox.pending(), vec![hash.clone()]);
    assert_eq!(report_count(&db).await, 0);

    let mut client = CaseClient::new(&base, None).unwrap();
    client.login("rad1", PASSWORD).await.unwrap();
    worker.set_client(client);
    wait_for(&worker, "the delivery", |s| s.pending == 0).await;
    let status = worker.status();
    assert_eq!(
        status
            .delivered
            .iter()
            .map(|r| r.report_hash.as_str())
            .collect::<Vec<_>>(),
        vec![hash.as_str()]
    );
    assert!(!status.needs_login && status.refused.is_empty());
    assert_eq!(outbox.receipt(&hash).map(|r| r.report_hash), Some(hash));
    assert_eq!(report_count(&db).await, 1);
}

/// Not a test: the case server process of the SIGKILL test below, run by it as a child
/// process of this test binary (`case_server::serve`, the code `overread-server serve` runs,
/// on the database named by `OVERREAD_TEST_SERVER_DB`). It prints its address and serves
/// until killed.
#[test]
#[ignore = "run as a child process by the SIGKILL test"]
fn server_process() {
    let Ok(url) = std::env::var("OVERREAD_TEST_SERVER_DB") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let db = Db::open(&url).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("LISTENING {}", listener.local_addr().unwrap());
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        let store = std::env::var("OVERREAD_TEST_SERVER_STORE").unwrap();
        let store = case_server::Store::open(&store).unwrap();
        case_server::serve(case_server::Server::new(db, store), listener)
            .await
            .unwrap();
    });
}

/// A case server in a process of its own, killed with SIGKILL when dropped.
struct ServerProcess {
    child: std::process::Child,
    base: String,
}

impl ServerProcess {
    fn start(db_url: &str, store: &Path) -> ServerProcess {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "cases::server_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("OVERREAD_TEST_SERVER_DB", db_url)
            .env("OVERREAD_TEST_SERVER_STORE", store)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server process ended before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("LISTENING ") {
                break format!("http://{addr}");
            }
        };
        ServerProcess { child, base }
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server is killed (SIGKILL) while 100 signed reports are being submitted at once. After
/// a restart on the same database: every report the outbox holds a receipt for is stored, the
/// outbox delivers the rest, and no report is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_100_submissions_loses_no_receipted_report_and_stores_none_twice() {
    // The kill must land while submissions are in flight; the server commits them in groups,
    // so a whole round can finish between two polls. Such a round proves nothing and is run
    // again (it has never needed more than two).
    for _ in 0..5 {
        if kill_during_submissions().await {
            return;
        }
    }
    panic!("in 5 rounds the kill never landed while submissions were in flight");
}

/// One round of the SIGKILL test; false when every submission finished before the kill.
async fn kill_during_submissions() -> bool {
    const N: usize = 100;
    let dir = tempdir();
    let url = case_server::db::scratch_database(dir.path()).await.unwrap();
    let db = Db::open(&url).await.unwrap();
    db.add_user(
        "rad1",
        case_protocol::Role::Radiologist,
        "Dr One",
        &["chest".to_string()],
        PASSWORD,
    )
    .await
    .unwrap();
    let key = SigningKey::generate();
    db.add_key("rad1", &key.verifying_key().to_base64())
        .await
        .unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let store = object_store(dir.path());
    for seed in 1..=N as u64 {
        let case = db.create_case(&chest_case()).await.unwrap();
        db.assign(&case.id, "rad1").await.unwrap();
        case_server::intake::store_synthetic_study(&db, &store, &case.id, seed)
            .await
            .unwrap();
        db.set_status(&case.id, CaseStatus::Ready).await.unwrap();
        db.set_status(&case.id, CaseStatus::Reading).await.unwrap();
        let signed = sign_report(
            report(&db, &case.id, &key.verifying_key().id().0).await,
            &key,
        )
        .unwrap();
        outbox.enqueue(&signed).unwrap();
    }
    assert_eq!(outbox.pending().len(), N);

    let mut server = ServerProcess::start(&url, &dir.path().join("objects"));
    let mut client = CaseClient::new(&server.base, None).unwrap();
    client.login("rad1", PASSWORD).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for hash in outbox.pending() {
        let (outbox, client) = (outbox.clone(), client.clone());
        tasks.spawn(async move { outbox.deliver_one(&client, &hash, 1, Duration::ZERO).await });
    }
    // Kill it at the moment the database holds reports whose receipts the outbox has not yet
    // got (answers in flight: the case a lost answer makes), or else soon after the first
    // receipt, with most submissions still in flight.
    let receipts = |outbox: &Outbox| {
        std::fs::read_dir(outbox.dir().join("receipts"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .count()
    };
    let start = std::time::Instant::now();
    let mut polls_after_first = 0;
    loop {
        let got = receipts(&outbox);
        let stored = report_count(&db).await as usize;
        if stored > got && stored < N {
            break;
        }
        if got >= 1 {
            polls_after_first += 1;
            if polls_after_first > 20 {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no receipts");
    }
    server.kill();
    let mut delivered = 0;
    let mut pending = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Delivery::Delivered(_) => delivered += 1,
            Delivery::Pending { .. } => pending += 1,
            refused => panic!("refused: {refused:?}"),
        }
    }
    assert_eq!(delivered + pending, N);
    if pending == 0 {
        eprintln!("every submission finished before the kill: running the round again");
        return false;
    }
    assert_eq!(outbox.pending().len(), pending);

    // Every receipted report is in the database (the server answered only after commit).
    let receipted: Vec<String> = std::fs::read_dir(outbox.dir().join("receipts"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    assert_eq!(receipted.len(), delivered);
    for hash in &receipted {
        let stored = sqlx::query("SELECT 1 FROM reports WHERE report_hash = $1")
            .bind(hash)
            .fetch_optional(&db.pool)
            .await
            .unwrap();
        assert!(stored.is_some(), "receipted report {hash} is not stored");
    }
    let stored_at_kill = report_count(&db).await;

    // Restart on the same database; the outbox delivers the rest.
    let server = ServerProcess::start(&url, &dir.path().join("objects"));
    let mut client = CaseClient::new(&server.base, None).unwrap();
    client.login("rad1", PASSWORD).await.unwrap();
    let results = outbox.deliver(&client, 3, Duration::from_millis(50)).await;
    assert_eq!(results.len(), pending);
    let mut duplicates = 0;
    for r in &results {
        let Delivery::Delivered(receipt) = r else {
            panic!("not delivered after the restart: {r:?}")
        };
        duplicates += usize::from(receipt.duplicate);
    }
    // Reports stored before the kill whose answers were lost come back as duplicates with
    // their original receipts; nothing else does.
    assert_eq!(
        duplicates as i64,
        stored_at_kill - delivered as i64,
        "stored at the kill: {stored_at_kill}, receipted: {delivered}"
    );
    assert!(outbox.pending().is_empty());
    assert_eq!(receipts(&outbox), N);
    assert_eq!(report_count(&db).await, N as i64);
    let distinct_cases: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT case_id) FROM reports WHERE kind = 'final'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(distinct_cases, N as i64);
    let reported: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases WHERE status = 'reported'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(reported, N as i64);
    let submits: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE action = 'report_submit'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(submits, N as i64, "one audit row per stored report");
    eprintln!(
        "SIGKILL after {delivered} receipts; {stored_at_kill} stored at the kill; \
         {pending} delivered after the restart ({duplicates} of them lost answers)"
    );
    true
}

/// One workstation, two radiologists: with rad1 signed in, a report rad2 signed stays in the
/// outbox, said, for rad2's next sign-in (sent with rad1's login the server refused it, and the
/// refusal set it aside for good).
#[tokio::test]
async fn the_outbox_sends_a_report_only_with_its_authors_login() {
    let dir = tempdir();
    let (db, case_id) = server_db(dir.path()).await;
    let key = registered_key(&db).await;
    let mut by_rad2 = report(&db, &case_id, &key.verifying_key().id().0).await;
    by_rad2.author.user_id = "rad2".into();
    let signed = sign_report(by_rad2, &key).unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let hash = outbox.enqueue(&signed).unwrap();
    let client = serve_and_log_in(&db, dir.path()).await;
    assert_eq!(client.user(), Some("rad1"));
    let results = outbox.deliver(&client, 1, Duration::from_millis(10)).await;
    let [Delivery::Pending { error, .. }] = &results[..] else {
        panic!("{results:?}")
    };
    assert!(error.contains("signed by rad2"), "{error}");
    assert_eq!(outbox.pending(), vec![hash]);
    assert_eq!(report_count(&db).await, 0);
}

/// An outbox in `dir` holding one signed final report of case C-1: the outbox and its hash.
fn outbox_with_one_report(dir: &Path) -> (Outbox, String) {
    let key = SigningKey::generate();
    let signed = sign_report(report_on("C-1", &key.verifying_key().id().0, "1.2.3"), &key).unwrap();
    let outbox = Outbox::open(&dir.join("outbox")).unwrap();
    let hash = outbox.enqueue(&signed).unwrap();
    (outbox, hash)
}

/// A stand-in for the case server (or for something in front of it) on loopback, giving every
/// request the same answer: its base URL and how many requests it has had.
async fn stand_in(
    status: &'static str,
    content_type: &'static str,
    body: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut request = vec![0u8; 1 << 16];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    (base, requests)
}

/// A refusal is the case server's own answer: a 404 or 403 page from something in between (a
/// proxy mid-deploy, a wrong path in the settings; here a stand-in on loopback) keeps the
/// report pending, to be tried again, where taking it for a refusal would set it aside for
/// good. The case server's own refusal (JSON) still refuses.
#[tokio::test]
async fn only_the_case_servers_own_refusal_sets_a_report_aside() {
    let dir = tempdir();
    let (outbox, hash) = outbox_with_one_report(dir.path());
    for (status, content_type, body, refused) in [
        (
            "404 Not Found",
            "text/html",
            "<html>Not Found</html>",
            false,
        ),
        ("403 Forbidden", "text/plain", "denied by proxy", false),
        (
            "409 Conflict",
            "application/json",
            r#"{"error":"case C-1 is delivered"}"#,
            true,
        ),
    ] {
        let (base, requests) = stand_in(status, content_type, body.to_string()).await;
        let client = CaseClient::new(&base, None).unwrap().with_user("rad1");
        let results = outbox.deliver(&client, 1, Duration::from_millis(10)).await;
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
        if refused {
            assert!(
                matches!(results.as_slice(), [Delivery::Refused { status: 409, .. }]),
                "{results:?}"
            );
            assert!(outbox.pending().is_empty());
            assert_eq!(outbox.refused().len(), 1);
        } else {
            assert!(
                matches!(
                    results.as_slice(),
                    [Delivery::Pending { error, .. }] if error.contains("not the case server's")
                ),
                "{status}: {results:?}"
            );
            assert_eq!(outbox.pending(), vec![hash.clone()], "{status}");
            assert!(outbox.refused().is_empty(), "{status}");
        }
    }
}

/// A pending file that does not parse (written whole or not at all, so damaged on disk) is
/// set aside in `damaged/`, kept byte for byte and said, not tried again every round; a
/// refusal the outbox cannot set aside (its `refused` folder unusable) leaves the report
/// pending, not given back as refused while it stays in `pending/`.
#[tokio::test]
async fn a_damaged_pending_file_is_set_aside_and_an_unrecorded_refusal_stays_pending() {
    let dir = tempdir();
    let (outbox, hash) = outbox_with_one_report(dir.path());
    let pending = outbox.dir().join("pending").join(format!("{hash}.json"));
    let damaged_bytes = b"{\"report\": {\"case_id\": \"C-1\", \"findi".to_vec();
    std::fs::write(&pending, &damaged_bytes).unwrap();
    let (base, requests) = stand_in(
        "409 Conflict",
        "application/json",
        r#"{"error":"case C-1 is delivered"}"#.to_string(),
    )
    .await;
    let client = CaseClient::new(&base, None).unwrap().with_user("rad1");
    let results = outbox.deliver(&client, 1, Duration::from_millis(10)).await;
    assert!(
        matches!(
            results.as_slice(),
            [Delivery::Pending { error, .. }] if error.contains("is damaged")
        ),
        "{results:?}"
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(outbox.pending().is_empty());
    let aside = outbox.dir().join("damaged").join(format!("{hash}.json"));
    assert_eq!(std::fs::read(&aside).unwrap(), damaged_bytes);
    assert_eq!(outbox.damaged(), vec![hash.clone()]);

    let dir = tempdir();
    let (outbox, hash) = outbox_with_one_report(dir.path());
    let refused = outbox.dir().join("refused");
    std::fs::remove_dir(&refused).unwrap();
    std::fs::write(&refused, b"not a folder").unwrap();
    let results = outbox.deliver(&client, 1, Duration::from_millis(10)).await;
    assert!(
        matches!(
            results.as_slice(),
            [Delivery::Pending { error, .. }] if error.contains("not set aside")
        ),
        "{results:?}"
    );
    assert_eq!(outbox.pending(), vec![hash]);
    assert!(outbox.refused().is_empty());
}

/// A receipt is for the report sent or for none: a server (here a stand-in on loopback that
/// answers every request with the receipt of another report) whose receipt names another hash
/// does not settle the report; it stays pending, said, and no receipt is recorded for it.
#[tokio::test]
async fn a_receipt_for_another_report_does_not_settle_it() {
    let dir = tempdir();
    let (outbox, hash) = outbox_with_one_report(dir.path());
    let receipt = serde_json::json!({
        "case_id": "C-1",
        "report_hash": "0".repeat(64),
        "received_at": "2026-11-24T15:00:00Z",
        "duplicate": false,
    });
    let (base, requests) = stand_in("200 OK", "application/json", receipt.to_string()).await;
    // A login whose user is not known (a token alone) sends nothing: the report might be
    // another radiologist's, and the server's refusal would set it aside for good.
    let anonymous = CaseClient::new(&base, None).unwrap().with_token("t".into());
    let results = outbox
        .deliver(&anonymous, 1, Duration::from_millis(10))
        .await;
    assert!(
        matches!(
            results.as_slice(),
            [Delivery::Pending { error, .. }] if error.contains("signed by rad1")
        ),
        "{results:?}"
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    let client = CaseClient::new(&base, None).unwrap().with_user("rad1");
    let results = outbox.deliver(&client, 1, Duration::from_millis(10)).await;
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        matches!(
            results.as_slice(),
            [Delivery::Pending { error, .. }] if error.contains("names another report")
        ),
        "{results:?}"
    );
    assert_eq!(outbox.pending(), vec![hash.clone()]);
    assert!(outbox.receipt(&hash).is_none());
}
