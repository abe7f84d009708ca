"""
M1 (flows) and M3 (file connector) end to end: live flow import, fan-out,
archive, pattern filter, collision policies, and the stable-size check.
"""
import os
import threading
import time

from conftest import (drop_file, file_dest, file_source, flow_doc, listdir,
                      wait_until)


def dirs(tmp_path, *names):
    out = []
    for n in names:
        p = tmp_path / n
        p.mkdir()
        out.append(p)
    return out


def sent_count(wharf, data):
    return len(wharf.messages(data, "sent"))


def test_m1_flow_import_on_running_server_without_restart(
        tmp_path, wharf, data_dir, start_server):
    recv, out1, out2 = dirs(tmp_path, "in", "out1", "out2")
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("first", out1)],
        [("inbox", "first")]), tmp_path / "flow1.json")
    server = start_server(data_dir)
    drop_file(recv, "a.txt", b"to the first destination")
    wait_until(lambda: server.check_alive() and (out1 / "a.txt").exists(),
               timeout=30, desc="a.txt in the first destination")

    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("second", out2)],
        [("inbox", "second")]), tmp_path / "flow2.json")
    # the running server picks the new flow up without a restart ("within a
    # second", cli/flow.c): a file dropped after that goes to the new
    # destination
    time.sleep(1.5)
    drop_file(recv, "b.txt", b"to the second destination")
    wait_until(lambda: server.check_alive() and (out2 / "b.txt").exists(),
               timeout=30, desc="b.txt in the new destination")
    assert server.running()
    server.stop()
    assert listdir(out1) == ["a.txt"]
    assert listdir(out2) == ["b.txt"]
    assert (out2 / "b.txt").read_bytes() == b"to the second destination"
    assert listdir(recv) == []
    msgs = {m["filename"]: m for m in wharf.messages(data_dir)}
    hops_b = {h["connector"] for h in wharf.show(data_dir, msgs["b.txt"]["id"])
              ["hops"]}
    assert "second" in hops_b and "first" not in hops_b


def test_m1_fan_out_to_two_destinations(tmp_path, wharf, data_dir,
                                        start_server):
    recv, a, b = dirs(tmp_path, "in", "a", "b")
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("to-a", a),
         file_dest("to-b", b)],
        [("inbox", "to-a"), ("inbox", "to-b")]), tmp_path / "flow.json")
    files = {f"m{i}.csv": os.urandom(500 * i) for i in range(5)}
    server = start_server(data_dir)
    for name, data in files.items():
        drop_file(recv, name, data)
    wait_until(lambda: server.check_alive() and
               sent_count(wharf, data_dir) == 5, timeout=30,
               desc="5 messages sent")
    server.stop()
    for folder in (a, b):
        assert listdir(folder) == sorted(files)
        for name, data in files.items():
            assert (folder / name).read_bytes() == data
    msgs = wharf.messages(data_dir)
    assert len(msgs) == 5
    for m in msgs:
        hops = {h["connector"]: h["state"]
                for h in wharf.show(data_dir, m["id"])["hops"]}
        assert hops.get("to-a") == "sent" and hops.get("to-b") == "sent", hops


def test_m1_archive_after_intake(tmp_path, wharf, data_dir, start_server):
    recv, arch, out = dirs(tmp_path, "in", "archive", "out")
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv, after="archive", archive_dir=str(arch)),
         file_dest("outbox", out)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    files = {f"r{i}.xml": os.urandom(100 + i) for i in range(4)}
    server = start_server(data_dir)
    for name, data in files.items():
        drop_file(recv, name, data)
    wait_until(lambda: server.check_alive() and
               sent_count(wharf, data_dir) == 4, timeout=30,
               desc="4 messages sent")
    # the same name again, other content: archived beside the first one
    drop_file(recv, "r0.xml", b"second r0")
    wait_until(lambda: server.check_alive() and
               sent_count(wharf, data_dir) == 5, timeout=30,
               desc="the second r0.xml sent")
    server.stop()
    assert listdir(recv) == []
    archived = listdir(arch)
    assert len(archived) == 5 and set(files) <= set(archived), archived
    second = [n for n in archived if n not in files]
    assert second[0].startswith("r0.xml")
    assert (arch / second[0]).read_bytes() == b"second r0"
    assert listdir(out) == sorted(list(files) + ["r0_1.xml"])
    assert (out / "r0_1.xml").read_bytes() == b"second r0"
    for name, data in files.items():
        assert (arch / name).read_bytes() == data
        assert (out / name).read_bytes() == data


def test_m1_pattern_filter_leaves_other_files(tmp_path, wharf, data_dir,
                                              start_server):
    recv, out = dirs(tmp_path, "in", "out")
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv, pattern="*.edi"),
         file_dest("outbox", out)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    server = start_server(data_dir)
    drop_file(recv, "notes.txt", b"not for the partner")
    drop_file(recv, "upper.EDI", b"case matters")
    drop_file(recv, "order.edi.bak", b"backup")
    drop_file(recv, "order.edi", b"UNB+...")
    wait_until(lambda: server.check_alive() and (out / "order.edi").exists(),
               timeout=30, desc="order.edi delivered")
    time.sleep(0.5)     # ten more polls of a 50 ms source
    server.stop()
    assert listdir(recv) == ["notes.txt", "order.edi.bak", "upper.EDI"]
    assert listdir(out) == ["order.edi"]
    msgs = wharf.messages(data_dir)
    assert [m["filename"] for m in msgs] == ["order.edi"]


def test_m3_hidden_files_symlinks_and_folders_are_not_taken(
        tmp_path, wharf, data_dir, start_server):
    recv, out, elsewhere = dirs(tmp_path, "in", "out", "elsewhere")
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv, pattern="*.edi"),
         file_dest("outbox", out)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    secret = elsewhere / "passwd.edi"
    secret.write_bytes(b"outside the receive folder")
    os.symlink(secret, recv / "link.edi")
    (recv / ".partial.edi").write_bytes(b"a producer's temp file")
    (recv / "folder.edi").mkdir()
    server = start_server(data_dir)
    drop_file(recv, "real.edi", b"the real one")
    wait_until(lambda: server.check_alive() and (out / "real.edi").exists(),
               timeout=30, desc="real.edi delivered")
    time.sleep(0.5)     # ten more polls of a 50 ms source
    server.stop()
    assert listdir(out) == ["real.edi"]
    assert listdir(recv) == [".partial.edi", "folder.edi", "link.edi"]
    assert os.path.islink(recv / "link.edi")
    assert secret.read_bytes() == b"outside the receive folder"
    assert [m["filename"] for m in wharf.messages(data_dir)] == ["real.edi"]


def collision_setup(tmp_path, wharf, data_dir, policy):
    recv, out = dirs(tmp_path, "in", "out")
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv),
         file_dest("outbox", out, on_collision=policy,
                   retry={"max_attempts": 3, "initial_ms": 100,
                          "max_ms": 200})],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    (out / "invoice.edi").write_bytes(b"the partner's existing file")
    (out / "plain").write_bytes(b"existing, no extension")
    (out / "plain_1").write_bytes(b"existing too")
    return recv, out


def run_collision(tmp_path, wharf, data_dir, start_server, policy):
    recv, out = collision_setup(tmp_path, wharf, data_dir, policy)
    server = start_server(data_dir)
    drop_file(recv, "invoice.edi", b"new invoice")
    drop_file(recv, "plain", b"new plain")

    def settled():
        server.check_alive()
        msgs = wharf.messages(data_dir)
        return len(msgs) == 2 and all(m["state"] in ("sent", "failed")
                                      for m in msgs) and msgs

    msgs = wait_until(settled, timeout=30, desc="both messages settled")
    server.stop()
    return out, {m["filename"]: m for m in msgs}


def test_m1_collision_rename(tmp_path, wharf, data_dir, start_server):
    out, msgs = run_collision(tmp_path, wharf, data_dir, start_server,
                              "rename")
    assert {n: m["state"] for n, m in msgs.items()} == {
        "invoice.edi": "sent", "plain": "sent"}
    assert listdir(out) == ["invoice.edi", "invoice_1.edi", "plain",
                            "plain_1", "plain_2"]
    assert (out / "invoice.edi").read_bytes() == b"the partner's existing file"
    assert (out / "invoice_1.edi").read_bytes() == b"new invoice"
    assert (out / "plain").read_bytes() == b"existing, no extension"
    assert (out / "plain_1").read_bytes() == b"existing too"
    assert (out / "plain_2").read_bytes() == b"new plain"


def test_m1_collision_fail(tmp_path, wharf, data_dir, start_server):
    out, msgs = run_collision(tmp_path, wharf, data_dir, start_server, "fail")
    assert {n: m["state"] for n, m in msgs.items()} == {
        "invoice.edi": "failed", "plain": "failed"}
    d = wharf.show(data_dir, msgs["invoice.edi"]["id"])
    hop = [h for h in d["hops"] if h["connector"] == "outbox"][0]
    assert hop["state"] == "failed"
    assert "invoice.edi" in hop["last_error"]
    assert "exists" in hop["last_error"], hop["last_error"]
    # a collision is permanent: failed at once, not retried
    assert hop["attempts"] == 1, hop
    # untouched, and no temp files left
    assert listdir(out) == ["invoice.edi", "plain", "plain_1"]
    assert (out / "invoice.edi").read_bytes() == b"the partner's existing file"
    assert (out / "plain").read_bytes() == b"existing, no extension"


def test_m1_collision_overwrite(tmp_path, wharf, data_dir, start_server):
    out, msgs = run_collision(tmp_path, wharf, data_dir, start_server,
                              "overwrite")
    assert {n: m["state"] for n, m in msgs.items()} == {
        "invoice.edi": "sent", "plain": "sent"}
    assert listdir(out) == ["invoice.edi", "plain", "plain_1"]
    assert (out / "invoice.edi").read_bytes() == b"new invoice"
    assert (out / "plain").read_bytes() == b"new plain"


def test_m1_growing_file_waits_until_stable(tmp_path, wharf, data_dir,
                                            start_server):
    recv, out = dirs(tmp_path, "in", "out")
    poll_ms = 100
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv, poll_ms=poll_ms),
         file_dest("outbox", out)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    server = start_server(data_dir)
    time.sleep(0.5)     # the flow is loaded and polled
    chunk = os.urandom(1024)
    path = recv / "big.dat"        # written in place, not via a temp name
    f = open(path, "wb")
    stop = threading.Event()
    written = []

    def grow():
        # a writer that appends every 10 ms, far more often than the
        # source polls (every 100 ms)
        while not stop.is_set():
            f.write(chunk)
            f.flush()
            written.append(chunk)
            time.sleep(0.01)

    writer = threading.Thread(target=grow, daemon=True)
    writer.start()
    try:
        start = time.monotonic()
        # more than 3 poll intervals: the file must stay where it is and no
        # message may exist
        while time.monotonic() - start < 6 * poll_ms / 1000:
            assert path.exists(), "a growing file was taken"
            assert wharf.messages(data_dir) == [], (
                "a message was made of a file still being written")
            server.check_alive()
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join()
    assert path.exists()
    assert wharf.messages(data_dir) == []
    f.write(b"THE END")
    f.close()
    written = b"".join(written) + b"THE END"
    wait_until(lambda: server.check_alive() and
               sent_count(wharf, data_dir) == 1, timeout=30,
               desc="the finished file delivered")
    server.stop()
    assert listdir(recv) == []
    assert listdir(out) == ["big.dat"]
    assert (out / "big.dat").read_bytes() == written
    msgs = wharf.messages(data_dir)
    assert len(msgs) == 1 and msgs[0]["size"] == len(written)


def test_m1_resend_of_a_sent_message_delivers_again(tmp_path, wharf,
                                                    data_dir, start_server):
    recv, out = dirs(tmp_path, "in", "out")
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", out)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    server = start_server(data_dir)
    drop_file(recv, "lost.edi", b"the partner lost this one")
    wait_until(lambda: server.check_alive() and
               sent_count(wharf, data_dir) == 1, timeout=30,
               desc="lost.edi sent")
    msgid = wharf.messages(data_dir)[0]["id"]
    os.unlink(out / "lost.edi")             # the partner lost it
    wharf.ok("message", "resend", "--data", data_dir, msgid)
    wait_until(lambda: server.check_alive() and (out / "lost.edi").exists(),
               timeout=30, desc="lost.edi delivered again")
    wait_until(lambda: wharf.show(data_dir, msgid)["state"] == "sent",
               timeout=30, desc="the message sent again")
    server.stop()
    assert (out / "lost.edi").read_bytes() == b"the partner lost this one"
    d = wharf.show(data_dir, msgid)
    texts = [e["text"] for e in d["events"]]
    assert sum("sent by outbox" in t for t in texts) == 2, texts
    assert any("resend" in t for t in texts), texts
    assert len(wharf.messages(data_dir)) == 1
