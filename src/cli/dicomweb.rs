//! DICOMweb study URLs wherever the command line takes paths, and `overread fetch`.
//!
//! A path argument of the form `http[s]://HOST/PREFIX/studies/UID` is downloaded (see
//! [`crate::cases::dicomweb`]) into a private temporary folder that lives as long as the
//! command, and that folder is what `scan`, `load`, `export` and `render` read (`open` hands
//! the URL to the workstation, which shows the first image while the rest arrives).
//!
//! Access: `OVERREAD_DICOMWEB_TOKEN` (a bearer token), or `OVERREAD_USER` with
//! `OVERREAD_PASSWORD` (a login at the URL's origin: Overread's case server); `OVERREAD_CA` names
//! a CA file to trust instead of the system roots (a server's self-signed certificate).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::cases::dicomweb::{DEFAULT_CONCURRENCY, DicomWebClient, Download, StudyUrl, shown};

/// Paths with every study URL replaced by the folder it was downloaded into.
#[derive(Debug)]
pub struct Inputs {
    pub paths: Vec<PathBuf>,
    pub downloads: Vec<Download>,
    _folders: Vec<tempfile::TempDir>,
}

/// The study at `url` retrieved into `folder`, `concurrency` requests at a time, with the
/// access the environment gives; an error names the study and where (without credentials).
fn retrieve(
    url: &StudyUrl,
    folder: &std::path::Path,
    concurrency: usize,
    runtime: &tokio::runtime::Runtime,
) -> Result<Download> {
    let client = runtime
        .block_on(DicomWebClient::for_url(url, None))
        .with_context(|| format!("connecting to {}", shown(&url.origin())))?;
    runtime
        .block_on(client.download(url, folder, concurrency, |_| {}))
        .with_context(|| {
            format!(
                "retrieving study {} from {}",
                url.study_uid,
                shown(&url.root)
            )
        })
}

/// Download every study URL among `paths`; other paths pass through unchanged.
pub fn resolve(paths: &[PathBuf]) -> Result<Inputs> {
    let mut out = Inputs {
        paths: Vec::with_capacity(paths.len()),
        downloads: Vec::new(),
        _folders: Vec::new(),
    };
    let mut runtime = None;
    for path in paths {
        let Some(url) = path.to_str().and_then(StudyUrl::parse) else {
            out.paths.push(path.clone());
            continue;
        };
        let rt = match &runtime {
            Some(rt) => rt,
            None => runtime.insert(tokio::runtime::Runtime::new()?),
        };
        let folder = tempfile::Builder::new()
            .prefix("overread-study-")
            .tempdir()?;
        let download = retrieve(&url, folder.path(), DEFAULT_CONCURRENCY, rt)?;
        out.paths.push(folder.path().to_path_buf());
        out.downloads.push(download);
        out._folders.push(folder);
    }
    Ok(out)
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A DICOMweb study URL, `http[s]://HOST/PREFIX/studies/UID`.
    pub url: String,
    /// Folder to write the instances into (created; one that holds files already is refused:
    /// a study fetched into another's folder would open mixed with it).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    #[arg(long)]
    pub json: bool,
}

/// `overread fetch URL -o DIR`: retrieve a study over DICOMweb and say how fast.
pub fn fetch_cmd(args: &FetchArgs) -> Result<()> {
    let url = StudyUrl::parse(&args.url).with_context(|| {
        format!(
            "{}: not a DICOMweb study URL (…/studies/UID)",
            shown(&args.url)
        )
    })?;
    if std::fs::read_dir(&args.out).is_ok_and(|mut entries| entries.next().is_some()) {
        anyhow::bail!(
            "{}: the folder holds files already; fetch into a new or empty folder (a study \
             fetched beside another would open mixed with it)",
            args.out.display()
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    let d = retrieve(&url, &args.out, args.concurrency, &rt)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "folder": d.folder,
                "instances": d.files.len(),
                "series": d.series,
                "bytes": d.bytes,
                "first_instance_secs": d.first_instance_secs,
                "total_secs": d.total_secs,
                "megabytes_per_sec": d.megabytes_per_sec(),
            }))?
        );
    } else {
        println!(
            "{} instances in {} series, {:.1} MB in {:.2} s ({:.0} MB/s; first instance after {:.3} s) -> {}",
            d.files.len(),
            d.series,
            d.bytes as f64 / 1e6,
            d.total_secs,
            d.megabytes_per_sec(),
            d.first_instance_secs,
            d.folder.display()
        );
    }
    Ok(())
}
