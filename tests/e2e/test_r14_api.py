"""
The REST API under /api/v1 seen from outside (issue 3, "What it must
show"), with Python's http.client/ssl against a running `wharf serve`:

  R14  the authorization matrix: EVERY route of the code's route table
       (`wharf api routes --json`, so a new route cannot be forgotten) x
       {admin, operator, auditor, viewer, no credentials}, checked against
       a policy written here from the issue's words, not copied from
       src/auth/rbac.c;
  R13  console sessions: the cookie's attributes, CSRF token missing or
       wrong -> 403, idle and absolute timeouts -> 401, TOTP enrolment and
       login with Debian's oathtool as the independent generator (wrong
       code, reused code, recovery code);
  R04  a revoked API token -> 401 (revoked through the API and the CLI);
  R22  50 wrong passwords from 127.0.0.1 get it banned (audited) while
       127.0.0.2 still logs in;
  R06  at trace level, no password, one-time password, cookie, CSRF token,
       API token, TOTP secret or recovery code appears in the logs, the
       server's output, the audit trail or any response but the one that
       hands it out;
  M8   messages through the API: list, detail, payload, resend, erase (and
       their audit entries); R18: GET /api/v1/audit/verify.
"""
import base64
import hashlib
import http.client
import json
import re
import secrets
import socket
import sqlite3
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (file_dest, file_source, flow_doc, new_data_dir,
                      wait_until)

TOKEN_RE = re.compile(r"^(wharf_[A-Za-z0-9_-]{43})$", re.M)
TOKEN_ID_RE = re.compile(r"created API token ([0-9a-f-]{36}) ")
OTP_RE = re.compile(r"^one-time password: (\S+)$", re.M)
SECRET_RE = re.compile(r"[?&]secret=([A-Z2-7]+)(?:&|$)")
ROLES = ("admin", "operator", "auditor", "viewer")
NOBODY = "none"

# Dummy values for {parameters}: well-formed, matching nothing.
DUMMY = {"id": "00000000-0000-4000-8000-000000000000",
         "name": "no-such-thing",
         "handle": "0" * 64,
         "key": "no_such_setting"}


# ---- an HTTPS client ----------------------------------------------------------------


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE         # the server's cert is self-signed
    return ctx


class Resp:
    def __init__(self, method, path, status, headers, body, error=None):
        self.method, self.path = method, path
        self.status = status                # None: refused / closed
        self.headers = headers              # [(name, value)]
        self.body = body
        self.error = error
        self.legit = set()                  # secrets this response hands out

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"{self.method} {self.path}: not JSON: "
                                 f"{self.status} {self.body[:500]!r}")

    def code(self):
        """The error code of an error reply, or None."""
        try:
            return json.loads(self.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None

    def __repr__(self):
        return (f"{self.method} {self.path} -> {self.status} "
                f"{self.body[:300]!r}{' ' + self.error if self.error else ''}")


class Api:
    """Requests to the admin listener, each on a new connection from
    `source` (127.0.0.1 unless said). Every response is kept in .log."""

    def __init__(self, port, source="127.0.0.1", log=None):
        self.port = port
        self.source = source
        self.log = [] if log is None else log

    def from_address(self, source):
        return Api(self.port, source, self.log)

    def request(self, method, path, body=None, token=None, cookie=None,
                csrf=None, headers=None):
        h = {"Connection": "close"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        if cookie:
            h["Cookie"] = f"wharf_session={cookie}"
        if csrf is not None:
            h["X-CSRF-Token"] = csrf
        h.update(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        elif method not in ("GET", "HEAD"):
            data = b""                      # Content-Length: 0
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=tls_context(), timeout=60,
            source_address=(self.source, 0))
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            resp = Resp(method, path, r.status, r.getheaders(), r.read())
        except (ssl.SSLError, ConnectionError, http.client.HTTPException,
                socket.timeout, OSError) as e:
            resp = Resp(method, path, None, [], b"", f"{type(e).__name__}: {e}")
        finally:
            conn.close()
        self.log.append(resp)
        return resp

    def ok(self, method, path, status=200, **kw):
        r = self.request(method, path, **kw)
        assert r.status == status, f"expected {status}: {r!r}"
        return r


class Session:
    """A console login: the wharf_session cookie and the CSRF token."""

    def __init__(self, api, user, password, code=None, status=200):
        self.api = api
        body = {"user": user, "password": password}
        if code is not None:
            body["code"] = code
        self.login = r = api.request("POST", "/api/v1/auth/login", body=body)
        assert r.status == status, f"login of {user}: expected {status}: {r!r}"
        self.cookie = self.csrf = self.handle = None
        if r.status == 200:
            self.set_cookie = r.header("Set-Cookie")
            m = re.match(r"wharf_session=([^;]+)", self.set_cookie or "")
            assert m, f"no wharf_session cookie: {r.headers}"
            self.cookie = m.group(1)
            j = r.json()
            self.csrf = j["csrf_token"]
            self.handle = j["session"]
            self.me = j
            r.legit |= {self.cookie, self.csrf}

    def request(self, method, path, csrf=True, **kw):
        """csrf=True sends this session's token, None none, a string that."""
        tok = self.csrf if csrf is True else csrf
        return self.api.request(method, path, cookie=self.cookie, csrf=tok,
                                **kw)

    def ok(self, method, path, status=200, **kw):
        r = self.request(method, path, **kw)
        assert r.status == status, f"expected {status}: {r!r}"
        return r


# ---- data dir, CLI and server helpers ------------------------------------------------------


def init_output(wharf, data):
    for argv, out, _ in wharf.outputs:
        if argv[1] == "init" and str(data) in argv:
            return out
    raise AssertionError(f"no init output for {data}")


def admin_otp(wharf, data):
    m = OTP_RE.search(init_output(wharf, data))
    assert m, init_output(wharf, data)
    return m.group(1)


def cli_token(wharf, data, role, name=None, owner="admin"):
    """(token, id) of a new API token made offline with the CLI, acting
    as `owner` (the first administrator unless said)."""
    p = wharf.ok("token", "create", "--data", data, "--role", role,
                 "--name", name or f"{role}-test", "--owner", owner)
    m = TOKEN_RE.search(p.stdout)
    assert m, f"no token in stdout: {p.stdout!r}"
    i = TOKEN_ID_RE.search(p.stderr)
    assert i, f"no token id in stderr: {p.stderr!r}"
    return m.group(1), i.group(1)


def new_password():
    """A password the policy accepts (long, not common, no user name: the
    random parts are digits, so no letters can spell one, as hex did:
    "ada" in token_hex)."""
    return (f"quay-{secrets.randbelow(10**10):010d}-Crane-"
            f"{secrets.randbelow(10**6):06d}")


def cli_user(wharf, data, name, role, password=None):
    """Create a user; with a password, set it (no change at first login).
    Returns the one-time password, or the password set."""
    p = wharf.ok("user", "add", name, "--role", role, "--data", data)
    otp = OTP_RE.search(p.stdout)
    assert otp, p.stdout
    if password is None:
        return otp.group(1)
    wharf.ok("user", "passwd", name, "--data", data, input=password + "\n")
    return password


def audit_entries(wharf, data):
    return json.loads(wharf.ok("audit", "list", "--json", "--limit",
                               "100000", "--data", data).stdout)


def oathtool(secret, at):
    """The TOTP code for base32 `secret` at unix time `at`, computed by
    Debian's oathtool, independently of Wharf."""
    exe = shutil.which("oathtool")
    if exe is None:
        pytest.fail("oathtool not found: install Debian's oathtool "
                    "(scripts/deps.sh test)", pytrace=False)
    out = subprocess.run([exe, "--totp", "-b", secret, "--now", f"@{at}"],
                         capture_output=True, text=True, check=True)
    code = out.stdout.strip()
    assert re.fullmatch(r"\d{6}", code), code
    return code


@pytest.fixture
def served(wharf, start_server, tmp_path):
    """Factory: served(*init_args, before=fn(data)) -> (server, data, api).
    `before` runs offline against the data dir before serve starts. Every
    server is stopped (exit 0, no sanitizer report) at the end."""
    started = []

    def make(*init_args, before=None, **conf):
        data = new_data_dir(wharf, tmp_path / f"data{len(started)}",
                            *init_args, **conf)
        extra = before(data) if before else None
        srv = start_server(data)
        admin, _ = srv.wait_listening()
        started.append(srv)
        return srv, data, Api(admin), extra
    yield make
    for srv in started:
        if srv.running():
            srv.stop()


# ---- R14: the authorization matrix ---------------------------------------------------------
#
# The policy as issue 3 (section 7 and "What it must show") and R14 state
# it, written independently of src/auth/rbac.c:
#   administrator  everything;
#   operator       flows, connectors (incl. "test connection"), messages
#                  including payloads, resend; NOT users, tokens, other
#                  people's sessions, keys, settings, the audit trail, and
#                  not erasure (irreversible, a privacy decision under R9,
#                  left to administrators);
#   auditor        reads everything, including the audit trail and
#                  payloads; changes nothing (not even "test connection",
#                  which acts on a partner);
#   viewer         reads flows and message status; no payloads, nothing
#                  else;
#   public         only logging in needs no credentials: the password
#                  login and the steps of an OIDC single sign-on
#                  (/api/v1/auth/oidc/...: the browser has no session yet);
#   self           /api/v1/auth/* is the caller's own account (who am I,
#                  log out, own password, own MFA, own sessions): every valid
#                  caller may use it.
# A route is classified by its resource (the first path segment after
# /api/v1) and whether it only reads (GET/HEAD). A route this test has no
# statement for fails the test: extend the policy here when adding one.
#
# Deliberate readings, where the code's table says more than the issue:
#   - viewer may read /connectors: the issue says "read flows", and a flow
#     is a graph of connectors; GET /flows returns every connector anyway,
#     so hiding GET /connectors from a viewer would protect nothing.
#   - GET /metrics (metrics.read) is a route of the table (wharf.conf
#     metrics_access = token, the default): counters of the exchange, no
#     content, for those who run it or audit it (admin, operator, auditor;
#     not viewer). The issue says nothing about metrics per role; rbac.c's
#     choice is plausible.
#   - key.write has no route yet; a future /api/v1/keys route is
#     classified below (administrators only) and so cannot slip through.

ALL = frozenset(ROLES)
ADMIN = frozenset({"admin"})
RUNS_EXCHANGE = frozenset({"admin", "operator"})
READS_ALL = frozenset({"admin", "auditor"})
READS_PAYLOAD = frozenset({"admin", "operator", "auditor"})


class NoStatement(Exception):
    pass


def policy(method, path):
    """"public", "self", or the set of roles the issue allows."""
    read = method in ("GET", "HEAD")
    if (method, path) == ("GET", "/oauth/callback"):
        # R8: the redirect URI of a connector's OAuth authorization; the
        # browser has no Wharf credentials, the single-use state is them
        return "public"
    if (method, path) == ("GET", "/metrics"):
        return READS_PAYLOAD        # metrics.read, see the note above
    assert path.startswith("/api/v1/"), path
    seg = path[len("/api/v1/"):].split("/")
    res, last = seg[0], seg[-1]
    if (method, path) in (("POST", "/api/v1/auth/login"),
                          ("GET", "/api/v1/auth/methods")):
        return "public"             # the login, and what the login page offers
    if res == "auth" and len(seg) > 1 and seg[1] == "oidc":
        return "public"             # the single sign-on steps of a login
    if res == "auth":
        return "self"
    if res in ("flows", "connectors", "connector-types"):
        if res == "connectors" and len(seg) == 4 and seg[2] == "actions":
            # the generic connector actions: whoever may see a connector
            # reaches the dispatcher, which then requires the action's own
            # permission (test and hostkey.capture contact the partner:
            # connector.test; hostkey.accept and oauth.authorize change the
            # connector: flow.write). A dummy name is a 404 for every role;
            # the per-action refusals are tested in test_m5_sftp_hostkey.py
            # and test_r14_connector_types.py.
            return ALL
        return ALL if read else RUNS_EXCHANGE
    if res in ("dashboard", "transfers") and read:
        # M8: the console's dashboard is message status (counts, states,
        # transfers in flight, certificate expiry): whoever reads messages
        return ALL
    if res == "messages":
        if read:
            return READS_PAYLOAD if last == "payload" else ALL
        if last == "resend":
            return RUNS_EXCHANGE
        if last in ("erase", "hold", "purge"):
            # R9: what is kept and what goes (erasure, legal holds, purges)
            # is a privacy and legal decision: administrators
            return ADMIN
        raise NoStatement(f"{method} {path}: a new change to messages")
    if res in ("partners", "certificates"):
        # M7: partners and certificates (public keys and their expiry, never
        # a private key) are read by everyone who runs or watches the
        # exchange; adding a certificate changes trust, and erasing a
        # partner's messages (R9, GDPR) is a privacy decision:
        # administrators
        return ALL if read else ADMIN
    if res in ("posture", "inventory"):
        # issue "Security operations": the posture report is "one command
        # an auditor runs" (auditor role); the inventory lists users with
        # their role and MFA state, as the users route does (admin,
        # auditor). Neither changes anything.
        return READS_ALL if read else ADMIN
    if res in ("users", "tokens", "sessions", "settings", "audit", "keys"):
        return READS_ALL if read else ADMIN
    if res in ("alerts", "incidents"):
        # R19 (issue 12): "auditor reads, operator acknowledges, admin
        # escalates"; the operator, who acknowledges, reads them too; the
        # investigations, incidents and breaches are run by administrators
        if read:
            return READS_PAYLOAD
        if res == "alerts" and last == "ack":
            return RUNS_EXCHANGE
        return ADMIN
    raise NoStatement(f"{method} {path}")


def concrete(pattern):
    return re.sub(r"\{([^}]+)\}", lambda m: DUMMY.get(m.group(1), "x"),
                  pattern)


def test_r14_authorization_matrix(wharf, served):
    tokens = {}

    def before(data):
        for role in ROLES:
            tokens[role] = cli_token(wharf, data, role)[0]
    srv, data, api, _ = served(before=before)
    routes = json.loads(wharf.ok("api", "routes", "--json").stdout)
    assert len(routes) >= 20, routes

    unstated = []
    rows = []           # (route, perm, {caller: (expected, status, ok)})
    bad = 0
    for r in routes:
        method, pattern, perm = r["method"], r["path"], r["permission"]
        try:
            want = policy(method, pattern)
        except NoStatement as e:
            unstated.append(str(e))
            continue
        path = concrete(pattern)
        cells = {}
        for caller in ROLES + (NOBODY,):
            resp = api.request(method, path,
                               token=tokens.get(caller))
            if caller == NOBODY:
                exp = "allow" if want == "public" else "401"
            elif want in ("public", "self") or caller in want:
                exp = "allow"
            else:
                exp = "403"
            st = resp.status
            if exp == "allow":
                # any answer but a refusal; a 500 would be a crash of the
                # handler on a dummy parameter: a bug too
                ok = st is not None and st not in (401, 403, 500)
            elif exp == "401":
                ok = st == 401 and resp.code() == "unauthorized"
            else:
                ok = st == 403 and resp.code() == "forbidden"
            bad += not ok
            cells[caller] = (exp, st, ok)
        rows.append((f"{method} {pattern}", perm, cells))
    srv.check_alive()

    def matrix():
        head = (f"{'route':44} {'table':15} " +
                " ".join(f"{c:>14}" for c in ROLES + (NOBODY,)))
        lines = [head, "-" * len(head)]
        for route, perm, cells in rows:
            out = []
            for c in ROLES + (NOBODY,):
                exp, st, ok = cells[c]
                out.append(f"{('' if ok else '!! ') + exp + '/' + str(st):>14}")
            lines.append(f"{route:44} {perm:15} " + " ".join(out))
        return ("\ncell = expected/actual status; '!!' marks a wrong "
                "answer\n" + "\n".join(lines))
    assert not unstated, (
        "routes with no statement in this test's policy (write one in "
        f"policy()): {unstated}")
    assert bad == 0, f"{bad} wrong cell(s):{matrix()}"
    # the matrix really exercised every kind of answer
    kinds = {cells[c][0] for _, _, cells in rows for c in cells}
    assert kinds == {"allow", "401", "403"}, kinds
    print(matrix())


# ---- R13: CSRF and the session cookie ----------------------------------------------------


def simple_flow(tmp_path):
    recv, out = tmp_path / "in", tmp_path / "out"
    recv.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    return flow_doc([file_source("inbox", recv), file_dest("outbox", out)],
                    [("inbox", "outbox")]), recv, out


def test_r13_csrf_missing_is_403(wharf, served, tmp_path):
    doc, _, _ = simple_flow(tmp_path)
    ctx = {}

    def before(data):
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        ctx["otp"] = cli_user(wharf, data, "olga", "operator")
        ctx["token"] = cli_token(wharf, data, "operator")[0]
    srv, data, api, _ = served(before=before)

    s = Session(api, "olga", ctx["otp"])
    # the cookie: HttpOnly, Secure, SameSite=Strict (and nothing else sets
    # it: the session id is not in the body)
    attrs = [a.strip().lower() for a in s.set_cookie.split(";")[1:]]
    assert "httponly" in attrs, s.set_cookie
    assert "secure" in attrs, s.set_cookie
    assert "samesite=strict" in attrs, s.set_cookie
    assert "path=/" in attrs, s.set_cookie
    assert s.cookie.encode() not in s.login.body
    assert len(s.cookie) >= 43 and len(s.csrf) >= 43     # 256 bits, base64
    assert s.me["must_change"] is True and s.me["role"] == "operator"

    # limited until the password is changed; that change needs CSRF too
    r = s.request("GET", "/api/v1/flows")
    assert r.status == 403 and r.code() == "password_change_required", r
    pw = new_password()
    change = {"old": ctx["otp"], "new": pw}
    r = s.request("POST", "/api/v1/auth/password", body=change, csrf=None)
    assert r.status == 403 and r.code() == "csrf", r
    s.ok("POST", "/api/v1/auth/password", body=change)
    assert s.ok("GET", "/api/v1/auth/me").json()["must_change"] is False

    current = s.ok("GET", "/api/v1/flows").json()
    changed = json.loads(json.dumps(current))
    for c in changed["connectors"]:
        if c["name"] == "inbox":
            c["config"]["poll_ms"] = 777
    assert changed != current
    other = Session(api, "olga", pw)        # a second, valid session
    assert other.csrf != s.csrf
    for label, tok in [("missing", None), ("empty", ""),
                       ("another session's", other.csrf),
                       ("random", secrets.token_urlsafe(32)),
                       ("cut", s.csrf[:-1])]:
        r = s.request("PUT", "/api/v1/flows", body=changed, csrf=tok)
        assert r.status == 403 and r.code() == "csrf", (label, r)
        assert s.ok("GET", "/api/v1/flows").json() == current, (
            f"the flow changed although the CSRF token was {label}")
    # a cookie-less request is not authenticated by a CSRF token alone
    r = api.request("PUT", "/api/v1/flows", body=changed, csrf=s.csrf)
    assert r.status == 401, r
    # the right token: accepted
    s.ok("PUT", "/api/v1/flows", body=changed)
    got = s.ok("GET", "/api/v1/flows").json()
    inbox = [c for c in got["connectors"] if c["name"] == "inbox"][0]
    assert inbox["config"]["poll_ms"] == 777, got
    # other state-changing verbs need it too (DELETE of one's own session)
    r = s.request("DELETE", f"/api/v1/auth/sessions/{other.handle}",
                  csrf=None)
    assert r.status == 403 and r.code() == "csrf", r
    other.ok("GET", "/api/v1/auth/me")
    s.ok("DELETE", f"/api/v1/auth/sessions/{other.handle}")
    assert other.request("GET", "/api/v1/auth/me").status == 401
    # API tokens carry no cookie: CSRF does not apply to them
    api.ok("PUT", "/api/v1/flows", body=current, token=ctx["token"])
    srv.check_alive()


# ---- R13: session timeouts -----------------------------------------------------------------


def age_session(data, handle, column, ms):
    """Move a session's timestamp `column` back by ms in DATA/wharf.db,
    while the server runs. Returns the old value."""
    db = sqlite3.connect(str(Path(data) / "wharf.db"), timeout=30)
    try:
        (old,) = db.execute(f"SELECT {column} FROM sessions WHERE "
                            "id_hash = ?", (handle,)).fetchone()
        now_ms = time.time() * 1000
        assert abs(now_ms - old) < 10 * 60 * 1000, (
            f"{column} {old} is not milliseconds of now ({now_ms:.0f})")
        db.execute(f"UPDATE sessions SET {column} = ? WHERE id_hash = ?",
                   (old - ms, handle))
        db.commit()
        return old
    finally:
        db.close()


def test_r13_expired_session_is_401(wharf, served):
    ctx = {}

    def before(data):
        ctx["pw"] = cli_user(wharf, data, "ines", "operator", new_password())
        ctx["admin"] = cli_token(wharf, data, "admin")[0]
    srv, data, api, _ = served(before=before)
    a, b, c = (Session(api, "ines", ctx["pw"]) for _ in range(3))
    for s in (a, b, c):
        assert s.ok("GET", "/api/v1/auth/me").json()["name"] == "ines"

    # default idle timeout (15 min): 5 minutes idle is fine
    age_session(data, a.handle, "last_seen_at", 5 * 60 * 1000)
    a.ok("GET", "/api/v1/auth/me")

    r = api.ok("PUT", "/api/v1/settings/session_idle_minutes",
               body={"value": "1"}, token=ctx["admin"])
    assert r.json() == {"key": "session_idle_minutes", "value": "1"}
    settings = api.ok("GET", "/api/v1/settings",
                      token=ctx["admin"]).json()["settings"]
    assert settings["session_idle_minutes"] == "1", settings

    # now 2 minutes idle is too long: 401, and it stays dead
    age_session(data, a.handle, "last_seen_at", 2 * 60 * 1000)
    r = a.request("GET", "/api/v1/auth/me")
    assert r.status == 401 and r.code() == "unauthorized", r
    assert a.request("GET", "/api/v1/flows").status == 401
    # a session in use is not affected
    b.ok("GET", "/api/v1/auth/me")

    # absolute timeout: busy but too old
    api.ok("PUT", "/api/v1/settings/session_absolute_minutes",
           body={"value": "2"}, token=ctx["admin"])
    c.ok("GET", "/api/v1/auth/me")
    age_session(data, c.handle, "created_at", 3 * 60 * 1000)
    r = c.request("GET", "/api/v1/auth/me")
    assert r.status == 401 and r.code() == "unauthorized", r
    b.ok("GET", "/api/v1/auth/me")
    # the expired sessions are no longer listed
    handles = {x["handle"] for x in
               b.ok("GET", "/api/v1/auth/sessions").json()["sessions"]}
    assert b.handle in handles and not handles & {a.handle, c.handle}, handles
    srv.check_alive()


# ---- R04: revoked tokens ---------------------------------------------------------------------


def test_r04_revoked_token_is_401(wharf, served):
    ctx = {}

    def before(data):
        ctx["admin"], ctx["admin_id"] = cli_token(wharf, data, "admin")
        ctx["op"], ctx["op_id"] = cli_token(wharf, data, "operator", "ci")
        ctx["op2"], ctx["op2_id"] = cli_token(wharf, data, "operator", "ci2")
    srv, data, api, _ = served(before=before)

    for t in (ctx["op"], ctx["op2"]):
        api.ok("GET", "/api/v1/messages", token=t)
        assert api.ok("GET", "/api/v1/auth/me",
                      token=t).json()["kind"] == "token"
    # through the API
    api.ok("DELETE", f"/api/v1/tokens/{ctx['op_id']}", token=ctx["admin"])
    for path in ("/api/v1/messages", "/api/v1/auth/me", "/api/v1/flows"):
        r = api.request("GET", path, token=ctx["op"])
        assert r.status == 401 and r.code() == "unauthorized", r
    r = api.request("DELETE", f"/api/v1/tokens/{ctx['op_id']}",
                    token=ctx["admin"])
    assert r.status == 404, r       # revoked once; not a live token any more
    listed = {t["id"]: t for t in api.ok("GET", "/api/v1/tokens",
                                        token=ctx["admin"]).json()["tokens"]}
    assert listed[ctx["op_id"]]["revoked_at"] > 0
    assert listed[ctx["op2_id"]]["revoked_at"] == 0
    assert listed[ctx["op2_id"]]["last_used_at"] > 0
    # the other token still works; revoked by the CLI while serving
    api.ok("GET", "/api/v1/messages", token=ctx["op2"])
    wharf.ok("token", "revoke", ctx["op2_id"], "--data", data)
    r = api.request("GET", "/api/v1/messages", token=ctx["op2"])
    assert r.status == 401, r
    api.ok("GET", "/api/v1/messages", token=ctx["admin"])
    revokes = [(e["actor"], e["target"]) for e in audit_entries(wharf, data)
               if e["action"] == "token.revoke"]
    assert (f"token:{ctx['admin_id']}", ctx["op_id"]) in revokes, revokes
    assert ("cli", ctx["op2_id"]) in revokes, revokes
    srv.check_alive()


def test_m8_api_update_of_unknown_user_is_404(wharf, served):
    ctx = {}

    def before(data):
        ctx["admin"] = cli_token(wharf, data, "admin")[0]
    srv, data, api, _ = served(before=before)
    t = ctx["admin"]
    api.ok("GET", "/api/v1/users/admin", token=t)
    for body in ({"role": "viewer"}, {"disabled": True}):
        r = api.request("PUT", "/api/v1/users/ghost", body=body, token=t)
        assert r.status == 404, (body, r)
    # a PUT that names no known field must not claim to have updated a
    # user that does not exist
    for body in ({}, {"rol": "viewer"}):
        r = api.request("PUT", "/api/v1/users/ghost", body=body, token=t)
        assert r.status == 404, (body, r)
    assert [u["name"] for u in api.ok("GET", "/api/v1/users",
                                      token=t).json()["users"]] == ["admin"]
    srv.check_alive()


# ---- R13: TOTP with oathtool -------------------------------------------------------------------


def wrong_code(secret, step):
    """A 6-digit code valid for no step near `step`."""
    near = {oathtool(secret, (step + d) * 30) for d in range(-2, 4)}
    for c in ("000000", "123456", "999999", "424242"):
        if c not in near:
            return c
    raise AssertionError("unlucky codes")


def admin_mfa_enrolment(wharf, data, api):
    """The first administrator's first login through the API: one-time
    password, password change, TOTP enrolment and confirmation. Returns a
    dict of what it learnt (secrets included) and the session."""
    otp = admin_otp(wharf, data)
    s = Session(api, "admin", otp)
    assert s.me["must_change"] is True and s.me["mfa_required"] is True
    r = s.request("GET", "/api/v1/flows")
    assert r.status == 403 and r.code() == "password_change_required", r
    pw = new_password()
    s.ok("POST", "/api/v1/auth/password", body={"old": otp, "new": pw})
    r = s.request("GET", "/api/v1/flows")
    assert r.status == 403 and r.code() == "mfa_required", r

    r = s.ok("POST", "/api/v1/auth/mfa/enroll")
    uri = r.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Wharf:admin?"), uri
    m = SECRET_RE.search(uri)
    assert m, uri
    secret = m.group(1)
    assert len(secret) >= 32, secret            # >= 160 bits
    r.legit |= {uri, secret}

    now = int(time.time())
    step = now // 30
    r = s.request("POST", "/api/v1/auth/mfa/confirm",
                  body={"code": wrong_code(secret, step)})
    assert r.status == 401, r
    r = s.ok("POST", "/api/v1/auth/mfa/confirm",
             body={"code": oathtool(secret, now)})
    codes = [c for c in r.json()["recovery_codes"].split() if c]
    assert len(codes) == 10 and len(set(codes)) == 10, codes
    r.legit |= set(codes)
    me = s.ok("GET", "/api/v1/auth/me").json()
    assert me["mfa_done"] is True, me
    s.ok("GET", "/api/v1/flows")            # no longer limited
    return {"otp": otp, "password": pw, "secret": secret, "step": step,
            "codes": codes, "session": s}


def test_r13_mfa_via_api_with_oathtool(wharf, served):
    srv, data, api, _ = served()
    e = admin_mfa_enrolment(wharf, data, api)
    secret, pw, codes = e["secret"], e["password"], e["codes"]
    s = e["session"]
    s.ok("POST", "/api/v1/auth/logout")
    r = s.request("GET", "/api/v1/auth/me")
    assert r.status == 401, r

    # password only: the second factor is asked for, no session given
    s2 = Session(api, "admin", pw, status=401)
    assert s2.login.code() == "mfa_needed", s2.login
    assert s2.login.header("Set-Cookie") is None
    # wrong code, wrong password with a right code
    nxt = oathtool(secret, (e["step"] + 1) * 30)
    r = Session(api, "admin", pw, code=wrong_code(secret, e["step"]),
                status=401).login
    assert r.code() == "unauthorized" and r.header("Set-Cookie") is None, r
    Session(api, "admin", pw + "x", code=nxt, status=401)
    # the confirming step's code is used up
    Session(api, "admin", pw, code=oathtool(secret, e["step"] * 30),
            status=401)
    # the next step's code (within the +-1 step window): accepted once
    ok = Session(api, "admin", pw, code=nxt)
    assert ok.me["mfa_done"] is True and ok.me["role"] == "admin"
    ok.ok("GET", "/api/v1/users")
    r = Session(api, "admin", pw, code=nxt, status=401).login
    assert r.code() == "unauthorized", r        # reused code refused
    # a recovery code: once
    rec = Session(api, "admin", pw, code=codes[0])
    assert rec.me["mfa_done"] is True
    rec.ok("GET", "/api/v1/settings")
    Session(api, "admin", pw, code=codes[0], status=401)
    # another recovery code still works; the first session is still valid
    Session(api, "admin", pw, code=codes[1])
    ok.ok("GET", "/api/v1/auth/me")

    actions = [(x["action"], x["target"], x["address"])
               for x in audit_entries(wharf, data)]
    for want in [("mfa.enroll", "admin", "127.0.0.1"),
                 ("mfa.recovery_used", "admin", "127.0.0.1"),
                 ("login.failure", "admin", "127.0.0.1"),
                 ("login.success", "admin", "127.0.0.1")]:
        assert any(a == want[0] and t == want[1] and ad == want[2]
                   for a, t, ad in actions), (want, actions)
    srv.check_alive()
    # issue 3 audits "logouts"; auth.h documents auth_logout as "audited as
    # logout". POST /auth/logout must leave that entry, distinguishable
    # from revoking a session (session.revoke).
    assert any(a == "logout" and ad == "127.0.0.1"
               for a, _, ad in actions), (
        "POST /api/v1/auth/logout left no 'logout' audit entry: "
        f"{[x for x in actions if x[0] in ('logout', 'session.revoke')]}")


# ---- R22: brute force ---------------------------------------------------------------------------


def test_r22_brute_force_ban_other_address_unaffected(wharf, served):
    ctx = {}

    def before(data):
        ctx["pw"] = cli_user(wharf, data, "bruno", "operator", new_password())
        ctx["token"] = cli_token(wharf, data, "viewer")[0]
    srv, data, api, _ = served(before=before)
    other = api.from_address("127.0.0.2")
    # both addresses are served before
    api.ok("GET", "/api/v1/auth/me", token=ctx["token"])
    other.ok("GET", "/api/v1/auth/me", token=ctx["token"])

    statuses = []
    meanwhile = None
    for i in range(50):
        r = api.request("POST", "/api/v1/auth/login",
                        body={"user": "bruno", "password": f"wrong-{i}-pw!"})
        statuses.append(r.status)
        if meanwhile is None and r.status in (None, 429):
            # the ban is on: another address logs in meanwhile
            meanwhile = Session(other, "bruno", ctx["pw"])
            other.ok("GET", "/api/v1/auth/me", token=ctx["token"])
    assert 200 not in statuses, statuses
    first_refused = next((i for i, s in enumerate(statuses)
                          if s in (None, 429)), None)
    assert first_refused is not None, (
        f"50 wrong passwords and no ban: {statuses}")
    assert 3 <= first_refused <= 20, statuses
    assert all(s == 401 for s in statuses[:first_refused]), statuses
    assert all(s in (None, 429) for s in statuses[first_refused:]), statuses
    assert meanwhile is not None and meanwhile.me["name"] == "bruno"

    # still banned (even with valid credentials), the other address is not
    r = api.request("GET", "/api/v1/auth/me", token=ctx["token"])
    assert r.status in (None, 429), r
    r = api.request("POST", "/api/v1/auth/login",
                    body={"user": "bruno", "password": ctx["pw"]})
    assert r.status in (None, 429), r
    Session(other, "bruno", ctx["pw"])
    meanwhile.ok("GET", "/api/v1/flows")
    bans = [e for e in audit_entries(wharf, data) if e["action"] == "ban"]
    assert [(b["address"], b["target"]) for b in bans] == [
        ("127.0.0.1", "127.0.0.1")], bans
    failures = [e for e in audit_entries(wharf, data)
                if e["action"] == "login.failure"]
    assert len(failures) == first_refused, (first_refused, len(failures))
    assert {f["address"] for f in failures} == {"127.0.0.1"}
    srv.check_alive()


# ---- R06: no secret in logs, errors, audit --------------------------------------------------------


def secret_forms(label, value):
    """(what, needle, case_insensitive) for every form a secret could leak
    in."""
    forms = [(label, value, False)]
    if label.startswith("recovery"):
        forms.append((label + " (no dashes)", value.replace("-", ""), True))
        forms.append((label, value, True))
    if label == "totp secret":
        forms.append((label, value, True))
        raw = base32_decode(value)
        forms.append((label + " (hex)", raw.hex(), True))
    if value.startswith("wharf_"):
        forms.append((label + " (without prefix)", value[6:], False))
    return forms


def base32_decode(s):
    return base64.b32decode(s + "=" * (-len(s) % 8))


def test_r06_no_secret_in_logs_errors_audit(wharf, served, tmp_path):
    doc, _, _ = simple_flow(tmp_path)
    ctx = {}

    def before(data):
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        ctx["op_otp"] = cli_user(wharf, data, "otto", "operator")
        ctx["cli_token"] = cli_token(wharf, data, "admin")[0]
    srv, data, api, _ = served("--log-level", "trace", before=before)
    assert "log_level = trace" in (data / "wharf.conf").read_text()
    found = {"op otp": ctx["op_otp"], "cli token": ctx["cli_token"]}

    # an administrator: one-time password, new password, TOTP, recovery
    e = admin_mfa_enrolment(wharf, data, api)
    found.update({"admin otp": e["otp"], "admin password": e["password"],
                  "totp secret": e["secret"]})
    for i, c in enumerate(e["codes"]):
        found[f"recovery code {i}"] = c
    sessions = [e["session"]]
    admin = e["session"]
    # a token made through the API, used, and revoked
    r = admin.ok("POST", "/api/v1/tokens", status=201,
                 body={"role": "viewer", "name": "r06", "days": 1})
    tok = r.json()["token"]
    r.legit.add(tok)
    found["api token"] = tok
    api.ok("GET", "/api/v1/messages", token=tok)
    admin.ok("DELETE", f"/api/v1/tokens/{r.json()['id']}")
    assert api.request("GET", "/api/v1/messages", token=tok).status == 401
    # a user made through the API: its one-time password
    r = admin.ok("POST", "/api/v1/users", status=201,
                 body={"name": "uma", "role": "viewer"})
    found["uma otp"] = r.json()["one_time_password"]
    r.legit.add(found["uma otp"])
    # an operator's first login and password change (the CSRF flow)
    s = Session(api, "otto", ctx["op_otp"])
    sessions.append(s)
    op_pw = new_password()
    found["op password"] = op_pw
    s.request("POST", "/api/v1/auth/password", csrf=None,
              body={"old": ctx["op_otp"], "new": op_pw})        # 403 csrf
    s.ok("POST", "/api/v1/auth/password",
         body={"old": ctx["op_otp"], "new": op_pw})
    s.ok("PUT", "/api/v1/flows", body=s.ok("GET", "/api/v1/flows").json())
    # a wrong password, a wrong old password, a policy refusal, a bad
    # cookie, a bad bearer token and a login with a TOTP code
    wrong = f"Wrong-{secrets.token_hex(6)}-pass"
    found["wrong password"] = wrong
    Session(api, "otto", wrong, status=401)
    r = s.request("POST", "/api/v1/auth/password",
                  body={"old": wrong, "new": new_password()})
    assert r.status == 401, r
    weak = "otto-" + secrets.token_hex(6)             # contains the name
    found["refused password"] = weak
    r = s.request("POST", "/api/v1/auth/password",
                  body={"old": op_pw, "new": weak})
    assert r.status == 400, r
    fake_cookie = secrets.token_urlsafe(32)
    found["forged cookie"] = fake_cookie
    assert api.request("GET", "/api/v1/auth/me",
                       cookie=fake_cookie).status == 401
    fake_token = "wharf_" + secrets.token_urlsafe(32)
    found["forged token"] = fake_token
    assert api.request("GET", "/api/v1/auth/me",
                       token=fake_token).status == 401
    code = oathtool(e["secret"], (e["step"] + 1) * 30)
    sessions.append(Session(api, "admin", e["password"], code=code))
    sessions[-1].ok("POST", "/api/v1/auth/logout")
    for i, x in enumerate(sessions):
        found[f"cookie {i}"] = x.cookie
        found[f"csrf {i}"] = x.csrf
    srv.stop()

    # where to look
    places = []
    logs = sorted(p for p in (data / "logs").rglob("*") if p.is_file())
    assert logs, "no log files"
    log_text = b"".join(p.read_bytes() for p in logs)
    # trace level really logged the requests (the scan is not vacuous)
    assert b"POST /api/v1/auth/login" in log_text, log_text[-2000:]
    for p in logs:
        places.append((f"log {p.relative_to(data)}", p.read_bytes(), None))
    places.append(("server stdout", srv.stdout().encode(), None))
    places.append(("server stderr", srv.stderr().encode(), None))
    audit = wharf.ok("audit", "list", "--json", "--limit", "100000",
                     "--data", data).stdout
    assert '"login.failure"' in audit and '"mfa.enroll"' in audit
    places.append(("audit trail", audit.encode(), None))
    for i, r in enumerate(api.log):
        head = "".join(f"{k}: {v}\n" for k, v in r.headers
                       if not (k.lower() == "set-cookie" and r.legit))
        places.append((f"response {i} {r.method} {r.path} {r.status}",
                       head.encode() + r.body, r.legit))
    # and, for good measure, the stored state (hashes and sealed seeds
    # only); the keystore is the master key's file, not scanned
    for p in sorted(data.rglob("*")):
        if p.is_file() and p.name != "keystore" and "logs" not in p.parts:
            places.append((f"stored {p.relative_to(data)}", p.read_bytes(),
                           None))
    assert len(api.log) > 20

    leaks = []
    for label, value in found.items():
        assert value and len(value) >= 12, (label, value)
        for what, needle, nocase in secret_forms(label, value):
            nb = needle.encode() if isinstance(needle, str) else needle
            for where, blob, legit in places:
                if legit and value in legit:
                    continue
                hay = blob.lower() if nocase else blob
                if (nb.lower() if nocase else nb) in hay:
                    leaks.append(f"{what} in {where}")
    assert not leaks, "secrets leaked:\n" + "\n".join(sorted(set(leaks)))


# ---- M8: messages through the API ------------------------------------------------------------------


def payload_files(data):
    return {p for p in (data / "payloads").rglob("*") if p.is_file()}


def test_m8_api_messages_flow(wharf, served, tmp_path):
    doc, _, out = simple_flow(tmp_path)
    ctx = {}

    def before(data):
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        ctx["op"], ctx["op_id"] = cli_token(wharf, data, "operator")
        ctx["admin"], ctx["admin_id"] = cli_token(wharf, data, "admin")
        ctx["viewer"] = cli_token(wharf, data, "viewer")[0]
    srv, data, api, _ = served(before=before)
    op, adm = ctx["op"], ctx["admin"]
    original = b"UNB+UNOC:3+SENDER+RECEIVER'\n" + secrets.token_bytes(70000)
    f = tmp_path / "order-7.edi"
    f.write_bytes(original)
    before_files = payload_files(data)
    msgid = wharf.send(data, "inbox", f)
    new_files = payload_files(data) - before_files
    assert len(new_files) == 1, new_files
    (pfile,) = new_files
    assert original[:40] not in pfile.read_bytes()      # encrypted at rest

    # list, filtered by state, with paging
    def listed(state):
        r = api.ok("GET", f"/api/v1/messages?state={state}&limit=10",
                   token=op)
        return [m for m in r.json()["messages"] if m["id"] == msgid]
    (m,) = wait_until(lambda: listed("sent"), timeout=60,
                      desc="the message to be sent")
    assert m["filename"] == "order-7.edi" and m["size"] == len(original)
    assert m["sha256"] == hashlib.sha256(original).hexdigest()
    assert m["source"] == "inbox" and m["state"] == "sent"
    assert listed("queued") == [] and listed("failed") == []
    r = api.request("GET", "/api/v1/messages?state=bogus", token=op)
    assert r.status == 400, r
    page = api.ok("GET", "/api/v1/messages?limit=1&offset=1",
                  token=op).json()
    assert page["messages"] == [] and page["limit"] == 1
    assert page["offset"] == 1

    # detail: hops and events
    d = api.ok("GET", f"/api/v1/messages/{msgid}", token=op).json()
    assert d["id"] == msgid and d["state"] == "sent"
    hops = {h["connector"]: h for h in d["hops"]}
    assert hops["outbox"]["state"] == "sent", hops
    assert hops["outbox"]["attempts"] >= 1
    assert d["events"] and all({"at", "level", "text"} <= set(e)
                               for e in d["events"])
    n_events = len(d["events"])
    delivered = sorted(out.iterdir())
    assert [p.read_bytes() for p in delivered] == [original]

    # the payload, byte for byte (and not for a viewer)
    r = api.ok("GET", f"/api/v1/messages/{msgid}/payload", token=op)
    assert r.header("Content-Type") == "application/octet-stream"
    assert r.body == original
    r = api.request("GET", f"/api/v1/messages/{msgid}/payload",
                    token=ctx["viewer"])
    assert r.status == 403, r

    # resend: requeued, delivered again, and the events say so (the
    # partner "lost" the first copy: the resend writes it again)
    delivered[0].unlink()
    r = api.ok("POST", f"/api/v1/messages/{msgid}/resend", token=op)
    assert r.json()["status"] == "requeued" and r.json()["hops"] >= 1

    def resent():
        x = api.ok("GET", f"/api/v1/messages/{msgid}", token=op).json()
        return x if x["state"] == "sent" and any(out.iterdir()) else None
    d = wait_until(resent, timeout=60, desc="the resent message delivered")
    texts = [e["text"] for e in d["events"]]
    assert len(d["events"]) > n_events
    assert any("resend" in t and f"token:{ctx['op_id']}" in t
               for t in texts), texts
    assert [p.read_bytes() for p in out.iterdir()] == [original]

    # erase: an operator may not; an administrator may
    r = api.request("POST", f"/api/v1/messages/{msgid}/erase", token=op)
    assert r.status == 403, r
    assert pfile.exists()
    api.ok("POST", f"/api/v1/messages/{msgid}/erase", token=adm)
    assert not pfile.exists(), "the payload file is still in DATA/payloads"
    assert payload_files(data) == before_files
    r = api.request("GET", f"/api/v1/messages/{msgid}/payload", token=op)
    assert r.status == 410 and r.code() == "erased", r
    d = api.ok("GET", f"/api/v1/messages/{msgid}", token=op).json()
    assert d["state"] == "erased", d
    assert [m["id"] for m in api.ok(
        "GET", "/api/v1/messages?state=erased", token=op).json()[
        "messages"]] == [msgid]
    r = api.request("GET", "/api/v1/messages/not-an-id", token=op)
    assert r.status == 404, r

    entries = audit_entries(wharf, data)
    got = {(e["action"], e["actor"], e["target"]) for e in entries}
    for want in [("payload.download", f"token:{ctx['op_id']}", msgid),
                 ("message.resend", f"token:{ctx['op_id']}", msgid),
                 ("message.erase", f"token:{ctx['admin_id']}", msgid)]:
        assert want in got, (want, sorted(got))
    # the refused download and erasure left no audit entry of their own
    assert sum(1 for a, _, t in got if a == "message.erase") == 1
    srv.check_alive()


# ---- R18: the audit chain through the API -------------------------------------------------------------


def test_r18_audit_via_api(wharf, served, tmp_path):
    doc, _, out = simple_flow(tmp_path)
    ctx = {}

    def before(data):
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        ctx["pw"] = cli_user(wharf, data, "ana", "auditor", new_password())
        ctx["admin"], ctx["admin_id"] = cli_token(wharf, data, "admin")
        ctx["op"] = cli_token(wharf, data, "operator")[0]
    srv, data, api, _ = served(before=before)
    adm = ctx["admin"]
    # the actions of the tests above, in short
    f = tmp_path / "a.edi"
    f.write_bytes(b"hello audit\n")
    msgid = wharf.send(data, "inbox", f)
    wait_until(lambda: any(out.iterdir()), timeout=60, desc="delivery")
    api.ok("GET", f"/api/v1/messages/{msgid}/payload", token=ctx["op"])
    api.ok("POST", f"/api/v1/messages/{msgid}/resend", token=ctx["op"])
    api.ok("POST", f"/api/v1/messages/{msgid}/erase", token=adm)
    Session(api, "ana", "not-the-password-1", status=401)
    s = Session(api, "ana", ctx["pw"])
    r = api.ok("POST", "/api/v1/tokens", status=201, token=adm,
               body={"role": "viewer"})
    api.ok("DELETE", f"/api/v1/tokens/{r.json()['id']}", token=adm)
    api.ok("PUT", "/api/v1/settings/session_idle_minutes",
           body={"value": "30"}, token=adm)
    api.ok("PUT", "/api/v1/flows", token=ctx["op"],
           body=api.ok("GET", "/api/v1/flows", token=adm).json())
    s.ok("POST", "/api/v1/auth/logout")

    # an auditor's token and the administrator both read the verdict
    v = api.ok("GET", "/api/v1/audit/verify", token=adm).json()
    assert v["intact"] is True, v
    entries = api.ok("GET", "/api/v1/audit?limit=1000",
                     token=adm).json()["entries"]
    assert v["entries"] == len(entries) >= 12, (v, len(entries))
    actions = {e["action"] for e in entries}
    for a in ("login.failure", "login.success", "token.create",
              "token.revoke", "settings.change", "flow.import",
              "payload.download", "message.resend", "message.erase"):
        assert a in actions, (a, sorted(actions))
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # paging: after=
    tail = api.ok("GET", f"/api/v1/audit?after={seqs[-3]}",
                  token=adm).json()["entries"]
    assert [e["seq"] for e in tail] == seqs[-2:]
    r = api.request("GET", "/api/v1/audit/verify", token=ctx["op"])
    assert r.status == 403, r

    # the verdict is not constant: edit one entry and it names it
    victim = next(e for e in entries if e["action"] == "message.erase")
    db = sqlite3.connect(str(data / "wharf.db"), timeout=30)
    try:
        db.execute("UPDATE audit SET actor = 'user:nobody' WHERE seq = ?",
                   (victim["seq"],))
        db.commit()
    finally:
        db.close()
    v = api.ok("GET", "/api/v1/audit/verify", token=adm).json()
    assert v["intact"] is False, v
    assert v["first_bad"] == victim["seq"], (v, victim["seq"])
    assert v["problem"], v
    p = wharf("audit", "verify", "--data", data)
    assert p.returncode != 0, p.stdout
    srv.check_alive()
