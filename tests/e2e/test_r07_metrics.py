"""
R7 (Wharf counts for its operator only: /metrics on the admin listener,
with a token holding metrics.read) and issue "Security operations" part 5:
after real traffic through a running server, /metrics (Prometheus text)
has per connector counters (messages and bytes in and out, failed
attempts), delivery latency histograms, the queue depth per connector and
state, and certificate expiry timestamps that agree with what the openssl
CLI reads from the certificate.
"""
import calendar
import re
import subprocess
import time

from conftest import drop_file, file_dest, file_source, flow_doc, wait_until
from test_r14_api import Api, cli_token

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset(labels)): float} of a Prometheus text page; every
    sample line must parse and every metric must have HELP and TYPE."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in typed or base in typed, f"no TYPE: {line}"
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def test_r07_metrics_count_real_traffic(wharf, data_dir, start_server,
                                        tmp_path, unwritable):
    dirs = {n: tmp_path / n for n in ("in", "out", "in2", "stuck")}
    for d in dirs.values():
        d.mkdir()
    doc = flow_doc([file_source("inbox", dirs["in"]),
                    file_dest("outbox", dirs["out"]),
                    file_source("inbox2", dirs["in2"]),
                    file_dest("stuck", dirs["stuck"],
                              retry={"initial_ms": 100, "max_ms": 200,
                                     "max_attempts": 1000})],
                   [("inbox", "outbox"), ("inbox2", "stuck")])
    wharf.import_flow(data_dir, doc, tmp_path / "flow.json")
    op = cli_token(wharf, data_dir, "operator")[0]
    server = start_server(data_dir)
    port, _ = server.wait_listening()
    api = Api(port)

    for i in range(3):
        drop_file(dirs["in"], f"m{i}.edi", bytes([65 + i]) * 1000)
    wait_until(lambda: len(list(dirs["out"].iterdir())) == 3, timeout=60,
               desc="three messages delivered")
    stuck_off = unwritable(dirs["stuck"])
    stuck_off.on()
    drop_file(dirs["in2"], "s.edi", b"Z" * 500)

    def scraped():
        server.check_alive()
        r = api.ok("GET", "/metrics", token=op)
        s = parse(r.body.decode())
        fails = value(s, "wharf_connector_failures_total",
                      connector="stuck", kind="retry") or 0
        return s if fails >= 2 else None
    s = wait_until(scraped, timeout=60, desc="two failed attempts counted")

    assert value(s, "wharf_connector_messages_total", connector="inbox",
                 direction="in") == 3
    assert value(s, "wharf_connector_bytes_total", connector="inbox",
                 direction="in") == 3000
    assert value(s, "wharf_connector_messages_total", connector="outbox",
                 direction="out") == 3
    assert value(s, "wharf_connector_bytes_total", connector="outbox",
                 direction="out") == 3000
    assert value(s, "wharf_connector_messages_total", connector="inbox2",
                 direction="in") == 1
    assert value(s, "wharf_connector_messages_total", connector="stuck",
                 direction="out") == 0
    assert value(s, "wharf_connector_failures_total", connector="outbox",
                 kind="retry") == 0
    # the latency histogram of outbox: 3 deliveries, cumulative buckets
    assert value(s, "wharf_delivery_latency_seconds_count",
                 connector="outbox") == 3
    buckets = sorted((float(dict(k[1])["le"].replace("+Inf", "inf")), v)
                     for k, v in s.items()
                     if k[0] == "wharf_delivery_latency_seconds_bucket" and
                     dict(k[1])["connector"] == "outbox")
    assert len(buckets) == 11 and buckets[-1] == (float("inf"), 3), buckets
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets
    assert value(s, "wharf_delivery_latency_seconds_sum",
                 connector="outbox") < 3 * 60
    # the queue: stuck's hop waits for its next attempt, outbox's are sent
    assert value(s, "wharf_queue_depth", connector="outbox",
                 state="sent") == 3
    stuck = sum(value(s, "wharf_queue_depth", connector="stuck", state=st)
                or 0 for st in ("queued", "processing", "retrying"))
    assert stuck == 1, {k: v for k, v in s.items()
                        if k[0] == "wharf_queue_depth"}
    assert value(s, "wharf_message_states", state="sent") == 3

    # certificate expiry: as openssl reads the listeners' certificate
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in",
                          str(data_dir / "tls" / "cert.pem")],
                         capture_output=True, text=True, check=True).stdout
    when = calendar.timegm(time.strptime(end.strip().split("=", 1)[1],
                                         "%b %d %H:%M:%S %Y %Z"))
    assert value(s, "wharf_certificate_expiry_timestamp_seconds",
                 owner="listener", certificate="tls_cert") == when

    # nothing personal or secret in them: no file name, no token
    text = api.ok("GET", "/metrics", token=op).body.decode()
    assert "m0.edi" not in text and op not in text
    stuck_off.off()
    server.stop()
