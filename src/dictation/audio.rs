//! Audio for speech-to-text: WAV files read into mono f32, any sample rate resampled to the
//! 16 kHz whisper wants (rubato's FFT resampler: synchronous, band-limited), and a simple
//! voice-activity gate that trims silence (whisper invents text in silence: a clip with no
//! speech is never sent to it).

use std::path::Path;

/// The sample rate whisper models take.
pub const WHISPER_RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("resampling: {0}")]
    Resample(String),
}

/// Mono samples in [-1, 1] at `rate` Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub rate: u32,
}

impl Clip {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate.max(1))
    }
}

/// Read a PCM or float WAV file, mixing channels down to mono.
pub fn read_wav(path: &Path) -> Result<Clip, AudioError> {
    let err = |message: String| AudioError::File {
        path: path.display().to_string(),
        message,
    };
    let reader = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(err("a WAV file with no channels or no sample rate".into()));
    }
    // Resampling to 16 kHz sizes its buffers by the ratio of the rates: a damaged rate (1 Hz,
    // or 4 GHz) would ask for gigabytes. Audio is recorded at 8 to 384 kHz.
    if !(4_000..=384_000).contains(&spec.sample_rate) {
        return Err(err(format!(
            "a sample rate of {} Hz (expected 4,000 to 384,000)",
            spec.sample_rate
        )));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?,
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(err(format!("{} bits per sample", spec.bits_per_sample)));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        }
    };
    Ok(Clip {
        samples: mix_to_mono(&interleaved, usize::from(spec.channels)),
        rate: spec.sample_rate,
    })
}

/// Average interleaved channels into one.
pub fn mix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// `clip` at `rate` Hz (returned as is when it already is).
pub fn resample(clip: &Clip, rate: u32) -> Result<Clip, AudioError> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};
    if clip.rate == rate || clip.samples.is_empty() {
        return Ok(Clip {
            samples: clip.samples.clone(),
            rate,
        });
    }
    let e = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
    let mut resampler =
        Fft::<f32>::new(clip.rate as usize, rate as usize, 1024, 1, FixedSync::Input)
            .map_err(|x| e(&x))?;
    let input = InterleavedSlice::new(&clip.samples, 1, clip.samples.len()).map_err(|x| e(&x))?;
    let out = resampler
        .process_all(&input, clip.samples.len(), None)
        .map_err(|x| e(&x))?;
    Ok(Clip {
        samples: out.take_data(),
        rate,
    })
}

/// The voice-activity gate's findings for a clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speech {
    /// First and one-past-last sample of speech (with a little margin), or `None` when the
    /// clip has none.
    pub span: Option<(usize, usize)>,
    /// Loudness of the loudest 30 ms frame, dBFS (RMS).
    pub peak_dbfs: f32,
    /// Loudness of the quiet floor (10th percentile of frames), dBFS.
    pub floor_dbfs: f32,
}

/// Frame RMS in dBFS (-120 for digital silence).
pub fn dbfs(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return -120.0;
    }
    let mean_square = samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32;
    (10.0 * mean_square.max(1e-12).log10()).max(-120.0)
}

/// A simple energy gate: 30 ms frames; a frame is speech when it is at least 12 dB above the
/// clip's quiet floor and louder than -50 dBFS; the span runs from the first to the last speech
/// frame with 200 ms of margin either side (word onsets and endings are quiet). A clip whose
/// loudest frame is below -50 dBFS, or that never rises 12 dB above its floor, has no speech.
pub fn detect_speech(clip: &Clip) -> Speech {
    let frame = (clip.rate as usize * 30 / 1000).max(1);
    let levels: Vec<f32> = clip.samples.chunks(frame).map(dbfs).collect();
    if levels.is_empty() {
        return Speech {
            span: None,
            peak_dbfs: -120.0,
            floor_dbfs: -120.0,
        };
    }
    let mut sorted = levels.clone();
    sorted.sort_by(f32::total_cmp);
    let floor = sorted[sorted.len() / 10];
    let peak = sorted[sorted.len() - 1];
    let threshold = (floor + 12.0).max(-50.0);
    let first = levels.iter().position(|&l| l >= threshold);
    let last = levels.iter().rposition(|&l| l >= threshold);
    let span = match (first, last) {
        (Some(a), Some(b)) if peak >= -50.0 && peak - floor >= 12.0 => {
            let margin = clip.rate as usize / 5;
            Some((
                (a * frame).saturating_sub(margin),
                ((b + 1) * frame + margin).min(clip.samples.len()),
            ))
        }
        _ => None,
    };
    Speech {
        span,
        peak_dbfs: peak,
        floor_dbfs: floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, seconds: f32, hz: f32, amplitude: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|i| amplitude * (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    /// A WAV whose header gives an absurd sample rate is refused (resampling it to 16 kHz
    /// asked for gigabytes and aborted the process).
    #[test]
    fn an_absurd_sample_rate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for rate in [1u32, 4_294_967_291] {
            let path = dir.path().join(format!("{rate}.wav"));
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                // 8 bits: the byte rate of 4 GHz still fits the header.
                bits_per_sample: 8,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for _ in 0..100 {
                w.write_sample(0i8).unwrap();
            }
            w.finalize().unwrap();
            let e = read_wav(&path).unwrap_err().to_string();
            assert!(e.contains("sample rate"), "{e}");
        }
    }

    #[test]
    fn resampling_keeps_a_tone_and_the_length() {
        let clip = Clip {
            samples: tone(48_000, 1.0, 440.0, 0.5),
            rate: 48_000,
        };
        let out = resample(&clip, WHISPER_RATE).unwrap();
        assert_eq!(out.rate, WHISPER_RATE);
        assert!(
            (out.samples.len() as i64 - 16_000).abs() <= 2,
            "{}",
            out.samples.len()
        );
        // Same tone: compare with the tone generated at 16 kHz away from the edges.
        let expected = tone(16_000, 1.0, 440.0, 0.5);
        let worst = out.samples[2000..14000]
            .iter()
            .zip(&expected[2000..14000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.01, "max difference {worst}");
    }

    #[test]
    fn the_gate_finds_speech_between_silences_and_none_in_silence() {
        let rate = 16_000;
        let mut samples = vec![0.0005f32; rate as usize]; // -66 dBFS hiss
        samples.extend(tone(rate, 1.0, 300.0, 0.3));
        samples.extend(vec![0.0005f32; rate as usize]);
        let clip = Clip { samples, rate };
        let speech = detect_speech(&clip);
        let (a, b) = speech.span.unwrap();
        assert!((12_000..=16_000).contains(&a), "{a}");
        assert!((32_000..=36_000).contains(&b), "{b}");
        let quiet = Clip {
            samples: vec![0.0005; 48_000],
            rate,
        };
        assert_eq!(detect_speech(&quiet).span, None);
    }
}
