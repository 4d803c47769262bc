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

# The study, a synthetic chest CT of ordinary single-frame files, on Overread's case server
# (SQLite, local object store, imported into a case) and on Orthanc with its DICOMweb plugin
# (the same files uploaded by its REST API): benches/servers.sh.
source benches/servers.sh
study_on_both
echo "# study: $SLICES slices, $((bytes / 1000000)) MB"

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
