#!/usr/bin/env bash
# bench/as2_bench.sh - AS2 between two Wharf instances on 127.0.0.1
# (partner A sends, partner B receives), each figure beside the limit that
# `openssl speed` (and python3's zlib) give for the same primitives on this
# machine, as a ratio. Release build only. Raw output in
# bench/out/<UTC time>-as2/. Also `bench/run.sh as2`. About 2-3 minutes
# with the defaults (2 cores).
#
# Set-up (like examples/two-partners/run.sh): two data dirs (`wharf init`,
# free 127.0.0.1 ports, log level warning, poll_ms 50), an RSA-2048 key
# and self-signed certificate each (openssl CLI), A's flow outbox (file,
# poll_ms 50) -> as2-b, B's flow as2-a -> inbox (file); each names the
# other as its partner (the other's certificate; the other's listener
# certificate as tls_ca). Both servers are restarted before each part, so
# each process's VmHWM is the peak of that part alone.
#
# (a) small messages: BENCH_AS2_MSGS (500) files of BENCH_AS2_KIB (10) KiB of
#     random bytes (BENCH_AS2_SMALL_DATA=edi: X12 line items, a segment
#     per line), signed (SHA-256, RSA 2048) + encrypted (AES-256-CBC),
#     not compressed, signed synchronous MDN. The files are staged and
#     synced first, then renamed into A's outbox (by one process, in ~5 ms);
#     the clock runs from the first rename until B's inbox holds every
#     file and `wharf message list --state sent` at A counts all of them
#     (the inbox watched with inotify by bench/inbox_wait.py, A's list
#     asked only once the inbox is full; nothing subtracted). Then B's inbox
#     must hold every file at its size, and a sample of 20 of A's messages
#     must show the as2-b hop sent at the first attempt on a signed MDN.
#     CPU ms per message: utime + stime of each server (with its key
#     process) over the timed part. "cores": the whole machine's time over
#     the timed part (/proc/stat), in cores: user, kernel (system, irq),
#     idle, iowait, steal: how full the two cores were, by everyone.
#     Limit: every message costs 3 RSA-2048 private-key operations (A signs
#     the message, B decrypts the content key, B signs the MDN; the public
#     ones - B's verify, A's encrypt to B's key, A's MDN verify - are ~15x
#     cheaper). `openssl speed -seconds 3 rsa2048` gives sign/s on one
#     core, so limit = sign/s x nproc / 3. Also shown: the same with the
#     TLS handshake of every POST (a new connection per message; Wharf's
#     listener key is ECDSA P-256: one ECDSA sign + one X25519 per side),
#     from `openssl speed -seconds 3 ecdsap256 ecdhx25519`.
# (b) one large file: BENCH_AS2_MB (1024) MiB, signed + encrypted +
#     compressed (zlib, before signing), signed synchronous MDN. The data is
#     BENCH_AS2_DATA: "edi" (default: X12 850 purchase orders, a 16 MiB
#     block of generated orders over a catalogue of 700 items and 200
#     stores, repeated behind a changing ISA/GS header: deflate's 32 KiB
#     window never sees the repetition; zlib gets it to ~23%) or "random"
#     (incompressible: every stage sees every byte). Timed: drop -> "sent"
#     at A (end to end), and the AS2 leg alone (A's events "queued for
#     as2-b" -> "sent by as2-b": package, POST, B's unpack and intake,
#     MDN). Peak RSS: VmHWM of both `wharf serve` processes just before
#     SIGTERM, and VmRSS + CPU ticks of both sampled every 0.5 s (rss.tsv).
#     B's inbox copy must have the size and the SHA-256 that A recorded at
#     intake (untimed).
#     Limits: `openssl speed -evp aes-256-cbc` (encrypt; and -decrypt),
#     `-evp sha256` at 16 KiB blocks (Wharf's chunk), python3 zlib at BENCH_AS2_ZLEVEL
#     deflate / inflate of the first 64 MiB of the same data; each scaled to
#     the bytes it sees (after compression only the compressed bytes are
#     signed and encrypted). A's chain: vault read (AES-256-GCM decrypt),
#     deflate, SHA-256, AES-256-CBC encrypt; B's: AES-256-CBC decrypt,
#     SHA-256, inflate, vault write (AES-256-GCM encrypt + SHA-256 of the
#     plaintext). "slowest stage" assumes every stage on its own core and
#     all overlapped; "one thread" is A's chain then B's, one step after
#     another (what a sender that packages into a temp file before it
#     POSTs gets at best: the partner's "chunked": false; by default A
#     streams the body into the POST as it is packaged, so B's work
#     overlaps A's). BENCH_AS2_COMPRESS=no sends (b) uncompressed (no
#     deflate/inflate stage; every stage sees every byte).
# (c) mixed load (BENCH_AS2_PARTS=mixed; not in the default run): a third
#     instance C, another partner of A (its own AS2 id, key and listener).
#     A sends BENCH_AS2_MSGS files of BENCH_AS2_KIB KiB to C alone (as in
#     (a)), then the same count again while one BENCH_AS2_MB MiB file goes
#     to B (dropped first; the small ones once A is sending it). Figure:
#     the small messages' rate with the large transfer running, over their
#     rate alone (aim: >= 0.7). The large transfer must still be running
#     when the last small message is sent, else the run says so.
#
# Environment: BENCH_AS2_MSGS (500), BENCH_AS2_KIB (10), BENCH_AS2_MB (1024),
# BENCH_AS2_DATA (edi|random), BENCH_AS2_SMALL_DATA (random|edi), BENCH_AS2_PARTS ("small large"; "mixed" for (c)),
# BENCH_AS2_MDN (sync): sync or async (the MDN comes back in its own POST
# to the sender's listener; "sent" at A once it arrived and verified),
# BENCH_AS2_COMPRESS (yes|no): compression in (b),
# BENCH_AS2_ZLEVEL (6): the partners' compress_level in (b) (unset: not
# written, Wharf's default 6, so a build older than the key runs too) and
# the level of the python3 zlib limit, BENCH_AS2_KEEP=1 keeps the work dir,
# BENCH_AS2_CONF: lines appended to
# both wharf.conf files, for diagnostics (e.g. 'workers = 8\nbatch = 1');
# BENCH_AS2_CONF_A, BENCH_AS2_CONF_B (and _C): lines for one side's only,
# after those (e.g. BENCH_AS2_CONF_B='batch = 64');
# BENCH_AS2_CONC: the as2 connectors' `concurrency` (default: the
# connector's, 8), for diagnostics; A's workers x concurrency must fit
# what B accepts from one address (BENCH_AS2_CONF_B's
# max_conns_per_address, default 16);
# BENCH_AS2_INBOX_CONC: B's inbox (the file destination) `concurrency`
# (default: the file connector's, 1), for diagnostics;
# BENCH_AS2_PAYLOADS=tmpfs: each side's payload_dir is a fresh folder in
# /dev/shm (removed after the run): diagnostics, the most that keeping
# payloads off the disk's file system (no inode, no sync that writes)
# could give; not a configuration to run (payloads in RAM are lost at a
# power cut).
# the default run tunes nothing but log_level and poll_ms.
# BENCH_AS2_STRACE=1: count the sync calls, thread starts (clone) and
# context switches of A and B (perf stat) during (a), into syncs-a.txt and syncs-b.txt, and the
# requests their key processes answered (one write each), into
# keyops-a.txt and keyops-b.txt (diagnostics). BENCH_AS2_PERF=1: perf record -g of both
# servers during (a), into perf-a.data and perf-b.data; BENCH_AS2_PERF=dwarf:
# the same with DWARF call graphs (the release build has no frame pointers);
# BENCH_AS2_PERF_HZ: their sampling rate (299 for dwarf, 999 otherwise);
# BENCH_AS2_PERF=switches: every context switch, with DWARF call graphs;
# BENCH_AS2_PERF=syncs: every fsync and fdatasync, with DWARF call graphs.
# BENCH_AS2_PERF=pages: every pread64 and pwrite64 (SQLite's page reads
# and writes, the payloads' reads), with DWARF call graphs.
# BENCH_AS2_PERF_KEYPROC=1 with BENCH_AS2_PERF: the key processes too
# (perf-ka.data, perf-kb.data).
# BENCH_AS2_PERF=trace: each server's system calls, counted and timed per
# thread (perf trace -s), into trace-a.txt and trace-b.txt.
# BENCH_AS2_PERF=system: the whole machine, kernel and kernel threads
# included (perf record -a -g), into perf-all.data.
# BENCH_AS2_PERF=wakers: every switch and wake-up on the whole machine
# (sched:sched_switch, sched:sched_waking, -a -g), into perf-wakers.data,
# for bench/idle_wakers.py (what ended each idle period).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${BENCH_AS2_MSGS:-500}
KIB=${BENCH_AS2_KIB:-10}
MB=${BENCH_AS2_MB:-1024}
KIND=${BENCH_AS2_DATA:-edi}
SMALL_KIND=${BENCH_AS2_SMALL_DATA:-random}
ZLEVEL=${BENCH_AS2_ZLEVEL:-6}
MDN=${BENCH_AS2_MDN:-sync}
COMPRESS=${BENCH_AS2_COMPRESS:-yes}
PARTS=${BENCH_AS2_PARTS:-small large}
WHARF=${BENCH_WHARF:-$ROOT/build/release/wharf}   # BENCH_WHARF: another build (before/after)
PY=/usr/bin/python3
RSS_AIM_KIB=$((64 * 1024))

die() { echo "as2_bench: $*" >&2; exit 1; }
note() { echo "as2_bench: $*" >&2; }
for tool in openssl "$PY"; do
    command -v "$tool" >/dev/null || die "$tool is needed (scripts/deps.sh installs it)"
done
case $KIND in edi|random) ;; *) die "BENCH_AS2_DATA must be edi or random" ;; esac
case $SMALL_KIND in edi|random) ;; *) die "BENCH_AS2_SMALL_DATA must be edi or random" ;; esac
case $COMPRESS in yes|no) ;; *) die "BENCH_AS2_COMPRESS must be yes or no" ;; esac
make --no-print-directory -s -j2 build/release/wharf

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/$STAMP-as2
mkdir -p "$OUT"
WORK=$(mktemp -d "${BENCH_AS2_TMP:-/tmp}/wharf-as2-bench-XXXXXX")
RES=$OUT/results.txt
: >"$RES"
put() { echo "$1 $2" >>"$RES"; }
get() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$RES"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "") print "-"; else printf "%.2f", a / b }'; }
PID_A=""
PID_B=""
PID_C=""
SAMPLER=""
cleanup() {
    local rc=$?
    for pid in $SAMPLER $PID_A $PID_B $PID_C; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ "${BENCH_AS2_KEEP:-0}" = 1 ] && note "work dir kept: $WORK" || rm -rf "$WORK"
    rm -rf /dev/shm/wharf-as2-bench-$$-*
    exit "$rc"
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on port $1"
}
alive() { kill -0 "$PID_A" 2>/dev/null && kill -0 "$PID_B" 2>/dev/null; }
nsent() {       # messages "sent" at A (grep, not python3: the check runs
                # every 100 ms and a python3 start costs ~0.1 s of CPU)
    "$WHARF" message list --data "$WORK/a/data" --state sent --json --limit 1000000 |
        grep -c '^    "state": "sent"' || true
}
# The clock's end: a folder holds N files, told by bench/inbox_wait.py
# (inotify: no check every 100 ms, which took about 5% of the two cores
# the servers run on). A's `message list` (a JSON of every message, 10-40
# ms of CPU at 2,000) is asked only after it.
# inbox_watch DIR PREFIX SUFFIX N TIMEOUT_S PID...: the watch is up on return
inbox_watch() {
    rm -f "$WORK/waiter.ready"
    "$PY" "$ROOT/bench/inbox_wait.py" "$1" "$2" "$3" "$4" "$5" "$WORK/waiter.ready" "${@:6}" &
    WAITER=$!
    until [ -e "$WORK/waiter.ready" ]; do
        kill -0 "$WAITER" 2>/dev/null || die "bench/inbox_wait.py did not start"
        sleep 0.01
    done
}
# inbox_waited WHAT HINT: the watched folder is full, or die saying why
inbox_waited() {
    local rc=0
    wait "$WAITER" || rc=$?
    case $rc in
        0) ;;
        2) die "$1: a server died ($2)" ;;
        3) die "$1: timed out" ;;
        *) die "$1: bench/inbox_wait.py failed ($rc)" ;;
    esac
}
# utime + stime of a server and its children (serve's key processes)
ticks() {
    local t=0 p
    for p in "$1" $(awk -v pp="$1" '$4 == pp { print $1 }' /proc/[0-9]*/stat 2>/dev/null); do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
# the same for its children alone (the key processes, which make the
# private-key operations)
ticks_kp() { echo $(($(ticks "$1") - $(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0))); }
# the machine's CPU ticks (/proc/stat): user+nice, system+irq+softirq,
# idle, iowait, steal
machine_ticks() { awk '/^cpu / { print $2 + $3, $4 + $7 + $8, $5, $6, $9 }' /proc/stat; }
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo -1; }

# ---- the machine --------------------------------------------------------------
{
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc $(nproc)"
    echo "cpu $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "kernel $(uname -r)"
    echo "openssl $(openssl version)"
    echo "zlib $("$PY" -c 'import zlib; print(zlib.ZLIB_RUNTIME_VERSION)')"
    echo "version $("$WHARF" version 2>/dev/null | head -1)"
    echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command bench/as2_bench.sh, BENCH_AS2_MSGS=$N BENCH_AS2_KIB=$KIB BENCH_AS2_MB=$MB BENCH_AS2_DATA=$KIND BENCH_AS2_SMALL_DATA=$SMALL_KIND BENCH_AS2_COMPRESS=$COMPRESS BENCH_AS2_ZLEVEL=${BENCH_AS2_ZLEVEL:-} BENCH_AS2_MDN=$MDN BENCH_WHARF=$WHARF BENCH_AS2_CONF='${BENCH_AS2_CONF:-}' BENCH_AS2_CONF_A='${BENCH_AS2_CONF_A:-}' BENCH_AS2_CONF_B='${BENCH_AS2_CONF_B:-}' BENCH_AS2_CONF_C='${BENCH_AS2_CONF_C:-}' BENCH_AS2_PAYLOADS=${BENCH_AS2_PAYLOADS:-}"
} >"$OUT/machine.txt"
note "machine: $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(openssl version | cut -d' ' -f1-2)"

# ---- two partners ---------------------------------------------------------------
declare -A ADMIN PARTNER
INSTANCES="a b"
[[ " $PARTS " != *" mixed "* ]] || INSTANCES="a b c"
for s in $INSTANCES; do
    mkdir -p "$WORK/$s"
    ADMIN[$s]=$(free_port)
    PARTNER[$s]=$(free_port)
    "$WHARF" init --data "$WORK/$s/data" --admin-listen "127.0.0.1:${ADMIN[$s]}" \
        --partner-listen "127.0.0.1:${PARTNER[$s]}" --allowed-paths "$WORK/$s" \
        >"$OUT/init-$s.out" 2>&1
    printf 'log_level = warning\npoll_ms = 50\n' >>"$WORK/$s/data/wharf.conf"
    # run as root (a bench machine): serve keeps root instead of refusing (R22)
    [ "$(id -u)" -ne 0 ] || echo "allow_root = yes" >> "$WORK/$s/data/wharf.conf"
    [ -z "${BENCH_AS2_CONF:-}" ] || printf '%b\n' "$BENCH_AS2_CONF" >>"$WORK/$s/data/wharf.conf"
    if [ "${BENCH_AS2_PAYLOADS:-}" = tmpfs ]; then
        mkdir -m 700 "/dev/shm/wharf-as2-bench-$$-$s"
        echo "payload_dir = /dev/shm/wharf-as2-bench-$$-$s" >>"$WORK/$s/data/wharf.conf"
    fi
    one="BENCH_AS2_CONF_${s^^}"
    [ -z "${!one:-}" ] || printf '%b\n' "${!one}" >>"$WORK/$s/data/wharf.conf"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 -subj "/CN=wharf-$s" \
        -keyout "$WORK/$s/as2.key" -out "$WORK/$s/as2.pem" >/dev/null 2>&1
    chmod 600 "$WORK/$s/as2.key"
done
mkdir -p "$WORK/a/outbox" "$WORK/b/inbox" "$WORK/stage"
[[ " $PARTS " != *" mixed "* ]] || mkdir -p "$WORK/a/outbox-small" "$WORK/c/inbox"

import_flows() {    # COMPRESS (true|false)
    local me other file link MDN_URL conc zlevel
    for me in a b; do
        MDN_URL=""      # asynchronous MDNs come back to the sender's listener
        [ "$MDN" = sync ] || MDN_URL=", \"async_mdn_url\": \"https://127.0.0.1:${PARTNER[$me]}/as2/mdn\""
        if [ "$me" = a ]; then
            other=b
            file="{\"name\": \"outbox\", \"type\": \"file\", \"config\": {\"receive_dir\": \"$WORK/a/outbox\", \"poll_ms\": 50}}"
            link='["outbox", "as2-b"]'
        else
            other=a
            file="{\"name\": \"inbox\", \"type\": \"file\", \"config\": {\"send_dir\": \"$WORK/b/inbox\"${BENCH_AS2_INBOX_CONC:+, \"concurrency\": $BENCH_AS2_INBOX_CONC}}}"
            link='["as2-a", "inbox"]'
        fi
        zlevel=""   # BENCH_AS2_ZLEVEL (unset: Wharf's default, 6, which builds
                    # older than compress_level take too)
        [ -z "${BENCH_AS2_ZLEVEL:-}" ] || zlevel=" \"compress_level\": $ZLEVEL,"
        conc=""     # BENCH_AS2_CONC: the as2 connectors' concurrency
        [ -z "${BENCH_AS2_CONC:-}" ] || conc=" \"concurrency\": $BENCH_AS2_CONC,"
        cat >"$WORK/$me/flow.json" <<EOF
{"profile": {"as2_id": "wharf-$me",
             "keys": [{"cert": "$WORK/$me/as2.pem", "key": "$WORK/$me/as2.key"}]},
 "partners": [{"name": "$other", "as2_id": "wharf-$other",
               "url": "https://127.0.0.1:${PARTNER[$other]}/as2",
               "certificates": ["$WORK/$other/as2.pem"],
               "tls_ca": "$WORK/$other/data/tls/cert.pem",
               "sign": "sha256", "encrypt": "aes256-cbc", "compress": $1,$zlevel
               "mdn": "$MDN", "mdn_signed": true$MDN_URL}],
 "connectors": [$file,
   {"name": "as2-$other", "type": "as2",
    "config": {"partner": "$other", "timeout_ms": 3600000,$conc
               "max_body_bytes": 8589934592,
               "retry": {"initial_ms": 1000, "max_ms": 5000, "max_attempts": 5}}}],
 "links": [$link]}
EOF
        "$WHARF" flow import --data "$WORK/$me/data" "$WORK/$me/flow.json" >>"$OUT/import.out" 2>&1 ||
            die "flow import ($me) failed: $(tail -3 "$OUT/import.out")"
    done
}
start_servers() {   # LABEL
    "$WHARF" serve --data "$WORK/a/data" --quiet >"$OUT/serve-a-$1.out" 2>&1 &
    PID_A=$!
    "$WHARF" serve --data "$WORK/b/data" --quiet >"$OUT/serve-b-$1.out" 2>&1 &
    PID_B=$!
    for s in a b; do wait_port "${ADMIN[$s]}"; wait_port "${PARTNER[$s]}"; done
}
stop_servers() {    # LABEL: VmHWM of both into results, SIGTERM, exit 0 required
    local s pid rc
    put "$1_a_peak_rss_kib" "$(hwm "$PID_A")"
    put "$1_b_peak_rss_kib" "$(hwm "$PID_B")"
    for s in a b; do
        pid=$([ "$s" = a ] && echo "$PID_A" || echo "$PID_B")
        kill -TERM "$pid"
        rc=0
        wait "$pid" || rc=$?
        [ "$rc" = 0 ] || die "serve ($s) exited $rc after SIGTERM (see $OUT/serve-$s-$1.out)"
    done
    PID_A=""
    PID_B=""
    for s in a b; do cp "$WORK/$s/data/logs/wharf.log" "$OUT/wharf-$s-$1.log"; done
}

make_big() {        # PATH: BENCH_AS2_MB MiB of BENCH_AS2_DATA
    "$PY" - "$1" "$MB" "$KIND" <<'PYEOF'
import os, random, sys
path, mb, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
total = mb << 20
with open(path, "wb") as f:
    if kind == "random":
        left = total
        while left:
            k = min(left, 1 << 24)
            f.write(os.urandom(k))
            left -= k
    else:
        rnd = random.Random(4130)
        items = [("%s-%d" % (rnd.choice(["WIDGET", "GASKET", "BOLT", "VALVE", "HOSE"]), i),
                  "%012d" % rnd.randrange(10**12),
                  "%d.%02d" % (rnd.randrange(1, 300), rnd.randrange(100))) for i in range(700)]
        stores = [("STORE %d" % rnd.randrange(5000), "%07d" % rnd.randrange(10**7))
                  for _ in range(200)]
        segs, size, po = [], 0, 4500000000
        while size < (16 << 20):
            po += rnd.randrange(1, 20)
            s = ["ST*850*%04d~" % (len(segs) % 10000),
                 "BEG*00*SA*%d**2026%02d%02d~" % (po, rnd.randrange(1, 13), rnd.randrange(1, 29)),
                 "REF*DP*%03d~" % rnd.randrange(1, 60),
                 "N1*ST*%s*92*%s~" % rnd.choice(stores)]
            for i in range(rnd.randrange(1, 12)):
                it = rnd.choice(items)
                s.append("PO1*%d*%d*EA*%s**VP*%s*UP*%s~" % (i + 1, rnd.randrange(1, 50) * 6,
                                                           it[2], it[0], it[1]))
            s.append("CTT*%d~" % (len(s) - 4))
            s.append("SE*%d*%04d~" % (len(s) + 1, len(segs) % 10000))
            block = "\n".join(s) + "\n"
            segs.append(block)
            size += len(block)
        body = "".join(segs).encode()
        n = 0
        left = total
        while left:
            head = ("ISA*00*          *00*          *ZZ*WHARF-A        *ZZ*WHARF-B        "
                    "*261123*1200*U*00401*%09d*0*P*>~\nGS*PO*WHARF-A*WHARF-B*20261123*1200*%d*X*004010~\n"
                    % (n, n)).encode()
            chunk = (head + body)[:left]
            f.write(chunk)
            left -= len(chunk)
            n += 1
    f.flush()
    os.fsync(f.fileno())
PYEOF
}

# ---- limits -------------------------------------------------------------------------
note "openssl speed -seconds 3 rsa2048 (one core), then -multi $(nproc)"
openssl speed -seconds 3 rsa2048 >"$OUT/openssl-rsa2048.txt" 2>&1
openssl speed -seconds 3 -multi "$(nproc)" rsa2048 >"$OUT/openssl-rsa2048-multi.txt" 2>&1
rsa() { awk '/^rsa 2048 bits/ { s = $6; v = $7 } END { print s, v }' "$1"; }
read -r SIGN1 VERIFY1 <<<"$(rsa "$OUT/openssl-rsa2048.txt")"
read -r SIGNM _ <<<"$(rsa "$OUT/openssl-rsa2048-multi.txt")"
put rsa2048_sign_per_s "$SIGN1"
put rsa2048_verify_per_s "$VERIFY1"
put rsa2048_sign_per_s_multi "$SIGNM"
note "openssl speed -seconds 3 ecdsap256 ecdhx25519 (the TLS handshake of each POST)"
openssl speed -seconds 3 ecdsap256 ecdhx25519 >"$OUT/openssl-tls.txt" 2>&1
put ecdsap256_sign_per_s "$(awk '/^ *256 bits ecdsa \(nistp256\)/ { print $7 }' "$OUT/openssl-tls.txt")"
put x25519_per_s "$(awk '/^ *253 bits ecdh \(X25519\)/ { print $NF }' "$OUT/openssl-tls.txt")"
ossl() {            # label alg [options]: MB/s at 16 KiB blocks
    local log=$OUT/openssl-$1.txt alg=$2
    shift 2
    openssl speed -evp "$alg" "$@" -bytes 16384 -seconds 3 >"$log" 2>&1 ||
        die "openssl speed failed (see $log)"
    awk -v a="$alg" 'tolower($1) == a { v = $2; sub(/k$/, "", v); printf "%.1f\n", v / 1000 }' "$log"
}
if [[ " $PARTS " == *" large "* ]]; then
    note "openssl speed -evp aes-256-cbc (encrypt, decrypt), sha256, aes-256-gcm: 16 KiB blocks, 3 s"
    put cbc_enc_MBps "$(ossl cbc-enc aes-256-cbc)"
    put cbc_dec_MBps "$(ossl cbc-dec aes-256-cbc -decrypt)"
    put sha256_MBps "$(ossl sha256 sha256)"
    put gcm_enc_MBps "$(ossl gcm-enc aes-256-gcm)"
    put gcm_dec_MBps "$(ossl gcm-dec aes-256-gcm -decrypt)"
fi

# ---- (a) small messages ----------------------------------------------------------------
if [[ " $PARTS " == *" small "* ]]; then
    note "(a) $N messages of $KIB KiB: signed + encrypted, signed $MDN MDN"
    import_flows false
    "$PY" - "$WORK/stage" "$N" "$((KIB * 1024))" "$SMALL_KIND" <<'PYEOF'
import os, random, sys
d, n, size, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rnd = random.Random(850)

def edi(size):     # X12 850 line items, one segment per line
    out, k = [], 0
    while k < size:
        line = "PO1*%d*%d*EA*%d.%02d**VP*%s-%d*UP*%012d~\n" % (
            rnd.randrange(1, 12), rnd.randrange(1, 50) * 6, rnd.randrange(1, 300),
            rnd.randrange(100), rnd.choice(["WIDGET", "GASKET", "BOLT"]),
            rnd.randrange(700), rnd.randrange(10**12))
        out.append(line)
        k += len(line)
    return "".join(out).encode()[:size]

for i in range(n):
    with open(os.path.join(d, "msg-%06d.bin" % i), "wb") as f:
        f.write(edi(size) if kind == "edi" else os.urandom(size))
os.sync()
PYEOF
    start_servers small
    sleep 1         # both flows loaded (the listeners are up before)
    base=$(nsent)
    if [ -n "${BENCH_AS2_STRACE:-}" ]; then   # diagnostics: sync calls, switches
        ev=syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_syncfs,syscalls:sys_enter_clock_nanosleep,syscalls:sys_enter_clone,syscalls:sys_enter_clone3,context-switches
        perf stat -e "$ev" -o "$OUT/syncs-b.txt" -p "$PID_B" &
        STRACE=$!
        perf stat -e "$ev" -o "$OUT/syncs-a.txt" -p "$PID_A" &
        STRACE_A=$!
        KP_A=$(pgrep -d, -P "$PID_A") KP_B=$(pgrep -d, -P "$PID_B")  # all of them
        kev=syscalls:sys_enter_write,context-switches
        perf stat -e "$kev" -o "$OUT/keyops-a.txt" -p "$KP_A" &
        STRACE_KA=$!
        perf stat -e "$kev" -o "$OUT/keyops-b.txt" -p "$KP_B" &
        STRACE_KB=$!
        sleep 1
    fi
    if [ -n "${BENCH_AS2_PERF:-}" ]; then     # diagnostics: where the CPU goes
        # dwarf: call graphs through the release build (no frame pointers)
        if [ "$BENCH_AS2_PERF" = dwarf ]; then cg="-F ${BENCH_AS2_PERF_HZ:-299} --call-graph dwarf,16384"; else cg="-F ${BENCH_AS2_PERF_HZ:-999} -g"; fi
        # switches: every context switch with where it happened (no rate)
        [ "$BENCH_AS2_PERF" != switches ] || cg="-e context-switches -c 1 --call-graph dwarf,16384"
        # syncs: every fsync and fdatasync, with where it was called
        [ "$BENCH_AS2_PERF" != syncs ] || cg="-e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -c 1 --call-graph dwarf,16384"
        # pages: every pread64 and pwrite64 (SQLite's pages), with where
        [ "$BENCH_AS2_PERF" != pages ] || cg="-e syscalls:sys_enter_pread64,syscalls:sys_enter_pwrite64 -c 1 --call-graph dwarf,16384"
        if [ "$BENCH_AS2_PERF" = trace ]; then  # system calls: count and time
            perf trace -s -o "$OUT/trace-a.txt" -p "$PID_A" >/dev/null 2>&1 &
            PERF_A=$!
            perf trace -s -o "$OUT/trace-b.txt" -p "$PID_B" >/dev/null 2>&1 &
            PERF_B=$!
        elif [ "$BENCH_AS2_PERF" = system ]; then   # every CPU, kernel too
            perf record -a -g -F "${BENCH_AS2_PERF_HZ:-999}" -o "$OUT/perf-all.data" >/dev/null 2>&1 &
            PERF_A=$!
            PERF_B=$!
        elif [ "$BENCH_AS2_PERF" = wakers ]; then   # who ended each idle
            perf record -a -g -e sched:sched_switch -e sched:sched_waking -o "$OUT/perf-wakers.data" >/dev/null 2>&1 &
            PERF_A=$!
            PERF_B=$!
        else
            perf record $cg -o "$OUT/perf-a.data" -p "$PID_A" >/dev/null 2>&1 &
            PERF_A=$!
            perf record $cg -o "$OUT/perf-b.data" -p "$PID_B" >/dev/null 2>&1 &
            PERF_B=$!
        fi
        PERF_K=""
        if [ -n "${BENCH_AS2_PERF_KEYPROC:-}" ]; then   # the key processes too
            perf record $cg -o "$OUT/perf-ka.data" -p "$(pgrep -d, -P "$PID_A")" >/dev/null 2>&1 &
            PERF_K=$!
            perf record $cg -o "$OUT/perf-kb.data" -p "$(pgrep -d, -P "$PID_B")" >/dev/null 2>&1 &
            PERF_K="$PERF_K $!"
        fi
        sleep 1
    fi
    # B's inbox watched (inotify) before the clock starts
    inbox_watch "$WORK/b/inbox" msg- .bin "$N" 1800 "$PID_A" "$PID_B"
    ca=$(ticks "$PID_A") cb=$(ticks "$PID_B")
    ka=$(ticks_kp "$PID_A") kb=$(ticks_kp "$PID_B")
    m0=$(machine_ticks)
    t0=$(date +%s.%N)
    # one process renames them all (a mv per file took ~1 s for 500 on a
    # busy machine: the drop itself bounded the rate)
    "$PY" -c 'import os, sys
for f in sorted(os.listdir(sys.argv[1])):
    os.rename(os.path.join(sys.argv[1], f), os.path.join(sys.argv[2], f))' "$WORK/stage" "$WORK/a/outbox"
    inbox_waited "(a)" "see $OUT/serve-*-small.out"
    while [ "$(nsent)" -lt "$((base + N))" ]; do
        alive || die "a server died (see $OUT/serve-*-small.out)"
        sleep 0.1
    done
    t1=$(date +%s.%N)
    m1=$(machine_ticks)
    [ -z "${BENCH_AS2_STRACE:-}" ] || { kill -INT "$STRACE" "$STRACE_A" "$STRACE_KA" "$STRACE_KB"; wait "$STRACE" "$STRACE_A" "$STRACE_KA" "$STRACE_KB" || true; }
    # shellcheck disable=SC2086  # PERF_K: two pids or none
    [ -z "${BENCH_AS2_PERF:-}" ] || { kill -INT "$PERF_A" "$PERF_B" $PERF_K 2>/dev/null; wait "$PERF_A" "$PERF_B" $PERF_K 2>/dev/null || true; }
    HZ=$(getconf CLK_TCK)
    put small_cpu_ms_per_msg_a "$(awk -v a="$ca" -v b="$(ticks "$PID_A")" -v n="$N" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) * 1000 / hz / n }')"
    put small_cpu_ms_per_msg_b "$(awk -v a="$cb" -v b="$(ticks "$PID_B")" -v n="$N" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) * 1000 / hz / n }')"
    # how full the machine was (every process, kernel threads included),
    # in cores: user / kernel (system, irq) / idle / iowait / steal
    put small_machine_cores "$(awk -v a="$m0" -v b="$m1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN {
        split(a, x, " "); split(b, y, " "); s = (t1 - t0) * hz
        printf "%.2f/%.2f/%.2f/%.2f/%.2f", (y[1] - x[1]) / s, (y[2] - x[2]) / s, (y[3] - x[3]) / s, (y[4] - x[4]) / s, (y[5] - x[5]) / s }')"
    put small_keyproc_ms_per_msg_a "$(awk -v a="$ka" -v b="$(ticks_kp "$PID_A")" -v n="$N" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) * 1000 / hz / n }')"
    put small_keyproc_ms_per_msg_b "$(awk -v a="$kb" -v b="$(ticks_kp "$PID_B")" -v n="$N" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) * 1000 / hz / n }')"
    put small_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    put small_clock "$t0 $t1"    # the clock's start and end (epoch seconds), for the servers' logs
    put small_msgs_per_s "$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN { printf "%.1f", n / (b - a) }')"
    # B's inbox (every file there: the clock waited for it): each at its size.
    "$PY" - "$WORK/b/inbox" "$N" "$((KIB * 1024))" "$WORK/a/data" "$WHARF" "$MDN" <<'PYEOF' >>"$RES"
import json, os, subprocess, sys
d, n, size, adata, wharf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
asy = sys.argv[6] == "async"
names = sorted(f for f in os.listdir(d) if f.startswith("msg-"))
ok = len(names) == n and all(os.path.getsize(os.path.join(d, f)) == size for f in names)
# the MIC and the signed MDN were checked by A for every "sent" hop; sample the receipts
ms = json.loads(subprocess.run([wharf, "message", "list", "--data", adata, "--json",
                                "--limit", "1000000"], capture_output=True, text=True).stdout)
for m in ms[:: max(1, len(ms) // 20)]:
    j = json.loads(subprocess.run([wharf, "message", "show", "--data", adata, "--json", m["id"]],
                                  capture_output=True, text=True).stdout)
    h = [h for h in j["hops"] if h["connector"] == "as2-b"][0]
    # an asynchronous MDN settles the hop through its job: no attempt counted
    ok = ok and h["state"] == "sent" and h["attempts"] == (0 if asy else 1) and \
        (h["receipt"] or "").startswith("MDN processed (signed)")
print("small_verified", "ok" if ok else "FAILED")
PYEOF
    stop_servers small
    [ "$(get small_verified)" = ok ] || die "(a) verification failed"
    rm -rf "${WORK:?}/b/inbox"/*
fi

# ---- (b) one large file -------------------------------------------------------------------
if [[ " $PARTS " == *" large "* ]]; then
    BIG=$WORK/stage/big-$MB.$KIND
    note "(b) making a $MB MiB file ($KIND)"
    make_big "$BIG"
    note "python3 zlib level $ZLEVEL: deflate and inflate of the first 64 MiB of it"
    [ "$COMPRESS" = yes ] && "$PY" - "$BIG" "$ZLEVEL" <<'PYEOF' >>"$RES"
import sys, time, zlib
with open(sys.argv[1], "rb") as f:
    data = f.read(64 << 20)
chunk = 1 << 16
t = time.process_time()
c = zlib.compressobj(int(sys.argv[2]))
parts = [c.compress(data[i:i + chunk]) for i in range(0, len(data), chunk)]
parts.append(c.flush())
dt = time.process_time() - t
z = b"".join(parts)
t = time.process_time()
d = zlib.decompressobj()
n = 0
for i in range(0, len(z), chunk):
    n += len(d.decompress(z[i:i + chunk]))
n += len(d.flush())
di = time.process_time() - t
assert n == len(data)
print("zlib_deflate_MBps %.1f" % (len(data) / dt / 1e6))
print("zlib_inflate_MBps %.1f" % (len(data) / di / 1e6))
print("zlib_ratio %.4f" % (len(z) / len(data)))
PYEOF
    import_flows "$([ "$COMPRESS" = yes ] && echo true || echo false)"
    start_servers large
    sleep 1
    # VmRSS (KiB) and utime+stime (ticks) of both servers every 0.5 s.
    (
        printf 't_s\ta_rss_kib\tb_rss_kib\ta_cpu_ticks\tb_cpu_ticks\n'
        t0=$(date +%s.%N)
        while :; do
            line=$(date +%s.%N)
            for pid in $PID_A $PID_B; do
                line="$line $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo -)"
            done
            for pid in $PID_A $PID_B; do
                line="$line $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo -)"
            done
            echo "$line" | awk -v t0="$t0" '{ $1 = sprintf("%.1f", $1 - t0); print }' OFS='\t'
            sleep 0.5
        done
    ) >"$OUT/rss.tsv" &
    SAMPLER=$!
    base=$(nsent)
    t0=$(date +%s.%N)
    mv "$BIG" "$WORK/a/outbox/big.dat"
    while [ "$(nsent)" -le "$base" ]; do
        alive || die "a server died (see $OUT/serve-*-large.out)"
        awk -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN { exit !(now - t0 > 3600) }' &&
            die "(b) timed out after 3600 s"
        sleep 0.1
    done
    t1=$(date +%s.%N)
    put large_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    ID=$("$WHARF" message list --data "$WORK/a/data" --json --limit 1000000 |
         "$PY" -c 'import json, sys; print([m["id"] for m in json.load(sys.stdin) if m["filename"] == "big.dat"][0])')
    "$WHARF" message show --data "$WORK/a/data" --json "$ID" >"$OUT/large-a-message.json"
    "$PY" - "$OUT/large-a-message.json" "$MB" "$t0" <<'PYEOF' >>"$RES"
import json, sys
m, mb, t0 = json.load(open(sys.argv[1])), int(sys.argv[2]), float(sys.argv[3])
ev = m["events"]
def at(prefix):
    return [e["at"] for e in ev if e["text"].startswith(prefix)][-1] / 1000.0
queued, sent = at("queued for as2-b"), at("sent by as2-b")
h = [h for h in m["hops"] if h["connector"] == "as2-b"][0]
print("large_intake_s %.3f" % (at("received by outbox") - t0))
print("large_as2_s %.3f" % (sent - queued))
print("large_as2_MBps %.1f" % (mb * 1.048576 / (sent - queued)))
print("large_e2e_MBps %.1f" % (mb * 1.048576 / (sent - t0)))
print("large_as2_attempts %d" % h["attempts"])
print("large_receipt_ok %s" % ("ok" if h["state"] == "sent" and
      (h["receipt"] or "").startswith("MDN processed (signed)") else "FAILED"))
PYEOF
    # B's copy (written to the inbox after B answered; not timed).
    for _ in $(seq 1 6000); do
        [ -f "$WORK/b/inbox/big.dat" ] && ! compgen -G "$WORK/b/inbox/.big*" >/dev/null && break
        sleep 0.1
    done
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
    put large_rss_max_a_kib "$(awk 'NR > 1 && $2 != "-" && $2 > m { m = $2 } END { print m + 0 }' "$OUT/rss.tsv")"
    put large_rss_max_b_kib "$(awk 'NR > 1 && $3 != "-" && $3 > m { m = $3 } END { print m + 0 }' "$OUT/rss.tsv")"
    stop_servers large
    note "comparing B's copy with the original"
    # The original left A's outbox when A took it: its SHA-256 is in A's
    # message (computed at intake), B's copy must have the same.
    want=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["sha256"])' "$OUT/large-a-message.json")
    got=$(sha256sum "$WORK/b/inbox/big.dat" | cut -d' ' -f1)
    size=$(stat -c %s "$WORK/b/inbox/big.dat")
    [ "$want" = "$got" ] && [ "$size" = $((MB << 20)) ] &&
        put large_verified ok || put large_verified FAILED
fi

# ---- (c) mixed load --------------------------------------------------------------------
import_mixed_flows() {  # COMPRESS (true|false) of the large file to B
    "$PY" - "$WORK" "$1" "${BENCH_AS2_ZLEVEL:-}" "$MDN" "${PARTNER[a]}" "${PARTNER[b]}" "${PARTNER[c]}" <<'PYEOF'
import json, sys
work, comp, zl, mdn = sys.argv[1], sys.argv[2] == "true", sys.argv[3], sys.argv[4]
port = dict(zip("abc", map(int, sys.argv[5:8])))
def partner(me, other, compress):
    p = {"name": other, "as2_id": "wharf-" + other,
         "url": "https://127.0.0.1:%d/as2" % port[other],
         "certificates": ["%s/%s/as2.pem" % (work, other)],
         "tls_ca": "%s/%s/data/tls/cert.pem" % (work, other),
         "sign": "sha256", "encrypt": "aes256-cbc", "compress": compress,
         "mdn": mdn, "mdn_signed": True}
    if zl:      # unset: Wharf's default (6), as in import_flows
        p["compress_level"] = int(zl)
    if mdn != "sync":
        p["async_mdn_url"] = "https://127.0.0.1:%d/as2/mdn" % port[me]
    return p
def as2(other):
    return {"name": "as2-" + other, "type": "as2",
            "config": {"partner": other, "timeout_ms": 3600000,
                       "max_body_bytes": 8589934592,
                       "retry": {"initial_ms": 1000, "max_ms": 5000, "max_attempts": 5}}}
def files(name, key, d):
    return {"name": name, "type": "file", "config": dict({key: d}, **({"poll_ms": 50} if key == "receive_dir" else {}))}
def profile(me):
    return {"as2_id": "wharf-" + me,
            "keys": [{"cert": "%s/%s/as2.pem" % (work, me), "key": "%s/%s/as2.key" % (work, me)}]}
flows = {"a": {"profile": profile("a"),
               "partners": [partner("a", "b", comp), partner("a", "c", False)],
               "connectors": [files("outbox", "receive_dir", work + "/a/outbox"),
                              files("outbox-small", "receive_dir", work + "/a/outbox-small"),
                              as2("b"), as2("c")],
               "links": [["outbox", "as2-b"], ["outbox-small", "as2-c"]]}}
for me in "bc":
    flows[me] = {"profile": profile(me), "partners": [partner(me, "a", False)],
                 "connectors": [files("inbox", "send_dir", "%s/%s/inbox" % (work, me)), as2("a")],
                 "links": [["as2-a", "inbox"]]}
for me, f in flows.items():
    with open("%s/%s/flow.json" % (work, me), "w") as out:
        json.dump(f, out, indent=1)
PYEOF
    local me
    for me in a b c; do
        "$WHARF" flow import --data "$WORK/$me/data" "$WORK/$me/flow.json" >>"$OUT/import.out" 2>&1 ||
            die "flow import ($me) failed: $(tail -3 "$OUT/import.out")"
    done
}
# messages at A whose file name starts with PREFIX, in STATE (or any)
count_at_a() {
    "$WHARF" message list --data "$WORK/a/data" --json --limit 1000000 ${2:+--state "$2"} |
        "$PY" -c 'import json, sys; print(sum(1 for m in json.load(sys.stdin) if (m["filename"] or "").startswith(sys.argv[1])))' "$1"
}
# stage N small files named PREFIX-*; rename them into A's outbox-small;
# seconds until all are delivered at C and "sent" at A
small_burst() {
    local prefix=$1 t0 t1
    mkdir -p "$WORK/stage/$prefix"
    "$PY" - "$WORK/stage/$prefix" "$prefix" "$N" "$((KIB * 1024))" <<'PYEOF'
import os, sys
d, prefix, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    with open(os.path.join(d, "%s-%06d.bin" % (prefix, i)), "wb") as f:
        f.write(os.urandom(size))
os.sync()
PYEOF
    inbox_watch "$WORK/c/inbox" "$prefix-" .bin "$N" 1800 "$PID_A" "$PID_B" "$PID_C"
    t0=$(date +%s.%N)
    find "$WORK/stage/$prefix" -name "$prefix-*" -exec mv -t "$WORK/a/outbox-small/" {} +
    inbox_waited "(c) $prefix" "see $OUT/serve-*-mixed.out"
    while [ "$(count_at_a "$prefix-" sent)" -lt "$N" ]; do
        kill -0 "$PID_A" && kill -0 "$PID_B" && kill -0 "$PID_C" || die "a server died (see $OUT/serve-*-mixed.out)"
        sleep 0.1
    done
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
if [[ " $PARTS " == *" mixed "* ]]; then
    note "(c) mixed: $N x $KIB KiB to C alone, then again while $MB MiB go to B"
    import_mixed_flows "$([ "$COMPRESS" = yes ] && echo true || echo false)"
    BIG=$WORK/stage/mixed-big.$KIND
    make_big "$BIG"
    start_servers mixed
    "$WHARF" serve --data "$WORK/c/data" --quiet >"$OUT/serve-c-mixed.out" 2>&1 &
    PID_C=$!
    wait_port "${ADMIN[c]}"
    wait_port "${PARTNER[c]}"
    sleep 1
    alone=$(small_burst sa)
    put mixed_alone_seconds "$alone"
    put mixed_alone_msgs_per_s "$(awk -v n="$N" -v s="$alone" 'BEGIN { printf "%.1f", n / s }')"
    mv "$BIG" "$WORK/a/outbox/big.dat"
    # the large one is being sent: A stored it (its message exists; its
    # hop is leased at once), and 2 s more
    until [ "$(count_at_a big.dat)" -ge 1 ]; do
        kill -0 "$PID_A" || die "A died (see $OUT/serve-a-mixed.out)"
        sleep 0.1
    done
    sleep 2
    mixed=$(small_burst sm)
    put mixed_with_large_seconds "$mixed"
    put mixed_with_large_msgs_per_s "$(awk -v n="$N" -v s="$mixed" 'BEGIN { printf "%.1f", n / s }')"
    if [ "$(count_at_a big.dat sent)" -ge 1 ]; then
        put mixed_overlapped no
    else
        put mixed_overlapped yes
    fi
    while [ "$(count_at_a big.dat sent)" -lt 1 ]; do
        kill -0 "$PID_A" || die "A died (see $OUT/serve-a-mixed.out)"
        sleep 0.2
    done
    kill -TERM "$PID_C"
    wait "$PID_C" || die "serve (c) did not exit 0 after SIGTERM"
    PID_C=""
    stop_servers mixed
    [ "$(ls "$WORK/c/inbox" | wc -l)" -eq $((2 * N)) ] && put mixed_verified ok ||
        put mixed_verified FAILED
fi

# ---- summary ------------------------------------------------------------------------------
NP=$(nproc)
{
    echo
    echo "Wharf AS2 benchmark, $(awk '$1 == "date" { print $2 }' "$OUT/machine.txt"): $NP x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(openssl version | cut -d' ' -f1-2), load average at start $(awk '$1 == "loadavg" { print $2 }' "$OUT/machine.txt")"
    [ -z "${BENCH_AS2_CONF:-}" ] || echo "wharf.conf additions (both sides): $(printf '%b' "$BENCH_AS2_CONF" | tr '\n' ';')"
    [ "${BENCH_AS2_PAYLOADS:-}" != tmpfs ] || echo "payload_dir of each side in /dev/shm (diagnostics: payloads off the disk)"
    for one in A B C; do
        v="BENCH_AS2_CONF_$one"
        [ -z "${!v:-}" ] || echo "wharf.conf additions ($one only): $(printf '%b' "${!v}" | tr '\n' ';')"
    done
    printf '%-40s %12s  %-44s %10s  %6s\n' figure value "machine limit" limit ratio
    if [ -n "$(get small_msgs_per_s)" ]; then
        S=$(get rsa2048_sign_per_s) SM=$(get rsa2048_sign_per_s_multi)
        E=$(get ecdsap256_sign_per_s) X=$(get x25519_per_s)
        L1=$(awk -v s="$S" -v n="$NP" 'BEGIN { printf "%.1f", s * n / 3 }')
        LM=$(awk -v s="$SM" 'BEGIN { printf "%.1f", s / 3 }')
        # CPU seconds per message: 3 RSA signs + ECDSA sign + 2 X25519.
        LT=$(awk -v s="$S" -v e="$E" -v x="$X" -v n="$NP" 'BEGIN { printf "%.1f", n / (3 / s + 1 / e + 2 / x) }')
        M=$(get small_msgs_per_s)
        printf '%-40s %12s  %-44s %10s  %6s\n' "(a) ${KIB} KiB msgs/s A->B, $MDN signed MDN" "$M" \
            "rsa2048 sign/s x $NP cores / 3 private ops" "$L1" "$(ratio "$M" "$L1")"
        printf '%-40s %12s  %-44s %10s  %6s\n' "    ($N msgs in $(get small_seconds) s)" "" \
            "  (rsa2048 sign/s: $S; -multi $NP: $SM) / 3" "$LM" "$(ratio "$M" "$LM")"
        printf '%-40s %12s  %-44s %10s  %6s\n' "" "" \
            "  + TLS handshake (ECDSA P-256, 2 X25519)" "$LT" "$(ratio "$M" "$LT")"
        printf '%-40s %12s  %-44s %10s  %6s\n' "    CPU ms per message A / B" \
            "$(get small_cpu_ms_per_msg_a)/$(get small_cpu_ms_per_msg_b)" \
            "3 x rsa2048 sign, ms" "$(awk -v s="$S" 'BEGIN { printf "%.2f", 3000 / s }')" ""
        printf '%-40s %12s  %-44s %10s  %6s\n' "      of which the key process A / B" \
            "$(get small_keyproc_ms_per_msg_a)/$(get small_keyproc_ms_per_msg_b)" \
            "A 1 rsa2048 sign, B 2, ms" "$(awk -v s="$S" 'BEGIN { printf "%.2f/%.2f", 1000 / s, 2000 / s }')" ""
        printf '%-40s %12s  %-44s %10s  %6s\n' "    peak RSS A / B, KiB" \
            "$(get small_a_peak_rss_kib)/$(get small_b_peak_rss_kib)" "-" "" ""
        printf '%-40s %12s  %-44s %10s  %6s\n' "    cores: user/kernel/idle/iowait/steal" \
            "$(get small_machine_cores)" "cores" "$NP" ""
        echo "    aim for (a): >= 0.50 of the RSA-bound limit"
    fi
    if [ -n "$(get large_as2_MBps)" ]; then
        # MB/s of payload each stage allows; r = compressed / payload bytes
        # (the signature and the encryption see only compressed bytes).
        read -r SLOW SER <<<"$(awk -v enc="$(get cbc_enc_MBps)" -v dec="$(get cbc_dec_MBps)" \
            -v sha="$(get sha256_MBps)" -v def="$(get zlib_deflate_MBps)" \
            -v inf="$(get zlib_inflate_MBps)" -v r="$(get zlib_ratio)" \
            -v ge="$(get gcm_enc_MBps)" -v gd="$(get gcm_dec_MBps)" -v comp="$COMPRESS" 'BEGIN {
            # A: vault read (gcm dec), deflate, sha256, cbc enc;
            # B: cbc dec, sha256, inflate, vault write (gcm enc + sha256)
            # (uncompressed: no deflate, no inflate, every stage sees it all)
            if (comp != "yes") { r = 1; def = 0; inf = 0 }
            a[1] = gd; a[2] = def; a[3] = sha / r; a[4] = enc / r
            a[5] = dec / r; a[6] = sha / r; a[7] = inf; a[8] = ge; a[9] = sha
            m = a[1]; t = 0
            for (i = 1; i <= 9; i++) { if (a[i] == 0) continue; if (a[i] < m) m = a[i]; t += 1 / a[i] }
            printf "%.1f %.1f\n", m, 1 / t }')"
        G=$(get large_as2_MBps)
        printf '%-40s %12s  %-44s %10s  %6s\n' "(b) $MB MiB ($KIND$([ "$COMPRESS" = yes ] || echo ", no zlib")), AS2 leg, MB/s" "$G" \
            "slowest stage (all overlapped)" "$SLOW" "$(ratio "$G" "$SLOW")"
        printf '%-40s %12s  %-44s %10s  %6s\n' "    ($(get large_as2_s) s; drop->sent $(get large_e2e_MBps) MB/s)" "" \
            "one thread, A's chain then B's (see header)" "$SER" "$(ratio "$G" "$SER")"
        printf '%-40s %12s  %-44s %10s  %6s\n' "" "" \
            "  (cbc enc/dec $(get cbc_enc_MBps)/$(get cbc_dec_MBps), sha256 $(get sha256_MBps)," "" ""
        printf '%-40s %12s  %-44s %10s  %6s\n' "" "" \
            "   gcm enc/dec $(get gcm_enc_MBps)/$(get gcm_dec_MBps)," "" ""
        printf '%-40s %12s  %-44s %10s  %6s\n' "" "" \
            "   zlib def/inf $(get zlib_deflate_MBps)/$(get zlib_inflate_MBps), ratio $(get zlib_ratio))" "" ""
        for s in a b; do
            v=$(get "large_${s}_peak_rss_kib")
            printf '%-40s %12s  %-44s %10s  %6s\n' "    peak RSS $(echo "$s" | tr ab AB) (VmHWM), KiB" "$v" \
                "aim: < 64 MiB" "$RSS_AIM_KIB" "$(ratio "$v" "$RSS_AIM_KIB")"
        done
        printf '%-40s %12s\n' "    B's copy (SHA-256, size)" "$(get large_verified)"
    fi
    if [ -n "$(get mixed_with_large_msgs_per_s)" ]; then
        MA=$(get mixed_alone_msgs_per_s) MW=$(get mixed_with_large_msgs_per_s)
        printf '%-40s %12s  %-44s %10s  %6s\n' "(c) ${KIB} KiB msgs/s A->C, $MB MiB A->B" "$MW" \
            "the same alone ($(get mixed_alone_seconds) s)" "$MA" "$(ratio "$MW" "$MA")"
        printf '%-40s %12s\n' "    large transfer still running at the end" "$(get mixed_overlapped)"
        echo "    aim for (c): >= 0.70 of the rate alone"
    fi
    echo "raw results: bench/out/$STAMP-as2/ (results.txt, rss.tsv, openssl-*.txt, wharf-*.log)"
} | tee "$OUT/summary.txt"
for k in small_verified large_verified large_receipt_ok mixed_verified; do
    v=$(get "$k")
    [ -z "$v" ] || [ "$v" = ok ] || die "$k: $v"
done
