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
    all, not twice that (each node publishes its counts every 2 s).

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
                      listen_port, new_data_dir, tune_conf, wait_until)
from test_r14_api import Api, Session, admin_otp, cli_token

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
