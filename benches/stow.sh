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

S=("$TARGET/overread-server" --db "$WORK/cases.db" --store "$WORK/objects")
"${S[@]}" init >/dev/null
echo bench-password | "${S[@]}" user add coord --role coordinator --name "Coordinator" >/dev/null
cat >"$WORK/case.json" <<JSON
{"patient":{"name":"PHANTOM^CHEST","id":"SYNTH0001","birth_date":"1970-01-01","sex":"O"},
 "referral":{"physician":{"name":"Dr R","fax":"+14165550100","institution":null},
             "clinical_question":"?","document_sha256":null},
 "subspecialty":"chest","priority":"routine"}
JSON
case_id=$("${S[@]}" case create "$WORK/case.json")
"${S[@]}" serve --insecure-http --listen 127.0.0.1:0 --no-delivery --max-upload-mib 4096 \
    >"$WORK/server.out" 2>"$WORK/server.err" &
pid=$!
for _ in $(seq 100); do grep -q "serving on" "$WORK/server.out" && break; sleep 0.05; done
base=$(sed -n 's/^serving on //p' "$WORK/server.out")
token=$(curl -sf "$base/login" -H 'content-type: application/json' \
    -d '{"user":"coord","password":"bench-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
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
