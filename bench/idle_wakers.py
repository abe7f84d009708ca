#!/usr/bin/python3
"""idle_wakers.py - what a CPU was waiting for while it sat idle.

Reads a whole-machine recording of the scheduler's switches and wake-ups
(sched_waking, which fires in the waker's own context) with kernel call
graphs:

    perf record -a -g -e sched:sched_switch -e sched:sched_waking \\
        -o sched.data -- sleep 3        # beside a run of bench/as2_bench.sh

Each time a CPU leaves its idle loop for a task, the idle time just ended
is given to that task: to what it was blocked in (its kernel stack when it
last switched out: a futex, the key process's socket, a pipe, a sync, ...)
and to who woke it (an interrupt, or a thread of which process, through
which kernel call). The table answers "the cores sat idle waiting for
what", in ms of idle CPU per second of the recording. Only idle periods
ended by a task of the processes named with --comm count (default: wharf,
wharf-keys); the rest is one line "other".

usage: idle_wakers.py PROFILE [--comm C1,C2] [--top N]

PROFILE: a perf.data file (perf script is run on it) or the saved output
of `perf script`. Standard library, perf, and bench/perf_stages.py.
"""
import collections
import re
import sys

from perf_stages import script_text     # bench/ is the script's folder

HEAD = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(sched:\S+):\s*(.*)$")
FIELD = re.compile(r"(\w+)=(\S+)")
FRAME = re.compile(r"\s+[0-9a-f]+\s+(\S+)")

BLOCKED = [             # (kernel function on the stack, what it means)
    ("futex_wait", "futex (a lock or condition)"),
    ("unix_stream_read_generic", "unix socket read (the key process)"),
    ("unix_stream_data_wait", "unix socket read (the key process)"),
    ("pipe_read", "pipe read (a stage thread)"),
    ("pipe_write", "pipe write (a stage thread)"),
    ("ep_poll", "epoll_wait (an event loop)"),
    ("do_sys_poll", "poll (curl, a socket)"),
    ("do_select", "select"),
    ("sk_wait_data", "TCP read"),
    ("sk_stream_wait_memory", "TCP write"),
    ("blkdev_issue_flush", "sync: device flush"),
    ("file_write_and_wait_range", "sync: writeback"),
    ("folio_wait_bit", "sync: writeback"),
    ("io_schedule", "I/O"),
    ("do_nanosleep", "sleep"),
    ("rwsem_down", "kernel lock (rwsem)"),
    ("__mutex_lock", "kernel lock (mutex)"),
    ("do_exit", "thread exit"),
]

WAKER = [               # (kernel function in the waker's stack, what)
    ("blk_mq_end_request", "I/O completion"),
    ("blk_update_request", "I/O completion"),
    ("vring_interrupt", "I/O completion"),
    ("futex_wake", "futex wake"),
    ("unix_stream_sendmsg", "unix socket write"),
    ("sock_def_readable", "socket data"),
    ("pipe_write", "pipe write"),
    ("pipe_read", "pipe read (room made)"),
    ("hrtimer_interrupt", "timer"),
    ("wake_up_new_task", "thread start"),
    ("do_exit", "thread exit"),
    ("tcp_", "TCP"),
]


def classify(stack, table, default):
    for f in stack:
        for key, what in table:
            if f.startswith(key):
                return what
    return default


def events(path):
    """(comm, pid, cpu, time, event, fields, stack) in the file's order."""
    cur = None
    for line in script_text(path).splitlines():
        m = HEAD.match(line)
        if m:
            if cur is not None:
                yield cur
            comm, pid, cpu, t, ev, rest = m.groups()
            cur = (comm, int(pid), int(cpu), float(t), ev,
                   dict(FIELD.findall(rest)), [])
            continue
        f = FRAME.match(line)
        if f and cur is not None:
            cur[6].append(re.sub(r"\+0x[0-9a-f]+$", "", f.group(1)))
    if cur is not None:
        yield cur


def process_of(comm):
    return re.sub(r"[/:].*", "", comm)


def tally(path, comms):
    blocked, woken = {}, {}         # tid -> why it slept; who woke it
    idle_since, first, last = {}, None, None
    idle = collections.Counter()
    total_idle = 0.0
    for comm, pid, cpu, t, ev, fl, stack in events(path):
        first = t if first is None else first
        last = t
        if ev == "sched:sched_waking":
            who = "interrupt" if pid == 0 else process_of(comm)
            woken[int(fl.get("pid", -1))] = "%s: %s" % (
                who, classify(stack, WAKER, "other"))
            continue
        if ev != "sched:sched_switch":
            continue
        prev, nxt = int(fl.get("prev_pid", -1)), int(fl.get("next_pid", -1))
        if prev > 0 and not fl.get("prev_state", "R").startswith("R"):
            blocked[prev] = classify(stack, BLOCKED, "other: " + (
                stack[2] if len(stack) > 2 else "?"))
        if nxt == 0:
            idle_since[cpu] = t
        elif prev == 0 and cpu in idle_since:
            gap = t - idle_since.pop(cpu)
            total_idle += gap
            name = process_of(fl.get("next_comm", "?"))
            if name in comms:
                idle["%-10s blocked in %-36s woken by %s" % (
                    name, blocked.get(nxt, "?"), woken.get(nxt, "?"))] += gap
            else:
                idle["other (%s)" % name] += gap
    return idle, total_idle, (last - first) if first is not None else 0.0


def main(argv):
    args, comms, top = [], {"wharf", "wharf-keys"}, 25
    i = 1
    while i < len(argv):
        if argv[i] == "--comm" and i + 1 < len(argv):
            comms = set(argv[i + 1].split(","))
            i += 2
        elif argv[i] == "--top" and i + 1 < len(argv):
            top = int(argv[i + 1])
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    idle, total, span = tally(args[0], comms)
    if span <= 0:
        sys.stderr.write("idle_wakers: no scheduler events in %s\n" % args[0])
        return 1
    print("recording %.2f s; idle ended by a task: %.1f ms of CPU per s"
          % (span, 1000 * total / span))
    for what, gap in idle.most_common(top):
        print("%7.1f ms/s  %5.1f%%  %s" % (1000 * gap / span,
                                           100 * gap / total, what))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
