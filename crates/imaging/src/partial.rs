//! A file written whole or not at all: first under a temporary name of its own beside where
//! it goes (so the rename is within one file system), then synced and renamed into place.
//! Used by every export that must not leave a file that looks complete but is not (NIfTI
//! here; the server's patient copy, report PDFs and fax folder).

use std::path::Path;

/// The folder `path` goes into ("." for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file beside `path` (`.overread-*.partial`), readable as any new file is
/// (0666 less the umask, not tempfile's owner-only 0600: an export in a shared folder is for
/// others to read). Dropped unfinished, it is removed.
pub fn beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    temporary_beside(path, 0o666)
}

/// A temporary file beside `path` that only its owner may read (0600): for what holds a
/// patient's report or draft in a folder others may list.
pub fn private_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    temporary_beside(path, 0o600)
}

/// A temporary file beside `path` that its owner and group may read (0640): for a patient's
/// document handed to another service of the same group (the fax gateway), not to everyone.
pub fn group_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    temporary_beside(path, 0o640)
}

/// `.overread-*.partial` beside `path`, made with `mode` (less the umask; unix).
fn temporary_beside(path: &Path, mode: u32) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".overread-").suffix(".partial");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    builder.tempfile_in(folder_of(path))
}

/// Create `dir` where it is missing (with the folders above it), owner-only (0700), its
/// entry synced. One already there is left as it is (a folder its owner chose to share):
/// the files written into it are owner-only all the same ([`private_beside`]).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    // Its entry in the folder above survives a power loss.
    std::fs::File::open(folder_of(dir))?.sync_all()
}

/// `partial` (written) synced, renamed to `path`, and the folder synced: the rename survives
/// a power loss.
pub fn persist(partial: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    partial.as_file().sync_all()?;
    partial.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(folder_of(path))?.sync_all()
}

/// [`persist`], but never over a file already at `path` (`AlreadyExists`, and `partial`
/// removed): for what must not replace an earlier one, a signed report say.
pub fn persist_new(partial: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    partial.as_file().sync_all()?;
    partial.persist_noclobber(path).map_err(|e| e.error)?;
    std::fs::File::open(folder_of(path))?.sync_all()
}
