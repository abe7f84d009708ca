"""
R22: the network-facing process drops root after binding and runs in a
sandbox (core/sandbox.h).

  - serve started as root with `user = NAME` (wharf init --user) runs as
    that user: /proc/PID/status shows its uid, no capabilities,
    NoNewPrivs: 1 and Seccomp: 2, and a file flow still works; everything
    serve created in the data dir belongs to that user;
  - started as root without a user it refuses unless allow_root = yes
    (then a warning); allow_root does not hold for a data dir root does not
    own; a user that does not own the data dir is refused;
  - every key process (the children that hold the keys, one per core,
    vault/keyproc.h) drops to the same user, with no capabilities,
    NoNewPrivs: 1 and Seccomp: 2, as the posture report's process.keys
    says, naming each, from the CLI and from serve's API (R24; WARN with
    sandbox = off); `sandbox_probe
    --keys` (its sandbox, core/sandbox.h
    sandbox_keys) reads nothing of the data dir (keystore, database,
    wharf.conf, the listeners' key: EACCES; OpenSSL's configuration: ok)
    and is killed (SIGSYS) for opening a file to write, a TCP socket or
    execve;
  - tests/unit/sandbox_probe.c (the same libwharf functions serve calls,
    then one step each) shows what the sandbox forbids: the keystore, the
    listeners' private key, a file outside the allowed paths, creating a
    file in the data dir itself (EACCES from Landlock, where the user's
    own permissions would allow it: the same probe with sandbox = off
    reads them), and mount(2) or execve(2) (killed by seccomp: SIGSYS).

The test user (wharfsb, a system account without a shell) is created once
if missing. The data dirs live in a folder under /tmp that the user can
traverse (pytest's tmp_path is private to root).
"""
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (assert_no_sanitizer_report, child_env, drop_file,
                      file_dest, file_source, flow_doc, free_port, tune_conf,
                      wait_until, wharf_bin_path)
from test_r14_api import TOKEN_RE, Api

USER = "wharfsb"

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (drops to a test user)")


@pytest.fixture
def account():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "-M", "-s",
                        "/usr/sbin/nologin", USER], check=True,
                       capture_output=True)
        return pwd.getpwnam(USER)


@pytest.fixture
def base():
    """A folder the test user can traverse (0711), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="wharf-r22-", dir="/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def chown_tree(path, pw):
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.lchown(name, pw.pw_uid, pw.pw_gid)


def make_data(wharf, base, pw=None, **conf):
    """A data dir under base (wharf init [--user]), with base/files as its
    allowed path (given to the user too)."""
    data = base / "data"
    files = base / "files"
    for sub in ("in", "out"):
        (files / sub).mkdir(parents=True, exist_ok=True)
    if pw is not None:
        chown_tree(files, pw)
        wharf.init(data, "--user", pw.pw_name)
    else:
        wharf.init(data)
    settings = {"poll_ms": 50, "lease_seconds": 5,
                "admin_listen": f"127.0.0.1:{free_port()}",
                "partner_listen": f"127.0.0.1:{free_port()}",
                "allowed_paths": str(files)}
    settings.update(conf)
    tune_conf(data, **settings)
    return data, files


def as_user(base, *args):
    """`wharf ARGS` as the test user, as an operator runs the CLI on a data
    dir that belongs to serve's user (docs/operations.md)."""
    p = subprocess.run(["runuser", "-u", USER, "--", str(wharf_bin_path()),
                        *map(str, args)], capture_output=True, text=True,
                       timeout=120, cwd=base, env=child_env())
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    assert_no_sanitizer_report(p.stderr, " ".join(map(str, args)))
    return p


def proc_status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def wait_serving(server, data):
    """The listeners accept once bound, before the sandbox; wait for the
    line serve logs when everything runs."""
    log = Path(data) / "logs" / "wharf.log"
    wait_until(lambda: server.check_alive() and log.exists() and
               f"serving {data}" in log.read_text(), timeout=60,
               desc="serve running")


def serve_once(data, timeout=60):
    """`wharf serve` that is expected to refuse: (exit code, stderr)."""
    p = subprocess.run([str(wharf_bin_path()), "serve", "--data", str(data)],
                       capture_output=True, text=True, timeout=timeout,
                       env=child_env(), stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr


def probe(data, *steps, keys=False):
    exe = wharf_bin_path().parent / "tests" / "sandbox_probe"
    assert exe.exists(), f"{exe} missing: make asan (or release) builds it"
    p = subprocess.run([str(exe), *(["--keys"] if keys else []), str(data),
                        *steps], capture_output=True,
                       text=True, timeout=60, env=child_env())
    return p


def key_processes(server):
    """The pids of serve's key processes (its children named wharf-keys),
    in the order it started them."""
    kids = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    pids = [int(pid) for pid in kids.read_text().split()
            if Path(f"/proc/{pid}/comm").read_text().strip() == "wharf-keys"]
    assert pids, f"serve {server.pid} has no wharf-keys child"
    return pids


def key_process(server):
    """The pid of serve's first key process."""
    return key_processes(server)[0]


def keys_named(pids):
    """How the posture report names the key processes pids."""
    if len(pids) == 1:
        return f"key process (pid {pids[0]}) runs as "
    listed = ", ".join(str(p) for p in pids)
    return f"{len(pids)} key processes (pids {listed}) run as "


def results(p):
    """{"read PATH": "ok" | "EACCES" ...} from the probe's lines."""
    out = {}
    for line in p.stdout.splitlines():
        k, sep, v = line.rpartition(": ")
        if sep:
            out[k] = v
    return out


def serve_file_flow(wharf, base, account, start_server):
    """serve as root with user = the test user, running a file flow
    files/in -> files/out: (server, data, files)."""
    data, files = make_data(wharf, base, account)
    flow = base / "flow.json"
    flow.write_text(json.dumps(flow_doc(
        [file_source("inbox", files / "in"), file_dest("outbox",
                                                       files / "out")],
        [("inbox", "outbox")])))
    flow.chmod(0o644)
    as_user(base, "flow", "import", "--data", data, flow)
    server = start_server(data)
    wait_serving(server, data)
    return server, data, files


def assert_confined(st, pw):
    """/proc/PID/status: the user's ids, no capability, no_new_privs and a
    seccomp filter."""
    assert st["Uid"] == [str(pw.pw_uid)] * 4, st["Uid"]
    assert st["Gid"] == [str(pw.pw_gid)] * 4, st["Gid"]
    assert st["NoNewPrivs"] == ["1"]
    assert st["Seccomp"] == ["2"]
    assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0


def test_r22_serve_as_root_drops_to_user_with_no_new_privs_and_seccomp(
        wharf, base, account, start_server):
    server, data, files = serve_file_flow(wharf, base, account,
                                          start_server)
    assert_confined(proc_status(server.pid), account)
    # every thread, not only the main one
    for tid in os.listdir(f"/proc/{server.pid}/task"):
        t = proc_status(f"{server.pid}/task/{tid}")
        assert t["Uid"][0] == str(account.pw_uid)
        assert t["NoNewPrivs"] == ["1"] and t["Seccomp"] == ["2"]
    # it still does its work inside the sandbox
    drop_file(files / "in", "order.edi", b"UNB+UNOC:3+SENDER+RECEIVER")
    wait_until(lambda: server.check_alive() and
               (files / "out" / "order.edi").exists(),
               timeout=60, desc="order.edi delivered by the sandboxed serve")
    log = (data / "logs" / "wharf.log").read_text()
    assert re.search(rf"sandbox: running as {USER} \(uid {account.pw_uid}\)"
                     r", no capabilities, no_new_privs, Landlock ABI \d+",
                     log), log[-3000:]
    server.stop()
    # nothing serve made in the data dir is root's: made after the drop
    for root, dirs, names in os.walk(data):
        for n in dirs + names:
            path = os.path.join(root, n)
            assert os.lstat(path).st_uid == account.pw_uid, path


def doctor_keys(base, data):
    """The process.keys check of `wharf doctor --json` run as the test
    user (exit 1: the fresh data dir's admin has no second factor)."""
    p = subprocess.run(["runuser", "-u", USER, "--", str(wharf_bin_path()),
                        "doctor", "--json", "--data", str(data)],
                       capture_output=True, text=True, timeout=120, cwd=base,
                       env=child_env())
    assert p.returncode in (0, 1), p
    assert_no_sanitizer_report(p.stderr, "doctor")
    return next(c for c in json.loads(p.stdout)["checks"]
                if c["id"] == "process.keys")


def test_r22_key_process_drops_to_user_with_no_new_privs_and_seccomp(
        wharf, base, account, start_server):
    server, data, files = serve_file_flow(wharf, base, account,
                                          start_server)
    keys = key_processes(server)
    assert len(keys) == min(len(os.sched_getaffinity(0)), 4), keys
    for pid in keys:
        assert_confined(proc_status(pid), account)
    # the posture report says so, naming each, from the CLI and from serve
    # (R24)
    found = keys_named(keys)
    c = doctor_keys(base, data)
    assert c["status"] == "PASS" and found + f"{USER} (uid " in c["found"], c
    assert "no capabilities, no_new_privs and a seccomp filter" in c["found"]
    token = TOKEN_RE.search(as_user(
        base, "token", "create", "--data", data, "--role", "auditor",
        "--name", "auditor-r22", "--owner", "admin").stdout).group(1)
    port, _ = server.wait_listening()
    api = next(c for c in Api(port).ok("GET", "/api/v1/posture",
                                       token=token).json()["checks"]
               if c["id"] == "process.keys")
    assert api["status"] == "PASS" and found in api["found"], api
    # each payload's key is wrapped and unwrapped by them: the flow works
    drop_file(files / "in", "order.edi", b"UNB+UNOC:3+SENDER+RECEIVER")
    wait_until(lambda: server.check_alive() and
               (files / "out" / "order.edi").exists(),
               timeout=60, desc="order.edi delivered with the key processes "
                                "sandboxed")
    for pid in keys:
        assert proc_status(pid)["State"][0] in ("S", "R")
    server.stop()


def test_r22_key_process_sandbox_reads_nothing_of_the_data_dir(
        wharf, base, account):
    data, _ = make_data(wharf, base, account)
    paths = [data / "keystore", data / "wharf.db", data / "wharf.conf",
             data / "tls" / "key.pem"]
    steps = [f"read:{p}" for p in paths]
    p = probe(data, *steps, "read:/etc/ssl/openssl.cnf", "status", keys=True)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    r = results(p)
    for path in paths:
        assert r[f"read {path}"] == "EACCES", p.stdout
    assert r["read /etc/ssl/openssl.cnf"] == "ok", p.stdout
    assert re.search(r"^Seccomp:\s+2$", p.stdout, re.M), p.stdout
    assert re.search(r"^NoNewPrivs:\s+1$", p.stdout, re.M), p.stdout
    assert re.search(rf"^Uid:\s+{account.pw_uid}\s", p.stdout, re.M), \
        p.stdout
    # the user itself may read them: Landlock, not file modes, said no
    tune_conf(data, sandbox="off")
    p = probe(data, *steps, keys=True)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    r = results(p)
    assert all(r[f"read {path}"] == "ok" for path in paths), p.stdout


@pytest.mark.parametrize("step", ["write", "tcp", "exec"])
def test_r22_key_process_forbidden_call_kills_it(wharf, base, account, step):
    data, _ = make_data(wharf, base, account)
    arg = f"write:{data / 'payloads' / 'probe'}" if step == "write" else step
    p = probe(data, arg, keys=True)
    assert "sandbox: entered" in p.stdout, p.stderr
    assert p.returncode == -signal.SIGSYS, (p.returncode, p.stdout,
                                            p.stderr)
    assert "survived" not in p.stdout and ": ok" not in p.stdout
    tune_conf(data, sandbox="off")
    p = probe(data, arg, keys=True)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def test_r22_root_without_user_refused_unless_allow_root(
        wharf, base, start_server):
    data, _ = make_data(wharf, base)
    rc, err = serve_once(data)
    assert rc == 1
    assert "started as root" in err and "user = NAME" in err and \
        "allow_root = yes" in err, err
    tune_conf(data, allow_root="yes")
    server = start_server(data)
    wait_serving(server, data)
    st = proc_status(server.pid)
    assert st["Uid"][0] == "0"
    # root stays root, but without a capability, and sandboxed
    assert int(st["CapEff"][0], 16) == 0
    assert st["NoNewPrivs"] == ["1"] and st["Seccomp"] == ["2"]
    server.stop()
    assert "WARN  running as root (allow_root = yes" in \
        (data / "logs" / "wharf.log").read_text()


def test_r22_allow_root_refused_for_a_data_dir_root_does_not_own(
        wharf, base, account):
    """The data dir's user may edit wharf.conf: its allow_root must not
    keep root."""
    data, _ = make_data(wharf, base, account, user="", allow_root="yes")
    rc, err = serve_once(data)
    assert rc == 1
    assert f"belongs to uid {account.pw_uid}, not root" in err, err


def test_r22_user_must_own_the_data_dir(wharf, base, account):
    data, _ = make_data(wharf, base, None, user=USER)
    rc, err = serve_once(data)
    assert rc == 1
    assert f"not to {USER}" in err and f"chown -R {USER}:" in err, err


def test_r22_sandbox_denies_keystore_and_paths_outside(wharf, base, account):
    data, files = make_data(wharf, base, account)
    outside = base / "outside.txt"
    outside.write_text("readable by everyone, outside the allowed paths\n")
    outside.chmod(0o644)
    (files / "in" / "x.txt").write_text("inside\n")
    chown_tree(files, account)
    denied = [data / "keystore", data / "tls" / "key.pem", outside]
    # the listeners' certificate (public) is readable for the health
    # checks, /metrics, the posture report and the inventory; its key not
    allowed = [data / "wharf.conf", data / "tls" / "cert.pem",
               files / "in" / "x.txt"]
    steps = ["status"] + [f"read:{p}" for p in denied + allowed] + \
        [f"write:{data / 'planted'}", f"write:{files / 'out' / 'y.txt'}"]
    p = probe(data, *steps)
    assert p.returncode == 0, p.stderr
    r = results(p)
    assert re.search(rf"^Uid:\s+{account.pw_uid}\s", p.stdout, re.M)
    assert re.search(r"^NoNewPrivs:\s+1$", p.stdout, re.M)
    assert re.search(r"^Seccomp:\s+2$", p.stdout, re.M)
    for path in denied:
        assert r[f"read {path}"] == "EACCES", p.stdout
    for path in allowed:
        assert r[f"read {path}"] == "ok", p.stdout
    assert r[f"write {data / 'planted'}"] == "EACCES", p.stdout
    assert not (data / "planted").exists()
    assert r[f"write {files / 'out' / 'y.txt'}"] == "ok", p.stdout
    # the control: the same user without the sandbox may read them all, so
    # the denials above are the sandbox's, not file permissions
    tune_conf(data, sandbox="off")
    p = probe(data, *[f"read:{x}" for x in denied])
    assert p.returncode == 0, p.stderr
    assert all(results(p)[f"read {x}"] == "ok" for x in denied), p.stdout


def test_r22_sandbox_denies_keystore_to_root_too(wharf, base):
    """allow_root: root's own keystore is refused (Landlock, not DAC)."""
    data, _ = make_data(wharf, base, None, allow_root="yes")
    p = probe(data, f"read:{data / 'keystore'}", f"read:{data / 'wharf.db'}")
    assert p.returncode == 0, p.stderr
    r = results(p)
    assert r[f"read {data / 'keystore'}"] == "EACCES", p.stdout
    assert r[f"read {data / 'wharf.db'}"] == "ok", p.stdout


@pytest.mark.parametrize("step", ["mount", "exec", "rt"])
def test_r22_forbidden_system_call_kills_the_process(wharf, base, account,
                                                     step):
    data, _ = make_data(wharf, base, account)
    p = probe(data, step)
    assert "sandbox: entered" in p.stdout, p.stderr
    assert p.returncode == -signal.SIGSYS, (p.returncode, p.stdout,
                                            p.stderr)
    assert "survived" not in p.stdout
    # without the sandbox the call is made (and refused or run normally)
    tune_conf(data, sandbox="off")
    p = probe(data, step)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def test_r22_sandbox_allows_a_thread_sched_idle_for_itself(wharf, base,
                                                          account):
    """The large lane's threads lower themselves to SCHED_IDLE (engine.c);
    the filter allows that policy and no other ("rt" above is killed)."""
    data, _ = make_data(wharf, base, account)
    p = probe(data, "idle")
    assert "sandbox: entered" in p.stdout, p.stderr
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert results(p)["idle"] == "ok", p.stdout


def test_r22_sandbox_off_is_logged(wharf, base, account, start_server):
    data, _ = make_data(wharf, base, account, sandbox="off")
    server = start_server(data)
    wait_serving(server, data)
    st = proc_status(server.pid)
    assert st["Uid"][0] == str(account.pw_uid)
    assert st["Seccomp"] == ["0"] and st["NoNewPrivs"] == ["0"]
    # the key processes too: the user, no capabilities, no filter
    for pid in key_processes(server):
        st = proc_status(pid)
        assert st["Uid"][0] == str(account.pw_uid)
        assert int(st["CapEff"][0], 16) == 0
        assert st["Seccomp"] == ["0"] and st["NoNewPrivs"] == ["0"]
    c = doctor_keys(base, data)
    assert c["status"] == "WARN" and "sandbox = off" in c["found"], c
    server.stop()
    assert "WARN  sandbox = off in" in \
        (data / "logs" / "wharf.log").read_text()
