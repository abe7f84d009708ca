"""
R9 (data stays home; retention and erasure), with the real binary:

  - `wharf message purge --before DATE`: a dry run counts and changes
    nothing; the real purge deletes the finished messages' rows (message,
    hops, events, receipts) and crypto-shreds their payloads (the header
    holding the wrapped data key is overwritten before the file goes: a
    hard link made beforehand, standing for the blocks left on disk, keeps
    only zeros where the key was), keeps a message under a legal hold, and
    is audited with the counts; erasure of a held message is refused;
  - serve's purge job applies each connector's retention_days, else
    wharf.conf's, and audits as "system";
  - the same through the API (hold, dry run, purge, erase) with the roles
    that may and may not;
  - erasure of all of one partner's messages (GDPR) over a real AS2 pair:
    the partner's messages erased, another flow's message untouched, a held
    one kept, audited with the counts.
"""
import json
import os
import sqlite3
import time
from pathlib import Path

from conftest import (file_dest, file_source, flow_doc, listen_port,
                      tune_conf, wait_until)
from test_r14_api import Api, cli_token

import as2_pair

HEADER = 92         # vault payload header: magic ... wrapped data key
DAY_MS = 86400000


def db_rows(data, sql, *args):
    db = sqlite3.connect(str(Path(data) / "wharf.db"), timeout=30)
    try:
        rows = db.execute(sql, args).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def payload_path(data, msgid):
    [(p,)] = db_rows(data, "SELECT payload_path FROM messages WHERE id = ?",
                     msgid)
    return Path(data) / p


def rows_of(data, msgid):
    """How many rows of each table still name the message."""
    return {t: db_rows(data, f"SELECT COUNT(*) FROM {t} WHERE {c} = ?",
                       msgid)[0][0]
            for t, c in (("messages", "id"), ("hops", "message_id"),
                         ("events", "message_id"),
                         ("receipts", "message_id"))}


def audit(wharf, data):
    return json.loads(wharf.ok("audit", "list", "--json", "--limit",
                               "100000", "--data", data).stdout)


def local_flow(wharf, tmp_path, data, name="inbox", **cfg):
    recv, out = tmp_path / f"{name}-in", tmp_path / f"{name}-out"
    recv.mkdir()
    out.mkdir()
    return (file_source(name, recv, **cfg), file_dest(f"{name}-dest", out),
            (name, f"{name}-dest"))


def send_and_deliver(wharf, data, server, connector, n, tmp_path, tag):
    ids = []
    for i in range(n):
        f = tmp_path / f"{tag}-{i}.edi"
        f.write_bytes(f"UNB+{tag}+{i}'\n".encode() * 50)
        ids.append(wharf.send(data, connector, f))

    def all_sent():
        server.check_alive()
        return all(m["state"] == "sent" for m in wharf.messages(data)
                   if m["id"] in ids)
    wait_until(all_sent, timeout=60, desc=f"{n} messages of {connector} sent")
    return ids


def test_r09_purge_dry_run_legal_hold_and_crypto_shredding(
        wharf, data_dir, start_server, tmp_path):
    src, dst, link = local_flow(wharf, tmp_path, data_dir)
    wharf.import_flow(data_dir, flow_doc([src, dst], [link]),
                      tmp_path / "flow.json")
    server = start_server(data_dir)
    server.wait_listening()
    held, m2, m3 = send_and_deliver(wharf, data_dir, server, "inbox", 3,
                                    tmp_path, "a")
    server.stop()

    wharf.ok("message", "hold", "--data", data_dir, "--reason",
             "case 4711: keep", held)
    again = wharf.ok("message", "hold", "--data", data_dir, held)
    assert "already under a legal hold" in again.stdout
    files = {m: payload_path(data_dir, m) for m in (held, m2, m3)}
    link2 = tmp_path / "m2-blocks"
    link2.hardlink_to(files[m2])          # what stays on disk after unlink
    assert link2.read_bytes()[:HEADER] != bytes(HEADER)

    def snapshot():
        return (sorted(m["id"] for m in wharf.messages(data_dir)),
                sorted(str(p) for p in (data_dir / "payloads").rglob("*")),
                len(audit(wharf, data_dir)),
                [rows_of(data_dir, m) for m in (held, m2, m3)])
    before = snapshot()

    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    dry = json.loads(wharf.ok("message", "purge", "--data", data_dir,
                              "--before", tomorrow, "--dry-run",
                              "--json").stdout)
    assert (dry["dry_run"], dry["messages"], dry["held"]) == (True, 2, 1), dry
    assert dry["bytes"] == 2 * len("UNB+a+0'\n") * 50, dry
    assert snapshot() == before, "a dry run changed something"
    text = wharf.ok("message", "purge", "--data", data_dir, "--before",
                    tomorrow, "--dry-run").stdout
    assert "would purge 2 message(s)" in text and "1 kept under a legal hold" \
        in text, text

    r = json.loads(wharf.ok("message", "purge", "--data", data_dir,
                            "--before", tomorrow, "--json").stdout)
    assert (r["messages"], r["held"], r["shredded"], r["failed"]) == \
        (2, 1, 2, 0), r
    assert [m["id"] for m in wharf.messages(data_dir)] == [held]
    for m in (m2, m3):
        assert rows_of(data_dir, m) == {"messages": 0, "hops": 0,
                                        "events": 0, "receipts": 0}, m
        assert not files[m].exists(), files[m]
    assert rows_of(data_dir, held)["messages"] == 1
    assert files[held].exists()
    # crypto-shredding: where the wrapped data key was, only zeros remain
    blocks = link2.read_bytes()
    assert blocks[:HEADER] == bytes(HEADER), blocks[:HEADER].hex()
    assert len(blocks) > HEADER
    assert files[held].read_bytes()[:HEADER] != bytes(HEADER)

    entries = audit(wharf, data_dir)
    purges = [e for e in entries if e["action"] == "retention.purge"]
    assert len(purges) == 1, purges          # the dry run is not audited
    assert "purged=2 " in purges[0]["detail"], purges
    assert "held_kept=1" in purges[0]["detail"], purges
    assert any(e["action"] == "message.hold" and e["target"] == held and
               "case 4711" in e["detail"] for e in entries)

    # a held message is not erased either; lifted, it goes
    p = wharf("message", "erase", "--data", data_dir, held)
    assert p.returncode == 1 and "legal hold" in p.stderr, p
    assert files[held].exists()
    wharf.ok("message", "unhold", "--data", data_dir, held)
    p = wharf("message", "unhold", "--data", data_dir, held)
    assert p.returncode == 1 and "not under a legal hold" in p.stderr
    r = json.loads(wharf.ok("message", "purge", "--data", data_dir,
                            "--before", tomorrow, "--json").stdout)
    assert (r["messages"], r["held"]) == (1, 0), r
    assert wharf.messages(data_dir) == []
    assert not files[held].exists()
    assert list((data_dir / "payloads").rglob("*.wpay")) == []
    ok = wharf.ok("audit", "verify", "--data", data_dir)
    assert ok.returncode == 0


def test_r09_purge_killed_before_shredding_finishes_at_the_next_purge(
        wharf, data_dir, start_server, tmp_path, monkeypatch):
    src, dst, link = local_flow(wharf, tmp_path, data_dir)
    wharf.import_flow(data_dir, flow_doc([src, dst], [link]),
                      tmp_path / "flow.json")
    server = start_server(data_dir)
    server.wait_listening()
    m1, m2 = send_and_deliver(wharf, data_dir, server, "inbox", 2, tmp_path,
                              "k")
    server.stop()
    files = {m: payload_path(data_dir, m) for m in (m1, m2)}
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    # kill -9 before the second file is shredded: the rows are gone (one
    # transaction), one file is shredded, the other still listed
    monkeypatch.setenv("WHARF_FAULT", "retention.shred:2")
    p = wharf("message", "purge", "--data", data_dir, "--before", tomorrow)
    monkeypatch.delenv("WHARF_FAULT")
    assert p.returncode == -9, p
    assert wharf.messages(data_dir) == []
    left = [m for m in (m1, m2) if files[m].exists()]
    assert len(left) == 1, left
    assert files[left[0]].read_bytes()[:HEADER] != bytes(HEADER)
    assert db_rows(data_dir, "SELECT message_id FROM purge_pending") == \
        [(left[0],)]
    # the next purge (here serve's job) shreds it first
    tune_conf(data_dir, purge_interval_seconds=1)
    server = start_server(data_dir)
    server.wait_listening()
    # (the file goes first, then its line in purge_pending)
    wait_until(lambda: not files[left[0]].exists() and db_rows(
        data_dir, "SELECT COUNT(*) FROM purge_pending") == [(0,)],
               timeout=30, desc="the listed payload shredded")
    server.stop()
    purges = [e for e in audit(wharf, data_dir)
              if e["action"] == "retention.purge"]
    assert purges and purges[-1]["actor"] == "system" and \
        "shredded=1 " in purges[-1]["detail"] and \
        "resumed=1 " in purges[-1]["detail"], purges
    assert wharf.ok("audit", "verify", "--data", data_dir).returncode == 0


def test_m2_serve_shreds_payload_files_no_message_names(
        wharf, data_dir, start_server, tmp_path):
    """A node killed between writing a payload and committing its message
    leaves a file no message names: serve's purge, in its sandbox,
    shreds it once it is six hours old (says so in its log, audits it as
    payload.sweep); the payload of a stored message of the same age
    stays."""
    files = tmp_path / "files"
    files.mkdir()
    tune_conf(data_dir, allowed_paths=files)
    src, dst, link = local_flow(wharf, files, data_dir)
    wharf.import_flow(data_dir, flow_doc([src, dst], [link]),
                      tmp_path / "flow.json")
    server = start_server(data_dir)
    server.wait_listening()
    kept, gone = send_and_deliver(wharf, data_dir, server, "inbox", 2,
                                  tmp_path, "o")
    server.stop()
    paths = {m: payload_path(data_dir, m) for m in (kept, gone)}
    for sql in ("DELETE FROM events WHERE message_id = ?",
                "DELETE FROM hops WHERE message_id = ?",
                "DELETE FROM messages WHERE id = ?"):
        db_rows(data_dir, sql, gone)        # its commit never happened
    aged = time.time() - 7 * 3600
    for p in paths.values():
        os.utime(p, (aged, aged))
    # a file written 7 hours ago lies in that UTC day's folder (the sweep
    # passes over a day that began after its cut-off: left in today's, the
    # orphan would stay from midnight UTC to six)
    day = paths[gone].parent.parent / time.strftime("%Y%m%d",
                                                   time.gmtime(aged))
    day.mkdir(mode=0o700, exist_ok=True)
    paths[gone] = paths[gone].rename(day / paths[gone].name)
    tune_conf(data_dir, purge_interval_seconds=1)
    server = start_server(data_dir)
    server.wait_listening()
    wait_until(lambda: server.check_alive() and not paths[gone].exists(),
               timeout=30, desc="the orphan payload shredded")
    assert paths[kept].exists()
    assert f"shredded: no message {gone}" in server.stdout() + \
        server.stderr()
    wharf.ok("message", "show", "--data", data_dir, kept)
    server.stop()
    sweeps = [e for e in audit(wharf, data_dir)
              if e["action"] == "payload.sweep"]
    assert len(sweeps) == 1 and sweeps[0]["actor"] == "system" and \
        sweeps[0]["detail"] == "removed=1", sweeps


def test_r09_serve_purges_by_each_connectors_retention(
        wharf, data_dir, start_server, tmp_path):
    # the flows' folders away from the data dir, as installed: serve's
    # sandbox (Landlock) then lets the purge touch only DIR/payloads and
    # the database, and it must still shred and unlink there
    files = tmp_path / "files"
    files.mkdir()
    tune_conf(data_dir, allowed_paths=files)
    short = local_flow(wharf, files, data_dir, "short", retention_days=2)
    keep = local_flow(wharf, files, data_dir, "keep", retention_days=0)
    deflt = local_flow(wharf, files, data_dir, "default")
    doc = flow_doc([short[0], short[1], keep[0], keep[1], deflt[0],
                    deflt[1]], [short[2], keep[2], deflt[2]])
    wharf.import_flow(data_dir, doc, tmp_path / "flow.json")
    tune_conf(data_dir, retention_days=10, purge_interval_seconds=1)
    server = start_server(data_dir)
    server.wait_listening()
    s_ids = send_and_deliver(wharf, data_dir, server, "short", 2, tmp_path,
                             "s")
    k_ids = send_and_deliver(wharf, data_dir, server, "keep", 1, tmp_path,
                             "k")
    d_ids = send_and_deliver(wharf, data_dir, server, "default", 1,
                             tmp_path, "d")
    wharf.ok("message", "hold", "--data", data_dir, s_ids[1])
    # nothing has expired yet: a few purge rounds change nothing
    time.sleep(2.5)
    assert len(wharf.messages(data_dir)) == 4
    # five days pass for every message: over short's 2 days, under the
    # default 10; keep's 0 is for ever
    db_rows(data_dir, "UPDATE messages SET created_at = created_at - ?",
            5 * DAY_MS)
    wait_until(lambda: s_ids[0] not in [m["id"] for m in
                                        wharf.messages(data_dir)],
               timeout=30, desc="the purge job took short's message")
    left = sorted(m["id"] for m in wharf.messages(data_dir))
    assert left == sorted([s_ids[1]] + k_ids + d_ids), left
    entries = [e for e in audit(wharf, data_dir)
               if e["action"] == "retention.purge"]
    assert entries and entries[0]["actor"] == "system", entries
    assert "purged=1 " in entries[0]["detail"]
    assert "held_kept=1" in entries[0]["detail"]
    assert "shredded=1 failed=0" in entries[0]["detail"], entries[0]
    # fifteen days: over the default too
    db_rows(data_dir, "UPDATE messages SET created_at = created_at - ?",
            10 * DAY_MS)
    wait_until(lambda: d_ids[0] not in [m["id"] for m in
                                        wharf.messages(data_dir)],
               timeout=30, desc="the purge job took default's message")
    left = sorted(m["id"] for m in wharf.messages(data_dir))
    assert left == sorted([s_ids[1]] + k_ids), left
    server.check_alive()
    server.stop()


def test_r09_retention_through_the_api(wharf, data_dir, start_server,
                                       tmp_path):
    src, dst, link = local_flow(wharf, tmp_path, data_dir)
    wharf.import_flow(data_dir, flow_doc([src, dst], [link]),
                      tmp_path / "flow.json")
    adm, adm_id = cli_token(wharf, data_dir, "admin")
    tokens = {r: cli_token(wharf, data_dir, r)[0]
              for r in ("operator", "auditor", "viewer")}
    server = start_server(data_dir)
    admin_port, _ = server.wait_listening()
    api = Api(admin_port)
    a, b = send_and_deliver(wharf, data_dir, server, "inbox", 2, tmp_path,
                            "api")
    # only administrators decide what is kept and what goes
    for role, tok in tokens.items():
        for method, path, body in (
                ("POST", f"/api/v1/messages/{a}/hold", {"reason": "x"}),
                ("DELETE", f"/api/v1/messages/{a}/hold", None),
                ("POST", "/api/v1/messages/purge", {"dry_run": True}),
                ("POST", f"/api/v1/messages/{a}/erase", None)):
            r = api.request(method, path, body=body, token=tok)
            assert r.status == 403 and r.code() == "forbidden", (role, r)
    r = api.ok("POST", f"/api/v1/messages/{a}/hold", token=adm,
               body={"reason": "litigation 7"})
    assert r.json() == {"status": "held", "already": False}
    r = api.request("POST", f"/api/v1/messages/{a}/erase", token=adm)
    assert r.status == 409 and r.code() == "legal_hold", r
    hold = api.ok("GET", f"/api/v1/messages/{a}",
                  token=tokens["viewer"]).json()["legal_hold"]
    assert hold["actor"] == f"token:{adm_id}" and \
        hold["reason"] == "litigation 7", hold
    assert api.ok("GET", f"/api/v1/messages/{b}", token=adm).json()[
        "legal_hold"] is None
    text = wharf.ok("message", "show", "--data", data_dir, a).stdout
    assert "legal hold: since" in text and "litigation 7" in text, text
    r = api.request("POST", "/api/v1/messages/purge", token=adm,
                    body={"before": "yesterday"})
    assert r.status == 400 and r.code() == "invalid", r
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    dry = api.ok("POST", "/api/v1/messages/purge", token=adm,
                 body={"before": tomorrow, "dry_run": True}).json()
    assert (dry["messages"], dry["held"], dry["dry_run"]) == (1, 1, True)
    assert len(wharf.messages(data_dir)) == 2
    done = api.ok("POST", "/api/v1/messages/purge", token=adm,
                  body={"before": tomorrow}).json()
    assert (done["messages"], done["held"], done["shredded"]) == (1, 1, 1)
    assert [m["id"] for m in wharf.messages(data_dir)] == [a]
    api.ok("DELETE", f"/api/v1/messages/{a}/hold", token=adm)
    r = api.request("DELETE", f"/api/v1/messages/{a}/hold", token=adm)
    assert r.status == 404, r
    e = api.ok("POST", f"/api/v1/messages/{a}/erase", token=adm).json()
    assert e["status"] == "erased" and e["bytes"] > 0, e
    assert wharf.show(data_dir, a)["state"] == "erased"
    got = [(x["action"], x["actor"], x["target"], x["detail"])
           for x in audit(wharf, data_dir)]
    actor = f"token:{adm_id}"
    assert ("message.hold", actor, a, "litigation 7") in got, got
    assert ("message.unhold", actor, a, None) in got, got
    assert any(g[0] == "retention.purge" and g[1] == actor and
               "purged=1 " in g[3] and "held_kept=1" in g[3] for g in got)
    assert ("message.erase", actor, a, f"bytes={e['bytes']}") in got, got
    server.check_alive()
    server.stop()


def test_r09_erase_every_message_of_a_partner(wharf, start_server, tmp_path):
    a, b = as2_pair.pair(wharf, tmp_path)
    # beside the AS2 flow, a local flow whose message is nobody's partner's
    doc = as2_pair.settings_doc(a, b)
    src, dst, link = local_flow(wharf, a.dir, a.data, "local")
    doc["connectors"] += [src, dst]
    doc["links"].append(list(link))
    as2_pair.import_doc(wharf, a, doc)
    as2_pair.start_pair((a, b), start_server)
    for i in range(3):                       # A -> B over AS2
        f = a.outbox / f"order-{i}.edi"
        f.write_bytes(b"UNH+1+ORDERS:D:96A:UN'\n" * 20)
    wait_until(lambda: len(list(b.inbox.iterdir())) == 3, timeout=90,
               desc="three messages A -> B")
    (b.outbox / "invoice.edi").write_bytes(b"UNH+2+INVOIC'\n" * 20)
    wait_until(lambda: len(list(a.inbox.iterdir())) == 1, timeout=90,
               desc="one message B -> A")
    local = send_and_deliver(wharf, a.data, a.server, "local", 1, tmp_path,
                             "l")[0]
    msgs = wharf.messages(a.data)
    theirs = [m["id"] for m in msgs if m["id"] != local]
    assert len(theirs) == 4, msgs
    wait_until(lambda: all(m["state"] in ("sent", "received") for m in
                           wharf.messages(a.data)), timeout=60,
               desc="every message finished")
    held = theirs[0]
    wharf.ok("message", "hold", "--data", a.data, held, "--reason", "audit")
    paths = {m: payload_path(a.data, m) for m in theirs + [local]}

    p = wharf("partner", "erase", "--data", a.data, "nobody")
    assert p.returncode == 1 and "no partner named" in p.stderr, p
    p = wharf.ok("partner", "erase", "--data", a.data, b.name)
    assert "erased 3 message(s) of partner b" in p.stdout, p.stdout
    assert "1 kept under a legal hold" in p.stdout
    states = {m["id"]: m["state"] for m in wharf.messages(a.data)}
    for m in theirs[1:]:
        assert states[m] == "erased", (m, states)
        assert not paths[m].exists()
    assert states[held] != "erased" and paths[held].exists()
    assert states[local] == "sent" and paths[local].exists()
    [entry] = [e for e in audit(wharf, a.data)
               if e["action"] == "partner.erase"]
    assert entry["target"] == "b" and entry["actor"] == "cli"
    assert "erased=3 " in entry["detail"] and "held_kept=1" in \
        entry["detail"] and "connectors=as2-b" in entry["detail"], entry
    # and the API, as an administrator: nothing left to erase but the held
    adm = cli_token(wharf, a.data, "admin")[0]
    api = Api(listen_port(a.data, "admin"))
    r = api.ok("POST", "/api/v1/partners/b/erase", token=adm).json()
    assert (r["messages"], r["held"]) == (0, 1), r
    r = api.request("POST", "/api/v1/partners/nobody/erase", token=adm)
    assert r.status == 404, r
    for s in (a, b):
        s.server.check_alive()
        s.server.stop()
