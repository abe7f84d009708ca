"""
R21: several Wharf nodes on one PostgreSQL database (a real PostgreSQL 15,
started by these tests on 127.0.0.1 as an unprivileged user, stopped after).

  - a shared folder polled by several nodes, delivered exactly once
    through kill -9s: test_r21_cluster_as2.py's load test (three nodes,
    2,000 files and 500 AS2 messages at once, two kills);
  - a console session made through one node is accepted by the other, and
    its logout on the second ends it on the first (no sticky sessions);
  - an API token made with the CLI of one node works on the other; a flow
    imported through one node reaches the other without a restart;
  - the store URL may not hold a password (wharf.conf refuses it), and a
    database not on this machine is reached only over TLS that verifies
    it (a server with a certificate for pg.wharf.test made with the
    openssl CLI; libpq connects to 127.0.0.1 and checks the name);
  - a ban made on one node applies on the others, and failed attempts
    spread over both nodes are banned after about ban_after_failures in
    all, not twice that (each node publishes its counts every 2 s);
  - cluster-wide periodic work runs on one node: a partner certificate
    expiring in 5 days (openssl CLI) is checked by one node and its alert
    is posted to a webhook (a Python HTTPS receiver that counts) once, not
    once per node; kill -9 of the node that sends notifications, and the
    survivor takes over: the alert of a second such certificate is posted
    once, and the first is not posted again;
  - a node's own condition (its listeners' certificate expiring) stays one
    open alert: the other node does not resolve it at each of its checks.
  - each node keeps a signed head anchor of the shared audit trail in its
    data dir: the newest entry (node b's) deleted in the database is
    reported by node b's `audit verify`.

Payloads sit in one folder both nodes name (payload_dir) until payloads live
in PostgreSQL (docs/decisions/0007-postgresql-store.md).
"""
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (drop_file, file_dest, file_source, flow_doc, listdir,
                      listen_port, new_data_dir, serve_http, tune_conf,
                      wait_until)
from test_r07_notify import HMAC_KEY, ossl, pki, secret_file  # noqa: F401
from test_r14_api import Api, Session, admin_otp, cli_token
from test_r19_alerts import find

ROOT = Path(__file__).resolve().parents[2]
PG_TEST = ROOT / "scripts" / "pg-test.sh"


@pytest.fixture(scope="module")
def pg_server():
    """A throwaway PostgreSQL 15 for this module: its admin URL. In a
    folder of its own under /tmp: the server's user (postgres, when the
    tests run as root) cannot enter pytest's 0700 folders."""
    base = Path(tempfile.mkdtemp(prefix="wharf-pg-"))
    os.chmod(base, 0o755)
    out = subprocess.run([str(PG_TEST), "start", str(base / "pg")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    yield out.stdout.strip()
    subprocess.run([str(PG_TEST), "stop", str(base / "pg")], timeout=120)
    base.rmdir()


_db_seq = [0]


def fresh_db(admin_url):
    """A new empty database on the test server: its URL."""
    _db_seq[0] += 1
    name = f"cluster_{os.getpid()}_{_db_seq[0]}"
    out = subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qc",
                          f"CREATE DATABASE {name}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return admin_url.rsplit("/", 1)[0] + "/" + name


def two_nodes(wharf, tmp_path, url):
    """Node a (makes the schema and the first administrator) and node b
    (joins with a's keystore), sharing one payload folder."""
    payloads = tmp_path / "payloads"
    a = new_data_dir(wharf, tmp_path / "a", "--store", url,
                     "--payload-dir", str(payloads))
    b = new_data_dir(wharf, tmp_path / "b", "--store", url, "--keystore",
                     str(a / "keystore"), "--payload-dir", str(payloads))
    return a, b


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_r21_a_session_and_a_token_work_on_every_node(
        tmp_path, wharf, pg_server, start_server):
    a, b = two_nodes(wharf, tmp_path, fresh_db(pg_server))
    node_a, node_b = start_server(a), start_server(b)
    node_a.wait_listening()
    node_b.wait_listening()
    api_a = Api(listen_port(a, "admin"))
    api_b = Api(listen_port(b, "admin"))
    # a login through node a (the one-time password: the session may only
    # read who it is and change the password until then)
    s = Session(api_a, "admin", admin_otp(wharf, a))
    # the session made on node a is accepted by node b
    r = api_b.request("GET", "/api/v1/auth/me", cookie=s.cookie)
    assert r.status == 200, r
    assert r.json()["user"] == "admin"
    # the password changed through node b, with node a's CSRF token
    r = api_b.request("POST", "/api/v1/auth/password", cookie=s.cookie,
                      csrf=s.csrf, body={"old": admin_otp(wharf, a),
                                         "new": "Quay-Lighthouse-8813-Barge"})
    assert r.status == 200, r
    assert api_a.request("GET", "/api/v1/auth/me", cookie=s.cookie
                         ).json()["must_change"] is False
    # a logout through node b ends the session on node a too
    r = api_b.request("POST", "/api/v1/auth/logout", cookie=s.cookie,
                      csrf=s.csrf)
    assert r.status == 200, r
    assert api_a.request("GET", "/api/v1/auth/me",
                         cookie=s.cookie).status == 401
    # a token made with node a's CLI works on node b
    token, _ = cli_token(wharf, a, "viewer")
    assert api_b.request("GET", "/api/v1/messages",
                         token=token).status == 200
    node_a.stop()
    node_b.stop()


def test_r21_store_url_with_a_password_is_refused(tmp_path, wharf,
                                                  pg_server):
    url = fresh_db(pg_server).replace("wharf@", "wharf:S3cret-pw@")
    r = wharf("init", "--data", tmp_path / "n", "--store", url)
    assert r.returncode != 0
    assert "pgpass" in r.stderr
    assert "S3cret-pw" not in r.stderr + r.stdout
    assert not (tmp_path / "n").exists()


def openssl(*args, cwd):
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def tls_certs(d):
    """A CA, a server certificate for pg.wharf.test it signed, and another
    CA that signed nothing of this server's."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", f"/CN=wharf test {ca}", "-keyout", f"{ca}.key",
                "-out", f"{ca}.pem", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=pg.wharf.test", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName = DNS:pg.wharf.test\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
            "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf",
            "-out", "server.pem", cwd=d)
    os.chmod(d / "server.key", 0o600)
    if os.getuid() == 0:            # the server runs as postgres then
        pw = pwd.getpwnam("postgres")
        os.chown(d / "server.key", pw.pw_uid, pw.pw_gid)


def test_r21_a_database_not_on_this_machine_needs_tls_that_verifies_it(
        tmp_path, wharf, start_server):
    base = Path(tempfile.mkdtemp(prefix="wharf-pgtls-"))
    os.chmod(base, 0o755)
    certs = base / "certs"
    certs.mkdir(mode=0o755)
    tls_certs(certs)
    out = subprocess.run(
        [str(PG_TEST), "start", str(base / "pg"), "ssl=on",
         f"ssl_cert_file={certs / 'server.pem'}",
         f"ssl_key_file={certs / 'server.key'}"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    admin = out.stdout.strip()
    try:
        url = fresh_db(admin)
        port, db = url.rsplit(":", 1)[1].split("/")
        # the name the certificate holds; libpq connects to hostaddr
        far = f"postgresql://wharf@pg.wharf.test:{port}/{db}?hostaddr=127.0.0.1"
        for bad in (far, far + "&sslmode=require", far + "&sslmode=verify-ca"
                    f"&sslrootcert={certs / 'ca.pem'}"):
            r = wharf("init", "--data", tmp_path / "refused", "--store", bad)
            assert r.returncode != 0
            assert "pg.wharf.test is not on this machine" in r.stderr, r.stderr
            assert "verify-full" in r.stderr
            assert not (tmp_path / "refused").exists()
        # the right mode with a CA that did not sign the server's certificate
        good = far + "&sslmode=verify-full&sslrootcert="
        r = wharf("init", "--data", tmp_path / "refused", "--store",
                  good + str(certs / "other-ca.pem"))
        assert r.returncode != 0
        assert "certificate verify failed" in r.stderr, r.stderr
        assert "nothing of it was left" in r.stderr
        assert not (tmp_path / "refused").exists()
        # the CA that did: the node is made and serves, over TLS only
        data = new_data_dir(wharf, tmp_path / "n", "--store",
                            good + str(certs / "ca.pem"))
        node = start_server(data)
        node.wait_listening()
        q = ("SELECT count(*) FILTER (WHERE s.ssl AND s.version IN"
             " ('TLSv1.2', 'TLSv1.3')), count(*) FILTER (WHERE NOT s.ssl)"
             " FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
             f" WHERE a.datname = '{db}'")
        res = subprocess.run(["psql", admin, "-Atc", q], capture_output=True,
                             text=True, timeout=60)
        tls, plain = map(int, res.stdout.strip().split("|"))
        assert tls >= 1 and plain == 0, res.stdout
        node.stop()
        # wharf.conf changed by hand to a URL without verification: serve
        # refuses it at start
        tune_conf(data, store=far)
        r = wharf("serve", "--data", data, timeout=60)
        assert r.returncode != 0
        assert "verify-full" in r.stderr, r.stderr
    finally:
        subprocess.run([str(PG_TEST), "stop", str(base / "pg")], timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def test_r21_a_ban_made_on_one_node_applies_on_the_others(
        tmp_path, wharf, pg_server, start_server):
    a, b = two_nodes(wharf, tmp_path, fresh_db(pg_server))
    for d in (a, b):
        tune_conf(d, ban_after_failures=3, ban_seconds=600)
    node_a, node_b = start_server(a), start_server(b)
    node_a.wait_listening()
    node_b.wait_listening()
    token, _ = cli_token(wharf, a, "viewer")
    api_a = Api(listen_port(a, "admin"), source="127.0.0.2")
    api_b = Api(listen_port(b, "admin"), source="127.0.0.2")
    api_b.ok("GET", "/api/v1/auth/me", token=token)     # served before
    statuses = [api_a.request("POST", "/api/v1/auth/login",
                              body={"user": "admin",
                                    "password": f"wrong-{i}-pw!"}).status
                for i in range(5)]
    assert statuses[:3] == [401, 401, 401], statuses
    assert statuses[3] in (None, 429), statuses         # banned on a
    # the other node refuses the address too, valid token and all, within
    # the few seconds it takes to read the bans again
    wait_until(lambda: api_b.request("GET", "/api/v1/auth/me",
                                     token=token).status in (None, 429),
               timeout=30, desc="the ban applied on node b")
    # another address is still served by both
    Api(listen_port(b, "admin")).ok("GET", "/api/v1/auth/me", token=token)
    node_a.stop()
    node_b.stop()


def test_r21_defender_counts_across_nodes(tmp_path, wharf, pg_server,
                                          start_server):
    """An attacker alternating between the nodes with wrong API tokens is
    banned after about THRESHOLD failures in all: each node counts its own
    and adds the others' as published at their 2 s sync (a lag of up to
    two syncs, so the attempts are paced and the assertion allows a few
    more than THRESHOLD; counted per node alone it would take 2 x
    THRESHOLD - 1 = 15)."""
    THRESHOLD = 8
    url = fresh_db(pg_server)
    a, b = two_nodes(wharf, tmp_path, url)
    for d in (a, b):
        tune_conf(d, ban_after_failures=THRESHOLD, ban_seconds=600)
    node_a, node_b = start_server(a), start_server(b)
    node_a.wait_listening()
    node_b.wait_listening()
    apis = [Api(listen_port(d, "admin"), source="127.0.0.3") for d in (a, b)]
    statuses = []
    for i in range(2 * THRESHOLD):
        st = apis[i % 2].request("GET", "/api/v1/auth/me",
                                 token=f"wrong-token-{i}").status
        statuses.append(st)
        if st != 401:
            break
        time.sleep(1.5)
    failures = statuses.count(401)
    assert statuses[-1] in (None, 429), statuses
    assert THRESHOLD <= failures <= THRESHOLD + 3, statuses
    # both nodes refuse the address now; another address is served
    for api in apis:
        wait_until(lambda: api.request("GET", "/api/v1/auth/me").status
                   in (None, 429), timeout=30, desc="banned on both nodes")
    assert Api(listen_port(b, "admin")).request(
        "GET", "/api/v1/auth/me").status == 401
    # the published counts were consumed by the ban (rows of 0 go)
    def rows():
        out = subprocess.run(["psql", url, "-Atc", "SELECT count(*) FROM"
                              " net_failures WHERE address = '127.0.0.3'"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)
    wait_until(lambda: rows() == 0, timeout=30,
               desc="the counts of the banned address gone")
    node_a.stop()
    node_b.stop()


def test_r21_a_flow_imported_through_one_node_runs_on_the_others(
        tmp_path, wharf, pg_server, start_server):
    a, b = two_nodes(wharf, tmp_path, fresh_db(pg_server))
    inbox, out1, out2 = (tmp_path / n for n in ("in", "out1", "out2"))
    for d in (inbox, out1, out2):
        d.mkdir()
    wharf.import_flow(a, flow_doc(
        [file_source("inbox", inbox), file_dest("first", out1)],
        [("inbox", "first")]), tmp_path / "flow1.json")
    node_a, node_b = start_server(a), start_server(b)
    node_a.wait_listening()
    node_b.wait_listening()
    drop_file(inbox, "one.edi", b"to the first destination")
    wait_until(lambda: (out1 / "one.edi").exists(), timeout=30,
               desc="one.edi in the first destination")
    # a new flow, imported through node a while both run; then node a
    # stops: only node b is left to run it, without a restart
    wharf.import_flow(a, flow_doc(
        [file_source("inbox", inbox), file_dest("second", out2)],
        [("inbox", "second")]), tmp_path / "flow2.json")
    time.sleep(1.5)                 # the engines re-read within a second
    node_a.stop()
    drop_file(inbox, "two.edi", b"to the second destination")
    wait_until(lambda: node_b.check_alive() and (out2 / "two.edi").exists(),
               timeout=30, desc="two.edi delivered by node b to the new "
                                "destination")
    assert listdir(out1) == ["one.edi"]
    assert (out2 / "two.edi").read_bytes() == b"to the second destination"
    node_b.stop()


# ---- cluster-wide periodic work --------------------------------------------------


class Webhook:
    """An HTTPS receiver (the pki fixture's certificate) that keeps the
    JSON documents Wharf posts to it. It answers slowly (2 s), as a busy
    receiver may: a sender's cursor moves only after the answer, so a
    second node sending too would read the same entry meanwhile (with a
    prompt receiver the node that raised the alert, woken at once, has
    usually moved the shared cursor before the other's next round)."""

    def __init__(self, pki):
        import http.server
        import json
        got = self.got = []

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                got.append(json.loads(body))
                time.sleep(2)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass
        self.httpd = serve_http(Hook, certkey=(pki["cert"], pki["key"]))
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/soc"

    def opened(self, kind):
        """The "opened" notifications of alerts of kind."""
        return [d for d in list(self.got)
                if d.get("event", {}).get("action") == "opened" and
                d.get("alert", {}).get("kind") == kind]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def expiring_partners(d, names):
    """A flow with the profile (a 365-day certificate) and a partner per
    name whose certificate (openssl CLI) expires in 5 days."""
    if not (d / "p.pem").exists():
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
             "-subj", "/CN=wharf-p", "-keyout", "p.key", "-out", "p.pem",
             cwd=d)
        (d / "p.key").chmod(0o600)
    for n in names:
        if not (d / f"{n}.pem").exists():
            ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                 "5", "-subj", f"/CN={n}-soon", "-keyout", f"{n}.key",
                 "-out", f"{n}.pem", cwd=d)
    inbox, out = d / "in", d / "out"
    inbox.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    doc = flow_doc([file_source("inbox", inbox), file_dest("out", out)],
                   [("inbox", "out")])
    doc["profile"] = {"as2_id": "wharf-p",
                      "keys": [{"cert": str(d / "p.pem"),
                                "key": str(d / "p.key")}]}
    doc["partners"] = [{"name": n, "as2_id": n,
                        "url": "https://127.0.0.1:9/as2",
                        "certificates": [str(d / f"{n}.pem")]}
                       for n in names]
    return doc


def which_node(servers, line):
    """The servers whose log holds line."""
    return [s for s in servers
            if line in (s.data / "logs" / "wharf.log").read_text(
                errors="replace")]


def test_r21_cluster_alert_checked_and_notified_once_survivor_takes_over(
        tmp_path, wharf, pg_server, start_server, pki):
    a, b = two_nodes(wharf, tmp_path, fresh_db(pg_server))
    hook = Webhook(pki)
    try:
        for d in (a, b):
            tune_conf(d, alert_check_seconds=1, notify_webhook_url=hook.url,
                      notify_webhook_level="warning",
                      notify_ca_file=str(pki["ca"]))
        # the HMAC key is a shared setting: given once, through node a
        wharf.ok("notify", "credentials", "webhook",
                 secret_file(tmp_path, "k", HMAC_KEY), "--data", a)
        certs = tmp_path / "certs"
        certs.mkdir()
        wharf.import_flow(a, expiring_partners(certs, ["acme"]),
                          tmp_path / "f1.json")
        nodes = [start_server(a), start_server(b)]
        for n in nodes:
            n.wait_listening()
        first = wait_until(lambda: all(n.check_alive() for n in nodes) and
                           hook.opened("cert.expiry"), timeout=60,
                           desc="the certificate's alert posted")[0]
        assert "acme-soon" in first["alert"]["summary"], first
        # three more checks of the leading node fold into the alert; a
        # second sender would have posted the alert again by then
        wait_until(lambda: find(wharf, a, "cert.expiry")[0]["count"] >= 4,
                   timeout=60, desc="three more certificate checks")
        assert len(hook.opened("cert.expiry")) == 1, hook.got
        assert len(find(wharf, a, "cert.expiry")) == 1
        # one node leads each job (its log says so), the other does not
        sender = which_node(nodes, "this node now sends the cluster's "
                                   "notifications")
        checker = which_node(nodes, "this node now runs the cluster's "
                                    "alert checks")
        assert len(sender) == 1 and len(checker) == 1, (sender, checker)
        # the sender dies; the survivor takes its jobs over
        sender[0].kill9()
        survivor = nodes[1] if sender[0] is nodes[0] else nodes[0]
        wharf.import_flow(survivor.data,
                          expiring_partners(certs, ["acme", "globex"]),
                          tmp_path / "f2.json")

        def globex():
            survivor.check_alive()
            return [d for d in hook.opened("cert.expiry")
                    if "globex-soon" in d["alert"]["summary"]]
        wait_until(globex, timeout=60, desc="the second certificate's "
                   "alert posted by the survivor")
        wait_until(lambda: [x for x in find(wharf, survivor.data,
                                            "cert.expiry")
                            if "globex" in x["summary"]][0]["count"] >= 4,
                   timeout=60, desc="three more checks by the survivor")
        assert len(globex()) == 1, hook.got
        # the first alert was not posted again by the new sender
        assert len(hook.opened("cert.expiry")) == 2, hook.got
        assert which_node([survivor], "this node now sends the cluster's "
                                      "notifications")
        survivor.stop()
    finally:
        hook.close()


def test_r21_a_nodes_own_alert_is_not_resolved_by_another_node(
        tmp_path, wharf, pg_server, start_server):
    """Node a's listeners' certificate expires in 5 days (a per-node
    condition: node b's is fine). Node b must not resolve a's alert at
    each of its checks (a would open a new one at its next: an alert, and
    a notification, per round); it stays one open alert while both
    check."""
    a, b = two_nodes(wharf, tmp_path, fresh_db(pg_server))
    for d in (a, b):
        tune_conf(d, alert_check_seconds=1)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", "5", "-subj",
         "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem",
         cwd=a / "tls")
    (a / "tls" / "key.pem").chmod(0o600)
    nodes = [start_server(a), start_server(b)]
    for n in nodes:
        n.wait_listening()
    key = f"tls:{(a / 'tls' / 'cert.pem').resolve()}"

    def mine(state=None):
        return [x for x in find(wharf, a, "cert.expiry", state=state)
                if x["key"].startswith("tls:") and x["key"].endswith(
                    "/a/tls/cert.pem")]
    def settled():
        """Four checks of node a folded into one alert, or (resolved by
        node b in between) a second alert opened."""
        for n in nodes:
            n.check_alive()
        m = mine()
        return m if len(m) > 1 or any(x["count"] >= 4 for x in m) else None
    got = wait_until(settled, timeout=60, desc="node a's listener "
                     "certificate checked four times")
    assert len(got) == 1, got
    assert got[0]["state"] == "open", got
    assert got[0]["key"] in (key, f"tls:{a / 'tls' / 'cert.pem'}"), got
    for n in nodes:
        n.stop()


def test_r21_each_node_anchors_the_shared_audit_trail(tmp_path, wharf,
                                                      pg_server):
    """Each node keeps a signed head anchor of the shared trail in its own
    data dir (state/audit.head), moved after its own appends: node b's
    init appended the newest entry, so deleting it from the database is
    reported by node b's `audit verify`; node a's anchor names its own
    last entry (it may lag the shared chain, never lead it)."""
    url = fresh_db(pg_server)
    a, b = two_nodes(wharf, tmp_path, url)
    for d in (a, b):
        assert (d / "state" / "audit.head").exists(), d
        assert wharf("audit", "verify", "--data", d).returncode == 0
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc",
                          "DELETE FROM audit WHERE seq = (SELECT max(seq)"
                          " FROM audit)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = wharf("audit", "verify", "--data", b)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the signed head anchor names entry" in r.stdout + r.stderr
    assert wharf("audit", "verify", "--data", a).returncode == 0
