#!/usr/bin/env bash
# WADO-RS retrieval of one study, Overread's case server vs Orthanc serving the same files in
# the same run: the workstation's own client (`overread fetch`, 8 requests in flight, each
# instance as stored) retrieves the whole study from each; prints MB/s and the time to the
# first instance on disk (what a viewer waits for before it can show an image).
#   benches/dicomweb.sh [SLICES] [RUNS]      (default: 500 slices of 512x512, 5 runs)
# Needs the Debian packages orthanc and orthanc-dicomweb.
set -euo pipefail
cd "$(dirname "$0")/.."
SLICES=${1:-500}
RUNS=${2:-5}
cargo build --release -q --bin overread -p overread
cargo build --release -q -p case-server --bin overread-server
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); $(Orthanc --version 2>/dev/null | head -1), dicomweb plugin $(dpkg-query -W -f='${Version}' orthanc-dicomweb)"

# The study: a synthetic chest CT written as ordinary single-frame files.
"$TARGET/overread" synth -o "$WORK/study" --slices "$SLICES" --size 512 >/dev/null
study=$("$TARGET/overread" scan "$WORK/study" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["patients"][0]["studies"][0]["uid"])')
bytes=$(du -sb "$WORK/study" | cut -f1)
echo "# study: $SLICES slices, $((bytes / 1000000)) MB"

# Overread's case server (SQLite, local object store), the study imported into a case.
S=("$TARGET/overread-server" --db "$WORK/cases.db" --store "$WORK/objects")
"${S[@]}" init >/dev/null
echo bench-password | "${S[@]}" user add rad --role radiologist --name "Dr Bench" --subspecialty chest >/dev/null
cat >"$WORK/case.json" <<EOF
{"patient":{"name":"PHANTOM^CHEST","id":"SYNTH0001","birth_date":"1970-01-01","sex":"O"},
 "referral":{"physician":{"name":"Dr R","fax":"+14165550100","institution":null},
             "clinical_question":"?","document_sha256":null},
 "subspecialty":"chest","priority":"routine"}
EOF
case_id=$("${S[@]}" case create "$WORK/case.json")
"${S[@]}" case assign "$case_id" --radiologist rad >/dev/null
"${S[@]}" import "$WORK/study" --case "$case_id" >/dev/null
"${S[@]}" serve --insecure-http --listen 127.0.0.1:0 --fax-dir "$WORK/fax" >"$WORK/server.out" 2>"$WORK/server.err" &
for _ in $(seq 100); do grep -q "serving on" "$WORK/server.out" && break; sleep 0.05; done
overread_url="$(sed -n 's/^serving on //p' "$WORK/server.out")/cases/$case_id/dicomweb/studies/$study"

# Orthanc with its DICOMweb plugin, the same files uploaded by its REST API.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/orthanc.json" <<EOF
{"Name":"bench","StorageDirectory":"$WORK/orthanc","IndexDirectory":"$WORK/orthanc",
 "HttpPort":$port,"DicomServerEnabled":false,"RemoteAccessAllowed":false,
 "AuthenticationEnabled":false,"Plugins":["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
 "DicomWeb":{"Enable":true,"Root":"/dicom-web/"}}
EOF
Orthanc "$WORK/orthanc.json" >/dev/null 2>&1 &
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/system" >/dev/null && break; sleep 0.05; done
for f in "$WORK"/study/*; do curl -sf -X POST --data-binary @"$f" "http://127.0.0.1:$port/instances" >/dev/null; done
orthanc_url="http://127.0.0.1:$port/dicom-web/studies/$study"

for run in $(seq "$RUNS"); do
    for peer in overread orthanc; do
        if [ $peer = overread ]; then
            url=$overread_url; login=(OVERREAD_USER=rad OVERREAD_PASSWORD=bench-password)
        else
            url=$orthanc_url; login=()
        fi
        rm -rf "$WORK/fetched"
        result=$(env "${login[@]}" "$TARGET/overread" fetch "$url" -o "$WORK/fetched" --json \
            | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({k:d[k] for k in ("instances","bytes","first_instance_secs","total_secs","megabytes_per_sec")}))')
        echo "{\"server\":\"$peer\",\"run\":$run,${result#\{}"
    done
done
