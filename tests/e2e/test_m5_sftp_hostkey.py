"""
M5, host key pinning with first-use capture that needs an explicit
confirm, against a real OpenSSH server (test_m5_sftp.Sshd, its own one
here: a test changes its host key).

  - a connector without host_key_sha256 is accepted at import, but every
    transfer and `wharf connector NAME test` fails with "host key of
    HOST:PORT not confirmed: run `wharf connector NAME hostkey.capture`",
    and the server is not even contacted (sshd logs no connection, let
    alone authentication);
  - the action hostkey.capture (`wharf connector NAME hostkey.capture`)
    prints the type and the SHA256 fingerprint, equal to what
    `ssh-keygen -lf` prints for the server's key file, and sshd logs the
    connection but no authentication attempt;
  - hostkey.accept with another fingerprint is refused (both named, audited,
    nothing stored); with the right one the key is stored in the
    connector's config (`flow export` shows it, the audit trail records
    it) and the running server delivers the message it held back;
  - a server whose key changed afterwards is refused, naming both
    fingerprints, and nothing is uploaded; the new key can be confirmed;
  - the same through GET/POST /api/v1/connectors/{name}/actions/VERB, where
    the action's own permission applies after the route's (auditor: no
    connector.test; viewer: no flow.write).
"""
import json
import os
import re
import shutil
import signal
import tempfile
import time

import pytest

from conftest import (drop_file, file_source, flow_doc, listdir, wait_until)
from test_m5_sftp import SSHD, Sshd, USER, _ensure_user, _run

pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or os.geteuid() != 0,
    reason="needs openssh-server (scripts/deps.sh test) and root")

FP_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@pytest.fixture
def keyed_sshd():
    """An sshd of this test alone (its host key gets changed)."""
    uid, gid = _ensure_user()
    root = tempfile.mkdtemp(prefix="wharf-hostkey-", dir="/tmp")
    os.chmod(root, 0o755)
    server = Sshd(root, uid, gid)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def keygen_fp(pub):
    """(type, fingerprint) as ssh-keygen -lf prints them for a key file."""
    out = _run("ssh-keygen", "-lf", str(pub)).stdout
    m = re.search(r"(SHA256:\S+) .*\((\w+)\)\s*$", out)
    return m.group(2), m.group(1)


def sshd_log(sshd):
    return sshd.log_path.read_text(errors="replace")


AUTH_WORDS = ("Accepted ", "Failed ", "Invalid user", "Postponed",
              "authentication", "userauth")


def unpinned_flow(tmp_path, wharf, data, sshd, send):
    inbox = tmp_path / "in"
    inbox.mkdir()
    conn = {"host": "127.0.0.1", "port": sshd.port, "user": USER,
            "key_file": str(sshd.client_key), "send_dir": str(send),
            "retry": {"max_attempts": 100, "initial_ms": 200,
                      "max_ms": 500}}
    wharf.import_flow(data, flow_doc(
        [file_source("inbox", inbox),
         {"name": "partner", "type": "sftp", "config": conn}],
        [("inbox", "partner")]), tmp_path / "flow.json")
    return inbox


def exported(wharf, data, name="partner"):
    doc = json.loads(wharf.export_flow(data))
    return [c for c in doc["connectors"] if c["name"] == name][0]["config"]


def hostkey_audit(wharf, data):
    audit = json.loads(wharf.ok("audit", "list", "--data", str(data),
                                "--json").stdout)
    return [e for e in audit if e["action"] == "connector.hostkey.accept"]


def change_host_key(sshd):
    """A new host key for the same sshd (SIGHUP: it re-executes itself and
    reads its keys again). Returns (type, fingerprint) of the new key."""
    os.unlink(sshd.host_key)
    os.unlink(f"{sshd.host_key}.pub")
    _run("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f",
         str(sshd.host_key))
    before = sshd_log(sshd).count("Server listening")
    sshd.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: sshd_log(sshd).count("Server listening") > before,
               timeout=20, desc="sshd listening again")
    return keygen_fp(f"{sshd.host_key}.pub")


def test_m5_sftp_hostkey_capture_confirm_and_change(
        tmp_path, wharf, data_dir, start_server, keyed_sshd):
    sshd = keyed_sshd
    ktype, fp = keygen_fp(f"{sshd.host_key}.pub")
    assert fp == sshd.fingerprint
    send = sshd.remote_dir("hostkey")
    inbox = unpinned_flow(tmp_path, wharf, data_dir, sshd, send)
    assert "host_key_sha256" not in exported(wharf, data_dir)
    not_confirmed = (f"host key of 127.0.0.1:{sshd.port} not confirmed: "
                     "run `wharf connector partner hostkey.capture`")

    # unpinned: the connection test and the delivery fail, nobody connects
    log_before = sshd_log(sshd)
    t = wharf("connector", "partner", "test", "--data", data_dir)
    assert t.returncode == 1 and not_confirmed in t.stderr, t
    server = start_server(data_dir)
    drop_file(inbox, "held.edi", b"waits for the confirmed key")

    def held_back():
        server.check_alive()
        msgs = wharf.messages(data_dir)
        if not msgs:
            return None
        hops = [h for h in wharf.show(data_dir, msgs[0]["id"])["hops"]
                if h["connector"] == "partner"]
        return hops and hops[0]["last_error"] and \
            not_confirmed in hops[0]["last_error"] and hops[0]
    hop = wait_until(held_back, timeout=60, desc="the hop held back")
    assert hop["state"] != "sent", hop
    time.sleep(1)
    assert sshd_log(sshd) == log_before, "sshd was contacted without a pin"
    assert listdir(send) == []

    # hostkey: the type and fingerprint ssh-keygen -lf prints, no auth
    p = wharf.ok("connector", "partner", "hostkey.capture", "--data",
                 data_dir)
    assert fp in p.stdout and ktype in p.stdout, p.stdout
    assert FP_RE.findall(p.stdout) == [fp, fp], p.stdout
    assert f"hostkey.accept {fp}" in p.stdout and "partner" in p.stdout
    new_log = sshd_log(sshd)[len(log_before):]
    assert "Connection from 127.0.0.1" in new_log, new_log
    for w in AUTH_WORDS:
        assert w not in new_log, f"authentication attempted ({w}):\n{new_log}"

    # --accept with another fingerprint: refused, nothing stored
    other = tmp_path / "other"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
    _, wrong = keygen_fp(f"{other}.pub")
    r = wharf("connector", "partner", "hostkey.accept", wrong, "--data",
              data_dir)
    assert r.returncode == 1, r
    assert fp in r.stderr and wrong in r.stderr, r.stderr
    assert "nothing stored" in r.stderr
    assert "host_key_sha256" not in exported(wharf, data_dir)
    r = wharf("connector", "partner", "hostkey.accept", "SHA256:tooshort",
              "--data", data_dir)
    assert r.returncode == 1 and "SHA256:<43 base64" in r.stderr, r

    # --accept with the right one: stored, audited, the message goes
    gen_before = wharf.export_flow(data_dir)
    a = wharf.ok("connector", "partner", "hostkey.accept", fp, "--data",
                 data_dir)
    assert fp in a.stdout
    cfg = exported(wharf, data_dir)
    assert cfg["host_key_sha256"] == fp
    assert json.loads(gen_before)["links"] == \
        json.loads(wharf.export_flow(data_dir))["links"]
    entries = hostkey_audit(wharf, data_dir)
    assert len(entries) == 2, entries       # the refused one and this one
    assert "refused" in entries[0]["detail"] and wrong in entries[0]["detail"]
    assert fp in entries[1]["detail"] and "before: none" in entries[1]["detail"]
    wait_until(lambda: server.check_alive() and
               listdir(send) == ["held.edi"], timeout=60,
               desc="the held message delivered after the confirm")
    assert (send / "held.edi").read_bytes() == b"waits for the confirmed key"
    shown = wharf.ok("connector", "partner", "hostkey.capture", "--data",
                     data_dir)
    assert "confirmed host key" in shown.stdout
    wharf.ok("connector", "partner", "test", "--data", data_dir)

    # the server's key changes: refused, both fingerprints named
    ntype, new = change_host_key(sshd)
    assert new != fp
    drop_file(inbox, "after-change.edi", b"must not reach an impostor")

    def refused():
        server.check_alive()
        for m in wharf.messages(data_dir, "failed"):
            for h in wharf.show(data_dir, m["id"])["hops"]:
                if h["connector"] == "partner":
                    return h
        return None
    hop = wait_until(refused, timeout=60, desc="the changed key refused")
    assert f"host key of 127.0.0.1:{sshd.port} does not match" in \
        hop["last_error"], hop
    assert new in hop["last_error"] and fp in hop["last_error"], hop
    assert hop["attempts"] == 1, hop
    assert listdir(send) == ["held.edi"]
    s = wharf("connector", "partner", "hostkey.capture", "--data", data_dir)
    assert s.returncode == 1, s
    assert new in s.stdout and ntype in s.stdout, s.stdout
    assert new in s.stderr and fp in s.stderr and "changed" in s.stderr

    # confirming the new key (after checking it with the partner) works
    wharf.ok("connector", "partner", "hostkey.accept", f"fingerprint={new}",
             "--data", data_dir)
    assert exported(wharf, data_dir)["host_key_sha256"] == new
    server.stop()


def test_m5_sftp_hostkey_through_the_api(tmp_path, wharf, data_dir,
                                         start_server, keyed_sshd):
    from test_r14_api import Api, cli_token
    sshd = keyed_sshd
    send = sshd.remote_dir("hostkey-api")
    unpinned_flow(tmp_path, wharf, data_dir, sshd, send)
    operator, _ = cli_token(wharf, data_dir, "operator")
    auditor, _ = cli_token(wharf, data_dir, "auditor")
    server = start_server(data_dir)
    admin, _ = server.wait_listening()
    api = Api(admin)
    viewer, _ = cli_token(wharf, data_dir, "viewer")
    path = "/api/v1/connectors/partner/actions/hostkey.capture"
    accept = "/api/v1/connectors/partner/actions/hostkey.accept"

    denied = api.request("GET", path, token=auditor)
    assert denied.status == 403 and denied.code() == "forbidden", denied
    assert "connector.test" in denied.json()["error"]["message"]
    got = api.request("GET", path, token=operator)
    assert got.status == 200, got
    body = got.json()
    assert body["fingerprint"] == sshd.fingerprint, body
    assert body["type"] == "ED25519" and body["matches"] is False, body
    assert body["server"] == f"127.0.0.1:{sshd.port}"
    assert body["confirmed"] is None, body

    other = tmp_path / "other"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
    _, wrong = keygen_fp(f"{other}.pub")
    r = api.request("POST", accept, body={"fingerprint": wrong},
                    token=viewer)
    assert r.status == 403 and r.code() == "forbidden", r   # flow.write
    assert api.request("GET", accept, token=operator).status == 405
    r = api.request("POST", accept, body={"fingerprint": wrong},
                    token=operator)
    assert r.status == 409 and r.code() == "host_key_mismatch", r
    assert wrong in r.json()["error"]["message"]
    assert sshd.fingerprint in r.json()["error"]["message"]
    assert api.request("POST", accept, body={}, token=operator).status == 400
    r = api.request("POST", "/api/v1/connectors/inbox/actions/hostkey.accept",
                    body={"fingerprint": wrong}, token=operator)
    assert r.status == 404 and "has no action" in r.json()["error"]["message"]
    assert "host_key_sha256" not in exported(wharf, data_dir)

    ok = api.request("POST", accept, body={"fingerprint": sshd.fingerprint},
                     token=operator)
    assert ok.status == 200, ok
    assert ok.json()["confirmed"] == sshd.fingerprint
    assert exported(wharf, data_dir)["host_key_sha256"] == sshd.fingerprint
    again = api.request("GET", path, token=operator).json()
    assert again["matches"] is True and \
        again["confirmed"] == sshd.fingerprint, again
    entries = hostkey_audit(wharf, data_dir)
    # the wrong fingerprint, the attempt on a file connector, the accepted
    assert [("refused" in e["detail"]) for e in entries] == \
        [True, True, False], entries
    assert "inbox" == entries[1]["target"] and "has no action" in \
        entries[1]["detail"], entries
    server.stop()
