#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages Wharf needs, only those missing.
#   scripts/deps.sh        build + run (make run)
#   scripts/deps.sh test   also what the tests use (make test, CI)
# Idempotent: a machine that has everything runs no apt-get at all.
set -euo pipefail

BUILD=(gcc make pkg-config libssl-dev libsqlite3-dev libjansson-dev zlib1g-dev
       libargon2-dev libhttp-parser-dev libcurl4-openssl-dev libseccomp-dev
       openssl sqlite3)
TEST=(libcmocka-dev clang libclang-rt-14-dev python3 python3-pytest e2fsprogs
      strace procps oathtool nmap wrk cppcheck python3-yaml
      openssh-server openssh-client tinyproxy-bin dante-server)

want=("${BUILD[@]}")
[ "${1:-}" = "test" ] && want+=("${TEST[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
