//! A DICOMDIR as a CD brings it: its records walked to the files they name (which need not
//! exist: a missing one is a warning).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static PATH: LazyLock<PathBuf> = LazyLock::new(|| overread_fuzz::scratch("DICOMDIR"));

fuzz_target!(|data: &[u8]| {
    std::fs::write(&*PATH, data).expect("scratch file");
    let _ = imaging::scan::dicomdir_references(&PATH);
});
