//! Microphone capture with cpal (ALSA on Linux): the chosen input device (or the default),
//! mixed to mono f32, kept until [`Recorder::stop`], with a level meter. The device's own rate
//! is kept; [`super::stt::Engine::transcribe`] resamples. 16 kHz mono is asked for first when
//! the device offers it (no resampling then), else the device's default configuration.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::audio::{Clip, WHISPER_RATE, dbfs};
use super::device::{self, DeviceError, Direction, for_sample_type};

/// Why capture could not start.
pub type CaptureError = DeviceError;

/// An input device: `id` is what settings and `--device` take (e.g. `alsa:default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDevice {
    pub id: String,
    pub name: String,
}

/// The input devices of the default host.
pub fn input_devices() -> Vec<InputDevice> {
    let host = cpal::default_host();
    let Ok(devices) = host.input_devices() else {
        return Vec::new();
    };
    devices
        .filter_map(|d| {
            let id = d.id().ok()?.to_string();
            let name = d
                .description()
                .map(|x| x.name().to_string())
                .unwrap_or_else(|_| id.clone());
            Some(InputDevice { id, name })
        })
        .collect()
}

#[derive(Debug, Default)]
struct Shared {
    samples: Mutex<Vec<f32>>,
    /// Samples kept so far (mono).
    count: AtomicUsize,
    /// Level of the last callback's block, dBFS, as f32 bits.
    level: AtomicU32,
    /// The limit was reached: later blocks are dropped.
    full: AtomicBool,
    error: Arc<Mutex<Option<String>>>,
}

/// A running capture; dropping it stops the device.
pub struct Recorder {
    stream: cpal::Stream,
    shared: Arc<Shared>,
    rate: u32,
    device: String,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("device", &self.device)
            .field("rate", &self.rate)
            .finish()
    }
}

impl Recorder {
    /// Start capturing from `device` (an id from [`input_devices`]; `None`: the default input),
    /// keeping at most `limit` mono samples (`None`: up to ten minutes).
    pub fn start(device: Option<&str>, limit: Option<usize>) -> Result<Recorder, CaptureError> {
        let opened = device::open(Direction::Input, device, WHISPER_RATE)?;
        let config = opened.config;
        let channels = usize::from(config.channels()).max(1);
        let rate = config.sample_rate();
        let stream_config: cpal::StreamConfig = config.into();
        let shared = Arc::new(Shared::default());
        let limit = limit.unwrap_or(rate as usize * 600);

        let on_error = device::keep_first_error(Direction::Input, shared.error.clone());
        macro_rules! build {
            ($t:ty) => {{
                let shared = shared.clone();
                opened.device.build_input_stream::<$t, _, _>(
                    stream_config.clone(),
                    move |data: &[$t], _| {
                        let mono: Vec<f32> = data
                            .chunks(channels)
                            .map(|frame| {
                                frame
                                    .iter()
                                    .map(|&s| <f32 as cpal::FromSample<$t>>::from_sample_(s))
                                    .sum::<f32>()
                                    / channels as f32
                            })
                            .collect();
                        push(&shared, &mono, limit);
                    },
                    on_error.clone(),
                    None,
                )
            }};
        }
        let format = config.sample_format();
        let stream = for_sample_type!(format, build)
            .ok_or_else(|| opened.error(format!("sample format {format:?} is not supported")))?
            .map_err(|e| opened.error(e))?;
        stream.play().map_err(|e| opened.error(e))?;
        Ok(Recorder {
            stream,
            shared,
            rate,
            device: opened.name,
        })
    }

    /// The device's sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// Mono samples kept so far.
    pub fn samples(&self) -> usize {
        self.shared.count.load(Ordering::Acquire)
    }

    /// Whether the limit was reached.
    pub fn is_full(&self) -> bool {
        self.shared.full.load(Ordering::Acquire)
    }

    /// The level of the latest block, dBFS (for the level meter).
    pub fn level_dbfs(&self) -> f32 {
        f32::from_bits(self.shared.level.load(Ordering::Relaxed))
    }

    /// The first error the device reported, if any.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }

    /// Stop and return what was captured.
    pub fn stop(self) -> Clip {
        let _ = self.stream.pause();
        drop(self.stream);
        let samples = self
            .shared
            .samples
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        Clip {
            samples,
            rate: self.rate,
        }
    }
}

fn push(shared: &Shared, mono: &[f32], limit: usize) {
    shared.level.store(dbfs(mono).to_bits(), Ordering::Relaxed);
    if shared.full.load(Ordering::Relaxed) {
        return;
    }
    let Ok(mut samples) = shared.samples.lock() else {
        return;
    };
    let room = limit.saturating_sub(samples.len());
    samples.extend_from_slice(&mono[..mono.len().min(room)]);
    shared.count.store(samples.len(), Ordering::Release);
    if samples.len() >= limit {
        shared.full.store(true, Ordering::Release);
    }
}
