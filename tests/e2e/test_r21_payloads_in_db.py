"""
R21: payloads kept in PostgreSQL (wharf.conf `payload_dir = database`), so
the nodes of a cluster share nothing but their database (a real
PostgreSQL 15 started by these tests on 127.0.0.1).

  - a message received by one node is delivered by another, byte
    identical, though the two data dirs share no folder; no payload file
    is written on either node, the payload's sealed rows are in the
    database and hold no plaintext;
"""
import hashlib
import os
import subprocess
import time
from pathlib import Path

from conftest import (drop_file, file_dest, file_source, flow_doc, listdir,
                      new_data_dir, wait_until)
from test_r21_cluster import fresh_db, pg_server  # noqa: F401


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


def test_r21_a_node_delivers_what_another_received_sharing_only_the_database(
        tmp_path, wharf, pg_server, start_server):
    url = fresh_db(pg_server)
    a, b = db_nodes(wharf, tmp_path, url)
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
