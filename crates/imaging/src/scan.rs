//! Finding DICOM files: files, folders (recursive) and DICOMDIR file-sets, headers only.
//!
//! Paths are collected first (cheap, sequential), then every header is read in parallel with
//! rayon. Nothing here fails as a whole because of one file: a file that is not DICOM, is
//! truncated or unreadable becomes a [`ScanWarning`] naming it, and the rest goes on.
//!
//! Owns: walking and DICOMDIR navigation. Must not decode pixels (see `decode`).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use rayon::prelude::*;
use serde::Serialize;

use super::header::{FileKind, InstanceHeader, read_header, text};

/// A file that could not be used, and why. Names the file, never the patient.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScanWarning {
    pub path: PathBuf,
    pub message: String,
}

/// The outcome of a scan: every image header found, and every file that was not usable.
#[derive(Debug, Default, Serialize)]
pub struct ScanReport {
    pub instances: Vec<InstanceHeader>,
    pub warnings: Vec<ScanWarning>,
    /// Number of files looked at (including non-images and failures).
    pub files_seen: usize,
    /// DICOM objects without pixels (structured reports, presentation states ...).
    pub non_image_objects: usize,
    /// DICOMDIR file-set directories found or given.
    pub dicomdirs: Vec<PathBuf>,
}

/// Scan files, folders (recursively) and DICOMDIR files, reading headers only, in parallel.
///
/// A DICOMDIR given directly is followed record by record (a CD-ROM's own index); a folder is
/// walked whole, and any DICOMDIR inside it is checked for references to missing files.
pub fn scan(paths: &[PathBuf]) -> ScanReport {
    scan_until(paths, &std::sync::atomic::AtomicBool::new(false)).unwrap_or_default()
}

/// [`scan`], given up as soon as `stop` is set (checked at every file walked and read):
/// `None` then. A scan no longer wanted (another folder dropped meanwhile) stops competing
/// with the next for the disk and the threads.
pub fn scan_until(paths: &[PathBuf], stop: &std::sync::atomic::AtomicBool) -> Option<ScanReport> {
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    let mut report = ScanReport::default();
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in walkdir::WalkDir::new(path)
                .follow_links(true)
                .sort_by_file_name()
            {
                if stopped() {
                    return None;
                }
                match entry {
                    Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
                    Ok(_) => {}
                    Err(err) => report.warnings.push(ScanWarning {
                        path: err
                            .path()
                            .map(Path::to_path_buf)
                            .unwrap_or_else(|| path.clone()),
                        message: format!("cannot walk: {err}"),
                    }),
                }
            }
        } else if path.is_file() {
            if is_dicomdir_name(path) {
                match dicomdir_references(path) {
                    Ok(refs) => {
                        report.dicomdirs.push(path.clone());
                        for r in refs {
                            match r {
                                Ok(file) => files.push(file),
                                Err(w) => report.warnings.push(w),
                            }
                        }
                        continue;
                    }
                    Err(w) => report.warnings.push(w),
                }
            }
            files.push(path.clone());
        } else {
            report.warnings.push(ScanWarning {
                path: path.clone(),
                message: "no such file or folder".into(),
            });
        }
    }

    // One file reached twice (DICOMDIR and a folder, or the same folder given twice) counts once.
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    report.files_seen = files.len();

    let results: Vec<(PathBuf, Result<FileKind, String>)> = files
        .into_par_iter()
        .map(|path| {
            if stopped() {
                return (path, Err(String::new()));
            }
            let kind = read_header(&path).map_err(|e| reason_for(&path, &e));
            (path, kind)
        })
        .collect();
    if stopped() {
        return None;
    }

    let mut sop_seen: HashSet<String> = HashSet::new();
    for (path, result) in results {
        match result {
            Ok(FileKind::Image(header)) => {
                if !header.sop_instance_uid.is_empty()
                    && !sop_seen.insert(header.sop_instance_uid.clone())
                {
                    report.warnings.push(ScanWarning {
                        path,
                        message: "duplicate SOP Instance UID: a copy of another file, skipped"
                            .into(),
                    });
                    continue;
                }
                report.instances.push(*header);
            }
            Ok(FileKind::Dicomdir) => {
                // A DICOMDIR found while walking: its images are in the walk already; report
                // the references it makes to files that are not there.
                if let Ok(refs) = dicomdir_references(&path) {
                    report
                        .warnings
                        .extend(refs.into_iter().filter_map(|r| r.err()));
                }
                report.dicomdirs.push(path);
            }
            Ok(FileKind::NonImage { .. }) => report.non_image_objects += 1,
            Err(message) => report.warnings.push(ScanWarning { path, message }),
        }
    }
    Some(report)
}

/// Why a file could not be read, without repeating its path (the warning names it).
fn reason_for(path: &Path, err: &super::ImagingError) -> String {
    if !has_dicm_marker(path) {
        return "not a DICOM file (no DICM marker at byte 128)".into();
    }
    let text = err.to_string();
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix)
        .map(str::to_string)
        .unwrap_or(text)
}

fn has_dicm_marker(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head[128..132] == b"DICM")
}

fn is_dicomdir_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_uppercase().starts_with("DICOMDIR"))
}

/// The image files a DICOMDIR references (PS3.10 8.6, PS3.3 F.3), resolved against the
/// DICOMDIR's folder; each reference to a missing file is a warning.
pub fn dicomdir_references(
    dicomdir: &Path,
) -> Result<Vec<Result<PathBuf, ScanWarning>>, ScanWarning> {
    let warn = |message: String| ScanWarning {
        path: dicomdir.to_path_buf(),
        message,
    };
    // Through the same length walk and panic guard as every image: a CD's DICOMDIR is input.
    let obj = crate::open::open_dicom(dicomdir, false)
        .map_err(|e| warn(format!("not a readable DICOMDIR: {e}")))?;
    // "DICOMDIR" named from inside its folder has the empty path as its parent, which names
    // no folder (canonicalized, it fails, and every reference would seem to lead out).
    let root = match dicomdir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let records = obj
        .get(tags::DIRECTORY_RECORD_SEQUENCE)
        .and_then(|e| e.items())
        .ok_or_else(|| warn("DICOMDIR has no Directory Record Sequence (0004,1220)".into()))?;
    let mut refs = BTreeSet::new();
    for record in records {
        if let Some(id) = text(record, tags::REFERENCED_FILE_ID) {
            refs.insert(id);
        }
    }
    // Where the file-set is, links resolved (once, not per reference).
    let real_root = root.canonicalize().ok();
    Ok(refs
        .into_iter()
        .map(|id| {
            let components: Vec<&str> = id.split('\\').map(str::trim).collect();
            if !components.iter().all(|c| plain_component(c)) {
                return Err(warn(format!(
                    "Referenced File ID {id:?} is not a path inside the DICOMDIR's folder: not \
                     followed"
                )));
            }
            let file = resolve_components(root, &components).ok_or_else(|| ScanWarning {
                path: root.join(components.join("/")),
                message: "referenced by DICOMDIR but missing".into(),
            })?;
            // A link on the CD (Rock Ridge) or in a copy of it can lead out all the same.
            let inside = match (&real_root, file.canonicalize()) {
                (Some(root), Ok(file)) => file.starts_with(root),
                _ => false,
            };
            if !inside {
                return Err(warn(format!(
                    "Referenced File ID {id:?} leads out of the DICOMDIR's folder through a \
                     link: not followed"
                )));
            }
            Ok(file)
        })
        .collect())
}

/// One component of a Referenced File ID names a file or folder within the one before it
/// (PS3.10 8.5: upper case letters, digits and underscore). A CD's DICOMDIR is input: "..", a
/// separator or a root would lead out of the file-set to files it does not hold.
fn plain_component(component: &str) -> bool {
    !component.is_empty()
        && component != "."
        && component != ".."
        && !component.contains(['/', '\0', ':'])
        && Path::new(component).is_relative()
}

/// Follow Referenced File ID components, matching case-insensitively where the exact name is
/// absent (ISO 9660 names are upper case; copies off a CD often are not).
fn resolve_components(root: &Path, components: &[&str]) -> Option<PathBuf> {
    let mut current = root.to_path_buf();
    for component in components {
        let exact = current.join(component);
        if exact.exists() {
            current = exact;
            continue;
        }
        let wanted = component.to_ascii_lowercase();
        let found = std::fs::read_dir(&current).ok()?.flatten().find(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.to_ascii_lowercase() == wanted)
        })?;
        current = found.path();
    }
    current.is_file().then_some(current)
}
