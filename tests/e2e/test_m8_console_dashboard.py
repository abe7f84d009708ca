"""
M8 web console, journey 2 "Dashboard", in Debian's Chromium against a
real `wharf serve`:

  - a 16 MiB file goes from a file source to an HTTPS destination whose
    server (Python, here) reads slowly: while it moves, the dashboard's
    transfers table shows the hop with a progress bar (bytes done of the
    16 MiB total, a rate), refreshed every second, and then none;
  - messages per hour: the sent and the failed message of the last hour
    are counted in the chart's numbers;
  - connectors with their state: a source whose folder disappeared is
    "failing since ...";
  - a partner certificate that expires in 10 days is listed;
  - the failed message is listed with a link to its detail.
"""
import http.server
import os
import time

from as2_pair import as2_keys
from conftest import (drop_file, file_dest, file_source, flow_doc,
                      serve_http, tune_conf, wait_until)
from console import browser  # noqa: F401 - fixture
from test_m6_http import make_ca, make_server_cert
from test_r14_api import cli_user, new_password

SIZE = 16 << 20


class SlowSink(http.server.BaseHTTPRequestHandler):
    """Reads a body 256 KiB per 0.1 s (about 2.5 MB/s): long enough for a
    page to see the transfer. /bad answers 400 at once."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        left = n
        while left > 0:
            got = self.rfile.read(min(left, 256 << 10))
            if not got:
                break
            left -= len(got)
            if self.path == "/slow":
                time.sleep(0.1)
        status = 200 if self.path == "/slow" else 400
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def test_m8_console_dashboard(wharf, data_dir, start_server, browser,
                              tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, ca_key = make_ca(pki, "ca")
    cert, key = make_server_cert(pki, ca, ca_key)
    sink = serve_http(SlowSink, (cert, key))
    url = f"https://127.0.0.1:{sink.server_address[1]}"
    me_cert, me_key = as2_keys(tmp_path, "wharf-me")
    soon, _ = as2_keys(tmp_path, "acme-soon", days=10)
    dirs = {n: tmp_path / n for n in ("big", "bad", "gone")}
    for d in dirs.values():
        d.mkdir()
    doc = flow_doc([
        file_source("big-files", dirs["big"]),
        {"name": "upload", "type": "http",
         "config": {"url": f"{url}/slow", "tls_ca": str(ca)}},
        file_source("rejects", dirs["bad"]),
        {"name": "bounce", "type": "http",
         "config": {"url": f"{url}/bad", "tls_ca": str(ca),
                    "retry": {"max_attempts": 1}}},
        file_source("vanishing", dirs["gone"]),
        file_dest("nowhere", tmp_path)],
        [("big-files", "upload"), ("rejects", "bounce"),
         ("vanishing", "nowhere")])
    doc["profile"] = {"as2_id": "wharf-me",
                      "keys": [{"cert": str(me_cert), "key": str(me_key)}]}
    doc["partners"] = [{"name": "acme", "as2_id": "acme-as2",
                        "url": "https://127.0.0.1:9/as2",
                        "certificates": [str(soon)]}]
    wharf.import_flow(data_dir, doc, tmp_path / "flow.json")
    tune_conf(data_dir, health_failing_seconds=1)
    pw = cli_user(wharf, data_dir, "dora", "operator", new_password())
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    try:
        b = browser(f"https://127.0.0.1:{port}")
        b.sign_in("dora", pw)
        b.signed_in()
        b.wait_for("#h-hours")
        b.wait_for("#no-transfers")
        b.check()

        # a slow upload: the progress bar moves
        drop_file(dirs["big"], "big.bin", os.urandom(SIZE))
        bar = b.wait_for("tr.transfer progress", timeout=60)
        row = b.find("tr.transfer")
        assert "upload" in row.text and "send" in row.text, row.text

        def midway():
            for p in b.find_all("tr.transfer progress"):
                v = float(p.get_attribute("value") or 0)
                m = float(p.get_attribute("max") or 0)
                if m == SIZE and 0 < v < m:
                    return v
            return None
        first = wait_until(midway, timeout=60, desc="a bar part way")
        wait_until(lambda: (midway() or SIZE) > first, timeout=60,
                   desc="the bar to move on")
        assert "MiB" in b.find("tr.transfer").text
        b.check()
        b.axe("dashboard with a transfer")
        b.shots("20-dashboard-transfer")
        wait_until(lambda: b.find_all("#no-transfers"), timeout=120,
                   desc="the transfer to finish")
        del bar

        # a failed message, a failing source
        drop_file(dirs["bad"], "reject-me.txt", b"no thanks\n")
        os.rename(dirs["gone"], tmp_path / "gone-away")
        wait_until(lambda: {m["filename"]: m["state"] for m in
                            wharf.messages(data_dir)}.get("reject-me.txt")
                   == "failed", desc="the bounce to fail")
        time.sleep(1.5)     # health_failing_seconds = 1

        def fresh_dashboard():
            b.go("/messages")
            b.wait_for("#message-search")
            b.go("/dashboard")
            b.wait_for("#h-hours")
            return "failing" in b.find("table.connectors").text
        wait_until(fresh_dashboard, timeout=60, desc="vanishing failing")
        conn = {r.find_element(b.By.CSS_SELECTOR, "td").text:
                r.find_element(b.By.CSS_SELECTOR, "td.conn-state").text
                for r in b.find_all("table.connectors tbody tr")}
        assert conn["vanishing"].startswith("failing since"), conn
        assert conn["upload"] == "ok", conn
        totals = b.find("#totals").text
        assert "sent: 1" in totals and "failed: 1" in totals, totals
        assert "acme" in b.find("table.expiring").text
        assert "reject-me.txt" in b.find("#failed-list").text
        b.check()
        b.axe("dashboard")
        b.shots("21-dashboard")
        b.click_text("reject-me.txt", tag="a")
        b.wait_for("table.hops")
        assert "bounce" in b.find("table.hops").text
        b.check()
    finally:
        sink.shutdown()
        sink.server_close()
    srv.stop()
