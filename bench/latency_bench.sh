#!/usr/bin/env bash
# bench/latency_bench.sh - deliveries to a partner that takes its time to
# answer: the `concurrency` of a destination (issue 14). Release build.
# Also `bench/run.sh latency`. About 1-2 minutes.
#
# A partner over HTTPS on 127.0.0.1 (python3's ThreadingHTTPServer with a
# self-signed certificate from the openssl CLI) answers every POST 200
# after BENCH_LAT_MS (50) ms: the round trip and processing time of a real
# partner across a WAN, which loopback does not have. One Wharf data dir
# (`wharf init`, log level warning, poll_ms 50, nothing else tuned: 2
# workers, batch 256) with the flow outbox (file) -> partner (http), for
# each concurrency in BENCH_LAT_CONC ("1 4 8"): a new data dir, then
# BENCH_LAT_MSGS (400) files of 1 KiB staged and renamed into the outbox;
# the clock runs from the first rename until `wharf message list --state
# sent` counts all of them. The partner counts requests (every file must
# arrive exactly once) and the most in flight at once.
#
# Limit: 2 workers x concurrency requests in flight, each BENCH_LAT_MS
# long: 2 x C x 1000 / BENCH_LAT_MS messages/s (if the batch were split
# evenly over both workers and nothing else took time). Raw output in
# bench/out/<UTC time>-latency/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${BENCH_LAT_MSGS:-400}
DELAY=${BENCH_LAT_MS:-50}
CONCS=${BENCH_LAT_CONC:-1 4 8}
WHARF=$ROOT/build/release/wharf
PY=/usr/bin/python3
OUT=$ROOT/bench/out/$(date -u +%Y%m%dT%H%M%SZ)-latency
WORK=$(mktemp -d /tmp/wharf-latency.XXXXXX)
mkdir -p "$OUT"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

die() { echo "latency_bench: $*" >&2; exit 1; }
make -s release >/dev/null || die "make release failed"
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the partner ---------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$WORK/partner.key" -out "$WORK/partner.pem" >/dev/null 2>&1
PPORT=$(free_port)
cat >"$WORK/partner.py" <<'EOF'
import http.server, json, ssl, sys, threading, time
port, delay, certdir, stats = int(sys.argv[1]), float(sys.argv[2]) / 1000, sys.argv[3], sys.argv[4]
lock = threading.Lock()
st = {"requests": 0, "now": 0, "most": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            st["requests"] += 1; st["now"] += 1; st["most"] = max(st["most"], st["now"])
        time.sleep(delay)
        with lock:
            st["now"] -= 1
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):        # the bench reads and resets the counters
        with lock:
            out = json.dumps(st).encode()
            st.update(requests=0, most=0)
        self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
        self.wfile.write(out)
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
s = S(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(certdir + "/partner.pem", certdir + "/partner.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
EOF
"$PY" "$WORK/partner.py" "$PPORT" "$DELAY" "$WORK" "$OUT/partner.json" &
sleep 1
stats() { curl -s --cacert "$WORK/partner.pem" "https://127.0.0.1:$PPORT/"; }
stats >/dev/null || die "the partner does not answer"

nsent() {
    "$WHARF" message list --data "$1" --state sent --json --limit 1000000 |
        "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))'
}

# ---- one run per concurrency ----------------------------------------------
{
    echo "Wharf latency benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ): $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), load average $(cut -d' ' -f1 /proc/loadavg)"
    echo "command: BENCH_LAT_MSGS=$N BENCH_LAT_MS=$DELAY BENCH_LAT_CONC='$CONCS' bench/latency_bench.sh"
    printf '%-12s %10s %12s %12s %10s %8s\n' concurrency msgs/s limit ratio in-flight requests
} | tee "$OUT/results.txt"
for C in $CONCS; do
    D=$WORK/c$C
    mkdir -p "$D/outbox" "$D/stage"
    "$WHARF" init --data "$D/data" --admin-listen "127.0.0.1:$(free_port)" \
        --partner-listen "127.0.0.1:$(free_port)" --allowed-paths "$D" >"$OUT/init-$C.out" 2>&1
    printf 'log_level = warning\npoll_ms = 50\n' >>"$D/data/wharf.conf"
    [ "$(id -u)" -ne 0 ] || echo "allow_root = yes" >>"$D/data/wharf.conf"
    cat >"$D/flow.json" <<EOF
{"connectors": [
  {"name": "outbox", "type": "file", "config": {"receive_dir": "$D/outbox", "poll_ms": 50}},
  {"name": "partner", "type": "http", "config": {"url": "https://127.0.0.1:$PPORT/in",
   "tls_ca": "$WORK/partner.pem", "concurrency": $C}}],
 "links": [["outbox", "partner"]]}
EOF
    "$WHARF" flow import --data "$D/data" "$D/flow.json" >>"$OUT/import.out" 2>&1 || die "flow import failed"
    for i in $(seq 1 "$N"); do head -c 1024 /dev/urandom >"$D/stage/m$i.edi"; done
    sync
    "$WHARF" serve --data "$D/data" --quiet >"$OUT/serve-$C.out" 2>&1 &
    PID=$!
    sleep 1
    stats >/dev/null
    T0=$(date +%s.%N)
    for i in $(seq 1 "$N"); do mv "$D/stage/m$i.edi" "$D/outbox/"; done
    until [ "$(nsent "$D/data")" -ge "$N" ]; do
        kill -0 $PID 2>/dev/null || die "serve ended (concurrency $C): $(tail -3 "$OUT/serve-$C.out")"
        sleep 0.1
    done
    T1=$(date +%s.%N)
    kill $PID; wait $PID 2>/dev/null || true
    S=$(stats)
    "$PY" - "$N" "$T0" "$T1" "$C" "$DELAY" "$S" <<'EOF' | tee -a "$OUT/results.txt"
import json, sys
n, t0, t1, c, delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = json.loads(sys.argv[6])
rate = n / (t1 - t0)
limit = 2 * c * 1000 / delay
print(f"{c:<12d} {rate:10.1f} {limit:12.1f} {rate / limit:12.2f} {s['most']:10d} {s['requests']:8d}")
if s["requests"] != n:
    sys.exit(f"the partner got {s['requests']} requests for {n} messages")
EOF
done
echo "raw results: ${OUT#"$ROOT"/}/"
