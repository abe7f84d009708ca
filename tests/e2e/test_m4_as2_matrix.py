"""M4: every AS2 combination between two Wharf instances, table-driven.

{unsigned, SHA-1 (allowed by the partner), SHA-256, SHA-384, SHA-512}
x {unencrypted, AES-128-CBC, AES-256-CBC, AES-256-GCM, 3DES (allowed by
the partner)} x {uncompressed, compressed (before or after signing)}
x {MDN none, sync signed, sync unsigned, async signed, async unsigned}:
250 cases. Each one: the file arrives at the receiver byte-identical, the
sender's message ends "sent" with a receipt naming the MDN ("(signed)"
exactly when a signed MDN was asked for, and the MIC algorithm of the
signature; the raw MDN kept with the message) or, without an MDN, the
HTTP 2xx.

Speed: the servers are started once for the module. Each case has its
own partner settings on both sides (the receiver's policy comes from its
own copy of the same settings, as in as2_pair.pair), applied by
re-importing the flow documents while the servers run (they load the new
flow generation without a restart; we wait for "flow generation N
loaded" on every side before sending). To run several cases per flow
generation, one sender A trades with LANES receivers b0..b(LANES-1)
(each a Wharf instance with its own AS2 id, so every lane has its own
partner entry and as2 connector on both sides, async MDNs included):
one round = one generation = up to LANES cases.
WHARF_AS2_MATRIX_LANES=1 gives the plain one-pair scheme.

pytest -q prints one FAILED line per failing combination (its id says
sign-encrypt-compression-mdn) with the reason, and test_m4_as2_matrix_
summary (last) fails with the whole table of failing combinations; the
full table (ok and FAIL) is also written to matrix.txt in the module's
temp dir. -k selects a part of the table (e.g. -k 3des,
-k "sha1 and async").
"""
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from as2_pair import Side, flow_of, import_doc, partner_of, wait_generation
from conftest import Server, Wharf, file_dest, file_source, wait_until

LANES = max(1, int(os.environ.get("WHARF_AS2_MATRIX_LANES", "6")))
ROUND_TIMEOUT = float(os.environ.get("WHARF_AS2_MATRIX_TIMEOUT", "40"))

SIGNS = ["none", "sha1", "sha256", "sha384", "sha512"]
CIPHERS = ["none", "aes128-cbc", "aes256-cbc", "aes256-gcm", "3des"]
# (mdn, mdn_signed, compress_order when compressed): every signing and
# encryption choice sees both compression orders.
MDNS = [("none", None, "before_sign"), ("sync", True, "before_sign"),
        ("sync", False, "after_sign"), ("async", True, "after_sign"),
        ("async", False, "before_sign")]
MICALG = {"none": "sha-256", "sha1": "sha-1", "sha256": "sha-256",
          "sha384": "sha-384", "sha512": "sha-512"}
ALL_SIGN = ["sha1", "sha256", "sha384", "sha512"]
ALL_ENCRYPT = ["3des", "aes128-cbc", "aes192-cbc", "aes256-cbc",
               "aes128-gcm", "aes256-gcm"]
# few retries: a failing case must not keep sending for long
RETRY = {"initial_ms": 200, "max_ms": 1000, "max_attempts": 8}


class Case:
    def __init__(self, index, sign, encrypt, compress, mdn, mdn_signed):
        self.index = index
        self.sign, self.encrypt = sign, encrypt
        self.compress = compress        # None, "before_sign", "after_sign"
        self.mdn, self.mdn_signed = mdn, mdn_signed

    @property
    def id(self):
        z = {None: "plain", "before_sign": "zbefore",
             "after_sign": "zafter"}[self.compress]
        m = self.mdn if self.mdn == "none" else (
            f"{self.mdn}-{'signed' if self.mdn_signed else 'unsigned'}")
        return f"{self.sign}-{self.encrypt}-{z}-mdn_{m}"

    @property
    def filename(self):
        return f"m{self.index:03d}-{self.id}.bin"

    def payload(self):
        # > 64 KiB (the pipes between stream stages), binary with CR/LF
        head = f"case {self.id}\r\nline two\nline three\r\n".encode()
        return head + os.urandom(70 * 1024 + 7 * self.index) + b"\r\nEND\n"

    def settings(self):
        s = {"sign": self.sign, "encrypt": self.encrypt,
             "compress": self.compress is not None,
             "mdn": self.mdn,
             "mdn_signed": True if self.mdn_signed is None
             else self.mdn_signed}
        if self.compress:
            s["compress_order"] = self.compress
        if self.sign == "sha1":          # SHA-1 only where allowed
            s["allow_sign"] = ALL_SIGN
        if self.encrypt == "3des":       # 3DES only where allowed
            s["allow_encrypt"] = ALL_ENCRYPT
        return s


def all_cases():
    out = []
    for sign in SIGNS:
        for enc in CIPHERS:
            for compressed in (False, True):
                for mdn, signed, order in MDNS:
                    out.append(Case(len(out), sign, enc,
                                    order if compressed else None, mdn,
                                    signed))
    return out


CASES = all_cases()


def with_async_url(p, me):
    if p.get("mdn") == "async":
        p["async_mdn_url"] = me.mdn_url
    return p


class Grid:
    """One sender A and LANES receivers, all running; rounds of cases."""

    def __init__(self, wharf, root, binary, lanes):
        self.wharf = wharf
        self.binary = binary
        self.root = root
        self.a = Side(wharf, root, "a", workers=4, batch=1)
        self.bs = [Side(wharf, root, f"b{j}") for j in range(lanes)]
        self.outboxes = []
        for b in self.bs:
            d = self.a.dir / f"outbox-{b.name}"
            d.mkdir()
            self.outboxes.append(d)
        self.lane_settings = [Case(0, "sha256", "aes256-cbc", None, "sync",
                                   True).settings() for _ in self.bs]
        self.results = {}           # case id -> None (ok) or the reason
        self.broken = None
        self.table = []
        self.servers = []
        for j, b in enumerate(self.bs):
            import_doc(wharf, b, self.b_doc(j))
        import_doc(wharf, self.a, self.a_doc())

    # ---- documents ----
    def a_doc(self):
        a = self.a
        partners, conns, links = [], [file_dest("inbox", a.inbox)], []
        for j, b in enumerate(self.bs):
            partners.append(with_async_url(
                partner_of(b, **self.lane_settings[j]), a))
            conn = {"name": f"as2-{b.name}", "type": "as2",
                    "config": {"partner": b.name, "retry": RETRY}}
            conns += [file_source(f"out-{b.name}", self.outboxes[j]), conn]
            links += [[f"out-{b.name}", conn["name"]],
                      [conn["name"], "inbox"]]
        return {"profile": {"as2_id": a.as2_id,
                            "keys": [{"cert": str(a.cert),
                                      "key": str(a.key)}]},
                "partners": partners, "connectors": conns, "links": links}

    def b_doc(self, j):
        b = self.bs[j]
        p = with_async_url(partner_of(self.a, **self.lane_settings[j]), b)
        return flow_of(b, self.a, p, retry=RETRY)

    # ---- servers ----
    def start(self):
        for i, s in enumerate([self.a] + self.bs):
            s.server = Server(self.binary, s.data, self.root, i)
            self.servers.append(s.server)
        for s in [self.a] + self.bs:
            s.server.wait_listening()

    def alive(self):
        for s in self.servers:
            s.check_alive()
        return True

    def stop(self):
        errors = []
        for s in self.servers:
            try:
                s.stop()
            except AssertionError as e:     # stop them all, then report
                errors.append(str(e))
        assert not errors, errors

    def force_cleanup(self):
        for s in self.servers:
            s.force_cleanup()

    # ---- one round: up to LANES cases in one flow generation ----
    def run_round(self, cases):
        lanes = list(enumerate(cases))
        for j, c in lanes:
            self.lane_settings[j] = c.settings()
        with ThreadPoolExecutor(len(lanes) + 1) as ex:
            jobs = [ex.submit(import_doc, self.wharf, self.a, self.a_doc())]
            jobs += [ex.submit(import_doc, self.wharf, self.bs[j],
                               self.b_doc(j)) for j, _ in lanes]
            gens = [f.result() for f in jobs]
        sides = [self.a] + [self.bs[j] for j, _ in lanes]
        try:
            for side, gen in zip(sides, gens):
                wait_generation(side, gen)
        except AssertionError as e:
            # every later round would wait the same way: fail them at once
            self.broken = (f"the running servers did not load a new flow "
                           f"generation, so no case can be set up: {e}")
            raise
        payloads = {}
        for j, c in lanes:
            payloads[c.id] = c.payload()
            tmp = self.outboxes[j] / f".x-{c.filename}"
            tmp.write_bytes(payloads[c.id])
            os.rename(tmp, self.outboxes[j] / c.filename)

        names = {c.filename: (j, c) for j, c in lanes}
        state = {}

        def done():
            self.alive()
            for m in self.wharf.messages(self.a.data):
                if m.get("filename") in names:
                    state[m["filename"]] = m
            fin = [n for n, m in state.items()
                   if m["state"] in ("sent", "failed")]
            arrived = [n for n, (j, c) in names.items()
                       if (self.bs[j].inbox / n).exists()]
            return len(fin) == len(names) and len(arrived) == len(names)
        try:
            wait_until(done, timeout=ROUND_TIMEOUT, interval=0.2,
                       desc="the round's messages")
        except AssertionError:
            pass                    # judged case by case below
        for name, (j, c) in names.items():
            reason = self.judge(j, c, state.get(name), payloads[c.id])
            self.results[c.id] = reason
            self.table.append(f"{'ok  ' if reason is None else 'FAIL'} "
                              f"{c.id:<45} {reason or ''}")

    def judge(self, j, c, msg, payload):
        b = self.bs[j]
        got = b.inbox / c.filename
        problems = []
        if not got.exists():
            problems.append("not delivered to B")
        elif got.read_bytes() != payload:
            problems.append(f"B's file differs ({got.stat().st_size} bytes, "
                            f"sent {len(payload)})")
        if msg is None:
            return "; ".join(problems + ["no message at A"])
        d = self.wharf.show(self.a.data, msg["id"])
        hops = [h for h in d["hops"] if h["connector"] == f"as2-{b.name}"]
        hop = hops[0] if hops else {}
        receipt = hop.get("receipt") or ""
        if d["state"] != "sent" or hop.get("state") != "sent":
            problems.append(f"A's message {d['state']} (hop "
                            f"{hop.get('state')}, attempts "
                            f"{hop.get('attempts')}): "
                            f"{hop.get('last_error')}")
        elif c.mdn == "none":
            if not re.match(r"HTTP 2\d\d\b", receipt):
                problems.append(f"receipt is not the HTTP 2xx: {receipt!r}")
        else:
            if not receipt.startswith("MDN processed"):
                problems.append(f"receipt names no MDN: {receipt!r}")
            if ("(signed)" in receipt) != bool(c.mdn_signed):
                problems.append(f"receipt {'lacks' if c.mdn_signed else 'has'}"
                                f" '(signed)': {receipt!r}")
            if not receipt.endswith(", " + MICALG[c.sign]):
                problems.append(f"MIC algorithm is not {MICALG[c.sign]}: "
                                f"{receipt!r}")
            # docs/operations.md: the raw MDN is kept with its message
            if not any(r.get("direction") == "received"
                       for r in d.get("receipts", [])):
                problems.append("the MDN received is not kept with the "
                                "message (receipts)")
        return "; ".join(problems) or None


@pytest.fixture(scope="module")
def grid(request, wharf_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("as2-matrix")
    g = Grid(Wharf(wharf_bin, root), root, wharf_bin, LANES)
    # the selected cases, in order, cut into rounds of LANES
    chosen = [it.callspec.params["case"] for it in request.session.items
              if getattr(it, "originalname", "") == "test_m4_as2_matrix"
              and hasattr(it, "callspec")]
    g.rounds = {}
    for k in range(0, len(chosen), LANES):
        r = chosen[k:k + LANES]
        for c in r:
            g.rounds[c.id] = r
    try:
        g.start()
        yield g
        (root / "matrix.txt").write_text("\n".join(g.table) + "\n")
        g.stop()
    finally:
        g.force_cleanup()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_m4_as2_matrix(grid, case):
    if grid.broken:
        pytest.fail(grid.broken.splitlines()[0], pytrace=False)
    if case.id not in grid.results:
        grid.run_round(grid.rounds.get(case.id, [case]))
    reason = grid.results[case.id]
    assert reason is None, f"{case.id}: {reason}"


def test_m4_as2_matrix_summary(grid):
    """Last: the table of every failing combination that ran, one line
    each with its reason (the lines above may be cut at the terminal's
    width)."""
    bad = [line for line in grid.table if line.startswith("FAIL")]
    chosen = len({c for r in grid.rounds.values() for c in r})
    ran = len(grid.table)
    if bad or grid.broken:
        pytest.fail(f"{len(bad)} of the {ran} combinations that ran failed"
                    + (f"; {chosen - ran} could not run: {grid.broken}"
                       if grid.broken else "") + "\n" + "\n".join(bad),
                    pytrace=False)
