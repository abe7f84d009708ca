#!/usr/bin/python3
"""Wait, without polling, until a folder holds N files named PREFIX*SUFFIX.

The AS2 benchmark's clock stops when the receiver's inbox holds every
message. It used to look every 100 ms (a glob of thousands of names in the
harness's shell, plus an awk and a date started each time): about 5% of
the two cores the servers are measured on (a `perf record -a` of a sync
run, 2026-12-07). This waits on inotify instead: it costs nothing while
files arrive and returns at the Nth one.

usage: inbox_wait.py DIR PREFIX SUFFIX N TIMEOUT_S READY_FILE PID...

It watches DIR first, then counts what is already there, then touches
READY_FILE (so the caller starts its clock only after the watch is up),
and exits 0 once N distinct names are there, 2 if one of the PIDs is gone
(checked once a second), 3 after TIMEOUT_S seconds. A file counts when it
is renamed into DIR or closed after writing there (Wharf's file connector
renames a finished temporary file into place); names starting with a dot
(temporaries) never count. If the kernel's event queue overflows
(max_queued_events), the folder is listed again.
"""
import ctypes
import os
import select
import struct
import sys
import time

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000      # events were lost: count the folder again
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
EVENT = struct.Struct("iIII")   # wd, mask, cookie, len; then the name


def counts(name, prefix, suffix):
    return (name.startswith(prefix) and name.endswith(suffix)
            and not name.startswith("."))


def watch(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        sys.exit("inbox_wait: inotify_init1: %s" % os.strerror(ctypes.get_errno()))
    if libc.inotify_add_watch(fd, os.fsencode(path), IN_MOVED_TO | IN_CLOSE_WRITE) < 0:
        sys.exit("inbox_wait: watch %s: %s" % (path, os.strerror(ctypes.get_errno())))
    return fd


def names(buf):
    """The names in a read of inotify events; None for a queue overflow."""
    off = 0
    while off + EVENT.size <= len(buf):
        _, mask, _, n = EVENT.unpack_from(buf, off)
        raw = buf[off + EVENT.size:off + EVENT.size + n]
        off += EVENT.size + n
        yield None if mask & IN_Q_OVERFLOW else os.fsdecode(raw.split(b"\0", 1)[0])


def listed(d, prefix, suffix):
    return {n for n in os.listdir(d) if counts(n, prefix, suffix)}


def alive(pids):
    for p in pids:
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            return False
    return True


def main():
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    d, prefix, suffix = sys.argv[1], sys.argv[2], sys.argv[3]
    want, limit, ready = int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    pids = [int(p) for p in sys.argv[7:]]
    fd = watch(d)
    seen = listed(d, prefix, suffix)
    open(ready, "w").close()
    end = time.monotonic() + limit
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(seen) < want:
        if time.monotonic() > end:
            sys.exit(3)
        if not poller.poll(1000):
            if not alive(pids):
                sys.exit(2)
            continue
        while True:
            try:
                buf = os.read(fd, 65536)
            except BlockingIOError:
                break
            got = list(names(buf))
            if None in got:         # the kernel's queue overflowed
                seen |= listed(d, prefix, suffix)
            seen.update(n for n in got if n and counts(n, prefix, suffix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
