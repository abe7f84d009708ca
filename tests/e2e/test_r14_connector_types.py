"""
The connector types described from their tables and the generic connector
actions (the isolation issue, step 3), seen from outside:

  - `wharf connector help` lists every type the binary has and `help TYPE`
    every key of its config map with its type, default and flags, and its
    actions; both are the same tables as `--json` prints;
  - GET /api/v1/connector-types (flow.read: a viewer reads it) answers the
    same JSON, and nothing of a stored connector's secrets: no secret key
    has a default, no secret value of the imported flow appears;
  - GET|POST /api/v1/connectors/{name}/actions/{verb} (R14): the route lets
    whoever may see connectors reach the dispatcher, which then requires
    the action's own permission from its type's table: the least
    privileged role that may run "test" (operator) runs it, auditor and
    viewer are refused 403; a viewer may not start an OAuth
    authorization (flow.write); GET only for read-only actions; unknown
    verbs and connectors are 404 naming what exists; audited as before;
  - M8: docs/openapi.yaml's components.schemas hold each type's config
    schema exactly as `wharf api connector-schemas` prints it from the
    tables, so the two cannot drift apart.
"""
import json

import yaml

from conftest import REPO, file_dest, flow_doc
from test_r14_api import Api, cli_token

SECRET = "hunter2-conn-types-secret-value"
TOKEN = "tok-conn-types-header-value-0042"


def help_json(wharf, *args):
    return json.loads(wharf.ok("connector", "help", *args, "--json").stdout)


def test_m8_connector_help_lists_every_type_and_key(wharf):
    all_types = help_json(wharf)
    names = [t["name"] for t in all_types["types"]]
    assert names == ["file", "sftp", "http", "webhook", "as2"], names
    text = wharf.ok("connector", "help").stdout
    for t in all_types["types"]:
        assert t["name"] in text and t["summary"] in text, text
    for t in all_types["types"]:
        one = help_json(wharf, t["name"])
        assert one == t
        page = wharf.ok("connector", "help", t["name"]).stdout
        for o in t["options"]:
            assert f"  {o['key']} ({o['type']}" in page, (o, page)
            if o["required"]:
                assert f"  {o['key']} ({o['type']}, required" in page
            if "default" in o:
                assert f"default {json.dumps(o['default'])}" in page, o
        for a in t["actions"]:
            assert f"  {a['verb']}" in page and a["permission"] in page
        for o in all_types["common"]:
            assert f"  {o['key']} (" in page
    http = help_json(wharf, "http")
    opts = {o["key"]: o for o in http["options"]}
    assert opts["auth.password_file"]["secret"] is True
    assert opts["auth.password_file"]["when"] == {"key": "auth.type",
                                                  "values": ["basic"]}
    assert opts["method"]["default"] == "POST"
    assert opts["timeout_ms"]["min"] == 100
    assert [a["verb"] for a in http["actions"]] == ["test", "oauth.authorize"]
    sftp = {o["key"]: o for o in help_json(wharf, "sftp")["options"]}
    assert sftp["port"]["default"] == 22 and sftp["host"]["required"]
    r = wharf("connector", "help", "ftp")
    assert r.returncode == 1 and "no connector type 'ftp'" in r.stderr, r


def http_dest(name, **cfg):
    c = {"url": "https://127.0.0.1:9/in"}
    c.update(cfg)
    return {"name": name, "type": "http", "config": c}


def served_flow(wharf, data_dir, start_server, tmp_path):
    outbox = tmp_path / "out"
    outbox.mkdir()
    doc = flow_doc([
        file_dest("outbox", outbox),
        http_dest("partner", auth={"type": "basic", "user": "u",
                                   "password_file": {"content": SECRET}},
                  headers={"X-Api-Key": TOKEN})], [])
    wharf.import_flow(str(data_dir), doc, tmp_path / "flow.json")
    tokens = {r: cli_token(wharf, str(data_dir), r)[0]
              for r in ("operator", "auditor", "viewer")}
    srv = start_server(data_dir)
    admin, _ = srv.wait_listening()
    return srv, Api(admin), tokens


def test_r14_connector_types_route_viewer_reads_no_secret(
        wharf, data_dir, start_server, tmp_path):
    srv, api, tokens = served_flow(wharf, data_dir, start_server, tmp_path)
    assert api.request("GET", "/api/v1/connector-types").status == 401
    r = api.request("GET", "/api/v1/connector-types", token=tokens["viewer"])
    assert r.status == 200, r
    body = r.json()
    assert body == help_json(wharf)
    for t in body["types"]:
        for o in t["options"]:
            if o["secret"] or o["type"] in ("secret", "file"):
                assert "default" not in o, o
    assert SECRET.encode() not in r.body and TOKEN.encode() not in r.body
    srv.stop()


def test_r14_connector_actions_need_their_own_permission(
        wharf, data_dir, start_server, tmp_path):
    srv, api, tokens = served_flow(wharf, data_dir, start_server, tmp_path)
    test = "/api/v1/connectors/outbox/actions/test"
    r = api.request("POST", test, token=tokens["operator"])
    assert r.status == 200 and r.json()["ok"] is True, r
    assert api.request("GET", test, token=tokens["operator"]).status == 200
    for role in ("auditor", "viewer"):
        r = api.request("POST", test, token=tokens[role])
        assert r.status == 403 and r.code() == "forbidden", r
        assert "connector.test" in r.json()["error"]["message"], r

    # a failed test is the partner's failure: 502 naming the stage
    r = api.request("POST", "/api/v1/connectors/partner/actions/test",
                    token=tokens["operator"])
    assert r.status == 502 and r.code() == "unreachable", r
    assert "connection test of partner failed" in r.json()["error"]["message"]

    auth = "/api/v1/connectors/partner/actions/oauth.authorize"
    r = api.request("POST", auth, token=tokens["viewer"])
    assert r.status == 403 and "flow.write" in r.json()["error"]["message"], r
    assert api.request("GET", auth, token=tokens["operator"]).status == 405
    r = api.request("POST", auth, token=tokens["operator"])
    assert r.status == 409 and r.code() == "not_oauth", r
    assert api.request("POST", auth, body=[1],
                       token=tokens["operator"]).status == 400

    r = api.request("POST", "/api/v1/connectors/outbox/actions/hostkey.capture",
                    token=tokens["operator"])
    assert r.status == 404 and "has no action" in r.json()["error"]["message"]
    assert "(it has: test)" in r.json()["error"]["message"], r
    r = api.request("POST", "/api/v1/connectors/nobody/actions/test",
                    token=tokens["operator"])
    assert r.status == 404, r
    assert "no connector named 'nobody'" in r.json()["error"]["message"], r
    srv.stop()

    # audited as before: each test run (and the refused attempt at an
    # unknown connector) under connector.test, not the refused roles
    audit = json.loads(wharf.ok("audit", "list", "--data", str(data_dir),
                                "--json").stdout)
    tests = [e for e in audit if e["action"] == "connector.test"]
    assert len(tests) == 4, tests
    assert [e["target"] for e in tests] == ["outbox", "outbox", "partner",
                                            "nobody"], tests
    assert not [e for e in audit
                if e["action"] == "connector.oauth.authorize"], audit

    # the CLI runs the same actions
    p = wharf.ok("connector", "outbox", "test", "--data", str(data_dir))
    assert "connection test of outbox passed" in p.stdout
    p = wharf("connector", "outbox", "hostkey.capture", "--data",
              str(data_dir))
    assert p.returncode == 1 and "has no action" in p.stderr, p


def test_m8_openapi_connector_schemas_match_the_tables(wharf):
    tables = json.loads(wharf.ok("api", "connector-schemas").stdout)
    with open(REPO / "docs" / "openapi.yaml") as f:
        spec = yaml.safe_load(f)
    schemas = spec["components"]["schemas"]
    assert sorted(k for k in schemas if k.startswith("connector_config_")) \
        == sorted(tables), "regenerate: wharf api connector-schemas"
    for name, schema in tables.items():
        assert schemas[name] == schema, (
            f"docs/openapi.yaml {name} differs from the type table: "
            "regenerate it with `wharf api connector-schemas`")
