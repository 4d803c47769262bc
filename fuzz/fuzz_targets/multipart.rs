//! A multipart/related body as STOW-RS brings it to the server and WADO-RS to the
//! workstation. The first byte says how long the boundary is (the rest of the head), the
//! remainder is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 72).min(rest.len());
    let (boundary, body) = rest.split_at(n);
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    if let Ok(parts) = case_protocol::multipart::parse(body, boundary) {
        for part in &parts {
            // Every part lies inside the body it came from.
            assert!(part.range.start <= part.range.end && part.range.end <= body.len());
        }
    }
    let _ = case_protocol::multipart::MediaType::parse(&String::from_utf8_lossy(body));
});
