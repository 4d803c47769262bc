//! What the fuzz targets share: a scratch file per process (the readers take paths), on
//! tmpfs where there is one.

use std::path::{Path, PathBuf};

/// `name` in this process's scratch folder (made on first use).
pub fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("overread-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir.join(name)
}
