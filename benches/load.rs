//! Criterion benchmarks of the imaging core on synthetic CT: header scan, and volume load for
//! the transfer syntaxes Overread can write itself. Peer tools are timed on the same data by
//! `benches/peers.sh`; results and the machine are in `benches/README.md`.

// A benchmark that cannot set up its data has nothing to measure: failing loudly is right.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use imaging::synth::{PhantomSpec, SynthSyntax, write_series};
use imaging::{self, LoadOptions};

const SLICES: usize = 120;

fn series(root: &Path, syntax: SynthSyntax) -> PathBuf {
    let dir = root.join(format!("{syntax:?}"));
    let spec = PhantomSpec {
        slices: SLICES,
        syntax,
        ..PhantomSpec::default()
    };
    write_series(&spec, &dir).expect("write phantom");
    dir
}

fn bench_load(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("load_512x512x120");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((512 * 512 * 2 * SLICES) as u64));
    for syntax in [
        SynthSyntax::ExplicitLe,
        SynthSyntax::Rle,
        SynthSyntax::JpegLs,
        SynthSyntax::JpegLossless,
        SynthSyntax::J2kLossless,
    ] {
        let dir = series(root.path(), syntax);
        let report = imaging::scan(std::slice::from_ref(&dir));
        let patients = imaging::group(&report.instances);
        let stack = imaging::default_stack(&patients).expect("stack").clone();
        group.bench_function(format!("{syntax:?}"), |b| {
            b.iter(|| imaging::load_stack(&stack, &LoadOptions::default(), &|_| {}).expect("load"))
        });
        if syntax == SynthSyntax::ExplicitLe {
            group.bench_function("scan_and_group_headers", |b| {
                b.iter(|| imaging::group(&imaging::scan(std::slice::from_ref(&dir)).instances))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
