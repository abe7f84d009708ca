#!/usr/bin/env bash
# bench/sftp_bench.sh - SFTP upload throughput of Wharf's sftp connector
# against `curl -T` (the same libcurl and libssh2) uploading the same file
# to the same sshd, as a ratio (issue 5 aims at 0.90 or more).
#
# Starts Debian's sshd on 127.0.0.1 (own host key, key login for root, in a
# temp dir), a file -> sftp flow in a fresh data dir, and `wharf serve`
# (release build). Wharf's figure is the upload alone: from the moment its
# temp file (.NAME.ID.wharf-part) appears on the server to the moment the
# final name does (the payload is already stored, encrypted; it is
# decrypted while it is sent). curl's is its own %{time_total}. Runs need
# root (sshd). Raw output in bench/out/<UTC time>-sftp/.
#
# Environment: BENCH_SFTP_MB (1024), BENCH_SFTP_RUNS (1).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
MB=${BENCH_SFTP_MB:-1024}
RUNS=${BENCH_SFTP_RUNS:-1}
WHARF=$ROOT/build/release/wharf
PY=/usr/bin/python3

[ "$(id -u)" -eq 0 ] || { echo "sftp_bench: run as root (sshd)" >&2; exit 1; }
[ -x /usr/sbin/sshd ] || { echo "sftp_bench: openssh-server is needed" >&2; exit 1; }
make --no-print-directory -s -j2 build/release/wharf

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/$STAMP-sftp
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/wharf-sftp-bench-XXXXXX)
SSHD_PID=""
WHARF_PID=""
cleanup() {
  [ -n "$WHARF_PID" ] && kill "$WHARF_PID" 2>/dev/null && wait "$WHARF_PID" 2>/dev/null
  [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

mkdir -p "$WORK/etc" "$WORK/in" "$WORK/srv/wharf" "$WORK/srv/curl" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$WORK/etc/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/etc/client_key"
cp "$WORK/etc/client_key.pub" "$WORK/etc/authorized_keys"
PORT=$(free_port)
cat > "$WORK/etc/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $WORK/etc/host_key
PidFile $WORK/etc/sshd.pid
UsePAM no
StrictModes no
AuthorizedKeysFile $WORK/etc/authorized_keys
PasswordAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -D -e -f "$WORK/etc/sshd_config" 2>"$OUT/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do grep -q "Server listening" "$OUT/sshd.log" && break; sleep 0.1; done
FP=$(ssh-keyscan -p "$PORT" 127.0.0.1 2>/dev/null | ssh-keygen -lf - | grep -o 'SHA256:[A-Za-z0-9+/]*')

echo "sftp_bench: making a $MB MiB file"
head -c "$((MB * 1024 * 1024))" /dev/urandom > "$WORK/payload.bin"

DATA=$WORK/data
"$WHARF" init --data "$DATA" --allowed-paths "$WORK" > "$OUT/init.out" 2>&1
cat >> "$DATA/wharf.conf" <<EOF
poll_ms = 50
log_level = warning
admin_listen = 127.0.0.1:$(free_port)
partner_listen = 127.0.0.1:$(free_port)
EOF
# run as root (a bench machine): serve keeps root instead of refusing (R22)
[ "$(id -u)" -ne 0 ] || echo "allow_root = yes" >> "$DATA/wharf.conf"
cat > "$WORK/flow.json" <<EOF
{"connectors": [
  {"name": "inbox", "type": "file", "config": {"receive_dir": "$WORK/in"}},
  {"name": "partner", "type": "sftp", "config": {"host": "127.0.0.1",
   "port": $PORT, "user": "root", "key_file": "$WORK/etc/client_key",
   "host_key_sha256": "$FP", "send_dir": "$WORK/srv/wharf"}}],
 "links": [["inbox", "partner"]]}
EOF
"$WHARF" flow import --data "$DATA" "$WORK/flow.json" > "$OUT/import.out"
"$WHARF" serve --data "$DATA" > "$OUT/serve.out" 2>&1 &
WHARF_PID=$!

now() { date +%s.%N; }
results=()
for run in $(seq "$RUNS"); do
  name="big-$run.bin"
  cp "$WORK/payload.bin" "$WORK/in/.$name" && mv "$WORK/in/.$name" "$WORK/in/$name"
  t0=""
  while [ ! -e "$WORK/srv/wharf/$name" ]; do
    if [ -z "$t0" ] && ls -a "$WORK/srv/wharf" | grep -q "^\.$name\..*\.wharf-part$"; then
      t0=$(now)
    fi
    kill -0 "$WHARF_PID" || { echo "sftp_bench: wharf died" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(now)
  cmp -s "$WORK/payload.bin" "$WORK/srv/wharf/$name" || { echo "sftp_bench: wharf's copy differs" >&2; exit 1; }
  ct=$(curl -sS -o /dev/null -w '%{time_total}' --key "$WORK/etc/client_key" --pubkey '' \
        --hostpubsha256 "${FP#SHA256:}" -u root: -T "$WORK/payload.bin" \
        "sftp://127.0.0.1:$PORT$WORK/srv/curl/$name")
  cmp -s "$WORK/payload.bin" "$WORK/srv/curl/$name" || { echo "sftp_bench: curl's copy differs" >&2; exit 1; }
  line=$($PY -c "
mb=$MB; w=$t1-$t0; c=$ct
print(f'run $run: wharf {mb/w:.1f} MB/s ({w:.2f} s), curl {mb/c:.1f} MB/s ({c:.2f} s), ratio {c/w:.2f}')")
  echo "$line" | tee -a "$OUT/result.txt"
  results+=("$line")
  rm -f "$WORK/srv/wharf/$name" "$WORK/srv/curl/$name"
done
echo "sftp_bench: MB = MiB/s; raw output in $OUT"
