//! The real `overread` binary: synth, scan --json, load --json, export --nifti, and the demo
//! that the README's run command starts.

use std::path::Path;
use std::process::Command;

use glam::DVec3;
use imaging::{self, stats::voxel_stats};

use crate::support::{nifti::Nifti, tempdir};

fn overread(args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_overread"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "overread {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A DICOMDIR named from inside its own folder (`cd /media/cdrom && overread scan DICOMDIR`)
/// is followed as from outside: all 38 images of the dcmtk CD, no warning.
#[test]
fn a_dicomdir_named_from_its_own_folder_is_followed() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_overread"))
        .args(["scan", "DICOMDIR", "--json"])
        .current_dir(root.join("dicomdir/dcmtk_generated_cd/cd"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scan["images"], 38, "{}", scan["warnings"]);
    assert_eq!(scan["warnings"].as_array().map(Vec::len), Some(0));
}

#[test]
fn synth_scan_load_export_round_trip() {
    let dir = tempdir();
    let series = dir.path().join("series");
    let s = series.to_str().unwrap();
    overread(
        &[
            "synth",
            "-o",
            s,
            "--slices",
            "12",
            "--size",
            "64",
            "--pixel-mm",
            "5",
            "--spacing-mm",
            "4",
            "--tilt-deg",
            "12",
            "--syntax",
            "jpeg-ls",
        ],
        &[],
    );

    let scan: serde_json::Value =
        serde_json::from_str(&overread(&["scan", s, "--json"], &[])).unwrap();
    assert_eq!(scan["images"], 12);
    let stack = &scan["patients"][0]["studies"][0]["series"][0]["stacks"][0];
    assert_eq!(stack["dims"], serde_json::json!([64, 64, 12]));
    assert!((stack["irregularity"]["shear_deg"].as_f64().unwrap() - 12.0).abs() < 1e-3);
    // Identity never leaves in JSON.
    assert_eq!(scan["patients"][0]["name"], "<redacted>");
    assert!(!overread(&["scan", s, "--json"], &[]).contains("PHANTOM"));

    let load: serde_json::Value =
        serde_json::from_str(&overread(&["load", s, "--json"], &[])).unwrap();
    let report = imaging::scan(std::slice::from_ref(&series));
    let patients = imaging::group(&report.instances);
    let volume = imaging::load_stack(
        imaging::default_stack(&patients).unwrap(),
        &Default::default(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        load["stats"]["sha256"].as_str(),
        voxel_stats(&volume).sha256.as_deref()
    );
    let stats = voxel_stats(&volume);
    assert_eq!(
        load["stats"]["min_modality"],
        f64::from(stats.min_stored) - 1024.0
    );
    assert_eq!(load["stats"]["max_stored"], stats.max_stored);
    assert!(load["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(load["rescale"]["kind"], "uniform");

    let nii = dir.path().join("out.nii.gz");
    overread(&["export", s, "--nifti", nii.to_str().unwrap()], &[]);
    let n = Nifti::read(&nii);
    assert_eq!(n.dims, [64, 64, 12, 1]);
    // Tilted 12 degrees: the sform holds the shear, a qform (a rotation) cannot, and is
    // marked unknown so that no reader places the slices by it.
    assert_eq!((n.sform_code, n.qform_code), (1, 0));
    // Every voxel as stored.
    for k in 0..12 {
        for j in 0..64 {
            for i in 0..64 {
                assert_eq!(
                    n.raw(i, j, k, 0),
                    f64::from(volume.voxels.get(i, j, k).unwrap()),
                    "({i},{j},{k})"
                );
            }
        }
    }
    // Every corner's NIfTI world position (RAS -> LPS) is the DICOM position (float32 in NIfTI).
    for (i, j, k) in [(0, 0, 0), (63, 0, 0), (0, 63, 0), (0, 0, 11), (63, 63, 11)] {
        let ours = DVec3::from(
            volume
                .geometry
                .patient_from_voxel_exact([i as f64, j as f64, k as f64]),
        );
        let theirs = n.lps_of(i as f64, j as f64, k as f64);
        assert!(
            (ours - theirs).length() < 1e-3,
            "({i},{j},{k}): {ours} vs {theirs}"
        );
        assert_eq!(
            n.raw(i, j, k, 0),
            f64::from(volume.voxels.get(i, j, k).unwrap())
        );
    }
    assert_eq!((n.scl_slope, n.scl_inter), (1.0, -1024.0));
}

#[test]
fn nifti_qform_agrees_with_sform_on_an_orthogonal_oblique_stack() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let dir = tempdir();
    let nii = dir.path().join("philips.nii");
    overread(
        &[
            "export",
            root.join("mr/philips_fmri_oblique_4d/dicom")
                .to_str()
                .unwrap(),
            "--nifti",
            nii.to_str().unwrap(),
        ],
        &[],
    );
    let bytes = std::fs::read(&nii).unwrap();
    let mut qform_only = bytes.clone();
    qform_only[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code = 0: reader uses qform
    let (s, q) = (Nifti::parse(&bytes), Nifti::parse(&qform_only));
    // Tilted about one axis, LPS to RAS makes it a 180-degree rotation: its qform is kept
    // (float32 rounding once made readers turn it by 1e-4 rad, and it was marked unknown).
    assert_eq!((s.sform_code, s.qform_code), (1, 1));
    for (i, j, k) in [
        (0.0, 0.0, 0.0),
        (63.0, 0.0, 0.0),
        (0.0, 63.0, 8.0),
        (63.0, 63.0, 8.0),
    ] {
        assert!(
            (s.lps_of(i, j, k) - q.lps_of(i, j, k)).length() < 1e-3,
            "qform and sform disagree at ({i},{j},{k}): {} vs {}",
            s.lps_of(i, j, k),
            q.lps_of(i, j, k)
        );
    }
}

#[test]
fn the_demo_case_is_written_once_and_loaded() {
    let home = tempdir();
    let out = overread(&["demo"], &[("OVERREAD_DATA_DIR", home.path())]);
    assert!(out.contains("stack   1: 512x512x120"), "{out}");
    assert!(home.path().join("demo/chest_phantom/IM00120.dcm").exists());
    let again = overread(&["demo"], &[("OVERREAD_DATA_DIR", home.path())]);
    assert!(again.contains("sha256"));
    // A first run stopped halfway (its last file there, others not, no completion mark) is
    // written again, whole, not taken as it is.
    let case = home.path().join("demo/chest_phantom");
    std::fs::remove_file(case.join(".complete")).unwrap();
    std::fs::remove_file(case.join("IM00060.dcm")).unwrap();
    let rewritten = overread(&["demo"], &[("OVERREAD_DATA_DIR", home.path())]);
    assert!(rewritten.contains("stack   1: 512x512x120"), "{rewritten}");
    assert!(case.join("IM00060.dcm").exists() && case.join(".complete").exists());
    // Nothing of the writing is left beside it.
    let beside: Vec<_> = std::fs::read_dir(home.path().join("demo"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["chest_phantom"]);

    // A data folder that cannot be written (here a file stands where it would be): the case
    // goes to a new folder of the temporary folder, and the demo still opens.
    let blocked = home.path().join("not-a-folder");
    std::fs::write(&blocked, b"").unwrap();
    let tmp = tempdir();
    let out = overread(
        &["demo"],
        &[("OVERREAD_DATA_DIR", &blocked), ("TMPDIR", tmp.path())],
    );
    assert!(out.contains("stack   1: 512x512x120"), "{out}");
    let made: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].join("chest_phantom/.complete").exists());
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// `overread render` on the GPU (the software adapter) and with `--cpu` gives the same image
/// to one grey level, with the orientation letters of a coronal view burned in.
#[test]
fn render_writes_the_same_png_on_gpu_and_cpu() {
    let dir = tempdir();
    let series = dir.path().join("series");
    let s = series.to_str().unwrap();
    overread(
        &[
            "synth",
            "-o",
            s,
            "--slices",
            "30",
            "--size",
            "96",
            "--pixel-mm",
            "3.6",
            "--spacing-mm",
            "5",
            "--noise-hu",
            "0",
        ],
        &[],
    );
    let gpu_png = dir.path().join("gpu.png");
    let cpu_png = dir.path().join("cpu.png");
    let args = |out: &Path| {
        vec![
            "render".to_string(),
            s.to_string(),
            "--plane".into(),
            "coronal".into(),
            "--preset".into(),
            "lung".into(),
            "--size".into(),
            "200".into(),
            "--slab".into(),
            "10".into(),
            "--mode".into(),
            "mip".into(),
            "--labels".into(),
            "--scale-bar".into(),
            "--json".into(),
            "-o".into(),
            out.to_str().unwrap().to_string(),
        ]
    };
    let mut gpu = Command::new(env!("CARGO_BIN_EXE_overread"));
    gpu.args(args(&gpu_png)).env("OVERREAD_ADAPTER", "cpu");
    let out = gpu.output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        if err.contains("no graphics adapter") && !ci {
            eprintln!("SKIPPED: no software graphics adapter: {err}");
            return;
        }
        panic!("overread render failed: {err}");
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["renderer"].as_str().unwrap().contains("llvmpipe"),
        "{json}"
    );
    assert_eq!(json["labels"], serde_json::json!(["R", "L", "H", "F"]));
    assert_eq!(json["scale_bar_mm"], 50.0);
    let cpu_args = args(&cpu_png);
    let mut cpu_args: Vec<&str> = cpu_args.iter().map(String::as_str).collect();
    cpu_args.push("--cpu");
    let cpu_json: serde_json::Value = serde_json::from_str(&overread(&cpu_args, &[])).unwrap();
    assert_eq!(cpu_json["renderer"], "cpu reference");

    let (w, h, g) = read_png(&gpu_png);
    let (_, _, c) = read_png(&cpu_png);
    assert_eq!((w, h), (200, 200));
    let max = g.iter().zip(&c).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(max <= 1, "GPU and CPU PNGs differ by {max}");
    // The burned-in letter H sits at the top centre: white pixels there.
    let c = &c;
    let top: Vec<u8> = (4..14)
        .flat_map(|y| (95..105).map(move |x| c[y * 200 + x]))
        .collect();
    assert!(top.contains(&255), "no label at the top edge");
}

#[test]
fn render_refuses_bad_arguments_with_a_clear_message() {
    let dir = tempdir();
    let series = dir.path().join("series");
    let s = series.to_str().unwrap();
    overread(&["synth", "-o", s, "--slices", "4", "--size", "16"], &[]);
    let out_png = dir.path().join("x.png");
    let o = out_png.to_str().unwrap();
    for (args, message) in [
        (vec!["--plane", "oblique:0,0,0"], "not all zero"),
        (vec!["--plane", "diagonal"], "unknown plane"),
        (vec!["--preset", "kidney"], "unknown preset"),
        (vec!["--wl", "0,40"], "width must be at least 1"),
        (vec!["--slab", "5", "--mode", "sum"], "unknown slab mode"),
        (vec!["--size", "0"], "image size"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_overread"))
            .args(["render", s, "--cpu", "-o", o])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!out_png.exists(), "a refused render wrote a file");
}

/// `overread ARGS` that must fail: its stderr.
fn overread_refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_overread"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} was accepted: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

/// What NIfTI cannot hold is not written as if it could: a stack with a missing slice is
/// refused (one affine misplaces every slice past the gap) unless asked, and then says so in
/// its descrip; a volume with a slice that failed to decode (zeros) is refused for export and
/// render unless asked; an input of two patients needs --stack.
#[test]
fn exports_and_renders_refuse_what_they_cannot_show_truly() {
    let dir = tempdir();
    let gappy = dir.path().join("gappy");
    let g = gappy.to_str().unwrap();
    overread(
        &[
            "synth", "-o", g, "--slices", "10", "--size", "32", "--drop", "4",
        ],
        &[],
    );
    let nii = dir.path().join("gappy.nii");
    let n = nii.to_str().unwrap();
    let err = overread_refused(&["export", g, "--nifti", n]);
    assert!(err.contains("1 missing slice"), "{err}");
    assert!(!nii.exists());
    overread(&["export", g, "--nifti", n, "--allow-irregular"], &[]);
    let header = std::fs::read(&nii).unwrap();
    let descrip = String::from_utf8_lossy(&header[148..228]);
    assert!(descrip.contains("affine is approximate"), "{descrip}");

    // A slice whose pixels are cut off fails to decode.
    let broken = dir.path().join("broken");
    let b = broken.to_str().unwrap();
    overread(&["synth", "-o", b, "--slices", "6", "--size", "32"], &[]);
    let mut files: Vec<_> = std::fs::read_dir(&broken)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let bytes = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &bytes[..bytes.len() - 500]).unwrap();
    let out = dir.path().join("broken.nii");
    let o = out.to_str().unwrap();
    let err = overread_refused(&["export", b, "--nifti", o]);
    assert!(
        err.contains("failed slice") && err.contains("failed to decode"),
        "{err}"
    );
    assert!(!out.exists());
    let png = dir.path().join("broken.png");
    let p = png.to_str().unwrap();
    let err = overread_refused(&["render", b, "--cpu", "-o", p]);
    assert!(err.contains("failed to decode"), "{err}");
    overread(&["export", b, "--nifti", o, "--allow-failed-slices"], &[]);
    overread(
        &["render", b, "--cpu", "-o", p, "--allow-failed-slices"],
        &[],
    );
    // An untilted axial stack keeps its qform (a 180-degree rotation, stored exactly).
    assert_eq!(Nifti::read(&out).qform_code, 1);
    // Readable as any new file, and no temporary file left beside it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As a file created there now (0666 less this process's umask).
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&probe), "the export's mode");
        std::fs::remove_file(&probe).unwrap();
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A write that cannot be put in place (a folder holds the name) fails and leaves
    // nothing behind.
    let taken = dir.path().join("taken.nii");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep"), b"x").unwrap();
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    let err = overread_refused(&[
        "export",
        b,
        "--nifti",
        taken.to_str().unwrap(),
        "--allow-failed-slices",
    ]);
    assert!(err.contains("taken.nii"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);

    // Two patients: whose stack is exported must be chosen.
    let two = dir.path().join("two");
    std::fs::create_dir(&two).unwrap();
    for (name, from) in [("a", &gappy), ("b", &broken)] {
        let to = two.join(name);
        std::fs::create_dir(&to).unwrap();
        for f in std::fs::read_dir(from).unwrap() {
            let f = f.unwrap().path();
            if f != files[2] {
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let set_in_b = |tag: dicom_core::Tag, vr, value: &str| {
        for f in std::fs::read_dir(two.join("b")).unwrap() {
            let f = f.unwrap().path();
            let mut obj = dicom_object::open_file(&f).unwrap();
            obj.put(dicom_core::DataElement::new(
                tag,
                vr,
                dicom_core::PrimitiveValue::from(value),
            ));
            obj.write_to_file(&f).unwrap();
        }
    };
    let patients = |at: &Path| -> Vec<serde_json::Value> {
        let scan: serde_json::Value =
            serde_json::from_str(&overread(&["scan", at.to_str().unwrap(), "--json"], &[]))
                .unwrap();
        scan["patients"].as_array().unwrap().clone()
    };
    // The same person written two ways (empty trailing name components) is one patient.
    let name = dicom_object::open_file(&files[0])
        .unwrap()
        .element(dicom_dictionary_std::tags::PATIENT_NAME)
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_string();
    set_in_b(
        dicom_dictionary_std::tags::PATIENT_NAME,
        dicom_core::VR::PN,
        &format!("{name}^^"),
    );
    assert_eq!(
        patients(&two).len(),
        1,
        "one person written two ways is one patient in the scan"
    );
    overread(
        &[
            "export",
            two.to_str().unwrap(),
            "--nifti",
            n,
            "--allow-irregular",
        ],
        &[],
    );
    // Another Patient ID is another patient: --stack chooses.
    set_in_b(
        dicom_dictionary_std::tags::PATIENT_ID,
        dicom_core::VR::LO,
        "OTHER-2",
    );
    let found = patients(&two);
    assert_eq!(found.len(), 2);
    let err = overread_refused(&["export", two.to_str().unwrap(), "--nifti", n]);
    assert!(
        err.contains("2 patients: choose a stack with --stack"),
        "{err}"
    );
    let id = found[0]["studies"][0]["series"][0]["stacks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    overread(
        &[
            "export",
            two.to_str().unwrap(),
            "--nifti",
            n,
            "--stack",
            &id,
            "--allow-irregular",
            "--allow-failed-slices",
        ],
        &[],
    );
}

/// `xvfb-run`, or `None` (skipped with a message; a failure in CI, which installs it).
fn xvfb_run() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("xvfb-run"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "xvfb-run is missing: CI must install xvfb"
        );
        eprintln!("SKIPPED: xvfb-run is absent (the real window was not opened)");
    }
    found
}

/// Run `overread ARGS` in a 1920x1080 X server of its own, with its own data folder; the JSON
/// that `--out` wrote. Fails after `limit` (a hung window must not hang the suite).
fn overread_in_xvfb(
    xvfb_run: &Path,
    args: &[&str],
    limit: std::time::Duration,
) -> serde_json::Value {
    use std::os::unix::process::CommandExt;
    let dir = tempdir();
    let out = dir.path().join("frames.json");
    // Its messages go to a file (a pipe nobody reads while it runs could fill and stop it).
    let log = dir.path().join("stderr.txt");
    let mut child = Command::new(xvfb_run)
        .args(["-a", "-s", "-screen 0 1920x1080x24"])
        .arg(env!("CARGO_BIN_EXE_overread"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("OVERREAD_DATA_DIR", dir.path().join("data"))
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        // Its own process group: xvfb-run, Xvfb and overread go together on a timeout.
        .process_group(0)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status()
                .ok();
            child.wait().ok();
            panic!("overread {args:?} under Xvfb did not finish in {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "overread {args:?} under Xvfb: {status}: {stderr}"
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// The phases of a frame-time report: (name, frames), and every time a positive number.
fn phases(report: &serde_json::Value) -> Vec<(String, u64)> {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            for key in ["p50_ms", "p99_ms", "max_ms"] {
                let t = p[key].as_f64().unwrap();
                assert!(t.is_finite() && t > 0.0, "{p}");
            }
            assert!(p["p50_ms"].as_f64() <= p["p99_ms"].as_f64(), "{p}");
            assert!(p["p99_ms"].as_f64() <= p["max_ms"].as_f64(), "{p}");
            // Every frame's time, one a frame.
            let frame_ms = p["frame_ms"].as_array().unwrap();
            assert_eq!(Some(frame_ms.len() as u64), p["frames"].as_u64(), "{p}");
            assert!(frame_ms.iter().all(|t| t.as_f64().is_some_and(|t| t > 0.0)));
            (
                p["phase"].as_str().unwrap().to_string(),
                p["frames"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The real binary opens its real window (winit, eframe, a wgpu surface) in an X server, loads
/// a study, plays the scripted reading of `bench-reading` (scroll, window/level, MPR, crosshair
/// drags), reports every phase and closes; and the empty window that measures the floor under
/// those frames does the same. Frame times are reported, not judged (benches/README.md).
#[test]
fn the_real_window_reads_a_study_under_xvfb() {
    let Some(xvfb_run) = xvfb_run() else { return };
    let dir = tempdir();
    let series = dir.path().join("series");
    let s = series.to_str().unwrap();
    overread(&["synth", "-o", s, "--slices", "40", "--size", "128"], &[]);
    let limit = std::time::Duration::from_secs(600);

    let reading = overread_in_xvfb(&xvfb_run, &["bench-reading", s], limit);
    assert_eq!(reading["window_points"], "[1920 1080]");
    assert!(reading["adapter"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(
        phases(&reading),
        [
            ("scroll".to_string(), 500),
            ("window_level".to_string(), 200),
            ("mpr_switch".to_string(), 1),
            ("mpr_crosshair".to_string(), 200),
        ]
    );

    let empty = overread_in_xvfb(&xvfb_run, &["bench-reading", "--empty-window"], limit);
    assert_eq!(empty["window_points"], "[1920 1080]");
    assert_eq!(phases(&empty), [("empty_window".to_string(), 300)]);
}

/// A radiograph measured at the detector (Imager Pixel Spacing only) gets no burned-in scale
/// bar: "50 mm" on the PNG would be read as the patient's 50 mm wherever the image goes, and
/// at the detector it is larger. Said on stderr; the JSON has no bar.
#[test]
fn no_scale_bar_is_burned_in_at_the_detector() {
    let Some(root) = crate::support::shared_dicom() else {
        return;
    };
    let cr = root.join("dicomdir/pydicom_dicomdirtests/dicom/77654033/CR1/6154");
    let dir = tempdir();
    let png = dir.path().join("cr.png");
    let out = Command::new(env!("CARGO_BIN_EXE_overread"))
        .args([
            "render",
            cr.to_str().unwrap(),
            "--size",
            "128",
            "--scale-bar",
            "--json",
            "--cpu",
            "-o",
            png.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("scale bar left out: the spacing is at the detector"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["scale_bar_mm"].is_null(), "{json}");
    assert!(png.exists());
}
