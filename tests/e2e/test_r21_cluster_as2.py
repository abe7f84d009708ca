"""
R21 with M4: AS2 received by a cluster of three Wharf nodes (a, b, c) on
one PostgreSQL database (a real PostgreSQL 15, started by these tests:
test_r21_cluster.py's pg_server). The load test's nodes keep their
payloads in the database (payload_dir = database): they share nothing but
it; the others share one payload folder (they watch a payload file
appear).

The cluster is the AS2 receiver: one AS2 profile (its key and
certificate) and one partner, imported once through node a, which every
node reads from the database. Each node has its own partner listener and
its own TLS certificate. The sender is not Wharf: the openssl-CLI peer of
as2_cli.py (CliSender) signs (detached), encrypts (AES-256-CBC), POSTs
over TLS trusting the certificate of the node it posts to, and checks the
synchronous MDN with `openssl cms -verify` against the cluster's AS2
certificate and the MIC with `openssl dgst`.

The load (test_r21_three_nodes_2000_files_and_500_as2_through_two_kills,
the issue's R21 load test; it replaced a 500-message AS2 test without a
kill, a 500-message AS2 test with one kill and test_r21_cluster.py's
400-file, two-node kill test, keeping every assertion they made): a
shared folder polled by all three nodes (a file flow to a second folder)
gets 2,000 files while the partner posts 500 AS2 messages, three at a
time, message i to node i % 3; the producer keeps about four files per
acknowledged message ahead, so both loads run at once.

  - node a is killed with kill -9 at 40 % of the messages and node b at
    65 %, each at a moment it holds leased hops if it does within a
    minute (a psql session watches the hops table), POSTs in flight; the
    partner sends a request a dying node did not answer again to a node
    that is up, and posts to the nodes that are up meanwhile;
  - a is started again after b's kill, as an operator would (the test
    covers a killed node rejoining under load); b stays down to the end,
    so its leased hops are taken by the others after lease_seconds (5:
    new_data_dir) with no help from a restart;
  - every MDN is signed by the cluster for its message, with the MIC of
    `openssl dgst`; "processed", or duplicate-document for a request
    sent again after a node died (that node had stored it);
  - messages a dead node acknowledged (and c's) sent again to another
    node are answered "processed/warning: duplicate-document" and make
    no second message and no second file: the de-duplication is the
    database's;
  - every file and every AS2 payload reaches its destination folder
    exactly once, byte-identical (SHA-256; none missing, none extra),
    each stored once (one message per file and per Message-ID, the
    stored SHA-256 the one sent), every message recorded as sent;
  - a hop a killed node delivered but did not record is run again by
    another node after its lease (at-least-once to the destination): the
    file destination finds the file marked with the message's id (a user
    extended attribute, file.c) and writes no second one. The test
    counts such hops ("already present") and prints them; it fails
    first, saying why, where the folder keeps no extended attributes;
  - no hop is ever held for an MDN: a node stores a message, keeps the
    MDN it will send and frees the message's hops in one commit, before
    the MDN goes out (the test counts holds a dead node left, released
    after ten leases: none since);
  - `wharf cluster status`: the killed processes "silent", the others
    "running", no lease left on any; "stopped" after a clean stop;
  - no node logged a deadlock or a failed commit of a batch's outcomes
    (the lease keeper's renewal once deadlocked with its worker's commit).

Two more cases a load hits only by chance, each made on purpose with a
kill point (util/fault.h: WHARF_FAULT, kill -9 at a named point):
  - a node killed after storing a message (with its MDN) and before
    sending the MDN: the partner's retry on another node is a duplicate,
    and the message is delivered once;
  - a node killed just after its MDN went out: the message is delivered
    by another node, with no hold to wait for.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import as2_cli as cli
from as2_pair import as2_keys
from conftest import (conf_value, drop_file, file_dest, file_source,
                      listdir, listen_port, new_data_dir, wait_until)
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
    "cli" (the CLI sender) imported through node a, every node running.
    With shared_folder, also a file flow: the folder "in" (polled by every
    node) to the folder "files"."""

    def __init__(self, wharf, tmp_path, url, start_server,
                 shared_folder=False, payloads=None, **settings):
        payloads = payloads or tmp_path / "payloads"
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
        if shared_folder:
            self.inbox, self.folder = tmp_path / "in", tmp_path / "files"
            self.inbox.mkdir()
            self.folder.mkdir()
            doc["connectors"] += [file_source("inbox", self.inbox),
                                  file_dest("files", self.folder)]
            doc["links"].append(["inbox", "files"])
        wharf.import_flow(a, doc, tmp_path / "flow.json")
        for n in self.nodes:
            n.server = start_server(n.data)
        for n in self.nodes:
            n.server.wait_listening()

    def files(self):
        """{name: sha256} of what reached the AS2 destination folder."""
        return contents(self.out)


def contents(folder):
    """{name: sha256} of the files in folder (not the file destination's
    hidden temp files)."""
    return {n: sha((folder / n).read_bytes())
            for n in listdir(folder) if not n.startswith(".")}


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


# ---- the load: 2,000 files and 500 AS2 messages through two kills ----------

N_FILES, N_AS2 = 2000, 500


def file_of(i):
    """File i of the producer: (name, bytes), different for every i."""
    body = (f"UNA:+.? '\nUNH+{i}+ORDERS:D:96A:UN'\n".encode() +
            os.urandom(64 + i % 400))
    return f"f{i:04d}.edi", body


def count(folder):
    """How many files (not hidden temp files) folder holds."""
    return sum(1 for n in os.listdir(folder) if not n.startswith("."))


class Load:
    """The outside world of the load test, in threads. The AS2 partner
    posts its messages three at a time, message i to node i % 3, or to a
    node that is up while i % 3 is down, and sends a request a node did
    not answer again to a node that is up. The producer drops files into
    the shared folder, about four per acknowledged message ahead of the
    partner, so that both loads run at once."""

    def __init__(self, cl, files):
        self.cl, self.files = cl, files
        self.lock = threading.Lock()
        self.acked = {}         # filename -> (node name, disposition)
        self.unanswered = []    # (filename, node name) of POSTs lost
        self.down = set()       # names of the nodes killed, not restarted
        self.killed = set()     # the Servers killed (from the kill's start)
        self.posted = threading.Event()     # the partner is done

    def target(self, m):
        """The node message m goes to now, and its server."""
        with self.lock:
            live = [x for x in self.cl.nodes if x.name not in self.down]
            first = self.cl.nodes[m.i % 3]
            node = first if first in live else live[m.i // 3 % len(live)]
            return node, node.server

    def send(self, m):
        for _ in range(4):
            node, server = self.target(m)
            try:
                d = post(self.cl, node, m)
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    # only a node being killed may leave a POST
                    # unanswered: the partner sends it again
                    assert server in self.killed, (m.filename, node.name, e)
                    self.unanswered.append((m.filename, node.name))
                continue
            with self.lock:
                self.acked[m.filename] = (node.name, d)
            return
        raise AssertionError(f"{m.filename}: no node answered four POSTs")

    def drop(self):
        """The producer (a thread of its own)."""
        i = 0
        while i < len(self.files):
            with self.lock:
                ahead = 100 + 4 * len(self.acked)
            if self.posted.is_set():
                ahead = len(self.files)
            for name, body in self.files[i:ahead]:
                drop_file(self.cl.inbox, name, body)
            i = max(i, min(ahead, len(self.files)))
            time.sleep(0.05)

    def wait_acked(self, k, posts):
        wait_until(lambda: len(self.acked) >= k or
                   any(f.done() and f.exception() for f in posts),
                   timeout=180, desc=f"{k} messages acknowledged")

    def kill(self, node, db):
        """kill -9 node, posts in flight, at a moment it holds leased hops
        (if it does within a minute): (the messages it acknowledged, the
        hops it left leased)."""
        deadline = time.monotonic() + 60
        while db.leases(node.server) == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        node.server.check_alive()
        with self.lock:
            self.down.add(node.name)
            self.killed.add(node.server)
            by = {f for f, (name, d) in self.acked.items()
                  if name == node.name and PROCESSED.match(d)}
        node.server.kill9()
        return by, db.leases(node.server)

    def restart(self, node, start_server):
        """What the operator does: node's `wharf serve` started again."""
        node.server = start_server(node.data)
        node.server.wait_listening()
        with self.lock:
            self.down.discard(node.name)


def require_xattrs(folder):
    """The file destination recognizes a file it wrote before a kill by
    the message id it marks it with, an extended attribute (file.c);
    without them a redone hop writes a second copy (at-least-once)."""
    probe = folder / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.wharf.probe", b"1")
    except OSError as e:
        raise AssertionError(f"{folder} keeps no user extended attributes "
                             f"({e}): a redone delivery would write a "
                             f"second copy; run the tests elsewhere")
    finally:
        probe.unlink()


def shows(wharf, data, ids):
    """`wharf message show` of a few messages, for a failure's message."""
    return json.dumps([wharf.show(data, i) for i in list(ids)[:5]],
                      indent=1)[:20000]


def all_sent(wharf, data, n, timeout):
    """Wait until at least n messages are stored and every one is sent:
    the list. On a timeout, fail with the history of those not sent."""
    def done():
        got = wharf.messages(data)
        return len(got) >= n and {x["state"] for x in got} == {"sent"} \
            and got
    try:
        return wait_until(done, timeout=timeout, interval=1,
                          desc=f"{n} messages, every one recorded as sent")
    except AssertionError as e:
        late = [x["id"] for x in wharf.messages(data) if x["state"] != "sent"]
        raise AssertionError(f"{e}\n{len(late)} not sent: "
                             f"{shows(wharf, data, late)}") from None


def same(got, sent):
    """Which names are missing, extra or different in got: {} if none."""
    diff = {"missing": sorted(set(sent) - set(got)),
            "extra": sorted(set(got) - set(sent)),
            "different": sorted(n for n in set(got) & set(sent)
                                if got[n] != sent[n])}
    return {k: v[:20] for k, v in diff.items() if v}


def stored_once(wharf, data, got, source, sent):
    """The messages of source in got: one per name sent, the bytes sent
    (sha256), every one sent. Fails with the duplicates' history."""
    mine = [x for x in got if x["source"] == source]
    names = [x["filename"] for x in mine]
    twice = [x["id"] for x in mine if names.count(x["filename"]) > 1]
    assert len(mine) == len(sent) and not twice, (
        source, len(mine), shows(wharf, data, twice))
    assert sorted(names) == sorted(sent), source
    assert {x["filename"]: x["sha256"] for x in mine} == sent, source


def node_id(server):
    return f"{socket.gethostname()}/{server.pid}"


class Psql:
    """One psql session on the cluster's database, kept open: a count
    takes a millisecond or two, so a kill follows what it saw closely."""

    def __init__(self, url):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v",
                                   "ON_ERROR_STOP=1", url],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def count(self, sql):
        self.p.stdin.write(sql + ";\n")
        self.p.stdin.flush()
        return int(self.p.stdout.readline())

    def leases(self, server):
        """How many hops server's node holds leased now: its workers'
        leases are host/pid/wN/bK (engine.c)."""
        self.p.stdin.write(f"\\set owner {node_id(server)}\n")
        return self.count("SELECT count(*) FROM hops WHERE state ="
                          " 'processing' AND starts_with(lease_owner,"
                          " :'owner' || '/')")

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=60)


def node_states(wharf, data):
    """{node id: (state, leases)} of `wharf cluster status`."""
    doc = json.loads(wharf.ok("cluster", "status", "--data", data,
                              "--json").stdout)
    assert doc["store"] == "postgresql"
    return {x["id"]: (x["state"], x["leases"]) for x in doc["nodes"]}


def run_load(cl, load, msgs, db, start_server):
    """Both loads at once; a killed in the middle, b later, then a started
    again (b stays down to the end: its leases are left for the others to
    take). {name: (messages it acknowledged, hops it left leased)}."""
    a, b, _ = cl.nodes
    kills = {}
    with ThreadPoolExecutor(1) as producer, ThreadPoolExecutor(3) as partner:
        dropping = producer.submit(load.drop)
        try:
            posts = [partner.submit(load.send, m) for m in msgs]
            load.wait_acked(N_AS2 * 2 // 5, posts)
            wait_until(lambda: count(cl.folder) >= 20, timeout=60,
                       desc="some files delivered before the kill")
            kills["a"] = load.kill(a, db)
            load.wait_acked(N_AS2 * 13 // 20, posts)
            kills["b"] = load.kill(b, db)
            load.restart(a, start_server)
            for f in posts:
                f.result()
        finally:
            load.posted.set()
        dropping.result()
    return kills


def check_dispositions(load):
    """Every message acknowledged by a signed MDN with the right MIC
    (post()): "processed", or for a request sent again after a killed node
    did not answer, "processed" or duplicate-document (the killed node
    stored it before it died: it must still be delivered, below)."""
    assert len(load.acked) == N_AS2
    unanswered = {f for f, _ in load.unanswered}
    for f, (name, d) in load.acked.items():
        if f in unanswered:
            assert PROCESSED.match(d) or DUPLICATE.match(d), (f, name, d)
        else:
            assert PROCESSED.match(d), (f, name, d)


def retry_elsewhere(cl, load, msgs, kills):
    """The partner sends messages again (the same Message-ID and bytes) to
    another node than the one that acknowledged them, two of each node's,
    the dead b's included: each answered duplicate-document, signed, the
    right MIC (no second message or file: checked after)."""
    a, _, c = cl.nodes
    by_c = {f for f, (n, d) in load.acked.items()
            if n == "c" and PROCESSED.match(d)}
    for name, picks in (("a", kills["a"][0]), ("b", kills["b"][0]),
                        ("c", by_c)):
        others = [x for x in (a, c) if x.name != name]
        assert len(picks) >= 2, (name, picks)
        for k, f in enumerate(sorted(picks)[:2]):
            d = post(cl, others[k % len(others)], msgs[int(f[1:5])])
            assert DUPLICATE.match(d), (f, name, d)


def check_delivered(wharf, cl, sent_as2, sent_files):
    """Every AS2 payload and every file in its destination exactly once,
    byte-identical (SHA-256), and stored once: one message each."""
    a, _, c = cl.nodes
    wait_until(lambda: a.server.check_alive() and c.server.check_alive()
               and count(cl.out) >= N_AS2 and count(cl.folder) >= N_FILES
               and not listdir(cl.inbox), timeout=300,
               desc=f"{N_AS2} AS2 payloads and {N_FILES} files delivered")
    # a hop a killed node delivered but did not record is run again by
    # another node after its lease: wait for every message recorded as
    # sent, not only for the files. The redone hop finds the file marked
    # with its message's id and writes no second one ("already present").
    all_sent(wharf, c.data, N_FILES + N_AS2, timeout=240)
    time.sleep(2)                   # a second delivery would show by now
    assert same(cl.files(), sent_as2) == {}
    assert same(contents(cl.folder), sent_files) == {}
    got = wharf.messages(a.data)
    assert len(got) == N_FILES + N_AS2, "one message per Message-ID/file"
    stored_once(wharf, a.data, got, "as2-cli", sent_as2)
    stored_once(wharf, a.data, got, "inbox", sent_files)
    assert {x["state"] for x in got} == {"sent"}


def check_logs(servers):
    """No node lost the outcomes of a batch it had delivered (a failed
    commit, a deadlock: the batch would be delivered again)."""
    for s in servers:
        lines = s.stderr().splitlines()
        bad = [x for x in lines if "deadlock detected" in x or
               "cannot commit" in x]
        assert not bad, (s.pid, bad[:5])


def check_nodes(wharf, cl, first):
    """`wharf cluster status`: the killed a and b silent, the restarted a
    and c running, no lease left on any; then a and c stopped cleanly."""
    a, b, c = cl.nodes
    ids = {s: node_id(s) for s in (first["a"], first["b"], c.server,
                                   a.server)}
    want = {ids[first["a"]]: ("silent", 0), ids[first["b"]]: ("silent", 0),
            ids[c.server]: ("running", 0), ids[a.server]: ("running", 0)}
    wait_until(lambda: node_states(wharf, b.data) == want, timeout=30,
               desc="a and b silent, a again and c running")
    a.server.stop()
    c.server.stop()
    st = node_states(wharf, c.data)
    assert st[ids[a.server]][0] == st[ids[c.server]][0] == "stopped", st


def test_r21_three_nodes_2000_files_and_500_as2_through_two_kills(
        tmp_path, wharf, pg_server, start_server):  # noqa: F811
    url = fresh_db(pg_server)
    cl = Cluster(wharf, tmp_path, url, start_server, shared_folder=True,
                 payloads="database")
    require_xattrs(cl.folder)
    first = {x.name: x.server for x in cl.nodes}
    with ThreadPoolExecutor(3) as pool:
        msgs = list(pool.map(lambda i: Message(cl, i), range(N_AS2)))
    files = [file_of(i) for i in range(N_FILES)]
    load = Load(cl, files)
    db = Psql(url)
    try:
        kills = run_load(cl, load, msgs, db, start_server)
        assert kills["a"][0] and kills["b"][0], (
            "a node acknowledged nothing before its kill")
        check_dispositions(load)
        retry_elsewhere(cl, load, msgs, kills)
        check_delivered(wharf, cl, {m.filename: sha(m.payload) for m in msgs},
                        {name: sha(body) for name, body in files})
        # the nodes shared nothing but the database: every message's
        # payload is in its rows, no payload file on any node
        assert db.count("SELECT count(*) FROM messages m WHERE EXISTS"
                        " (SELECT 1 FROM payload_segments p WHERE p.path ="
                        " m.payload_path AND p.seq = 0)") == N_AS2 + N_FILES
        assert list(tmp_path.rglob("*.wpay")) == []
        redone = db.count("SELECT count(*) FROM hops"
                          " WHERE receipt LIKE 'already present%'")
        stale = db.count("SELECT count(*) FROM events WHERE text LIKE"
                         " 'released: the node that received it%'")
    finally:
        db.close()
    print(f"{N_AS2} AS2 messages, {N_FILES} files: acknowledged before "
          f"their kill {len(kills['a'][0])} by a, {len(kills['b'][0])} by "
          f"b; hops leased at their kill {kills['a'][1]} by a, "
          f"{kills['b'][1]} by b; {len(load.unanswered)} POSTs unanswered "
          f"and sent again; {redone} hops redone after a kill found their "
          f"file in place; {stale} held hops released after ten leases")
    assert stale == 0, "a node held a message's hops for its MDN"
    check_nodes(wharf, cl, first)
    check_logs(start_server.started)


# ---- a node killed after its commit, before or after its MDN --------------


def killed_at(node, point, start_server, monkeypatch):
    """Start node again with the kill point (WHARF_FAULT) armed for its
    first AS2 message."""
    node.server.stop()
    monkeypatch.setenv("WHARF_FAULT", f"{point}:1")
    node.server = start_server(node.data)
    monkeypatch.delenv("WHARF_FAULT")
    node.server.wait_listening()


def delivered_once(wharf, cl, m, nodes):
    """m reaches the destination, once, recorded as sent."""
    b, c = nodes
    wait_until(lambda: b.server.check_alive() and c.server.check_alive()
               and cl.files(), timeout=180,
               desc=f"{m.filename} delivered by b or c")
    time.sleep(2)
    assert cl.files() == {m.filename: sha(m.payload)}
    assert [x["state"] for x in wharf.messages(c.data)] == ["sent"]
    b.server.stop()
    c.server.stop()


def test_r21_as2_stored_by_a_node_that_died_before_its_mdn_is_delivered(
        tmp_path, wharf, pg_server, start_server, monkeypatch):  # noqa: F811
    """Node a stores a message (its MDN kept with it, its hop free to go, in
    one commit) and is killed with kill -9 before the MDN went out (kill
    point as2.stored). The partner, which got no MDN, sends the same
    request again to node b, which answers "processed/warning:
    duplicate-document": the partner now counts the message as received,
    and the cluster delivers it, once."""
    cl = Cluster(wharf, tmp_path, fresh_db(pg_server), start_server)
    a, b, c = cl.nodes
    killed_at(a, "as2.stored", start_server, monkeypatch)
    m = Message(cl, 1)
    try:
        answer = cli.post(a.url, a.tls_cert, m.headers, m.body)
    except (OSError, http.client.HTTPException) as e:
        answer = e
    assert isinstance(answer, (OSError, http.client.HTTPException)), (
        "node a answered although killed before its MDN", answer)
    assert a.server.proc.wait(timeout=30) == -signal.SIGKILL
    stored = wharf.messages(b.data)
    assert len(stored) == 1, stored
    d = post(cl, b, m)
    assert DUPLICATE.match(d), d
    assert len(wharf.messages(c.data)) == 1
    delivered_once(wharf, cl, m, (b, c))


def test_r21_as2_acknowledged_then_node_killed_is_delivered(
        tmp_path, wharf, pg_server, start_server, monkeypatch):  # noqa: F811
    """Node a stores a message, sends its signed "processed" MDN and is
    killed with kill -9 at once (kill point as2.answered). The partner has
    its MDN and will never send the message again, so the cluster must
    deliver it. (Before the MDN was kept in the commit that stores the
    message, the hop stayed held until a second commit after the MDN;
    a node killed between the two left the hold to the others' sweep,
    ten leases later.)"""
    cl = Cluster(wharf, tmp_path, fresh_db(pg_server), start_server)
    a, b, c = cl.nodes
    killed_at(a, "as2.answered", start_server, monkeypatch)
    m = Message(cl, 2)
    d = post(cl, a, m)
    assert PROCESSED.match(d), d
    assert a.server.proc.wait(timeout=30) == -signal.SIGKILL
    delivered_once(wharf, cl, m, (b, c))
