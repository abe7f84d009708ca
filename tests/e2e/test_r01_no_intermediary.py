"""
R1, no intermediary: Wharf contacts only the endpoints the user configured.

`wharf serve` runs under strace (r01_peers.TracedServer), recording every
connect(), sendto() and sendmsg() of every thread and child. One data dir
carries a flow with every connector type there is:

    file "in-http"   -> http "direct"     (the test's HTTPS server)
    file "in-proxy"  -> http "viaproxy"   (same server, through tinyproxy)
    file "in-sftp"   -> sftp "sftp-out"   (Debian's sshd, upload)
    sftp "sftp-in"   -> file "out"        (same sshd, download)
    webhook "hook"   -> file "out"        (POSTed to the partner listener)
    file "in-as2"    -> as2 "as2-b"       (a second, untraced Wharf: B)
    as2 "as2-b"      -> file "out"        (B sends one to the traced one)

plus an OIDC login against the test IdP (tests/unit/oidc_idp.py). Every
endpoint is given by IP address, so there is nothing to resolve. After all
messages are delivered and the server is stopped, the trace must show:
every AF_INET address is 127.0.0.1 on a port the test configured, no
AF_INET6, nothing to port 53 and no connection to a resolver daemon's
socket (nscd, systemd-resolved): no DNS at all; and every configured
endpoint was in fact contacted (so the trace is known to see them).

A second test runs a server with no outbound connector for ~5 s: it must
make no AF_INET/AF_INET6 connection at all (accepts are not connects).

A third one (R2 with R1) configures proxies: wharf.conf's global proxy
(tinyproxy, HTTP CONNECT with credentials) for an http destination and an
sftp source without their own, and dante (SOCKS5) as an sftp
destination's own proxy. Every connect() of the server must go to one of
the two proxies, none to the HTTPS server or sshd themselves.
"""
import base64
import os
import shutil
import time

import pytest

from conftest import (conf_value, drop_file, file_dest, file_source,
                      flow_doc, free_port, listdir, listen_port, new_data_dir,
                      wait_until)
from r01_peers import (STRACE, TracedServer, describe, parse_trace,
                       unexpected)
# the peers of the M5, M6 and R17 tests, reused as they are
from test_m5_sftp import SSHD, sftp_conn, sshd  # noqa: F401 (fixture)
from test_m6_http import (http_dest, https_server, pki,  # noqa: F401
                          post, secret_file, start_tinyproxy)
from test_r17_oidc import CLIENT_ID, CLIENT_SECRET, idp, login  # noqa: F401
from test_r02_proxy import DANTED, Dante

pytestmark = pytest.mark.skipif(
    not os.path.exists(STRACE) or not os.path.exists(SSHD)
    or not shutil.which("tinyproxy") or not os.path.exists(DANTED)
    or os.geteuid() != 0,
    reason="needs strace, openssh-server, tinyproxy, dante-server and root "
           "(scripts/deps.sh test)")


@pytest.fixture
def traced_server(wharf_bin, tmp_path):
    """Factory: traced_server(data) -> TracedServer; leftovers killed."""
    started = []
    outdir = tmp_path / "server-output"
    outdir.mkdir(exist_ok=True)

    def start(data, *args):
        s = TracedServer(wharf_bin, data, outdir, len(started),
                         tmp_path / f"serve-{len(started)}.strace", args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.force_cleanup()


def check_r01(contacts, allowed, must_contact):
    """The R1 verdict on a parsed trace; the message lists what is wrong."""
    bad = unexpected(contacts, allowed)
    inet = [c for c in contacts if c.family in ("AF_INET", "AF_INET6")]
    seen = {(c.host, c.port) for c in inet if c.call == "connect"}
    missing = [ep for ep in must_contact if ep not in seen]
    msg = []
    if bad:
        msg.append(f"R1: the server contacted {len(bad)} address(es) the "
                   f"test did not configure (allowed: {sorted(allowed)}):\n"
                   + describe(bad))
    if missing:
        msg.append(f"configured endpoint(s) never contacted: {missing} "
                   f"(trace broken?); AF_INET connects seen: {sorted(seen)}")
    return msg


def as2_partner_b(wharf, tmp_path, start_server, a_data, a_cert, a_key):
    """Partner B for the traced server A: a Wharf of its own (untraced)
    that takes A's AS2 messages and sends one back. Returns (b, partner
    entry for A's document, profile for A's document)."""
    from as2_pair import Side, partner_of
    b = Side(wharf, tmp_path / "as2", "b")
    a_url = f"https://127.0.0.1:{listen_port(a_data, 'partner')}/as2"
    a_tls = str(a_data / conf_value(a_data, "tls_cert"))
    doc = {"profile": {"as2_id": b.as2_id, "keys": [
               {"cert": str(b.cert), "key": str(b.key)}]},
           "partners": [{"name": "a", "as2_id": "wharf-a", "url": a_url,
                         "certificates": [str(a_cert)], "tls_ca": a_tls,
                         "sign": "sha256", "encrypt": "aes256-cbc",
                         "compress": True, "mdn": "sync",
                         "mdn_signed": True}],
           "connectors": [file_source("outbox", b.outbox),
                          {"name": "as2-a", "type": "as2",
                           "config": {"partner": "a", "retry": {
                               "initial_ms": 200, "max_ms": 1000,
                               "max_attempts": 30}}},
                          file_dest("inbox", b.inbox)],
           "links": [["outbox", "as2-a"], ["as2-a", "inbox"]]}
    wharf.import_flow(b.data, doc, b.dir / "flow.json")
    b.server = start_server(b.data)
    return b, partner_of(b), None


def test_r01_only_configured_endpoints_are_contacted(
        tmp_path, wharf, traced_server, pki, https_server, sshd, idp,
        start_server):
    # the HTTP proxy
    pd = tmp_path / "proxy"
    pd.mkdir()
    pport = free_port()
    proxy = start_tinyproxy(pd, pport)
    try:
        data = new_data_dir(wharf, tmp_path / "data")
        admin = listen_port(data, "admin")
        partner = listen_port(data, "partner")
        sec = tmp_path / "secrets"
        sec.mkdir()
        # OIDC single sign-on against the test IdP
        wharf.ok("oidc", "configure", "--data", str(data),
                 "--issuer", f"https://127.0.0.1:{idp['port']}",
                 "--client-id", CLIENT_ID,
                 "--client-secret-file",
                 secret_file(sec, "oidc", CLIENT_SECRET),
                 "--redirect-uri",
                 f"https://127.0.0.1:{admin}/api/v1/auth/oidc/callback",
                 "--role-claim", "groups",
                 "--role-map", '{"wharf-ops": "operator"}',
                 "--ca-file", str(idp["ca"]))
        url = f"https://127.0.0.1:{https_server.port}/ok"
        send = sshd.remote_dir("r01-upload")
        recv = sshd.remote_dir("r01-download")
        out = tmp_path / "out"
        out.mkdir()
        ins = {n: tmp_path / f"in-{n}"
               for n in ("http", "proxy", "sftp", "as2")}
        for d in ins.values():
            d.mkdir()
        retry = {"max_attempts": 20, "initial_ms": 200, "max_ms": 1000}
        from as2_pair import as2_keys
        a_cert, a_key = as2_keys(sec, "wharf-a")
        b, b_partner, _ = as2_partner_b(wharf, tmp_path, start_server, data,
                                        a_cert, a_key)
        doc = flow_doc([
            file_source("in-http", ins["http"]),
            file_source("in-proxy", ins["proxy"]),
            file_source("in-sftp", ins["sftp"]),
            http_dest("direct", url, tls_ca=str(pki["ca"])),
            http_dest("viaproxy", url, tls_ca=str(pki["ca"]), proxy={
                "url": f"http://127.0.0.1:{pport}",
                "credentials_file": secret_file(sec, "px",
                                                "pxuser:pxpass")}),
            sftp_conn("sftp-out", sshd, send_dir=str(send), retry=retry),
            sftp_conn("sftp-in", sshd, "password", receive_dir=str(recv),
                      pattern="*.csv", after="delete", poll_ms=100),
            {"name": "hook", "type": "webhook", "config": {
                "auth": {"type": "basic", "user": "acme",
                         "password_file": secret_file(sec, "hook",
                                                      "hook-pw")}}},
            file_source("in-as2", ins["as2"]),
            {"name": "as2-b", "type": "as2", "config": {
                "partner": "b", "retry": retry}},
            file_dest("out", out),
        ], [("in-http", "direct"), ("in-proxy", "viaproxy"),
            ("in-sftp", "sftp-out"), ("sftp-in", "out"), ("hook", "out"),
            ("in-as2", "as2-b"), ("as2-b", "out")])
        doc["profile"] = {"as2_id": "wharf-a", "keys": [
            {"cert": str(a_cert), "key": str(a_key)}]}
        doc["partners"] = [b_partner]
        wharf.import_flow(data, doc, tmp_path / "flow.json")

        srv = traced_server(data)
        srv.wait_listening()
        drop_file(ins["http"], "direct.txt", b"to the partner, directly")
        drop_file(ins["proxy"], "proxied.txt", b"to the partner, via proxy")
        drop_file(ins["sftp"], "up.edi", os.urandom(20000))
        drop_file(ins["as2"], "to-b.edi", b"to partner B over AS2")
        b.server.wait_listening()
        drop_file(b.outbox, "from-b.edi", b"from partner B over AS2")
        drop_file(recv, "down.csv", b"a;b;c\n")
        os.chown(recv / "down.csv", sshd.uid, sshd.gid)
        auth = "Basic " + base64.b64encode(b"acme:hook-pw").decode()
        st, body = post(partner, "/webhook/hook", b"pushed by the partner",
                        {"Authorization": auth,
                         "X-Wharf-Filename": "hooked.txt"})
        assert st == 200, body
        st, h, body = login({"admin": admin, "idp": idp},
                            test_groups="wharf-ops")
        assert st == 200, body

        def all_sent():
            srv.check_alive()
            msgs = wharf.messages(data)
            failed = [m for m in msgs if m["state"] == "failed"]
            assert not failed, [wharf.show(data, m["id"]) for m in failed]
            return len(msgs) == 7 and all(m["state"] == "sent"
                                          for m in msgs)
        wait_until(all_sent, timeout=90, desc="7 messages sent")
        wait_until(lambda: listdir(recv) == [], timeout=30,
                   desc="the downloaded remote file deleted")
        # B moves the message on to its inbox after its MDN went out, so
        # A's "sent" does not mean it is there yet: wait before stopping B
        wait_until(lambda: listdir(b.inbox) == ["to-b.edi"], timeout=30,
                   desc="B delivered to-b.edi to its inbox")
        assert not srv.untraced_threads(), "strace does not see every thread"
        srv.stop()
        b.server.stop()
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)

    # the deliveries happened where the test thinks they did
    assert listdir(out) == ["down.csv", "from-b.edi", "hooked.txt"]
    assert listdir(b.inbox) == ["to-b.edi"]
    assert listdir(send) == ["up.edi"]
    assert sorted(r[3] for r in https_server.bodies("/ok")) == [
        b"to the partner, directly", b"to the partner, via proxy"]
    assert f"CONNECT 127.0.0.1:{https_server.port}" in \
        (pd / "tp.log").read_text()

    contacts = parse_trace(srv.trace_path)
    endpoints = {("127.0.0.1", https_server.port), ("127.0.0.1", sshd.port),
                 ("127.0.0.1", pport), ("127.0.0.1", idp["port"]),
                 ("127.0.0.1", listen_port(b.data, "partner"))}
    problems = check_r01(contacts, endpoints, sorted(endpoints))
    assert not problems, "\n".join(problems) + \
        f"\n(trace: {srv.trace_path})"

    # the checker itself can fail: drop one configured endpoint from the
    # allow-list and the very same trace must be refused
    one = ("127.0.0.1", sshd.port)
    assert check_r01(contacts, endpoints - {one}, []), \
        "R1 checker accepted a contact outside the allow-list"


def test_r01_idle_server_contacts_nobody(tmp_path, wharf, traced_server):
    data = new_data_dir(wharf, tmp_path / "data")
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    wharf.import_flow(data, flow_doc([file_source("in", inbox),
                                      file_dest("out", out)],
                                     [("in", "out")]), tmp_path / "flow.json")
    srv = traced_server(data)
    srv.wait_listening()
    drop_file(inbox, "local.txt", b"stays on this machine")
    wait_until(lambda: srv.check_alive() and listdir(out) == ["local.txt"],
               timeout=30, desc="the local file delivered")
    time.sleep(5)                       # idle: nobody to talk to
    srv.check_alive()
    assert not srv.untraced_threads(), "strace does not see every thread"
    srv.stop()
    contacts = parse_trace(srv.trace_path)
    inet = [c for c in contacts if c.family in ("AF_INET", "AF_INET6")]
    assert not inet, ("R1: a server with no outbound connector contacted:\n"
                      + describe(inet))
    problems = check_r01(contacts, set(), [])
    assert not problems, "\n".join(problems)


def test_r01_with_proxies_only_the_proxies_are_contacted(
        tmp_path, wharf, traced_server, pki, https_server, sshd):
    pd = tmp_path / "proxy"
    pd.mkdir()
    pport = free_port()
    proxy = start_tinyproxy(pd, pport)
    dante = Dante(tmp_path / "dante")
    try:
        sec = tmp_path / "secrets"
        sec.mkdir()
        data = new_data_dir(
            wharf, tmp_path / "data", proxy=f"http://127.0.0.1:{pport}",
            proxy_credentials_file=secret_file(sec, "global",
                                               "pxuser:pxpass"))
        url = f"https://127.0.0.1:{https_server.port}/ok"
        send = sshd.remote_dir("r01-proxy-upload")
        recv = sshd.remote_dir("r01-proxy-download")
        out = tmp_path / "out"
        ins = {n: tmp_path / f"in-{n}" for n in ("http", "sftp")}
        for d in (out, *ins.values()):
            d.mkdir()
        retry = {"max_attempts": 20, "initial_ms": 200, "max_ms": 1000}
        doc = flow_doc([
            file_source("in-http", ins["http"]),
            file_source("in-sftp", ins["sftp"]),
            http_dest("viaglobal", url, tls_ca=str(pki["ca"])),
            sftp_conn("sftp-out", sshd, send_dir=str(send), retry=retry,
                      proxy={"url": dante.url(),
                             "credentials_file": secret_file(
                                 sec, "socks",
                                 f"wharfproxy:{dante.password}")}),
            sftp_conn("sftp-in", sshd, "password", receive_dir=str(recv),
                      pattern="*.csv", after="delete", poll_ms=100),
            file_dest("out", out),
        ], [("in-http", "viaglobal"), ("in-sftp", "sftp-out"),
            ("sftp-in", "out")])
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        srv = traced_server(data)
        srv.wait_listening()
        drop_file(ins["http"], "proxied.txt", b"via the global proxy")
        drop_file(ins["sftp"], "up.edi", os.urandom(20000))
        drop_file(recv, "down.csv", b"a;b;c\n")
        os.chown(recv / "down.csv", sshd.uid, sshd.gid)

        def all_sent():
            srv.check_alive()
            msgs = wharf.messages(data)
            failed = [m for m in msgs if m["state"] == "failed"]
            assert not failed, [wharf.show(data, m["id"]) for m in failed]
            return len(msgs) == 3 and all(m["state"] == "sent"
                                          for m in msgs)
        wait_until(all_sent, timeout=90, desc="3 messages sent")
        wait_until(lambda: listdir(recv) == [], timeout=30,
                   desc="the downloaded remote file deleted")
        assert not srv.untraced_threads(), "strace does not see every thread"
        srv.stop()
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        dante.stop()

    assert listdir(out) == ["down.csv"] and listdir(send) == ["up.edi"]
    assert [r[3] for r in https_server.bodies("/ok")] == \
        [b"via the global proxy"]
    tp_log = (pd / "tp.log").read_text()
    assert f"CONNECT 127.0.0.1:{https_server.port}" in tp_log
    assert f"CONNECT 127.0.0.1:{sshd.port}" in tp_log       # sftp-in
    assert dante.connected_to(sshd.port), dante.log()       # sftp-out

    contacts = parse_trace(srv.trace_path)
    proxies = {("127.0.0.1", pport), ("127.0.0.1", dante.port)}
    problems = check_r01(contacts, proxies, sorted(proxies))
    assert not problems, "\n".join(problems) + \
        f"\n(trace: {srv.trace_path})"
