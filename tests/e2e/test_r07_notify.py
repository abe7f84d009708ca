"""
R7 (only where the customer points it) and R19's notifications, issue 12
part 2, against real servers started here on 127.0.0.1:

  - e-mail: an SMTP server (Debian's python3-aiosmtpd) with TLS from the
    first byte (smtps://) and AUTH; the mail of an alert arrives with the
    alert's details and without the SMTP password (sealed by the vault
    from a 0600 file with `wharf notify credentials email FILE`), which
    appears in no log, output or database file either; a server that does
    not offer STARTTLS gets nothing (TLS is required), one that does gets
    the mail;
  - a webhook: an HTTPS server checks X-Signature = hex(HMAC-SHA256(key,
    X-Timestamp "." body)), the scheme Wharf's webhook connector verifies;
    the alert was raised by the CLI while serve ran (the timeline is the
    outbox);
  - syslog (RFC 5424): a UDP collector and a local datagram socket; over
    TLS (RFC 5425, R11) to openssl s_server, from the CLI and from serve
    in its sandbox, refused for an unknown CA or another address, and
    the posture report naming a plain-text collector elsewhere;
  - a notification that cannot be sent is retried until the server is up.
Nothing is sent by default: test_r01_no_intermediary.py runs every
connector under strace with the default wharf.conf.
"""
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (file_dest, file_source, flow_doc, free_port,
                      new_data_dir, serve_http, tune_conf, wait_until)
from test_r14_api import cli_token
from test_r17_oidc import make_ca_and_cert

SMTP_USER = "wharf-notify"
SMTP_PASS = "Smtp-Pass-7f3a9c21e4"
HMAC_KEY = "hook-key-5d8e0b7c2a91f4e6"


def ossl(*args, cwd):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd,
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture
def pki(tmp_path):
    """A CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    d = tmp_path / "pki"
    d.mkdir()
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
         "/CN=notify-ca", "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=d)
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "srv-key.pem",
         "-out", "srv.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey",
         "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile",
         "ext.cnf", "-out", "srv.pem", cwd=d)
    return {"ca": d / "ca.pem", "cert": d / "srv.pem",
            "key": d / "srv-key.pem"}


def secret_file(d, name, value):
    p = Path(d) / name
    p.write_text(value + "\n")
    p.chmod(0o600)
    return p


# ---- an SMTP server ------------------------------------------------------------------


class Mailbox:
    """aiosmtpd on 127.0.0.1: implicit TLS (smtps) or STARTTLS (required
    or not offered), AUTH with SMTP_USER/SMTP_PASS. Keeps every message
    and every command line verb it saw."""

    def __init__(self, pki, mode, port=None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword
        self.messages = []
        self.logins = []
        self.port = port or free_port()
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.messages.append((envelope.mail_from,
                                     list(envelope.rcpt_tos),
                                     envelope.content))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, data):
            ok = (isinstance(data, LoginPassword) and
                  data.login == SMTP_USER.encode() and
                  data.password == SMTP_PASS.encode())
            box.logins.append(ok)
            return AuthResult(success=ok)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(pki["cert"]), str(pki["key"]))
        kw = {"authenticator": authenticator}
        if mode == "smtps":
            kw.update(ssl_context=ctx, auth_require_tls=False,
                      auth_required=True)
        elif mode == "starttls":
            kw.update(tls_context=ctx, require_starttls=True,
                      auth_required=True)
        else:                               # plain: no TLS offered at all
            kw.update(auth_require_tls=False)
        self.controller = Controller(Handler(), hostname="127.0.0.1",
                                     port=self.port, **kw)
        self.controller.start()

    def stop(self):
        self.controller.stop()


def mail_conf(pki, port, scheme="smtps", **more):
    c = {"notify_email_url": f"{scheme}://127.0.0.1:{port}",
         "notify_email_from": "wharf@example.com",
         "notify_email_to": "soc@example.com,oncall@example.com",
         "notify_ca_file": str(pki["ca"])}
    c.update(more)
    return c


def failing_source_flow(wharf, data, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    wharf.import_flow(data, flow_doc([file_source("inbox", inbox),
                                      file_dest("out", out)],
                                     [("inbox", "out")]), tmp_path / "f.json")
    return inbox


def everything_written(data, srv):
    """Every byte Wharf wrote: logs, the server's output, the database."""
    out = srv.stdout() + srv.stderr()
    for p in Path(data).rglob("*"):
        if p.is_file() and p.suffix != ".wpay":
            out += p.read_bytes().decode("latin-1")
    return out


def test_r07_email_over_smtps_with_the_alert_and_no_secret(
        wharf, start_server, tmp_path, pki):
    box = Mailbox(pki, "smtps")
    try:
        data = new_data_dir(wharf, tmp_path / "data", alert_check_seconds=1,
                            alert_connector_failing_seconds=2,
                            **mail_conf(pki, box.port))
        cred = secret_file(tmp_path, "smtp.cred", f"{SMTP_USER}:{SMTP_PASS}")
        cred.chmod(0o644)                   # a readable file is refused
        p = wharf("notify", "credentials", "email", cred, "--data", data)
        assert p.returncode == 1 and "group or others" in p.stderr, p
        cred.chmod(0o600)
        wharf.ok("notify", "credentials", "email", cred, "--data", data)
        inbox = failing_source_flow(wharf, data, tmp_path)
        srv = start_server(data)
        srv.wait_listening()
        os.rename(inbox, tmp_path / "in.away")      # a warning alert

        def mailed():
            srv.check_alive()
            return [m for m in box.messages if b"opened" in m[2]]
        mail_from, rcpts, content = wait_until(mailed, timeout=90,
                                               desc="the alert's mail")[0]
        text = content.decode()
        assert mail_from == "wharf@example.com"
        assert sorted(rcpts) == ["oncall@example.com", "soc@example.com"]
        assert re.search(r"^Subject: \[wharf warning\] alert \d+ opened: "
                         r"source inbox: every poll has failed", text, re.M)
        assert "connector.failing" in text and "about:    inbox" in text
        assert "wharf alert ack" in text
        assert box.logins and all(box.logins)
        # the resolution is mailed too
        os.rename(tmp_path / "in.away", inbox)
        wait_until(lambda: [m for m in box.messages if b"resolved" in m[2]],
                   timeout=90, desc="the resolution's mail")
        # the info alert of the flow import was not mailed (level warning)
        assert not [m for m in box.messages if b"flow.import" in m[2]]
        srv.stop()
        for m in box.messages:
            assert SMTP_PASS.encode() not in m[2]
        written = everything_written(data, srv)
        assert SMTP_PASS not in written
        assert SMTP_USER not in written         # sealed: not even the name
    finally:
        box.stop()


def test_r07_email_tls_is_required(wharf, tmp_path, pki):
    plain = Mailbox(pki, "plain")
    tls = Mailbox(pki, "starttls")
    try:
        data = new_data_dir(wharf, tmp_path / "data",
                            **mail_conf(pki, plain.port, scheme="smtp"))
        wharf.ok("notify", "credentials", "email",
                 secret_file(tmp_path, "c", f"{SMTP_USER}:{SMTP_PASS}"),
                 "--data", data)
        p = wharf("notify", "test", "email", "--data", data)
        assert p.returncode == 1 and "STARTTLS" in p.stderr, p
        assert plain.messages == [] and plain.logins == []
        tune_conf(data, notify_email_url=f"smtp://127.0.0.1:{tls.port}")
        wharf.ok("notify", "test", "email", "--data", data)
        assert len(tls.messages) == 1 and tls.logins == [True]
        assert b"a test notification" in tls.messages[0][2]
    finally:
        plain.stop()
        tls.stop()


def test_r07_email_retried_until_the_server_is_up_across_kill9(
        wharf, start_server, tmp_path, pki):
    """The mail server is down when the alert opens; serve is killed (-9)
    while the send keeps failing; after a restart with the server up, the
    mail of that alert arrives: the timeline is the outbox."""
    port = free_port()
    data = new_data_dir(wharf, tmp_path / "data", alert_check_seconds=1,
                        alert_connector_failing_seconds=1,
                        **mail_conf(pki, port))
    wharf.ok("notify", "credentials", "email",
             secret_file(tmp_path, "c", f"{SMTP_USER}:{SMTP_PASS}"),
             "--data", data)
    inbox = failing_source_flow(wharf, data, tmp_path)
    srv = start_server(data)
    srv.wait_listening()
    os.rename(inbox, tmp_path / "in.away")
    log = data / "logs" / "wharf.log"
    wait_until(lambda: srv.check_alive() and
               "notification by email failed" in log.read_text(),
               timeout=60, desc="a failed send")
    opened = [a for a in json.loads(wharf.ok(
        "alert", "list", "--data", data, "--json").stdout)["alerts"]
        if a["kind"] == "connector.failing"]
    assert len(opened) == 1, opened
    srv.kill9()
    box = Mailbox(pki, "smtps", port=port)
    try:
        srv = start_server(data)
        srv.wait_listening()
        subject = f"alert {opened[0]['id']} opened".encode()
        wait_until(lambda: srv.check_alive() and
                   [m for m in box.messages if subject in m[2]],
                   timeout=120, desc="the mail after the restart")
        srv.stop()
    finally:
        box.stop()


# ---- a webhook --------------------------------------------------------------------------


def test_r07_webhook_signed_with_hmac_and_a_timestamp(wharf, start_server,
                                                      tmp_path, pki):
    import http.server
    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ts, sig = self.headers["X-Timestamp"], self.headers["X-Signature"]
            want = hmac.new(HMAC_KEY.encode(), ts.encode() + b"." + body,
                            hashlib.sha256).hexdigest()
            ok = sig is not None and hmac.compare_digest(sig, want) and \
                abs(time.time() - int(ts)) < 300
            got.append((ok, self.path, body))
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *a):
            pass
    httpd = serve_http(Hook, certkey=(pki["cert"], pki["key"]))
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}/soc/wharf"
        data = new_data_dir(wharf, tmp_path / "data",
                            notify_webhook_url=url,
                            notify_webhook_level="critical",
                            notify_ca_file=str(pki["ca"]))
        wharf.ok("notify", "credentials", "webhook",
                 secret_file(tmp_path, "k", HMAC_KEY), "--data", data)
        for i in range(3):
            cli_token(wharf, data, "viewer", name=f"t{i}")
        srv = start_server(data)
        srv.wait_listening()
        # the CLI raises a critical alert while serve runs: the audit
        # trail loses its newest entries
        db = sqlite3.connect(data / "wharf.db")
        db.execute("DELETE FROM audit WHERE seq > (SELECT MAX(seq) FROM "
                   "audit) - 2")
        db.commit()
        db.close()
        assert wharf("audit", "verify", "--data", data).returncode == 1
        ok, path, body = wait_until(lambda: srv.check_alive() and got,
                                    timeout=60, desc="the webhook")[0]
        assert ok, "the signature did not verify"
        assert path == "/soc/wharf"
        doc = json.loads(body)
        assert doc["alert"]["kind"] == "audit.broken"
        assert doc["alert"]["level"] == "critical"
        assert doc["event"]["action"] == "opened"
        assert "the audit trail is broken" in doc["alert"]["summary"]
        # below the channel's level: the info alerts were not posted
        assert all(json.loads(b)["event"]["level"] == "critical"
                   for _, _, b in got)
        assert HMAC_KEY.encode() not in body
        srv.stop()
        assert HMAC_KEY not in everything_written(data, srv)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_r07_webhook_key_survives_key_rotation(wharf, tmp_path, pki):
    """The sealed HMAC key is re-sealed by `wharf key rotate` (R15): the
    webhook still signs with the same key afterwards."""
    import http.server
    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ts = self.headers["X-Timestamp"]
            want = hmac.new(HMAC_KEY.encode(), ts.encode() + b"." + body,
                            hashlib.sha256).hexdigest()
            got.append(hmac.compare_digest(self.headers["X-Signature"] or "",
                                           want))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass
    httpd = serve_http(Hook, certkey=(pki["cert"], pki["key"]))
    try:
        data = new_data_dir(wharf, tmp_path / "data",
                            notify_webhook_url=f"https://127.0.0.1:"
                                               f"{httpd.server_address[1]}/h",
                            notify_ca_file=str(pki["ca"]))
        wharf.ok("notify", "credentials", "webhook",
                 secret_file(tmp_path, "k", HMAC_KEY), "--data", data)
        db = sqlite3.connect(data / "wharf.db")
        before = db.execute("SELECT value FROM settings WHERE key = "
                            "'notify_webhook_secret'").fetchone()[0]
        db.close()
        wharf.ok("key", "rotate", "--data", data)
        db = sqlite3.connect(data / "wharf.db")
        after = db.execute("SELECT value FROM settings WHERE key = "
                           "'notify_webhook_secret'").fetchone()[0]
        db.close()
        assert after != before              # re-sealed under the new key
        wharf.ok("notify", "test", "webhook", "--data", data)
        assert got == [True]
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- syslog ----------------------------------------------------------------------------

RFC5424 = re.compile(r"^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) "
                     r"(\S+) wharf (\d+) (\S+) - (.+)$")


def test_r07_syslog_rfc5424_over_udp_and_a_local_socket(wharf, start_server,
                                                        tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(60)
    path = str(tmp_path / "log.sock")
    local = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    local.bind(path)
    local.settimeout(30)
    try:
        data = new_data_dir(wharf, tmp_path / "data")
        srv = start_server(data)
        srv.wait_listening()
        # configured while serve runs: applied by SIGHUP (live keys)
        tune_conf(data, notify_syslog=f"udp://127.0.0.1:"
                                      f"{udp.getsockname()[1]}")
        srv.proc.send_signal(signal.SIGHUP)
        log = data / "logs" / "wharf.log"
        wait_until(lambda: srv.check_alive() and
                   "alert_* and notify_* settings changed, applied" in
                   log.read_text(), timeout=30, desc="the reload")
        inbox, out = tmp_path / "in", tmp_path / "out"
        inbox.mkdir()
        out.mkdir()
        wharf.import_flow(data, flow_doc([file_source("inbox", inbox),
                                          file_dest("out", out)],
                                         [("inbox", "out")]),
                          tmp_path / "f.json")
        lines = [udp.recv(65536).decode() for _ in range(2)]
        # the reload itself is a configuration change, then the import
        assert "configuration changed: conf.reload" in lines[0], lines
        m = RFC5424.match(lines[1])
        assert m, lines
        pri, msgid, msg = int(m.group(1)), m.group(5), m.group(6)
        assert pri == 10 * 8 + 6            # authpriv.info
        assert msgid == "alert.opened"
        assert "configuration changed: flow.import" in msg
        srv.stop()
        tune_conf(data, notify_syslog=f"unix:{path}")
        wharf.ok("notify", "test", "syslog", "--data", data)
        m = RFC5424.match(local.recv(65536).decode())
        assert m and "a test notification" in m.group(6), m
    finally:
        udp.close()
        local.close()


def tls_collector(d, host="127.0.0.1"):
    """openssl s_server as an RFC 5425 collector for one connection, with
    the test CA's certificate for 127.0.0.1 (make_ca_and_cert): (process,
    port). Its stdin stays open (at EOF it would stop)."""
    port = free_port()
    p = subprocess.Popen(["openssl", "s_server", "-accept", f"{host}:{port}",
                          "-cert", str(d / "idp.pem"), "-key",
                          str(d / "idp.key"), "-quiet", "-naccept", "1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    wait_until(lambda: f"{host}:{port} " in subprocess.run(
        ["ss", "-ltnH"], capture_output=True, text=True).stdout,
        timeout=30, desc="s_server listening")
    return p, port


def collected(p, timeout=60):
    """The framed message the collector received: it exits once its one
    connection ended (its stdin stays open: communicate() would close it,
    and s_server stops at the end of its input)."""
    p.wait(timeout=timeout)
    out = p.stdout.read().decode()
    count, _, msg = out.partition(" ")
    assert count.isdigit() and int(count) == len(msg.encode()), out
    return msg


def test_r11_syslog_over_tls_to_openssl_s_server(wharf, tmp_path,
                                                 start_server):
    d = tmp_path / "pki"
    d.mkdir()
    make_ca_and_cert(d)
    data = new_data_dir(wharf, tmp_path / "data")
    p, port = tls_collector(d)
    tune_conf(data, notify_syslog=f"tls://127.0.0.1:{port}",
              notify_ca_file=d / "ca.pem")
    wharf.ok("notify", "test", "syslog", "--data", data)
    m = RFC5424.match(collected(p))                 # RFC 5425 framing
    assert m and "a test notification" in m.group(6), msg
    # the posture report: TLS is no plain text, tcp:// to elsewhere is
    doctor = lambda: {c["id"]: c for c in json.loads(wharf(
        "doctor", "--json", "--data", data).stdout)["checks"]}
    assert doctor()["connectors.plaintext"]["status"] == "PASS"
    tune_conf(data, notify_syslog="tcp://192.0.2.1:514")
    c = doctor()["connectors.plaintext"]
    assert c["status"] == "WARN" and \
        "notify_syslog tcp://192.0.2.1:514" in c["found"], c
    tune_conf(data, notify_syslog="udp://127.0.0.1:514")
    assert doctor()["connectors.plaintext"]["status"] == "PASS"
    # a collector whose certificate the trust store does not know, and
    # one whose certificate names another address: refused, nothing sent
    for host, ca in (("127.0.0.1", ""), ("127.0.0.2", d / "ca.pem")):
        p, port = tls_collector(d, host)
        tune_conf(data, notify_syslog=f"tls://{host}:{port}",
                  notify_ca_file=ca)
        r = wharf("notify", "test", "syslog", "--data", data)
        assert r.returncode == 1, r
        assert "TLS handshake: the collector's certificate is not " \
            "trusted" in r.stderr, r.stderr
        p.kill()
        out, _ = p.communicate(timeout=30)
        assert b"wharf" not in out, out
    # serve, in its sandbox, reads notify_ca_file where it is (not beneath
    # allowed_paths): the alert of a flow import reaches the collector
    files = tmp_path / "files"
    for sub in ("in", "out"):
        (files / sub).mkdir(parents=True)
    p, port = tls_collector(d)
    tune_conf(data, notify_syslog=f"tls://127.0.0.1:{port}",
              notify_ca_file=d / "ca.pem", allowed_paths=files)
    srv = start_server(data)
    srv.wait_listening()
    wharf.import_flow(data, flow_doc([file_source("inbox", files / "in"),
                                      file_dest("out", files / "out")],
                                     [("inbox", "out")]), tmp_path / "f.json")
    msg = collected(p)
    assert RFC5424.match(msg), msg
    srv.check_alive()
    srv.stop()
