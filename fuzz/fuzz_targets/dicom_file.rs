//! A file as a CD or an upload brings it: its header read as a scan reads it, then its first
//! frame decoded. Any outcome but a panic, an abort or an allocation past libFuzzer's limit is
//! fine (a named error is the point).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One file rewritten per input (the readers take paths), on tmpfs where there is one.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("overread-fuzz-{}.dcm", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    if imaging::header::read_header(path).is_ok() {
        let _ = imaging::decode::decode_frame_values(path, 0);
    }
});
