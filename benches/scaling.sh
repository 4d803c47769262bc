#!/usr/bin/env bash
# How loading scales with cores: `overread load --json --no-hash` on one synthetic CT series per
# transfer syntax, with the decoding pool limited to 1, 2, ... threads (RAYON_NUM_THREADS), up to
# the machine's cores. Series are written by `overread synth` itself (JPEG by libjpeg-turbo, J2K
# by OpenJPEG, JPEG-LS by CharLS), 10 HU noise so they compress like real CT.
#
#   benches/scaling.sh [SLICES]      (default 300: 512x512x300, 150 MB of voxels)
#
# Each figure is the load's own time (`timings.load_secs` in the JSON: decode into the volume,
# after the header scan), best of RUNS runs, page cache warm. Results go to stdout as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
SLICES="${1:-300}"
RUNS="${RUNS:-3}"
WORK="${BENCH_DIR:-/var/tmp/overread-bench}/scaling-n$SLICES"
BIN="${CARGO_TARGET_DIR:-target}/release/overread"
CORES=$(nproc)
cargo build --release --quiet --bin overread
mkdir -p "$WORK"

threads=()
t=1
while [ "$t" -le "$CORES" ]; do threads+=("$t"); t=$((t * 2)); done
[ "${threads[-1]}" -ne "$CORES" ] && threads+=("$CORES")

printf '| syntax | MB on disk |'
for t in "${threads[@]}"; do printf ' %s thread(s) s |' "$t"; done
printf ' speed-up at %s |\n|---|---|' "${threads[-1]}"
for _ in "${threads[@]}"; do printf -- '---|'; done
printf -- '---|\n'

for syntax in explicit-le rle jpeg-ls jpeg-lossless j2k-lossless; do
  dir="$WORK/$syntax"
  if [ ! -d "$dir" ]; then
    "$BIN" synth -o "$dir" --slices "$SLICES" --noise-hu 10 --syntax "$syntax" >/dev/null
  fi
  "$BIN" load "$dir" --json --no-hash >/dev/null # warm the page cache
  mb=$(du -sm "$dir" | cut -f1)
  printf '| %s | %s |' "$syntax" "$mb"
  first=""
  last=""
  for t in "${threads[@]}"; do
    best=""
    for _ in $(seq "$RUNS"); do
      s=$(RAYON_NUM_THREADS=$t "$BIN" load "$dir" --json --no-hash |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["load_secs"])')
      best=$(python3 -c "print(min(float('$s'), float('${best:-1e9}')))")
    done
    printf ' %.3f |' "$best"
    first=${first:-$best}
    last=$best
  done
  python3 -c "print(' %.2fx |' % ($first / $last))"
done
echo
echo "$(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
