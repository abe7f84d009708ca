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
    lease_seconds (5: new_data_dir).
"""
import os
import re
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

    def __init__(self, wharf, tmp_path, url, start_server):
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

    def __init__(self, cluster, i):
        self.i = i
        self.filename = f"m{i:04d}.edi"
        self.payload = payload_of(i)
        ent = content_entity(self.payload, self.filename)
        headers, self.body, self.scope = build(
            cluster.sender, None, ent, recipient=cluster.cert)
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
