//! `overread key new`, `overread report sign`, `overread report submit`, `overread report
//! key-image`: signing and sending reports (and their key images) from scripts, through the same encrypted key file and outbox as the workstation.
//! Secrets come from the environment (`OVERREAD_KEY_PASSPHRASE`, `OVERREAD_PASSWORD`) or, when
//! unset, one line of standard input.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use case_protocol::{Report, SignedReport, SigningKey, canonical_bytes, report_hash, sign_report};
use clap::{Args, Subcommand};

use crate::cases::{CaseClient, Delivery, EncryptedKey, Outbox};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a new signing key, sealed under a passphrase; prints its id and public key (to
    /// register with the case server).
    New {
        /// Key file to create (refuses to overwrite).
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Sign a report (case-protocol `Report` JSON) with an encrypted key file.
    Sign(SignArgs),
    /// Put signed reports in the outbox and send everything pending.
    Submit(SubmitArgs),
    /// Attach a key image (a PNG from `overread render`) to a case: it is printed in the report
    /// PDF the referring physician receives.
    KeyImage(KeyImageArgs),
}

#[derive(Debug, Args)]
pub struct KeyImageArgs {
    pub png: PathBuf,
    #[arg(long)]
    pub case: String,
    /// Printed under the image in the PDF.
    #[arg(long, default_value = "")]
    pub caption: String,
    #[command(flatten)]
    pub login: ServerLogin,
}

/// The case server and who logs in to it (the password from `OVERREAD_PASSWORD` or asked).
#[derive(Debug, Args)]
pub struct ServerLogin {
    /// Case server, e.g. https://cases.example:8443.
    #[arg(long)]
    pub server: String,
    /// Trust only this CA certificate (PEM), e.g. the server's self-signed certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    #[arg(long)]
    pub user: String,
}

impl ServerLogin {
    /// A client of the server, not yet logged in.
    fn client(&self) -> Result<CaseClient, crate::cases::ClientError> {
        CaseClient::new(&self.server, self.ca.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct SignArgs {
    pub report: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// Signed report to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Print the exact canonical text that is signed.
    #[arg(long)]
    pub show: bool,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Signed report files (none: just send what is pending).
    pub signed: Vec<PathBuf>,
    #[command(flatten)]
    pub login: ServerLogin,
    /// Outbox folder (default: the user's data folder).
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// Attempts per report while the server is unreachable.
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
}

fn secret(var: &str, what: &str) -> Result<String> {
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    eprintln!("{what} (or set {var}):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn key_cmd(cmd: &KeyCommand) -> Result<()> {
    let KeyCommand::New { out } = cmd;
    if out.exists() {
        bail!("{} exists: a key file is never overwritten", out.display());
    }
    let passphrase = secret("OVERREAD_KEY_PASSPHRASE", "passphrase for the new key")?;
    let key = SigningKey::generate();
    let sealed = EncryptedKey::seal(&key, &passphrase)?;
    sealed.write(out)?;
    println!("key id: {}", sealed.key_id);
    println!("public key: {}", sealed.public_key);
    Ok(())
}

pub fn report_cmd(cmd: &ReportCommand) -> Result<()> {
    match cmd {
        ReportCommand::Sign(a) => sign_cmd(a),
        ReportCommand::Submit(a) => submit_cmd(a),
        ReportCommand::KeyImage(a) => key_image_cmd(a),
    }
}

fn sign_cmd(a: &SignArgs) -> Result<()> {
    let text =
        std::fs::read_to_string(&a.report).with_context(|| a.report.display().to_string())?;
    let mut report: Report = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a report", a.report.display()))?;
    if a.output.exists() {
        bail!(
            "{} exists: a signed report is never written over (sign into a new file)",
            a.output.display()
        );
    }
    let sealed = EncryptedKey::read(&a.key)?;
    if report.key_id.is_empty() {
        report.key_id = sealed.key_id.clone();
    }
    // Signed now: a time in the file (a template reused, a draft from yesterday) would sign a
    // time the report was not signed at.
    let now = case_protocol::rfc3339_utc(case_protocol::unix_now());
    let given = case_protocol::parse_rfc3339_utc(&report.signed_at);
    if !report.signed_at.is_empty()
        && given.is_none_or(|t| (t - case_protocol::unix_now()).abs() > 60)
    {
        eprintln!(
            "signed_at {:?} in {} is not now: signed at {now}",
            report.signed_at,
            a.report.display()
        );
    }
    report.signed_at = now;
    let bytes = canonical_bytes(&report)?;
    if a.show {
        println!("{}", String::from_utf8_lossy(&bytes));
    }
    let passphrase = secret("OVERREAD_KEY_PASSPHRASE", "passphrase of the key")?;
    let key = sealed.open(&passphrase)?;
    let hash = report_hash(&report)?;
    let signed = sign_report(report, &key)?;
    let json = serde_json::to_vec_pretty(&signed)?;
    // Whole or not at all, owner-only (a report's text), never over another.
    let written = imaging::partial::private_beside(&a.output).and_then(|mut partial| {
        std::io::Write::write_all(&mut partial, &json)?;
        imaging::partial::persist_new(partial, &a.output)
    });
    written.with_context(|| a.output.display().to_string())?;
    println!("signed report {hash} -> {}", a.output.display());
    Ok(())
}

fn key_image_cmd(a: &KeyImageArgs) -> Result<()> {
    let png = std::fs::read(&a.png).with_context(|| a.png.display().to_string())?;
    let password = secret("OVERREAD_PASSWORD", "case server password")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let key = runtime.block_on(async {
        let mut client = a.login.client()?;
        client.login(&a.login.user, &password).await?;
        client.add_key_image(&a.case, png, &a.caption).await
    })?;
    println!("key image {key} attached to case {}", a.case);
    Ok(())
}

fn submit_cmd(a: &SubmitArgs) -> Result<()> {
    let outbox = Outbox::open(&a.outbox.clone().unwrap_or_else(Outbox::default_dir))?;
    for path in &a.signed {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let signed: SignedReport = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a signed report", path.display()))?;
        let hash = outbox.enqueue(&signed).map_err(anyhow::Error::msg)?;
        println!("queued {hash}");
    }
    let password = secret("OVERREAD_PASSWORD", "case server password")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(async {
        let mut client = a.login.client()?;
        // An unreachable server leaves everything pending, never lost.
        if let Err(e) = client.login(&a.login.user, &password).await {
            return Ok::<_, crate::cases::ClientError>(Err(e));
        }
        Ok(Ok(outbox
            .deliver(&client, a.attempts, Duration::from_millis(500))
            .await))
    })?;
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            bail!(
                "{e}; {} report(s) stay in {}",
                outbox.pending().len(),
                outbox.dir().display()
            )
        }
    };
    let mut failed = 0;
    for d in &results {
        match d {
            Delivery::Delivered(r) => println!(
                "receipt {} case {} at {}{}",
                r.report_hash,
                r.case_id,
                r.received_at,
                if r.duplicate { " (already stored)" } else { "" }
            ),
            Delivery::Refused {
                report_hash,
                status,
                message,
            } => {
                failed += 1;
                println!("REFUSED {report_hash} ({status}): {message}");
            }
            Delivery::Pending {
                report_hash, error, ..
            } => {
                failed += 1;
                println!("pending {report_hash}: {error}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} report(s) not receipted (see {})",
            outbox.dir().display()
        );
    }
    Ok(())
}
