"""
R21: the password of the PostgreSQL store, sealed by the vault in the data
dir (DIR/state/store-password), against a real PostgreSQL 15 (started by
these tests on 127.0.0.1) whose role for Wharf must give a password
(scram-sha-256 in pg_hba.conf):

  - without the password `wharf init` is refused by the server and leaves
    nothing; with `--store-password-file` the node is made, serves and
    delivers; the password is nowhere in the data dir in plaintext (not in
    wharf.conf, not in the sealed file, not in a log) and the sealed file
    is mode 0600;
  - `wharf key rotate` re-seals it (the file changes, serve still
    connects); `wharf cluster password` with a wrong password changes
    nothing, with the new one (after ALTER ROLE) replaces it; a modified
    sealed file makes serve refuse to start, naming the file;
  - a backup restored into a database of that role with
    `--store-password-file` opens there (its audit trail verifies
    through the sealed password).
"""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import drop_file, new_data_dir, wait_until
from test_r20_backup import file_flow
from test_r21_cluster import pg_server  # noqa: F401 (fixture)

ROLE = "wharfpw"
PASSWORD = "Vq7-sealed-Pw-94xZ"


def psql(url, sql):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def pw_server(pg_server):  # noqa: F811
    """The module's server, with a role that must give its password over
    TCP (its line first in pg_hba.conf). Returns (admin URL, a function
    that makes a new database owned by the role and returns its URL)."""
    psql(pg_server, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    hba = Path(psql(pg_server, "SHOW hba_file"))
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
                   + hba.read_text())
    psql(pg_server, "SELECT pg_reload_conf()")
    seq = [0]

    def new_db():
        seq[0] += 1
        name = f"pw_{os.getpid()}_{seq[0]}"
        psql(pg_server, f"CREATE DATABASE {name} OWNER {ROLE}")
        host = pg_server.split("@", 1)[1].rsplit("/", 1)[0]
        return f"postgresql://{ROLE}@{host}/{name}"
    return pg_server, new_db


def secret_file(path, text):
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return path


def files_holding(root, needle):
    return [p for p in Path(root).rglob("*") if p.is_file()
            and needle in p.read_bytes()]


def deliver(start_server, data, recv, send, name):
    srv = start_server(data)
    srv.wait_listening()
    drop_file(recv, name, b"through the sealed password\n" * 100)
    wait_until(lambda: srv.check_alive() and (send / name).exists(),
               timeout=60, desc=f"{name} delivered")
    srv.stop()
    return srv


def test_r21_store_password_sealed_in_the_data_dir(tmp_path, wharf,
                                                   pw_server, start_server):
    admin, new_db = pw_server
    url = new_db()
    p = wharf("init", "--data", tmp_path / "nopw", "--store", url)
    assert p.returncode != 0
    assert "password" in p.stderr, p.stderr
    assert not (tmp_path / "nopw").exists()

    pwfile = secret_file(tmp_path / "pw.txt", PASSWORD)
    data = new_data_dir(wharf, tmp_path / "a", "--store", url,
                        "--store-password-file", pwfile)
    sealed = data / "state" / "store-password"
    assert sealed.stat().st_mode & 0o777 == 0o600
    first_blob = sealed.read_bytes()
    recv, send = file_flow(wharf, data, tmp_path)
    deliver(start_server, data, recv, send, "one.edi")
    assert files_holding(data, PASSWORD.encode()) == []

    # rotation re-seals the file; serve still connects with it
    rot = subprocess.run([wharf.binary, "key", "rotate", "--data",
                          str(data)], capture_output=True, text=True,
                         timeout=300)
    assert rot.returncode == 0, rot.stderr
    assert sealed.read_bytes() != first_blob
    deliver(start_server, data, recv, send, "two.edi")

    # a wrong password changes nothing; the right new one replaces it
    before = sealed.read_bytes()
    wrong = secret_file(tmp_path / "wrong.txt", "not-the-password")
    p = wharf("cluster", "password", "--data", data, "--from", wrong)
    assert p.returncode != 0 and "nothing was changed" in p.stderr, p.stderr
    assert sealed.read_bytes() == before
    psql(admin, f"ALTER ROLE {ROLE} PASSWORD 'Second-{PASSWORD}'")
    newpw = secret_file(tmp_path / "new.txt", f"Second-{PASSWORD}")
    wharf.ok("cluster", "password", "--data", data, "--from", newpw)
    assert sealed.read_bytes() != before
    deliver(start_server, data, recv, send, "three.edi")
    assert files_holding(data, PASSWORD.encode()) == []

    # a modified sealed file: serve refuses to start, naming it
    blob = bytearray(sealed.read_bytes())
    blob[len(blob) // 2] ^= 1
    sealed.write_bytes(bytes(blob))
    p = subprocess.run([wharf.binary, "serve", "--data", str(data)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "store-password" in p.stderr, p.stderr


def test_r20_restore_into_a_database_that_needs_a_password(
        tmp_path, wharf, pw_server, start_server):
    admin, new_db = pw_server
    psql(admin, f"ALTER ROLE {ROLE} PASSWORD '{PASSWORD}'")
    pwfile = secret_file(tmp_path / "pw.txt", PASSWORD)
    data = new_data_dir(wharf, tmp_path / "a", "--store", new_db(),
                        "--store-password-file", pwfile)
    recv, send = file_flow(wharf, data, tmp_path)
    deliver(start_server, data, recv, send, "one.edi")
    backup = tmp_path / "b.wbk"
    wharf.ok("backup", "--data", data, "--to", backup)
    target = tmp_path / "restored"
    url2 = new_db()
    p = wharf("restore", "--from", backup, "--data", target, "--keystore",
              data / "keystore", "--store", url2)
    assert p.returncode != 0 and not target.exists(), p.stderr
    wharf.ok("restore", "--from", backup, "--data", target, "--keystore",
             data / "keystore", "--store", url2, "--store-password-file",
             pwfile)
    assert (target / "state" / "store-password").is_file()
    assert files_holding(target, PASSWORD.encode()) == []
    wharf.ok("audit", "verify", "--data", target)
    assert "one.edi" in wharf.ok("message", "list", "--data",
                                 target).stdout
