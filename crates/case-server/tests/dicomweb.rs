//! DICOMweb on the real server over HTTP: STOW-RS of a real CT series, QIDO-RS searches,
//! WADO-RS instances, metadata, frames and rendered images checked against the files (read
//! independently with dicom-object), the role and assignment scope, the audit trail, and bad
//! uploads that must store nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use case_protocol::multipart;
use case_protocol::{CaseSummary, NewCase};
use case_server::store::content_key;
use dicom_dictionary_std::tags;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// `../shared/dicom/NAME` from the project root; absent: skip, except in CI.
fn shared_dicom(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/dicom")
        .join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").map(|v| v != "true").unwrap_or(true),
        "../shared/dicom/{name} is missing: CI must have the shared test data"
    );
    eprintln!("SKIPPED: ../shared/dicom/{name} is absent");
    None
}

fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    v.sort();
    v
}

/// A case for `birth_date` (YYYY-MM-DD) assigned to rad1; returns its id.
async fn case_for(s: &Server, coord: &str, birth_date: &str) -> String {
    let mut new: NewCase = new_case("chest");
    new.patient.birth_date = birth_date.into();
    let r = s
        .post(coord, "/cases", &serde_json::to_value(new).unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let case: CaseSummary = r.json().await.unwrap();
    let r = s
        .post(
            coord,
            &format!("/cases/{}/assign", case.id),
            &json!({"radiologist": "rad1"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    case.id
}

async fn get_json(s: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    let r = s.get(token, path).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn first<'a>(v: &'a Value, tag: &str) -> &'a Value {
    &v[tag]["Value"][0]
}

/// The parts of a multipart answer.
async fn parts(r: reqwest::Response) -> Vec<(String, Vec<u8>)> {
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let m = multipart::MediaType::parse(&ct);
    assert_eq!(m.essence, "multipart/related", "{ct}");
    let body = r.bytes().await.unwrap();
    multipart::parse(&body, m.param("boundary").unwrap())
        .unwrap()
        .into_iter()
        .map(|p| (p.content_type, body[p.range].to_vec()))
        .collect()
}

async fn instance_rows(s: &Server) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM instances")
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

fn stored_objects(s: &Server) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() { walk(&p) } else { 1 }
            })
            .sum()
        })
    }
    walk(&s.dir.path().join("objects"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_mr_study_goes_in_by_stow_and_comes_back_identical() {
    // GE multiphase MR: 10 slices x 10 temporal positions, dated (undated studies are refused
    // by the intake rules, and the tilted CT of the shared set is undated).
    let Some(dir) = shared_dicom("mr/ge_multiphase/dicom") else {
        return;
    };
    let files = dicom_files(&dir);
    assert_eq!(files.len(), 100);
    let n = files.len();
    // The files are years old: this server accepts them (the rule is configurable).
    let s = start_with(|state| state.rules.max_study_age_days = 100_000).await;
    let coord = s.login("coord").await;
    let first_file = dicom_object::open_file(&files[0]).unwrap();
    let text = |tag| {
        first_file
            .element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let birth = text(tags::PATIENT_BIRTH_DATE);
    let birth = if birth.len() == 8 {
        format!("{}-{}-{}", &birth[0..4], &birth[4..6], &birth[6..8])
    } else {
        String::new()
    };
    let study_uid = text(tags::STUDY_INSTANCE_UID);
    let series_uid = text(tags::SERIES_INSTANCE_UID);
    let study_date = text(tags::STUDY_DATE);
    let patient_id = text(tags::PATIENT_ID);
    let case = case_for(&s, &coord, &birth).await;
    let rows: usize = text(tags::ROWS).parse().unwrap();
    let columns: usize = text(tags::COLUMNS).parse().unwrap();

    // Nobody but a coordinator uploads.
    let rad1 = s.login("rad1").await;
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let r = stow(
        &s,
        &rad1,
        &format!("/cases/{case}/dicomweb/studies"),
        &bytes,
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = stow(
        &s,
        &coord,
        &format!("/cases/{case}/dicomweb/studies/{study_uid}"),
        &bytes,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let answer: Value = r.json().await.unwrap();
    let referenced = answer["00081199"]["Value"].as_array().unwrap();
    assert_eq!(referenced.len(), n);
    assert!(
        first(&answer, "00081190")
            .as_str()
            .unwrap()
            .ends_with(&format!("/cases/{case}/dicomweb/studies/{study_uid}"))
    );
    // The same upload again stores nothing new.
    let r = stow(
        &s,
        &coord,
        &format!("/cases/{case}/dicomweb/studies"),
        &bytes,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(instance_rows(&s).await, n as i64);
    assert_eq!(stored_objects(&s), n);

    // QIDO-RS.
    let (st, studies) = get_json(&s, &rad1, "/dicomweb/studies").await;
    assert_eq!(st, StatusCode::OK);
    let studies = studies.as_array().unwrap();
    assert_eq!(studies.len(), 1);
    assert_eq!(first(&studies[0], "0020000D"), study_uid.as_str());
    assert_eq!(first(&studies[0], "00080061"), "MR");
    assert_eq!(first(&studies[0], "00201208"), n);
    assert_eq!(first(&studies[0], "00201206"), 1);
    assert_eq!(first(&studies[0], "00080020"), study_date.as_str());
    for (query, expected) in [
        (format!("PatientID={patient_id}"), 1),
        ("PatientID=NOBODY".to_string(), 0),
        (format!("StudyDate={study_date}-"), 1),
        (format!("00080020=-{study_date}"), 1),
        ("StudyDate=19000101-19000102".to_string(), 0),
        ("ModalitiesInStudy=MR".to_string(), 1),
        ("ModalitiesInStudy=CT".to_string(), 0),
        (format!("StudyInstanceUID=1.2.3,{study_uid}"), 1),
        ("PatientName=*".to_string(), 1),
    ] {
        let (st, v) = get_json(&s, &rad1, &format!("/dicomweb/studies?{query}")).await;
        assert_eq!(st, StatusCode::OK, "{query}");
        assert_eq!(v.as_array().unwrap().len(), expected, "{query}");
    }
    // A study held by two cases (kept from before one study, one case): here a CT copy of one
    // instance in an unassigned case. The MR case's study does not match ModalitiesInStudy=CT
    // through the other case's copy (it did: the modality subquery was not of the case), and
    // each case lists its own modalities.
    let r = s
        .post(
            &coord,
            "/cases",
            &serde_json::to_value(new_case("chest")).unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let other: CaseSummary = r.json().await.unwrap();
    let copied = sqlx::query(
        "INSERT INTO instances (case_id, study_uid, series_uid, sop_uid, sop_class_uid,
             transfer_syntax_uid, object_key, size_bytes, modality, study_date,
             study_description, accession_number, patient_id, patient_name, series_number,
             series_description, instance_number, pixel_rows, pixel_columns, number_of_frames,
             metadata_json, stored_at)
         SELECT $1, study_uid, series_uid, sop_uid, sop_class_uid, transfer_syntax_uid,
             object_key, size_bytes, 'CT', study_date, study_description, accession_number,
             patient_id, patient_name, series_number, series_description, instance_number,
             pixel_rows, pixel_columns, number_of_frames, metadata_json, stored_at
         FROM instances WHERE case_id = $2 AND instance_number = 1",
    )
    .bind(&other.id)
    .bind(&case)
    .execute(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(copied.rows_affected(), 1);
    let (_, v) = get_json(&s, &rad1, "/dicomweb/studies?ModalitiesInStudy=CT").await;
    assert_eq!(v.as_array().unwrap().len(), 0, "{v}");
    let admin = s.login("admin").await;
    let (_, v) = get_json(&s, &admin, "/dicomweb/studies?ModalitiesInStudy=CT").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        first(&v[0], "00080061"),
        "CT",
        "the CT case's own modalities"
    );
    let (_, v) = get_json(&s, &admin, "/dicomweb/studies?ModalitiesInStudy=MR").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["00080061"]["Value"], json!(["MR"]));
    sqlx::query("DELETE FROM instances WHERE case_id = $1")
        .bind(&other.id)
        .execute(&s.db.pool)
        .await
        .unwrap();

    let (st, v) = get_json(&s, &rad1, "/dicomweb/studies?PatientWeight=70").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("PatientWeight"));
    let (_, series) = get_json(
        &s,
        &rad1,
        &format!("/cases/{case}/dicomweb/studies/{study_uid}/series"),
    )
    .await;
    assert_eq!(series.as_array().unwrap().len(), 1);
    assert_eq!(first(&series[0], "0020000E"), series_uid.as_str());
    assert_eq!(first(&series[0], "00201209"), n);
    let (_, instances) = get_json(
        &s,
        &rad1,
        &format!("/dicomweb/studies/{study_uid}/series/{series_uid}/instances?limit=5&offset=97"),
    )
    .await;
    assert_eq!(instances.as_array().unwrap().len(), 3);
    // A page that leaves results out says so (PS3.18: Warning 299); the last page does not.
    let page = |q: &'static str| {
        let (s, rad1) = (&s, &rad1);
        let path = format!("/dicomweb/studies/{study_uid}/series/{series_uid}/instances?{q}");
        async move { s.get(rad1, &path).await }
    };
    let r = page("limit=5").await;
    let warning = r
        .headers()
        .get("warning")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        warning
            .as_deref()
            .is_some_and(|w| w.starts_with("299 ") && w.contains("additional results")),
        "{warning:?}"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        5
    );
    let r = page("limit=5&offset=95").await;
    assert!(r.headers().get("warning").is_none());
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        5
    );

    // WADO-RS: the series comes back byte for byte.
    let r = s
        .get(
            &rad1,
            &format!("/cases/{case}/dicomweb/studies/{study_uid}/series/{series_uid}"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = parts(r).await;
    assert_eq!(got.len(), n);
    assert!(
        got.iter()
            .all(|(ct, _)| ct.starts_with("application/dicom"))
    );
    let sent: BTreeSet<String> = bytes.iter().map(|b| content_key(b)).collect();
    let back: BTreeSet<String> = got.iter().map(|(_, b)| content_key(b)).collect();
    assert_eq!(sent, back);
    // Insisting on another transfer syntax: 406, saying what is stored.
    let r = s
        .http
        .get(format!("{}/dicomweb/studies/{study_uid}", s.base))
        .bearer_auth(&rad1)
        .header(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.70",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    // Several ranges: served when one of them names the stored syntax; refused when the one
    // that names it has quality 0, whatever else is offered.
    let stored = first_file
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let range =
        |ts: &str| format!("multipart/related; type=\"application/dicom\"; transfer-syntax={ts}");
    for (accept, status) in [
        (
            format!("{}, {}", range("1.2.840.10008.1.2.4.70"), range(&stored)),
            StatusCode::OK,
        ),
        (
            format!(
                "{}; q=0, {}",
                range(&stored),
                range("1.2.840.10008.1.2.4.70")
            ),
            StatusCode::NOT_ACCEPTABLE,
        ),
        (
            format!("{}; q=0.5, {}", range(&stored), range("*")),
            StatusCode::OK,
        ),
    ] {
        let r = s
            .http
            .get(format!("{}/dicomweb/studies/{study_uid}", s.base))
            .bearer_auth(&rad1)
            .header("accept", &accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{accept}");
        if status == StatusCode::OK {
            assert_eq!(parts(r).await.len(), n, "{accept}");
        }
    }

    // Metadata: every instance, no pixels, the header values of the files.
    let (st, meta) = get_json(
        &s,
        &rad1,
        &format!("/dicomweb/studies/{study_uid}/series/{series_uid}/metadata"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let meta = meta.as_array().unwrap();
    assert_eq!(meta.len(), n);
    for m in meta {
        assert!(m.get("7FE00010").is_none(), "no pixel data in metadata");
        assert!(
            m.as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with("0002")),
            "no file meta group in metadata"
        );
        assert_eq!(first(m, "0020000D"), study_uid.as_str());
        assert_eq!(first(m, "00280010"), rows);
        assert!(first(m, "00083002").is_string());
    }

    // Frames: the pixel data as the file holds it.
    let sop = text(tags::SOP_INSTANCE_UID);
    let r = s
        .get(
            &rad1,
            &format!("/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop}/frames/1"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let frame = parts(r).await;
    assert_eq!(frame.len(), 1);
    assert_eq!(frame[0].0, "application/octet-stream");
    let pixel_data = first_file
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_eq!(frame[0].1, pixel_data.as_ref());
    let r = s
        .get(
            &rad1,
            &format!("/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop}/frames/2"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a single-frame object");

    // Rendered: a window applied to the file's values (PS3.3 C.11.2.1.2.1), checked against
    // the same formula computed here from dicom-object's reading of the file.
    let num = |tag, default: f64| {
        text(tag)
            .split('\\')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(default)
    };
    let (slope, intercept) = (
        num(tags::RESCALE_SLOPE, 1.0),
        num(tags::RESCALE_INTERCEPT, 0.0),
    );
    let signed = text(tags::PIXEL_REPRESENTATION) == "1";
    let values: Vec<f64> = pixel_data
        .chunks_exact(2)
        .map(|b| {
            let raw = u16::from_le_bytes([b[0], b[1]]);
            let stored = if signed {
                f64::from(raw as i16)
            } else {
                f64::from(raw)
            };
            stored * slope + intercept
        })
        .collect();
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    // A window over the lower half of the range: a gradient, with some pixels clipped white.
    let (center, width) = ((max / 4.0).round(), (max / 2.0).round());
    let r = s
        .get(
            &rad1,
            &format!(
                "/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop}/rendered?window={center},{width}"
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = r.bytes().await.unwrap();
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png.to_vec()))
        .read_info()
        .unwrap();
    let mut grey = vec![0u8; decoder.output_buffer_size().unwrap()];
    let info = decoder.next_frame(&mut grey).unwrap();
    assert_eq!((info.width as usize, info.height as usize), (columns, rows));
    let mut seen = BTreeSet::new();
    for (i, value) in values.iter().enumerate() {
        let (low, high) = (
            center - 0.5 - (width - 1.0) / 2.0,
            center - 0.5 + (width - 1.0) / 2.0,
        );
        let expected = if *value <= low {
            0.0
        } else if *value > high {
            255.0
        } else {
            (((value - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0).round()
        };
        let got = f64::from(grey[i]);
        assert!(
            (got - expected).abs() <= 0.5,
            "pixel {i}: {value} -> {got}, expected {expected}"
        );
        seen.insert(grey[i]);
    }
    assert!(
        seen.len() > 20,
        "the window shows a range of greys: {seen:?}"
    );
    let r = s
        .get(&rad1, &format!("/dicomweb/studies/{study_uid}/thumbnail"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let png = r.bytes().await.unwrap();
    let d = png::Decoder::new(std::io::Cursor::new(png.to_vec()))
        .read_info()
        .unwrap();
    let side = |v: usize| v.min(128 * v / rows.max(columns)).max(1) as u32;
    assert_eq!(
        (d.info().width, d.info().height),
        (side(columns), side(rows))
    );

    // Scope: another radiologist and QA (case not reported) see nothing; admins see it.
    let rad2 = s.login("rad2").await;
    let (_, v) = get_json(&s, &rad2, "/dicomweb/studies").await;
    assert_eq!(v.as_array().unwrap().len(), 0);
    let r = s
        .get(&rad2, &format!("/dicomweb/studies/{study_uid}"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .get(
            &rad2,
            &format!("/cases/{case}/dicomweb/studies/{study_uid}/metadata"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let qa = s.login("qa1").await;
    let (_, v) = get_json(&s, &qa, "/dicomweb/studies").await;
    assert_eq!(v.as_array().unwrap().len(), 0);
    let admin = s.login("admin").await;
    let (_, v) = get_json(&s, &admin, "/dicomweb/studies").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let r = s
        .http
        .get(format!("{}/dicomweb/studies", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Every access is audited with the case, by UIDs only.
    let rows = sqlx::query_as::<_, (String, Option<String>, String)>(
        "SELECT action, case_id, detail FROM audit WHERE action LIKE 'dicomweb%' ORDER BY id",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    let retrieve = rows
        .iter()
        .find(|(a, c, _)| a == "dicomweb_retrieve" && c.as_deref() == Some(case.as_str()))
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert!(retrieve.2.contains(&series_uid) && retrieve.2.contains(&format!("{n} instances")));
    assert!(
        rows.iter()
            .any(|(a, _, d)| a == "dicomweb_store"
                && d.contains(&format!("{n} instances ({n} new)")))
    );
    assert!(rows.iter().any(|(a, _, _)| a == "dicomweb_frames"));
    // The reads refused to rad2 are audited with their status and path (rad1's refused
    // reads above too, a search among them, whose query is left out); the request without a
    // login is not (it has no caller).
    let details: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM audit WHERE action = 'dicomweb_refused'")
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert!(
        details.len() > 2 && details.iter().all(|d| !d.contains('?')),
        "{details:?}"
    );
    let refused = sqlx::query_as::<_, (Option<String>, Option<String>, String)>(
        "SELECT user_id, case_id, detail FROM audit WHERE action = 'dicomweb_refused'
         AND user_id = 'rad2' ORDER BY id",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        refused,
        [
            (
                Some("rad2".to_string()),
                None,
                format!("404 /dicomweb/studies/{study_uid}")
            ),
            (
                Some("rad2".to_string()),
                Some(case.clone()),
                format!("404 /cases/{case}/dicomweb/studies/{study_uid}/metadata")
            ),
        ]
    );
    assert!(rows.iter().any(|(a, _, _)| a == "dicomweb_metadata"));

    // A refused HEAD is a refused read too; so are the case's own resources outside DICOMweb;
    // a "case id" of no case (a record number typed by hand) is kept out of the trail, said
    // by its length.
    let head = s
        .http
        .head(format!(
            "{}/cases/{case}/dicomweb/studies/{study_uid}",
            s.base
        ))
        .bearer_auth(&rad2)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let r = s.get(&rad2, &format!("/cases/{case}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.get(&rad2, "/cases/MRN0012345/dicomweb/studies").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let later = sqlx::query_as::<_, (String, Option<String>, String)>(
        "SELECT action, case_id, detail FROM audit WHERE action LIKE '%refused'
         AND user_id = 'rad2' ORDER BY id",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        later[2..],
        [
            (
                "dicomweb_refused".to_string(),
                Some(case.clone()),
                format!("404 /cases/{case}/dicomweb/studies/{study_uid}")
            ),
            (
                "read_refused".to_string(),
                Some(case.clone()),
                format!("404 /cases/{case}")
            ),
            (
                "dicomweb_refused".to_string(),
                None,
                "404 /cases/<10 characters>/dicomweb/studies".to_string()
            ),
        ]
    );
    let name = text(tags::PATIENT_NAME);
    for (_, _, d) in &rows {
        assert!(
            name.is_empty() || !d.contains(&name),
            "patient name in audit detail: {d}"
        );
    }

    // The case is ready now that it has its study.
    let r = s
        .post(
            &coord,
            &format!("/cases/{case}/status"),
            &json!({"status": "ready"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_a_clear_4xx_and_store_nothing() {
    let s = start_with(|state| state.max_upload_bytes = 96 * 1024).await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let path = format!("/cases/{case}/dicomweb/studies");
    let good_dir = synthetic_study(s.dir.path(), 1);
    let good = files_of(&good_dir);
    assert_eq!(good.len(), 4);
    assert_eq!(dicom_files(&good_dir).len(), 4);

    // A case without studies is not ready.
    let r = s
        .post(
            &coord,
            &format!("/cases/{case}/status"),
            &json!({"status": "ready"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("no studies yet"));

    // The answer says why: in its body (refused before intake) or in its Warning header
    // (refused by intake, whose body is the PS3.18 store response); gives the body.
    let expect = |r: reqwest::Response, status: StatusCode, words: &'static str| async move {
        assert_eq!(r.status(), status);
        let warning = r
            .headers()
            .get("warning")
            .map(|w| w.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        assert!(
            text.contains(words) || warning.contains(words),
            "{text} {warning} should say {words:?}"
        );
        serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
    };
    // The Failed SOP Sequence of an answer: each item's SOP Instance UID and Failure Reason.
    let failed = |v: &Value| -> Vec<(Option<String>, u64)> {
        v["00081198"]["Value"]
            .as_array()
            .unwrap_or_else(|| panic!("no Failed SOP Sequence: {v}"))
            .iter()
            .map(|item| {
                (
                    item["00081155"]["Value"][0].as_str().map(String::from),
                    item["00081197"]["Value"][0].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let sop_uids: Vec<Option<String>> = dicom_files(&good_dir)
        .iter()
        .map(|f| {
            let obj = dicom_object::open_file(f).unwrap();
            let uid = obj
                .element(tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap();
            Some(uid.trim_end_matches(['\0', ' ']).to_string())
        })
        .collect();
    // A non-DICOM part among good ones: the part is named, nothing is stored; the answer
    // lists every part as not stored, the bad one as not understood (0xC000), the others
    // as not processed (0x0110).
    let mut mixed = good.clone();
    mixed.insert(2, b"not a DICOM file at all".to_vec());
    let v = expect(
        stow(&s, &coord, &path, &mixed).await,
        StatusCode::CONFLICT,
        "part 3",
    )
    .await;
    let mut expected: Vec<(Option<String>, u64)> =
        sop_uids.iter().map(|u| (u.clone(), 0x0110)).collect();
    expected.insert(2, (None, 0xC000));
    assert_eq!(failed(&v), expected);
    // Malformed multipart: the closing boundary is missing.
    let (mut body, ct) = multipart_of(&good);
    body.truncate(body.len() - 40);
    let r = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(&coord)
        .header("content-type", ct.clone())
        .body(body)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST, "not closed").await;
    // Not multipart at all, or parts that say they are something else.
    let r = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(&coord)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "multipart/related").await;
    let (body, ct) = multipart_of(&good);
    let body = String::from_utf8_lossy(&body).replacen("application/dicom", "text/plain", 2);
    let r = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(&coord)
        .header(
            "content-type",
            ct.replace("type=\"application/dicom\"; ", ""),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain").await;
    // Too big for this server.
    let big = imaging::synth::PhantomSpec {
        columns: 128,
        rows: 128,
        slices: 4,
        seed: 2,
        ..Default::default()
    };
    let big_dir = s.dir.path().join("big");
    imaging::synth::write_series(&big, &big_dir).unwrap();
    expect(
        stow(&s, &coord, &path, &files_of(&big_dir)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than this server accepts",
    )
    .await;
    // A caller who may not upload is refused for that, before the body is read (it was read
    // up to the limit first, and refused as too large).
    let qa = s.login("qa1").await;
    expect(
        stow(&s, &qa, &path, &files_of(&big_dir)).await,
        StatusCode::FORBIDDEN,
        "may not do this",
    )
    .await;
    // Sent to another study's URL: every part refused (0x0110), each named.
    let v = expect(
        stow(&s, &coord, &format!("{path}/1.2.3.4"), &good).await,
        StatusCode::CONFLICT,
        "not to study 1.2.3.4 it was sent to (and 3 more parts refused)",
    )
    .await;
    let expected: Vec<(Option<String>, u64)> =
        sop_uids.iter().map(|u| (u.clone(), 0x0110)).collect();
    assert_eq!(failed(&v), expected);
    // Too old, by the intake rule; named by study and rule.
    let old = imaging::synth::PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 2,
        seed: 3,
        study_date: "20190301".into(),
        ..Default::default()
    };
    let old_dir = s.dir.path().join("old");
    imaging::synth::write_series(&old, &old_dir).unwrap();
    expect(
        stow(&s, &coord, &path, &files_of(&old_dir)).await,
        StatusCode::CONFLICT,
        "more than 365 days ago",
    )
    .await;
    // Another patient's study (birth date differs from the case's).
    let other = case_for(&s, &coord, "1980-05-05").await;
    expect(
        stow(
            &s,
            &coord,
            &format!("/cases/{other}/dicomweb/studies"),
            &good,
        )
        .await,
        StatusCode::CONFLICT,
        "birth date differs",
    )
    .await;
    assert_eq!(instance_rows(&s).await, 0, "refused uploads stored rows");
    assert_eq!(stored_objects(&s), 0, "refused uploads stored objects");
    // Every refusal is in the case's trail: those before intake by their status (the
    // malformed bodies, the wrong media types, the one too large, QA's), those of intake with
    // its reason.
    let early: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT case_id, detail FROM audit WHERE action = 'dicomweb_store_refused'
         AND detail LIKE '% before intake: %' ORDER BY id",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    let statuses: Vec<&str> = early.iter().map(|(_, d)| &d[..3]).collect();
    assert_eq!(statuses, ["400", "415", "415", "413", "403"], "{early:?}");
    assert!(
        early
            .iter()
            .all(|(c, _)| c.as_deref() == Some(case.as_str()))
    );

    // The good study goes in; the same study for another case is refused.
    let r = stow(&s, &coord, &path, &good).await;
    assert_eq!(r.status(), StatusCode::OK);
    let third = case_for(&s, &coord, "1970-01-01").await;
    expect(
        stow(
            &s,
            &coord,
            &format!("/cases/{third}/dicomweb/studies"),
            &good,
        )
        .await,
        StatusCode::CONFLICT,
        "already stored for case",
    )
    .await;
    // Uploads go to a case, not to the all-studies root.
    let r = stow(&s, &coord, "/dicomweb/studies", &good).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(instance_rows(&s).await, 4);
    assert_eq!(stored_objects(&s), 4);
    let refused = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM audit WHERE action = 'dicomweb_store_refused'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert!(refused >= 5, "refusals are audited: {refused}");

    // A study another case holds (an upload of it to that case committed between this
    // upload's first check and its insert): refused inside the insert's transaction, and
    // nothing of it stays.
    let raced = synthetic_study(s.dir.path(), 5);
    let raced_uid = study_uid_of(&raced);
    sqlx::query("INSERT INTO study_cases (study_uid, case_id) VALUES ($1, $2)")
        .bind(&raced_uid)
        .bind(&third)
        .execute(&s.db.pool)
        .await
        .unwrap();
    expect(
        stow(&s, &coord, &path, &files_of(&raced)).await,
        StatusCode::CONFLICT,
        "already stored for case",
    )
    .await;
    assert_eq!(instance_rows(&s).await, 4);
    assert_eq!(
        stored_objects(&s),
        4,
        "the refused upload's objects are deleted"
    );
}

/// A STOW-RS request refused before its body is read drains the body so the client hears
/// why, but not for longer than the server's drain time: a client sending slowly (or not at
/// all) gets the refusal and a closed connection, instead of holding the request open.
#[tokio::test]
async fn a_refused_upload_sent_slowly_is_answered_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(|state| state.stow_drain = std::time::Duration::from_millis(300)).await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let qa = s.login("qa1").await;
    let address = s.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /cases/{case}/dicomweb/studies HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {qa}\r\n\
         Content-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\n\
         Content-Length: 10000000\r\n\r\n--b\r\nContent-Type: application/dicom\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&[0u8; 4096]).await.unwrap();
    // Then nothing more is sent: the answer must come anyway, and the connection close.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        socket.read_to_end(&mut answer),
    )
    .await;
    assert!(
        read.is_ok(),
        "no answer while the client held the body back"
    );
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 403"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(instance_rows(&s).await, 0);
}

fn study_uid_of(folder: &Path) -> String {
    let file = dicom_files(folder).remove(0);
    dicom_object::open_file(file)
        .unwrap()
        .element(tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// QIDO-RS matching is the same on SQLite and PostgreSQL: wildcards on text keys are
/// case-sensitive like an exact match, names ignore the case of ASCII letters. A search over
/// several cases is in the audit trail of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_match_alike_on_both_databases_and_are_audited_per_case() {
    let s = start().await;
    let coord = s.login("coord").await;
    let mut cases = Vec::new();
    for seed in [11, 12] {
        let case = case_for(&s, &coord, "1970-01-01").await;
        let files = files_of(&synthetic_study(s.dir.path(), seed));
        let r = stow(
            &s,
            &coord,
            &format!("/cases/{case}/dicomweb/studies"),
            &files,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        cases.push(case);
    }
    // The synthetic studies' patient: ID SYNTH0001, name PHANTOM^CHEST.
    for (query, expected) in [
        ("PatientID=SYNTH0001", 2),
        ("PatientID=synth0001", 0),
        ("PatientID=SYN*", 2),
        ("PatientID=syn*", 0),
        ("PatientID=SYNTH000?", 2),
        ("PatientID=[SYN*", 0),
        ("PatientName=PHANTOM*", 2),
        ("PatientName=phantom^c?est", 2),
        ("PatientName=CHEST*", 0),
    ] {
        let (st, v) = get_json(&s, &coord, &format!("/dicomweb/studies?{query}")).await;
        assert_eq!(st, StatusCode::OK, "{query}");
        assert_eq!(v.as_array().unwrap().len(), expected, "{query}");
    }
    let (st, v) = get_json(&s, &coord, "/dicomweb/studies?PatientID=SYNTH0001").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 2);
    for case in &cases {
        let searches = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM audit WHERE action = 'dicomweb_search' AND case_id = $1",
        )
        .bind(case)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
        assert_eq!(
            searches, 6,
            "case {case}: every search that found it is in its trail"
        );
    }
}

/// STOW-RS `files` into `case` as `token`: stored, or the test fails saying why.
async fn stow_into(s: &Server, token: &str, case: &str, files: &[Vec<u8>]) {
    let r = stow(s, token, &format!("/cases/{case}/dicomweb/studies"), files).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

/// Put text attributes into every file of `folder` (a synthetic study, before it is sent).
fn edit_study(folder: &Path, attributes: &[(dicom_core::Tag, dicom_core::VR, &str)]) {
    for path in dicom_files(folder) {
        let mut obj = dicom_object::open_file(&path).unwrap();
        for (tag, vr, value) in attributes {
            obj.put(dicom_core::DataElement::new(
                *tag,
                *vr,
                dicom_core::PrimitiveValue::from(value.to_string()),
            ));
        }
        obj.write_to_file(&path).unwrap();
    }
}

/// QIDO-RS answers hold what PS3.18 Table 6.7.1-2 requires at each level (Study Time,
/// Referring Physician, Study ID, the patient's birth date and sex, Instance Availability,
/// Bits Allocated ...), those of the levels above that the path leaves open, and what
/// `includefield` asks for; Study Time, Referring Physician's Name and Study ID are matching
/// keys. The values are those written into the files here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_answer_the_required_attributes_and_what_includefield_asks() {
    use dicom_core::VR;
    let s = start().await;
    let coord = s.login("coord").await;
    let mut studies = Vec::new();
    for (seed, time, physician, id) in [
        (31, "0930", "WELBY^MARCUS=ウェルビー^マーカス", "S-77"),
        // An ACR-NEMA time with colons, as old files have it.
        (32, "14:05:10", "House^Gregory", "S-78"),
    ] {
        let case = case_for(&s, &coord, "1970-01-01").await;
        let (folder, uid) = synthetic_study_uid(s.dir.path(), seed);
        edit_study(
            &folder,
            &[
                (tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
                (tags::STUDY_TIME, VR::TM, time),
                (tags::REFERRING_PHYSICIAN_NAME, VR::PN, physician),
                (tags::STUDY_ID, VR::SH, id),
                (tags::PATIENT_SEX, VR::CS, "F"),
                (tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "-0500"),
                (
                    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
                    VR::DA,
                    "20260101",
                ),
            ],
        );
        stow_into(&s, &coord, &case, &files_of(&folder)).await;
        studies.push(uid);
    }
    let search = |query: &str| format!("/dicomweb/studies?{query}");
    for (query, expected) in [
        ("StudyTime=0900-1000", vec![&studies[0]]),
        ("StudyTime=0930", vec![&studies[0]]),
        ("StudyTime=09", vec![&studies[0]]),
        ("StudyTime=-1200", vec![&studies[0]]),
        ("StudyTime=1200-", vec![&studies[1]]),
        ("StudyTime=140510", vec![&studies[1]]),
        ("StudyTime=1405", vec![&studies[1]]),
        ("StudyTime=140511-", vec![]),
        ("00080030=0000-2359", vec![&studies[0], &studies[1]]),
        ("ReferringPhysicianName=welby*", vec![&studies[0]]),
        ("ReferringPhysicianName=HOUSE^GREGORY", vec![&studies[1]]),
        ("StudyID=S-77", vec![&studies[0]]),
        ("StudyID=s-77", vec![]),
        ("StudyID=S-7?", vec![&studies[0], &studies[1]]),
    ] {
        let (st, v) = get_json(&s, &coord, &search(query)).await;
        assert_eq!(st, StatusCode::OK, "{query}: {v}");
        let mut found: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|a| first(a, "0020000D").as_str().unwrap())
            .collect();
        found.sort();
        let mut expected: Vec<&str> = expected.into_iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(found, expected, "{query}");
    }
    for bad in [
        "StudyTime=9",
        "StudyTime=0930-25x",
        "StudyTime=-",
        "StudyTime=1000-0900",
        "StudyTime=2500",
        "StudyTime=0975",
        "StudyTime=0930.5",
    ] {
        let (st, v) = get_json(&s, &coord, &search(bad)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (st, v) = get_json(&s, &coord, &search("StudyTime=093000.25")).await;
    assert_eq!((st, v.as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    // A field not known here is left out and said, not refused (a newer keyword); what is
    // asked for and not in the files is there, empty (PS3.4 C.2.2.1).
    let r = s
        .get(
            &coord,
            &search("StudyID=S-77&includefield=NoSuchKeyword,PatientWeight"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let warning = r.headers()["warning"].to_str().unwrap().to_string();
    assert!(warning.contains("includefield NoSuchKeyword"), "{warning}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["00101030"], json!({"vr": "DS"}), "{v}");

    // The study level: the time as written, the physician's alphabetic name, ...
    let (_, v) = get_json(&s, &coord, &search("StudyID=S-77")).await;
    let study = &v[0];
    assert_eq!(first(study, "00080030"), "0930");
    assert_eq!(first(study, "00080090")["Alphabetic"], "WELBY^MARCUS");
    assert_eq!(first(study, "00200010"), "S-77");
    assert_eq!(first(study, "00100040"), "F");
    assert_eq!(first(study, "00100030"), "19700101");
    assert_eq!(first(study, "00080201"), "-0500");
    assert_eq!(first(study, "00080056"), "ONLINE");
    // ... and nothing of a lower level unless asked for.
    assert!(study.get("00180050").is_none(), "{study}");
    assert!(study.get("00400244").is_none(), "{study}");
    for ask in [
        "SliceThickness",
        "00180050",
        "SliceThickness,Rows",
        "ReferencedImageSequence.ReferencedSOPInstanceUID,00180050",
    ] {
        let (st, v) = get_json(
            &s,
            &coord,
            &search(&format!("StudyID=S-77&includefield={ask}")),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{ask}: {v}");
        assert!(v[0].get("00180050").is_some(), "{ask}: {v}");
    }
    let (_, v) = get_json(&s, &coord, &search("StudyID=S-77&includefield=all")).await;
    assert_eq!(first(&v[0], "00100040"), "F", "{v}");
    assert!(
        v[0].get("00180050").is_none(),
        "all of the study level only: {v}"
    );

    // The series level: its own attributes, under a study ...
    let (st, v) = get_json(
        &s,
        &coord,
        &format!("/dicomweb/studies/{}/series", studies[0]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let series = &v[0];
    assert_eq!(first(series, "00400244"), "20260101");
    assert_eq!(first(series, "00080201"), "-0500");
    assert!(
        series.get("00200010").is_none(),
        "the study is named: {series}"
    );
    assert!(
        series.get("00201208").is_none(),
        "the study is named: {series}"
    );
    // ... and across studies, the study's too (PS3.18 "all series").
    let (st, v) = get_json(&s, &coord, "/dicomweb/series?StudyID=S-78").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(first(&v[0], "0020000D"), studies[1].as_str());
    assert_eq!(first(&v[0], "00080030"), "14:05:10");
    assert_eq!(first(&v[0], "00200010"), "S-78");
    assert_eq!(first(&v[0], "00080090")["Alphabetic"], "House^Gregory");
    // The study's counts and modalities too, which no one instance says.
    assert_eq!(v[0]["00080061"]["Value"], json!(["CT"]));
    assert_eq!(first(&v[0], "00201206"), 1);
    assert_eq!(first(&v[0], "00201208"), 4);

    // The instance level: Bits Allocated and availability; the series' attributes where
    // the path names no series.
    let (st, v) = get_json(
        &s,
        &coord,
        &format!("/dicomweb/studies/{}/instances", studies[0]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 4);
    for instance in v.as_array().unwrap() {
        assert_eq!(first(instance, "00280100"), 16);
        assert_eq!(first(instance, "00080056"), "ONLINE");
        assert_eq!(first(instance, "00400244"), "20260101");
        assert!(instance.get("00200010").is_none(), "{instance}");
    }
    let (st, v) = get_json(
        &s,
        &coord,
        "/dicomweb/instances?StudyID=S-78&includefield=all",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(first(&v[0], "00201208"), 4);
    assert_eq!(first(&v[0], "00200010"), "S-78");
    assert!(
        v[0].get("00180050").is_some(),
        "all of an instance: {}",
        v[0]
    );
    assert!(v[0].get("7FE00010").is_none(), "never the pixels");
}

/// The `type` of a multipart/related answer: the media type its parts are (RFC 2387).
fn outer_type(r: &reqwest::Response) -> String {
    let content_type = r.headers()["content-type"].to_str().unwrap();
    multipart::MediaType::parse(content_type)
        .param("type")
        .unwrap_or_default()
        .to_string()
}

/// Compressed frames are sent as stored: as their own media type (image/jpeg), or as
/// application/octet-stream to a client that takes any syntax that way
/// (`transfer-syntax=*`, as OHIF's image loader asks), the part naming the stored syntax
/// (the bytes are the file's own fragments, read here with dicom-object). To octet-stream
/// without a syntax, or naming Explicit VR Little Endian, the default (PS3.18 Table 8.7.3-5),
/// they are decoded: the same phantom's samples written uncompressed. Either type naming
/// another syntax is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_frames_go_as_stored_to_a_client_that_takes_them() {
    let s = start().await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let folder = s.dir.path().join("jpeg");
    let spec = imaging::synth::PhantomSpec {
        columns: 32,
        rows: 32,
        slices: 2,
        pixel_mm: 10.0,
        spacing_mm: 5.0,
        seed: 41,
        syntax: imaging::synth::SynthSyntax::JpegLossless,
        ..Default::default()
    };
    let out = imaging::synth::write_series(&spec, &folder).unwrap();
    stow_into(&s, &coord, &case, &files_of(&folder)).await;
    let file = dicom_object::open_file(&dicom_files(&folder)[0]).unwrap();
    let text = |tag| {
        file.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string()
    };
    let fragments: Vec<u8> = file
        .element(tags::PIXEL_DATA)
        .unwrap()
        .fragments()
        .unwrap()
        .iter()
        .flatten()
        .copied()
        .collect();
    assert_eq!(&fragments[..2], [0xFF, 0xD8], "a JPEG stream");
    let url = format!(
        "{}/dicomweb/studies/{}/series/{}/instances/{}/frames/1",
        s.base,
        out.study_instance_uid,
        text(tags::SERIES_INSTANCE_UID),
        text(tags::SOP_INSTANCE_UID)
    );
    let ask = |accept: &'static str| {
        s.http
            .get(&url)
            .bearer_auth(&coord)
            .header("accept", accept)
            .send()
    };
    for (accept, part_type) in [
        (
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.70",
        ),
        (
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.70",
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.70",
        ),
        (
            "multipart/related; type=\"image/jpeg\"",
            "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70",
        ),
        (
            "multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.70",
            "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70",
        ),
        ("*/*", "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.70"),
    ] {
        let r = ask(accept).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{accept}");
        assert_eq!(
            outer_type(&r),
            part_type.split(';').next().unwrap(),
            "{accept}"
        );
        let got = parts(r).await;
        assert_eq!(got.len(), 1, "{accept}");
        assert_eq!(got[0].0, part_type, "{accept}");
        assert_eq!(got[0].1, fragments, "{accept}: the stored frame");
    }
    // The same phantom (same seed), uncompressed: its one frame's samples as they lie.
    let plain = s.dir.path().join("plain");
    imaging::synth::write_series(
        &imaging::synth::PhantomSpec {
            syntax: imaging::synth::SynthSyntax::ExplicitLe,
            ..spec.clone()
        },
        &plain,
    )
    .unwrap();
    let native = dicom_object::open_file(&dicom_files(&plain)[0])
        .unwrap()
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned();
    assert_eq!(native.len(), 32 * 32 * 2);
    for accept in [
        "multipart/related; type=\"application/octet-stream\"",
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1",
        "multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.50, \
         multipart/related; type=\"application/octet-stream\"",
    ] {
        let r = ask(accept).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{accept}");
        assert_eq!(outer_type(&r), "application/octet-stream", "{accept}");
        let got = parts(r).await;
        assert_eq!(got.len(), 1, "{accept}");
        assert_eq!(
            got[0].0, "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
            "{accept}"
        );
        assert_eq!(got[0].1, native, "{accept}: the decoded frame");
    }
    for accept in [
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.4.50",
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*; q=0",
        // JPEG, but baseline: not what is stored.
        "multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.50",
    ] {
        let r = ask(accept).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE, "{accept}");
    }
}

/// Intake reads leniently what hospitals send: here one file as a bare data set (no
/// preamble, no `DICM`, no meta group) and one without its preamble. What leaves the server
/// is a PS3.10 file all the same, opened by dicom-rs's strict reader, the data set as
/// received: each WADO-RS `application/dicom` part, and each file of the patient copy
/// (whose readers, pydicom's FileSet among them, refuse anything else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_received_without_its_preamble_goes_out_as_a_dicom_file() {
    let s = start().await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let (folder, study) = synthetic_study_uid(s.dir.path(), 51);
    let paths = dicom_files(&folder);
    let mut files: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let data_set_of = |path: &Path, bytes: &[u8]| {
        let obj = dicom_object::open_file(path).unwrap();
        bytes[132 + 12 + obj.meta().information_group_length as usize..].to_vec()
    };
    let data_sets: Vec<Vec<u8>> = paths
        .iter()
        .zip(&files)
        .map(|(p, b)| data_set_of(p, b))
        .collect();
    files[0] = data_sets[0].clone();
    files[1] = files[1][128..].to_vec();
    stow_into(&s, &coord, &case, &files).await;

    let dir = tempfile::tempdir().unwrap();
    // Opened strictly, its data set among those sent: a PS3.10 file of one of them.
    let check = |name: &str, bytes: &[u8]| {
        assert_eq!(&bytes[128..132], b"DICM", "{name}");
        let path = dir.path().join(name.replace('/', "_"));
        std::fs::write(&path, bytes).unwrap();
        let obj = dicom_object::open_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let data_set = data_set_of(&path, bytes);
        assert!(
            data_sets.contains(&data_set),
            "{name}: the data set as sent"
        );
        obj.element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let r = s.get(&coord, &format!("/dicomweb/studies/{study}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = parts(r).await;
    assert_eq!(got.len(), 4);
    let mut retrieved: Vec<String> = got
        .iter()
        .enumerate()
        .map(|(i, (_, b))| check(&format!("part{i}"), b))
        .collect();
    retrieved.sort();
    retrieved.dedup();
    assert_eq!(retrieved.len(), 4);

    let r = s.get(&coord, &format!("/cases/{case}/export")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let zip_bytes = r.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).unwrap();
    let mut exported = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        if name.starts_with("DICOM/") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes).unwrap();
            exported.push(check(&name, &bytes));
        }
    }
    exported.sort();
    assert_eq!(exported, retrieved);
}

/// An object stored in Implicit VR Little Endian (as CDs often hold them) goes, to a request
/// that names no transfer syntax, in the default, Explicit VR Little Endian (PS3.18 8.7.3.5.2):
/// every element as received, its part and File Meta naming the new syntax. Asked with
/// `transfer-syntax=*` or its own syntax it goes as stored, byte for byte; a compressed
/// syntax asked for is refused (406).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implicit_vr_object_goes_in_the_default_transfer_syntax() {
    use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
    let s = start().await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let (folder, study) = synthetic_study_uid(s.dir.path(), 52);
    // The study written again in Implicit VR Little Endian.
    // The patient's name in Latin-1 under a character set that says UTF-8, as dirty data
    // has it: its bytes must go out as they came, not decoded and encoded again.
    edit_study(
        &folder,
        &[
            (tags::PATIENT_NAME, dicom_core::VR::PN, "Muller^Hans"),
            (
                tags::SPECIFIC_CHARACTER_SET,
                dicom_core::VR::CS,
                "ISO_IR 192",
            ),
        ],
    );
    let dirty: &[u8] = b"M\xFCller^Hans";
    let implicit: Vec<Vec<u8>> = dicom_files(&folder)
        .iter()
        .map(|p| {
            let mut obj = dicom_object::open_file(p).unwrap();
            obj.update_meta(|m| m.set_transfer_syntax(&IMPLICIT_VR_LITTLE_ENDIAN));
            let mut bytes = Vec::new();
            obj.write_all(&mut bytes).unwrap();
            let at = bytes.windows(11).position(|w| w == b"Muller^Hans").unwrap();
            bytes[at..at + 11].copy_from_slice(dirty);
            bytes
        })
        .collect();
    stow_into(&s, &coord, &case, &implicit).await;
    let read = |bytes: &[u8]| {
        dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(bytes)
            .unwrap()
    };
    let sent: Vec<_> = implicit.iter().map(|b| read(b)).collect();
    let get = |accept: &'static str| {
        let (s, coord) = (&s, &coord);
        let url = format!("{}/dicomweb/studies/{study}", s.base);
        async move {
            s.http
                .get(url)
                .bearer_auth(coord)
                .header("accept", accept)
                .send()
                .await
                .unwrap()
        }
    };

    let r = get("multipart/related; type=\"application/dicom\"").await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = parts(r).await;
    assert_eq!(got.len(), sent.len());
    for (content_type, bytes) in &got {
        assert_eq!(
            content_type,
            "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        );
        let back = read(bytes);
        assert_eq!(
            back.meta().transfer_syntax().trim_end_matches('\0'),
            "1.2.840.10008.1.2.1"
        );
        // Explicit VR on the wire: the first element of the data set carries its VR.
        let data_set = 132 + 12 + back.meta().information_group_length as usize;
        assert!(
            bytes[data_set + 4..data_set + 6]
                .iter()
                .all(u8::is_ascii_uppercase),
            "no VR after the first tag"
        );
        let uid = back
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap();
        let original = sent
            .iter()
            .find(|o| o.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap() == uid)
            .expect("an instance that was sent");
        let elements = |o: &dicom_object::DefaultDicomObject| {
            o.iter()
                .map(|e| (e.header().tag, e.header().vr, e.value().clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(elements(&back), elements(original), "instance {uid}");
        assert!(
            bytes.windows(dirty.len()).any(|w| w == dirty),
            "instance {uid}: the name's bytes changed"
        );
    }

    // As stored, to `*` or to its own syntax.
    for accept in [
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2",
    ] {
        let r = get(accept).await;
        assert_eq!(r.status(), StatusCode::OK, "{accept}");
        let got = parts(r).await;
        let back: BTreeSet<String> = got.iter().map(|(_, b)| content_key(b)).collect();
        let uploaded: BTreeSet<String> = implicit.iter().map(|b| content_key(b)).collect();
        assert_eq!(back, uploaded, "{accept}");
        assert!(
            got.iter()
                .all(|(ct, _)| ct == "application/dicom; transfer-syntax=1.2.840.10008.1.2"),
            "{accept}"
        );
    }
    let r = get(
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.70",
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
}

/// A small phantom series (32 x 32 pixels of 10 mm, 5 mm apart) of `slices` slices written in
/// `syntax` into `name` under the test's folder: the folder, the spec (to write it again in
/// another syntax: the same seed gives the same pixels and UIDs) and the study's UID.
fn small_series(
    s: &Server,
    name: &str,
    seed: u64,
    slices: usize,
    syntax: imaging::synth::SynthSyntax,
) -> (PathBuf, imaging::synth::PhantomSpec, String) {
    let spec = imaging::synth::PhantomSpec {
        columns: 32,
        rows: 32,
        slices,
        pixel_mm: 10.0,
        spacing_mm: 5.0,
        seed,
        syntax,
        ..Default::default()
    };
    let folder = s.dir.path().join(name);
    let out = imaging::synth::write_series(&spec, &folder).unwrap();
    (folder, spec, out.study_instance_uid)
}

/// WADO-RS of a whole study under `/dicomweb`, as `token`, with `accept`.
async fn get_study(s: &Server, token: &str, study: &str, accept: &str) -> reqwest::Response {
    s.http
        .get(format!("{}/dicomweb/studies/{study}", s.base))
        .bearer_auth(token)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

/// A compressed object (JPEG Lossless here) goes decompressed to a request that names no
/// transfer syntax, or names Explicit VR Little Endian (PS3.18 8.7.3.5.2): its Pixel Data the
/// same phantom's samples written uncompressed (not decoded by this test), every other element
/// as uploaded, its part and File Meta naming the default syntax. Asked with `*` or its own
/// syntax it goes as stored, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_object_goes_decompressed_in_the_default_transfer_syntax() {
    use imaging::synth::{PhantomSpec, SynthSyntax, write_series};
    let s = start().await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let (folder, spec, study) = small_series(&s, "jpeg", 43, 3, SynthSyntax::JpegLossless);
    let plain = s.dir.path().join("plain");
    write_series(
        &PhantomSpec {
            syntax: SynthSyntax::ExplicitLe,
            ..spec.clone()
        },
        &plain,
    )
    .unwrap();
    let uploaded = files_of(&folder);
    stow_into(&s, &coord, &case, &uploaded).await;
    let read = |bytes: &[u8]| {
        dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(bytes)
            .unwrap()
    };
    let uid = |o: &dicom_object::DefaultDicomObject| {
        o.element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let pixels = |o: &dicom_object::DefaultDicomObject| {
        o.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .into_owned()
    };
    let elements_but_pixels = |o: &dicom_object::DefaultDicomObject| {
        o.iter()
            .filter(|e| e.header().tag != tags::PIXEL_DATA)
            .map(|e| (e.header().tag, e.header().vr, e.value().clone()))
            .collect::<Vec<_>>()
    };
    let native: std::collections::HashMap<String, Vec<u8>> = dicom_files(&plain)
        .iter()
        .map(|p| {
            let o = dicom_object::open_file(p).unwrap();
            (uid(&o), pixels(&o))
        })
        .collect();
    let sent: Vec<_> = uploaded.iter().map(|b| read(b)).collect();
    let get = |accept: &'static str| get_study(&s, &coord, &study, accept);
    for accept in [
        "*/*",
        "multipart/related; type=\"application/dicom\"",
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1",
    ] {
        let r = get(accept).await;
        assert_eq!(r.status(), StatusCode::OK, "{accept}");
        let got = parts(r).await;
        assert_eq!(got.len(), 3, "{accept}");
        for (content_type, bytes) in &got {
            assert_eq!(
                content_type, "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
                "{accept}"
            );
            let back = read(bytes);
            assert_eq!(
                back.meta().transfer_syntax().trim_end_matches('\0'),
                "1.2.840.10008.1.2.1"
            );
            let id = uid(&back);
            assert_eq!(pixels(&back), native[&id], "{accept}: instance {id}");
            let original = sent.iter().find(|o| uid(o) == id).unwrap();
            assert_eq!(
                elements_but_pixels(&back),
                elements_but_pixels(original),
                "{accept}: instance {id}"
            );
        }
    }
    for accept in [
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.70",
    ] {
        let r = get(accept).await;
        assert_eq!(r.status(), StatusCode::OK, "{accept}");
        let got = parts(r).await;
        let back: BTreeSet<String> = got.iter().map(|(_, b)| content_key(b)).collect();
        let stored: BTreeSet<String> = uploaded.iter().map(|b| content_key(b)).collect();
        assert_eq!(back, stored, "{accept}");
        assert!(
            got.iter()
                .all(|(ct, _)| ct == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.70"),
            "{accept}"
        );
    }
}

/// An object whose pixels do not decode (a JPEG fragment of nothing but its start and end
/// markers: intake reads headers, not pixels) still goes to a request that names no transfer
/// syntax: as stored, its part naming its syntax, after the other instance, decompressed. A
/// request that names Explicit VR Little Endian gets no other syntax: its answer ends there,
/// without the closing delimiter, so the client sees it cut short rather than whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_does_not_decode_goes_as_stored_or_ends_a_named_answer() {
    let s = start().await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let (folder, _, study) =
        small_series(&s, "jpeg", 44, 2, imaging::synth::SynthSyntax::JpegLossless);
    let files = dicom_files(&folder);
    let mut broken = dicom_object::open_file(&files[1]).unwrap();
    broken.put(dicom_core::DataElement::new(
        tags::PIXEL_DATA,
        dicom_core::VR::OB,
        dicom_core::value::Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
            vec![],
            vec![vec![0xFF, 0xD8, 0xFF, 0xD9]],
        )),
    ));
    broken.write_to_file(&files[1]).unwrap();
    let uploaded = files_of(&folder);
    stow_into(&s, &coord, &case, &uploaded).await;
    let broken_bytes = std::fs::read(&files[1]).unwrap();
    let get = |accept: &'static str| get_study(&s, &coord, &study, accept);

    let r = get("multipart/related; type=\"application/dicom\"").await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = parts(r).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].0,
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    );
    assert_eq!(
        got[1].0,
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.70"
    );
    assert_eq!(content_key(&got[1].1), content_key(&broken_bytes));

    let r =
        get("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1")
            .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the answer starts before the object fails"
    );
    assert!(
        r.bytes().await.is_err(),
        "an answer that could not send every object in the syntax asked must end cut short"
    );
}

/// A compressed object whose pixels are not written natively here (palette colour: its
/// indices would be expanded) is known so from the metadata intake kept, before any answer
/// starts: a request that names Explicit VR Little Endian gets 406 (not a 200 cut short), one
/// that names no syntax gets it as stored, its part naming its syntax, and its frames asked for
/// as octet-stream are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_object_not_written_natively_is_refused_up_front_to_a_named_request() {
    let s = start().await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let (folder, _, study) = small_series(&s, "palette", 45, 1, imaging::synth::SynthSyntax::Rle);
    edit_study(
        &folder,
        &[(
            tags::PHOTOMETRIC_INTERPRETATION,
            dicom_core::VR::CS,
            "PALETTE COLOR",
        )],
    );
    let uploaded = files_of(&folder);
    stow_into(&s, &coord, &case, &uploaded).await;
    let get = |accept: &'static str| get_study(&s, &coord, &study, accept);
    let r =
        get("multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1")
            .await;
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    let r = get("multipart/related; type=\"application/dicom\"").await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = parts(r).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0,
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.5"
    );
    assert_eq!(content_key(&got[0].1), content_key(&uploaded[0]));
    // Its frames are not decoded for octet-stream either: 406.
    let file = dicom_object::open_file(&dicom_files(&folder)[0]).unwrap();
    let uid = |tag| {
        file.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let r = s
        .http
        .get(format!(
            "{}/dicomweb/studies/{study}/series/{}/instances/{}/frames/1",
            s.base,
            uid(tags::SERIES_INSTANCE_UID),
            uid(tags::SOP_INSTANCE_UID)
        ))
        .bearer_auth(&coord)
        .header(
            "accept",
            "multipart/related; type=\"application/octet-stream\"",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
}

/// A patient's name of several component groups (alphabetic, ideographic, phonetic) is found
/// by any one of them, ignoring ASCII case, and is answered as DICOM JSON names it (PS3.18
/// F.2.2): each group under its own key, not the whole value as the alphabetic one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_several_groups_are_found_by_each_and_answered_apart() {
    let s = start().await;
    let coord = s.login("coord").await;
    let case = case_for(&s, &coord, "1970-01-01").await;
    let (folder, study) = synthetic_study_uid(s.dir.path(), 53);
    let name = "Yamada^Tarou=山田^太郎=やまだ^たろう";
    edit_study(
        &folder,
        &[
            (tags::PATIENT_NAME, dicom_core::VR::PN, name),
            (
                tags::SPECIFIC_CHARACTER_SET,
                dicom_core::VR::CS,
                "ISO_IR 192",
            ),
            (
                tags::REFERRING_PHYSICIAN_NAME,
                dicom_core::VR::PN,
                "Suzuki^Hanako=鈴木^花子",
            ),
        ],
    );
    stow_into(&s, &coord, &case, &files_of(&folder)).await;
    for (query, found) in [
        ("PatientName=yamada*", true),
        ("PatientName=山田*", true),
        ("PatientName=やまだ^たろう", true),
        ("PatientName=Yamada^Tarou", true),
        ("PatientName=Yamada^Tarou=山田^太郎=やまだ^たろう", true),
        ("PatientName=Tarou", false),
        ("PatientName=太郎", false),
        ("PatientName=*太郎", true),
        // The referring physician's column holds the alphabetic group alone.
        ("ReferringPhysicianName=SUZUKI*", true),
    ] {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/dicomweb/studies", s.base),
            &[query.split_once('=').unwrap()],
        )
        .unwrap();
        let r = s.http.get(url).bearer_auth(&coord).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        let text = r.text().await.unwrap();
        let list: Value = serde_json::from_str(&text).unwrap_or(json!([]));
        let uids: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| first(v, "0020000D").as_str())
            .collect();
        assert_eq!(uids.contains(&study.as_str()), found, "{query}: {uids:?}");
    }
    let (status, list) = get_json(&s, &coord, "/dicomweb/studies?PatientName=yamada*").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first(&list[0], "00100010"),
        &json!({
            "Alphabetic": "Yamada^Tarou",
            "Ideographic": "山田^太郎",
            "Phonetic": "やまだ^たろう"
        })
    );
}
