"""M7: the local AS2 profile and the trading partners in the import/export
document (the contract shape of the AS2 issue), certificates and keys read
at import from PEM, DER and PKCS#12 files (keys sealed by the vault), shown
with their expiry by `wharf cert list`, exported as PEM, added during a
rollover by `wharf cert import`; bad partner definitions are refused with
one clear line and change nothing."""
import json
import subprocess

import pytest

from conftest import file_dest, file_source, new_data_dir
from test_r14_api import cli_token, served  # noqa: F401 (fixture)


def ossl(*args, cwd):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, f"openssl {args}: {p.stderr!r}"
    return p.stdout


def self_signed(d, name, days=365):
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days,
         "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out",
         f"{name}.pem", cwd=d)
    (d / f"{name}.key").chmod(0o600)
    return d / f"{name}.pem", d / f"{name}.key"


def secret(d, name, value):
    p = d / name
    p.write_text(value + "\n")
    p.chmod(0o600)
    return p


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    a_pem, a_key = self_signed(d, "wharf-a")
    pw = secret(d, "a.pass", "p12-pass-6612")
    ossl("pkcs12", "-export", "-in", a_pem, "-inkey", a_key, "-out", "a.p12",
         "-passout", "pass:p12-pass-6612", cwd=d)
    (d / "a.p12").chmod(0o600)
    b_pem, _ = self_signed(d, "wharf-b")
    b2_pem, _ = self_signed(d, "wharf-b-2027")
    ossl("x509", "-in", b2_pem, "-outform", "DER", "-out", "b2.der", cwd=d)
    ca, _ = self_signed(d, "tls-ca")
    return {"dir": d, "p12": d / "a.p12", "pass": pw, "a_pem": a_pem,
            "a_key": a_key, "b": b_pem, "b2_der": d / "b2.der", "ca": ca}


def contract_doc(c, tmp_path, **partner):
    """The shape the AS2 issue fixes (with file connectors until the as2
    connector type exists)."""
    outbox, inbox = tmp_path / "outbox", tmp_path / "inbox"
    outbox.mkdir(exist_ok=True)
    inbox.mkdir(exist_ok=True)
    b = {"name": "b", "as2_id": "wharf-b", "url":
         "https://127.0.0.1:5080/as2", "certificates": [str(c["b"])],
         "tls_ca": str(c["ca"]), "sign": "sha256", "encrypt": "aes256-cbc",
         "compress": True, "mdn": "sync", "mdn_signed": True}
    b.update(partner)
    return {"profile": {"as2_id": "wharf-a",
                        "keys": [{"pkcs12": str(c["p12"]),
                                  "password_file": str(c["pass"])}]},
            "partners": [b],
            "connectors": [file_source("outbox", outbox),
                           file_dest("inbox", inbox)],
            "links": [["outbox", "inbox"]]}


def db_bytes(data):
    return b"".join(p.read_bytes() for p in sorted(data.glob("**/*.db*"))
                    if p.is_file())


def test_m7_contract_document_imports_and_exports(tmp_path, wharf, certs):
    data = new_data_dir(wharf, tmp_path / "data")
    doc = contract_doc(certs, tmp_path)
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    key_der = ossl("pkey", "-in", certs["a_key"], "-outform", "DER",
                   cwd=certs["dir"])
    exported = wharf.export_flow(data)
    out = json.loads(exported)
    # what is stored needs no file: certificates as PEM, keys sealed (R15)
    cl = json.loads(wharf.ok("cert", "list", "--data", data, "--json").stdout)
    prof_id = [c["id"] for c in cl if c["owner"] == "(profile)"][0]
    assert out["profile"] == {"as2_id": "wharf-a",
                              "keys": [{"sealed": prof_id}]}
    want = dict(doc["partners"][0])
    want["certificates"] = [{"content": ossl("x509", "-in", certs["b"],
                                             cwd=certs["dir"]).decode()}]
    want["tls_ca"] = {"content": certs["ca"].read_text()}
    assert out["partners"] == [want]
    # and that export imports again, with every file gone (R15)
    for f in certs["dir"].iterdir():
        f.unlink()
    (tmp_path / "again.json").write_text(exported)
    wharf.ok("flow", "import", "--data", data, tmp_path / "again.json")
    assert json.loads(wharf.export_flow(data)) == out
    # partner list / show
    listed = json.loads(wharf.ok("partner", "list", "--data", data,
                                 "--json").stdout)
    assert [p["as2_id"] for p in listed["partners"]] == ["wharf-b"]
    assert listed["profile"]["as2_id"] == "wharf-a"
    shown = json.loads(wharf.ok("partner", "show", "--data", data,
                                "b").stdout)
    assert shown["mdn"] == "sync" and shown["compress"] is True
    r = wharf("partner", "show", "--data", data, "nobody")
    assert r.returncode == 1 and "nobody" in r.stderr
    # certificates with expiry; the profile's key is sealed, not stored plain
    cl = json.loads(wharf.ok("cert", "list", "--data", data, "--json").stdout)
    owners = sorted(c["owner"] for c in cl)
    assert owners == ["(profile)", "b"]
    for c in cl:
        assert c["status"] == "valid" and 360 <= c["days_left"] <= 366
        assert c["not_after"].endswith("Z")
    prof = [c for c in cl if c["owner"] == "(profile)"][0]
    assert prof["private_key"] is True and "wharf-a" in prof["subject"]
    raw = db_bytes(data)
    assert key_der[-64:] not in raw and b"p12-pass-6612" not in raw
    assert b"p12-pass-6612" not in wharf.export_flow(data).encode()
    # export a certificate as PEM: the same certificate openssl reads
    b_id = [c["id"] for c in cl if c["owner"] == "b"][0]
    pem = wharf.ok("cert", "export", "--data", data, b_id[:12]).stdout
    assert pem == want["certificates"][0]["content"]
    assert "PRIVATE" not in wharf.ok("cert", "export", "--data", data,
                                     prof["id"][:12]).stdout


def test_m7_rollover_certificate_import(tmp_path, wharf, certs):
    data = new_data_dir(wharf, tmp_path / "data")
    wharf.import_flow(data, contract_doc(certs, tmp_path),
                      tmp_path / "flow.json")
    wharf.ok("cert", "import", "--data", data, "--partner", "b",
             "--use-from", "2027-01-31T00:00:00Z", certs["b2_der"])
    cl = json.loads(wharf.ok("cert", "list", "--data", data, "--json").stdout)
    new = [c for c in cl if "wharf-b-2027" in c["subject"]]
    assert len(new) == 1 and new[0]["use_from"] == "2027-01-31T00:00:00Z"
    out = json.loads(wharf.export_flow(data))
    b2_pem = ossl("x509", "-inform", "DER", "-in", certs["b2_der"],
                  cwd=certs["dir"]).decode()
    assert out["partners"][0]["certificates"][-1] == {
        "file": {"content": b2_pem}, "use_from": "2027-01-31T00:00:00Z"}
    # a second profile key: PEM certificate + key
    wharf.ok("cert", "import", "--data", data, "--profile", "--key",
             certs["a_key"], certs["a_pem"])
    assert len(json.loads(wharf.export_flow(data))["profile"]["keys"]) == 2
    audit = wharf.ok("audit", "list", "--data", data).stdout
    assert audit.count("cert.import") == 2
    r = wharf("cert", "import", "--data", data, "--partner", "zz",
              certs["b"])
    assert r.returncode == 1 and "zz" in r.stderr


@pytest.mark.parametrize("change,expect", [
    ({"encrypt": "aes512-cbc"}, "encrypt"),
    ({"sign": "md5"}, "sign"),
    ({"mdn": "async"}, "async_mdn_url"),
    ({"as2_id": "wharf-a"}, "profile's own as2_id"),
    ({"as2_id": "bad\"id"}, "as2_id"),
    ({"url": "http://127.0.0.1:5080/as2"}, "url"),
    ({"certificates": []}, "certificates"),
    ({"colour": "blue"}, "colour"),
    ({"certificates": ["/nonexistent/b.pem"]}, "b.pem"),
])
def test_m7_bad_partner_refused_and_nothing_changes(tmp_path, wharf, certs,
                                                    change, expect):
    data = new_data_dir(wharf, tmp_path / "data")
    before = wharf.export_flow(data)
    p = tmp_path / "flow.json"
    p.write_text(json.dumps(contract_doc(certs, tmp_path, **change)))
    r = wharf("flow", "import", "--data", data, p)
    assert r.returncode == 1, r.stdout
    line = r.stderr.strip()
    assert "\n" not in line and expect in line, line
    assert wharf.export_flow(data) == before


def test_m7_bad_profile_keys_refused(tmp_path, wharf, certs):
    data = new_data_dir(wharf, tmp_path / "data")
    doc = contract_doc(certs, tmp_path)
    wrong = secret(certs["dir"], "wrong.pass", "not-the-password")
    doc["profile"]["keys"][0]["password_file"] = str(wrong)
    p = tmp_path / "flow.json"
    p.write_text(json.dumps(doc))
    r = wharf("flow", "import", "--data", data, p)
    assert r.returncode == 1 and "wrong password" in r.stderr
    assert "not-the-password" not in r.stderr
    # a key that does not match its certificate
    other_pem, _ = self_signed(certs["dir"], "other")
    doc["profile"]["keys"] = [{"cert": str(other_pem),
                               "key": str(certs["a_key"])}]
    p.write_text(json.dumps(doc))
    r = wharf("flow", "import", "--data", data, p)
    assert r.returncode == 1 and "does not match" in r.stderr
    assert "partners" not in wharf.export_flow(data)


def test_m7_partners_and_certificates_over_the_api(tmp_path, wharf, certs,
                                                  served):
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(contract_doc(certs, tmp_path)))

    def before(data):
        wharf.ok("flow", "import", "--data", data, flow)
        return {r: cli_token(wharf, data, r)[0] for r in ("admin", "viewer")}
    _, data, api, tok = served(before=before)
    parts = api.ok("GET", "/api/v1/partners", token=tok["viewer"]).json()
    assert parts["partners"][0]["as2_id"] == "wharf-b"
    cl = api.ok("GET", "/api/v1/certificates",
                token=tok["viewer"]).json()["certificates"]
    assert sorted(c["owner"] for c in cl) == ["(profile)", "b"]
    b_id = [c["id"] for c in cl if c["owner"] == "b"][0]
    r = api.request("GET", f"/api/v1/certificates/{b_id[:16]}",
                    token=tok["viewer"])
    assert r.status == 200 and r.body.decode() == ossl(
        "x509", "-in", certs["b"], cwd=certs["dir"]).decode()
    # rollover over the API: administrators add a certificate (PEM only)
    new_pem, new_key = self_signed(certs["dir"], "wharf-b-next")
    body = {"pem": new_pem.read_text(), "use_from": "2027-02-01T00:00:00Z"}
    r = api.request("POST", "/api/v1/partners/b/certificates", body=body,
                    token=tok["viewer"])
    assert r.status == 403
    added = api.ok("POST", "/api/v1/partners/b/certificates", status=201,
                   body=body, token=tok["admin"]).json()
    assert added["status"] == "imported"
    cl = api.ok("GET", "/api/v1/certificates",
                token=tok["admin"]).json()["certificates"]
    assert any("wharf-b-next" in c["subject"] and
               c["use_from"] == "2027-02-01T00:00:00Z" for c in cl)
    bad = {"pem": new_pem.read_text() + new_key.read_text()}
    r = api.request("POST", "/api/v1/partners/b/certificates", body=bad,
                    token=tok["admin"])
    assert r.status == 400
    r = api.request("POST", "/api/v1/partners/zz/certificates", body=body,
                    token=tok["admin"])
    assert r.status == 404
