"""
R15/R22 isolation: under `wharf serve` the master keys and every private
key live in a separate key process; the network-facing process (HTTP,
MIME and CMS parsers) holds none of them.

test_r15_network_process_memory_holds_no_key: two Wharf instances trade a
signed + encrypted AS2 message with a signed MDN over HTTPS (so each used
its profile key to sign and decrypt, and its TLS key in handshakes). Then
each side's memory is read (/proc/PID/mem over the readable ranges of
/proc/PID/maps, as root): the network process holds neither the master
keys nor the audit signing seeds (read from the keystore file), nor the
AS2 profile key's private exponent or primes, nor the TLS key's private
scalar (read with the openssl CLI), in any byte order; each of the key
processes (one per core, at most four) holds them, which shows the scan
finds them where they are and that a key loaded once is loaded in every
key process (on main, with one process, there is no key process and the
network process holds them all). A flow imported into the running A adds an http connector with a
client certificate (mutual TLS), and a file goes through it (so its key
signed a handshake): neither that key's private scalar nor its PEM text is
in A's network process either; every key process holds the scalar.

test_r15_one_key_process_per_usable_cpu: serve started pinned to one CPU
(an affinity mask, as taskset or a cpuset gives it) starts one key process,
not one per CPU online.

test_r15_kill9_key_process_stops_serve_without_loss: files flow
outbox -> AS2 -> inbox; A's first key process, then B's last, is killed
with -9 while messages are in flight: that serve stops by itself with a
non-zero status, saying why; restarted, every file arrives exactly once.
"""
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from as2_pair import (flow_of, import_doc, pair, partner_of, start_pair,
                      wait_generation)
from conftest import drop_file, file_source, new_data_dir, wait_until
from test_m6_http import Recorder, http_dest, make_ca, make_server_cert
from test_r15_connector_secrets import client_cert

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="reading another process's memory "
                                       "needs root")


# ---- processes and memory ---------------------------------------------------

def children(pid):
    """Pids whose parent is pid."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, split after ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


def key_processes(server):
    """serve's children, its key processes: one per CPU it may run on (the
    affinity it inherits from the tests), at most 4."""
    kids = sorted(children(server.pid))
    want = min(len(os.sched_getaffinity(0)), 4)
    assert len(kids) == want, (f"serve (pid {server.pid}) should have "
                               f"{want} children, its key processes: {kids}")
    for k in kids:
        comm = Path(f"/proc/{k}/comm").read_text().strip()
        assert comm == "wharf-keys", (k, comm)
    return kids


def key_process(server):
    return key_processes(server)[0]


def memory_holds(pid, needles):
    """{name: bool}: which of needles ({name: bytes}) occur in the readable
    memory of pid."""
    found = {n: False for n in needles}
    with open(f"/proc/{pid}/maps") as maps, \
            open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            path = f[5] if len(f) > 5 else ""
            if not f[1].startswith("r") or path in ("[vvar]", "[vsyscall]"):
                continue
            if hi - lo > (1 << 31):         # sanitizer shadow reservations
                continue
            try:
                mem.seek(lo)
                chunk = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for name, b in needles.items():
                if not found[name] and b in chunk:
                    found[name] = True
    return found


def both_orders(name, value):
    """The value's big-endian bytes and their reverse (a BIGNUM in memory
    is little-endian), as two needles."""
    return {f"{name} (big endian)": value,
            f"{name} (little endian)": value[::-1]}


# ---- what must not be there --------------------------------------------------

def keystore_secrets(data):
    out = {}
    for line in (Path(data) / "keystore").read_text().splitlines():
        f = line.split()
        if f and f[0] in ("master", "audit-ed25519"):
            out[f"{f[0]} {f[1]}"] = bytes.fromhex(f[2])
            out[f"{f[0]} {f[1]} as text"] = f[2].encode()
    return out


def openssl_text(kind, key):
    p = subprocess.run(["openssl", kind, "-in", str(key), "-noout",
                        "-text"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def text_field(text, label):
    """The hex bytes of a field of `openssl ... -text` output (the lines of
    "xx:xx:..." after `label:`)."""
    m = re.search(rf"^{label}:\s*\n((?:\s+[0-9a-f:]+\n)+)", text, re.M)
    assert m, f"no {label} in openssl's output"
    b = bytes.fromhex(re.sub(r"[\s:]", "", m.group(1)))
    return b.lstrip(b"\0") or b


def private_parts(side):
    rsa = openssl_text("rsa", side.key)
    ec = openssl_text("ec", side.tls_key)
    out = {}
    out.update(both_orders("profile key d", text_field(rsa, "privateExponent")))
    out.update(both_orders("profile key p", text_field(rsa, "prime1")))
    out.update(both_orders("profile key q", text_field(rsa, "prime2")))
    out.update(both_orders("TLS key scalar", text_field(ec, "priv")))
    return out


def send_one(a, b, wharf, name, body):
    drop_file(a.outbox, name, body)
    wait_until(lambda: (b.inbox / name).exists() and
               not any(b.inbox.glob(f".{name}*")), timeout=60,
               desc=f"{name} at B")

    def sent():
        msgs = [m for m in wharf.messages(a.data) if m["state"] == "sent"]
        return len(msgs) >= 1
    wait_until(sent, timeout=60, desc="A's message sent (signed MDN)")


def client_key_parts(key):
    """The client certificate key's private scalar (both orders) and the
    base64 lines of its PEM file."""
    out = both_orders("client certificate key scalar",
                      text_field(openssl_text("ec", key), "priv"))
    for i, line in enumerate(Path(key).read_text().splitlines()):
        if line and not line.startswith("-----") and len(line) >= 32:
            out[f"client certificate key PEM line {i} as text"] = \
                line.encode()
    return out


def add_client_cert_connector(wharf, side, other, server, cert, key, ca):
    """Import, into the running side, its flow plus a folder -> http
    connector authenticating with a client certificate; send one file
    through it."""
    certin = side.dir / "certin"
    certin.mkdir()
    doc = flow_of(side, other, partner_of(other))
    doc["connectors"] += [
        file_source("certin", certin),
        http_dest("mtls", f"https://127.0.0.1:{server.port}/ok",
                  tls_ca=str(ca),
                  auth={"type": "client_cert", "cert": str(cert),
                        "key": str(key)})]
    doc["links"].append(["certin", "mtls"])
    wait_generation(side, import_doc(wharf, side, doc, "flow-mtls.json"))
    drop_file(certin, "invoice.xml", b"<invoice/>")
    wait_until(lambda: len(server.bodies("/ok")) == 1, timeout=60,
               desc="the file sent with the client certificate")


def test_r15_network_process_memory_holds_no_key(tmp_path, wharf,
                                                  start_server):
    a, b = pair(wharf, tmp_path)
    pki = tmp_path / "mtls-pki"
    pki.mkdir()
    ca, ca_key = make_ca(pki, "serverca")
    cca, cca_key = make_ca(pki, "clientca")
    cert, key = client_cert(pki, cca, cca_key)
    server = Recorder(make_server_cert(pki, ca, ca_key), client_ca=cca)
    try:
        start_pair((a, b), start_server)
        send_one(a, b, wharf, "order-1.edi", os.urandom(4096))
        add_client_cert_connector(wharf, a, b, server, cert, key, ca)
    finally:
        server.close()
    for side in (a, b):
        needles = keystore_secrets(side.data)
        needles.update(private_parts(side))
        if side is a:
            needles.update(client_key_parts(key))
        net = memory_holds(side.server.pid, needles)
        leaked = sorted(n for n, hit in net.items() if hit)
        assert leaked == [], (f"{side.name}: the network process (pid "
                              f"{side.server.pid}) holds {leaked}")
        for kp in key_processes(side.server):
            keys = memory_holds(kp, needles)
            for name in {n.split(" (")[0] for n in needles}:
                if name.endswith("as text"):
                    continue        # the keystore's text is wiped after use
                hits = [n for n in needles
                        if n.split(" (")[0] == name and keys[n]]
                assert hits, (f"{side.name}: the scan does not find {name} "
                              f"in key process {kp} either: the check "
                              "proves nothing, or that process lacks it")
    for side in (a, b):
        side.server.stop()


def test_r15_one_key_process_per_usable_cpu(wharf, tmp_path, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})    # this thread: serve inherits it
    try:
        server = start_server(data)
    finally:
        os.sched_setaffinity(0, cpus)
    server.wait_listening()
    kids = children(server.pid)
    assert len(kids) == 1, (f"serve pinned to CPU {min(cpus)} of {cpus} "
                            f"has children {kids}: one key process expected")
    assert Path(f"/proc/{kids[0]}/comm").read_text().strip() == "wharf-keys"
    server.stop()


# ---- kill -9 -------------------------------------------------------------------

def inbox_files(side):
    return sorted(p.name for p in side.inbox.iterdir()
                  if not p.name.startswith("."))


class NotYet:
    """A falsy wait_until value that shows what was seen."""
    def __init__(self, *seen):
        self.seen = seen

    def __bool__(self):
        return False

    def __repr__(self):
        return repr(self.seen)


def kill_key_process_of(side, which):
    kp = key_processes(side.server)[which]
    os.kill(kp, signal.SIGKILL)
    rc = side.server.proc.wait(timeout=60)
    side.server.check_sanitizers()
    assert rc != 0, "serve exited 0 after its key process was killed"
    assert "key process" in side.log(), side.log()[-2000:]


def test_r15_kill9_key_process_stops_serve_without_loss(tmp_path, wharf,
                                                        start_server):
    a, b = pair(wharf, tmp_path)
    start_pair((a, b), start_server)
    bodies = {f"po-{i:02d}.edi": os.urandom(2048 + i) for i in range(12)}
    names = sorted(bodies)
    for n in names[:6]:
        drop_file(a.outbox, n, bodies[n])
    wait_until(lambda: len(inbox_files(b)) >= 1, timeout=60,
               desc="the first file at B")
    kill_key_process_of(a, 0)               # the sender, mid-flow
    for n in names[6:9]:                    # more work while A is down
        drop_file(a.outbox, n, bodies[n])
    a.server = start_server(a.data)
    a.server.wait_listening()

    def resumed():
        if len(inbox_files(b)) >= 7:
            return True
        return NotYet([(m["state"], m.get("filename"))
                       for m in wharf.messages(a.data)], a.log()[-1500:])
    wait_until(resumed, timeout=120, desc="A resumed sending")
    for n in names[9:]:
        drop_file(a.outbox, n, bodies[n])
    kill_key_process_of(b, -1)              # the receiver, mid-flow
    b.server = start_server(b.data)
    b.server.wait_listening()

    def all_sent():
        a.server.check_alive()
        msgs = wharf.messages(a.data)
        return len(msgs) == len(names) and all(m["state"] == "sent"
                                               for m in msgs)
    wait_until(all_sent, timeout=180, desc="every message sent at A")
    wait_until(lambda: inbox_files(b) == names, timeout=60,
               desc="every file at B")
    for n in names:                         # each exactly once, intact
        assert (b.inbox / n).read_bytes() == bodies[n], n
    received = wharf.messages(b.data)
    assert len(received) == len(names), received
    for side in (a, b):
        side.server.stop()
