"""
Operating a running `wharf serve` (issue items 16 and 7):

  R05  SIGHUP never kills serve: it reloads wharf.conf (a changed log_level
       takes effect at once, a key that needs a restart is named as such,
       a file that no longer parses is refused and the running
       configuration stays, each reload audited) and reopens the log file
       (rename, then HUP: the next lines go to a new wharf.log);
  R05  a source whose poll keeps failing is logged once, then summarized
       at intervals, then "works again": a bounded number of lines, not
       one per poll;
  R18  GET /healthz answers 503 naming a connector left out at start or a
       source whose polls have failed for health_failing_seconds, and 200
       again once it recovers; `wharf status` says the same;
  R06  serve runs with core dumps off (RLIMIT_CORE 0, not dumpable), so a
       crash cannot leave the master key or a secret in a core file.
"""
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import (child_env, file_dest, file_source, flow_doc,
                      listen_port, new_data_dir, tune_conf, wait_until,
                      wharf_bin_path)


def healthz(data):
    """(status, parsed JSON body) of GET /healthz on DATA's admin listener."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE         # the self-signed pair of init
    c = http.client.HTTPSConnection("127.0.0.1", listen_port(data, "admin"),
                                    context=ctx, timeout=30)
    try:
        c.request("GET", "/healthz", headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def log_text(data, name="wharf.log"):
    p = Path(data) / "logs" / name
    return p.read_text(errors="replace") if p.exists() else ""


def wait_log(server, data, needle, timeout=30, name="wharf.log"):
    wait_until(lambda: server.check_alive() and needle in log_text(data, name),
               timeout=timeout, interval=0.05, desc=f"{needle!r} in {name}")


def hup(server):
    server.proc.send_signal(signal.SIGHUP)


def audit_entries(wharf, data, action):
    p = wharf.ok("audit", "list", "--data", data, "--json", "--limit",
                 "1000000")
    return [e for e in json.loads(p.stdout) if e.get("action") == action]


def file_flow(wharf, tmp_path, data):
    """inbox (file source, poll_ms 50) -> outbox; returns (in, out)."""
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir()
    send.mkdir()
    wharf.import_flow(data, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", send)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    return recv, send


# ---- SIGHUP --------------------------------------------------------------------


def test_r05_sighup_reloads_conf_and_keeps_serving(wharf, data_dir,
                                                   start_server):
    server = start_server(data_dir)
    server.wait_listening()
    assert healthz(data_dir)[0] == 200
    debug_line = "admin listener: 127.0.0.1 GET /healthz -> 200"
    assert debug_line not in log_text(data_dir)     # info: no DEBUG lines

    # a plain HUP: still running, still serving
    hup(server)
    wait_log(server, data_dir, "reload of")
    assert healthz(data_dir)[0] == 200

    # log_level applies at once; workers needs a restart and says so
    tune_conf(data_dir, log_level="debug", workers=3)
    hup(server)
    wait_log(server, data_dir, "reload: log_level changed, applied")
    wait_log(server, data_dir, "reload: workers changed, takes effect at "
             "restart")
    assert healthz(data_dir)[0] == 200
    wait_log(server, data_dir, debug_line)

    # a broken wharf.conf is refused; serve keeps running at debug level
    conf = data_dir / "wharf.conf"
    good = conf.read_text()
    conf.write_text(good + "log_level = loud\n")
    hup(server)
    wait_log(server, data_dir, "reload: refused, the running configuration "
             "stays")
    assert "log_level must be error, warning, info" in log_text(data_dir)
    before = log_text(data_dir).count(debug_line)
    assert healthz(data_dir)[0] == 200
    wait_until(lambda: log_text(data_dir).count(debug_line) > before,
               desc="a DEBUG line after the refused reload")
    assert server.running()
    conf.write_text(good)       # the CLI reads wharf.conf too

    reloads = audit_entries(wharf, data_dir, "conf.reload")
    assert len(reloads) == 3, reloads
    assert all(e["actor"] == "system" for e in reloads), reloads
    details = [e["detail"] for e in reloads]
    assert "applied: log_level; at restart: workers" in details, details
    assert any(d.startswith("refused: ") and "log_level" in d
               for d in details), details
    server.stop()


def test_r05_sighup_reopens_a_renamed_log(wharf, data_dir, start_server):
    server = start_server(data_dir)
    server.wait_listening()
    wait_log(server, data_dir, "serving")
    logs = data_dir / "logs"
    os.rename(logs / "wharf.log", logs / "wharf.log.rotated")
    hup(server)
    wait_log(server, data_dir, "reload of")
    new, old = log_text(data_dir), log_text(data_dir, "wharf.log.rotated")
    assert "serving" in old and "reload of" not in old
    assert "serving" not in new and "reload of" in new
    assert (logs / "wharf.log").stat().st_mode & 0o077 == 0
    server.stop()
    assert "stopping" in log_text(data_dir)
    assert "stopping" not in log_text(data_dir, "wharf.log.rotated")


# ---- repeated warnings and /healthz --------------------------------------------------


def test_r05_failing_poll_logged_once_then_summarized(tmp_path, wharf,
                                                      data_dir, start_server):
    recv, _ = file_flow(wharf, tmp_path, data_dir)
    tune_conf(data_dir, log_repeat_seconds=1)
    server = start_server(data_dir)
    wait_log(server, data_dir, "serving")
    os.rename(recv, tmp_path / "in.away")
    wait_log(server, data_dir, "poll failed")
    time.sleep(3)               # ~60 polls at poll_ms 50, all failing
    os.rename(tmp_path / "in.away", recv)
    wait_log(server, data_dir, "poll works again after")
    lines = [l for l in log_text(data_dir).splitlines() if "conn=inbox" in l]
    failed = [l for l in lines if "poll failed" in l]
    assert 2 <= len(failed) <= 6, "\n".join(failed)
    assert "repeats are counted and summarized every 1 s" in failed[0]
    assert any(re.search(r"repeated \d+ times in the last \d+ s", l)
               for l in failed[1:]), failed
    m = re.search(r"poll works again after (\d+) failures in \d+ s",
                  "\n".join(lines))
    assert m and int(m.group(1)) >= 10, lines
    assert int(m.group(1)) > 3 * len(failed)     # counted, not written
    server.stop()


def test_r18_healthz_503_names_failing_source_then_200(tmp_path, wharf,
                                                       data_dir,
                                                       start_server):
    recv, _ = file_flow(wharf, tmp_path, data_dir)
    tune_conf(data_dir, health_failing_seconds=1)
    server = start_server(data_dir)
    server.wait_listening()
    assert healthz(data_dir) == (200, {"status": "ok"})
    p = wharf.ok("status", "--data", data_dir)
    assert f"(pid {server.pid})" in p.stdout and ": ok" in p.stdout

    os.rename(recv, tmp_path / "in.away")
    status, body = wait_until(
        lambda: (lambda r: r if r[0] == 503 else None)(healthz(data_dir)),
        desc="/healthz 503")
    assert body["status"] == "unhealthy"
    [problem] = body["problems"]
    assert problem["connector"] == "inbox"
    assert problem["problem"] == "poll_failing"
    assert "source inbox" in problem["text"]
    assert str(recv) not in json.dumps(body)       # no error text leaks
    p = wharf("status", "--data", data_dir)
    assert p.returncode == 1 and "source inbox" in p.stdout, p
    assert p.stderr.startswith("wharf: unhealthy: 1 problem")
    j = json.loads(wharf("status", "--data", data_dir, "--json").stdout)
    assert j["pid"] == server.pid and j["status"] == "unhealthy"
    assert [x["connector"] for x in j["problems"]] == ["inbox"]

    os.rename(tmp_path / "in.away", recv)
    wait_until(lambda: healthz(data_dir)[0] == 200, desc="/healthz 200")
    wait_until(lambda: wharf("status", "--data", data_dir).returncode == 0,
               desc="wharf status ok")
    server.stop()


def test_r18_healthz_names_connector_left_out_at_start(tmp_path, wharf,
                                                       data_dir,
                                                       start_server):
    recv, _ = file_flow(wharf, tmp_path, data_dir)
    os.rename(recv, tmp_path / "in.away")     # inbox cannot open at start
    server = start_server(data_dir)
    server.wait_listening()
    wait_log(server, data_dir, "connector inbox left out")
    status, body = healthz(data_dir)
    assert status == 503, body
    [problem] = body["problems"]
    assert (problem["connector"], problem["problem"]) == ("inbox", "left_out")
    p = wharf("status", "--data", data_dir)
    assert p.returncode == 1
    assert "connector inbox could not be opened and is left out" in p.stdout

    # fixed, and the flow imported again: the running server picks it up
    os.rename(tmp_path / "in.away", recv)
    wharf.ok("flow", "import", "--data", data_dir, tmp_path / "flow.json")
    wait_until(lambda: healthz(data_dir)[0] == 200, desc="/healthz 200")
    server.stop()


# ---- core dumps --------------------------------------------------------------------


def core_limits(pid):
    """(soft, hard) of "Max core file size" in /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


def proc_uid(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def test_r06_serve_runs_with_core_dumps_off(wharf):
    """RLIMIT_CORE is 0 (soft and hard), and the process is not dumpable:
    the kernel then makes its /proc/PID files root's, though it runs as
    another user. As root the server runs as nobody for that; otherwise
    as the caller."""
    root = os.geteuid() == 0
    top = Path(tempfile.mkdtemp(prefix="wharf-core-", dir="/tmp"))
    proc = None
    try:
        os.chmod(top, 0o711)
        data = new_data_dir(wharf, top / "data")
        user = 65534 if root else os.geteuid()
        if root:
            for d, _, files in os.walk(top / "data"):
                os.chown(d, user, user)
                for f in files:
                    os.chown(os.path.join(d, f), user, user)
        kw = {"user": user, "group": user, "extra_groups": []} if root else {}
        with open(top / "serve.err", "wb") as err:
            proc = subprocess.Popen(
                [str(wharf_bin_path()), "serve", "--data", str(data)],
                stdout=subprocess.DEVNULL, stderr=err, cwd=top,
                stdin=subprocess.DEVNULL, env=child_env(),
                start_new_session=True, **kw)
        def serving():
            assert proc.poll() is None, (top / "serve.err").read_text()
            return "serving" in log_text(data)
        wait_until(serving, desc="serve running")
        assert core_limits(proc.pid) == ("0", "0")
        assert proc_uid(proc.pid) == user != 0
        assert os.stat(f"/proc/{proc.pid}/status").st_uid == 0, (
            "serve is dumpable: its /proc files belong to its own user")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (top / "serve.err").read_text()
        assert "Sanitizer" not in (top / "serve.err").read_text()
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        shutil.rmtree(top, ignore_errors=True)
