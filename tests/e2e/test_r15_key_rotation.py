"""
R15 key rotation end to end: `wharf key rotate` re-wraps EVERY sealed value
(not only payload headers) and is safe to kill -9 anywhere.

One data dir (A) holds every kind of secret the vault seals:
  - the AS2 profile key of A, trading with a second Wharf (B) both ways,
    signed and encrypted, with signed MDNs (as2_pair.py);
  - a webhook source with basic auth (its password file, sealed);
  - an SFTP destination with a private key (the real sshd of
    test_m5_sftp.py; the key opens only in the key process);
  - an http destination with OAuth 2.0 authorization code (the OAuth server
    of test_r08_oauth.py): its client secret, and the access and refresh
    tokens it obtained at run time (connector state);
  - people with TOTP (enrolled with Debian's oathtool) and the OIDC client
    secret (the identity provider of test_r17_oidc.py).
Each round starts A's serve and proves every one of them still works: all
connectors load (none "left out"), AS2 both ways with a signed MDN, the
webhook accepts its password, SFTP authenticates with its key, OAuth delivers with the
stored tokens (never authorizing again), a TOTP login and an OIDC login
succeed, and `wharf audit verify` is intact (the signed head anchor
survives rotation). Between rounds `wharf key rotate` runs: once to the
end; then killed (SIGKILL through the WHARF_FAULT test hook, util/fault.h)
after the new key is added, in the middle of the payloads, in the middle of
the sealed values and just before the old key is retired, each time resumed
by the next run; then a complete run finishes that rotation and one more
rotates again.
After every run the data dir is also read directly: every payload header
and every sealed blob names a key the keystore holds, and after a complete
rotation only the active one.

Needs root and sshd (like test_m5_sftp.py); on main the first completed
rotation leaves AS2, webhook and SFTP connectors out and TOTP logins fail.
"""
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from as2_pair import Side, flow_of, partner_of
from conftest import (assert_no_sanitizer_report, child_env, drop_file,
                      file_dest, file_source, listen_port, wait_until)
import test_m5_sftp
from test_m5_sftp import SSHD, Sshd, sftp_conn
from test_m6_http import basic, make_ca, make_server_cert, post, secret_file
from test_r08_oauth import OAuthServer, authorize
from test_r08_oauth import CLIENT_SECRET as OAUTH_SECRET
from test_r14_api import Api, Session, cli_token, cli_user, oathtool
from test_r17_oidc import IDP, make_ca_and_cert
from test_r17_oidc import login as oidc_login

pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or os.geteuid() != 0,
    reason="needs openssh-server (scripts/deps.sh test) and root")

OIDC_CLIENT = "wharf-console"
OIDC_SECRET = "idp-client-secret-for-tests-0123456789"
HOOK_PW = "hook-pw-" + secrets.token_hex(6)
ROUNDS = 8                  # baseline, 4 kills, 3 complete rotations
CONNECTORS = 9              # in A's flow, see a_flow()
ID_RE = r"[0-9a-f]{16}"


# ---- the partners ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd():
    """test_m5_sftp.py's real sshd, logging in a system user of this module's
    own: the password is reset when an sshd fixture starts, and other
    modules (or other test runs on the machine) use theirs."""
    saved = test_m5_sftp.USER
    test_m5_sftp.USER = "wharfrot"
    root = tempfile.mkdtemp(prefix="wharf-rotate-", dir="/tmp")
    try:
        uid, gid = test_m5_sftp._ensure_user()
        os.chmod(root, 0o755)
        server = Sshd(root, uid, gid)
        try:
            yield server
        finally:
            server.stop()
    finally:
        test_m5_sftp.USER = saved
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def idp(tmp_path):
    """The OIDC identity provider of test_r17_oidc.py, alive for the whole
    (long) test."""
    d = tmp_path / "idp"
    d.mkdir()
    make_ca_and_cert(d)
    port_file = d / "port"
    p = subprocess.Popen(
        [sys.executable, str(IDP), "--cert", str(d / "idp.pem"), "--key",
         str(d / "idp.key"), "--port-file", str(port_file), "--workdir",
         str(d), "--client-id", OIDC_CLIENT, "--client-secret", OIDC_SECRET,
         "--parent-pid", str(os.getpid()), "--lifetime", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_file.exists() or p.poll() is not None, 60,
                   desc="test IdP to start")
        assert p.poll() is None, p.stderr.read().decode()
        yield {"port": int(port_file.read_text()), "ca": d / "ca.pem"}
    finally:
        p.kill()
        p.wait()


@pytest.fixture
def oauth(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, ca_key = make_ca(d, "testca")
    cert, key = make_server_cert(d, ca, ca_key)
    # access tokens live 2 s: a round usually finds the stored one expired
    # and uses the stored refresh token (both are sealed state)
    srv = OAuthServer((cert, key), ttl=2)
    srv.ca = ca
    yield srv
    srv.close()


# ---- A's data dir ------------------------------------------------------------------


def a_flow(a, b, tmp_path, sshd, remote, oauth):
    """A's flow: AS2 with B (outbox -> as2-b -> inbox), a webhook with
    basic auth, an SFTP upload with a private key (to remote), an OAuth
    destination (named "partner", as test_r08_oauth.authorize expects)."""
    sec = tmp_path / "secrets"
    sec.mkdir()
    for name in ("hooked", "to-sftp", "to-oauth"):     # in allowed_paths
        (a.dir / name).mkdir()
    doc = flow_of(a, b, partner_of(b))
    oauth_auth = {
        "type": "oauth2", "grant": "authorization_code",
        "token_url": oauth.base + "/token",
        "authorize_url": oauth.base + "/authorize",
        "client_id": "wharf-code", "scope": "deliver", "refresh_margin_s": 1,
        "client_secret_file": secret_file(sec, "client_secret", OAUTH_SECRET)}
    retry = {"initial_ms": 100, "max_ms": 500, "max_attempts": 40}
    doc["connectors"] += [
        {"name": "hook", "type": "webhook", "config": {
            "auth": {"type": "basic", "user": "acme",
                     "password_file": secret_file(sec, "hook-pw", HOOK_PW)}}},
        file_dest("hooked", a.dir / "hooked"),
        file_source("to-sftp", a.dir / "to-sftp"),
        sftp_conn("sftp", sshd, "key",
                  send_dir=str(remote), retry=retry),
        file_source("to-oauth", a.dir / "to-oauth"),
        {"name": "partner", "type": "http", "config": {
            "url": oauth.base + "/resource", "tls_ca": str(oauth.ca),
            "auth": oauth_auth, "retry": retry}},
    ]
    doc["links"] += [["hook", "hooked"], ["to-sftp", "sftp"],
                     ["to-oauth", "partner"]]
    assert len(doc["connectors"]) == CONNECTORS
    return doc


def totp_users(wharf, data, n):
    """n viewers with a password and TOTP confirmed (one per round: a TOTP
    code works once, so each round logs in a person of its own)."""
    people = []
    for i in range(n):
        name, pw = f"t{i}", f"quay-{secrets.token_hex(5)}-Crane"
        cli_user(wharf, data, name, "viewer", pw)
        uri = wharf.ok("user", "mfa", "enroll", name, "--data",
                       data).stdout.splitlines()[0]
        seed = re.search(r"secret=([A-Z2-7]+)", uri).group(1)
        wharf.ok("user", "mfa", "confirm", name,
                 oathtool(seed, int(time.time())), "--data", data)
        people.append((name, pw, seed))
    return people


def oidc_configure(wharf, data, idp, tmp_path):
    secret = tmp_path / "oidc-secret"
    secret.write_text(OIDC_SECRET + "\n")
    secret.chmod(0o600)
    admin = listen_port(data, "admin")
    wharf.ok("oidc", "configure", "--data", data,
             "--issuer", f"https://127.0.0.1:{idp['port']}",
             "--client-id", OIDC_CLIENT, "--client-secret-file", secret,
             "--redirect-uri",
             f"https://127.0.0.1:{admin}/api/v1/auth/oidc/callback",
             "--role-claim", "groups",
             "--role-map", json.dumps({"wharf-ops": "operator"}),
             "--ca-file", idp["ca"])


# ---- reading the data dir directly ------------------------------------------------


def master_keys(data):
    """(active id, [every master key id]) of DATA/keystore."""
    active, ids = None, []
    for line in (Path(data) / "keystore").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "master":
            ids.append(parts[1])
            if parts[3] == "active":
                active = parts[1]
    return active, ids


def key_refs(data):
    """The master key id every payload header and every sealed blob names:
    {"payloads": [...], "sealed": [...]}. Sealed blobs: version 1, then the
    key id (src/vault/seal.c); payload headers: the id at bytes 9..25
    (src/vault/payload.c)."""
    refs = {"payloads": [], "sealed": []}
    for f in sorted(Path(data, "payloads").glob("*/*.wpay")):
        refs["payloads"].append(f.read_bytes()[9:25].decode())
    conn = sqlite3.connect(str(Path(data) / "wharf.db"))
    try:
        blobs = [r[0] for r in conn.execute(
            "SELECT key_sealed FROM certificates WHERE key_sealed IS NOT NULL"
            " UNION ALL SELECT blob FROM connector_secrets"
            " UNION ALL SELECT totp_sealed FROM users"
            " WHERE totp_sealed IS NOT NULL")]
        oidc = conn.execute("SELECT value FROM settings WHERE key ="
                            " 'oidc_client_secret'").fetchone()
    finally:
        conn.close()
    blobs.append(bytes.fromhex(oidc[0]))
    for b in blobs:
        assert b[0] == 1, "sealed blob of an unknown version"
        refs["sealed"].append(b[1:17].decode())
    return refs


def assert_refs_known(data):
    """Every payload and sealed value is wrapped by a key the keystore
    holds. Returns (active, ids, refs)."""
    active, ids = master_keys(data)
    refs = key_refs(data)
    for kind, used in refs.items():
        unknown = set(used) - set(ids)
        assert not unknown, f"{kind} under keys not in the keystore: {unknown}"
    # profile key, 3 secret files, OAuth state, TOTP seeds, OIDC secret
    assert len(refs["sealed"]) >= 1 + 3 + 1 + ROUNDS + 1, refs
    return active, ids, refs


# ---- one round: does every secret still work? -------------------------------------


class Rig:
    def __init__(self, tmp_path, wharf, start_server, a, b, sshd, oauth, idp,
                 people, remote):
        self.tmp, self.wharf, self.start_server = tmp_path, wharf, start_server
        self.a, self.b, self.sshd, self.oauth, self.idp = a, b, sshd, oauth, idp
        self.people, self.remote = people, remote
        self.admin = listen_port(a.data, "admin")
        self.partner = listen_port(a.data, "partner")

    def start_a(self):
        start = self.a.log_size()
        self.a.server = self.start_server(self.a.data)
        self.a.server.wait_listening()
        line = re.compile(r"flow generation \d+ loaded: (\d+) connector\(s\)")
        m = wait_until(lambda: self.a.server.check_alive() and
                       line.search(self.a.log(start)), timeout=60,
                       desc="A's flow loaded")
        log = self.a.log(start)
        assert int(m.group(1)) == CONNECTORS, log
        assert "left out" not in log, log
        assert "unknown master key" not in log, log
        return start

    def a_message(self, source, filename):
        for m in self.wharf.messages(self.a.data):
            if m["source"] == source and m["filename"] == filename:
                return m
        return None

    def check(self, rnd):
        """Start A, use every secret, stop A."""
        start = self.start_a()
        tag = f"r{rnd}"
        # AS2, A -> B: A signs with its profile key, checks B's signed MDN
        body = os.urandom(3000) + tag.encode()
        drop_file(self.a.outbox, f"{tag}-ab.edi", body)
        wait_until(lambda: (self.b.inbox / f"{tag}-ab.edi").exists(),
                   timeout=60, desc=f"{tag}: A's AS2 message at B")
        assert (self.b.inbox / f"{tag}-ab.edi").read_bytes() == body

        def sent():
            m = self.a_message("outbox", f"{tag}-ab.edi")
            return m and m["state"] == "sent" and m
        m = wait_until(sent, timeout=60, desc=f"{tag}: A's message sent")
        hop = [h for h in self.wharf.show(self.a.data, m["id"])["hops"]
               if h["connector"] == "as2-b"][0]
        assert "MDN processed (signed)" in hop["receipt"], hop
        # AS2, B -> A: A decrypts with its profile key and signs the MDN
        drop_file(self.b.outbox, f"{tag}-ba.edi", body[::-1])
        wait_until(lambda: (self.a.inbox / f"{tag}-ba.edi").exists(),
                   timeout=60, desc=f"{tag}: B's AS2 message at A")
        assert (self.a.inbox / f"{tag}-ba.edi").read_bytes() == body[::-1]
        # the webhook's sealed password
        st, _ = post(self.partner, "/webhook/hook", b"wrong", basic("acme",
                                                                   "nope"))
        assert st == 401
        st, r = post(self.partner, "/webhook/hook", tag.encode(),
                     {**basic("acme", HOOK_PW),
                      "X-Wharf-Filename": f"{tag}-hook.txt"})
        assert st == 200 and "id" in r, (st, r)
        hooked = self.a.dir / "hooked" / f"{tag}-hook.txt"
        wait_until(hooked.exists, timeout=60,
                   desc=f"{tag}: the webhook's message delivered")
        # the SFTP key (sealed, opened only by the key process)
        drop_file(self.a.dir / "to-sftp", f"{tag}-sftp.edi", body)
        wait_until(lambda: (self.remote / f"{tag}-sftp.edi").exists(),
                   timeout=60, desc=f"{tag}: the file uploaded by SFTP")
        assert (self.remote / f"{tag}-sftp.edi").read_bytes() == body
        # OAuth: the stored tokens (expired access token, refresh token)
        drop_file(self.a.dir / "to-oauth", f"{tag}-oauth.edi", tag.encode())
        wait_until(lambda: tag.encode() in self.oauth.delivered(),
                   timeout=60, desc=f"{tag}: delivered with OAuth")
        assert self.oauth.count("authorization_code") == 1, (
            "the stored OAuth tokens were lost: authorized again")
        # a TOTP login (the seed is sealed) and an OIDC login (its client
        # secret is sealed)
        name, pw, seed = self.people[rnd]
        s = Session(Api(self.admin), name, pw,
                    code=oathtool(seed, int(time.time()) + 30))
        assert s.me["mfa_done"] is True, s.me
        st, _, page = oidc_login({"admin": self.admin, "idp": self.idp},
                                 test_groups="wharf-ops")
        assert st == 200 and json.loads(page)["role"] == "operator", page
        # the trail and its head anchor still verify
        out = self.wharf.ok("audit", "verify", "--data", self.a.data).stdout
        assert out.startswith("audit trail intact: "), out
        log = self.a.log(start)
        assert "unknown master key" not in log and "does not open" not in log
        self.a.server.stop()

    def rotate(self, fault=None):
        """`wharf key rotate` on A, killed at `fault` ("point:N") when
        given. Returns the CompletedProcess."""
        env = child_env()
        if fault:
            env["WHARF_FAULT"] = fault
        p = subprocess.run([self.wharf.binary, "key", "rotate", "--data",
                            str(self.a.data)], capture_output=True, text=True,
                           timeout=300, env=env, cwd=str(self.tmp))
        assert_no_sanitizer_report(p.stderr, "key rotate")
        if fault:
            assert p.returncode == -9, (fault, p.returncode, p.stdout,
                                        p.stderr)
        else:
            assert p.returncode == 0, (p.stdout, p.stderr)
        return p


@pytest.fixture
def rig(tmp_path, wharf, start_server, sshd, oauth, idp):
    a = Side(wharf, tmp_path, "a", ban_after_failures=1000)
    b = Side(wharf, tmp_path, "b")
    (b.dir / "flow.json").write_text(json.dumps(
        flow_of(b, a, partner_of(a))))
    wharf.ok("flow", "import", "--data", b.data, b.dir / "flow.json")
    remote = sshd.remote_dir("rotation")
    doc = a_flow(a, b, tmp_path, sshd, remote, oauth)
    wharf.import_flow(a.data, doc, a.dir / "flow.json")
    oidc_configure(wharf, a.data, idp, tmp_path)
    people = totp_users(wharf, a.data, ROUNDS)
    token, _ = cli_token(wharf, a.data, "admin")
    r = Rig(tmp_path, wharf, start_server, a, b, sshd, oauth, idp, people,
            remote)
    b.server = start_server(b.data)
    b.server.wait_listening()
    # authorize the OAuth destination once, in the browser dance
    r.start_a()
    _, st, page = authorize(r.admin, token, oauth, {"ca": oauth.ca}, [])
    assert st == 200 and "partner is authorized" in page, page
    r.a.server.stop()
    yield r
    b.server.stop()


def test_r15_key_rotation_rewraps_everything_and_survives_kill9(rig):
    r = rig
    a = r.a.data
    r.check(0)
    first, ids = master_keys(a)
    assert ids == [first]
    assert set(sum(key_refs(a).values(), [])) == {first}

    # a complete rotation: every secret still works (on main, AS2, webhook
    # and SFTP connectors were left out and TOTP logins failed)
    p = r.rotate()
    refs = key_refs(a)
    r.check(1)
    m = re.match(rf"new master key ({ID_RE}) is active; re-wrapping what "
                 rf"uses {first}\n", p.stdout)
    assert m, p.stdout
    second = m.group(1)
    assert master_keys(a) == (second, [second])
    assert set(refs["payloads"]) == set(refs["sealed"]) == {second}
    n = re.search(r"re-wrapped (\d+) payload\(s\) \(0 already current\) and "
                  r"(\d+) sealed value\(s\) \(0 already current\); retired "
                  rf"{first}; master key {second} is active\n$", p.stdout)
    assert n and int(n.group(1)) == len(refs["payloads"]), p.stdout
    assert int(n.group(2)) == len(refs["sealed"]), p.stdout
    assert_refs_known(a)

    # killed right after the new key was added (step 1)
    r.rotate("rotate.key_added:1")
    third, ids = master_keys(a)
    assert third != second and sorted(ids) == sorted([second, third])
    assert_refs_known(a)
    r.check(2)

    # killed in the middle of the payload headers (step 2), resumed: the
    # hook fires after the second header is durable
    before = key_refs(a)["payloads"].count(second)
    assert before >= 3, "too few payloads under the old key to cut between"
    p = r.rotate("rotate.payload:2")
    assert p.stdout.startswith("finishing an interrupted rotation: master "
                               f"key {third} is active; re-wrapping what "
                               f"still uses {second}"), p.stdout
    _, _, refs = assert_refs_known(a)
    assert refs["payloads"].count(second) == before - 2
    assert master_keys(a) == (third, ids)
    r.check(3)

    # killed in the middle of the sealed values (step 3): the batch of
    # profile keys (1) committed, the batch of connector secrets rolled back
    # at its second value
    before = key_refs(a)["sealed"].count(second)
    r.rotate("rotate.sealed:3")
    _, _, refs = assert_refs_known(a)
    assert set(refs["payloads"]) == {third}
    assert refs["sealed"].count(second) == before - 1, refs
    r.check(4)

    # killed just before the old key is retired (step 4)
    r.rotate("rotate.retire:1")
    _, _, refs = assert_refs_known(a)
    assert set(refs["payloads"]) == set(refs["sealed"]) == {third}
    assert master_keys(a) == (third, ids)
    r.check(5)

    # the next run finishes it: the old key is gone, nothing needs it
    p = r.rotate()
    assert "finishing an interrupted rotation" in p.stdout, p.stdout
    assert re.search(rf"retired {second}; master key {third} is active",
                     p.stdout)
    assert master_keys(a) == (third, [third])
    assert second not in (Path(a) / "keystore").read_text()
    _, _, refs = assert_refs_known(a)
    assert set(refs["payloads"]) == set(refs["sealed"]) == {third}
    r.check(6)

    # and a fresh, complete rotation from there
    p = r.rotate()
    m = re.match(rf"new master key ({ID_RE}) is active; re-wrapping what "
                 rf"uses {third}\n", p.stdout)
    assert m, p.stdout
    fourth = m.group(1)
    assert master_keys(a) == (fourth, [fourth])
    _, _, refs = assert_refs_known(a)
    assert set(refs["payloads"]) == set(refs["sealed"]) == {fourth}
    r.check(7)

    # the rotations are in the audit trail: a start per run that got past
    # step 1 (the one killed right there has none), an end per completed
    # one
    rows = json.loads(r.wharf.ok("audit", "list", "--json", "--limit",
                                 "100000", "--data", a).stdout)
    acts = [(x["action"], x["detail"]) for x in rows
            if x["action"].startswith("key.")]
    resumed = ("key.rotate", f"resumed old={second} new={third}")
    assert acts[0] == ("key.rotate", f"old={first} new={second}"), acts
    assert acts[1][0] == "key.retire", acts
    assert acts[1][1].startswith(f"retired={first} "), acts
    assert acts[2:6] == [resumed] * 4, acts
    assert acts[6] == ("key.retire", f"retired={second} payloads=0 sealed=0")
    assert acts[7] == ("key.rotate", f"old={third} new={fourth}")
    assert acts[8][0] == "key.retire" and len(acts) == 9, acts


def test_r15_key_rotate_refuses_while_the_keystore_is_in_use(
        tmp_path, wharf, data_dir, start_server):
    """serve holds wharf.lock (its pid is named); any other process that
    has the keystore open holds its lock: rotating then would let it seal
    under a retired key."""
    server = start_server(data_dir)
    server.wait_listening()
    keystore = (data_dir / "keystore").read_bytes()
    p = wharf("key", "rotate", "--data", data_dir)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert f"`wharf serve` (pid {server.pid}) is running on {data_dir}" in \
        p.stderr, p.stderr
    assert "stop it, run `wharf key rotate` again" in p.stderr
    assert (data_dir / "keystore").read_bytes() == keystore
    server.stop()
    # a long-running command holding the keystore (here: a python process
    # holding the shared lock the way every wharf process does)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'a')\n"
         "fcntl.flock(f, fcntl.LOCK_SH)\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n", str(data_dir / "keystore.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        p = wharf("key", "rotate", "--data", data_dir)
        assert p.returncode == 1, p.stderr
        assert "has the keystore open; let it finish" in p.stderr, p.stderr
        assert (data_dir / "keystore").read_bytes() == keystore
    finally:
        holder.kill()
        holder.wait()
    wharf.ok("key", "rotate", "--data", data_dir)
    assert (data_dir / "keystore").read_bytes() != keystore


def test_r15_commands_refuse_while_a_rotation_runs(tmp_path, wharf,
                                                    data_dir):
    """While a rotation holds the keystore exclusively, serve and the other
    commands refuse at once, saying why (they would otherwise load a
    keystore that is about to change)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'a')\n"
         "fcntl.flock(f, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n", str(data_dir / "keystore.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["serve"], ["flow", "export"], ["audit", "verify"]):
            p = wharf(*argv, "--data", data_dir, timeout=60)
            assert p.returncode == 1, (argv, p.stdout, p.stderr)
            assert "is being rotated by `wharf key rotate`" in p.stderr, (
                argv, p.stderr)
            assert "run this again when the rotation has finished" in \
                p.stderr
    finally:
        holder.kill()
        holder.wait()
    wharf.ok("flow", "export", "--data", data_dir)
