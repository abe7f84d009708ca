#!/usr/bin/env bash
# bench/cluster_bench.sh - file -> file throughput of a cluster (R21): 1, 2
# and 3 Wharf nodes on one PostgreSQL 15, beside one node on SQLite, on
# this machine. Release build. Also `bench/run.sh cluster`. A few minutes.
# BENCH_CL_PAYLOADS=database: the PostgreSQL nodes keep their payloads in
# the database (payload_dir = database) instead of one shared folder.
# BENCH_CL_BYTES: the size of each file (4096); the MB/s column counts
# payload bytes delivered, rss-MiB the largest serve process's peak.
#
# PostgreSQL: scripts/pg-test.sh's throwaway server on 127.0.0.1 (fsync on,
# synchronous_commit on: every acknowledged message is on disk, as with
# SQLite's synchronous=FULL). For each run: a fresh database (or data dir),
# BENCH_CL_FILES (4000) files of 4 KiB staged, the nodes started, then the
# files renamed into one shared source folder that every node polls; the
# clock runs from the first rename until the destination folder holds every
# file and the source is empty (each file exactly once: checked). The CPU
# time of the Wharf processes (serve and its key process) and of the
# PostgreSQL server (every process of its user) over the run is read from
# /proc, per message.
#
# What bounds it here: 2 cores shared by the nodes, PostgreSQL and the
# bench; a 3-node figure on 2 cores measures contention, not scaling. The
# per-message CPU (Wharf, PostgreSQL) and commit count are what an estimate
# for nodes on their own machines starts from (docs/performance.md).
# Raw output in bench/out/<UTC time>-cluster/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${BENCH_CL_FILES:-4000}
NODES=${BENCH_CL_NODES:-1 2 3}
PAYLOADS=${BENCH_CL_PAYLOADS:-folder}
BYTES=${BENCH_CL_BYTES:-4096}
WHARF=$ROOT/build/release/wharf
PY=/usr/bin/python3
OUT=$ROOT/bench/out/$(date -u +%Y%m%dT%H%M%SZ)-cluster
WORK=$(mktemp -d /tmp/wharf-cluster.XXXXXX)
chmod 755 "$WORK"                   # the server's user enters
mkdir -p "$OUT"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    scripts/pg-test.sh stop "$WORK/pg" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "cluster_bench: $*" >&2; exit 1; }
make -s release >/dev/null || die "make release failed"
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# CPU seconds (user + system) of the given pids, children included
cpu_of() {
    "$PY" - "$@" <<'EOF'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in f[11:15])      # utime stime cutime cstime
    except OSError:
        pass
print(total / hz)
EOF
}
pg_pids() { pgrep -u postgres 2>/dev/null || pgrep -f "$WORK/pg" || true; }
# the serve processes and their children (each node's key process)
with_children() { for p in "$@"; do echo "$p"; pgrep -P "$p" || true; done; }

ADMIN=$(scripts/pg-test.sh start "$WORK/pg") || die "PostgreSQL did not start"
BASE=${ADMIN%/postgres}

# node_init DIR STORE PAYLOADS [KEYSTORE]
node_init() {
    local extra=()
    local pd=$3
    [ "$PAYLOADS" != database ] || pd=database
    [ "$2" = sqlite ] || extra+=(--store "$2" --payload-dir "$pd")
    [ -z "${4:-}" ] || extra+=(--keystore "$4")
    "$WHARF" init --data "$1" --admin-listen "127.0.0.1:$(free_port)" \
        --partner-listen "127.0.0.1:$(free_port)" --allowed-paths "$WORK" \
        "${extra[@]}" >>"$OUT/init.out" 2>&1 || die "init of $1 failed"
    printf 'log_level = warning\npoll_ms = 50\nlease_seconds = 10\n' >>"$1/wharf.conf"
    [ "$(id -u)" -ne 0 ] || echo "allow_root = yes" >>"$1/wharf.conf"
}

# run NAME STORE NODES: prints one result line
run() {
    local name=$1 store=$2 nodes=$3 R=$WORK/$1
    mkdir -p "$R/in" "$R/out" "$R/stage" "$R/payloads"
    node_init "$R/n1" "$store" "$R/payloads"
    for i in $(seq 2 "$nodes"); do
        node_init "$R/n$i" "$store" "$R/payloads" "$R/n1/keystore"
    done
    cat >"$R/flow.json" <<EOF
{"connectors": [
  {"name": "inbox", "type": "file", "config": {"receive_dir": "$R/in", "poll_ms": 50}},
  {"name": "outbox", "type": "file", "config": {"send_dir": "$R/out"}}],
 "links": [["inbox", "outbox"]]}
EOF
    "$WHARF" flow import --data "$R/n1" "$R/flow.json" >>"$OUT/import.out" 2>&1 || die "flow import failed"
    for i in $(seq 1 "$N"); do head -c "$BYTES" /dev/urandom >"$R/stage/f$i.edi"; done
    sync
    local pids=()
    for i in $(seq 1 "$nodes"); do
        "$WHARF" serve --data "$R/n$i" --quiet >"$OUT/serve-$name-$i.out" 2>&1 &
        pids+=($!)
        PIDS+=($!)
    done
    sleep 2
    local pg0 w0 t0 t1
    pg0=$(cpu_of $(pg_pids))
    w0=$(cpu_of $(with_children "${pids[@]}"))
    t0=$(date +%s.%N)
    find "$R/stage" -name '*.edi' -exec mv -t "$R/in/" {} +    # one mover
    until [ "$(ls "$R/out" | wc -l)" -ge "$N" ] && [ -z "$(ls "$R/in")" ]; do
        for p in "${pids[@]}"; do
            kill -0 "$p" 2>/dev/null || die "serve ended ($name): $(tail -3 "$OUT"/serve-"$name"-*.out)"
        done
        sleep 0.05
    done
    t1=$(date +%s.%N)
    local w1 pg1
    w1=$(cpu_of $(with_children "${pids[@]}"))
    pg1=$(cpu_of $(pg_pids))
    [ "$store" = sqlite ] && pg1=$pg0
    local rss=0 r
    for p in "${pids[@]}"; do
        r=$(awk '/^VmHWM/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        [ "${r:-0}" -le "$rss" ] || rss=$r
    done
    for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
    local msgs
    msgs=$("$WHARF" message list --data "$R/n1" --json --limit 1000000 |
           "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))')
    [ "$msgs" -eq "$N" ] || die "$name: $msgs messages for $N files"
    "$PY" - "$name" "$nodes" "$N" "$BYTES" "$rss" "$t0" "$t1" "$w0" "$w1" \
        "$pg0" "$pg1" <<'EOF'
import sys
name, nodes, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size, rss = int(sys.argv[4]), int(sys.argv[5])
t0, t1, w0, w1, p0, p1 = map(float, sys.argv[6:])
secs = t1 - t0
print(f"{name:<14} {nodes:>5d} {n / secs:10.1f} {(w1 - w0) / n * 1000:12.2f} "
      f"{(p1 - p0) / n * 1000:12.2f} {secs:8.1f} {n * size / secs / 1e6:8.1f}"
      f" {rss / 1024:7.0f}")
EOF
    rm -rf "$R"
}

{
    echo "Wharf cluster benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ): $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), load average $(cut -d' ' -f1 /proc/loadavg)"
    echo "command: BENCH_CL_FILES=$N BENCH_CL_NODES='$NODES' BENCH_CL_PAYLOADS=$PAYLOADS BENCH_CL_BYTES=$BYTES bench/cluster_bench.sh"
    echo "this disk now: $("$PY" bench/fsync_rate.py "$WORK" 2>/dev/null | grep -E '_per_s' | tr '\n' ' ')"
    printf '%-14s %5s %10s %12s %12s %8s %8s %7s\n' store nodes msgs/s \
        wharf-ms/msg pg-ms/msg seconds MB/s rss-MiB
} | tee "$OUT/results.txt"
run sqlite sqlite 1 | tee -a "$OUT/results.txt"
k=0
for n in $NODES; do
    k=$((k + 1))
    "$PY" - "$ADMIN" "cl$k" <<'EOF' || die "cannot create database cl$k"
import subprocess, sys
subprocess.run(["psql", sys.argv[1], "-qc", f"CREATE DATABASE {sys.argv[2]}"], check=True)
EOF
    run "postgresql-$n" "$BASE/cl$k" "$n" | tee -a "$OUT/results.txt"
done
echo "raw results: ${OUT#"$ROOT"/}/"
