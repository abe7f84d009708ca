"""Issue 5 item 7: "test connection" for every connector (CLI and API)
says precisely what failed; `wharf connector list` marks connectors that
send in the clear (R11)."""
import json
import shutil
import socket

from conftest import file_dest, file_source, flow_doc, free_port


def http_dest(name, url, **cfg):
    c = {"url": url}
    c.update(cfg)
    return {"name": name, "type": "http", "config": c}


def test_m6_connector_test_says_what_failed(wharf, data_dir, tmp_path):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    outbox.mkdir()
    closed = free_port()            # nothing listens there
    doc = flow_doc([file_source("inbox", inbox), file_dest("outbox", outbox),
                    http_dest("partner", f"https://127.0.0.1:{closed}/in")],
                   [("inbox", "outbox"), ("inbox", "partner")])
    wharf.import_flow(str(data_dir), doc, tmp_path / "flow.json")
    ok = wharf("connector", "outbox", "test", "--data", str(data_dir))
    assert ok.returncode == 0 and "passed" in ok.stdout, ok
    shutil.rmtree(outbox)
    gone = wharf("connector", "outbox", "test", "--data", str(data_dir))
    assert gone.returncode == 1, gone
    assert str(outbox) in gone.stderr and len(gone.stderr.strip().splitlines()) == 1
    tcp = wharf("connector", "partner", "test", "--data", str(data_dir))
    assert tcp.returncode == 1, tcp
    assert "TCP" in tcp.stderr or "connect" in tcp.stderr.lower(), tcp.stderr
    unknown = wharf("connector", "nobody", "test", "--data", str(data_dir))
    assert unknown.returncode == 1 and "no connector named" in unknown.stderr
    # every test is audited
    audit = json.loads(wharf.ok("audit", "list", "--data", str(data_dir),
                                "--json").stdout)
    tests = [e for e in audit if e["action"] == "connector.test"]
    assert len(tests) == 4, tests


def test_r11_connector_list_marks_insecure(wharf, data_dir, tmp_path):
    outbox = tmp_path / "out"
    outbox.mkdir()
    doc = flow_doc([file_dest("outbox", outbox),
                    http_dest("plain", "http://127.0.0.1:9/in", insecure=True),
                    http_dest("tls", "https://127.0.0.1:9/in")], [])
    wharf.import_flow(str(data_dir), doc, tmp_path / "flow.json")
    rows = json.loads(wharf.ok("connector", "list", "--data", str(data_dir),
                               "--json").stdout)
    assert {r["name"]: r["insecure"] for r in rows} == {
        "outbox": False, "plain": True, "tls": False}
    text = wharf.ok("connector", "list", "--data", str(data_dir)).stdout
    line = [l for l in text.splitlines() if l.startswith("plain")][0]
    assert "INSECURE" in line
    assert all("INSECURE" not in l for l in text.splitlines()
               if l.startswith(("outbox", "tls")))
