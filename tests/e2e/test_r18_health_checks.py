"""
R18 (health endpoint an operator can rely on; issue "Security operations",
part 5): besides connectors left out and failing polls, /healthz answers
503 with the reason, and `wharf status` prints the same, when

  - the data dir's disk is low: a real 24 MiB tmpfs holds the data dir and
    is filled with dd until less than disk_min_free_mb is free, then
    emptied again;
  - a certificate expired: the listeners' own certificate (in DIR/tls/,
    outside serve's allowed_paths: read through the sandbox's rule for the
    public certificate files) made (python3-cryptography) to expire a few
    seconds after serve starts, and a
    partner whose only certificate expired yesterday;
  - the audit chain is broken: an entry edited in the database;
  - a listener is down: its event loop fails (the WHARF_FAULT test hook
    net.loop.partner makes its epoll_wait fail with EIO).

Every problem is found by serve's periodic checks (health_check_seconds)
and clears when its cause goes away (the listener excepted: a restart).
"""
import datetime
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import new_data_dir, tune_conf, wait_until
from test_r05_operations import healthz


def problems(data, kind=None):
    status, body = healthz(data)
    got = body.get("problems", [])
    return status, [p for p in got if kind is None or p["problem"] == kind]


def wait_problem(data, kind, server, timeout=30):
    def found():
        server.check_alive()
        st, ps = problems(data, kind)
        return ps if st == 503 and ps else None
    return wait_until(found, timeout=timeout, desc=f"/healthz 503 {kind}")


def wait_healthy(data, server, timeout=30):
    wait_until(lambda: server.check_alive() and healthz(data)[0] == 200,
               timeout=timeout, desc="/healthz 200")


def status_text(wharf, data):
    p = wharf("status", "--data", data)
    return p.returncode, p.stdout, p.stderr


def self_signed(path_cert, path_key, not_before, not_after, cn="127.0.0.1"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    Path(path_cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(path_key).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(path_key, 0o600)


@pytest.fixture
def small_fs(tmp_path):
    """A 24 MiB tmpfs mounted under tmp_path (root), unmounted after."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755",
                        "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the test needs root): "
                    f"{r.stderr}", pytrace=False)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_r18_healthz_503_when_the_data_disk_is_low(wharf, small_fs,
                                                   start_server):
    data = new_data_dir(wharf, small_fs / "data", disk_min_free_mb=8,
                        health_check_seconds=1)
    server = start_server(data)
    server.wait_listening()
    wait_healthy(data, server)
    # fill the file system until about 4 MiB are left
    free = os.statvfs(small_fs)
    fill = free.f_bavail * free.f_frsize - 4 * 1024 * 1024
    subprocess.run(["dd", "if=/dev/zero", f"of={small_fs / 'ballast'}",
                    "bs=1M", f"count={fill // (1024 * 1024)}"],
                   check=True, capture_output=True)
    [p] = wait_problem(data, "disk_low", server)
    assert p["name"] == "data" and "under disk_min_free_mb (8)" in p["text"]
    assert str(small_fs) not in json.dumps(p)
    rc, out, err = status_text(wharf, data)
    assert rc == 1 and "MiB free, under disk_min_free_mb" in out, (out, err)
    (small_fs / "ballast").unlink()
    wait_healthy(data, server)
    server.stop()


def test_r18_healthz_503_when_a_certificate_expired(wharf, tmp_path,
                                                    start_server):
    # allowed_paths away from the data dir, as installed: serve's sandbox
    # (Landlock) then shows it only what its view names, and the
    # certificate in DIR/tls/ must still be checked
    (tmp_path / "files").mkdir()
    data = new_data_dir(wharf, tmp_path / "data", health_check_seconds=1,
                        allowed_paths=tmp_path / "files")
    now = datetime.datetime.now(datetime.timezone.utc)
    # the listeners' certificate: valid for the next 12 seconds
    self_signed(data / "tls" / "short.pem", data / "tls" / "short.key",
                now - datetime.timedelta(days=1),
                now + datetime.timedelta(seconds=12))
    tune_conf(data, tls_cert="tls/short.pem", tls_key="tls/short.key")
    server = start_server(data)
    server.wait_listening()
    wait_healthy(data, server)
    [p] = wait_problem(data, "cert_expired", server, timeout=40)
    assert p["name"] == "listener" and "tls_cert" in p["text"], p
    rc, out, _ = status_text(wharf, data)
    assert rc == 1 and "listeners' certificate (tls_cert) expired" in out
    server.stop()

    # a partner whose only certificate expired yesterday
    tune_conf(data, tls_cert="tls/cert.pem", tls_key="tls/key.pem")
    self_signed(tmp_path / "old.pem", tmp_path / "old.key",
                now - datetime.timedelta(days=400),
                now - datetime.timedelta(days=1), cn="partner-old")
    self_signed(tmp_path / "me.pem", tmp_path / "me.key",
                now - datetime.timedelta(days=1),
                now + datetime.timedelta(days=300), cn="me")
    doc = {"profile": {"as2_id": "me", "keys": [
               {"cert": str(tmp_path / "me.pem"),
                "key": str(tmp_path / "me.key")}]},
           "partners": [{"name": "old", "as2_id": "old",
                         "url": "https://127.0.0.1:9/as2",
                         "certificates": [str(tmp_path / "old.pem")]}],
           "connectors": [], "links": []}
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    server = start_server(data)
    server.wait_listening()
    [p] = wait_problem(data, "cert_expired", server)
    assert p["name"] == "old" and "every certificate of partner old" in \
        p["text"], p
    rc, out, _ = status_text(wharf, data)
    assert rc == 1 and "partner old" in out
    # a new certificate for the partner clears it
    self_signed(tmp_path / "new.pem", tmp_path / "new.key",
                now - datetime.timedelta(days=1),
                now + datetime.timedelta(days=300), cn="partner-new")
    wharf.ok("cert", "import", "--data", data, "--partner", "old",
             tmp_path / "new.pem")
    wait_healthy(data, server)
    server.stop()


def test_r18_healthz_503_when_the_audit_chain_breaks(wharf, data_dir,
                                                     start_server):
    tune_conf(data_dir, health_check_seconds=1)
    server = start_server(data_dir)
    server.wait_listening()
    wait_healthy(data_dir, server)
    db = sqlite3.connect(str(data_dir / "wharf.db"), timeout=30)
    try:
        db.execute("UPDATE audit SET detail = 'edited' WHERE seq = 1")
        db.commit()
    finally:
        db.close()
    [p] = wait_problem(data_dir, "audit_broken", server)
    assert p["name"] == "audit" and "entry 1" in p["text"], p
    rc, out, _ = status_text(wharf, data_dir)
    assert rc == 1 and "audit trail does not verify" in out
    log = (data_dir / "logs" / "wharf.log").read_text()
    assert log.count("ALERT: the audit trail does not verify") == 1, \
        "the broken chain must be logged once, not at every check"
    server.stop()


def test_r18_healthz_503_when_a_listener_is_down(wharf, data_dir,
                                                 start_server, monkeypatch):
    tune_conf(data_dir, health_check_seconds=1)
    # the partner listener's event loop fails at its 40th turn (~4 s)
    monkeypatch.setenv("WHARF_FAULT", "net.loop.partner:40:EIO")
    server = start_server(data_dir)
    monkeypatch.delenv("WHARF_FAULT")
    server.wait_listening()
    [p] = wait_problem(data_dir, "listener_down", server)
    assert p["name"] == "partner" and "stopped accepting" in p["text"], p
    rc, out, _ = status_text(wharf, data_dir)
    assert rc == 1 and "partner listener" in out
    log = (data_dir / "logs" / "wharf.log").read_text()
    assert "partner listener stopped: epoll_wait" in log
    server.stop()           # a clean stop, even with a dead loop
