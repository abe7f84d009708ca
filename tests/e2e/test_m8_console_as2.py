"""
M8 web console with an AS2 pair of two Wharf instances (as2_pair.py): A
sends a file to B, signed, encrypted, compressed, with a signed MDN.

  - in A's console, the message's receipt: disposition "processed", the
    signature verified, the MIC; the raw MDN downloads as it was received
    (its Disposition header and signature inside);
  - in B's console, the message found by the AS2 Message-ID A gave it,
    and its file name, chosen by the partner, is HTML that stays text
    (R12: XSS through a field a partner controls).
"""
import os

from as2_pair import pair
from conftest import drop_file, wait_until
from console import browser  # noqa: F401 - fixture
from test_m4_as2 import arrived, start
from test_r14_api import cli_user, new_password

EVIL = "<svg onload=document.title='pwned'>order.edi"


def test_m8_console_as2_signed_mdn_and_partner_fields(tmp_path, wharf,
                                                     start_server, browser):
    a, b = pair(wharf, tmp_path)
    pw_a = cli_user(wharf, a.data, "anna", "operator", new_password())
    pw_b = cli_user(wharf, b.data, "bert", "operator", new_password())
    start((a, b), start_server)
    body = os.urandom(64 * 1024)
    drop_file(a.outbox, EVIL, body)
    wait_until(lambda: arrived(b, EVIL), timeout=60, desc="the file at B")
    wait_until(lambda: [m["state"] for m in wharf.messages(a.data)] == ["sent"],
               timeout=60, desc="A's message sent, its MDN checked")
    mid = wharf.messages(a.data)[0]["id"]

    # A: the signed MDN of the message
    port_a = a.server.wait_listening()[0]
    ba = browser(f"https://127.0.0.1:{port_a}")
    ba.sign_in("anna", pw_a)
    ba.signed_in()
    ba.go(f"/messages/{mid}")
    rec = ba.wait_for("table.receipts").text
    assert "received" in rec and "processed" in rec, rec
    assert "signed, signature verified" in rec, rec
    assert "sha-256" in rec.lower() or "sha256" in rec.lower(), rec
    raw = ba.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.querySelector('a.raw-mdn').href).then(r => r.text()).then(done);""")
    assert "Disposition:" in raw and "processed" in raw, raw[:600]
    assert "application/pkcs7-signature" in raw, raw[:600]
    assert ba.driver.title != "pwned" and not ba.find_all("#main svg[onload]")
    ba.check()
    ba.axe("AS2 message with its MDN")
    ba.shots("50-as2-mdn")

    # B: found by A's AS2 Message-ID; the partner's file name is text
    port_b = b.server.wait_listening()[0]
    bb = browser(f"https://127.0.0.1:{port_b}")
    bb.sign_in("bert", pw_b)
    bb.signed_in()
    bb.go("/messages")
    bb.wait_for("table.messages")
    bb.fill_label("Search", f"<{mid}@wharf>")
    bb.click("#message-search button[type=submit]")
    wait_until(lambda: bb.texts("table.messages a.msg-link") == [EVIL],
               desc="B's message by A's AS2 Message-ID")
    assert not bb.find_all("table.messages svg")
    assert bb.driver.title == "Messages - Wharf"
    bb.click_text(EVIL, tag="a")
    bb.wait_for("table.receipts")
    assert bb.find("#main h1").text == EVIL
    assert "sent" in bb.find("table.receipts").text
    bb.check()
    for s in (a, b):
        s.server.stop()
