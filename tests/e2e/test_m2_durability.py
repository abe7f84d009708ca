"""
M2 (durability) and M3 (file connector) end to end: kill -9 during a run of
2,000 files, a destination that is unwritable for a while, and the retry
limit followed by a resend.
"""
import os
import random
import threading
import time
from collections import Counter

from conftest import (drop_file, file_dest, file_source, flow_doc, listdir,
                      sha256_bytes, sha256_file, wait_until)

NFILES = 2000


def test_m2_kill9_2000_files_exactly_once(tmp_path, wharf, data_dir,
                                          start_server):
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"random seed {seed}")
    rnd = random.Random(seed)
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir()
    send.mkdir()
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", send)],
        [("inbox", "outbox")]), tmp_path / "flow.json")

    # The files to drop: random sizes 0..8 KiB, random content.
    files = {}
    for i in range(NFILES):
        files[f"f{i:04d}.dat"] = os.urandom(rnd.randint(0, 8192))
    expected = {name: sha256_bytes(data) for name, data in files.items()}

    written = [0]
    failure = []

    def produce():
        try:
            for n, (name, data) in enumerate(files.items()):
                drop_file(recv, name, data)
                written[0] = n + 1
                if n % 20 == 19:
                    time.sleep(0.03)
        except Exception as e:          # reported by the main thread
            failure.append(e)
            written[0] = NFILES

    server = start_server(data_dir)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()

    # kill -9 at random points while the files are being dropped: one random
    # moment in each of 6 slices of the production.
    kills = 0
    bins = [(50 + k * 300, 50 + (k + 1) * 300) for k in range(6)]
    for lo, hi in bins:
        threshold = rnd.randrange(lo, hi)
        wait_until(lambda: written[0] >= threshold, timeout=120,
                   desc=f"the producer to write {threshold} files")
        time.sleep(rnd.uniform(0, 0.15))
        server.kill9()
        kills += 1
        server = start_server(data_dir)
    producer.join(timeout=120)
    assert not failure, f"producer failed: {failure[0]!r}"
    assert written[0] == NFILES

    # and once more while the deliveries are still going on
    target = rnd.randrange(1, NFILES)
    wait_until(lambda: server.check_alive() and (
               len(os.listdir(send)) >= target or not os.listdir(recv)),
               timeout=180,
               desc=f"{target} files delivered before the last kill")
    time.sleep(rnd.uniform(0, 0.3))
    server.kill9()
    kills += 1
    server = start_server(data_dir)
    assert kills >= 4

    def done():
        server.check_alive()
        if os.listdir(recv):
            return False
        if len([n for n in os.listdir(send) if not n.startswith(".")]) \
                < NFILES:
            return False
        msgs = wharf.messages(data_dir)
        return len(msgs) >= NFILES and all(m["state"] == "sent"
                                           for m in msgs)

    wait_until(done, timeout=300, interval=0.5,
               desc="every message sent and receive_dir empty")
    server.stop()

    # Every file in send_dir exactly once (no name_1 copies, no temp files
    # left), byte-identical; nothing left in receive_dir.
    assert listdir(recv) == []
    names = listdir(send)
    extra = sorted(set(names) - set(expected))
    missing = sorted(set(expected) - set(names))
    assert not extra, f"unexpected files in send_dir: {extra[:20]}"
    assert not missing, f"files never delivered: {missing[:20]}"
    bad = [n for n in names if sha256_file(send / n) != expected[n]]
    assert not bad, f"delivered files differ from the originals: {bad[:20]}"

    msgs = wharf.messages(data_dir)
    assert len(msgs) == NFILES, (
        f"{len(msgs)} messages for {NFILES} files (duplicates stored?)")
    assert Counter(m["state"] for m in msgs) == {"sent": NFILES}
    per_name = Counter(m["filename"] for m in msgs)
    assert set(per_name) == set(expected)
    assert max(per_name.values()) == 1
    assert all(m["sha256"] == expected[m["filename"]] for m in msgs)


def _hop(detail, connector):
    hops = [h for h in detail["hops"] if h["connector"] == connector]
    assert len(hops) == 1, detail["hops"]
    return hops[0]


def test_m2_unwritable_destination_retries_then_delivers(
        tmp_path, wharf, data_dir, start_server, unwritable):
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir()
    send.mkdir()
    retry = {"max_attempts": 100, "initial_ms": 200, "max_ms": 1000}
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", send, retry=retry)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    files = {f"doc{i:02d}.xml": os.urandom(100 + 37 * i) for i in range(20)}
    server = start_server(data_dir)
    lock = unwritable(send)
    lock.on()
    try:
        for name, data in files.items():
            drop_file(recv, name, data)
        wait_until(lambda: len(wharf.messages(data_dir)) == 20, timeout=60,
                   desc="20 messages stored")
        wait_until(lambda: not os.listdir(recv), timeout=30,
                   desc="receive_dir empty")
        ids = [m["id"] for m in wharf.messages(data_dir)]

        # Every message is observed retrying, with attempts >= 2 and the
        # error in its hop and in its events.
        seen = set()

        def all_retrying():
            for msgid in ids:
                if msgid in seen:
                    continue
                d = wharf.show(data_dir, msgid)
                h = _hop(d, "outbox")
                texts = " ".join(e["text"] for e in d["events"])
                if (h["attempts"] >= 2 and h["state"] == "retrying"
                        and d["state"] == "retrying"
                        and h["last_error"]
                        and "send_dir" in h["last_error"]
                        and "will retry" in texts
                        and "send_dir" in texts):
                    seen.add(msgid)
            return len(seen) == len(ids)

        wait_until(all_retrying, timeout=90, interval=0.2,
                   desc="all 20 messages retrying with attempts >= 2")
        if lock.mode == "chattr":
            assert listdir(send) == [], "files written into a locked folder"
    finally:
        lock.off()

    def all_sent():
        msgs = wharf.messages(data_dir)
        return len(msgs) == 20 and all(m["state"] == "sent" for m in msgs)

    wait_until(all_sent, timeout=60, desc="all 20 messages sent")
    server.stop()
    assert listdir(send) == sorted(files)
    for name, data in files.items():
        assert sha256_file(send / name) == sha256_bytes(data), name
    msgs = wharf.messages(data_dir)
    assert len(msgs) == 20
    for m in msgs:
        h = _hop(wharf.show(data_dir, m["id"]), "outbox")
        assert h["state"] == "sent" and h["attempts"] >= 3, h


def test_m2_retry_limit_fails_then_resend_delivers(
        tmp_path, wharf, data_dir, start_server, unwritable):
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir()
    send.mkdir()
    retry = {"max_attempts": 2, "initial_ms": 100, "max_ms": 200}
    wharf.import_flow(data_dir, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", send, retry=retry)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    payload = os.urandom(3000)
    server = start_server(data_dir)
    lock = unwritable(send)
    lock.on()
    try:
        drop_file(recv, "order.edi", payload)
        msgs = wait_until(lambda: wharf.messages(data_dir, "failed"),
                          timeout=60, desc="the message to fail")
        assert len(msgs) == 1
        msgid = msgs[0]["id"]
        d = wharf.show(data_dir, msgid)
        h = _hop(d, "outbox")
        assert d["state"] == "failed"
        assert h["state"] == "failed" and h["attempts"] == 2, h
        assert "send_dir" in h["last_error"]
        assert "2 attempts" in h["last_error"], h["last_error"]
        assert any(e["level"] == "error" and "failed" in e["text"]
                   for e in d["events"]), d["events"]
        # a failed message stays failed: no more attempts
        time.sleep(1.0)
        assert _hop(wharf.show(data_dir, msgid), "outbox")["attempts"] == 2
    finally:
        lock.off()
    assert listdir(send) == []

    r = wharf.ok("message", "resend", "--data", data_dir, msgid)
    assert msgid in r.stdout
    wait_until(lambda: wharf.show(data_dir, msgid)["state"] == "sent",
               timeout=60, desc="the resent message to be sent")
    server.stop()
    assert listdir(send) == ["order.edi"]
    assert (send / "order.edi").read_bytes() == payload
    d = wharf.show(data_dir, msgid)
    assert _hop(d, "outbox")["state"] == "sent"
    texts = [e["text"] for e in d["events"]]
    i_resend = [i for i, t in enumerate(texts) if "resend" in t]
    assert i_resend, texts
    assert any("sent by outbox" in t for t in texts[i_resend[0]:]), texts
