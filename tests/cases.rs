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
use overread::cases::{CaseClient, Delivery, EncryptedKey, Outbox};

use crate::support::tempdir;

const PASSWORD: &str = "password-123";

/// A server database with rad1 (chest) and a chest case assigned to rad1, being read.
async fn server_db(dir: &Path) -> (Db, String) {
    let db = Db::open(dir.join("cases.db").to_str().unwrap())
        .await
        .unwrap();
    db.add_user(
        "rad1",
        case_protocol::Role::Radiologist,
        "Dr One",
        &["chest".to_string()],
        PASSWORD,
    )
    .await
    .unwrap();
    let case = db
        .create_case(&NewCase {
            patient: Patient {
                name: "DOE^J".into(),
                id: "M1".into(),
                birth_date: "1970-01-01".into(),
                sex: "F".into(),
            },
            referral: Referral {
                physician: ReferringPhysician {
                    name: "Dr R".into(),
                    fax: "+1".into(),
                    institution: None,
                },
                clinical_question: "?".into(),
                document_sha256: None,
            },
            subspecialty: "chest".into(),
            priority: Priority::Routine,
        })
        .await
        .unwrap();
    db.assign(&case.id, "rad1").await.unwrap();
    db.set_status(&case.id, CaseStatus::Ready).await.unwrap();
    db.set_status(&case.id, CaseStatus::Reading).await.unwrap();
    (db, case.id)
}

fn report(case_id: &str, key_id: &str) -> Report {
    Report {
        case_id: case_id.into(),
        kind: ReportKind::Final,
        author: Author {
            user_id: "rad1".into(),
            display_name: "Dr One".into(),
        },
        key_id: key_id.into(),
        signed_at: "2026-11-23T18:00:00Z".into(),
        study_instance_uids: vec!["1.2.3".into()],
        findings: "No nodule.".into(),
        impression: "Normal chest CT.".into(),
        measurements: vec![],
    }
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
    let key = SigningKey::generate();
    db.add_key("rad1", &key.verifying_key().to_base64())
        .await
        .unwrap();
    let signed = sign_report(report(&case_id, &key.verifying_key().id().0), &key).unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
    let hash = outbox.enqueue(&signed).unwrap();
    assert_eq!(outbox.pending(), vec![hash.clone()]);

    // No server yet: the report stays pending after the retries.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let offline = CaseClient::new(&format!("http://{dead_addr}"), None).unwrap();
    let results = outbox.deliver(&offline, 2, Duration::from_millis(10)).await;
    assert!(
        matches!(&results[..], [Delivery::Pending { .. }]),
        "{results:?}"
    );
    assert_eq!(outbox.pending(), vec![hash.clone()]);

    // The server comes up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(case_server::serve(db.clone(), listener));
    let mut client = CaseClient::new(&base, None).unwrap();
    client.login("rad1", PASSWORD).await.unwrap();

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
    tokio::spawn(case_server::serve_tls(db.clone(), listener, config));

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

    let draft = dir.path().join("report.json");
    std::fs::write(
        &draft,
        serde_json::to_string(&report(&case_id, "")).unwrap(),
    )
    .unwrap();
    let signed_file = dir.path().join("signed.json");
    let (ok, out, err) = run(vec![
        "report".into(),
        "sign".into(),
        draft.display().to_string(),
        "--key".into(),
        key_file.display().to_string(),
        "-o".into(),
        signed_file.display().to_string(),
        "--show".into(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("OVERREAD-REPORT/1") && out.contains("impression 16:Normal chest CT."),
        "{out}"
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
