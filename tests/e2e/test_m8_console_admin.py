"""
M8 web console, journeys 5 "Partners and certificates", 6
"Administration" and 7 "role-aware", in Debian's Chromium against a real
`wharf serve`:

  - partners: our AS2 profile and keys with their expiry, the partners
    with their algorithm policy, MDN mode and interop switches, the
    certificates with expiry; export gives the PEM; a rollover adds a
    certificate with use_from; a partner is added from its DER
    certificate through the flow document (the server's validation: a
    bad AS2 id is refused beside its field);
  - administration: users (add: the one-time password shown once; role;
    disable; password reset), API tokens (created: shown once and it
    works; revoked: 401), sessions (another person's revoked: 401),
    sign-in settings, the audit trail (filter, Verify: intact, then the
    first break after the database is tampered with);
  - an auditor sees the same pages without one action, and the server
    refuses the auditor's user creation (403); a viewer has no
    administration and no partner changes.
"""
import json
import sqlite3
import subprocess

from as2_pair import as2_keys
from conftest import file_source, flow_doc, wait_until
from console import browser  # noqa: F401 - fixture
from test_m8_console_messages import fetch_in_page
from test_r14_api import (Api, Session, cli_token, cli_user, new_password)


def setup_partner_flow(wharf, data, tmp_path):
    me_cert, me_key = as2_keys(tmp_path, "wharf-me")
    acme, _ = as2_keys(tmp_path, "acme")
    out = tmp_path / "outbox"
    out.mkdir()
    doc = flow_doc([file_source("outbox", out),
                    {"name": "as2-acme", "type": "as2",
                     "config": {"partner": "acme"}}],
                   [("outbox", "as2-acme")])
    doc["profile"] = {"as2_id": "wharf-me",
                      "keys": [{"cert": str(me_cert), "key": str(me_key)}]}
    doc["partners"] = [{"name": "acme", "as2_id": "ACME-AS2",
                        "url": "https://127.0.0.1:9/as2",
                        "certificates": [str(acme)], "sign": "sha384",
                        "mdn": "async", "async_mdn_url":
                        "https://127.0.0.1:9/as2/mdn",
                        "accept_unsigned": True}]
    wharf.import_flow(data, doc, tmp_path / "flow.json")
    return acme


def test_m8_console_partners_and_administration(wharf, data_dir,
                                                start_server, browser,
                                                tmp_path):
    acme = setup_partner_flow(wharf, data_dir, tmp_path)
    token = cli_token(wharf, data_dir, "admin")[0]
    pw = cli_user(wharf, data_dir, "ada", "admin", new_password())
    aud_pw = cli_user(wharf, data_dir, "audrey", "auditor", new_password())
    omar_pw = cli_user(wharf, data_dir, "omar", "operator", new_password())
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    api = Api(port)
    # administrators must enrol TOTP by default (the sign-in journey
    # tests that); here an administrator without it
    api.ok("PUT", "/api/v1/settings/mfa_required_admin",
           body={"value": "false"}, token=token)
    b = browser(f"https://127.0.0.1:{port}")
    b.sign_in("ada", pw)
    b.signed_in()

    # ---- partners and certificates
    b.go("/partners")
    b.wait_for("table.partners")
    assert b.find("#profile-id").text == "wharf-me"
    assert "wharf-me" in b.find("table.our-keys").text
    row = b.find('table.partners tr[data-partner="acme"]').text
    for word in ("ACME-AS2", "sha384", "async", "accept_unsigned"):
        assert word in row, row
    assert "acme" in b.find("table.partner-certs").text
    b.check()
    b.axe("partners")
    b.shots("40-partners")
    href = b.find("table.partner-certs a").get_attribute("href")
    pem = b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.text()).then(done);""", href)
    assert pem.strip() == acme.read_text().strip()
    # rollover: a new certificate, used from a date
    acme2, _ = as2_keys(tmp_path, "acme-2027")
    b.find("#rollover input[type=file]").send_keys(str(acme2))
    b.js("document.querySelector('#rollover input[type=datetime-local]')"
         ".value = '2031-01-31T00:00'")
    b.click("#rollover button[type=submit]")
    wait_until(lambda: len(b.find_all("table.partner-certs tbody tr")) == 2,
               desc="the second certificate")
    assert "2031-01-31" in b.find("table.partner-certs").text
    # add a partner from a DER file; a bad AS2 id first
    der = tmp_path / "globex.der"
    gx, _ = as2_keys(tmp_path, "globex")
    subprocess.run(["openssl", "x509", "-in", gx, "-outform", "der", "-out",
                    der], check=True)
    b.fill_label("Name", "globex", scope="#add-partner")
    b.fill_label("AS2 id", 'GLOBEX "AS2"', scope="#add-partner")
    b.fill_label("AS2 URL", "https://127.0.0.1:9/as2", scope="#add-partner")
    b.find("#add-partner input[type=file]").send_keys(str(der))
    b.expect(r"api/v1/flows - Failed to load resource.*400", count=2)
    b.click("#add-partner button[type=submit]")
    err = b.wait_for("#add-partner .field-error")
    assert "as2_id" in err.text
    b.fill_label("AS2 id", "GLOBEX-AS2", scope="#add-partner")
    # the addresses it sends from (R2): an entry with host bits first
    b.fill_label("Only from", "192.0.2.1/24", scope="#add-partner")
    b.click("#add-partner button[type=submit]")
    wait_until(lambda: any("host bits set" in e.text for e in b.find_all(
        "#add-partner .field-error")), desc="the Only from error")
    b.fill_label("Only from", "192.0.2.0/24, 198.51.100.7",
                 scope="#add-partner")
    b.click("#add-partner button[type=submit]")
    b.wait_for('table.partners tr[data-partner="globex"]')
    exported = json.loads(wharf.export_flow(data_dir))
    assert {p["name"] for p in exported["partners"]} == {"acme", "globex"}
    globex = next(p for p in exported["partners"] if p["name"] == "globex")
    assert globex["allow_from"] == ["192.0.2.0/24", "198.51.100.7"], globex
    # our profile: a second key from a PKCS#12 file
    k2c, k2k = as2_keys(tmp_path, "wharf-me-2031")
    p12 = tmp_path / "me.p12"
    subprocess.run(["openssl", "pkcs12", "-export", "-in", k2c, "-inkey", k2k,
                    "-out", p12, "-passout", "pass:p12-Secret-pass"], check=True)
    b.find("#profile-form input[accept='.p12,.pfx']").send_keys(str(p12))
    b.fill_label("PKCS#12 password", "p12-Secret-pass", scope="#profile-form")
    b.click("#profile-form button[type=submit]")
    wait_until(lambda: len(b.find_all("table.our-keys tbody tr")) == 2,
               desc="our second key")
    assert "wharf-me-2031" in b.find("table.our-keys").text
    assert "p12-Secret-pass" not in wharf.export_flow(data_dir)
    b.check()

    # ---- users
    b.go("/admin/users")
    b.wait_for("table.users")
    b.fill_label("New user name", "nina")
    b.click("#add-user button[type=submit]")
    otp = b.wait_for("#shown-once").text.strip()
    assert len(otp) >= 12
    b.check()
    b.axe("users")
    b.shots("41-admin-users")
    sel = b.find('tr[data-user="nina"] select.role')
    b.js("arguments[0].value = 'operator';"
         "arguments[0].dispatchEvent(new Event('change'))", sel)
    b.wait_text("#admin-msg", "role operator")
    users = {u["name"]: u for u in api.ok("GET", "/api/v1/users",
                                          token=token).json()["users"]}
    assert users["nina"]["role"] == "operator"
    b.click_text("Disable", scope='tr[data-user="nina"]')
    b.wait_text("#admin-msg", "disabled")
    wait_until(lambda: "disabled" in b.find('tr[data-user="nina"]').text,
               desc="nina disabled")
    b.click_text("Reset password", scope='tr[data-user="omar"]')
    assert b.wait_for("#shown-once").text.strip()

    # ---- tokens: shown once, works, revoked
    b.go("/admin/tokens")
    b.wait_for("#add-token")
    b.fill_label("Token name", "erp-upload")
    b.click("#add-token button[type=submit]")
    tok = b.wait_for("#shown-once").text.strip()
    assert tok.startswith("wharf_")
    assert api.ok("GET", "/api/v1/auth/me", token=tok).json()["role"] == "viewer"
    assert tok not in b.find("table.tokens").text
    b.shots("42-admin-tokens")
    b.click('table.tokens button[aria-label="Revoke erp-upload"]')
    wait_until(lambda: api.request("GET", "/api/v1/auth/me",
                                   token=tok).status == 401,
               desc="the revoked token refused")
    b.check()

    # ---- sessions: revoke another person's (omar's password was reset)
    other = Session(api, "audrey", aud_pw)
    b.go("/admin/sessions")
    b.wait_for("table.sessions")
    revoke = [x for x in b.find_all("table.sessions button")]
    assert revoke, b.find("table.sessions").text
    for x in revoke:
        b.press(x)
    wait_until(lambda: other.request("GET", "/api/v1/auth/me").status == 401,
               desc="audrey's session revoked")
    b.check()

    # ---- settings
    b.go("/admin/settings")
    b.wait_for("#settings-form")
    b.fill_label("Sign out after this many idle minutes", "30")
    b.click("#settings-form button[type=submit]")
    b.wait_text("#settings-msg", "changed")
    assert api.ok("GET", "/api/v1/settings", token=token).json()[
        "settings"]["session_idle_minutes"] == "30"
    b.axe("settings")

    # ---- audit: filter, verify, tamper, verify
    b.go("/admin/audit")
    b.wait_for("table.audit")
    b.fill_label("Filter this page", "user.create")
    wait_until(lambda: b.texts("table.audit tbody tr") and all(
        "user.create" in t for t in b.texts("table.audit tbody tr")),
        desc="the filter")
    b.click("#verify")
    b.wait_text("#verify-result", "Intact")
    b.shots("43-admin-audit")
    db = sqlite3.connect(str(data_dir / "wharf.db"))
    db.execute("UPDATE audit SET detail = 'rewritten' WHERE seq = 3")
    db.commit()
    db.close()
    b.click("#verify")
    b.wait_text("#verify-result", "Broken at entry 3")
    b.check()
    b.click("#signout")
    b.wait_text("#login-msg", "signed out")

    # ---- an auditor: reads, changes nothing; the server refuses anyway
    b.sign_in("audrey", aud_pw)
    b.signed_in()
    b.go("/admin/users")
    b.wait_for("table.users")
    assert not b.find_all("#add-user") and not b.find_all("table.users button")
    assert not b.find_all("table.users select")
    b.go("/admin/tokens")
    b.wait_for("table.tokens")
    assert not b.find_all("#add-token") and not b.find_all("table.tokens button")
    b.go("/partners")
    b.wait_for("table.partners")
    assert not b.find_all("#rollover") and not b.find_all("#add-partner")
    b.expect(r"api/v1/users - Failed to load resource.*403")
    assert fetch_in_page(b, "POST", "/api/v1/users") == [403, "forbidden"]
    b.check()
    b.shots("44-admin-auditor")
    srv.stop()


def test_m8_console_viewer_sees_no_administration(wharf, data_dir,
                                                 start_server, browser):
    pw = cli_user(wharf, data_dir, "val", "viewer", new_password())
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    b = browser(f"https://127.0.0.1:{port}")
    b.sign_in("val", pw)
    nav = b.signed_in() and b.find("#top nav").text
    assert "Administration" not in nav and "Dashboard" in nav, nav
    b.go("/admin")
    b.wait_text("#main h1", "Not allowed")
    b.go("/partners")
    b.wait_for("#main h1")
    assert not b.find_all("#add-partner") and not b.find_all("#rollover")
    b.expect(r"api/v1/audit - Failed to load resource.*403")
    assert fetch_in_page(b, "GET", "/api/v1/audit") == [403, "forbidden"]
    b.check()
    srv.stop()
