"""
R21: database failover. A PostgreSQL 15 primary with a synchronous
streaming replica (both started by this test on 127.0.0.1, unprivileged,
stopped after); a Wharf node names both in its store URL with
target_session_attrs=read-write. During a steady load of files the primary
is killed with kill -9 and the replica promoted: the node reconnects by
itself, every file acknowledged (taken from the source folder) before the
kill is a message on the promoted server (RPO 0), and every file is
delivered exactly once. The time from the kill until deliveries resume is
printed (docs/performance.md records it; no test asserts a time).
"""
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from conftest import (drop_file, file_dest, file_source, flow_doc, listdir,
                      new_data_dir, wait_until)

ROOT = Path(__file__).resolve().parents[2]
PG_TEST = ROOT / "scripts" / "pg-test.sh"


def pg(*args):
    out = subprocess.run([str(PG_TEST), *map(str, args)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout.strip()


def psql(url, sql):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (sql, out.stderr)
    return out.stdout.strip()


def port_of(url):
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def test_r21_database_failover_loses_nothing_acknowledged(
        tmp_path, wharf, start_server):
    base = Path(tempfile.mkdtemp(prefix="wharf-pgfo-"))
    os.chmod(base, 0o755)           # the servers' user enters
    try:
        primary = pg("start", base / "p", "synchronous_standby_names=*")
        replica = pg("replica", base / "r", port_of(primary))
        wait_until(lambda: psql(primary, "SELECT sync_state FROM "
                                "pg_stat_replication") == "sync",
                   timeout=60, desc="the replica streaming synchronously")
        psql(primary, "CREATE DATABASE wharf")
        url = (f"postgresql://wharf@127.0.0.1:{port_of(primary)},"
               f"127.0.0.1:{port_of(replica)}/wharf"
               "?target_session_attrs=read-write&connect_timeout=5")
        run_failover(tmp_path, wharf, start_server, base, url)
    finally:
        for d in ("p", "r"):
            subprocess.run([str(PG_TEST), "stop", str(base / d)],
                           timeout=120)
        base.rmdir()


def run_failover(tmp_path, wharf, start_server, base, url):
    data = new_data_dir(wharf, tmp_path / "node", "--store", url)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    wharf.import_flow(data, flow_doc(
        [file_source("inbox", inbox), file_dest("outbox", out)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    node = start_server(data)
    node.wait_listening()

    total = 600
    dropped = []

    def load():
        for i in range(total):
            name = f"po{i:04d}.edi"
            drop_file(inbox, name, f"UNH+{i}+ORDERS:D:96A:UN'\n".encode() * 40)
            dropped.append(name)
            time.sleep(0.01)
    feeder = threading.Thread(target=load)
    feeder.start()
    wait_until(lambda: len(listdir(out)) >= 150, timeout=120,
               desc="deliveries before the kill")
    # acknowledged before the kill: dropped and already taken from the
    # source folder (the source deletes a file only after its commit)
    before = set(dropped)
    waiting = set(listdir(inbox))
    killed_at = time.time()
    pg("kill", base / "p")
    acknowledged = before - waiting
    time.sleep(1.0)
    pg("promote", base / "r")
    promoted_at = time.time()
    delivered_at_kill = len(listdir(out))

    def resumed():
        node.check_alive()
        return len(listdir(out)) > delivered_at_kill + 5
    wait_until(resumed, timeout=120, desc="deliveries after the failover")
    resumed_at = time.time()
    feeder.join()
    wait_until(lambda: node.check_alive() and len(listdir(out)) >= total
               and not listdir(inbox), timeout=300,
               desc="every file delivered after the failover")
    time.sleep(2)                   # a duplicate would show by now
    print(f"failover: deliveries resumed {resumed_at - killed_at:.1f} s "
          f"after the kill -9 of the primary "
          f"({resumed_at - promoted_at:.1f} s after the promotion)")

    assert sorted(listdir(out)) == sorted(dropped)      # each once
    names = [m["filename"] for m in wharf.messages(data)]
    assert len(names) == len(set(names)) == total       # no duplicates
    assert acknowledged <= set(names)                   # RPO 0
    assert len(acknowledged) >= 100
    log = node.stderr() + node.stdout()
    node.stop()
    # the node saw the database go and come back, and said so
    assert "database" in log
