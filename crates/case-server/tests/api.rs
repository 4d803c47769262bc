//! The real server on 127.0.0.1 (port 0) with a real database (a SQLite file in a temporary
//! folder, or a fresh PostgreSQL database when `DATABASE_URL` names a server), driven over HTTP: the signed-report flow, every refusal, bad input, the role x endpoint
//! matrix, and the audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use case_protocol::Role;
use case_protocol::{
    Author, CaseStatus, CaseSummary, Receipt, Report, ReportKind, SignedReport, SigningKey,
    report_hash, sign_report,
};
use case_server::Db;
use case_server::api::{AuditRow, LoginResponse, StoredReport, UserSummary};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use sqlx::Row;

mod support;
use support::*;

/// A reported case stays on its radiologist's worklist for an addendum while its final report
/// came in the last 30 days (`SIGNED_ON_WORKLIST_DAYS`), and leaves it after. Reports are
/// append-only, so the test backdates two finals with the trigger that refuses updates
/// dropped: one a day inside the window stays listed, one a day outside it does not.
#[tokio::test]
async fn a_reported_case_leaves_the_worklist_thirty_days_after_its_final() {
    use sqlx::Executor;
    let s = start().await;
    let rad1 = s.login("rad1").await;
    let key = register_key(&s, &rad1).await;
    let mut reported = Vec::new();
    for _ in 0..2 {
        let case_id = case_in_reading(&s, "rad1").await;
        let signed =
            sign_report(report(&s, &case_id, "rad1", &key, ReportKind::Final), &key).unwrap();
        let r = s
            .post(
                &rad1,
                &format!("/cases/{case_id}/reports"),
                &serde_json::to_value(&signed).unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        reported.push(case_id);
    }
    let listed = || async {
        let list: Vec<CaseSummary> = s.get(&rad1, "/worklist").await.json().await.unwrap();
        list.into_iter().map(|c| c.id).collect::<Vec<_>>()
    };
    // Both listed (in the same second: in either order).
    let mut both = listed().await;
    both.sort();
    let mut expected = reported.clone();
    expected.sort();
    assert_eq!(both, expected);

    let drop = match s.db.backend {
        case_server::db::Backend::Postgres => "DROP TRIGGER reports_no_update ON reports",
        case_server::db::Backend::Sqlite => "DROP TRIGGER reports_no_update",
    };
    s.db.pool.execute(drop).await.unwrap();
    let now = case_protocol::unix_now();
    let window = case_server::api::SIGNED_ON_WORKLIST_DAYS;
    for (case_id, days) in [(&reported[0], window - 1), (&reported[1], window + 1)] {
        sqlx::query("UPDATE reports SET received_at = $1 WHERE case_id = $2 AND kind = 'final'")
            .bind(case_protocol::rfc3339_utc(now - days * 86_400))
            .bind(case_id.as_str())
            .execute(&s.db.pool)
            .await
            .unwrap();
    }
    assert_eq!(listed().await, [reported[0].clone()]);
}

#[tokio::test]
async fn a_signed_report_is_stored_once_receipted_verified_and_audited() {
    let s = start().await;
    let case_id = case_in_reading(&s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let key = register_key(&s, &rad1).await;
    let signed = sign_report(report(&s, &case_id, "rad1", &key, ReportKind::Final), &key).unwrap();
    let path = format!("/cases/{case_id}/reports");

    let r = s
        .post(&rad1, &path, &serde_json::to_value(&signed).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let receipt: Receipt = r.json().await.unwrap();
    assert_eq!(receipt.report_hash, report_hash(&signed.report).unwrap().0);
    assert!(!receipt.duplicate);

    // A retry (same payload) gets the same receipt and stores nothing new.
    let r = s
        .post(&rad1, &path, &serde_json::to_value(&signed).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Receipt = r.json().await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.report_hash.as_str(), again.received_at.as_str()),
        (receipt.report_hash.as_str(), receipt.received_at.as_str())
    );
    assert_eq!(s.report_count().await, 1);

    let coord = s.login("coord").await;
    let case: serde_json::Value = s
        .get(&coord, &format!("/cases/{case_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case["summary"]["status"], "reported");
    // The case stays on its radiologist's worklist, after the cases to read, for an addendum;
    // on no one else's.
    let other = case_in_reading(&s, "rad1").await;
    let list: Vec<CaseSummary> = s.get(&rad1, "/worklist").await.json().await.unwrap();
    let listed: Vec<(&str, CaseStatus)> = list.iter().map(|c| (c.id.as_str(), c.status)).collect();
    assert_eq!(
        listed,
        [
            (other.as_str(), CaseStatus::Reading),
            (case_id.as_str(), CaseStatus::Reported)
        ]
    );
    let rad2 = s.login("rad2").await;
    let list: Vec<CaseSummary> = s.get(&rad2, "/worklist").await.json().await.unwrap();
    assert!(list.is_empty(), "{list:?}");

    // An addendum: a new signed document naming the report it amends.
    let addendum = sign_report(
        Report {
            findings: "Addendum: the nodule is 14.2 mm on the lung window.".into(),
            ..report(
                &s,
                &case_id,
                "rad1",
                &key,
                ReportKind::Addendum {
                    amends: receipt.report_hash.clone(),
                },
            )
        },
        &key,
    )
    .unwrap();
    let r = s
        .post(&rad1, &path, &serde_json::to_value(&addendum).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // QA reads both, each re-verified against the registered key, even after revocation.
    let r = s
        .post(
            &rad1,
            &format!("/keys/{}/revoke", key.verifying_key().id()),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let qa = s.login("qa1").await;
    let stored: Vec<StoredReport> = s.get(&qa, &path).await.json().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|r| r.verified));
    assert_eq!(stored[0].signed, signed);

    // Stored reports cannot be changed or deleted, even from inside the database.
    assert!(
        sqlx::query("UPDATE reports SET signed_json = '{}'")
            .execute(&s.db.pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM reports")
            .execute(&s.db.pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit")
            .execute(&s.db.pool)
            .await
            .is_err()
    );

    // The audit trail has every access, and no patient identity anywhere.
    let admin = s.login("admin").await;
    let audit: Vec<AuditRow> = s
        .get(&admin, &format!("/audit?case_id={case_id}"))
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for expected in [
        "case_create",
        "case_assign",
        "case_status",
        "report_submit",
        "report_retry",
        "case_read",
        "reports_read",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert!(audit.iter().all(|a| {
        a.remote_addr
            .as_deref()
            .is_some_and(|r| r.starts_with("127.0.0.1"))
    }));
    let all = serde_json::to_string(&audit).unwrap();
    assert!(!all.contains("DOE") && !all.contains("MRN-555"));
}

#[tokio::test]
async fn tampered_wrong_key_revoked_key_other_case_and_wrong_role_are_refused() {
    let s = start().await;
    let case_id = case_in_reading(&s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let rad2 = s.login("rad2").await;
    let key1 = register_key(&s, &rad1).await;
    let key2 = register_key(&s, &rad2).await;
    let path = format!("/cases/{case_id}/reports");
    let good = sign_report(
        report(&s, &case_id, "rad1", &key1, ReportKind::Final),
        &key1,
    )
    .unwrap();

    let expect = |r: reqwest::Response, status: StatusCode, words: &'static str| async move {
        let got = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(got, status, "{body}");
        assert!(body.contains(words), "{body:?} lacks {words:?}");
    };

    // Text changed after signing.
    let mut tampered = good.clone();
    tampered.report.impression = "No nodule.".into();
    expect(
        s.post(&rad1, &path, &serde_json::to_value(&tampered).unwrap())
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "does not match",
    )
    .await;

    // Signed with another radiologist's key, named as rad1's report.
    let other_key = sign_report(
        report(&s, &case_id, "rad1", &key2, ReportKind::Final),
        &key2,
    )
    .unwrap();
    expect(
        s.post(&rad1, &path, &serde_json::to_value(&other_key).unwrap())
            .await,
        StatusCode::FORBIDDEN,
        "another user",
    )
    .await;

    // Another radiologist submits to rad1's case: the case does not exist for them.
    let by_rad2 = sign_report(
        report(&s, &case_id, "rad2", &key2, ReportKind::Final),
        &key2,
    )
    .unwrap();
    expect(
        s.post(&rad2, &path, &serde_json::to_value(&by_rad2).unwrap())
            .await,
        StatusCode::NOT_FOUND,
        "no case",
    )
    .await;
    let list: Vec<CaseSummary> = s.get(&rad2, "/worklist").await.json().await.unwrap();
    assert!(list.is_empty(), "rad2 sees {list:?}");
    let list: Vec<CaseSummary> = s.get(&rad1, "/worklist").await.json().await.unwrap();
    assert_eq!(list.len(), 1);

    // Wrong role.
    let coord = s.login("coord").await;
    expect(
        s.post(&coord, &path, &serde_json::to_value(&good).unwrap())
            .await,
        StatusCode::FORBIDDEN,
        "may not",
    )
    .await;

    // A revoked key signs nothing new.
    let r = s
        .post(
            &rad1,
            &format!("/keys/{}/revoke", key1.verifying_key().id()),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    expect(
        s.post(&rad1, &path, &serde_json::to_value(&good).unwrap())
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "revoked",
    )
    .await;
    assert_eq!(s.report_count().await, 0);

    // Illegal status moves.
    expect(
        s.post(
            &coord,
            &format!("/cases/{case_id}/status"),
            &json!({"status": "reported"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "may not",
    )
    .await;
    let fresh: CaseSummary = s
        .post(
            &coord,
            "/cases",
            &serde_json::to_value(new_case("neuro")).unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    let r = s
        .post(
            &coord,
            &format!("/cases/{}/assign", fresh.id),
            &json!({"radiologist": "rad2"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "rad2 does not read neuro");
    let r = s
        .post(
            &coord,
            &format!("/cases/{}/assign", fresh.id),
            &json!({"radiologist": "rad1"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    expect(
        s.post(
            &rad1,
            &format!("/cases/{}/status", fresh.id),
            &json!({"status": "reading"}),
        )
        .await,
        StatusCode::CONFLICT,
        "cannot become reading",
    )
    .await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let s = start().await;
    let case_id = case_in_reading(&s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let key = register_key(&s, &rad1).await;
    let path = format!("{}/cases/{case_id}/reports", s.base);
    let good = serde_json::to_value(
        sign_report(report(&s, &case_id, "rad1", &key, ReportKind::Final), &key).unwrap(),
    )
    .unwrap();

    let send = |body: String, token: Option<String>| {
        let mut req = s
            .http
            .post(&path)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let r = send("{\"report\": ".into(), Some(rad1.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut unknown = good.clone();
    unknown["report"]["colour"] = json!("red");
    let r = send(unknown.to_string(), Some(rad1.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("colour"));
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20));
    let r = send(huge, Some(rad1.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = send(good.to_string(), Some("not-a-token".into()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send(good.to_string(), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The token is judged before the body (intake reads the session together with the rest,
    // but an unreadable body must not answer for a bad token), and so is the role.
    let r = send("{\"report\": ".into(), Some("not-a-token".into()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let coord = s.login("coord").await;
    let r = send("{\"report\": ".into(), Some(coord.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(good.to_string(), Some(coord)).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An expired session, read by intake's one query like every other fact: refused.
    let expired = s.login("rad1").await;
    sqlx::query("UPDATE sessions SET expires_unix = 0 WHERE token_hash = $1")
        .bind(case_server::auth::token_hash(&expired))
        .execute(&s.db.pool)
        .await
        .unwrap();
    let r = send(good.to_string(), Some(expired)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let mut nan = good.clone();
    nan["signature"] = json!("AAAA");
    let r = send(nan.to_string(), Some(rad1.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.try_login("rad1", "wrong").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.report_count().await, 0);
    // The good one still goes in.
    let r = send(good.to_string(), Some(rad1)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Every role against every endpoint: allowed ones succeed, the rest answer 403 (or 404 for a
/// case the role may not see).
#[tokio::test]
async fn role_by_endpoint_matrix() {
    let s = start().await;
    let case_id = case_in_reading(&s, "rad1").await;
    let roles = ["admin", "coord", "rad1", "qa1"];
    // (method, path, body, roles allowed)
    let endpoints: Vec<(&str, String, serde_json::Value, Vec<&str>)> = vec![
        (
            "POST",
            "/cases".into(),
            serde_json::to_value(new_case("chest")).unwrap(),
            vec!["admin", "coord"],
        ),
        (
            "POST",
            format!("/cases/{case_id}/assign"),
            json!({"radiologist": "rad1"}),
            vec!["admin", "coord"],
        ),
        (
            "GET",
            "/worklist".into(),
            json!(null),
            vec!["admin", "coord", "rad1", "qa1"],
        ),
        (
            "GET",
            format!("/cases/{case_id}"),
            json!(null),
            vec!["admin", "coord", "rad1"],
        ),
        (
            "GET",
            format!("/cases/{case_id}/reports"),
            json!(null),
            vec!["admin", "coord", "rad1"],
        ),
        (
            "POST",
            "/keys".into(),
            json!({"public_key": SigningKey::generate().verifying_key().to_base64()}),
            vec!["rad1"],
        ),
        ("GET", "/audit".into(), json!(null), vec!["admin"]),
        (
            "POST",
            "/users".into(),
            json!({"id": "newcoord", "role": "coordinator", "display_name": "New",
                   "password": PASSWORD}),
            vec!["admin"],
        ),
        ("GET", "/users".into(), json!(null), vec!["admin", "coord"]),
    ];
    for (method, path, body, allowed) in &endpoints {
        for role in roles {
            let token = s.login(role).await;
            let r = if *method == "GET" {
                s.get(&token, path).await
            } else {
                s.post(&token, path, body).await
            };
            let status = r.status();
            if allowed.contains(&role) {
                assert!(status.is_success(), "{role} {method} {path}: {status}");
            } else if *method == "GET" && path.starts_with("/cases/") {
                // A case the caller may not see does not exist for them (QA: not yet reported).
                assert_eq!(status, StatusCode::NOT_FOUND, "{role} {method} {path}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} {method} {path}");
            }
        }
    }
}

/// Admins manage accounts over the API as the command line does: the new account logs in;
/// duplicates and bad accounts are refused; the list shows keys and never a password hash.
#[tokio::test]
async fn admins_add_and_list_accounts() {
    let s = start().await;
    let admin = s.login("admin").await;
    let new = json!({"id": "rad3", "role": "radiologist", "display_name": "Dr Three",
                     "subspecialties": ["neuro", "msk"], "password": "another-password"});
    let r = s.post(&admin, "/users", &new).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: UserSummary = r.json().await.unwrap();
    assert_eq!(user.role, Role::Radiologist);
    assert_eq!(user.subspecialties, vec!["neuro", "msk"]);
    assert!(user.keys.is_empty());

    let r = s.post(&admin, "/users", &new).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    for (bad, why) in [
        (
            json!({"id": "rad4", "role": "radiologist", "display_name": "X",
                   "password": "another-password"}),
            "subspecialty",
        ),
        (
            json!({"id": "a b", "role": "admin", "display_name": "X",
                   "password": "another-password"}),
            "user id",
        ),
        (
            json!({"id": "rad5", "role": "admin", "display_name": "X", "password": "short"}),
            "at least 8",
        ),
        // A name the report's PDF cannot print could never sign a report.
        (
            json!({"id": "rad7", "role": "radiologist", "display_name": "Dr Łukasz",
                   "subspecialties": ["neuro"], "password": "another-password"}),
            "U+0141",
        ),
        (
            json!({"id": "rad6", "role": "surgeon", "display_name": "X",
                   "password": "another-password"}),
            // Serde's own words would echo the value; the API names the place instead.
            "wrong type or is out of range at line 1",
        ),
    ] {
        let r = s.post(&admin, "/users", &bad).await;
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
        let text = r.text().await.unwrap();
        assert!(text.contains(why), "{bad}: {text}");
    }

    // The new radiologist logs in, registers a key and revokes it; the list shows both.
    let r = s.try_login("rad3", "another-password").await;
    assert_eq!(r.status(), StatusCode::OK);
    let rad3 = r.json::<LoginResponse>().await.unwrap().token;
    let key = register_key(&s, &rad3).await;
    let key_id = key.verifying_key().id().0;
    let r = s
        .post(&rad3, &format!("/keys/{key_id}/revoke"), &json!(null))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get(&admin, "/users").await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("argon2"), "a password hash left the server");
    let users: Vec<UserSummary> = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["admin", "coord", "qa1", "rad1", "rad2", "rad3"]);
    let rad3 = users.iter().find(|u| u.id == "rad3").unwrap();
    assert_eq!(rad3.keys.len(), 1);
    assert_eq!(rad3.keys[0].key_id, key_id);
    assert!(rad3.keys[0].revoked_at.is_some());

    let audit: Vec<AuditRow> = s.get(&admin, "/audit").await.json().await.unwrap();
    assert!(audit.iter().any(|a| a.action == "user_add"
        && a.detail == "rad3"
        && a.user_id.as_deref() == Some("admin")));
}

/// TLS with a self-signed certificate: a client that trusts it gets HTTP answers; the API
/// works the same over TLS.
#[tokio::test]
async fn the_api_is_served_over_tls() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("cases.db").to_str().unwrap())
        .await
        .unwrap();
    let (cert, key) =
        case_server::tls::write_self_signed(dir.path(), &["localhost".to_string()]).unwrap();
    let config = case_server::tls::server_config(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = case_server::Store::open(dir.path().join("objects").to_str().unwrap()).unwrap();
    tokio::spawn(case_server::serve_tls(
        case_server::Server::new(db, store),
        listener,
        config,
    ));

    // A client that speaks plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /worklist HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1"));

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /worklist HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.contains("Bearer"), "{response}");
}

/// The review's cases: every way a report could slip in where it should not.
#[tokio::test]
async fn intake_rules_the_first_suite_missed() {
    let s = start().await;
    let case_a = case_in_reading(&s, "rad1").await;
    let case_b = case_in_reading(&s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let key = register_key(&s, &rad1).await;

    // QA cannot open a case still being read.
    let qa = s.login("qa1").await;
    assert_eq!(
        s.get(&qa, &format!("/cases/{case_a}")).await.status(),
        StatusCode::NOT_FOUND
    );

    // The author must be the caller, by id and by registered name.
    let mut r = report(&s, &case_a, "rad2", &key, ReportKind::Final);
    let signed = sign_report(r.clone(), &key).unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_a, &signed).await.status(),
        StatusCode::FORBIDDEN
    );
    r.author = Author {
        user_id: "rad1".into(),
        display_name: "Dr Chief".into(),
    };
    let signed = sign_report(r, &key).unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_a, &signed).await.status(),
        StatusCode::FORBIDDEN
    );

    // Posted to another case than the one it names.
    let good_a = sign_report(report(&s, &case_a, "rad1", &key, ReportKind::Final), &key).unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_b, &good_a).await.status(),
        StatusCode::BAD_REQUEST
    );

    // An addendum before any report, then the final report, then a second final report.
    let early = sign_report(
        report(
            &s,
            &case_a,
            "rad1",
            &key,
            ReportKind::Addendum {
                amends: "00".repeat(32),
            },
        ),
        &key,
    )
    .unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_a, &early).await.status(),
        StatusCode::CONFLICT
    );
    let r = post_report(&s, &rad1, &case_a, &good_a).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let receipt_a: Receipt = r.json().await.unwrap();
    let mut second = report(&s, &case_a, "rad1", &key, ReportKind::Final);
    second.impression = "Changed my mind.".into();
    let second = sign_report(second, &key).unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_a, &second).await.status(),
        StatusCode::CONFLICT
    );

    // A stored report resent with a bad signature is not a retry.
    let mut forged = good_a.clone();
    forged.signature = "AAAA".into();
    assert_eq!(
        post_report(&s, &rad1, &case_a, &forged).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // An addendum on case B amending case A's report.
    let b_final = sign_report(report(&s, &case_b, "rad1", &key, ReportKind::Final), &key).unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_b, &b_final).await.status(),
        StatusCode::CREATED
    );
    let cross = sign_report(
        report(
            &s,
            &case_b,
            "rad1",
            &key,
            ReportKind::Addendum {
                amends: receipt_a.report_hash,
            },
        ),
        &key,
    )
    .unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_b, &cross).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(s.report_count().await, 2);

    // A reported case cannot be reassigned.
    let coord = s.login("coord").await;
    let r = s
        .post(
            &coord,
            &format!("/cases/{case_a}/assign"),
            &json!({"radiologist": "rad2"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Error messages never echo values (a numeric patient id here).
    let mut bad = serde_json::to_value(new_case("chest")).unwrap();
    bad["patient"]["id"] = json!(987654321);
    let r = s.post(&coord, "/cases", &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = r.text().await.unwrap();
    assert!(!text.contains("987654321"), "{text}");
}

/// `report` signed by `key` as `sign_report` would, but without its checks: what a client
/// that skips them could send.
fn sign_unchecked(report: Report, key: &SigningKey) -> SignedReport {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let bytes = case_protocol::canonical_bytes(&report).unwrap();
    let signature = ed25519_dalek::SigningKey::from_bytes(&key.to_bytes()).sign(&bytes);
    SignedReport {
        report,
        signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    }
}

/// What is faxed is what was signed, about the case's studies, at a possible time: a report
/// with a character the PDF cannot print, naming a study of another case (or none, or one
/// twice), signed ahead of the server's clock or before its case or its key existed, or an addendum
/// signed before the report it amends is refused, and nothing is stored.
#[tokio::test]
async fn reports_must_print_as_signed_name_the_cases_studies_and_be_signed_in_time() {
    let s = start().await;
    let case_a = case_in_reading(&s, "rad1").await;
    let case_b = case_in_reading(&s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let key = register_key(&s, &rad1).await;
    let good = report(&s, &case_a, "rad1", &key, ReportKind::Final);
    let refused = |r: reqwest::Response| async move {
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        text
    };

    // The workstation's signing refuses "≥"; a client that signs it anyway is refused here.
    let mut r = good.clone();
    r.impression = "Stenosis ≥ 50%.".into();
    assert!(sign_report(r.clone(), &key).is_err());
    let text = refused(post_report(&s, &rad1, &case_a, &sign_unchecked(r, &key)).await).await;
    assert!(
        text.contains("U+2265") && text.contains("impression"),
        "{text}"
    );
    let mut r = good.clone();
    r.findings = "Liver:\tnormal.".into();
    refused(post_report(&s, &rad1, &case_a, &sign_unchecked(r, &key)).await).await;
    let mut r = good.clone();
    r.measurements[0].label = "nodule → 6 mm".into();
    let text = refused(post_report(&s, &rad1, &case_a, &sign_unchecked(r, &key)).await).await;
    assert!(text.contains("measurement 1 label"), "{text}");

    // Studies: another case's, none, one twice.
    let study_b = s.studies.lock().unwrap()[&case_b].clone();
    let own = good.study_instance_uids[0].clone();
    for (studies, says) in [
        (vec![study_b.clone()], "not a study of case"),
        (vec![], "names no study"),
        (vec![own.clone(), own.clone()], "twice"),
        (vec![own.clone(), study_b], "not a study of case"),
    ] {
        let mut r = good.clone();
        r.study_instance_uids = studies.clone();
        let text =
            refused(post_report(&s, &rad1, &case_a, &sign_report(r, &key).unwrap()).await).await;
        assert!(text.contains(says), "{studies:?}: {text}");
    }

    // Times: an hour ahead of the server, a day before the case was created.
    let now = case_protocol::unix_now();
    for (at, says) in [
        (now + 3600, "ahead of the server"),
        (now - 86_400, "before case"),
    ] {
        let mut r = good.clone();
        r.signed_at = case_protocol::rfc3339_utc(at);
        let text =
            refused(post_report(&s, &rad1, &case_a, &sign_report(r, &key).unwrap()).await).await;
        assert!(text.contains(says), "{text}");
    }
    // A day before the key that signs it was registered, in a case created two days ago: no
    // key can vouch for a time before it existed (a report dated back past its key).
    sqlx::query("UPDATE cases SET created_at = $1 WHERE id = $2")
        .bind(case_protocol::rfc3339_utc(now - 2 * 86_400))
        .bind(&case_a)
        .execute(&s.db.pool)
        .await
        .unwrap();
    let mut r = good.clone();
    r.signed_at = case_protocol::rfc3339_utc(now - 86_400);
    let text = refused(post_report(&s, &rad1, &case_a, &sign_report(r, &key).unwrap()).await).await;
    assert!(text.contains("before its signing key"), "{text}");
    assert_eq!(s.report_count().await, 0, "nothing refused was stored");

    // Within the clock skew a workstation a minute ahead is fine; then an addendum dated
    // before the report it amends is refused, one after it stored.
    let mut r = good.clone();
    r.signed_at = case_protocol::rfc3339_utc(now + 60);
    let final_report = sign_report(r, &key).unwrap();
    let receipt: Receipt = {
        let resp = post_report(&s, &rad1, &case_a, &final_report).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    };
    let addendum = |at: i64| {
        let mut r = report(
            &s,
            &case_a,
            "rad1",
            &key,
            ReportKind::Addendum {
                amends: receipt.report_hash.clone(),
            },
        );
        r.findings = "Addendum: no change.".into();
        r.signed_at = case_protocol::rfc3339_utc(at);
        sign_report(r, &key).unwrap()
    };
    let text = refused(post_report(&s, &rad1, &case_a, &addendum(now)).await).await;
    assert!(text.contains("before the report it amends"), "{text}");
    let resp = post_report(&s, &rad1, &case_a, &addendum(now + 61)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(s.report_count().await, 2);
    // An addendum in another case naming case A's report, dated before it, is refused without
    // being compared with that report's time: the answer said the report exists and when it
    // was signed.
    let mut r = report(
        &s,
        &case_b,
        "rad1",
        &key,
        ReportKind::Addendum {
            amends: receipt.report_hash.clone(),
        },
    );
    r.signed_at = case_protocol::rfc3339_utc(now);
    let resp = post_report(&s, &rad1, &case_b, &sign_report(r, &key).unwrap()).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_client_error(), "{status} {text}");
    assert!(
        !text.contains("before the report it amends"),
        "{status} {text}"
    );
    assert_eq!(s.report_count().await, 2);
}

/// What a report was signed with stays as it was: once the final report is stored, no key
/// image is added (it would print in the signed report's PDF unsigned) and no study is
/// uploaded into the case; before it, a caption the PDF cannot print is refused.
#[tokio::test]
async fn a_reported_case_takes_no_more_images() {
    let s = start().await;
    let case = case_in_reading(&s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let coord = s.login("coord").await;
    let key = register_key(&s, &rad1).await;
    let key_image = |caption: &str| {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/cases/{case}/key-images", s.base),
            &[("caption", caption)],
        )
        .unwrap();
        s.http
            .post(url)
            .bearer_auth(&rad1)
            .body(key_image_png())
            .send()
    };
    // A case whose patient name the faxed PDF cannot print is refused, naming the field.
    let mut unprintable = new_case("chest");
    unprintable.patient.name = "Łukasz^Jan".into();
    let r = s
        .post(
            &coord,
            "/cases",
            &serde_json::to_value(&unprintable).unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("patient's name") && text.contains("U+0141"),
        "{text}"
    );

    // A referral no fax can reach, or a birth date that is no date, is refused too: the
    // report would be recorded sent to nobody, and intake compares the date with the studies'.
    for (fax, birth, said) in [
        ("", "1970-01-01", "fax number"),
        ("+1", "1970-01-01", "fax number"),
        ("416-555-0100", "1970-01-01", "fax number"),
        ("+1 (416) 555-0100", "1970-02-30", "birth date"),
        ("+1 (416) 555-0100", "19700101", "birth date"),
        ("+1 (416) 555-0100", "1970-+1-01", "birth date"),
    ] {
        let mut case = new_case("chest");
        case.referral.physician.fax = fax.into();
        case.patient.birth_date = birth.into();
        let r = s
            .post(&coord, "/cases", &serde_json::to_value(&case).unwrap())
            .await;
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fax} {birth}"
        );
        let text = r.text().await.unwrap();
        assert!(text.contains(said), "{text}");
    }
    let mut written = new_case("chest");
    written.referral.physician.fax = "+1 (416) 555-0100".into();
    written.patient.birth_date = "2000-02-29".into();
    let r = s
        .post(&coord, "/cases", &serde_json::to_value(&written).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "as people write a number");
    // Kept as E.164, as the fax gateway's sidecar names it.
    let created: CaseSummary = r.json().await.unwrap();
    let detail: serde_json::Value = s
        .get(&coord, &format!("/cases/{}", created.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["referral"]["physician"]["fax"], "+14165550100",
        "{detail}"
    );

    let r = key_image("nodule → 6 mm").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("U+2192"));
    assert_eq!(
        key_image("RLL nodule").await.unwrap().status(),
        StatusCode::CREATED
    );
    // An image whose sender lost the case between the route's check and the write (here
    // rad2, whose check would have passed before the case went to rad1) is not added: it
    // would print in rad1's signed report.
    let lost = case_server::delivery::add_key_image(
        &s.db,
        &s.store,
        &case,
        "rad2",
        "not theirs",
        key_image_png(),
    )
    .await;
    assert!(
        matches!(lost, Err(case_server::delivery::KeyImageError::NotAssigned)),
        "{lost:?}"
    );
    // A refused image leaves no object behind; the same bytes as an image already added
    // are not deleted with it.
    let other = key_image_png_marked(200);
    let lost = case_server::delivery::add_key_image(
        &s.db,
        &s.store,
        &case,
        "rad2",
        "not theirs either",
        other.clone(),
    )
    .await;
    assert!(lost.is_err(), "{lost:?}");
    let other_key = case_server::store::content_key(&other);
    let first_key = case_server::store::content_key(&key_image_png());
    assert!(
        !s.store.exists(&other_key).await.unwrap(),
        "the refused image's object stayed"
    );
    assert!(s.store.exists(&first_key).await.unwrap());

    let signed = sign_report(report(&s, &case, "rad1", &key, ReportKind::Final), &key).unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case, &signed).await.status(),
        StatusCode::CREATED
    );
    let r = key_image("added later").await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("reported"));
    let images: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM key_images WHERE case_id = $1")
        .bind(&case)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(images, 1);

    let instances = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM instances WHERE case_id = $1")
            .bind(&case)
            .fetch_one(&s.db.pool)
            .await
            .unwrap()
    };
    let before = instances().await;
    let r = upload_synthetic_study(&s, &coord, &case).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Why, in the Warning header of the PS3.18 store response; every instance not stored.
    let warning = r.headers()["warning"].to_str().unwrap().to_string();
    assert!(
        warning.contains("was not stored before its report was signed"),
        "{warning}"
    );
    let answer: serde_json::Value = r.json().await.unwrap();
    let failed = answer["00081198"]["Value"].as_array().unwrap();
    assert_eq!(failed.len(), 4, "{answer}");
    assert!(
        failed
            .iter()
            .all(|f| f["00081197"]["Value"][0] == 0x0110 && f["00081155"]["Value"][0].is_string()),
        "{answer}"
    );
    assert_eq!(instances().await, before, "nothing stored");
    // The case's own study sent again as it is (a PACS retrying) is accepted, adding nothing.
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT object_key FROM instances WHERE case_id = $1")
            .bind(&case)
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    let mut files = Vec::new();
    for k in &keys {
        files.push(s.store.get(k).await.unwrap().to_vec());
    }
    let r = stow(
        &s,
        &coord,
        &format!("/cases/{case}/dicomweb/studies"),
        &files,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(instances().await, before);
}

/// A failed login keeps the attempted id only when it names an account (a password typed in
/// the user field, or a megabyte of junk, never enters the append-only trail), and the trail
/// is read page by page.
#[tokio::test]
async fn failed_logins_keep_no_typed_secret_and_the_audit_is_read_in_pages() {
    let s = start().await;
    for (user, password) in [
        ("rad1", "not-the-password"),
        ("Summer2026!secret", "x"),
        (&*"u".repeat(100_000), "x"),
    ] {
        let r = s.try_login(user, password).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let admin = s.login("admin").await;
    let audit: Vec<AuditRow> = s.get(&admin, "/audit").await.json().await.unwrap();
    let failed: Vec<&str> = audit
        .iter()
        .filter(|a| a.action == "login_failed")
        .map(|a| a.detail.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "rad1",
            "unknown user (17 characters)",
            "unknown user (100000 characters)"
        ]
    );
    assert!(
        !serde_json::to_string(&audit)
            .unwrap()
            .contains("Summer2026")
    );

    let page = |q: String| {
        let s = &s;
        let admin = admin.clone();
        async move {
            s.get(&admin, &format!("/audit?{q}"))
                .await
                .json::<Vec<AuditRow>>()
                .await
                .unwrap()
        }
    };
    let r = s.get(&admin, "/audit?limit=2").await;
    assert!(
        r.headers().get("x-audit-next-after").is_some(),
        "a full page says there is more"
    );
    let first = page("limit=2".into()).await;
    let second = page(format!("limit=2&after={}", first[1].id)).await;
    assert_eq!(first.len() + second.len(), 4);
    let paged: Vec<&AuditRow> = first.iter().chain(&second).collect();
    let whole: Vec<&AuditRow> = audit.iter().take(4).collect();
    assert_eq!(paged, whole);

    // Each read of the trail is in it: who, which page, how many rows (the whole trail's
    // first read, the header check, the two pages), and the answer holds none of a read
    // still to come.
    let after_reads = page(format!("after={}", audit.last().unwrap().id)).await;
    let reads: Vec<(&str, Option<&str>, &str)> = after_reads
        .iter()
        .filter(|a| a.action == "audit_read")
        .map(|a| {
            (
                a.user_id.as_deref().unwrap(),
                a.case_id.as_deref(),
                a.detail.as_str(),
            )
        })
        .collect();
    assert_eq!(
        reads,
        [
            ("admin", None, &*format!("after 0: {} rows", audit.len())),
            ("admin", None, "after 0: 2 rows"),
            ("admin", None, "after 0: 2 rows"),
            ("admin", None, &*format!("after {}: 2 rows", first[1].id)),
        ]
    );
    // Paging one row at a time, and polling for what is new, come to an end: a page of
    // nothing but records of reads is not recorded again.
    let mut after = 0;
    let mut pages = 0;
    loop {
        let r = s
            .get(&admin, &format!("/audit?limit=1&after={after}"))
            .await;
        let next = r
            .headers()
            .get("x-audit-next-after")
            .map(|v| v.to_str().unwrap().parse::<i64>().unwrap());
        let rows: Vec<AuditRow> = r.json().await.unwrap();
        pages += 1;
        assert!(pages < 500, "paging one row at a time never ends");
        match next {
            Some(next) => after = next,
            None => {
                assert!(rows.is_empty());
                break;
            }
        }
    }
    let polled = page(format!("after={after}")).await;
    assert!(polled.is_empty(), "{polled:?}");
    // Each row other than a read was read once one at a time, and each such read recorded
    // (this whole read is recorded after the answer: not in it).
    let whole = page(String::new()).await;
    let others = whole.iter().filter(|a| a.action != "audit_read").count();
    let single = whole
        .iter()
        .filter(|a| a.action == "audit_read" && a.detail.ends_with(": 1 rows"))
        .count();
    assert_eq!(single, others);
    let after = whole.last().unwrap().id;

    // A trail asked of a case that does not exist is refused; the refusal is recorded as
    // one, without what was typed (the query is never kept).
    let r = s.get(&admin, "/audit?case_id=Jane%20Doe").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let later: Vec<(String, Option<String>, String)> = page(format!("after={after}"))
        .await
        .into_iter()
        .map(|a| (a.action, a.case_id, a.detail))
        .collect();
    assert_eq!(
        later,
        [
            (
                "audit_read".to_string(),
                None,
                format!("after 0: {} rows", whole.len())
            ),
            ("read_refused".to_string(), None, "404 /audit".to_string())
        ]
    );
    assert!(!format!("{later:?}").contains("Jane"));
}

/// Audit ids are handed out before commit, so a row can commit after one with a higher id.
/// A page must not hold a row while a lower id is still to commit: the reader paging on
/// from it would never see that row. PostgreSQL only (SQLite has one writer, so the two
/// transactions below cannot overlap).
#[tokio::test]
async fn an_audit_page_waits_for_rows_still_to_commit_below_it() {
    let s = start().await;
    if s.db.backend != case_server::db::Backend::Postgres {
        eprintln!("skipped: PostgreSQL only (DATABASE_URL unset)");
        return;
    }
    let last = |rows: &[sqlx::any::AnyRow]| rows.last().map_or(0, |r| r.get::<i64, _>("id"));
    let after = last(&s.db.audit_page(None, 0, i64::MAX).await.unwrap());
    // The first transaction takes the lower id and stays open; the second commits.
    let mut first = s.db.begin_write().await.unwrap();
    s.db.audit_in(&mut first, Some("admin"), "first", None, None, "")
        .await
        .unwrap();
    let mut second = s.db.begin_write().await.unwrap();
    s.db.audit_in(&mut second, Some("admin"), "second", None, None, "")
        .await
        .unwrap();
    second.commit().await.unwrap();
    let reader = {
        let db = s.db.clone();
        tokio::spawn(async move { db.audit_page(None, after, 100).await.unwrap() })
    };
    // Time for the reader to read now, if it would.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    first.commit().await.unwrap();
    let page = reader.await.unwrap();
    let actions: Vec<String> = page.iter().map(|r| r.get("action")).collect();
    assert_eq!(
        actions,
        ["first", "second"],
        "a page passed a row still to commit"
    );
}

/// A request whose client goes away while it waits still runs to its end, with its audit row
/// (hyper dropped the handler: a change committed before its audit row stood unaudited).
/// SQLite only: the test holds this server's write turn to keep the request waiting.
#[tokio::test]
async fn a_change_whose_client_went_away_is_finished_and_audited() {
    let s = start().await;
    if s.db.backend != case_server::db::Backend::Sqlite {
        return;
    }
    let coord = s.login("coord").await;
    let case = create_case(&s, &coord).await;
    let turn = s.db.write_turn().await;
    let gone = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!("{}/cases/{}/assign", s.base, case.id))
        .bearer_auth(&coord)
        .json(&json!({"radiologist": "rad2"}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up while the server waited");
    // Let the server see the closed connection before it may go on.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(turn);
    let mut done = false;
    for _ in 0..100 {
        let assigned: Option<String> =
            sqlx::query_scalar("SELECT assigned_to FROM cases WHERE id = $1")
                .bind(&case.id)
                .fetch_one(&s.db.pool)
                .await
                .unwrap();
        let audited: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit WHERE case_id = $1 AND action = 'case_assign'",
        )
        .bind(&case.id)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
        if assigned.as_deref() == Some("rad2") && audited == 1 {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(done, "the assignment was not finished and audited");
}

/// A session can be ended: by its owner (logout), or with every session of an account an
/// admin disables (a lost laptop); a disabled account cannot log in, and its signed reports
/// stay listed and verified.
#[tokio::test]
async fn sessions_end_at_logout_and_when_an_account_is_disabled() {
    let s = start().await;
    let case_id = case_in_reading(&s, "rad1").await;
    let rad1 = s.login("rad1").await;
    let key = register_key(&s, &rad1).await;
    let signed = sign_report(report(&s, &case_id, "rad1", &key, ReportKind::Final), &key).unwrap();
    assert_eq!(
        post_report(&s, &rad1, &case_id, &signed).await.status(),
        StatusCode::CREATED
    );
    let worklist = |token: String| {
        let s = &s;
        async move { s.get(&token, "/worklist").await.status() }
    };

    // Logout ends that session only.
    let other = s.login("rad1").await;
    let r = s.post(&rad1, "/logout", &json!(null)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(worklist(rad1.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(worklist(other.clone()).await, StatusCode::OK);

    // Disabling: only admins; every session ends; no new login; listed as disabled.
    let coord = s.login("coord").await;
    let r = s.post(&coord, "/users/rad1/disable", &json!(null)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let admin = s.login("admin").await;
    let r = s.post(&admin, "/users/rad1/disable", &json!(null)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(worklist(other).await, StatusCode::UNAUTHORIZED);
    let r = s.try_login("rad1", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s.post(&admin, "/users/rad1/disable", &json!(null)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "already disabled");
    // A login whose password check ends after the disable gets no session (its account
    // was checked before): what it would have written is refused.
    let late = case_server::auth::new_token();
    let expires = case_protocol::unix_now() + 3600;
    let started =
        s.db.start_session(&case_server::auth::token_hash(&late), "rad1", expires)
            .await
            .unwrap();
    assert!(!started, "a session for a disabled account");
    assert_eq!(worklist(late).await, StatusCode::UNAUTHORIZED);
    // A session row of the disabled account written all the same (as that login wrote it
    // before) does not come back to life when the account is enabled: enabling ends it.
    let leaked = case_server::auth::new_token();
    sqlx::query("INSERT INTO sessions (token_hash, user_id, expires_unix) VALUES ($1, $2, $3)")
        .bind(case_server::auth::token_hash(&leaked))
        .bind("rad1")
        .bind(expires)
        .execute(&s.db.pool)
        .await
        .unwrap();
    let audit: Vec<AuditRow> = s.get(&admin, "/audit").await.json().await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "login_failed" && a.detail == "rad1 (disabled)"),
        "who tried the disabled account is kept"
    );
    let users: Vec<UserSummary> = s.get(&admin, "/users").await.json().await.unwrap();
    let rad1_row = users.iter().find(|u| u.id == "rad1").unwrap();
    assert!(rad1_row.disabled_at.is_some());
    assert!(
        users
            .iter()
            .filter(|u| u.id != "rad1")
            .all(|u| u.disabled_at.is_none())
    );
    let qa = s.login("qa1").await;
    let stored: Vec<StoredReport> = s
        .get(&qa, &format!("/cases/{case_id}/reports"))
        .await
        .json()
        .await
        .unwrap();
    assert!(stored.len() == 1 && stored[0].verified);

    // No case goes to a disabled account; enabled again, it logs in and takes cases.
    let next = create_case(&s, &coord).await;
    let assign = |token: String| {
        let (s, path) = (&s, format!("/cases/{}/assign", next.id));
        async move { s.post(&token, &path, &json!({"radiologist": "rad1"})).await }
    };
    let r = assign(coord.clone()).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("disabled"));
    let r = s.post(&coord, "/users/rad1/enable", &json!(null)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s.post(&admin, "/users/rad1/enable", &json!(null)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(worklist(leaked).await, StatusCode::UNAUTHORIZED);
    // Enabling an account that is enabled changes nothing and logs nobody out.
    let working = s.login("rad1").await;
    let r = s.post(&admin, "/users/rad1/enable", &json!(null)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "already enabled");
    assert_eq!(worklist(working).await, StatusCode::OK);
    assert_eq!(assign(coord.clone()).await.status(), StatusCode::OK);
    let audit: Vec<AuditRow> = s.get(&admin, "/audit").await.json().await.unwrap();
    for action in ["logout", "user_disable", "user_enable"] {
        assert!(audit.iter().any(|a| a.action == action), "{action}");
    }
}

async fn post_report(
    s: &Server,
    token: &str,
    case: &str,
    signed: &SignedReport,
) -> reqwest::Response {
    s.post(
        token,
        &format!("/cases/{case}/reports"),
        &serde_json::to_value(signed).unwrap(),
    )
    .await
}

/// The group-committing writer, driven directly with many reports at once (so they share
/// batches): valid reports are stored with their case status and audit row; a copy of a
/// stored report gets the original receipt; a revoked key and a case not assigned to the
/// author write nothing; a report the database itself rejects (it amends a report that does
/// not exist) fails alone: the batch is written again report by report and the others stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_writer_isolates_each_report_in_a_batch() {
    use case_server::report_writer::{ReportWrite, WriteOutcome};
    let s = start().await;
    let db = &s.db;
    let key = SigningKey::generate();
    db.add_key("rad1", &key.verifying_key().to_base64())
        .await
        .unwrap();
    let revoked = SigningKey::generate();
    let revoked_id = db
        .add_key("rad1", &revoked.verifying_key().to_base64())
        .await
        .unwrap();
    db.revoke_key(&revoked_id).await.unwrap();

    let mut cases = Vec::new();
    for _ in 0..24 {
        cases.push(case_in_reading(&s, "rad1").await);
    }
    let other = case_in_reading(&s, "rad2").await;
    let write = |case_id: &str, key: &SigningKey, amends: Option<String>, tag: usize| {
        let mut r = report(&s, case_id, "rad1", key, ReportKind::Final);
        r.findings = format!("Finding {tag}.");
        let key_id = r.key_id.clone();
        let signed = sign_report(r.clone(), key).unwrap();
        ReportWrite {
            report_hash: report_hash(&r).unwrap().0,
            case_id: case_id.to_string(),
            amends,
            author_id: "rad1".into(),
            key_id,
            signed_json: serde_json::to_string(&signed).unwrap(),
            canonical: case_protocol::canonical_bytes(&r).unwrap(),
            remote_addr: Some("127.0.0.1:1".into()),
        }
    };
    // 0..20 valid; 20, 21: the same report as 0 (copies); 22: revoked key; 23: another
    // radiologist's case; 24: amends a report that does not exist (the database refuses).
    let mut jobs: Vec<ReportWrite> = (0..20).map(|i| write(&cases[i], &key, None, i)).collect();
    jobs.push(write(&cases[0], &key, None, 0));
    jobs.push(write(&cases[0], &key, None, 0));
    jobs.push(write(&cases[22], &revoked, None, 22));
    jobs.push(write(&other, &key, None, 23));
    jobs.push(write(&cases[23], &key, Some("0".repeat(64)), 24));
    // Two bursts: the valid reports and the copies first (a clean batch: nothing is written
    // again), then the three that fail.
    let failing = jobs.split_off(22);
    let mut outcomes = Vec::new();
    for (burst, jobs) in [jobs, failing].into_iter().enumerate() {
        let mut tasks = Vec::new();
        for job in jobs {
            let db = db.clone();
            tasks.push(tokio::spawn(
                async move { db.reports.write(&db, job).await },
            ));
        }
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        if burst == 0 {
            let stats = db.reports.stats();
            assert_eq!(stats.rewritten, 0, "valid reports and copies: {stats:?}");
            assert!(
                stats.batches < 22,
                "no two reports shared a batch: {stats:?}"
            );
        }
    }
    let first_receipt = match &outcomes[0] {
        Ok(WriteOutcome::Stored(r)) | Ok(WriteOutcome::Duplicate(r)) => r.clone(),
        other => panic!("{other:?}"),
    };
    let mut stored = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (0..20, Ok(WriteOutcome::Stored(r))) => {
                stored += 1;
                assert_eq!(r.case_id, cases[i]);
            }
            // One of the three copies of report 0 is stored, the others get its receipt.
            (0 | 20 | 21, Ok(WriteOutcome::Duplicate(r))) => {
                assert_eq!(r.report_hash, first_receipt.report_hash);
            }
            (20 | 21, Ok(WriteOutcome::Stored(_))) => stored += 1,
            (22 | 23, Ok(WriteOutcome::Changed(m))) => assert!(m.contains("revoked"), "{m}"),
            (24, Err(_)) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(stored, 20, "{outcomes:?}");
    let stats = db.reports.stats();
    assert_eq!(stats.reports, 25);
    assert!(
        stats.batches < 25,
        "no two reports shared a batch: {stats:?}"
    );
    assert!(
        stats.rewritten >= 1,
        "the failing report's batch was not rewritten: {stats:?}"
    );
    assert_eq!(s.report_count().await, 20);
    let reported: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cases WHERE status = 'reported'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(reported, 20);
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE action = 'report_submit'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(audited, 20);
    for case in [&cases[22], &cases[23], &other] {
        let status = db.case_summary(case).await.unwrap().unwrap().status;
        assert_eq!(status, CaseStatus::Reading, "{case}");
    }
}
