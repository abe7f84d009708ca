#!/usr/bin/env bash
# bench/slowloris_bench.sh - latency of normal requests while slow clients
# (slowloris) hold connections to the admin listener (R22).
#
# A release build of wharf serves a fresh data dir on free ports (log level
# warning, every other setting at its default: request_timeout_ms 30000,
# max_conns_per_address 16, max_connections 1024, 32 HTTP threads). Then,
# with tests/e2e/slowloris.py:
#
#   1. baseline: BENCH_SLOW_REQUESTS sequential GET /healthz, each on a new
#      TLS connection from 127.0.0.1 (a 5 s client timeout each);
#   2. load: BENCH_SLOW_CONNS connections from BENCH_SLOW_SOURCES loopback
#      addresses (127.0.0.2 ...), each sending its request head one byte a
#      second and reconnecting whenever the server cuts it;
#   3. the same normal requests again (for BENCH_SLOW_SECONDS at least),
#      beside the load.
# Prints p50/p90/p99/max of both runs; the run is invalid (exit 1) if a
# normal request failed or if fewer than all slow connections were open.
# The server is stopped at the end, whatever happens. Raw output in
# bench/out/<UTC time>-slowloris/.
#
# Environment: BENCH_SLOW_REQUESTS (500), BENCH_SLOW_SECONDS (20),
# BENCH_SLOW_CONNS (500), BENCH_SLOW_SOURCES (50), BENCH_SLOW_TIMEOUT_MS
# (request_timeout_ms; unset: the default 30000; e.g. 5000 makes every slow
# client get cut with 408 and reconnect several times during the run),
# WHARF_BENCH_BIN (the binary to measure; default build/release/wharf,
# built first).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
NREQ=${BENCH_SLOW_REQUESTS:-500}
SECS=${BENCH_SLOW_SECONDS:-20}
CONNS=${BENCH_SLOW_CONNS:-500}
SOURCES=${BENCH_SLOW_SOURCES:-50}
WHARF=${WHARF_BENCH_BIN:-$ROOT/build/release/wharf}
PY=/usr/bin/python3
TOOL=$ROOT/tests/e2e/slowloris.py

[ -n "${WHARF_BENCH_BIN:-}" ] || make --no-print-directory -s -j2 release

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/$STAMP-slowloris
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVE_PID=""
LOAD_PID=""
cleanup() {
    local rc=$?
    for p in "$LOAD_PID" "$SERVE_PID"; do
        if [ -n "$p" ]; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "slowloris_bench: nothing listens on port $1" >&2
    exit 1
}

ADMIN=$(free_port)
PARTNER=$(free_port)
DATA=$WORK/data
"$WHARF" init --data "$DATA" --admin-listen "127.0.0.1:$ADMIN" \
    --partner-listen "127.0.0.1:$PARTNER" >/dev/null
echo "log_level = warning" >>"$DATA/wharf.conf"
if [ -n "${BENCH_SLOW_TIMEOUT_MS:-}" ]; then
    echo "request_timeout_ms = $BENCH_SLOW_TIMEOUT_MS" >>"$DATA/wharf.conf"
fi

"$WHARF" serve --data "$DATA" >"$OUT/wharf-serve.log" 2>&1 &
SERVE_PID=$!
wait_port "$ADMIN"

{
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc $(nproc)"
    echo "cpu $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "openssl $(openssl version 2>/dev/null || echo -)"
    echo "wharf $("$WHARF" version 2>/dev/null | head -1)"
    echo "request_timeout_ms ${BENCH_SLOW_TIMEOUT_MS:-default}"
    echo "command $PY tests/e2e/slowloris.py load --port PORT --sources $SOURCES --conns $CONNS"
    echo "command $PY tests/e2e/slowloris.py measure --port PORT --requests $NREQ --timeout 5 [--min-seconds $SECS]"
} >"$OUT/machine.txt"

"$PY" "$TOOL" measure --port "$ADMIN" --requests "$NREQ" --timeout 5 \
    >"$OUT/baseline.json"

"$PY" "$TOOL" load --port "$ADMIN" --sources "$SOURCES" --conns "$CONNS" \
    --interval 1 --seconds 3600 >"$OUT/load.txt" &
LOAD_PID=$!
for _ in $(seq 1 700); do
    grep -q '^ready' "$OUT/load.txt" 2>/dev/null && break
    sleep 0.1
done
READY=$(awk '/^ready/ { print $2 }' "$OUT/load.txt")
"$PY" "$TOOL" measure --port "$ADMIN" --requests "$NREQ" --timeout 5 \
    --min-seconds "$SECS" >"$OUT/under_load.json"
kill -TERM "$LOAD_PID"
wait "$LOAD_PID" || true
LOAD_PID=""

show() {    # $1 label, $2 json file
    "$PY" -c 'import json,sys
r = json.load(open(sys.argv[2]))
print("%-34s %6d/%-6d %8s %8s %8s %8s" % (sys.argv[1], r["answered"],
      r["answered"] + r["failed"], r.get("p50_ms", "-"), r.get("p90_ms", "-"),
      r.get("p99_ms", "-"), r.get("max_ms", "-")))' "$1" "$2"
}
printf '%-34s %13s %8s %8s %8s %8s\n' "normal GET /healthz (new conn.)" \
    "answered" "p50 ms" "p90 ms" "p99 ms" "max ms"
show "alone" "$OUT/baseline.json" | tee "$OUT/results.txt"
show "beside $CONNS slow conns ($SOURCES addr.)" "$OUT/under_load.json" \
    | tee -a "$OUT/results.txt"
echo "slow load: $(tail -1 "$OUT/load.txt")" | tee -a "$OUT/results.txt"

kill "$SERVE_PID"
wait "$SERVE_PID" || { echo "slowloris_bench: serve exited $? on SIGTERM" >&2; SERVE_PID=""; exit 1; }
SERVE_PID=""
FAILED=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$OUT/under_load.json")
if [ "${READY:-0}" != "$CONNS" ] || [ "$FAILED" != 0 ]; then
    echo "slowloris_bench: invalid run: $READY of $CONNS slow connections open, $FAILED normal requests failed" >&2
    exit 1
fi
echo "raw output: $OUT"
