//! Audio devices (cpal; ALSA on Linux) as capture and playback open them: one by its id (as
//! `overread record --list` prints it, e.g. `alsa:default`) or the default of its direction,
//! with the stream configuration to ask for: mono at the wanted rate (16-bit, else float) when
//! the device offers it, else the device's default configuration.

use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

/// Which way the audio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no audio {direction} device{which}")]
    NoDevice {
        direction: &'static str,
        /// Empty for the default device, else " named ID" and why.
        which: String,
    },
    #[error("audio {direction} {device}: {message}")]
    Device {
        direction: &'static str,
        device: String,
        message: String,
    },
    #[error("nothing to play")]
    Empty,
}

/// A device found, its id, and the configuration to stream with.
pub struct Opened {
    pub device: cpal::Device,
    /// The device's id (what settings and `--device` take).
    pub name: String,
    pub config: cpal::SupportedStreamConfig,
    direction: Direction,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("name", &self.name)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// An error of this device.
    pub fn error(&self, message: impl std::fmt::Display) -> DeviceError {
        DeviceError::Device {
            direction: self.direction.name(),
            device: self.name.clone(),
            message: message.to_string(),
        }
    }
}

/// Open device `id` (`None`: the default of `direction`) and choose its configuration for
/// mono audio at `rate`.
pub fn open(direction: Direction, id: Option<&str>, rate: u32) -> Result<Opened, DeviceError> {
    let host = cpal::default_host();
    let missing = |which: String| DeviceError::NoDevice {
        direction: direction.name(),
        which,
    };
    let device = match id {
        Some(id) => {
            let parsed: cpal::DeviceId = id
                .parse()
                .map_err(|e: cpal::Error| missing(format!(" named {id} ({e})")))?;
            host.device_by_id(&parsed)
                .ok_or_else(|| missing(format!(" named {id}")))?
        }
        None => match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        }
        .ok_or_else(|| missing(String::new()))?,
    };
    let name = device
        .id()
        .map(|i| i.to_string())
        .unwrap_or_else(|_| id.unwrap_or("default").to_string());
    let config = choose_config(&device, direction, rate).map_err(|e| DeviceError::Device {
        direction: direction.name(),
        device: name.clone(),
        message: e.to_string(),
    })?;
    Ok(Opened {
        device,
        name,
        config,
        direction,
    })
}

/// Mono at `rate` (16-bit, else float) when the device offers it, else its default
/// configuration for `direction`.
fn choose_config(
    dev: &cpal::Device,
    direction: Direction,
    rate: u32,
) -> Result<cpal::SupportedStreamConfig, cpal::Error> {
    let offered: Vec<cpal::SupportedStreamConfigRange> = match direction {
        Direction::Input => dev.supported_input_configs().map(Iterator::collect),
        Direction::Output => dev.supported_output_configs().map(Iterator::collect),
    }
    .unwrap_or_default();
    let mut candidates: Vec<cpal::SupportedStreamConfigRange> = offered
        .into_iter()
        .filter(|c| {
            c.channels() == 1
                && c.min_sample_rate() <= rate
                && c.max_sample_rate() >= rate
                && matches!(
                    c.sample_format(),
                    cpal::SampleFormat::I16 | cpal::SampleFormat::F32
                )
        })
        .collect();
    candidates.sort_by_key(|c| c.sample_format() != cpal::SampleFormat::I16);
    if let Some(c) = candidates.into_iter().next() {
        return Ok(c.with_sample_rate(rate));
    }
    match direction {
        Direction::Input => dev.default_input_config(),
        Direction::Output => dev.default_output_config(),
    }
}

/// What a stream does with its device's errors: logs them and keeps the first in `first`
/// (for the caller to show).
pub fn keep_first_error(
    direction: Direction,
    first: Arc<Mutex<Option<String>>>,
) -> impl FnMut(cpal::Error) + Clone + Send + 'static {
    move |e: cpal::Error| {
        tracing::warn!("audio {}: {e}", direction.name());
        if let Ok(mut slot) = first.lock() {
            slot.get_or_insert_with(|| e.to_string());
        }
    }
}

/// A cpal stream opened, played and dropped on a thread of its own (`overread-audio`), so
/// that neither touches the window's thread: cpal's ALSA backend opens a device twice (once
/// for its configurations, once for the stream), which through PulseAudio or PipeWire takes
/// tens to hundreds of milliseconds and a Bluetooth headset seconds, and dropping a stream
/// joins cpal's own thread (found by review: push-to-talk opened the microphone in the
/// frame). The stream lives until this is dropped; nothing waits for it to close.
pub struct StreamThread {
    /// Dropped: the thread pauses and drops its stream, and ends.
    _stop: std::sync::mpsc::Sender<()>,
    opened: std::sync::mpsc::Receiver<Result<(), DeviceError>>,
}

impl std::fmt::Debug for StreamThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamThread").finish_non_exhaustive()
    }
}

impl StreamThread {
    /// Run `open` (find the device, build and play the stream) on a new thread and keep the
    /// stream there. A failure to open is put in `error` as well (where the stream's own
    /// errors go), for those that do not wait: [`StreamThread::wait_opened`] returns it.
    pub fn spawn(
        direction: Direction,
        error: Arc<Mutex<Option<String>>>,
        open: impl FnOnce() -> Result<cpal::Stream, DeviceError> + Send + 'static,
    ) -> StreamThread {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let failed = {
            let error = error.clone();
            move |e: DeviceError| {
                if let Ok(mut slot) = error.lock() {
                    slot.get_or_insert_with(|| e.to_string());
                }
                e
            }
        };
        let spawned = std::thread::Builder::new()
            .name("overread-audio".into())
            .spawn(move || match open() {
                Ok(stream) => {
                    let _ = opened_tx.send(Ok(()));
                    // Until the owner is dropped (the sender with it).
                    let _ = stop_rx.recv();
                    let _ = stream.pause();
                    drop(stream);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(failed(e)));
                }
            });
        if let Err(e) = spawned
            && let Ok(mut slot) = error.lock()
        {
            slot.get_or_insert_with(|| {
                format!("audio {}: no thread for the device: {e}", direction.name())
            });
        }
        StreamThread {
            _stop: stop_tx,
            opened: opened_rx,
        }
    }

    /// Wait until the stream plays, or the reason it does not (for the command line, which
    /// may wait).
    pub fn wait_opened(&self, direction: Direction) -> Result<(), DeviceError> {
        self.opened.recv().unwrap_or_else(|_| {
            Err(DeviceError::Device {
                direction: direction.name(),
                device: String::new(),
                message: "the audio thread ended before the device opened".into(),
            })
        })
    }
}

/// `Some($build!(T))` for the sample type `T` of `$format`, `None` for a format this code does
/// not handle (cpal's stream builders are generic over the sample type).
macro_rules! for_sample_type {
    ($format:expr, $build:ident) => {
        match $format {
            cpal::SampleFormat::I16 => Some($build!(i16)),
            cpal::SampleFormat::I32 => Some($build!(i32)),
            cpal::SampleFormat::F32 => Some($build!(f32)),
            cpal::SampleFormat::U16 => Some($build!(u16)),
            cpal::SampleFormat::U8 => Some($build!(u8)),
            cpal::SampleFormat::I8 => Some($build!(i8)),
            cpal::SampleFormat::F64 => Some($build!(f64)),
            _ => None,
        }
    };
}
pub(crate) use for_sample_type;
