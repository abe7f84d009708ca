#!/usr/bin/env bash
# bench/backup_bench.sh - backup, verify and restore (the RTO) of a data
# dir of N messages holding M MiB of payload (R20), beside what the
# machine can do: openssl's AES-256-GCM and SHA-256 at 64 KiB blocks and
# the disk's raw copy rate (`cp -r` of the same payload tree, then a sync
# of that file system), measured in the same run.
#
#   bench/backup_bench.sh             100,000 messages, 10 GiB (the issue's
#                                     figure; needs ~3.3x that in free disk)
#   BACKUP_MESSAGES=10000 BACKUP_MIB=1024 bench/backup_bench.sh
#   BACKUP_STORE=postgresql://.../db1 BACKUP_RESTORE_STORE=postgresql://.../db2 \
#   BACKUP_MESSAGES=10000 BACKUP_MIB=1024 bench/backup_bench.sh
#                                     the same on PostgreSQL (R21): the data
#                                     dir on the empty database BACKUP_STORE
#                                     (payloads in a payload_dir of their
#                                     own), restored with --store into the
#                                     empty database BACKUP_RESTORE_STORE
#
# Steps: a fresh data dir filled by bench/backup_fill (the durable intake
# of a source, serve not running); `wharf backup --to` (master key);
# `wharf backup verify`; `wharf restore` into a new dir; then `wharf serve`
# on the restored dir until /healthz answers 200. RTO = restore + start.
# Release binaries; wall times of single runs (each step reads what the
# step before wrote, so the page cache holds part of it: the copy rate is
# measured the same way). The page cache is not dropped (other work runs
# on this machine). Prints key value lines and keeps them, with the
# commands' output, in bench/out/backup-<UTC time>/ (results.txt); the
# data is removed at the end unless BENCH_KEEP=1.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/data_dir.sh
N=${BACKUP_MESSAGES:-100000}
MIB=${BACKUP_MIB:-10240}
WHARF=$ROOT/build/release/wharf
FILL=$ROOT/build/release/bench/backup_fill
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/backup-$STAMP
RES=$OUT/results.txt

die() { echo "backup_bench: $*" >&2; exit 1; }
note() { echo "backup_bench: $*" >&2; }
put() { echo "$1 $2" | tee -a "$RES"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f\n", b - a }'; }
rate() { awk -v m="$1" -v s="$2" 'BEGIN { printf "%.1f\n", m * 1048576 / 1e6 / s }'; }

for tool in openssl curl /usr/bin/time /usr/bin/python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install ${tool##*/})"
done
make --no-print-directory -s -j2 build/release/wharf build/release/bench/backup_fill
mkdir -p "$OUT"
: >"$RES"
avail=$(df -Pm "$OUT" | awk 'NR == 2 { print $4 }')
need=$((MIB * 33 / 10 + 1024))
[ "$avail" -ge "$need" ] || die "needs ${need} MiB free under $OUT, has ${avail}"
cleanup() {
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null || true
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$OUT/data" "$OUT/copy" "$OUT/restored" "$OUT/backup.wbk" \
        "$OUT/payloads" "$OUT/restored-payloads"
}
trap cleanup EXIT

put messages "$N"
put payload_MiB "$MIB"
put commit "$(git rev-parse --short HEAD 2>/dev/null || echo -)"

note "openssl speed -evp aes-256-gcm / sha256, 64 KiB blocks, 3 s each"
ossl() {
    openssl speed -evp "$@" -bytes 65536 -seconds 3 2>/dev/null |
        awk -v a="$1" 'tolower($1) == a { v = $2; sub(/k$/, "", v); printf "%.1f\n", v / 1000 }'
}
put openssl_gcm_enc_MBps "$(ossl aes-256-gcm)"
put openssl_sha256_MBps "$(ossl sha256)"

note "data dir with $N messages, $MIB MiB of payload (backup_fill)"
mkdir -p "$OUT/files/in" "$OUT/files/out"
STORE=${BACKUP_STORE:-}
RSTORE=${BACKUP_RESTORE_STORE:-}
[ -z "$STORE" ] || [ -n "$RSTORE" ] || die "BACKUP_STORE needs BACKUP_RESTORE_STORE (an empty database)"
PAYLOADS=$OUT/data/payloads
init_store=()
restore_store=()
if [ -n "$STORE" ]; then
    PAYLOADS=$OUT/payloads
    init_store=(--store "$STORE" --payload-dir "$PAYLOADS")
    restore_store=(--store "$RSTORE" --payload-dir "$OUT/restored-payloads")
fi
put store "$([ -n "$STORE" ] && echo postgresql || echo sqlite)"
# inbox -> outbox, free ports, allow_root as root (the restored wharf.conf
# has them too)
file_flow_data "$WHARF" "$OUT" "${init_store[@]}"
"$FILL" "$OUT/data" "$N" "$MIB" inbox outbox | tee -a "$RES"
put data_dir_MiB "$(du -sm "$OUT/data" | cut -f1)"
[ -z "$STORE" ] || put payload_dir_MiB "$(du -sm "$PAYLOADS" | cut -f1)"

note "raw copy of the payload tree (cp -r, then sync -f)"
t=$(now)
cp -r "$PAYLOADS" "$OUT/copy"
sync -f "$OUT/copy"
s=$(since "$t")
put copy_seconds "$s"
put copy_MBps "$(rate "$MIB" "$s")"
rm -rf "$OUT/copy"

note "wharf backup"
t=$(now)
/usr/bin/time -f "backup_peak_rss_kib %M" -o "$OUT/backup.rss" \
    "$WHARF" backup --data "$OUT/data" --to "$OUT/backup.wbk" >"$OUT/backup.txt"
s=$(since "$t")
put backup_seconds "$s"
put backup_MBps "$(rate "$MIB" "$s")"
cat "$OUT/backup.rss" | tee -a "$RES"
put backup_file_MiB "$(du -m "$OUT/backup.wbk" | cut -f1)"

note "wharf backup verify"
t=$(now)
"$WHARF" backup verify "$OUT/backup.wbk" --data "$OUT/data" >"$OUT/verify.txt"
s=$(since "$t")
put verify_seconds "$s"
put verify_MBps "$(rate "$MIB" "$s")"

note "wharf restore"
t=$(now)
/usr/bin/time -f "restore_peak_rss_kib %M" -o "$OUT/restore.rss" \
    "$WHARF" restore --from "$OUT/backup.wbk" --data "$OUT/restored" \
    --keystore "$OUT/data/keystore" "${restore_store[@]}" >"$OUT/restore.txt"
rs=$(since "$t")
put restore_seconds "$rs"
put restore_MBps "$(rate "$MIB" "$rs")"
cat "$OUT/restore.rss" | tee -a "$RES"

note "wharf serve on the restored dir until /healthz answers 200"
port=$(awk -F: '/^admin_listen/ { p = $NF } END { print p }' "$OUT/restored/wharf.conf")
t=$(now)
"$WHARF" serve --data "$OUT/restored" >"$OUT/serve.out" 2>"$OUT/serve.err" &
SERVE_PID=$!
until curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/healthz" 2>/dev/null | grep -q 200; do
    kill -0 "$SERVE_PID" 2>/dev/null || die "serve exited (see $OUT/serve.err)"
    sleep 0.05
done
ss=$(since "$t")
kill "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null || true
SERVE_PID=
put serve_start_seconds "$ss"
put rto_seconds "$(awk -v a="$rs" -v b="$ss" 'BEGIN { printf "%.2f\n", a + b }')"
note "results in $RES"
