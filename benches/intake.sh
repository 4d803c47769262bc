#!/usr/bin/env bash
# Report intake under load: the real `overread-server` (release) on loopback, a bounded
# closed-loop load generator (crates/case-server/examples/intake_load.rs) in a second process,
# 1, 16 and 64 concurrent clients, on SQLite and on PostgreSQL (a private cluster started by
# .ci/postgres). Each run gets a fresh database. Every client connects before the clock starts
# (its first request is reported apart). Prints one JSON line per run.
#   benches/intake.sh [BACKENDS]     (default: "sqlite postgres")
set -euo pipefail
cd "$(dirname "$0")/.."
BACKENDS=${1:-sqlite postgres}
cargo build --release -q -p case-server --bin overread-server --example intake_load
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r)"
for backend in $BACKENDS; do
    if [ "$backend" = postgres ]; then
        eval "$(bash .ci/postgres)"
        psql "$DATABASE_URL" -Atc "SHOW server_version; SHOW synchronous_commit; SHOW fsync" | tr '\n' ' ' | sed 's/^/# postgres version, synchronous_commit, fsync: /'
        echo
    fi
    for clients in 1 16 64; do
        case $clients in 1) reports=300 ;; 16) reports=1000 ;; *) reports=2000 ;; esac
        if [ "$backend" = postgres ]; then
            name=overread_bench_$$_$clients
            psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
            db="${DATABASE_URL%/*}/$name"
        else
            db="$WORK/intake-$clients.db"
        fi
        "$TARGET/overread-server" --db "$db" --store "$WORK/objects" init >/dev/null
        "$TARGET/overread-server" --db "$db" --store "$WORK/objects" serve --insecure-http --listen 127.0.0.1:0 --fax-dir "$WORK/fax" >"$WORK/server.out" 2>"$WORK/server.err" &
        server=$!
        for _ in $(seq 100); do grep -q "serving on" "$WORK/server.out" && break; sleep 0.05; done
        url=$(sed -n 's/^serving on //p' "$WORK/server.out")
        result=$("$TARGET/examples/intake_load" --db "$db" --store "$WORK/objects" --server "$url" --clients "$clients" --reports "$reports")
        kill "$server"; wait "$server" 2>/dev/null || true
        echo "{\"backend\":\"$backend\",${result#\{}"
        if [ "$backend" = postgres ]; then
            psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)"
        fi
    done
done
