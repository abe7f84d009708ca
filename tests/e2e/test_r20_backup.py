"""
R20 (backups and recovery) end to end, with the real binary, the openssl
CLI and an independent reader of the format (backup_peer.py):

- a backup taken while serve delivers hundreds of files holds every
  message acknowledged before it started, with the same bytes; restored
  into a fresh directory it serves, delivers a new message and its audit
  trail verifies;
- a tampered backup (a byte flipped in the header, the key block, a
  payload segment or the trailer; truncated; segments swapped; a byte
  appended) is refused by `backup verify` and `restore`, and restore
  leaves nothing behind;
- a backup for a backup certificate opens only with its private key (not
  with the master key, not with another key); one sealed with the master
  key needs the keystore of its time (not one rotated since);
- every run is recorded (backups table, as the posture report reads it)
  and audited; a payload gone before it was copied is recorded missing.
"""
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import sqlite3
import ssl
import subprocess
import threading
import time
from pathlib import Path

import backup_peer
from conftest import (assert_no_sanitizer_report, child_env, drop_file,
                      file_dest, file_source, flow_doc, new_data_dir,
                      sha256_bytes, sha256_file, wait_until)

SEG = 65536 + 16
TOKEN_RE = re.compile(r"(wharf_[A-Za-z0-9_-]{43})")


# ---- helpers -------------------------------------------------------------------


def file_flow(wharf, data, tmp_path):
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir(exist_ok=True)
    send.mkdir(exist_ok=True)
    wharf.import_flow(data, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", send)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    return recv, send


def admin_token(wharf, data):
    out = wharf.ok("token", "create", "--data", data, "--role", "admin",
                   "--owner", "admin", "--name", "r20")
    return TOKEN_RE.search(out.stdout + out.stderr).group(1)


def payload(port, token, msgid):
    ctx = ssl._create_unverified_context()
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                    timeout=60)
    try:
        c.request("GET", f"/api/v1/messages/{msgid}/payload",
                  headers={"Authorization": f"Bearer {token}"})
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body[:200])
        return body
    finally:
        c.close()


def audit_actions(wharf, data):
    rows = json.loads(wharf.ok("audit", "list", "--data", data, "--json",
                               "--limit", "100000").stdout)
    return [(r["action"], r["target"], r["detail"]) for r in rows]


def body_offset(path):
    with open(path, "rb") as f:
        head = f.read(20)
        jlen = int.from_bytes(head[16:20], "big")
        f.seek(20 + jlen)
        klen = int.from_bytes(f.read(4), "big")
    return 20 + jlen + 4 + klen


def by_name(msgs):
    out = {}
    for m in msgs:
        assert m["filename"] not in out, f"two messages for {m['filename']}"
        out[m["filename"]] = m
    return out


# ---- a backup during load ------------------------------------------------------------


def load_files(nfiles):
    """nfiles random files by name: small ones, and every 25th over two
    64 KiB segments; the seed is printed. Returns (files, their SHA-256)."""
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}")
    rnd = random.Random(seed)
    files = {}
    for i in range(nfiles):
        size = 150_000 + rnd.randrange(50_000) if i % 25 == 0 \
            else rnd.randrange(20_000)
        files[f"f{i:04d}.dat"] = os.urandom(size)
    return files, {n: sha256_bytes(d) for n, d in files.items()}


class Producer(threading.Thread):
    """Drops files into folder recv, pausing `pause` s after every `every`;
    .written lists those dropped, .failure what went wrong."""

    def __init__(self, recv, files, every, pause):
        super().__init__(daemon=True)
        self.recv, self.files, self.every, self.pause = \
            recv, files, every, pause
        self.written, self.failure = [], []

    def run(self):
        try:
            for n, (name, data) in enumerate(self.files.items()):
                drop_file(self.recv, name, data)
                self.written.append(name)
                if n % self.every == self.every - 1:
                    time.sleep(self.pause)
        except Exception as e:      # reported by the main thread
            self.failure.append(e)


def wait_all_sent(wharf, server, data, nfiles):
    """Until the nfiles messages of data are all sent (server still up)."""
    def all_sent():
        server.check_alive()
        msgs = wharf.messages(data)
        return len(msgs) == nfiles and all(m["state"] == "sent"
                                           for m in msgs)
    wait_until(all_sent, timeout=300, interval=0.5,
               desc="every file delivered by the original")


def test_r20_backup_during_load_restores_every_acknowledged_message(
        tmp_path, wharf, data_dir, start_server):
    recv, send = file_flow(wharf, data_dir, tmp_path)
    nfiles = 400
    files, expected = load_files(nfiles)
    server = start_server(data_dir)
    producer = Producer(recv, files, 10, 0.05)
    written, failure = producer.written, producer.failure
    producer.start()
    wait_until(lambda: len(written) >= nfiles // 3, timeout=120,
               desc="a third of the files dropped")
    # Acknowledged = taken and deleted by the source (after its commit).
    dropped = list(written)
    present = set(os.listdir(recv))
    acked = {n for n in dropped if n not in present}
    assert len(acked) >= 50, f"only {len(acked)} acknowledged so far"
    backup = tmp_path / "load.wbk"
    out = wharf.ok("backup", "--data", data_dir, "--to", backup, "--json")
    taken = json.loads(out.stdout)
    assert taken["path"] == str(backup)
    producer.join(timeout=120)
    assert not failure, f"producer failed: {failure[0]!r}"
    during = nfiles - len(dropped)
    print(f"{len(acked)} acknowledged before the backup, {during} dropped "
          f"after it began, {taken['messages']} messages in it")

    wait_all_sent(wharf, server, data_dir, nfiles)
    server.stop()
    # the load went on while the backup ran: later messages are not in it
    assert taken["messages"] < nfiles

    wharf.ok("backup", "verify", backup, "--data", data_dir)
    restored = tmp_path / "restored"
    wharf.ok("restore", "--from", backup, "--data", restored, "--keystore",
             data_dir / "keystore")
    msgs = by_name(wharf.messages(restored))
    assert len(msgs) == taken["messages"]
    missing = sorted(acked - set(msgs))
    assert not missing, f"acknowledged before the backup, not restored: " \
        f"{missing[:20]}"
    for name, m in msgs.items():
        assert m["sha256"] == expected[name], name
    wharf.ok("audit", "verify", "--data", restored)

    # Serve the restored dir: its payloads have the original bytes, what
    # was still queued at the snapshot is delivered, and a new file goes
    # through. (The original is stopped: same ports, same folders.)
    shutil.rmtree(send)
    send.mkdir()
    token = admin_token(wharf, restored)
    srv = start_server(restored)
    admin, _ = srv.wait_listening()
    for name in sorted(acked):
        got = payload(admin, token, msgs[name]["id"])
        assert sha256_bytes(got) == expected[name], name
    drop_file(recv, "after-restore.dat", b"new after the restore\n" * 500)
    wait_until(lambda: (send / "after-restore.dat").exists() and
               srv.check_alive(), timeout=120,
               desc="a new message delivered by the restored server")
    assert sha256_file(send / "after-restore.dat") == sha256_bytes(
        b"new after the restore\n" * 500)

    def restored_all_sent():
        srv.check_alive()
        return all(m["state"] == "sent" for m in wharf.messages(restored))
    wait_until(restored_all_sent, timeout=300, interval=0.5,
               desc="the restored server delivered what was queued")
    for name in os.listdir(send):
        if name in expected:
            assert sha256_file(send / name) == expected[name], name
    srv.stop()
    wharf.ok("audit", "verify", "--data", restored)
    assert any(a == "backup.create" and t == str(backup)
               for a, t, _ in audit_actions(wharf, data_dir))
    assert any(a == "backup.restore" and t == str(backup)
               and f"id={taken['backup_id']}" in d
               for a, t, d in audit_actions(wharf, restored))


# ---- tampering --------------------------------------------------------------------


def small_data(wharf, tmp_path, name="data"):
    data = new_data_dir(wharf, tmp_path / name)
    recv, _ = file_flow(wharf, data, tmp_path)
    ids = {}
    for n, size in (("big.bin", 200_000), ("a.txt", 10), ("b.txt", 3000)):
        p = tmp_path / n
        p.write_bytes(os.urandom(size))
        ids[n] = (wharf.send(data, "inbox", p), sha256_file(p))
    return data, ids


def test_r20_tampered_backup_refused_and_nothing_written(tmp_path, wharf):
    data, _ = small_data(wharf, tmp_path)
    good = tmp_path / "good.wbk"
    wharf.ok("backup", "--data", data, "--to", good)
    raw = good.read_bytes()
    body = body_offset(good)
    assert len(raw) > body + 4 * SEG, "want at least 5 segments"

    def flip(at):
        b = bytearray(raw)
        b[at] ^= 0x20
        return bytes(b)

    swapped = bytearray(raw)
    swapped[body + SEG:body + 2 * SEG] = raw[body + 2 * SEG:body + 3 * SEG]
    swapped[body + 2 * SEG:body + 3 * SEG] = raw[body + SEG:body + 2 * SEG]
    variants = {
        "header": flip(40),
        "key block": flip(body - 3),
        "payload segment": flip(body + 3 * SEG + 1000),
        "trailer": flip(len(raw) - 20),
        "truncated": raw[:-200],
        "truncated at a segment boundary": raw[:body + 3 * SEG],
        "segments swapped": bytes(swapped),
        "a byte appended": raw + b"\0",
    }
    for what, content in variants.items():
        bad = tmp_path / "bad.wbk"
        bad.write_bytes(content)
        p = wharf("backup", "verify", bad, "--data", data)
        assert p.returncode == 1, (what, p.stdout, p.stderr)
        assert "refused" in p.stderr and re.search(
            r"damaged|truncated|modified|does not authenticate|header",
            p.stderr), (what, p.stderr)
        target = tmp_path / "r-new"
        p = wharf("restore", "--from", bad, "--data", target, "--keystore",
                  data / "keystore")
        assert p.returncode == 1, (what, p.stdout, p.stderr)
        assert "restore failed" in p.stderr, (what, p.stderr)
        assert not target.exists(), f"{what}: restore left {target}"
        empty = tmp_path / "r-empty"
        empty.mkdir()
        p = wharf("restore", "--from", bad, "--data", empty, "--keystore",
                  data / "keystore")
        assert p.returncode == 1, (what, p.stderr)
        assert os.listdir(empty) == [], f"{what}: restore left files"
        empty.rmdir()
    # the untouched file still verifies and restores; a non-empty target
    # is refused before anything is written
    wharf.ok("backup", "verify", good, "--data", data)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    p = wharf("restore", "--from", good, "--data", busy, "--keystore",
              data / "keystore")
    assert p.returncode == 1 and "not empty" in p.stderr, p.stderr
    assert os.listdir(busy) == ["keep.txt"]
    wharf.ok("restore", "--from", good, "--data", tmp_path / "r-ok",
             "--keystore", data / "keystore")


# ---- who can open a backup ------------------------------------------------------------


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True,
                   capture_output=True, timeout=120)


def test_r20_public_key_backup_opens_only_with_its_private_key(tmp_path,
                                                               wharf):
    data, ids = small_data(wharf, tmp_path)
    key, crt = tmp_path / "backup.key", tmp_path / "backup.crt"
    openssl("req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", key,
            "-out", crt, "-subj", "/CN=wharf-backup", "-days", "30")
    other = tmp_path / "other.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
            "rsa_keygen_bits:2048", "-out", other)
    bk = tmp_path / "offsite.wbk"
    # the audit head anchor lives in DIR/state/ (serve's sandbox writes
    # only there): the backup takes it from there
    anchor = (data / "state" / "audit.head").read_bytes()
    assert not (data / "audit.head").exists()
    wharf.ok("backup", "--data", data, "--to", bk, "--recipient", crt)
    # neither the master key nor the audit key is in the file in clear
    keystore = (data / "keystore").read_text()
    raw = bk.read_bytes()
    for hexkey in re.findall(r" ([0-9a-f]{64}) ", keystore):
        assert hexkey.encode() not in raw
        assert bytes.fromhex(hexkey) not in raw
    # the master key does not open it, another key does not either
    p = wharf("backup", "verify", bk, "--data", data)
    assert p.returncode == 1 and "--key" in p.stderr, p.stderr
    p = wharf("backup", "verify", bk, "--key", other)
    assert p.returncode == 1 and "another key" in p.stderr, p.stderr
    p = wharf("restore", "--from", bk, "--data", tmp_path / "r-other",
              "--key", other)
    assert p.returncode == 1 and not (tmp_path / "r-other").exists()
    # its private key does, on a machine without the data dir
    wharf.ok("backup", "verify", bk, "--key", key)
    restored = tmp_path / "restored"
    wharf.ok("restore", "--from", bk, "--data", restored, "--key", key)
    assert (restored / "keystore").read_text() == keystore
    wharf.ok("audit", "verify", "--data", restored)
    msgs = {m["id"]: m for m in wharf.messages(restored)}
    for name, (msgid, sha) in ids.items():
        assert msgs[msgid]["sha256"] == sha, name

    # The independent reader: openssl opens the key block, Python the
    # rest; the entries are the restored files byte for byte.
    info, keyblock, _, _ = backup_peer.read_header(raw)
    assert info["recipient"]["kind"] == "public-key"
    ckey, keys = backup_peer.content_key_cms(keyblock, key)
    b = backup_peer.read(bk, ckey)
    backup_peer.verify_signature(b, keys)
    names = {n for _, n, _ in b.entries}
    assert {"wharf.db", "wharf.conf", "state/audit.head", "tls/cert.pem",
            "tls/key.pem"} <= names
    for kind, name, content in b.entries:
        assert kind == "F"
        if name == "state/audit.head":
            assert content == anchor
        if name not in ("wharf.db", "state/audit.head"):  # the restore's own
            assert (restored / name).read_bytes() == content, name
    # restored where serve and audit verify read it
    assert (restored / "state" / "audit.head").exists()
    assert not (restored / "audit.head").exists()
    assert sum(1 for n in names if n.startswith("payloads/")) == 3


def test_r20_master_key_backup_needs_the_keystore_of_its_time(tmp_path,
                                                               wharf):
    data, ids = small_data(wharf, tmp_path)
    bk = tmp_path / "b.wbk"
    wharf.ok("backup", "--data", data, "--to", bk)
    copy = tmp_path / "keystore.copy"
    shutil.copy(data / "keystore", copy)
    os.chmod(copy, 0o600)
    p = wharf("restore", "--from", bk, "--data", tmp_path / "r0")
    assert p.returncode == 1 and "--keystore" in p.stderr, p.stderr
    wharf.ok("key", "rotate", "--data", data)
    p = wharf("restore", "--from", bk, "--data", tmp_path / "r1",
              "--keystore", data / "keystore")
    assert p.returncode == 1 and "does not hold" in p.stderr, p.stderr
    assert not (tmp_path / "r1").exists()
    wharf.ok("restore", "--from", bk, "--data", tmp_path / "r2",
             "--keystore", copy)
    wharf.ok("audit", "verify", "--data", tmp_path / "r2")
    # the independent reader unseals the content key with the copy
    info, keyblock, _, _ = backup_peer.read_header(bk.read_bytes())
    keys = backup_peer.keystore_keys(copy.read_text())
    b = backup_peer.read(bk, backup_peer.content_key_master(info, keyblock,
                                                            keys))
    backup_peer.verify_signature(b, keys)
    assert info["messages"] == 3 and info["payloads"] == 3


# ---- the record -----------------------------------------------------------------------


def test_r20_backups_are_recorded_and_audited(tmp_path, wharf):
    data, ids = small_data(wharf, tmp_path)
    # a live session of the admin (as a login leaves one)
    db = sqlite3.connect(data / "wharf.db")
    now = int(time.time() * 1000)
    db.execute("INSERT INTO sessions(id_hash, user_id, csrf_hash, created_at,"
               " last_seen_at, expires_at) VALUES('h1', 1, 'c1', ?, ?, ?)",
               (now, now, now + 3_600_000))
    db.commit()
    db.close()
    bk = tmp_path / "b1.wbk"
    wharf.ok("backup", "--data", data, "--to", bk)
    p = wharf("backup", "--data", data, "--to", bk)       # never overwrites
    assert p.returncode == 1 and "already exists" in p.stderr, p.stderr
    # a payload gone before it was copied is recorded as missing
    gone_id = ids["a.txt"][0]
    gone = next((data / "payloads").glob(f"*/{gone_id}.wpay"))
    gone.unlink()
    bk2 = tmp_path / "b2.wbk"
    out = json.loads(wharf.ok("backup", "--data", data, "--to", bk2,
                              "--json").stdout)
    assert out["missing"] == 1 and out["payloads"] == 3
    rep = json.loads(wharf.ok("backup", "verify", bk2, "--data", data,
                              "--json").stdout)
    assert rep["missing"] == 1 and rep["payloads"] == 3

    listing = wharf.ok("backup", "list", "--data", data).stdout
    assert listing.count(" ok ") == 2 and listing.count("failed") == 1
    # the shape the posture report reads (store/posture_store.h)
    db = sqlite3.connect(f"file:{data / 'wharf.db'}?mode=ro", uri=True)
    rows = db.execute("SELECT finished_at, location FROM backups WHERE"
                      " ok = 1 ORDER BY finished_at DESC LIMIT 1").fetchall()
    failed = db.execute("SELECT error FROM backups WHERE ok = 0").fetchall()
    db.close()
    assert rows[0][1] == str(bk2) and rows[0][0] > 0
    assert "already exists" in failed[0][0]
    actions = audit_actions(wharf, data)
    created = [(t, d) for a, t, d in actions if a == "backup.create"]
    assert [t for t, _ in created] == [str(bk), str(bk2)]
    assert "missing=1" in created[1][1] and "sha256=" in created[1][1]
    assert any(a == "backup.failed" for a, _, _ in actions)
    wharf.ok("audit", "verify", "--data", data)
    # the restore of the second: the message is there, its payload not
    restored = tmp_path / "r"
    out = wharf.ok("restore", "--from", bk2, "--data", restored,
                   "--keystore", data / "keystore").stdout
    assert "1 gone before they were copied" in out
    assert "1 session(s) ended" in out
    assert len(wharf.messages(restored)) == 3
    # a session revoked after the backup must not come back: the restore
    # ends every session it holds
    db = sqlite3.connect(f"file:{restored / 'wharf.db'}?mode=ro", uri=True)
    assert db.execute("SELECT revoked_at FROM sessions WHERE id_hash = 'h1'"
                      ).fetchone()[0] is not None
    db.close()
    assert any(a == "backup.restore" and "sessions_ended=1" in d
               for a, _, d in audit_actions(wharf, restored))
    assert not list((restored / "payloads").glob(f"*/{gone_id}.wpay"))


# ---- kill -9 ---------------------------------------------------------------------------


def killed(wharf, fault, *args):
    """`wharf ARGS` killed (SIGKILL) by the WHARF_FAULT test hook."""
    env = child_env()
    env["WHARF_FAULT"] = fault
    p = subprocess.run([wharf.binary, *map(str, args)], capture_output=True,
                       text=True, timeout=120, env=env, cwd=wharf.workdir)
    assert_no_sanitizer_report(p.stderr, " ".join(map(str, args)))
    assert p.returncode == -9, (fault, p.returncode, p.stdout, p.stderr)


def test_r20_kill9_during_backup_or_restore_leaves_nothing_usable_behind(
        tmp_path, wharf):
    data, ids = small_data(wharf, tmp_path)
    out = tmp_path / "backups"
    out.mkdir()
    bk = out / "b.wbk"
    killed(wharf, "backup.entry:5", "backup", "--data", data, "--to", bk)
    # no backup under its name, no record of one; the leftovers are temp
    # files that the next run removes
    assert not bk.exists()
    assert [n for n in os.listdir(out) if ".tmp-" in n]
    assert [n for n in os.listdir(data) if n.startswith(".backup-")]
    assert "ok" not in wharf.ok("backup", "list", "--data", data).stdout
    wharf.ok("backup", "--data", data, "--to", bk)
    assert os.listdir(out) == ["b.wbk"]
    assert not [n for n in os.listdir(data) if n.startswith(".backup-")]
    wharf.ok("backup", "verify", bk, "--data", data)

    # a restore killed half way leaves a folder without a keystore, which
    # no command takes for a data dir, and which restore will not reuse
    half = tmp_path / "half"
    killed(wharf, "restore.entry:4", "restore", "--from", bk, "--data", half,
           "--keystore", data / "keystore")
    assert half.exists() and not (half / "keystore").exists()
    p = wharf("serve", "--data", half)
    assert p.returncode == 1 and "keystore" in p.stderr, p.stderr
    p = wharf("restore", "--from", bk, "--data", half, "--keystore",
              data / "keystore")
    assert p.returncode == 1 and "not empty" in p.stderr, p.stderr
    shutil.rmtree(half)
    wharf.ok("restore", "--from", bk, "--data", half, "--keystore",
             data / "keystore")
    wharf.ok("audit", "verify", "--data", half)
    assert {m["id"] for m in wharf.messages(half)} == \
        {i for i, _ in ids.values()}
