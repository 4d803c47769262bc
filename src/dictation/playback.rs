//! Playing dictated audio back (cpal; ALSA on Linux): the radiologist clicks a word the speech
//! engine was unsure of and hears what was said there. The clip's own rate in mono is asked
//! for first (16-bit, else float); otherwise the device's default output configuration, with
//! the clip resampled and copied to every channel. Audio never leaves the machine.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};

use super::audio::{Clip, resample};
use super::device::{self, DeviceError, Direction, StreamThread, for_sample_type};

/// Why playback could not start.
pub type PlaybackError = DeviceError;

/// Silence written after the clip before playback counts as over: long enough for any
/// device buffer to drain, so the clip's end is heard.
const DRAIN_S: f64 = 0.5;

#[derive(Debug, Default)]
struct Shared {
    /// Frames handed to the device so far (clip, then silence).
    frames: AtomicUsize,
    drained: AtomicBool,
    error: Arc<Mutex<Option<String>>>,
    /// The device's id, its rate and the clip's length in its frames, once it is open.
    opened: OnceLock<(String, u32, usize)>,
}

/// Audio being played; dropping it stops the device (on the audio thread, not waited for).
pub struct Player {
    audio: StreamThread,
    shared: Arc<Shared>,
    /// The device asked for (its id once open is in `shared`).
    asked: String,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("device", &self.device())
            .field("rate", &self.rate())
            .finish_non_exhaustive()
    }
}

/// The part of `clip` from `start_s` to `end_s`, widened by `pad_s` on both sides (a word
/// alone is hard to hear; a little around it is not).
pub fn excerpt(clip: &Clip, start_s: f64, end_s: f64, pad_s: f64) -> Clip {
    let at =
        |s: f64| ((s.max(0.0) * f64::from(clip.rate)).round() as usize).min(clip.samples.len());
    let (a, b) = (at(start_s - pad_s), at(end_s + pad_s));
    Clip {
        samples: clip.samples[a..b.max(a)].to_vec(),
        rate: clip.rate,
    }
}

impl Player {
    /// Start playing `clip` on `device` (an id as `overread record --list` names devices;
    /// `None`: the default output), and wait until the device is open.
    pub fn start(device: Option<&str>, clip: &Clip) -> Result<Player, PlaybackError> {
        let player = Player::start_in_background(device, clip)?;
        player.audio.wait_opened(Direction::Output)?;
        Ok(player)
    }

    /// The same without waiting for the device (the window): it opens on the audio thread,
    /// and a failure to open is [`Player::error`]. Only an empty clip is refused here.
    pub fn start_in_background(device: Option<&str>, clip: &Clip) -> Result<Player, PlaybackError> {
        if clip.samples.is_empty() {
            return Err(DeviceError::Empty);
        }
        let shared = Arc::new(Shared::default());
        let asked = device.unwrap_or("default").to_string();
        let audio = StreamThread::spawn(Direction::Output, shared.error.clone(), {
            let shared = shared.clone();
            let device = device.map(str::to_string);
            let clip = clip.clone();
            move || open_stream(device.as_deref(), &clip, &shared)
        });
        Ok(Player {
            audio,
            shared,
            asked,
        })
    }
}

/// Open the output, build the stream playing `clip` (resampled to the device's rate where
/// it differs), and play it.
fn open_stream(
    device: Option<&str>,
    clip: &Clip,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, PlaybackError> {
    {
        let opened = device::open(Direction::Output, device, clip.rate)?;
        let config = opened.config;
        let channels = usize::from(config.channels()).max(1);
        let rate = config.sample_rate();
        let format = config.sample_format();
        let samples = if rate == clip.rate {
            clip.samples.clone()
        } else {
            resample(clip, rate).map_err(|e| opened.error(e))?.samples
        };
        let clip_frames = samples.len();
        let drain_frames = (DRAIN_S * f64::from(rate)) as usize;
        let samples = Arc::new(samples);
        let on_error = device::keep_first_error(Direction::Output, shared.error.clone());
        macro_rules! build {
            ($t:ty) => {{
                let shared = shared.clone();
                let samples = samples.clone();
                opened.device.build_output_stream::<$t, _, _>(
                    config.into(),
                    move |data: &mut [$t], _| {
                        let mut at = shared.frames.load(Ordering::Relaxed);
                        for frame in data.chunks_mut(channels) {
                            let s = samples.get(at).copied().unwrap_or(0.0);
                            frame.fill(<$t as cpal::FromSample<f32>>::from_sample_(s));
                            at += 1;
                        }
                        shared.frames.store(at, Ordering::Release);
                        if at >= clip_frames + drain_frames {
                            shared.drained.store(true, Ordering::Release);
                        }
                    },
                    on_error.clone(),
                    None,
                )
            }};
        }
        let stream = for_sample_type!(format, build)
            .ok_or_else(|| opened.error(format!("sample format {format:?} is not supported")))?
            .map_err(|e| opened.error(e))?;
        let _ = shared.opened.set((opened.name.clone(), rate, clip_frames));
        stream.play().map_err(|e| opened.error(e))?;
        Ok(stream)
    }
}

impl Player {
    /// The device's id (the one asked for until it is open).
    pub fn device(&self) -> &str {
        self.shared.opened.get().map_or(&self.asked, |o| &o.0)
    }

    /// The device's sample rate (0 until it is open).
    pub fn rate(&self) -> u32 {
        self.shared.opened.get().map_or(0, |o| o.1)
    }

    /// The clip has been handed to the device and the device has had time to play it.
    pub fn finished(&self) -> bool {
        self.shared.drained.load(Ordering::Acquire) || self.error().is_some()
    }

    /// How far playback is, 0 to 1.
    pub fn progress(&self) -> f32 {
        let Some(&(_, _, clip_frames)) = self.shared.opened.get() else {
            return 0.0;
        };
        let frames = self.shared.frames.load(Ordering::Acquire);
        (frames as f32 / clip_frames.max(1) as f32).min(1.0)
    }

    fn failure(&self, message: String) -> DeviceError {
        DeviceError::Device {
            direction: Direction::Output.name(),
            device: self.device().to_string(),
            message,
        }
    }

    /// The first error the device reported, if any.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().ok().and_then(|e| e.clone())
    }

    /// Wait until the clip has played (or `timeout`); the device's error if it failed.
    pub fn wait(self, timeout: Duration) -> Result<(), PlaybackError> {
        let start = Instant::now();
        while !self.finished() && start.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(5));
        }
        match self.error() {
            Some(message) => Err(self.failure(message)),
            None if self.finished() => Ok(()),
            None => Err(self.failure(format!("did not finish within {timeout:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_the_span_with_its_padding_inside_the_clip() {
        let clip = Clip {
            samples: (0..16_000).map(|i| i as f32).collect(),
            rate: 16_000,
        };
        let e = excerpt(&clip, 0.25, 0.5, 0.05);
        assert_eq!(e.samples.first(), Some(&3200.0));
        assert_eq!(e.samples.len(), 5600);
        // Clamped at both ends.
        assert_eq!(excerpt(&clip, -1.0, 2.0, 0.1).samples.len(), 16_000);
        assert!(excerpt(&clip, 2.0, 3.0, 0.0).samples.is_empty());
    }
}
