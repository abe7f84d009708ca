"""
R6 (no secrets in logs or outputs) and R5 (local, levelled, plain-text
logs): at trace level, globally and per connector, the master key appears
in no log, no command output, not in the database and not in a payload;
log lines have the documented shape; the levels filter what they should.
"""
import base64
import os
import re

from conftest import (drop_file, file_dest, file_source, flow_doc,
                      new_data_dir, wait_until)

# log.h: "2026-11-23T11:31:43.123Z INFO  conn=inbox msg=0193... picked up a.edi"
LINE_RE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) "
    r"(?P<level>ERROR|WARN |INFO |DEBUG|TRACE) "
    r"(?:conn=(?P<conn>[A-Za-z0-9._-]+) )?"
    r"(?:msg=(?P<msg>[0-9a-f-]{36}) )?"
    r"(?P<text>\S.*)$")


def master_keys(data):
    keys = []
    for line in (data / "keystore").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "master":
            assert len(parts) == 4 and re.fullmatch(r"[0-9a-f]{64}", parts[2])
            keys.append(parts[2])
    assert keys
    return keys


def secret_forms(key_hex):
    """(label, bytes, case_insensitive) for every form of the key that must
    not appear anywhere."""
    raw = bytes.fromhex(key_hex)
    forms = [("hex", key_hex.encode(), True), ("raw", raw, False)]
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        b = enc(raw)
        forms.append((f"{enc.__name__}", b.rstrip(b"="), False))
    for i in range(0, 17):
        forms.append((f"hex window {i}", key_hex[2 * i:2 * i + 32].encode(),
                      True))
        forms.append((f"raw window {i}", raw[i:i + 16], False))
        forms.append((f"base64 window {i}",
                      base64.b64encode(raw[i:i + 16])[:20], False))
    return forms


def assert_no_key(label, blob, keys):
    low = blob.lower()
    for k in keys:
        for what, needle, nocase in secret_forms(k):
            hay = low if nocase else blob
            assert needle not in hay, (
                f"master key ({what}) found in {label}")


def data_files(data):
    """Every regular file of the data dir except the keystore itself (not
    serve's ssh-agent socket, state/ssh-agent.sock: it holds no bytes)."""
    out = []
    for root, _, names in os.walk(data):
        for n in names:
            p = os.path.join(root, n)
            if os.path.abspath(p) != os.path.abspath(data / "keystore") and \
                    os.path.isfile(p):
                out.append(p)
    return out


def scan_everything(data, wharf, servers, keys, must_have):
    files = data_files(data)
    rel = {os.path.relpath(p, data) for p in files}
    for m in must_have:
        assert any(r == m or r.startswith(m) for r in rel), (
            f"{m} not found in the data dir: {sorted(rel)}")
    for p in files:
        with open(p, "rb") as f:
            assert_no_key(p, f.read(), keys)
    for argv, out, err in wharf.outputs:
        cmd = " ".join(argv[1:])
        assert_no_key(f"stdout of {cmd}", out.encode(), keys)
        assert_no_key(f"stderr of {cmd}", err.encode(), keys)
    for s in servers:
        assert_no_key(str(s.err_path), s.err_path.read_bytes(), keys)
        assert_no_key(str(s.out_path), s.out_path.read_bytes(), keys)


def workload(tmp_path, wharf, start_server, name, level, conn_levels=None,
             nfiles=8):
    """A data dir at `level` (connectors at conn_levels[name] if given), a
    file->file flow, nfiles files delivered plus one that fails on a
    collision, every message shown. Returns (data, server)."""
    conn_levels = conn_levels or {}
    root = tmp_path / name
    recv, out = root / "in", root / "out"
    recv.mkdir(parents=True)
    out.mkdir()
    data = new_data_dir(wharf, root / "data", "--log-level", level)

    def lv(conn, **cfg):
        if conn in conn_levels:
            cfg["log_level"] = conn_levels[conn]
        return cfg

    wharf.import_flow(data, flow_doc(
        [file_source("inbox", recv, **lv("inbox")),
         file_dest("outbox", out, **lv("outbox", on_collision="fail"))],
        [("inbox", "outbox")]), root / "flow.json")
    (out / "clash.txt").write_text("already here")
    server = start_server(data)
    for i in range(nfiles):
        drop_file(recv, f"doc{i}.txt", f"document {i}\n".encode() * (i + 1))
    drop_file(recv, "clash.txt", b"collides")

    def settled():
        server.check_alive()
        msgs = wharf.messages(data)
        return len(msgs) == nfiles + 1 and all(
            m["state"] in ("sent", "failed") for m in msgs) and msgs

    msgs = wait_until(settled, timeout=60, desc="all messages settled")
    assert sorted(m["state"] for m in msgs).count("failed") == 1
    for m in msgs:
        wharf.show(data, m["id"])
        wharf("message", "show", "--data", data, m["id"])
    wharf("message", "list", "--data", data)
    wharf("flow", "export", "--data", data)
    return data, server


def log_lines(data):
    lines = []
    for n in sorted(os.listdir(data / "logs")):
        lines += (data / "logs" / n).read_text(errors="replace").splitlines()
    return lines


def test_r06_no_master_key_in_logs_outputs_db_or_payloads(
        tmp_path, wharf, start_server):
    data, server = workload(tmp_path, wharf, start_server, "trace", "trace",
                            {"inbox": "trace", "outbox": "trace"})
    keys = set(master_keys(data))
    # while the server runs, the database has its write-ahead log
    scan_everything(data, wharf, start_server.started, keys,
                    ["logs/wharf.log", "wharf.db", "wharf.db-wal",
                     "payloads/"])
    server.stop()

    # rotate (the new key is printed by nobody either), then more traffic
    wharf.ok("key", "rotate", "--data", data)
    keys |= set(master_keys(data))
    assert len(keys) == 2
    server = start_server(data)
    recv = data.parent / "in"
    for i in range(5):
        drop_file(recv, f"after{i}.txt", os.urandom(300))
    wait_until(lambda: server.check_alive() and
               len(wharf.messages(data, "sent")) == 8 + 5, timeout=60,
               desc="the files after rotation delivered")
    wharf("message", "list", "--data", data, "--json")
    scan_everything(data, wharf, start_server.started, keys,
                    ["logs/wharf.log", "wharf.db", "wharf.db-wal",
                     "payloads/"])
    server.stop()
    scan_everything(data, wharf, start_server.started, keys,
                    ["logs/wharf.log", "wharf.db", "payloads/"])
    # trace really was on: the logs say a lot, and nothing of the key
    lines = log_lines(data)
    assert any(" TRACE " in l for l in lines)


def test_r05_log_lines_have_documented_shape(tmp_path, wharf, start_server):
    data, server = workload(tmp_path, wharf, start_server, "trace", "trace",
                            {"inbox": "trace", "outbox": "trace"})
    server.stop()
    lines = log_lines(data)
    assert lines
    bad = [l for l in lines if not LINE_RE.match(l)]
    assert not bad, f"log lines not in the documented shape: {bad[:5]}"
    parsed = [LINE_RE.match(l) for l in lines]
    levels = {m["level"].strip() for m in parsed}
    assert {"TRACE", "DEBUG", "INFO", "ERROR"} <= levels, levels
    with_both = [m for m in parsed if m["conn"] and m["msg"]]
    assert with_both, "no line names both the connector and the message"
    ids = {m["id"] for m in wharf.messages(data)}
    assert {m["msg"] for m in with_both} <= ids
    assert {m["conn"] for m in parsed if m["conn"]} <= {"inbox", "outbox"}
    # the collision failure is an ERROR line naming connector and message
    assert any(m["level"] == "ERROR" and m["conn"] == "outbox" and m["msg"]
               and "clash.txt" in m["text"] for m in parsed)
    # the same lines went to stderr of serve (foreground)
    err_lines = server.stderr().splitlines()
    assert err_lines and all(LINE_RE.match(l) for l in err_lines), \
        err_lines[:5]


def test_r05_levels_filter_lines(tmp_path, wharf, start_server):
    counts = {}
    for level in ("trace", "info", "error"):
        data, server = workload(tmp_path, wharf, start_server, level, level)
        server.stop()
        lines = log_lines(data)
        levels = [LINE_RE.match(l)["level"].strip() for l in lines
                  if LINE_RE.match(l)]
        assert len(levels) == len(lines)
        counts[level] = (len(lines), set(levels))
        if level == "info":
            assert not {"DEBUG", "TRACE"} & set(levels), levels
            assert "INFO" in levels
        if level == "error":
            assert set(levels) == {"ERROR"}, (
                f"an error-level log holds other lines: {sorted(set(levels))}")
            serve_levels = {LINE_RE.match(l)["level"].strip()
                            for l in server.stderr().splitlines()
                            if LINE_RE.match(l)}
            assert serve_levels <= {"ERROR"}, serve_levels
    assert counts["trace"][0] > counts["info"][0] > counts["error"][0], counts
    assert {"DEBUG", "TRACE"} <= counts["trace"][1]


def test_r05_per_connector_level_overrides_global(tmp_path, wharf,
                                                  start_server):
    data, server = workload(tmp_path, wharf, start_server, "mixed", "error",
                            {"outbox": "trace"})
    server.stop()
    parsed = [LINE_RE.match(l) for l in log_lines(data)]
    assert all(parsed)
    verbose = [m for m in parsed if m["level"].strip() != "ERROR"]
    assert verbose, "the connector at trace logged nothing but errors"
    assert any(m["level"] == "TRACE" or m["level"] == "DEBUG"
               for m in verbose)
    others = [m.string for m in verbose if m["conn"] != "outbox"]
    assert not others, (
        f"lines above the global level from elsewhere: {others[:5]}")


def test_r05_log_rotation_by_size(tmp_path, wharf, start_server):
    root = tmp_path / "rot"
    recv, out = root / "in", root / "out"
    recv.mkdir(parents=True)
    out.mkdir()
    data = new_data_dir(wharf, root / "data", "--log-level", "trace",
                        log_max_bytes=4096, log_keep=2)
    wharf.import_flow(data, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", out)],
        [("inbox", "outbox")]), root / "flow.json")
    server = start_server(data)
    for i in range(60):
        drop_file(recv, f"r{i:02d}.txt", b"x" * i)
    wait_until(lambda: server.check_alive() and
               len(wharf.messages(data, "sent")) == 60, timeout=60,
               desc="60 messages sent")
    server.stop()
    logs = sorted(os.listdir(data / "logs"))
    assert logs == ["wharf.log", "wharf.log.1", "wharf.log.2"], logs
    for n in logs:
        size = (data / "logs" / n).stat().st_size
        assert 0 < size <= 4096, (n, size)
        for line in (data / "logs" / n).read_text().splitlines():
            assert LINE_RE.match(line), line
    assert "engine stopped" in (data / "logs" / "wharf.log").read_text()


def test_r05_one_event_is_one_line_even_with_hostile_names(
        tmp_path, wharf, start_server):
    root = tmp_path / "hostile"
    recv, out = root / "in", root / "out"
    recv.mkdir(parents=True)
    out.mkdir()
    data = new_data_dir(wharf, root / "data", "--log-level", "trace")
    wharf.import_flow(data, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", out)],
        [("inbox", "outbox")]), root / "flow.json")
    server = start_server(data)
    forged = "2026-01-01T00:00:00.000Z ERROR conn=outbox forged line"
    drop_file(recv, f"evil\n{forged}\r.txt", b"payload with a hostile name")
    drop_file(recv, "tab\there \x1b[31mred.txt", b"escape sequences")
    wait_until(lambda: server.check_alive() and
               len(wharf.messages(data, "sent")) == 2, timeout=30,
               desc="both messages sent")
    server.stop()
    lines = log_lines(data) + server.stderr().splitlines()
    for line in lines:
        assert LINE_RE.match(line), f"not one event per line: {line!r}"
        assert not line.startswith("2026-01-01T00:00:00.000Z"), line
        assert "\x1b" not in line and "\r" not in line, repr(line)
    # both files were delivered, neither under a name with control
    # characters in it
    names = os.listdir(out)
    assert len(names) == 2, names
    assert all(not any(ord(c) < 0x20 or c == "\x7f" for c in n)
               for n in names), names
    assert sorted((out / n).read_bytes() for n in names) == sorted(
        [b"payload with a hostile name", b"escape sequences"])
