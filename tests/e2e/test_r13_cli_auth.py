"""
R13/R16/R17/R4/R14 through the CLI, offline against a data dir: `wharf
init` prints the first administrator and a one-time password; `wharf user`
adds, lists, changes roles, disables (never the last administrator) and
sets passwords under the policy; `wharf token` shows a token exactly once;
TOTP enrolment and checks use Debian's oathtool as the independent
generator (a wrong code, a reused code and a recovery code). No secret
shown once may appear anywhere else: not in a later command's output, the
database, the logs or the audit trail (R6).
"""
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import new_data_dir

OTP_RE = re.compile(r"^one-time password: ([a-z2-9]{5}(?:-[a-z2-9]{5}){3})$",
                    re.M)
TOKEN_RE = re.compile(r"^wharf_[A-Za-z0-9_-]{43}$")
RECOVERY_RE = re.compile(r"^[a-z2-9]{4}(?:-[a-z2-9]{4}){3}$")


def one_error_line(p, *words):
    assert p.returncode == 1, (
        f"exit {p.returncode}, expected 1; stdout {p.stdout!r} stderr "
        f"{p.stderr!r}")
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wharf: "), p.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    return lines[0]


def users(wharf, data):
    return {u["name"]: u for u in json.loads(
        wharf.ok("user", "list", "--json", "--data", data).stdout)}


def everything_stored(data):
    """Every byte the data dir holds (database, WAL, logs, conf)."""
    blob = b""
    for f in sorted(Path(data).rglob("*")):
        if f.is_file() and f.name != "keystore":
            blob += f.read_bytes()
    return blob


def assert_nowhere(wharf, data, secret, since=0):
    """secret is in no file of the data dir, in no command output after
    the first `since` commands, and not in the audit trail."""
    needle = secret.encode()
    assert needle not in everything_stored(data), "secret stored in the clear"
    # the audit trail as the CLI shows it joins the outputs checked below
    wharf.ok("audit", "list", "--json", "--limit", "100000", "--data", data)
    for argv, out, err in wharf.outputs[since:]:
        assert secret not in out and secret not in err, (
            f"secret shown again by {' '.join(argv[1:])}")


def test_r13_init_prints_admin_and_one_time_password(wharf, tmp_path):
    data = tmp_path / "d"
    p = wharf.init(data)
    assert "administrator: admin" in p.stdout
    m = OTP_RE.search(p.stdout)
    assert m, p.stdout
    otp = m.group(1)
    shown = len(wharf.outputs)
    u = users(wharf, data)
    assert list(u) == ["admin"]
    assert u["admin"]["role"] == "admin"
    assert u["admin"]["must_change_password"] is True
    assert u["admin"]["mfa"] is False
    assert_nowhere(wharf, data, otp, since=shown)
    audit = wharf.ok("audit", "list", "--data", data).stdout
    assert re.search(r"system .* user\.create +admin +role=admin "
                     r"one-time-password", audit), audit


def test_r14_cli_user_add_list_role_disable(wharf, data_dir):
    d = data_dir
    p = wharf.ok("user", "add", "alice", "--role", "operator", "--data", d)
    assert "created user alice (operator)" in p.stdout
    otp = OTP_RE.search(p.stdout).group(1)
    shown = len(wharf.outputs)
    one_error_line(wharf("user", "add", "alice", "--role", "viewer",
                         "--data", d), "exists")
    one_error_line(wharf("user", "add", "Alice Smith", "--role", "viewer",
                         "--data", d), "user name")
    assert wharf("user", "add", "bob", "--role", "root",
                 "--data", d).returncode == 2
    assert wharf("user", "add", "bob", "--data", d).returncode == 2
    u = users(wharf, d)
    assert sorted(u) == ["admin", "alice"]
    assert u["alice"]["role"] == "operator"
    assert u["alice"]["must_change_password"] is True
    table = wharf.ok("user", "list", "--data", d).stdout
    assert re.search(r"^alice +operator +off +new-pw", table, re.M), table

    wharf.ok("user", "role", "alice", "auditor", "--data", d)
    assert users(wharf, d)["alice"]["role"] == "auditor"
    wharf.ok("user", "disable", "alice", "--data", d)
    assert users(wharf, d)["alice"]["disabled"] is True
    wharf.ok("user", "enable", "alice", "--data", d)
    assert users(wharf, d)["alice"]["disabled"] is False
    one_error_line(wharf("user", "role", "nobody", "viewer", "--data", d),
                   "no such user")

    # never without an enabled administrator
    one_error_line(wharf("user", "disable", "admin", "--data", d),
                   "last enabled administrator")
    one_error_line(wharf("user", "role", "admin", "viewer", "--data", d),
                   "last enabled administrator")
    wharf.ok("user", "role", "alice", "admin", "--data", d)
    wharf.ok("user", "disable", "admin", "--data", d)
    assert users(wharf, d)["admin"]["disabled"] is True

    audit = wharf.ok("audit", "list", "--data", d).stdout
    for action, target in [("user.create", "alice"), ("user.role", "alice"),
                           ("user.disable", "alice"), ("user.enable", "alice"),
                           ("user.disable", "admin")]:
        assert re.search(rf"cli .* {re.escape(action)} +{target}\b", audit), (
            action, target, audit)
    assert_nowhere(wharf, d, otp, since=shown)


def test_r16_cli_passwd_applies_the_policy(wharf, data_dir):
    d = data_dir
    wharf.ok("user", "add", "carol", "--role", "viewer", "--data", d)
    for pw, word in [("short-pw", "12 characters"),
                     ("Password1234!", "common"),
                     ("qwertyuiopasdfghjkl", "common"),
                     ("my-name-is-carol-7", "user name"),
                     ("abababababababab", "pattern")]:
        one_error_line(wharf("user", "passwd", "carol", "--data", d,
                             input=pw + "\n"), word)
    good = "harbour-lantern-violet-83"
    p = wharf.ok("user", "passwd", "carol", "--data", d, input=good + "\n")
    assert "password of carol changed" in p.stdout
    assert users(wharf, d)["carol"]["must_change_password"] is False
    one_error_line(wharf("user", "passwd", "ghost", "--data", d,
                         input=good + "\n"), "no such user")
    for pw in ["short-pw", "Password1234!", good]:
        assert_nowhere(wharf, d, pw)
    # the hash that was stored is Argon2id with the documented parameters
    db = everything_stored(d)
    assert b"$argon2id$v=19$m=65536,t=3,p=1$" in db


def test_r04_cli_token_shown_once(wharf, data_dir):
    d = data_dir
    p = wharf.ok("token", "create", "--role", "operator", "--name", "ci",
                 "--days", "7", "--owner", "admin", "--data", d)
    token = p.stdout.strip()
    assert TOKEN_RE.match(token), p.stdout
    assert p.stdout.count("\n") == 1
    m = re.search(r"created API token ([0-9a-f-]{36}) \(role operator, "
                  r"owner admin, expires (\S+)\)", p.stderr)
    assert m, p.stderr
    tid = m.group(1)
    since = len(wharf.outputs)
    table = wharf.ok("token", "list", "--data", d).stdout
    assert re.search(rf"^{tid} +ci +operator +admin +active ", table,
                     re.M), table
    rows = json.loads(wharf.ok("token", "list", "--json", "--data", d).stdout)
    assert [(r["id"], r["name"], r["role"], r["owner"], r["status"],
             r["created_by"]) for r in rows] == [
        (tid, "ci", "operator", "admin", "active", "cli")]
    assert rows[0]["expires_at"] and rows[0]["last_used_at"] is None
    assert_nowhere(wharf, d, token, since=since)
    assert_nowhere(wharf, d, token[len("wharf_"):], since=since)

    wharf.ok("token", "revoke", tid, "--data", d)
    rows = json.loads(wharf.ok("token", "list", "--json", "--data", d).stdout)
    assert rows[0]["status"] == "revoked"
    one_error_line(wharf("token", "revoke", tid, "--data", d), "no such")
    assert wharf("token", "create", "--data", d).returncode == 2
    assert wharf("token", "create", "--role", "viewer", "--days", "-1",
                 "--owner", "admin", "--data", d).returncode == 2
    assert wharf("token", "create", "--role", "viewer", "--days", "9999",
                 "--owner", "admin", "--data", d).returncode == 2
    # R14: every token acts as a user: the CLI has none to lend it
    assert wharf("token", "create", "--role", "viewer",
                 "--data", d).returncode == 2
    one_error_line(wharf("token", "create", "--role", "viewer", "--owner",
                         "ghost", "--data", d), "no such user")
    p = wharf.ok("token", "create", "--role", "viewer", "--days", "0",
                 "--owner", "admin", "--data", d)
    assert "expires never" in p.stderr
    audit = wharf.ok("audit", "list", "--data", d).stdout
    assert re.search(rf"token\.create +{tid} +name=ci role=operator "
                     r"owner=admin", audit)
    assert re.search(rf"token\.revoke +{tid}", audit)


def oathtool(secret, at):
    """The TOTP code for the base32 secret at unix time `at`, computed by
    Debian's oathtool (independent of Wharf's implementation)."""
    exe = shutil.which("oathtool")
    if exe is None:
        pytest.fail("oathtool not found: run scripts/deps.sh test "
                    "(Debian package oathtool)", pytrace=False)
    out = subprocess.run([exe, "--totp", "-b", secret, "--now", f"@{at}"],
                         capture_output=True, text=True, check=True)
    code = out.stdout.strip()
    assert re.fullmatch(r"\d{6}", code), code
    return code


def test_r13_cli_totp_with_oathtool(wharf, data_dir):
    d = data_dir
    wharf.ok("user", "add", "dora", "--role", "admin", "--data", d)
    uri = wharf.ok("user", "mfa", "enroll", "dora", "--data",
                   d).stdout.splitlines()[0]
    m = re.fullmatch(r"otpauth://totp/Wharf:dora\?secret=([A-Z2-7]{32})"
                     r"&issuer=Wharf&algorithm=SHA1&digits=6&period=30", uri)
    assert m, uri
    secret = m.group(1)
    since = len(wharf.outputs)
    assert users(wharf, d)["dora"]["mfa"] is False

    now = int(time.time())
    wrong = oathtool(secret, now - 600)          # 20 steps ago: refused
    one_error_line(wharf("user", "mfa", "confirm", "dora", wrong,
                         "--data", d), "wrong code")
    assert users(wharf, d)["dora"]["mfa"] is False
    first = oathtool(secret, now)
    p = wharf.ok("user", "mfa", "confirm", "dora", first, "--data", d)
    codes = [l for l in p.stdout.splitlines() if RECOVERY_RE.match(l)]
    assert len(codes) == 10 and len(set(codes)) == 10, p.stdout
    assert users(wharf, d)["dora"]["mfa"] is True

    # the confirming code cannot be used again (replay)
    one_error_line(wharf("user", "mfa", "verify", "dora", first, "--data", d),
                   "reused")
    # a wrong code
    bad = "000000" if first != "000000" else "111111"
    nxt = oathtool(secret, now + 30)
    if bad == nxt:
        bad = "222222"
    one_error_line(wharf("user", "mfa", "verify", "dora", bad, "--data", d),
                   "wrong code")
    # the next step's code works once (within the +-1 step window)
    p = wharf.ok("user", "mfa", "verify", "dora", nxt, "--data", d)
    assert "accepted (TOTP code)" in p.stdout
    one_error_line(wharf("user", "mfa", "verify", "dora", nxt, "--data", d),
                   "reused")
    # a recovery code works once, also typed from stdin
    p = wharf.ok("user", "mfa", "verify", "dora", codes[0], "--data", d)
    assert "recovery code" in p.stdout
    one_error_line(wharf("user", "mfa", "verify", "dora", codes[0],
                         "--data", d), "used")
    p = wharf.ok("user", "mfa", "verify", "dora", "-", "--data", d,
                 input=codes[1].upper().replace("-", "") + "\n")
    assert "recovery code" in p.stdout
    # enrolling again needs a disable first
    one_error_line(wharf("user", "mfa", "enroll", "dora", "--data", d),
                   "already enabled")
    wharf.ok("user", "mfa", "disable", "dora", "--data", d)
    assert users(wharf, d)["dora"]["mfa"] is False
    one_error_line(wharf("user", "mfa", "verify", "dora", codes[2],
                         "--data", d), "refused")

    audit = wharf.ok("audit", "list", "--data", d).stdout
    for action in ["mfa.enroll_start", "mfa.enroll_failure", "mfa.enroll",
                   "mfa.recovery_used", "mfa.disable"]:
        assert re.search(rf" {re.escape(action)} +dora\b", audit), (
            action, audit)
    # the seed and the recovery codes were shown once, and stored only
    # sealed or hashed
    assert_nowhere(wharf, d, secret, since=since)
    for c in codes:
        assert c.encode() not in everything_stored(d)
        assert c.replace("-", "").encode() not in everything_stored(d)


def test_r13_cli_help_and_usage(wharf, data_dir):
    for cmd in ("user", "token"):
        p = wharf(cmd, "--help")
        assert p.returncode == 0 and p.stdout.startswith("usage:")
        assert wharf(cmd, "--data", data_dir).returncode == 2
        assert wharf(cmd, "frobnicate", "--data", data_dir).returncode == 2
    top = wharf("--help").stdout
    assert re.search(r"^\s+user\s", top, re.M)
    assert re.search(r"^\s+token\s", top, re.M)
