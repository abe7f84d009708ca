#!/usr/bin/env bash
# bench/run.sh - every Wharf benchmark, one command (`make bench`).
#
# Measures, on this machine and in this order:
#   1. machine limits: `openssl speed -evp aes-256-gcm` at 64 KiB blocks
#      (encrypt and decrypt) and `openssl speed -evp sha256` (the vault
#      hashes every plaintext byte too), and the per-file durability rate of
#      the file system under bench/out (bench/fsync_rate.py: new 4 KiB file +
#      fsync of the file + fsync of its folder; then unlinking those synced
#      files, which the source's "after delete" does for every message);
#   2. the vault: build/release/bench/vault_bench, each run beside
#      bench/io_rate.py (the same buffered write()/read() without the
#      cryptography); medians of BENCH_VAULT_RUNS;
#   3. file -> file: bench/filebench.py, BENCH_RUNS timed runs of BENCH_FILES
#      files of 4 KiB (median reported), each right after its own fsync-rate
#      measurement (this VM's disk varies several-fold from minute to
#      minute, so a limit measured minutes earlier is no limit), then one run
#      under strace that only counts sync calls.
# Prints a summary table (figure, machine limit, ratio) and leaves the raw
# output in bench/out/<UTC time>/ (bench/out/latest points at it).
# Release binaries only. Takes about 2-3 minutes on 2 cores.
#
# Environment: BENCH_RUNS (5), BENCH_FILES (10000), BENCH_VAULT_RUNS (3),
# BENCH_VAULT_MIB (256), BENCH_KEEP=1 keeps the file->file work folders.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
[ "${1:-}" = as2 ] && exec bench/as2_bench.sh   # `bench/run.sh as2`: AS2 A -> B (docs/performance.md)
[ "${1:-}" = latency ] && exec bench/latency_bench.sh   # `bench/run.sh latency`: a slow partner, by concurrency
[ "${1:-}" = cluster ] && exec bench/cluster_bench.sh   # `bench/run.sh cluster`: 1-3 nodes on PostgreSQL, SQLite beside
[ "${1:-}" = backlog ] && exec bench/backlog_bench.sh   # `bench/run.sh backlog`: a queue left by an outage, drained
if [ "${1:-}" = split ]; then   # `bench/run.sh split [MiB]`: the AS2 receiver's multipart splitter with its SHA-256
    make --no-print-directory -s build/release/bench/split_bench
    exec build/release/bench/split_bench "${2:-256}"
fi
if [ "${1:-}" = keyop ]; then   # `bench/run.sh keyop [N]`: a signature through the key processes, beside in-process and openssl speed
    make --no-print-directory -s build/release/bench/keyop_bench
    openssl speed -seconds 3 rsa2048 2>/dev/null |
        awk '$1 == "rsa" && $2 == 2048 { print "openssl_rsa2048_sign_per_s", $6 }'
    exec build/release/bench/keyop_bench "${2:-2000}"
fi
if [ "${1:-}" = verify ]; then  # `bench/run.sh verify [SIZE [N [THREADS]]]`: one signature check as AS2 makes it, beside OpenSSL's
    make --no-print-directory -s build/release/bench/verify_bench
    shift
    exec build/release/bench/verify_bench "$@"
fi
RUNS=${BENCH_RUNS:-5}
FILES=${BENCH_FILES:-10000}
VRUNS=${BENCH_VAULT_RUNS:-3}
VMIB=${BENCH_VAULT_MIB:-256}
PY=/usr/bin/python3
WHARF=$ROOT/build/release/wharf
VBENCH=$ROOT/build/release/bench/vault_bench

die() { echo "bench: $*" >&2; exit 1; }
for tool in openssl strace "$PY"; do
    command -v "$tool" >/dev/null || die "$tool is needed (scripts/deps.sh installs it)"
done

make --no-print-directory -s -j2 build/release/wharf build/release/bench/vault_bench

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" "$ROOT/bench/out/latest"
RES=$OUT/results.txt          # key value lines, the raw figures
: >"$RES"
note() { echo "bench: $*" >&2; }
put() { echo "$1 $2" >>"$RES"; }
get() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$RES"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

fstype() { findmnt -n -o FSTYPE -T "$OUT" 2>/dev/null || stat -f -c %T "$OUT"; }
fsync_rate() {      # label: one fsync_rate.py run into results.txt as label_*
    "$PY" bench/fsync_rate.py "$OUT" 1000 4096 >"$OUT/fsync_rate-$1.txt" 2>>"$OUT/fsync_rate.log" ||
        die "fsync_rate.py failed (see $OUT/fsync_rate.log)"
    sed "s/^/$1_/" "$OUT/fsync_rate-$1.txt" >>"$RES"
}

# ---- the machine ------------------------------------------------------------
{
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc $(nproc)"
    echo "cpu $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "kernel $(uname -r)"
    echo "fs $(fstype) ($(df -P "$OUT" | awk 'NR == 2 { print $1 }'), mount options: $(findmnt -n -o OPTIONS -T "$OUT" 2>/dev/null || echo unknown))"
    echo "openssl $(openssl version)"
    echo "version $("$WHARF" version 2>/dev/null | head -1)"
    echo "command make bench (bench/run.sh), BENCH_RUNS=$RUNS BENCH_FILES=$FILES"
} >"$OUT/machine.txt"
note "machine: $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -r), $(fstype)"

# ---- 1. machine limits ------------------------------------------------------
# openssl prints "AES-256-GCM  3800560.19k": thousands of bytes per second.
ossl() {            # label alg [options]: MB/s at 64 KiB blocks
    local log=$OUT/openssl-$1.txt alg=$2
    shift 2
    openssl speed -evp "$alg" "$@" -bytes 65536 -seconds 3 >"$log" 2>&1 ||
        die "openssl speed failed (see $log)"
    awk -v a="$alg" 'tolower($1) == a { v = $2; sub(/k$/, "", v); printf "%.1f\n", v / 1000 }' "$log"
}
note "openssl speed -evp aes-256-gcm -bytes 65536 -seconds 3 (encrypt, decrypt), then sha256"
put openssl_gcm_enc_MBps "$(ossl gcm-enc aes-256-gcm)"
put openssl_gcm_dec_MBps "$(ossl gcm-dec aes-256-gcm -decrypt)"
put openssl_sha256_MBps "$(ossl sha256 sha256)"

note "fsync rate: 1000 new 4 KiB files, fsync(file) + fsync(folder) each"
fsync_rate first

# ---- 2. vault -----------------------------------------------------------------
note "vault_bench $VMIB MiB x $VRUNS (TMPDIR on the bench file system), each after io_rate.py"
: >"$OUT/vault.txt"
for i in $(seq 1 "$VRUNS"); do
    "$PY" bench/io_rate.py "$OUT" "$VMIB" | sed "s/^/run$i /" >>"$OUT/vault.txt"
    TMPDIR=$OUT "$VBENCH" "$VMIB" | sed "s/^/run$i /" >>"$OUT/vault.txt"
done
for k in vault_write_MBps vault_read_MBps peak_rss_kib plain_write_MBps plain_read_MBps; do
    name=$k
    [ "$k" = peak_rss_kib ] && name=vault_peak_rss_kib
    put "$name" "$(awk -v k="$k" '$2 == k { print $3 }' "$OUT/vault.txt" | median)"
done

# ---- 3. file -> file ------------------------------------------------------------
for i in $(seq 1 "$RUNS"); do
    fsync_rate "run$i"
    note "file->file run $i/$RUNS: $FILES files of 4 KiB (fsync rate just before: $(get "run${i}_fsync_files_per_s")/s)"
    "$PY" bench/filebench.py --wharf "$WHARF" --out "$OUT/file-run$i" \
        --files "$FILES" --label "run$i" >>"$OUT/filebench.txt" \
        2>>"$OUT/filebench.log" || die "file->file run $i failed (see $OUT/filebench.log)"
    cp "$OUT/file-run$i/data/logs/wharf.log" "$OUT/wharf-run$i.log"
done
note "file->file under strace (sync calls counted; its time is not used)"
"$PY" bench/filebench.py --wharf "$WHARF" --out "$OUT/file-strace" \
    --files "$FILES" --label strace --strace "$OUT/strace-c.txt" \
    >>"$OUT/filebench.txt" 2>>"$OUT/filebench.log" ||
    die "file->file strace run failed (see $OUT/filebench.log)"
cp "$OUT/file-strace/data/logs/wharf.log" "$OUT/wharf-strace.log"
# Removed only now: deleting ~30,000 files between runs disturbs the next.
[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$OUT"/file-run* "$OUT/file-strace"

fb() { awk -v k="$1" '$1 ~ ("^run[0-9]+_" k "$") { print $2 }' "$OUT/filebench.txt"; }
for k in fsync_files_per_s unlink_synced_files_per_s; do
    put "$k" "$(awk -v k="$k" '$1 ~ ("^(first|run[0-9]+)_" k "$") { print $2 }' "$RES" | median | awk '{ printf "%.0f", $1 }')"
done
put file_msgs_per_s "$(fb msgs_per_s | median)"
put file_msgs_per_s_min "$(fb msgs_per_s | sort -g | head -1)"
put file_msgs_per_s_max "$(fb msgs_per_s | sort -g | tail -1)"
put file_all_sent_s "$(fb all_sent_s | median)"
put file_peak_rss_kib "$(fb peak_rss_kib | sort -g | tail -1)"
put file_serve_cpu_s "$(paste <(fb serve_cpu_user_s) <(fb serve_cpu_sys_s) | awk '{ print $1 + $2 }' | median)"
put file_verified "$(awk '$1 ~ /_verified$/ && $2 != "ok" { bad = 1 } END { print bad ? "FAILED" : "ok" }' "$OUT/filebench.txt")"
for k in sync_calls syncs_per_msg fsync_calls fdatasync_calls syncfs_calls; do
    put "file_$k" "$(awk -v k="strace_$k" '$1 == k { print $2 }' "$OUT/filebench.txt")"
done

# ---- summary ---------------------------------------------------------------------
ENC=$(get openssl_gcm_enc_MBps) DEC=$(get openssl_gcm_dec_MBps) SHA=$(get openssl_sha256_MBps)
# One thread doing each step in turn cannot beat 1 / (sum of 1/rate).
serial() { awk 'BEGIN { s = 0; for (i = 1; i < ARGC; i++) s += 1 / ARGV[i]; printf "%.1f", 1 / s }' "$@"; }
WBOUND=$(serial "$ENC" "$SHA" "$(get plain_write_MBps)")
RBOUND=$(serial "$DEC" "$(get plain_read_MBps)")
FSR=$(get fsync_files_per_s) MPS=$(get file_msgs_per_s)
{
    echo
    echo "Wharf benchmarks, $(awk '$1 == "date" { print $2 }' "$OUT/machine.txt"): $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), $(fstype)"
    printf '%-36s %12s  %-34s %12s  %7s\n' figure value "machine limit" limit ratio
    printf '%-36s %12s  %-34s %12s  %7s\n' "vault write (encrypt), MB/s" "$(get vault_write_MBps)" \
        "openssl aes-256-gcm enc 64 KiB" "$ENC" "$(ratio "$(get vault_write_MBps)" "$ENC")"
    printf '%-36s %12s  %-34s %12s  %7s\n' "" "" \
        "  gcm+sha256+write() in one thread" "$WBOUND" "$(ratio "$(get vault_write_MBps)" "$WBOUND")"
    printf '%-36s %12s  %-34s %12s  %7s\n' "" "" "  (sha256 / plain write(), MB/s)" \
        "$SHA/$(get plain_write_MBps)" ""
    printf '%-36s %12s  %-34s %12s  %7s\n' "vault read (decrypt), MB/s" "$(get vault_read_MBps)" \
        "openssl aes-256-gcm dec 64 KiB" "$DEC" "$(ratio "$(get vault_read_MBps)" "$DEC")"
    printf '%-36s %12s  %-34s %12s  %7s\n' "" "" \
        "  gcm dec+read() in one thread" "$RBOUND" "$(ratio "$(get vault_read_MBps)" "$RBOUND")"
    printf '%-36s %12s  %-34s %12s  %7s\n' "vault_bench peak RSS, KiB" "$(get vault_peak_rss_kib)" "-" "-" "-"
    printf '%-36s %12s  %-34s %12s  %7s\n' "file->file, msgs/s (median of $RUNS)" "$MPS" \
        "new file+fsync+dir fsync, files/s" "$FSR" "$(ratio "$MPS" "$FSR")"
    printf '%-36s %12s  %-34s %12s  %7s\n' "" "" "unlink of a synced file, files/s" \
        "$(get unlink_synced_files_per_s)" "$(ratio "$MPS" "$(get unlink_synced_files_per_s)")"
    for i in $(seq 1 "$RUNS"); do
        m=$(awk -v k="run${i}_msgs_per_s" '$1 == k { print $2 }' "$OUT/filebench.txt")
        f=$(get "run${i}_fsync_files_per_s")
        printf '%-36s %12s  %-34s %12s  %7s\n' "  run $i" "$m" "  fsync (unlink) rate just before" \
            "$f ($(get "run${i}_unlink_synced_files_per_s"))" "$(ratio "$m" "$f")"
    done
    printf '%-36s %12s  %-34s %12s  %7s\n' "  (min .. max of the runs)" \
        "$(get file_msgs_per_s_min)..$(get file_msgs_per_s_max)" "aim" 5000 "$(ratio "$MPS" 5000)"
    printf '%-36s %12s  %-34s %12s  %7s\n' "file->file syncs per message" "$(get file_syncs_per_msg)" \
        "-" "-" "-"
    printf '%-36s %12s  %-34s %12s  %7s\n' "  fsync / fdatasync / syncfs calls" \
        "$(get file_fsync_calls)/$(get file_fdatasync_calls)/$(get file_syncfs_calls)" "-" "-" "-"
    printf '%-36s %12s  %-34s %12s  %7s\n' "file->file serve peak RSS, KiB (max)" "$(get file_peak_rss_kib)" "-" "-" "-"
    printf '%-36s %12s  %-34s %12s  %7s\n' "file->file serve CPU s (2 cores)" "$(get file_serve_cpu_s)" \
        "wall s x 2 cores" "$(awk -v s="$(get file_all_sent_s)" 'BEGIN { printf "%.2f", 2 * s }')" \
        "$(ratio "$(get file_serve_cpu_s)" "$(awk -v s="$(get file_all_sent_s)" 'BEGIN { print 2 * s }')")"
    printf '%-36s %12s\n' "file->file verification" "$(get file_verified)"
    echo "aims: vault write >= 0.70 x openssl enc; file->file >= 5000 msgs/s"
    echo "raw results: bench/out/$STAMP/ (results.txt, filebench.txt, strace-c.txt, ...)"
} | tee "$OUT/summary.txt"
[ "$(get file_verified)" = ok ] || die "file->file verification failed"
