#!/usr/bin/python3
"""bench/thread_cpu.py - where a run's CPU goes, thread by thread, from /proc.

Beside a benchmark (bench/as2_bench.sh), samples every thread of every
process whose executable starts with EXE (default: any path ending in
"wharf") twice a second: its CPU ticks (utime + stime), nice value and
scheduling policy, and which instance it serves (the name of the folder
above the --data dir its command line names: "a", "b", "c" in the AS2
harness). Then reports the cores each group used over the busy part of
the run, so a run can be seen to fill the machine's cores or not (a
profile says where the CPU goes; this says how much of the machine was
used, and by whom, at what priority).

    bench/thread_cpu.py sample OUT.jsonl SECONDS [EXE]
    bench/thread_cpu.py report OUT.jsonl [--by instance|process|thread|nice]
                                         [--busy CORES]

report counts only the half-second windows in which the sampled threads
together used at least --busy cores (default 0.4: the run itself, not its
set-up), prints the cores each group used over them, their sum, and with
--by nice the split by (instance, nice, policy); then the whole machine
over the same windows from /proc/stat's cpu line (user, system, irq and
softirq, iowait, idle, steal, in cores), so what the sampled threads did
not use shows as idle or as someone else's work. Ticks are USER_HZ (100
a second). docs/performance.md ("AS2 mixed load") used it to find the two
cores not full while a 1 GiB transfer ran beside small messages.
"""
import collections
import json
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
POLICY = {0: "normal", 1: "fifo", 2: "rr", 3: "batch", 5: "idle"}


def instance(pid):
    """The folder above the --data dir of pid's command line, or "?"."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    for i, arg in enumerate(argv):
        if arg == "--data" and i + 1 < len(argv):
            parts = argv[i + 1].rstrip("/").split("/")
            return parts[-2] if len(parts) >= 2 else "?"
    return "?"


def matches(pid, exe):
    try:
        path = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return path.startswith(exe) if exe else path.endswith("wharf")


def snapshot(exe):
    """{"instance/pid/tid": [comm, nice, policy, ticks]}"""
    snap = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if not matches(pid, exe):
            continue
        who = instance(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue            # a thread that just ended
            comm = stat[stat.find("(") + 1:stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            snap[f"{who}/{pid}/{tid}"] = [comm, int(fields[16]),
                                         int(fields[38]), ticks]
    return snap


def machine():
    """/proc/stat's cpu line: user nice system idle iowait irq softirq
    steal, in ticks over all cores."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def sample(out, seconds, exe):
    end = time.monotonic() + seconds
    with open(out, "w") as f:
        while time.monotonic() < end:
            f.write(json.dumps([time.monotonic(), snapshot(exe),
                                machine()]) + "\n")
            f.flush()
            time.sleep(0.5)


def group_key(key, comm, nice, policy, by):
    who, pid, tid = key.split("/")
    if by == "instance":
        return who
    if by == "process":
        return f"{who} {pid} {comm}"
    if by == "thread":
        return f"{who} {pid}/{tid} {comm}"
    return f"{who} nice {nice} {POLICY.get(policy, policy)}"


def machine_report(used, seconds):
    """The machine's cores over the busy windows, by kind."""
    user, nice, system, idle, iowait, irq, softirq, steal = used
    kinds = (("user", user + nice), ("system", system),
             ("irq+softirq", irq + softirq), ("iowait", iowait),
             ("idle", idle), ("steal", steal))
    print(f"machine ({os.cpu_count()} cores), same windows:")
    for name, ticks in kinds:
        print(f"  {name:<40} {ticks / HZ / seconds:6.2f} cores")


def report(path, by, busy):
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    used = collections.Counter()
    box = [0] * 8
    seconds = 0.0
    windows = 0
    for (t0, before, m0), (t1, after, m1) in zip(rows, rows[1:]):
        window = collections.Counter()
        for key, (comm, nice, policy, ticks) in after.items():
            if key in before:
                window[group_key(key, comm, nice, policy, by)] += \
                    ticks - before[key][3]
        if sum(window.values()) / HZ / (t1 - t0) >= busy:
            used.update(window)
            box = [b + y - x for b, x, y in zip(box, m0, m1)]
            seconds += t1 - t0
            windows += 1
    if windows == 0:
        print(f"no window with {busy} cores busy in {path}")
        return 1
    print(f"{windows} busy windows, {seconds:.1f} s")
    for name, ticks in used.most_common():
        if ticks:
            print(f"  {name:<40} {ticks / HZ / seconds:6.2f} cores")
    print(f"  {'all':<40} {sum(used.values()) / HZ / seconds:6.2f} cores")
    machine_report(box, seconds)
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "sample":
        sample(argv[2], float(argv[3]), argv[4] if len(argv) > 4 else "")
        return 0
    if len(argv) >= 3 and argv[1] == "report":
        by, busy = "instance", 0.4
        rest = argv[3:]
        while rest:
            opt = rest.pop(0)
            if opt == "--by" and rest:
                by = rest.pop(0)
            elif opt == "--busy" and rest:
                busy = float(rest.pop(0))
            else:
                print(__doc__, file=sys.stderr)
                return 2
        if by not in ("instance", "process", "thread", "nice"):
            print(__doc__, file=sys.stderr)
            return 2
        return report(argv[2], by, busy)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
