#!/usr/bin/env bash
# Time Overread against peer tools on the same synthetic CT series, in one run, on this machine.
#
#   benches/peers.sh [SLICES]        (default 1000: 512x512x1000, ~0.5 GB per variant)
#
# Variants: uncompressed (explicit VR LE, written by `overread synth`), then transcoded by
# independent tools: JPEG lossless SV1 (dcmtk dcmcjpeg +e1), JPEG-LS lossless (dcmtk dcmcjpls),
# JPEG 2000 lossless (gdcmconv --j2k). Peers: dcm2niix (Debian), GDCM (python-gdcm), pydicom +
# numpy. Each timing is the median of RUNS runs of the whole command (process start to exit),
# with its peak RSS. Results go to stdout as a Markdown table.
#
# Needs: dcmtk, dcm2niix, libgdcm-tools, time (apt); python-gdcm, pydicom, numpy (pip).
set -euo pipefail
cd "$(dirname "$0")/.."
SLICES="${1:-1000}"
RUNS="${RUNS:-3}"
WORK="${BENCH_DIR:-/var/tmp/overread-bench}/n$SLICES"
BIN="${CARGO_TARGET_DIR:-target}/release/overread"
mkdir -p "$WORK"
cargo build --release --quiet
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-}"

series() { echo "$WORK/$1"; }
if [ ! -d "$(series uncompressed)" ]; then
  "$BIN" synth -o "$(series uncompressed)" --slices "$SLICES" --noise-hu 10 >/dev/null
fi
transcode() { # name, command template with IN OUT
  local name=$1; shift
  local out; out=$(series "$name")
  [ -d "$out" ] && return 0
  mkdir -p "$out"
  for f in "$(series uncompressed)"/*.dcm; do "$@" "$f" "$out/$(basename "$f")" >/dev/null 2>&1; done
}
transcode jpeg_lossless dcmcjpeg +e1
transcode jpegls_lossless dcmcjpls
transcode j2k_lossless gdcmconv --j2k

# median wall seconds and max RSS (MB) of a command over RUNS runs
measure() {
  local times=() rss=0
  for _ in $(seq "$RUNS"); do
    sync
    local out
    if ! /usr/bin/time -o "$WORK/time.txt" -f "%e %M" "$@" >/dev/null 2>&1; then
      echo "failed 0"
      return
    fi
    out=$(tail -1 "$WORK/time.txt")
    times+=("${out% *}")
    local r=${out#* }
    [ "$r" -gt "$rss" ] && rss=$r
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  echo "$median $((rss / 1024))"
}

PYDICOM='import sys,glob,numpy as np,pydicom
files=sorted(glob.glob(sys.argv[1]+"/*.dcm"))
ds=[pydicom.dcmread(f) for f in files]
ds.sort(key=lambda d: float(d.ImagePositionPatient[2]))
vol=np.stack([d.pixel_array for d in ds])
print(vol.shape, int(vol.sum()) % 97)'
GDCM='import sys,glob,gdcm
n=0
for f in sorted(glob.glob(sys.argv[1]+"/*.dcm")):
    r=gdcm.ImageReader(); r.SetFileName(f)
    assert r.Read(), f
    n+=len(r.GetImage().GetBuffer())
print(n)'

voxels=$((512 * 512 * SLICES))
echo "# $SLICES slices 512x512, $(nproc) cores, $(date -u +%F)"
echo
echo "| series | tool | wall s (median of $RUNS) | peak RSS MiB | RSS bytes/voxel | vs overread |"
echo "|---|---|---|---|---|---|"
for variant in ${VARIANTS:-uncompressed jpeg_lossless jpegls_lossless j2k_lossless}; do
  dir=$(series "$variant")
  read -r ours ours_rss <<<"$(measure "$BIN" load "$dir" --json)"
  row() { # tool, seconds, rss
    if [ "$2" = failed ]; then
      echo "| $variant | $1 | failed (cannot read this syntax) | | | |"
      return
    fi
    local ratio; ratio=$(python3 -c "print(f'{$2/$ours:.2f}x')")
    local per; per=$(python3 -c "print(f'{$3*1048576/$voxels:.2f}')")
    echo "| $variant | $1 | $2 | $3 | $per | $ratio |"
  }
  row overread "$ours" "$ours_rss"
  rm -rf "$WORK/nii" && mkdir -p "$WORK/nii"
  read -r t r <<<"$(measure dcm2niix -z n -b n -o "$WORK/nii" "$dir")"
  # dcm2niix exits 0 even when it cannot decode a syntax: check that it wrote the volume.
  written=$(find "$WORK/nii" -name '*.nii' -size +"$((voxels * 2 / 1024))"k | wc -l)
  [ "$written" -ge 1 ] || t=failed
  row dcm2niix "$t" "$r"
  read -r t r <<<"$(measure python3 -c "$GDCM" "$dir")"; row "GDCM (python-gdcm)" "$t" "$r"
  if [ "$variant" = uncompressed ]; then
    read -r t r <<<"$(measure python3 -c "$PYDICOM" "$dir")"; row "pydicom+numpy" "$t" "$r"
  fi
done
echo
json=$("$BIN" load "$(series uncompressed)" --json)
python3 - "$json" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
t = j["timings"]
print(f"overread, uncompressed: scan {t['scan_secs']*1000:.0f} ms, first slice {t['first_slice_secs']*1000:.1f} ms after the load starts, "
      f"load {t['load_secs']:.2f} s, peak RSS {j['peak_rss_bytes']/2**20:.0f} MB")
PY
