#!/usr/bin/env bash
# static.sh - static analysis of src/ with cppcheck (R12). Fails on any
# warning-class finding; prints "static: ok" when clean.
set -euo pipefail
cd "$(dirname "$0")/.."
cppcheck --quiet --enable=warning,portability,performance --inline-suppr \
  --std=c11 -D_GNU_SOURCE -Isrc --error-exitcode=1 src
echo "static: ok"
