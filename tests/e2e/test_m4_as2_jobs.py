"""M4 (receipts), the isolation issue's step 2: the asynchronous MDNs of
AS2 are durable jobs of their message, run and retried by the engine,
visible in the message's history (`wharf message show`: its "jobs" and
its events) and resendable with the message.

  - An MDN Wharf owes a partner (as2.mdn-out): the partner's MDN URL
    refuses it (HTTP 503); each failed run is an event; after the
    connector's mdn_give_up_s the job is given up ("failed", an error
    event); `wharf message resend` queues it again, and once the URL takes
    it, the MDN arrives, signed by Wharf, and the job is done.
  - The MDN owed survives a kill -9 (M2): refused once, Wharf killed, the
    URL fixed, Wharf restarted: the MDN arrives once, valid, and the file
    is not delivered again.
  - An MDN a partner owes Wharf (as2.mdn-wait): while the CLI receiver
    holds it, the message shows a waiting as2.mdn-wait job of its as2 hop;
    when it arrives the job is done and its hop sent with the MDN as its
    receipt.

The partner sides are the CLI peers of test_m4_as2_interop.py (the
openssl CLI and Python's standard library, from RFC 4130).
"""
import http.server
import json
import threading

from conftest import serve_http, wait_until
from test_m4_as2_interop import (  # noqa: F401 (fixtures)
    a_awaiting_async_mdn, check_mdn, edi, peer, pki, post_asking_async_mdn,
    receiver, sender, side_a, the_hop, the_message, wharf_b)


class FlakySink:
    """An HTTPS endpoint for asynchronous MDNs that answers 503 until
    `accept` is set, then 200; keeps what it accepted."""

    def __init__(self, tls_certkey):
        self.got, self.refused = [], 0
        self.accept = threading.Event()
        sink = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if sink.accept.is_set():
                    sink.got.append((self.path, list(self.headers.items()),
                                     body))
                    self.send_response(200)
                else:
                    sink.refused += 1
                    self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = serve_http(H, tls_certkey)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/mdn"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def jobs_of(wharf, side, msgid, kind):
    return [j for j in wharf.show(side.data, msgid)["jobs"]
            if j["kind"] == kind]


def alerts_of(wharf, side):
    p = wharf.ok("alert", "list", "--data", side.data, "--state", "all",
                 "--json")
    return json.loads(p.stdout)["alerts"]


def texts(wharf, side, msgid, level=None):
    return [e["text"] for e in wharf.show(side.data, msgid)["events"]
            if level is None or e["level"] == level]


def test_m4_async_mdn_out_job_given_up_in_history_and_resent(
        tmp_path, wharf, start_server, sender, pki):
    b = wharf_b(wharf, tmp_path, start_server, sender, pki)
    doc = json.loads((b.dir / "flow.json").read_text())
    doc["connectors"][1]["config"]["mdn_give_up_s"] = 10
    (b.dir / "flow.json").write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", b.data, b.dir / "flow.json")
    wait_until(lambda: "flow generation 2 loaded" in b.log(), timeout=30)
    sink = FlakySink(pki["certkey"])
    try:
        payload = edi(21)
        mid, scope = post_asking_async_mdn(sender, b, payload, "po-21.edi",
                                           sink.url)
        wait_until(lambda: (b.inbox / "po-21.edi").exists(), timeout=30,
                   desc="B released the file (its MDN is a job)")
        msgid = wharf.messages(b.data)[0]["id"]

        def given_up():
            js = jobs_of(wharf, b, msgid, "as2.mdn-out")
            return js and js[0]["state"] == "failed" and js[0]
        job = wait_until(given_up, timeout=90,
                         desc="the MDN job given up after mdn_give_up_s")
        assert job["connector"] == "as2-a" and job["attempts"] >= 2, job
        assert "HTTP 503" in job["last_error"], job
        assert sink.refused == job["attempts"] and sink.got == []
        said = texts(wharf, b, msgid)
        assert any("queued for " + sink.url in t for t in said), said
        assert any("job as2.mdn-out attempt 1 failed" in t and "HTTP 503"
                   in t for t in texts(wharf, b, msgid, "warning")), said
        assert any("job as2.mdn-out given up after" in t
                   for t in texts(wharf, b, msgid, "error")), said
        shown = wharf.ok("message", "show", "--data", b.data, msgid).stdout
        assert "jobs:" in shown and "as2.mdn-out" in shown \
            and "failed" in shown, shown
        # R19: the job given up is an alert of the connector (as2.mdn_out)
        given = [a for a in alerts_of(wharf, b)
                 if a["kind"] == "as2.mdn_out" and a["key"] == "as2-a"]
        assert len(given) == 1 and "given up" in given[0]["summary"], given

        # the partner's URL works again: a resend sends the MDN
        sink.accept.set()
        out = wharf.ok("message", "resend", "--data", b.data, msgid).stdout
        assert "requeued 0 hop(s) and 1 job(s)" in out, out
        wait_until(lambda: sink.got, timeout=60, desc="the resent MDN")
        path, mh, mb = sink.got[0]
        assert path == "/mdn"
        check_mdn(b, sender, mid, 200, mh, mb, scope, "sha-256", sender.dir)
        wait_until(lambda: jobs_of(wharf, b, msgid, "as2.mdn-out")[0]
                   ["state"] == "done", timeout=30, desc="the job done")
        said = texts(wharf, b, msgid)
        assert any("resend requested by cli: 0 hop(s) and 1 job(s) queued"
                   in t for t in said), said
        assert any("job as2.mdn-out done: asynchronous MDN" in t and sink.url
                   in t for t in texts(wharf, b, msgid, "info")), said
        # the file was delivered once: the resend was the MDN's alone
        hops = wharf.show(b.data, msgid)["hops"]
        assert [h["state"] for h in hops if h["connector"] == "inbox"] == \
            ["sent"], hops
        assert [h["attempts"] for h in hops if h["connector"] == "inbox"] \
            == [1], hops
    finally:
        sink.close()
    b.server.stop()


def test_m4_async_mdn_wait_job_in_history(wharf, start_server, peer, side_a,
                                          receiver, pki):
    a, recv = a_awaiting_async_mdn(wharf, start_server, side_a, peer,
                                   receiver, pki, "wait.edi", edi(22))

    def waiting():
        # the job exists (waiting) before the POST; the hop's own outcome
        # (retrying, no attempt) is committed once the 2xx came back
        m = the_message(wharf, a)
        js = m and jobs_of(wharf, a, m["id"], "as2.mdn-wait")
        h = js and the_hop(wharf, a)
        return js and js[0]["state"] == "waiting" and \
            h["state"] != "processing" and js[0]
    job = wait_until(waiting, timeout=60, desc="A's waiting job")
    hop = the_hop(wharf, a)
    assert job["hop"] == hop["id"] and job["connector"] == "as2-b", job
    assert job["attempts"] == 0 and job["give_up_at"] > job["created_at"]
    assert hop["state"] == "retrying" and hop["attempts"] == 0, hop
    recv.async_hold.set()
    msgid = the_message(wharf, a)["id"]
    wait_until(lambda: jobs_of(wharf, a, msgid, "as2.mdn-wait")[0]["state"]
               == "done", timeout=60, desc="the MDN given to the job")
    wait_until(lambda: the_message(wharf, a)["state"] == "sent", timeout=30,
               desc="its hop settled by the job")
    hop = the_hop(wharf, a)
    assert "MDN processed (signed)" in hop["receipt"], hop
    done = [t for t in texts(wharf, a, msgid, "info")
            if t.startswith("job as2.mdn-wait done")]
    assert len(done) == 1 and "MDN processed (signed)" in done[0], done
    a.server.stop()


def test_m4_async_mdn_out_survives_kill9(tmp_path, wharf, start_server,
                                        sender, pki):
    """M2, M4: the MDN B owes is a durable job: refused once by the
    partner's URL, then B is killed (-9); after the restart the job runs
    again and the MDN arrives exactly once, valid; the file released
    before the kill is not delivered again."""
    b = wharf_b(wharf, tmp_path, start_server, sender, pki)
    sink = FlakySink(pki["certkey"])
    try:
        payload = edi(22)
        mid, scope = post_asking_async_mdn(sender, b, payload, "po-22.edi",
                                           sink.url)
        wait_until(lambda: sink.refused >= 1, timeout=60,
                   desc="the MDN's first POST refused")
        wait_until(lambda: (b.inbox / "po-22.edi").exists(), timeout=30,
                   desc="B released the file")
        assert (b.inbox / "po-22.edi").read_bytes() == payload
        b.server.kill9()
        sink.accept.set()
        b.server = start_server(b.data)
        b.server.wait_listening()
        wait_until(lambda: sink.got, timeout=60,
                   desc="the MDN sent after the restart")
        msgid = wharf.messages(b.data)[0]["id"]
        wait_until(lambda: jobs_of(wharf, b, msgid, "as2.mdn-out")[0]
                   ["state"] == "done", timeout=30, desc="the job done")
        assert len(sink.got) == 1, sink.got
        path, mh, mb = sink.got[0]
        assert path == "/mdn"
        check_mdn(b, sender, mid, 200, mh, mb, scope, "sha-256", sender.dir)
        hops = wharf.show(b.data, msgid)["hops"]
        assert [(h["state"], h["attempts"]) for h in hops
                if h["connector"] == "inbox"] == [("sent", 1)], hops
    finally:
        sink.close()
    b.server.stop()
