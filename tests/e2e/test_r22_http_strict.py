"""
R22 (attack-surface reduction): how strictly the HTTPS listeners frame
HTTP/1.1, with raw requests over TLS (Python's ssl module) against a real
`wharf serve`:

  - a space before ':' in a header name (e.g. "Content-Length :"),
    obsolete line folding, HTTP versions other than 1.0/1.1, control
    characters, a missing or doubled Host: 400, and the connection closed;
  - a Transfer-Encoding other than "chunked": 501;
  - request smuggling: Content-Length together with Transfer-Encoding, or
    two different Content-Lengths: 400, the connection closed, and the
    request hidden behind it never answered;
  - pipelined requests (bodies by length and chunked) answered in order;
  - a chunked body with chunk extensions and trailers is read; trailers are
    never headers (a trailer Authorization does not authenticate);
  - a malformed chunked body: 400, the connection closed.
"""
import json
import re
import socket
import ssl
import time

import pytest

from conftest import listen_port, wait_until

OTP_RE = re.compile(r"^one-time password: (\S+)$", re.M)
TOKEN_RE = re.compile(r"^(wharf_[A-Za-z0-9_-]{43})$", re.M)


def tls_connect(port, timeout=10):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def parse_responses(data):
    """Complete responses (Content-Length framed) in data, in order, as
    (status, headers, body); a 1xx response counts too."""
    out = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        n = int(headers.get("content-length", "0"))
        if len(rest) < n:
            break
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def exchange(port, raw, want=None, timeout=10):
    """Send raw on a new connection; read until the server closes it (or
    `want` responses came and the connection stays open, or timeout).
    raw may be a list: each piece is sent as its own TLS record, all
    before reading. Returns (responses, closed)."""
    s = tls_connect(port, timeout=timeout)
    data = b""
    closed = False
    deadline = time.monotonic() + timeout
    try:
        for piece in raw if isinstance(raw, list) else [raw]:
            s.sendall(piece)
        while time.monotonic() < deadline:
            if want is not None and len(parse_responses(data)) >= want:
                break
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except (ssl.SSLError, OSError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        s.close()
    return parse_responses(data), closed


def refused_400(port, raw, status=400):
    responses, closed = exchange(port, raw)
    assert [r[0] for r in responses] == [status], (raw, responses)
    assert responses[0][1].get("connection") == "close", responses
    assert closed, f"the connection stayed open after {status}: {raw!r}"
    return responses[0]


@pytest.fixture
def served(data_dir, start_server):
    srv = start_server(data_dir)
    srv.wait_listening()
    yield srv, data_dir, listen_port(data_dir, "admin")
    srv.stop()


def admin_otp(wharf, data):
    for argv, out, _ in wharf.outputs:
        if argv[1] == "init" and str(data) in argv:
            m = OTP_RE.search(out)
            assert m, out
            return m.group(1)
    raise AssertionError("no init output")


# ---- strictness: 400 and closed --------------------------------------------------------


def test_r22_space_before_colon_refused(served):
    srv, data, port = served
    # http-parser frames by "Content-Length :" while a lookup of
    # "Content-Length" misses it: refused before either can matter
    for raw in (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length : 2\r\n\r\n{}",
                b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n"):
        status, headers, body = refused_400(port, raw)
        assert json.loads(body)["error"]["code"] == "bad_request", body
    srv.check_alive()


def test_r22_obs_fold_refused(served):
    srv, data, port = served
    for raw in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tc\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\n Host: x\r\n\r\n"):
        refused_400(port, raw)


def test_r22_unknown_http_versions_refused(served):
    srv, data, port = served
    for version in (b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/3.0"):
        refused_400(port, b"GET /healthz " + version +
                    b"\r\nHost: x\r\n\r\n")
    # the two versions that exist are served
    responses, _ = exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert [r[0] for r in responses] == [200], responses
    responses, _ = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
    assert [r[0] for r in responses] == [200], responses


def test_r22_host_and_control_characters_refused(served):
    srv, data, port = served
    for raw in (b"GET /healthz HTTP/1.1\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
                b"GET /he\talthz HTTP/1.1\r\nHost: x\r\n\r\n"):
        refused_400(port, raw)


def test_r22_unknown_transfer_coding_501(served):
    srv, data, port = served
    for te in (b"gzip", b"gzip, chunked", b"chunked, chunked"):
        status, headers, body = refused_400(
            port, b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n", 501)
        assert json.loads(body)["error"]["code"] == "not_implemented"


# ---- smuggling -------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", [
    b"Content-Length: 41\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 41\r\n",
    b"Content-Length: 0\r\nContent-Length: 41\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    b"Transfer-Encoding : chunked\r\nContent-Length: 41\r\n",
])
def test_r22_cl_te_smuggling_refused(served, framing):
    """A front end that frames by one header and Wharf by the other would
    see the hidden GET /metrics as a request of its own: Wharf refuses the
    whole message and never answers what hides behind it."""
    srv, data, port = served
    hidden = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (b"POST /healthz HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n"
           b"0\r\n\r\n" + hidden)
    status, headers, body = refused_400(
        port, raw, 501 if b"identity" in framing else 400)
    assert b"wharf_messages" not in body
    srv.check_alive()


# ---- pipelining and chunked bodies ---------------------------------------------------------


def test_r22_pipelined_requests_answered_in_order(served):
    srv, data, port = served
    login = json.dumps({"user": "admin", "password": "wrong"}).encode()
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\n"
           b"Content-Length: " + str(len(login)).encode() + b"\r\n\r\n" +
           login +
           b"GET /no-such-thing HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           b"1\r\n{\r\n1;x=y\r\n}\r\n0\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses, closed = exchange(port, raw)
    # wrong password 401, unknown path 404, "{}" without a user 400
    assert [r[0] for r in responses] == [200, 401, 404, 400, 200], responses
    assert responses[0][2] == b'{"status":"ok"}'
    assert responses[4][2] == b'{"status":"ok"}'
    assert [r[1]["connection"] for r in responses] == ["keep-alive"] * 4 + [
        "close"]
    assert closed


def test_r22_pipelined_requests_in_separate_tls_records(served):
    """A pipelined burst with each request (and a body cut in two) in its
    own TLS record, all sent before any answer is read. The listener
    reads ahead, several records per read(2), so the later requests wait
    in OpenSSL's buffer, not in the socket: each is still answered, in
    order, none left waiting for bytes the socket will not bring."""
    srv, data, port = served
    login = json.dumps({"user": "admin", "password": "wrong"}).encode()
    pieces = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
              b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: " + str(len(login)).encode() + b"\r\n\r\n",
              login[:5], login[5:],
              b"GET /no-such-thing HTTP/1.1\r\nHost: x\r\n\r\n",
              b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
              b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
    responses, closed = exchange(port, pieces)
    assert [r[0] for r in responses] == [200, 401, 404, 200, 200], responses
    assert [r[1]["connection"] for r in responses] == ["keep-alive"] * 4 + [
        "close"]
    assert closed


def test_r22_chunked_body_with_extensions_and_trailers(served, wharf):
    """The login JSON arrives in chunks with extensions and a trailer
    section; the body is read whole (200, a session cookie)."""
    srv, data, port = served
    body = json.dumps({"user": "admin",
                       "password": admin_otp(wharf, data)}).encode()
    a, b = body[:7], body[7:]
    raw = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
           b"%x;name=value\r\n" % len(a) + a + b"\r\n" +
           b"%x;flag\r\n" % len(b) + b + b"\r\n" +
           b"0;last=1\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n")
    responses, closed = exchange(port, raw)
    assert [r[0] for r in responses] == [200], responses
    assert responses[0][1]["set-cookie"].startswith("wharf_session="), \
        responses[0][1]


def test_r22_trailer_authorization_never_authenticates(served, wharf):
    srv, data, port = served
    out = wharf.ok("token", "create", "--data", str(data), "--role",
                   "admin", "--owner", "admin").stdout
    token = TOKEN_RE.search(out).group(1).encode()
    me = b"GET /api/v1/auth/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    # control: the token as a header authenticates
    responses, _ = exchange(port, me + b"Authorization: Bearer " + token +
                            b"\r\n\r\n")
    assert [r[0] for r in responses] == [200], responses
    # the same token as a trailer of a chunked body does not
    for path in (b"/api/v1/auth/me", b"/api/v1/tokens"):
        method = b"GET" if path.endswith(b"me") else b"POST"
        raw = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"2\r\n{}\r\n0\r\nAuthorization: Bearer " + token +
               b"\r\n\r\n")
        responses, _ = exchange(port, raw)
        assert [r[0] for r in responses] == [401], (path, responses)


@pytest.mark.parametrize("chunks", [
    b"zz\r\n{}\r\n0\r\n\r\n",               # size not hex
    b"2\r\n{}XX0\r\n\r\n",                  # no CRLF after the data
    b"fffffffffffffffffffff\r\n",           # size overflows
    b"2\r\n{}\r\n-1\r\n\r\n",               # negative size
])
def test_r22_malformed_chunked_body_400(served, chunks):
    srv, data, port = served
    raw = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    refused_400(port, raw)
    srv.check_alive()
