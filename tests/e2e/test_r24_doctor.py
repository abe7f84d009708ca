"""
R24 (risk assessment and internal audit): `wharf doctor [--json|--html]`
and GET /api/v1/posture check a data dir against Wharf's requirements,
each check PASS, WARN or FAIL with what it found, what to do and the
ISO/IEC 27001:2022 Annex A controls it evidences; exit 0 when nothing
FAILs, 1 otherwise.

  - a fresh data dir (tuned as the tests tune it, run as root, the binary
    copied away from the source tree): the expected WARNs and FAILs, then
    each fixed (the data dir owned by an unprivileged user, the
    administrator enrols TOTP with oathtool's codes, a backup recorded in
    the documented backups table, retention set, allowed_paths narrowed,
    SECURITY.md installed beside the binary): every check PASSes, exit 0;
  - each risk the issue lists, introduced one by one, found by its check
    (keystore mode, a listener on 0.0.0.0, trace logging, a token without
    expiry, an insecure http connector, an SFTP connector without a pinned
    host key, a world-writable allowed root, metrics for loopback, an
    expired partner certificate, MFA no longer required, a broken audit
    chain, weak AS2 algorithms);
  - --json has exactly the documented shape; --html is one escaped page;
  - the API answers the same checks to an auditor, 403 to an operator;
    process.keys there reads the key process's /proc status through serve's
    own descriptor (the PASS as an unprivileged user: test_r22_sandbox.py).
"""
import datetime
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (Wharf, file_dest, file_source, flow_doc, new_data_dir,
                      tune_conf, wait_until)
from test_r14_api import Api, cli_token, oathtool
from test_r18_health_checks import self_signed
from test_r22_sandbox import key_process

ID_RE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
CONTROL_RE = re.compile(r"^A\.[5-8]\.[0-9]+$")
SECRET_RE = re.compile(r"[?&]secret=([A-Z2-7]+)(?:&|$)")
ALL_CHECKS = {
    "files.data_dir_mode", "files.keystore_mode", "files.private_modes",
    "process.user", "process.sandbox", "process.keys", "listeners.admin",
    "listeners.partner",
    "listeners.certificate", "connectors.plaintext", "connectors.host_keys",
    "partners.algorithms", "auth.mfa_policy", "users.admin_mfa",
    "tokens.expiry", "tokens.unused", "certificates.expiry",
    "keys.keystore", "keys.master_key_age", "logging.level", "audit.chain", "backup.age",
    "retention.configured", "disk.free", "metrics.access",
    "paths.allowed_roots", "install.security_md"}


def doctor(wharf, data, *fmt):
    p = wharf("doctor", "--data", data, *(fmt or ("--json",)))
    assert p.returncode in (0, 1), p
    return p


def report(wharf, data):
    p = doctor(wharf, data)
    r = json.loads(p.stdout)
    return p.returncode, {c["id"]: c for c in r["checks"]}


def statuses(checks):
    return {i: c["status"] for i, c in checks.items()}


def not_passing(checks):
    return {i: s for i, s in statuses(checks).items() if s != "PASS"}


@pytest.fixture
def away_binary(wharf_bin, tmp_path):
    """The binary copied to tmp_path/inst/bin: no SECURITY.md beside it
    until the test installs one in inst/share/doc/wharf."""
    b = tmp_path / "inst" / "bin" / "wharf"
    b.parent.mkdir(parents=True)
    shutil.copy2(wharf_bin, b)
    return Wharf(b, tmp_path)


def enrol_totp(wharf, data, user="admin"):
    p = wharf.ok("user", "mfa", "enroll", user, "--data", data)
    secret = SECRET_RE.search(p.stdout).group(1)
    code = oathtool(secret, int(time.time()))
    wharf.ok("user", "mfa", "confirm", user, code, "--data", data)


def record_backup(wharf, data, tmp_path, days_ago):
    """A real `wharf backup` (it records its run in the backups table,
    R20), then its finish moved days_ago days into the past."""
    target = tmp_path / f"backup-{days_ago}-{time.monotonic_ns()}.wbk"
    wharf("backup", "--to", str(target), "--data", data)
    assert target.stat().st_size > 0
    db = sqlite3.connect(str(Path(data) / "wharf.db"), timeout=30)
    try:
        n = db.execute("UPDATE backups SET finished_at = finished_at - ? "
                       "WHERE id = (SELECT MAX(id) FROM backups) AND ok = 1",
                       (days_ago * 86400000,)).rowcount
        assert n == 1, "wharf backup recorded no successful run"
        db.commit()
    finally:
        db.close()
    return target


def test_r24_doctor_fresh_data_dir_then_every_check_passes(
        away_binary, tmp_path):
    wharf = away_binary
    data = new_data_dir(wharf, tmp_path / "data")
    rc, checks = report(wharf, data)
    assert set(checks) == ALL_CHECKS, set(checks) ^ ALL_CHECKS
    assert rc == 1
    assert not_passing(checks) == {
        "process.user": "WARN",             # root
        "users.admin_mfa": "FAIL",          # init's admin has no TOTP yet
        "backup.age": "WARN",               # no backup recorded
        "retention.configured": "WARN",     # retention_days = 0
        "paths.allowed_roots": "WARN",      # tmp_path holds the data dir
        "install.security_md": "WARN",      # nothing beside the copy
    }, not_passing(checks)
    assert "admin" in checks["users.admin_mfa"]["found"]
    assert checks["backup.age"]["found"] == "no backup recorded"
    assert "root (uid 0)" in checks["process.user"]["found"]
    text = wharf("doctor", "--data", data).stdout
    assert re.search(r"^FAIL  users\.admin_mfa +1 of 1 administrator",
                     text, re.M), text
    assert "ISO/IEC 27001:2022 Annex A: A.5.17 A.8.5" in text
    assert text.rstrip().endswith("21 PASS, 5 WARN, 1 FAIL"), text[-200:]

    # fix each
    enrol_totp(wharf, data)
    record_backup(wharf, data, tmp_path, days_ago=1)
    files = tmp_path / "files"
    files.mkdir()
    tune_conf(data, retention_days=30, allowed_paths=files)
    doc = tmp_path / "inst" / "share" / "doc" / "wharf"
    doc.mkdir(parents=True)
    shutil.copy(Path(__file__).parents[2] / "SECURITY.md", doc)
    subprocess.run(["chown", "-R", "65534:65534", str(data)], check=True)
    rc, checks = report(wharf, data)
    assert not_passing(checks) == {}, not_passing(checks)
    assert rc == 0
    assert "(uid 65534)" in checks["process.user"]["found"]
    assert str(doc / "SECURITY.md") in checks["install.security_md"]["found"]
    assert "days" in checks["retention.configured"]["found"]
    # and a backup that grew old is a WARN again
    record_backup(wharf, data, tmp_path, days_ago=0)
    db = sqlite3.connect(str(data / "wharf.db"), timeout=30)
    db.execute("UPDATE backups SET finished_at = finished_at - ?",
               (10 * 86400000,))
    db.commit()
    db.close()
    _, checks = report(wharf, data)
    assert checks["backup.age"]["status"] == "WARN"
    assert "10 days ago" in checks["backup.age"]["found"]


def test_r24_doctor_finds_each_risk(wharf, data_dir, tmp_path, start_server):
    data = data_dir
    _, base = report(wharf, data)
    assert base["listeners.admin"]["status"] == "PASS"

    def only_new(expect):
        """The checks that changed from `base` are exactly expect."""
        _, now = report(wharf, data)
        changed = {i: c["status"] for i, c in now.items()
                   if c["status"] != base[i]["status"]}
        assert changed == expect, changed
        return now

    # the keystore readable by others: serve would refuse, doctor says why
    os.chmod(data / "keystore", 0o644)
    p = doctor(wharf, data)
    assert p.returncode == 1
    got = {c["id"]: c for c in json.loads(p.stdout)["checks"]}
    assert got["files.keystore_mode"]["status"] == "FAIL"
    assert "0644" in got["files.keystore_mode"]["found"]
    assert got["data.open"]["status"] == "FAIL"
    assert "users.admin_mfa" not in got        # nothing else could run
    os.chmod(data / "keystore", 0o600)

    # wharf.conf: the admin listener on every address, trace, loopback
    # metrics
    port = data.joinpath("wharf.conf").read_text()
    tune_conf(data, admin_listen="0.0.0.0:" + re.findall(
        r"admin_listen = 127\.0\.0\.1:(\d+)", port)[-1], log_level="trace",
        metrics_access="loopback")
    c = only_new({"listeners.admin": "WARN", "listeners.certificate": "WARN",
                  "logging.level": "WARN", "metrics.access": "WARN"})
    assert "without mutual TLS" in c["listeners.admin"]["found"]
    # the action names the keys (it printed "%s_client_ca" before)
    assert "admin_client_ca" in c["listeners.admin"]["action"] and \
        "admin_allow_from" in c["listeners.admin"]["action"] and \
        "%" not in c["listeners.admin"]["action"], c["listeners.admin"]
    assert "self-signed" in c["listeners.certificate"]["found"]
    # an allow-list of the addresses that may reach it is enough (R2)
    conf = data.joinpath("wharf.conf").read_text()
    tune_conf(data, admin_allow_from="192.0.2.0/24")
    c = only_new({"listeners.certificate": "WARN", "logging.level": "WARN",
                  "metrics.access": "WARN"})
    assert "admin_allow_from only (192.0.2.0/24)" in \
        c["listeners.admin"]["found"], c["listeners.admin"]
    data.joinpath("wharf.conf").write_text(conf)
    tune_conf(data, admin_client_ca=data / "tls" / "cert.pem")
    c = only_new({"listeners.certificate": "WARN", "logging.level": "WARN",
                  "metrics.access": "WARN"})
    assert "mutual TLS" in c["listeners.admin"]["found"]
    tune_conf(data, admin_listen="127.0.0.1:" + re.findall(
        r"admin_listen = 127\.0\.0\.1:(\d+)", port)[-1], log_level="info",
        metrics_access="token", admin_client_ca="")

    # a token that never expires
    cli_token_days = wharf.ok("token", "create", "--data", data, "--role",
                              "viewer", "--owner", "admin", "--name",
                              "forever", "--days", "0")
    assert cli_token_days.returncode == 0
    c = only_new({"tokens.expiry": "WARN"})
    assert "forever" in c["tokens.expiry"]["found"]
    wharf.ok("token", "revoke", "--data", data, re.search(
        r"created API token (\S+)", cli_token_days.stderr).group(1))

    # plain-text http, an SFTP server without a pinned key, a
    # world-writable allowed root
    root = tmp_path / "open"
    root.mkdir()
    os.chmod(root, 0o777)
    secret = tmp_path / "pw"
    secret.write_text("sftp-password-1\n")
    os.chmod(secret, 0o600)
    (tmp_path / "in").mkdir()
    tune_conf(data, allowed_paths=f"{tmp_path},{root}")
    doc = flow_doc([file_source("inbox", tmp_path / "in"),
                    {"name": "web", "type": "http", "config": {
                        "url": "http://127.0.0.1:9/in", "insecure": True}},
                    {"name": "drop", "type": "sftp", "config": {
                        "host": "127.0.0.1", "port": 22, "user": "u",
                        "password_file": str(secret), "send_dir": "/in"}}],
                   [("inbox", "web"), ("inbox", "drop")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    c = only_new({"connectors.plaintext": "WARN",
                  "connectors.host_keys": "WARN",
                  "paths.allowed_roots": "FAIL"})
    assert "connector web" in c["connectors.plaintext"]["found"]
    assert c["connectors.host_keys"]["found"].endswith("drop")
    assert str(root) in c["paths.allowed_roots"]["found"]
    assert "sftp-password-1" not in json.dumps(c)
    wharf.import_flow(data, flow_doc([], []), tmp_path / "flow.json")
    os.chmod(root, 0o755)

    # a partner with only an expired certificate, weak algorithms
    now = datetime.datetime.now(datetime.timezone.utc)
    self_signed(tmp_path / "old.pem", tmp_path / "old.key",
                now - datetime.timedelta(days=400),
                now - datetime.timedelta(days=2), cn="old")
    self_signed(tmp_path / "me.pem", tmp_path / "me.key",
                now - datetime.timedelta(days=1),
                now + datetime.timedelta(days=20), cn="me")
    doc = {"profile": {"as2_id": "me", "keys": [
               {"cert": str(tmp_path / "me.pem"),
                "key": str(tmp_path / "me.key")}]},
           "partners": [{"name": "old", "as2_id": "old",
                         "url": "https://127.0.0.1:9/as2", "sign": "sha1",
                         "encrypt": "3des",
                         "certificates": [str(tmp_path / "old.pem")]}],
           "connectors": [], "links": []}
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    c = only_new({"certificates.expiry": "FAIL",
                  "partners.algorithms": "WARN"})
    found = c["certificates.expiry"]["found"]
    assert "partner old" in found and "expired" in found, found
    assert "the AS2 profile" in found and "within 30 days" in found, found
    assert "old signs with sha1" in c["partners.algorithms"]["found"]
    wharf.import_flow(data, flow_doc([], []), tmp_path / "flow.json")

    # serve's sandbox turned off (core/sandbox.h)
    tune_conf(data, sandbox="off")
    c = only_new({"process.sandbox": "WARN", "process.keys": "WARN"})
    assert "sandbox = off" in c["process.sandbox"]["found"]
    assert "sandbox = off" in c["process.keys"]["found"]
    tune_conf(data, sandbox="on")

    # MFA no longer required of administrators (a setting of the API)
    adm = cli_token(wharf, data, "admin")[0]
    server = start_server(data)
    admin_port, _ = server.wait_listening()
    Api(admin_port).ok("PUT", "/api/v1/settings/mfa_required_admin",
                       body={"value": "false"}, token=adm)
    server.stop()
    c = only_new({"auth.mfa_policy": "FAIL"})
    assert "mfa_required_admin" in c["auth.mfa_policy"]["action"]

    # the audit chain broken
    db = sqlite3.connect(str(data / "wharf.db"), timeout=30)
    db.execute("UPDATE audit SET actor = 'someone' WHERE seq = 2")
    db.commit()
    db.close()
    rc, c = report(wharf, data)
    assert rc == 1 and c["audit.chain"]["status"] == "FAIL"
    assert "broken at entry 2" in c["audit.chain"]["found"]


def test_r24_doctor_json_and_html_shapes(wharf, data_dir):
    p = doctor(wharf, data_dir, "--json")
    r = json.loads(p.stdout)
    assert set(r) == {"checks"}
    ids = [c["id"] for c in r["checks"]]
    assert len(ids) == len(set(ids)) == len(ALL_CHECKS)
    for c in r["checks"]:
        assert set(c) == {"id", "status", "found", "action", "controls"}, c
        assert ID_RE.match(c["id"]), c
        assert c["status"] in ("PASS", "WARN", "FAIL"), c
        assert isinstance(c["found"], str) and c["found"], c
        assert isinstance(c["action"], str), c
        assert (c["action"] == "") == (c["status"] == "PASS"), c
        assert c["controls"] and all(CONTROL_RE.match(x)
                                     for x in c["controls"]), c
    # the controls the issue names appear
    controls = {x for c in r["checks"] for x in c["controls"]}
    for want in ("A.5.15", "A.5.17", "A.8.5", "A.8.15", "A.8.24", "A.8.13"):
        assert want in controls, want
    html = doctor(wharf, data_dir, "--html").stdout
    assert html.startswith("<!DOCTYPE html>") and html.count("<tr") == \
        len(ids) + 1, html[:300]
    for i in ids:
        assert f"<code>{i}</code>" in html
    assert "&#39;" in html          # "data directory's owner" escaped
    assert "'" not in html.split("<body>", 1)[1].replace("class=", "")
    p = wharf("doctor", "--data", data_dir, "--json", "--html")
    assert p.returncode == 2


def test_r24_posture_api_for_auditors(wharf, data_dir, start_server,
                                     tmp_path):
    # allowed_paths away from the data dir, as installed: the report is
    # made inside serve's sandbox with its narrow view
    (tmp_path / "files").mkdir()
    tune_conf(data_dir, allowed_paths=tmp_path / "files")
    tokens = {r: cli_token(wharf, data_dir, r)[0]
              for r in ("admin", "operator", "auditor", "viewer")}
    server = start_server(data_dir)
    port, _ = server.wait_listening()
    api = Api(port)
    r = api.ok("GET", "/api/v1/posture", token=tokens["auditor"]).json()
    assert {c["id"] for c in r["checks"]} == ALL_CHECKS
    cli = {c["id"]: c["status"] for c in json.loads(
        doctor(wharf, data_dir).stdout)["checks"]}
    api_st = {c["id"]: c["status"] for c in r["checks"]}
    assert api_st == cli, (api_st, cli)
    user = next(c for c in r["checks"] if c["id"] == "process.user")
    assert user["found"].startswith("wharf serve runs as root"), user
    box = next(c for c in r["checks"] if c["id"] == "process.sandbox")
    assert box["status"] == "PASS" and "seen in /proc" in box["found"], box
    # the key process, read by serve through the descriptor its key client
    # keeps (its own sandbox shows it only /proc/self): root here, as serve
    keys = next(c for c in r["checks"] if c["id"] == "process.keys")
    assert keys["status"] == "WARN", keys
    assert f"key process (pid {key_process(server)})" in keys["found"], keys
    assert "runs as root (uid 0)" in keys["found"], keys
    api.ok("GET", "/api/v1/posture", token=tokens["admin"])
    for role in ("operator", "viewer"):
        x = api.request("GET", "/api/v1/posture", token=tokens[role])
        assert x.status == 403 and x.code() == "forbidden", (role, x)
    server.check_alive()
    server.stop()
