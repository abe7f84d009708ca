#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages Wharf needs, only those missing.
#   scripts/deps.sh        build + run (make run)
#   scripts/deps.sh test   also what the tests use (make test, CI): Debian
#                          packages, and the console tests' npm packages
#                          from tests/console/package-lock.json (npm ci)
# Idempotent: a machine that has everything runs no apt-get or npm at all.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=(gcc make pkg-config libssl-dev libsqlite3-dev libjansson-dev zlib1g-dev
       libargon2-dev libhttp-parser-dev libcurl4-openssl-dev libqrencode-dev
       libseccomp-dev libpq-dev openssl sqlite3)
TEST=(libcmocka-dev clang libclang-rt-14-dev python3 python3-pytest e2fsprogs
      strace procps oathtool nmap wrk cppcheck python3-yaml python3-jsonschema
      openssh-server openssh-client tinyproxy-bin dante-server
      chromium chromium-driver python3-selenium
      python3-aiosmtpd python3-cryptography systemd logrotate groff-base
      postgresql-15)

want=("${BUILD[@]}")
[ "${1:-}" = "test" ] && want+=("${TEST[@]}")
# npm for the console tests' lockfile, unless some Node.js already has it
[ "${1:-}" = "test" ] && ! command -v npm >/dev/null 2>&1 && want+=(npm)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# axe-core for the console's accessibility scan: exactly the locked
# version, installed once; the tests run offline after that.
if [ "${1:-}" = "test" ] && [ ! -f tests/console/node_modules/axe-core/axe.min.js ]; then
  echo "deps: npm ci in tests/console"
  (cd tests/console && npm ci --no-audit --no-fund --loglevel=error)
fi
