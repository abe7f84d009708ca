#!/usr/bin/env bash
# Run every cmocka unit-test binary given; print each one's summary and a
# total line. Exit non-zero if any failed.
# The store's conformance tests (test_store) run against SQLite and against
# a real PostgreSQL server: unless WHARF_TEST_PG names one (it must load
# pg_stat_statements), a throwaway server is started for this run
# (scripts/pg-test.sh) and stopped after.
set -u
if [ -z "${WHARF_TEST_PG:-}" ]; then
  pgtest="$(dirname "$0")/pg-test.sh"
  pgdir=$(mktemp -d /tmp/wharf-pg.XXXXXX)
  chmod 755 "$pgdir"      # the server's user (postgres when root) enters
  trap '"$pgtest" stop "$pgdir/pg"; rmdir "$pgdir"' EXIT
  # pg_stat_statements: what a statement read (test_store's lease tests)
  WHARF_TEST_PG=$("$pgtest" start "$pgdir/pg" \
                  shared_preload_libraries=pg_stat_statements) || exit 1
  export WHARF_TEST_PG
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0; failed=0; bad=()
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -E '^\[ +(PASSED|FAILED) +\]' | sed "s|^|$(basename "$t"): |"
  # a binary may run several groups (test_store: one per backend): sum them
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {if (NR) print s}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {if (NR) print s}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ $rc -ne 0 ]; then
    bad+=("$(basename "$t")")
    [ -z "$f" ] && failed=$((failed + 1))
    printf '%s\n' "$out" | tail -40
  fi
done
echo "unit: ${passed} passed, ${failed} failed"
[ ${#bad[@]} -eq 0 ] || { echo "failing unit binaries: ${bad[*]}"; exit 1; }
