//! The case server client (reqwest; HTTPS through rustls with the ring provider, trusting the
//! system roots or, with a CA file, only that CA, as for a server's self-signed certificate).

use std::path::Path;

use case_protocol::{CaseSummary, Receipt, SignedReport};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No answer (connection refused, reset, timeout): try again later.
    #[error("the case server could not be reached: {0}")]
    Transport(String),
    /// The server failed or asked to wait (5xx, 408, 429): try again later.
    #[error("the case server answered {status}: {message} (will retry)")]
    Unavailable { status: u16, message: String },
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
}

/// An HTTPS client (rustls with ring) that trusts the system roots or, with `ca_pem`, only
/// that CA; `timeout` bounds each whole request.
/// How long a request may take before it counts as no answer.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// The whole request (small JSON answers).
    Total(std::time::Duration),
    /// The wait between two reads of the answer (big answers on slow links).
    BetweenReads(std::time::Duration),
}

pub fn http_client(
    ca_pem: Option<&Path>,
    patience: Patience,
) -> Result<reqwest::Client, ClientError> {
    // reqwest's rustls needs a process-wide provider; ring keeps the build free of cmake.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder =
        reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
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
        let http = http_client(ca_pem, Patience::Total(std::time::Duration::from_secs(30)))?;
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
            })
        } else if !is_case_servers {
            // A refusal is the case server's own answer ({"error": ...}); any other 4xx is
            // from something in between (a proxy mid-deploy, a wrong path). A report refused
            // on its word would be set aside for good: it is tried again instead.
            let said: String = message.chars().take(200).collect();
            Err(ClientError::Unavailable {
                status: code,
                message: format!("an answer that is not the case server's: {said}"),
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
