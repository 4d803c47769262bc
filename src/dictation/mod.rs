//! Dictation: audio in, text out, on this machine.
//!
//! - [`audio`]: WAV files, resampling to 16 kHz (rubato), the voice-activity gate.
//! - [`capture`]: the microphone (cpal; ALSA on Linux) with a level meter.
//! - [`device`]: audio devices by id or default, and the stream configuration to ask for.
//! - [`commands`]: voice commands in dictated text (never one to sign).
//! - [`macros`]: the radiologist's saved macros (named texts, one file each).
//! - [`playback`]: dictated audio played back (an unsure word's span).
//! - [`stt`]: the whisper.cpp engine (whisper-rs): model discovery, Overread's decoding
//!   settings, words with confidences and audio spans.
//! - [`vocabulary`]: the radiology vocabulary prompt (shipped terms plus the user's).
//! - [`numbers`]: numbers as words, both ways.
//! - [`wer`]: word error rate, for tests and benchmarks.
//!
//! Owns: turning speech into text. Must not: import `render`, `viewer` or `app` (layer rule),
//! send audio anywhere, or sign anything.

pub mod audio;
pub mod capture;
pub mod commands;
pub mod device;
pub mod macros;
pub mod numbers;
pub mod playback;
pub mod stt;
pub mod vocabulary;
pub mod wer;

pub use audio::{Clip, read_wav};
pub use stt::{Engine, Options, SttError, Transcript, Word, find_model};
