#!/usr/bin/env bash
# backlog_bench.sh - how fast `wharf serve` drains a backlog: the queue a
# partner's outage leaves behind (docs/performance.md, "A backlog
# drains at the rate of a short queue").
#
#   bench/backlog_bench.sh            # or `bench/run.sh backlog`
#
# Steps: a fresh data dir with a file source "inbox" linked to a file
# destination "outbox"; BACKLOG_MESSAGES messages of 1 KiB taken in
# through the durable intake (bench/backup_fill; serve not running), all
# queued for "outbox"; then `wharf serve` started and the clock run from
# its start until every message is a file in outbox's folder (counted in
# this shell every 0.2 s). Prints the drain rate and serve's CPU time per
# message (user + system, from /proc), and leaves them in
# bench/out/backlog-<UTC time>/results.txt. Nothing is asserted: a
# benchmark, not a test.
#
# Environment: BACKLOG_MESSAGES (50000), BENCH_WHARF (build/release/wharf:
# another build to compare), BACKLOG_STORE (a postgresql:// URL of an
# empty database: the store there, payloads in the bench's folder),
# BACKLOG_CONF: lines appended to wharf.conf, for diagnostics (e.g.
# 'large_workers = 0'), BENCH_KEEP=1 keeps the data dir. Needs about
# 1 GiB free per 100,000 messages.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/data_dir.sh
N=${BACKLOG_MESSAGES:-50000}
WHARF=${BENCH_WHARF:-$ROOT/build/release/wharf}
FILL=$ROOT/build/release/bench/backup_fill
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/backlog-$STAMP
RES=$OUT/results.txt

die() { echo "backlog_bench: $*" >&2; exit 1; }
note() { echo "backlog_bench: $*" >&2; }
put() { echo "$1 $2" | tee -a "$RES"; }
now() { date +%s.%N; }

make --no-print-directory -s -j2 build/release/bench/backup_fill
[ -n "${BENCH_WHARF:-}" ] || make --no-print-directory -s -j2 build/release/wharf
[ -x "$WHARF" ] || die "$WHARF is not an executable"
mkdir -p "$OUT/files/in" "$OUT/files/out"
: >"$RES"
cleanup() {
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$OUT/data" "$OUT/files" "$OUT/payloads"
}
trap cleanup EXIT

put messages "$N"
put build "$WHARF"
put commit "$(git rev-parse --short HEAD 2>/dev/null || echo -)"
init_store=()
if [ -n "${BACKLOG_STORE:-}" ]; then
    init_store=(--store "$BACKLOG_STORE" --payload-dir "$OUT/payloads")
fi
put store "$([ -n "${BACKLOG_STORE:-}" ] && echo postgresql || echo sqlite)"
file_flow_data "$WHARF" "$OUT" "${init_store[@]}"
[ -z "${BACKLOG_CONF:-}" ] || printf '%b\n' "$BACKLOG_CONF" >>"$OUT/data/wharf.conf"
put conf "${BACKLOG_CONF:--}"

note "queueing $N messages of 1 KiB for outbox (backup_fill)"
"$FILL" "$OUT/data" "$N" $(((N + 1023) / 1024)) inbox outbox >>"$OUT/fill.txt"
sync; sleep 5

note "serve: draining the backlog"
t0=$(now)
"$WHARF" serve --data "$OUT/data" --quiet >"$OUT/serve.out" 2>&1 &
SERVE_PID=$!
count() { find "$OUT/files/out" -maxdepth 1 -type f ! -name '.*' | wc -l; }
while :; do
    kill -0 "$SERVE_PID" 2>/dev/null || die "serve stopped: $(tail -3 "$OUT/serve.out")"
    [ "$(count)" -lt "$N" ] || break
    sleep 0.2
done
t1=$(now)
# serve's CPU: utime + stime of the process and its threads (clock ticks)
read -r ut st < <(awk '{ print $14, $15 }' "/proc/$SERVE_PID/stat")
hz=$(getconf CLK_TCK)
kill "$SERVE_PID"
wait "$SERVE_PID" || true
SERVE_PID=
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
put drain_seconds "$secs"
put drain_msgs_per_s "$(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')"
put serve_cpu_ms_per_msg "$(awk -v u="$ut" -v s="$st" -v hz="$hz" -v n="$N" \
    'BEGIN { printf "%.3f", (u + s) * 1000 / hz / n }')"
note "raw results: $RES"
