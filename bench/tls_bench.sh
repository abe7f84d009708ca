#!/usr/bin/env bash
# bench/tls_bench.sh - TLS handshakes per second on Wharf's admin listener
# against `openssl s_server` with the same certificate and key, on this
# machine, as a ratio (issue 3 aims at 0.80 or more).
#
# Both are driven the same way: `openssl s_time -new -connect ... -time T`
# (a new full handshake per connection, one connection at a time, nothing
# sent), alternating wharf / s_server for BENCH_TLS_RUNS rounds (default 3);
# the medians are compared. s_server runs with -num_tickets 0 because Wharf
# issues no session tickets either (tls.h), so both do the same work per
# handshake: TLS 1.3, X25519, TLS_AES_256_GCM_SHA384, ECDSA P-256 signature.
# Release binary only. Raw output in bench/out/<UTC time>-tls/.
#
# Environment: BENCH_TLS_RUNS (3), BENCH_TLS_SECONDS (10).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${BENCH_TLS_RUNS:-3}
SECS=${BENCH_TLS_SECONDS:-10}
WHARF=$ROOT/build/release/wharf
PY=/usr/bin/python3

command -v openssl >/dev/null || { echo "tls_bench: openssl is needed" >&2; exit 1; }
make --no-print-directory -s -j2 build/release/wharf

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/$STAMP-tls
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVE_PID=""
OSSL_PID=""
cleanup() {
    local rc=$?
    for pid in $SERVE_PID $OSSL_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
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
    echo "tls_bench: nothing listens on port $1" >&2
    exit 1
}
# s_time's "N connections in S real seconds" -> N / S
rate() {
    awk '/connections in [0-9]+ real seconds/ { n = $1; s = $4 }
         END { if (s > 0) printf "%.1f", n / s; else print "nan" }' "$1"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ADMIN=$(free_port)
PARTNER=$(free_port)
OSSL=$(free_port)
"$WHARF" init --data "$WORK/data" --admin-listen "127.0.0.1:$ADMIN" \
    --partner-listen "127.0.0.1:$PARTNER" >/dev/null
echo "log_level = warning" >>"$WORK/data/wharf.conf"
# run as root (a bench machine): serve keeps root instead of refusing (R22)
[ "$(id -u)" -ne 0 ] || echo "allow_root = yes" >> "$WORK/data/wharf.conf"
"$WHARF" serve --data "$WORK/data" --quiet >"$OUT/wharf-serve.log" 2>&1 &
SERVE_PID=$!
openssl s_server -accept "127.0.0.1:$OSSL" -cert "$WORK/data/tls/cert.pem" \
    -key "$WORK/data/tls/key.pem" -num_tickets 0 -quiet -naccept 100000000 \
    >"$OUT/s_server.log" 2>&1 </dev/null &
OSSL_PID=$!
wait_port "$ADMIN"
wait_port "$OSSL"

{
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc $(nproc)"
    echo "cpu $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "openssl $(openssl version)"
    echo "wharf $("$WHARF" version 2>/dev/null | head -1)"
    echo "runs $RUNS x $SECS s each"
} >"$OUT/machine.txt"

for i in $(seq 1 "$RUNS"); do
    openssl s_time -new -connect "127.0.0.1:$ADMIN" -time "$SECS" \
        >"$OUT/wharf-run$i.txt" 2>&1 || true
    openssl s_time -new -connect "127.0.0.1:$OSSL" -time "$SECS" \
        >"$OUT/openssl-run$i.txt" 2>&1 || true
    echo "tls_bench: run $i: wharf $(rate "$OUT/wharf-run$i.txt")/s," \
         "openssl s_server $(rate "$OUT/openssl-run$i.txt")/s" >&2
done
echo | openssl s_client -connect "127.0.0.1:$ADMIN" 2>/dev/null |
    grep -E "^New," >"$OUT/negotiated-wharf.txt" || true
echo | openssl s_client -connect "127.0.0.1:$OSSL" 2>/dev/null |
    grep -E "^New," >"$OUT/negotiated-openssl.txt" || true

W=$(for i in $(seq 1 "$RUNS"); do rate "$OUT/wharf-run$i.txt"; echo; done | median)
O=$(for i in $(seq 1 "$RUNS"); do rate "$OUT/openssl-run$i.txt"; echo; done | median)
R=$(awk -v a="$W" -v b="$O" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }')
{
    echo "wharf_handshakes_per_s $W"
    echo "openssl_handshakes_per_s $O"
    echo "ratio $R"
} >"$OUT/results.txt"
printf '%-44s %10s\n' "TLS handshakes/s, wharf admin listener" "$W"
printf '%-44s %10s\n' "TLS handshakes/s, openssl s_server" "$O"
printf '%-44s %10s   (aim >= 0.80)\n' "ratio" "$R"
echo "negotiated: wharf $(cat "$OUT/negotiated-wharf.txt"); openssl $(cat "$OUT/negotiated-openssl.txt")"
echo "raw output: $OUT"
