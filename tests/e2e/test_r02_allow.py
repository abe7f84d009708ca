"""
R2 (firewalls): per-endpoint IP allow-lists (net/allow.h). Every client
here is on loopback; the tests pick the source address (127.0.0.1 or
127.0.0.2, both on lo) to be inside or outside a list.

  - a listener's allow-list (wharf.conf partner_allow_from,
    admin_allow_from): an address outside it is closed at accept, before
    any TLS (the TLS client sees the connection end before a handshake);
    an address inside it is served; each refusal is counted in /metrics
    (wharf_connections_refused_total, by listener and reason);
  - a partner's allow_from (flow document): an AS2 message or an
    asynchronous MDN in its name from another address gets 403 before its
    body is read, is recorded as a refusal (nothing stored) and counts
    toward the ban; from an allowed address the request goes on (a forged
    body: 400), and Wharf A on an allowed address delivers to Wharf B; the
    list survives flow export and import;
  - a webhook's allow_from: 403 before the credentials are looked at; the
    same credentials from an allowed address deliver;
  - an entry that is not an IPv4 address or network is refused at import
    (flow document, connector option) and in wharf.conf, naming it.
"""
import http.client
import json
import os
import re
import socket
import ssl

from as2_pair import pair, settings_doc, start_pair
from conftest import (drop_file, file_dest, flow_doc, new_data_dir,
                      tune_conf, wait_until)
from test_m6_http import secret_file
from test_r22_as2_abuse import b_alone, counts, forged, partner_port
from test_r22_limits import cli_token, metrics_as, read_response
from test_r22_slow_clients import tls_connect

OTHER = "127.0.0.2"


def status_from(port, raw, source):
    """The status of one request from source; None when the connection was
    closed without an answer (before or during the handshake)."""
    try:
        with tls_connect(port, source) as s:
            s.sendall(raw)
            return read_response(s)[0]
    except (OSError, ssl.SSLError):
        return None


def refused_counts(admin, token):
    """wharf_connections_refused_total of /metrics: {(listener, reason):
    count}."""
    status, _, body = metrics_as(admin, token)
    assert status == 200, body
    got = {}
    for m in re.finditer(rb'^wharf_connections_refused_total\{listener="'
                         rb'(\w+)",reason="(\w+)"\} (\d+)$', body, re.M):
        got[(m[1].decode(), m[2].decode())] = int(m[3])
    assert len(got) == 8, body
    return got


def healthz(port, source):
    return status_from(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                       b"Connection: close\r\n\r\n", source)


def test_r02_listener_allow_list_closes_others_before_tls(
        tmp_path, wharf, start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    tune_conf(data, partner_allow_from=f"{OTHER}/32",
              admin_allow_from="127.0.0.0/31")
    srv = start_server(data)
    admin, partner = srv.wait_listening()
    token = cli_token(wharf, data, "operator")
    before = refused_counts(admin, token)   # wait_listening's probes too
    # outside: no TLS at all (the handshake meets a closed connection)
    with socket.create_connection(("127.0.0.1", partner), timeout=10) as s:
        s.settimeout(10)
        s.sendall(b"\x16\x03\x01\x00\x05hello")     # a record's start
        try:
            got = s.recv(100)
        except ConnectionResetError:    # closed with our bytes unread
            got = b""
        assert got == b"", "the partner listener answered"
    assert healthz(partner, "127.0.0.1") is None
    assert healthz(admin, OTHER) is None
    # inside: served (the partner listener has no /healthz: 404)
    assert healthz(partner, OTHER) == 404
    assert healthz(admin, "127.0.0.1") == 200
    # counted for the operator (the log has them at debug level only)
    after = refused_counts(admin, token)
    assert after[("partner", "allow_list")] - \
        before[("partner", "allow_list")] == 2, (before, after)
    assert after[("admin", "allow_list")] - \
        before[("admin", "allow_list")] == 1, (before, after)
    assert after[("partner", "banned")] == 0, after
    log = (data / "logs" / "wharf.log").read_text()
    assert "partner listener on https://" in log
    assert "(only the addresses of its allow-list)" in log
    srv.check_alive()
    srv.stop()
    # a wrong entry: serve and every command refuse wharf.conf, naming it
    tune_conf(data, partner_allow_from="127.0.0.1/8")
    p = wharf("flow", "export", "--data", data)
    assert p.returncode != 0
    assert "partner_allow_from" in p.stderr and \
        "host bits set (the network is 127.0.0.0/8)" in p.stderr, p.stderr


def mdn_post(i):
    body = b"not an MDN"
    return (b"POST /as2/mdn HTTP/1.1\r\nHost: localhost\r\n"
            b"AS2-Version: 1.2\r\nAS2-From: wharf-a\r\nAS2-To: wharf-b\r\n"
            b"Message-ID: <mdn-%d@attacker>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=disposition-"
            b"notification; boundary=x\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (i, len(body)) + body)


def test_r02_partner_allow_from_refuses_other_addresses(
        tmp_path, wharf, start_server):
    b = b_alone(wharf, tmp_path, start_server, ban_after_failures=5,
                settings={"allow_from": [f"{OTHER}/32", "192.0.2.0/24"]})
    port = partner_port(b)
    before = counts(b.data)
    assert status_from(port, forged(1, os.urandom(2048)), "127.0.0.1") == 403
    assert status_from(port, mdn_post(1), "127.0.0.1") == 403
    after = counts(b.data)
    grown = {k: after[k] - before[k] for k in after}
    assert grown["refusals"] == 1 and grown["receipts"] == 0, grown
    msgs = wharf.messages(b.data)
    assert [m["state"] for m in msgs] == ["refused"], msgs
    texts = [e["text"] for e in wharf.show(b.data, msgs[0]["id"])["events"]]
    assert texts[0] == ("AS2 message <forged-1@attacker> from a (127.0.0.1) "
                        "refused (address not allowed): not in the "
                        "partner's allow_from"), texts
    assert list((b.data / "payloads").rglob("*.wp")) == []
    # the allowed address gets as far as the body: a forged one is 400
    assert status_from(port, forged(2, os.urandom(2048)), OTHER) == 400
    # the refusals count toward the ban (5: three so far)
    for i in range(3, 6):
        status_from(port, forged(i, b"x" * 64), "127.0.0.1")
    assert status_from(port, forged(9, b"x" * 64), "127.0.0.1") is None
    assert "banned 127.0.0.1" in b.log()
    # the list is part of the partner: export, import
    doc = json.loads(wharf.export_flow(b.data))
    assert doc["partners"][0]["allow_from"] == [f"{OTHER}/32",
                                                "192.0.2.0/24"], doc
    b.server.stop()


def test_r02_partner_allow_from_lets_the_partner_in(tmp_path, wharf,
                                                   start_server):
    # B hears a only from 127.0.0.1 (where Wharf A's client comes from)
    a, b = pair(wharf, tmp_path, {}, {"allow_from": ["127.0.0.1"]})
    start_pair((a, b), start_server)
    drop_file(a.outbox, "order.edi", b"UNB+UNOC:3+A+B")
    wait_until(lambda: (b.inbox / "order.edi").exists(), timeout=60,
               desc="order.edi at B")
    wait_until(lambda: [m["state"] for m in wharf.messages(a.data)] ==
               ["sent"], timeout=60, desc="A's message sent, MDN checked")
    for s in (a, b):
        s.server.stop()


def test_r02_partner_allow_from_entries_checked_at_import(tmp_path, wharf):
    a, b = pair(wharf, tmp_path)
    for bad, says in ((["10.0.0.1/8"], "host bits set"),
                      (["2001:db8::/32"], "IPv6 is not accepted"),
                      (["partner.example"], "is not an IPv4 address"),
                      ("10.0.0.0/8", "must be a list")):
        doc = settings_doc(b, a, {"allow_from": bad})
        f = tmp_path / "bad.json"
        f.write_text(json.dumps(doc))
        p = wharf("flow", "import", "--data", b.data, f)
        assert p.returncode != 0, bad
        assert "partner 'a'" in p.stderr and says in p.stderr, p.stderr


def webhook_post(port, source, token):
    ctx = ssl._create_unverified_context()
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                    timeout=30, source_address=(source, 0))
    try:
        c.request("POST", "/webhook/orders", body=b"order from " +
                  source.encode(), headers={
                      "Authorization": f"Bearer {token}",
                      "X-Wharf-Filename": f"from-{source}.txt"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


def test_r02_webhook_allow_from(tmp_path, wharf, start_server):
    data = new_data_dir(wharf, tmp_path / "data", ban_after_failures=1000)
    sec = tmp_path / "secrets"
    sec.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    hook = {"name": "orders", "type": "webhook", "config": {
        "allow_from": [OTHER],
        "auth": {"type": "bearer",
                 "token_file": secret_file(sec, "tok", "hook-tok")}}}
    wharf.import_flow(data, flow_doc([hook, file_dest("out", out)],
                                     [("orders", "out")]),
                      tmp_path / "flow.json")
    srv = start_server(data)
    _, port = srv.wait_listening()
    st, body = webhook_post(port, "127.0.0.1", "hook-tok")
    assert st == 403 and body["error"]["code"] == "forbidden", body
    st, body = webhook_post(port, OTHER, "hook-tok")
    assert st == 200 and "id" in body, body
    wait_until(lambda: [p.name for p in out.iterdir()] ==
               [f"from-{OTHER}.txt"], timeout=30, desc="the allowed post")
    assert len(wharf.messages(data)) == 1
    assert "refused a request from 127.0.0.1: not in allow_from" in \
        (data / "logs" / "wharf.log").read_text()
    srv.stop()
    # a wrong entry is refused at import, naming the option
    hook["config"]["allow_from"] = ["10.0.0.0/33"]
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(flow_doc([hook, file_dest("out", out)],
                                     [("orders", "out")])))
    p = wharf("flow", "import", "--data", data, f)
    assert p.returncode != 0
    assert "allow_from" in p.stderr and "10.0.0.0/33" in p.stderr, p.stderr
