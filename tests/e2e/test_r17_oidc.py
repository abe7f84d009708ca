"""R17: OIDC single sign-on through Wharf's own admin listener.

A small identity provider written for the tests (tests/unit/oidc_idp.py:
HTTPS on 127.0.0.1 with its own CA and signing key) plays the partner of a
real login: GET /api/v1/auth/oidc/login redirects to its authorize
endpoint, which redirects back to Wharf's callback with a code; Wharf
exchanges the code (with the PKCE verifier and the client secret) and
verifies the ID token. The provider can be told to misbehave per login
(test_mode=...): a bad signature, a wrong audience, an expired token and a
wrong nonce must each be refused, with no session.
"""
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import listen_port, new_data_dir, wait_until

IDP = Path(__file__).resolve().parent.parent / "unit" / "oidc_idp.py"
CLIENT_ID = "wharf-console"
CLIENT_SECRET = "idp-client-secret-for-tests-0123456789"


def make_ca_and_cert(d):
    """A test CA and a certificate for 127.0.0.1 signed by it."""
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "ca.key"),
        "-out", str(d / "ca.pem"), "-days", "2", "-subj", "/CN=test idp CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(d / "idp.key"), "-out", str(d / "idp.csr"),
        "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(d / "idp.csr"), "-CA",
        str(d / "ca.pem"), "-CAkey", str(d / "ca.key"), "-CAcreateserial",
        "-out", str(d / "idp.pem"), "-days", "2", "-extfile", str(d / "ext.cnf"))


@pytest.fixture
def idp(tmp_path):
    d = tmp_path / "idp"
    d.mkdir()
    make_ca_and_cert(d)
    port_file = d / "port"
    p = subprocess.Popen(
        ["/usr/bin/python3", str(IDP), "--cert", str(d / "idp.pem"), "--key",
         str(d / "idp.key"), "--port-file", str(port_file), "--workdir", str(d),
         "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
         "--parent-pid", str(os.getpid()), "--lifetime", "300"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_file.exists() or p.poll() is not None, 60,
                   desc="test IdP to start")
        assert p.poll() is None, p.stderr.read().decode()
        yield {"port": int(port_file.read_text()), "ca": d / "ca.pem"}
    finally:
        p.kill()
        p.wait()


def https(port, method, path, headers=None, ca=None):
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else \
        ssl._create_unverified_context()
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def sso_data(wharf, tmp_path, idp):
    """A data dir with OIDC configured for the test IdP: (data, admin
    port)."""
    data = new_data_dir(wharf, tmp_path / "data")
    admin = listen_port(data, "admin")
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    secret.chmod(0o600)
    wharf.ok("oidc", "configure", "--data", str(data),
             "--issuer", f"https://127.0.0.1:{idp['port']}",
             "--client-id", CLIENT_ID,
             "--client-secret-file", str(secret),
             "--redirect-uri",
             f"https://127.0.0.1:{admin}/api/v1/auth/oidc/callback",
             "--role-claim", "groups",
             "--role-map", json.dumps({"wharf-ops": "operator",
                                       "wharf-audit": "auditor"}),
             "--ca-file", str(idp["ca"]))
    return data, admin


@pytest.fixture
def sso(wharf, tmp_path, idp, start_server):
    data, admin = sso_data(wharf, tmp_path, idp)
    server = start_server(data)
    server.wait_listening()
    yield {"data": data, "admin": admin, "idp": idp, "server": server}
    server.stop()


def login(sso, **extra):
    """Run one browser-less login; returns (status, headers, body) of the
    callback. extra parameters are added to the provider's authorize URL."""
    st, h, _ = https(sso["admin"], "GET", "/api/v1/auth/oidc/login")
    assert st == 302, (st, h)
    loc = urllib.parse.urlsplit(h["Location"])
    assert (loc.hostname, loc.port) == ("127.0.0.1", sso["idp"]["port"])
    q = urllib.parse.parse_qs(loc.query)
    assert q["code_challenge_method"] == ["S256"] and q["nonce"] and q["state"]
    query = loc.query + "&" + urllib.parse.urlencode(extra) if extra else loc.query
    st, h, body = https(sso["idp"]["port"], "GET", f"{loc.path}?{query}",
                        ca=sso["idp"]["ca"])
    assert st == 302, (st, body)
    back = urllib.parse.urlsplit(h["Location"])
    assert back.port == sso["admin"] and back.path == "/api/v1/auth/oidc/callback"
    return https(sso["admin"], "GET", f"{back.path}?{back.query}")


def test_r17_oidc_login_maps_role_and_opens_session(sso):
    st, h, body = login(sso, test_groups="wharf-ops")
    assert st == 200, body
    doc = json.loads(body)
    assert doc["role"] == "operator" and doc["csrf_token"]
    cookie = h["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    sid = cookie.split(";")[0]
    st, _, me = https(sso["admin"], "GET", "/api/v1/auth/me", {"Cookie": sid})
    assert st == 200 and json.loads(me)["role"] == "operator"
    # The provider is the source of truth for the role: next login changes it.
    st, _, body = login(sso, test_groups="wharf-audit")
    assert st == 200 and json.loads(body)["role"] == "auditor"
    assert json.loads(body)["name"] == doc["name"]      # same account


@pytest.mark.parametrize("mode", ["bad_sig", "wrong_aud", "expired",
                                  "wrong_nonce", "wrong_iss", "none"])
def test_r17_oidc_refuses_bad_tokens(sso, mode):
    st, h, body = login(sso, test_groups="wharf-ops", test_mode=mode)
    assert st == 401, (mode, st, body)
    assert "Set-Cookie" not in h
    assert json.loads(body)["error"]["code"] == "oidc_refused"


def test_r17_oidc_no_role_mapping_refused(sso):
    st, h, body = login(sso, test_groups="somebody-else")
    assert st == 401 and "Set-Cookie" not in h, body


def test_r17_oidc_replayed_state_refused(sso):
    st, h, _ = https(sso["admin"], "GET", "/api/v1/auth/oidc/login")
    loc = urllib.parse.urlsplit(h["Location"])
    st, h, _ = https(sso["idp"]["port"], "GET", f"{loc.path}?{loc.query}"
                     "&test_groups=wharf-ops", ca=sso["idp"]["ca"])
    back = urllib.parse.urlsplit(h["Location"])
    first = https(sso["admin"], "GET", f"{back.path}?{back.query}")
    again = https(sso["admin"], "GET", f"{back.path}?{back.query}")
    assert first[0] == 200 and again[0] == 401
