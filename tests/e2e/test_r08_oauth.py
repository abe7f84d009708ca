"""R8 (OAuth without a relay), R4 (OAuth 2.0 client credentials and refresh
token for endpoints), R6 (no token in logs): the http destination with
`"auth": {"type": "oauth2", ...}` against an OAuth server written here.

The server (HTTPS on 127.0.0.1, certificate from a test CA made with the
openssl CLI, as in test_m6_http.py) plays three parts at once:
  /token      the token endpoint: client_credentials, authorization_code
              (checks the redirect URI and the PKCE S256 verifier) and
              refresh_token (rotates refresh tokens; a revoked one gets
              400 invalid_grant); client_secret_basic or client_secret_post;
              access tokens live TTL seconds (2 here);
  /authorize  the authorization endpoint: a person "approves" at once and
              is redirected (302) to the redirect_uri with code and state;
  /resource   the partner: 200 for a known, unexpired, unrevoked bearer
              token, else 401.
Wharf's redirect URI is its own admin listener (/oauth/callback): the test
follows the 302 there, as a browser would. No relay anywhere.
"""
import base64
import hashlib
import http.client
import http.server
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import (drop_file, file_source, flow_doc, new_data_dir, serve_http,
                      wait_until)
from test_m6_http import make_ca, make_server_cert, secret_file

TOKEN_RE = re.compile(r"^(wharf_[A-Za-z0-9_-]{43})$", re.M)
CLIENT_SECRET = "cs-" + secrets.token_hex(12)
REVOKED_MSG = ("OAuth refresh token was refused by the token endpoint "
               "(invalid_grant): authorize connector partner again")


# ---- the OAuth server --------------------------------------------------------------


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OAuthServer:
    def __init__(self, certkey, ttl=2):
        self.ttl = ttl
        self.clients = {"wharf-cc": CLIENT_SECRET, "wharf-code": CLIENT_SECRET}
        self.lock = threading.Lock()
        self.access = {}            # token -> expiry (time.time())
        self.refresh = {}           # token -> client_id (valid ones)
        self.codes = {}             # code -> (client, redirect, challenge)
        self.issued = set()         # every value handed out or received
        self.grants = []            # (grant_type, client auth) per request
        self.token_requests = 0
        self.resource = []          # (status, body) per request
        self.deny = False           # /authorize answers error=access_denied
        srv = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", ctype="application/json",
                      headers=()):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                if u.path != "/authorize":
                    return self.reply(404, {"error": "not_found"})
                q = dict(urllib.parse.parse_qsl(u.query))
                loc = srv.authorize(q)
                self.reply(302, b"", "text/plain", [("Location", loc)])

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if self.path == "/token":
                    status, out = srv.token(self.headers, body)
                    return self.reply(status, out)
                if self.path == "/resource":
                    status = srv.resource_call(self.headers, body)
                    hdrs = [("WWW-Authenticate", 'Bearer error="invalid_token"')
                            ] if status == 401 else []
                    return self.reply(status, {"ok": status == 200},
                                      headers=hdrs)
                self.reply(404, {"error": "not_found"})

        self.httpd = serve_http(H, certkey)
        self.port = self.httpd.server_address[1]
        self.base = f"https://127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the authorization endpoint
    def authorize(self, q):
        redirect, state = q.get("redirect_uri", ""), q.get("state", "")
        assert q.get("response_type") == "code", q
        assert q.get("client_id") == "wharf-code", q
        assert q.get("code_challenge_method") == "S256", q
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", q.get("code_challenge", "")), q
        sep = "&" if "?" in redirect else "?"
        if self.deny:
            return redirect + sep + urllib.parse.urlencode(
                {"error": "access_denied", "state": state})
        code = "code-" + secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = (q["client_id"], redirect, q["code_challenge"])
            self.issued.add(code)
        return redirect + sep + urllib.parse.urlencode(
            {"code": code, "state": state})

    # -- the token endpoint
    def client_auth(self, headers, form):
        authz = headers.get("Authorization")
        if authz:
            assert authz.startswith("Basic "), authz
            user, _, pw = base64.b64decode(authz[6:]).decode().partition(":")
            cid, sec = urllib.parse.unquote(user), urllib.parse.unquote(pw)
            how = "basic"
        else:
            cid, sec = form.get("client_id"), form.get("client_secret")
            how = "post"
        if self.clients.get(cid) != sec:
            return None, how
        return cid, how

    def new_tokens(self, client, with_refresh):
        at = "at-" + secrets.token_urlsafe(24)
        out = {"access_token": at, "token_type": "Bearer",
               "expires_in": self.ttl, "scope": "deliver"}
        self.access[at] = time.time() + self.ttl
        self.issued.add(at)
        if with_refresh:
            rt = "rt-" + secrets.token_urlsafe(24)
            self.refresh[rt] = client
            self.issued.add(rt)
            out["refresh_token"] = rt
        return out

    def token(self, headers, body):
        form = dict(urllib.parse.parse_qsl(body.decode()))
        with self.lock:
            self.token_requests += 1
            client, how = self.client_auth(headers, form)
            grant = form.get("grant_type")
            self.grants.append((grant, how))
            for k in ("code", "code_verifier", "refresh_token"):
                if k in form:
                    self.issued.add(form[k])
            if client is None:
                return 401, {"error": "invalid_client"}
            if grant == "client_credentials":
                return 200, self.new_tokens(client, False)
            if grant == "authorization_code":
                entry = self.codes.pop(form.get("code"), None)
                if entry is None or entry[0] != client:
                    return 400, {"error": "invalid_grant"}
                if form.get("redirect_uri") != entry[1]:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "redirect_uri differs"}
                verifier = form.get("code_verifier", "")
                if b64url(hashlib.sha256(verifier.encode()).digest()) != entry[2]:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "PKCE check failed"}
                return 200, self.new_tokens(client, True)
            if grant == "refresh_token":
                rt = form.get("refresh_token")
                if self.refresh.pop(rt, None) != client:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "refresh token "
                                 "revoked or unknown"}
                return 200, self.new_tokens(client, True)    # rotated
            return 400, {"error": "unsupported_grant_type"}

    # -- the partner
    def resource_call(self, headers, body):
        authz = headers.get("Authorization") or ""
        tok = authz[7:] if authz.startswith("Bearer ") else None
        with self.lock:
            exp = self.access.get(tok)
            status = 200 if exp and exp > time.time() else 401
            self.resource.append((status, body))
        return status

    def revoke_access(self):
        with self.lock:
            self.access.clear()

    def revoke_refresh(self):
        with self.lock:
            self.refresh.clear()

    def count(self, grant=None):
        with self.lock:
            return len([g for g in self.grants if grant in (None, g[0])])

    def delivered(self):
        with self.lock:
            return [b for s, b in self.resource if s == 200]


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, ca_key = make_ca(d, "testca")
    cert, key = make_server_cert(d, ca, ca_key)
    return {"dir": d, "ca": ca, "cert": cert, "key": key}


@pytest.fixture
def oauth_server(pki):
    s = OAuthServer((pki["cert"], pki["key"]), ttl=2)
    yield s
    s.close()


# ---- Wharf side helpers --------------------------------------------------------------


def oauth_flow(tmp_path, srv, pki, grant, **auth):
    inbox = tmp_path / "in"
    inbox.mkdir(exist_ok=True)
    sec = tmp_path / "secrets"
    sec.mkdir(exist_ok=True)
    a = {"type": "oauth2", "grant": grant,
         "token_url": srv.base + "/token",
         "client_id": "wharf-cc" if grant == "client_credentials"
         else "wharf-code",
         "client_secret_file": secret_file(sec, "client_secret",
                                           CLIENT_SECRET),
         "scope": "deliver", "refresh_margin_s": 1}
    if grant == "authorization_code":
        a["authorize_url"] = srv.base + "/authorize"
    a.update(auth)
    dest = {"name": "partner", "type": "http",
            "config": {"url": srv.base + "/resource", "tls_ca": str(pki["ca"]),
                       "auth": a, "retry": {"initial_ms": 50, "max_ms": 200,
                                            "max_attempts": 10}}}
    return flow_doc([file_source("inbox", inbox), dest],
                    [("inbox", "partner")]), inbox


def start(wharf, start_server, tmp_path, doc):
    data = new_data_dir(wharf, tmp_path / "data", log_level="trace")
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    tok = TOKEN_RE.search(wharf.ok("token", "create", "--data", data,
                                   "--role", "admin", "--owner", "admin",
                                   "--name", "oauth-test").stdout)
    assert tok, "no API token printed"
    srv = start_server(data)
    admin, _ = srv.wait_listening()
    return data, srv, admin, tok.group(1)


def no_verify():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE         # Wharf's admin cert: self-signed
    return ctx


def https(port, method, path, ctx, body=None, headers=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                       timeout=60)
    try:
        h = {"Connection": "close"}
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        elif method == "POST":
            data = b""
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def authorize(admin, token, srv, pki, responses):
    """The whole browser dance: ask Wharf for the authorize URL, GET it at
    the authorization endpoint, follow its 302 to Wharf's admin listener.
    Returns (callback path, status, page)."""
    st, _, body = https(admin, "POST",
                        "/api/v1/connectors/partner/actions/oauth.authorize",
                        no_verify(), headers={"Authorization":
                                              f"Bearer {token}"})
    responses.append(body)
    assert st == 200, body
    return follow(json.loads(body)["authorize_url"], admin, srv, pki,
                  responses)


def follow(url, admin, srv, pki, responses):
    """GET the authorization URL, follow its 302 to Wharf's callback."""
    u = urllib.parse.urlsplit(url)
    assert f"{u.scheme}://{u.netloc}{u.path}" == srv.base + "/authorize", url
    q = dict(urllib.parse.parse_qsl(u.query))
    assert q["redirect_uri"] == f"https://127.0.0.1:{admin}/oauth/callback", q
    assert q["code_challenge_method"] == "S256" and q["scope"] == "deliver", q
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    st, hdrs, _ = https(srv.port, "GET", u.path + "?" + u.query, ctx)
    assert st == 302, st
    loc = urllib.parse.urlsplit(hdrs["Location"])
    assert loc.netloc == f"127.0.0.1:{admin}" and loc.path == "/oauth/callback"
    path = loc.path + "?" + loc.query
    st, _, page = https(admin, "GET", path, no_verify())
    responses.append(page)
    return path, st, page.decode(errors="replace")


def wait_sent(wharf, data, n):
    def done():
        msgs = wharf.messages(data)
        return (len(msgs) >= n and all(m["state"] in ("sent", "failed")
                                       for m in msgs)) and msgs
    return wait_until(done, timeout=60, desc=f"{n} message(s) finished")


def by_name(msgs):
    return {m["filename"]: m for m in msgs}


def assert_no_secrets(wharf, data, srv, server_proc, responses=()):
    """No token, code, verifier or client secret in the logs (trace level),
    the server's output, the flow export, the audit trail, message events
    or API answers."""
    values = set(srv.issued) | {CLIENT_SECRET}
    assert len(values) >= 3, values
    texts = {"flow export": wharf.export_flow(data),
             "audit": wharf.ok("audit", "list", "--json", "--limit",
                               "100000", "--data", data).stdout,
             "serve stdout": server_proc.stdout(),
             "serve stderr": server_proc.stderr()}
    for p in sorted(Path(data, "logs").glob("*")):
        texts[f"log {p.name}"] = p.read_text(errors="replace")
    for m in wharf.messages(data):
        texts[f"message {m['id']}"] = json.dumps(wharf.show(data, m["id"]))
    for i, r in enumerate(responses):
        texts[f"response {i}"] = r.decode(errors="replace")
    assert "OAuth" in texts["log wharf.log"], "trace log has no OAuth lines"
    for where, text in texts.items():
        for v in values:
            assert v not in text, f"a secret value appears in {where}"


# ---- the tests -----------------------------------------------------------------------------


def test_r08_oauth_client_credentials_renews_across_expiry(
        tmp_path, wharf, pki, oauth_server, start_server):
    doc, inbox = oauth_flow(tmp_path, oauth_server, pki, "client_credentials")
    data, srv, _, _ = start(wharf, start_server, tmp_path, doc)
    for i in range(3):
        drop_file(inbox, f"cc{i}.edi", f"order {i}".encode())
        wait_sent(wharf, data, i + 1)
        time.sleep(2.2)                 # the access token (2 s) expires
    msgs = by_name(wharf.messages(data))
    assert all(m["state"] == "sent" for m in msgs.values()), msgs
    assert sorted(oauth_server.delivered()) == [b"order 0", b"order 1",
                                                b"order 2"]
    # a new token for each delivery after an expiry, sent the default way
    assert oauth_server.count("client_credentials") >= 3, oauth_server.grants
    assert {g[1] for g in oauth_server.grants} == {"basic"}
    assert not [s for s, _ in oauth_server.resource if s == 401], (
        "Wharf sent an expired token instead of renewing it first")
    srv.stop()
    assert_no_secrets(wharf, data, oauth_server, srv)


def test_r08_oauth_401_renews_once_and_resends(tmp_path, wharf, pki,
                                               oauth_server, start_server):
    oauth_server.ttl = 300              # only the 401 makes Wharf renew
    doc, inbox = oauth_flow(tmp_path, oauth_server, pki, "client_credentials",
                            client_auth="post")
    data, srv, _, _ = start(wharf, start_server, tmp_path, doc)
    drop_file(inbox, "first.edi", b"first")
    wait_sent(wharf, data, 1)
    assert oauth_server.count() == 1
    oauth_server.revoke_access()        # the partner forgets the token
    drop_file(inbox, "second.edi", b"second")
    msgs = by_name(wait_sent(wharf, data, 2))
    assert msgs["second.edi"]["state"] == "sent", msgs
    hop = [h for h in wharf.show(data, msgs["second.edi"]["id"])["hops"]
           if h["connector"] == "partner"][0]
    assert hop["attempts"] == 1, hop    # renewed and resent in one attempt
    assert [s for s, _ in oauth_server.resource] == [200, 401, 200]
    assert oauth_server.delivered() == [b"first", b"second"]
    assert oauth_server.count() == 2
    assert {g[1] for g in oauth_server.grants} == {"post"}
    srv.stop()
    assert_no_secrets(wharf, data, oauth_server, srv)


def test_r08_oauth_authorization_code_pkce_on_own_listener(
        tmp_path, wharf, pki, oauth_server, start_server):
    doc, inbox = oauth_flow(tmp_path, oauth_server, pki, "authorization_code")
    data, srv, admin, token = start(wharf, start_server, tmp_path, doc)
    responses = []
    # not authorized yet: a clear failure, no token request
    drop_file(inbox, "early.edi", b"early")
    msgs = by_name(wait_sent(wharf, data, 1))
    assert msgs["early.edi"]["state"] == "failed"
    assert "not authorized yet" in json.dumps(
        wharf.show(data, msgs["early.edi"]["id"]))
    assert oauth_server.count() == 0

    path, st, page = authorize(admin, token, oauth_server, pki, responses)
    assert st == 200 and "partner is authorized" in page, page
    assert oauth_server.count("authorization_code") == 1
    # the state is single-use; an unknown one is refused too
    st, _, body = https(admin, "GET", path, no_verify())
    responses.append(body)
    assert st == 400 and b"already used" in body, body
    st, _, body = https(admin, "GET", "/oauth/callback?code=abc&state=" +
                        "x" * 43, no_verify())
    assert st == 400, body
    assert oauth_server.count("authorization_code") == 1

    for i in range(3):
        drop_file(inbox, f"code{i}.edi", f"invoice {i}".encode())
        wait_sent(wharf, data, i + 2)
        time.sleep(2.2)
    msgs = by_name(wharf.messages(data))
    for i in range(3):
        assert msgs[f"code{i}.edi"]["state"] == "sent", msgs
    assert oauth_server.delivered() == [b"invoice 0", b"invoice 1",
                                        b"invoice 2"]
    assert oauth_server.count("refresh_token") >= 2, oauth_server.grants
    assert oauth_server.count("client_credentials") == 0
    actions = [e.get("action") for e in json.loads(wharf.ok(
        "audit", "list", "--json", "--limit", "100000", "--data",
        data).stdout)]
    assert "connector.oauth.authorize" in actions, actions
    assert "connector.oauth.authorized" in actions, actions
    # the tokens survive a restart (sealed in the store, not re-authorized)
    srv.stop()
    srv = start_server(data)
    srv.wait_listening()
    drop_file(inbox, "after-restart.edi", b"after restart")
    msgs = by_name(wait_sent(wharf, data, 5))
    assert msgs["after-restart.edi"]["state"] == "sent", msgs
    assert oauth_server.count("authorization_code") == 1
    srv.stop()
    assert_no_secrets(wharf, data, oauth_server, srv, responses)


def test_r08_oauth_denied_authorization_is_refused(tmp_path, wharf, pki,
                                                   oauth_server, start_server):
    doc, _ = oauth_flow(tmp_path, oauth_server, pki, "authorization_code")
    data, srv, admin, token = start(wharf, start_server, tmp_path, doc)
    oauth_server.deny = True
    _, st, page = authorize(admin, token, oauth_server, pki, [])
    assert st == 400 and "access_denied" in page, page
    assert oauth_server.count() == 0
    srv.stop()


def test_r08_oauth_revoked_refresh_token_fails_without_loop(
        tmp_path, wharf, pki, oauth_server, start_server):
    doc, inbox = oauth_flow(tmp_path, oauth_server, pki, "authorization_code")
    data, srv, admin, token = start(wharf, start_server, tmp_path, doc)
    responses = []
    _, st, page = authorize(admin, token, oauth_server, pki, responses)
    assert st == 200, page
    drop_file(inbox, "ok.edi", b"before revocation")
    wait_sent(wharf, data, 1)

    refreshed = oauth_server.count("refresh_token")
    oauth_server.revoke_refresh()       # e.g. the partner's admin revoked it
    time.sleep(2.2)                     # and the access token expired
    drop_file(inbox, "revoked.edi", b"after revocation")
    msgs = by_name(wait_sent(wharf, data, 2))
    m = msgs["revoked.edi"]
    assert m["state"] == "failed", m
    detail = wharf.show(data, m["id"])
    hop = [h for h in detail["hops"] if h["connector"] == "partner"][0]
    assert hop["attempts"] == 1 and REVOKED_MSG in hop["last_error"], hop
    assert REVOKED_MSG in json.dumps(detail["events"]), detail["events"]
    asked = oauth_server.count()
    assert oauth_server.count("refresh_token") == refreshed + 1, (
        oauth_server.grants)

    # later deliveries fail at once without asking the token endpoint
    for i in range(3):
        drop_file(inbox, f"later{i}.edi", b"later")
    msgs = by_name(wait_sent(wharf, data, 5))
    for i in range(3):
        d = msgs[f"later{i}.edi"]
        assert d["state"] == "failed", d
        assert "was revoked" in json.dumps(wharf.show(data, d["id"]))
    time.sleep(2)
    assert oauth_server.count() == asked, "Wharf kept asking the token endpoint"
    srv.check_alive()

    # a new authorization ends it (started with the CLI this time: the
    # pending state is in the database, the running server completes it)
    p = wharf.ok("connector", "partner", "oauth.authorize", "--data", data)
    responses.append((p.stdout + p.stderr).encode())
    _, st, page = follow(p.stdout.strip(), admin, oauth_server, pki,
                         responses)
    assert st == 200, page
    drop_file(inbox, "reauthorized.edi", b"reauthorized")
    msgs = by_name(wait_sent(wharf, data, 6))
    assert msgs["reauthorized.edi"]["state"] == "sent", msgs
    assert oauth_server.delivered()[-1] == b"reauthorized"
    srv.stop()
    log = (Path(data) / "logs" / "wharf.log").read_text()
    assert "invalid_grant" in log
    assert_no_secrets(wharf, data, oauth_server, srv, responses)


def test_r08_oauth_config_checked_at_import(tmp_path, wharf, pki,
                                            oauth_server):
    data = new_data_dir(wharf, tmp_path / "data")
    bad = [({"grant": "password"}, "grant must be"),
           ({"token_url": "http://127.0.0.1/token"}, "https://"),
           ({"authorize_url": None}, "authorize_url"),
           ({"client_auth": "jwt"}, "client_auth"),
           ({"refresh_margin_s": -1}, "refresh_margin_s"),
           ({"client_secret": "inline"}, "unknown key")]
    for change, why in bad:
        doc, _ = oauth_flow(tmp_path, oauth_server, pki, "authorization_code")
        auth = doc["connectors"][1]["config"]["auth"]
        for k, v in change.items():
            if v is None:
                auth.pop(k)
            else:
                auth[k] = v
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(doc))
        r = wharf("flow", "import", "--data", data, p)
        assert r.returncode != 0 and why in r.stderr, (change, r.stderr)
