"""
M8 web console, journey 4 "Flows", in Debian's Chromium against a real
`wharf serve` and the OpenSSH server the SFTP tests start:

  - the connectors and links drawn as a graph (one node per connector,
    one edge per link, each node a link to the connector) and listed;
  - an SFTP connector without a confirmed host key: Test connection says
    which stage failed (the host key), "Check the host key" shows the
    fingerprint sshd has (as ssh-keygen prints it), "Trust this key" pins
    it, and Test connection then passes; the key file is shown only as
    "set (hidden)";
  - add a connector with the form generated from the server's declared
    config keys (GET /api/v1/connector-types): the server refuses a folder outside allowed_paths,
    exactly as `wharf flow import` does, and the console shows its words
    beside the field; corrected, the connector is added with its link;
    edit it; remove it;
  - the form generator, also fed a fixture of the route's shape: one
    labelled field per key, required marked, help text,
    defaults, secrets as empty password fields never filled from the
    server (left empty the stored secret stays), errors beside the key;
  - a viewer sees no add, edit, remove or test, and the server refuses
    the viewer's flow import (403).
"""
import json
import os

import pytest

from conftest import file_dest, file_source, flow_doc, wait_until
from console import browser  # noqa: F401 - fixture
from test_m5_sftp import SSHD, sshd, sftp_conn  # noqa: F401 - fixture
from test_r14_api import cli_user, new_password
from test_m8_console_messages import fetch_in_page

pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or os.geteuid() != 0,
    reason="needs openssh-server (scripts/deps.sh test) and root")

TYPES_FIXTURE = {"types": [
    {"name": "file", "options": [
        {"key": "receive_dir", "type": "folder", "required": False,
         "secret": False, "default": None,
         "help": "Folder to pick files up from."},
        {"key": "pattern", "type": "string", "required": False,
         "secret": False, "default": "*", "help": "Which files."},
        {"key": "stable_ms", "type": "integer", "required": False,
         "secret": False, "default": 1000, "help": "Size unchanged this long."}]},
    {"name": "sftp", "options": [
        {"key": "host", "type": "string", "required": True, "secret": False,
         "default": None, "help": "The server."},
        {"key": "port", "type": "integer", "required": False,
         "secret": False, "default": 22, "help": "Its port."},
        {"key": "password_file", "type": "file", "required": False,
         "secret": True, "default": None, "help": "The password."},
        {"key": "resume", "type": "boolean", "required": False,
         "secret": False, "default": True, "help": "Resume cut uploads."}]}]}


def test_m8_console_flows_graph_test_hostkey_add_edit_remove(
        wharf, data_dir, start_server, browser, sshd, tmp_path):
    out, inbox = tmp_path / "outbox", tmp_path / "inbox"
    out.mkdir()
    inbox.mkdir()
    remote = sftp_conn("partner-sftp", sshd,
                      send_dir=str(sshd.remote_dir("console-up")))
    del remote["config"]["host_key_sha256"]
    doc = flow_doc([file_source("outbox", out), file_dest("inbox", inbox),
                    remote], [("outbox", "inbox"), ("outbox", "partner-sftp")])
    wharf.import_flow(data_dir, doc, tmp_path / "flow.json")
    op_pw = cli_user(wharf, data_dir, "fred", "operator", new_password())
    viewer_pw = cli_user(wharf, data_dir, "vic", "viewer", new_password())
    srv = start_server(data_dir)
    port, _ = srv.wait_listening()
    b = browser(f"https://127.0.0.1:{port}")
    b.sign_in("fred", op_pw)
    b.signed_in()

    # the graph and the list
    b.go("/flows")
    b.wait_for("#flow-graph")
    nodes = sorted(n.get_attribute("aria-label")
                   for n in b.find_all("#flow-graph a.node"))
    assert nodes == ["inbox (file)", "outbox (file)",
                     "partner-sftp (sftp)"], nodes
    assert len(b.find_all("#flow-graph path.edge")) == 2
    assert b.texts("table.connector-list tbody tr")
    b.check()
    b.axe("flows")
    b.shots("30-flows")

    # an SFTP connector: test, host key, trust, test again
    # a node is a link: reached and followed with the keyboard
    b.js("arguments[0].focus()",
         b.find('#flow-graph a.node[aria-label="partner-sftp (sftp)"]'))
    b.type_keys(b.Keys.ENTER)
    b.wait_for("#test-connection")
    cfg = b.find("table.config").text
    assert "set (hidden)" in cfg and str(sshd.client_key) not in cfg, cfg
    b.expect(r"actions/test - Failed to load resource.*502")
    b.click("#test-connection")
    b.wait_text("#connector-msg .notice.error", "host key")
    b.click("#check-hostkey")
    fp = b.wait_for("#hostkey-fp").text
    assert fp == sshd.fingerprint, (fp, sshd.fingerprint)
    b.check()
    b.shots("31-connector-hostkey")
    b.click("#trust-hostkey")
    b.wait_text("#connector-msg .notice.ok", "pinned")
    b.click("#test-connection")
    b.wait_text("#connector-msg .notice.ok", "works")
    b.check()

    # add a connector (the form generated from GET /api/v1/connector-types):
    # refused beside the field, then added with a link
    b.go("/flows/new")
    b.wait_for("form.connector-form")
    b.fill_label("Name", "archive")
    b.js("const s = document.querySelector('#link-from'); s.value = 'outbox';")
    assert not b.find_all("form.connector-form textarea"), "the JSON form"
    send_dir = b.by_label("send_dir")
    # a long path with no space: the error beside the field echoes it and
    # must wrap at the phone viewport (shots() checks nothing scrolls)
    b.fill_label("send_dir", "/etc/" + "partner_archive_" * 8)
    b.expect(r"api/v1/flows - Failed to load resource.*400")
    b.click("form.connector-form button[type=submit]")
    err = b.wait_for("form.connector-form .field-error")
    assert "outside the folders" in err.text and "allowed_paths" in err.text
    assert send_dir.get_attribute("aria-invalid") == "true"
    assert err.find_element(b.By.XPATH, "..").find_element(
        b.By.TAG_NAME, "input") == send_dir, "the error is not beside send_dir"
    b.check()
    b.axe("connector form with an error")
    b.shots("32-connector-form-error")
    archive = tmp_path / "archive"
    archive.mkdir()
    b.fill_label("send_dir", str(archive))
    b.click("form.connector-form button[type=submit]")
    b.wait_text("#main h1", "archive")
    exported = json.loads(wharf.export_flow(data_dir))
    assert ["outbox", "archive"] in exported["links"]
    assert any(c["name"] == "archive" for c in exported["connectors"])

    # edit, then remove
    b.click("#edit-connector")
    assert b.by_label("send_dir").get_attribute("value") == str(archive)
    b.js("arguments[0].value = 'overwrite'", b.by_label("on_collision"))
    b.click("form.connector-form button[type=submit]")
    b.wait_for("#test-connection")
    wait_until(lambda: "overwrite" in b.find("table.config").text,
               desc="the edited config")
    b.js("window.confirm = () => true;")     # the confirmation dialog: yes
    b.click("#remove-connector")
    b.wait_for("#flow-graph")
    exported = json.loads(wharf.export_flow(data_dir))
    assert not any(c["name"] == "archive" for c in exported["connectors"])
    assert all("archive" not in link for link in exported["links"])
    b.check()

    # the form generator with declared keys (fixture of the route's shape)
    b.go("/flows")
    b.wait_for("#flow-graph")
    res = b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/js/form.js').then(m => {
          const f = m.connectorForm(arguments[0].types, null);
          const main = document.getElementById('main');
          while (main.firstChild) main.removeChild(main.firstChild);
          main.appendChild(f.form);
          window.__form = f;
          done('ok');
        }).catch(e => done(String(e)));""", TYPES_FIXTURE)
    assert res == "ok", res
    b.find("form.connector-form select").send_keys("sftp")
    b.js("document.querySelector('form.connector-form select')"
         ".dispatchEvent(new Event('change'))")
    host = b.by_label("host (required)")
    assert host.get_attribute("required") is not None
    pw = b.by_label("password_file")
    assert pw.get_attribute("type") == "password" and pw.get_attribute("value") == ""
    assert "Default: 22" in b.find("#main").text
    b.fill_label("Name", "remote2")
    b.fill_label("host (required)", "sftp.example.net")
    b.fill_label("password_file", "hunter2-but-longer")
    got = b.js("return window.__form.read()")
    assert got == {"name": "remote2", "type": "sftp", "config": {
        "host": "sftp.example.net", "password_file": {"content": "hunter2-but-longer"}}}, got
    b.js("window.__form.showError(arguments[0])",
         "connector 'remote2' (sftp): port must be from 1 to 65535")
    assert "65535" in b.by_label("port").find_element(
        b.By.XPATH, "..").text
    # editing: a stored secret is never shown, and kept when left empty
    b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/js/form.js').then(m => {
          const f = m.connectorForm(arguments[0].types, {name: 'remote2', type: 'sftp',
            config: {host: 'h', password_file: {sealed: 'remote2/password_file'}}});
          const main = document.getElementById('main');
          while (main.firstChild) main.removeChild(main.firstChild);
          main.appendChild(f.form);
          window.__form = f;
          done('ok');
        });""", TYPES_FIXTURE)
    assert b.by_label("password_file").get_attribute("value") == ""
    assert "never shown" in b.find("#main").text
    got = b.js("return window.__form.read()")
    assert got["config"]["password_file"] == {"sealed": "remote2/password_file"}
    b.check()
    b.axe("generated connector form")
    b.shots("33-connector-form-generated")
    b.click("#signout")
    b.wait_text("#login-msg", "signed out")

    # a viewer: nothing to change, and the server says no anyway
    b.sign_in("vic", viewer_pw)
    b.signed_in()
    b.go("/flows")
    b.wait_for("#flow-graph")
    assert not b.find_all("#add-connector")
    b.go("/flows/outbox")
    b.wait_text("#main h1", "outbox")
    for sel in ("#test-connection", "#edit-connector", "#remove-connector",
                "#check-hostkey"):
        assert not b.find_all(sel), sel
    b.expect(r"api/v1/flows - Failed to load resource.*403")
    assert fetch_in_page(b, "PUT", "/api/v1/flows") == [403, "forbidden"]
    b.check()
    srv.stop()
