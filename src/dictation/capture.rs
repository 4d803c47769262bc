//! Microphone capture with cpal (ALSA on Linux): the chosen input device (or the default),
//! mixed to mono f32, kept until [`Recorder::stop`], with a level meter. The device's own rate
//! is kept; [`super::stt::Engine::transcribe`] resamples. 16 kHz mono is asked for first when
//! the device offers it (no resampling then), else the device's default configuration.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::audio::{Clip, WHISPER_RATE, dbfs};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no audio input device{0}")]
    NoDevice(String),
    #[error("audio input {device}: {message}")]
    Device { device: String, message: String },
}

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
    error: Mutex<Option<String>>,
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
        let host = cpal::default_host();
        let dev = match device {
            Some(id) => {
                let parsed: cpal::DeviceId = id.parse().map_err(|e: cpal::Error| {
                    CaptureError::NoDevice(format!(" named {id} ({e})"))
                })?;
                host.device_by_id(&parsed)
                    .ok_or_else(|| CaptureError::NoDevice(format!(" named {id}")))?
            }
            None => host
                .default_input_device()
                .ok_or_else(|| CaptureError::NoDevice(String::new()))?,
        };
        let name = dev
            .id()
            .map(|i| i.to_string())
            .unwrap_or_else(|_| device.unwrap_or("default").to_string());
        let err = |message: String| CaptureError::Device {
            device: name.clone(),
            message,
        };
        let config = choose_config(&dev).map_err(|e| err(e.to_string()))?;
        let channels = usize::from(config.channels()).max(1);
        let rate = config.sample_rate();
        let format = config.sample_format();
        let stream_config: cpal::StreamConfig = config.into();
        let shared = Arc::new(Shared::default());
        let limit = limit.unwrap_or(rate as usize * 600);

        let on_error = {
            let shared = shared.clone();
            move |e: cpal::Error| {
                tracing::warn!("audio input: {e}");
                if let Ok(mut slot) = shared.error.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
            }
        };
        macro_rules! build {
            ($t:ty) => {{
                let shared = shared.clone();
                dev.build_input_stream::<$t, _, _>(
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
        let stream = match format {
            cpal::SampleFormat::I16 => build!(i16),
            cpal::SampleFormat::I32 => build!(i32),
            cpal::SampleFormat::F32 => build!(f32),
            cpal::SampleFormat::U16 => build!(u16),
            cpal::SampleFormat::U8 => build!(u8),
            cpal::SampleFormat::I8 => build!(i8),
            cpal::SampleFormat::F64 => build!(f64),
            other => return Err(err(format!("sample format {other:?} is not supported"))),
        }
        .map_err(|e| err(e.to_string()))?;
        stream.play().map_err(|e| err(e.to_string()))?;
        Ok(Recorder {
            stream,
            shared,
            rate,
            device: name,
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

/// 16 kHz mono (16-bit, else float) when the device offers it, else its default input
/// configuration.
fn choose_config(dev: &cpal::Device) -> Result<cpal::SupportedStreamConfig, cpal::Error> {
    if let Ok(configs) = dev.supported_input_configs() {
        let mut candidates: Vec<cpal::SupportedStreamConfigRange> = configs
            .filter(|c| {
                c.channels() == 1
                    && c.min_sample_rate() <= WHISPER_RATE
                    && c.max_sample_rate() >= WHISPER_RATE
                    && matches!(
                        c.sample_format(),
                        cpal::SampleFormat::I16 | cpal::SampleFormat::F32
                    )
            })
            .collect();
        candidates.sort_by_key(|c| c.sample_format() != cpal::SampleFormat::I16);
        if let Some(c) = candidates.into_iter().next() {
            return Ok(c.with_sample_rate(WHISPER_RATE));
        }
    }
    dev.default_input_config()
}
