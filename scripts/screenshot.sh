#!/usr/bin/env bash
# Run the real workstation binary under Xvfb (lavapipe when there is no GPU), open a study,
# wait for it to draw, and save a screenshot of the screen.
#   scripts/screenshot.sh [STUDY_PATH] [OUT.png] [SECONDS]
# Without a study it writes a synthetic chest CT first. Needs Xvfb and Python with Pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${2:-target/screenshot.png}"
wait_secs="${3:-20}"
cargo build --release --quiet
study="${1:-}"
if [ -z "$study" ]; then
  study="$(mktemp -d)/series"
  ./target/release/overread synth -o "$study" --slices 120 --size 512 >/dev/null
fi
display=":$((90 + RANDOM % 100))"
Xvfb "$display" -screen 0 1920x1080x24 >/dev/null 2>&1 &
xvfb=$!
sleep 2
DISPLAY="$display" ./target/release/overread open "$study" &
app=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep "$wait_secs"
kill -0 "$app" || { echo "the workstation exited early" >&2; exit 1; }
python3 -c "from PIL import ImageGrab; ImageGrab.grab(xdisplay='$display').save('$out')"
echo "wrote $out"
