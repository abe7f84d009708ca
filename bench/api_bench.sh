#!/usr/bin/env bash
# bench/api_bench.sh - REST API requests per second for an authenticated GET
# with an API token (issue 3, M8/R4), measured with Debian's wrk over HTTPS.
#
# A release build of wharf serves a fresh data dir on free ports (log level
# warning, connections per address raised to CONNS+16 so that wrk's are not
# refused, every other setting at its default, e.g. 32 HTTP threads);
# BENCH_API_MESSAGES files (default 200) are sent through
# a file->file flow first so the listed page is a real one. Then, with an
# operator token:
#
#   wrk -t2 -c16 -d10s -H "Authorization: Bearer TOKEN" \
#       https://127.0.0.1:PORT/api/v1/messages?limit=10
#
# wrk keeps its 16 connections open (keep-alive), so this measures request
# handling (token check: SHA-256 + one SQLite look-up; the permission check;
# the list query; JSON), not TLS handshakes (see bench/tls_bench.sh).
# The server is stopped at the end, whatever happens. Raw output in
# bench/out/<UTC time>-api/.
#
# Environment: BENCH_API_SECONDS (10), BENCH_API_CONNECTIONS (16),
# BENCH_API_THREADS (2), BENCH_API_MESSAGES (200).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${BENCH_API_SECONDS:-10}
CONNS=${BENCH_API_CONNECTIONS:-16}
THREADS=${BENCH_API_THREADS:-2}
NMSG=${BENCH_API_MESSAGES:-200}
WHARF=$ROOT/build/release/wharf
PY=/usr/bin/python3

command -v wrk >/dev/null || { echo "api_bench: wrk is needed (Debian package wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "api_bench: curl is needed" >&2; exit 1; }
make --no-print-directory -s -j2 release

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/$STAMP-api
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVE_PID=""
cleanup() {
    local rc=$?
    if [ -n "$SERVE_PID" ]; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
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
    echo "api_bench: nothing listens on port $1" >&2
    exit 1
}

ADMIN=$(free_port)
PARTNER=$(free_port)
DATA=$WORK/data
"$WHARF" init --data "$DATA" --admin-listen "127.0.0.1:$ADMIN" \
    --partner-listen "127.0.0.1:$PARTNER" >/dev/null
# The default of 16 connections per address equals wrk's -c16: the slot of
# the sample request below (curl) may not be free yet when wrk connects, and
# one wrk connection would be refused. Room for both, nothing else changed.
{
    # run as root (a bench machine): serve keeps root instead of refusing (R22)
    [ "$(id -u)" -ne 0 ] || echo "allow_root = yes"
    echo "allowed_paths = $WORK"
    echo "log_level = warning"
    echo "max_conns_per_address = $((CONNS + 16))"
} >>"$DATA/wharf.conf"
mkdir -p "$WORK/in" "$WORK/out" "$WORK/files"
cat >"$WORK/flow.json" <<EOF
{"connectors": [
  {"name": "inbox", "type": "file", "config": {"receive_dir": "$WORK/in"}},
  {"name": "outbox", "type": "file", "config": {"send_dir": "$WORK/out"}}],
 "links": [["inbox", "outbox"]]}
EOF
"$WHARF" flow import --data "$DATA" "$WORK/flow.json" >/dev/null
for i in $(seq 1 "$NMSG"); do
    printf 'UNB+UNOC:3+SENDER+RECEIVER+%06d'"'"'\n' "$i" >"$WORK/files/po-$i.edi"
    "$WHARF" send --data "$DATA" inbox "$WORK/files/po-$i.edi" >/dev/null
done
TOKEN=$("$WHARF" token create --data "$DATA" --role operator --name bench \
    --owner admin --days 1 2>/dev/null)
case $TOKEN in
    wharf_*) ;;
    *) echo "api_bench: no token from wharf token create" >&2; exit 1 ;;
esac

"$WHARF" serve --data "$DATA" >"$OUT/wharf-serve.log" 2>&1 &
SERVE_PID=$!
wait_port "$ADMIN"
URL="https://127.0.0.1:$ADMIN/api/v1/messages?limit=10"

# One request by hand: it must be a 200 with ten messages, or the figure
# would measure error replies.
curl -ks -o "$OUT/sample.json" -w '%{http_code}' \
    -H "Authorization: Bearer $TOKEN" "$URL" >"$OUT/sample-status.txt"
STATUS=$(cat "$OUT/sample-status.txt")
COUNT=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["messages"]))' "$OUT/sample.json" 2>/dev/null || echo 0)
if [ "$STATUS" != 200 ] || [ "$COUNT" != 10 ]; then
    echo "api_bench: GET $URL gave $STATUS with $COUNT messages" >&2
    exit 1
fi

{
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc $(nproc)"
    echo "cpu $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "openssl $(openssl version 2>/dev/null || echo -)"
    echo "wrk $(wrk -v 2>&1 | head -1)"
    echo "wharf $("$WHARF" version 2>/dev/null | head -1)"
    echo "messages $NMSG"
    echo "command wrk -t$THREADS -c$CONNS -d${SECS}s --latency -H \"Authorization: Bearer TOKEN\" $URL"
} >"$OUT/machine.txt"

wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency \
    -H "Authorization: Bearer $TOKEN" "$URL" >"$OUT/wrk.txt" 2>&1
sed "s/$TOKEN/TOKEN/g" "$OUT/wrk.txt"

# Every reply must have been a 200 (wrk counts others as "Non-2xx").
if grep -qE "Non-2xx|Socket errors" "$OUT/wrk.txt"; then
    echo "api_bench: wrk saw errors (see above); the figure is not valid" >&2
    exit 1
fi
RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$OUT/wrk.txt")
LAT=$(awk '/^    Latency/ { print $2; exit }' "$OUT/wrk.txt")
P50=$(awk '/^ +50%/ { print $2 }' "$OUT/wrk.txt")
P99=$(awk '/^ +99%/ { print $2 }' "$OUT/wrk.txt")
{
    echo "requests_per_s $RPS"
    echo "latency_avg $LAT"
    echo "latency_p50 $P50"
    echo "latency_p99 $P99"
} >"$OUT/results.txt"
printf '%-44s %10s\n' "API GET /messages?limit=10, requests/s" "$RPS"
printf '%-44s %10s\n' "latency avg" "$LAT"
printf '%-44s %10s\n' "latency p50" "$P50"
printf '%-44s %10s\n' "latency p99" "$P99"

kill "$SERVE_PID"
wait "$SERVE_PID" || { echo "api_bench: serve exited $? on SIGTERM" >&2; SERVE_PID=""; exit 1; }
SERVE_PID=""
echo "raw output: $OUT"
