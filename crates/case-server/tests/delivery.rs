//! Report delivery on the real server: a signed final report with a key image becomes a PDF in
//! the fax folder with its sidecar, checked with poppler (pdftoppm renders it, pdftotext reads
//! it back); the case becomes delivered; a transport that fails keeps the report queued with
//! its error and delivers it once the folder is there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use case_protocol::{CaseSummary, ReportKind, SigningKey, sign_report};
use case_server::delivery::{DeliveryConfig, DeliveryStatus};
use dicom_dictionary_std::tags;
use reqwest::StatusCode;
use support::*;

fn poppler() -> bool {
    let ok = Command::new("pdftoppm").arg("-v").output().is_ok()
        && Command::new("pdftotext").arg("-v").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "poppler-utils must be installed in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: pdftoppm/pdftotext are not installed (apt install poppler-utils)");
    }
    ok
}

async fn deliveries(s: &Server, token: &str, case: &str) -> Vec<DeliveryStatus> {
    let r = s.get(token, &format!("/cases/{case}/deliveries")).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn wait_for(
    s: &Server,
    token: &str,
    case: &str,
    what: &str,
    done: impl Fn(&[DeliveryStatus]) -> bool,
) -> Vec<DeliveryStatus> {
    for _ in 0..300 {
        let d = deliveries(s, token, case).await;
        if done(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        deliveries(s, token, case).await
    );
}

async fn signed_final(s: &Server, rad: &str, case: &str, key: &SigningKey) -> String {
    signed_report(s, rad, case, key, ReportKind::Final, |report| {
        report.findings =
            "A 14.2 mm solid nodule in the right lower lobe, unchanged. No effusion. ".repeat(12);
        report.impression = "Indeterminate right lower lobe nodule; CT in 3 months.".into();
    })
    .await
}

/// A report of `kind` by `rad` on `case`'s study, `write` filling its text, signed and
/// received: its hash.
async fn signed_report(
    s: &Server,
    rad: &str,
    case: &str,
    key: &SigningKey,
    kind: ReportKind,
    write: impl FnOnce(&mut case_protocol::Report),
) -> String {
    let token = s.login(rad).await;
    let study: String =
        sqlx::query_scalar("SELECT MIN(study_uid) FROM instances WHERE case_id = $1")
            .bind(case)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    let mut report = report(s, case, rad, key, kind);
    report.study_instance_uids = vec![study];
    write(&mut report);
    let signed = sign_report(report, key).unwrap();
    let r = s
        .post(
            &token,
            &format!("/cases/{case}/reports"),
            &serde_json::to_value(&signed).unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<case_protocol::Receipt>()
        .await
        .unwrap()
        .report_hash
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_report_reaches_the_fax_folder_as_a_pdf_and_the_case_is_delivered() {
    if !poppler() {
        return;
    }
    let fax = tempfile::tempdir().unwrap();
    let fax_dir = fax.path().to_path_buf();
    let s = start_with(|state| {
        let mut config = DeliveryConfig::folder(&fax_dir);
        config.poll = Duration::from_millis(100);
        state.delivery = Some(config);
    })
    .await;
    let (case, rad1, key) = reading_with_key(&s).await;

    // A key image; something that is not a PNG is refused.
    let post_image = |body: Vec<u8>| {
        s.http
            .post(format!(
                "{}/cases/{case}/key-images?caption=RLL%20nodule,%20axial",
                s.base
            ))
            .bearer_auth(&rad1)
            .body(body)
            .send()
    };
    let r = post_image(b"GIF89a not a png".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The same image another radiologist added while the case was theirs (a rendering of the
    // same slice is byte for byte the same): rad1's once rad1 adds it, and printed.
    let (same_key, _) = s.store.put(key_image_png()).await.unwrap();
    sqlx::query(
        "INSERT INTO key_images (case_id, object_key, caption, uploaded_by, uploaded_at)
         VALUES ($1, $2, 'their caption', 'rad2', '2026-01-01T00:00:00Z')",
    )
    .bind(&case)
    .bind(&same_key)
    .execute(&s.db.pool)
    .await
    .unwrap();
    let r = post_image(key_image_png()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // One another radiologist added while the case was theirs (it went to rad1 since): not
    // rad1's, and not printed in rad1's report.
    let theirs = {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 8, 8);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&[90u8; 64]).unwrap();
        writer.finish().unwrap();
        out
    };
    let (their_key, _) = s.store.put(theirs).await.unwrap();
    sqlx::query(
        "INSERT INTO key_images (case_id, object_key, caption, uploaded_by, uploaded_at)
         VALUES ($1, $2, 'Chosen by another reader', 'rad2', '2026-01-01T00:00:00Z')",
    )
    .bind(&case)
    .bind(&their_key)
    .execute(&s.db.pool)
    .await
    .unwrap();

    let hash = signed_final(&s, "rad1", &case, &key).await;
    let done = wait_for(&s, &rad1, &case, "the delivery", |d| {
        d.len() == 1 && d[0].status == "sent"
    })
    .await;
    assert_eq!(done[0].report_hash, hash);
    assert_eq!(done[0].attempts, 1);
    let coord = s.login("coord").await;
    let r = s.get(&coord, &format!("/cases/{case}")).await;
    let detail: serde_json::Value = r.json().await.unwrap();
    let summary: CaseSummary = serde_json::from_value(detail["summary"].clone()).unwrap();
    assert_eq!(summary.status, case_protocol::CaseStatus::Delivered);

    // The fax folder: the PDF and its sidecar, nothing half-written.
    let stem = format!("{case}-{}", &hash[..16]);
    assert_eq!(
        files_in(fax.path()),
        [format!("{stem}.json"), format!("{stem}.pdf")]
    );
    let pdf_path = fax.path().join(format!("{stem}.pdf"));
    let pdf = std::fs::read(&pdf_path).unwrap();
    // The patient's report, for the gateway (of the server's group), not for everyone.
    #[cfg(unix)]
    for name in [format!("{stem}.pdf"), format!("{stem}.json")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fax.path().join(&name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o007, 0, "{name}: {mode:o}");
    }
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fax.path().join(format!("{stem}.json"))).unwrap())
            .unwrap();
    assert_eq!(sidecar["fax"], "+14165550100");
    assert_eq!(sidecar["report_hash"], hash.as_str());
    let sha = case_server::store::content_key(&pdf);
    assert_eq!(sidecar["pdf_sha256"], sha.as_str());
    assert_eq!(done[0].document_sha256.as_deref(), Some(sha.as_str()));

    // poppler reads it back: every part of the report is there.
    let out = Command::new("pdftotext")
        .args(["-layout", pdf_path.to_str().unwrap(), "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed_at: String = {
        let json: String =
            sqlx::query_scalar("SELECT signed_json FROM reports WHERE report_hash = $1")
                .bind(&hash)
                .fetch_one(&s.db.pool)
                .await
                .unwrap();
        let signed: case_protocol::SignedReport = serde_json::from_str(&json).unwrap();
        // Printed with its zone said: "2026-11-25 09:59:00 UTC".
        signed
            .report
            .signed_at
            .replace('T', " ")
            .replace('Z', " UTC")
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "Second-opinion radiology report",
        "DOE, JANE",
        "1970-01-01",
        "MRN-555",
        "Dr Referrer",
        "+14165550100",
        "Nodule?",
        "A 14.2 mm solid nodule in the right lower lobe, unchanged.",
        "RLL nodule: 14.26 mm (length)",
        "Indeterminate right lower lobe nodule; CT in 3 months.",
        "User rad1 (rad1)",
        signed_at.as_str(),
        hash.as_str(),
        "RLL nodule, axial",
        &format!("Overread case {case}"),
        "Patient DOE, JANE · born 1970-01-01 · record MRN-555",
    ] {
        assert!(
            flat.contains(expected),
            "the PDF lacks {expected:?}:\n{text}"
        );
    }
    let pages = flat.matches("page ").count();
    assert!(flat.contains(&format!("page 1 of {pages}")), "{flat}");
    assert!(!flat.contains("Chosen by another reader"), "{flat}");
    assert!(!flat.contains("their caption"), "{flat}");
    let images = pdf
        .windows(b"/Subtype /Image".len())
        .filter(|w| *w == b"/Subtype /Image")
        .count();
    assert_eq!(images, 1, "the signer's key image only");

    // pdftoppm renders every page; the first has ink on it, the key image a bright disc.
    let png_prefix = fax.path().join("render");
    let out = Command::new("pdftoppm")
        .args(["-r", "50", "-gray", "-png"])
        .arg(&pdf_path)
        .arg(&png_prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Vec<_> = files_in(fax.path())
        .into_iter()
        .filter(|n| n.starts_with("render") && n.ends_with(".png"))
        .collect();
    assert_eq!(rendered.len(), pages, "{rendered:?}");
    let first = std::fs::read(fax.path().join(&rendered[0])).unwrap();
    let mut d = png::Decoder::new(std::io::Cursor::new(first))
        .read_info()
        .unwrap();
    let mut buf = vec![0u8; d.output_buffer_size().unwrap()];
    let info = d.next_frame(&mut buf).unwrap();
    // A4 (595 x 842 pt) at 50 dpi, rounded up by pdftoppm.
    assert_eq!((info.width, info.height), (414, 585));
    let dark = buf.iter().filter(|v| **v < 128).count();
    assert!(
        dark > 2_000,
        "the first page is nearly blank: {dark} dark pixels"
    );

    // The operator's reprint is the same document.
    let again = case_server::delivery::report_pdf(&s.db, &s.store, &hash)
        .await
        .unwrap()
        .0;
    assert_eq!(again, pdf);
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit WHERE case_id = $1 ORDER BY id")
            .bind(&case)
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert!(rows.iter().any(|a| a == "report_delivered"), "{rows:?}");
    assert!(rows.iter().any(|a| a == "key_image_add"), "{rows:?}");

    // The patient copy holds the PDF as sent, byte for byte, even where a rendering now
    // would differ (here the case's referral is changed behind the server's back).
    sqlx::query(
        "UPDATE cases SET referral_json = REPLACE(referral_json, 'Dr Referrer', 'Dr Other')",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    assert_ne!(
        case_server::delivery::report_pdf(&s.db, &s.store, &hash)
            .await
            .unwrap()
            .0,
        pdf,
        "a rendering now differs"
    );
    let r = s.get(&coord, &format!("/cases/{case}/export")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(r.bytes().await.unwrap().to_vec())).unwrap();
    let copy = {
        let mut f = archive.by_name("REPORTS/REPORT01.PDF").unwrap();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).unwrap();
        v
    };
    assert!(copy == pdf, "the patient copy's PDF is not the one sent");
    let mut readme = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("README.TXT").unwrap(), &mut readme)
        .unwrap();
    assert!(
        readme.contains(&format!("the PDF as sent, sha256 {sha}")),
        "{readme}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_transport_keeps_the_report_queued_and_delivers_it_later() {
    let fax = tempfile::tempdir().unwrap();
    // The gateway's folder is missing at first.
    let fax_dir = fax.path().join("gateway");
    let dir_for_config = fax_dir.clone();
    let s = start_with(move |state| {
        let mut config = DeliveryConfig::folder(&dir_for_config);
        config.poll = Duration::from_millis(100);
        config.retry_base = Duration::from_millis(1);
        state.delivery = Some(config);
    })
    .await;
    let (case, rad1, key) = reading_with_key(&s).await;
    let hash = signed_final(&s, "rad1", &case, &key).await;
    let failing = wait_for(&s, &rad1, &case, "a failed attempt", |d| {
        d.len() == 1 && d[0].status == "retrying"
    })
    .await;
    assert_eq!(failing[0].report_hash, hash);
    assert!(
        failing[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("gateway")),
        "{failing:?}"
    );
    let coord = s.login("coord").await;
    let r = s.get(&coord, &format!("/cases/{case}")).await;
    let detail: serde_json::Value = r.json().await.unwrap();
    assert_eq!(detail["summary"]["status"], "reported", "not delivered yet");

    std::fs::create_dir_all(&fax_dir).unwrap();
    let sent = wait_for(
        &s,
        &rad1,
        &case,
        "the delivery after the folder appeared",
        |d| d.len() == 1 && d[0].status == "sent",
    )
    .await;
    assert!(sent[0].attempts >= 2, "{sent:?}");
    assert_eq!(files_in(&fax_dir).len(), 2);
    let failures: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit WHERE action = 'report_delivery_failed' AND case_id = $1",
    )
    .bind(&case)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert!(failures >= 1);
    // Nobody else's deliveries are visible.
    let rad2 = s.login("rad2").await;
    let r = s.get(&rad2, &format!("/cases/{case}/deliveries")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// A delivery whose recording fails halfway (here the case's move to delivered, refused by
/// a trigger, after the delivery row and audit row were written in the same transaction)
/// leaves none of the three: no "sent" row for a case still reported. The next round records
/// it whole, once, without faxing the physician the same report again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_recorded_halfway_leaves_nothing_and_is_recorded_next_round() {
    use sqlx::Executor;
    let s = start().await;
    let (case, _, key) = reading_with_key(&s).await;
    let hash = signed_final(&s, "rad1", &case, &key).await;
    let (transport, config) = switchable(Duration::from_millis(1));
    let postgres = s.db.backend == case_server::db::Backend::Postgres;
    if postgres {
        s.db.pool
            .execute(
                "CREATE FUNCTION refuse_delivered() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.status = 'delivered' THEN RAISE EXCEPTION 'injected failure';
                 END IF; RETURN NEW; END $$",
            )
            .await
            .unwrap();
        s.db.pool
            .execute(
                "CREATE TRIGGER refuse_delivered BEFORE UPDATE ON cases
                 FOR EACH ROW EXECUTE FUNCTION refuse_delivered()",
            )
            .await
            .unwrap();
    } else {
        s.db.pool
            .execute(
                "CREATE TRIGGER refuse_delivered BEFORE UPDATE OF status ON cases
                 WHEN NEW.status = 'delivered'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            )
            .await
            .unwrap();
    }
    let count = |sql: &'static str| {
        let (db, hash, case) = (s.db.clone(), hash.clone(), case.clone());
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(hash)
                .bind(case)
                .fetch_one(&db.pool)
                .await
                .unwrap()
        }
    };
    let rows = "SELECT COUNT(*) FROM deliveries WHERE report_hash = $1 AND case_id = $2";
    let audited = "SELECT COUNT(*) FROM audit
                   WHERE action = 'report_delivered' AND detail = $1 AND case_id = $2";
    let status = || {
        let (db, case) = (s.db.clone(), case.clone());
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM cases WHERE id = $1")
                .bind(case)
                .fetch_one(&db.pool)
                .await
                .unwrap()
        }
    };

    let failed = case_server::delivery::deliver_due(&s.db, &s.store, &config).await;
    assert!(
        failed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("injected failure")),
        "{failed:?}"
    );
    assert_eq!(
        count(rows).await,
        0,
        "a delivery row without its case's move"
    );
    assert_eq!(
        count(audited).await,
        0,
        "an audit row of a delivery not recorded"
    );
    assert_eq!(status().await, "reported");

    let drop = if postgres {
        "DROP TRIGGER refuse_delivered ON cases"
    } else {
        "DROP TRIGGER refuse_delivered"
    };
    s.db.pool.execute(drop).await.unwrap();
    let again = case_server::delivery::deliver_due(&s.db, &s.store, &config).await;
    assert_eq!(again.unwrap(), 1);
    assert_eq!(count(rows).await, 1);
    assert_eq!(count(audited).await, 1);
    assert_eq!(status().await, "delivered");
    let sent: String = sqlx::query_scalar("SELECT status FROM deliveries WHERE report_hash = $1")
        .bind(&hash)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(sent, "sent");
    assert_eq!(
        *transport.sent.lock().unwrap(),
        [hash.as_str()],
        "sent once: the second round recorded the first send"
    );
    // Nothing more is due.
    let idle = case_server::delivery::deliver_due(&s.db, &s.store, &config).await;
    assert_eq!(idle.unwrap(), 0);
}

/// A [`Switchable`] transport and a configuration that uses it, retrying after `retry_base`
/// (doubled each time), polling each second.
fn switchable(retry_base: Duration) -> (std::sync::Arc<Switchable>, DeliveryConfig) {
    let transport = std::sync::Arc::new(Switchable::default());
    let config = config_of(transport.clone(), retry_base, Duration::from_secs(60));
    (transport, config)
}

/// A transport that fails while told to, and lists what it was given and what it sent.
#[derive(Debug, Default)]
struct Switchable {
    failing: std::sync::atomic::AtomicBool,
    tried: std::sync::Mutex<Vec<String>>,
    sent: std::sync::Mutex<Vec<String>>,
}

impl case_server::delivery::Transport for Switchable {
    fn name(&self) -> &'static str {
        "switchable"
    }

    fn send(&self, doc: &case_server::delivery::Outgoing<'_>) -> Result<String, String> {
        self.tried.lock().unwrap().push(doc.report_hash.to_string());
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the fax gateway is down".into());
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push(doc.report_hash.to_string());
        Ok(format!("sent #{}", sent.len()))
    }
}

/// An addendum is never faxed before (or without) the report it amends: received while the
/// report's sending fails, it waits, and goes once the report has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_addendum_waits_until_the_report_it_amends_is_sent() {
    let s = start().await;
    let (case, rad1, key) = reading_with_key(&s).await;
    let final_hash = signed_final(&s, "rad1", &case, &key).await;
    let addendum_hash = signed_report(
        &s,
        "rad1",
        &case,
        &key,
        ReportKind::Addendum {
            amends: final_hash.clone(),
        },
        |r| r.findings = "The nodule measures 15 mm on the coronal images.".into(),
    )
    .await;

    let (transport, config) = switchable(Duration::from_millis(1));
    transport
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Two failed attempts (a retry waits a second at least).
    for _ in 0..2 {
        case_server::delivery::deliver_due(&s.db, &s.store, &config)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let tried = transport.tried.lock().unwrap().clone();
    assert_eq!(tried.len(), 2, "{tried:?}");
    assert!(
        tried.iter().all(|h| *h == final_hash),
        "the addendum was tried while its report was not sent: {tried:?}"
    );
    // The case's deliveries say why the addendum has not gone: it waits for the report,
    // whose own row has the error.
    let listed = deliveries(&s, &rad1, &case).await;
    let row = |hash: &str| {
        listed
            .iter()
            .find(|d| d.report_hash == hash)
            .unwrap()
            .clone()
    };
    assert_eq!(row(&final_hash).status, "retrying");
    assert!(row(&final_hash).last_error.is_some());
    assert_eq!(row(&final_hash).waiting_for, None);
    assert_eq!(row(&addendum_hash).status, "waiting");
    assert_eq!(row(&addendum_hash).waiting_for, Some(final_hash.clone()));

    transport
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..50 {
        if transport.sent.lock().unwrap().len() == 2 {
            break;
        }
        case_server::delivery::deliver_due(&s.db, &s.store, &config)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        *transport.sent.lock().unwrap(),
        vec![final_hash.clone(), addendum_hash.clone()]
    );
    assert_eq!(delivery_row(&s, &addendum_hash).await.0, "sent");
    let listed = deliveries(&s, &rad1, &case).await;
    assert!(
        listed
            .iter()
            .all(|d| d.status == "sent" && d.waiting_for.is_none()),
        "{listed:?}"
    );
}

/// A transport that takes its time and counts what it sent.
#[derive(Debug, Default)]
struct SlowCounting {
    sent: std::sync::Mutex<Vec<String>>,
}

impl case_server::delivery::Transport for SlowCounting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn send(&self, doc: &case_server::delivery::Outgoing<'_>) -> Result<String, String> {
        std::thread::sleep(Duration::from_millis(300));
        let mut sent = self.sent.lock().unwrap();
        sent.push(doc.report_hash.to_string());
        Ok(format!("sent #{}", sent.len()))
    }
}

/// A case in reading by rad1, who has registered a signing key: the case, rad1's login and
/// the key.
async fn reading_with_key(s: &Server) -> (String, String, SigningKey) {
    let case = case_in_reading(s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let key = register_key(s, &rad1).await;
    (case, rad1, key)
}

/// A final report signed in a case of rad1's, to be delivered through a [`SlowCounting`]
/// transport: its hash, the transport and the delivery configuration.
async fn final_to_deliver(s: &Server) -> (String, std::sync::Arc<SlowCounting>, DeliveryConfig) {
    let (case, _, key) = reading_with_key(s).await;
    let hash = signed_final(s, "rad1", &case, &key).await;
    let transport = std::sync::Arc::new(SlowCounting::default());
    let config = config_of(
        transport.clone(),
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    (hash, transport, config)
}

/// Delivery through `transport`, looking for work every second.
fn config_of(
    transport: std::sync::Arc<dyn case_server::delivery::Transport>,
    retry_base: Duration,
    send_timeout: Duration,
) -> DeliveryConfig {
    DeliveryConfig {
        transport,
        retry_base,
        poll: Duration::from_secs(1),
        send_timeout,
    }
}

/// A transport that hangs (a network folder that does not answer) until let go, and counts
/// the sends it was given.
#[derive(Debug, Default)]
struct Hanging {
    let_go: std::sync::atomic::AtomicBool,
    given: std::sync::atomic::AtomicUsize,
}

impl case_server::delivery::Transport for Hanging {
    fn name(&self) -> &'static str {
        "hanging"
    }

    fn send(&self, _doc: &case_server::delivery::Outgoing<'_>) -> Result<String, String> {
        self.given.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Not for ever: a test that fails before letting go still ends (its runtime waits
        // for this thread).
        let hung = std::time::Instant::now();
        while !self.let_go.load(std::sync::atomic::Ordering::SeqCst)
            && hung.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok("sent after a long wait".into())
    }
}

/// A send that does not answer within its time: the round goes on (the row says why), the
/// report is not sent again while that send runs, and when it ends its outcome is recorded
/// (sent), without a second send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_send_is_timed_out_and_never_sent_twice() {
    let s = start().await;
    let (case, _, key) = reading_with_key(&s).await;
    let hash = signed_final(&s, "rad1", &case, &key).await;
    let transport = std::sync::Arc::new(Hanging::default());
    let config = config_of(
        transport.clone(),
        Duration::from_millis(1),
        Duration::from_millis(300),
    );
    let round = tokio::time::timeout(
        Duration::from_secs(30),
        case_server::delivery::deliver_due(&s.db, &s.store, &config),
    )
    .await
    .expect("the round went on without the hung send");
    assert_eq!(round.unwrap(), 1);
    let (status, attempts) = delivery_row(&s, &hash).await;
    assert_eq!((status.as_str(), attempts), ("retrying", 1));
    let error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM deliveries WHERE report_hash = $1")
            .bind(&hash)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert!(error.unwrap().contains("did not answer"));
    // Due again, while the send still hangs: passed by, not sent again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        case_server::delivery::deliver_due(&s.db, &s.store, &config)
            .await
            .unwrap(),
        0
    );
    assert_eq!(transport.given.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Let go: the next round records it as sent, with no second send.
    transport
        .let_go
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..50 {
        if delivery_row(&s, &hash).await.0 == "sent" {
            break;
        }
        case_server::delivery::deliver_due(&s.db, &s.store, &config)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivery_row(&s, &hash).await, ("sent".to_string(), 2));
    assert_eq!(transport.given.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A report's delivery row: status and attempts.
async fn delivery_row(s: &Server, hash: &str) -> (String, i64) {
    sqlx::query_as("SELECT status, attempts FROM deliveries WHERE report_hash = $1")
        .bind(hash)
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

/// Two servers on one PostgreSQL database deliver at the same time: each report is sent
/// once (both read it as due; the first to claim it sends it, the other passes it by).
/// PostgreSQL only (a SQLite file serves one server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_send_a_report_once() {
    let s = start().await;
    if s.db.backend != case_server::db::Backend::Postgres {
        eprintln!("skipped: PostgreSQL only (DATABASE_URL unset)");
        return;
    }
    let (hash, transport, config) = final_to_deliver(&s).await;
    // Two servers: two delivery rounds over connections of their own.
    let other = case_server::Db::open(&s.db_url).await.unwrap();
    let (a, b) = tokio::join!(
        case_server::delivery::deliver_due(&s.db, &s.store, &config),
        case_server::delivery::deliver_due(&other, &s.store, &config),
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1, "both servers sent it");
    assert_eq!(*transport.sent.lock().unwrap(), [hash.as_str()]);
    assert_eq!(delivery_row(&s, &hash).await, ("sent".to_string(), 1));
    // Nothing is due on either.
    for db in [&s.db, &other] {
        let idle = case_server::delivery::deliver_due(db, &s.store, &config).await;
        assert_eq!(idle.unwrap(), 0);
    }
    assert_eq!(transport.sent.lock().unwrap().len(), 1);
}

/// A database that ends idle transactions early (`idle_in_transaction_session_timeout`, a
/// common hardening setting; here 100 ms, shorter than the 300 ms send) must not end a claim
/// mid-send: the session holding the claim was killed, the claim's lock went with it, and a
/// second server sent the report again (and the first failed to end its claim). The claim's
/// transaction lifts the limit for itself. PostgreSQL only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_outlasts_a_short_idle_transaction_timeout() {
    let s = start().await;
    if s.db.backend != case_server::db::Backend::Postgres {
        eprintln!("skipped: PostgreSQL only (DATABASE_URL unset)");
        return;
    }
    let (hash, transport, config) = final_to_deliver(&s).await;
    let name: String = sqlx::query_scalar("SELECT CAST(current_database() AS TEXT)")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '100ms'"
    )))
    .execute(&s.db.pool)
    .await
    .unwrap();
    // Two servers whose sessions start under the new setting.
    let (first, second) = (
        case_server::Db::open(&s.db_url).await.unwrap(),
        case_server::Db::open(&s.db_url).await.unwrap(),
    );
    let timeout: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(timeout, "100ms", "the setting did not apply");
    // The second server looks 200 ms into the first one's send (past the 100 ms limit).
    let (a, b) = tokio::join!(
        case_server::delivery::deliver_due(&first, &s.store, &config),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            case_server::delivery::deliver_due(&second, &s.store, &config).await
        },
    );
    assert_eq!(a.unwrap(), 1, "the first server's claim failed");
    assert_eq!(b.unwrap(), 0, "the second server took the report mid-send");
    assert_eq!(*transport.sent.lock().unwrap(), [hash.as_str()]);
    assert_eq!(delivery_row(&s, &hash).await, ("sent".to_string(), 1));
}

/// pydicom (an independent DICOMDIR reader that follows every record offset), where installed.
fn pydicom() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pydicom.fileset"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "pydicom must be installed in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: the pydicom check of the DICOMDIR (pip install pydicom)");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patient_copy_holds_the_studies_with_a_dicomdir_and_the_reports() {
    let s = start().await;
    let case = case_in_reading(&s, "rad1").await;
    let coord = s.login("coord").await;
    // A second study in the same case.
    let r = upload_synthetic_study(&s, &coord, &case).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rad1 = s.login("rad1").await;
    let key = register_key(&s, &rad1).await;
    let hash = signed_final(&s, "rad1", &case, &key).await;

    let r = s.get(&rad1, &format!("/cases/{case}/export")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "coordinators export");
    let r = s.get(&coord, &format!("/cases/{case}/export")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let zip_bytes = r.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).unwrap();
    let out = tempfile::tempdir().unwrap();
    archive.extract(out.path()).unwrap();
    let mut names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"DICOMDIR".to_string()), "{names:?}");
    assert!(names.contains(&"README.TXT".to_string()));
    assert!(names.contains(&"REPORTS/REPORT01.PDF".to_string()));
    assert!(names.contains(&"REPORTS/REPORT01.JSON".to_string()));
    let images: Vec<&String> = names.iter().filter(|n| n.starts_with("DICOM/")).collect();
    assert_eq!(images.len(), 8, "{names:?}");
    // ISO 9660 names: upper case, 8 characters a component at most.
    for n in &images {
        for part in n.split('/') {
            assert!(part.len() <= 8 && part == part.to_uppercase(), "{n}");
        }
    }

    // The server's instances, as stored.
    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT sop_uid, object_key FROM instances WHERE case_id = $1 ORDER BY sop_uid",
    )
    .bind(&case)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 8);

    // The workstation's reader follows the DICOMDIR to every image, byte for byte as stored.
    let scan = imaging::scan::scan(&[out.path().join("DICOMDIR")]);
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
    let mut found: Vec<(String, String)> = scan
        .instances
        .iter()
        .map(|h| {
            (
                h.sop_instance_uid.clone(),
                case_server::store::content_key(&std::fs::read(&h.path).unwrap()),
            )
        })
        .collect();
    found.sort();
    assert_eq!(found, stored);

    // pydicom follows every directory-record offset (PS3.3 F.3.2.2) to the same images.
    if pydicom() {
        let script = r#"
import sys, json
from pydicom import dcmread
from pydicom.fileset import FileSet
fs = FileSet(dcmread(sys.argv[1]))
out = []
for inst in fs:
    ds = inst.load()
    out.append([str(ds.SOPInstanceUID), inst.FileID if hasattr(inst, "FileID") else "", str(inst.path)])
print(json.dumps({"patients": len(fs.find_values("PatientID")), "studies": len(fs.find_values("StudyInstanceUID")), "instances": sorted(out)}))
"#;
        let o = Command::new("python3")
            .args(["-c", script])
            .arg(out.path().join("DICOMDIR"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["patients"], 1);
        assert_eq!(v["studies"], 2);
        let uids: Vec<String> = v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[0].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = stored.iter().map(|(u, _)| u.clone()).collect();
        assert_eq!(uids, want);
    }

    // The reports: the signed JSON as stored, the PDF as delivered.
    let signed: String =
        sqlx::query_scalar("SELECT signed_json FROM reports WHERE report_hash = $1")
            .bind(&hash)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("REPORTS/REPORT01.JSON")).unwrap(),
        signed
    );
    let pdf = case_server::delivery::report_pdf(&s.db, &s.store, &hash)
        .await
        .unwrap()
        .0;
    assert_eq!(
        std::fs::read(out.path().join("REPORTS/REPORT01.PDF")).unwrap(),
        pdf
    );
    let readme = std::fs::read_to_string(out.path().join("README.TXT")).unwrap();
    assert!(
        readme.contains(&hash) && readme.contains("8 images in 2 series of 2 studies"),
        "{readme}"
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit WHERE action = 'case_export' AND case_id = $1",
    )
    .bind(&case)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    // One record a UID, Type 1 values from the files: a study whose instances differ in
    // Patient ID and Study Date, a series in Series Number (none on one), listed once each.
    let one: String = sqlx::query_scalar(
        "SELECT sop_uid FROM instances WHERE case_id = $1 ORDER BY sop_uid DESC LIMIT 1",
    )
    .bind(&case)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE instances SET patient_id = 'ANOTHER', study_date = '20000101' WHERE sop_uid = $1",
    )
    .bind(&one)
    .execute(&s.db.pool)
    .await
    .unwrap();
    // And its whole series without a Series Number (Type 1 in a SERIES record), its study
    // with a Study Time that is no time.
    sqlx::query(
        "UPDATE instances SET series_number = NULL, study_time = '1015.5'
         WHERE series_uid = (SELECT series_uid FROM instances WHERE sop_uid = $1)",
    )
    .bind(&one)
    .execute(&s.db.pool)
    .await
    .unwrap();
    let r = s.get(&coord, &format!("/cases/{case}/export")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let zip_bytes = r.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).unwrap();
    let again = tempfile::tempdir().unwrap();
    archive.extract(again.path()).unwrap();
    let dicomdir = dicom_object::open_file(again.path().join("DICOMDIR")).unwrap();
    let text = |item: &dicom_object::InMemDicomObject, tag| {
        item.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    let records = dicomdir
        .element(tags::DIRECTORY_RECORD_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .to_vec();
    let of = |kind: &str| -> Vec<&dicom_object::InMemDicomObject> {
        records
            .iter()
            .filter(|r| text(r, tags::DIRECTORY_RECORD_TYPE) == kind)
            .collect()
    };
    assert_eq!(of("PATIENT").len(), 1);
    assert_eq!(of("STUDY").len(), 2, "one STUDY record a study");
    assert_eq!(of("SERIES").len(), 2, "one SERIES record a series");
    assert_eq!(of("IMAGE").len(), 8);
    // The synthetic studies' own Study Time and ID, not made up ones; a time that is no
    // time, midnight.
    let mut times: Vec<String> = of("STUDY")
        .iter()
        .map(|r| text(r, tags::STUDY_TIME))
        .collect();
    times.sort();
    assert_eq!(times, ["000000", "090000"]);
    for study in of("STUDY") {
        assert_eq!(text(study, tags::STUDY_ID), "1");
    }
    let mut numbers: Vec<String> = of("SERIES")
        .iter()
        .map(|r| text(r, tags::SERIES_NUMBER))
        .collect();
    numbers.sort();
    // The synthetic series are numbered 2; the one without a number is the first of its
    // study in the file-set, 1: never empty (Type 1).
    assert_eq!(numbers, ["1", "2"]);
}

/// A case's reports go in the order they arrived, each once every earlier one has gone: two
/// addenda received in the same second go first to last, and when the first one's sending
/// fails, the second waits for it (listed as waiting for it) rather than overtaking it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cases_reports_go_in_the_order_they_arrived() {
    let s = start().await;
    let (case, rad1, key) = reading_with_key(&s).await;
    let final_hash = signed_final(&s, "rad1", &case, &key).await;
    let (transport, config) = switchable(Duration::from_secs(3600));
    case_server::delivery::deliver_due(&s.db, &s.store, &config)
        .await
        .unwrap();
    assert_eq!(*transport.sent.lock().unwrap(), vec![final_hash.clone()]);
    // Two addenda, one after the other (within a second: one received_at, whose ties the
    // hashes broke before).
    let mut addenda = Vec::new();
    for text in [
        "First addendum: the nodule is 15 mm.",
        "Second: and calcified.",
    ] {
        addenda.push(
            signed_report(
                &s,
                "rad1",
                &case,
                &key,
                ReportKind::Addendum {
                    amends: final_hash.clone(),
                },
                |r| r.findings = text.into(),
            )
            .await,
        );
    }
    // The first addendum's sending fails (and is not due again for an hour): the second is
    // not tried past it.
    transport
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    case_server::delivery::deliver_due(&s.db, &s.store, &config)
        .await
        .unwrap();
    transport
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    case_server::delivery::deliver_due(&s.db, &s.store, &config)
        .await
        .unwrap();
    let tried = transport.tried.lock().unwrap().clone();
    assert_eq!(tried, vec![final_hash.clone(), addenda[0].clone()]);
    let listed = deliveries(&s, &rad1, &case).await;
    let second = listed.iter().find(|d| d.report_hash == addenda[1]).unwrap();
    assert_eq!(second.status, "waiting");
    assert_eq!(second.waiting_for.as_deref(), Some(addenda[0].as_str()));
    // Its retry due now: the first goes, then the second.
    sqlx::query("UPDATE deliveries SET next_attempt_unix = 0 WHERE report_hash = $1")
        .bind(&addenda[0])
        .execute(&s.db.pool)
        .await
        .unwrap();
    for _ in 0..3 {
        case_server::delivery::deliver_due(&s.db, &s.store, &config)
            .await
            .unwrap();
    }
    assert_eq!(
        *transport.sent.lock().unwrap(),
        vec![final_hash, addenda[0].clone(), addenda[1].clone()]
    );
}

/// A key image whose stored copy cannot be read (deleted from the store here) does not hold
/// back the signed report: it goes, the image's cell a grey square whose caption says it is
/// unavailable (read back with poppler where it is installed: always in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_goes_without_a_key_image_that_cannot_be_read() {
    let s = start().await;
    let (case, rad1, key) = reading_with_key(&s).await;
    let r = s
        .http
        .post(format!(
            "{}/cases/{case}/key-images?caption=RLL%20nodule",
            s.base
        ))
        .bearer_auth(&rad1)
        .body(key_image_png())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let object: String = sqlx::query_scalar("SELECT object_key FROM key_images WHERE case_id = $1")
        .bind(&case)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    s.store.delete(&object).await.unwrap();
    let hash = signed_final(&s, "rad1", &case, &key).await;
    let (transport, config) = switchable(Duration::from_secs(3600));
    case_server::delivery::deliver_due(&s.db, &s.store, &config)
        .await
        .unwrap();
    assert_eq!(*transport.sent.lock().unwrap(), vec![hash.clone()]);
    let (status, ..) = delivery_row(&s, &hash).await;
    assert_eq!(status, "sent");
    // The PDF as sent (kept by its sha256) has the caption, said unavailable, and no image.
    let sha: String =
        sqlx::query_scalar("SELECT document_sha256 FROM deliveries WHERE report_hash = $1")
            .bind(&hash)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    let pdf = s.store.get(&sha).await.unwrap();
    let images = pdf
        .windows(b"/Subtype /Image".len())
        .filter(|w| *w == b"/Subtype /Image")
        .count();
    assert_eq!(images, 1, "the unavailable image's grey cell");
    let has = |text: &[u8]| pdf.windows(text.len()).any(|w| w == text);
    assert!(
        has(b"/Width 4") && !has(b"/Width 96"),
        "the placeholder (4 x 3), not the 96 x 64 image"
    );
    if !poppler() {
        return;
    }
    let file = s.dir.path().join("sent.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let out = Command::new("pdftotext")
        .args([file.to_str().unwrap(), "-"])
        .output()
        .unwrap();
    let flat: String = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        flat.contains("RLL nodule (image unavailable: its stored copy could not be read)"),
        "{flat}"
    );
}
