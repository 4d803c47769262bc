#!/usr/bin/env bash
# Speech to text on ../shared/dictation (20 radiology sentences, two synthetic voices) with
# ../shared/models/ggml-tiny.en-q8_0.bin: word error rate, real-time factor, and the time from
# the end of an utterance to its text (the whole clip is decoded after the talk key is released,
# so that time is the clip's compute time; the model is loaded beforehand, as in the app).
# Three settings: whisper.cpp's defaults through whisper-rs (the baseline), Overread's settings
# without the prompt, and Overread's settings with the radiology vocabulary prompt.
#   benches/dictation.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
DATA=../shared/dictation
MODEL=../shared/models/ggml-tiny.en-q8_0.bin
cargo build --release -q
BIN=${CARGO_TARGET_DIR:-target}/release/overread
echo "# $(date -u +%FT%TZ) $(nproc) cores, $THREADS threads, model $(basename $MODEL)"
for voice in espeak flite; do
    for setting in "--whisper-defaults" "--no-prompt" ""; do
        "$BIN" transcribe --model "$MODEL" --threads "$THREADS" --reference "$DATA/sentences.tsv" \
            --json $setting "$DATA/$voice"/*.wav |
        python3 -c '
import json, sys, statistics
d = json.load(sys.stdin)
voice, setting = sys.argv[1], sys.argv[2] or "overread + prompt"
lat = sorted(f["compute_s"] for f in d["files"] if 4.0 <= f["audio_s"] <= 6.0)
print(json.dumps({
    "voice": voice, "setting": setting,
    "wer": round(d["word_error_rate"], 4),
    "rtf": round(d["real_time_factor"], 4),
    "audio_s": round(d["audio_s"], 1),
    "latency_4_6s_clips_p50_s": round(statistics.median(lat), 3) if lat else None,
    "latency_4_6s_clips_max_s": round(lat[-1], 3) if lat else None,
    "clips_4_6s": len(lat),
    "full_window_decodes": sum(1 for f in d["files"] if f["audio_ctx"] == 1500),
}))' "$voice" "$setting"
    done
done
