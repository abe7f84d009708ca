"""
R18 (tamper-evident audit trail) end to end: the CLI's security-relevant
actions land in the trail as hash-chained entries; `serve` signs the head
at start and on a clean stop; `wharf audit verify` exits 0 on an intact
trail and exits 1, naming the first bad entry in one line, for every kind
of tampering done to DATA/wharf.db (while no server runs) or to the
keystore: an edited field, a deleted entry (with and without renumbering),
an inserted entry, reordered entries, a chain recomputed with valid hashes,
a corrupted checkpoint signature, another keystore's key, entries cut
from the end back past a checkpoint, and the newest entries cut after the
last checkpoint (caught by the signed head anchor DIR/state/audit.head, which
stays put when later activity appends again), with the anchor file deleted
or replaced too.

The entry hash is recomputed here from the encoding documented at the top
of src/audit/audit.c, so the recomputed chains are real forgeries: only the
signed checkpoints can expose them.
"""
import contextlib
import hashlib
import json
import re
import shutil
import sqlite3
import struct
import subprocess

import pytest

from conftest import (Wharf, file_dest, file_source, flow_doc, new_data_dir,
                      wait_until)

ZERO = "0" * 64


def entry_hash(seq, at, actor, address, action, target, detail, prev):
    h = hashlib.sha256(b"wharf-audit-entry v1\n")
    h.update(struct.pack(">q", seq))
    h.update(struct.pack(">q", at))
    for field in (actor, address, action, target, detail, prev):
        if field is None:
            h.update(b"\x00")
        else:
            b = field.encode()
            h.update(b"\x01" + struct.pack(">I", len(b)) + b)
    return h.hexdigest()


def entries(wharf, data):
    p = wharf.ok("audit", "list", "--data", data, "--json", "--limit",
                 "1000000")
    return json.loads(p.stdout)


@contextlib.contextmanager
def db(data):
    """An autocommit connection to DATA/wharf.db, closed afterwards."""
    conn = sqlite3.connect(str(data / "wharf.db"), isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def verify_broken(wharf, data, *words):
    """`audit verify` exits 1 with one stderr line naming the break."""
    p = wharf("audit", "verify", "--data", data)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("wharf: audit trail broken: "), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    assert p.stdout == ""
    return lines[0]


def verify_intact(wharf, data):
    p = wharf.ok("audit", "verify", "--data", data)
    m = re.fullmatch(r"audit trail intact: (\d+) entries, (\d+) checkpoints\n",
                     p.stdout)
    assert m, p.stdout
    return int(m.group(1)), int(m.group(2))


def rechain(conn, start):
    """Recompute prev_hash and hash of every entry from seq start on, as a
    forger would (valid links, valid hashes)."""
    prev = conn.execute("SELECT hash FROM audit WHERE seq = ?",
                        (start - 1,)).fetchone()[0]
    rows = conn.execute("SELECT seq, at, actor, address, action, target,"
                        " detail FROM audit WHERE seq >= ? ORDER BY seq",
                        (start,)).fetchall()
    for row in rows:
        h = entry_hash(*row, prev)
        conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                     (prev, h, row[0]))
        prev = h


def simple_flow(tmp_path):
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir(exist_ok=True)
    send.mkdir(exist_ok=True)
    return flow_doc([file_source("inbox", recv), file_dest("outbox", send)],
                    [("inbox", "outbox")])


def export_sha(wharf, data):
    text = wharf.export_flow(data)
    assert text.endswith("\n")
    return hashlib.sha256(text[:-1].encode()).hexdigest()


def master_ids(data):
    return [line.split()[1] for line in
            (data / "keystore").read_text().splitlines()
            if line.startswith("master ")]


# ---- the verb ---------------------------------------------------------------------


def test_r18_audit_cli_contract(wharf, data_dir):
    p = wharf("audit", "--help")
    assert p.returncode == 0 and p.stdout.startswith("usage:"), p
    assert "wharf audit verify" in p.stdout and "wharf audit list" in p.stdout
    assert "audit" in wharf.ok("--help").stdout
    for argv in (["audit"], ["audit", "frob"], ["audit", "list", "--limit",
                 "0"], ["audit", "list", "--limit", "ten"],
                 ["audit", "verify", "--json"], ["audit", "list", "--bogus"]):
        p = wharf(*argv, "--data", data_dir)
        assert p.returncode == 2, (argv, p.returncode, p.stderr)
        assert p.stderr.strip()
    p = wharf("audit", "verify", "--data", data_dir / "missing")
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr


# ---- what the CLI records ----------------------------------------------------


def test_r18_cli_actions_create_entries(tmp_path, wharf, data_dir):
    rows = entries(wharf, data_dir)
    # init is the first entry (it may record more, e.g. the first user)
    assert rows[0]["action"] == "wharf.init"
    assert rows[0]["actor"] == "cli" and rows[0]["seq"] == 1
    n0 = len(rows)

    sha_empty = export_sha(wharf, data_dir)                   # flow.export
    wharf.import_flow(data_dir, simple_flow(tmp_path),
                      tmp_path / "flow.json")                 # flow.import
    sha_flow = export_sha(wharf, data_dir)                    # flow.export
    assert sha_flow != sha_empty
    body = tmp_path / "order.edi"
    body.write_bytes(b"UNA:+.? '\nUNB+UNOC:3+A+B'\n")
    msgid = wharf.send(data_dir, "inbox", body)               # not audited
    con = sqlite3.connect(str(data_dir / "wharf.db"))         # as if it
    con.execute("UPDATE hops SET state = 'failed' WHERE message_id = ? "
                "AND state = 'queued'", (msgid,))             # had failed
    con.commit()
    con.close()
    wharf.ok("message", "resend", "--data", data_dir, msgid)  # message.resend
    old_id, = master_ids(data_dir)
    wharf.ok("key", "rotate", "--data", data_dir)   # key.rotate, key.retire
    new_id, = master_ids(data_dir)

    all_rows = entries(wharf, data_dir)
    rows = all_rows[n0 - 1:]            # the last entry before, then ours
    assert [r["action"] for r in rows[1:]] == [
        "flow.export", "flow.import", "flow.export", "message.resend",
        "key.rotate", "key.retire"]
    assert all(r["actor"] == "cli" for r in rows[1:])
    assert rows[1]["detail"] == f"flow sha256 {sha_empty}"
    assert rows[2]["target"] == str(tmp_path / "flow.json")
    assert rows[2]["detail"] == (f"flow sha256 before={sha_empty} "
                                 f"after={sha_flow}")
    assert rows[3]["detail"] == f"flow sha256 {sha_flow}"
    assert rows[4]["target"] == msgid
    assert re.fullmatch(r"requeued \d+ hop\(s\)", rows[4]["detail"])
    assert rows[5]["target"] == new_id
    assert rows[5]["detail"] == f"old={old_id} new={new_id}"
    assert rows[6]["target"] == new_id
    assert rows[6]["detail"] == (f"retired={old_id} payloads=1 "
                                 f"sealed=0")

    # numbered from 1, chained, hashed as documented
    prev = ZERO
    for i, r in enumerate(all_rows, 1):
        assert r["seq"] == i
        assert r["prev_hash"] == prev
        assert r["hash"] == entry_hash(r["seq"], r["at"], r["actor"],
                                       r["address"], r["action"], r["target"],
                                       r["detail"], prev)
        prev = r["hash"]
    n = len(all_rows)
    assert n == n0 + 6
    assert verify_intact(wharf, data_dir) == (n, 0)

    # --limit: the newest N, oldest first
    last = json.loads(wharf.ok("audit", "list", "--data", data_dir, "--json",
                               "--limit", "2").stdout)
    assert [r["seq"] for r in last] == [n - 1, n]
    text = wharf.ok("audit", "list", "--data", data_dir).stdout.splitlines()
    assert len(text) == 1 + n and "key.retire" in text[-1]


def test_r18_list_never_prints_raw_control_characters(wharf, data_dir):
    wharf.export_flow(data_dir)
    n = len(entries(wharf, data_dir))
    with db(data_dir) as conn:
        conn.execute("UPDATE audit SET detail = 'x' || char(10) || "
                     "'     9  forged line' WHERE seq = ?", (n,))
    text = wharf.ok("audit", "list", "--data", data_dir).stdout
    assert len(text.splitlines()) == 1 + n, text
    verify_broken(wharf, data_dir, f"entry {n}: hash does not match its "
                  "contents (edited?)")


def test_r18_serve_signs_the_head_at_start_and_stop(tmp_path, wharf, data_dir,
                                                     start_server):
    wharf.export_flow(data_dir)
    n = len(entries(wharf, data_dir))
    assert n < 63
    assert verify_intact(wharf, data_dir) == (n, 0)
    server = start_server(data_dir)
    log = data_dir / "logs" / "wharf.log"
    wait_until(lambda: server.check_alive() and log.exists() and
               "serving" in log.read_text(), timeout=30,
               desc="the server running")
    with db(data_dir) as conn:
        assert conn.execute("SELECT seq FROM audit_checkpoints").fetchall() \
            == [(n,)]
    wharf.export_flow(data_dir)             # entry n + 1, while serving
    server.stop()
    with db(data_dir) as conn:
        assert conn.execute("SELECT MAX(seq) FROM audit").fetchone() \
            == (n + 1,)
        assert conn.execute("SELECT seq FROM audit_checkpoints ORDER BY seq"
                            ).fetchall() == [(n,), (n + 1,)]
    assert verify_intact(wharf, data_dir) == (n + 1, 2)
    # the stop checkpoint makes cutting the newest entry detectable
    with db(data_dir) as conn:
        conn.execute("DELETE FROM audit WHERE seq = ?", (n + 1,))
    verify_broken(wharf, data_dir, f"entry {n + 1}: missing")


# ---- tampering ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trail(wharf_bin, tmp_path_factory):
    """A data dir whose trail has 140 entries and checkpoints at 64 and 128,
    made by CLI actions only. Tests tamper with copies of it."""
    base = tmp_path_factory.mktemp("audit-trail")
    w = Wharf(wharf_bin, base)
    data = new_data_dir(w, base / "data")
    w.import_flow(data, simple_flow(base), base / "flow.json")
    n = len(entries(w, data))       # init's entries and the import
    assert n < 17                   # the tampering below starts at 17
    for _ in range(140 - n):
        w.ok("flow", "export", "--data", data)
    assert verify_intact(w, data) == (140, 2)
    return data


@pytest.fixture
def copy(trail, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(trail, dst)
    return dst


def test_r18_intact_copy_verifies(wharf, copy):
    assert verify_intact(wharf, copy) == (140, 2)
    with db(copy) as conn:
        assert conn.execute("SELECT seq FROM audit_checkpoints ORDER BY seq"
                            ).fetchall() == [(64,), (128,)]


def tamper_edit(conn, data, tmp_path, wharf):
    conn.execute("UPDATE audit SET detail = 'flow sha256 0000' WHERE seq = 17")
    return ["entry 17: hash does not match its contents (edited?)"]


def tamper_edit_actor(conn, data, tmp_path, wharf):
    conn.execute("UPDATE audit SET actor = 'user:alice' WHERE seq = 99")
    return ["entry 99: hash does not match its contents (edited?)"]


def tamper_delete(conn, data, tmp_path, wharf):
    conn.execute("DELETE FROM audit WHERE seq = 40")
    return ["entry 40: missing (entry 39 is followed by entry 41; deleted?)"]


def tamper_delete_renumber(conn, data, tmp_path, wharf):
    conn.execute("DELETE FROM audit WHERE seq = 40")
    conn.execute("UPDATE audit SET seq = seq - 1 WHERE seq > 40")
    return ["entry 40: previous-hash link broken"]


def tamper_insert(conn, data, tmp_path, wharf):
    # room at 50, then a forged entry there, correctly linked and hashed
    conn.execute("UPDATE audit SET seq = -seq WHERE seq >= 50")
    conn.execute("UPDATE audit SET seq = -seq + 1 WHERE seq < 0")
    prev, at = conn.execute("SELECT hash, at FROM audit WHERE seq = 49"
                            ).fetchone()
    row = (50, at + 1, "user:mallory", "203.0.113.9", "login.success", None,
           None)
    conn.execute("INSERT INTO audit(seq, at, actor, address, action, target,"
                 " detail, prev_hash, hash) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 row + (prev, entry_hash(*row, prev)))
    return ["entry 51: previous-hash link broken"]


def tamper_reorder(conn, data, tmp_path, wharf):
    conn.execute("UPDATE audit SET seq = -1 WHERE seq = 30")
    conn.execute("UPDATE audit SET seq = 30 WHERE seq = 31")
    conn.execute("UPDATE audit SET seq = 31 WHERE seq = -1")
    return ["entry 30: previous-hash link broken"]


def tamper_forged_chain(conn, data, tmp_path, wharf):
    conn.execute("UPDATE audit SET detail = 'nothing to see' WHERE seq = 100")
    rechain(conn, 100)
    return ["checkpoint at 128: the signed hash differs from entry 128's hash",
            "after the checkpoint at 64"]


def tamper_forged_chain_and_checkpoint(conn, data, tmp_path, wharf):
    conn.execute("UPDATE audit SET detail = 'nothing to see' WHERE seq = 100")
    rechain(conn, 100)
    conn.execute("UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit"
                 " WHERE seq = 128) WHERE seq = 128")
    return ["checkpoint at 128: signature invalid"]


def tamper_bad_signature(conn, data, tmp_path, wharf):
    sig, = conn.execute("SELECT signature FROM audit_checkpoints WHERE"
                        " seq = 64").fetchone()
    flipped = sig[:20] + ("1" if sig[20] == "0" else "0") + sig[21:]
    conn.execute("UPDATE audit_checkpoints SET signature = ? WHERE seq = 64",
                 (flipped,))
    return ["checkpoint at 64: signature invalid"]


def tamper_other_keystore(conn, data, tmp_path, wharf):
    other = tmp_path / "other"
    wharf.init(other)
    (data / "keystore").write_bytes((other / "keystore").read_bytes())
    return ["checkpoint at 64: audit key ", "is not in this keystore"]


def tamper_truncate(conn, data, tmp_path, wharf):
    conn.execute("DELETE FROM audit WHERE seq > 100")
    return ["entry 101: missing (the trail ends at entry 100 but a checkpoint "
            "signs entry 128; newest entries deleted?)"]


TAMPERING = [tamper_edit, tamper_edit_actor, tamper_delete,
             tamper_delete_renumber, tamper_insert, tamper_reorder,
             tamper_forged_chain, tamper_forged_chain_and_checkpoint,
             tamper_bad_signature, tamper_other_keystore, tamper_truncate]


@pytest.mark.parametrize("tamper", TAMPERING,
                         ids=[t.__name__[len("tamper_"):] for t in TAMPERING])
def test_r18_audit_verify_names_the_break(tmp_path, wharf, copy, tamper):
    with db(copy) as conn:
        words = tamper(conn, copy, tmp_path, wharf)
    verify_broken(wharf, copy, *words)
    # the trail is still listed (verify reports, it does not repair)
    assert entries(wharf, copy)


# ---- the newest entries deleted (the signed head anchor) ----------------------


def sqlite3_cli(data, sql):
    """Run sql on DATA/wharf.db with the sqlite3 command-line shell, as
    someone with write access to the data dir would."""
    p = subprocess.run(["sqlite3", str(data / "wharf.db"), sql],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("n", [1, 3, 12])
def test_r18_deleted_newest_entries_are_reported(wharf, copy, n):
    # the trail has 140 entries, the last checkpoint signs 128: cutting up
    # to 12 entries leaves a valid chain that no checkpoint contradicts
    with db(copy) as conn:
        h140, = conn.execute("SELECT hash FROM audit WHERE seq = 140"
                             ).fetchone()
    head = (copy / "state" / "audit.head").read_text()
    assert head.startswith(f"wharf-audit-head v1\nseq 140\nhash {h140}\n")
    sqlite3_cli(copy, f"DELETE FROM audit WHERE seq > {140 - n}")
    m = 140 - n
    verify_broken(wharf, copy, f"entry {m + 1}: missing (the newest entries "
                  f"were deleted: the signed head anchor names entry 140 "
                  f"(hash {h140}), the trail ends at entry {m})")
    # later activity does not cover it up: the anchor stays as evidence
    p = wharf.ok("flow", "export", "--data", copy)
    assert "audit head anchor" in p.stderr and "kept as evidence" in p.stderr
    assert (copy / "state" / "audit.head").read_text() == head
    line = verify_broken(wharf, copy, "the signed head anchor")
    assert ("the signed head anchor names entry 140" in line if n > 1 else
            "entry 140: its hash differs from the one the signed head anchor "
            "names" in line), line
    # deleting the anchor as well is reported too
    (copy / "state" / "audit.head").unlink()
    verify_broken(wharf, copy, "audit.head is missing (deleted?)")


def test_r18_anchor_replaced_by_another_is_reported(tmp_path, wharf, copy):
    other = tmp_path / "other"
    wharf.init(other)
    shutil.copy(other / "state" / "audit.head", copy / "state" / "audit.head")
    verify_broken(wharf, copy, "the signed head anchor", "does not verify",
                  "is not in this keystore")
