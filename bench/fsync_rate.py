#!/usr/bin/python3
"""fsync_rate.py - the per-file durability limit of a file system.

Creates N new files of SIZE bytes in a fresh folder under DIR, each with
write + fsync(file) + fsync(folder): what a naive "one durable file per
message" design pays per message. Prints `fsync_files_per_s X`, then
unlinks the N (now synced) files one by one and prints
`unlink_synced_files_per_s Y` (details on stderr).

usage: fsync_rate.py DIR [N=1000] [SIZE=4096]
Standard library only; DIR must be on the file system being measured.
"""
import os
import shutil
import sys
import tempfile
import time


def main(argv):
    if len(argv) < 2 or len(argv) > 4:
        sys.stderr.write(__doc__)
        return 2
    base = argv[1]
    n = int(argv[2]) if len(argv) > 2 else 1000
    size = int(argv[3]) if len(argv) > 3 else 4096
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fsync-rate-", dir=base)
    data = os.urandom(size)
    try:
        dfd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
            t0 = time.monotonic()
            for i in range(n):
                fd = os.open(os.path.join(work, "f%06d" % i),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.fsync(dfd)
            elapsed = time.monotonic() - t0
            # The file source's "after delete" unlinks every picked-up file;
            # on a file system mounted with -o discard that is a synchronous
            # discard per file, so it is a limit of its own.
            t0 = time.monotonic()
            for i in range(n):
                os.unlink(os.path.join(work, "f%06d" % i))
            unlinked = time.monotonic() - t0
        finally:
            os.close(dfd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stderr.write("fsync_rate: %d files of %d bytes in %.3f s, unlinked in "
                     "%.3f s under %s\n" % (n, size, elapsed, unlinked, base))
    print("fsync_files_per_s %.0f" % (n / elapsed))
    print("unlink_synced_files_per_s %.0f" % (n / unlinked))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
