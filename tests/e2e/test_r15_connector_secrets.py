"""R15 (M5, M6): secrets of connectors are given as files and stored by
the vault. Flow import reads each secret file once and seals it; the
running connector uses the sealed copy (the file may be gone), the
database holds no plaintext, `flow export` names the sealed values
({"sealed": "CONNECTOR:KEY"}) and never a secret, and the sealed rows
follow the flow (replaced by each import, dropped with their
connector)."""
import base64
import json
import os
import sqlite3

import pytest

from conftest import (file_dest, file_source, flow_doc, new_data_dir,
                      drop_file, wait_until)
from test_m6_http import (Recorder, http_dest, https_server, make_ca,
                          openssl, pki, secret_file, wait_states)

PW, TOKEN = "pw-sealed-7731", "tok-sealed-4410"


def db_bytes(data):
    """Every byte of the SQLite database files (main file and WAL)."""
    out = b""
    for p in sorted(data.glob("*.db*")) + sorted(data.glob("**/*.db*")):
        if p.is_file():
            out += p.read_bytes()
    return out


def secret_rows(data, connector):
    con = sqlite3.connect(str(next(data.glob("**/*.db"))))
    try:
        return sorted(r[0] for r in con.execute(
            "SELECT name FROM connector_secrets WHERE connector = ?",
            (connector,)))
    finally:
        con.close()


def client_cert(d, ca, ca_key):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=wharf-client", "-keyout", "cli-key.pem",
            "-out", "cli.csr", cwd=d)
    openssl("x509", "-req", "-in", "cli.csr", "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "2", "-out", "cli.pem", cwd=d)
    (d / "cli-key.pem").chmod(0o600)
    return d / "cli.pem", d / "cli-key.pem"


@pytest.fixture
def mtls_server(pki):
    cca, cca_key = make_ca(pki["dir"], "clientca")
    s = Recorder((pki["cert"], pki["key"]), client_ca=cca)
    s.client_ca = (cca, cca_key)
    yield s
    s.close()


def test_r15_secret_files_are_sealed_at_import_and_may_go(
        tmp_path, wharf, pki, mtls_server, https_server, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    sec = tmp_path / "secrets"
    sec.mkdir()
    cert, key = client_cert(pki["dir"], *mtls_server.client_ca)
    url = f"https://127.0.0.1:{https_server.port}/ok"
    murl = f"https://127.0.0.1:{mtls_server.port}/ok"
    ins = [tmp_path / f"in{i}" for i in range(3)]
    for d in ins:
        d.mkdir()
    pw_file = secret_file(sec, "pw", PW)
    tok_file = secret_file(sec, "tok", TOKEN)
    key_pem = key.read_text()
    doc = flow_doc([
        file_source("in0", ins[0]), file_source("in1", ins[1]),
        file_source("in2", ins[2]),
        http_dest("cert", murl, tls_ca=str(pki["ca"]),
                  auth={"type": "client_cert", "cert": str(cert),
                        "key": str(key)}),
        http_dest("bearer", url, tls_ca=str(pki["ca"]),
                  auth={"type": "bearer", "token_file": tok_file}),
        http_dest("pw", url, tls_ca=str(pki["ca"]),
                  auth={"type": "basic", "user": "wharf",
                        "password_file": pw_file}),
    ], [("in0", "cert"), ("in1", "bearer"), ("in2", "pw")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    # The files are read once, at import: remove every one of them.
    for p in (pw_file, tok_file, key):
        os.unlink(p)
    srv = start_server(data)
    srv.wait_listening()
    for i, d in enumerate(ins):
        drop_file(d, f"f{i}.txt", b"payload %d" % i)
    msgs = wait_states(wharf, data, 3)
    assert all(m["state"] == "sent" for m in msgs), msgs
    assert len(mtls_server.bodies("/ok")) == 1     # it presented the cert
    auths = sorted(r[2]["Authorization"] for r in https_server.bodies("/ok"))
    assert auths == sorted(["Bearer " + TOKEN, "Basic " + base64.
                            b64encode(("wharf:" + PW).encode()).decode()])
    srv.stop()
    raw = db_bytes(data)
    for s in (PW, TOKEN, key_pem.strip().splitlines()[1]):
        assert s.encode() not in raw, "plaintext secret in the database"
    exported = wharf.export_flow(data)
    assert pw_file not in exported and PW not in exported
    assert TOKEN not in exported and "PRIVATE KEY" not in exported
    pw_cfg = [c["config"] for c in json.loads(exported)["connectors"]
              if c["name"] == "pw"][0]
    assert pw_cfg["auth"]["password_file"] == {
        "sealed": "pw:auth.password_file"}
    # the CA bundles and the client certificate are read at import too
    assert secret_rows(data, "pw") == ["auth.password_file", "tls_ca"]
    assert secret_rows(data, "cert") == ["auth.cert", "auth.key", "tls_ca"]


def test_r15_import_snapshots_the_file_and_reimport_replaces_it(
        tmp_path, wharf, pki, start_server):
    s = Recorder((pki["cert"], pki["key"]))
    try:
        data = new_data_dir(wharf, tmp_path / "data")
        inbox = tmp_path / "in"
        inbox.mkdir()
        tok = tmp_path / "tok"
        tok_file = secret_file(tmp_path, "tok", "first-token")
        doc = flow_doc([file_source("in", inbox),
                        http_dest("out", f"https://127.0.0.1:{s.port}/ok",
                                  tls_ca=str(pki["ca"]),
                                  auth={"type": "bearer",
                                        "token_file": tok_file})],
                       [("in", "out")])
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        tok.write_text("second-token\n")   # not read until the next import
        srv = start_server(data)
        srv.wait_listening()
        drop_file(inbox, "a.txt", b"a")
        wait_states(wharf, data, 1)
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        log = data / "logs" / "wharf.log"
        wait_until(lambda: "flow generation 2 loaded" in log.read_text(),
                   timeout=30, desc="the new flow loaded")
        drop_file(inbox, "b.txt", b"b")
        wait_states(wharf, data, 2)
        srv.stop()
        seen = [r[2]["Authorization"] for r in s.bodies("/ok")]
        assert seen == ["Bearer first-token", "Bearer second-token"]
    finally:
        s.close()


def test_r15_sealed_rows_go_with_their_connector(tmp_path, wharf):
    data = new_data_dir(wharf, tmp_path / "data")
    inbox = tmp_path / "in"
    inbox.mkdir()
    pw = secret_file(tmp_path, "pw", "gone-with-it")
    dest = http_dest("out", "https://127.0.0.1:9/ok",
                     auth={"type": "basic", "user": "u",
                           "password_file": pw})
    wharf.import_flow(data, flow_doc([file_source("in", inbox), dest],
                                     [("in", "out")]), tmp_path / "f1.json")
    assert secret_rows(data, "out") == ["auth.password_file"]
    wharf.import_flow(data, flow_doc([file_source("in", inbox),
                                      file_dest("keep", tmp_path)],
                                     [("in", "keep")]), tmp_path / "f2.json")
    assert secret_rows(data, "out") == []


def test_r15_unreadable_secret_file_fails_the_import_and_changes_nothing(
        tmp_path, wharf):
    data = new_data_dir(wharf, tmp_path / "data")
    inbox = tmp_path / "in"
    inbox.mkdir()
    before = wharf.export_flow(data)
    dest = http_dest("out", "https://127.0.0.1:9/ok",
                     auth={"type": "bearer",
                           "token_file": str(tmp_path / "missing")})
    p = tmp_path / "flow.json"
    p.write_text(json.dumps(
        flow_doc([file_source("in", inbox), dest], [("in", "out")])))
    r = wharf("flow", "import", "--data", data, p)
    assert r.returncode == 1
    err = r.stderr.strip()
    assert "\n" not in err and "out" in err and "token_file" in err, err
    assert wharf.export_flow(data) == before


def test_r15_exported_client_key_is_kept_never_copied(
        tmp_path, wharf, pki, mtls_server, start_server):
    """A client certificate key never opens outside the vault's key table
    (the key process under serve): `flow export` + `flow import` keeps the
    connector's own sealed key (`connector test` without serve and the
    running connector under serve still present it); a
    reference to it from another connector is refused (it would have to be
    unsealed to be sealed again)."""
    data = new_data_dir(wharf, tmp_path / "data")
    cert, key = client_cert(pki["dir"], *mtls_server.client_ca)
    inbox = tmp_path / "in"
    inbox.mkdir()
    murl = f"https://127.0.0.1:{mtls_server.port}/ok"
    doc = flow_doc([file_source("in", inbox),
                    http_dest("cert", murl, tls_ca=str(pki["ca"]),
                              auth={"type": "client_cert", "cert": str(cert),
                                    "key": str(key)})], [("in", "cert")])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    os.unlink(key)
    exported = wharf.export_flow(data)
    wharf.import_flow(data, exported, tmp_path / "again.json")
    # without serve (no key process) the CLI signs in its own key table
    wharf.ok("connector", "cert", "test", "--data", data)
    assert [r[0] for r in mtls_server.bodies("/ok")] == ["HEAD"]
    srv = start_server(data)
    srv.wait_listening()
    drop_file(inbox, "a.txt", b"a")
    msgs = wait_states(wharf, data, 1)
    assert [m["state"] for m in msgs] == ["sent"], msgs
    assert [r[0] for r in mtls_server.bodies("/ok")] == ["HEAD", "POST"]
    srv.stop()
    renamed = json.loads(exported)
    for c in renamed["connectors"]:
        if c["name"] == "cert":
            c["name"] = "cert2"
    renamed["links"] = [["in", "cert2"]]
    p = tmp_path / "renamed.json"
    p.write_text(json.dumps(renamed))
    r = wharf("flow", "import", "--data", data, p)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "give the key file again" in r.stderr, r.stderr
    assert secret_rows(data, "cert") == ["auth.cert", "auth.key", "tls_ca"]
