"""
R1 helpers: `wharf serve` under strace, and the parser of its trace.

TracedServer is conftest.Server with the command prefixed by
`strace -f -qq -e trace=connect,sendto,sendmsg -e signal=none -s 0 -o TRACE`
(every thread and child of the server; -s 0 so that no payload bytes are
printed and could be mistaken for an address). stop() sends SIGTERM to the
wharf process itself (strace's child), so the server shuts down the way it
does without strace and strace exits with the server's exit code once the
trace is complete; kill9()/force_cleanup() kill the whole process group.

parse_trace(path) returns one Contact per address found in a connect(),
sendto() or sendmsg() line: family ("AF_INET", "AF_INET6", "AF_UNIX",
"AF_NETLINK", ...), host, port (None for AF_UNIX), path (AF_UNIX), the
syscall and the raw line.
"""
import os
import re
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

from conftest import Server, child_env, wait_until

STRACE = shutil.which("strace") or "/usr/bin/strace"

Contact = namedtuple("Contact", "family host port path call line")

_CALL_RE = re.compile(r"^\d+\s+(?:<\.\.\. )?(connect|sendto|sendmsg)\b")
_SA_RE = re.compile(r"\{sa_family=(AF_[A-Z0-9]+)(.*?)\}")
_IN4_RE = re.compile(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]*)"\)')
_IN6_RE = re.compile(r'sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, '
                     r'"([^"]*)"')
_UNIX_RE = re.compile(r'sun_path=(@?"[^"]*")')

# Where a resolver would go: the DNS port and the local resolver daemons.
DNS_PORT = 53
RESOLVER_SOCKETS = ("/var/run/nscd/socket", "/run/nscd/socket",
                    "/run/systemd/resolve/", "/var/run/systemd/resolve/",
                    "/run/dbus/system_bus_socket",
                    "/var/run/dbus/system_bus_socket")


def parse_trace(path):
    contacts = []
    for line in Path(path).read_text(errors="replace").splitlines():
        m = _CALL_RE.match(line)
        if not m:
            continue
        for sa in _SA_RE.finditer(line):
            fam, rest = sa.group(1), sa.group(2)
            host = port = upath = None
            if fam == "AF_INET":
                a = _IN4_RE.search(rest)
                if a:
                    port, host = int(a.group(1)), a.group(2)
            elif fam == "AF_INET6":
                a = _IN6_RE.search(rest)
                if a:
                    port, host = int(a.group(1)), a.group(2)
            elif fam == "AF_UNIX":
                a = _UNIX_RE.search(rest)
                if a:
                    upath = a.group(1).replace('"', "")
            contacts.append(Contact(fam, host, port, upath, m.group(1), line))
    return contacts


def unexpected(contacts, allowed):
    """The contacts R1 forbids, given allowed = {(host, port), ...}: any
    AF_INET(6) address not in allowed (this includes any DNS server), any
    AF_INET6 at all, any AF_UNIX path of a resolver daemon."""
    bad = []
    for c in contacts:
        if c.family == "AF_INET6":
            bad.append(c)
        elif c.family == "AF_INET":
            if (c.host, c.port) not in allowed or c.port == DNS_PORT:
                bad.append(c)
        elif c.family == "AF_UNIX":
            if c.path and any(c.path.startswith(p) or c.path.lstrip("@")
                              .startswith(p) for p in RESOLVER_SOCKETS):
                bad.append(c)
    return bad


def describe(contacts, limit=60):
    out = []
    for c in contacts[:limit]:
        where = c.path if c.family == "AF_UNIX" else f"{c.host}:{c.port}"
        out.append(f"  {c.call} {c.family} {where}    | {c.line[:240]}")
    if len(contacts) > limit:
        out.append(f"  ... and {len(contacts) - limit} more")
    return "\n".join(out)


def _children(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                kids += [int(x) for x in Path(
                    f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


class TracedServer(Server):
    """`strace ... wharf serve --data DATA` in the background."""

    def __init__(self, binary, data, outdir, index, trace_path, args=()):
        self.data = Path(data)
        self.trace_path = Path(trace_path)
        self.out_path = Path(outdir) / f"serve-{index}.out"
        self.err_path = Path(outdir) / f"serve-{index}.err"
        self.argv = [STRACE, "-f", "-qq", "-e",
                     "trace=connect,sendto,sendmsg", "-e", "signal=none",
                     "-s", "0", "-o", str(self.trace_path), "--",
                     str(binary), "serve", "--data", str(data), *args]
        env = child_env()
        # LeakSanitizer cannot run under ptrace (it aborts at exit); leaks
        # are the other tests' business, ASan and UBSan stay on.
        env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"] + ":detect_leaks=0"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        self.pid = self.proc.pid          # strace; its group holds wharf
        self.wharf_pid = wait_until(self._find_wharf, timeout=30,
                                    interval=0.02,
                                    desc="wharf started under strace")

    def _find_wharf(self):
        self.check_alive()
        for k in _children(self.pid):
            try:
                exe = os.readlink(f"/proc/{k}/exe")
            except OSError:
                continue
            if not exe.endswith("strace"):
                return k
        return None

    def untraced_threads(self):
        """Threads of the running wharf that strace is not tracing (should
        be none: -f follows every thread). Proves an empty trace means
        "no calls", not "not watched"."""
        bad = []
        for tid in os.listdir(f"/proc/{self.wharf_pid}/task"):
            try:
                st = Path(f"/proc/{self.wharf_pid}/task/{tid}/status") \
                    .read_text()
            except OSError:
                continue
            tracer = int(re.search(r"^TracerPid:\s*(\d+)", st, re.M)[1])
            if tracer != self.pid:
                bad.append((int(tid), tracer))
        return bad

    def stop(self, timeout=60):
        """SIGTERM to wharf (not strace); wait for strace, which exits with
        wharf's exit code after the last traced call is written."""
        assert self.running(), (
            f"server exited early with {self.proc.returncode}: "
            f"{self.stderr()[-3000:]}")
        os.kill(self.wharf_pid, 15)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"serve did not stop within {timeout}s of "
                                 "SIGTERM")
        self.check_sanitizers()
        assert rc == 0, (f"serve (under strace) exited {rc} after SIGTERM: "
                         f"{self.stderr()[-3000:]}")
        return rc
