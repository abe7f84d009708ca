"""
M5, the SFTP connector, against a real OpenSSH server: Debian's sshd,
started by this module on 127.0.0.1 on a free port with its own host key,
serving a test user (`wharftest`, created once if missing, with a password
set here and an authorized key in the test's own folder).

Covers: upload (file -> sftp: bytes arrive under the right name, no temp
file left), download (sftp -> file: arrives, the remote file is deleted or
archived), key and password authentication, a wrong host key refused with a
clear error and nothing uploaded, a wrong password (a clear
authentication failure, not retried), and an upload cut mid-way (the test
kills the sshd session) that the retry completes: the file arrives whole,
exactly once. A missing pin and its first-use capture with a confirm:
test_m5_sftp_hostkey.py.
"""
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (drop_file, file_dest, file_source, flow_doc, free_port,
                      listdir, sha256_bytes, sha256_file, wait_until)

SSHD = "/usr/sbin/sshd"
USER = "wharftest"

pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or os.geteuid() != 0,
    reason="needs openssh-server (scripts/deps.sh test) and root")


def _run(*argv, **kw):
    return subprocess.run(list(argv), check=True, capture_output=True,
                          text=True, **kw)


def _ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        _run("useradd", "-m", "-s", "/bin/sh", USER)
    pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


def _descendants(pid):
    """pids of every process below pid (from /proc)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


class Sshd:
    def __init__(self, root, uid, gid):
        self.root = Path(root)
        self.port = free_port()
        self.uid, self.gid = uid, gid
        etc = self.root / "etc"
        etc.mkdir()
        self.host_key = etc / "host_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
             str(self.host_key))
        self.client_key = etc / "client_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
             str(self.client_key))
        ak = etc / "authorized_keys"
        shutil.copy(f"{self.client_key}.pub", ak)
        os.chmod(ak, 0o644)
        self.password = "pw-" + secrets.token_hex(12)
        _run("chpasswd", input=f"{USER}:{self.password}\n")
        self.password_file = etc / "password"
        self.password_file.write_text(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        self.config = etc / "sshd_config"
        self.config.write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\n"
            f"HostKey {self.host_key}\nPidFile {etc / 'sshd.pid'}\n"
            "UsePAM no\nStrictModes no\n"
            f"AuthorizedKeysFile {ak}\n"
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin no\nSubsystem sftp internal-sftp\n"
            "MaxStartups 100\nLogLevel VERBOSE\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.log_path = self.root / "sshd.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=self.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.proc.poll() is None and
                   b"Server listening" in self.log_path.read_bytes(),
                   timeout=20, desc="sshd listening")
        # the pin, the way an operator gets it (and the error message says)
        scan = subprocess.run(
            ["ssh-keyscan", "-p", str(self.port), "127.0.0.1"],
            capture_output=True, text=True, timeout=30)
        fp = subprocess.run(["ssh-keygen", "-lf", "-"], input=scan.stdout,
                            capture_output=True, text=True, check=True)
        self.fingerprint = re.search(r"SHA256:[A-Za-z0-9+/]+",
                                     fp.stdout).group(0)

    def remote_dir(self, name):
        """A folder on the server owned by the test user."""
        p = self.root / "srv" / name
        p.mkdir(parents=True)
        os.chown(p, self.uid, self.gid)
        os.chown(p.parent, self.uid, self.gid)
        return p

    def kill_sessions(self):
        """Kill every session process (the connections), not the server."""
        pids = _descendants(self.proc.pid)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in _descendants(self.proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture(scope="module")
def sshd():
    uid, gid = _ensure_user()
    # under /tmp itself: the user's session must be able to reach it (the
    # per-test temp dirs are private to root)
    root = tempfile.mkdtemp(prefix="wharf-sftp-", dir="/tmp")
    os.chmod(root, 0o755)
    server = Sshd(root, uid, gid)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def sftp_conn(name, sshd, auth="key", **cfg):
    c = {"host": "127.0.0.1", "port": sshd.port, "user": USER,
         "host_key_sha256": sshd.fingerprint}
    if auth == "key":
        c["key_file"] = str(sshd.client_key)
    else:
        c["password_file"] = str(sshd.password_file)
    c.update(cfg)
    return {"name": name, "type": "sftp", "config": c}


def _hop(detail, connector):
    hops = [h for h in detail["hops"] if h["connector"] == connector]
    assert len(hops) == 1, detail["hops"]
    return hops[0]


def _logs(server, data_dir):
    text = server.stderr() + server.stdout()
    logs = Path(data_dir) / "logs"
    if logs.is_dir():
        for f in sorted(logs.iterdir()):
            text += f.read_text(errors="replace")
    return text


def _upload_flow(tmp_path, wharf, data_dir, sshd, send, auth="key",
                 **cfg):
    inbox = tmp_path / "in"
    inbox.mkdir()
    retry = {"max_attempts": 20, "initial_ms": 200, "max_ms": 1000}
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", inbox),
         sftp_conn("partner", sshd, auth, send_dir=str(send), retry=retry,
                   **cfg)],
        [("inbox", "partner")]), tmp_path / "flow.json")
    return inbox


def _all_sent(wharf, data_dir, n):
    msgs = wharf.messages(data_dir)
    return len(msgs) == n and all(m["state"] == "sent" for m in msgs)


@pytest.mark.parametrize("auth", ["key", "password"])
def test_m5_sftp_upload(tmp_path, wharf, data_dir, start_server, sshd, auth):
    send = sshd.remote_dir(f"upload-{auth}")
    inbox = _upload_flow(tmp_path, wharf, data_dir, sshd, send, auth)
    files = {"order 1.edi": os.urandom(1000),
             "invoice.xml": os.urandom(300_000), "empty.txt": b""}
    server = start_server(data_dir)
    for name, data in files.items():
        drop_file(inbox, name, data)
    wait_until(lambda: server.check_alive() and
               _all_sent(wharf, data_dir, len(files)), timeout=60,
               desc="all files uploaded")
    server.stop()
    assert listdir(send) == sorted(files), "temp files left or names wrong"
    for name, data in files.items():
        assert sha256_file(send / name) == sha256_bytes(data), name
    for m in wharf.messages(data_dir):
        h = _hop(wharf.show(data_dir, m["id"]), "partner")
        assert h["state"] == "sent", h
    # no secret in the logs (R6)
    assert sshd.password not in _logs(server, data_dir)


@pytest.mark.parametrize("after", ["delete", "archive"])
def test_m5_sftp_download(tmp_path, wharf, data_dir, start_server, sshd,
                          after):
    recv = sshd.remote_dir(f"download-{after}")
    archive = sshd.remote_dir(f"archive-{after}")
    out = tmp_path / "out"
    out.mkdir()
    cfg = {"receive_dir": str(recv), "pattern": "*.csv", "after": after,
           "poll_ms": 100}
    if after == "archive":
        cfg["archive_dir"] = str(archive)
    wharf.import_flow(data_dir, flow_doc(
        [sftp_conn("partner", sshd, "password" if after == "delete"
                   else "key", **cfg),
         file_dest("outbox", out)],
        [("partner", "outbox")]), tmp_path / "flow.json")
    files = {"a.csv": os.urandom(5000), "b c.csv": os.urandom(2_000_000)}
    for name, data in files.items():
        drop_file(recv, name, data)
        os.chown(recv / name, sshd.uid, sshd.gid)
    (recv / "skip.txt").write_bytes(b"not matching the pattern")
    server = start_server(data_dir)
    wait_until(lambda: server.check_alive() and
               _all_sent(wharf, data_dir, len(files)), timeout=60,
               desc="both files downloaded and delivered")
    wait_until(lambda: listdir(recv) == ["skip.txt"], timeout=30,
               desc="remote files acknowledged")
    server.stop()
    assert listdir(out) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data, name
    if after == "archive":
        assert listdir(archive) == sorted(files)
        for name, data in files.items():
            assert (archive / name).read_bytes() == data
    else:
        assert listdir(archive) == []
    assert len(wharf.messages(data_dir)) == len(files)


def test_m5_sftp_wrong_host_key_refused(tmp_path, wharf, data_dir,
                                        start_server, sshd):
    send = sshd.remote_dir("wrong-key")
    other = tmp_path / "other_key"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
    wrong = re.search(r"SHA256:[A-Za-z0-9+/]+",
                      _run("ssh-keygen", "-lf", f"{other}.pub").stdout)[0]
    assert wrong != sshd.fingerprint
    inbox = _upload_flow(tmp_path, wharf, data_dir, sshd, send,
                         host_key_sha256=wrong)
    server = start_server(data_dir)
    drop_file(inbox, "secret.edi", b"must not reach an impostor")
    msgs = wait_until(lambda: server.check_alive() and
                      wharf.messages(data_dir, "failed"), timeout=60,
                      desc="the message to fail")
    d = wharf.show(data_dir, msgs[0]["id"])
    h = _hop(d, "partner")
    expect = f"host key of 127.0.0.1:{sshd.port} does not match " \
             "host_key_sha256"
    assert expect in h["last_error"], h
    assert sshd.fingerprint in h["last_error"], h   # what it presents
    assert h["attempts"] == 1, "a host key mismatch is not retried"
    assert any(expect in e["text"] for e in d["events"]), d["events"]
    server.stop()
    assert listdir(send) == []


def test_m5_sftp_bad_password(tmp_path, wharf, data_dir, start_server,
                              sshd):
    # a wrong password: a clear authentication failure, not retried
    send = sshd.remote_dir("bad-password")
    bad = tmp_path / "bad_password"
    bad.write_text("not-the-password\n")
    os.chmod(bad, 0o600)
    inbox = _upload_flow(tmp_path, wharf, data_dir, sshd, send, "password",
                         password_file=str(bad))
    server = start_server(data_dir)
    drop_file(inbox, "x.edi", b"x")
    msgs = wait_until(lambda: server.check_alive() and
                      wharf.messages(data_dir, "failed"), timeout=90,
                      desc="the message to fail")
    h = _hop(wharf.show(data_dir, msgs[0]["id"]), "partner")
    assert f"authentication failed for {USER}" in h["last_error"], h
    server.stop()
    assert listdir(send) == []
    assert "not-the-password" not in _logs(server, data_dir)


def test_m5_sftp_upload_cut_midway_arrives_once(tmp_path, wharf, data_dir,
                                                start_server, sshd):
    send = sshd.remote_dir("cut")
    inbox = _upload_flow(tmp_path, wharf, data_dir, sshd, send)
    data = os.urandom(64 << 20)
    server = start_server(data_dir)
    killed = []
    stop = threading.Event()

    def cutter():
        # as soon as the temp file holds 1 MiB, kill the session
        while not stop.is_set():
            for f in os.listdir(send):
                if f.endswith(".wharf-part"):
                    try:
                        size = (send / f).stat().st_size
                    except FileNotFoundError:
                        continue
                    if size >= 1 << 20:
                        killed.extend(sshd.kill_sessions())
                        return
            time.sleep(0.002)

    t = threading.Thread(target=cutter)
    t.start()
    try:
        drop_file(inbox, "big.bin", data)
        wait_until(lambda: server.check_alive() and
                   _all_sent(wharf, data_dir, 1), timeout=180,
                   desc="the big file delivered")
    finally:
        stop.set()
        t.join()
    assert killed, "the upload was never cut (test did not test anything)"
    server.stop()
    assert listdir(send) == ["big.bin"], "not exactly one file, or temp left"
    assert sha256_file(send / "big.bin") == sha256_bytes(data)
    msgs = wharf.messages(data_dir)
    assert len(msgs) == 1
    h = _hop(wharf.show(data_dir, msgs[0]["id"]), "partner")
    assert h["attempts"] >= 2, h
    assert "resuming the upload" in _logs(server, data_dir)
