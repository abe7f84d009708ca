"""Two Wharf instances that trade over AS2 on 127.0.0.1 (partner A sends,
partner B receives), for the M4 tests and the two-partner example: keys
made with the openssl CLI, each side's flow document naming the other as
its partner, both servers started by the test."""
import json
import re
import subprocess
from pathlib import Path

from conftest import (conf_value, file_dest, file_source, listen_port,
                      new_data_dir, wait_until)


def ossl(*args, cwd):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd,
                       capture_output=True, timeout=120)
    assert p.returncode == 0, f"openssl {args}: {p.stderr!r}"
    return p.stdout


def as2_keys(d, name, bits=2048, days=365):
    """A self-signed RSA certificate and key, as AS2 partners use."""
    ossl("req", "-x509", "-newkey", f"rsa:{bits}", "-nodes", "-days", days,
         "-subj", f"/CN={name}/O=Wharf test", "-keyout", f"{name}.key",
         "-out", f"{name}.pem", cwd=d)
    (Path(d) / f"{name}.key").chmod(0o600)
    return Path(d) / f"{name}.pem", Path(d) / f"{name}.key"


class Side:
    def __init__(self, wharf, root, name, **conf):
        self.name = name
        self.dir = Path(root) / name
        self.dir.mkdir(parents=True)
        self.data = new_data_dir(wharf, self.dir / "data", **conf)
        self.cert, self.key = as2_keys(self.dir, f"wharf-{name}")
        self.outbox = self.dir / "outbox"
        self.inbox = self.dir / "inbox"
        self.outbox.mkdir()
        self.inbox.mkdir()
        self.server = None

    @property
    def as2_id(self):
        return f"wharf-{self.name}"

    @property
    def url(self):
        return f"https://127.0.0.1:{listen_port(self.data, 'partner')}/as2"

    @property
    def mdn_url(self):
        return self.url + "/mdn"

    @property
    def tls_cert(self):
        return str(self.data / conf_value(self.data, "tls_cert"))

    @property
    def tls_key(self):
        return str(self.data / conf_value(self.data, "tls_key"))

    @property
    def log_path(self):
        return self.data / "logs" / "wharf.log"

    def log(self, start=0):
        """The server's log from byte offset start ("" before it exists)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0


def partner_of(other, **settings):
    p = {"name": other.name, "as2_id": other.as2_id, "url": other.url,
         "certificates": [str(other.cert)], "tls_ca": other.tls_cert,
         "sign": "sha256", "encrypt": "aes256-cbc", "compress": True,
         "mdn": "sync", "mdn_signed": True}
    p.update(settings)
    if p.get("mdn") == "async":
        p.setdefault("async_mdn_url", None)
    return p


def flow_of(me, other, partner, retry=None):
    """One as2 connector per partner, both ways (the issue's contract):
    outbox -> as2 -> the partner; what the partner sends enters at the
    same connector and goes on to the inbox."""
    conn = {"name": f"as2-{other.name}", "type": "as2",
            "config": {"partner": other.name,
                       "retry": retry or {"initial_ms": 200, "max_ms": 1000,
                                          "max_attempts": 30}}}
    return {"profile": {"as2_id": me.as2_id,
                        "keys": [{"cert": str(me.cert), "key": str(me.key)}]},
            "partners": [partner],
            "connectors": [file_source("outbox", me.outbox), conn,
                           file_dest("inbox", me.inbox)],
            "links": [["outbox", conn["name"]], [conn["name"], "inbox"]]}


def pair(wharf, root, a_settings=None, b_settings=None):
    """(A, B) with flows imported: A's outbox -> B's inbox and back."""
    a, b = Side(wharf, root, "a"), Side(wharf, root, "b")
    for me, other, s in ((a, b, a_settings), (b, a, b_settings)):
        p = partner_of(other, **(s or {}))
        if p.get("mdn") == "async" or "async_mdn_url" in p:
            p["async_mdn_url"] = me.mdn_url
        doc = flow_of(me, other, p)
        f = me.dir / "flow.json"
        f.write_text(json.dumps(doc))
        wharf.ok("flow", "import", "--data", me.data, f)
    return a, b


# ---- changing a running pair ---------------------------------------------------

GEN_RE = re.compile(r"flow generation (\d+)")


def import_doc(wharf, side, doc, name="flow.json"):
    """Import doc into side's data dir; returns the new flow generation."""
    f = side.dir / name
    f.write_text(json.dumps(doc))
    out = wharf.ok("flow", "import", "--data", side.data, f).stdout
    m = GEN_RE.search(out)
    assert m, f"flow import printed no generation: {out!r}"
    return int(m.group(1))


def wait_generation(side, gen, timeout=30):
    """Wait until side's running server logged that it loaded generation
    gen (the engine checks every 500 ms; the partner routes reload on the
    next request by themselves)."""
    line = f"flow generation {gen} loaded"

    def loaded():
        if side.server is not None:
            side.server.check_alive()
        return line in side.log()
    wait_until(loaded, timeout=timeout, interval=0.05,
               desc=f"{side.name}: {line!r}")


def settings_doc(me, other, settings=None, retry=None, conn_config=None,
                 keys=None):
    """The flow document of me trading with other, with the partner
    settings (as pair() passes them; async MDNs come back to me) and
    optionally more as2 connector config or other profile keys
    ([(cert, key), ...])."""
    p = partner_of(other, **(settings or {}))
    if p.get("mdn") == "async" or "async_mdn_url" in p:
        if p.get("async_mdn_url") is None:
            p["async_mdn_url"] = me.mdn_url
    doc = flow_of(me, other, p, retry=retry)
    if conn_config:
        doc["connectors"][1]["config"].update(conn_config)
    if keys is not None:
        doc["profile"]["keys"] = [{"cert": str(c), "key": str(k)}
                                  for c, k in keys]
    return doc


def start_pair(sides, start_server):
    for s in sides:
        s.server = start_server(s.data)
    for s in sides:
        s.server.wait_listening()
