"""R22 (rate limiting and banning of abusive addresses, request size
limits) on the AS2 routes of the partner listener (issue item 6): anyone
who knows a partner's AS2 id can POST to /as2, so what is refused must not
fill the database or the log, must get the address banned, and a body
over the partner's cap must be refused before a byte of it is written.

  - 300 forged requests (the partner's AS2-From, garbage bodies) from one
    address: the defender bans it after ban_after_failures refusals; one
    "refused" record, a bounded number of ALERT lines;
  - with a ban threshold above 300: still one record (the burst, counting
    300) with two events, one kept MDN at most, one alert (R19: as2.refused,
    counting 300) whose opening is the only ALERT line, and summary lines
    at the 10th and 100th only;
  - an unknown partner (no connector takes the request) counts toward the
    ban too;
  - a body over the as2 connector's max_body_bytes: 413 from its
    Content-Length before the body is sent, nothing under payloads/; a
    chunked one is cut at the cap, 413, and nothing is left under
    payloads/.

The client is Python's ssl module on raw sockets (the request exactly as
an attacker would send it)."""
import json
import os
import sqlite3

from as2_pair import Side, settings_doc
from conftest import tune_conf, wait_until
from test_r22_limits import read_response, refused, tls_connect


def b_alone(wharf, tmp_path, start_server, settings=None, conn=None,
            **conf):
    """Wharf B, running, whose partner "a" (AS2 id wharf-a) never runs:
    only forged requests come in its name."""
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    tune_conf(b.data, **conf)
    doc = settings_doc(b, a, settings, conn_config=conn)
    (b.dir / "flow.json").write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", b.data, b.dir / "flow.json")
    b.server = start_server(b.data)
    b.server.wait_listening()
    return b


def forged(i, body, as2_from="wharf-a", extra=b""):
    return (b"POST /as2 HTTP/1.1\r\nHost: localhost\r\n"
            b"AS2-Version: 1.2\r\nAS2-From: " + as2_from.encode() +
            b"\r\nAS2-To: wharf-b\r\nMessage-ID: <forged-%d@attacker>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; "
            b"smime-type=enveloped-data\r\n" % i + extra +
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) +
            body)


def post(port, raw):
    """The status of one request, or None when the connection was refused
    (a banned address) or closed without an answer."""
    try:
        with tls_connect(port) as s:
            s.sendall(raw)
            return read_response(s)[0]
    except OSError:
        return None


def counts(data):
    """Rows per table (0 for a table this schema does not have)."""
    db = sqlite3.connect(f"file:{data / 'wharf.db'}?mode=ro", uri=True)
    try:
        have = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                if t in have else 0
                for t in ("messages", "events", "receipts", "refusals")}
    finally:
        db.close()


def alerts(side):
    return [line for line in side.log().splitlines() if "ALERT" in line]


def payload_files(side):
    return [p for p in (side.data / "payloads").rglob("*") if p.is_file()]


def partner_port(side):
    return int(side.url.split(":")[2].split("/")[0])


def test_r22_as2_forged_requests_ban_the_address(tmp_path, wharf,
                                                 start_server):
    b = b_alone(wharf, tmp_path, start_server)
    port = partner_port(b)
    before = counts(b.data)
    statuses = [post(port, forged(i, os.urandom(4096))) for i in range(300)]
    answered = [s for s in statuses if s is not None]
    # ban_after_failures is 10 (the default): the 10th refusal bans
    assert 0 < len(answered) <= 10 and set(answered) == {400}, statuses
    assert statuses[-1] is None
    assert refused(port), "the address is banned"
    log = b.log()
    assert "banned 127.0.0.1 for 60 s (ban 1, after 10 failed" in log
    after = counts(b.data)
    assert after["messages"] - before["messages"] == 1, (before, after)
    assert after["refusals"] - before["refusals"] == 1, (before, after)
    assert after["events"] - before["events"] <= 2, (before, after)
    assert len(alerts(b)) <= 3, alerts(b)
    msgs = wharf.messages(b.data)
    assert [m["state"] for m in msgs] == ["refused"], msgs
    texts = [e["text"] for e in wharf.show(b.data, msgs[0]["id"])["events"]]
    assert any("refused 10 times in all from 127.0.0.1" in t
               for t in texts), texts
    assert payload_files(b) == []
    b.server.stop()


def test_r22_as2_refusals_are_folded_into_one_record(tmp_path, wharf,
                                                     start_server):
    b = b_alone(wharf, tmp_path, start_server, ban_after_failures=1000)
    port = partner_port(b)
    before = counts(b.data)
    # each asks for a signed MDN: B answers each with a negative MDN
    dnt = (b"Disposition-Notification-To: mailto:x@attacker\r\n"
           b"Disposition-Notification-Options: signed-receipt-protocol="
           b"optional, pkcs7-signature; signed-receipt-micalg=optional, "
           b"sha-256\r\n")
    statuses = [post(port, forged(i, os.urandom(2048), extra=dnt))
                for i in range(300)]
    assert set(statuses) == {200}, statuses     # negative MDNs
    after = counts(b.data)
    grown = {k: after[k] - before[k] for k in after}
    assert grown == {"messages": 1, "events": 2, "receipts": 1,
                     "refusals": 1}, grown
    msgs = wharf.messages(b.data)
    assert [m["state"] for m in msgs] == ["refused"], msgs
    texts = [e["text"] for e in wharf.show(b.data, msgs[0]["id"])["events"]]
    assert texts[0].startswith("AS2 message <forged-0@attacker> from a "
                               "(127.0.0.1) refused ("), texts
    assert texts[1].startswith("refused 300 times in all from 127.0.0.1"), \
        texts
    assert "<forged-299@attacker>" in texts[1], texts
    lines = alerts(b)
    assert len(lines) == 1 and "opened, warning, as2.refused" in lines[0], lines
    summary = [line for line in b.log().splitlines()
               if "refusals from 127.0.0.1" in line]
    assert len(summary) == 2, summary               # the 10th, 100th
    assert "10 refusals from 127.0.0.1" in summary[0], summary
    assert "100 refusals from 127.0.0.1" in summary[1], summary
    folded = [a for a in json.loads(wharf.ok(
        "alert", "list", "--data", b.data, "--json").stdout)["alerts"]
        if a["kind"] == "as2.refused"]
    assert [a["count"] for a in folded] == [300], folded
    b.server.stop()


def test_r22_as2_unknown_partner_counts_toward_the_ban(tmp_path, wharf,
                                                       start_server):
    b = b_alone(wharf, tmp_path, start_server, ban_after_failures=5)
    port = partner_port(b)
    statuses = [post(port, forged(i, b"x" * 100, as2_from="nobody"))
                for i in range(20)]
    assert statuses[:4] == [404] * 4, statuses
    assert statuses[-1] is None, statuses
    assert refused(port)
    assert wharf.messages(b.data) == []
    lines = [l for l in alerts(b) if "no as2 connector" in l]
    assert len(lines) == 1, lines           # the 10th never came: banned
    b.server.stop()


def test_r22_as2_body_over_the_partner_cap(tmp_path, wharf, start_server):
    # partner a sends plain payloads: a body would stream straight into
    # the intake (payloads/) if it were not refused
    plain = {"sign": "none", "encrypt": "none", "compress": False,
             "mdn": "none"}
    b = b_alone(wharf, tmp_path, start_server, settings=plain,
                ban_after_failures=100)
    port = partner_port(b)
    head = (b"POST /as2 HTTP/1.1\r\nHost: localhost\r\nAS2-Version: 1.2\r\n"
            b"AS2-From: wharf-a\r\nAS2-To: wharf-b\r\n"
            b"Message-ID: <big-%d@a>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\n")
    # the default cap (1 GiB): a forged 1 GiB body is refused unread
    with tls_connect(port) as s:
        s.sendall(head % 9 + b"Content-Length: 1073741825\r\n\r\n")
        status, headers, body = read_response(s)
    assert status == 413, (status, body)
    assert payload_files(b) == []
    # the partner's own cap
    doc = json.loads((b.dir / "flow.json").read_text())
    doc["connectors"][1]["config"]["max_body_bytes"] = 65536
    (b.dir / "flow.json").write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", b.data, b.dir / "flow.json")
    wait_until(lambda: "flow generation 2 loaded" in b.log(), timeout=30)
    # under the cap: taken (the control)
    ok = b"small payload\n" * 100
    assert post(port, head % 0 + b"Content-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % len(ok) + ok) == 200
    wait_until(lambda: len(payload_files(b)) == 1, timeout=30)
    files = payload_files(b)
    # declared over the cap: 413 before the body is sent
    with tls_connect(port) as s:
        s.sendall(head % 1 + b"Content-Length: 1048576\r\n\r\n")
        status, headers, body = read_response(s)
    assert status == 413, (status, body)
    assert b"max_body_bytes" in body, body
    assert payload_files(b) == files
    # chunked, no length: cut at the cap, and what was written is gone
    chunk = os.urandom(16384)
    with tls_connect(port) as s:
        s.sendall(head % 2 + b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(5):          # 80 KiB
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass                        # B may close once it answered
        status, headers, body = read_response(s)
    # (B stops reading at the cap: its 413 may be lost to a reset)
    assert status in (413, None), (status, body)

    def texts():
        msgs = wharf.messages(b.data)
        refusals = [m for m in msgs if m["state"] == "refused"]
        assert len(refusals) == 1, msgs     # one burst: too large
        return [e["text"] for e in wharf.show(b.data, refusals[0]["id"])
                ["events"]]
    t = wait_until(lambda: "times in all" in texts()[-1] and "<big-2@a>"
                   in texts()[-1] and texts(), timeout=30,
                   desc="the last refusal recorded")
    assert len(t) == 2 and "refused (too large)" in t[0], t
    assert t[1].startswith("refused 3 times in all"), t
    assert "<big-2@a>" in t[1], t
    assert payload_files(b) == files
    b.server.stop()
