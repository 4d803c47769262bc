//! Criterion benchmarks of rendering: frame time (render + readback) for a window/level change,
//! orthogonal and oblique reslices and 10/30 mm MIP slabs at 512^2, 1024^2 and 2048^2, on the
//! GPU adapter `OVERREAD_ADAPTER` picks (lavapipe on a machine without a GPU) beside the CPU
//! reference renderer in the same run; and volume upload throughput. Results in
//! `benches/README.md`.

// A benchmark that cannot set up its device or data has nothing to measure: fail loudly.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use imaging::synth::{PhantomSpec, phantom_volume};
use overread::render::gpu::ViewTarget;
use overread::render::{
    AdapterChoice, Display, GpuContext, Plane, Renderer, SlabMode, SliceView, Voi, VolumeInfo,
    VolumeTexture, cpu,
};

const SIZES: [u32; 3] = [512, 1024, 2048];

fn views(info: &VolumeInfo, size: u32) -> Vec<(&'static str, SliceView)> {
    let fit = |plane| SliceView::fit(info, plane, None, size, size).expect("view");
    let mut mip10 = fit(Plane::Coronal);
    mip10.slab_mm = 10.0;
    mip10.slab_mode = SlabMode::Mip;
    let mut mip30 = mip10.clone();
    mip30.slab_mm = 30.0;
    vec![
        ("axial", fit(Plane::Axial)),
        ("coronal", fit(Plane::Coronal)),
        ("oblique", fit(Plane::Oblique([0.3, 0.5, 1.0]))),
        ("mip10_coronal", mip10),
        ("mip30_coronal", mip30),
    ]
}

fn bench_render(c: &mut Criterion) {
    let spec = PhantomSpec {
        slices: 300,
        spacing_mm: 1.0,
        ..PhantomSpec::default()
    };
    let volume = phantom_volume(&spec);
    let info = Arc::new(VolumeInfo::new(&volume).expect("info"));
    let ctx = GpuContext::new(AdapterChoice::from_env()).expect("graphics adapter");
    eprintln!("adapter: {}", ctx.describe());
    let renderer = Renderer::new(&ctx);
    let lung = Display::new(Voi::preset("lung").expect("preset"));
    let soft = Display::new(Voi::preset("mediastinum").expect("preset"));

    let mut upload = c.benchmark_group("upload_512x512x300");
    upload.sample_size(10);
    upload.throughput(Throughput::Bytes((512 * 512 * 2 * 300) as u64));
    upload.bench_function("gpu", |b| {
        b.iter(|| {
            let t = VolumeTexture::upload(&ctx, &renderer, &volume).expect("upload");
            // Wait for the copy to land.
            let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
            t
        })
    });
    upload.finish();
    let texture = VolumeTexture::upload(&ctx, &renderer, &volume).expect("upload");

    for size in SIZES {
        let mut group = c.benchmark_group(format!("frame_{size}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        let mut target = ViewTarget::new(&ctx, size, size, lung.depth);
        let axial = SliceView::fit(&info, Plane::Axial, None, size, size).expect("view");
        renderer
            .resample(&ctx, &texture, &axial, &mut target)
            .expect("resample");
        group.bench_function(BenchmarkId::new("gpu", "window_level"), |b| {
            let mut flip = false;
            b.iter(|| {
                flip = !flip;
                let d = if flip { &lung } else { &soft };
                renderer.display(&ctx, d, &mut target).expect("display");
                target.read(&ctx).expect("read")
            })
        });
        let resampled = cpu::resample(&info, &volume.voxels, &axial).expect("resample");
        group.bench_function(BenchmarkId::new("cpu", "window_level"), |b| {
            b.iter(|| cpu::display(&resampled, &lung).expect("display"))
        });
        for (name, view) in views(&info, size) {
            group.bench_function(BenchmarkId::new("gpu", name), |b| {
                b.iter(|| {
                    renderer
                        .resample(&ctx, &texture, &view, &mut target)
                        .expect("resample");
                    renderer.display(&ctx, &lung, &mut target).expect("display");
                    target.read(&ctx).expect("read")
                })
            });
            // The CPU reference at 2048^2 with 30 mm slabs takes seconds a frame; it is measured
            // up to 1024^2 and for thin planes at 2048^2.
            if size <= 1024 || !name.starts_with("mip") {
                group.bench_function(BenchmarkId::new("cpu", name), |b| {
                    b.iter(|| cpu::render(&info, &volume.voxels, &view, &lung).expect("render"))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
