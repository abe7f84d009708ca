"""M4, M2 (issue item 12): a large AS2 transfer must not hold up other
partners' messages. Wharf A sends two 20 MiB files to a partner that
takes them slowly (an HTTPS receiver written here that reads the first
MiB of each body, then stalls until the test lets it go on) while small
files go from another folder to a file destination. The small files must
all be delivered while both large transfers are still unfinished: an
ordering assertion (the large ones are released only afterwards), not a
timing one.

With the default settings (workers 2, large_workers 1,
large_payload_bytes 8 MiB) the large messages are leased only by the
lane of their own; before, the two stalled transfers took both workers
and the small files waited behind them."""
import http.server
import os
import threading

from as2_cli import make_ca, make_tls_cert
from as2_pair import as2_keys
from conftest import (drop_file, file_dest, file_source, new_data_dir,
                      serve_http, wait_until)

BIG = 20 << 20


def body_pieces(h):
    """The request body of handler h in pieces of at most 64 KiB, by its
    Content-Length or its chunked framing (a large AS2 message from Wharf
    comes chunked)."""
    if (h.headers.get("Transfer-Encoding") or "").lower() != "chunked":
        left = int(h.headers.get("Content-Length") or 0)
        while left > 0:
            piece = h.rfile.read(min(left, 1 << 16))
            if not piece:
                return
            left -= len(piece)
            yield piece
        return
    while True:
        size = int(h.rfile.readline(1024).split(b";")[0].strip(), 16)
        if size == 0:
            while h.rfile.readline(8192) not in (b"\r\n", b""):
                pass
            return
        while size > 0:
            piece = h.rfile.read(min(size, 1 << 16))
            if not piece:
                return
            size -= len(piece)
            yield piece
        h.rfile.read(2)


class SlowReceiver:
    """POST /as2: reads the first MiB of the body, then waits for
    .release before reading the rest; answers 200 (the partner is set to
    "mdn": "none", so the 2xx is the receipt)."""

    def __init__(self, certkey):
        self.release = threading.Event()
        self.started, self.done = [], []
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                pieces = body_pieces(self)
                got = 0
                for piece in pieces:
                    got += len(piece)
                    if got >= 1 << 20:
                        break
                rec.started.append(self.headers.get("Message-ID"))
                rec.release.wait(120)
                for piece in pieces:
                    got += len(piece)
                rec.done.append((self.headers.get("Message-ID"), got))
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

        self.httpd = serve_http(H, certkey)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/as2"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def messages_from(wharf, data, source):
    return [m for m in wharf.messages(data) if m["source"] == source]


def test_m4_large_transfer_does_not_hold_up_small_messages(
        tmp_path, wharf, start_server):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, ca_key = make_ca(pki, "ca")
    recv = SlowReceiver(make_tls_cert(pki, ca, ca_key))
    try:
        data = new_data_dir(wharf, tmp_path / "a")
        cert, key = as2_keys(pki, "wharf-a")
        peer_cert, _ = as2_keys(pki, "slow-peer")
        dirs = {n: tmp_path / n for n in ("big", "small", "small-out")}
        for d in dirs.values():
            d.mkdir()
        doc = {
            "profile": {"as2_id": "wharf-a",
                        "keys": [{"cert": str(cert), "key": str(key)}]},
            "partners": [{"name": "slow", "as2_id": "slow-peer",
                          "url": recv.url, "certificates": [str(peer_cert)],
                          "tls_ca": str(ca), "sign": "none",
                          "encrypt": "none", "compress": False,
                          "mdn": "none"}],
            "connectors": [
                file_source("big-outbox", dirs["big"]),
                {"name": "as2-slow", "type": "as2",
                 "config": {"partner": "slow"}},
                file_source("small-outbox", dirs["small"]),
                file_dest("small-inbox", dirs["small-out"])],
            "links": [["big-outbox", "as2-slow"],
                      ["small-outbox", "small-inbox"]]}
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        srv = start_server(data)
        srv.wait_listening()

        # two large transfers, each stalled by the partner after 1 MiB
        drop_file(dirs["big"], "big-1.bin", os.urandom(BIG))
        wait_until(lambda: recv.started, timeout=120,
                   desc="the first large transfer under way")
        drop_file(dirs["big"], "big-2.bin", os.urandom(BIG))
        wait_until(lambda: len(messages_from(wharf, data, "big-outbox")) == 2,
                   timeout=60, desc="the second large file taken in")
        # give a free worker the time to lease the second one (before the
        # lanes, it did, and stalled too)
        threading.Event().wait(1.0)

        small = {f"small-{i}.txt": os.urandom(2000) for i in range(5)}
        for name, body in small.items():
            drop_file(dirs["small"], name, body)
        wait_until(lambda: sorted(os.listdir(dirs["small-out"])) ==
                   sorted(small), timeout=30,
                   desc="the small files delivered meanwhile")
        for name, body in small.items():
            assert (dirs["small-out"] / name).read_bytes() == body
        # the order: every small one before either large one
        big = messages_from(wharf, data, "big-outbox")
        assert all(m["state"] != "sent" for m in big), big
        assert recv.done == [], recv.done

        recv.release.set()
        wait_until(lambda: all(m["state"] == "sent" for m in
                               messages_from(wharf, data, "big-outbox")),
                   timeout=300, desc="the large files sent")
        assert sorted(n for _, n in recv.done) == [BIG, BIG], recv.done
        log = (data / "logs" / "wharf.log").read_text()
        assert "1 more for messages of 8388608 bytes or more" in log
        srv.stop()
    finally:
        recv.close()


def thread_sched(pid):
    """(nice, policy) of every thread of process pid (/proc stat fields 19
    and 41; policy 5 is SCHED_IDLE)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue                # a thread that just ended
        fields = stat.rsplit(")", 1)[1].split()
        out.append((int(fields[16]), int(fields[38])))
    return sorted(out)


SCHED_IDLE = 5


def test_m4_the_large_lane_runs_at_a_lower_priority(tmp_path, wharf,
                                                    start_server):
    """The large lane's threads (and the stage threads a transfer starts
    from them) run under SCHED_IDLE and 10 nice steps lower, so a 1 GiB
    transfer leaves the CPU to small messages when both want it
    (bench/as2_bench.sh, part (c)); every other thread of serve keeps its
    policy and priority."""
    for large_workers in (2, 0):
        data = new_data_dir(wharf, tmp_path / f"lw{large_workers}",
                            large_workers=large_workers)
        srv = start_server(data)
        srv.wait_listening()
        sched = thread_sched(srv.pid)
        nices = [n for n, _ in sched]
        base = min(nices)
        assert nices.count(min(base + 10, 19)) == large_workers, sched
        assert len(nices) - nices.count(base) == large_workers, sched
        idle = [(n, pol) for n, pol in sched if pol == SCHED_IDLE]
        assert idle == [(min(base + 10, 19), SCHED_IDLE)] * large_workers, \
            sched
        srv.stop()
