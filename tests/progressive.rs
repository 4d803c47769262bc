//! Issue 2, item 6: loading reports every slice, delivers the middle slice first and then coarse
//! to fine, hands out each slice's pixels as it lands, and can be cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use imaging::decode::{SlicePixels, arrival_order};
use imaging::synth::{PhantomSpec, write_series};
use imaging::{self, ImagingError, LoadOptions, Voxels};

use crate::support::tempdir;

#[test]
fn arrival_order_is_middle_first_then_coarse_to_fine() {
    for n in [1, 2, 3, 10, 100, 1000, 5000] {
        let order = arrival_order(n);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..n).collect::<Vec<_>>(),
            "a permutation of 0..{n}"
        );
        assert_eq!(order[0], n / 2);
        // After the first 2^m + 1 slices, no gap is wider than about n / 2^m.
        for m in 1..6usize {
            let count = ((1usize << m) + 1).min(n);
            let mut seen: Vec<usize> = order[..count].to_vec();
            seen.sort_unstable();
            let widest = seen
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or(0)
                .max(n - 1 - seen[seen.len() - 1]);
            assert!(
                widest <= n.div_ceil(1 << (m - 1)),
                "n={n} m={m}: widest gap {widest}"
            );
        }
    }
}

fn phantom(slices: usize) -> (tempfile::TempDir, imaging::Stack) {
    let dir = tempdir();
    let spec = PhantomSpec {
        columns: 40,
        rows: 40,
        pixel_mm: 8.0,
        slices,
        spacing_mm: 3.0,
        ..PhantomSpec::default()
    };
    write_series(&spec, dir.path()).unwrap();
    let report = imaging::scan(&[dir.path().to_path_buf()]);
    let patients = imaging::group(&report.instances);
    let stack = imaging::default_stack(&patients).unwrap().clone();
    (dir, stack)
}

#[test]
fn every_slice_is_reported_with_its_pixels_in_arrival_order() {
    let (_dir, stack) = phantom(33);
    let events: Mutex<Vec<(usize, usize, Vec<u16>)>> = Mutex::new(Vec::new());
    // One worker: the order of events is exactly the arrival order.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let volume = pool
        .install(|| {
            imaging::load_stack(&stack, &LoadOptions::default(), &|e| {
                let SlicePixels::U16(p) = e.pixels else {
                    panic!("phantom is unsigned")
                };
                assert_eq!(e.total, 33);
                events.lock().unwrap().push((e.k, e.done, p.to_vec()));
            })
        })
        .unwrap();
    let events = events.into_inner().unwrap();
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        arrival_order(33)
    );
    assert_eq!(
        events.iter().map(|e| e.1).collect::<Vec<_>>(),
        (1..=33).collect::<Vec<_>>()
    );
    let Voxels::U16(a) = &volume.voxels else {
        panic!()
    };
    for (k, _, pixels) in &events {
        assert_eq!(
            a.index_axis(ndarray::Axis(0), *k)
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            *pixels,
            "slice {k}"
        );
    }
    assert!(volume.timings.first_slice_secs <= volume.timings.total_secs);
}

#[test]
fn a_load_can_be_cancelled_from_its_progress_callback() {
    let (_dir, stack) = phantom(60);
    let cancel = Arc::new(AtomicBool::new(false));
    let options = LoadOptions {
        cancel: Some(cancel.clone()),
    };
    let seen = Mutex::new(0usize);
    let result = imaging::load_stack(&stack, &options, &|_| {
        let mut n = seen.lock().unwrap();
        *n += 1;
        if *n == 5 {
            cancel.store(true, Ordering::Relaxed);
        }
    });
    assert!(matches!(result, Err(ImagingError::Cancelled)), "{result:?}");
    assert!(*seen.lock().unwrap() < 60, "stopped before the end");
}

/// A load does not hold the threads another load needs: while every slice of a first load
/// waits (in its progress callback) for the second load's first slice, the second load still
/// delivers it. On one shared pool the first load's workers would hold every thread and the
/// second would never start (the app: a series opened beside one still loading stayed blank
/// until the first had loaded whole).
#[test]
fn a_second_load_is_not_held_up_by_a_first() {
    use std::time::{Duration, Instant};
    let (_a_dir, a) = phantom(40);
    let (_b_dir, b) = phantom(8);
    let b_started = AtomicBool::new(false);
    let b_arrived = Arc::new(AtomicBool::new(false));
    let timed_out = AtomicBool::new(false);
    let loaded = imaging::load_stack(&a, &LoadOptions::default(), &|_| {
        // The second load starts once the first is under way.
        if !b_started.swap(true, Ordering::SeqCst) {
            let b = b.clone();
            let arrived = b_arrived.clone();
            std::thread::spawn(move || {
                imaging::load_stack(&b, &LoadOptions::default(), &|_| {
                    arrived.store(true, Ordering::SeqCst);
                })
            });
        }
        let waiting = Instant::now();
        while !b_arrived.load(Ordering::SeqCst) && !timed_out.load(Ordering::SeqCst) {
            if waiting.elapsed() > Duration::from_secs(60) {
                timed_out.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    assert!(loaded.is_ok());
    assert!(
        !timed_out.load(Ordering::SeqCst),
        "the second load's first slice never came while the first load waited"
    );
}
