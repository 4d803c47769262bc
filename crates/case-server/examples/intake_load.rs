//! A bounded, closed-loop load generator for report intake (`benches/intake.sh` runs it).
//!
//! Setup (not timed), straight in the database the server uses: a radiologist with a key and
//! `--reports` cases in reading (each with a small synthetic study in `--store`, the server's
//! object store), assigned to them, and one signed final report per case, signed
//! here beforehand. Then `--clients` tasks, each with its own HTTP connection, take the next
//! report from a shared queue and `POST /cases/{id}/reports` it, until all are sent; every
//! request's latency is recorded. The server verifies each signature, checks key, author and
//! case state, stores the report with its audit row in one transaction, and answers with a
//! receipt. Prints one JSON line: throughput and latency percentiles.
//!
//! `cargo run --release -p case-server --example intake_load -- --db URL --store DIR
//!  --server URL --clients 16 --reports 2000`

#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use case_protocol::{
    Author, CaseStatus, NewCase, Patient, Priority, Referral, ReferringPhysician, Report,
    ReportKind, ReportMeasurement, Role, SignedReport, SigningKey, sign_report,
};
use case_server::Db;

const PASSWORD: &str = "bench-password";

struct Args {
    db: String,
    server: String,
    /// The server's object store (each case gets a small synthetic study before it is ready).
    store: String,
    clients: usize,
    reports: usize,
}

fn args() -> Args {
    let mut a = Args {
        db: String::new(),
        server: String::new(),
        store: String::new(),
        clients: 1,
        reports: 500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => a.db = value,
            "--server" => a.server = value,
            "--store" => a.store = value,
            "--clients" => a.clients = value.parse().expect("--clients N"),
            "--reports" => a.reports = value.parse().expect("--reports N"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !a.db.is_empty() && !a.server.is_empty() && !a.store.is_empty(),
        "--db, --store and --server"
    );
    assert!(
        a.clients > 0 && a.reports > 0,
        "--clients and --reports above 0"
    );
    a
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args();
    let db = Db::open(&a.db).await.expect("database");
    let store = case_server::Store::open(&a.store).expect("object store");
    db.add_user(
        "bench-rad",
        Role::Radiologist,
        "Dr Bench",
        &["chest".to_string()],
        PASSWORD,
    )
    .await
    .expect("user");
    let key = SigningKey::generate();
    let key_id = db
        .add_key("bench-rad", &key.verifying_key().to_base64())
        .await
        .expect("key");
    let mut queue: Vec<SignedReport> = Vec::with_capacity(a.reports);
    for i in 0..a.reports {
        let case = db
            .create_case(&NewCase {
                patient: Patient {
                    name: format!("BENCH^{i}"),
                    id: format!("B{i}"),
                    birth_date: "1970-01-01".into(),
                    sex: "O".into(),
                },
                referral: Referral {
                    physician: ReferringPhysician {
                        name: "Dr Referrer".into(),
                        fax: "+14165550100".into(),
                        institution: None,
                    },
                    clinical_question: "Pulmonary nodule follow-up".into(),
                    document_sha256: None,
                },
                subspecialty: "chest".into(),
                priority: Priority::Routine,
            })
            .await
            .expect("case");
        db.assign(&case.id, "bench-rad").await.expect("assign");
        let study = case_server::intake::store_synthetic_study(&db, &store, &case.id, i as u64)
            .await
            .expect("study");
        db.set_status(&case.id, CaseStatus::Ready)
            .await
            .expect("ready");
        db.set_status(&case.id, CaseStatus::Reading)
            .await
            .expect("reading");
        let report = Report {
            case_id: case.id.clone(),
            kind: ReportKind::Final,
            author: Author {
                user_id: "bench-rad".into(),
                display_name: "Dr Bench".into(),
            },
            key_id: key_id.clone(),
            signed_at: case_protocol::rfc3339_utc(case_protocol::unix_now()),
            study_instance_uids: vec![study],
            findings: "Solid nodule in the right upper lobe, unchanged in size. No new nodule. \
                       No pleural effusion. Mediastinal nodes are not enlarged."
                .into(),
            impression: "Stable 6 mm right upper lobe nodule. No follow-up needed.".into(),
            measurements: vec![ReportMeasurement {
                label: "RUL nodule".into(),
                kind: "length".into(),
                value: 6.2,
                unit: "mm".into(),
                series_instance_uid: Some("1.2.3.4.5".into()),
                frame_of_reference_uid: Some("1.2.3.4".into()),
                points_mm: vec![[-60.5, 20.25, -110.0], [-54.3, 20.25, -110.0]],
            }],
        };
        queue.push(sign_report(report, &key).expect("sign"));
    }
    drop(db);

    let login = reqwest::Client::new()
        .post(format!("{}/login", a.server))
        .json(&serde_json::json!({"user": "bench-rad", "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json::<serde_json::Value>()
        .await
        .expect("login answer");
    let token = login["token"].as_str().expect("token").to_string();

    // Each client's first request (not timed with the rest) reads the first case's reports.
    let warm_url = format!("{}/cases/{}/reports", a.server, queue[0].report.case_id);
    // Bodies serialized beforehand: the generator shares the machine with the server, so it
    // spends as little as it can per request.
    let queue: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        queue
            .iter()
            .map(|s| {
                (
                    format!("{}/cases/{}/reports", a.server, s.report.case_id),
                    serde_json::to_vec(s).expect("json"),
                )
            })
            .collect(),
    );
    // Every client connects (and makes one authenticated request) before the clock starts: the
    // figures are the steady state of intake. The first request on a new connection is timed
    // apart (`first_request_*`): it includes building the HTTP client and the TCP handshake.

    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..a.clients {
        let (token, warm_url) = (token.clone(), warm_url.clone());
        connecting.spawn(async move {
            let t = Instant::now();
            // One connection per client, kept alive, as a workstation would.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let warm = http
                .get(&warm_url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("first request");
            assert!(
                warm.status().is_success(),
                "first request: {}",
                warm.status()
            );
            warm.bytes().await.expect("first answer");
            (http, t.elapsed())
        });
    }
    let mut clients = Vec::with_capacity(a.clients);
    let mut firsts = Vec::with_capacity(a.clients);
    while let Some(c) = connecting.join_next().await {
        let (http, first) = c.expect("connecting client");
        clients.push(http);
        firsts.push(first);
    }

    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for http in clients {
        let (queue, next, errors, token) =
            (queue.clone(), next.clone(), errors.clone(), token.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((url, body)) = queue.get(i) else {
                    break;
                };
                let t = Instant::now();
                let r = http
                    .post(url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) => r.status() == reqwest::StatusCode::CREATED && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.push(t.elapsed());
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        });
    }
    let mut all = Vec::with_capacity(a.reports);
    while let Some(l) = tasks.join_next().await {
        all.extend(l.expect("client task"));
    }
    let wall = start.elapsed().as_secs_f64();
    all.sort();
    firsts.sort();
    println!(
        "{}",
        serde_json::json!({
            "clients": a.clients,
            "reports": a.reports,
            "errors": errors.load(Ordering::Relaxed),
            "wall_s": wall,
            "reports_per_s": a.reports as f64 / wall,
            "p50_ms": percentile(&all, 0.50),
            "p90_ms": percentile(&all, 0.90),
            "p99_ms": percentile(&all, 0.99),
            "max_ms": percentile(&all, 1.0),
            "first_request_p50_ms": percentile(&firsts, 0.50),
            "first_request_max_ms": percentile(&firsts, 1.0),
        })
    );
}
