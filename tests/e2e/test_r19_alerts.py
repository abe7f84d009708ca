"""
R19 (incident management), issue 12 part 1: detectors raise alerts from
real conditions against a running `wharf serve`, repeats fold into one
alert with a count, a condition that clears is resolved, the log gets one
line per state change (never one per poll), and the ladder alert ->
investigation -> incident -> breach runs through the CLI and the REST API
with the roles of the issue (auditor reads, operator acknowledges, admin
escalates), every transition audited with who and why.

Real conditions: wrong logins (ban, locked account), a source folder that
disappears, a destination that cannot be written (parked messages), a
negative MDN from a second Wharf (AS2), a payload file changed on disk, a
truncated audit trail, a partner certificate made by the openssl CLI that
expires in 5 days, a data dir on a small tmpfs filled up, a flow import.
"""
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from as2_pair import pair, start_pair
from conftest import (drop_file, file_dest, file_source, flow_doc,
                      new_data_dir, tune_conf, wait_until)
from test_r14_api import (Api, cli_token, cli_user, new_password,  # noqa: F401
                          served)

FAST = {"alert_check_seconds": 1, "alert_connector_failing_seconds": 2}


def alerts(wharf, data, state="all"):
    p = wharf.ok("alert", "list", "--data", data, "--state", state,
                 "--limit", "1000", "--json")
    return json.loads(p.stdout)["alerts"]


def find(wharf, data, kind, key=None, state=None):
    return [a for a in alerts(wharf, data)
            if a["kind"] == kind and (key is None or a["key"] == key) and
            (state is None or a["state"] == state)]


def wait_alert(wharf, data, kind, key=None, state="open", srv=None,
               timeout=60):
    def seen():
        if srv is not None:
            srv.check_alive()
        return find(wharf, data, kind, key, state)
    return wait_until(seen, timeout=timeout,
                      desc=f"alert {kind} {key or ''} {state}")[0]


def log_of(data):
    p = Path(data) / "logs" / "wharf.log"
    return p.read_text(errors="replace") if p.exists() else ""


def alert_lines(data, *words):
    return [line for line in log_of(data).splitlines()
            if "ALERT" in line and all(w in line for w in words)]


def show(wharf, data, alert_id):
    return json.loads(wharf.ok("alert", "show", str(alert_id), "--data",
                               data, "--json").stdout)


def audit(wharf, data):
    return json.loads(wharf.ok("audit", "list", "--json", "--limit",
                               "100000", "--data", data).stdout)


# ---- authentication failures ------------------------------------------------------


def test_r19_wrong_logins_lock_the_account_and_ban_the_address(wharf,
                                                               served):
    ctx = {}

    def before(data):
        tune_conf(data, login_throttle_after=3, ban_after_failures=6,
                  **FAST)
        ctx["pw"] = cli_user(wharf, data, "bruno", "operator",
                             new_password())
    srv, data, api, _ = served(before=before)
    for i in range(3):
        r = api.request("POST", "/api/v1/auth/login",
                        body={"user": "bruno", "password": f"wrong-{i}-pw!"})
        assert r.status == 401, r
    locked = wait_alert(wharf, data, "auth.locked", "bruno", srv=srv)
    assert locked["level"] == "warning"
    assert "bruno" in locked["summary"] and "locked" in locked["summary"]
    # more failures (another name) until the address is banned
    statuses = [api.request("POST", "/api/v1/auth/login",
                            body={"user": "nobody",
                                  "password": f"x-{i}-guess"}).status
                for i in range(10)]
    assert None in statuses, statuses       # refused at accept: banned
    ban = wait_alert(wharf, data, "auth.ban", "127.0.0.1", srv=srv)
    assert "banned after repeated authentication failures" in ban["summary"]
    assert "failures=6" in (ban["details"] or "")
    # one line per state change: each alert opened once
    assert len(alert_lines(data, "alert %d opened" % ban["id"])) == 1
    assert len(alert_lines(data, "alert %d opened" % locked["id"])) == 1
    srv.check_alive()


# ---- connectors ------------------------------------------------------------------------


def test_r19_failing_source_raises_once_then_resolves(wharf, start_server,
                                                      tmp_path):
    data = new_data_dir(wharf, tmp_path / "data", **FAST)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    wharf.import_flow(data, flow_doc([file_source("inbox", inbox),
                                      file_dest("out", out)],
                                     [("inbox", "out")]), tmp_path / "f.json")
    srv = start_server(data)
    srv.wait_listening()
    away = tmp_path / "in.away"
    os.rename(inbox, away)                  # every poll fails from now on
    a = wait_alert(wharf, data, "connector.failing", "inbox", srv=srv)
    assert a["level"] == "warning"
    assert "every poll has failed" in a["summary"]
    os.rename(away, inbox)
    wait_alert(wharf, data, "connector.failing", "inbox", state="resolved",
               srv=srv)
    timeline = [e["action"] for e in show(wharf, data, a["id"])["timeline"]]
    assert timeline == ["opened", "resolved"], timeline
    # dozens of failed polls (poll_ms 50), one line each way
    assert len(alert_lines(data, "alert %d opened" % a["id"])) == 1
    assert len(alert_lines(data, "ALERT resolved", "alert %d," % a["id"])) == 1
    srv.stop()


def test_r19_connector_left_out_then_opened(wharf, start_server, tmp_path):
    data = new_data_dir(wharf, tmp_path / "data", **FAST)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    doc = flow_doc([file_source("inbox", inbox), file_dest("out", out)],
                   [("inbox", "out")])
    wharf.import_flow(data, doc, tmp_path / "f.json")
    os.rename(out, tmp_path / "out.away")   # cannot open at start
    srv = start_server(data)
    srv.wait_listening()
    a = wait_alert(wharf, data, "connector.left_out", "out", srv=srv)
    assert "could not be opened" in a["summary"]
    os.rename(tmp_path / "out.away", out)
    wharf.import_flow(data, doc, tmp_path / "f.json")   # opens it again
    wait_alert(wharf, data, "connector.left_out", "out", state="resolved",
               srv=srv)
    srv.stop()


def test_r19_failing_destination_parks_and_resolves_on_delivery(
        wharf, start_server, tmp_path, unwritable):
    data = new_data_dir(wharf, tmp_path / "data", **FAST)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    dest = file_dest("out", out, retry={"max_attempts": 2, "initial_ms": 50,
                                        "max_ms": 100})
    wharf.import_flow(data, flow_doc([file_source("inbox", inbox), dest],
                                     [("inbox", "out")]), tmp_path / "f.json")
    lock = unwritable(out)
    lock.on()
    srv = start_server(data)
    srv.wait_listening()
    drop_file(inbox, "po-1.edi", b"UNB+1\n")
    parked = wait_alert(wharf, data, "message.failed", "out", srv=srv)
    assert "parked as failed at out" in parked["summary"]
    failing = wait_alert(wharf, data, "delivery.failing", "out", srv=srv)
    assert "every delivery has failed" in failing["summary"]
    lock.off()
    msg = wharf.messages(data, state="failed")[0]
    wharf.ok("message", "resend", "--data", data, msg["id"])
    wait_alert(wharf, data, "delivery.failing", "out", state="resolved",
               srv=srv)
    assert (out / "po-1.edi").exists()
    srv.stop()


# ---- AS2: a negative MDN --------------------------------------------------------------


def test_r19_negative_mdn_from_the_partner(tmp_path, wharf, start_server):
    # A sends unsigned; B's partner "a" requires signatures: B refuses it
    # with a negative MDN
    a, b = pair(wharf, tmp_path, {"sign": "none"}, {})
    for side in (a, b):
        tune_conf(side.data, **FAST)
    start_pair((a, b), start_server)
    drop_file(a.outbox, "plain.edi", b"UNB+UNOA:1\n")
    mdn = wait_alert(wharf, a.data, "as2.mdn", "as2-b", srv=a.server)
    assert "does not confirm" in mdn["summary"]
    assert "insufficient-message-security" in mdn["summary"]
    refused = wait_alert(wharf, b.data, "as2.refused", srv=b.server)
    assert "refused" in refused["summary"]
    assert alert_lines(b.data, "ALERT: AS2 message", "refused")
    for s in (a, b):
        s.server.stop()


# ---- integrity ------------------------------------------------------------------------


def test_r19_tampered_payload_raises_a_critical_alert(wharf, start_server,
                                                      tmp_path):
    data = new_data_dir(wharf, tmp_path / "data", **FAST)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    wharf.import_flow(data, flow_doc([file_source("inbox", inbox),
                                      file_dest("out", out)],
                                     [("inbox", "out")]), tmp_path / "f.json")
    src = tmp_path / "po.edi"
    src.write_bytes(b"UNB+" + b"x" * 5000 + b"\n")
    msgid = wharf.send(data, "inbox", src)
    pay = next(p for p in (data / "payloads").rglob("*.wpay")
               if msgid in p.name)
    raw = bytearray(pay.read_bytes())
    raw[200] ^= 0x01                        # one bit, inside the first segment
    pay.write_bytes(bytes(raw))
    srv = start_server(data)
    srv.wait_listening()
    a = wait_alert(wharf, data, "integrity.payload", msgid, srv=srv)
    assert a["level"] == "critical"
    assert msgid in a["summary"] and "integrity" in a["summary"]
    assert "failed authentication" in (a["details"] or "")
    assert not (out / "po.edi").exists()
    srv.stop()


# ---- the audit trail ------------------------------------------------------------------


def truncate_audit(data, n):
    db = sqlite3.connect(data / "wharf.db")
    try:
        db.execute("DELETE FROM audit WHERE seq > (SELECT MAX(seq) FROM "
                   "audit) - ?", (n,))
        db.commit()
    finally:
        db.close()


def test_r19_truncated_audit_trail_cli_and_serve(wharf, start_server,
                                                 tmp_path):
    data = new_data_dir(wharf, tmp_path / "data", alert_check_seconds=1,
                        alert_audit_verify_seconds=1)
    for i in range(3):
        cli_token(wharf, data, "viewer", name=f"t{i}")
    truncate_audit(data, 2)
    p = wharf("audit", "verify", "--data", data)
    assert p.returncode == 1, p
    a = find(wharf, data, "audit.broken", "audit", "open")
    assert a and a[0]["level"] == "critical", alerts(wharf, data)
    assert "the audit trail is broken" in a[0]["summary"]
    # serve verifies periodically and keeps it open (folds into it)
    srv = start_server(data)
    srv.wait_listening()
    wait_until(lambda: srv.check_alive() and
               find(wharf, data, "audit.broken")[0]["count"] >= 2,
               timeout=60, desc="serve verified again")
    assert len(find(wharf, data, "audit.broken")) == 1
    srv.stop()


# ---- certificates -----------------------------------------------------------------------


def ossl(*args, cwd):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd,
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_r19_partner_certificate_expiring_in_5_days(wharf, start_server,
                                                    tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
         "-subj", "/CN=wharf-a", "-keyout", "a.key", "-out", "a.pem", cwd=d)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "5",
         "-subj", "/CN=acme-soon", "-keyout", "b.key", "-out", "b.pem", cwd=d)
    (d / "a.key").chmod(0o600)
    data = new_data_dir(wharf, tmp_path / "data", alert_check_seconds=1)
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    doc = flow_doc([file_source("inbox", inbox), file_dest("out", out)],
                   [("inbox", "out")])
    doc["profile"] = {"as2_id": "wharf-a",
                      "keys": [{"cert": str(d / "a.pem"),
                                "key": str(d / "a.key")}]}
    doc["partners"] = [{"name": "acme", "as2_id": "acme",
                        "url": "https://127.0.0.1:9/as2",
                        "certificates": [str(d / "b.pem")]}]
    wharf.import_flow(data, doc, tmp_path / "f.json")
    srv = start_server(data)
    srv.wait_listening()
    a = wait_alert(wharf, data, "cert.expiry", srv=srv)
    assert a["level"] == "warning", a
    assert "acme-soon" in a["summary"] and "partner acme" in a["summary"]
    assert "within 7 days" in a["summary"], a
    # the profile's certificate (365 days) and the listeners' are fine
    assert len(find(wharf, data, "cert.expiry")) == 1
    srv.stop()


# ---- disk space -------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.fail("the disk-space test mounts a tmpfs: run as root",
                    pytrace=False)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700",
                    "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_r19_disk_of_the_data_dir_filling_up(wharf, start_server, tmp_path,
                                             tmpfs):
    data = new_data_dir(wharf, tmpfs / "data", alert_check_seconds=1,
                        alert_disk_free_percent=50)
    srv = start_server(data)
    srv.wait_listening()
    filler = tmpfs / "filler"
    with open(filler, "wb") as f:           # 12 of 16 MiB: 25% free at most
        f.write(b"\0" * (12 * 1024 * 1024))
    a = wait_alert(wharf, data, "disk.low", str(data), srv=srv)
    assert a["level"] in ("warning", "critical")
    assert "free space" in a["summary"]
    filler.unlink()
    wait_alert(wharf, data, "disk.low", str(data), state="resolved", srv=srv)
    srv.stop()


# ---- configuration changes ---------------------------------------------------------------


def test_r19_configuration_changes_are_informational_alerts(wharf, tmp_path):
    data = new_data_dir(wharf, tmp_path / "data")
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    doc = flow_doc([file_source("inbox", inbox), file_dest("out", out)],
                   [("inbox", "out")])
    for _ in range(3):
        p = wharf.import_flow(data, doc, tmp_path / "f.json")
        assert "ALERT" not in p.stderr         # the CLI's stderr is its own
    a = find(wharf, data, "config.change", "flow.import")
    assert len(a) == 1 and a[0]["level"] == "info", a
    assert a[0]["count"] == 3
    assert "by cli" in a[0]["details"]
    cli_token(wharf, data, "viewer")
    assert find(wharf, data, "config.change", "token.create")


# ---- the ladder: CLI and API, roles, audit ---------------------------------------------


def raise_config_alert(wharf, data, tmp_path, name):
    cli_token(wharf, data, "viewer", name=name)
    return find(wharf, data, "config.change", "token.create", "open")[0]


def test_r19_ladder_through_the_api_with_roles(wharf, served, tmp_path):
    tokens = {}

    def before(data):
        for role in ("admin", "operator", "auditor", "viewer"):
            tokens[role] = cli_token(wharf, data, role)[0]
    srv, data, api, _ = served(before=before)
    a = find(wharf, data, "config.change", "token.create", "open")[0]
    path = f"/api/v1/alerts/{a['id']}"
    # reading: auditor yes, viewer no
    r = api.ok("GET", "/api/v1/alerts", token=tokens["auditor"])
    assert a["id"] in [x["id"] for x in r.json()["alerts"]]
    assert api.request("GET", path, token=tokens["viewer"]).status == 403
    api.ok("GET", path, token=tokens["auditor"])
    # acknowledging: the auditor may not, the operator may (with a reason)
    assert api.request("POST", path + "/ack", body={"reason": "x"},
                       token=tokens["auditor"]).status == 403
    assert api.request("POST", path + "/ack", body={},
                       token=tokens["operator"]).status == 400
    r = api.ok("POST", path + "/ack", body={"reason": "our own rollout"},
               token=tokens["operator"])
    assert r.json()["state"] == "acknowledged"
    # escalating: the operator may not, the administrator may
    esc = {"owner": "ada", "notes": "four tokens at once: check"}
    assert api.request("POST", path + "/escalate", body=esc,
                       token=tokens["operator"]).status == 403
    inc = api.ok("POST", path + "/escalate", body=esc,
                 token=tokens["admin"]).json()
    assert inc["tier"] == "investigation" and inc["owner"] == "ada"
    ipath = f"/api/v1/incidents/{inc['id']}"
    api.ok("GET", ipath, token=tokens["auditor"])
    upd = {"tier": "incident", "severity": "high", "partners": ["acme"],
           "messages": ["0193-x"], "note": "a token leaked to a partner"}
    assert api.request("PUT", ipath, body=upd,
                       token=tokens["operator"]).status == 403
    r = api.ok("PUT", ipath, body=upd, token=tokens["admin"]).json()
    assert r["tier"] == "incident" and r["severity"] == "high"
    assert r["partners"] == ["acme"] and r["messages"] == ["0193-x"]
    r = api.ok("PUT", ipath, body={"tier": "breach",
                                   "note": "personal data in it"},
               token=tokens["admin"]).json()
    assert r["breach"]["hours_left"] >= 71 and not r["breach"]["overdue"]
    assert "supervisory authority" in r["breach"]["notify"]
    assert api.request("PUT", ipath, body={"tier": "incident", "note": "no"},
                       token=tokens["admin"]).status == 400
    assert api.request("POST", ipath + "/close", body={"note": "done"},
                       token=tokens["auditor"]).status == 403
    r = api.ok("POST", ipath + "/close", body={"note": "authority told"},
               token=tokens["admin"]).json()
    assert r["state"] == "closed"
    assert [e["action"] for e in r["timeline"]] == [
        "escalated", "opened", "escalated", "escalated", "closed"]
    # every transition audited with who and why
    entries = audit(wharf, data)
    got = {(e["action"], e["actor"].split(":")[0], e["detail"])
           for e in entries if e["action"].startswith(("alert.",
                                                       "incident."))}
    acts = sorted(x[0] for x in got)
    assert acts == ["alert.ack", "alert.escalate", "incident.close",
                    "incident.update", "incident.update"], got
    assert all(actor == "token" for _, actor, _ in got), got
    assert any("our own rollout" in d for a_, _, d in got
               if a_ == "alert.ack")
    assert any("authority told" in d for a_, _, d in got
               if a_ == "incident.close")
    srv.check_alive()


def test_r19_ladder_through_the_cli(wharf, tmp_path):
    data = new_data_dir(wharf, tmp_path / "data")
    a = raise_config_alert(wharf, data, tmp_path, "t-cli")
    p = wharf("alert", "ack", str(a["id"]), "--data", data)
    assert p.returncode == 1 and "reason" in p.stderr   # a why is required
    wharf.ok("alert", "ack", str(a["id"]), "--reason", "expected", "--data",
             data)
    inc = json.loads(wharf.ok("alert", "escalate", str(a["id"]), "--owner",
                              "ada", "--notes", "why so many", "--json",
                              "--data", data).stdout)
    i = str(inc["id"])
    p = wharf("incident", "update", i, "--tier", "incident", "--note", "x",
              "--data", data)
    assert p.returncode == 1 and "severity" in p.stderr
    wharf.ok("incident", "update", i, "--tier", "incident", "--severity",
             "medium", "--partners", "acme,globex", "--note", "confirmed",
             "--data", data)
    wharf.ok("incident", "notify", i, "the DPO and acme's security team",
             "--note", "who to tell", "--data", data)
    out = json.loads(wharf.ok("incident", "update", i, "--tier", "breach",
                              "--note", "data left", "--json", "--data",
                              data).stdout)
    assert out["breach"]["notify"] == "the DPO and acme's security team"
    assert out["partners"] == ["acme", "globex"]
    text = wharf.ok("incident", "show", i, "--data", data).stdout
    assert "breach:" in text and "h left" in text
    wharf.ok("incident", "close", i, "--note", "told and fixed", "--data",
             data)
    listed = json.loads(wharf.ok("incident", "list", "--state", "closed",
                                 "--json", "--data", data).stdout)
    assert [x["id"] for x in listed["incidents"]] == [inc["id"]]
    entries = [e for e in audit(wharf, data)
               if e["action"].startswith(("alert.", "incident."))]
    assert [e["action"] for e in entries] == [
        "alert.ack", "alert.escalate", "incident.update", "incident.update",
        "incident.update", "incident.close"], entries
    assert all(e["actor"] == "cli" and e["detail"] for e in entries)
