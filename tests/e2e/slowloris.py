"""
slowloris.py - a slow-client load for Wharf's HTTPS listeners, and a
normal client that times requests beside it (R22). Used by
tests/e2e/test_r22_slow_clients.py and bench/slowloris_bench.sh.

  python3 slowloris.py load --port P [--sources 50] [--conns 500]
          [--interval 1.0] [--seconds 60]
      CONNS TLS connections from SOURCES loopback addresses (127.0.0.2,
      127.0.0.3, ...; each socket bound to its source address), each
      sending a request head one byte every INTERVAL seconds and never
      finishing it; a connection the server cuts (closed, reset, or
      answered) is opened again at once. Prints "ready N" once every
      connection was open at least once (or after 60 s), then runs until
      SECONDS passed or SIGTERM, and prints one JSON line of counts.

  python3 slowloris.py measure --port P [--requests 100] [--timeout 5]
          [--min-seconds 0]
      REQUESTS sequential GET /healthz (more if MIN_SECONDS have not passed
      yet), each on a new TLS connection from 127.0.0.1 with TCP_NODELAY,
      each allowed TIMEOUT seconds. Prints one JSON line: answered, failed,
      and the latencies (p50, p90, p99, max in ms).
"""
import argparse
import asyncio
import json
import signal
import socket
import ssl
import sys
import time

HEAD = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---- the slow load -----------------------------------------------------------


class Load:
    def __init__(self, args):
        self.args = args
        self.ctx = client_context()
        self.stats = {"connects": 0, "cut": 0, "answered": 0, "refused": 0,
                      "open_max": 0}
        self.open = 0
        self.ever = set()
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()

    def opened(self, i):
        self.open += 1
        self.stats["connects"] += 1
        self.stats["open_max"] = max(self.stats["open_max"], self.open)
        self.ever.add(i)
        if len(self.ever) == self.args.conns:
            self.ready.set()

    async def one(self, i):
        """Connection i, for ever: connect, trickle, get cut, again."""
        source = f"127.0.0.{2 + i % self.args.sources}"
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        "127.0.0.1", self.args.port, ssl=self.ctx,
                        server_hostname="localhost",
                        local_addr=(source, 0)), timeout=30)
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                self.stats["refused"] += 1
                await asyncio.sleep(0.2)
                continue
            self.opened(i)
            try:
                await self.trickle(reader, writer)
            finally:
                self.open -= 1
                writer.transport.abort()

    async def trickle(self, reader, writer):
        """Send the head a byte at a time until the server cuts us."""
        data = HEAD
        pos = 0
        while not self.stop.is_set():
            try:
                writer.write(data[pos:pos + 1] if pos < len(data) else b"a")
                pos += 1
                await writer.drain()
                got = await asyncio.wait_for(reader.read(4096),
                                             timeout=self.args.interval)
            except asyncio.TimeoutError:
                continue            # nothing from the server: go on
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                self.stats["cut"] += 1
                return
            self.stats["answered" if got else "cut"] += 1
            return

    async def run(self):
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        tasks = [asyncio.create_task(self.one(i))
                 for i in range(self.args.conns)]
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=60)
        except asyncio.TimeoutError:
            pass
        print(f"ready {len(self.ever)}", flush=True)
        try:
            await asyncio.wait_for(self.stop.wait(),
                                   timeout=self.args.seconds)
        except asyncio.TimeoutError:
            self.stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.stats["open_at_end"] = self.open
        print(json.dumps(self.stats), flush=True)


# ---- the normal client ---------------------------------------------------------


def timed_request(port, timeout, ctx):
    """Seconds one GET /healthz took on a new connection, or None."""
    t0 = time.monotonic()
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        # as curl does: without it, Nagle holds the request until the
        # server's delayed ACK of the handshake (some 40 ms)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                      b"Connection: close\r\n\r\n")
            buf = b""
            while b'{"status":"ok"}' not in buf:
                if time.monotonic() - t0 > timeout:
                    return None
                chunk = s.recv(4096)
                if not chunk:
                    return None
                buf += chunk
        if not buf.startswith(b"HTTP/1.1 200 "):
            return None
        return time.monotonic() - t0
    except (OSError, ssl.SSLError):
        return None


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def measure(port, requests, timeout, seconds=0):
    """At least `requests` requests, and for at least `seconds`."""
    ctx = client_context()
    times, failed = [], 0
    t0 = time.monotonic()
    while (len(times) + failed < requests or
           time.monotonic() - t0 < seconds):
        t = timed_request(port, timeout, ctx)
        if t is None:
            failed += 1
        else:
            times.append(t * 1000)
    out = {"answered": len(times), "failed": failed}
    if times:
        out.update({f"p{p}_ms": round(percentile(times, p), 1)
                    for p in (50, 90, 99)})
        out["max_ms"] = round(max(times), 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("load", "measure"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sources", type=int, default=50)
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=5)
    ap.add_argument("--min-seconds", type=float, default=0)
    args = ap.parse_args()
    if args.mode == "load":
        asyncio.run(Load(args).run())
    else:
        print(json.dumps(measure(args.port, args.requests, args.timeout,
                                 args.min_seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
