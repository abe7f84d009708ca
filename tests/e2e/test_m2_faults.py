"""M2 (isolation issue, "fault hooks"): an I/O error at any durable step of
intake or delivery loses nothing, duplicates nothing and acknowledges
nothing early.

`serve` runs with WHARF_FAULT="POINT:N:ERR" (util/fault.h): the Nth write,
sync, rename or database commit at that point fails with ERR, once, as the
system call (or SQLite's SQLITE_IOERR / SQLITE_FULL) would. Each case
drops files into a file source linked to a file destination and checks:

  - in the end every file arrives exactly once, byte-identical, under its
    own name (no name_1 copies), and every message is `sent`: a source
    file acknowledged (deleted) before its commit would be missing, a
    delivery recorded before the file was durable would be missing, a
    redelivery not recognized would be a second copy;
  - the server logged the injected error (the fault really happened).
"""
import os

import pytest

from conftest import (drop_file, file_dest, file_source, flow_doc,
                      new_data_dir, sha256_bytes, sha256_file, wait_until)

CASES = [
    # intake: the payload file, its sync, the folder sync, the commit
    ("payload.write:2:ENOSPC", "intake"),
    ("fsx.sync:1:EIO", "intake"),
    ("fsx.sync_dir:1:EIO", "intake"),
    ("store.intake:1:EIO", "intake"),
    ("store.intake:2:ENOSPC", "intake"),
    # delivery: the write, the sync, the rename, the commit of the outcome
    ("file.write:2:ENOSPC", "delivery"),
    ("fsx.sync:2:EIO", "delivery"),
    ("file.rename:1:EIO", "delivery"),
    ("store.finish:1:EIO", "delivery"),
    ("store.finish:2:ENOSPC", "delivery"),
]


@pytest.mark.parametrize("fault,stage", CASES,
                         ids=[c[0].replace(":", "-") for c in CASES])
def test_m2_io_error_loses_and_duplicates_nothing(tmp_path, wharf,
                                                  start_server, fault,
                                                  stage, monkeypatch):
    """stage: which side of the flow the point belongs to (documentation
    of the case; the checks are the same)."""
    data = new_data_dir(wharf, tmp_path / "data")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    retry = {"max_attempts": 50, "initial_ms": 100, "max_ms": 300}
    wharf.import_flow(data, flow_doc(
        [file_source("in", src), file_dest("out", out, retry=retry)],
        [("in", "out")]), tmp_path / "flow.json")
    files = {f"f{i}.edi": os.urandom(3000 + 977 * i) for i in range(6)}
    monkeypatch.setenv("WHARF_FAULT", fault)
    srv = start_server(data)
    names = sorted(files)
    for wave in (names[:3], names[3:]):         # two intakes, two deliveries
        for name in wave:
            drop_file(src, name, files[name])
        wait_until(lambda: srv.check_alive() and
                   all((out / n).exists() for n in wave), timeout=120,
                   desc=f"wave {wave} delivered ({fault})")

    def done():
        srv.check_alive()
        msgs = wharf.messages(data)
        return (len(msgs) >= len(files) and
                all(m["state"] == "sent" for m in msgs) and
                sorted(os.listdir(out)) == sorted(files))
    wait_until(done, timeout=120, desc=f"every file delivered ({fault})")
    srv.stop()

    msgs = wharf.messages(data)
    assert len(msgs) == len(files), msgs              # no duplicate message
    assert sorted(m["filename"] for m in msgs) == sorted(files)
    assert sorted(os.listdir(out)) == sorted(files)   # no second copy
    for name, body in files.items():
        assert sha256_file(out / name) == sha256_bytes(body)
    assert os.listdir(src) == []                      # all acknowledged
    log = (data / "logs" / "wharf.log").read_text()
    assert "injected" in log or any(w in log for w in (
        "Input/output error", "No space left on device")), \
        f"the fault {fault} did not happen"
