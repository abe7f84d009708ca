"""
R22 (attack-surface reduction) and R7/R18 (metrics local, health): the
limits of the HTTPS listeners seen from outside, with Python's ssl module
as the client.

  - a request head past max_header_bytes: 431 (or the connection closed),
    never served; a head under the limit is served;
  - a declared body past max_body_bytes: 413 before the body is sent;
  - a slow client (one byte a second) is cut off after request_timeout_ms
    while another client is served meanwhile;
  - connections beyond max_conns_per_address are refused, and a slot that
    frees up can be used again; when some of them are idle (kept alive),
    the oldest idle one is closed for the new one instead;
  - /metrics and /healthz on the admin listener only; /metrics follows
    wharf.conf metrics_access: token (default: metrics.read, loopback is
    not authentication), loopback (the old way, no credentials), off;
  - each listener binds only its configured address; a busy port makes
    serve exit 1 with one line;
  - the defender: untrusted client certificates (mutual TLS) ban the
    address after ban_after_failures; the ban is refused at connect, answers
    429 on a connection opened before it, is audited, logged, and survives
    a restart.
"""
import select
import socket
import sqlite3
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (free_port, listen_port, new_data_dir, tune_conf,
                      wait_until)
from test_r03_tls import make_ca, make_client

GET_HEALTHZ = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
               b"Connection: close\r\n\r\n")


def tls_connect(port, host="127.0.0.1", cert=None, timeout=10):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(*cert)
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def read_response(s):
    """(status, headers dict, body) of one response with Content-Length,
    or (None, {}, b'') if the connection closed first."""
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None, {}, b""
            buf += chunk
    except (ssl.SSLError, OSError):
        return None, {}, b""
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def request(port, raw, cert=None):
    with tls_connect(port, cert=cert) as s:
        s.sendall(raw)
        return read_response(s)


def refused(port, cert=None):
    """True when the listener does not serve GET /healthz on a new
    connection (closed at connect, handshake failed, or no answer)."""
    try:
        status, _, _ = request(port, GET_HEALTHZ, cert=cert)
    except (ssl.SSLError, OSError):
        return True
    return status is None


def closed(s):
    """True when the peer closed s (non-blocking check)."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        s.setblocking(False)
        return s.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (ssl.SSLError, OSError):
        return True
    finally:
        s.setblocking(True)


@pytest.fixture
def served(wharf, start_server, tmp_path):
    """Factory: a running server with extra wharf.conf settings. Returns
    (server, data, admin_port, partner_port)."""
    started = []

    def make(**conf):
        data = new_data_dir(wharf, tmp_path / f"data{len(started)}", **conf)
        srv = start_server(data)
        admin, partner = srv.wait_listening()
        started.append(srv)
        return srv, data, admin, partner
    yield make
    for srv in started:
        if srv.running():
            srv.stop()


# ---- sizes ----------------------------------------------------------------------


def test_r22_oversized_request_head_refused(served):
    srv, data, admin, partner = served(max_header_bytes=4096)
    small = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " +
             b"a" * 3000 + b"\r\nConnection: close\r\n\r\n")
    assert request(admin, small)[0] == 200
    big = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " +
           b"a" * 6000 + b"\r\nConnection: close\r\n\r\n")
    for port in (admin, partner):
        status, headers, body = request(port, big)
        assert status in (431, None), (status, body)
        if status == 431:
            assert b'"code":"headers_too_large"' in body, body
    many = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" +
            b"".join(b"X-H%d: v\r\n" % i for i in range(80)) +
            b"Connection: close\r\n\r\n")
    assert request(admin, many)[0] in (431, None)
    srv.check_alive()


def test_r22_oversized_body_refused_before_it_is_sent(served):
    srv, data, admin, partner = served(max_body_bytes=65536)
    # (/as2 and /webhook have their own, larger caps: AS2 files are big)
    for port, path in ((admin, b"/healthz"), (admin, b"/api/v1/none"),
                       (partner, b"/no-such-route")):
        with tls_connect(port) as s:
            s.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 2000000\r\n\r\n")
            status, headers, body = read_response(s)
        assert status == 413, (path, status, body)
        assert b'"code":"too_large"' in body, body
        assert headers.get("connection") == "close", headers
    # control: the same request with a body under the cap reaches routing
    ok = (b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2"
          b"\r\nConnection: close\r\n\r\n{}")
    assert request(admin, ok)[0] == 405


# ---- time --------------------------------------------------------------------------


def test_r22_slow_client_cut_off_while_others_served(served):
    srv, data, admin, partner = served(request_timeout_ms=3000)
    head = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " +
            b"s" * 200 + b"\r\n\r\n")
    slow = tls_connect(admin)
    start = time.monotonic()
    fast_status = None
    cut_after = None
    try:
        for i, byte in enumerate(head):
            if closed(slow):
                cut_after = time.monotonic() - start
                break
            try:
                slow.sendall(bytes([byte]))
            except (ssl.SSLError, OSError):
                cut_after = time.monotonic() - start
                break
            if i == 1:
                fast_status = request(admin, GET_HEALTHZ)[0]
                assert not closed(slow), "the slow client was cut too early"
            if time.monotonic() - start > 30:
                break
            time.sleep(1)
    finally:
        slow.close()
    assert fast_status == 200, "another client was not served meanwhile"
    assert cut_after is not None, "the slow client was never cut off"
    assert 2.0 <= cut_after <= 20.0, cut_after
    srv.check_alive()


def test_r22_idle_keep_alive_connection_closed(served):
    srv, data, admin, partner = served(idle_timeout_ms=1000)
    with tls_connect(admin) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, _ = read_response(s)
        assert status == 200 and headers["connection"] == "keep-alive"
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(s)[0] == 200       # the connection is reused
        t0 = time.monotonic()
        wait_until(lambda: closed(s), timeout=15, desc="idle close")
        assert time.monotonic() - t0 >= 0.5


# ---- connections ---------------------------------------------------------------------


def test_r22_connections_per_address_limited(served):
    srv, data, admin, partner = served(max_conns_per_address=3,
                                       request_timeout_ms=30000)
    held = [tls_connect(admin) for _ in range(3)]
    try:
        assert refused(admin), "a 4th connection from the address was served"
        # the limit is per listener: the partner listener still answers
        assert request(partner, GET_HEALTHZ)[0] == 404
        held.pop().close()
        wait_until(lambda: not refused(admin), timeout=15,
                   desc="a freed connection slot to be usable again")
    finally:
        for s in held:
            s.close()
    srv.check_alive()


GET_HEALTHZ_KEEP = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")


def test_r22_an_address_at_its_limit_gets_its_oldest_idle_connection_closed(
        served):
    """A partner that keeps connections alive (one per sending thread)
    reaches max_conns_per_address with idle ones: a new connection from it
    is served and its oldest idle one closed, so it still never holds more
    than the limit; connections mid-request are never closed for it (the
    test above: all three busy, the fourth refused)."""
    srv, data, admin, partner = served(max_conns_per_address=3,
                                       idle_timeout_ms=60000,
                                       request_timeout_ms=30000)
    held = []
    try:
        for _ in range(3):
            s = tls_connect(admin)
            held.append(s)
            s.sendall(GET_HEALTHZ_KEEP)
            assert read_response(s)[0] == 200
            time.sleep(0.05)            # distinct ages: the first is oldest
        assert not refused(admin), "a new connection was refused although " \
            "the address's connections were idle"
        wait_until(lambda: closed(held[0]), timeout=15,
                   desc="the oldest idle connection to be closed")
        for s in held[1:]:
            assert not closed(s)
            s.sendall(GET_HEALTHZ_KEEP)
            assert read_response(s)[0] == 200
    finally:
        for s in held:
            s.close()
    srv.check_alive()


def test_r22_listeners_bind_only_configured_address(served):
    srv, data, admin, partner = served()
    for port in (admin, partner):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5)
    other = free_port()
    srv2, data2, admin2, partner2 = served(
        admin_listen=f"127.0.0.2:{other}")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", other), timeout=5)
    socket.create_connection(("127.0.0.2", other), timeout=5).close()


def test_r22_busy_port_makes_serve_exit_with_one_line(wharf, start_server,
                                                      tmp_path):
    data = new_data_dir(wharf, tmp_path / "data")
    port = listen_port(data, "partner")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        srv = start_server(data)
        rc = srv.proc.wait(timeout=60)
    finally:
        blocker.close()
    srv.check_sanitizers()
    assert rc == 1
    lines = [l for l in srv.stderr().splitlines() if l.startswith("wharf: ")]
    assert len(lines) == 1, srv.stderr()
    assert "partner listener" in lines[0], lines
    assert f"127.0.0.1:{port}" in lines[0], lines
    assert "Address already in use" in lines[0], lines


# ---- what each listener serves -------------------------------------------------------------


def test_r22_metrics_and_health_on_admin_only(served):
    # metrics_access = loopback: a local scraper without credentials
    srv, data, admin, partner = served(metrics_access="loopback")
    status, headers, body = request(admin, GET_HEALTHZ)
    assert status == 200 and body == b'{"status":"ok"}'
    status, headers, body = request(
        admin, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n"
               b"Connection: close\r\n\r\n")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    for state in ("queued", "processing", "retrying", "sent", "failed"):
        assert f'wharf_messages{{state="{state}"}} 0' in text, text
    assert 'wharf_build_info{version="' in text
    assert "process_start_time_seconds " in text
    for path in (b"/metrics", b"/healthz", b"/", b"/api/v1/flows"):
        status, _, body = request(partner, b"GET " + path +
                                  b" HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
        assert status == 404, (path, body)
        assert body == (b'{"error":{"code":"not_found",'
                        b'"message":"no such resource"}}')
    # dot segments cannot climb from a partner path to an admin one
    status, _, _ = request(partner, b"GET /as2/../metrics HTTP/1.1\r\n"
                           b"Host: x\r\nConnection: close\r\n\r\n")
    assert status == 404


GET_METRICS = (b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n"
               b"Connection: close\r\n")


def metrics_as(port, token=None):
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n" if token \
        else b""
    return request(port, GET_METRICS + auth + b"\r\n")


def cli_token(wharf, data, role):
    out = wharf.ok("token", "create", "--data", data, "--role", role,
                   "--owner", "admin", "--name", f"metrics-{role}").stdout
    return out.strip()


def test_r14_metrics_need_a_token_by_default(wharf, served):
    """Loopback is not authentication: by default /metrics wants a bearer
    token (or session) with metrics.read, like every API route."""
    srv, data, admin, _ = served()
    tokens = {r: cli_token(wharf, data, r) for r in ("operator", "viewer")}
    status, headers, body = metrics_as(admin)
    assert status == 401, body
    assert b"wharf_messages" not in body
    status, _, body = metrics_as(admin, tokens["viewer"])
    assert status == 403, body                  # viewer lacks metrics.read
    status, headers, body = metrics_as(admin, tokens["operator"])
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b'wharf_messages{state="queued"} 0' in body
    assert b"wharf_banned_addresses 0" in body
    srv.check_alive()


def test_r14_metrics_off(wharf, served):
    srv, data, admin, _ = served(metrics_access="off")
    token = cli_token(wharf, data, "admin")
    for tok in (None, token):
        status, _, body = metrics_as(admin, tok)
        assert status == 404, body
        assert b"wharf_messages" not in body
    srv.check_alive()


def test_r14_metrics_access_value_checked(wharf, tmp_path):
    data = new_data_dir(wharf, tmp_path / "data", metrics_access="public")
    p = wharf("serve", "--data", data)
    assert p.returncode != 0
    assert "metrics_access must be token, loopback or off" in p.stderr, (
        p.stderr)


# ---- the defender ---------------------------------------------------------------------------


def test_r22_untrusted_client_certs_get_the_address_banned(
        wharf, start_server, tmp_path):
    ca, ca_key = make_ca(tmp_path, "partners")
    rogue, rogue_key = make_ca(tmp_path, "rogue")
    good = make_client(tmp_path, ca, ca_key, "good")
    bad = make_client(tmp_path, rogue, rogue_key, "bad")
    data = new_data_dir(wharf, tmp_path / "data", admin_client_ca=ca,
                        ban_after_failures=3, ban_seconds=120)
    srv = start_server(data)
    admin, partner = srv.wait_listening()
    early = tls_connect(admin, cert=good)       # opened before the ban
    early.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(early)[0] == 200
    for i in range(2):
        assert refused(admin, cert=bad)
        assert not refused(admin, cert=good), f"banned after {i + 1} failures"
    assert refused(admin, cert=bad)             # the 3rd failure: ban
    assert refused(admin, cert=good)
    assert refused(partner)                     # the ban covers both listeners
    early.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = read_response(early)
    early.close()
    assert status == 429, body
    assert 100 <= int(headers["retry-after"]) <= 120, headers
    log = (data / "logs" / "wharf.log").read_text()
    assert "banned 127.0.0.1 for 120 s (ban 1, after 3 failed" in log, log
    srv.stop()
    db = sqlite3.connect(f"file:{data / 'wharf.db'}?mode=ro", uri=True)
    rows = db.execute("SELECT actor, address, action, target FROM audit "
                      "WHERE action = 'ban'").fetchall()
    ban = db.execute("SELECT level, banned_until FROM bans WHERE "
                     "address = '127.0.0.1'").fetchall()
    db.close()
    assert rows == [("system", "127.0.0.1", "ban", "127.0.0.1")], rows
    assert ban and ban[0][0] == 1, ban
    # the ban survives a restart
    srv = start_server(data)
    srv.wait_listening()
    assert refused(admin, cert=good)
    srv.stop()
