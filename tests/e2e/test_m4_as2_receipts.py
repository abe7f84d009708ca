"""M4 (retries and resend, MDNs): what Wharf does when the far side's
answer is lost, late, minimal or asks for plain HTTP, checked against an
AS2 peer Wharf did not write (as2_cli.py: the openssl CLI and Python's
standard library, from RFC 4130).

  - A resend keeps its AS2 Message-ID (issue item 9): after HTTP 500s,
    after mdn_timeout_s without the asynchronous MDN, and after a kill -9
    of the sender in the middle of a POST, every POST carries the same
    Message-ID and the same content (the MIC the receiver computes), so a
    partner that already processed it recognises the duplicate; a kill -9
    while an asynchronous MDN is awaited loses nothing: the MDN that comes
    after the restart settles the message, with no resend.
  - An unsigned MDN without Received-Content-MIC (item 10), as OpenAS2 and
    pyas2-lib send them, is a receipt when an unsigned one was asked for,
    recorded "unsigned receipt, no MIC"; the partner switch require_mic
    refuses it.
  - An asynchronous MDN requested at an http:// URL (item 11, OpenAS2's
    default) is said in the message's history and in one ALERT line, stays
    queued quietly, and goes once the partner sets allow_plain_mdn_url.
"""
import json

import pytest

import as2_cli as cli
from conftest import drop_file, wait_until
from test_m4_as2_interop import (  # noqa: F401 (fixtures)
    a_awaiting_async_mdn, check_mdn, edi, finished, peer, pki,
    post_asking_async_mdn, receiver, sender, side_a, start_a, state_of,
    the_hop, the_message, wharf_b)


def message_ids(recv):
    return [cli.hget(r["headers"], "Message-ID") for r in recv.got]


def events(wharf, side):
    m = the_message(wharf, side)
    return wharf.show(side.data, m["id"])["events"]


# ---- item 9: the same Message-ID on every resend ------------------------------


def test_m4_resend_after_http_500_keeps_message_id(
        wharf, start_server, peer, side_a, receiver, pki):
    """The receiver processes the message but answers HTTP 500 twice (its
    answer is lost): A's three POSTs carry one Message-ID (Wharf's own
    message id, chosen before the first POST) and the same content; the
    third gets the MDN and A's message is sent."""
    recv = receiver("ok")
    recv.fail_first = 2
    a = start_a(wharf, start_server, side_a, peer, recv.url, pki["ca"],
                max_attempts=5)
    payload = edi(9)
    drop_file(a.outbox, "po-9.edi", payload)
    wait_until(lambda: finished(wharf, a), timeout=90,
               desc="A's message finished")
    assert state_of(wharf, a) == "sent", the_hop(wharf, a)
    assert len(recv.got) == 3, message_ids(recv)
    assert all("error" not in r for r in recv.got), recv.got
    ids = message_ids(recv)
    msg = the_message(wharf, a)
    assert ids == [f"<{msg['id']}@wharf>"] * 3, ids
    assert len({r["mic"] for r in recv.got}) == 1, "the same content"
    assert all(r["payload"] == payload for r in recv.got)
    hop = the_hop(wharf, a)
    assert hop["attempts"] == 3 and recv.got[2]["mic"] in hop["receipt"], hop
    a.server.stop()


def test_m4_resend_after_mdn_timeout_keeps_message_id(
        wharf, start_server, peer, side_a, receiver, pki):
    """Asynchronous MDN: the receiver never sends the MDN of the first
    POST; after mdn_timeout_s A sends again, same Message-ID and content;
    the MDN of the second arrives and confirms it."""
    recv = receiver("async")
    recv.async_drop = 1
    a = side_a
    start_a(wharf, start_server, a, peer, recv.url, pki["ca"], max_attempts=5,
            mdn="async")
    doc = json.loads((a.dir / "flow.json").read_text())
    doc["connectors"][1]["config"]["mdn_timeout_s"] = 2
    (a.dir / "flow.json").write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", a.data, a.dir / "flow.json")
    wait_until(lambda: "flow generation 2 loaded" in a.log(), timeout=30)
    drop_file(a.outbox, "late.edi", edi(10))
    wait_until(lambda: finished(wharf, a), timeout=90,
               desc="A's message finished")
    assert state_of(wharf, a) == "sent", the_hop(wharf, a)
    assert len(recv.got) == 2, message_ids(recv)
    msg = the_message(wharf, a)
    assert message_ids(recv) == [f"<{msg['id']}@wharf>"] * 2
    assert recv.got[0]["mic"] == recv.got[1]["mic"]
    assert [r[0] for r in recv.async_results] == [200], recv.async_results
    hop = the_hop(wharf, a)
    assert "MDN processed (signed)" in hop["receipt"], hop
    assert "no asynchronous MDN" in a.log() and "sent again" in a.log()
    # R19: the missing MDN was an alert, resolved by the confirming one
    p = wharf.ok("alert", "list", "--data", a.data, "--state", "all",
                 "--json")
    missing = [x for x in json.loads(p.stdout)["alerts"]
               if x["kind"] == "as2.mdn_missing" and x["key"] == "as2-b"]
    assert len(missing) == 1 and missing[0]["state"] == "resolved", missing
    a.server.stop()


def test_m4_resend_after_kill9_keeps_message_id(
        wharf, start_server, peer, side_a, receiver, pki):
    """A is killed (-9) while its POST waits for the MDN; after the restart
    it sends again with the same Message-ID and content."""
    import threading
    recv = receiver("ok")
    recv.hold = threading.Event()
    a = start_a(wharf, start_server, side_a, peer, recv.url, pki["ca"],
                max_attempts=5)
    drop_file(a.outbox, "killed.edi", edi(11))
    wait_until(lambda: recv.got, timeout=60, desc="A's first POST")
    a.server.kill9()
    recv.hold.set()                 # its answer goes nowhere
    a.server = start_server(a.data)
    a.server.wait_listening()
    wait_until(lambda: finished(wharf, a), timeout=90,
               desc="A's message finished after the restart")
    assert state_of(wharf, a) == "sent", the_hop(wharf, a)
    assert len(recv.got) == 2, message_ids(recv)
    msg = the_message(wharf, a)
    assert message_ids(recv) == [f"<{msg['id']}@wharf>"] * 2
    assert recv.got[0]["mic"] == recv.got[1]["mic"]
    a.server.stop()


def test_m4_async_mdn_wait_survives_kill9(
        wharf, start_server, peer, side_a, receiver, pki):
    """M2, M4: A is killed (-9) while it waits for an asynchronous MDN;
    the wait is durable, so after the restart the MDN the receiver posts
    then is taken (200), checked and settles the hop: one POST only, no
    resend, the receipt names the receiver's MIC."""
    a, recv = a_awaiting_async_mdn(wharf, start_server, side_a, peer,
                                   receiver, pki, "wait.edi", edi(12))
    wait_until(lambda: "waiting for the asynchronous MDN" in " ".join(
        e["text"] for e in events(wharf, a)), timeout=60,
        desc="A waiting for the asynchronous MDN")
    a.server.kill9()
    a.server = start_server(a.data)
    a.server.wait_listening()
    recv.async_hold.set()           # the MDN reaches the restarted A
    wait_until(lambda: recv.async_results, timeout=60,
               desc="the async MDN posted")
    assert recv.async_results[0][0] == 200, recv.async_results
    wait_until(lambda: finished(wharf, a), timeout=60,
               desc="A's message finished after the restart")
    assert state_of(wharf, a) == "sent", the_hop(wharf, a)
    assert len(recv.got) == 1, message_ids(recv)
    assert "error" not in recv.got[0], recv.got[0]["error"]
    hop = the_hop(wharf, a)
    assert "MDN processed (signed)" in hop["receipt"], hop
    assert recv.got[0]["mic"] in hop["receipt"], hop
    a.server.stop()


# ---- item 10: an unsigned MDN without a MIC ------------------------------------


@pytest.mark.parametrize("require_mic", [False, True])
def test_m4_unsigned_mdn_without_mic(wharf, start_server, peer, side_a,
                                     receiver, pki, require_mic):
    """A asks partner b for unsigned receipts; b's MDN says "processed"
    without Received-Content-MIC (RFC 4130 makes it optional there). A
    takes it as the receipt and records "unsigned receipt, no MIC"; with
    require_mic the hop fails naming the missing MIC."""
    recv = receiver("unsigned_no_mic")
    settings = {"mdn_signed": False}
    if require_mic:
        settings["require_mic"] = True
    a = start_a(wharf, start_server, side_a, peer, recv.url, pki["ca"],
                max_attempts=2, **settings)
    drop_file(a.outbox, "nomic.edi", edi(12))
    wait_until(lambda: finished(wharf, a), timeout=60,
               desc="A's message finished")
    assert recv.got and "error" not in recv.got[0], recv.got
    dno = cli.hget(recv.got[0]["headers"], "Disposition-Notification-Options")
    assert not dno or "signed-receipt-protocol" not in dno, dno
    hop = the_hop(wharf, a)
    texts = " | ".join(e["text"] for e in events(wharf, a))
    if require_mic:
        assert state_of(wharf, a) == "failed", hop
        assert "no Received-Content-MIC" in hop["last_error"], hop
        assert "require_mic" in hop["last_error"], hop
    else:
        assert state_of(wharf, a) == "sent", hop
        assert hop["receipt"] == ("MDN processed (unsigned receipt, no "
                                  "MIC)"), hop
        assert "unsigned receipt, no MIC" in texts, texts
    a.server.stop()


# ---- item 11: an asynchronous MDN asked for at an http:// URL --------------------


def test_m4_async_mdn_to_plain_http_url(tmp_path, wharf, start_server,
                                        sender, pki):
    """The CLI sender asks Wharf B for its MDN at http://... (OpenAS2's
    default). B keeps the message (it is released: the MDN is queued),
    says why the MDN did not go in the message's history and in exactly
    one ALERT line (not once per retry), and sends it over plain HTTP as
    soon as the partner's allow_plain_mdn_url is true."""
    b = wharf_b(wharf, tmp_path, start_server, sender, pki)
    doc = json.loads((b.dir / "flow.json").read_text())
    doc["connectors"][1]["config"]["poll_ms"] = 200     # retries: often
    (b.dir / "flow.json").write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", b.data, b.dir / "flow.json")
    wait_until(lambda: "flow generation 2 loaded" in b.log(), timeout=30)
    sink = cli.MdnSink(None)                # plain HTTP
    try:
        assert sink.url.startswith("http://")
        payload = edi(13)
        mid, scope = post_asking_async_mdn(sender, b, payload, "po-13.edi",
                                           sink.url)
        wait_until(lambda: (b.inbox / "po-13.edi").exists(), timeout=30,
                   desc="B released the file (MDN queued)")

        def said():
            return [e for e in events(wharf, b)
                    if "plain-HTTP" in e["text"]]
        ev = wait_until(said, timeout=30, desc="the event in the history")
        assert len(ev) == 1 and ev[0]["level"] == "warning", ev
        assert sink.url in ev[0]["text"]
        assert "allow_plain_mdn_url" in ev[0]["text"]
        # several retries later (poll_ms 200): still one ALERT, no MDN
        import time
        time.sleep(2)
        alerts = [l for l in b.log().splitlines()
                  if "ALERT" in l and "plain-HTTP" in l]
        assert len(alerts) == 1, alerts
        assert not [l for l in b.log().splitlines()
                    if "not sent yet" in l and "WARN" in l], b.log()[-2000:]
        assert sink.got == []

        p = doc["partners"][0]
        p["allow_plain_mdn_url"] = True
        (b.dir / "flow.json").write_text(json.dumps(doc))
        wharf.ok("flow", "import", "--data", b.data, b.dir / "flow.json")
        wait_until(lambda: sink.got, timeout=30,
                   desc="the queued MDN sent over plain HTTP")
        path, mh, mb = sink.got[0]
        assert path == "/mdn"
        check_mdn(b, sender, mid, 200, mh, mb, scope, "sha-256", sender.dir)
        assert "queued asynchronous MDN sent" in b.log()
    finally:
        sink.close()
    b.server.stop()
