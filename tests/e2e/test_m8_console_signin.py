"""
M8 web console, journey 1 "Sign in" (R13, R17), in Debian's Chromium
against a real `wharf serve`:

  - the first administrator signs in with the one-time password `wharf
    init` printed, must choose a password, then enrol TOTP: the QR code
    is an image drawn by the server (a data: URI, no outside service),
    the key is shown as text, Debian's oathtool computes the code from it
    independently, and the recovery codes are shown once;
  - signing out, and in again: password, then the TOTP prompt (a code
    from oathtool), then with a recovery code (which works once);
  - a refused sign-in says the same for a wrong password, an unknown user
    and a wrong code (nothing that helps enumeration);
  - a session that timed out on the server (idle) sends the console back
    to the sign-in form with a notice;
  - the OIDC button shows only when single sign-on is configured.
Every page is checked for console errors, CSP violations and failed
requests (but the refusals the test provokes), scanned with axe-core,
and photographed at 1280x800 and 390x844 under build/console-screenshots/.
"""
import re
import sqlite3
import time
from pathlib import Path

from conftest import wait_until
from console import browser  # noqa: F401 - fixture
from test_r14_api import Api, OTP_RE, cli_token, oathtool

SECRET_RE = re.compile(r"^[A-Z2-7]{16,}$")


def init_otp(wharf, data):
    for argv, out, _ in wharf.outputs:
        if argv[1] == "init" and str(data) in argv:
            return OTP_RE.search(out).group(1)
    raise AssertionError("no init output")


def age_sessions(data, user, ms):
    """Move every session of user ms into the past (last use)."""
    db = sqlite3.connect(str(Path(data) / "wharf.db"), timeout=30)
    try:
        db.execute("UPDATE sessions SET last_seen_at = last_seen_at - ? "
                   "WHERE user_id = (SELECT id FROM users WHERE name = ?)",
                   (ms, user))
        db.commit()
    finally:
        db.close()


def refusal_text(b):
    return b.wait_for("#login-msg .notice.error").text


def test_m8_console_sign_in_first_login_totp_recovery_sign_out(
        wharf, data_dir, start_server, browser):
    otp = init_otp(wharf, data_dir)
    srv = start_server(data_dir)
    admin_port, _ = srv.wait_listening()
    b = browser(f"https://127.0.0.1:{admin_port}")

    # the sign-in form; no OIDC button when OIDC is not configured
    b.open("/")
    b.wait_for("#login")
    assert not b.find_all("#oidc-login")
    b.check()
    b.axe("sign-in form")
    b.shots("01-sign-in")

    # refusals read the same whatever was wrong
    b.expect(r"auth/login - Failed to load resource.*401", count=2)
    b.sign_in("admin", "not-the-password")
    wrong_pw = refusal_text(b)
    b.sign_in("nobody-by-this-name", "not-the-password")
    b.wait_for("#login-msg .notice.error")
    unknown = refusal_text(b)
    assert wrong_pw == unknown, (wrong_pw, unknown)
    assert "nobody" not in unknown and "exist" not in unknown.lower()
    b.check()

    # first login: the one-time password, then a password of one's own
    b.sign_in("admin", otp)
    b.wait_for("#change-password")
    b.check()
    b.shots("02-choose-password")
    b.fill_label("New password", "Quay-crane-rigging-2031")
    b.fill_label("New password again", "Quay-crane-rigging-2032")
    b.click("#change-password button[type=submit]")
    b.wait_text("#change-password .field-error", "differ")
    b.fill_label("New password again", "Quay-crane-rigging-2031")
    b.click("#change-password button[type=submit]")

    # TOTP enrolment: a QR image drawn locally, the key as text
    b.wait_for("#enrol")
    qr = b.find("#totp-qr")
    src = qr.get_attribute("src")
    assert src.startswith("data:image/svg+xml;base64,"), src[:60]
    wait_until(lambda: b.js("return arguments[0].complete && "
                            "arguments[0].naturalWidth > 0", qr),
               desc="the QR image to load")
    secret = b.find("#totp-secret").text.strip()
    assert SECRET_RE.match(secret), secret
    b.check()
    b.axe("TOTP enrolment")
    b.shots("03-enrol-totp")
    b.expect(r"auth/mfa/confirm - Failed to load resource.*401")
    b.fill_label("Code shown by the app", "000000" if oathtool(
        secret, int(time.time())) != "000000" else "111111")
    b.click("#enrol button[type=submit]")
    b.wait_text("#enrol .field-error", "not accepted")
    now = int(time.time())
    b.fill_label("Code shown by the app", oathtool(secret, now))
    b.click("#enrol button[type=submit]")

    # recovery codes, once
    b.wait_for("#recovery-codes")
    codes = [c.strip() for c in b.texts("#recovery-codes li")]
    assert len(codes) >= 8 and len(set(codes)) == len(codes), codes
    b.check()
    b.axe("recovery codes")
    b.shots("04-recovery-codes")
    b.click("#codes-saved")
    assert "admin" in b.signed_in().text
    b.check()

    # sign out, sign in again: password, then the TOTP prompt
    b.click("#signout")
    b.wait_text("#login-msg", "signed out")
    b.sign_in("admin", "Quay-crane-rigging-2031", code=oathtool(secret, now + 30))
    assert "admin" in b.signed_in().text
    b.check()
    b.click("#signout")
    b.wait_for("#login")

    # a wrong code is refused like everything else; a recovery code works
    # once
    b.expect(r"auth/login - Failed to load resource.*401", count=1)
    b.sign_in("admin", "Quay-crane-rigging-2031", code="123456")
    b.wait_for("#login-msg .notice.error")
    assert refusal_text(b) == wrong_pw
    b.sign_in("admin", "Quay-crane-rigging-2031", code=codes[0])
    b.signed_in()
    b.click("#signout")
    b.wait_for("#login")
    b.expect(r"auth/login - Failed to load resource.*401", count=2)
    b.sign_in("admin", "Quay-crane-rigging-2031", code=codes[0])
    b.wait_for("#login-msg .notice.error")
    assert refusal_text(b) == wrong_pw
    b.check()
    srv.stop()


def test_m8_console_idle_timeout_notice(wharf, data_dir, start_server,
                                       browser):
    """A session the server ended (idle for longer than the setting) takes
    the console back to the sign-in form with a notice, at the next call;
    the page keeps no data of the session."""
    token = cli_token(wharf, data_dir, "admin")[0]
    wharf.ok("user", "add", "olga", "--role", "viewer", "--data", data_dir)
    wharf.ok("user", "passwd", "olga", "--data", data_dir,
             input="Harbour-pilot-boat-77\n")
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    api = Api(port)
    api.ok("PUT", "/api/v1/settings/session_idle_minutes",
           body={"value": "1"}, token=token)
    b = browser(f"https://127.0.0.1:{port}")
    b.sign_in("olga", "Harbour-pilot-boat-77")
    assert "olga (viewer)" in b.signed_in().text
    b.check()
    age_sessions(data_dir, "olga", 2 * 60 * 1000)
    b.expect(r"Failed to load resource.*401", count=None)
    b.go("/account")
    b.wait_text("#login-msg", "session has ended")
    assert not b.find("#top").is_displayed()
    b.shots("05-session-ended")
    b.check()
    srv.stop()


def test_m8_console_oidc_button_when_configured(wharf, data_dir,
                                               start_server, browser):
    secret = data_dir.parent / "oidc-secret"
    secret.write_text("s3cret-of-the-client\n")
    secret.chmod(0o600)
    wharf.ok("oidc", "configure", "--data", data_dir,
             "--issuer=https://127.0.0.1:9/realms/x", "--client-id=wharf",
             f"--client-secret-file={secret}",
             "--redirect-uri=https://127.0.0.1:8443/api/v1/auth/oidc/callback")
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    b = browser(f"https://127.0.0.1:{port}")
    b.open("/")
    link = b.wait_for("#oidc-login")
    assert link.get_attribute("href").endswith("/api/v1/auth/oidc/login")
    b.check()
    srv.stop()


def test_m8_console_keyboard_only(wharf, data_dir, start_server, browser):
    """Usable without a mouse: Tab reaches the fields in order (their
    labels name them), Enter signs in; Tab walks the navigation and Enter
    follows it; every page's heading gets the focus's place."""
    wharf.ok("user", "add", "kim", "--role", "operator", "--data", data_dir)
    wharf.ok("user", "passwd", "kim", "--data", data_dir,
             input="Keyboard-only-crane-42\n")
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    b = browser(f"https://127.0.0.1:{port}")
    b.open("/")
    b.wait_for("#login")
    active = b.driver.switch_to.active_element
    assert active.get_attribute("autocomplete") == "username", (
        "the user name field has the focus first")
    b.type_keys("kim")
    el = b.press_tab()
    assert el.get_attribute("type") == "password"
    b.type_keys("Keyboard-only-crane-42", b.Keys.ENTER)
    b.signed_in()
    # from the page, Tab until the navigation's "Messages" link, Enter
    b.js("document.body.focus()")
    for _ in range(12):
        el = b.press_tab()
        if el.tag_name == "a" and el.text == "Messages":
            break
    else:
        raise AssertionError("Tab never reached the Messages link")
    b.type_keys(b.Keys.ENTER)
    b.wait_for("#message-search")
    # the search form: Tab from the heading reaches the Search field
    labels = []
    for _ in range(4):
        el = b.press_tab()
        lid = el.get_attribute("id")
        lab = b.find_all(f'label[for="{lid}"]') if lid else []
        labels.append(lab[0].text if lab else el.tag_name)
    assert "Search" in labels, labels
    b.check()
    srv.stop()
