"""R4: programs can authenticate to the admin API with a client certificate
(mutual TLS), mapped to a role by the setting client_cert_roles."""
import http.client
import json
import re
import ssl

import pytest

from conftest import new_data_dir, tune_conf
from test_r03_tls import make_ca, make_client


def call(port, method, path, cert, body=None, token=None):
    ctx = ssl._create_unverified_context()
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


@pytest.fixture
def admin_mtls(wharf, start_server, tmp_path):
    ca, ca_key = make_ca(tmp_path, "programs")
    bot = make_client(tmp_path, ca, ca_key, "erp-bot")
    other = make_client(tmp_path, ca, ca_key, "unmapped-bot")
    data = new_data_dir(wharf, tmp_path / "data")
    tune_conf(data, admin_client_ca=ca)
    out = wharf.ok("token", "create", "--data", str(data), "--role", "admin",
                   "--owner", "admin")
    token = re.search(r"wharf_[A-Za-z0-9_-]+", out.stdout + out.stderr).group(0)
    srv = start_server(data)
    admin, _ = srv.wait_listening()
    yield admin, bot, other, token
    srv.stop()


def test_r04_client_certificate_maps_to_role(admin_mtls):
    admin, bot, other, token = admin_mtls
    # Not mapped yet: a trusted certificate alone is not a credential.
    st, body = call(admin, "GET", "/api/v1/auth/me", bot)
    assert st == 401, body
    st, body = call(admin, "PUT", "/api/v1/settings/client_cert_roles", bot,
                    {"value": json.dumps({"/CN=erp-bot": "operator"})}, token)
    assert st == 200, body
    st, me = call(admin, "GET", "/api/v1/auth/me", bot)
    assert st == 200 and me["role"] == "operator", me
    # An operator may change flows (no CSRF: no cookie) but not read users.
    st, flow = call(admin, "GET", "/api/v1/flows", bot)
    assert st == 200, flow
    st, body = call(admin, "PUT", "/api/v1/flows", bot, flow)
    assert st == 200, body
    st, body = call(admin, "GET", "/api/v1/users", bot)
    assert st == 403, body
    # Another certificate of the same CA without a mapping stays refused.
    st, body = call(admin, "GET", "/api/v1/auth/me", other)
    assert st == 401, body


def test_r04_client_cert_form_can_be_turned_off(admin_mtls):
    admin, bot, _, token = admin_mtls
    call(admin, "PUT", "/api/v1/settings/client_cert_roles", bot,
         {"value": json.dumps({"/CN=erp-bot": "viewer"})}, token)
    assert call(admin, "GET", "/api/v1/auth/me", bot)[0] == 200
    st, body = call(admin, "PUT", "/api/v1/settings/auth_forms", bot,
                    {"value": "password,token"}, token)
    assert st == 200, body
    assert call(admin, "GET", "/api/v1/auth/me", bot)[0] == 401


def test_r04_bad_role_mapping_rejected(admin_mtls):
    admin, bot, _, token = admin_mtls
    st, body = call(admin, "PUT", "/api/v1/settings/client_cert_roles", bot,
                    {"value": json.dumps({"/CN=erp-bot": "root"})}, token)
    assert st == 400, body
