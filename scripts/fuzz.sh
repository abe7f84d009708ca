#!/usr/bin/env bash
# fuzz.sh - build and run the libFuzzer targets (tests/fuzz/fuzz_*.c).
#
#   scripts/fuzz.sh smoke [NAME...]   15 s per target (`make fuzz-smoke`, `make test`)
#   scripts/fuzz.sh long  [NAME...]   600 s per target, or $FUZZ_SECONDS (`make fuzz`)
#
# Each target is built with clang (-fsanitize=fuzzer,address,undefined)
# together with every src/**/*.c except src/main.c, into build/fuzz/; an
# object is recompiled only when its source, a header under src/ or the
# flags changed. Each target then runs on a temporary copy of its seed
# corpus tests/fuzz/corpus/NAME/ (so the committed corpus never grows),
# leak detection on. Crash/leak/timeout reproducers are kept under
# build/fuzz/artifacts/NAME/ and their paths printed.
#
# Output: one `fuzz NAME: N runs, C crashes` line per target and a final
# `fuzz: N passed, M failed`. Exit 1 when any target crashed (or failed to
# build), 2 on usage errors.
set -u
cd "$(dirname "$0")/.." || exit 2

mode=${1:-smoke}
shift || true
case "$mode" in
    smoke) secs=${FUZZ_SECONDS:-15} ;;
    long)  secs=${FUZZ_SECONDS:-600} ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/fuzz.sh smoke|long [NAME...]" >&2; exit 2 ;;
esac

CC=${FUZZ_CC:-clang-14}
command -v "$CC" >/dev/null 2>&1 || CC=clang
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: clang-14 not found (apt-get install clang-14)" >&2
    exit 1
fi
PKGS="openssl sqlite3 jansson zlib libargon2 libcurl libqrencode libseccomp libpq"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -Isrc -DWHARF_VERSION=\"fuzz\" \
-fno-omit-frame-pointer -fno-sanitize-recover=undefined \
$(pkg-config --cflags $PKGS 2>/dev/null)"
LIBS="$(pkg-config --libs $PKGS) -lhttp_parser -lpthread"
OUT=build/fuzz
JOBS=$(nproc 2>/dev/null || echo 2)

mkdir -p "$OUT/obj" "$OUT/logs"

# ---- build ------------------------------------------------------------------

# The flags are part of what an object depends on.
stamp="$OUT/flags"
flags_now="$CC $CFLAGS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$flags_now" ]; then
    rm -rf "$OUT/obj" "$OUT"/fuzz_*
    mkdir -p "$OUT/obj"
    printf '%s' "$flags_now" > "$stamp"
fi

mapfile -t lib_src < <(find src -name '*.c' ! -path src/main.c | sort)
newest_hdr=$(find src -name '*.h' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)

# Sources whose object is missing or older than the source or any header.
stale=()
objs=()
for c in "${lib_src[@]}"; do
    o="$OUT/obj/${c#src/}"; o="${o%.c}.o"
    objs+=("$o")
    if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || { [ -n "$newest_hdr" ] && [ "$newest_hdr" -nt "$o" ]; }; then
        stale+=("$c")
    fi
done
# Objects of sources that no longer exist must not be linked.
find "$OUT/obj" -name '*.o' | while read -r o; do
    c="src/${o#"$OUT"/obj/}"; c="${c%.o}.c"
    [ -f "$c" ] || rm -f "$o"
done

compile_one() {   # $1 = src/x/y.c
    local c=$1 o
    o="$OUT/obj/${c#src/}"; o="${o%.c}.o"
    mkdir -p "$(dirname "$o")"
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS -fsanitize=fuzzer-no-link,address,undefined -c "$c" -o "$o" 2>"$o.log"; then
        echo "fuzz: cannot compile $c:" >&2
        cat "$o.log" >&2
        rm -f "$o"
        return 1
    fi
}
export -f compile_one
export OUT CC CFLAGS

if [ ${#stale[@]} -gt 0 ]; then
    echo "fuzz: compiling ${#stale[@]} source file(s) with $CC"
    if ! printf '%s\n' "${stale[@]}" | xargs -P "$JOBS" -I{} bash -c 'compile_one "$1"' _ {}; then
        echo "fuzz: 0 passed, 1 failed (build)"
        exit 1
    fi
fi
lib="$OUT/libwharf-fuzz.a"
need_ar=0
[ -f "$lib" ] || need_ar=1
for o in "${objs[@]}"; do [ "$o" -nt "$lib" ] && need_ar=1; done
if [ $need_ar -eq 1 ]; then
    rm -f "$lib"
    ar rcs "$lib" "${objs[@]}" || exit 1
fi

# ---- targets ------------------------------------------------------------------

names=()
if [ $# -gt 0 ]; then
    names=("$@")
else
    for t in tests/fuzz/fuzz_*.c; do
        [ -f "$t" ] || continue
        n=${t#tests/fuzz/fuzz_}; names+=("${n%.c}")
    done
fi
if [ ${#names[@]} -eq 0 ]; then
    echo "fuzz: no targets under tests/fuzz/" >&2
    exit 1
fi

# Headers next to the targets (shared test keys) count like their sources.
fuzz_hdr=$(find tests/fuzz -maxdepth 1 -name '*.h' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)

build_failed=()
for n in "${names[@]}"; do
    src="tests/fuzz/fuzz_$n.c" bin="$OUT/fuzz_$n"
    if [ ! -f "$src" ]; then
        echo "fuzz: no such target $src" >&2
        build_failed+=("$n"); continue
    fi
    if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ "$lib" -nt "$bin" ] ||
       { [ -n "$fuzz_hdr" ] && [ "$fuzz_hdr" -nt "$bin" ]; }; then
        # shellcheck disable=SC2086
        if ! $CC $CFLAGS -fsanitize=fuzzer,address,undefined -o "$bin" "$src" \
                "$lib" $LIBS 2>"$OUT/logs/build_$n.log"; then
            echo "fuzz: cannot build $src:" >&2
            cat "$OUT/logs/build_$n.log" >&2
            build_failed+=("$n")
        fi
    fi
done

# ---- run ------------------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/wharf-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

run_one() {     # $1 = name; writes $work/$1.result = "runs crashes reproducer"
    local n=$1 bin="$OUT/fuzz_$1" corpus="$work/corpus_$1" art="$OUT/artifacts/$1"
    local log="$OUT/logs/$1.log"
    mkdir -p "$corpus" "$art"
    [ -d "tests/fuzz/corpus/$n" ] && cp -R "tests/fuzz/corpus/$n/." "$corpus/"
    "$bin" "$corpus" -max_total_time="$secs" -detect_leaks=1 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
        >"$log" 2>&1
    local rc=$?
    local runs repro crashes=0
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ -z "$runs" ]; then     # no final stats after a crash: last status line
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ $rc -ne 0 ] || [ -n "$repro" ]; then crashes=1; fi
    echo "${runs:-0} $crashes ${repro:--}" > "$work/$n.result"
}

to_run=()
for n in "${names[@]}"; do
    case " ${build_failed[*]-} " in *" $n "*) continue ;; esac
    to_run+=("$n")
done

# Run JOBS targets at a time: each is single-threaded and time-bounded.
echo "fuzz: running ${#to_run[@]} target(s), ${secs}s each ($mode)"
i=0
for n in "${to_run[@]}"; do
    run_one "$n" &
    i=$((i + 1))
    if [ $((i % JOBS)) -eq 0 ]; then wait; fi
done
wait

passed=0; failed=${#build_failed[@]}
for n in "${to_run[@]}"; do
    read -r runs crashes repro < "$work/$n.result"
    echo "fuzz $n: $runs runs, $crashes crashes"
    if [ "$crashes" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "fuzz $n: log $OUT/logs/$n.log"
        grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' \
            "$OUT/logs/$n.log" | head -5 | sed "s/^/fuzz $n:   /"
        if [ "$repro" != "-" ]; then
            echo "fuzz $n: reproducer $repro (run: $OUT/fuzz_$n $repro)"
        fi
    fi
done
for n in "${build_failed[@]-}"; do
    [ -n "$n" ] && echo "fuzz $n: not built"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
