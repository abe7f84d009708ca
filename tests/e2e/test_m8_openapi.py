"""
M8 (a versioned JSON REST API documented in OpenAPI): docs/openapi.yaml is
checked against the route table of the code, as `wharf api routes --json`
prints it, so that neither can change without the other.

  - the file parses (yaml.safe_load) and says openapi 3.1.x;
  - its set of (method, path) equals exactly the route table, and each
    operation's x-wharf-permission equals the table's permission;
  - every operation has responses (each with a description or a $ref that
    resolves), a unique operationId, and documents 401 when it needs
    credentials and 403 when it needs a permission;
  - every {parameter} of a path is declared as a required path parameter
    (at path or operation level), and nothing else is declared "in: path";
  - every local $ref of the document resolves.
"""
import json
import re

import pytest
import yaml

from conftest import REPO

OPENAPI = REPO / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options",
           "trace")


@pytest.fixture(scope="module")
def spec():
    with open(OPENAPI) as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict), f"{OPENAPI} is not a YAML mapping"
    return doc


@pytest.fixture
def routes(wharf):
    p = wharf.ok("api", "routes", "--json")
    table = json.loads(p.stdout)
    assert isinstance(table, list) and table, p.stdout
    for r in table:
        assert set(r) >= {"method", "path", "permission"}, r
    return table


def operations(spec):
    """[(METHOD, path, path_item, operation)] of the document."""
    out = []
    for path, item in (spec.get("paths") or {}).items():
        assert isinstance(item, dict), path
        for m, op in item.items():
            if m in METHODS:
                out.append((m.upper(), path, item, op))
    return out


def resolve(spec, ref):
    assert ref.startswith("#/"), f"non-local $ref {ref!r}"
    node = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"$ref {ref} dangles"
        node = node[part]
    return node


def test_m8_openapi_is_3_1(spec):
    assert re.fullmatch(r"3\.1\.\d+", str(spec.get("openapi"))), (
        spec.get("openapi"))
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["paths"], "no paths"
    for path in spec["paths"]:
        if path in ("/oauth/callback", "/metrics"):
            continue        # R8: the stable OAuth redirect URI, unversioned;
                            # R18: Prometheus' conventional path
        assert path.startswith("/api/v1/"), (
            f"{path}: the API is versioned under /api/v1")


def test_m8_openapi_matches_route_table(spec, routes):
    table = {(r["method"], r["path"]): r["permission"] for r in routes}
    assert len(table) == len(routes), "duplicate routes in the table"
    documented = {}
    for method, path, _, op in operations(spec):
        documented[(method, path)] = op.get("x-wharf-permission")
    missing = sorted(set(table) - set(documented))
    extra = sorted(set(documented) - set(table))
    assert not missing, f"routes of the code not in openapi.yaml: {missing}"
    assert not extra, f"operations in openapi.yaml the code lacks: {extra}"
    wrong = {k: (documented[k], table[k]) for k in table
             if documented[k] != table[k]}
    assert not wrong, (
        "x-wharf-permission differs from the route table "
        f"(documented, code): {wrong}")


def test_m8_openapi_every_operation_has_responses(spec, routes):
    perm = {(r["method"], r["path"]): r["permission"] for r in routes}
    ids = {}
    for method, path, _, op in operations(spec):
        where = f"{method} {path}"
        oid = op.get("operationId")
        assert oid, f"{where}: no operationId"
        assert oid not in ids, f"{where}: operationId {oid} also on {ids[oid]}"
        ids[oid] = where
        resp = op.get("responses")
        assert isinstance(resp, dict) and resp, f"{where}: no responses"
        for code, r in resp.items():
            assert re.fullmatch(r"[1-5]\d\d|[1-5]XX|default", str(code)), (
                f"{where}: response key {code!r}")
            if "$ref" in r:
                r = resolve(spec, r["$ref"])
            assert r.get("description"), f"{where} {code}: no description"
        assert any(str(c)[0] in "23" for c in resp), (
            f"{where}: no success (2xx) or redirect (3xx) response")
        p = perm.get((method, path))
        if p is None:
            continue            # reported by the route-table test
        if p == "public":
            assert op.get("security") == [], (
                f"{where}: public, but does not say security: []")
        else:
            assert "401" in resp, f"{where} needs credentials: document 401"
        if p not in ("public", "self"):
            assert "403" in resp, f"{where} needs {p}: document 403"


def test_m8_openapi_path_parameters_declared(spec):
    for method, path, item, op in operations(spec):
        where = f"{method} {path}"
        in_path = re.findall(r"\{([^}/]+)\}", path)
        assert len(in_path) == len(set(in_path)), f"{where}: repeated name"
        declared = {}
        for level in (item.get("parameters") or [],
                      op.get("parameters") or []):
            for prm in level:
                if "$ref" in prm:
                    prm = resolve(spec, prm["$ref"])
                if prm.get("in") == "path":
                    declared[prm["name"]] = prm
        for name in in_path:
            assert name in declared, f"{where}: {{{name}}} not declared"
            assert declared[name].get("required") is True, (
                f"{where}: path parameter {name} must be required: true")
            assert "schema" in declared[name], f"{where}: {name} has no schema"
        stray = set(declared) - set(in_path)
        assert not stray, f"{where}: path parameters not in the path: {stray}"


def test_m8_openapi_refs_resolve(spec):
    refs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str):
                    refs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(spec)
    assert refs, "no $ref at all: the error schema is not shared"
    for ref in refs:
        resolve(spec, ref)
    err = spec["components"]["schemas"]["Error"]
    assert err["required"] == ["error"]
    assert set(err["properties"]["error"]["required"]) == {"code", "message"}
