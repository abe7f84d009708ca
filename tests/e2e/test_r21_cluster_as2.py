"""
R21 with M4: AS2 received by a cluster of three Wharf nodes (a, b, c) on
one PostgreSQL database (a real PostgreSQL 15, started by these tests:
test_r21_cluster.py's pg_server), sharing one payload folder.

The cluster is the AS2 receiver: one AS2 profile (its key and
certificate) and one partner, imported once through node a, which every
node reads from the database. Each node has its own partner listener and
its own TLS certificate. The sender is not Wharf: the openssl-CLI peer of
as2_cli.py (CliSender) signs (detached), encrypts (AES-256-CBC), POSTs
over TLS trusting the certificate of the node it posts to, and checks the
synchronous MDN with `openssl cms -verify` against the cluster's AS2
certificate and the MIC with `openssl dgst`.

  - messages posted round-robin to a, b and c each get a signed
    "processed" MDN with the right MIC, and each payload reaches the
    cluster's file destination (one shared folder) exactly once,
    byte-identical;
  - a retry by the partner (the same Message-ID and bytes) posted to
    another node than the first time is answered "processed/warning:
    duplicate-document" (signed, the right MIC) and makes no second
    message and no second file: the de-duplication is the database's;
  - node a is killed with kill -9 while posts are in flight: the sender
    retries what a did not acknowledge on the other nodes, and every
    message acknowledged (before the kill or after) is delivered exactly
    once; the dead node's leased hops are taken by the others after
    lease_seconds (5: new_data_dir);
  - a node killed after storing a message and before its MDN: the
    partner's retry on another node is a duplicate, and delivered;
  - a node killed after its MDN went out and before it released the
    message's held hop: another node releases the stale hold (after ten
    leases, at least a minute: engine.c's holds_sweep) and delivers it.
"""
import http.client
import os
import re
import signal
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import as2_cli as cli
from as2_pair import as2_keys
from conftest import (conf_value, file_dest, listdir, listen_port,
                      new_data_dir, wait_until)
from test_m4_as2_interop import PROCESSED, build, content_entity
from test_r21_cluster import fresh_db, pg_server, sha  # noqa: F401 fixture

DUPLICATE = re.compile(r"^automatic-action/MDN-sent-automatically;\s*"
                       r"processed/warning:\s*duplicate-document\s*$", re.I)
CLUSTER_ID = "wharf-cluster"
MICALG = "sha-256"


class Node:
    """One Wharf node of the cluster: its data dir, server, partner URL
    and the TLS certificate its partner listener presents."""

    def __init__(self, name, data):
        self.name, self.data, self.server = name, Path(data), None

    @property
    def url(self):
        return f"https://127.0.0.1:{listen_port(self.data, 'partner')}/as2"

    @property
    def tls_cert(self):
        return str(self.data / conf_value(self.data, "tls_cert"))


class Cluster:
    """Three nodes on one fresh database, the AS2 profile and the partner
    "cli" (the CLI sender) imported through node a, every node running."""

    def __init__(self, wharf, tmp_path, url, start_server, **settings):
        payloads = tmp_path / "payloads"
        a = new_data_dir(wharf, tmp_path / "a", "--store", url,
                         "--payload-dir", str(payloads))
        self.nodes = [Node("a", a)] + [
            Node(n, new_data_dir(wharf, tmp_path / n, "--store", url,
                                 "--keystore", str(a / "keystore"),
                                 "--payload-dir", str(payloads)))
            for n in "bc"]
        kdir = tmp_path / "cluster-keys"
        kdir.mkdir()
        self.cert, self.key = as2_keys(kdir, CLUSTER_ID)
        self.as2_id = CLUSTER_ID
        self.sender = cli.CliSender(tmp_path / "cli", "cli-peer", name="cli")
        self.out = tmp_path / "out"
        self.out.mkdir()
        partner = {"name": "cli", "as2_id": self.sender.as2_id,
                   "url": "https://127.0.0.1:9/as2",   # never sent to
                   "certificates": [str(self.sender.cert)],
                   "tls_ca": str(self.sender.cert),
                   "sign": "sha256", "encrypt": "aes256-cbc",
                   "compress": False, "mdn": "sync", "mdn_signed": True}
        partner.update(settings)
        doc = {"profile": {"as2_id": CLUSTER_ID,
                           "keys": [{"cert": str(self.cert),
                                     "key": str(self.key)}]},
               "partners": [partner],
               "connectors": [{"name": "as2-cli", "type": "as2",
                               "config": {"partner": "cli"}},
                              file_dest("out", self.out)],
               "links": [["as2-cli", "out"]]}
        wharf.import_flow(a, doc, tmp_path / "flow.json")
        for n in self.nodes:
            n.server = start_server(n.data)
        for n in self.nodes:
            n.server.wait_listening()

    def files(self):
        """{name: sha256} of what reached the destination folder (not
        the destination's hidden temp files)."""
        return {n: sha((self.out / n).read_bytes())
                for n in listdir(self.out) if not n.startswith(".")}


def payload_of(i):
    """An EDI-looking payload of a few KiB, different for every i."""
    head = (f"UNA:+.? 'UNB+UNOC:3+CLIPEER+WHARF+261205:0700+{i:06d}'"
            f"\r\nUNH+{i}+ORDERS:D:96A:UN'\r\n").encode()
    return head + os.urandom(1024 + 37 * (i % 50)) + b"\r\nUNZ+1'\r\n"


class Message:
    """One AS2 message of the CLI sender, built once (its bytes are what
    a retry sends again): its Message-ID, HTTP headers, body, the bytes
    its MIC covers, the payload and its file name."""

    def __init__(self, cluster, i, cipher="aes-256-cbc"):
        self.i = i
        self.filename = f"m{i:04d}.edi"
        self.payload = payload_of(i)
        ent = content_entity(self.payload, self.filename)
        headers, self.body, self.scope = build(
            cluster.sender, None, ent, cipher=cipher, recipient=cluster.cert)
        self.mid, self.headers = cluster.sender.request(
            CLUSTER_ID, headers, self.body, micalg=MICALG)
        self.mic = cli.mic_of(self.scope, MICALG, cluster.sender.dir)


def post(cluster, node, msg):
    """POST msg to node (trusting node's own TLS certificate); the MDN
    verified with the cluster's AS2 certificate: its disposition. Fails
    unless the MDN is signed by the cluster, for msg, with msg's MIC."""
    status, rh, rb = cli.post(node.url, node.tls_cert, msg.headers, msg.body)
    assert status == 200, (node.name, msg.filename, status, rb[:500])
    assert cli.hget(rh, "AS2-From").strip('"') == CLUSTER_ID, rh
    assert cli.hget(rh, "AS2-To").strip('"') == cluster.sender.as2_id, rh
    fields, micalg, _ = cli.read_mdn(rh, rb, cluster.cert,
                                     cluster.sender.dir)
    assert fields["original-message-id"] == msg.mid, fields
    value, _, alg = fields["received-content-mic"].partition(",")
    assert alg.strip() == MICALG, fields
    assert value.strip() == msg.mic, (
        "Received-Content-MIC differs from the MIC of openssl dgst", fields)
    assert micalg.lower().replace("-", "") == "sha256", micalg
    return fields["disposition"]


def test_r21_three_nodes_receive_as2_round_robin_and_dedup_retries(
        tmp_path, wharf, pg_server, start_server):  # noqa: F811
    cl = Cluster(wharf, tmp_path, fresh_db(pg_server), start_server)
    n = 500
    msgs = [Message(cl, i) for i in range(n)]
    sent = {m.filename: sha(m.payload) for m in msgs}

    def first(m):
        return post(cl, cl.nodes[m.i % 3], m)
    # three posts at a time, message i to node i % 3
    with ThreadPoolExecutor(3) as pool:
        dispositions = list(pool.map(first, msgs))
    for m, d in zip(msgs, dispositions):
        assert PROCESSED.match(d), (m.filename, d)

    # the partner retries some of them on another node than the first
    # time: the same Message-ID and bytes
    for m in msgs[:6]:
        other = cl.nodes[(m.i + 1 + m.i // 3 % 2) % 3]
        assert other is not cl.nodes[m.i % 3]
        d = post(cl, other, m)
        assert DUPLICATE.match(d), (m.filename, other.name, d)

    wait_until(lambda: all(x.server.check_alive() for x in cl.nodes) and
               len(cl.files()) >= n, timeout=120,
               desc=f"{n} files in the destination")
    wait_until(lambda: {x["state"] for x in wharf.messages(cl.nodes[0].data)}
               == {"sent"}, timeout=60, desc="every message sent")
    time.sleep(2)                   # a second delivery would show by now
    assert cl.files() == sent       # each payload once, byte-identical
    got = wharf.messages(cl.nodes[2].data)
    assert len(got) == n, "one message per Message-ID, retries included"
    assert sorted(x["filename"] for x in got) == sorted(sent)
    assert {x["state"] for x in got} == {"sent"}
    for x in cl.nodes:
        x.server.stop()


def test_r21_as2_acknowledged_by_a_node_killed_9_is_delivered_once(
        tmp_path, wharf, pg_server, start_server):  # noqa: F811
    cl = Cluster(wharf, tmp_path, fresh_db(pg_server), start_server)
    a, b, c = cl.nodes
    n = 500
    with ThreadPoolExecutor(3) as pool:
        msgs = list(pool.map(lambda i: Message(cl, i), range(n)))
    sent = {m.filename: sha(m.payload) for m in msgs}
    lock = threading.Lock()
    acked = {}              # filename -> (node name, disposition)
    before_kill = set()     # acknowledged by an MDN before the kill began
    failed_on_a = []        # POSTs to a that got no answer (the kill)
    a_dead = threading.Event()

    def send(m):
        # round-robin over a, b, c; once a is known dead, over b and c
        node = cl.nodes[m.i % 3]
        if node is a and a_dead.is_set():
            node = (b, c)[m.i // 3 % 2]
        try:
            d = post(cl, node, m)
        except OSError:
            # only node a may fail to answer: the partner sends the same
            # request again to another node
            assert node is a, (m.filename, node.name)
            with lock:
                failed_on_a.append(m.filename)
            node = (b, c)[m.i // 3 % 2]
            d = post(cl, node, m)
        with lock:
            acked[m.filename] = (node.name, d)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(send, m) for m in msgs]
        # node a dies in the middle of the posting, posts in flight
        wait_until(lambda: len(acked) >= n // 2 or
                   any(f.done() and f.exception() for f in futures),
                   timeout=120, desc="half the messages acknowledged")
        with lock:
            before_kill = {f for f, (name, _) in acked.items()}
            by_a = {f for f, (name, _) in acked.items() if name == "a"}
        a.server.kill9()
        a_dead.set()
        for f in futures:
            f.result()
    assert by_a, "node a acknowledged nothing before it was killed"
    assert len(acked) == n
    for f, (name, d) in acked.items():
        if f in failed_on_a:
            # a may have stored it before it died: the retry is then a
            # duplicate, which must still be delivered (below)
            assert PROCESSED.match(d) or DUPLICATE.match(d), (f, name, d)
        else:
            assert PROCESSED.match(d), (f, name, d)
    print(f"{n} messages: {len(before_kill)} acknowledged before the kill "
          f"({len(by_a)} by a), {len(failed_on_a)} POSTs to a unanswered "
          f"and retried on b or c")

    wait_until(lambda: b.server.check_alive() and c.server.check_alive()
               and len(cl.files()) >= n, timeout=180,
               desc=f"{n} files in the destination")
    wait_until(lambda: {x["state"] for x in wharf.messages(b.data)}
               == {"sent"}, timeout=60, desc="every message sent")
    time.sleep(2)                   # a second delivery would show by now
    assert cl.files() == sent       # each payload once, byte-identical
    got = wharf.messages(c.data)
    assert len(got) == n, "one message per Message-ID, retries included"
    assert {x["state"] for x in got} == {"sent"}
    b.server.stop()
    c.server.stop()


# ---- a node that dies between storing a message and releasing it ----------


def children(pid):
    """The pids of the processes pid started (serve: its key process)."""
    kids = []
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


class PausedPost:
    """A POST of m to node that node stores and then cannot answer yet:
    it waits in the MDN's signature (node's key process stopped).

    How: the partner signs but does not encrypt (TLS only), so once the
    node has wrapped the payload's data key (the payload file exists) it
    needs no private key until it signs the MDN, after the commit. Its key
    process (the only process serve forks: it keeps the keys) is stopped
    with SIGSTOP after half the body is sent; then the rest is sent.
    .answer gets (status, headers, body), or the OSError, once there is
    one; .resume() lets the key process go on."""

    def __init__(self, cl, node, m):
        payloads = cl.out.parent / "payloads"

        def payload_files():
            return [f for _, _, fs in os.walk(payloads) for f in fs]
        self.conn = conn = http.client.HTTPSConnection(
            "127.0.0.1", listen_port(node.data, "partner"), timeout=120,
            context=ssl.create_default_context(cafile=node.tls_cert))
        before = payload_files()
        conn.putrequest("POST", "/as2", skip_accept_encoding=True)
        for k, v in m.headers:
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(m.body)))
        conn.endheaders()
        half = len(m.body) // 2
        conn.send(m.body[:half])
        wait_until(lambda: len(payload_files()) > len(before), timeout=60,
                   desc="the payload file begun")
        kids = children(node.server.pid)
        assert len(kids) == 1, kids
        self.keyproc = kids[0]
        os.kill(self.keyproc, signal.SIGSTOP)
        self.answer = []

        def rest():
            try:
                conn.send(m.body[half:])
                r = conn.getresponse()
                self.answer.append((r.status, r.getheaders(), r.read()))
            except OSError as e:
                self.answer.append(e)
        self.thread = threading.Thread(target=rest, daemon=True)
        self.thread.start()

    def resume(self):
        os.kill(self.keyproc, signal.SIGCONT)


def test_r21_as2_stored_by_a_node_that_died_before_its_mdn_is_delivered(
        tmp_path, wharf, pg_server, start_server):  # noqa: F811
    """Node a stores a message (committed, its next hop held until the MDN
    goes out) and dies with kill -9 before its MDN went out. The partner,
    which got no MDN, sends the same request again to node b, which
    answers "processed/warning: duplicate-document": the partner now
    counts the message as received, so the cluster must deliver it (b
    releases the hold of the message it found stored). a is stopped
    there by PausedPost."""
    cl = Cluster(wharf, tmp_path, fresh_db(pg_server), start_server,
                 encrypt="none")
    a, b, c = cl.nodes
    m = Message(cl, 1, cipher=None)
    p = PausedPost(cl, a, m)
    # stored, its hop held: nothing delivered while a has not answered
    stored = wait_until(lambda: wharf.messages(b.data), timeout=60,
                        desc="the message stored by node a")
    assert [x["state"] for x in stored] == ["queued"], stored
    assert not p.answer and cl.files() == {}, p.answer
    a.server.kill9()
    p.thread.join(timeout=60)
    p.conn.close()
    assert p.answer and isinstance(p.answer[0], OSError), (
        "node a answered although killed before its MDN", p.answer)
    # the partner sends it again, to node b
    d = post(cl, b, m)
    assert DUPLICATE.match(d), d
    assert len(wharf.messages(c.data)) == 1
    # acknowledged (duplicate-document): it must reach the destination
    wait_until(lambda: b.server.check_alive() and c.server.check_alive()
               and cl.files(), timeout=180,
               desc=f"{m.filename} delivered, although stored by a node "
                    f"that died before its MDN")
    time.sleep(2)
    assert cl.files() == {m.filename: sha(m.payload)}
    assert [x["state"] for x in wharf.messages(c.data)] == ["sent"]
    b.server.stop()
    c.server.stop()


# ---- a node that dies between its MDN and the release -----------------------


def test_r21_as2_acknowledged_then_node_killed_before_release_is_delivered(
        tmp_path, wharf, pg_server, start_server):  # noqa: F811
    """Node a stores a message, sends its signed "processed" MDN and is
    killed with kill -9 before it released the message's held hop (the
    release, one UPDATE after the MDN went out, waits on a row lock this
    test holds in PostgreSQL: a slow database at that moment). The partner
    has its MDN and will never send the message again, so the cluster
    must deliver it: the hold of a dead node must end as its leases do.

    It failed before the fix (the hop stayed held, next_at in year 9999,
    until a serve started, which then released every node's holds, in-flight
    ones included): now every node's keeper releases holds older than ten
    leases (a minute here) and a node that starts releases none."""
    url = fresh_db(pg_server)
    cl = Cluster(wharf, tmp_path, url, start_server, encrypt="none")
    a, b, c = cl.nodes
    m = Message(cl, 2, cipher=None)
    p = PausedPost(cl, a, m)
    stored = wait_until(lambda: wharf.messages(b.data), timeout=60,
                        desc="the message stored by node a")
    msgid = stored[0]["id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", msgid), msgid
    lock = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v",
                             "ON_ERROR_STOP=1", url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        lock.stdin.write("BEGIN;\nSELECT count(*) FROM (SELECT id FROM hops"
                         f" WHERE message_id = '{msgid}' FOR UPDATE) h;\n")
        lock.stdin.flush()
        assert int(lock.stdout.readline()) >= 2     # received + held
        p.resume()
        wait_until(lambda: p.answer, timeout=60, desc="a's MDN")
        status, rh, rb = p.answer[0]
        assert status == 200, (status, rb[:500])
        fields, _, _ = cli.read_mdn(rh, rb, cl.cert, cl.sender.dir)
        assert fields["original-message-id"] == m.mid, fields
        assert PROCESSED.match(fields["disposition"]), fields
        assert fields["received-content-mic"].partition(",")[0].strip() \
            == m.mic, fields
        a.server.kill9()
    finally:
        if lock.poll() is None:
            lock.stdin.write("ROLLBACK;\n")
            lock.stdin.close()
        lock.wait(timeout=60)
    # acknowledged by a "processed" MDN: it must reach the destination
    wait_until(lambda: b.server.check_alive() and c.server.check_alive()
               and cl.files(), timeout=180,
               desc=f"{m.filename}, acknowledged by node a's MDN, "
                    f"delivered by b or c")
    time.sleep(2)
    assert cl.files() == {m.filename: sha(m.payload)}
    assert [x["state"] for x in wharf.messages(c.data)] == ["sent"]
    b.server.stop()
    c.server.stop()
