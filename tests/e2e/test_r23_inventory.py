"""
R23 (asset inventory: keys and certificates listed with owner, use and
expiry): `wharf inventory [--json|--csv]` and GET /api/v1/inventory over
a real AS2 pair (keys and certificates made by the openssl CLI):

  - every certificate of side A (its profile's, partner B's, the
    listeners' own) with subject, issuer, expiry and a SHA-256 fingerprint
    equal to what `openssl x509 -fingerprint -sha256` prints;
  - connectors with type and direction, endpoints (the listeners, B's AS2
    URL with TLS, the folders), partners, keys (master, audit signing, TLS,
    the AS2 profile key) without a byte of a key, users
    with role and MFA state, tokens;
  - --csv is one RFC 4180 table with the same rows; the API answers the
    same to an auditor and 403 to an operator.
"""
import csv
import io
import json
import subprocess
import time

import as2_pair
from conftest import tune_conf, listen_port
from test_r14_api import Api, cli_token, cli_user
from test_r24_doctor import enrol_totp


def openssl_fp(pem):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint",
                          "-sha256", "-in", str(pem)], capture_output=True,
                         text=True, check=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def openssl_field(pem, what):
    out = subprocess.run(["openssl", "x509", "-noout", f"-{what}", "-in",
                          str(pem)], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().split("=", 1)[1]


def test_r23_inventory_of_an_as2_pair(wharf, start_server, tmp_path):
    a, b = as2_pair.pair(wharf, tmp_path)
    enrol_totp(wharf, a.data)
    cli_user(wharf, a.data, "ana", "auditor")
    tokens = {r: cli_token(wharf, a.data, r)[0]
              for r in ("auditor", "operator")}
    inv = json.loads(wharf.ok("inventory", "--data", a.data,
                              "--json").stdout)
    assert set(inv) == {"connectors", "endpoints", "partners",
                        "certificates", "keys", "users", "tokens"}

    certs = {c["owner"]: c for c in inv["certificates"]}
    for owner, pem in (("(profile)", a.cert), ("b", b.cert),
                       ("listener", a.tls_cert)):
        c = certs[owner]
        assert c["sha256"] == openssl_fp(pem), (owner, c)
        assert c["status"] == "valid"
        assert c["not_after"] and c["use"]
    assert "wharf-b" in certs["b"]["subject"]
    assert "wharf-b" in certs["b"]["issuer"]        # self-signed
    # the expiry as openssl reads it
    end = openssl_field(b.cert, "enddate")
    want = time.strftime("%Y-%m-%dT%H:%M:%S",
                         time.strptime(end, "%b %d %H:%M:%S %Y %Z"))
    assert certs["b"]["not_after"].startswith(want), (certs["b"], end)

    conns = {c["name"]: c for c in inv["connectors"]}
    assert conns["as2-b"]["type"] == "as2" and conns["as2-b"]["partner"] \
        == "b" and conns["as2-b"]["direction"] == "both"
    assert conns["outbox"]["direction"] == "in"
    assert conns["inbox"]["direction"] == "out"
    eps = inv["endpoints"]
    part = [e for e in eps if e["owner"] == "partner:b"]
    assert part == [{"owner": "partner:b", "protocol": "https",
                     "host": "127.0.0.1", "port": listen_port(b.data,
                                                              "partner"),
                     "tls": True, "encrypted": True}], part
    listeners = {e["owner"]: e for e in eps
                 if e["owner"].startswith("listener:")}
    assert listeners["listener:admin"]["port"] == listen_port(a.data, "admin")
    assert listeners["listener:admin"]["mutual_tls"] is False
    assert {e["path"] for e in eps if e["protocol"] == "file"} == \
        {str(a.outbox), str(a.inbox)}
    [p] = inv["partners"]
    assert (p["name"], p["as2_id"], p["connectors"]) == \
        ("b", "wharf-b", ["as2-b"])

    kinds = {k["kind"] for k in inv["keys"]}
    assert {"master", "audit-signing", "tls", "as2-profile"} <= kinds, kinds
    [prof] = [k for k in inv["keys"] if k["kind"] == "as2-profile"]
    assert certs["(profile)"]["sha256"].startswith(prof["id"])
    users = {u["name"]: u for u in inv["users"]}
    assert users["admin"] == {"name": "admin", "role": "admin",
                              "mfa": "totp", "disabled": False}
    assert users["ana"]["mfa"] == "none" and users["ana"]["role"] == "auditor"
    assert {t["role"] for t in inv["tokens"]} == {"auditor", "operator"}
    # no key material, no token anywhere in it
    text = json.dumps(inv)
    key = a.key.read_text()
    body = "".join(key.splitlines()[1:-1])
    assert body[:40] not in text and "PRIVATE KEY" not in text
    for t in tokens.values():
        assert t not in text

    # CSV: the same rows, one table
    rows = list(csv.DictReader(io.StringIO(wharf.ok(
        "inventory", "--data", a.data, "--csv").stdout, newline="")))
    n = sum(len(v) for v in inv.values())
    assert len(rows) == n, (len(rows), n)
    fps = {r["owner"]: r["sha256"] for r in rows if r["kind"] ==
           "certificate"}
    assert fps["b"] == openssl_fp(b.cert)
    text = wharf.ok("inventory", "--data", a.data).stdout
    assert openssl_fp(b.cert) in text and "CERTIFICATES" in text

    # the API, from the running server; A's allowed_paths away from its
    # data dir, as installed: serve's sandbox (Landlock) must still let it
    # read the listeners' certificate in DIR/tls/
    away = tmp_path / "away"
    away.mkdir()
    tune_conf(a.data, allowed_paths=away)
    as2_pair.start_pair((a, b), start_server)
    api = Api(listen_port(a.data, "admin"))
    got = api.ok("GET", "/api/v1/inventory", token=tokens["auditor"]).json()
    assert {c["sha256"] for c in got["certificates"]} == \
        {c["sha256"] for c in inv["certificates"]}
    assert any(k["where"].endswith("held by the key process")
               for k in got["keys"] if k["kind"] == "master")
    r = api.request("GET", "/api/v1/inventory", token=tokens["operator"])
    assert r.status == 403 and r.code() == "forbidden", r
    for s in (a, b):
        s.server.stop()
