//! The headless command line: `scan`, `load`, `export`, `render`, `synth`, `transcribe`, ...
//!
//! Each subcommand parses its arguments with clap, calls `imaging`, and prints a table for
//! people or JSON (`--json`) for scripts. Progress bars go to stderr and only on a terminal.
//! Nothing imports this module but `main`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

mod cases;
mod dicomweb;
mod render;
mod transcribe;

use imaging::synth::{PhantomSpec, SynthSyntax};
use imaging::{self, Patient, ScanReport, Stack, Volume};

#[derive(Debug, Parser)]
#[command(
    name = "overread",
    version,
    about = "Overread radiology reading workstation and tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List patients, studies, series and stacks found in files, folders or DICOMDIRs.
    Scan(ScanArgs),
    /// Load one stack into a volume and report geometry, statistics and timings.
    Load(LoadArgs),
    /// Export one stack as NIfTI-1 (.nii or .nii.gz).
    Export(ExportArgs),
    /// Render one plane (axial, coronal, sagittal, oblique; thin or slab) of a stack as PNG.
    Render(render::RenderArgs),
    /// Write a synthetic chest CT phantom series as DICOM.
    Synth(SynthArgs),
    /// Create (once) and summarise the bundled demo case.
    Demo,
    /// Open the workstation on files, folders, DICOMDIRs or DICOMweb study URLs.
    Open(OpenArgs),
    /// Retrieve a study over DICOMweb (`http[s]://HOST/PREFIX/studies/UID`) into a folder.
    Fetch(dicomweb::FetchArgs),
    /// Signing keys (sealed under a passphrase).
    Key {
        #[command(subcommand)]
        command: cases::KeyCommand,
    },
    /// Sign reports and send them to the case server through the outbox.
    Report {
        #[command(subcommand)]
        command: cases::ReportCommand,
    },
    /// Speech to text (whisper.cpp, on this machine) with word confidences and timings.
    Transcribe(transcribe::TranscribeArgs),
    /// Record from an audio input (cpal; ALSA on Linux) into a WAV file.
    Record(transcribe::RecordArgs),
    /// Play a WAV file (or a span of it) on an audio output: what the report panel does when
    /// an unsure word is clicked.
    Play(transcribe::PlayArgs),
    /// Open the workstation, play a scripted reading (scroll 500 slices, W/L drags, MPR
    /// crosshair drags) and print frame times (p50/p99) as JSON.
    BenchReading(BenchReadingArgs),
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Files, folders (searched recursively), DICOMDIR files or DICOMweb study URLs.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchReadingArgs {
    /// The study to read (default: a synthetic 512x512x500 chest CT written to a temporary
    /// folder).
    pub paths: Vec<PathBuf>,
    /// Also write the JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Time 300 frames of an empty window of the same size and options instead: the floor
    /// under every frame of the reading (clearing the window and presenting it).
    #[arg(long, conflicts_with = "paths")]
    pub empty_window: bool,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files, folders (searched recursively), DICOMDIR files or DICOMweb study URLs.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Files, folders, DICOMDIR files or DICOMweb study URLs.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Stack id from `overread scan` (default: the largest non-localizer stack).
    #[arg(long)]
    pub stack: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Skip the sha256 of the voxels (the slowest part of the summary on big volumes).
    #[arg(long)]
    pub no_hash: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Files, folders, DICOMDIR files or DICOMweb study URLs.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long)]
    pub stack: Option<String>,
    /// Output file, .nii or .nii.gz.
    #[arg(long)]
    pub nifti: PathBuf,
    /// Write a stack of uneven spacing or missing slices anyway: NIfTI holds one affine, so
    /// slices away from the first and last are misplaced (by as much as the unevenness).
    #[arg(long)]
    pub allow_irregular: bool,
    /// Write even when slices failed to decode (they hold zeros, shown as such).
    #[arg(long)]
    pub allow_failed_slices: bool,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (created).
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 100)]
    pub slices: usize,
    /// Rows and columns.
    #[arg(long, default_value_t = 512)]
    pub size: u16,
    /// In-plane pixel size, mm.
    #[arg(long, default_value_t = 0.7)]
    pub pixel_mm: f64,
    /// Table increment, mm.
    #[arg(long, default_value_t = 1.0)]
    pub spacing_mm: f64,
    /// Gantry tilt, degrees.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub tilt_deg: f64,
    /// Multipliers of successive table steps, cycled (e.g. 1,1.5,0.75 for uneven spacing).
    #[arg(long, value_delimiter = ',')]
    pub step_pattern: Vec<f64>,
    /// Slice indices to leave out (missing slices).
    #[arg(long, value_delimiter = ',')]
    pub drop: Vec<usize>,
    /// Time points (4D).
    #[arg(long, default_value_t = 1)]
    pub phases: usize,
    #[arg(long, default_value_t = 10.0)]
    pub nodule_mm: f64,
    #[arg(long, default_value_t = 8.0)]
    pub noise_hu: f64,
    #[arg(long, value_enum, default_value_t = SynthSyntax::ExplicitLe)]
    pub syntax: SynthSyntax,
    /// One Enhanced CT multi-frame object instead of one file per slice.
    #[arg(long)]
    pub enhanced: bool,
    #[arg(long)]
    pub json: bool,
}

/// Run a parsed command line. `None` runs the demo.
pub fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        // No argument: the workstation on the demo case (written on first run).
        let folder = ensure_demo_case()?;
        return open_cmd(&OpenArgs {
            paths: vec![folder],
        });
    };
    // Study URLs become downloaded folders that live until the command ends.
    let _inputs;
    match command {
        Command::Scan(mut args) => {
            _inputs = dicomweb::resolve(&args.paths)?;
            args.paths.clone_from(&_inputs.paths);
            scan_cmd(&args)
        }
        Command::Load(mut args) => {
            _inputs = dicomweb::resolve(&args.paths)?;
            args.paths.clone_from(&_inputs.paths);
            load_cmd(&args)
        }
        Command::Export(mut args) => {
            _inputs = dicomweb::resolve(&args.paths)?;
            args.paths.clone_from(&_inputs.paths);
            export_cmd(&args)
        }
        Command::Render(mut args) => {
            _inputs = dicomweb::resolve(&args.paths)?;
            args.paths.clone_from(&_inputs.paths);
            render::render_cmd(&args)
        }
        Command::Fetch(args) => dicomweb::fetch_cmd(&args),
        Command::Synth(args) => synth_cmd(&args),
        Command::Demo => demo_cmd(),
        // The workstation retrieves study URLs itself, showing the first image early.
        Command::Open(args) => open_cmd(&args),
        Command::Key { command } => cases::key_cmd(&command),
        Command::Report { command } => cases::report_cmd(&command),
        Command::BenchReading(args) => bench_reading_cmd(&args),
        Command::Transcribe(args) => transcribe::transcribe_cmd(&args),
        Command::Record(args) => transcribe::record_cmd(&args),
        Command::Play(args) => transcribe::play_cmd(&args),
    }
}

fn scan_and_group(paths: &[PathBuf]) -> (ScanReport, Vec<Patient>, f64) {
    let started = Instant::now();
    let report = imaging::scan(paths);
    let patients = imaging::group(&report.instances);
    (report, patients, started.elapsed().as_secs_f64())
}

#[derive(Serialize)]
struct ScanJson<'a> {
    files_seen: usize,
    images: usize,
    non_image_objects: usize,
    dicomdirs: &'a [PathBuf],
    warnings: &'a [imaging::ScanWarning],
    patients: Vec<PatientJson<'a>>,
    scan_secs: f64,
}

#[derive(Serialize)]
struct PatientJson<'a> {
    name: &'a imaging::Phi,
    id: &'a imaging::Phi,
    studies: Vec<StudyJson<'a>>,
}

#[derive(Serialize)]
struct StudyJson<'a> {
    uid: &'a str,
    date: &'a Option<String>,
    description: &'a Option<String>,
    series: Vec<SeriesJson<'a>>,
}

#[derive(Serialize)]
struct SeriesJson<'a> {
    uid: &'a str,
    number: Option<i64>,
    description: &'a Option<String>,
    modality: &'a Option<String>,
    instances: usize,
    notes: &'a [String],
    warnings: &'a [String],
    stacks: Vec<StackJson<'a>>,
}

#[derive(Serialize)]
struct StackJson<'a> {
    id: &'a str,
    label: &'a imaging::series::StackLabel,
    dims: [usize; 3],
    spacing_mm: [f64; 3],
    is_localizer: bool,
    mosaic: Option<imaging::mosaic::MosaicLayout>,
    transfer_syntaxes: Vec<&'a str>,
    irregularity: &'a imaging::geometry::SliceIrregularity,
    geometry_trusted: bool,
}

fn stack_json(s: &Stack) -> StackJson<'_> {
    let mut ts: Vec<&str> = s
        .slices
        .iter()
        .map(|x| x.transfer_syntax_uid.as_str())
        .collect();
    ts.sort_unstable();
    ts.dedup();
    StackJson {
        id: &s.id,
        label: &s.label,
        dims: s.geometry.dims,
        spacing_mm: s.geometry.spacing_mm,
        is_localizer: s.is_localizer,
        mosaic: s.mosaic,
        transfer_syntaxes: ts,
        irregularity: &s.geometry.irregularity,
        geometry_trusted: s.geometry.trusted,
    }
}

fn scan_cmd(args: &ScanArgs) -> Result<()> {
    let (report, patients, secs) = scan_and_group(&args.paths);
    if args.json {
        let json = ScanJson {
            files_seen: report.files_seen,
            images: report.instances.len(),
            non_image_objects: report.non_image_objects,
            dicomdirs: &report.dicomdirs,
            warnings: &report.warnings,
            patients: patients
                .iter()
                .map(|p| PatientJson {
                    name: &p.name,
                    id: &p.id,
                    studies: p
                        .studies
                        .iter()
                        .map(|st| StudyJson {
                            uid: &st.uid,
                            date: &st.date,
                            description: &st.description,
                            series: st
                                .series
                                .iter()
                                .map(|se| SeriesJson {
                                    uid: &se.uid,
                                    number: se.number,
                                    description: &se.description,
                                    modality: &se.modality,
                                    instances: se.instance_count,
                                    notes: &se.notes,
                                    warnings: &se.warnings,
                                    stacks: se.stacks.iter().map(stack_json).collect(),
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
            scan_secs: secs,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!(
        "{} files, {} images, {} other DICOM objects, {} warnings ({secs:.2} s)",
        report.files_seen,
        report.instances.len(),
        report.non_image_objects,
        report.warnings.len()
    );
    for (n, p) in patients.iter().enumerate() {
        println!("patient {} ({} studies)", n + 1, p.studies.len());
        for st in &p.studies {
            println!(
                "  study {}  {}  {}",
                st.date.as_deref().unwrap_or("-"),
                st.description.as_deref().unwrap_or("-"),
                st.uid
            );
            for se in &st.series {
                println!(
                    "    series {:>4}  {:<3} {:<40} {} images",
                    se.number
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into()),
                    se.modality.as_deref().unwrap_or("-"),
                    se.description.as_deref().unwrap_or("-"),
                    se.instance_count
                );
                for note in &se.notes {
                    println!("        note: {note}");
                }
                for warning in &se.warnings {
                    println!("        warning: {warning}");
                }
                for s in &se.stacks {
                    println!("      {}", stack_line(s));
                }
            }
        }
    }
    for w in &report.warnings {
        println!("warning: {}: {}", w.path.display(), w.message);
    }
    Ok(())
}

fn stack_line(s: &Stack) -> String {
    let g = &s.geometry;
    let mut line = format!(
        "stack {:>3}: {}x{}x{}  spacing {:.3}x{:.3}x{:.3} mm",
        s.id, g.dims[0], g.dims[1], g.dims[2], g.spacing_mm[0], g.spacing_mm[1], g.spacing_mm[2]
    );
    // Every part of the stack's label (the browser names only what differs among a series'
    // stacks: `Series::stack_labels`); a line per stack has room for all.
    let label = s.label.describe();
    if !label.is_empty() {
        line += &format!("  {label}");
    }
    for words in g.irregularity.describe() {
        line += &format!("  [{words}]");
    }
    if s.is_localizer {
        line += "  localizer";
    }
    if !g.trusted {
        line += "  (no patient geometry)";
    }
    line
}

/// Scan, group and pick a stack (by id or the default).
fn pick_stack(paths: &[PathBuf], id: Option<&str>) -> Result<(ScanReport, Stack, f64)> {
    let (report, patients, secs) = scan_and_group(paths);
    let stack = choose_stack(&patients, id)?;
    Ok((without_instances(&report), stack.clone(), secs))
}

/// Stack `id`, or the default stack.
fn choose_stack<'a>(patients: &'a [Patient], id: Option<&str>) -> Result<&'a Stack> {
    match id {
        Some(id) => imaging::find_stack(patients, id)
            .with_context(|| format!("no stack with id {id} (see `overread scan`)")),
        None => imaging::default_stack(patients).context("no image stack found"),
    }
}

/// The stack an output is made of, chosen by `id` or, when the input holds one patient,
/// the default one; with several patients and no `id`, refused (an export or a key image
/// must not be of whichever patient's stack happens to be largest). Says on stderr which
/// stack it is.
pub(crate) fn pick_output_stack(paths: &[PathBuf], id: Option<&str>) -> Result<Stack> {
    let (_, patients, _) = scan_and_group(paths);
    let people = distinct_patients(&patients);
    if id.is_none() && people > 1 {
        bail!(
            "the input holds {people} patients: choose a stack with --stack (see `overread scan`)"
        );
    }
    let stack = choose_stack(&patients, id)?.clone();
    eprintln!("{}", stack_line(&stack));
    Ok(stack)
}

/// How many different people `patients` are. The scan groups by the exact (ID, name) pair;
/// two of its patients are one person here when their Patient IDs are equal (trimmed; an ID is
/// case-sensitive, PS3.4 C.2.2.2.1) and their names are equal as DICOM compares names (case,
/// spaces and empty trailing components aside: "PHANTOM^CHEST^^" is "PHANTOM^CHEST") or one
/// name is empty. Same ID, different names stay two: anonymised or site-local IDs collide.
fn distinct_patients(patients: &[Patient]) -> usize {
    let people: Vec<(String, String)> = patients
        .iter()
        .map(|p| {
            (
                p.id.reveal().trim().to_string(),
                imaging::series::normalized_name(p.name.reveal()),
            )
        })
        .collect();
    let same = |a: &(String, String), b: &(String, String)| {
        a.0 == b.0 && (a.1 == b.1 || a.1.is_empty() || b.1.is_empty())
    };
    // Each patient counts unless an earlier one is the same person.
    (0..people.len())
        .filter(|&i| !people[..i].iter().any(|earlier| same(earlier, &people[i])))
        .count()
}

/// Refuse a volume with slices that failed to decode (they hold zeros) unless `allowed`;
/// list them on stderr either way.
pub(crate) fn check_failed_slices(volume: &Volume, allowed: bool) -> Result<()> {
    for f in &volume.failed_slices {
        eprintln!("failed slice {}: {}", f.k, f.message);
    }
    if !volume.failed_slices.is_empty() && !allowed {
        bail!(
            "{} slice(s) failed to decode and would be zeros: not written (--allow-failed-slices \
             writes them anyway)",
            volume.failed_slices.len()
        );
    }
    Ok(())
}

/// The report's warnings and counts, without its (large) list of headers.
fn without_instances(report: &ScanReport) -> ScanReport {
    ScanReport {
        instances: Vec::new(),
        warnings: report.warnings.clone(),
        files_seen: report.files_seen,
        non_image_objects: report.non_image_objects,
        dicomdirs: report.dicomdirs.clone(),
    }
}

fn load_with_progress(stack: &Stack) -> Result<Volume> {
    let bar = ProgressBar::new(stack.slices.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} slices ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("loading stack {}", stack.id));
    let volume = imaging::load_stack(stack, &imaging::LoadOptions::default(), &|_| bar.inc(1))?;
    bar.finish_and_clear();
    Ok(volume)
}

#[derive(Serialize)]
struct LoadJson<'a> {
    stack: StackJson<'a>,
    geometry: &'a imaging::VolumeGeometry,
    rescale: &'a imaging::RescalePolicy,
    stats: imaging::stats::VoxelStats,
    warnings: Vec<String>,
    failed_slices: &'a [imaging::decode::SliceFailure],
    timings: TimingsJson,
    peak_rss_bytes: Option<u64>,
}

#[derive(Serialize)]
struct TimingsJson {
    scan_secs: f64,
    first_slice_secs: f64,
    load_secs: f64,
}

fn load_cmd(args: &LoadArgs) -> Result<()> {
    let (report, stack, scan_secs) = pick_stack(&args.paths, args.stack.as_deref())?;
    let volume = load_with_progress(&stack)?;
    let stats = if args.no_hash {
        imaging::stats::voxel_range(&volume)
    } else {
        imaging::stats::voxel_stats(&volume)
    };
    if args.json {
        let json = LoadJson {
            stack: stack_json(&stack),
            geometry: &volume.geometry,
            rescale: &volume.rescale,
            stats,
            warnings: report
                .warnings
                .iter()
                .map(|w| format!("{}: {}", w.path.display(), w.message))
                .collect(),
            failed_slices: &volume.failed_slices,
            timings: TimingsJson {
                scan_secs,
                first_slice_secs: volume.timings.first_slice_secs,
                load_secs: volume.timings.total_secs,
            },
            peak_rss_bytes: peak_rss_bytes(),
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("{}", stack_line(&stack));
    println!(
        "loaded in {:.3} s (first slice {:.3} s, scan {:.3} s); stored {}..{}, modality {:.1}..{:.1}, sha256 {}",
        volume.timings.total_secs,
        volume.timings.first_slice_secs,
        scan_secs,
        stats.min_stored,
        stats.max_stored,
        stats.min_modality,
        stats.max_modality,
        stats.sha256.as_deref().unwrap_or("(not computed)")
    );
    for f in &volume.failed_slices {
        println!("failed slice {}: {}", f.k, f.message);
    }
    for w in &report.warnings {
        println!("warning: {}: {}", w.path.display(), w.message);
    }
    Ok(())
}

fn export_cmd(args: &ExportArgs) -> Result<()> {
    let name = args.nifti.to_string_lossy();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        bail!("--nifti must end in .nii or .nii.gz");
    }
    let stack = pick_output_stack(&args.paths, args.stack.as_deref())?;
    let g = &stack.geometry;
    if g.trusted && !g.irregularity.affine_is_exact() {
        let i = &g.irregularity;
        let mut what = Vec::new();
        if i.uneven_spacing {
            what.push(format!(
                "uneven spacing ({:.2} to {:.2} mm)",
                i.min_step_mm, i.max_step_mm
            ));
        }
        if !i.missing_slices.is_empty() {
            what.push(format!(
                "{} missing slice(s)",
                i.missing_slices.iter().map(|m| m.1).sum::<usize>()
            ));
        }
        if i.nonlinear_positions {
            what.push("slices off the line through the others".to_string());
        }
        let what = what.join(", ");
        if !args.allow_irregular {
            bail!(
                "stack {} has {what}: one NIfTI affine cannot place its slices (--allow-irregular \
                 writes it with an approximate affine, said in its descrip)",
                stack.id
            );
        }
        eprintln!("warning: {what}: the affine written is approximate");
    }
    if !g.trusted {
        eprintln!(
            "warning: no position or orientation in the files: written without scanner coordinates"
        );
    }
    let volume = load_with_progress(&stack)?;
    check_failed_slices(&volume, args.allow_failed_slices)?;
    imaging::nifti::write_nifti(&volume, &args.nifti)?;
    println!(
        "wrote {} ({}x{}x{})",
        args.nifti.display(),
        volume.geometry.dims[0],
        volume.geometry.dims[1],
        volume.geometry.dims[2]
    );
    Ok(())
}

fn synth_cmd(args: &SynthArgs) -> Result<()> {
    let spec = PhantomSpec {
        columns: args.size,
        rows: args.size,
        slices: args.slices,
        pixel_mm: args.pixel_mm,
        spacing_mm: args.spacing_mm,
        tilt_deg: args.tilt_deg,
        step_pattern: args.step_pattern.clone(),
        drop: args.drop.clone(),
        phases: args.phases.max(1),
        nodule_diameter_mm: args.nodule_mm,
        noise_hu: args.noise_hu,
        syntax: args.syntax,
        enhanced: args.enhanced,
        ..PhantomSpec::default()
    };
    if spec.slices == 0 || spec.rows == 0 || spec.columns == 0 {
        bail!("slices and size must be positive");
    }
    let out = imaging::synth::write_series(&spec, &args.output)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "wrote {} files of {} to {}",
            out.files,
            out.name,
            out.folder.display()
        );
    }
    Ok(())
}

/// The demo case lives in the user's data folder; it is written on first use.
pub fn demo_case_folder() -> PathBuf {
    crate::data_dir().join("demo").join("chest_phantom")
}

fn open_cmd(args: &OpenArgs) -> Result<()> {
    crate::app::run(args.paths.clone()).map_err(|e| anyhow::anyhow!("the workstation window: {e}"))
}

fn bench_reading_cmd(args: &BenchReadingArgs) -> Result<()> {
    if args.empty_window {
        return crate::app::run_empty_window(args.out.clone())
            .map_err(|e| anyhow::anyhow!("the empty window: {e}"));
    }
    let mut paths = args.paths.clone();
    let _scratch;
    if paths.is_empty() {
        let dir = tempfile::tempdir()?;
        let folder = dir.path().join("chest");
        let spec = PhantomSpec {
            slices: 500,
            spacing_mm: 1.0,
            ..PhantomSpec::default()
        };
        eprintln!("writing {} to {}", spec.name(), folder.display());
        imaging::synth::write_series(&spec, &folder)?;
        paths.push(folder);
        _scratch = dir;
    }
    crate::app::run_scripted(paths, args.out.clone())
        .map_err(|e| anyhow::anyhow!("the workstation window: {e}"))
}

/// Written last into a finished demo case: a folder without it (a first run stopped halfway,
/// an older version's) is written again.
const DEMO_COMPLETE: &str = ".complete";

/// The demo case folder, written (once) if it is not there yet, whole or not at all: into a
/// folder of its own beside it, then renamed into place (two first runs at once each write
/// theirs; the first rename wins). Where the data folder cannot be written, the case goes
/// to a new folder of the temporary folder, so `overread` still opens.
fn ensure_demo_case() -> Result<PathBuf> {
    let folder = demo_case_folder();
    match write_demo_case(&folder) {
        Ok(()) => Ok(folder),
        Err(e) => {
            // A folder of this run's own (owner-only, never one found there: another user's
            // could hold anything), left for the session to read.
            let fallback = tempfile::Builder::new()
                .prefix("overread-demo-")
                .tempdir()?
                .keep()
                .join("chest_phantom");
            eprintln!(
                "the demo case could not be written to {} ({e:#}); using {}",
                folder.display(),
                fallback.display()
            );
            write_demo_case(&fallback)?;
            Ok(fallback)
        }
    }
}

fn write_demo_case(folder: &Path) -> Result<()> {
    if folder.join(DEMO_COMPLETE).exists() {
        return Ok(());
    }
    let parent = folder
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent folder", folder.display()))?;
    std::fs::create_dir_all(parent)?;
    let spec = PhantomSpec {
        slices: 120,
        spacing_mm: 2.5,
        ..PhantomSpec::default()
    };
    eprintln!(
        "writing the demo case ({}) to {}",
        spec.name(),
        folder.display()
    );
    let partial = tempfile::Builder::new()
        .prefix(".overread-demo-")
        .tempdir_in(parent)?;
    imaging::synth::write_series(&spec, partial.path())?;
    std::fs::write(partial.path().join(DEMO_COMPLETE), b"")?;
    // A folder left half-written is set aside first (the rename needs the name free).
    if folder.exists() && !folder.join(DEMO_COMPLETE).exists() {
        let _ = std::fs::remove_dir_all(folder);
    }
    let partial = partial.keep();
    if let Err(e) = std::fs::rename(&partial, folder) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another first run finished it meanwhile.
        if !folder.join(DEMO_COMPLETE).exists() {
            return Err(e.into());
        }
    }
    Ok(())
}

fn demo_cmd() -> Result<()> {
    let folder = ensure_demo_case()?;
    println!("Overread demo case: {}", folder.display());
    scan_cmd(&ScanArgs {
        paths: vec![folder.clone()],
        json: false,
    })?;
    load_cmd(&LoadArgs {
        paths: vec![folder],
        stack: None,
        json: false,
        no_hash: false,
    })
}

/// Peak resident set size of this process (VmHWM), where the OS tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(id: &str, name: &str) -> Patient {
        Patient {
            name: imaging::Phi::new(name),
            id: imaging::Phi::new(id),
            birth_date: imaging::Phi::new(""),
            studies: Vec::new(),
        }
    }

    /// One person written two ways is one; IDs differing in case, or one ID with two names,
    /// are two (an export must then be chosen with --stack).
    #[test]
    fn patients_are_told_apart_as_dicom_tells_them() {
        let count = |list: &[Patient]| distinct_patients(list);
        assert_eq!(
            count(&[patient("123", "DOE^JANE"), patient("123 ", "Doe^Jane^^")]),
            1
        );
        assert_eq!(count(&[patient("123", "DOE^JANE"), patient("123", "")]), 1);
        assert_eq!(
            count(&[patient("abc", "DOE^JANE"), patient("ABC", "DOE^JANE")]),
            2
        );
        assert_eq!(
            count(&[patient("0", "DOE^JANE"), patient("0", "ROE^RICHARD")]),
            2
        );
        assert_eq!(
            count(&[patient("", "DOE^JANE"), patient("", "DOE^JANE^")]),
            1
        );
    }
}
