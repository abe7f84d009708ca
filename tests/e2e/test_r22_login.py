"""
R22 (attack-surface reduction) at the login and the API's front door, seen
from outside against a running `wharf serve` (issue items 4 and 7):

  - memory: 40 concurrent wrong logins from 8 addresses (each under the
    ban threshold) cannot add up Argon2id's 64 MiB each: the server's peak
    RSS stays under login_concurrency x 64 MiB plus a margin, every answer
    is 401 or 503 with Retry-After, and the real administrator still logs
    in meanwhile (retrying a 503). The bound is derived from wharf.conf,
    never a time;
  - a per-account throttle: login_throttle_after failures of one user name
    from different addresses lock that name (429 throttled, Retry-After,
    audited), for unknown names alike, while other names still log in;
  - stale credentials (a revoked or expired token, a logged-out session, a
    token of a disabled owner) answer 401 but do not get a legitimate
    poller's address banned; forged ones still do;
  - R13 login CSRF: a login or a cookie session's write from another
    Origin is refused (403 cross_origin), the listener's own origin and no
    Origin (programs) are not;
  - R06: a malformed JSON body never comes back in the error (jansson's
    own error text quotes the input, which may be a password).

The memory test runs the release build (build/release/wharf or
$WHARF_RELEASE_BIN), as test_m4_as2_large.py does: the ASan build's
quarantine of freed blocks (256 MiB) keeps freed Argon2id blocks resident.
"""
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, Server, new_data_dir, tune_conf
from test_r14_api import (Api, Session, admin_otp, audit_entries, cli_token,
                          cli_user, new_password, served)  # noqa: F401

ARGON2_MIB = 64


def release_bin():
    b = Path(os.environ.get("WHARF_RELEASE_BIN") or
             REPO / "build" / "release" / "wharf")
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail(f"release binary {b} not found: run `make release` or "
                    "set WHARF_RELEASE_BIN", pytrace=False)
    return b


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


# ---- memory: concurrent password checks are bounded --------------------------------


def test_r22_concurrent_wrong_logins_memory_bounded(wharf, tmp_path):
    limit = 2
    data = new_data_dir(wharf, tmp_path / "data", login_concurrency=limit,
                        login_wait_ms=2000)
    otp = admin_otp(wharf, data)
    outdir = tmp_path / "server-output"
    outdir.mkdir()
    srv = Server(release_bin(), data, outdir, 0)
    try:
        admin_port, _ = srv.wait_listening()
        api = Api(admin_port)
        api.ok("GET", "/api/v1/auth/me", status=401)    # warm: TLS, DB
        base_kib = vm_hwm_kib(srv.pid)

        answers, lock = [], threading.Lock()

        def attacker(addr, i):
            a = api.from_address(addr)
            r = a.request("POST", "/api/v1/auth/login",
                          body={"user": f"nobody-{i}",
                                "password": f"wrong-password-{i}"})
            with lock:
                answers.append(r)

        admin_login = {}

        def real_admin():
            # the administrator logs in meanwhile; a 503 says "try again"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                r = api.from_address("127.0.0.20").request(
                    "POST", "/api/v1/auth/login",
                    body={"user": "admin", "password": otp})
                admin_login.setdefault("tries", []).append(r.status)
                if r.status != 503:
                    admin_login["last"] = r
                    return
                time.sleep(0.2)

        threads = [threading.Thread(target=attacker,
                                    args=(f"127.0.0.{2 + i % 8}", i))
                   for i in range(40)]
        threads.insert(20, threading.Thread(target=real_admin))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a client hung"
        srv.check_alive()

        assert len(answers) == 40
        for r in answers:
            assert r.status in (401, 503), r
            if r.status == 503:
                assert r.code() == "busy", r
                assert int(r.header("Retry-After")) >= 1, r
        assert admin_login.get("last") is not None, admin_login
        assert admin_login["last"].status == 200, admin_login
        assert admin_login["last"].json()["name"] == "admin"

        peak_kib = vm_hwm_kib(srv.pid)
        bound_kib = base_kib + limit * ARGON2_MIB * 1024 + 48 * 1024
        statuses = sorted(r.status for r in answers)
        print(f"VmHWM {peak_kib // 1024} MiB (base {base_kib // 1024} MiB, "
              f"bound {bound_kib // 1024} MiB); answers {statuses}; admin "
              f"tries {admin_login['tries']}")
        assert peak_kib <= bound_kib, (
            f"peak RSS {peak_kib // 1024} MiB over the bound "
            f"{bound_kib // 1024} MiB (login_concurrency {limit} x "
            f"{ARGON2_MIB} MiB + 48 MiB over the {base_kib // 1024} MiB "
            "at start)")
        srv.stop()
    finally:
        srv.force_cleanup()


# ---- the per-account throttle ---------------------------------------------------------


def no_digits(s):
    return re.sub(r"\d+", "N", s)


def test_r22_account_throttle_across_addresses(wharf, served):
    ctx = {}

    def before(data):
        tune_conf(data, login_throttle_after=5, login_throttle_seconds=60)
        ctx["pw"] = cli_user(wharf, data, "bruno", "operator", new_password())
        ctx["pw2"] = cli_user(wharf, data, "carla", "viewer", new_password())
    srv, data, api, _ = served(before=before)

    # 5 wrong passwords for bruno, each from another address: none of
    # them is near its ban threshold (10)
    for i in range(5):
        r = api.from_address(f"127.0.0.{10 + i}").request(
            "POST", "/api/v1/auth/login",
            body={"user": "bruno", "password": f"wrong-{i}-password"})
        assert r.status == 401, r
    # the name is locked now, whoever asks, even with the right password
    r = api.from_address("127.0.0.30").request(
        "POST", "/api/v1/auth/login",
        body={"user": "bruno", "password": ctx["pw"]})
    assert r.status == 429 and r.code() == "throttled", r
    assert 1 <= int(r.header("Retry-After")) <= 60, r.headers
    assert r.header("Set-Cookie") is None
    known = r
    # other names are not affected, from the same address
    Session(api.from_address("127.0.0.30"), "carla", ctx["pw2"])
    # an unknown name is throttled the same way: the answer does not tell
    for i in range(5):
        r = api.from_address(f"127.0.0.{40 + i}").request(
            "POST", "/api/v1/auth/login",
            body={"user": "nobody", "password": f"guess-{i}-password"})
        assert r.status == 401, r
    unknown = api.from_address("127.0.0.31").request(
        "POST", "/api/v1/auth/login",
        body={"user": "nobody", "password": "guess-5-password"})
    assert unknown.status == 429, unknown
    assert no_digits(unknown.json()["error"]["message"]) == no_digits(
        known.json()["error"]["message"])
    entries = audit_entries(wharf, data)
    locks = [(e["target"], e["detail"]) for e in entries
             if e["action"] == "login.throttle"]
    assert ("bruno", "failures=5 seconds=60 level=1") in locks, locks
    assert ("nobody", "failures=5 seconds=60 level=1") in locks, locks
    refused = [e for e in entries if e["action"] == "login.failure" and
               e["detail"] == "account throttled"]
    assert {e["target"] for e in refused} == {"bruno", "nobody"}, refused
    srv.check_alive()


# ---- stale credentials do not ban ---------------------------------------------------------


def test_r22_stale_credentials_do_not_ban_the_poller(wharf, served):
    ctx = {}

    def before(data):
        ctx["root"] = cli_token(wharf, data, "admin", "root")[0]
        ctx["revoked"], ctx["revoked_id"] = cli_token(wharf, data, "viewer",
                                                      "poller")
        ctx["expired"], ctx["expired_id"] = cli_token(wharf, data, "viewer",
                                                      "old-poller")
        ctx["pw"] = cli_user(wharf, data, "olga", "operator", new_password())
        ctx["olgas"] = cli_token(wharf, data, "viewer", "olgas", "olga")[0]
    srv, data, api, _ = served(before=before)
    root = ctx["root"]
    api.ok("DELETE", f"/api/v1/tokens/{ctx['revoked_id']}", token=root)
    db = sqlite3.connect(str(Path(data) / "wharf.db"), timeout=30)
    db.execute("UPDATE tokens SET expires_at = ? WHERE id = ?",
               (int(time.time() * 1000) - 1000, ctx["expired_id"]))
    db.commit()
    db.close()
    s = Session(api, "olga", ctx["pw"])
    cookie = s.cookie
    s.ok("POST", "/api/v1/auth/logout")
    api.ok("PUT", "/api/v1/users/olga", body={"disabled": True}, token=root)

    # a poller keeps polling with what used to work: 401 every time, never
    # banned (the threshold is 10 failures)
    for i in range(50):
        for label, kw in (("revoked", {"token": ctx["revoked"]}),
                          ("expired", {"token": ctx["expired"]}),
                          ("owner disabled", {"token": ctx["olgas"]}),
                          ("logged out", {"cookie": cookie})):
            if i >= 15 and label != "revoked":
                continue
            r = api.request("GET", "/api/v1/messages", **kw)
            assert r.status == 401 and r.code() == "unauthorized", (
                label, i, r)
    api.ok("GET", "/api/v1/messages", token=root)
    bans = [e for e in audit_entries(wharf, data) if e["action"] == "ban"]
    assert bans == [], bans

    # a credential that was never valid still counts: 10 forged tokens
    # from another address ban it
    other = api.from_address("127.0.0.3")
    statuses = [other.request("GET", "/api/v1/messages",
                              token="wharf_" + "A" * 43).status
                for _ in range(11)]
    assert statuses[:10] == [401] * 10, statuses
    assert statuses[10] in (None, 429), statuses
    api.ok("GET", "/api/v1/messages", token=root)
    srv.check_alive()


# ---- R13: login CSRF ----------------------------------------------------------------------


def test_r13_login_and_session_writes_refuse_other_origins(wharf, served):
    ctx = {}

    def before(data):
        ctx["pw"] = cli_user(wharf, data, "olga", "operator", new_password())
    srv, data, api, _ = served(before=before)
    own = f"https://127.0.0.1:{api.port}"
    body = {"user": "olga", "password": ctx["pw"]}
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:"
                   f"{api.port}", "https://127.0.0.1:1"):
        r = api.request("POST", "/api/v1/auth/login", body=body,
                        headers={"Origin": origin})
        assert r.status == 403 and r.code() == "cross_origin", (origin, r)
        assert r.header("Set-Cookie") is None
    actions = {e["action"] for e in audit_entries(wharf, data)}
    assert not actions & {"login.success", "login.failure"}, actions
    # the listener's own origin and no Origin at all (programs) log in
    r = api.request("POST", "/api/v1/auth/login", body=body,
                    headers={"Origin": own})
    assert r.status == 200, r
    s = Session(api, "olga", ctx["pw"])
    # a session's write from another origin is refused even with the right
    # CSRF token; a read is not a write
    flows = s.ok("GET", "/api/v1/flows",
                 headers={"Origin": "https://evil.example"}).json()
    r = s.request("PUT", "/api/v1/flows", body=flows,
                  headers={"Origin": "https://evil.example"})
    assert r.status == 403 and r.code() == "cross_origin", r
    r = s.request("POST", "/api/v1/auth/logout",
                  headers={"Origin": "https://evil.example"})
    assert r.status == 403, r
    s.ok("GET", "/api/v1/auth/me")
    s.ok("PUT", "/api/v1/flows", body=flows, headers={"Origin": own})
    s.ok("POST", "/api/v1/auth/logout")
    srv.check_alive()


# ---- R06: errors do not echo the body ---------------------------------------------------


def test_r06_json_errors_do_not_echo_the_body(wharf, served):
    ctx = {}

    def before(data):
        ctx["root"] = cli_token(wharf, data, "admin", "root")[0]
    srv, data, api, _ = served(before=before)
    canary = "Canary-Pass-7f3a9c"
    bodies = [
        b'{"user": "admin", "password": "' + canary.encode(),   # cut
        b'{"user": "admin", "password": "' + canary.encode() + b'" x}',
        b'{"user": "admin", "password": ' + canary.encode() + b'}',
        b'{"password": "a", "password": "' + canary.encode() + b'"}',
        b'{"user": "admin", "password": "' + canary.encode() + b'\xff"}',
        b'{"user": "admin"} ' + canary.encode(),
    ]
    for b in bodies:
        r = api.request("POST", "/api/v1/auth/login", body=b)
        assert r.status == 400 and r.code() == "bad_json", (b, r)
        assert canary.encode() not in r.body, (b, r)
        assert re.search(r"line \d+, column \d+", r.json()["error"][
            "message"]), r
    for b in bodies:
        r = api.request("PUT", "/api/v1/flows", body=b, token=ctx["root"])
        assert r.status == 400 and canary.encode() not in r.body, (b, r)
    srv.check_alive()
