//! Loading a study over DICOMweb (PS3.18): from Overread's case server or any PACS that speaks
//! it (Orthanc, dcm4chee ...). A study is named by its URL, `http[s]://HOST/PREFIX/studies/UID`.
//!
//! The series and instances are listed with QIDO-RS, then every instance is retrieved with
//! WADO-RS as stored (`transfer-syntax=*`), several requests at a time, and written whole
//! (temporary name, then rename) into a folder, where the ordinary imaging pipeline reads it:
//! the same files give the same volume as loading them from a disk. The middle instance of the
//! largest series comes first, so a viewer can show an image before the rest arrives.
//!
//! Owns: the DICOMweb client side. Must not: import `render`, `viewer` or `app`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use case_protocol::multipart::{self, MediaType};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use super::client::ClientError;

/// Requests in flight at once (a PACS and a case server both serve these in parallel).
pub const DEFAULT_CONCURRENCY: usize = 8;

/// A study's DICOMweb address: the service root and the Study Instance UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyUrl {
    /// `http[s]://HOST/PREFIX` (no trailing slash).
    pub root: String,
    pub study_uid: String,
}

/// `url` as it may be shown or logged: without a `user:password@` and without a query (which
/// may hold a patient id).
pub fn shown(url: &str) -> String {
    let url = url.trim();
    let url = url.split(['?', '#']).next().unwrap_or("");
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..after_scheme], &url[after_scheme + at + 1..]),
        None => url.to_string(),
    }
}

/// `scheme://host[:port]` of a URL (what a credential is bound to).
pub fn origin_of(url: &str) -> String {
    let url = url.trim();
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url[..after_scheme + i].to_string(),
        None => url.to_string(),
    }
}

impl StudyUrl {
    /// `http[s]://HOST/PREFIX/studies/UID` (a trailing slash allowed); None for anything else.
    pub fn parse(text: &str) -> Option<StudyUrl> {
        let text = text.trim().trim_end_matches('/');
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return None;
        }
        let (root, uid) = text.rsplit_once("/studies/")?;
        if !valid_uid(uid) || root.ends_with(':') || root.ends_with('/') {
            return None;
        }
        Some(StudyUrl {
            root: root.to_string(),
            study_uid: uid.to_string(),
        })
    }

    /// `scheme://host:port` of the service (where a case server's `/login` is).
    pub fn origin(&self) -> String {
        origin_of(&self.root)
    }

    fn study(&self) -> String {
        format!("{}/studies/{}", self.root, self.study_uid)
    }

    /// Whether credentials may go to this URL's host: over https, or over http to this
    /// machine only (a token or password sent in the clear to another host is anyone's).
    pub fn may_carry_credentials(&self) -> bool {
        let origin = self.origin();
        if origin.starts_with("https://") {
            return true;
        }
        let host = origin.trim_start_matches("http://");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = if let Some(bracketed) = host.strip_prefix('[') {
            bracketed.split(']').next().unwrap_or("")
        } else {
            host.split(':').next().unwrap_or("")
        };
        matches!(host, "localhost" | "127.0.0.1" | "::1")
    }
}

/// A UID as PS3.5 9.1 allows it (digits and dots, at most 64): safe in a URL and a file name.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// One instance to retrieve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub series_uid: String,
    pub sop_uid: String,
    pub instance_number: Option<i64>,
}

/// What a download did.
#[derive(Debug, Clone, Serialize)]
pub struct Download {
    pub folder: PathBuf,
    pub files: Vec<PathBuf>,
    pub series: usize,
    pub bytes: u64,
    /// Seconds from the start to the first instance on disk.
    pub first_instance_secs: f64,
    pub total_secs: f64,
}

impl Download {
    pub fn megabytes_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.total_secs.max(1e-9)
    }
}

/// A DICOMweb client: HTTPS through rustls (system roots, or only the CA in a file), with a
/// bearer token when the service needs one.
#[derive(Debug, Clone)]
pub struct DicomWebClient {
    http: reqwest::Client,
    token: Option<String>,
    /// Results asked for per QIDO-RS request (`limit`); the next page follows by `offset`.
    page: usize,
}

/// QIDO-RS results per request: what most servers give unasked (Overread's case server 1,000,
/// Orthanc 100 by default but more on request).
const QIDO_PAGE: usize = 1000;
/// Most results one QIDO-RS search may bring, over all its pages. A study of several series
/// of thousands of slices lists some tens of thousands; a server that brings new entries
/// page after page without end would otherwise fill memory.
pub const MAX_QIDO_RESULTS: usize = 200_000;
/// Most bytes one QIDO-RS answer may hold (about 300 times a page of a thousand series).
const MAX_QIDO_PAGE_BYTES: usize = 256 << 20;
/// Attempts at one instance before a transient failure (no answer, 5xx, 408, 429) fails the
/// download.
const INSTANCE_TRIES: u32 = 4;

fn transport(e: reqwest::Error) -> ClientError {
    ClientError::Transport(e.to_string())
}

impl DicomWebClient {
    pub fn new(ca_pem: Option<&Path>) -> Result<DicomWebClient, ClientError> {
        Ok(DicomWebClient {
            // A whole instance (a big multi-frame object on a slow link may take minutes): a
            // bound on the wait between reads, not on the whole answer.
            http: super::client::http_client(
                ca_pem,
                super::client::Patience::BetweenReads(std::time::Duration::from_secs(60)),
            )?,
            token: None,
            page: QIDO_PAGE,
        })
    }

    /// Asks QIDO-RS for `page` results at a time (a server whose limit is lower).
    pub fn with_page_size(mut self, page: usize) -> DicomWebClient {
        self.page = page.max(1);
        self
    }

    /// A client for `url` with the access the environment gives: `OVERREAD_CA` (a CA file to
    /// trust), then `token` if given, else `OVERREAD_DICOMWEB_TOKEN`, else a login at the URL's
    /// origin with `OVERREAD_USER` and `OVERREAD_PASSWORD` (Overread's case server), else none
    /// (a PACS without authentication). No credential goes in the clear to another machine
    /// (`StudyUrl::may_carry_credentials`): an `http://` URL to another host is asked without
    /// them (a server that needs them refuses, and says so).
    pub async fn for_url(
        url: &StudyUrl,
        token: Option<String>,
    ) -> Result<DicomWebClient, ClientError> {
        let ca = std::env::var_os("OVERREAD_CA").map(PathBuf::from);
        let mut client = DicomWebClient::new(ca.as_deref())?;
        if !url.may_carry_credentials() {
            return Ok(client);
        }
        if let Some(t) = token.or_else(|| std::env::var("OVERREAD_DICOMWEB_TOKEN").ok()) {
            client.token = Some(t);
        } else if let (Ok(user), Ok(password)) = (
            std::env::var("OVERREAD_USER"),
            std::env::var("OVERREAD_PASSWORD"),
        ) {
            client.login(&url.origin(), &user, &password).await?;
        }
        Ok(client)
    }

    pub fn with_token(mut self, token: String) -> DicomWebClient {
        self.token = Some(token);
        self
    }

    /// Log in to an Overread case server at `origin` and use its token.
    pub async fn login(
        &mut self,
        origin: &str,
        user: &str,
        password: &str,
    ) -> Result<(), ClientError> {
        let r = self
            .http
            .post(format!("{origin}/login"))
            .json(&serde_json::json!({ "user": user, "password": password }))
            .send()
            .await;
        let answer: Value = check(r).await?.json().await.map_err(transport)?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| ClientError::Setup("the login answer has no token".into()))?;
        self.token = Some(token.to_string());
        Ok(())
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.get(url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// One QIDO-RS page, tried again after a transient failure (no answer, 5xx, 408, 429) as
    /// an instance is: one dropped connection must not fail the study's list.
    async fn qido_retried(&self, url: &str) -> Result<(Vec<Value>, bool), ClientError> {
        let mut wait = std::time::Duration::from_millis(500);
        let mut tries = 1;
        loop {
            match self.qido(url).await {
                Err(e) if e.is_retryable() && tries < INSTANCE_TRIES => {
                    tokio::time::sleep(e.wait_before_retry(wait)).await;
                    wait *= 2;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// One QIDO-RS page: its results, and whether the server said more are to be had
    /// (Warning 299, PS3.18 8.3.4.4).
    async fn qido(&self, url: &str) -> Result<(Vec<Value>, bool), ClientError> {
        let r = self
            .get(url)
            .header("accept", "application/dicom+json")
            .send()
            .await;
        let r = check(r).await?;
        let more = r
            .headers()
            .get_all(reqwest::header::WARNING)
            .iter()
            .any(|w| w.to_str().is_ok_and(|w| w.trim_start().starts_with("299")));
        // 204 No Content is an empty result.
        if r.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok((Vec::new(), more));
        }
        // Read up to a bound: a page of a thousand entries is a few megabytes, and a server
        // that ignores `limit` gives everything in one (still far under the bound).
        let mut body = Vec::new();
        let mut r = r;
        while let Some(chunk) = r.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_QIDO_PAGE_BYTES {
                return Err(ClientError::Refused {
                    status: 200,
                    message: format!(
                        "a search answer over {} MiB: not taken as a study's list",
                        MAX_QIDO_PAGE_BYTES >> 20
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Transport(format!("a search answer is not JSON: {e}")))?;
        match v {
            Value::Array(entries) => Ok((entries, more)),
            // An object (an error said with 200) is no list: taken as empty, a series would
            // have been left out of the study without a word.
            _ => Err(ClientError::Refused {
                status: 200,
                message: "a search answer is not a list of results".into(),
            }),
        }
    }

    /// Every result of a QIDO-RS search, page by page (`limit` and `offset`, PS3.18 8.3.4.4):
    /// a server answers a page at most, and a study cut at the page's end would load as a
    /// shorter volume, its last slices missing without a word. Pages are asked for until one
    /// comes back empty (a server whose most is below `limit` answers short pages before the
    /// end) or brings nothing new (a server that ignores `offset`, in any order); one that
    /// ignores `limit` (more than asked) gave everything at once. More than
    /// [`MAX_QIDO_RESULTS`] in all is refused.
    async fn qido_all(&self, url: &str) -> Result<Vec<Value>, ClientError> {
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut all: Vec<Value> = Vec::new();
        // Entries seen, by the sha256 of their JSON (not the text: kept for every page).
        let mut seen: std::collections::HashSet<[u8; 32]> = std::collections::HashSet::new();
        loop {
            let (page, more) = self
                .qido_retried(&format!(
                    "{url}{sep}limit={}&offset={}",
                    self.page,
                    all.len()
                ))
                .await?;
            let n = page.len();
            let before = all.len();
            for v in page {
                let digest: [u8; 32] = sha2::Sha256::digest(v.to_string().as_bytes()).into();
                if seen.insert(digest) {
                    all.push(v);
                }
            }
            if all.len() > MAX_QIDO_RESULTS {
                return Err(ClientError::Refused {
                    status: 200,
                    message: format!(
                        "the search {} brought more than {MAX_QIDO_RESULTS} results: not \
                         taken as a study's list",
                        shown(url)
                    ),
                });
            }
            if n == 0 || n > self.page || all.len() == before {
                // The server said there are more, and gave none: the list is short, and a
                // study opened from it would be missing what it left out.
                if more {
                    return Err(ClientError::Refused {
                        status: 200,
                        message: format!(
                            "the search {} says more results exist but gives no more after \
                             {}: not taken as the whole list",
                            shown(url),
                            all.len()
                        ),
                    });
                }
                break;
            }
        }
        Ok(all)
    }

    /// The Study Instance UIDs under a service root (QIDO-RS `/studies`), newest first as the
    /// server orders them.
    pub async fn studies(&self, root: &str) -> Result<Vec<String>, ClientError> {
        let list = self
            .qido_all(&format!("{}/studies", root.trim_end_matches('/')))
            .await?;
        Ok(list
            .iter()
            .filter_map(|s| first_string(s, "0020000D"))
            .filter(|u| valid_uid(u))
            .collect())
    }

    /// Every instance of the study (QIDO-RS, series by series). A series or instance whose
    /// UID is not a DICOM UID (digits and dots, at most 64) fails the whole list: its files
    /// are named by it, and leaving it out would open the study short of it.
    pub async fn instances(&self, study: &StudyUrl) -> Result<Vec<InstanceRef>, ClientError> {
        let series = self.qido_all(&format!("{}/series", study.study())).await?;
        let not_a_uid = |what: &str, value: Option<String>| ClientError::Refused {
            status: 200,
            message: format!(
                "study {}: the server listed a {what} whose UID {} is not a DICOM UID",
                study.study_uid,
                value.map_or_else(|| "(none)".to_string(), |v| format!("{v:?}"))
            ),
        };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in &series {
            let series_uid = match first_string(s, "0020000E") {
                Some(u) if valid_uid(&u) => u,
                other => return Err(not_a_uid("series", other)),
            };
            let list = self
                .qido_all(&format!("{}/series/{series_uid}/instances", study.study()))
                .await?;
            let mut listed = 0usize;
            for i in &list {
                let sop_uid = match first_string(i, "00080018") {
                    Some(u) if valid_uid(&u) => u,
                    other => return Err(not_a_uid("instance", other)),
                };
                // One instance listed twice is fetched once.
                if !seen.insert(sop_uid.clone()) {
                    continue;
                }
                listed += 1;
                out.push(InstanceRef {
                    series_uid: series_uid.clone(),
                    sop_uid,
                    instance_number: first_int(i, "00200013"),
                });
            }
            // A series the study lists whose instances the server does not all list (none,
            // or fewer than its Number of Series Related Instances): opened, it would be
            // short of slices, or missing, without a word.
            let expected = first_int(s, "00201209").and_then(|n| usize::try_from(n).ok());
            if listed == 0 || expected.is_some_and(|n| listed < n) {
                return Err(ClientError::Refused {
                    status: 200,
                    message: format!(
                        "study {}: series {series_uid} lists {listed} of its {} instances",
                        study.study_uid,
                        expected.map_or_else(|| "(some)".to_string(), |n| n.to_string())
                    ),
                });
            }
        }
        if out.is_empty() {
            return Err(ClientError::Refused {
                status: 404,
                message: format!("study {} has no instances", study.study_uid),
            });
        }
        Ok(out)
    }

    /// One instance written to `path`, tried again after a transient failure (no answer, 5xx,
    /// 408, 429) with waits of 0.5, 1 and 2 s (or what the server's Retry-After asks): one
    /// dropped connection must not fail a study of thousands. Its size in bytes.
    async fn instance_retried(
        &self,
        study: &StudyUrl,
        i: &InstanceRef,
        path: &Path,
    ) -> Result<u64, ClientError> {
        let mut wait = std::time::Duration::from_millis(500);
        let mut tries = 1;
        loop {
            match self.instance_into(study, i, path).await {
                Err(e) if e.is_retryable() && tries < INSTANCE_TRIES => {
                    tokio::time::sleep(e.wait_before_retry(wait)).await;
                    wait *= 2;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// One instance as stored (WADO-RS, a one-part multipart answer, or the object itself),
    /// written to `path` as it arrives: an object of gigabytes is never held whole. Its size
    /// in bytes; on any failure nothing is left at `path`.
    pub async fn instance_into(
        &self,
        study: &StudyUrl,
        i: &InstanceRef,
        path: &Path,
    ) -> Result<u64, ClientError> {
        let written = self.write_instance(study, i, path).await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        written
    }

    async fn write_instance(
        &self,
        study: &StudyUrl,
        i: &InstanceRef,
        path: &Path,
    ) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let url = format!(
            "{}/series/{}/instances/{}",
            study.study(),
            i.series_uid,
            i.sop_uid
        );
        let r = self
            .get(&url)
            .header(
                "accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .send()
            .await;
        let mut r = check(r).await?;
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let media = MediaType::parse(&content_type);
        let refused = |what: String| ClientError::Refused {
            status: 200,
            message: format!("instance {}: {what}", i.sop_uid),
        };
        let not_dicom = |what: &str| refused(format!("{what}, not a DICOM object"));
        // The object itself, or read out of its one part.
        let mut part = match media.essence.as_str() {
            "application/dicom" => None,
            "multipart/related" => {
                let boundary = media
                    .param("boundary")
                    .ok_or_else(|| refused(format!("answer is {content_type}, not multipart")))?;
                Some(multipart::OnePart::new(boundary).map_err(refused)?)
            }
            other => return Err(not_dicom(&format!("the answer is {other}"))),
        };
        let io = |e: std::io::Error| ClientError::Setup(format!("{}: {e}", path.display()));
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut written = 0u64;
        let mut content = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(transport)? {
            let bytes: &[u8] = match &mut part {
                None => &chunk,
                Some(reader) => {
                    content.clear();
                    reader
                        .feed(&chunk, &mut |c: &[u8]| {
                            content.extend_from_slice(c);
                            Ok::<(), std::convert::Infallible>(())
                        })
                        .map_err(|e| match e {
                            multipart::PartsError::Body(m) => refused(m),
                            multipart::PartsError::Handler(never) => match never {},
                        })?;
                    // A part of another type (an error page, JSON, frames) is not the
                    // instance: refused before any of it is written.
                    match reader.content_type() {
                        Some(t)
                            if !t.is_empty()
                                && MediaType::parse(t).essence != "application/dicom" =>
                        {
                            return Err(not_dicom(&format!(
                                "its part is {}",
                                MediaType::parse(t).essence
                            )));
                        }
                        _ => &content,
                    }
                }
            };
            file.write_all(bytes).await.map_err(io)?;
            written += bytes.len() as u64;
        }
        if let Some(reader) = part {
            reader.finish().map_err(refused)?;
        }
        file.flush().await.map_err(io)?;
        Ok(written)
    }

    /// Download the whole study into `folder` (created), `concurrency` requests at a time,
    /// the middle of the largest series first. `on_file` sees each file as it lands.
    pub async fn download(
        &self,
        study: &StudyUrl,
        folder: &Path,
        concurrency: usize,
        on_file: impl Fn(&Path) + Send + Sync + 'static,
    ) -> Result<Download, ClientError> {
        let start = Instant::now();
        let setup = |e: std::io::Error| ClientError::Setup(format!("{}: {e}", folder.display()));
        std::fs::create_dir_all(folder).map_err(setup)?;
        let instances = self.instances(study).await?;
        let series = instances
            .iter()
            .map(|i| i.series_uid.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let order = fetch_order(instances);
        let on_file = Arc::new(on_file);
        let first = Arc::new(std::sync::Mutex::new(None::<f64>));
        let results: Vec<Result<(PathBuf, u64), ClientError>> =
            futures_util::stream::iter(order.into_iter().enumerate())
                .map(|(n, i)| {
                    let on_file = on_file.clone();
                    let first = first.clone();
                    async move {
                        let name = format!("{:05}-{}.dcm", n, i.sop_uid);
                        let path = folder.join(&name);
                        let tmp = folder.join(format!(".{name}.part"));
                        let len = self.instance_retried(study, &i, &tmp).await?;
                        tokio::fs::rename(&tmp, &path).await.map_err(setup)?;
                        if let Ok(mut f) = first.lock() {
                            f.get_or_insert(start.elapsed().as_secs_f64());
                        }
                        on_file(&path);
                        Ok((path, len))
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        let mut files = Vec::with_capacity(results.len());
        let mut bytes = 0;
        for r in results {
            let (path, len) = r?;
            files.push(path);
            bytes += len;
        }
        files.sort();
        let first_instance_secs = first.lock().ok().and_then(|f| *f).unwrap_or(0.0);
        Ok(Download {
            folder: folder.to_path_buf(),
            files,
            series,
            bytes,
            first_instance_secs,
            total_secs: start.elapsed().as_secs_f64(),
        })
    }
}

/// The largest series first, each series middle-out (the middle slice, then alternately
/// outward), so the first image a viewer can show arrives first.
pub fn fetch_order(mut instances: Vec<InstanceRef>) -> Vec<InstanceRef> {
    let mut by_series: std::collections::BTreeMap<String, Vec<InstanceRef>> = Default::default();
    for i in instances.drain(..) {
        by_series.entry(i.series_uid.clone()).or_default().push(i);
    }
    let mut groups: Vec<Vec<InstanceRef>> = by_series.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut out = Vec::new();
    for mut g in groups {
        g.sort_by(|a, b| {
            a.instance_number
                .cmp(&b.instance_number)
                .then_with(|| a.sop_uid.cmp(&b.sop_uid))
        });
        let mid = g.len() / 2;
        let mut order = vec![mid];
        for d in 1..=g.len() {
            if mid + d < g.len() {
                order.push(mid + d);
            }
            if d <= mid {
                order.push(mid - d);
            }
        }
        out.extend(order.into_iter().map(|k| g[k].clone()));
    }
    out
}

fn first_string(v: &Value, tag: &str) -> Option<String> {
    v.get(tag)?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_string)
}

fn first_int(v: &Value, tag: &str) -> Option<i64> {
    let x = v.get(tag)?.get("Value")?.get(0)?;
    x.as_i64()
        .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))
}

async fn check(
    r: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, ClientError> {
    let r = r.map_err(transport)?;
    let status = r.status();
    if status.is_success() {
        return Ok(r);
    }
    let code = status.as_u16();
    let wait = crate::cases::client::retry_after(r.headers());
    let text = r.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect());
    Err(match code {
        401 => ClientError::Unauthorized(message),
        408 | 429 | 500..=599 => ClientError::Unavailable {
            status: code,
            message,
            retry_after: wait,
        },
        _ => ClientError::Refused {
            status: code,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials go over https, or over http to this machine only: a token or password
    /// sent in the clear to another host (a URL pasted from anywhere) is anyone's.
    #[test]
    fn credentials_go_only_where_they_are_safe() {
        let may = |url: &str| StudyUrl::parse(url).unwrap().may_carry_credentials();
        assert!(may("https://pacs.example/dicom-web/studies/1.2"));
        assert!(may("http://127.0.0.1:8042/dicom-web/studies/1.2"));
        assert!(may("http://localhost/studies/1.2"));
        assert!(may("http://[::1]:8080/studies/1.2"));
        assert!(!may("http://evil.example/studies/1.2"));
        assert!(!may("http://127.0.0.1.evil.example/studies/1.2"));
        assert!(!may("http://user:pw@evil.example/studies/1.2"));
        assert!(!may("http://localhost@evil.example/studies/1.2"));
        // What is shown or logged of a URL: no password, no query (it may hold a patient id).
        assert_eq!(
            shown("https://me:secret@pacs.example/dicom-web/studies/1.2?PatientID=123"),
            "https://pacs.example/dicom-web/studies/1.2"
        );
        assert_eq!(shown("http://pacs.example/a@b"), "http://pacs.example/a@b");
        assert_eq!(
            origin_of("https://cases.example:8443/"),
            "https://cases.example:8443"
        );
        assert_eq!(
            origin_of("https://cases.example:8443/overread"),
            "https://cases.example:8443"
        );
        // A token handed over is not sent to such a host.
        let url = StudyUrl::parse("http://evil.example/studies/1.2").unwrap();
        let client =
            crate::cases::net::block_on(DicomWebClient::for_url(&url, Some("secret".into())))
                .unwrap()
                .unwrap();
        assert!(client.token.is_none());
        let url = StudyUrl::parse("https://pacs.example/studies/1.2").unwrap();
        let client =
            crate::cases::net::block_on(DicomWebClient::for_url(&url, Some("secret".into())))
                .unwrap()
                .unwrap();
        assert_eq!(client.token.as_deref(), Some("secret"));
    }

    #[test]
    fn study_urls() {
        let u = StudyUrl::parse("https://pacs.example:8443/dicom-web/studies/1.2.840.1/").unwrap();
        assert_eq!(u.root, "https://pacs.example:8443/dicom-web");
        assert_eq!(u.study_uid, "1.2.840.1");
        assert_eq!(u.origin(), "https://pacs.example:8443");
        let c = StudyUrl::parse("http://127.0.0.1:9/cases/C-1/dicomweb/studies/2.25.7").unwrap();
        assert_eq!(c.root, "http://127.0.0.1:9/cases/C-1/dicomweb");
        assert_eq!(c.origin(), "http://127.0.0.1:9");
        assert!(StudyUrl::parse("/data/study").is_none());
        assert!(StudyUrl::parse("https://h/studies/../../etc").is_none());
        assert!(StudyUrl::parse("https://h/studies/").is_none());
        assert!(StudyUrl::parse("ftp://h/studies/1.2").is_none());
    }

    #[test]
    fn middle_of_the_largest_series_first() {
        let inst = |s: &str, n: i64| InstanceRef {
            series_uid: s.into(),
            sop_uid: format!("{s}.{n}"),
            instance_number: Some(n),
        };
        let mut all: Vec<_> = (1..=5).map(|n| inst("1", n)).collect();
        all.push(inst("2", 1));
        let order: Vec<_> = fetch_order(all).into_iter().map(|i| i.sop_uid).collect();
        assert_eq!(order, ["1.3", "1.4", "1.2", "1.5", "1.1", "2.1"]);
    }
}
