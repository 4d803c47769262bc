//! A file as a CD or an upload brings it: its header read as a scan reads it, then its first
//! frame decoded. Any outcome but a panic, an abort or an allocation past libFuzzer's limit is
//! fine (a named error is the point).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static PATH: LazyLock<PathBuf> = LazyLock::new(|| overread_fuzz::scratch("case.dcm"));

fuzz_target!(|data: &[u8]| {
    std::fs::write(&*PATH, data).expect("scratch file");
    if imaging::header::read_header(&PATH).is_ok() {
        let _ = imaging::decode::decode_frame_values(&PATH, 0);
    }
});
