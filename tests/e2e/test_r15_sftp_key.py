"""
R15/R22: an SFTP connector's private key lives only in the key process.
libssh2 (curl's sftp scheme) authenticates through an ssh-agent inside the
network process (net/ssh_agent.c) that asks the key process for each
signature; the key file and its passphrase are sealed at import and opened
only in the key process.

Against Debian's real sshd (the server of test_m5_sftp.py), keys made by
the real ssh-keygen:
- test_r15_sftp_key_lives_only_in_key_process: after an upload with an
  Ed25519 key, the network process's memory holds neither the key's seed
  nor a line of its file; the key process holds the seed (the scan finds
  it where it is).
- test_r15_sftp_key_types: RSA 3072 and ECDSA P-256 in OpenSSH's format,
  ECDSA P-384 as PEM, and RSA as encrypted PKCS#8 with a passphrase: each
  authenticates and uploads (RSA as ssh-rsa: the libssh2 of Debian 12
  offers nothing else, so this server accepts it).
- test_r15_sftp_agent_answers_only_its_own_process: another process (this
  test, root) connecting to the agent's socket gets no answer, and serve
  says so in its log.
- test_r15_sftp_encrypted_openssh_key_refused_clearly: an OpenSSH Ed25519
  key with a passphrase (whose KDF Wharf does not implement) is refused
  with the command that makes it usable, and nothing is sent.
"""
import base64
import os
import shutil
import signal
import socket
import struct
import tempfile
from pathlib import Path

import pytest

from conftest import drop_file, file_source, flow_doc, sha256_bytes, \
    sha256_file, wait_until
from test_m5_sftp import USER, Sshd, _ensure_user, _logs, _run
from test_r15_key_process import key_process, memory_holds

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/sshd") or os.geteuid() != 0,
    reason="needs openssh-server (scripts/deps.sh test) and root")


@pytest.fixture(scope="module")
def sshd():
    uid, gid = _ensure_user()
    root = tempfile.mkdtemp(prefix="wharf-sftpkey-", dir="/tmp")
    os.chmod(root, 0o755)
    server = Sshd(root, uid, gid)
    # Debian 12's libssh2 (1.10) signs RSA user keys only with ssh-rsa
    # (SHA-1), which OpenSSH 8.8+ refuses by default: this server takes it,
    # as partners' older servers do (docs/operations.md says so)
    with open(server.config, "a") as c:
        c.write("PubkeyAcceptedAlgorithms +ssh-rsa\n")
    before = server.log_path.read_bytes().count(b"Server listening")
    server.proc.send_signal(signal.SIGHUP)      # sshd -D re-executes itself
    wait_until(lambda: server.log_path.read_bytes().count(
        b"Server listening") > before, timeout=20, desc="sshd reloaded")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def new_key(sshd, name, *args, passphrase=""):
    """A key made by ssh-keygen, authorized on the server."""
    path = sshd.root / "etc" / name
    _run("ssh-keygen", "-q", *args, "-N", passphrase, "-f", str(path))
    with open(sshd.root / "etc" / "authorized_keys", "a") as ak:
        ak.write(Path(f"{path}.pub").read_text())
    return path


def upload_flow(tmp_path, wharf, data_dir, sshd, key, send, **cfg):
    inbox = tmp_path / "in"
    inbox.mkdir()
    c = {"host": "127.0.0.1", "port": sshd.port, "user": USER,
         "host_key_sha256": sshd.fingerprint, "key_file": str(key),
         "send_dir": str(send),
         "retry": {"max_attempts": 3, "initial_ms": 200, "max_ms": 500}}
    c.update(cfg)
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", inbox),
         {"name": "partner", "type": "sftp", "config": c}],
        [("inbox", "partner")]), tmp_path / "flow.json")
    return inbox


def upload_one(tmp_path, wharf, data_dir, start_server, sshd, key, tag,
               **cfg):
    """Upload one file with key; the running server."""
    send = sshd.remote_dir(f"key-{tag}")
    inbox = upload_flow(tmp_path, wharf, data_dir, sshd, key, send, **cfg)
    server = start_server(data_dir)
    body = os.urandom(4000)
    drop_file(inbox, "order.edi", body)

    def sent():
        msgs = wharf.messages(data_dir)
        return len(msgs) == 1 and msgs[0]["state"] == "sent"
    wait_until(lambda: server.check_alive() and sent(), timeout=60,
               desc=f"the file uploaded with the {tag} key; log: "
                    f"{_logs(server, data_dir)[-1500:]}")
    assert sha256_file(send / "order.edi") == sha256_bytes(body)
    return server


def ed25519_seed(path):
    """The 32-byte seed of an unencrypted OpenSSH Ed25519 key file."""
    lines = Path(path).read_text().splitlines()
    raw = base64.b64decode("".join(lines[1:-1]))
    marker = b"\x00\x00\x00\x40"            # string priv: seed || pub
    i = raw.index(marker, raw.index(b"ssh-ed25519", 60))
    return raw[i + 4:i + 36]


def test_r15_sftp_key_lives_only_in_key_process(tmp_path, wharf, data_dir,
                                                start_server, sshd):
    key = new_key(sshd, "mem_ed25519", "-t", "ed25519")
    server = upload_one(tmp_path, wharf, data_dir, start_server, sshd, key,
                        "ed25519")
    seed = ed25519_seed(key)
    text_line = Path(key).read_text().splitlines()[2].encode()
    needles = {"seed": seed, "a line of the key file": text_line}
    net = memory_holds(server.pid, needles)
    assert not any(net.values()), f"network process holds: {net}"
    kp = memory_holds(key_process(server), {"seed": seed})
    assert kp["seed"], "the key process should hold the key (scan check)"
    server.stop()


@pytest.mark.parametrize("kind", ["rsa3072", "ecdsa256", "ecdsa384-pem",
                                  "rsa-pkcs8-passphrase"])
def test_r15_sftp_key_types(tmp_path, wharf, data_dir, start_server, sshd,
                            kind):
    args = {"rsa3072": ["-t", "rsa", "-b", "3072"],
            "ecdsa256": ["-t", "ecdsa", "-b", "256"],
            "ecdsa384-pem": ["-t", "ecdsa", "-b", "384", "-m", "PEM"],
            "rsa-pkcs8-passphrase": ["-t", "rsa", "-b", "3072", "-m",
                                     "PKCS8"]}[kind]
    cfg = {}
    passphrase = ""
    if kind.endswith("passphrase"):
        passphrase = "pass-" + os.urandom(6).hex()
        pw = tmp_path / "passphrase"
        pw.write_text(passphrase + "\n")
        pw.chmod(0o600)
        cfg["key_passphrase_file"] = str(pw)
    key = new_key(sshd, f"type_{kind}", *args, passphrase=passphrase)
    server = upload_one(tmp_path, wharf, data_dir, start_server, sshd, key,
                        kind, **cfg)
    if passphrase:
        assert passphrase not in _logs(server, data_dir)
    server.stop()


def agent_request(path, msg):
    """Send one agent message; the reply's bytes (b"" if hung up)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        try:
            s.sendall(struct.pack(">I", len(msg)) + msg)
        except (BrokenPipeError, ConnectionResetError):
            return b""                      # hung up before reading it
        out = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def test_r15_sftp_agent_answers_only_its_own_process(tmp_path, wharf,
                                                     data_dir, start_server,
                                                     sshd):
    key = new_key(sshd, "agent_ed25519", "-t", "ed25519")
    server = upload_one(tmp_path, wharf, data_dir, start_server, sshd, key,
                        "agent")
    sock = Path(data_dir) / "state" / "ssh-agent.sock"
    assert sock.is_socket(), "serve makes its agent socket in DIR/state"
    assert agent_request(sock, b"\x0b") == b"", \
        "the agent answered a process that is not serve"
    wait_until(lambda: "refused a connection from another process" in
               _logs(server, data_dir), timeout=10,
               desc="serve logs the refused connection")
    assert server.check_alive()
    server.stop()
    assert not sock.exists(), "serve removes its agent socket when it stops"


def test_r15_sftp_encrypted_openssh_key_refused_clearly(tmp_path, wharf,
                                                        data_dir,
                                                        start_server, sshd):
    key = new_key(sshd, "enc_ed25519", "-t", "ed25519",
                  passphrase="secret-pass")
    pw = tmp_path / "passphrase"
    pw.write_text("secret-pass\n")
    pw.chmod(0o600)
    send = sshd.remote_dir("key-encrypted")
    inbox = upload_flow(tmp_path, wharf, data_dir, sshd, key, send,
                        key_passphrase_file=str(pw))
    server = start_server(data_dir)
    drop_file(inbox, "order.edi", b"ISA*00*")
    wait_until(lambda: "ssh-keygen -p -N '' -f" in _logs(server, data_dir),
               timeout=30, desc="the conversion hint in the log")
    assert server.check_alive()
    assert list(send.iterdir()) == []
    assert "secret-pass" not in _logs(server, data_dir)
    server.stop()
