#!/usr/bin/env bash
# pg-test.sh - a throwaway PostgreSQL 15 server for the tests (R21).
#   scripts/pg-test.sh start DIR   initdb in DIR (which must not exist),
#                                  start it on 127.0.0.1 and a free port,
#                                  print its admin URL (database postgres)
#   scripts/pg-test.sh stop DIR    stop it (fast) and remove DIR
# The server listens on 127.0.0.1 only (and a socket in DIR), trusts only
# loopback connections, and runs as an unprivileged user: the caller, or
# Debian's `postgres` user when the caller is root. fsync stays on.
set -euo pipefail
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: pg-test.sh start|stop DIR}
dir=${2:?usage: pg-test.sh start|stop DIR}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  [ -x "$BIN/initdb" ] || { echo "pg-test: $BIN/initdb missing: apt-get install postgresql-15 (scripts/deps.sh test)" >&2; exit 2; }
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_owner "$BIN/initdb" -D "$dir/data" -U wharf -A trust --encoding=UTF8 \
      --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  for try in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    if as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" \
        start >/dev/null 2>&1; then
      echo "postgresql://wharf@127.0.0.1:$port/postgres"
      exit 0
    fi
  done
  cat "$dir/server.log" >&2
  exit 1
  ;;
stop)
  if [ -d "$dir/data" ]; then
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: pg-test.sh start|stop DIR" >&2; exit 2 ;;
esac
