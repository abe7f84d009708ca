"""R14, R15, R22 (issue: an operator can read the master key and write
files anywhere): the paths a flow may name.

The attacks come from the least-privileged role that can import a flow,
an operator, through the API (PUT /api/v1/flows):
  - an http connector whose basic-auth password_file is the keystore, then
    "test connection" to the operator's URL, sends the keystore away;
  - a webhook feeding a file destination whose send_dir is anywhere plants
    files as the server's user;
  - a file source on the data dir deletes the keystore and hands it over.
Each is refused with a clear error and an audit entry. Paths a flow may
use lie under wharf.conf's allowed_paths, never inside the data dir,
resolved without following symlinks; the API never reads a file the
caller names (secrets are uploaded as content and sealed); secret files
are regular files (a FIFO does not hang the import) and not blank (an
empty token file must not make `Authorization: Bearer ` valid).

Also here (same design): flow export/import works after the secret files
were deleted (R15, export names the sealed values), credential headers of
an http connector are sealed (R06), and a source without a link is refused
(M1).
"""
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (drop_file, file_dest, file_source, flow_doc,
                      listen_port, new_data_dir, tune_conf, wait_until)
from test_m6_http import Recorder, http_dest, pki, secret_file  # noqa: F401
from test_r14_api import Api, TOKEN_RE

MARK = "keystore-marker"


def token(wharf, data, role):
    out = wharf.ok("token", "create", "--data", data, "--role", role,
                   "--owner", "admin").stdout
    return TOKEN_RE.search(out).group(1)


def audit_actions(wharf, data):
    rows = json.loads(wharf.ok("audit", "list", "--data", data,
                               "--json").stdout)
    return [(r["action"], r.get("detail") or "") for r in rows]


@pytest.fixture
def server(tmp_path, wharf, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    srv = start_server(data)
    srv.wait_listening()
    api = Api(listen_port(data, "admin"))
    return data, srv, api, token(wharf, data, "operator")


def refused(api, tok, doc, words):
    r = api.request("PUT", "/api/v1/flows", body=doc, token=tok)
    assert r.status == 400, r
    msg = r.json()["error"]["message"]
    for w in words:
        assert w in msg, msg
    return msg


def test_r14_operator_cannot_send_the_keystore_through_a_secret_file(
        server, wharf, tmp_path):
    data, srv, api, op = server
    keystore = data / "keystore"
    doc = flow_doc([http_dest("leak", "https://127.0.0.1:9/x",
                              auth={"type": "basic", "user": "u",
                                    "password_file": str(keystore)})], [])
    refused(api, op, doc, ["API does not read files", "content"])
    # a path inside the data dir in any secret key, via the CLI too
    (tmp_path / "flow.json").write_text(json.dumps(doc))
    p = wharf("flow", "import", "--data", data, tmp_path / "flow.json")
    assert p.returncode == 1 and "inside the data directory" in p.stderr, p
    assert "flow.import.refused" in [a for a, _ in audit_actions(wharf, data)]
    assert json.loads(wharf.export_flow(data))["connectors"] == []


def test_r14_operator_cannot_plant_files_outside_allowed_paths(
        server, wharf, tmp_path):
    data, srv, api, op = server
    outside = Path("/var/tmp") / f"wharf-outside-{os.getpid()}"
    outside.mkdir(exist_ok=True)
    try:
        for bad, words in ((str(outside), ["outside the folders",
                                           "allowed_paths"]),
                           (str(data / "payloads"), ["inside the data "
                                                     "directory"]),
                           (str(tmp_path / "in" / ".." / "data"),
                            ["without . or .."])):
            doc = flow_doc([{"name": "hook", "type": "webhook",
                             "config": {"path": "drop", "auth": {
                                 "type": "bearer",
                                 "token_file": {"content": "t0ken-123"}}}},
                            file_dest("plant", bad)], [["hook", "plant"]])
            refused(api, op, doc, words)
        refusals = [d for a, d in audit_actions(wharf, data)
                    if a == "flow.import.refused"]
        assert len(refusals) >= 3 and any("allowed_paths" in d
                                          for d in refusals), refusals
        assert list(outside.iterdir()) == []
    finally:
        outside.rmdir()


def test_r14_file_source_on_the_data_dir_is_refused(server, wharf, tmp_path):
    data, srv, api, op = server
    out = tmp_path / "out"
    out.mkdir()
    for bad in (data, data / "tls", data / "logs"):
        doc = flow_doc([file_source("grab", bad), file_dest("out", out)],
                       [["grab", "out"]])
        refused(api, op, doc, ["inside the data directory"])
    assert (data / "keystore").is_file()
    assert list(out.iterdir()) == []


def test_r14_symlinks_beneath_the_root_are_not_followed(server, wharf,
                                                        tmp_path):
    data, srv, api, op = server
    (tmp_path / "out").mkdir()
    link = tmp_path / "sneaky"
    link.symlink_to(data)           # a symlink under the allowed root
    doc = flow_doc([file_source("grab", link), file_dest("out",
                                                         tmp_path / "out")],
                   [["grab", "out"]])
    refused(api, op, doc, ["symbolic link"])
    # and a folder swapped for a symlink after import is not followed
    real = tmp_path / "drop"
    real.mkdir()
    doc = flow_doc([{"name": "hook", "type": "webhook",
                     "config": {"path": "drop", "auth": {
                         "type": "bearer", "token_file": {
                             "content": "t0ken-123"}}}},
                    file_dest("d", real)], [["hook", "d"]])
    r = api.request("PUT", "/api/v1/flows", body=doc, token=op)
    assert r.status == 200, r
    log = data / "logs" / "wharf.log"
    wait_until(lambda: f"flow generation {r.json()['generation']} loaded"
               in log.read_text(), desc="the server took the new flow")
    real.rmdir()
    real.symlink_to(data)
    import http.client
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    c = http.client.HTTPSConnection("127.0.0.1", listen_port(data, "partner"),
                                    context=ctx, timeout=10)
    c.request("POST", "/webhook/drop", body=b"planted",
              headers={"Authorization": "Bearer t0ken-123",
                       "X-Filename": "planted.txt"})
    assert c.getresponse().status in (200, 201, 202)
    c.close()
    msgs = wait_until(lambda: [m for m in wharf.messages(data)
                               if m["state"] in ("retrying", "failed")],
                      desc="delivery refused")
    show = wharf.show(data, msgs[0]["id"])
    assert "symbolic link" in json.dumps(show), show
    assert not list(data.glob("planted*"))


def test_r15_secret_files_must_be_regular_and_not_blank(tmp_path, wharf):
    data = new_data_dir(wharf, tmp_path / "data")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    blank = secret_file(tmp_path, "blank", "  \n")
    empty = secret_file(tmp_path, "empty", "")
    cases = ((fifo, "not a regular file"), (blank, "empty"),
             (empty, "empty"))
    for path, words in cases:
        doc = flow_doc([{"name": "hook", "type": "webhook", "config": {
            "path": "x", "auth": {"type": "bearer",
                                  "token_file": str(path)}}},
            file_dest("out", tmp_path)], [["hook", "out"]])
        (tmp_path / "flow.json").write_text(json.dumps(doc))
        t0 = time.monotonic()
        p = wharf("flow", "import", "--data", data, tmp_path / "flow.json",
                  timeout=30)
        assert p.returncode == 1 and words in p.stderr, (path, p.stderr)
        assert time.monotonic() - t0 < 30
    for content in ("", "   "):
        doc = flow_doc([{"name": "hook", "type": "webhook", "config": {
            "path": "x", "auth": {"type": "bearer",
                                  "token_file": {"content": content}}}},
            file_dest("out", tmp_path)], [["hook", "out"]])
        (tmp_path / "flow.json").write_text(json.dumps(doc))
        p = wharf("flow", "import", "--data", data, tmp_path / "flow.json")
        assert p.returncode == 1 and "empty" in p.stderr, p.stderr


def test_r15_export_import_after_the_secret_files_are_gone(
        tmp_path, wharf, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    pw = Path(secret_file(tmp_path, "pw", "hook-pass-5512"))
    doc = flow_doc([{"name": "hook", "type": "webhook", "config": {
        "path": "in", "auth": {"type": "basic", "user": "p",
                               "password_file": str(pw)}}},
        file_dest("out", out)], [["hook", "out"]])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    pw.unlink()
    exported = wharf.export_flow(data)
    assert "hook-pass-5512" not in exported
    cfg = json.loads(exported)["connectors"][0]["config"]
    assert cfg["auth"]["password_file"] == {"sealed": "hook:auth.password_file"}
    (tmp_path / "again.json").write_text(exported)
    wharf.ok("flow", "import", "--data", data, tmp_path / "again.json")
    # the re-imported flow still authenticates with the sealed password
    srv = start_server(data)
    srv.wait_listening()
    import base64
    import http.client
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for pw_try, want in (("wrong", 401), ("hook-pass-5512", 200)):
        c = http.client.HTTPSConnection("127.0.0.1",
                                        listen_port(data, "partner"),
                                        context=ctx, timeout=10)
        auth = base64.b64encode(f"p:{pw_try}".encode()).decode()
        c.request("POST", "/webhook/in", body=b"x",
                  headers={"Authorization": f"Basic {auth}"})
        status = c.getresponse().status
        c.close()
        assert (status == 401) == (want == 401), (pw_try, status)
    srv.stop()
    # a reference this data dir does not hold is refused, naming it
    other = new_data_dir(wharf, tmp_path / "other")
    p = wharf("flow", "import", "--data", other, tmp_path / "again.json")
    assert p.returncode == 1 and "holds no sealed value" in p.stderr, p


def test_r06_credential_headers_are_sealed(tmp_path, wharf, pki,
                                           start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    rec = Recorder((pki["cert"], pki["key"]))
    try:
        src = tmp_path / "in"
        src.mkdir()
        url = f"https://127.0.0.1:{rec.port}/ok"
        doc = flow_doc([file_source("in", src),
                        http_dest("out", url, tls_ca=str(pki["ca"]),
                                  headers={"X-Api-Key": "k-9917-secret",
                                           "X-Trace": "plain-value"})],
                       [["in", "out"]])
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        exported = wharf.export_flow(data)
        assert "k-9917-secret" not in exported and "plain-value" in exported
        con = sqlite3.connect(str(data / "wharf.db"))
        try:
            dump = "\n".join(con.iterdump())
        finally:
            con.close()
        assert "k-9917-secret" not in dump
        srv = start_server(data)
        srv.wait_listening()
        viewer = token(wharf, data, "viewer")
        api = Api(listen_port(data, "admin"))
        r = api.request("GET", "/api/v1/connectors/out", token=viewer)
        assert r.status == 200 and b"k-9917-secret" not in r.body, r
        drop_file(src, "a.edi", b"payload")
        wait_until(lambda: rec.requests, desc="delivery")
        got = dict((k.lower(), v) for k, v in rec.requests[0][2].items())
        assert got["x-api-key"] == "k-9917-secret"
        assert got["x-trace"] == "plain-value"
        srv.stop()
    finally:
        rec.close()


def test_m1_a_source_without_a_link_is_refused(tmp_path, wharf, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    inbox = tmp_path / "in"
    inbox.mkdir()
    drop_file(inbox, "a.edi", b"stays")
    doc = flow_doc([file_source("in", inbox),
                    file_dest("out", tmp_path)], [])
    (tmp_path / "flow.json").write_text(json.dumps(doc))
    p = wharf("flow", "import", "--data", data, tmp_path / "flow.json")
    assert p.returncode == 1 and "no outgoing link" in p.stderr, p
    # wharf send to a connector with no outgoing link is an error
    doc = flow_doc([file_dest("out", tmp_path)], [])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    p = wharf("send", "--data", data, "out", inbox / "a.edi")
    assert p.returncode == 1 and "no outgoing link" in p.stderr, p
    assert wharf.messages(data) == []
    assert (inbox / "a.edi").read_bytes() == b"stays"


def test_m1_resend_routes_a_stranded_message_through_the_current_links(
        tmp_path, wharf):
    data = new_data_dir(wharf, tmp_path / "data")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    doc = flow_doc([file_source("in", a), file_dest("out", b)],
                   [["in", "out"]])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    (tmp_path / "x.edi").write_bytes(b"stranded")
    msg = wharf.send(data, "in", tmp_path / "x.edi")
    # what an older version left behind: the message never left its source
    con = sqlite3.connect(str(data / "wharf.db"))
    con.execute("DELETE FROM hops WHERE message_id = ? AND state != "
                "'received'", (msg,))
    con.commit()
    con.close()
    p = wharf.ok("message", "resend", "--data", data, msg)
    assert "requeued 1 hop" in p.stdout
    hops = [h["connector"] for h in wharf.show(data, msg)["hops"]]
    assert "out" in hops
    # nothing to resend while it is queued: an error, not "requeued 0"
    p = wharf("message", "resend", "--data", data, msg)
    assert p.returncode == 1 and "still being delivered" in p.stderr, p
    # and with no link at all, the error says what to do
    con = sqlite3.connect(str(data / "wharf.db"))
    con.execute("DELETE FROM hops WHERE message_id = ? AND state != "
                "'received'", (msg,))
    con.commit()
    con.close()
    wharf.import_flow(data, flow_doc([file_dest("in", a),
                                      file_dest("out", b)], []),
                      tmp_path / "flow2.json")
    p = wharf("message", "resend", "--data", data, msg)
    assert p.returncode == 1 and "no outgoing link" in p.stderr, p


def test_m3_same_name_and_bytes_twice_gives_two_files(tmp_path, wharf,
                                                       start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    doc = flow_doc([file_source("in", a),
                    file_dest("out", b, on_collision="rename")],
                   [["in", "out"]])
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    srv = start_server(data)
    drop_file(a, "inv.edi", b"same bytes")
    wait_until(lambda: (b / "inv.edi").exists(), desc="first copy")
    drop_file(a, "inv.edi", b"same bytes")
    wait_until(lambda: (b / "inv_1.edi").exists(), desc="second copy")
    srv.stop()
    assert sorted(os.listdir(b)) == ["inv.edi", "inv_1.edi"]
    receipts = [h.get("receipt") or "" for m in wharf.messages(data)
                for h in wharf.show(data, m["id"])["hops"]]
    assert not any("already present" in r for r in receipts), receipts
