"""
R15: the master keys fetched from an external KMS command. The KMS here is
a shell script around the openssl CLI (AES-256-CBC under a passphrase
file only the script reads), written from vault/kms.h's contract: `wrap`
and `unwrap` with one line in and one line out; it logs each verb, and
answers "unreachable" while a flag file exists.

  - `wharf key kms-seal`: the keystore file no longer holds a master key
    or an audit seed (none of the hex keys of the text keystore is in it);
    serve (its key process asks the KMS once) delivers a flow; `wharf key
    rotate`, killed with kill -9 after the new key went in and run again,
    keeps it sealed and the older payloads readable; `kms-unseal`
    writes the same keys back as text;
  - the KMS down: serve and every command refuse, naming kms_command and
    its own words; a keystore tampered with is refused, not half read;
  - backup and restore: a sealed --keystore opens with --kms-command and
    the restored keystore is sealed too (without it: refused, saying so);
  - `wharf init --kms-command`: the first keystore sealed from the start,
    and a node given that keystore (--keystore) with the KMS;
  - kms_command must be an absolute path that group and others cannot
    write; the posture report (keys.keystore) flags a KMS named over a
    keystore left as text.
"""
import json
import re
import shutil
import subprocess

from conftest import (child_env, drop_file, file_dest, file_source, flow_doc,
                      new_data_dir, tune_conf, wait_until, wharf_bin_path)

HEX_KEY = re.compile(r"^(?:master|audit-ed25519) [0-9a-f]{16} ([0-9a-f]{64})",
                     re.M)

KMS = """#!/bin/sh
# A test KMS (vault/kms.h): the key wrapped by AES-256-CBC under {key}.
echo "$1" >> {log}
if [ -e {down} ]; then echo "KMS unreachable: connection refused" >&2; exit 3; fi
case "$1" in
wrap) exec openssl enc -aes-256-cbc -pbkdf2 -salt -pass file:{key} -a -A ;;
unwrap) exec openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{key} -a -A ;;
*) echo "usage: $0 wrap|unwrap" >&2; exit 2 ;;
esac
"""


def make_kms(d):
    d.mkdir()
    key, log, down = d / "kek.pass", d / "calls.log", d / "down"
    key.write_text("the KMS's own secret " + "k" * 20 + "\n")
    key.chmod(0o600)
    script = d / "kms.sh"
    script.write_text(KMS.format(key=key, log=log, down=down))
    script.chmod(0o755)
    return script, log, down


def calls(log):
    return log.read_text().split() if log.exists() else []


def flow(wharf, data, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    wharf.import_flow(data, flow_doc([file_source("inbox", inbox),
                                      file_dest("out", out)],
                                     [("inbox", "out")]),
                      tmp_path / "flow.json")
    return inbox, out


def deliver(wharf, start_server, data, inbox, out, name):
    srv = start_server(data)
    srv.wait_listening()
    drop_file(inbox, name, b"UNB+UNOC:3+" + name.encode())
    wait_until(lambda: srv.check_alive() and (out / name).exists(),
               timeout=60, desc=f"{name} delivered")
    srv.stop()


def doctor(wharf, data):
    """The posture report's keys.keystore check (R24)."""
    p = wharf("doctor", "--json", "--data", data)
    return next(c for c in json.loads(p.stdout)["checks"]
                if c["id"] == "keys.keystore")


def serve_refused(data):
    p = subprocess.run([str(wharf_bin_path()), "serve", "--data", str(data)],
                       capture_output=True, text=True, timeout=120,
                       env=child_env(), stdin=subprocess.DEVNULL)
    assert p.returncode != 0, p
    return p.stderr


def test_r15_keystore_sealed_by_a_kms_command(tmp_path, wharf, start_server):
    script, log, down = make_kms(tmp_path / "kms")
    data = new_data_dir(wharf, tmp_path / "data")
    inbox, out = flow(wharf, data, tmp_path)
    keystore = data / "keystore"
    text_keys = HEX_KEY.findall(keystore.read_text())
    assert len(text_keys) == 2, keystore.read_text()    # master, audit
    p = wharf("key", "kms-seal", "--data", data)
    assert p.returncode == 1 and "set kms_command" in p.stderr, p
    tune_conf(data, kms_command=script)
    c = doctor(wharf, data)
    assert c["status"] == "WARN" and "kms-seal" in c["action"], c
    wharf.ok("key", "kms-seal", "--data", data)
    c = doctor(wharf, data)
    assert c["status"] == "PASS" and "sealed by the KMS" in c["found"], c
    sealed = keystore.read_text()
    assert sealed.startswith("wharf-keystore-kms 1\nkek "), sealed[:80]
    assert not HEX_KEY.search(sealed)
    assert not any(k in sealed for k in text_keys)
    assert (keystore.stat().st_mode & 0o777) == 0o600
    assert calls(log) == ["wrap", "unwrap"], calls(log)   # seal, doctor
    # serve: the key process asks the KMS, the flow's payloads are sealed
    # and opened with the keys it unwrapped
    before = len(calls(log))
    deliver(wharf, start_server, data, inbox, out, "one.edi")
    assert "unwrap" in calls(log)[before:], calls(log)
    # a rotation keeps it sealed, killed (kill -9) right after the new key
    # went in and then finished; the older message is still readable
    env = child_env()
    env["WHARF_FAULT"] = "rotate.key_added:1"
    p = subprocess.run([str(wharf_bin_path()), "key", "rotate", "--data",
                        str(data)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == -9, p
    assert keystore.read_text().startswith("wharf-keystore-kms 1\n")
    assert "finishing an interrupted rotation" in wharf.ok(
        "key", "rotate", "--data", data).stdout
    assert keystore.read_text().startswith("wharf-keystore-kms 1\n")
    assert [f.name for f in data.iterdir()
            if f.name.startswith("keystore.tmp")] == []
    deliver(wharf, start_server, data, inbox, out, "two.edi")
    msgs = wharf.messages(data)
    assert [m["state"] for m in msgs] == ["sent", "sent"], msgs
    # the KMS down: refused, in its words
    down.touch()
    err = serve_refused(data)
    assert f"kms_command {script} unwrap failed (exit 3): KMS " \
        "unreachable: connection refused" in err, err
    p = wharf("message", "list", "--data", data)
    assert p.returncode == 1 and "KMS unreachable" in p.stderr, p
    down.unlink()
    # tampered with: refused, not half read
    good = keystore.read_bytes()
    body = good.rindex(b"body ") + 12
    keystore.write_bytes(good[:body] + (b"A" if good[body:body + 1] != b"A"
                                        else b"B") + good[body + 1:])
    p = wharf("message", "list", "--data", data)
    assert p.returncode == 1 and "cannot be decrypted" in p.stderr, p
    keystore.write_bytes(good)
    # back to text: the same keys (the rotation's new master key)
    wharf.ok("key", "kms-unseal", "--data", data)
    text = keystore.read_text()
    assert text.startswith("wharf-keystore 1\n") and \
        len(HEX_KEY.findall(text)) == 2, text
    tune_conf(data, kms_command="")
    assert len(wharf.messages(data)) == 2
    audit = wharf.ok("audit", "list", "--data", data, "--json").stdout
    assert "key.kms_seal" in audit and "key.kms_unseal" in audit


def test_r15_kms_sealed_keystore_backup_and_restore(tmp_path, wharf):
    script, log, _ = make_kms(tmp_path / "kms")
    data = new_data_dir(wharf, tmp_path / "data", kms_command=script)
    flow(wharf, data, tmp_path)
    wharf.ok("key", "kms-seal", "--data", data)
    backup = tmp_path / "b.wbk"
    wharf.ok("backup", "--data", data, "--to", backup)
    restored = tmp_path / "restored"
    p = wharf("restore", "--from", backup, "--data", restored, "--keystore",
              data / "keystore")
    assert p.returncode == 1 and "no kms_command" in p.stderr, p
    shutil.rmtree(restored, ignore_errors=True)
    wharf.ok("restore", "--from", backup, "--data", restored, "--keystore",
             data / "keystore", "--kms-command", script)
    assert (restored / "keystore").read_text().startswith(
        "wharf-keystore-kms 1\n")
    # the restored wharf.conf names the KMS: it opens
    wharf.ok("audit", "verify", "--data", restored)
    assert wharf.messages(restored) == wharf.messages(data)


def test_r15_kms_command_must_be_safe(tmp_path, wharf):
    script, _, _ = make_kms(tmp_path / "kms")
    data = new_data_dir(wharf, tmp_path / "data")
    conf = (data / "wharf.conf").read_text()
    for value, says in (("kms.sh", "must be an absolute path"),
                        (tmp_path / "nothing", "No such file"),
                        (tmp_path / "kms" / "kek.pass",
                         "is not an executable file")):
        (data / "wharf.conf").write_text(conf)
        tune_conf(data, kms_command=value)
        p = wharf("message", "list", "--data", data)
        assert p.returncode == 1 and says in p.stderr, (value, p.stderr)
    (data / "wharf.conf").write_text(conf)
    script.chmod(0o777)
    tune_conf(data, kms_command=script)
    p = wharf("message", "list", "--data", data)
    assert p.returncode == 1 and "writable by group or others" in p.stderr, p


def test_r15_init_with_a_kms_command(tmp_path, wharf):
    script, log, _ = make_kms(tmp_path / "kms")
    first = tmp_path / "first"
    wharf.ok("init", "--data", first, "--kms-command", script)
    assert (first / "keystore").read_text().startswith(
        "wharf-keystore-kms 1\n")
    assert f"kms_command = {script}\n" in (first / "wharf.conf").read_text()
    assert calls(log)[0] == "wrap", calls(log)
    # a node given that sealed keystore: refused without the KMS, taken
    # with it (wharf.conf names it)
    p = wharf("init", "--data", tmp_path / "second", "--keystore",
              first / "keystore")
    assert p.returncode == 1 and "no kms_command" in p.stderr, p
    shutil.rmtree(tmp_path / "second", ignore_errors=True)
    wharf.ok("init", "--data", tmp_path / "second", "--keystore",
             first / "keystore", "--kms-command", script)
    assert (tmp_path / "second" / "keystore").read_bytes() == \
        (first / "keystore").read_bytes()
    wharf.ok("audit", "verify", "--data", tmp_path / "second")
