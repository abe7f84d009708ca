#!/usr/bin/python3
"""filebench.py - file -> file throughput of `wharf serve` with full durability.

One run:
  1. a fresh data dir (`wharf init`), a flow of one file source (pattern *,
     after delete, poll_ms 100) linked to one file destination;
  2. N files of SIZE random bytes pre-created (and synced) in a staging
     folder on the same file system as receive_dir;
  3. `wharf serve --quiet` started and waited for until the flow is loaded;
  4. all files moved (os.rename) into receive_dir at once; the clock runs from
     the first rename until the last destination file exists AND
     `wharf message list --state sent --json` counts N (checked every 100 ms;
     nothing subtracted);
  5. peak RSS of the serve process (VmHWM) read just before SIGTERM;
  6. verification: N files in send_dir, none left in receive_dir, the size of
     every file and the SHA-256 of a random sample of 200 equal to the
     originals.

With --strace FILE the server runs under
`strace -f -c -w --seccomp-bpf -e trace=fsync,fdatasync,syncfs -o FILE`; the run's time is then
not a throughput figure (strace slows every thread), only its sync counts
are: the script prints the calls of each sync syscall and their sum / N.

Output: `key value` lines on stdout (prefixed with the run's label), a
progress log on stderr. Exit status 0 only if verification passed.

Diagnostics (not used by run.sh): --perf FILE records the server with
`perf record -g` during the timed part; --wrap CMD runs the server under a
command prefix (e.g. "perf sched record -g -o FILE --"); --after archive
makes the source rename instead of delete.

usage: filebench.py --wharf BIN --out DIR [--files N] [--size BYTES]
                    [--label NAME] [--strace FILE] [--timeout S]
                    [--perf FILE] [--wrap CMD] [--after delete|archive]
Standard library only.
"""
import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time


def log(msg):
    sys.stderr.write("filebench: %s\n" % msg)
    sys.stderr.flush()


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if p.returncode != 0:
        raise SystemExit("filebench: %s failed (%d): %s"
                         % (" ".join(cmd), p.returncode, p.stderr.strip()))
    return p.stdout


def visible_files(path):
    """Names of the regular, non-hidden files in path (hidden = temp files)."""
    with os.scandir(path) as it:
        return [e.name for e in it
                if not e.name.startswith(".") and e.is_file(follow_symlinks=False)]


def count_visible(path):
    n = 0
    with os.scandir(path) as it:
        for e in it:
            if not e.name.startswith("."):
                n += 1
    return n


def sent_count(wharf, data, n):
    out = run([wharf, "message", "list", "--data", data, "--state", "sent",
               "--limit", str(max(n, 1) + 1000), "--json"])
    return len(json.loads(out))


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_seconds(pid):
    """user and system CPU seconds of pid (all its threads) so far."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return -1.0, -1.0


def find_wharf_pid(root_pid, wharf, timeout=10.0):
    """The pid of the wharf process: root_pid itself or (under strace) its
    descendant whose executable is wharf."""
    want = os.path.realpath(wharf)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        todo, seen = [root_pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                if os.path.realpath("/proc/%d/exe" % pid) == want:
                    return pid
                for tid in os.listdir("/proc/%d/task" % pid):
                    with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                        todo.extend(int(x) for x in f.read().split())
            except OSError:
                pass
        time.sleep(0.05)
    return -1


def wait_for_log(path, needle, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("filebench: wharf serve exited early (%d)"
                             % proc.returncode)
        try:
            with open(path, errors="replace") as f:
                if needle in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("filebench: '%s' did not appear in %s" % (needle, path))


def parse_strace_c(path):
    """{syscall: calls} from an `strace -c` summary."""
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync", "syncfs"):
                try:
                    calls[parts[-1]] = (int(parts[3]), float(parts[1]))
                except ValueError:
                    pass
    return calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wharf", required=True)
    ap.add_argument("--out", required=True, help="folder for this run (wiped)")
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--label", default="filebench")
    ap.add_argument("--strace", metavar="FILE")
    ap.add_argument("--wrap", metavar="CMD",
                    help="run the server under this command prefix "
                    "(diagnostics, e.g. 'strace -f -tt -T -o FILE')")
    ap.add_argument("--perf", metavar="FILE",
                    help="perf record -g the server during the timed part")
    ap.add_argument("--after", choices=("delete", "archive"), default="delete",
                    help="what the source does with a stored file (diagnostics)")
    ap.add_argument("--timeout", type=float, default=180.0)
    a = ap.parse_args()

    wharf = os.path.abspath(a.wharf)
    out = os.path.abspath(a.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    data, recv, send, stage, arch = (os.path.join(out, x) for x in
                                     ("data", "in", "out", "staging", "archive"))
    for d in (recv, send, stage, arch):
        os.makedirs(d)

    run([wharf, "init", "--data", data, "--allowed-paths", out])
    if os.geteuid() == 0:   # a bench machine as root: keep root (R22)
        with open(os.path.join(data, "wharf.conf"), "a") as f:
            f.write("allow_root = yes\n")
    src_cfg = {"receive_dir": recv, "pattern": "*", "after": a.after,
               "poll_ms": 100}
    if a.after == "archive":
        src_cfg["archive_dir"] = arch
    flow = {
        "connectors": [
            {"name": "bench-in", "type": "file",
             "config": src_cfg},
            {"name": "bench-out", "type": "file",
             "config": {"send_dir": send}},
        ],
        "links": [["bench-in", "bench-out"]],
    }
    flow_path = os.path.join(out, "flow.json")
    with open(flow_path, "w") as f:
        json.dump(flow, f, indent=1)
    run([wharf, "flow", "import", "--data", data, flow_path])

    log("%s: creating %d files of %d bytes in %s" % (a.label, a.files, a.size,
                                                     stage))
    names, digests = [], {}
    for i in range(a.files):
        name = "msg-%06d.dat" % i
        body = os.urandom(a.size)
        with open(os.path.join(stage, name), "wb") as f:
            f.write(body)
        names.append(name)
        digests[name] = hashlib.sha256(body).hexdigest()
    os.sync()       # the staging data must not be flushed on the server's clock

    cmd = [wharf, "serve", "--data", data, "--quiet"]
    if a.strace:
        cmd = ["strace", "-f", "-c", "-w", "--seccomp-bpf", "-e", "trace=fsync,fdatasync,syncfs",
               "-o", os.path.abspath(a.strace)] + cmd
    if a.wrap:
        cmd = shlex.split(a.wrap) + cmd
    serve_log = open(os.path.join(out, "serve.stderr"), "w")
    proc = subprocess.Popen(cmd, stdout=serve_log, stderr=subprocess.STDOUT)
    ok, pid, perf = False, -1, None
    try:
        pid = find_wharf_pid(proc.pid, wharf)
        if pid < 0:
            raise SystemExit("filebench: cannot find the wharf serve process")
        # Since e3c5750 the flow is loaded before this line is logged; before,
        # the poller loaded it on its first turn, right after.
        wait_for_log(os.path.join(data, "logs", "wharf.log"),
                     "engine started", proc)
        time.sleep(0.3)    # let the first (empty) poll of the source pass
        if a.perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-q", "-o",
                                     os.path.abspath(a.perf), "-p", str(pid)],
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(1.0)

        log("%s: moving %d files into %s" % (a.label, a.files, recv))
        t0 = time.monotonic()
        for name in names:
            os.rename(os.path.join(stage, name), os.path.join(recv, name))
        t_renamed = time.monotonic() - t0

        t_files = None
        deadline = t0 + a.timeout
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            if proc.poll() is not None:
                raise SystemExit("filebench: wharf serve died (exit %d) during "
                                 "the run" % proc.returncode)
            if t_files is None and count_visible(send) >= a.files:
                t_files = now - t0
            if t_files is not None and sent_count(wharf, data, a.files) >= a.files:
                t_done = time.monotonic() - t0
                break
            if now > deadline:
                raise SystemExit("filebench: timeout after %.0f s: %d files in "
                                 "send_dir, %d sent" % (a.timeout,
                                 count_visible(send),
                                 sent_count(wharf, data, a.files)))
        hwm = vm_hwm_kib(pid)
        cpu_user, cpu_sys = cpu_seconds(pid)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait()
            perf = None
        ok = True
    finally:
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        if proc.poll() is None:
            target = pid if pid > 0 else proc.pid
            os.kill(target, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(target, signal.SIGKILL)
                proc.wait()
        serve_log.close()
    if not ok:
        return 1
    rc_serve = proc.returncode

    # ---- verification -------------------------------------------------------
    got = visible_files(send)
    left = count_visible(recv)
    errors = []
    if len(got) != a.files or set(got) != set(names):
        errors.append("send_dir holds %d files, expected %d with the same names"
                      % (len(got), a.files))
    if left:
        errors.append("%d files left in receive_dir" % left)
    for name in got:
        if os.path.getsize(os.path.join(send, name)) != a.size:
            errors.append("%s has the wrong size" % name)
            break
    sample = random.Random(42).sample(names, min(200, len(names)))
    bad = 0
    for name in sample:
        try:
            with open(os.path.join(send, name), "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != digests[name]:
                    bad += 1
        except OSError:
            bad += 1
    if bad:
        errors.append("%d of %d sampled files differ from the original"
                      % (bad, len(sample)))
    if rc_serve != 0:
        errors.append("wharf serve exited with %d on SIGTERM" % rc_serve)

    p = a.label + "_"
    print("%sfiles %d" % (p, a.files))
    print("%ssize_bytes %d" % (p, a.size))
    print("%srename_s %.3f" % (p, t_renamed))
    print("%sall_files_s %.3f" % (p, t_files))
    print("%sall_sent_s %.3f" % (p, t_done))
    print("%speak_rss_kib %d" % (p, hwm))
    print("%sserve_cpu_user_s %.2f" % (p, cpu_user))
    print("%sserve_cpu_sys_s %.2f" % (p, cpu_sys))
    if a.strace:
        calls = parse_strace_c(a.strace)
        total = 0
        for sc in ("fsync", "fdatasync", "syncfs"):
            c, secs = calls.get(sc, (0, 0.0))
            total += c
            print("%s%s_calls %d" % (p, sc, c))
            print("%s%s_wall_s %.3f" % (p, sc, secs))
        print("%ssync_calls %d" % (p, total))
        print("%ssyncs_per_msg %.4f" % (p, total / a.files))
    else:
        print("%smsgs_per_s %.0f" % (p, a.files / t_done))
    print("%sverified %s" % (p, "ok" if not errors else "FAILED"))
    for e in errors:
        log("%s: VERIFY FAILED: %s" % (a.label, e))
    log("%s: %d files in %.2f s (all in send_dir after %.2f s); peak RSS %d KiB; "
        "verification %s" % (a.label, a.files, t_done, t_files, hwm,
                             "ok" if not errors else "FAILED"))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
