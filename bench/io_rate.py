#!/usr/bin/python3
"""io_rate.py - plain buffered file I/O: the other limit of vault_bench.

Does what vault_bench's timed parts do minus the cryptography: writes MIB
MiB in 1 MiB write(2) calls to a new file in a fresh folder under DIR (no
fsync, like vault_bench), then reads it back in 1 MiB read(2) calls. An
untimed pass of the same size, written and deleted first, warms the page
cache. Prints
`plain_write_MBps X` and `plain_read_MBps Y` (MB = 10^6 bytes) and removes
what it created.

usage: io_rate.py DIR [MIB=256]
Standard library only.
"""
import os
import shutil
import sys
import tempfile
import time

CHUNK = 1 << 20


def main(argv):
    if len(argv) < 2 or len(argv) > 3:
        sys.stderr.write(__doc__)
        return 2
    mib = int(argv[2]) if len(argv) > 2 else 256
    work = tempfile.mkdtemp(prefix="io-rate-", dir=argv[1])
    path = os.path.join(work, "data")
    buf = os.urandom(CHUNK)
    try:
        # Untimed first pass: on a VM the first touch of guest memory that
        # the page cache has never used costs a host page fault; that is the
        # hypervisor's cost, not write(2)'s.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        for _ in range(mib):
            os.write(fd, buf)
        os.close(fd)
        os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        t0 = time.monotonic()
        for _ in range(mib):
            view = memoryview(buf)
            while view:
                view = view[os.write(fd, view):]
        t1 = time.monotonic()
        os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        total = 0
        t2 = time.monotonic()
        while True:
            got = os.read(fd, CHUNK)
            if not got:
                break
            total += len(got)
        t3 = time.monotonic()
        os.close(fd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if total != mib * CHUNK:
        sys.stderr.write("io_rate: read %d bytes, wrote %d\n" % (total, mib * CHUNK))
        return 1
    print("plain_write_MBps %.1f" % (mib * CHUNK / 1e6 / (t1 - t0)))
    print("plain_read_MBps %.1f" % (total / 1e6 / (t3 - t2)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
