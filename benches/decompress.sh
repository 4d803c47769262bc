#!/usr/bin/env bash
# WADO-RS retrieval of a compressed study in the default transfer syntax (Explicit VR Little
# Endian, PS3.18 8.7.3.5.2), so decompressed by the server, Overread's case server vs Orthanc
# serving the same files in the same run; and as stored (`transfer-syntax=*`) for scale.
# One request for the whole study each (curl, the body written to disk); prints seconds, MB
# and the transfer syntax of the parts that came back.
#   benches/decompress.sh [SLICES] [RUNS] [SYNTAX]   (default: 200 slices of 512x512, 3 runs,
#                                                    jpeg-ls: JPEG-LS lossless by CharLS)
# Needs the Debian packages orthanc and orthanc-dicomweb.
set -euo pipefail
cd "$(dirname "$0")/.."
SLICES=${1:-200}
RUNS=${2:-3}
SYNTAX=${3:-jpeg-ls}
cargo build --release -q --bin overread -p overread
cargo build --release -q -p case-server --bin overread-server
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); $(Orthanc --version 2>/dev/null | head -1), dicomweb plugin $(dpkg-query -W -f='${Version}' orthanc-dicomweb)"

# The study on the case server and on Orthanc (benches/servers.sh).
source benches/servers.sh
study_on_both --syntax "$SYNTAX"
token=$(token_of rad)
echo "# study: $SLICES slices of 512x512 in $SYNTAX, $((bytes / 1000000)) MB stored, $((SLICES * 512 * 512 * 2 / 1000000)) MB of pixels"

for run in $(seq "$RUNS"); do
    for accept in 'multipart/related; type="application/dicom"' \
                  'multipart/related; type="application/dicom"; transfer-syntax=*'; do
        for peer in overread orthanc; do
            if [ $peer = overread ]; then
                url=$overread_url; auth=(-H "authorization: Bearer $token")
            else
                url=$orthanc_url; auth=()
            fi
            out=$(curl -s "${auth[@]}" -H "accept: $accept" -o "$WORK/body" \
                -w '%{time_total} %{size_download} %{http_code}' "$url")
            # What each part says it is: its transfer-syntax parameter, or, where the part
            # names none, its File Meta group's Transfer Syntax UID (0002,0010).
            syntaxes=$(python3 - "$WORK/body" <<'PY'
import collections, re, sys
body = open(sys.argv[1], 'rb').read()
named = re.findall(rb'(?i)transfer-syntax=([0-9.*]+)', body)
if not named:
    named = [m.rstrip(b'\0 ') for m in re.findall(rb'\x02\x00\x10\x00UI..([0-9.]+\x00?)', body, re.S)]
print(', '.join(f'{k.decode()} x{v}' for k, v in collections.Counter(named).items()))
PY
)
            read -r secs size code <<<"$out"
            [ "$code" = 200 ] || { echo "{\"server\":\"$peer\",\"run\":$run,\"status\":$code,\"answer\":\"$(head -c 300 "$WORK/body" | tr -d '"\\\n')\"}"; continue; }
            python3 -c "import json,sys; print(json.dumps({'server':'$peer','run':$run,'accept':sys.argv[1],'secs':$secs,'megabytes':round($size/1e6,1),'parts':sys.argv[2]}))" "$accept" "$syntaxes"
        done
    done
done
