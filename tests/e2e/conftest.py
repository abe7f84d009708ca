"""
Shared fixtures of Wharf's end-to-end tests.

The binary under test comes from $WHARF_BIN (default: build/asan/wharf of
this repository, the ASan+UBSan build). Every test gets its own temp dir
(tmp_path); every process a test starts is stopped by the test or, at the
latest, killed (-9) by the fixture that started it.

Helpers:
  wharf(*args)          run `wharf ARGS`, return CompletedProcess (text); fails
                        the test if a sanitizer reported anything on stderr.
                        Every command's output is kept in wharf.outputs.
  data_dir              a fresh data dir (wharf init) tuned for tests; flows
                        may name folders under tmp_path (allowed_paths)
                        (poll_ms 50, lease_seconds 5, and free ports for the
                        admin and partner listeners: see listen_port()).
  start_server(data)    `wharf serve --data DATA` in the background, output in
                        files; .kill9(), .stop() (SIGTERM, wait, exit 0),
                        .wait_listening() (both HTTPS ports accept).
  free_port()           a TCP port on 127.0.0.1 that nothing listens on now.
  listen_port(data, w)  the port of w ("admin" or "partner") in wharf.conf.
  wait_until(fn, ...)   poll fn until it returns something truthy.
  unwritable(path)      make a folder unwritable for root (chattr +i, else
                        rename it away); undone by .off() and by the fixture.
"""
import hashlib
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_BIN = REPO / "build" / "asan" / "wharf"

# Words every sanitizer report contains (ASan, LSan summary, UBSan).
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error", "LeakSanitizer",
                     "UndefinedBehaviorSanitizer", "ThreadSanitizer")

MSG_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                       r"[0-9a-f]{12}$")


def wharf_bin_path():
    return Path(os.environ.get("WHARF_BIN") or DEFAULT_BIN).resolve()


def child_env():
    env = dict(os.environ)
    env.pop("WHARF_DATA", None)     # never fall back to a developer's data dir
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def assert_no_sanitizer_report(text, what):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, (
            f"sanitizer report ({marker}) from {what}:\n{text[-6000:]}")


def _redrawn(e):
    """Whether e is selenium's StaleElementReferenceException: fn read a
    console element the page redrew meanwhile, so its condition is simply
    not met yet (named, not imported: most tests have no browser)."""
    return type(e).__name__ == "StaleElementReferenceException"


def wait_until(fn, timeout=30.0, interval=0.1, desc=None):
    """Call fn until it returns a truthy value and return that value; fail
    the test with desc and fn's last value after timeout seconds. A
    console element redrawn while fn read it counts as not yet."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except Exception as e:      # noqa: BLE001 - re-raised unless redrawn
            if not _redrawn(e):
                raise
            last = None
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for "
                f"{desc or getattr(fn, '__name__', 'condition')}; "
                f"last value: {last!r}"[:4000])
        time.sleep(interval)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def drop_file(folder, name, data):
    """Write a file the way a careful producer does: hidden temp name, then
    rename into place."""
    folder = Path(folder)
    tmp = folder / f".x-{name}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, folder / name)
    return folder / name


def listdir(path):
    return sorted(os.listdir(path))


# ---- the command runner ------------------------------------------------------


class Wharf:
    """Runs the wharf binary; remembers every command's output."""

    def __init__(self, binary, workdir):
        self.binary = str(binary)
        self.workdir = str(workdir)
        self.outputs = []           # (argv, stdout, stderr)

    def __call__(self, *args, timeout=120, input=None):
        argv = [self.binary] + [str(a) for a in args]
        p = subprocess.run(argv, capture_output=True, text=True,
                           errors="replace", timeout=timeout, input=input,
                           cwd=self.workdir, env=child_env())
        self.outputs.append((argv, p.stdout, p.stderr))
        assert_no_sanitizer_report(p.stderr, " ".join(argv[1:]))
        assert_no_sanitizer_report(p.stdout, " ".join(argv[1:]))
        return p

    def ok(self, *args, **kw):
        """Run and require exit 0."""
        p = self(*args, **kw)
        assert p.returncode == 0, (
            f"wharf {' '.join(map(str, args))} exited {p.returncode}\n"
            f"stdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}")
        return p

    # convenience wrappers around the CLI contract
    def init(self, data, *extra):
        return self.ok("init", "--data", data, *extra)

    def import_flow(self, data, doc, path):
        Path(path).write_text(json.dumps(doc) if not isinstance(doc, str)
                              else doc)
        return self.ok("flow", "import", "--data", data, path)

    def export_flow(self, data):
        return self.ok("flow", "export", "--data", data).stdout

    def messages(self, data, state=None):
        args = ["message", "list", "--data", data, "--json",
                "--limit", "100000"]
        if state:
            args += ["--state", state]
        return json.loads(self.ok(*args).stdout)

    def show(self, data, msgid):
        return json.loads(self.ok("message", "show", "--data", data, "--json",
                                  msgid).stdout)

    def send(self, data, connector, path):
        out = self.ok("send", "--data", data, connector, path).stdout.strip()
        assert MSG_ID_RE.match(out), f"send printed {out!r}, not a message id"
        return out


@pytest.fixture(scope="session")
def wharf_bin():
    b = wharf_bin_path()
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail(f"wharf binary {b} not found: run `make -j2 build/asan/"
                    f"wharf` or set WHARF_BIN", pytrace=False)
    return b


@pytest.fixture
def wharf(wharf_bin, tmp_path):
    return Wharf(wharf_bin, tmp_path)


def tune_conf(data, **settings):
    """Append key = value lines to DATA/wharf.conf (later lines win)."""
    with open(Path(data) / "wharf.conf", "a") as f:
        for k, v in settings.items():
            f.write(f"{k} = {v}\n")


_ports_given = set()


def _ephemeral_low():
    """The lowest port the kernel gives an outgoing connection."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port on 127.0.0.1 that nothing listens on now, that this test run
    has not handed out before, and that lies below the kernel's ephemeral
    range: a port from bind(0) lies inside it, and an outgoing connection
    could be given it between this check and the server's bind (CI on
    2026-12-07: "cannot listen on 127.0.0.1:36981: Address already in
    use")."""
    low = min(_ephemeral_low(), 65536)
    for _ in range(1000):
        # no room below the ephemeral range (a system that set it low):
        # the kernel's pick, as before
        port = random.randrange(10000, low) if low > 11000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port in _ports_given:
            continue
        _ports_given.add(port)
        return port
    raise AssertionError("no free TCP port found")


def conf_value(data, key):
    """The last value of key in DATA/wharf.conf, or None."""
    value = None
    for line in (Path(data) / "wharf.conf").read_text().splitlines():
        k, sep, v = line.split("#", 1)[0].partition("=")
        if sep and k.strip() == key:
            value = v.strip()
    return value


def listen_port(data, which):
    """Port of the admin or partner listener configured in DATA."""
    return int(conf_value(data, f"{which}_listen").rsplit(":", 1)[1])


def root_conf():
    """What a data dir made by root needs for serve to start as root: the
    tests run as root and keep it (allow_root); the sandbox stays on.
    test_r22_sandbox.py covers the drop to a user."""
    return {"allow_root": "yes"} if os.geteuid() == 0 else {}


def new_data_dir(wharf, path, *init_args, **conf):
    """wharf init at path, tuned for tests. Flows may name folders under
    path's parent (the test's tmp_path): allowed_paths. Started as root,
    serve stays root (root_conf)."""
    wharf.init(path, *init_args)
    settings = {"poll_ms": 50, "lease_seconds": 5,
                "admin_listen": f"127.0.0.1:{free_port()}",
                "partner_listen": f"127.0.0.1:{free_port()}",
                "allowed_paths": str(Path(path).resolve().parent),
                **root_conf()}
    settings.update(conf)
    tune_conf(path, **settings)
    return Path(path)


@pytest.fixture
def data_dir(wharf, tmp_path):
    return new_data_dir(wharf, tmp_path / "data")


# ---- test servers ----------------------------------------------------------------


def serve_http(handler, certkey=None, client_ca=None):
    """A ThreadingHTTPServer on 127.0.0.1 (free port) in a daemon thread,
    HTTPS with certkey (cert, key) when given, requiring a client
    certificate from client_ca when given. Stop it with
    httpd.shutdown(); httpd.server_close()."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if certkey:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(certkey[0]), str(certkey[1]))
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(client_ca))
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


# ---- flows ---------------------------------------------------------------------


def file_source(name, receive_dir, **cfg):
    c = {"receive_dir": str(receive_dir), "poll_ms": 50}
    c.update(cfg)
    return {"name": name, "type": "file", "config": c}


def file_dest(name, send_dir, **cfg):
    c = {"send_dir": str(send_dir)}
    c.update(cfg)
    return {"name": name, "type": "file", "config": c}


def flow_doc(connectors, links):
    return {"connectors": connectors, "links": [list(l) for l in links]}


# ---- the server ------------------------------------------------------------------


class Server:
    """`wharf serve --data DATA` in the background."""

    def __init__(self, binary, data, outdir, index, args=()):
        self.data = Path(data)
        self.out_path = Path(outdir) / f"serve-{index}.out"
        self.err_path = Path(outdir) / f"serve-{index}.err"
        self.argv = [str(binary), "serve", "--data", str(data), *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         env=child_env())
        self.pid = self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def check_sanitizers(self):
        assert_no_sanitizer_report(self.stderr(), f"serve (pid {self.pid})")
        assert_no_sanitizer_report(self.stdout(), f"serve (pid {self.pid})")

    def check_alive(self):
        """Fail now (not at a timeout) if the server died or a sanitizer
        reported something. Returns True, for use inside wait conditions."""
        self.check_sanitizers()
        assert self.running(), (
            f"serve exited with {self.proc.returncode}: "
            f"{self.stderr()[-3000:]}")
        return True

    def wait_listening(self, timeout=60):
        """Wait until the admin and partner ports accept TCP connections
        (failing at once if the server dies). Returns (admin, partner)."""
        ports = (listen_port(self.data, "admin"),
                 listen_port(self.data, "partner"))
        hosts = [conf_value(self.data, f"{w}_listen").rsplit(":", 1)[0]
                 for w in ("admin", "partner")]

        def accepting():
            self.check_alive()
            for host, port in zip(hosts, ports):
                host = "127.0.0.1" if host == "0.0.0.0" else host
                try:
                    socket.create_connection((host, port),
                                             timeout=2).close()
                except OSError:
                    return False
            return True
        wait_until(accepting, timeout=timeout, interval=0.1,
                   desc=f"listeners on ports {ports}")
        return ports

    def kill9(self):
        """kill -9 the server (its process group: it and any helper it
        started) and reap it."""
        if self.running():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        self.check_sanitizers()

    def stop(self, timeout=60):
        """SIGTERM and wait; the server must exit 0 and report nothing to
        the sanitizers. Returns the exit code."""
        assert self.running(), (
            f"server exited early with {self.proc.returncode}: "
            f"{self.stderr()[-3000:]}")
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"serve did not stop within {timeout}s of "
                                 "SIGTERM")
        self.check_sanitizers()
        assert rc == 0, (f"serve exited {rc} after SIGTERM: "
                         f"{self.stderr()[-3000:]}")
        return rc

    def force_cleanup(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def start_server(wharf_bin, tmp_path):
    """Factory: start_server(data, *args) -> Server. Leftovers are killed."""
    started = []
    outdir = tmp_path / "server-output"
    outdir.mkdir(exist_ok=True)

    def start(data, *args):
        s = Server(wharf_bin, data, outdir, len(started), args)
        started.append(s)
        return s

    start.started = started
    yield start
    for s in started:
        s.force_cleanup()


# ---- an unwritable folder, for root -----------------------------------------------


class Unwritable:
    """chattr +i on a folder (root cannot write into it); if chattr is not
    available, the folder is renamed away instead (writes fail with ENOENT).
    on() / off() are idempotent."""

    def __init__(self, path):
        self.path = Path(path)
        self.mode = None
        self.moved = self.path.with_name(self.path.name + ".away")

    def on(self):
        if self.mode:
            return
        r = subprocess.run(["chattr", "+i", str(self.path)],
                           capture_output=True)
        if r.returncode == 0:
            self.mode = "chattr"
        else:
            os.rename(self.path, self.moved)
            self.mode = "moved"

    def off(self):
        if self.mode == "chattr":
            subprocess.run(["chattr", "-i", str(self.path)], check=True,
                           capture_output=True)
        elif self.mode == "moved":
            os.rename(self.moved, self.path)
        self.mode = None


@pytest.fixture
def unwritable():
    made = []

    def make(path):
        u = Unwritable(path)
        made.append(u)
        return u

    yield make
    for u in made:
        try:
            u.off()
        except Exception:       # keep undoing the others
            pass


# ---- CI: a skipped test is a failed run ----------------------------------------


def pytest_sessionfinish(session, exitstatus):
    """Under CI=1 (set by .ci/run) a skipped end-to-end test fails the run:
    a test that cannot run where CI runs proves nothing (the SFTP, proxy,
    no-intermediary and key-rotation tests need root and their tools,
    which .ci/run installs)."""
    if os.environ.get("CI") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        names = ", ".join(getattr(r, "nodeid", "?") for r in skipped[:10])
        reporter.write_line(f"CI=1: {len(skipped)} test(s) skipped, which "
                            f"counts as a failure here: {names}", red=True)
        session.exitstatus = 1
