"""M4, R22 (issue 14): a large AS2 message is streamed into its POST as
it is packaged (chunked transfer encoding), between two Wharf instances
(the ASan build):

  - packaging that fails midway (A's payload file damaged on disk in its
    middle, so the vault's integrity check fails while the body streams):
    the POST is aborted before its final chunk; B stores nothing (no
    inbox file, no payload file, nothing but a refusal of a body cut
    off), and A's hop fails with the packaging error, never "sent";
  - a chunked body over B's max_body_bytes: B refuses it (413, a "too
    large" refusal), stores nothing; A's hop is not "sent".

The wire format (Transfer-Encoding: chunked, no Content-Length; and the
`"chunked": false` switch) is asserted against a receiver Wharf did not
write in test_m4_as2_interop.py, memory in test_m4_as2_large.py."""
import json
import os
import re

from as2_pair import pair
from conftest import drop_file, wait_until

HEADER_LEN = 92             # vault/payload.c: payload file header
SEGMENT = 64 * 1024 + 16    # sealed segment: 64 KiB ciphertext + GCM tag
SIZE = 8 << 20


def payload_files(side):
    return [p for p in (side.data / "payloads").rglob("*") if p.is_file()]


def a_message(wharf, a):
    msgs = wharf.messages(a.data)
    return msgs[0] if msgs else None


def as2_hop(wharf, a, msgid):
    return [h for h in wharf.show(a.data, msgid)["hops"]
            if h["connector"] == "as2-b"][0]


def retry_attempts(side, n):
    """Side's as2 connector gives up after n attempts (200 ms apart)."""
    doc = json.loads((side.dir / "flow.json").read_text())
    doc["connectors"][1]["config"]["retry"] = {
        "initial_ms": 200, "max_ms": 500, "max_attempts": n}
    return doc


def import_doc(wharf, side, doc):
    f = side.dir / "flow.json"
    f.write_text(json.dumps(doc))
    wharf.ok("flow", "import", "--data", side.data, f)


def test_m4_chunked_packaging_fails_midway_b_stores_nothing(
        tmp_path, wharf, start_server):
    a, b = pair(wharf, tmp_path)
    # B is not running yet: A's attempts fail at connect while the file
    # is damaged under it
    a.server = start_server(a.data)
    a.server.wait_listening()
    drop_file(a.outbox, "big.bin", os.urandom(SIZE))

    def attempted():
        a.server.check_alive()
        m = a_message(wharf, a)
        return m and as2_hop(wharf, a, m["id"])["attempts"] >= 1 and m
    m = wait_until(attempted, timeout=60, desc="A's first attempt (B down)")
    found = list((a.data / "payloads").glob(f"*/{m['id']}.wpay"))
    assert len(found) == 1, found
    # a byte in the middle segment: ~4 MiB of the body go out first
    off = HEADER_LEN + (SIZE // (64 * 1024) // 2) * SEGMENT + 100
    with open(found[0], "r+b") as f:
        f.seek(off)
        byte = f.read(1)
        f.seek(off)
        f.write(bytes([byte[0] ^ 0x5A]))
    b.server = start_server(b.data)
    b.server.wait_listening()

    def failed():
        a.server.check_alive()
        b.server.check_alive()
        return a_message(wharf, a)["state"] in ("failed", "sent")
    wait_until(failed, timeout=120, desc="A's message failed")
    hop = as2_hop(wharf, a, m["id"])
    assert a_message(wharf, a)["state"] == "failed", hop
    assert hop["state"] == "failed", hop
    assert re.search(r"segment|tamper|corrupt|integrity", hop["last_error"],
                     re.I), hop
    assert not hop["receipt"], hop

    # B took the connection and part of the body, then it was cut off:
    # a refusal (the body cut), nothing stored
    def b_refused():
        return [x for x in wharf.messages(b.data) if x["state"] == "refused"]
    refusals = wait_until(b_refused, timeout=30, desc="B's refusal")
    texts = " ".join(e["text"] for e in
                     wharf.show(b.data, refusals[0]["id"])["events"])
    assert re.search(r"cut|could not be read", texts), texts
    assert all(x["state"] == "refused" for x in wharf.messages(b.data))
    a.server.stop()
    b.server.stop()
    assert os.listdir(b.inbox) == []
    assert payload_files(b) == []


def test_m4_chunked_body_over_max_body_bytes_refused(tmp_path, wharf,
                                                      start_server):
    a, b = pair(wharf, tmp_path)
    import_doc(wharf, a, retry_attempts(a, 2))
    doc = json.loads((b.dir / "flow.json").read_text())
    doc["connectors"][1]["config"]["max_body_bytes"] = 1 << 20
    import_doc(wharf, b, doc)
    for s in (a, b):
        s.server = start_server(s.data)
        s.server.wait_listening()
    drop_file(a.outbox, "big.bin", os.urandom(3 << 20))

    def finished():
        a.server.check_alive()
        b.server.check_alive()
        m = a_message(wharf, a)
        return m and m["state"] in ("failed", "sent") and m
    m = wait_until(finished, timeout=120, desc="A's message finished")
    hop = as2_hop(wharf, a, m["id"])
    assert m["state"] == "failed" and hop["state"] == "failed", hop
    assert not hop["receipt"], hop

    refusals = [x for x in wharf.messages(b.data) if x["state"] == "refused"]
    assert refusals, wharf.messages(b.data)
    texts = " ".join(e["text"] for e in
                     wharf.show(b.data, refusals[0]["id"])["events"])
    assert "refused (too large)" in texts, texts
    assert "body is over max_body_bytes" in texts, texts
    assert all(x["state"] == "refused" for x in wharf.messages(b.data))
    a.server.stop()
    b.server.stop()
    assert os.listdir(b.inbox) == []
    assert payload_files(b) == []
