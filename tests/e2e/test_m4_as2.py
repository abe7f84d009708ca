"""M4: AS2 between two Wharf instances on 127.0.0.1: signed, encrypted,
compressed messages with signed MDNs (sync and async), policy refusals,
replays. See as2_pair.py for the set-up."""
import os
import subprocess

import pytest

from as2_pair import pair
from conftest import drop_file, listen_port, wait_until
from test_r14_api import Api, cli_token


def start(sides, start_server):
    for s in sides:
        s.server = start_server(s.data)
    for s in sides:
        s.server.wait_listening()


def arrived(side, name):
    p = side.inbox / name
    return p.exists() and not any(side.inbox.glob(f".{name}*"))


def hop(wharf, side, conn):
    msgs = wharf.messages(side.data)
    assert len(msgs) == 1, msgs
    d = wharf.show(side.data, msgs[0]["id"])
    return [h for h in d["hops"] if h["connector"] == conn][0], msgs[0]


@pytest.mark.parametrize("mdn", ["sync", "async"])
def test_m4_signed_encrypted_compressed_with_signed_mdn(tmp_path, wharf,
                                                         start_server, mdn):
    a, b = pair(wharf, tmp_path, {"mdn": mdn}, {"mdn": mdn})
    token = cli_token(wharf, a.data, "auditor")[0]
    start((a, b), start_server)
    body = os.urandom(200 * 1024) + b"\nEND\n"
    drop_file(a.outbox, "order-1.edi", body)
    wait_until(lambda: arrived(b, "order-1.edi"), timeout=60,
               desc="the file at B")
    assert (b.inbox / "order-1.edi").read_bytes() == body
    # what A sent to its partner goes no further at A (ends_path): A's
    # inbox is for what B sends

    def sent():
        msgs = wharf.messages(a.data)
        return msgs and msgs[0]["state"] == "sent"
    wait_until(sent, timeout=60, desc="A's message sent (MDN checked)")
    h, msg = hop(wharf, a, "as2-b")
    assert "MDN processed (signed)" in h["receipt"], h
    assert list(a.inbox.iterdir()) == []
    # the raw MDNs are kept with the messages on both sides
    ra = wharf.show(a.data, msg["id"])["receipts"]
    assert [r["direction"] for r in ra] == ["received"], ra
    mb = wharf.messages(b.data)
    rb = wharf.show(b.data, mb[0]["id"])["receipts"]
    assert [r["direction"] for r in rb] == ["sent"], rb
    assert rb[0]["mdn_message_id"] == ra[0]["mdn_message_id"]
    # B kept its MDN (sync) or queued it (async) in the commit that stored
    # the message, before the file went on to its inbox; nothing was held
    # for a second commit
    texts = [e["text"] for e in wharf.show(b.data, mb[0]["id"])["events"]]
    kept = [i for i, t in enumerate(texts)
            if "in the commit that stored it" in t]
    dlv = [i for i, t in enumerate(texts) if "inbox" in t and "queued" not in t]
    assert kept and dlv and kept[0] < dlv[0], texts
    assert not [t for t in texts if t.startswith(("held until", "released"))]
    assert ra[0]["original_message_id"] == rb[0]["original_message_id"]
    # ... and downloadable: the MDN as received verifies with B's
    # certificate by the openssl CLI (non-repudiation)
    api = Api(listen_port(a.data, "admin"))
    raw = api.ok("GET", f"/api/v1/messages/{msg['id']}/receipts/1",
                 token=token).body
    mdn = tmp_path / "mdn.eml"
    mdn.write_bytes(b"MIME-Version: 1.0\r\n" + raw
                    if b"MIME-Version" not in raw else raw)
    p = subprocess.run(["openssl", "cms", "-verify", "-in", str(mdn),
                        "-noverify", "-certfile", str(b.cert), "-out",
                        str(tmp_path / "report.txt")], capture_output=True)
    assert p.returncode == 0, p.stderr
    report = (tmp_path / "report.txt").read_text()
    assert "disposition-notification" in report.lower()
    assert "processed" in report
    log_b = (b.data / "logs" / "wharf.log").read_text()
    assert "AS2 message" in log_b and "stored" in log_b
    for s in (a, b):
        s.server.stop()


def payload_files(side):
    return [p for p in (side.data / "payloads").rglob("*") if p.is_file()]


def test_m4_unsigned_refused_when_signing_required(tmp_path, wharf,
                                                   start_server):
    # A sends unsigned; B's partner "a" requires sha256 signatures
    a, b = pair(wharf, tmp_path, {"sign": "none"}, {})
    start((a, b), start_server)
    drop_file(a.outbox, "plain.edi", b"UNB+UNOA:1\n")

    def failed():
        msgs = wharf.messages(a.data)
        return msgs and msgs[0]["state"] == "failed"
    wait_until(failed, timeout=60, desc="A's message failed")
    h, _ = hop(wharf, a, "as2-b")
    assert "insufficient-message-security" in h["last_error"], h
    # B: a refused record with the reason as its event, no payload, an
    # alert line in the log
    mb = wharf.messages(b.data)
    assert [m["state"] for m in mb] == ["refused"], mb
    ev = wharf.show(b.data, mb[0]["id"])["events"]
    assert any("refused (insufficient-message-security)" in e["text"]
               for e in ev), ev
    assert payload_files(b) == []
    assert not any(b.inbox.iterdir())
    log_b = (b.data / "logs" / "wharf.log").read_text()
    assert "ALERT: AS2 message" in log_b
    for s in (a, b):
        s.server.stop()


def test_m4_alias_path_per_profile(tmp_path, wharf, start_server):
    """B also takes AS2 at /as2/<its AS2 id>; another id there is 404."""
    import json
    a, b = pair(wharf, tmp_path)
    doc = json.loads((a.dir / "flow.json").read_text())
    doc["partners"][0]["url"] = b.url + "/wharf-b"
    (a.dir / "flow.json").write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", a.data, a.dir / "flow.json")
    start((a, b), start_server)
    drop_file(a.outbox, "alias.edi", b"via the alias\n")
    wait_until(lambda: arrived(b, "alias.edi"), timeout=60,
               desc="the file at B through /as2/wharf-b")
    doc["partners"][0]["url"] = b.url + "/someone-else"
    (a.dir / "flow.json").write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", a.data, a.dir / "flow.json")
    log = a.data / "logs" / "wharf.log"
    wait_until(lambda: "flow generation 3 loaded" in log.read_text(),
               timeout=30, desc="A's new flow")
    drop_file(a.outbox, "wrong.edi", b"to a wrong path\n")

    def refused():
        return any("HTTP 404" in (h.get("last_error") or "")
                   for m in wharf.messages(a.data)
                   for h in wharf.show(a.data, m["id"])["hops"])
    wait_until(refused, timeout=60, desc="HTTP 404 for another id")
    assert not (b.inbox / "wrong.edi").exists()
    for s in (a, b):
        s.server.stop()


def test_m4_r06_no_key_material_in_trace_logs(tmp_path, wharf, start_server):
    from conftest import tune_conf
    a, b = pair(wharf, tmp_path)
    for s in (a, b):
        tune_conf(s.data, log_level="trace")
    start((a, b), start_server)
    drop_file(a.outbox, "secret-free.edi", b"payload-7f3e9 not for logs")
    wait_until(lambda: arrived(b, "secret-free.edi"), timeout=60,
               desc="the file at B")
    for s in (a, b):
        s.server.stop()
    for s in (a, b):
        log = "".join(p.read_text() for p in (s.data / "logs").iterdir())
        assert "AS2 message" in log or "MDN" in log      # trace did log
        assert "payload-7f3e9" not in log
        for key in (a.key, b.key):
            body = key.read_text().strip().splitlines()[1:-1]
            assert not any(line in log for line in body), key


def test_m4_unknown_partner_is_404_with_an_alert(tmp_path, wharf,
                                                 start_server):
    from as2_raw import Request, post
    a, b = pair(wharf, tmp_path)
    start((b,), start_server)
    req = Request("/as2", [("AS2-From", "stranger"), ("AS2-To", "wharf-b"),
                   ("Message-ID", "<x1@stranger>"),
                   ("Content-Type", "application/edi-x12")], b"UNA:+.? '")
    r = post(b.url, req, b.tls_cert)
    assert r.status == 404
    log = (b.data / "logs" / "wharf.log").read_text()
    assert "ALERT: as2 request to /as2" in log and "unknown partner" in log
    assert wharf.messages(b.data) == []
    b.server.stop()


def test_m4_async_mdn_is_queued_durably_and_retried(tmp_path, wharf,
                                                    start_server):
    """B releases the file once its async MDN is queued; the MDN's first
    POST fails (503), B is killed, and after the restart it still sends
    the queued MDN, which reaches A and makes A's message sent."""
    import json
    from as2_raw import Recorder
    (tmp_path / "rec").mkdir()
    rec = Recorder(tmp_path / "rec", answer=(503, [("Content-Type",
                                                    "text/plain")], b"no\n"))
    try:
        a, b = pair(wharf, tmp_path, {"mdn": "async"},
                    {"tls_ca": str(rec.cert)})
        doc = json.loads((a.dir / "flow.json").read_text())
        doc["partners"][0]["async_mdn_url"] = rec.url + "/mdn"
        (a.dir / "flow.json").write_text(json.dumps(doc))
        wharf.ok("flow", "import", "--data", a.data, a.dir / "flow.json")
        start((a, b), start_server)
        drop_file(a.outbox, "queued.edi", b"async MDN, queued\n")
        wait_until(lambda: arrived(b, "queued.edi"), timeout=60,
                   desc="B released the file with its MDN queued")
        wait_until(lambda: len(rec.requests) >= 1, timeout=30,
                   desc="B's first MDN POST (refused with 503)")

        def kept():
            return "not sent yet (kept, tried again later)" in "".join(
                p.read_text() for p in (b.data / "logs").iterdir())
        # B recorded the refusal (the job stays queued) before the kill
        wait_until(kept, timeout=30, desc="B kept the refused MDN")
        assert wharf.messages(a.data)[0]["state"] != "sent"
        b.server.kill9()
        rec.upstream, rec.upstream_ca = a.mdn_url, a.tls_cert
        b.server = start_server(b.data)
        b.server.wait_listening()

        def sent():
            return wharf.messages(a.data)[0]["state"] == "sent"
        wait_until(sent, timeout=60, desc="A's message sent after B's retry")
        h, _ = hop(wharf, a, "as2-b")
        assert "MDN processed (signed)" in h["receipt"], h
        assert len(rec.requests) >= 2
        log_b = "".join(p.read_text() for p in (b.data / "logs").iterdir())
        assert "queued asynchronous MDN sent" in log_b
        for s in (a, b):
            s.server.stop()
    finally:
        rec.close()
