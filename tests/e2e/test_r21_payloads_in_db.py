"""
R21: payloads kept in PostgreSQL (wharf.conf `payload_dir = database`), so
the nodes of a cluster share nothing but their database (a real
PostgreSQL 15 started by these tests on 127.0.0.1).

  - a message received by one node is delivered by another, byte
    identical, though the two data dirs share no folder; no payload file
    is written on either node, the payload's sealed rows are in the
    database and hold no plaintext;
  - `wharf key rotate` re-wraps the header rows (they name the new master
    key) and leaves the segment rows as they were; the other node, given
    the new keystore, delivers what was stored before, byte identical;
  - `wharf message erase` leaves no row of the erased payload; the
    message shows erased, the others are delivered;
  - a byte changed in a segment row fails its message (no file, not even
    a partial one, in the destination) with an error naming the segment
    and an integrity.payload alert; the others are delivered;
  - payload_dir = database needs a PostgreSQL store: `wharf init` refuses
    it without --store (and makes no data dir), serve of a SQLite node
    whose wharf.conf says it refuses to start, saying why;
  - a 40 MiB payload streams through the database: 1 + ceil(40 MiB /
    64 KiB) rows, delivered byte identical by the other node;
  - the purge sweeps the rows of a payload no message names once they
    are old (an intake cut short), and keeps those of stored messages.
"""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from conftest import (drop_file, file_dest, file_source, flow_doc, listdir,
                      new_data_dir, sha256_bytes, sha256_file, tune_conf,
                      wait_until)
from test_r15_key_rotation import master_keys
from test_r15_key_rotation_cluster import rotate
from test_r19_alerts import wait_alert
import test_r21_cluster
from test_r21_cluster import fresh_db

SEGMENT = 64 * 1024         # plaintext bytes of a payload segment
pg_server = test_r21_cluster.pg_server      # the fixture, for pytest


def db_nodes(wharf, tmp_path, url):
    """Node a (makes the schema) and node b (joins with a's keystore),
    each with its own data dir, payloads in the database."""
    a = new_data_dir(wharf, tmp_path / "a", "--store", url,
                     "--payload-dir", "database")
    b = new_data_dir(wharf, tmp_path / "b", "--store", url, "--keystore",
                     str(a / "keystore"), "--payload-dir", "database")
    return a, b


def psql(url, sql):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def payload_files(*dirs):
    return [p for d in dirs for p in Path(d).rglob("*.wpay")]


def failing_flow(wharf, tmp_path, a):
    """A flow inbox -> outbox whose deliveries fail (outbox is a file, not
    a folder, until the test makes it one). Returns (inbox, outbox)."""
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    outbox.mkdir()
    wharf.import_flow(a, flow_doc(
        [file_source("inbox", inbox),
         file_dest("outbox", outbox, retry={"initial_ms": 100,
                                            "max_ms": 300,
                                            "max_attempts": 1000})],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    outbox.rmdir()
    outbox.write_bytes(b"")     # a file, not a folder: deliveries fail
    return inbox, outbox


def stored(wharf, tmp_path, a, n, size):
    """A flow inbox -> outbox and n messages stored on node a with `wharf
    send` (no node serving: they wait, queued). Returns (outbox, {id:
    (file name, bytes)})."""
    inbox, outbox, src = (tmp_path / "in", tmp_path / "out",
                          tmp_path / "src")
    for d in (inbox, outbox, src):
        d.mkdir()
    wharf.import_flow(a, flow_doc([file_source("inbox", inbox),
                                   file_dest("outbox", outbox)],
                                  [("inbox", "outbox")]),
                      tmp_path / "flow.json")
    msgs = {}
    for i in range(n):
        body = os.urandom(size + i)
        f = src / f"invoice{i}.edi"
        f.write_bytes(body)
        msgs[wharf.send(a, "inbox", f)] = (f.name, body)
    assert {m["id"] for m in wharf.messages(a, "queued")} == set(msgs)
    return outbox, msgs


def path_of(url, msgid):
    """The payload_path of message msgid (its rows' path)."""
    p = psql(url, f"SELECT payload_path FROM messages WHERE id = '{msgid}'")
    assert p.startswith("payloads/") and p.endswith(".wpay"), p
    return p


def rows(url, path, where="TRUE"):
    return int(psql(url, "SELECT COUNT(*) FROM payload_segments WHERE"
                         f" path = '{path}' AND {where}"))


def header_key_ids(url):
    """{path: master key id} of every header row (bytes 9..25, ascii hex:
    src/vault/payload.c)."""
    out = psql(url, "SELECT path || ' ' || encode(data, 'hex') FROM"
                    " payload_segments WHERE seq = 0")
    return {ln.split()[0]: bytes.fromhex(ln.split()[1])[9:25].decode()
            for ln in out.splitlines()}


def segments_digest(url):
    return psql(url, "SELECT md5(string_agg(data, ''::bytea ORDER BY path,"
                     " seq)) FROM payload_segments WHERE seq > 0")


def delivered(wharf, b, outbox, msgs, start_server, skip=()):
    """Start node b; wait until it delivered every message of msgs but
    those in skip, and check them byte identical. Returns node b."""
    node_b = start_server(b)
    node_b.wait_listening()
    want = sorted(name for i, (name, _) in msgs.items() if i not in skip)
    wait_until(lambda: node_b.check_alive() and listdir(outbox) == want,
               timeout=60, desc="node b delivered the stored messages")
    for msgid, (name, body) in msgs.items():
        if msgid not in skip:
            assert sha256_file(outbox / name) == sha256_bytes(body), name
    return node_b


def test_r21_a_node_delivers_what_another_received_sharing_only_the_database(
        tmp_path, wharf, pg_server, start_server):
    url = fresh_db(pg_server)
    a, b = db_nodes(wharf, tmp_path, url)
    inbox, outbox = failing_flow(wharf, tmp_path, a)
    data = {f"m{i}.edi": os.urandom(100_000 + i) for i in range(5)}
    node_a = start_server(a)
    node_a.wait_listening()
    for name, body in data.items():
        drop_file(inbox, name, body)
    wait_until(lambda: listdir(inbox) == [], timeout=30,
               desc="node a took every file")
    node_a.kill9()
    assert payload_files(a, b) == []
    rows = int(psql(url, "SELECT COUNT(*) FROM payload_segments"))
    assert rows >= 5 * 3            # a header and two segments each
    blob = bytes.fromhex(psql(url, "SELECT string_agg(encode(data, 'hex'),"
                                   " '') FROM payload_segments")[:])
    for body in data.values():
        assert body[:64] not in blob
    outbox.unlink()
    outbox.mkdir()
    node_b = start_server(b)
    node_b.wait_listening()
    wait_until(lambda: sorted(listdir(outbox)) == sorted(data), timeout=60,
               desc="node b delivered what node a received")
    for name, body in data.items():
        assert (outbox / name).read_bytes() == body
    assert payload_files(a, b) == []
    node_b.stop()


def test_r21_payloads_in_db_survive_key_rotation(tmp_path, wharf, pg_server,
                                                 start_server):
    url = fresh_db(pg_server)
    a, b = db_nodes(wharf, tmp_path, url)
    outbox, msgs = stored(wharf, tmp_path, a, 3, 150 * 1024)
    first, _ = master_keys(a)
    paths = {path_of(url, m) for m in msgs}
    assert header_key_ids(url) == {p: first for p in paths}
    segments = segments_digest(url)
    p = rotate(wharf, a)
    assert p.returncode == 0, (p.stdout, p.stderr)
    second, ids = master_keys(a)
    assert second != first and ids == [second]
    assert header_key_ids(url) == {p: second for p in paths}
    assert segments_digest(url) == segments     # not rewritten
    assert payload_files(a, b) == []
    # the runbook: the rotated keystore over b's (0600), then b delivers
    shutil.copyfile(a / "keystore", b / "keystore")
    os.chmod(b / "keystore", 0o600)
    node_b = delivered(wharf, b, outbox, msgs, start_server)
    log = node_b.stderr() + node_b.stdout()
    assert "unknown master key" not in log, log[-3000:]
    node_b.stop()


def test_r21_erased_payload_rows_are_gone(tmp_path, wharf, pg_server,
                                          start_server):
    url = fresh_db(pg_server)
    a, b = db_nodes(wharf, tmp_path, url)
    outbox, msgs = stored(wharf, tmp_path, a, 3, 150 * 1024)
    victim = sorted(msgs)[1]
    path = path_of(url, victim)
    assert rows(url, path) == 4         # the header and three segments
    wharf.ok("message", "erase", "--data", a, victim)
    assert rows(url, path) == 0
    assert wharf.show(b, victim)["state"] == "erased"
    for m in msgs:
        if m != victim:
            assert rows(url, path_of(url, m)) == 4
    node_b = delivered(wharf, b, outbox, msgs, start_server, skip={victim})
    wait_until(lambda: {m["id"]: m["state"] for m in wharf.messages(b)} ==
               {m: "erased" if m == victim else "sent" for m in msgs},
               timeout=30, desc="the others sent, the erased one erased")
    node_b.stop()
    assert rows(url, path) == 0


def test_r21_tampered_payload_row_is_refused_not_delivered(
        tmp_path, wharf, pg_server, start_server):
    url = fresh_db(pg_server)
    a, b = db_nodes(wharf, tmp_path, url)
    tune_conf(b, alert_check_seconds=1)
    # three segments each: the damage is in the third, after plaintext
    # that did verify, none of which may reach the destination
    outbox, msgs = stored(wharf, tmp_path, a, 5, 150 * 1024)
    victim = sorted(msgs)[2]
    path = path_of(url, victim)
    where = f"path = '{path}' AND seq = 3"
    before = psql(url, "SELECT encode(substring(data from 100 for 1), 'hex')"
                       f" FROM payload_segments WHERE {where}")
    flipped = bytes([bytes.fromhex(before)[0] ^ 0x5A]).hex()
    psql(url, "UPDATE payload_segments SET data = overlay(data placing"
              f" '\\x{flipped}'::bytea from 100 for 1) WHERE {where}")
    after = psql(url, "SELECT encode(substring(data from 100 for 1), 'hex')"
                      f" FROM payload_segments WHERE {where}")
    assert after == flipped != before
    node_b = start_server(b)
    node_b.wait_listening()

    def settled():
        node_b.check_alive()
        states = {m["id"]: m["state"] for m in wharf.messages(b)}
        return all(s in ("sent", "failed") for s in states.values()) and \
            states

    states = wait_until(settled, timeout=60,
                        desc="every message sent or failed")
    assert states[victim] == "failed", states
    assert all(s == "sent" for i, s in states.items() if i != victim), states
    alert = wait_alert(wharf, b, "integrity.payload", victim, srv=node_b)
    assert alert["level"] == "critical"
    assert "failed authentication" in (alert["details"] or ""), alert
    node_b.stop()
    d = wharf.show(b, victim)
    err = [h for h in d["hops"] if h["connector"] == "outbox"][0][
        "last_error"]
    assert victim in err and "segment 2" in err, err
    # the others arrived intact; of the victim there is no file at all,
    # not even a partial or temporary one
    names = listdir(outbox)
    assert names == sorted(n for i, (n, _) in msgs.items() if i != victim)
    for msgid, (name, body) in msgs.items():
        if msgid != victim:
            assert sha256_file(outbox / name) == sha256_bytes(body), name
    assert not any(n.endswith(".tmp") or n.startswith(".") for n in
                   os.listdir(outbox))


def test_r21_payload_dir_database_needs_postgresql(tmp_path, wharf,
                                                   start_server):
    p = wharf("init", "--data", tmp_path / "x", "--payload-dir", "database")
    assert p.returncode != 0, p
    assert "payload_dir = database needs a PostgreSQL store" in p.stderr, \
        p.stderr
    assert not (tmp_path / "x").exists()
    d = new_data_dir(wharf, tmp_path / "s")
    tune_conf(d, payload_dir="database")
    srv = start_server(d)
    assert srv.proc.wait(timeout=60) != 0
    err = srv.stderr()
    assert "payload_dir = database needs a PostgreSQL store" in err, err
    assert payload_files(d) == []


def test_r21_large_payload_streams_through_the_database(tmp_path, wharf,
                                                        pg_server,
                                                        start_server):
    url = fresh_db(pg_server)
    a, b = db_nodes(wharf, tmp_path, url)
    inbox, outbox = failing_flow(wharf, tmp_path, a)
    size = 40 * 1024 * 1024
    body = os.urandom(size)
    node_a = start_server(a)
    node_a.wait_listening()
    drop_file(inbox, "big.bin", body)
    wait_until(lambda: listdir(inbox) == [], timeout=60,
               desc="node a took the 40 MiB file")
    node_a.stop()
    [m] = wharf.messages(a)
    path = path_of(url, m["id"])
    assert rows(url, path) == 1 + -(-size // SEGMENT)
    assert rows(url, path, "seq = 0 AND length(data) = 92") == 1
    assert payload_files(a, b) == []
    outbox.unlink()
    outbox.mkdir()
    node_b = start_server(b)
    node_b.wait_listening()
    wait_until(lambda: node_b.check_alive() and
               listdir(outbox) == ["big.bin"] and
               wharf.messages(b)[0]["state"] == "sent", timeout=120,
               desc="node b delivered the 40 MiB file")
    assert sha256_file(outbox / "big.bin") == hashlib.sha256(body).hexdigest()
    node_b.stop()


def test_r21_orphan_payload_rows_are_swept_by_the_purge(tmp_path, wharf,
                                                        pg_server,
                                                        start_server):
    url = fresh_db(pg_server)
    a, b = db_nodes(wharf, tmp_path, url)
    tune_conf(b, purge_interval_seconds=1)
    outbox, msgs = stored(wharf, tmp_path, a, 2, 70 * 1024)
    # the rows a node killed between its payload's commit and its
    # message's would leave, written a day ago
    orphan = "payloads/20200101/0190aaaa-0000-7000-8000-000000000001.wpay"
    psql(url, "INSERT INTO payload_segments(path, seq, created_at, data)"
              f" SELECT '{orphan}', s, (extract(epoch FROM now()) * 1000)"
              "::bigint - 86400000, decode(repeat('ab', 100), 'hex') FROM"
              " generate_series(0, 2) s")
    assert rows(url, orphan) == 3
    node_b = delivered(wharf, b, outbox, msgs, start_server)
    wait_until(lambda: node_b.check_alive() and rows(url, orphan) == 0,
               timeout=30, desc="the purge swept the orphan rows")
    node_b.stop()
    for m in msgs:
        assert rows(url, path_of(url, m)) == 3
    log = node_b.stderr() + node_b.stdout()
    if (b / "logs" / "wharf.log").exists():
        log += (b / "logs" / "wharf.log").read_text(errors="replace")
    assert "1 payload(s) no message names removed" in log, log[-3000:]
