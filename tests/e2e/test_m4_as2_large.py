"""M4 (large files streamed: memory does not grow with file size): a
64 MiB file goes A -> B over AS2 signed + encrypted + compressed with a
signed synchronous MDN, and the peak RSS (VmHWM) of both `wharf serve`
processes stays under 64 MiB: neither side can hold the file, its
compressed, signed or encrypted form, or the request body in memory.
Both ways of sending it (issue 14): streamed into the POST while it is
packaged (chunked, the default), and packaged whole into a temporary
file first, POSTed with its Content-Length (the partner's
`"chunked": false`).

Memory, not time, is asserted (the 1 GiB run and its MB/s belong to
bench/as2_bench.sh). The servers here are the release build
(build/release/wharf, or $WHARF_RELEASE_BIN): the ASan build's shadow
memory and its quarantine of freed blocks (256 MiB by default) make its
RSS grow with the bytes that pass through malloc, whatever the code keeps.
The ASan build still runs every CLI command of the set-up."""
import os
from pathlib import Path

import pytest

from as2_pair import pair
from conftest import REPO, Server, sha256_file, wait_until

SIZE = 64 << 20
RSS_LIMIT_KIB = 64 * 1024


def release_bin():
    b = Path(os.environ.get("WHARF_RELEASE_BIN") or
             REPO / "build" / "release" / "wharf")
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail(f"release binary {b} not found: run `make release` or "
                    "set WHARF_RELEASE_BIN", pytrace=False)
    return b


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.mark.parametrize("chunked", [True, False],
                         ids=["chunked", "content-length"])
def test_m4_as2_large_file_peak_rss_under_64_mib(tmp_path, wharf, chunked):
    a, b = pair(wharf, tmp_path, a_settings={"chunked": chunked})
    binary = release_bin()
    outdir = tmp_path / "server-output"
    outdir.mkdir()
    servers = [Server(binary, s.data, outdir, i) for i, s in enumerate((a, b))]
    try:
        for side, srv in zip((a, b), servers):
            side.server = srv
            srv.wait_listening()

        # Random bytes: nothing compresses, so every stage (deflate, the
        # signature, the encryption, the request body on B) sees the full
        # 64 MiB. Written in 1 MiB pieces, renamed into place.
        src = tmp_path / "big.bin"
        with open(src, "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(os.urandom(1 << 20))
        os.rename(src, a.outbox / "big.bin")

        def done():
            for s in servers:
                s.check_alive()
            p = b.inbox / "big.bin"
            if not p.exists() or any(b.inbox.glob(".big.bin*")):
                return False
            msgs = wharf.messages(a.data)
            return msgs and msgs[0]["state"] == "sent"
        wait_until(done, timeout=600, interval=0.5,
                   desc="big.bin sent at A (MDN checked) and in B's inbox")

        assert (b.inbox / "big.bin").stat().st_size == SIZE
        msg = wharf.messages(a.data)[0]
        assert sha256_file(b.inbox / "big.bin") == msg["sha256"]
        hop = [h for h in wharf.show(a.data, msg["id"])["hops"]
               if h["connector"] == "as2-b"][0]
        assert hop["receipt"].startswith("MDN processed (signed)"), hop

        peaks = {name: vm_hwm_kib(s.pid) for name, s in zip("AB", servers)}
        for name, kib in peaks.items():
            assert kib < RSS_LIMIT_KIB, (
                f"{name}'s peak RSS {kib} KiB is not under 64 MiB after a "
                f"64 MiB AS2 message: {peaks}")
        for s in servers:
            s.stop()
    finally:
        for s in servers:
            s.force_cleanup()
