"""
R15 (envelope encryption at rest) end to end: a tampered payload file fails
its message with a clear error while the others are delivered; key rotation
re-wraps headers only and retires the old key; serve refuses a keystore
that others can read.
"""
import os
import re
import stat

import pytest

from conftest import (file_dest, file_source, flow_doc, listdir, sha256_bytes,
                      sha256_file, wait_until)

HEADER_LEN = 92             # vault/payload.c: payload file header
SEGMENT = 64 * 1024 + 16    # sealed segment: 64 KiB ciphertext + GCM tag


def payload_path(data, msgid):
    found = list((data / "payloads").glob(f"*/{msgid}.wpay"))
    assert len(found) == 1, f"payload file of {msgid}: {found}"
    return found[0]


def read_keystore(data):
    keys = {}
    for line in (data / "keystore").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "master":
            keys[parts[1]] = (parts[2], parts[3])
    return keys


def queued_messages(tmp_path, wharf, data, n, size):
    """A file->file flow and n messages stored with `wharf send` (no server
    running, so nothing is delivered yet). Returns (send_dir,
    {id: (file name, bytes)})."""
    recv, send = tmp_path / "in", tmp_path / "out"
    recv.mkdir()
    send.mkdir()
    wharf.import_flow(data, flow_doc(
        [file_source("inbox", recv), file_dest("outbox", send)],
        [("inbox", "outbox")]), tmp_path / "flow.json")
    src = tmp_path / "src"
    src.mkdir()
    msgs = {}
    for i in range(n):
        body = os.urandom(size + i)
        f = src / f"invoice{i}.edi"
        f.write_bytes(body)
        msgs[wharf.send(data, "inbox", f)] = (f.name, body)
    queued = {m["id"] for m in wharf.messages(data, "queued")}
    assert queued == set(msgs)
    return send, msgs


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        assert len(b) == 1
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


@pytest.mark.parametrize("damage", ["flip_first_segment",
                                    "flip_third_segment", "flip_header",
                                    "truncate", "append",
                                    "swap_with_other_message"])
def test_r15_tampered_payload_fails_only_its_message(
        tmp_path, wharf, data_dir, start_server, damage):
    # 3 segments each (150 KiB+), so a damage in a later segment comes after
    # plaintext that did verify: none of it may reach send_dir.
    send, msgs = queued_messages(tmp_path, wharf, data_dir, 5, 150 * 1024)
    victim = sorted(msgs)[2]
    p = payload_path(data_dir, victim)
    size = p.stat().st_size
    assert size > HEADER_LEN + 2 * SEGMENT
    if damage == "flip_first_segment":
        flip_byte(p, 300)
    elif damage == "flip_third_segment":
        flip_byte(p, HEADER_LEN + 2 * SEGMENT + 10)
    elif damage == "flip_header":
        flip_byte(p, 50)        # inside the wrapped data key
    elif damage == "swap_with_other_message":
        other = payload_path(data_dir, sorted(msgs)[1])
        p.write_bytes(other.read_bytes())
    elif damage == "truncate":
        os.truncate(p, HEADER_LEN + SEGMENT + 1000)
    else:
        with open(p, "ab") as f:
            f.write(os.urandom(64))

    server = start_server(data_dir)

    def settled():
        server.check_alive()
        states = {m["id"]: m["state"] for m in wharf.messages(data_dir)}
        return all(s in ("sent", "failed") for s in states.values()) and states

    states = wait_until(settled, timeout=60, desc="every message sent or failed")
    server.stop()
    assert states[victim] == "failed", states
    assert all(s == "sent" for i, s in states.items() if i != victim), states

    d = wharf.show(data_dir, victim)
    hop = [h for h in d["hops"] if h["connector"] == "outbox"][0]
    err = hop["last_error"]
    assert victim in err, f"error does not name the message: {err}"
    assert re.search(r"segment|tamper|corrupt", err, re.I), err
    assert any(victim in e["text"] and e["level"] == "error"
               for e in d["events"]), d["events"]

    # The others arrived intact; of the victim there is no file at all, not
    # even a partial or temporary one.
    names = listdir(send)
    assert names == sorted(n for i, (n, _) in msgs.items() if i != victim)
    for msgid, (name, body) in msgs.items():
        if msgid != victim:
            assert sha256_file(send / name) == sha256_bytes(body), name
    assert not any(n.endswith(".tmp") or n.startswith(".") for n in
                   os.listdir(send))


def test_r15_key_rotate_rewraps_headers_only(tmp_path, wharf, data_dir,
                                             start_server):
    send, msgs = queued_messages(tmp_path, wharf, data_dir, 4, 70 * 1024)
    old_keys = read_keystore(data_dir)
    assert len(old_keys) == 1
    old_id = next(iter(old_keys))
    before = {i: payload_path(data_dir, i).read_bytes() for i in msgs}
    for blob in before.values():
        assert blob[9:25].decode() == old_id

    r = wharf.ok("key", "rotate", "--data", data_dir)
    new_keys = read_keystore(data_dir)
    assert old_id not in new_keys, "old master key still in the keystore"
    assert old_id not in (data_dir / "keystore").read_text()
    assert len(new_keys) == 1
    new_id, (new_hex, new_state) = next(iter(new_keys.items()))
    assert new_state == "active"
    assert new_hex != old_keys[old_id][0]
    assert new_id in r.stdout
    assert stat.S_IMODE((data_dir / "keystore").stat().st_mode) == 0o600

    for i, blob in before.items():
        after = payload_path(data_dir, i).read_bytes()
        assert len(after) == len(blob)
        assert after[HEADER_LEN:] == blob[HEADER_LEN:], (
            "payload bytes after the header changed")
        assert after[9:25].decode() == new_id
        assert after[:HEADER_LEN] != blob[:HEADER_LEN]

    server = start_server(data_dir)
    wait_until(lambda: server.check_alive() and
               len(wharf.messages(data_dir, "sent")) == len(msgs),
               timeout=60, desc="all messages delivered after rotation")
    server.stop()
    assert listdir(send) == sorted(n for n, _ in msgs.values())
    for name, body in msgs.values():
        assert (send / name).read_bytes() == body


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_r15_serve_refuses_keystore_readable_by_others(wharf, data_dir, mode):
    ks = data_dir / "keystore"
    before = ks.read_bytes()
    os.chmod(ks, mode)
    p = wharf("serve", "--data", data_dir, timeout=30)
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert f"{mode:o}" in lines[0] and "chmod" in lines[0], lines[0]
    assert "keystore" in lines[0]
    assert ks.read_bytes() == before
    assert stat.S_IMODE(ks.stat().st_mode) == mode, "serve changed the mode"
    # the same for the other commands that open the keystore
    p = wharf("message", "list", "--data", data_dir)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr


@pytest.mark.parametrize("wrong", ["same_id_other_key", "foreign_keystore"])
def test_r15_wrong_master_key_fails_clearly_then_resend_delivers(
        tmp_path, wharf, data_dir, start_server, wrong):
    send, msgs = queued_messages(tmp_path, wharf, data_dir, 3, 1000)
    ks = data_dir / "keystore"
    good = ks.read_bytes()
    (key_id, (key_hex, state)), = read_keystore(data_dir).items()
    if wrong == "same_id_other_key":
        ks.write_bytes(good.replace(key_hex.encode(),
                                    os.urandom(32).hex().encode()))
    else:
        other = tmp_path / "other-data"
        wharf.init(other)
        ks.write_bytes((other / "keystore").read_bytes())
    os.chmod(ks, 0o600)
    server = start_server(data_dir)
    wait_until(lambda: server.check_alive() and
               len(wharf.messages(data_dir, "failed")) == 3, timeout=60,
               desc="every message failed under the wrong key")
    server.stop()
    assert listdir(send) == []
    for msgid in msgs:
        hop = [h for h in wharf.show(data_dir, msgid)["hops"]
               if h["connector"] == "outbox"][0]
        assert msgid in hop["last_error"], hop["last_error"]
        assert "master key" in hop["last_error"], hop["last_error"]

    # the right key back: a resend delivers everything, intact
    ks.write_bytes(good)
    os.chmod(ks, 0o600)
    for msgid in msgs:
        wharf.ok("message", "resend", "--data", data_dir, msgid)
    server = start_server(data_dir)
    wait_until(lambda: server.check_alive() and
               len(wharf.messages(data_dir, "sent")) == 3, timeout=60,
               desc="every message sent after the resend")
    server.stop()
    assert listdir(send) == sorted(n for n, _ in msgs.values())
    for name, body in msgs.values():
        assert (send / name).read_bytes() == body
