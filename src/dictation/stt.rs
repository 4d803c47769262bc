//! Speech to text with whisper.cpp (through whisper-rs), on this machine: no audio leaves it.
//!
//! [`Engine::transcribe`] takes a clip at any sample rate, resamples it to 16 kHz, trims it to
//! its speech (a clip without speech is never decoded: whisper invents text in silence), and
//! decodes it with [`Options`]. Overread's settings ([`Options::overread`]) differ from
//! whisper.cpp's defaults ([`Options::whisper_defaults`], the baseline of the benchmark) in
//! three ways: decoding is deterministic (greedy, temperature 0, no temperature fallback: the
//! same audio always gives the same text); the encoder's audio context is fitted to the clip
//! (whisper encodes 30 s windows; a 5 s utterance needs a sixth of that work); and a radiology
//! vocabulary prompt ([`super::vocabulary`]) biases the decoder towards the words radiologists
//! say. Each word comes with a confidence (the lowest probability of its tokens) and its span in
//! the clip, so the report editor can mark unsure words and replay them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::audio::{Clip, WHISPER_RATE, detect_speech, resample};

/// Where a model is looked for, in order: the path given, `OVERREAD_WHISPER_MODEL`, then the
/// user's models folder ([`models_dir`]) for these names, best first.
pub const MODEL_NAMES: [&str; 6] = [
    "ggml-small.en.bin",
    "ggml-base.en.bin",
    "ggml-base.en-q8_0.bin",
    "ggml-tiny.en.bin",
    "ggml-tiny.en-q8_0.bin",
    "ggml-small.en-q8_0.bin",
];

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error(
        "no speech model found (looked at: {looked}). Dictation needs a whisper.cpp model: \
         download one of the official ggml files (e.g. ggml-base.en.bin from \
         https://huggingface.co/ggerganov/whisper.cpp) into {dir}, or name it with --model or \
         OVERREAD_WHISPER_MODEL. Everything else in Overread works without it."
    )]
    NoModel { looked: String, dir: String },
    #[error("speech model {path}: {message}")]
    Model { path: String, message: String },
    #[error("{0}")]
    Audio(#[from] super::audio::AudioError),
    #[error("speech recognition failed: {0}")]
    Decode(String),
}

/// The per-user folder for speech models: `models` in the data folder ([`crate::data_dir`]).
pub fn models_dir() -> PathBuf {
    crate::data_dir().join("models")
}

/// The model to use: `explicit`, else `OVERREAD_WHISPER_MODEL`, else the first of
/// [`MODEL_NAMES`] in [`models_dir`].
pub fn find_model(explicit: Option<&Path>) -> Result<PathBuf, SttError> {
    find_model_in(
        explicit,
        std::env::var_os("OVERREAD_WHISPER_MODEL").map(PathBuf::from),
        &models_dir(),
    )
}

fn find_model_in(
    explicit: Option<&Path>,
    from_env: Option<PathBuf>,
    dir: &Path,
) -> Result<PathBuf, SttError> {
    let mut looked = Vec::new();
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        looked.push(p.display().to_string());
    }
    if let Some(p) = from_env {
        if p.is_file() {
            return Ok(p);
        }
        looked.push(format!("OVERREAD_WHISPER_MODEL={}", p.display()));
    }
    for name in MODEL_NAMES {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    looked.push(format!("{}/{{{}}}", dir.display(), MODEL_NAMES.join(",")));
    Err(SttError::NoModel {
        looked: looked.join("; "),
        dir: dir.display().to_string(),
    })
}

/// How to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Text the decoder sees as what came before (a vocabulary prompt), or none.
    pub prompt: Option<String>,
    /// Fit the encoder's audio context to the clip instead of a full 30 s window.
    pub fit_audio_context: bool,
    /// Frames added to the fitted context.
    pub context_margin: i32,
    /// Greedy decoding at temperature 0 without the temperature fallback.
    pub deterministic: bool,
    /// Trim the clip to its speech (and skip clips without any).
    pub gate: bool,
    /// CPU threads for whisper.
    pub threads: usize,
}

impl Options {
    /// Overread's settings (see the module docs), with `prompt`.
    pub fn overread(prompt: Option<String>) -> Options {
        Options {
            prompt,
            fit_audio_context: true,
            context_margin: AUDIO_CTX_MARGIN,
            deterministic: true,
            gate: true,
            threads: default_threads(),
        }
    }

    /// whisper.cpp's own defaults (greedy with the temperature fallback, a full 30 s audio
    /// context, no prompt, no gate): the baseline.
    pub fn whisper_defaults() -> Options {
        Options {
            prompt: None,
            fit_audio_context: false,
            context_margin: AUDIO_CTX_MARGIN,
            deterministic: false,
            gate: false,
            threads: default_threads(),
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(8)
}

/// Encoder frames per second of audio (1500 for 30 s).
const AUDIO_CTX_PER_S: f64 = 50.0;
/// Frames added to the fitted context: without a margin the last words of a clip are lost.
pub const AUDIO_CTX_MARGIN: i32 = 128;
/// Frames added again for the second try when the fitted context fails (measured on the
/// shared dictation: the clips whose fitted decode looped all decoded with 384 frames of
/// margin, at about a quarter of the full window's cost).
pub const RETRY_MARGIN: i32 = 256;

/// The fitted audio context for `seconds` of audio (whisper's full context is 1500).
pub fn fitted_audio_ctx(seconds: f64, margin: i32) -> i32 {
    // `as` saturates (a NaN or endless clip gives the whole window), and so does the sum.
    let frames = ((seconds * AUDIO_CTX_PER_S).ceil() as i32)
        .saturating_add(margin)
        .clamp(1, 1500);
    // A multiple of 64 keeps whisper's matrix sizes friendly.
    ((frames + 63) / 64 * 64).min(1500)
}

/// One recognised word.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Word {
    /// As whisper wrote it, with its punctuation, without the leading space.
    pub text: String,
    /// The lowest probability of its tokens (0-1).
    pub confidence: f32,
    /// Where it was said, seconds from the start of the clip given.
    pub start_s: f64,
    pub end_s: f64,
}

/// What a clip said.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub words: Vec<Word>,
    /// Length of the clip given, seconds.
    pub audio_s: f64,
    /// The speech the gate found, seconds from the start (none: nothing was decoded).
    pub speech_s: Option<(f64, f64)>,
    /// Audio context used (1500 = whisper's full 30 s window).
    pub audio_ctx: i32,
    /// Wall time of resampling, gating and decoding, seconds.
    pub compute_s: f64,
}

impl Transcript {
    /// Compute time over audio time.
    pub fn real_time_factor(&self) -> f64 {
        self.compute_s / self.audio_s.max(1e-9)
    }
}

/// A loaded model with its decoding state; one transcription at a time (others wait).
pub struct Engine {
    context: whisper_rs::WhisperContext,
    state: Mutex<whisper_rs::WhisperState>,
    path: PathBuf,
    /// The last prompt and its tokens. whisper-rs 0.16 leaks the C string of every prompt
    /// set as text (`set_initial_prompt`), about 650 bytes a dictation for the life of the
    /// app; tokens are borrowed, and whisper.cpp uses them exactly as it would the text's.
    prompt: Mutex<Option<(String, Arc<Vec<std::os::raw::c_int>>)>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.path).finish()
    }
}

impl Engine {
    /// Load a ggml model (CPU; whisper.cpp's own logging goes to `tracing`).
    pub fn load(path: &Path) -> Result<Engine, SttError> {
        whisper_rs::install_logging_hooks();
        let err = |message: String| SttError::Model {
            path: path.display().to_string(),
            message,
        };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let mut params = whisper_rs::WhisperContextParameters::default();
        params.use_gpu(false);
        let context = whisper_rs::WhisperContext::new_with_params(path, params)
            .map_err(|e| err(format!("not a whisper.cpp model ({e})")))?;
        let state = context
            .create_state()
            .map_err(|e| err(format!("cannot allocate its state ({e})")))?;
        Ok(Engine {
            context,
            state: Mutex::new(state),
            path: path.to_path_buf(),
            prompt: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transcribe `clip` (any sample rate; see the module docs).
    pub fn transcribe(&self, clip: &Clip, options: &Options) -> Result<Transcript, SttError> {
        let start = Instant::now();
        let audio_s = clip.duration_s();
        let clip16 = resample(clip, WHISPER_RATE)?;
        let (offset, speech) = if options.gate {
            match detect_speech(&clip16).span {
                Some((a, b)) => (a, &clip16.samples[a..b]),
                None => {
                    return Ok(Transcript {
                        text: String::new(),
                        words: Vec::new(),
                        audio_s,
                        speech_s: None,
                        audio_ctx: 0,
                        compute_s: start.elapsed().as_secs_f64(),
                    });
                }
            }
        } else {
            (0, &clip16.samples[..])
        };
        if speech.is_empty() {
            return Err(SttError::Decode("the clip is empty".into()));
        }
        // whisper.cpp wants at least a second: pad short clips with silence.
        let mut padded;
        let mut samples = speech;
        if samples.len() < WHISPER_RATE as usize + WHISPER_RATE as usize / 10 {
            padded = samples.to_vec();
            padded.resize(WHISPER_RATE as usize + WHISPER_RATE as usize / 10, 0.0);
            samples = &padded;
        }
        let speech_seconds = samples.len() as f64 / f64::from(WHISPER_RATE);
        let audio_ctx = if options.fit_audio_context && speech_seconds < 30.0 {
            fitted_audio_ctx(speech_seconds, options.context_margin)
        } else {
            1500
        };

        let offset_s = offset as f64 / f64::from(WHISPER_RATE);
        // A fitted context sometimes sends the decoder into a loop (the same words over and
        // over) or to nothing. Decode again with a wider one then (a few hundred more frames
        // fix most of these at a fraction of the full window's cost), and with the full window
        // only when that fails too.
        let mut tries = vec![audio_ctx];
        if audio_ctx < 1500 {
            let wider = fitted_audio_ctx(speech_seconds, options.context_margin + RETRY_MARGIN);
            if wider > audio_ctx && wider < 1500 {
                tries.push(wider);
            }
            tries.push(1500);
        }
        let mut next = 0;
        let (decoded, used_ctx) = loop {
            let ctx = tries[next];
            let began = Instant::now();
            let d = self.decode(samples, options, ctx, offset_s)?;
            next += 1;
            if next == tries.len() || !d.looks_failed(speech_seconds) {
                break (d, ctx);
            }
            tracing::debug!(
                "dictation: audio context {ctx} failed after {:.2} s ({} characters); decoding \
                 with a wider one",
                began.elapsed().as_secs_f64(),
                d.text.len()
            );
        };
        let Decoded { text, words, .. } = decoded;
        Ok(Transcript {
            // The decoder sometimes opens with the punctuation that would follow the prompt.
            text: text
                .trim()
                .trim_start_matches(|c: char| c == ',' || c == '.' || c.is_whitespace())
                .to_string(),
            words,
            audio_s,
            speech_s: Some((
                offset_s,
                offset_s + speech.len() as f64 / f64::from(WHISPER_RATE),
            )),
            audio_ctx: used_ctx,
            compute_s: start.elapsed().as_secs_f64(),
        })
    }

    /// The tokens of `text` as whisper.cpp makes them of an initial prompt (kept for the next
    /// dictation, which has the same prompt).
    fn prompt_tokens(&self, text: &str) -> Result<Arc<Vec<std::os::raw::c_int>>, SttError> {
        let mut cached = self
            .prompt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, tokens)) = cached.as_ref()
            && t == text
        {
            return Ok(tokens.clone());
        }
        // A token covers a byte at least, so this room always suffices (whisper-rs 0.16 would
        // take a "needs more room" answer for a length).
        let tokens = self
            .context
            .tokenize(text, text.len() + 8)
            .map_err(|e| SttError::Decode(format!("the vocabulary prompt: {e}")))?;
        let tokens = Arc::new(tokens);
        *cached = Some((text.to_string(), tokens.clone()));
        Ok(tokens)
    }

    /// One whisper run over `samples` with the audio context `audio_ctx`.
    fn decode(
        &self,
        samples: &[f32],
        options: &Options,
        audio_ctx: i32,
        offset_s: f64,
    ) -> Result<Decoded, SttError> {
        let prompt = match options.prompt.as_deref().filter(|p| !p.trim().is_empty()) {
            Some(text) => Some(self.prompt_tokens(text)?),
            None => None,
        };
        let strategy = whisper_rs::SamplingStrategy::Greedy { best_of: 1 };
        let mut params = whisper_rs::FullParams::new(strategy);
        params.set_n_threads(i32::try_from(options.threads.max(1)).unwrap_or(1));
        // English is whisper.cpp's default language; `set_language` would leak its string.
        params.set_translate(false);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_token_timestamps(true);
        params.set_no_context(true);
        if audio_ctx < 1500 {
            params.set_audio_ctx(audio_ctx);
        }
        if options.deterministic {
            params.set_temperature(0.0);
            params.set_temperature_inc(0.0);
            // One segment per window, at most as many tokens as anyone says in the clip: a
            // decoder caught in a loop stops there instead of filling the window's 220 tokens
            // (about a second of the latency target), and the loop is still seen.
            params.set_single_segment(true);
            params.set_max_tokens(token_budget(samples.len() as f64 / f64::from(WHISPER_RATE)));
        }
        if let Some(tokens) = &prompt {
            params.set_tokens(tokens);
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .full(params, samples)
            .map_err(|e| SttError::Decode(e.to_string()))?;

        let eot = self.context.token_eot();
        let mut logprob_sum = 0.0f64;
        let mut tokens = 0usize;
        let mut text = String::new();
        let mut words: Vec<Word> = Vec::new();
        for segment in state.as_iter() {
            if let Ok(t) = segment.to_str_lossy() {
                text.push_str(&t);
            }
            for i in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(i) else {
                    continue;
                };
                if token.token_id() >= eot {
                    continue; // timestamps, start/end markers
                }
                let Ok(piece) = token.to_str_lossy() else {
                    continue;
                };
                let data = token.token_data();
                let p = token.token_probability();
                logprob_sum += f64::from(data.plog);
                tokens += 1;
                let t0 = offset_s + data.t0 as f64 * 0.01;
                let t1 = offset_s + data.t1 as f64 * 0.01;
                let starts_word = piece.starts_with(' ') || words.is_empty();
                let piece = piece.trim_start();
                if piece.is_empty() {
                    continue;
                }
                let punctuation_only = !piece.chars().any(char::is_alphanumeric);
                match words.last_mut() {
                    // A piece without letters or digits belongs to the word before (or, at
                    // the start, to nothing).
                    None if punctuation_only => {}
                    Some(w) if !starts_word || punctuation_only => {
                        w.text.push_str(piece);
                        // How sure whisper is of a comma says nothing about the word.
                        if !punctuation_only {
                            w.confidence = w.confidence.min(p);
                            w.end_s = w.end_s.max(t1);
                        }
                    }
                    _ => words.push(Word {
                        text: piece.to_string(),
                        confidence: p,
                        start_s: t0,
                        end_s: t1.max(t0),
                    }),
                }
            }
        }
        Ok(Decoded {
            text,
            words,
            mean_logprob: if tokens == 0 {
                f64::NEG_INFINITY
            } else {
                logprob_sum / tokens as f64
            },
        })
    }
}

/// One decoding's result.
struct Decoded {
    text: String,
    words: Vec<Word>,
    mean_logprob: f64,
}

impl Decoded {
    /// Signs of a failed decoding of `seconds` of speech: nothing written; far more text than
    /// anyone says in that time (speech runs about 15 characters a second); text that
    /// compresses like a loop (zlib ratio above 2.4, OpenAI whisper's rule); or a mean token
    /// log-probability below -1 (whisper's rule for a low-confidence decoding).
    fn looks_failed(&self, seconds: f64) -> bool {
        let text = self.text.trim();
        let letters = text.chars().filter(|c| c.is_alphanumeric()).count();
        letters == 0
            || text.len() as f64 > 40.0 * seconds.max(1.0)
            || compression_ratio(text) > 2.4
            || repeats_a_phrase(text, 5)
            || self.mean_logprob < -1.0
    }
}

/// The most tokens a dictated clip of `seconds` is decoded into: fast speech is about 4 words
/// (6 tokens with punctuation and timestamps) a second; twice that, and some room.
fn token_budget(seconds: f64) -> i32 {
    (12.0 * seconds).ceil() as i32 + 24
}

/// Whether some run of `n` words occurs twice (a loop the compression ratio misses when it
/// goes round only twice; a dictated clip practically never repeats five words in a row).
fn repeats_a_phrase(text: &str, n: usize) -> bool {
    let words = super::wer::normalize(text);
    let mut seen = std::collections::HashSet::new();
    words.windows(n).any(|w| !seen.insert(w.to_vec()))
}

/// Bytes of `text` over bytes of its zlib compression.
fn compression_ratio(text: &str) -> f64 {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    if z.write_all(text.as_bytes()).is_err() {
        return 0.0;
    }
    let compressed = z.finish().map(|v| v.len()).unwrap_or(usize::MAX);
    text.len() as f64 / compressed.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fitted_context_covers_the_clip_with_a_margin() {
        let m = AUDIO_CTX_MARGIN;
        assert_eq!(fitted_audio_ctx(1.0, 128), 192);
        assert_eq!(fitted_audio_ctx(5.0, 128), 384);
        assert_eq!(fitted_audio_ctx(29.9, m), 1500);
        assert!(fitted_audio_ctx(3.3, m) as f64 >= 3.3 * AUDIO_CTX_PER_S + f64::from(m));
        // Out-of-range margins and lengths stay within whisper's window (i32::MAX overflowed).
        assert_eq!(fitted_audio_ctx(1.0, i32::MAX), 1500);
        assert_eq!(fitted_audio_ctx(0.0, i32::MIN), 64);
        assert_eq!(fitted_audio_ctx(f64::INFINITY, m), 1500);
    }

    #[test]
    fn models_are_found_in_order_and_a_missing_one_says_how_to_get_one() {
        let dir = std::env::temp_dir().join(format!("overread-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = find_model_in(
            Some(Path::new("/nonexistent/model.bin")),
            Some(PathBuf::from("/nonexistent/env.bin")),
            &dir,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "/nonexistent/model.bin",
            "OVERREAD_WHISPER_MODEL=/nonexistent/env.bin",
            "ggml-base.en.bin",
            "huggingface.co/ggerganov/whisper.cpp",
            "works without it",
        ] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
        let tiny = dir.join("ggml-tiny.en.bin");
        let base = dir.join("ggml-base.en.bin");
        std::fs::write(&tiny, b"x").unwrap();
        assert_eq!(find_model_in(None, None, &dir).unwrap(), tiny);
        std::fs::write(&base, b"x").unwrap();
        assert_eq!(find_model_in(None, None, &dir).unwrap(), base);
        assert_eq!(find_model_in(Some(&tiny), None, &dir).unwrap(), tiny);
        assert_eq!(find_model_in(None, Some(tiny.clone()), &dir).unwrap(), tiny);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
