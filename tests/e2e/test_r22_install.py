"""
Installed as a service, as Debian admins expect (issue "Security
operations", part 6; R22's least privilege, R5's log handling, R10's
SECURITY.md):

  - `make install DESTDIR=... PREFIX=/usr/local` puts the binary, the
    systemd unit, the logrotate snippet, wharf(8), SECURITY.md and
    wharf-setup in place with their modes, creates no user under DESTDIR,
    and the installed binary's doctor finds the installed SECURITY.md;
  - `systemd-analyze verify` accepts the unit (nothing printed), which has
    the hardening the issue names (NoNewPrivileges, ProtectSystem=strict,
    ReadWritePaths for the data dir only, PrivateTmp, an empty capability
    bounding set, RestrictAddressFamilies); `systemd-analyze security`
    scores it, and docs/operations.md states that score;
  - the logrotate snippet, run by Debian's logrotate against a running
    serve (the reload command substituted by the install variable
    WHARF_RELOAD, since no systemd runs here), renames the log and serve
    goes on writing into a new wharf.log;
  - wharf(8) renders without a groff warning.
"""
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, new_data_dir, wait_until
from test_r05_operations import wait_log

HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
             "CapabilityBoundingSet=\n", "ProtectHome=yes",
             "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
             "SystemCallFilter=@system-service", "UMask=0077",
             "LimitCORE=0", "User=wharf")


def make_install(dest, wharf_bin, **var):
    args = ["make", "--no-print-directory", "-C", str(REPO), "install",
            f"DESTDIR={dest}", "PREFIX=/usr/local",
            f"INSTALL_BIN={wharf_bin}"]
    args += [f"{k}={v}" for k, v in var.items()]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr + p.stdout
    return p


def tool(name):
    exe = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if exe is None:
        pytest.fail(f"{name} not found: scripts/deps.sh test installs it",
                    pytrace=False)
    return exe


def test_r22_make_install_into_a_destdir(wharf_bin, tmp_path):
    dest = tmp_path / "dest"
    p = make_install(dest, wharf_bin)
    want = {"usr/local/bin/wharf": 0o755, "usr/local/sbin/wharf-setup": 0o755,
            "usr/local/lib/systemd/system/wharf.service": 0o644,
            "etc/logrotate.d/wharf": 0o644,
            "usr/local/share/man/man8/wharf.8": 0o644,
            "usr/local/share/doc/wharf/SECURITY.md": 0o644,
            "usr/local/share/doc/wharf/operations.md": 0o644,
            "etc/wharf": 0o750}
    for rel, mode in want.items():
        st = (dest / rel).stat()
        assert st.st_mode & 0o7777 == mode, (rel, oct(st.st_mode))
    assert (dest / "usr/local/share/doc/wharf/SECURITY.md").read_bytes() == \
        (REPO / "SECURITY.md").read_bytes()
    # under DESTDIR nothing is set up on this machine: it says what to run
    assert "run /usr/local/sbin/wharf-setup" in p.stdout, p.stdout
    assert subprocess.run(["sh", "-n", str(dest / "usr/local/sbin/"
                                           "wharf-setup")]).returncode == 0
    setup = (dest / "usr/local/sbin/wharf-setup").read_text()
    assert "@" not in re.sub(r"\S+@\S+", "", setup.replace("$@", ""))
    assert 'data=/var/lib/wharf' in setup and 'user=wharf' in setup
    # the installed binary runs, and its doctor finds the installed docs
    installed = dest / "usr/local/bin/wharf"
    data = tmp_path / "data"
    subprocess.run([str(installed), "init", "--data", str(data)], check=True,
                   capture_output=True)
    r = subprocess.run([str(installed), "doctor", "--data", str(data),
                        "--json"], capture_output=True, text=True)
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    md = checks["install.security_md"]
    assert md["status"] == "PASS", md
    assert str(dest / "usr/local/share/doc/wharf/SECURITY.md") in md["found"]


def verify_root(dest):
    """What `systemd-analyze verify --root` needs beside the installed
    files: the targets the unit's default dependencies name, /bin/kill of
    ExecReload."""
    (dest / "bin").mkdir(exist_ok=True)
    shutil.copy2(shutil.which("kill") or "/bin/kill", dest / "bin" / "kill")
    (dest / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    shutil.copytree("/usr/lib/systemd/system", dest / "usr/lib/systemd/system",
                    symlinks=True, dirs_exist_ok=True)


def test_r22_systemd_unit_verifies_and_scores(wharf_bin, tmp_path):
    sa = tool("systemd-analyze")
    dest = tmp_path / "dest"
    make_install(dest, wharf_bin)
    unit = dest / "usr/local/lib/systemd/system/wharf.service"
    text = unit.read_text()
    for h in HARDENING:
        assert h in text, h
    assert re.findall(r"^ReadWritePaths=(.*)$", text, re.M) == \
        ["/var/lib/wharf"]
    assert "ExecStart=/usr/local/bin/wharf serve --data /var/lib/wharf" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    verify_root(dest)
    p = subprocess.run([sa, "verify", "--man=no", f"--root={dest}",
                        str(unit)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p
    # the check is not blind: a misspelt directive is reported
    bad = unit.with_name("bad.service")
    bad.write_text(text.replace("NoNewPrivileges=", "NoNewPrivilege="))
    p = subprocess.run([sa, "verify", "--man=no", f"--root={dest}",
                        str(bad)], capture_output=True, text=True)
    assert "Unknown key 'NoNewPrivilege'" in p.stderr, p
    bad.unlink()

    p = subprocess.run([sa, "security", "--offline=yes", f"--root={dest}",
                        str(unit)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for wharf\.service: ([0-9.]+) "
                  r"(\w+)", p.stdout + p.stderr)
    assert m, p.stdout[-2000:] + p.stderr
    score = float(m.group(1))
    assert score <= 2.0 and m.group(2) == "OK", m.group(0)
    docs = (REPO / "docs" / "operations.md").read_text()
    stated = re.search(r"systemd-analyze security[^\n]*\n?[^\n]*?exposure "
                       r"level[^0-9]*([0-9.]+)", docs)
    assert stated, "docs/operations.md does not state the exposure level"
    assert float(stated.group(1)) == score, (stated.group(0), score)

    # another data directory: the unit follows it
    other = tmp_path / "other"
    make_install(other, wharf_bin, WHARF_DATADIR="/srv/wharf",
                 WHARF_USER="gateway")
    text = (other / "usr/local/lib/systemd/system/wharf.service").read_text()
    assert re.findall(r"^ReadWritePaths=(.*)$", text, re.M) == ["/srv/wharf"]
    assert "User=gateway" in text and "--data /srv/wharf" in text


def test_r05_logrotate_snippet_rotates_a_running_server(wharf, wharf_bin,
                                                        tmp_path,
                                                        start_server):
    lr = tool("logrotate")
    data = new_data_dir(wharf, tmp_path / "data")
    server = start_server(data)
    server.wait_listening()
    log = data / "logs" / "wharf.log"
    wait_log(server, data, "serving")
    dest = tmp_path / "dest"
    make_install(dest, wharf_bin, WHARF_DATADIR=data, WHARF_USER="root",
                 WHARF_RELOAD=f"kill -HUP {server.pid}")
    conf = dest / "etc/logrotate.d/wharf"
    assert f"{data}/logs/wharf.log {{" in conf.read_text()
    before = log.read_text()
    p = subprocess.run([lr, "-f", "-s", str(tmp_path / "lr.state"),
                        str(conf)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rotated = data / "logs" / "wharf.log.1"
    assert rotated.exists() and rotated.read_text().startswith(before[:200])
    # serve reopened: the reload is logged into a new wharf.log
    wait_log(server, data, "reload of")
    assert "serving" not in log.read_text()
    assert "reload of" not in rotated.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
    server.check_alive()
    server.stop()


def test_r10_man_page_renders(wharf_bin, tmp_path):
    groff = tool("groff")
    dest = tmp_path / "dest"
    make_install(dest, wharf_bin)
    page = dest / "usr/local/share/man/man8/wharf.8"
    p = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(page)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    text = subprocess.run([groff, "-man", "-Tascii", "-P", "-cbou",
                           str(page)], capture_output=True, text=True,
                          check=True).stdout
    for word in ("NAME", "SYNOPSIS", "doctor", "inventory", "SIGHUP",
                 "/var/lib/wharf", "SECURITY.md", "EXIT STATUS"):
        assert word in text, word
    assert "@" not in page.read_text()
