"""
R2, proxies: outbound connections through an HTTP CONNECT or a SOCKS5
proxy with credentials, per connector or global (wharf.conf) with a
no-proxy list, for the http and the sftp connector, against real proxies
started here and real peers:

  - SOCKS5: Debian's dante-server (`danted`), run in the foreground on a
    free port with its own config and log file, `socksmethod: username`
    (checked against the system account `wharfproxy`, created once, whose
    password each test sets);
  - HTTP CONNECT: tinyproxy with BasicAuth (test_m6_http.start_tinyproxy);
  - peers: the HTTPS test server of test_m6_http (test CA), the sshd of
    test_m5_sftp.

What must show: the peer got the message and the proxy's own log shows
the connection to the peer; wrong proxy credentials fail at once with an
error that says "proxy" and "proxy authentication", and nothing is sent;
the global proxy serves connectors without their own, no_proxy hosts and
"proxy": "direct" bypass it (no line for them in its log), a connector's
own proxy wins; a proxy that is down is named as the failed stage. R6: at
trace level, no proxy password appears in any log, the server's output,
any command's output (flow export, message show, connector NAME test) or any
file of the data directory (the sealed copy is encrypted). OIDC logins,
which have no proxy key of their own, take wharf.conf's (the provider of
tests/e2e/test_r17_oidc.py behind tinyproxy), and no_proxy sends them
direct.
"""
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess

import pytest

from conftest import (drop_file, file_source, flow_doc, free_port, listdir,
                      new_data_dir, sha256_bytes, sha256_file, tune_conf,
                      wait_until)
from test_m5_sftp import SSHD, sftp_conn, sshd  # noqa: F401 (fixture)
from test_m6_http import (by_source, hop_of, http_dest,  # noqa: F401
                          https_server, pki, secret_file, start_tinyproxy,
                          wait_states)
from test_r17_oidc import idp, login, sso_data  # noqa: F401 (fixture)

DANTED = shutil.which("danted") or "/usr/sbin/danted"
PROXY_USER = "wharfproxy"
TINYPROXY_PASSWORD = "pxpass"           # test_m6_http.start_tinyproxy's

pytestmark = pytest.mark.skipif(
    not os.path.exists(DANTED) or not shutil.which("tinyproxy")
    or os.geteuid() != 0,
    reason="needs dante-server, tinyproxy and root (scripts/deps.sh test)")


def _run(*argv, **kw):
    return subprocess.run(list(argv), check=True, capture_output=True,
                          text=True, **kw)


class Dante:
    """danted on 127.0.0.1:PORT, SOCKS5 with username/password (system
    account PROXY_USER), logging every connection to its own file."""

    def __init__(self, d):
        d.mkdir(exist_ok=True)
        self.port = free_port()
        self.password = "px-" + secrets.token_hex(10)
        try:
            pwd.getpwnam(PROXY_USER)
        except KeyError:
            _run("useradd", "-M", "-s", "/usr/sbin/nologin", PROXY_USER)
        _run("chpasswd", input=f"{PROXY_USER}:{self.password}\n")
        self.log_path = d / "danted.log"
        conf = d / "danted.conf"
        conf.write_text(
            f"logoutput: {self.log_path}\n"
            f"internal: 127.0.0.1 port = {self.port}\n"
            "external: 127.0.0.1\n"
            "socksmethod: username\nclientmethod: none\n"
            "user.privileged: root\nuser.unprivileged: nobody\n"
            "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0\n"
            "  log: connect disconnect error }\n"
            "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0\n"
            "  log: connect disconnect error }\n")
        self.err = open(d / "danted.err", "wb")
        self.proc = subprocess.Popen(
            [DANTED, "-f", str(conf), "-N", "1", "-p", str(d / "danted.pid")],
            stdout=self.err, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.proc.poll() is None and
                   "running" in self.log(), timeout=20,
                   desc="danted running")

    def url(self):
        return f"socks5h://127.0.0.1:{self.port}"

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def connected_to(self, port):
        """dante's log lines of connections to 127.0.0.1:port by our user:
        "tcp/connect [: username%USER@CLIENT PROXY -> OUT DEST"."""
        r = re.compile(rf"tcp/connect \[: username%{PROXY_USER}@\S+ \S+ -> "
                       rf"\S+ 127\.0\.0\.1\.{port}$")
        return [line for line in self.log().splitlines() if r.search(line)]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)        # it and its own children
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.err.close()


@pytest.fixture
def dante(tmp_path):
    d = Dante(tmp_path / "dante")
    yield d
    d.stop()


@pytest.fixture
def tinyproxy(tmp_path):
    d = tmp_path / "tinyproxy"
    d.mkdir()
    port = free_port()
    p = start_tinyproxy(d, port)
    p.port, p.log_path = port, d / "tp.log"
    p.url = f"http://127.0.0.1:{port}"
    yield p
    p.terminate()
    p.wait(timeout=10)


def connects(tp, host, port):
    """tinyproxy's CONNECT requests to host:port."""
    return [line for line in tp.log_path.read_text(errors="replace")
            .splitlines() if f"CONNECT {host}:{port} " in line]


def assert_no_secret(words, data, wharf, servers=()):
    """R6: no word in any file of the data dir (logs, database: secrets
    are sealed), the servers' output or any command's output."""
    for root, _, names in os.walk(data):
        for n in names:
            p = os.path.join(root, n)
            if n == "keystore":
                continue
            blob = open(p, "rb").read()
            for w in words:
                assert w.encode() not in blob, f"{w!r} found in {p}"
    texts = [(f"serve {s.pid}", s.stdout() + s.stderr()) for s in servers]
    texts += [(" ".join(a[1:4]), o + e) for a, o, e in wharf.outputs]
    for what, text in texts:
        for w in words:
            assert w not in text, f"{w!r} found in the output of {what}"


def trace_data(wharf, tmp_path, **conf):
    data = new_data_dir(wharf, tmp_path / "data", log_level="trace", **conf)
    sec = tmp_path / "secrets"
    sec.mkdir(exist_ok=True)
    return data, sec


def dest_flow(tmp_path, dests):
    """A file source in-NAME for each http destination NAME."""
    conns, links = [], []
    for d in dests:
        inbox = tmp_path / f"in-{d['name']}"
        inbox.mkdir()
        conns.append(file_source(f"in-{d['name']}", inbox))
        links.append((f"in-{d['name']}", d["name"]))
    return flow_doc(conns + dests, links)


def drop_all(tmp_path, names):
    for n in names:
        drop_file(tmp_path / f"in-{n}", f"{n}.txt", n.encode())


def check_refused(wharf, data, msgs, name, proxy_url):
    m = msgs[f"in-{name}"]
    assert m["state"] == "failed", m
    hop = hop_of(wharf, data, m["id"], name)
    assert hop["last_error"].startswith(f"proxy {proxy_url}"), hop
    assert "proxy authentication" in hop["last_error"], hop
    assert hop["attempts"] == 1, hop


def test_r02_http_through_socks5_with_credentials(
        tmp_path, wharf, pki, https_server, start_server, dante):
    data, sec = trace_data(wharf, tmp_path)
    url = f"https://127.0.0.1:{https_server.port}/ok"
    good = secret_file(sec, "good", f"{PROXY_USER}:{dante.password}")
    bad = secret_file(sec, "bad", f"{PROXY_USER}:not-{dante.password}")
    dead = free_port()
    doc = dest_flow(tmp_path, [
        http_dest("viasocks", url, tls_ca=str(pki["ca"]), proxy={
            "url": dante.url(), "credentials_file": good}),
        http_dest("badsocks", url, tls_ca=str(pki["ca"]), proxy={
            "url": dante.url(), "credentials_file": bad}),
        http_dest("deadproxy", url, tls_ca=str(pki["ca"]),
                  proxy=f"socks5h://127.0.0.1:{dead}")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    srv.wait_listening()
    drop_all(tmp_path, ["viasocks", "badsocks"])
    msgs = by_source(wait_states(wharf, data, 2))
    assert msgs["in-viasocks"]["state"] == "sent", msgs
    assert [r[3] for r in https_server.bodies("/ok")] == [b"viasocks"]
    assert len(dante.connected_to(https_server.port)) == 1, dante.log()
    check_refused(wharf, data, msgs, "badsocks", dante.url())
    # the stage that failed, when asked
    t = wharf("connector", "badsocks", "test", "--data", data)
    assert t.returncode == 1 and "proxy authentication" in t.stderr, t
    t = wharf("connector", "deadproxy", "test", "--data", data)
    assert t.returncode == 1, t
    assert f"proxy socks5h://127.0.0.1:{dead}: TCP connect failed" in \
        t.stderr, t.stderr
    srv.stop()
    wharf.export_flow(data)
    for m in msgs.values():
        wharf.show(data, m["id"])
    assert_no_secret([dante.password], data, wharf, [srv])


def test_r02_http_through_connect_proxy_with_credentials(
        tmp_path, wharf, pki, https_server, start_server, tinyproxy):
    data, sec = trace_data(wharf, tmp_path)
    url = f"https://127.0.0.1:{https_server.port}/ok"
    doc = dest_flow(tmp_path, [
        http_dest("viaconnect", url, tls_ca=str(pki["ca"]), proxy={
            "url": tinyproxy.url, "credentials_file": secret_file(
                sec, "good", f"pxuser:{TINYPROXY_PASSWORD}")}),
        http_dest("badconnect", url, tls_ca=str(pki["ca"]), proxy={
            "url": tinyproxy.url, "credentials_file": secret_file(
                sec, "bad", "pxuser:wrong-one")})])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    srv.wait_listening()
    drop_all(tmp_path, ["viaconnect", "badconnect"])
    msgs = by_source(wait_states(wharf, data, 2))
    assert msgs["in-viaconnect"]["state"] == "sent", msgs
    assert [r[3] for r in https_server.bodies("/ok")] == [b"viaconnect"]
    assert connects(tinyproxy, "127.0.0.1", https_server.port)
    check_refused(wharf, data, msgs, "badconnect", tinyproxy.url)
    srv.stop()
    wharf.export_flow(data)
    for m in msgs.values():
        wharf.show(data, m["id"])
    assert_no_secret([TINYPROXY_PASSWORD, "wrong-one"], data, wharf, [srv])


def test_r02_global_proxy_no_proxy_direct_and_own(
        tmp_path, wharf, pki, https_server, start_server, tinyproxy, dante):
    creds = tmp_path / "global-proxy-credentials"
    creds.write_text(f"pxuser:{TINYPROXY_PASSWORD}\n")
    creds.chmod(0o600)
    data, sec = trace_data(wharf, tmp_path, proxy=tinyproxy.url,
                           proxy_credentials_file=creds,
                           no_proxy="localhost, example.org")
    port = https_server.port
    ca = str(pki["ca"])
    doc = dest_flow(tmp_path, [
        # no proxy of its own: wharf.conf's
        http_dest("viaglobal", f"https://127.0.0.1:{port}/ok", tls_ca=ca),
        # in no_proxy: direct
        http_dest("bypass", f"https://localhost:{port}/ok", tls_ca=ca),
        # "direct": not even the global proxy
        http_dest("direct", f"https://127.0.0.1:{port}/ok", tls_ca=ca,
                  proxy="direct"),
        # its own proxy wins over the global one
        http_dest("own", f"https://127.0.0.1:{port}/ok", tls_ca=ca, proxy={
            "url": dante.url(), "credentials_file": secret_file(
                sec, "socks", f"{PROXY_USER}:{dante.password}")})])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    srv.wait_listening()
    names = ["viaglobal", "bypass", "direct", "own"]
    # one after the other: each one's trace in the proxies' logs is its own
    for n in names:
        drop_all(tmp_path, [n])
        wait_until(lambda: srv.check_alive() and
                   [b for b in https_server.bodies("/ok")
                    if b[3] == n.encode()], timeout=60, desc=f"{n} sent")
        if n == "viaglobal":
            assert len(connects(tinyproxy, "127.0.0.1", port)) == 1
    msgs = by_source(wait_states(wharf, data, 4))
    assert all(m["state"] == "sent" for m in msgs.values()), msgs
    assert sorted(r[3] for r in https_server.bodies("/ok")) == \
        sorted(n.encode() for n in names)
    # tinyproxy saw the global one only; dante the own one only
    assert len(connects(tinyproxy, "127.0.0.1", port)) == 1, \
        tinyproxy.log_path.read_text()
    assert not connects(tinyproxy, "localhost", port)
    assert len(dante.connected_to(port)) == 1, dante.log()
    srv.stop()
    wharf.export_flow(data)
    assert_no_secret([TINYPROXY_PASSWORD, dante.password], data, wharf,
                     [srv])


def test_r02_wharf_conf_proxy_keys_checked(tmp_path, wharf):
    creds = tmp_path / "creds"
    creds.write_text("pxuser:conf-secret-pw\n")
    creds.chmod(0o600)
    bad = [
        ({"proxy": "ftp://127.0.0.1:21"}, "proxy must start with"),
        ({"proxy": "http://pxuser:conf-secret-pw@127.0.0.1:3128"},
         "must not hold credentials"),
        ({"proxy": "http://127.0.0.1"}, "SCHEME://HOST:PORT"),
        ({"proxy": "http://127.0.0.1:3128",
          "proxy_credentials_file": "creds"}, "absolute path"),
        ({"no_proxy": "localhost"}, "no_proxy is set but proxy is not"),
        ({"proxy_credentials_file": str(creds)},
         "proxy_credentials_file is set but proxy is not"),
        ({"proxy": "socks5h://127.0.0.1:1080", "no_proxy": "a,,b"},
         "empty entry"),
    ]
    for i, (conf, why) in enumerate(bad):
        data = new_data_dir(wharf, tmp_path / f"data{i}", **conf)
        p = wharf("flow", "export", "--data", data)
        assert p.returncode == 1, (conf, p)
        assert why in p.stderr and "wharf.conf" in p.stderr, (conf, p.stderr)
        assert "conf-secret-pw" not in p.stderr
    data = new_data_dir(wharf, tmp_path / "good", proxy="socks5h://[::1]:1080",
                        proxy_credentials_file=creds,
                        no_proxy="localhost,.example.org,10.0.0.0/8")
    wharf.ok("flow", "export", "--data", data)


def test_r02_sftp_through_socks5_and_connect_proxies(
        tmp_path, wharf, start_server, sshd, dante, tinyproxy):
    data, sec = trace_data(wharf, tmp_path)
    good = secret_file(sec, "good", f"{PROXY_USER}:{dante.password}")
    bad = secret_file(sec, "bad", f"{PROXY_USER}:not-{dante.password}")
    http_creds = secret_file(sec, "http", f"pxuser:{TINYPROXY_PASSWORD}")
    dirs = {n: sshd.remote_dir(f"r02-{n}") for n in
            ("viasocks", "badsocks", "viaconnect")}
    retry = {"max_attempts": 20, "initial_ms": 200, "max_ms": 1000}
    dests = [
        sftp_conn("viasocks", sshd, send_dir=str(dirs["viasocks"]),
                  retry=retry, proxy={"url": dante.url(),
                                      "credentials_file": good}),
        sftp_conn("badsocks", sshd, "password",
                  send_dir=str(dirs["badsocks"]), retry=retry,
                  proxy={"url": dante.url(), "credentials_file": bad}),
        sftp_conn("viaconnect", sshd, send_dir=str(dirs["viaconnect"]),
                  retry=retry, proxy={"url": tinyproxy.url,
                                      "credentials_file": http_creds}),
    ]
    wharf.import_flow(data, dest_flow(tmp_path, dests), tmp_path / "f.json")
    srv = start_server(data)
    payload = os.urandom(200_000)
    for n in dirs:
        drop_file(tmp_path / f"in-{n}", f"{n}.edi", payload)
    msgs = by_source(wait_states(wharf, data, 3))
    for n in ("viasocks", "viaconnect"):
        assert msgs[f"in-{n}"]["state"] == "sent", msgs
        assert listdir(dirs[n]) == [f"{n}.edi"]
        assert sha256_file(dirs[n] / f"{n}.edi") == sha256_bytes(payload)
    assert dante.connected_to(sshd.port), dante.log()
    assert connects(tinyproxy, "127.0.0.1", sshd.port), \
        tinyproxy.log_path.read_text()
    m = msgs["in-badsocks"]
    assert m["state"] == "failed", m
    hop = hop_of(wharf, data, m["id"], "badsocks")
    assert "proxy " + dante.url() in hop["last_error"], hop
    assert "proxy authentication" in hop["last_error"], hop
    assert hop["attempts"] == 1, hop
    assert listdir(dirs["badsocks"]) == []
    t = wharf("connector", "badsocks", "test", "--data", data)
    assert t.returncode == 1 and "proxy authentication" in t.stderr, t
    # the host key is fetched through the connector's proxy too (M5)
    before = len(dante.connected_to(sshd.port))
    k = wharf.ok("connector", "viasocks", "hostkey.capture", "--data", data)
    assert sshd.fingerprint in k.stdout and "confirmed" in k.stdout, k
    assert len(dante.connected_to(sshd.port)) == before + 1, dante.log()
    srv.stop()
    wharf.export_flow(data)
    for mm in msgs.values():
        wharf.show(data, mm["id"])
    assert_no_secret([dante.password, TINYPROXY_PASSWORD, sshd.password],
                     data, wharf, [srv])


def test_r02_oidc_through_the_global_proxy(tmp_path, wharf, idp,
                                           start_server, tinyproxy):
    """OIDC has no proxy key of its own: Wharf's requests to the provider
    (discovery, the code exchange, its keys) take wharf.conf's proxy with
    its credentials, and go direct to a no_proxy host."""
    data, admin = sso_data(wharf, tmp_path, idp)
    sec = tmp_path / "px-secrets"
    sec.mkdir()
    tune_conf(data, proxy=tinyproxy.url, proxy_credentials_file=secret_file(
        sec, "px", f"pxuser:{TINYPROXY_PASSWORD}"))
    server = start_server(data)
    server.wait_listening()
    sso = {"data": data, "admin": admin, "idp": idp, "server": server}
    st, _, body = login(sso, test_groups="wharf-ops")
    assert st == 200 and json.loads(body)["role"] == "operator", body
    seen = connects(tinyproxy, "127.0.0.1", idp["port"])
    assert seen, tinyproxy.log_path.read_text()
    server.stop()
    # the provider among no_proxy: straight there
    tune_conf(data, no_proxy="127.0.0.1")
    server = start_server(data)
    server.wait_listening()
    sso["server"] = server
    st, _, body = login(sso, test_groups="wharf-audit")
    assert st == 200 and json.loads(body)["role"] == "auditor", body
    assert connects(tinyproxy, "127.0.0.1", idp["port"]) == seen
    server.stop()
    assert_no_secret([TINYPROXY_PASSWORD], data, wharf)
