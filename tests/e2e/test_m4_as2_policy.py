"""M4: AS2 policy, bad input and reliability between two Wharf instances.

Refusals at the receiver B (unsigned to a partner that must sign, a
signature by the wrong certificate, a message encrypted to a removed
key, an unknown AS2-To, a corrupted or truncated body, a wrong
Content-Type) must each give the right negative MDN (or HTTP error), an
"ALERT:" log line at B, a message record in state "refused" whose event
gives the reason (docs/operations.md) and nothing stored: no payload
file, nothing in the inbox. A replay is answered "processed/warning: duplicate-document" and stored
once. At the sender A: an MDN with a wrong MIC, a TLS failure and an
asynchronous MDN that never comes each fail the hop with the reason
(never "sent"); after the retry limit the original stays "failed" and
`wharf message resend` delivers it once the partner is fixed.

Wharf A cannot produce bad input, so as2_raw.Recorder sits between A and
B where needed (records A's request, forwards it, returns B's MDN) and
the tests send changed copies of a recorded request straight to B.
"""
import hashlib
import os
import re
import shutil

import pytest

from as2_pair import (Side, as2_keys, import_doc, settings_doc, start_pair,
                      wait_generation)
from as2_raw import Recorder, disposition, post, post_cut
from conftest import Server, Wharf, drop_file, wait_until

FAST_RETRY = {"initial_ms": 200, "max_ms": 500, "max_attempts": 3}


# ---- helpers -------------------------------------------------------------------


def payload(tag, size=50 * 1024):
    return f"{tag}\r\n".encode() + os.urandom(size) + b"\nEND\n"


def configure(wharf, a, b, a_set=None, b_set=None, retry=None, a_conn=None,
          b_keys=None):
    import_doc(wharf, a, settings_doc(a, b, a_set, retry=retry or FAST_RETRY,
                                      conn_config=a_conn))
    import_doc(wharf, b, settings_doc(b, a, b_set, keys=b_keys))


def message_named(wharf, side, name):
    for m in wharf.messages(side.data):
        if m.get("filename") == name:
            return m
    return None


def wait_final(wharf, side, name, timeout=60):
    """The message called name at side once it is sent or failed (show)."""
    def final():
        side.server.check_alive()
        m = message_named(wharf, side, name)
        return m if m and m["state"] in ("sent", "failed") else None
    m = wait_until(final, timeout=timeout, interval=0.2,
                   desc=f"{side.name}: {name} sent or failed")
    return wharf.show(side.data, m["id"])


def as2_hop(detail, conn="as2-b"):
    return [h for h in detail["hops"] if h["connector"] == conn][0]


def events_text(detail):
    return " | ".join(e.get("text", "") for e in detail.get("events", []))


def payload_files(side):
    root = side.data / "payloads"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file())


class Snapshot:
    """What B holds before a bad request: to prove nothing was added."""

    def __init__(self, wharf, side):
        self.seen = {m["id"]: m["updated_at"]
                     for m in wharf.messages(side.data)}
        self.ids = set(self.seen)
        self.files = payload_files(side)
        self.inbox = sorted(os.listdir(side.inbox))
        self.log_at = side.log_size()


def assert_refused(wharf, side, snap, *why):
    """The refusal is on record since snap, with its reason (each of why),
    and nothing was stored: no payload file, nothing delivered. The record
    is a new message in state "refused" with an ALERT line naming it, or,
    when the same address had the same refusal within minutes (R22: one
    record per burst), that burst's record, now counting one more and
    naming this one."""
    def changed():
        side.server.check_alive()
        return [m for m in wharf.messages(side.data)
                if snap.seen.get(m["id"]) != m["updated_at"]]
    recs = wait_until(changed, timeout=30, desc=f"{side.name}: a record")
    assert len(recs) == 1 and recs[0]["state"] == "refused", (
        f"expected one 'refused' record, got {recs}")
    assert not recs[0].get("size"), recs[0]
    d = wharf.show(side.data, recs[0]["id"])
    if recs[0]["id"] in snap.ids:           # folded into its burst
        ev = [e["text"] for e in d["events"] if "times in all" in e["text"]]
        assert len(ev) == 1 and all(w in ev[0] for w in why), d["events"]
        lines = []
    else:
        lines = [l for l in side.log(snap.log_at).splitlines()
                 if "ALERT" in l and "refused" in l]
        for w in why:
            assert any(w in l for l in lines), (w, lines)
        ev = events_text(d)
        assert "refused" in ev and all(w in ev for w in why), d
    assert payload_files(side) == snap.files, "payload (half-)stored"
    assert sorted(os.listdir(side.inbox)) == snap.inbox
    return lines


def assert_never_sent(wharf, side, detail, *why):
    h = as2_hop(detail)
    assert detail["state"] == "failed" and h["state"] == "failed", detail
    assert not h.get("receipt"), h
    for w in why:
        assert w in (h.get("last_error") or ""), (w, h)
        assert w in events_text(detail), (w, detail["events"])


# ---- policy refusals through two running Wharf instances ---------------------------


def test_m4_policy_unsigned_to_partner_requiring_signatures(
        tmp_path, wharf, start_server):
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    rec = Recorder(tmp_path, upstream=b.url, upstream_ca=b.tls_cert)
    try:
        configure(wharf, a, b, {"sign": "none", "url": rec.url,
                            "tls_ca": str(rec.cert)}, {"sign": "sha256"})
        start_pair((a, b), start_server)
        snap = Snapshot(wharf, b)
        drop_file(a.outbox, "unsigned.edi", payload("unsigned"))
        d = wait_final(wharf, a, "unsigned.edi")
        assert_never_sent(wharf, a, d, "insufficient-message-security")
        assert len(rec.responses) == 1, "refused, so not sent again"
        assert disposition(rec.responses[0].body).endswith(
            "processed/error: insufficient-message-security")
        assert_refused(wharf, b, snap, "insufficient-message-security",
                       "not signed")
    finally:
        rec.close()


def test_m4_policy_signature_by_wrong_certificate(tmp_path, wharf,
                                                  start_server):
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    mallory, _ = as2_keys(tmp_path, "mallory")
    rec = Recorder(tmp_path, upstream=b.url, upstream_ca=b.tls_cert)
    try:
        # B believes A's certificate is mallory's: A's signature fails
        configure(wharf, a, b, {"url": rec.url, "tls_ca": str(rec.cert)},
              {"certificates": [str(mallory)]})
        start_pair((a, b), start_server)
        snap = Snapshot(wharf, b)
        drop_file(a.outbox, "wrong-cert.edi", payload("wrong cert"))
        d = wait_final(wharf, a, "wrong-cert.edi")
        assert_never_sent(wharf, a, d, "authentication-failed")
        assert disposition(rec.responses[0].body).endswith(
            "processed/error: authentication-failed")
        assert_refused(wharf, b, snap, "authentication-failed", "signer")
    finally:
        rec.close()


def test_m4_policy_rollover_old_certificate_accepted_then_refused(
        tmp_path, wharf, start_server):
    """B adds a new key (cert import --profile); A still encrypts to B's
    old certificate (it knows the new one, to be used from 2099): accepted
    while B has the old key, refused (decryption-failed) once B's flow no
    longer has it; accepted again when A encrypts to the new one."""
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    new_cert, new_key = as2_keys(b.dir, "wharf-b-2")
    rec = Recorder(tmp_path, upstream=b.url, upstream_ca=b.tls_cert)
    a_set = {"url": rec.url, "tls_ca": str(rec.cert),
             "certificates": [str(b.cert), {"file": str(new_cert),
                                            "use_from": "2099-01-01T00:00:00Z"}]}
    try:
        configure(wharf, a, b, a_set)
        wharf.ok("cert", "import", "--data", b.data, "--profile", "--key",
                 new_key, new_cert)
        start_pair((a, b), start_server)

        body = payload("to the old certificate")
        drop_file(a.outbox, "old-1.edi", body)
        d = wait_final(wharf, a, "old-1.edi")
        assert d["state"] == "sent", as2_hop(d)
        assert "MDN processed (signed)" in as2_hop(d)["receipt"]
        wait_until(lambda: (b.inbox / "old-1.edi").exists(), timeout=30)
        assert (b.inbox / "old-1.edi").read_bytes() == body

        # B removes the old key: its flow now has the new one only
        wait_generation(b, import_doc(wharf, b, settings_doc(
            b, a, keys=[(new_cert, new_key)])))
        snap = Snapshot(wharf, b)
        drop_file(a.outbox, "old-2.edi", payload("old certificate again"))
        d = wait_final(wharf, a, "old-2.edi")
        assert_never_sent(wharf, a, d, "decryption-failed")
        assert disposition(rec.responses[-1].body).endswith(
            "processed/error: decryption-failed")
        assert_refused(wharf, b, snap, "decryption-failed")

        # A moves to the new certificate
        a_set["certificates"] = [str(new_cert)]
        wait_generation(a, import_doc(wharf, a, settings_doc(
            a, b, a_set, retry=FAST_RETRY)))
        body = payload("to the new certificate")
        drop_file(a.outbox, "new-1.edi", body)
        d = wait_final(wharf, a, "new-1.edi")
        assert d["state"] == "sent", as2_hop(d)
        wait_until(lambda: (b.inbox / "new-1.edi").exists(), timeout=30)
        assert (b.inbox / "new-1.edi").read_bytes() == body
    finally:
        rec.close()


def test_m4_policy_rollover_key_added_while_running(tmp_path, wharf,
                                                    start_server):
    """docs/operations.md: "Certificate rollover without a re-import":
    a profile key added by `wharf cert import --profile` to a running B
    decrypts at once (here A already encrypts to the new certificate)."""
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    new_cert, new_key = as2_keys(b.dir, "wharf-b-2")
    configure(wharf, a, b)
    start_pair((a, b), start_server)
    drop_file(a.outbox, "before.edi", payload("before"))
    assert wait_final(wharf, a, "before.edi")["state"] == "sent"

    wharf.ok("cert", "import", "--data", b.data, "--profile", "--key",
             new_key, new_cert)
    wait_generation(a, import_doc(wharf, a, settings_doc(
        a, b, {"certificates": [str(b.cert), str(new_cert)]},
        retry=FAST_RETRY)))
    body = payload("to the new certificate")
    drop_file(a.outbox, "new.edi", body)
    d = wait_final(wharf, a, "new.edi")
    assert d["state"] == "sent", as2_hop(d)
    wait_until(lambda: (b.inbox / "new.edi").exists(), timeout=30)
    assert (b.inbox / "new.edi").read_bytes() == body


# ---- bad requests built from one that Wharf A sent ---------------------------------


class Captured:
    """A pair trading through a recorder; one message went through, so
    .req is a genuine request of A (as B saw it) and .resp B's MDN."""

    def __init__(self, wharf, root, binary, b_settings):
        self.wharf = wharf
        self.a, self.b = Side(wharf, root, "a"), Side(wharf, root, "b")
        self.rec = Recorder(root, upstream=self.b.url,
                            upstream_ca=self.b.tls_cert)
        self.servers = []
        a_set = dict(b_settings, url=self.rec.url, tls_ca=str(self.rec.cert))
        configure(wharf, self.a, self.b, a_set, b_settings)
        for i, s in enumerate((self.a, self.b)):
            s.server = Server(binary, s.data, root, i)
            self.servers.append(s.server)
        for s in (self.a, self.b):
            s.server.wait_listening()
        self.body = payload("captured", 120 * 1024)
        drop_file(self.a.outbox, "captured.edi", self.body)
        d = wait_final(wharf, self.a, "captured.edi")
        assert d["state"] == "sent", d
        self.req, self.resp = self.rec.requests[0], self.rec.responses[0]
        assert disposition(self.resp.body).endswith("processed"), self.resp
        wait_until(lambda: (self.b.inbox / "captured.edi").exists(),
                   timeout=30)

    def send(self, req):
        return post(self.b.url, req, self.b.tls_cert)

    def stop(self):
        self.rec.close()
        for s in self.servers:
            s.stop()

    def cleanup(self):
        self.rec.close()
        for s in self.servers:
            s.force_cleanup()


# B's settings for the captures: signed and encrypted with AES-GCM (a tag
# that only the end of the body proves), or signed only.
CAPTURES = {
    "encrypted": {"sign": "sha256", "encrypt": "aes256-gcm",
                  "compress": False, "mdn": "sync", "mdn_signed": True},
    "signed": {"sign": "sha256", "encrypt": "none", "compress": False,
               "mdn": "sync", "mdn_signed": True},
}


@pytest.fixture(scope="module")
def captured(wharf_bin, tmp_path_factory):
    made = {}

    def get(kind):
        if kind not in made:
            root = tmp_path_factory.mktemp(f"captured-{kind}")
            made[kind] = None
            made[kind] = Captured(Wharf(wharf_bin, root), root, wharf_bin,
                                  CAPTURES[kind])
        return made[kind]
    try:
        yield get
        for c in made.values():
            if c:
                c.stop()
    finally:
        for c in made.values():
            if c:
                c.cleanup()


def refused_mdn(c, req, expect, *why):
    """POST req to B: the MDN says processed/error: expect; refused."""
    snap = Snapshot(c.wharf, c.b)
    r = c.send(req)
    assert r.status == 200, (r.status, r.body[:500])
    assert disposition(r.body) == (
        f"automatic-action/MDN-sent-automatically; processed/error: "
        f"{expect}"), r.body[:2000]
    assert "multipart/signed" in (r.header("Content-Type") or ""), \
        "the negative MDN is signed as asked"
    assert_refused(c.wharf, c.b, snap, expect, *why)


def test_m4_policy_unknown_as2_to(captured):
    c = captured("encrypted")
    req = c.req.with_header("AS2-To", "wharf-nobody").fresh_id()
    refused_mdn(c, req, "unexpected-processing-error", "another AS2 id")


@pytest.mark.parametrize("kind,expect", [
    ("encrypted", "decryption-failed"),
    ("signed", "integrity-check-failed")])
def test_m4_policy_corrupted_body(captured, kind, expect):
    c = captured(kind)
    body = bytearray(c.req.body)
    body[len(body) // 2] ^= 0x01            # one bit, in the payload
    refused_mdn(c, c.req.with_body(bytes(body)).fresh_id(), expect)


def test_m4_policy_truncated_body(captured):
    c = captured("encrypted")
    half = c.req.body[:len(c.req.body) // 2]
    refused_mdn(c, c.req.with_body(half).fresh_id(), "decryption-failed")


def test_m4_policy_body_cut_off_by_the_connection(captured):
    """The body announced is not all sent: nothing can be answered, and
    nothing is stored."""
    c = captured("encrypted")
    snap = Snapshot(c.wharf, c.b)
    post_cut(c.b.url, c.req.fresh_id(), c.b.tls_cert, len(c.req.body) // 2)
    assert_refused(c.wharf, c.b, snap)


@pytest.mark.parametrize("kind,ctype,expect", [
    # B requires encryption: an encrypted body labelled as plain EDI
    ("encrypted", "application/edi-x12", "insufficient-message-security"),
    # a signed body labelled as encrypted
    ("signed", "application/pkcs7-mime; smime-type=enveloped-data; "
               "name=smime.p7m", "decryption-failed")])
def test_m4_policy_wrong_content_type(captured, kind, ctype, expect):
    c = captured(kind)
    refused_mdn(c, c.req.with_header("Content-Type", ctype).fresh_id(),
                expect)


def test_m4_policy_replayed_message_id(captured):
    c = captured("encrypted")
    before = c.wharf.messages(c.b.data)
    files = payload_files(c.b)
    r = c.send(c.req)                       # the very same request again
    assert r.status == 200
    assert disposition(r.body) == ("automatic-action/MDN-sent-automatically;"
                                   " processed/warning: duplicate-document")
    assert c.wharf.messages(c.b.data) == before, "stored once"
    assert payload_files(c.b) == files
    assert sorted(os.listdir(c.b.inbox)) == ["captured.edi"]
    assert "duplicate" in c.b.log()


# ---- at the sender -------------------------------------------------------------------


def test_m4_policy_mdn_with_wrong_mic(tmp_path, wharf, start_server):
    """The content is changed on the way (unsigned, unencrypted, so B
    cannot tell): B's genuine, signed MDN carries the MIC of what it got,
    which is not A's: A's hop fails with the reason."""
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")

    def tamper(req):
        body = bytearray(req.body)
        body[len(body) // 2] ^= 0x01
        return req.with_body(bytes(body))
    rec = Recorder(tmp_path, upstream=b.url, upstream_ca=b.tls_cert,
                   on_request=tamper)
    plain = {"sign": "none", "encrypt": "none", "compress": False,
             "mdn": "sync", "mdn_signed": True}
    try:
        configure(wharf, a, b, dict(plain, url=rec.url, tls_ca=str(rec.cert)),
              plain)
        start_pair((a, b), start_server)
        drop_file(a.outbox, "mic.edi", payload("mic"))
        d = wait_final(wharf, a, "mic.edi")
        assert_never_sent(wharf, a, d, "MIC")
        assert disposition(rec.responses[0].body).endswith("processed")
        line = [l for l in a.log().splitlines() if "MIC" in l and "failed"
                in l]
        assert line and "ERROR" in line[0], a.log()[-3000:]
    finally:
        rec.close()


def test_m4_tls_failure_is_never_sent_then_resend(tmp_path, wharf,
                                                  start_server):
    """A does not trust B's listener certificate: the hop fails (never
    "sent", B gets nothing); once A trusts it, resend delivers the
    original."""
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    wrong = tmp_path / "wrong-ca.pem"       # A's own listener certificate
    shutil.copy(a.tls_cert, wrong)          # (a flow names no data dir file)
    configure(wharf, a, b, {"tls_ca": str(wrong)})      # the wrong CA
    start_pair((a, b), start_server)
    body = payload("tls")
    drop_file(a.outbox, "tls.edi", body)
    d = wait_final(wharf, a, "tls.edi")
    assert_never_sent(wharf, a, d, "TLS")
    assert wharf.messages(b.data) == [] and "AS2 message" not in b.log()

    wait_generation(a, import_doc(wharf, a, settings_doc(
        a, b, retry=FAST_RETRY)))
    wharf.ok("message", "resend", "--data", a.data, d["id"])
    wait_until(lambda: (b.inbox / "tls.edi").exists(), timeout=60,
               desc="the resent file at B")
    assert (b.inbox / "tls.edi").read_bytes() == body
    d = wait_final(wharf, a, "tls.edi")
    assert d["state"] == "sent" and "MDN processed" in as2_hop(d)["receipt"]


def test_m4_retry_limit_keeps_the_original_for_resend(tmp_path, wharf,
                                                      start_server):
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    configure(wharf, a, b)
    a.server = start_server(a.data)         # B is down
    a.server.wait_listening()
    body = payload("retry limit")
    drop_file(a.outbox, "retry.edi", body)
    d = wait_final(wharf, a, "retry.edi")
    h = as2_hop(d)
    assert d["state"] == "failed" and h["attempts"] == 3, h
    assert "gave up after 3 attempts" in h["last_error"], h
    # the original stays, failed and resendable
    assert d["size"] == len(body), d
    if d.get("sha256"):
        assert d["sha256"] == hashlib.sha256(body).hexdigest()
    assert any(d["id"] in f for f in payload_files(a)), payload_files(a)

    b.server = start_server(b.data)
    b.server.wait_listening()
    out = wharf.ok("message", "resend", "--data", a.data, d["id"]).stdout
    assert "requeued" in out
    wait_until(lambda: (b.inbox / "retry.edi").exists(), timeout=60,
               desc="the resent file at B")
    assert (b.inbox / "retry.edi").read_bytes() == body
    d = wait_final(wharf, a, "retry.edi")
    assert d["state"] == "sent" and "MDN processed" in as2_hop(d)["receipt"]


def test_m4_async_mdn_that_never_comes_is_sent_again_then_fails(
        tmp_path, wharf, start_server):
    """A asks for asynchronous MDNs at a URL where they are dropped (a
    path of A's listener that takes none): after mdn_timeout_s A sends
    again, with the same Message-ID (issue item 9: B recognises the
    duplicate), by the retry policy, and finally fails: never a silent
    success."""
    a, b = Side(wharf, tmp_path, "a"), Side(wharf, tmp_path, "b")
    drop = a.url.rsplit("/", 1)[0] + "/dropped-mdns"
    retry = {"initial_ms": 300, "max_ms": 600, "max_attempts": 8}
    import_doc(wharf, a, settings_doc(a, b, {"mdn": "async",
                                             "async_mdn_url": drop},
                                      retry=retry,
                                      conn_config={"mdn_timeout_s": 1}))
    import_doc(wharf, b, settings_doc(b, a))
    start_pair((a, b), start_server)
    drop_file(a.outbox, "async.edi", payload("async"))
    d = wait_final(wharf, a, "async.edi", timeout=90)
    h = as2_hop(d)
    assert d["state"] == "failed" and not h.get("receipt"), h
    assert "asynchronous MDN" in h["last_error"], h
    log_a = a.log()
    assert "no asynchronous MDN" in log_a and "sent again" in log_a
    stored = [l for l in b.log().splitlines() if "AS2 message" in l
              and "stored" in l]
    assert len(stored) >= 2, "sent again"
    ids = {re.search(r"AS2 message (<[^>]+>)", l).group(1) for l in stored}
    assert len(ids) == 1, ("every send carries the same Message-ID", stored)
    assert all("a duplicate" in l for l in stored[1:]), stored
    assert len(wharf.messages(b.data)) == 1, "B stored it once"
    # B owes those MDNs: they stay queued and are tried again (given up
    # with an ALERT only after a week)
    assert "not sent yet (kept, tried again later)" in b.log()
