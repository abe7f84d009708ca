"""M6, R3, R4: the HTTP(S) destination against a real HTTPS server started
here (python http.server + ssl, a test CA made with the openssl CLI), and
the webhook source on the partner listener with each authentication form.
"""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import ssl
import subprocess
import time

import pytest

from conftest import (file_dest, file_source, flow_doc, listdir, serve_http,
                      new_data_dir, wait_until, drop_file)


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, f"openssl {args}: {p.stderr!r}"
    return p.stdout


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
            f"/CN={name}", "-keyout", f"{name}-key.pem", "-out",
            f"{name}.pem", cwd=d)
    return d / f"{name}.pem", d / f"{name}-key.pem"


def make_server_cert(d, ca, ca_key):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "srv-key.pem",
            "-out", "srv.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out",
            "srv.pem", cwd=d)
    return d / "srv.pem", d / "srv-key.pem"


def spki_pin(d, cert):
    pub = openssl("x509", "-in", cert, "-pubkey", "-noout", cwd=d)
    (d / "pub.pem").write_bytes(pub)
    der = openssl("pkey", "-pubin", "-in", "pub.pem", "-outform", "der",
                  cwd=d)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class Recorder:
    """A test HTTP(S) server: /ok answers 200, /bad 400, /flaky 500 twice
    then 200. Records (method, path, headers, body) of every request."""

    def __init__(self, certkey=None, client_ca=None):
        self.requests = []
        self.counts = {}
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append((self.command, self.path,
                                     dict(self.headers), body))
                k = rec.counts[self.path] = rec.counts.get(self.path, 0) + 1
                status = {"/ok": 200, "/bad": 400}.get(self.path, 404)
                if self.path == "/flaky":
                    status = 500 if k <= 2 else 200
                out = b'{"result":"noted"}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_POST = do_PUT = do_HEAD = handle_any

        self.httpd = serve_http(H, certkey, client_ca)
        self.port = self.httpd.server_address[1]

    def bodies(self, path):
        return [r for r in self.requests if r[1] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, ca_key = make_ca(d, "testca")
    other, _ = make_ca(d, "otherca")
    cert, key = make_server_cert(d, ca, ca_key)
    return {"dir": d, "ca": ca, "other": other, "cert": cert, "key": key}


@pytest.fixture
def https_server(pki):
    s = Recorder((pki["cert"], pki["key"]))
    yield s
    s.close()


def secret_file(d, name, value):
    p = d / name
    p.write_text(value + "\n")
    p.chmod(0o600)
    return str(p)


def http_dest(name, url, **cfg):
    c = {"url": url, "retry": {"initial_ms": 50, "max_ms": 200,
                               "max_attempts": 10}}
    c.update(cfg)
    return {"name": name, "type": "http", "config": c}


def wait_states(wharf, data, n, states=("sent", "failed")):
    def done():
        msgs = wharf.messages(data)
        return len(msgs) == n and all(m["state"] in states for m in msgs)
    wait_until(done, timeout=60, desc=f"{n} message(s) finished")
    return wharf.messages(data)


def hop_of(wharf, data, msgid, conn):
    d = wharf.show(data, msgid)
    return [h for h in d["hops"] if h["connector"] == conn][0]


def by_source(msgs):
    return {m["source"]: m for m in msgs}


def test_m6_http_delivers_with_basic_and_bearer(tmp_path, wharf, pki,
                                                https_server, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    sec = tmp_path / "secrets"
    sec.mkdir()
    url = f"https://127.0.0.1:{https_server.port}/ok"
    ins = [tmp_path / f"in{i}" for i in range(2)]
    for d in ins:
        d.mkdir()
    doc = flow_doc([
        file_source("in0", ins[0]), file_source("in1", ins[1]),
        http_dest("basic", url, tls_ca=str(pki["ca"]),
                  headers={"X-Partner": "acme"},
                  auth={"type": "basic", "user": "wharf",
                        "password_file": secret_file(sec, "pw", "s3cret-pw")}),
        http_dest("bearer", url, method="PUT", tls_ca=str(pki["ca"]),
                  auth={"type": "bearer",
                        "token_file": secret_file(sec, "tok", "tok-123")}),
    ], [("in0", "basic"), ("in1", "bearer")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    big = os.urandom(300 * 1024 + 17)
    srv = start_server(data)
    srv.wait_listening()
    drop_file(ins[0], "order \"1\".edi", big)
    drop_file(ins[1], "small.txt", b"hello partner")
    msgs = by_source(wait_states(wharf, data, 2))
    assert msgs["in0"]["state"] == "sent" and msgs["in1"]["state"] == "sent"
    reqs = https_server.bodies("/ok")
    post = [r for r in reqs if r[0] == "POST"][0]
    put = [r for r in reqs if r[0] == "PUT"][0]
    assert post[3] == big and put[3] == b"hello partner"
    assert post[2]["Authorization"] == "Basic " + base64.b64encode(
        b"wharf:s3cret-pw").decode()
    assert put[2]["Authorization"] == "Bearer tok-123"
    assert post[2]["X-Partner"] == "acme"
    assert post[2]["X-Wharf-Filename"] == "order _1_.edi"
    assert post[2]["X-Wharf-Message-Id"] == msgs["in0"]["id"]
    assert int(post[2]["Content-Length"]) == len(big)
    srv.stop()
    log = (data / "logs" / "wharf.log").read_text()
    assert "s3cret-pw" not in log and "tok-123" not in log


def test_m6_http_retries_5xx_and_fails_4xx(tmp_path, wharf, pki,
                                           https_server, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    base = f"https://127.0.0.1:{https_server.port}"
    ins = [tmp_path / f"in{i}" for i in range(2)]
    for d in ins:
        d.mkdir()
    doc = flow_doc([
        file_source("in0", ins[0]), file_source("in1", ins[1]),
        http_dest("flaky", base + "/flaky", tls_ca=str(pki["ca"])),
        http_dest("bad", base + "/bad", tls_ca=str(pki["ca"])),
    ], [("in0", "flaky"), ("in1", "bad")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    srv.wait_listening()
    drop_file(ins[0], "a.txt", b"retry me")
    drop_file(ins[1], "b.txt", b"refuse me")
    msgs = by_source(wait_states(wharf, data, 2))
    srv.stop()
    assert msgs["in0"]["state"] == "sent"
    hop = hop_of(wharf, data, msgs["in0"]["id"], "flaky")
    assert hop["attempts"] == 3, hop
    assert [r[3] for r in https_server.bodies("/flaky")] == [b"retry me"] * 3
    assert msgs["in1"]["state"] == "failed"
    hop = hop_of(wharf, data, msgs["in1"]["id"], "bad")
    assert hop["attempts"] == 1, hop
    assert "HTTP 400" in hop["last_error"], hop


def test_r03_http_tls_untrusted_and_pins(tmp_path, wharf, pki, https_server,
                                         start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    url = f"https://127.0.0.1:{https_server.port}/ok"
    good_pin = spki_pin(pki["dir"], pki["cert"])
    wrong_pin = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    names = ["untrusted", "wrongpin", "rightpin"]
    for n in names:
        (tmp_path / f"in-{n}").mkdir()
    doc = flow_doc(
        [file_source(f"in-{n}", tmp_path / f"in-{n}") for n in names] + [
            http_dest("untrusted", url, tls_ca=str(pki["other"])),
            http_dest("wrongpin", url, tls_ca=str(pki["ca"]),
                      pin_sha256=wrong_pin),
            http_dest("rightpin", url, tls_ca=str(pki["ca"]),
                      pin_sha256=good_pin)],
        [(f"in-{n}", n) for n in names])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    srv.wait_listening()
    for n in names:
        drop_file(tmp_path / f"in-{n}", "x.txt", n.encode())
    msgs = by_source(wait_states(wharf, data, 3))
    srv.stop()
    assert msgs["in-rightpin"]["state"] == "sent"
    assert [r[3] for r in https_server.bodies("/ok")] == [b"rightpin"]
    for n, why in (("untrusted", "untrusted"), ("wrongpin", "pin mismatch")):
        assert msgs[f"in-{n}"]["state"] == "failed", n
        hop = hop_of(wharf, data, msgs[f"in-{n}"]["id"], n)
        assert "TLS" in hop["last_error"] and why in hop["last_error"], hop
        assert hop["attempts"] == 1, hop


def test_r03_http_plain_refused_unless_insecure(tmp_path, wharf,
                                                start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    plain = Recorder()
    try:
        url = f"http://127.0.0.1:{plain.port}/ok"
        (tmp_path / "in").mkdir()
        doc = flow_doc([file_source("in", tmp_path / "in"),
                        http_dest("out", url)], [("in", "out")])
        (tmp_path / "flow.json").write_text(json.dumps(doc))
        r = wharf("flow", "import", "--data", str(data),
                  str(tmp_path / "flow.json"))
        assert r.returncode != 0
        assert "plain http://" in r.stderr + r.stdout
        doc["connectors"][1]["config"]["insecure"] = True
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        srv = start_server(data)
        srv.wait_listening()
        drop_file(tmp_path / "in", "p.txt", b"in the clear")
        msgs = wait_states(wharf, data, 1)
        srv.stop()
        assert msgs[0]["state"] == "sent"
        assert [r[3] for r in plain.bodies("/ok")] == [b"in the clear"]
    finally:
        plain.close()


# ---- webhook ------------------------------------------------------------------------


def post(port, path, body, headers):
    ctx = ssl._create_unverified_context()
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                    timeout=30)
    try:
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


def signed(secret, body, ts=None):
    ts = str(int(time.time()) if ts is None else ts)
    sig = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256)
    return {"X-Timestamp": ts, "X-Signature": sig.hexdigest()}


@pytest.fixture
def webhooks(tmp_path, wharf, start_server):
    data = new_data_dir(wharf, tmp_path / "data", ban_after_failures=1000)
    sec = tmp_path / "secrets"
    sec.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    doc = flow_doc([
        {"name": "hb", "type": "webhook", "config": {
            "auth": {"type": "basic", "user": "acme",
                     "password_file": secret_file(sec, "pw", "hook-pw")}}},
        {"name": "ht", "type": "webhook", "config": {
            "path": "/webhook/orders",
            "auth": {"type": "bearer",
                     "token_file": secret_file(sec, "tok", "hook-tok")}}},
        {"name": "hh", "type": "webhook", "config": {
            "auth": {"type": "hmac",
                     "secret_file": secret_file(sec, "key", "hmac-key")}}},
        file_dest("out", out),
    ], [("hb", "out"), ("ht", "out"), ("hh", "out")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    _, partner = srv.wait_listening()
    yield partner, out, data
    srv.stop()


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(
        f"{user}:{pw}".encode()).decode()}


def test_m6_webhook_basic_and_bearer(webhooks, wharf):
    port, out, data = webhooks
    st, body = post(port, "/webhook/hb", b"no credentials", {})
    assert st == 401, body
    st, body = post(port, "/webhook/hb", b"wrong", basic("acme", "nope"))
    assert st == 401, body
    st, body = post(port, "/webhook/hb", b"wrong", {"Authorization":
                                                    "Bearer hook-pw"})
    assert st == 401, body
    st, body = post(port, "/webhook/hb", b"basic body",
                    {**basic("acme", "hook-pw"),
                     "X-Wharf-Filename": "from-basic.txt"})
    assert st == 200 and "id" in body, body
    basic_id = body["id"]
    st, body = post(port, "/webhook/orders", b"x", {})
    assert st == 401, body
    st, body = post(port, "/webhook/orders", b"x",
                    {"Authorization": "Bearer hook-to"})
    assert st == 401, body
    st, body = post(port, "/webhook/ht", b"x",
                    {"Authorization": "Bearer hook-tok"})
    assert st == 404, body      # ht routes as /webhook/orders
    st, body = post(port, "/webhook/orders", b"bearer body",
                    {"Authorization": "Bearer hook-tok",
                     "X-Wharf-Filename": "from-bearer.txt"})
    assert st == 200, body
    # Wait for the final names: a delivery in progress shows as a hidden
    # .wharf-*.tmp file that is renamed into place once synced.
    wait_until(lambda: listdir(out) == ["from-basic.txt", "from-bearer.txt"],
               timeout=30, desc="both files under their final names")
    assert (out / "from-basic.txt").read_bytes() == b"basic body"
    assert (out / "from-bearer.txt").read_bytes() == b"bearer body"
    assert len(wharf.messages(data)) == 2
    assert wharf.show(data, basic_id)["source"] == "hb"


def test_m6_webhook_hmac_and_replay(webhooks, wharf):
    port, out, data = webhooks
    key = b"hmac-key"
    body = b'{"order": 42}'
    st, r = post(port, "/webhook/hh", body, {})
    assert st == 401, r
    st, r = post(port, "/webhook/hh", body, signed(b"wrong-key", body))
    assert st == 401, r
    h = signed(key, body)
    st, r = post(port, "/webhook/hh", body + b" ", h)   # body changed
    assert st == 401, r
    st, r = post(port, "/webhook/hh", body,
                 signed(key, body, ts=int(time.time()) - 3600))
    assert st == 401, r
    st, r = post(port, "/webhook/hh", body,
                 {**h, "X-Wharf-Filename": "signed.json"})
    assert st == 200, r
    st, r = post(port, "/webhook/hh", body,
                 {**h, "X-Wharf-Filename": "signed.json"})
    assert st == 401 and "replay" in json.dumps(r), r
    wait_until(lambda: listdir(out) == ["signed.json"], timeout=30,
               desc="the signed message delivered")
    assert (out / "signed.json").read_bytes() == body
    assert len(wharf.messages(data)) == 1


def test_m6_webhook_hmac_replay_refused_after_restart(tmp_path, wharf,
                                                    start_server):
    """The signatures a webhook accepted are kept in the database until
    their window ends: a replay is refused after a clean restart and after
    a kill -9 as well, and nothing is stored twice."""
    data = new_data_dir(wharf, tmp_path / "data", ban_after_failures=1000)
    sec = tmp_path / "secrets"
    sec.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    doc = flow_doc([
        {"name": "hh", "type": "webhook", "config": {
            "auth": {"type": "hmac",
                     "secret_file": secret_file(sec, "key", "hmac-key")}}},
        file_dest("out", out),
    ], [("hh", "out")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    key = b"hmac-key"
    sent = []
    srv = start_server(data)
    for restart in ("stop", "kill9"):
        _, port = srv.wait_listening()
        body = f'{{"order": "{restart}"}}'.encode()
        h = {**signed(key, body), "X-Wharf-Filename": f"{restart}.json"}
        st, r = post(port, "/webhook/hh", body, h)
        assert st == 200, r
        sent.append(r["id"])
        wait_until(lambda: f"{restart}.json" in listdir(out), timeout=30,
                   desc="the signed message delivered")
        if restart == "stop":
            srv.stop()
        else:
            srv.kill9()
        srv = start_server(data)
        _, port = srv.wait_listening()
        st, r = post(port, "/webhook/hh", body, h)
        assert st == 401 and "replay" in json.dumps(r), (restart, r)
    # a new signature of the same body is a new request
    body = b'{"order": "kill9"}'
    st, r = post(port, "/webhook/hh", body,
                 {**signed(key, body, ts=int(time.time()) + 1),
                  "X-Wharf-Filename": "again.json"})
    assert st == 200, r
    assert r["id"] not in sent
    assert len(wharf.messages(data)) == 3
    srv.stop()


def test_r04_webhook_client_certificate(tmp_path, wharf, start_server):
    from test_r03_tls import make_ca as mtls_ca, make_client
    d = tmp_path / "mtls"
    d.mkdir()
    ca, ca_key = mtls_ca(d, "partners")
    allowed = make_client(d, ca, ca_key, "partner-a")
    other = make_client(d, ca, ca_key, "partner-b")
    data = new_data_dir(wharf, tmp_path / "data", ban_after_failures=1000,
                        partner_client_ca=ca)
    out = tmp_path / "out"
    out.mkdir()
    doc = flow_doc([
        {"name": "hc", "type": "webhook", "config": {
            "auth": {"type": "client_cert", "subjects": ["/CN=partner-a"]}}},
        file_dest("out", out)], [("hc", "out")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    _, port = srv.wait_listening()

    def post_cert(cert, body):
        ctx = ssl._create_unverified_context()
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                        timeout=30)
        try:
            c.request("POST", "/webhook/hc", body=body,
                      headers={"X-Wharf-Filename": "mtls.bin"})
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            c.close()

    st, r = post_cert(other, b"from b")
    assert st == 401, r
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        post(port, "/webhook/hc", b"no cert", {})
    st, r = post_cert(allowed, b"from a")
    assert st == 200, r
    wait_until(lambda: listdir(out) == ["mtls.bin"], timeout=30,
               desc="the message delivered")
    assert (out / "mtls.bin").read_bytes() == b"from a"
    srv.stop()


def start_tinyproxy(d, port):
    import shutil
    binary = shutil.which("tinyproxy")
    assert binary, "tinyproxy not installed (scripts/deps.sh test)"
    (d / "tp.conf").write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 60\n"
        f"LogFile \"{d / 'tp.log'}\"\nLogLevel Info\nMaxClients 20\n"
        "Allow 127.0.0.1\nBasicAuth pxuser pxpass\n")
    p = subprocess.Popen([binary, "-d", "-c", str(d / "tp.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(up, timeout=20, desc="tinyproxy listening")
    return p


def test_r02_http_through_connect_proxy(tmp_path, wharf, pki, https_server,
                                        start_server):
    from conftest import free_port
    pd = tmp_path / "proxy"
    pd.mkdir()
    pport = free_port()
    proxy = start_tinyproxy(pd, pport)
    try:
        data = new_data_dir(wharf, tmp_path / "data")
        sec = tmp_path / "secrets"
        sec.mkdir()
        url = f"https://127.0.0.1:{https_server.port}/ok"
        names = ["viaproxy", "badproxyauth"]
        for n in names:
            (tmp_path / f"in-{n}").mkdir()
        doc = flow_doc(
            [file_source(f"in-{n}", tmp_path / f"in-{n}") for n in names] + [
                http_dest("viaproxy", url, tls_ca=str(pki["ca"]), proxy={
                    "url": f"http://127.0.0.1:{pport}",
                    "credentials_file": secret_file(sec, "px",
                                                    "pxuser:pxpass")}),
                http_dest("badproxyauth", url, tls_ca=str(pki["ca"]), proxy={
                    "url": f"http://127.0.0.1:{pport}",
                    "credentials_file": secret_file(sec, "px2",
                                                    "pxuser:wrong")})],
            [(f"in-{n}", n) for n in names])
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        srv = start_server(data)
        srv.wait_listening()
        for n in names:
            drop_file(tmp_path / f"in-{n}", "x.txt", n.encode())
        msgs = by_source(wait_states(wharf, data, 2))
        srv.stop()
        assert msgs["in-viaproxy"]["state"] == "sent"
        assert [r[3] for r in https_server.bodies("/ok")] == [b"viaproxy"]
        log = (pd / "tp.log").read_text()
        assert f"CONNECT 127.0.0.1:{https_server.port}" in log, log
        assert msgs["in-badproxyauth"]["state"] == "failed"
        hop = hop_of(wharf, data, msgs["in-badproxyauth"]["id"],
                     "badproxyauth")
        assert "proxy authentication" in hop["last_error"], hop
        assert hop["attempts"] == 1, hop
        wlog = (data / "logs" / "wharf.log").read_text()
        assert "pxpass" not in wlog
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
