"""Raw AS2 over HTTPS for the M4 policy tests, where Wharf itself would
never produce the bad input: a small HTTPS recorder that sits between
Wharf A and its partner (records each request, forwards it upstream and
returns the answer, optionally changing either on the way), a raw POST,
a POST cut off in the middle of its body, and reading the disposition
out of an MDN."""
import http.client
import re
import socket
import ssl
import subprocess
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from as2_cli import read_body
from conftest import serve_http

HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "host",
              "expect", "keep-alive"}


def tls_cert(d, name="recorder"):
    """A self-signed certificate for 127.0.0.1 (cert, key)."""
    d = Path(d)
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-days", "30", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return cert, key


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False          # the chain is still verified
    return ctx


class Request:
    def __init__(self, path, headers, body):
        self.path = path
        self.headers = list(headers)    # [(name, value)], in order
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def with_header(self, name, value):
        """A copy with header name set to value (None: removed)."""
        hs = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            hs.append((name, value))
        return Request(self.path, hs, self.body)

    def with_body(self, body):
        return Request(self.path, self.headers, body)

    def fresh_id(self):
        """A copy with a new Message-ID (not a replay)."""
        return self.with_header("Message-ID",
                                f"<{uuid.uuid4().hex}@as2-raw-test>")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = list(headers)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def post(url, req, cafile, timeout=60):
    """POST req (its headers as given, Content-Length of its body) to url;
    returns the Response."""
    u = urlsplit(url)
    c = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                    context=client_context(cafile))
    try:
        c.putrequest("POST", u.path or "/", skip_accept_encoding=True)
        for k, v in req.headers:
            if k.lower() not in HOP_BY_HOP:
                c.putheader(k, v)
        c.putheader("Content-Length", str(len(req.body)))
        c.endheaders(req.body)
        r = c.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        c.close()


def post_cut(url, req, cafile, send_bytes):
    """Announce the whole body (Content-Length), send only its first
    send_bytes, then close the connection."""
    u = urlsplit(url)
    raw = socket.create_connection((u.hostname, u.port), timeout=30)
    s = client_context(cafile).wrap_socket(raw)
    try:
        head = [f"POST {u.path} HTTP/1.1", f"Host: {u.hostname}:{u.port}"]
        head += [f"{k}: {v}" for k, v in req.headers
                 if k.lower() not in HOP_BY_HOP]
        head += [f"Content-Length: {len(req.body)}", "", ""]
        s.sendall("\r\n".join(head).encode() + req.body[:send_bytes])
    finally:
        s.close()


class Recorder:
    """HTTPS on 127.0.0.1 with its own certificate. Every POST is recorded
    (self.requests); the answer is upstream's (forwarded after
    on_request(Request) -> Request, returned after on_response(Response)
    -> Response) or, without upstream, `answer`."""

    def __init__(self, workdir, upstream=None, upstream_ca=None,
                 on_request=None, on_response=None,
                 answer=(200, [("Content-Type", "text/plain")], b"ok\n")):
        self.cert, self.key = tls_cert(workdir)
        self.upstream, self.upstream_ca = upstream, upstream_ca
        self.on_request, self.on_response = on_request, on_response
        self.answer = answer
        self.requests, self.responses = [], []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                # by its Content-Length or chunked (a large message)
                req = Request(self.path, self.headers.items(),
                              read_body(self))
                rec.requests.append(req)
                resp = rec.handle(req)
                rec.responses.append(resp)
                self.send_response(resp.status)
                for k, v in resp.headers:
                    if k.lower() not in HOP_BY_HOP and k.lower() not in (
                            "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                self.wfile.write(resp.body)

            def do_HEAD(self):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = serve_http(Handler, (self.cert, self.key))
        self.port = self.httpd.server_address[1]

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/as2"

    def handle(self, req):
        if self.upstream is None:
            return Response(*self.answer)
        if self.on_request:
            req = self.on_request(req)
        resp = post(self.upstream, req, self.upstream_ca)
        return self.on_response(resp) if self.on_response else resp

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- MDNs ----------------------------------------------------------------------

DISPOSITION_RE = re.compile(
    rb"^Disposition:[ \t]*(.+(?:\r?\n[ \t]+.+)*)", re.M | re.I)


def unfold(b):
    return re.sub(r"\s+", " ", b.decode(errors="replace")).strip()


def disposition(body):
    """The Disposition field of an MDN body (signed or not; the report is
    not encrypted), whitespace folded; None if there is none."""
    m = DISPOSITION_RE.search(body)
    return unfold(m.group(1)) if m else None
