"""
R20 (backups and recovery) for a node on PostgreSQL (R21's backend), end to
end with the real binary and a real PostgreSQL 15 started by the tests:

- a backup taken while serve takes and delivers files holds every message
  acknowledged before it started; `backup verify` passes; restored into
  SQLite (`--data D`) and into a fresh empty PostgreSQL database
  (`--store URL --payload-dir P`), each restored node's `audit verify`
  passes, lists those messages, serves their payloads with the same bytes
  and continues the audit trail (backup.restore); the run is recorded
  (backups table, posture report, backup.create);
- a tampered backup (one byte flipped in the middle) is refused by
  `backup verify` and by `restore` into both targets, which are left as
  they were (no folder, the database still empty); a restore into a
  database that holds Wharf rows is refused before anything is written;
- a single node's (SQLite) backup restores into PostgreSQL: the way to move
  a node onto a cluster's database;
- a node keeping its payloads in the database (payload_dir = database):
  the backup taken during load holds each payload's rows as the entry a
  file would be; restored into SQLite they are payload files again, into
  a fresh database (--payload-dir database) rows again, and both restored
  nodes serve every acknowledged message's bytes;
- a --store URL that holds a password is refused before anything is
  written, without repeating it.
"""
import json
import os
import shutil
import subprocess

from conftest import drop_file, new_data_dir, sha256_bytes, wait_until
from test_r20_backup import (Producer, admin_token, audit_actions, by_name,
                             file_flow, load_files, wait_all_sent,
                             payload)
from test_r21_cluster import fresh_db, pg_server  # noqa: F401 (fixture)


def pg_node(wharf, tmp_path, url, name="a"):
    """A node on the database at url, payloads in a folder of their own
    (as a cluster's shared payload_dir)."""
    return new_data_dir(wharf, tmp_path / name, "--store", url,
                        "--payload-dir", str(tmp_path / f"{name}-payloads"))


def table_rows(url, table):
    out = subprocess.run(["psql", url, "-Atqc",
                          f"SELECT COUNT(*) FROM {table}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def check_restored(wharf, start_server, restored, taken, acked, expected):
    """The restored node verifies, lists the backup's messages with their
    hashes, and serves the acknowledged ones' payloads byte for byte."""
    wharf.ok("audit", "verify", "--data", restored)
    msgs = by_name(wharf.messages(restored))
    assert len(msgs) == taken["messages"]
    missing = sorted(acked - set(msgs))
    assert not missing, f"acknowledged before the backup, not restored: " \
        f"{missing[:20]}"
    for name, m in msgs.items():
        assert m["sha256"] == expected[name], name
    token = admin_token(wharf, restored)
    srv = start_server(restored)
    admin, _ = srv.wait_listening()
    for name in sorted(acked):
        got = payload(admin, token, msgs[name]["id"])
        assert sha256_bytes(got) == expected[name], name
    srv.stop()
    wharf.ok("audit", "verify", "--data", restored)
    assert any(a == "backup.restore" and f"id={taken['backup_id']}" in d
               for a, _, d in audit_actions(wharf, restored))


def backup_during_load(wharf, start_server, data, tmp_path, nfiles,
                       min_acked, name):
    """A file flow on data; nfiles files dropped by a producer while serve
    runs; once min_acked were acknowledged (taken and deleted by the
    source, after its commit), `wharf backup --to tmp_path/name`; then
    the rest delivered and serve stopped. Returns (recv, send, the files'
    SHA-256, the names acknowledged before the backup, its JSON report)."""
    recv, send = file_flow(wharf, data, tmp_path)
    files, expected = load_files(nfiles)
    server = start_server(data)
    server.wait_listening()
    producer = Producer(recv, files, 5, 0.1)
    written = producer.written
    producer.start()

    def acknowledged():
        present = set(os.listdir(recv))
        return {n for n in list(written) if n not in present}
    wait_until(lambda: len(acknowledged()) >= min_acked, timeout=120,
               desc=f"{min_acked} files acknowledged")
    acked = acknowledged()
    taken = json.loads(wharf.ok("backup", "--data", data, "--to",
                                tmp_path / name, "--json").stdout)
    producer.join(timeout=120)
    assert not producer.failure, f"producer failed: {producer.failure[0]!r}"
    wait_all_sent(wharf, server, data, nfiles)
    server.stop()
    return recv, send, expected, acked, taken


def test_r20_pg_backup_during_load_restores_into_sqlite_and_postgresql(
        tmp_path, wharf, pg_server, start_server):  # noqa: F811
    url = fresh_db(pg_server)
    data = pg_node(wharf, tmp_path, url)
    nfiles = 300
    recv, send, expected, acked, taken = backup_during_load(
        wharf, start_server, data, tmp_path, nfiles, 50, "load.wbk")
    backup = tmp_path / "load.wbk"
    assert taken["path"] == str(backup)
    assert taken["messages"] < nfiles   # the load went on meanwhile

    # recorded and audited on the PostgreSQL store, seen by the posture
    # report
    assert " ok " in wharf.ok("backup", "list", "--data", data).stdout
    doctor = wharf("doctor", "--data", data, "--json")
    assert "the last backup finished" in doctor.stdout, doctor.stdout[-2000:]
    assert any(a == "backup.create" and t == str(backup)
               for a, t, _ in audit_actions(wharf, data))

    rep = json.loads(wharf.ok("backup", "verify", backup, "--data", data,
                              "--json").stdout)
    assert rep["messages"] == taken["messages"]

    # into SQLite: a single node of its own, payloads under it
    lite = tmp_path / "r-sqlite"
    wharf.ok("restore", "--from", backup, "--data", lite, "--keystore",
             data / "keystore")
    conf = (lite / "wharf.conf").read_text()
    assert "store = sqlite\n" in conf and url not in conf
    assert (lite / "wharf.db").is_file()
    check_restored(wharf, start_server, lite, taken, acked, expected)

    # into a fresh, empty PostgreSQL database, payloads in a new folder
    url2 = fresh_db(pg_server)
    pgdir, pgpay = tmp_path / "r-pg", tmp_path / "r-pg-payloads"
    wharf.ok("restore", "--from", backup, "--data", pgdir, "--keystore",
             data / "keystore", "--store", url2, "--payload-dir", pgpay)
    conf = (pgdir / "wharf.conf").read_text()
    assert f"store = {url2}\n" in conf
    assert f"payload_dir = {pgpay}\n" in conf
    assert not (pgdir / "wharf.db").exists()
    assert table_rows(url2, "messages") == taken["messages"]
    check_restored(wharf, start_server, pgdir, taken, acked, expected)
    # the restored node takes new work: ids drawn past the restored rows
    shutil.rmtree(send)
    send.mkdir()
    srv = start_server(pgdir)
    srv.wait_listening()
    drop_file(recv, "after-restore.dat", b"new after the restore\n" * 500)
    wait_until(lambda: (send / "after-restore.dat").exists() and
               srv.check_alive(), timeout=120,
               desc="a new message delivered by the restored node")
    srv.stop()
    wharf.ok("audit", "verify", "--data", pgdir)

    # a database that holds Wharf rows is refused before anything is
    # written (the source's, and the one just restored into)
    for busy in (url, url2):
        target = tmp_path / "r-busy"
        p = wharf("restore", "--from", backup, "--data", target,
                  "--keystore", data / "keystore", "--store", busy)
        assert p.returncode == 1, p.stderr
        assert "already holds Wharf data" in p.stderr, p.stderr
        assert not target.exists()


def wpay_files(*dirs):
    return [p for d in dirs for p in d.rglob("*.wpay")]


def test_r20_db_payloads_backup_during_load_restores_into_sqlite_and_db(
        tmp_path, wharf, pg_server, start_server):  # noqa: F811
    url = fresh_db(pg_server)
    data = new_data_dir(wharf, tmp_path / "a", "--store", url,
                        "--payload-dir", "database")
    recv, send, expected, acked, taken = backup_during_load(
        wharf, start_server, data, tmp_path, 150, 30, "db.wbk")
    backup = tmp_path / "db.wbk"
    assert wpay_files(data) == []
    assert taken["payloads"] == taken["messages"] and taken["missing"] == 0
    wharf.ok("backup", "verify", backup, "--data", data)

    # into SQLite: the rows become payload files of a single node
    lite = tmp_path / "r-sqlite"
    wharf.ok("restore", "--from", backup, "--data", lite, "--keystore",
             data / "keystore")
    assert len(wpay_files(lite)) == taken["payloads"]
    check_restored(wharf, start_server, lite, taken, acked, expected)

    # into a fresh database, payloads into its rows again
    url2 = fresh_db(pg_server)
    pgdir = tmp_path / "r-pg"
    wharf.ok("restore", "--from", backup, "--data", pgdir, "--keystore",
             data / "keystore", "--store", url2, "--payload-dir", "database")
    assert "payload_dir = database\n" in (pgdir / "wharf.conf").read_text()
    assert wpay_files(pgdir) == []
    heads = subprocess.run(["psql", url2, "-Atqc", "SELECT COUNT(*) FROM"
                            " payload_segments WHERE seq = 0"],
                           capture_output=True, text=True, timeout=60)
    assert int(heads.stdout) == taken["payloads"], heads.stderr
    check_restored(wharf, start_server, pgdir, taken, acked, expected)

    # payload_dir = database needs a PostgreSQL target
    p = wharf("restore", "--from", backup, "--data", tmp_path / "r-bad",
              "--keystore", data / "keystore", "--payload-dir", "database")
    assert p.returncode == 1 and "PostgreSQL" in p.stderr, p.stderr
    assert not (tmp_path / "r-bad").exists()


def test_r20_pg_tampered_backup_refused_by_verify_and_both_restores(
        tmp_path, wharf, pg_server):  # noqa: F811
    url = fresh_db(pg_server)
    data = pg_node(wharf, tmp_path, url)
    file_flow(wharf, data, tmp_path)
    for n, size in (("big.bin", 200_000), ("a.txt", 10), ("b.txt", 3000)):
        p = tmp_path / n
        p.write_bytes(os.urandom(size))
        wharf.send(data, "inbox", p)
    good = tmp_path / "good.wbk"
    wharf.ok("backup", "--data", data, "--to", good)
    raw = good.read_bytes()
    bad = tmp_path / "bad.wbk"
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01          # one byte in the middle
    bad.write_bytes(bytes(flipped))

    p = wharf("backup", "verify", bad, "--data", data)
    assert p.returncode == 1 and "refused" in p.stderr, p.stderr
    empty_db = fresh_db(pg_server)
    for target_args in ((), ("--store", empty_db)):
        target = tmp_path / "r-bad"
        p = wharf("restore", "--from", bad, "--data", target, "--keystore",
                  data / "keystore", *target_args)
        assert p.returncode == 1, (target_args, p.stdout, p.stderr)
        assert "restore failed" in p.stderr, p.stderr
        assert not target.exists(), f"{target_args}: restore left {target}"
    assert table_rows(empty_db, "messages") == 0
    assert table_rows(empty_db, "audit") == 0

    # the untouched backup still restores into that database
    wharf.ok("backup", "verify", good, "--data", data)
    wharf.ok("restore", "--from", good, "--data", tmp_path / "r-ok",
             "--keystore", data / "keystore", "--store", empty_db)
    assert table_rows(empty_db, "messages") == 3
    wharf.ok("audit", "verify", "--data", tmp_path / "r-ok")


def test_r20_sqlite_node_backup_restores_into_postgresql(tmp_path, wharf,
                                                         pg_server):  # noqa: F811
    """A single node's backup moves it onto PostgreSQL: same messages,
    payload files byte for byte, a trail that verifies and goes on."""
    data = new_data_dir(wharf, tmp_path / "one")
    file_flow(wharf, data, tmp_path)
    ids = {}
    for n, size in (("big.bin", 200_000), ("a.txt", 10)):
        p = tmp_path / n
        p.write_bytes(os.urandom(size))
        ids[wharf.send(data, "inbox", p)] = sha256_bytes(p.read_bytes())
    bk = tmp_path / "one.wbk"
    wharf.ok("backup", "--data", data, "--to", bk)
    url = fresh_db(pg_server)
    moved, pay = tmp_path / "moved", tmp_path / "moved-payloads"
    wharf.ok("restore", "--from", bk, "--data", moved, "--keystore",
             data / "keystore", "--store", url, "--payload-dir", pay)
    assert {m["id"]: m["sha256"] for m in wharf.messages(moved)} == ids
    src = {p.relative_to(data / "payloads"): p.read_bytes()
           for p in (data / "payloads").glob("*/*.wpay")}
    got = {p.relative_to(pay): p.read_bytes() for p in pay.glob("*/*.wpay")}
    assert got == src and len(got) == 2
    wharf.ok("audit", "verify", "--data", moved)
    before = table_rows(url, "audit")
    p = tmp_path / "after.txt"
    p.write_bytes(b"after the move\n")
    wharf.send(moved, "inbox", p)
    assert table_rows(url, "messages") == 3
    admin_token(wharf, moved)               # an audited action
    assert table_rows(url, "audit") > before
    wharf.ok("audit", "verify", "--data", moved)


def test_r20_pg_restore_refuses_a_url_with_a_password(tmp_path, wharf,
                                                      pg_server):  # noqa: F811
    data = new_data_dir(wharf, tmp_path / "one")
    bk = tmp_path / "one.wbk"
    wharf.ok("backup", "--data", data, "--to", bk)
    url = fresh_db(pg_server)
    with_pw = url.replace("wharf@", "wharf:S3cret-pw@")
    target = tmp_path / "r"
    p = wharf("restore", "--from", bk, "--data", target, "--keystore",
              data / "keystore", "--store", with_pw)
    assert p.returncode == 1 and "pgpass" in p.stderr, p.stderr
    assert "S3cret-pw" not in p.stderr + p.stdout
    assert not target.exists()
