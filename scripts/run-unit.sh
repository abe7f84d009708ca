#!/usr/bin/env bash
# Run every cmocka unit-test binary given; print each one's summary and a
# total line. Exit non-zero if any failed.
set -u
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0; failed=0; bad=()
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -E '^\[ +(PASSED|FAILED) +\]' | sed "s|^|$(basename "$t"): |"
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ $rc -ne 0 ]; then
    bad+=("$(basename "$t")")
    [ -z "$f" ] && failed=$((failed + 1))
    printf '%s\n' "$out" | tail -40
  fi
done
echo "unit: ${passed} passed, ${failed} failed"
[ ${#bad[@]} -eq 0 ] || { echo "failing unit binaries: ${bad[*]}"; exit 1; }
