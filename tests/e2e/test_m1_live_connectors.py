"""M1 (flows; the isolation issue's step 4): one live instance of each
connector per flow generation, shared by the engine's workers, its poller
and the partner listener's routes, swapped at a flow reload and closed
when its last user lets go.

An AS2 pair exchanges messages both ways, with asynchronous MDNs, so B's
as2 connector is used by the partner route (A's message and A's MDN come
in through it), by a worker (B's own message goes out through it) and by
a job (the MDN B owes). B logs at debug when a connector opens and when a
generation is closed: each connector opens once per generation, whatever
used it; a flow import opens each once more (generation 2) and closes
generation 1. (Before, the routes kept their own opened copy: as2-a was
opened twice per generation.)
"""
import json
import re

from as2_pair import import_doc, pair, start_pair, wait_generation
from conftest import drop_file, tune_conf, wait_until


def opened(side, conn, gen):
    return len(re.findall(rf"connector {conn} \(\w+\) opened for flow "
                          rf"generation {gen}\b", side.log()))


def arrived(side, name):
    p = side.inbox / name
    return p.exists() and not any(side.inbox.glob(f".{name}*"))


def sent_all(wharf, side):
    msgs = wharf.messages(side.data)
    return msgs and all(m["state"] in ("sent", "received") for m in msgs)


def test_m1_one_live_connector_per_generation(tmp_path, wharf, start_server):
    a, b = pair(wharf, tmp_path, {"mdn": "async"}, {"mdn": "async"})
    tune_conf(b.data, log_level="debug")
    start_pair((a, b), start_server)
    drop_file(a.outbox, "a-to-b.edi", b"from A\n")
    drop_file(b.outbox, "b-to-a.edi", b"from B\n")
    wait_until(lambda: arrived(b, "a-to-b.edi") and arrived(a, "b-to-a.edi"),
               timeout=60, desc="both files across")
    wait_until(lambda: sent_all(wharf, a) and sent_all(wharf, b),
               timeout=60, desc="both sides' MDNs checked")
    for conn in ("outbox", "as2-a", "inbox"):
        assert opened(b, conn, 1) == 1, (conn, b.log()[-3000:])

    # a new generation: each connector opens once more, the old
    # generation is closed once its users let go
    doc = json.loads((b.dir / "flow.json").read_text())
    doc["connectors"][1]["config"]["subject"] = "generation two"
    gen = import_doc(wharf, b, doc)
    wait_generation(b, gen)
    wait_until(lambda: "flow generation 1 closed" in b.log(), timeout=30,
               desc="generation 1 closed")
    drop_file(a.outbox, "again.edi", b"from A again\n")
    wait_until(lambda: arrived(b, "again.edi"), timeout=60,
               desc="a file through generation 2")
    for conn in ("outbox", "as2-a", "inbox"):
        assert opened(b, conn, 1) == 1 and opened(b, conn, gen) == 1, \
            (conn, b.log()[-3000:])
    assert b.log().count("flow generation 1 closed") == 1
    for s in (a, b):
        s.server.stop()
