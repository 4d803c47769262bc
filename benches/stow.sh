#!/usr/bin/env bash
# STOW-RS upload of one study to Overread's case server: wall time and the server's peak
# resident memory (VmHWM) for one multipart/related body of the whole study, sent by curl.
#   benches/stow.sh [SLICES]      (default: 400 slices of 512x512, about 210 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
SLICES=${1:-400}
cargo build --release -q --bin overread -p overread
cargo build --release -q -p case-server --bin overread-server
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r)"

"$TARGET/overread" synth -o "$WORK/study" --slices "$SLICES" --size 512 >/dev/null
# The body: every file a part.
python3 - "$WORK/study" "$WORK/body" <<'PY'
import os, sys
folder, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as f:
    for name in sorted(os.listdir(folder)):
        f.write(b"--BOUNDARY\r\nContent-Type: application/dicom\r\n\r\n")
        with open(os.path.join(folder, name), "rb") as part:
            f.write(part.read())
        f.write(b"\r\n")
    f.write(b"--BOUNDARY--\r\n")
PY
bytes=$(stat -c %s "$WORK/body")
echo "# body: $SLICES parts, $((bytes / 1000000)) MB"

# The case server with a case to upload into (benches/servers.sh).
source benches/servers.sh
new_case coord coordinator
serve --no-delivery --max-upload-mib 4096
pid=$server_pid
token=$(token_of coord)
before=$(grep VmHWM "/proc/$pid/status" | awk '{print $2}')
start=$(date +%s.%N)
status=$(curl -s -o "$WORK/answer.json" -w '%{http_code}' -X POST \
    "$base/cases/$case_id/dicomweb/studies" -H "authorization: Bearer $token" \
    -H 'content-type: multipart/related; type="application/dicom"; boundary=BOUNDARY' \
    --data-binary @"$WORK/body")
end=$(date +%s.%N)
after=$(grep VmHWM "/proc/$pid/status" | awk '{print $2}')
echo "status $status; $(python3 -c "print(f'{$end - $start:.2f}')") s;" \
    "peak resident $((before / 1024)) MiB before the upload, $((after / 1024)) MiB after" \
    "($(python3 -c "print(f'{$after * 1024 / $bytes:.2f}')") x the body)"
