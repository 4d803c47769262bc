//! `overread-server`: the command line (serve, init, user, key, case).

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use case_protocol::{CaseStatus, NewCase, Role};
use case_server::db::{DbError, parse_role, parse_status, status_name};
use case_server::{Db, Server, Store};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "overread-server", version, about = "Overread case server")]
struct Cli {
    /// Database: a SQLite file path or `sqlite:` URL, or a `postgres://` URL.
    #[arg(
        long,
        global = true,
        default_value = "overread-server.db",
        env = "OVERREAD_SERVER_DB"
    )]
    db: String,
    /// Where DICOM objects are kept: a folder, `file:///folder`, or `s3://bucket/prefix`
    /// (credentials and endpoint from the AWS_* variables).
    #[arg(
        long,
        global = true,
        default_value = "overread-objects",
        env = "OVERREAD_SERVER_STORE"
    )]
    store: String,
    /// Oldest study a case accepts, in days before today.
    #[arg(
        long,
        global = true,
        default_value_t = 365,
        env = "OVERREAD_MAX_STUDY_AGE_DAYS"
    )]
    max_study_age_days: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create (or migrate) the database.
    Init {
        /// Also write a self-signed TLS certificate and key (server-cert.pem, server-key.pem)
        /// beside the database, for a first start.
        #[arg(long)]
        self_signed: bool,
        /// Names the self-signed certificate is for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        names: Vec<String>,
        /// Folder for the self-signed pair (default: beside a SQLite file, else the current
        /// folder).
        #[arg(long)]
        tls_dir: Option<PathBuf>,
    },
    /// Serve the API over TLS (or plain HTTP on loopback with --insecure-http).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// PEM certificate chain.
        #[arg(long, env = "OVERREAD_SERVER_CERT")]
        cert: Option<PathBuf>,
        /// PEM private key.
        #[arg(long, env = "OVERREAD_SERVER_KEY")]
        key: Option<PathBuf>,
        /// Plain HTTP; allowed only on a loopback address.
        #[arg(long, conflicts_with_all = ["cert", "key"])]
        insecure_http: bool,
        /// Largest STOW-RS upload, MiB.
        #[arg(long, default_value_t = 1024)]
        max_upload_mib: usize,
        /// Folder a fax gateway watches: each signed report is written there as a PDF with a
        /// JSON sidecar (fax number, recipient, hash). Named, or `--no-delivery`: a default
        /// folder nobody watches would take reports and record them sent.
        #[arg(
            long,
            env = "OVERREAD_FAX_DIR",
            required_unless_present = "no_delivery"
        )]
        fax_dir: Option<PathBuf>,
        /// Take reports but deliver none: another server on the same database delivers them,
        /// or faxing is paused (the reports wait, none is lost; a server with delivery sends
        /// them).
        #[arg(long, conflicts_with = "fax_dir")]
        no_delivery: bool,
    },
    /// Write a case's patient copy (studies with a DICOMDIR, reports as PDF and signed JSON) as
    /// a ZIP archive.
    Export {
        #[arg(long)]
        case: String,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Write the PDF of a stored report to a file: the copy sent, where it was sent (else as
    /// it would be sent now; which one is said).
    ReportPdf {
        /// The report's sha256.
        hash: String,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Import a CD-ROM (its DICOMDIR or folder) or folders of DICOM files into a case. Each
    /// study is checked against the intake rules and stored whole or not at all.
    Import {
        /// DICOMDIR files, folders or files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        case: String,
        /// Name the files skipped or refused (on standard output). Without it they are said
        /// as "<file>": file names and folders often name the patient, and this output may
        /// end in a log.
        #[arg(long)]
        name_files: bool,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage radiologists' signing keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage cases.
    Case {
        #[command(subcommand)]
        command: CaseCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        id: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
        /// Subspecialties a radiologist reads, e.g. neuro,msk.
        #[arg(long, value_delimiter = ',')]
        subspecialty: Vec<String>,
    },
    /// Disable an account: no login, its sessions end at once (a lost laptop, a departure).
    /// Its signed reports stay verifiable; revoke its keys with `key revoke` as well if they
    /// may be in other hands.
    Disable { id: String },
    /// Enable a disabled account again (it logs in with its old password).
    Enable { id: String },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Register a public key (base64) for a radiologist.
    Add {
        user: String,
        #[arg(long)]
        public_key: String,
    },
    /// Revoke a key: no new reports under it; stored reports stay verifiable.
    Revoke { key_id: String },
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// Create a case from a JSON file (case-protocol `NewCase`).
    Create { json: PathBuf },
    /// Assign a case to a radiologist.
    Assign {
        id: String,
        #[arg(long)]
        radiologist: String,
    },
    /// Move a case to its next status.
    Status { id: String, status: String },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let db = Db::open(&cli.db).await.map_err(|e| e.to_string())?;
    let err = |e: DbError| e.to_string();
    let server = || -> Result<Server, String> {
        let store = Store::open(&cli.store).map_err(|e| e.to_string())?;
        let mut server = Server::new(db.clone(), store);
        server.rules.max_study_age_days = cli.max_study_age_days;
        Ok(server)
    };
    match cli.command {
        Command::Init {
            self_signed,
            names,
            tls_dir,
        } => {
            println!("database ready: {}", case_server::db::redacted(&cli.db));
            if self_signed {
                let dir = match tls_dir {
                    Some(dir) => dir,
                    None if db.backend == case_server::db::Backend::Sqlite => {
                        Path::new(cli.db.trim_start_matches("sqlite://"))
                            .parent()
                            .filter(|p| !p.as_os_str().is_empty())
                            .unwrap_or(Path::new("."))
                            .to_path_buf()
                    }
                    None => PathBuf::from("."),
                };
                let (cert, key) = case_server::tls::write_self_signed(&dir, &names)?;
                println!("certificate: {}\nkey: {}", cert.display(), key.display());
            }
        }
        Command::Serve {
            listen,
            cert,
            key,
            insecure_http,
            max_upload_mib,
            fax_dir,
            no_delivery,
        } => {
            let mut server = server()?;
            server.max_upload_bytes = max_upload_mib.saturating_mul(1 << 20);
            // The fax folder is made only once the command line is known to be good.
            let with_delivery = |mut server: Server| -> Result<Server, String> {
                let Some(fax_dir) = fax_dir.filter(|_| !no_delivery) else {
                    return Ok(server);
                };
                std::fs::create_dir_all(&fax_dir)
                    .map_err(|e| format!("{}: {e}", fax_dir.display()))?;
                server.delivery = Some(case_server::delivery::DeliveryConfig::folder(&fax_dir));
                Ok(server)
            };
            if insecure_http {
                if !listen.ip().is_loopback() {
                    return Err(format!("plain HTTP only on loopback; {listen} is not"));
                }
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| format!("{listen}: {e}"))?;
                println!(
                    "serving on http://{}",
                    listener.local_addr().map_err(|e| e.to_string())?
                );
                case_server::serve(with_delivery(server)?, listener)
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                let (Some(cert), Some(key)) = (cert, key) else {
                    return Err("serving needs --cert and --key (PEM; `init --self-signed` writes a pair), or --insecure-http on loopback".into());
                };
                let config = case_server::tls::server_config(&cert, &key)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| format!("{listen}: {e}"))?;
                println!(
                    "serving on https://{}",
                    listener.local_addr().map_err(|e| e.to_string())?
                );
                case_server::serve_tls(with_delivery(server)?, listener, config)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Command::Import {
            paths,
            case,
            name_files,
        } => import(&server()?, &paths, &case, name_files).await?,
        Command::Export { case, out } => {
            let server = server()?;
            // Whole or not at all: a failed export leaves an earlier copy as it was.
            let at_out = |e: std::io::Error| format!("{}: {e}", out.display());
            let partial = imaging::partial::beside(&out).map_err(at_out)?;
            let file = partial.as_file().try_clone().map_err(at_out)?;
            let summary = case_server::export::patient_copy(&server.db, &server.store, &case, file)
                .await
                .map_err(|e| e.to_string())?;
            imaging::partial::persist(partial, &out).map_err(at_out)?;
            cli_audit(
                &db,
                "case_export",
                Some(&case),
                &format!(
                    "patient copy: {} instances, {} reports",
                    summary.instances, summary.reports
                ),
            )
            .await?;
            println!(
                "{}: {} studies, {} series, {} instances, {} reports",
                out.display(),
                summary.studies,
                summary.series,
                summary.instances,
                summary.reports
            );
        }
        Command::ReportPdf { hash, out } => {
            let server = server()?;
            // The PDF as it was sent where it was (kept by its sha256), so that what QA
            // compares is what the physician received; a rendering only for one not sent.
            let case_id: Option<String> =
                sqlx::query_scalar("SELECT case_id FROM reports WHERE report_hash = $1")
                    .bind(&hash)
                    .fetch_optional(&server.db.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            let Some(case_id) = case_id else {
                return Err(format!("no report {hash}"));
            };
            let (pdf, note) = case_server::export::delivered_pdf(&server.db, &server.store, &hash)
                .await
                .map_err(|e| e.to_string())?;
            let at_out = |e: std::io::Error| format!("{}: {e}", out.display());
            let mut partial = imaging::partial::beside(&out).map_err(at_out)?;
            std::io::Write::write_all(partial.as_file_mut(), &pdf).map_err(at_out)?;
            imaging::partial::persist(partial, &out).map_err(at_out)?;
            cli_audit(&db, "report_pdf", Some(&case_id), &hash).await?;
            println!("{} ({note})", out.display());
        }
        Command::User {
            command:
                UserCommand::Add {
                    id,
                    role,
                    name,
                    subspecialty,
                },
        } => {
            let role: Role = parse_role(&role).ok_or_else(|| {
                format!("unknown role {role} (radiologist, qa_reviewer, coordinator, admin)")
            })?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| e.to_string())?;
            db.add_user(
                &id,
                role,
                &name,
                &subspecialty,
                password.trim_end_matches(['\n', '\r']),
            )
            .await
            .map_err(err)?;
            // As the API's `user_add` is audited.
            cli_audit(&db, "user_add", None, &id).await?;
            println!("user {id} added");
        }
        Command::User {
            command: UserCommand::Disable { id },
        } => {
            if !db.disable_user(&id).await.map_err(err)? {
                return Err(format!("no enabled account {id}"));
            }
            cli_audit(&db, "user_disable", None, &id).await?;
            println!("user {id} disabled; their sessions ended");
        }
        Command::User {
            command: UserCommand::Enable { id },
        } => {
            if !db.enable_user(&id).await.map_err(err)? {
                return Err(format!("no disabled account {id}"));
            }
            cli_audit(&db, "user_enable", None, &id).await?;
            println!("user {id} enabled");
        }
        Command::Key {
            command: KeyCommand::Add { user, public_key },
        } => {
            let id = db.add_key(&user, &public_key).await.map_err(err)?;
            cli_audit(&db, "key_add", None, &id).await?;
            println!("{id}");
        }
        Command::Key {
            command: KeyCommand::Revoke { key_id },
        } => {
            let revoked = db.revoke_key(&key_id).await.map_err(err)?;
            cli_audit(&db, "key_revoke", None, &key_id).await?;
            println!(
                "{key_id}: {}",
                if revoked { "revoked" } else { "was not active" }
            );
        }
        Command::Case {
            command: CaseCommand::Create { json },
        } => {
            let text =
                std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
            let new: NewCase = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}: {}",
                    json.display(),
                    case_server::api::sanitize_json_error(&e.to_string())
                )
            })?;
            let case = db.create_case(&new).await.map_err(err)?;
            cli_audit(&db, "case_create", Some(&case.id), "").await?;
            println!("{}", case.id);
        }
        Command::Case {
            command: CaseCommand::Assign { id, radiologist },
        } => {
            let case = db.assign(&id, &radiologist).await.map_err(err)?;
            cli_audit(&db, "case_assign", Some(&id), &radiologist).await?;
            println!("{} assigned to {radiologist}", case.id);
        }
        Command::Case {
            command: CaseCommand::Status { id, status },
        } => {
            let to: CaseStatus =
                parse_status(&status).ok_or_else(|| format!("unknown status {status}"))?;
            let case = db.set_status(&id, to).await.map_err(err)?;
            cli_audit(&db, "case_status", Some(&id), status_name(to)).await?;
            println!("{} is {}", case.id, status_name(case.status));
        }
    }
    Ok(())
}

/// `import`: scan, group by study, and store each study (all of it or none of it). Prints one
/// line per study; fails when any study was refused or nothing could be read.
async fn import(
    server: &Server,
    paths: &[PathBuf],
    case: &str,
    name_files: bool,
) -> Result<(), String> {
    let report = case_server::intake::import(server, paths, case)
        .await
        .map_err(|e| e.to_string())?;
    for s in &report.skipped {
        if name_files {
            println!("skipped {}: {}", s.path.display(), s.why);
        } else {
            println!("skipped <file>: {}", s.why);
        }
    }
    if report.non_image_objects > 0 {
        println!(
            "skipped {} DICOM objects without pixels (reports, presentation states)",
            report.non_image_objects
        );
    }
    for s in &report.stored {
        println!(
            "study {}: {} instances in {} series stored ({} new)",
            s.study_uid, s.instances, s.series, s.new
        );
    }
    for r in &report.refused {
        let why = if name_files {
            &r.why_naming_files
        } else {
            &r.why
        };
        println!("study {}: refused, nothing stored: {why}", r.study_uid);
    }
    if !name_files && (!report.skipped.is_empty() || !report.refused.is_empty()) {
        println!("(files said as <file>: --name-files names them)");
    }
    if report.stored.is_empty() && report.refused.is_empty() {
        return Err("no images found".into());
    }
    if !report.refused.is_empty() {
        return Err(format!(
            "{} studies refused (see above)",
            report.refused.len()
        ));
    }
    Ok(())
}

/// Audit rows for the command line (user "cli"; the operator's shell is the "from where").
async fn cli_audit(
    db: &Db,
    action: &str,
    case_id: Option<&str>,
    detail: &str,
) -> Result<(), String> {
    db.audit(Some("cli"), action, case_id, Some("local"), detail)
        .await
        .map_err(|e| e.to_string())
}
