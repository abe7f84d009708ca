"""M8: the REST API refuses what it does not understand instead of
ignoring it (found while writing the OpenAPI schemas): a user update with
a member of the wrong type or an unknown member changes nothing and is a
400; a message search filter that cannot be decoded (too long, a bad
%-escape) is a 400, not a silently unfiltered answer."""
import json

from conftest import listen_port, new_data_dir
from test_r14_api import Api, TOKEN_RE


def admin_token(wharf, data):
    out = wharf.ok("token", "create", "--data", data, "--role", "admin",
                   "--owner", "admin").stdout
    return TOKEN_RE.search(out).group(1)


def test_m8_user_update_refuses_wrong_members(tmp_path, wharf,
                                              start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    wharf.ok("user", "add", "--data", data, "bob", "--role", "operator")
    srv = start_server(data)
    srv.wait_listening()
    api, tok = Api(listen_port(data, "admin")), admin_token(wharf, data)
    for body in ({"role": "viewer", "reset_password": "true"},
                 {"role": "viewer", "disabled": 1},
                 {"role": "viewer", "colour": "blue"},
                 {"role": 7}):
        r = api.request("PUT", "/api/v1/users/bob", body=body, token=tok)
        assert r.status == 400, (body, r)
    users = json.loads(wharf.ok("user", "list", "--data", data,
                                "--json").stdout)
    bob = [u for u in users if u["name"] == "bob"][0]
    assert bob["role"] == "operator", bob       # nothing was applied
    r = api.request("PUT", "/api/v1/users/bob", body={"role": "viewer"},
                    token=tok)
    assert r.status == 200, r
    srv.stop()


def test_m8_message_search_refuses_undecodable_filters(tmp_path, wharf,
                                                       start_server):
    data = new_data_dir(wharf, tmp_path / "data")
    srv = start_server(data)
    srv.wait_listening()
    api, tok = Api(listen_port(data, "admin")), admin_token(wharf, data)
    for query in ("q=" + "a" * 300, "q=%zz", "connector=" + "c" * 200,
                  "partner=%4"):
        r = api.request("GET", f"/api/v1/messages?{query}", token=tok)
        assert r.status == 400, (query, r)
    r = api.request("GET", "/api/v1/messages?q=abc", token=tok)
    assert r.status == 200, r
    srv.stop()
