"""
M8 web console, journey 3 "Messages", in Debian's Chromium against a real
`wharf serve` running a file flow (outbox -> inbox):

  - search by text (file name, message id prefix), state, connector;
    a file name that is HTML stays text (R12: XSS through a file name);
  - the detail view: hops, events; the payload download is the file's
    bytes and is audited as the user who clicked; resend of one message
    and of a selection (requeued, delivered again);
  - a viewer sees no resend, no download and no selection; the server
    refuses the viewer's resend anyway (403);
  - keyset paging over 120,000 messages: the API's `next` cursor walks
    pages without overlap or gap, and the console's "Older" follows it.
Every page is checked for console errors, CSP violations and failed
requests, scanned with axe-core and photographed at both viewports.
"""
import json
import os
import secrets
import sqlite3
import time
import uuid
from pathlib import Path

from conftest import drop_file, file_dest, file_source, flow_doc, wait_until
from console import browser  # noqa: F401 - fixture
from test_r14_api import Api, audit_entries, cli_token, cli_user, new_password

XSS_NAME = "<img src=x onerror=\"document.title='pwned'\">.edi"


def file_flow(wharf, data, root):
    out, inbox = root / "outbox", root / "inbox"
    out.mkdir()
    inbox.mkdir()
    doc = flow_doc([file_source("outbox", out), file_dest("inbox", inbox)],
                   [("outbox", "inbox")])
    wharf.import_flow(data, doc, root / "flow.json")
    return out, inbox


def states(wharf, data):
    return {m["filename"]: m["state"] for m in wharf.messages(data)}


def fetch_in_page(b, method, path):
    """A call from the console's page with its session and CSRF token:
    what a crafted button would do. Returns [status, error code]."""
    return b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[1], {method: arguments[0], credentials: 'same-origin',
              headers: {'X-CSRF-Token': sessionStorage.getItem('wharf.csrf') || ''}})
          .then(r => r.json().then(j => done([r.status, j.error ? j.error.code : null])))
          .catch(e => done([0, String(e)]));""", method, path)


def test_m8_console_messages_search_detail_payload_resend(
        wharf, data_dir, start_server, browser, tmp_path):
    out, inbox = file_flow(wharf, data_dir, tmp_path)
    op_pw = cli_user(wharf, data_dir, "oli", "operator", new_password())
    viewer_pw = cli_user(wharf, data_dir, "vera", "viewer", new_password())
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    files = {"order-1.edi": b"UNA:+.? 'UNB+UNOC:3+A+B'\n",
             "invoice-2.xml": b"<invoice>42</invoice>\n",
             XSS_NAME: b"<script>alert(1)</script>\n"}
    for name, data in files.items():
        drop_file(out, name, data)
    wait_until(lambda: states(wharf, data_dir) == {n: "sent" for n in files},
               desc="three messages sent")
    msgs = {m["filename"]: m for m in wharf.messages(data_dir)}

    b = browser(f"https://127.0.0.1:{port}")
    dl = tmp_path / "downloads"
    dl.mkdir()
    b.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                             {"behavior": "allow", "downloadPath": str(dl)})
    b.sign_in("oli", op_pw)
    b.signed_in()
    b.go("/messages")
    b.wait_for("table.messages")
    names = b.texts("table.messages a.msg-link")
    assert sorted(names) == sorted(files), names
    # the HTML file name is text: no element was made of it
    assert XSS_NAME in names
    assert not b.find_all("table.messages img")
    assert b.driver.title == "Messages - Wharf"
    b.check()
    b.axe("message list")
    b.shots("10-messages")

    # search: text, id prefix, state, connector
    b.fill_label("Search", "invoice")
    b.click("#message-search button[type=submit]")
    wait_until(lambda: b.texts("table.messages a.msg-link") == ["invoice-2.xml"],
               desc="the search for 'invoice'")
    prefix = msgs["order-1.edi"]["id"][:24]
    b.fill_label("Search", prefix)
    b.click("#message-search button[type=submit]")
    wait_until(lambda: b.texts("table.messages a.msg-link") == ["order-1.edi"],
               desc=f"the search for id prefix {prefix}")
    b.go("/messages?state=failed")
    b.wait_for("#no-messages")
    b.go("/messages?state=sent&connector=inbox")
    wait_until(lambda: len(b.texts("table.messages a.msg-link")) == 3,
               desc="three sent through inbox")
    b.check()

    # the detail view
    b.click_text("order-1.edi", tag="a")
    b.wait_for("table.hops")
    hop_text = b.find("table.hops").text
    assert "inbox" in hop_text and "sent" in hop_text, hop_text
    assert b.find_all("#events li")
    b.check()
    b.axe("message detail")
    b.shots("11-message-detail")
    b.click("#download-payload")
    got = dl / "order-1.edi"
    wait_until(got.exists, desc="the downloaded payload")
    wait_until(lambda: got.read_bytes() == files["order-1.edi"],
               desc="the download to finish")
    mid = msgs["order-1.edi"]["id"]
    assert any(e["action"] == "payload.download" and e["target"] == mid and
               e["actor"] == "user:oli" for e in audit_entries(wharf, data_dir))

    # resend one, then a selection of two
    b.click("#resend")
    b.wait_text("#message-msg", "Requeued")
    b.go("/messages")
    b.wait_for("table.messages")
    picks = b.find_all("table.messages input.pick")
    assert len(picks) == 3
    for p in picks[:2]:
        b.press(p)
    assert b.find("#resend-selected").text == "Resend selected (2)"
    b.click("#resend-selected")
    b.wait_text("#resend-result", "requeued")
    b.check()
    events = lambda: sum("resend" in e["text"].lower() for m in wharf.messages(data_dir)
                         for e in wharf.show(data_dir, m["id"])["events"])
    wait_until(lambda: events() >= 3, desc="three resends recorded")
    wait_until(lambda: set(states(wharf, data_dir).values()) == {"sent"},
               desc="the resent messages delivered again")
    b.click("#signout")
    b.wait_text("#login-msg", "signed out")

    # a viewer: no resend, no download, no selection; the server refuses
    b.sign_in("vera", viewer_pw)
    b.signed_in()
    b.go("/messages")
    b.wait_for("table.messages")
    assert not b.find_all("table.messages input.pick")
    assert not b.find_all("#resend-selected")
    b.click_text("order-1.edi", tag="a")
    b.wait_for("table.hops")
    assert not b.find_all("#download-payload") and not b.find_all("#resend")
    b.expect(r"resend - Failed to load resource.*403")
    assert fetch_in_page(b, "POST", f"/api/v1/messages/{mid}/resend") == [
        403, "forbidden"]
    b.expect(r"payload - Failed to load resource.*403")
    assert fetch_in_page(b, "GET", f"/api/v1/messages/{mid}/payload") == [
        403, "forbidden"]
    b.shots("12-message-detail-viewer")
    b.check()
    srv.stop()


def uuid7(ms):
    """A UUIDv7 text for unix time ms (what Wharf's ids are)."""
    rnd = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80) | (0x7 << 76) | ((rnd >> 62) & 0xfff) << 64 | \
        (0b10 << 62) | (rnd & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


def test_m8_console_messages_keyset_paging_120k(wharf, data_dir,
                                               start_server, browser):
    """120,000 messages (written into the database beside the server, as
    an old installation would have them): the API pages through them by
    key, and the console's Older button follows the same cursor."""
    token = cli_token(wharf, data_dir, "viewer")[0]
    pw = cli_user(wharf, data_dir, "pia", "viewer", new_password())
    n = 120_000
    start = int(time.time() * 1000) - n * 10
    ids = [uuid7(start + i * 10) for i in range(n)]
    db = sqlite3.connect(str(data_dir / "wharf.db"))
    db.executemany(
        "INSERT INTO messages(id, created_at, updated_at, source, filename,"
        " size, sha256, state) VALUES(?, ?, ?, 'outbox', ?, 10, ?, ?)",
        ((ids[i], start + i * 10, start + i * 10, f"bulk-{i:06d}.edi",
          "0" * 64, "sent" if i % 7 else "failed") for i in range(n)))
    db.commit()
    db.close()
    newest = ids[::-1]
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    api = Api(port)

    # the API: first page, then follow `next`; a page far down by key
    seen = []
    after = None
    for _ in range(5):
        path = "/api/v1/messages?limit=1000" + (f"&after={after}" if after else "")
        page = api.ok("GET", path, token=token).json()
        seen += [m["id"] for m in page["messages"]]
        after = page["next"]
    assert seen == newest[:5000]
    deep = api.ok("GET", f"/api/v1/messages?limit=1000&after={newest[118_500]}",
                  token=token).json()
    assert [m["id"] for m in deep["messages"]] == newest[118_501:119_501]
    last = api.ok("GET", f"/api/v1/messages?limit=1000&after={newest[119_499]}",
                  token=token).json()
    assert [m["id"] for m in last["messages"]] == newest[119_500:]
    assert last["next"] is None
    failed = api.ok("GET", f"/api/v1/messages?state=failed&limit=1000&after="
                    f"{newest[100_000]}", token=token).json()["messages"]
    assert failed and all(m["state"] == "failed" for m in failed)
    assert failed[0]["id"] < newest[100_000]
    assert api.request("GET", "/api/v1/messages?after=nonsense",
                       token=token).status == 400
    # the text is text: % and _ are no wildcards
    for q in ("%25", "bulk_", "_"):
        assert api.ok("GET", f"/api/v1/messages?q={q}", token=token).json()[
            "messages"] == [], q
    hit = api.ok("GET", "/api/v1/messages?q=bulk-000123", token=token).json()
    assert [m["filename"] for m in hit["messages"]] == ["bulk-000123.edi"]

    # the console: Older, Older, Older
    b = browser(f"https://127.0.0.1:{port}")
    b.sign_in("pia", pw)
    b.signed_in()
    b.go("/messages")
    b.wait_for("table.messages")
    for k in range(3):
        first = wait_until(lambda: b.texts("table.messages code")[:1],
                           desc="a page of messages")[0]
        assert newest[50 * k].startswith(first), (k, first)
        b.click("#older")
        wait_until(lambda: b.texts("table.messages code")[:1] not in ([], [first]),
                   desc="the next page")
    assert newest[150].startswith(wait_until(
        lambda: b.texts("table.messages code")[:1], desc="the 4th page")[0])
    b.check()
    srv.stop()
