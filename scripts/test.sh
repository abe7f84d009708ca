#!/usr/bin/env bash
# test.sh - every test stage of `make test`, each printing its runner's
# summary; all stages run even when one fails, and the exit code is
# non-zero if any did. Usage: scripts/test.sh UNIT_BINARY...
set -u
cd "$(dirname "$0")/.."
failed=()
stage() { local name=$1; shift; echo "== $name"; "$@" || failed+=("$name"); }

stage lint scripts/lint.sh
stage static scripts/static.sh
stage unit scripts/run-unit.sh "$@"
stage fuzz-smoke scripts/fuzz.sh smoke
stage e2e env WHARF_BIN="$PWD/build/asan/wharf" /usr/bin/python3 -m pytest -q -ra -p no:cacheprovider tests/e2e
# ThreadSanitizer: every unit test and the e2e files that drive the most
# threads (engine workers and lanes, listeners' event loops and workers).
tsan_bins=("${@//build\/asan\//build/tsan/}")
stage tsan-unit env TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    scripts/run-unit.sh "${tsan_bins[@]}"
stage tsan-e2e env WHARF_BIN="$PWD/build/tsan/wharf" \
    TSAN_OPTIONS="second_deadlock_stack=1" /usr/bin/python3 -m pytest -q -ra \
    -p no:cacheprovider tests/e2e/test_m1_flow.py tests/e2e/test_m4_as2.py \
    tests/e2e/test_r22_slow_clients.py

if [ ${#failed[@]} -gt 0 ]; then
  echo "make test: FAILED stages: ${failed[*]}"
  exit 1
fi
echo "make test: all stages passed"
