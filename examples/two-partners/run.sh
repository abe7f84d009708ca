#!/usr/bin/env bash
# examples/two-partners/run.sh - two Wharf instances trade over AS2 on
# 127.0.0.1, one command (see README.md next to this file).
#
#   1. a temp dir with two data dirs (`wharf init`, free ports): partner A
#      (AS2 id wharf-a) and partner B (wharf-b);
#   2. an RSA-2048 signing/decryption key and self-signed certificate for
#      each, made with the openssl CLI;
#   3. each side's flow document names the other as its partner (the
#      other's AS2 certificate, and the other's listener certificate as
#      tls_ca): outbox (file) -> as2-PARTNER -> inbox (file);
#   4. both servers start; A sends order-1.edi to B signed (SHA-256),
#      encrypted (AES-256-CBC) and compressed, asking for a signed
#      synchronous MDN;
#   5. both documents are imported again with "mdn": "async" (the MDN comes
#      back in its own POST to A's https://127.0.0.1:PORT/as2/mdn) and A
#      sends invoice-2.edi;
#   6. when both are "sent" at A (the MDN verified) and arrived at B (byte
#      for byte), prints what each side recorded: messages with hops and
#      receipts, certificates, partners. Stops both servers on exit.
#
# Exits 0 only if everything above worked.
#
# Environment: WHARF_BIN (default build/release/wharf, built with
# `make release` if needed), WHARF_KEEP=1 keeps the temp dir (it is kept
# anyway when something fails), WHARF_TIMEOUT (seconds per wait, 60).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TIMEOUT=${WHARF_TIMEOUT:-60}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

die() { echo "two-partners: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }
for tool in openssl "$PY"; do
    command -v "$tool" >/dev/null || die "$tool is needed (scripts/deps.sh installs it)"
done

if [ -n "${WHARF_BIN:-}" ]; then
    WHARF=$WHARF_BIN
else
    WHARF=$ROOT/build/release/wharf
    make --no-print-directory -s -C "$ROOT" -j2 release >&2 ||
        die "make release failed"
fi
[ -x "$WHARF" ] || die "no wharf binary at $WHARF"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wharf-two-partners-XXXXXX")
PID_A=""
PID_B=""
OK=0
cleanup() {
    local rc=$?
    for pid in $PID_A $PID_B; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $PID_A $PID_B; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$OK" = 1 ] && [ "${WHARF_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        if [ "$OK" != 1 ]; then
            for s in a b; do
                if [ -f "$WORK/$s/data/logs/wharf.log" ]; then
                    echo "--- last lines of $s's log ($WORK/$s/data/logs/wharf.log)" >&2
                    tail -n 15 "$WORK/$s/data/logs/wharf.log" >&2
                fi
            done
        fi
        echo "two-partners: work dir kept: $WORK" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 $((TIMEOUT * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}
# wait_for DESC COMMAND...: run COMMAND every 0.2 s until it succeeds.
wait_for() {
    local desc=$1
    shift
    for _ in $(seq 1 $((TIMEOUT * 5))); do
        "$@" && return 0
        for pid in $PID_A $PID_B; do
            kill -0 "$pid" 2>/dev/null || die "a server died while waiting for $desc"
        done
        sleep 0.2
    done
    die "timed out after ${TIMEOUT}s waiting for $desc"
}

# ---- 1-2. two data dirs, two key pairs ---------------------------------------
step "two data dirs and keys in $WORK"
declare -A ADMIN PARTNER
for s in a b; do
    mkdir -p "$WORK/$s/outbox" "$WORK/$s/inbox"
    ADMIN[$s]=$(free_port)
    PARTNER[$s]=$(free_port)
    while [ "${PARTNER[$s]}" = "${ADMIN[$s]}" ]; do PARTNER[$s]=$(free_port); done
    "$WHARF" init --data "$WORK/$s/data" --admin-listen "127.0.0.1:${ADMIN[$s]}" \
        --partner-listen "127.0.0.1:${PARTNER[$s]}" \
        --allowed-paths "$WORK/$s/outbox,$WORK/$s/inbox" \
        >"$WORK/$s/init.out" 2>&1 ||
        die "wharf init ($s) failed: $(cat "$WORK/$s/init.out")"
    echo "poll_ms = 100" >>"$WORK/$s/data/wharf.conf"
    # run as root (a container, a CI job): keep root instead of refusing to
    # start; on a real server use wharf init --user (docs/operations.md)
    [ "$(id -u)" -ne 0 ] || echo "allow_root = yes" >>"$WORK/$s/data/wharf.conf"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -sha256 \
        -subj "/CN=wharf-$s/O=Wharf two-partner example" \
        -keyout "$WORK/$s/as2.key" -out "$WORK/$s/as2.pem" >"$WORK/$s/openssl.out" 2>&1 ||
        die "openssl req ($s) failed: $(cat "$WORK/$s/openssl.out")"
    chmod 600 "$WORK/$s/as2.key"
    echo "partner $s: AS2 id wharf-$s, data $WORK/$s/data," \
         "partner listener https://127.0.0.1:${PARTNER[$s]}/as2, admin 127.0.0.1:${ADMIN[$s]}"
done

# ---- 3. flow documents: each names the other as its partner ------------------
# Both sides alike: outbox (file) -> as2-OTHER -> inbox (file). A message
# from the outbox ends at as2-OTHER (delivered to the partner); one the
# partner sends enters at as2-OTHER and goes on to the inbox.
# flow ME OTHER MDN: ME's flow document on stdout.
flow() {
    local me=$1 other=$2 mdn=$3 async=""
    [ "$mdn" = async ] &&
        async=", \"async_mdn_url\": \"https://127.0.0.1:${PARTNER[$me]}/as2/mdn\""
    cat <<EOF
{"profile": {"as2_id": "wharf-$me",
             "keys": [{"cert": "$WORK/$me/as2.pem", "key": "$WORK/$me/as2.key"}]},
 "partners": [{"name": "$other", "as2_id": "wharf-$other",
               "url": "https://127.0.0.1:${PARTNER[$other]}/as2",
               "certificates": ["$WORK/$other/as2.pem"],
               "tls_ca": "$WORK/$other/data/tls/cert.pem",
               "sign": "sha256", "encrypt": "aes256-cbc", "compress": true,
               "mdn": "$mdn", "mdn_signed": true$async}],
 "connectors": [
   {"name": "outbox", "type": "file",
    "config": {"receive_dir": "$WORK/$me/outbox", "poll_ms": 100}},
   {"name": "as2-$other", "type": "as2",
    "config": {"partner": "$other",
               "retry": {"initial_ms": 500, "max_ms": 2000, "max_attempts": 20}}},
   {"name": "inbox", "type": "file", "config": {"send_dir": "$WORK/$me/inbox"}}],
 "links": [["outbox", "as2-$other"], ["as2-$other", "inbox"]]}
EOF
}
import_flows() {    # MDN mode
    local me other
    for me in a b; do
        other=$([ "$me" = a ] && echo b || echo a)
        flow "$me" "$other" "$1" >"$WORK/$me/flow-$1.json"
        "$WHARF" flow import --data "$WORK/$me/data" "$WORK/$me/flow-$1.json" \
            >"$WORK/$me/import-$1.out" 2>&1 ||
            die "flow import ($me, mdn $1) failed: $(cat "$WORK/$me/import-$1.out")"
    done
}
step "flow documents (mdn sync), imported"
import_flows sync
echo "a: outbox -> as2-b (AS2 to https://127.0.0.1:${PARTNER[b]}/as2); what B sends -> as2-b -> inbox"
echo "b: outbox -> as2-a (AS2 to https://127.0.0.1:${PARTNER[a]}/as2); what A sends -> as2-a -> inbox"

# ---- 4. both servers, the first message (signed synchronous MDN) ---------------
step "starting both servers"
"$WHARF" serve --data "$WORK/a/data" --quiet >"$WORK/a/serve.out" 2>&1 &
PID_A=$!
"$WHARF" serve --data "$WORK/b/data" --quiet >"$WORK/b/serve.out" 2>&1 &
PID_B=$!
for s in a b; do
    wait_port "${ADMIN[$s]}"
    wait_port "${PARTNER[$s]}"
done
echo "a: pid $PID_A, b: pid $PID_B"

# messages DATA: "ID STATE NAME" per message, oldest first.
messages() {
    "$WHARF" message list --data "$1" --json --limit 1000 |
        "$PY" -c 'import json, sys
for m in reversed(json.load(sys.stdin)):
    print(m["id"], m["state"], m.get("name") or m.get("filename") or "-")'
}
sent_at_a() {   # N: A has N messages, all "sent"
    [ "$(messages "$WORK/a/data" | awk '$2 == "sent"' | wc -l)" -ge "$1" ]
}
arrived_at_b() {    # NAME: the file is in B's inbox, no temp file beside it
    [ -f "$WORK/b/inbox/$1" ] && ! compgen -G "$WORK/b/inbox/.$1*" >/dev/null
}
drop() {        # NAME: a small X12 850 purchase order into A's outbox
    local name=$1
    cat >"$WORK/a/.$name" <<EOF
ISA*00*          *00*          *ZZ*WHARF-A        *ZZ*WHARF-B        *261123*1200*U*00401*000000001*0*P*>~
GS*PO*WHARF-A*WHARF-B*20261123*1200*1*X*004010~
ST*850*0001~
BEG*00*SA*$name**20261123~
PO1*1*120*EA*9.95**VP*WIDGET-42~
PO1*2*12*CA*31.50**VP*GASKET-7~
CTT*2~
SE*6*0001~
GE*1*1~
IEA*1*000000001~
EOF
    cp "$WORK/a/.$name" "$WORK/a/$name"
    mv "$WORK/a/.$name" "$WORK/a/outbox/$name"
}

step "A -> B: order-1.edi, signed + encrypted + compressed, signed sync MDN"
drop order-1.edi
wait_for "order-1.edi at B" arrived_at_b order-1.edi
wait_for "A's first message sent (MDN verified)" sent_at_a 1
cmp -s "$WORK/a/order-1.edi" "$WORK/b/inbox/order-1.edi" || die "order-1.edi differs at B"
echo "order-1.edi: sent at A, arrived at B byte for byte"

# ---- 5. again with an asynchronous MDN ------------------------------------------
step "flow documents again with mdn async (A's MDN URL https://127.0.0.1:${PARTNER[a]}/as2/mdn)"
import_flows async
# The servers pick up a new flow generation within a second; wait for it.
for s in a b; do
    wait_for "$s to load the new flow" grep -q "flow generation 2 loaded" "$WORK/$s/data/logs/wharf.log"
done
echo "both servers loaded flow generation 2"

step "A -> B: invoice-2.edi, signed + encrypted + compressed, signed async MDN"
drop invoice-2.edi
wait_for "invoice-2.edi at B" arrived_at_b invoice-2.edi
wait_for "A's second message sent (async MDN verified)" sent_at_a 2
cmp -s "$WORK/a/invoice-2.edi" "$WORK/b/inbox/invoice-2.edi" || die "invoice-2.edi differs at B"
echo "invoice-2.edi: sent at A, arrived at B byte for byte"

# ---- 6. what each side recorded ---------------------------------------------------
for s in a b; do
    step "partner $s: wharf message list"
    "$WHARF" message list --data "$WORK/$s/data"
    for id in $(messages "$WORK/$s/data" | awk '{ print $1 }'); do
        step "partner $s: wharf message show $id"
        "$WHARF" message show --data "$WORK/$s/data" "$id"
        # The stored MDNs (kept sealed in the data dir): `message show
        # --json` lists them under "receipts".
        echo
        echo "receipts (MDNs, from message show --json):"
        "$WHARF" message show --data "$WORK/$s/data" --json "$id" |
            "$PY" -c 'import json, sys
rs = json.load(sys.stdin).get("receipts") or []
for r in rs:
    print("  %-8s MDN %s for %s (%d bytes)" % (r["direction"], r["mdn_message_id"],
          r["original_message_id"], r["bytes"]))
if not rs:
    print("  (none)")'
    done
    step "partner $s: wharf cert list"
    "$WHARF" cert list --data "$WORK/$s/data"
    step "partner $s: wharf partner list"
    "$WHARF" partner list --data "$WORK/$s/data"
done

# The records must say what the example claims: both as2-b hops "sent" on a
# signed MDN; the first without, the second after, waiting for the
# asynchronous MDN.
check() {       # ID MODE
    "$WHARF" message show --data "$WORK/a/data" --json "$1" | "$PY" -c '
import json, sys
m, mode = json.load(sys.stdin), sys.argv[1]
h = [h for h in m["hops"] if h["connector"] == "as2-b"][0]
waited = any("waiting for the asynchronous MDN" in e["text"] for e in m["events"])
ok = (h["state"] == "sent" and (h["receipt"] or "").startswith("MDN processed (signed)")
      and waited == (mode == "async")
      and any(r["direction"] == "received" for r in m.get("receipts") or []))
sys.exit(0 if ok else "message %s at A: not sent on a signed %s MDN: %s" % (m["id"], mode, h))
' "$2"
}
mapfile -t ids < <(messages "$WORK/a/data" | awk '{ print $1 }')
[ "${#ids[@]}" = 2 ] || die "A recorded ${#ids[@]} messages, not 2"
check "${ids[0]}" sync
check "${ids[1]}" async

# Stop both servers: each must exit 0 on SIGTERM and print nothing a
# sanitizer would (WHARF_BIN may be the ASan build).
for s in a b; do
    pid=$([ "$s" = a ] && echo "$PID_A" || echo "$PID_B")
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    [ "$s" = a ] && PID_A="" || PID_B=""
    [ "$rc" = 0 ] || die "serve ($s) exited $rc after SIGTERM: $(tail -5 "$WORK/$s/serve.out")"
    if grep -qE "Sanitizer|runtime error" "$WORK/$s/serve.out"; then
        cat "$WORK/$s/serve.out" >&2
        die "serve ($s): sanitizer report"
    fi
done
echo
echo "both servers stopped (exit 0)"

step "result"
echo "A sent 2 messages to B over AS2 (SHA-256 signature, AES-256-CBC, zlib):"
echo "  order-1.edi    signed synchronous MDN verified at A"
echo "  invoice-2.edi  signed asynchronous MDN verified at A"
echo "two-partners: OK"
OK=1
