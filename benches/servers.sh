# Shared by the server benchmarks (sourced, not run): the case server and Orthanc started on
# loopback for one run. Needs $TARGET (the release binaries) and $WORK (a scratch folder the
# caller removes); jobs started here end with the caller's `kill $(jobs -p)`.

# A case (a synthetic chest patient) in a fresh case server database, with USER (ROLE) able
# to sign in with the password "bench-password"; sets S (the server command) and case_id.
#   new_case USER ROLE
new_case() {
    S=("$TARGET/overread-server" --db "$WORK/cases.db" --store "$WORK/objects")
    "${S[@]}" init >/dev/null
    local extra=()
    [ "$2" = radiologist ] && extra=(--subspecialty chest)
    echo bench-password | "${S[@]}" user add "$1" --role "$2" --name "Bench $1" "${extra[@]}" >/dev/null
    cat >"$WORK/case.json" <<EOF
{"patient":{"name":"PHANTOM^CHEST","id":"SYNTH0001","birth_date":"1970-01-01","sex":"O"},
 "referral":{"physician":{"name":"Dr R","fax":"+14165550100","institution":null},
             "clinical_question":"?","document_sha256":null},
 "subspecialty":"chest","priority":"routine"}
EOF
    case_id=$("${S[@]}" case create "$WORK/case.json")
}

# The case server serving on a free loopback port over plain HTTP with ARGS (a delivery
# flag is required: --fax-dir or --no-delivery); sets base (its URL) and server_pid.
#   serve ARGS...
serve() {
    "${S[@]}" serve --insecure-http --listen 127.0.0.1:0 "$@" >"$WORK/server.out" 2>"$WORK/server.err" &
    server_pid=$!
    for _ in $(seq 100); do grep -q "serving on" "$WORK/server.out" && break; sleep 0.05; done
    base=$(sed -n 's/^serving on //p' "$WORK/server.out")
}

# A login token of USER on the server at $base.
#   token_of USER
token_of() {
    curl -sf -X POST -H 'content-type: application/json' \
        -d "{\"user\":\"$1\",\"password\":\"bench-password\"}" "$base/login" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# Orthanc with its DICOMweb plugin on a free loopback port, every file of FOLDER uploaded by
# its REST API; sets orthanc (its URL).
#   orthanc_with FOLDER
orthanc_with() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$WORK/orthanc.json" <<EOF
{"Name":"bench","StorageDirectory":"$WORK/orthanc","IndexDirectory":"$WORK/orthanc",
 "HttpPort":$port,"DicomServerEnabled":false,"RemoteAccessAllowed":false,
 "AuthenticationEnabled":false,"Plugins":["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
 "DicomWeb":{"Enable":true,"Root":"/dicom-web/"}}
EOF
    Orthanc "$WORK/orthanc.json" >/dev/null 2>&1 &
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/system" >/dev/null && break; sleep 0.05; done
    for f in "$1"/*; do curl -sf -X POST --data-binary @"$f" "http://127.0.0.1:$port/instances" >/dev/null; done
    orthanc="http://127.0.0.1:$port/dicom-web"
}

# A synthetic chest CT of $SLICES slices of 512x512 (SYNTH ARGS added to `overread synth`: a
# syntax, say) written to $WORK/study, imported into a case assigned to "rad" on a started case
# server (fax folder $WORK/fax), and uploaded to Orthanc; sets study (its UID), bytes (as
# stored), overread_url and orthanc_url (the study on each).
#   study_on_both [SYNTH ARGS...]
study_on_both() {
    "$TARGET/overread" synth -o "$WORK/study" --slices "$SLICES" --size 512 "$@" >/dev/null
    study=$("$TARGET/overread" scan "$WORK/study" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["patients"][0]["studies"][0]["uid"])')
    bytes=$(du -sb "$WORK/study" | cut -f1)
    new_case rad radiologist
    "${S[@]}" case assign "$case_id" --radiologist rad >/dev/null
    "${S[@]}" import "$WORK/study" --case "$case_id" >/dev/null
    serve --fax-dir "$WORK/fax"
    overread_url="$base/cases/$case_id/dicomweb/studies/$study"
    orthanc_with "$WORK/study"
    orthanc_url="$orthanc/studies/$study"
}
