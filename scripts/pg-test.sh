#!/usr/bin/env bash
# pg-test.sh - throwaway PostgreSQL 15 servers for the tests (R21).
#   scripts/pg-test.sh start DIR [name=value ...]
#                          initdb in DIR (which must not exist), start it on
#                          127.0.0.1 and a free port with the settings given
#                          (written to its postgresql.conf), print its admin
#                          URL (database postgres)
#   scripts/pg-test.sh replica DIR PRIMARY_PORT
#                          a streaming replica of the server on PRIMARY_PORT
#                          (pg_basebackup -R), started; prints its admin URL
#   scripts/pg-test.sh promote DIR   the replica in DIR accepts writes
#   scripts/pg-test.sh kill DIR      kill -9 the server in DIR and all its
#                                    backends (no shutdown)
#   scripts/pg-test.sh stop DIR      stop it (fast) and remove DIR
# Servers listen on 127.0.0.1 only (and a socket in DIR), trust only
# loopback connections, and run as an unprivileged user: the caller, or
# Debian's `postgres` user when the caller is root. fsync stays on.
set -euo pipefail
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
usage="usage: pg-test.sh start|replica|promote|kill|stop DIR ..."
cmd=${1:?$usage}
dir=${2:?$usage}
shift 2

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Start the cluster in $dir/data on a free port; print its admin URL.
serve() {
  local opts="-c listen_addresses=127.0.0.1 -k $dir -c max_connections=200"
  for try in 1 2 3 4 5; do
    port=$(free_port)
    if as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port $opts" start >/dev/null 2>&1; then
      echo "postgresql://wharf@127.0.0.1:$port/postgres"
      return 0
    fi
  done
  cat "$dir/server.log" >&2
  return 1
}

prepare() {
  [ -x "$BIN/initdb" ] || { echo "pg-test: $BIN/initdb missing: apt-get install postgresql-15 (scripts/deps.sh test)" >&2; exit 2; }
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
}

case "$cmd" in
start)
  prepare
  as_owner "$BIN/initdb" -D "$dir/data" -U wharf -A trust --encoding=UTF8 \
      --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  # dynamic shared memory as files of the data dir, not /dev/shm: a server
  # a test kills -9 (kill, below) leaves nothing once its dir is removed
  echo "dynamic_shared_memory_type = mmap" >>"$dir/data/postgresql.conf"
  for kv in "$@"; do
    printf "%s = '%s'\n" "${kv%%=*}" "${kv#*=}" >>"$dir/data/postgresql.conf"
  done
  serve
  ;;
replica)
  primary=${1:?$usage}
  prepare
  as_owner "$BIN/pg_basebackup" -h 127.0.0.1 -p "$primary" -U wharf \
      -D "$dir/data" -R -X stream >"$dir/basebackup.log" 2>&1 \
    || { cat "$dir/basebackup.log" >&2; exit 1; }
  # promoted, it has no standby of its own to wait for
  echo "synchronous_standby_names = ''" >>"$dir/data/postgresql.conf"
  serve
  ;;
promote)
  as_owner "$BIN/pg_ctl" -D "$dir/data" -w promote >/dev/null
  ;;
kill)
  # the postmaster and every backend at once, as a machine that dies
  pid=$(head -1 "$dir/data/postmaster.pid")
  kill -9 "$pid" $(pgrep -P "$pid") 2>/dev/null || true
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "$usage" >&2; exit 2 ;;
esac
