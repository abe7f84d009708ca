"""
M4/M6 throughput: a destination delivers up to its `concurrency` messages
of a leased batch at once (as2 and http default to 8; others 1), so a
partner that takes a while to answer does not hold the rest of the batch.

Against a test HTTPS server (Python, not Wharf) that counts the requests in
flight at the same moment:
- test_m6_concurrency_requests_overlap: an http destination with
  concurrency 4 and 8 files: the server holds each request until 4 are in
  flight together (or 20 s pass) and then answers; it saw at least 4 at
  once, and every file was delivered exactly once.
- test_m6_concurrency_one_delivers_one_at_a_time_per_worker: concurrency 1
  with 2 workers (the default): never more than 2 requests at once.
- test_m2_batch_longer_than_its_lease_is_delivered_once: a batch that
  outlives lease_seconds keeps its lease (the engine's lease keeper), so
  each message reaches the partner exactly once.
No time is asserted: the first test's server waits for the overlap it
checks, the second's holds each request briefly so overlaps would show.
"""
import http.server
import threading

from conftest import drop_file, file_source, flow_doc, serve_http, wait_until
from test_m6_http import http_dest, make_ca, make_server_cert


class Gate:
    """An HTTPS server whose POST /slow holds each request until `target`
    requests have been in flight together once (at most `hold` seconds),
    counting the most seen at once."""

    def __init__(self, certkey, target, hold):
        self.lock = threading.Condition()
        self.now = self.most = 0
        self.opened = False             # target reached once: all pass
        self.bodies = []
        gate = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with gate.lock:
                    gate.now += 1
                    gate.most = max(gate.most, gate.now)
                    if gate.now >= target:
                        gate.opened = True
                        gate.lock.notify_all()
                    gate.lock.wait_for(lambda: gate.opened, timeout=hold)
                    gate.now -= 1
                    gate.bodies.append(body)
                out = b"{}"
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = serve_http(H, certkey)
        self.port = self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run(tmp_path, wharf, data_dir, start_server, concurrency, target, hold,
        files=8):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, ca_key = make_ca(pki, "testca")
    cert, key = make_server_cert(pki, ca, ca_key)
    gate = Gate((cert, key), target, hold)
    inbox = tmp_path / "in"
    inbox.mkdir()
    try:
        wharf.import_flow(data_dir, flow_doc(
            [file_source("inbox", inbox),
             http_dest("partner", f"https://127.0.0.1:{gate.port}/slow",
                       tls_ca=str(ca), concurrency=concurrency)],
            [("inbox", "partner")]), tmp_path / "flow.json")
        server = start_server(data_dir)
        bodies = {f"order-{i}.edi": f"ISA*{i:04d}*".encode() * 50
                  for i in range(files)}
        for name, body in bodies.items():
            drop_file(inbox, name, body)

        def all_sent():
            msgs = wharf.messages(data_dir)
            return len(msgs) == files and all(m["state"] == "sent"
                                              for m in msgs)
        wait_until(lambda: server.check_alive() and all_sent(), timeout=120,
                   desc=f"{files} messages delivered")
        server.stop()
        assert sorted(gate.bodies) == sorted(bodies.values()), \
            "a message was delivered twice (or not at all)"
        return gate.most
    finally:
        gate.close()


def test_m6_concurrency_requests_overlap(tmp_path, wharf, data_dir,
                                         start_server):
    most = run(tmp_path, wharf, data_dir, start_server, concurrency=4,
               target=4, hold=20)
    assert most >= 4, f"at most {most} request(s) were in flight at once"


def test_m6_concurrency_one_delivers_one_at_a_time_per_worker(
        tmp_path, wharf, data_dir, start_server):
    most = run(tmp_path, wharf, data_dir, start_server, concurrency=1,
               target=99, hold=0.3)
    assert 1 <= most <= 2, f"{most} requests at once with concurrency 1 " \
                           "and 2 workers"


def test_m2_batch_longer_than_its_lease_is_delivered_once(
        tmp_path, wharf, data_dir, start_server):
    """M2 exactly-once: the partner holds each request 2 s and the test
    data dir's lease is 5 s, so a worker's batch of these 6 messages (one
    at a time) outlives its lease. The lease keeper renews it: no other
    worker takes the batch up and delivers it again (before the keeper,
    the other worker re-leased the hops after 5 s and the partner got
    duplicates)."""
    run(tmp_path, wharf, data_dir, start_server, concurrency=1, target=99,
        hold=2, files=6)
