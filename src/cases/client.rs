//! The case server client (reqwest; HTTPS through rustls with the ring provider, trusting the
//! system roots or, with a CA file, only that CA, as for a server's self-signed certificate).

use std::path::Path;
use std::time::Duration;

use case_protocol::{CaseSummary, Receipt, SignedReport};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No answer (connection refused, reset, timeout): try again later.
    #[error("the case server could not be reached: {0}")]
    Transport(String),
    /// The server failed or asked to wait (5xx, 408, 429): try again later, not before
    /// `retry_after` where it said when (Retry-After).
    #[error("the case server answered {status}: {message} (will retry)")]
    Unavailable {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The login is missing or expired (401): log in again; nothing else is wrong.
    #[error("the case server needs a new login: {0}")]
    Unauthorized(String),
    /// The server refused the request for good (4xx): retrying cannot help.
    #[error("the case server refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("{0}")]
    Setup(String),
}

impl ClientError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Transport(_) | ClientError::Unavailable { .. }
        )
    }

    /// How long to wait before trying again after this failure: `backoff` (the caller's own
    /// doubling wait), or longer where the server said when (Retry-After), up to
    /// [`MAX_RETRY_AFTER`].
    pub fn wait_before_retry(&self, backoff: Duration) -> Duration {
        match self {
            ClientError::Unavailable {
                retry_after: Some(asked),
                ..
            } => backoff.max((*asked).min(MAX_RETRY_AFTER)),
            _ => backoff,
        }
    }
}

/// The longest a Retry-After is waited for before a retry: a server asking for more (an hour
/// of maintenance) is tried again after this, and fails that try as it would have.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The wait a Retry-After header asks for (RFC 9110 10.2.3): whole seconds, or an HTTP date
/// (a date past is no wait). `None` without one, or for one that cannot be read.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// An HTTPS client (rustls with ring) that trusts the system roots or, with `ca_pem`, only
/// that CA; `timeout` bounds each whole request.
/// How long a request may take before it counts as no answer.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// The whole request (small JSON answers).
    Total(Duration),
    /// The wait between two reads of the answer (big answers on slow links).
    BetweenReads(Duration),
}

pub fn http_client(
    ca_pem: Option<&Path>,
    patience: Patience,
) -> Result<reqwest::Client, ClientError> {
    // reqwest's rustls needs a process-wide provider; ring keeps the build free of cmake.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    builder = match patience {
        Patience::Total(t) => builder.timeout(t),
        Patience::BetweenReads(t) => builder.read_timeout(t),
    };
    if let Some(path) = ca_pem {
        let pem = std::fs::read(path)
            .map_err(|e| ClientError::Setup(format!("{}: {e}", path.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| ClientError::Setup(format!("{}: {e}", path.display())))?;
        builder = builder.tls_certs_only([cert]);
    }
    builder
        .build()
        .map_err(|e| ClientError::Setup(e.to_string()))
}

#[derive(Debug, Clone)]
pub struct CaseClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    /// Whose login the token is (the outbox sends only that user's reports with it).
    user: Option<String>,
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

impl CaseClient {
    /// A client for `base` (`https://host:port`, or `http://127.0.0.1:port`), trusting only the
    /// CA in `ca_pem` when given.
    pub fn new(base: &str, ca_pem: Option<&Path>) -> Result<CaseClient, ClientError> {
        let http = http_client(ca_pem, Patience::Total(Duration::from_secs(30)))?;
        Ok(CaseClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: None,
            user: None,
        })
    }

    /// The bearer token of the last login (DICOMweb requests use it too).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn with_token(mut self, token: String) -> CaseClient {
        self.token = Some(token);
        self
    }

    /// The user whose login the token is.
    pub fn with_user(mut self, user: &str) -> CaseClient {
        self.user = Some(user.to_string());
        self
    }

    /// The user whose login this client holds, where known.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    async fn check(
        r: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, ClientError> {
        let r = r.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        let wait = retry_after(r.headers());
        let text = r.text().await.unwrap_or_default();
        let answer = serde_json::from_str::<ErrorAnswer>(&text).map(|e| e.error);
        let code = status.as_u16();
        let is_case_servers = answer.is_ok();
        let message = answer.unwrap_or(text);
        if code == 401 {
            Err(ClientError::Unauthorized(message))
        } else if status.is_server_error() || code == 408 || code == 429 {
            Err(ClientError::Unavailable {
                status: code,
                message,
                retry_after: wait,
            })
        } else if !is_case_servers {
            // A refusal is the case server's own answer ({"error": ...}); any other 4xx is
            // from something in between (a proxy mid-deploy, a wrong path). A report refused
            // on its word would be set aside for good: it is tried again instead.
            let said: String = message.chars().take(200).collect();
            Err(ClientError::Unavailable {
                status: code,
                message: format!("an answer that is not the case server's: {said}"),
                retry_after: wait,
            })
        } else {
            Err(ClientError::Refused {
                status: code,
                message,
            })
        }
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .json(&serde_json::json!({ "user": user, "password": password }))
            .send()
            .await;
        let answer: LoginAnswer = Self::check(r)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        self.token = Some(answer.token);
        self.user = Some(user.to_string());
        Ok(())
    }

    /// End this login on the server (its token stops working) and forget it here.
    pub async fn logout(&mut self) -> Result<(), ClientError> {
        let r = self
            .authed(self.http.post(format!("{}/logout", self.base)))
            .send()
            .await;
        self.token = None;
        Self::check(r).await.map(|_| ())
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `GET path` with the login, its JSON answer.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self
            .authed(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await;
        Self::check(r)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    pub async fn worklist(&self) -> Result<Vec<CaseSummary>, ClientError> {
        self.get_json("/worklist").await
    }

    /// The reports stored for a case, in arrival order, each checked again by the server.
    pub async fn reports(
        &self,
        case_id: &str,
    ) -> Result<Vec<case_protocol::StoredReport>, ClientError> {
        self.get_json(&format!("/cases/{case_id}/reports")).await
    }

    pub async fn submit(&self, signed: &SignedReport) -> Result<Receipt, ClientError> {
        let url = format!("{}/cases/{}/reports", self.base, signed.report.case_id);
        let r = self.authed(self.http.post(url)).json(signed).send().await;
        Self::check(r)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Attach a key image (a PNG, e.g. from `overread render`) to a case's report: it is
    /// printed in the PDF the referring physician receives. Returns the image's content key.
    pub async fn add_key_image(
        &self,
        case_id: &str,
        png: Vec<u8>,
        caption: &str,
    ) -> Result<String, ClientError> {
        // The caption as a query value: unreserved characters as they are, the rest %XX.
        let caption: String = caption
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let url = format!("{}/cases/{case_id}/key-images?caption={caption}", self.base);
        let r = self
            .authed(self.http.post(url))
            .header("content-type", "image/png")
            .body(png)
            .send()
            .await;
        let v: serde_json::Value = Self::check(r)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(v["key"].as_str().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    /// Retry-After in seconds or as an HTTP date (RFC 9110 10.2.3); a date past is no wait,
    /// an unreadable value none asked for; the wait is the longer of the caller's backoff and
    /// the server's, at most a minute.
    #[test]
    fn retry_after_is_read_and_bounded() {
        assert_eq!(
            retry_after(&with_retry_after("120")),
            Some(Duration::from_secs(120))
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        let wait = retry_after(&with_retry_after(&httpdate::fmt_http_date(later))).unwrap();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            retry_after(&with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&with_retry_after("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);

        let busy = |asked| ClientError::Unavailable {
            status: 503,
            message: String::new(),
            retry_after: asked,
        };
        let backoff = Duration::from_secs(1);
        assert_eq!(busy(None).wait_before_retry(backoff), backoff);
        assert_eq!(
            busy(Some(Duration::from_secs(5))).wait_before_retry(backoff),
            Duration::from_secs(5)
        );
        assert_eq!(
            busy(Some(Duration::from_millis(10))).wait_before_retry(backoff),
            backoff
        );
        assert_eq!(
            busy(Some(Duration::from_secs(3600))).wait_before_retry(backoff),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            ClientError::Transport("reset".into()).wait_before_retry(backoff),
            backoff
        );
    }
}
