//! The durable outbox: `pending/<report hash>.json` holds a signed report from before it is
//! sent until its receipt is written to `receipts/`; a report the server refuses for good moves
//! to `refused/` beside a note of why. Every file is written to a temporary name, synced and
//! renamed, so a crash leaves either the whole file or none. Retrying is safe: the server
//! answers a resent report with its original receipt.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use case_protocol::{Receipt, SignedReport, report_hash};

use super::client::{CaseClient, ClientError};

/// What happened to one pending report.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Delivered(Receipt),
    Refused {
        report_hash: String,
        status: u16,
        message: String,
    },
    /// Still pending (kept for the next attempt).
    Pending {
        report_hash: String,
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl Outbox {
    /// The outbox in `dir` (created with its subfolders).
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        for sub in ["pending", "receipts", "refused"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(Outbox {
            dir: dir.to_path_buf(),
        })
    }

    /// `$OVERREAD_DATA_DIR/outbox`, else `~/.local/share/overread/outbox`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("OVERREAD_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/overread"))
            })
            .unwrap_or_else(|| PathBuf::from(".overread"))
            .join("outbox")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keep a signed report until it is receipted. Returns its hash.
    pub fn enqueue(&self, signed: &SignedReport) -> Result<String, String> {
        let hash = report_hash(&signed.report).map_err(|e| e.to_string())?.0;
        if self
            .dir
            .join("receipts")
            .join(format!("{hash}.json"))
            .exists()
        {
            return Ok(hash);
        }
        let text = serde_json::to_vec_pretty(signed).map_err(|e| e.to_string())?;
        write_atomic(
            &self.dir.join("pending").join(format!("{hash}.json")),
            &text,
        )
        .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        Ok(hash)
    }

    /// Hashes of the reports waiting to be sent.
    pub fn pending(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.join("pending"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".json").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The stored receipt of a report, if it was delivered.
    pub fn receipt(&self, hash: &str) -> Option<Receipt> {
        let text =
            std::fs::read_to_string(self.dir.join("receipts").join(format!("{hash}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Send every pending report, each up to `attempts` times with doubling waits from
    /// `first_wait` while the server cannot be reached or is unavailable.
    pub async fn deliver(
        &self,
        client: &CaseClient,
        attempts: u32,
        first_wait: Duration,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        for hash in self.pending() {
            let path = self.dir.join("pending").join(format!("{hash}.json"));
            let signed: SignedReport = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => {
                    out.push(Delivery::Pending {
                        report_hash: hash,
                        error: format!("unreadable outbox file: {e}"),
                    });
                    continue;
                }
            };
            let mut wait = first_wait;
            let mut attempt = 0;
            let result = loop {
                attempt += 1;
                match client.submit(&signed).await {
                    Err(e) if e.is_retryable() && attempt < attempts.max(1) => {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    other => break other,
                }
            };
            out.push(match result {
                Ok(receipt) => match self.settle(&hash, &receipt) {
                    Ok(()) => Delivery::Delivered(receipt),
                    Err(e) => Delivery::Pending {
                        report_hash: hash,
                        error: format!("receipted but not recorded ({e}); will resend"),
                    },
                },
                Err(ClientError::Refused { status, message }) => {
                    let note = format!("{status}: {message}\n");
                    let moved = write_atomic(
                        &self.dir.join("refused").join(format!("{hash}.error.txt")),
                        note.as_bytes(),
                    )
                    .and_then(|()| {
                        std::fs::rename(
                            &path,
                            self.dir.join("refused").join(format!("{hash}.json")),
                        )
                    });
                    if let Err(e) = moved {
                        tracing::error!("outbox: could not move a refused report aside: {e}");
                    }
                    Delivery::Refused {
                        report_hash: hash,
                        status,
                        message,
                    }
                }
                Err(e) => Delivery::Pending {
                    report_hash: hash,
                    error: e.to_string(),
                },
            });
        }
        out
    }

    /// Record the receipt, then (only then) drop the pending copy.
    fn settle(&self, hash: &str, receipt: &Receipt) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(receipt).map_err(std::io::Error::other)?;
        write_atomic(
            &self.dir.join("receipts").join(format!("{hash}.json")),
            &text,
        )?;
        std::fs::remove_file(self.dir.join("pending").join(format!("{hash}.json")))
    }
}
