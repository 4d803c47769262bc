//! `overread transcribe FILE.wav...`: speech to text on this machine, with word confidences and
//! timings; with `--reference` (a `id<TAB>text` file, ids matching the WAV files' names) it also
//! scores the word error rate, for tests and benchmarks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::dictation::stt::{Engine, Options, find_model};
use crate::dictation::wer::{WordErrors, word_errors};
use crate::dictation::{Transcript, read_wav, vocabulary};

#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// WAV files (any sample rate, mono or stereo, PCM or float).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A whisper.cpp ggml model (default: OVERREAD_WHISPER_MODEL, then the user's models
    /// folder).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The prompt text (default: the radiology vocabulary prompt).
    #[arg(long, conflicts_with = "no_prompt")]
    pub prompt: Option<String>,
    /// No prompt at all.
    #[arg(long)]
    pub no_prompt: bool,
    /// whisper.cpp's default decoding instead of Overread's (no prompt, full 30 s audio
    /// context, temperature fallback, no silence gate): the baseline of the benchmark.
    #[arg(long, conflicts_with_all = ["prompt", "no_prompt"])]
    pub whisper_defaults: bool,
    /// Encode the full 30 s window instead of a context fitted to the clip.
    #[arg(long)]
    pub full_context: bool,
    /// Audio-context frames added to the fitted context (default 128; 0-1500).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=1500))]
    pub context_margin: Option<i32>,
    /// Reference texts (`id<TAB>text` per line); scores each file whose name (without .wav)
    /// is an id.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// CPU threads (default: all cores, up to 8).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct FileJson {
    file: PathBuf,
    #[serde(flatten)]
    transcript: Transcript,
    real_time_factor: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    word_errors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_words: Option<usize>,
}

#[derive(Serialize)]
struct SummaryJson {
    model: PathBuf,
    settings: &'static str,
    prompt: Option<String>,
    model_load_s: f64,
    files: Vec<FileJson>,
    audio_s: f64,
    compute_s: f64,
    real_time_factor: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    word_error_rate: Option<f64>,
}

pub fn transcribe_cmd(a: &TranscribeArgs) -> Result<()> {
    let model = find_model(a.model.as_deref())?;
    let started = Instant::now();
    let engine = Engine::load(&model)?;
    let model_load_s = started.elapsed().as_secs_f64();
    let mut options = if a.whisper_defaults {
        Options::whisper_defaults()
    } else if a.no_prompt {
        Options::overread(None)
    } else {
        Options::overread(Some(
            a.prompt.clone().unwrap_or_else(vocabulary::default_prompt),
        ))
    };
    if a.full_context {
        options.fit_audio_context = false;
    }
    if let Some(m) = a.context_margin {
        options.context_margin = m;
    }
    if let Some(t) = a.threads {
        options.threads = t.max(1);
    }
    let references: Vec<(String, String)> = match &a.reference {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{}", path.display()))?
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(id, text)| (id.trim().to_string(), text.trim().to_string()))
            .collect(),
        None => Vec::new(),
    };

    let mut files = Vec::new();
    let mut total = WordErrors::default();
    for path in &a.files {
        let clip = read_wav(path)?;
        let transcript = engine.transcribe(&clip, &options)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reference = references
            .iter()
            .find(|(id, _)| *id == stem)
            .map(|(_, t)| t.clone());
        let errors = reference
            .as_deref()
            .map(|r| word_errors(r, &transcript.text));
        if let Some(e) = errors {
            total.add(e);
        }
        if !a.json {
            println!("{}: {}", path.display(), transcript.text);
            let unsure: Vec<String> = transcript
                .words
                .iter()
                .filter(|w| w.confidence < 0.5)
                .map(|w| {
                    format!(
                        "{} ({:.2}, {:.2}-{:.2} s)",
                        w.text, w.confidence, w.start_s, w.end_s
                    )
                })
                .collect();
            if !unsure.is_empty() {
                println!("  unsure: {}", unsure.join(", "));
            }
            if let Some(e) = errors {
                println!("  word errors: {} of {}", e.errors(), e.reference_words);
            }
        }
        files.push(FileJson {
            file: path.clone(),
            real_time_factor: transcript.real_time_factor(),
            transcript,
            reference,
            word_errors: errors.map(|e| e.errors()),
            reference_words: errors.map(|e| e.reference_words),
        });
    }
    let audio_s: f64 = files.iter().map(|f| f.transcript.audio_s).sum();
    let compute_s: f64 = files.iter().map(|f| f.transcript.compute_s).sum();
    let summary = SummaryJson {
        model,
        settings: if a.whisper_defaults {
            "whisper.cpp defaults"
        } else {
            "overread"
        },
        prompt: options.prompt.clone(),
        model_load_s,
        audio_s,
        compute_s,
        real_time_factor: compute_s / audio_s.max(1e-9),
        word_error_rate: (total.reference_words > 0).then(|| total.rate()),
        files,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} files, {:.1} s of audio in {:.2} s (real-time factor {:.3}){}",
            summary.files.len(),
            audio_s,
            compute_s,
            summary.real_time_factor,
            summary
                .word_error_rate
                .map(|w| format!(", word error rate {:.1}%", 100.0 * w))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// WAV file to write (16-bit mono at the device's rate).
    #[arg(short, long, required_unless_present = "list")]
    pub out: Option<PathBuf>,
    /// Input device id (see --list; default: the default input).
    #[arg(long)]
    pub device: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 5.0, conflicts_with = "samples")]
    pub seconds: f64,
    /// Stop after this many samples instead (devices that are not paced in real time, such as
    /// ALSA's file plugin, deliver them at once).
    #[arg(long)]
    pub samples: Option<usize>,
    /// List the input devices and stop.
    #[arg(long)]
    pub list: bool,
}

pub fn record_cmd(a: &RecordArgs) -> Result<()> {
    use crate::dictation::capture::{Recorder, input_devices};
    if a.list {
        for d in input_devices() {
            println!("{}\t{}", d.id, d.name);
        }
        return Ok(());
    }
    let out = a.out.clone().context("--out is required")?;
    let recorder = Recorder::start(a.device.as_deref(), a.samples)?;
    let rate = recorder.rate();
    let wanted = a
        .samples
        .unwrap_or_else(|| (a.seconds.max(0.0) * f64::from(rate)) as usize);
    let started = Instant::now();
    let deadline = std::time::Duration::from_secs_f64(a.seconds.max(0.0) + 10.0);
    while recorder.samples() < wanted {
        if let Some(e) = recorder.error() {
            anyhow::bail!("audio input {}: {e}", recorder.device());
        }
        if started.elapsed() > deadline {
            anyhow::bail!(
                "audio input {}: only {} of {wanted} samples after {:.1} s",
                recorder.device(),
                recorder.samples(),
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let device = recorder.device().to_string();
    let mut clip = recorder.stop();
    clip.samples.truncate(wanted);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: clip.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&out, spec).with_context(|| out.display().to_string())?;
    for s in &clip.samples {
        // The inverse of the i16 -> f32 scaling (1/32768): 16-bit input comes back bit-exact.
        w.write_sample((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)?;
    }
    w.finalize()?;
    println!(
        "{}: {} samples at {} Hz from {device}",
        out.display(),
        clip.samples.len(),
        clip.rate
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// WAV file to play.
    pub wav: PathBuf,
    /// Output device id (as `overread record --list` names devices; default: the default
    /// output).
    #[arg(long)]
    pub device: Option<String>,
    /// Start of the span to play, seconds.
    #[arg(long, default_value_t = 0.0)]
    pub from: f64,
    /// End of the span to play, seconds (default: the end of the file).
    #[arg(long)]
    pub to: Option<f64>,
}

pub fn play_cmd(a: &PlayArgs) -> Result<()> {
    use crate::dictation::playback::{Player, excerpt};
    let clip = read_wav(&a.wav)?;
    let to = a.to.unwrap_or_else(|| clip.duration_s());
    let part = excerpt(&clip, a.from, to, 0.0);
    let seconds = part.duration_s();
    let player = Player::start(a.device.as_deref(), &part)?;
    println!(
        "playing {:.2} s of {} on {} at {} Hz",
        seconds,
        a.wav.display(),
        player.device(),
        player.rate()
    );
    player.wait(std::time::Duration::from_secs_f64(seconds + 10.0))?;
    Ok(())
}
