"""
R15 on R21: `wharf key rotate` on a cluster of two nodes sharing one
PostgreSQL database (a real PostgreSQL 15, the fixtures of
test_r21_cluster.py) and one payload folder.

Every node holds its own copy of the keystore, in memory while it serves:
  - while node b runs, `wharf key rotate` on node a is refused, naming b,
    and changes nothing (the keystore, the sealed values; the refusal is
    audited);
  - node a's own row, left "running" by a kill -9 a moment ago, does not
    hold the rotation up (its process is gone);
  - the runbook (docs/operations.md, "Key rotation" of a cluster): stop
    every node, rotate on a (here first killed in the middle of the sealed
    values through the WHARF_FAULT hook, util/fault.h, and resumed), copy
    a's keystore (0600) over b's, start them: node b delivers the messages
    stored before the rotation (their payload headers were re-wrapped) and
    its webhook accepts the sealed password (before the copy, b's serve is
    refused: its keystore's active key is not the cluster's); `wharf audit verify` passes on
    both; every payload header and every sealed value of the database names
    the new active key.
"""
import json
import os
import secrets
import shutil
import subprocess

from conftest import (child_env, assert_no_sanitizer_report, file_dest,
                      flow_doc, listdir, listen_port, wait_until)
from test_m6_http import basic, post, secret_file
from test_r15_key_rotation import master_keys
from test_r21_cluster import fresh_db, pg_server, two_nodes  # noqa: F401

HOOK_PW = "hook-pw-" + secrets.token_hex(6)


def hook_flow(tmp_path, out):
    """A webhook with basic auth (its password sealed in
    connector_secrets) delivering to a folder both nodes write."""
    sec = tmp_path / "secrets"
    sec.mkdir()
    return flow_doc([
        {"name": "hook", "type": "webhook", "config": {
            "auth": {"type": "basic", "user": "acme",
                     "password_file": secret_file(sec, "hook-pw",
                                                  HOOK_PW)}}},
        file_dest("out", out)], [("hook", "out")])


def psql(url, sql):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def sealed_key_ids(url):
    """The master key id every sealed blob of the database names (version
    1, then the key id: src/vault/seal.c)."""
    rows = psql(url, "SELECT encode(blob, 'hex') FROM connector_secrets"
                " UNION ALL SELECT encode(key_sealed, 'hex') FROM"
                " certificates WHERE key_sealed IS NOT NULL"
                " UNION ALL SELECT encode(totp_sealed, 'hex') FROM users"
                " WHERE totp_sealed IS NOT NULL")
    blobs = [bytes.fromhex(r) for r in rows]
    assert blobs and all(b[0] == 1 for b in blobs), rows
    return [b[1:17].decode() for b in blobs]


def payload_key_ids(payloads):
    """The master key id of every payload header (bytes 9..25,
    src/vault/payload.c)."""
    return [f.read_bytes()[9:25].decode()
            for f in sorted(payloads.glob("*/*.wpay"))]


def hook(port, name, pw=HOOK_PW):
    return post(port, "/webhook/hook", name.encode(),
                {**basic("acme", pw), "X-Wharf-Filename": name})


def rotate(wharf, data, fault=None):
    env = child_env()
    if fault:
        env["WHARF_FAULT"] = fault
    p = subprocess.run([wharf.binary, "key", "rotate", "--data", str(data)],
                       capture_output=True, text=True, timeout=300, env=env,
                       cwd=wharf.workdir)
    assert_no_sanitizer_report(p.stderr, "key rotate")
    return p


def test_r15_key_rotation_of_a_cluster(tmp_path, wharf, pg_server,
                                       start_server):
    url = fresh_db(pg_server)
    a, b = two_nodes(wharf, tmp_path, url)
    out = tmp_path / "out"
    out.mkdir()
    wharf.import_flow(a, hook_flow(tmp_path, out), tmp_path / "flow.json")
    first, _ = master_keys(a)
    assert master_keys(b) == (first, [first])
    node_a, node_b = start_server(a), start_server(b)
    node_a.wait_listening()
    node_b.wait_listening()
    port_a, port_b = listen_port(a, "partner"), listen_port(b, "partner")
    for port, name in ((port_a, "before-a.txt"), (port_b, "before-b.txt")):
        st, r = hook(port, name)
        assert st == 200 and "id" in r, (st, r)
    wait_until(lambda: listdir(out) == ["before-a.txt", "before-b.txt"],
               timeout=60, desc="both webhooks' messages delivered")

    # (a) node b runs: rotating on a (stopped) is refused, naming b, and
    # changes nothing
    node_a.stop()
    keystore = (a / "keystore").read_bytes()
    sealed = sealed_key_ids(url)
    assert set(sealed) == {first}
    p = rotate(wharf, a)
    b_id = f"{os.uname().nodename}/{node_b.pid}"
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert f"node(s) {b_id} are running on this database" in p.stderr, \
        p.stderr
    assert "Stop every node" in p.stderr, p.stderr
    assert (a / "keystore").read_bytes() == keystore
    assert sealed_key_ids(url) == sealed
    assert set(payload_key_ids(tmp_path / "payloads")) == {first}
    rows = json.loads(wharf.ok("audit", "list", "--json", "--data",
                               a).stdout)
    refused = [x["detail"] for x in rows
               if x["action"] == "key.rotate.refused"]
    assert refused == [f"running={b_id}"], refused
    st, _ = hook(port_b, "while-refused.txt")        # b still serves
    assert st == 200

    # node a again, killed: its row still looks fresh, but its process is
    # gone, so it does not hold the rotation up; b stops cleanly
    wait_until(lambda: "while-refused.txt" in listdir(out), timeout=30,
               desc="b's last message delivered")
    node_a = start_server(a)
    node_a.wait_listening()
    node_b.stop()
    node_a.kill9()
    # messages stored while no node runs, queued for "out" under the old
    # key: node b delivers them after the rotation
    pending = {}
    for i in range(3):
        name = f"stored-{i}.txt"
        (tmp_path / name).write_bytes(name.encode() * 50)
        pending[name] = wharf.send(a, "hook", tmp_path / name)

    # rotate on a: killed in the middle of the sealed values (their
    # transaction rolls back), then resumed by the next run
    p = rotate(wharf, a, "rotate.sealed:1")
    assert p.returncode == -9, (p.returncode, p.stdout, p.stderr)
    second, ids = master_keys(a)
    assert second != first and sorted(ids) == sorted([first, second])
    assert set(sealed_key_ids(url)) == {first}      # rolled back
    p = rotate(wharf, a)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout.startswith("finishing an interrupted rotation: master "
                               f"key {second} is active"), p.stdout
    assert master_keys(a) == (second, [second])
    assert set(sealed_key_ids(url)) == {second}
    assert set(payload_key_ids(tmp_path / "payloads")) == {second}

    # node b with its old copy of the keystore is refused at start (it
    # could not open what was re-wrapped), saying what to copy
    refused_b = start_server(b)
    assert refused_b.proc.wait(timeout=60) == 1
    err = refused_b.stderr()
    assert f"has master key {first} active, but the cluster moved to " \
        f"master key {second}" in err, err
    assert "copy that node's keystore (mode 0600) over this one" in err, err

    # the runbook: a's keystore over b's (0600), then start b alone
    shutil.copyfile(a / "keystore", b / "keystore")
    os.chmod(b / "keystore", 0o600)
    node_b = start_server(b)
    node_b.wait_listening()
    wait_until(lambda: node_b.check_alive() and
               set(pending) <= set(listdir(out)), timeout=60,
               desc="the messages stored before the rotation delivered by b")
    for name in pending:
        assert (out / name).read_bytes() == name.encode() * 50
    st, _ = hook(port_b, "wrong.txt", pw="nope")
    assert st == 401
    st, r = hook(port_b, "after-b.txt")
    assert st == 200 and "id" in r, (st, r)
    node_a = start_server(a)
    node_a.wait_listening()
    st, r = hook(port_a, "after-a.txt")
    assert st == 200 and "id" in r, (st, r)
    wait_until(lambda: {"after-a.txt", "after-b.txt"} <= set(listdir(out)),
               timeout=60, desc="both nodes deliver after the rotation")
    wait_until(lambda: {m["state"] for m in wharf.messages(b)} == {"sent"},
               timeout=60, desc="every message recorded as sent")
    for node in (node_a, node_b):
        log = node.stderr() + node.stdout()
        assert "unknown master key" not in log and "does not open" not in \
            log, log[-3000:]
    for d in (a, b):
        v = wharf.ok("audit", "verify", "--data", d).stdout
        assert v.startswith("audit trail intact: "), v
    assert set(sealed_key_ids(url)) == {second}
    assert set(payload_key_ids(tmp_path / "payloads")) == {second}
    node_a.stop()
    node_b.stop()
