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

"$TARGET/overread" synth -o "$WORK/study" --slices "$SLICES" --size 512 --syntax "$SYNTAX" >/dev/null
study=$("$TARGET/overread" scan "$WORK/study" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["patients"][0]["studies"][0]["uid"])')
bytes=$(du -sb "$WORK/study" | cut -f1)
echo "# study: $SLICES slices of 512x512 in $SYNTAX, $((bytes / 1000000)) MB stored, $((SLICES * 512 * 512 * 2 / 1000000)) MB of pixels"

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
base="$(sed -n 's/^serving on //p' "$WORK/server.out")"
overread_url="$base/cases/$case_id/dicomweb/studies/$study"
token=$(curl -sf -X POST -H 'content-type: application/json' \
    -d '{"user":"rad","password":"bench-password"}' "$base/login" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

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
