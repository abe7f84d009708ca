#!/usr/bin/env bash
# as2_abba.sh - compare two builds with bench/as2_bench.sh (small messages)
# in ABBA order, the disk settled before each run, so that neither build
# always runs second (docs/performance.md, "Measuring on a file system
# that remembers": a run straight after another is slower, whichever
# build it is).
#
#   bench/as2_abba.sh MODE BUILD_A BUILD_B [ROUNDS]
#
# MODE is sync or async (BENCH_AS2_MDN); BUILD_A and BUILD_B are wharf
# binaries; ROUNDS (default 2) of A B B A. Each run: `sync; sleep 12`,
# then BENCH_AS2_MSGS (default 2000) messages. Other BENCH_AS2_* settings
# (BENCH_AS2_TMP, BENCH_AS2_STRACE, ...) pass through. ABBA_ENV_A and
# ABBA_ENV_B: VAR=value words for one side's runs only, to compare two
# settings of one build (bench/as2_abba.sh sync B B with
# ABBA_ENV_B=BENCH_AS2_PAYLOADS=tmpfs). Prints one line per run: mode,
# build (and its ABBA_ENV), the run's output folder, CPU ms per message
# on A and B, msgs/s.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,19p' "$0"; exit 2; }
mode=$1 a=$2 b=$3 rounds=${4:-2}
for bin in "$a" "$b"; do
    [ -x "$bin" ] || { echo "as2_abba: $bin is not an executable" >&2; exit 2; }
done
for _ in $(seq 1 "$rounds"); do
    for side in a b b a; do
        if [ $side = a ]; then bin=$a envs=${ABBA_ENV_A:-}; else bin=$b envs=${ABBA_ENV_B:-}; fi
        sync; sleep 12
        log=$(mktemp)
        # shellcheck disable=SC2086  # envs: words on purpose
        env $envs BENCH_WHARF="$bin" BENCH_AS2_MSGS="${BENCH_AS2_MSGS:-2000}" \
            BENCH_AS2_MDN=$mode BENCH_AS2_PARTS=small \
            bench/as2_bench.sh >"$log" 2>&1 ||
            { tail -5 "$log" >&2; rm -f "$log"; exit 1; }
        out=$(sed -n 's|^raw results: \(bench/out/[^ ]*\)/ .*|\1|p' "$log")
        rm -f "$log"
        printf '%s %s%s %s %s\n' "$mode" "$bin" "${envs:+ ($envs)}" "$out" "$(awk '
            /^small_cpu_ms_per_msg_a / { a = $2 }
            /^small_cpu_ms_per_msg_b / { b = $2 }
            /^small_msgs_per_s / { r = $2 }
            END { print a, b, r }' "$out/results.txt")"
    done
done
