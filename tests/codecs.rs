//! Issue 2, item 5: every transfer syntax in `../shared/dicom` decodes, and every lossless file
//! is bit-identical to its uncompressed twin.

use std::path::{Path, PathBuf};

use overread::imaging::decode::{DecodedFrame, decode_frame_values};

use crate::support::shared_dicom;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| !p.extension().is_some_and(|e| e == "txt" || e == "md"))
        .collect();
    out.sort();
    out
}

fn frames_of(path: &Path) -> u32 {
    let obj = overread::imaging::open::open_dicom(path, true).unwrap();
    obj.get(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1)
}

fn decode_all(path: &Path) -> Vec<DecodedFrame> {
    (0..frames_of(path))
        .map(|f| decode_frame_values(path, f).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn explore_every_codec_file() {
    let Some(root) = shared_dicom() else { return };
    let mut failures = Vec::new();
    let mut ok = 0;
    for dir in ["codecs", "derived"] {
        for path in files_under(&root.join(dir)) {
            let frames = match std::panic::catch_unwind(|| frames_of(&path)) {
                Ok(n) => n,
                Err(_) => {
                    failures.push(format!("{}: header unreadable", path.display()));
                    continue;
                }
            };
            for f in [0, frames - 1] {
                match decode_frame_values(&path, f) {
                    Ok(_) => ok += 1,
                    Err(e) => failures.push(e.to_string()),
                }
            }
        }
    }
    eprintln!("{ok} frames decoded; failures:\n{}", failures.join("\n"));
    panic!("explore");
}
