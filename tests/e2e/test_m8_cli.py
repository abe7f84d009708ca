"""
M8 (CLI contract): --help, exit codes (0 ok, 1 failure with one line on
stderr, 2 usage), version --deps (R10 bill of materials), init, send and
message, and bad input that must change nothing. The runner (conftest)
also fails any command whose stderr carries a sanitizer report.
"""
import http.client
import json
import os
import re
import ssl
import stat
import uuid

import pytest

from conftest import (MSG_ID_RE, file_dest, file_source, flow_doc,
                      listen_port, wait_until)

COMMANDS = ["init", "serve", "status", "flow", "send", "message", "key",
            "version", "audit", "user", "token", "oidc", "api", "connector",
            "backup", "restore", "alert", "incident", "notify"]


def one_error_line(p, *words):
    """exit 1 and exactly one non-empty line on stderr that says 'wharf:'
    and mentions every word (case-insensitive)."""
    assert p.returncode == 1, (
        f"exit {p.returncode}, expected 1; stderr: {p.stderr!r}")
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), (
        f"expected one line on stderr, got: {p.stderr!r}")
    assert lines[0].startswith("wharf"), lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_m8_cli_help_exits_0(wharf, cmd):
    p = wharf(cmd, "--help")
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert p.stdout.startswith("usage:"), p.stdout
    assert f"wharf {cmd}" in p.stdout
    assert p.stderr == ""


def test_m8_cli_top_level_help_lists_every_command(wharf):
    p = wharf("--help")
    assert p.returncode == 0
    for cmd in COMMANDS:
        assert re.search(rf"^\s+{cmd}\s", p.stdout, re.M), (cmd, p.stdout)


@pytest.mark.parametrize("argv", [
    ["frobnicate"],
    [],
    ["flow", "--bogus"],
    ["flow", "frob"],
    ["message", "list", "--bogus"],
    ["message", "list", "--limit", "0"],
    ["message", "list", "--limit", "ten"],
    ["message"],
    ["message", "show"],
    ["version", "--nope"],
    ["init", "--data"],
    ["init", "--log-level"],
    ["serve", "extra-argument"],
    ["key"],
    ["key", "frobnicate"],
    ["send", "only-one-argument"],
])
def test_m8_cli_usage_errors_exit_2(wharf, tmp_path, argv):
    p = wharf(*argv)
    assert p.returncode == 2, (argv, p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip(), "a usage error must say what is wrong"
    assert not (tmp_path / "wharf-data").exists()


def test_m8_cli_message_list_unknown_state_is_usage_error(wharf, data_dir):
    # the states are documented (queued, processing, retrying, sent, failed,
    # received); a typo must not silently list nothing with exit 0.
    p = wharf("message", "list", "--data", data_dir, "--state", "snet")
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)


def test_m8_cli_version_deps_lists_libraries(wharf):
    p = wharf.ok("version")
    assert re.match(r"^wharf \d+\.\d+\.\d+", p.stdout), p.stdout
    p = wharf.ok("version", "--deps")
    assert re.match(r"^wharf \d+\.\d+\.\d+", p.stdout)
    for lib in ("openssl", "sqlite", "jansson", "zlib"):
        assert re.search(rf"^{lib}\b.*\d+\.\d+", p.stdout, re.M | re.I), (
            f"{lib} with a version missing from:\n{p.stdout}")


def test_m8_cli_init_modes_and_refuses_existing_dir(wharf, tmp_path):
    d = tmp_path / "data"
    p = wharf.ok("init", "--data", d)
    assert p.stderr == ""
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "keystore").stat().st_mode) == 0o600
    for name in ("wharf.conf", "wharf.db", "payloads", "logs"):
        assert (d / name).exists(), name
    before = {n: (d / n).read_bytes() for n in ("keystore", "wharf.conf")}

    one_error_line(wharf("init", "--data", d), "exist")
    assert {n: (d / n).read_bytes() for n in before} == before

    # an existing empty folder is refused too, and left as it is
    e = tmp_path / "empty"
    e.mkdir()
    one_error_line(wharf("init", "--data", e))
    assert os.listdir(e) == []

    one_error_line(wharf("init", "--data", tmp_path / "x", "--log-level",
                         "loud"), "log-level")
    assert not (tmp_path / "x").exists()


def test_m8_cli_send_list_show(tmp_path, wharf, data_dir):
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir()
    send.mkdir()
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", send)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    f = tmp_path / "po-1.edi"
    f.write_bytes(b"UNA:+.? '\nUNB+UNOC:3+SENDER+RECEIVER'\n")
    p = wharf.ok("send", "--data", data_dir, "inbox", f)
    msgid = p.stdout.strip()
    assert MSG_ID_RE.match(msgid), p.stdout

    p = wharf.ok("message", "list", "--data", data_dir, "--state", "queued")
    assert msgid in p.stdout and "po-1.edi" in p.stdout
    p = wharf.ok("message", "list", "--data", data_dir, "--state", "sent")
    assert msgid not in p.stdout
    listed = wharf.messages(data_dir, "queued")
    assert [m["id"] for m in listed] == [msgid]
    assert listed[0]["filename"] == "po-1.edi"
    assert listed[0]["size"] == f.stat().st_size

    d = wharf.show(data_dir, msgid)
    assert d["id"] == msgid and d["state"] == "queued"
    assert d["source"] == "inbox"
    hops = {h["connector"]: h for h in d["hops"]}
    assert hops["outbox"]["state"] == "queued"
    assert hops["outbox"]["attempts"] == 0
    assert d["events"] and all({"at", "level", "text"} <= set(e)
                               for e in d["events"])
    assert any("outbox" in e["text"] for e in d["events"])

    p = wharf.ok("message", "show", "--data", data_dir, msgid)
    assert msgid in p.stdout and "outbox" in p.stdout

    one_error_line(wharf("message", "show", "--data", data_dir,
                         "00000000-0000-0000-0000-000000000000"))
    one_error_line(wharf("message", "resend", "--data", data_dir,
                         "00000000-0000-0000-0000-000000000000"))
    one_error_line(wharf("send", "--data", data_dir, "nosuch", f), "nosuch")
    one_error_line(wharf("send", "--data", data_dir, "inbox",
                         tmp_path / "missing.edi"), "missing.edi")
    assert [m["id"] for m in wharf.messages(data_dir)] == [msgid]
    assert os.listdir(send) == []


# ---- bad input changes nothing ----------------------------------------------------


def good_flow(tmp_path):
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir(exist_ok=True)
    send.mkdir(exist_ok=True)
    return flow_doc([file_source("inbox", recv, pattern="*.edi"),
                     file_dest("outbox", send, on_collision="fail")],
                    [("inbox", "outbox")])


def bad_docs(tmp_path):
    good = good_flow(tmp_path)
    recv, send = tmp_path / "in", tmp_path / "out"
    unknown_type = json.loads(json.dumps(good))
    unknown_type["connectors"][1]["type"] = "carrier-pigeon"
    missing = json.loads(json.dumps(good))
    missing["connectors"][0]["config"]["receive_dir"] = str(tmp_path / "nope")
    link = json.loads(json.dumps(good))
    link["links"].append(["inbox", "ghost"])
    cycle = flow_doc([file_source("a", recv, send_dir=str(send)),
                      file_dest("b", send, receive_dir=str(recv)),
                      file_dest("c", send)],
                     [("a", "b"), ("b", "c"), ("c", "a")])
    return {
        "malformed_json": ('{"connectors": [{"name": "inbox", "type": "file",'
                           ' "config": {"receive_dir": "/tmp"}}', ["json"]),
        "unknown_connector_type": (unknown_type, ["carrier-pigeon"]),
        "missing_receive_dir": (missing, [str(tmp_path / "nope")]),
        "link_to_unknown_connector": (link, ["ghost"]),
        "cycle": (cycle, ["cycle"]),
    }


@pytest.mark.parametrize("case", ["malformed_json", "unknown_connector_type",
                                  "missing_receive_dir",
                                  "link_to_unknown_connector", "cycle"])
def test_m8_cli_bad_flow_exits_1_and_changes_nothing(tmp_path, wharf,
                                                     data_dir, case):
    wharf.import_flow(data_dir, good_flow(tmp_path), tmp_path / "good.json")
    f = tmp_path / "in-file.edi"
    f.write_text("x")
    msgid = wharf.send(data_dir, "inbox", f)
    flow_before = wharf.export_flow(data_dir)
    msgs_before = wharf.messages(data_dir)

    doc, words = bad_docs(tmp_path)[case]
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    line = one_error_line(wharf("flow", "import", "--data", data_dir, path),
                          *words)
    assert "Traceback" not in line

    assert wharf.export_flow(data_dir) == flow_before
    assert wharf.messages(data_dir) == msgs_before
    assert wharf.show(data_dir, msgid)["state"] == "queued"


def test_m8_cli_data_dir_mode_0755_refused(tmp_path, wharf, data_dir):
    wharf.import_flow(data_dir, good_flow(tmp_path), tmp_path / "good.json")
    flow_before = wharf.export_flow(data_dir)
    other = flow_doc([file_dest("elsewhere", tmp_path / "out")], [])
    (tmp_path / "other.json").write_text(json.dumps(other))
    f = tmp_path / "x.edi"
    f.write_text("x")
    os.chmod(data_dir, 0o755)
    try:
        for argv in (["flow", "import", "--data", data_dir,
                      tmp_path / "other.json"],
                     ["flow", "export", "--data", data_dir],
                     ["send", "--data", data_dir, "inbox", f],
                     ["message", "list", "--data", data_dir],
                     ["key", "rotate", "--data", data_dir],
                     ["serve", "--data", data_dir]):
            line = one_error_line(wharf(*argv, timeout=30), "755", "chmod")
            assert str(data_dir) in line
    finally:
        os.chmod(data_dir, 0o700)
    assert wharf.export_flow(data_dir) == flow_before
    assert wharf.messages(data_dir) == []


def test_m8_cli_one_server_per_data_dir_and_no_rotate_while_serving(
        tmp_path, wharf, data_dir, start_server):
    wharf.import_flow(data_dir, good_flow(tmp_path), tmp_path / "good.json")
    server = start_server(data_dir)
    wait_until(lambda: server.check_alive() and
               (data_dir / "logs" / "wharf.log").exists() and
               "serving" in (data_dir / "logs" / "wharf.log").read_text(),
               timeout=30, desc="the server running")
    keystore = (data_dir / "keystore").read_bytes()
    # the refusal names the running server and its pid
    one_error_line(wharf("serve", "--data", data_dir, timeout=30), "running",
                   f"another `wharf serve` (pid {server.pid})", str(data_dir))
    one_error_line(wharf("key", "rotate", "--data", data_dir), "running",
                   f"(pid {server.pid})")
    assert (data_dir / "keystore").read_bytes() == keystore
    assert server.running()
    server.stop()


@pytest.mark.parametrize("line", ["colour = blue", "workers = many",
                                  "log_level = loud", "no equals sign"])
def test_m8_cli_bad_wharf_conf_is_one_clear_error(tmp_path, wharf, data_dir,
                                                  line):
    wharf.import_flow(data_dir, good_flow(tmp_path), tmp_path / "good.json")
    flow_before = wharf.export_flow(data_dir)
    conf = data_dir / "wharf.conf"
    good = conf.read_text()
    conf.write_text(good + line + "\n")
    for argv in (["serve", "--data", data_dir],
                 ["message", "list", "--data", data_dir]):
        one_error_line(wharf(*argv, timeout=30), "wharf.conf")
    assert conf.read_text() == good + line + "\n"
    conf.write_text(good)
    assert wharf.export_flow(data_dir) == flow_before


# ---- errors that say what to do next, status --------------------------------------


def test_m8_cli_missing_data_dir_says_what_to_do(wharf, tmp_path):
    # the default ./wharf-data (cwd is tmp_path), and an explicit one
    p = wharf("message", "list")
    one_error_line(p, "no Wharf data directory at ./wharf-data", "--data DIR",
                   "$WHARF_DATA", "`wharf init --data DIR`")
    for argv in (["serve"], ["status"], ["flow", "export"],
                 ["send", "inbox", tmp_path / "x"], ["key", "rotate"]):
        p = wharf(*argv, "--data", tmp_path / "nowhere", timeout=30)
        one_error_line(p, f"no Wharf data directory at {tmp_path}/nowhere",
                       "--data", "$WHARF_DATA", "wharf init")
    # a folder that is not a data directory
    (tmp_path / "empty").mkdir()
    one_error_line(wharf("message", "list", "--data", tmp_path / "empty"),
                   "is not a Wharf data directory", "wharf.conf", "--data",
                   "wharf init")
    assert not (tmp_path / "wharf-data").exists()
    assert not (tmp_path / "nowhere").exists()
    assert os.listdir(tmp_path / "empty") == []


def test_m8_cli_status_without_a_server(wharf, data_dir):
    line = one_error_line(wharf("status", "--data", data_dir),
                          "not running", "wharf serve --data")
    assert str(data_dir) in line


# ---- message show by a unique prefix -----------------------------------------------


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def test_m8_cli_message_show_takes_a_unique_id_prefix(tmp_path, wharf,
                                                      data_dir):
    wharf.import_flow(data_dir, good_flow(tmp_path), tmp_path / "good.json")
    ids = []
    for i in range(3):
        f = tmp_path / f"m{i}.edi"
        f.write_text(f"message {i}\n")
        ids.append(wharf.send(data_dir, "inbox", f))
    def unique(msgid):
        others = [o for o in ids if o != msgid]
        n = max(6, max(len(common_prefix(msgid, o)) for o in others) + 1)
        return msgid[:n]
    for msgid in ids:
        prefix = unique(msgid)
        assert wharf.show(data_dir, prefix)["id"] == msgid
        assert wharf.show(data_dir, prefix.upper())["id"] == msgid
        p = wharf.ok("message", "show", "--data", data_dir, prefix)
        assert f"id:       {msgid}" in p.stdout
    # resend resolves the same way and names the whole id (the message is
    # still queued: nothing to resend, which is said, not "requeued 0")
    p = wharf("message", "resend", "--data", data_dir, unique(ids[0]))
    assert p.returncode == 1 and ids[0] in p.stderr, p
    assert "still being delivered" in p.stderr

    # ambiguous: the longest prefix two ids share (UUIDv7 ids made within
    # seconds share at least their first 8 characters)
    shared = max((common_prefix(a, b) for a in ids for b in ids if a != b),
                 key=len)
    assert len(shared) >= 6, ids
    k = sum(i.startswith(shared) for i in ids)
    line = one_error_line(wharf("message", "show", "--data", data_dir,
                                shared), f"{k} messages have ids starting "
                          f"with {shared}", "more characters")
    assert not any(i in line for i in ids)         # never guessed
    one_error_line(wharf("message", "show", "--data", data_dir, "ffffff"),
                   "no message id starts with ffffff")
    for bad in (ids[0][:5], "zzzzzz", ids[0] + "0"):
        p = wharf("message", "show", "--data", data_dir, bad)
        assert p.returncode == 2, (bad, p.stdout, p.stderr)
        assert "6 or more characters" in p.stderr or "hex" in p.stderr


# ---- refused messages: listed by state (CLI and API) ---------------------------------


def api_get(port, path, token):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE         # init's self-signed certificate
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                    timeout=30)
    try:
        c.request("GET", path, headers={"Authorization": f"Bearer {token}",
                                        "Connection": "close"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def test_m1_message_list_state_refused_cli_and_api(tmp_path, wharf,
                                                   start_server):
    from as2_pair import pair
    from as2_raw import Request, post
    _, b = pair(wharf, tmp_path)           # b requires signed, encrypted
    out = wharf.ok("token", "create", "--data", b.data, "--role", "viewer",
                   "--name", "ops", "--owner", "admin")
    token = re.search(r"wharf_[A-Za-z0-9_-]+", out.stdout + out.stderr)[0]
    b.server = start_server(b.data)
    b.server.wait_listening()
    # partner a sends a plain, unsigned message: refused, nothing kept
    req = Request("/as2", [("AS2-Version", "1.2"), ("AS2-From", "wharf-a"),
                           ("AS2-To", "wharf-b"),
                           ("Message-ID", f"<{uuid.uuid4().hex}@test>"),
                           ("Content-Type", "application/edi-x12")],
                  b"ISA*00*plain*unsigned~\n")
    post(b.url, req, b.tls_cert)
    refused = wait_until(lambda: wharf.messages(b.data),
                         desc="a refused message at b")
    assert [m["state"] for m in refused] == ["refused"]

    port = listen_port(b.data, "admin")
    status, body = api_get(port, "/api/v1/messages?state=refused", token)
    assert status == 200, body
    assert [m["id"] for m in body["messages"]] == [refused[0]["id"]]
    assert api_get(port, "/api/v1/messages?state=sent", token)[1][
        "messages"] == []
    assert api_get(port, "/api/v1/messages?state=snet", token)[0] == 400

    assert wharf.messages(b.data, "refused") == refused
    p = wharf.ok("message", "list", "--data", b.data, "--state", "refused")
    assert refused[0]["id"] in p.stdout and "refused" in p.stdout
    assert wharf.messages(b.data, "sent") == []
    b.server.stop()
