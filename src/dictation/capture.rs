//! Microphone capture with cpal (ALSA on Linux): the chosen input device (or the default),
//! mixed to mono f32, kept until [`Recorder::stop`], with a level meter. The device's own rate
//! is kept; [`super::stt::Engine::transcribe`] resamples. 16 kHz mono is asked for first when
//! the device offers it (no resampling then), else the device's default configuration.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::audio::{Clip, WHISPER_RATE, dbfs};
use super::device::{self, DeviceError, Direction, StreamThread, for_sample_type};

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
    /// The device's id and rate, once it is open.
    opened: OnceLock<(String, u32)>,
}

/// A running capture; dropping it stops the device (on the audio thread, not waited for).
pub struct Recorder {
    audio: StreamThread,
    shared: Arc<Shared>,
    /// The device asked for (its id once open is in `shared`).
    asked: String,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("device", &self.device())
            .field("rate", &self.rate())
            .finish()
    }
}

impl Recorder {
    /// Start capturing from `device` (an id from [`input_devices`]; `None`: the default input),
    /// keeping at most `limit` mono samples (`None`: up to ten minutes), and wait until the
    /// device is open.
    pub fn start(device: Option<&str>, limit: Option<usize>) -> Result<Recorder, CaptureError> {
        let recorder = Recorder::start_in_background(device, limit);
        recorder.audio.wait_opened(Direction::Input)?;
        Ok(recorder)
    }

    /// The same without waiting (the window): the device opens on the audio thread, and a
    /// failure to open is [`Recorder::error`].
    pub fn start_in_background(device: Option<&str>, limit: Option<usize>) -> Recorder {
        let shared = Arc::new(Shared::default());
        let asked = device.unwrap_or("default").to_string();
        let audio = StreamThread::spawn(Direction::Input, shared.error.clone(), {
            let shared = shared.clone();
            let device = device.map(str::to_string);
            move || open_stream(device.as_deref(), limit, &shared)
        });
        Recorder {
            audio,
            shared,
            asked,
        }
    }
}

/// Open the input, build its stream into `shared`, and play it.
fn open_stream(
    device: Option<&str>,
    limit: Option<usize>,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, CaptureError> {
    {
        let opened = device::open(Direction::Input, device, WHISPER_RATE)?;
        let config = opened.config;
        let channels = usize::from(config.channels()).max(1);
        let rate = config.sample_rate();
        let stream_config: cpal::StreamConfig = config.into();
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
        // Known before the first block arrives: a stop in between gives the clip its real rate.
        let _ = shared.opened.set((opened.name.clone(), rate));
        stream.play().map_err(|e| opened.error(e))?;
        Ok(stream)
    }
}

impl Recorder {
    /// The device's sample rate (16 kHz until it is open).
    pub fn rate(&self) -> u32 {
        self.shared.opened.get().map_or(WHISPER_RATE, |o| o.1)
    }

    /// The device's id (the one asked for until it is open).
    pub fn device(&self) -> &str {
        self.shared.opened.get().map_or(&self.asked, |o| &o.0)
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

    /// Stop and return what was captured (the device is closed on the audio thread; a block
    /// it delivers meanwhile is not kept).
    pub fn stop(self) -> Clip {
        let samples = self
            .shared
            .samples
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        Clip {
            samples,
            rate: self.rate(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Started without waiting (as the window starts it), a device that cannot be opened
    /// comes back as the recorder's error, where the window looks for device errors, and
    /// `start` (the command line's, which waits) returns the same failure.
    #[test]
    fn a_device_that_fails_to_open_is_the_recorders_error() {
        let missing = "alsa:overread-no-such-device";
        let recorder = Recorder::start_in_background(Some(missing), None);
        assert_eq!(recorder.device(), missing);
        let mut error = None;
        for _ in 0..3000 {
            error = recorder.error();
            if error.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let error = error.expect("no error after 30 s");
        assert!(error.contains("no audio input device"), "{error}");
        assert!(recorder.stop().samples.is_empty());
        let waited = Recorder::start(Some(missing), None).unwrap_err();
        assert_eq!(waited.to_string(), error);
    }
}
