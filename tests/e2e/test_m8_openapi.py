"""
M8 (a versioned JSON REST API documented in OpenAPI): docs/openapi.yaml is
checked against the route table of the code, as `wharf api routes --json`
prints it, against the handlers' source, and against the answers of a
running server, so that neither can change without the other.

  - the file parses (yaml.safe_load) and says openapi 3.1.x;
  - its set of (method, path) equals exactly the route table, and each
    operation's x-wharf-permission equals the table's permission; every
    permission of the table is a value of the Permission schema; every
    route but the public ones needs credentials (security bearer or
    session);
  - every operation has responses (each with a description or a $ref that
    resolves), a unique operationId, and documents 401 when it needs
    credentials and 403 when it needs a permission; every JSON error answer
    (4xx, 5xx) is the shared Error schema;
  - every {parameter} of a path is declared as a required path parameter
    (at path or operation level), and nothing else is declared "in: path";
    every parameter has a typed schema; the query parameters of each route
    are exactly those its handler reads (api_query and the helpers around
    it, followed through the handler's calls in src/api/*.c);
  - every write operation describes its request body (a schema whose
    objects name their members, or x-free-form with a reason) or says
    x-no-body, and a handler that reads body members has them documented;
    every 2xx JSON answer is described the same way (no bare objects);
  - against a real `wharf serve` with a file flow, a delivered message, an
    AS2 profile and partner: every GET route of the table and the write
    routes that are safe in a temporary data directory are called (as an
    administrator's token and console session), and every answer's status
    is documented for its operation, its Content-Type is a documented one,
    and its JSON body validates against the documented schema (JSON Schema
    2020-12, python3-jsonschema) with no member the schema does not name;
  - every request the spec calls invalid (a required member missing or of
    the wrong type, an empty body where members are needed, an unknown
    member where the schema is closed, a value outside an enum) is refused
    400 by the server, and changes nothing;
  - every local $ref of the document resolves.
"""
import copy
import json
import re
import subprocess
import time

import pytest
import yaml

from conftest import (REPO, drop_file, file_dest, file_source, flow_doc,
                      wait_until)
from test_r14_api import (Session, admin_mfa_enrolment, admin_otp,
                          cli_token, new_password, served)  # noqa: F401

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


# ---- what each operation documents -------------------------------------------------

WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Generated from the connector type tables by `wharf api connector-schemas`
# and kept equal to them by test_r14_connector_types.py: their looseness (a
# map of headers, a file given as a path or an object) is the tables'.
GENERATED = "#/components/schemas/connector_config_"
SAYS_SOMETHING = ("type", "properties", "$ref", "allOf", "anyOf", "oneOf",
                  "const", "enum", "pattern", "items", "not", "if",
                  "additionalProperties", "required")


def bare_objects(spec, schema, where, seen=None):
    """Where `schema`, or a schema inside it, leaves its members unsaid: an
    object without properties (nor a schema for additionalProperties, nor
    a composition), an array without items, or a schema that says nothing
    at all. x-free-form with a reason (three words or more) is a
    documented exception."""
    seen = set() if seen is None else seen
    if not isinstance(schema, dict):
        return [f"{where}: not a schema"]
    free = schema.get("x-free-form")
    if free is not None:
        ok = isinstance(free, str) and len(free.split()) >= 3
        return [] if ok else [f"{where}: x-free-form needs a reason"]
    out = []
    ref = schema.get("$ref")
    if ref and not ref.startswith(GENERATED) and ref not in seen:
        seen.add(ref)
        out += bare_objects(spec, resolve(spec, ref), ref, seen)
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    composed = any(k in schema for k in ("$ref", "allOf", "anyOf", "oneOf",
                                         "const", "enum"))
    if not any(k in schema for k in SAYS_SOMETHING):
        out.append(f"{where}: says nothing")
    if ("object" in types and not schema.get("properties") and not composed
            and not isinstance(schema.get("additionalProperties"), dict)):
        out.append(f"{where}: a bare object")
    if "array" in types and "items" not in schema:
        out.append(f"{where}: an array without items")
    for k, v in (schema.get("properties") or {}).items():
        out += bare_objects(spec, v, f"{where}.{k}", seen)
    for k in ("items", "additionalProperties", "not", "if", "then", "else"):
        if isinstance(schema.get(k), dict):
            out += bare_objects(spec, schema[k], f"{where}/{k}", seen)
    for k in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(k) or []):
            out += bare_objects(spec, sub, f"{where}/{k}[{i}]", seen)
    return out


def response_doc(spec, op, status):
    """The documented response of op for a status code, or None."""
    resp = op.get("responses") or {}
    doc = (resp.get(str(status)) or resp.get(f"{str(status)[0]}XX")
           or resp.get("default"))
    if doc and "$ref" in doc:
        doc = resolve(spec, doc["$ref"])
    return doc


def parameters(spec, item, op):
    """{(in, name): parameter} of an operation, path level included."""
    out = {}
    for prm in (item.get("parameters") or []) + (op.get("parameters") or []):
        if "$ref" in prm:
            prm = resolve(spec, prm["$ref"])
        out[(prm["in"], prm["name"])] = prm
    return out


def test_m8_openapi_write_routes_describe_their_bodies(spec):
    problems = []
    for method, path, _, op in operations(spec):
        where = f"{method} {path}"
        body, none = op.get("requestBody"), op.get("x-no-body")
        if method == "GET":
            assert body is None and none is None, f"{where}: a GET has no body"
            continue
        if none is not None:
            assert body is None, f"{where}: both requestBody and x-no-body"
            assert isinstance(none, str) and len(none.split()) >= 3, (
                f"{where}: x-no-body says what the route reads instead")
            continue
        assert body, (f"{where}: document the request body, or say "
                      "x-no-body: what the route reads instead")
        content = body.get("content") or {}
        assert "application/json" in content, f"{where}: body is not JSON"
        schema = content["application/json"].get("schema")
        assert schema, f"{where}: request body without a schema"
        problems += bare_objects(spec, schema, f"{where} request")
    assert not problems, "request bodies not described:\n" + "\n".join(
        problems)


def test_m8_openapi_success_answers_are_described(spec):
    problems = []
    for method, path, _, op in operations(spec):
        where = f"{method} {path}"
        for code, r in (op.get("responses") or {}).items():
            if not str(code).startswith("2"):
                continue
            r = resolve(spec, r["$ref"]) if "$ref" in r else r
            content = r.get("content") or {}
            assert content, f"{where} {code}: a success without a body"
            for media, m in content.items():
                schema = m.get("schema")
                assert schema, f"{where} {code} {media}: no schema"
                if media == "application/json":
                    problems += bare_objects(spec, schema,
                                             f"{where} {code}")
                else:
                    assert schema.get("type") == "string", (
                        f"{where} {code} {media}: bytes are a string")
    assert not problems, "answers not described:\n" + "\n".join(problems)


def test_m8_openapi_errors_share_the_error_schema(spec):
    err = "#/components/schemas/Error"
    assert resolve(spec, "#/components/responses/Error")["content"][
        "application/json"]["schema"] == {"$ref": err}
    for method, path, _, op in operations(spec):
        for code, r in (op.get("responses") or {}).items():
            if str(code)[0] not in "45":
                continue
            r = resolve(spec, r["$ref"]) if "$ref" in r else r
            json_doc = (r.get("content") or {}).get("application/json")
            if json_doc is not None:
                assert json_doc.get("schema") == {"$ref": err}, (
                    f"{method} {path} {code}: a JSON error is the shared "
                    "Error schema")


def test_m8_openapi_security_and_permissions(spec, routes):
    global_sec = spec.get("security")
    assert {"bearer", "session"} <= {k for req in global_sec for k in req}
    perms = set(resolve(spec, "#/components/schemas/Permission")["enum"])
    table = {(r["method"], r["path"]): r["permission"] for r in routes}
    for method, path, _, op in operations(spec):
        p = table.get((method, path))
        sec = op.get("security", global_sec)
        if p == "public":
            continue                # test_m8_openapi_every_operation_...
        assert sec, f"{method} {path} needs credentials: it has security"
        assert {k for req in sec for k in req} >= {"bearer", "session"}, (
            f"{method} {path}: a token or a session is accepted")
        if p not in (None, "self"):
            assert p in perms, (f"{method} {path}: permission {p} is not "
                                "in components.schemas.Permission")


def test_m8_openapi_parameters_are_typed(spec):
    for method, path, item, op in operations(spec):
        for (where, name), prm in parameters(spec, item, op).items():
            assert where in ("path", "query", "header"), (method, path, name)
            schema = prm.get("schema") or {}
            if "$ref" in schema:
                schema = resolve(spec, schema["$ref"])
            assert "type" in schema or "enum" in schema, (
                f"{method} {path}: parameter {name} has no type")


# ---- the handlers' source ---------------------------------------------------------

FUNC_RE = re.compile(r"^[a-z][\w \*]*?\b(\w+)\(([^;{}]*?)\)\n\{\n(.*?)^\}",
                     re.M | re.S)
ROUTE_RE = re.compile(r'\{\s*"([A-Z]+)",\s*"([^"]+)",\s*[^,]+,\s*(\w+),')


@pytest.fixture(scope="module")
def handlers():
    """{(METHOD, path): the bodies of the handler and every src/api
    function it calls}, from src/api/api.c's route table."""
    funcs = {}
    for p in sorted((REPO / "src" / "api").glob("*.c")):
        for m in FUNC_RE.finditer(p.read_text()):
            funcs[m.group(1)] = m.group(3)
    assert "api_dispatch" in funcs and "api_login" in funcs, sorted(funcs)

    def closure(name):
        seen, todo = set(), [name]
        while todo:
            f = todo.pop()
            if f in seen or f not in funcs:
                continue
            seen.add(f)
            todo += [c for c in re.findall(r"\b(\w+)\(", funcs[f])
                     if c in funcs]
        return [funcs[f] for f in sorted(seen)]
    out = {}
    table = (REPO / "src" / "api" / "api.c").read_text()
    for m in ROUTE_RE.finditer(table):
        assert m.group(3) in funcs, f"handler {m.group(3)} not found"
        out[(m.group(1), m.group(2))] = closure(m.group(3))
    return out, funcs


def names_read(bodies, funcs, reader, helper_arg):
    """The string literals passed as the named member to `reader` or to a
    src/api helper that passes its own parameter `helper_arg` on to it."""
    readers = {reader} | {f for f, b in funcs.items() if re.search(
        rf"\b{reader}\(c,\s*{helper_arg}\b", b)}
    call = re.compile(r'\b(%s)\(c,\s*"(\w+)"' % "|".join(sorted(readers)))
    return {n for b in bodies for _, n in call.findall(b)}


def test_m8_openapi_query_parameters_match_handlers(spec, routes, handlers):
    by_route, funcs = handlers
    assert len(by_route) == len(routes), "route table not parsed"
    for method, path, item, op in operations(spec):
        bodies = by_route.get((method, path))
        if bodies is None:
            continue                # reported by the route-table test
        read = names_read(bodies, funcs, "api_query", "name")
        documented = {n for (w, n) in parameters(spec, item, op)
                      if w == "query"}
        assert read == documented, (
            f"{method} {path}: the handler reads query parameters "
            f"{sorted(read)}, the spec documents {sorted(documented)}")


def test_m8_openapi_body_members_match_handlers(spec, handlers):
    by_route, funcs = handlers
    for method, path, _, op in operations(spec):
        bodies = by_route.get((method, path))
        if bodies is None:
            continue
        read = (names_read(bodies, funcs, "api_body_str", "key") |
                {n for b in bodies for n in re.findall(
                    r'json_object_get\(c->body,\s*"(\w+)"', b)})
        whole = any("c->body" in b for b in bodies)
        if op.get("x-no-body") is not None:
            assert not read and not whole, (
                f"{method} {path} says x-no-body but reads {sorted(read)}")
            continue
        if not read:
            continue
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = resolve(spec, schema["$ref"])
        missing = read - set(schema.get("properties") or {})
        assert not missing, (f"{method} {path}: the handler reads body "
                             f"members {sorted(missing)} the spec lacks")


# ---- answers of a running server ----------------------------------------------------


def schema_validator(spec, strict):
    """validate(instance, schema) against the spec's components. strict:
    an object that lists its properties may have no other member (the
    schemas stay open for later additions; today's answers must name
    every member they have)."""
    try:
        import jsonschema
    except ImportError:
        pytest.fail("python3-jsonschema is missing: install Debian's "
                    "python3-jsonschema (scripts/deps.sh test)", pytrace=False)
    root = copy.deepcopy(spec)
    if strict:
        close_objects(root)
    resolver = jsonschema.RefResolver("", root)
    checker = jsonschema.FormatChecker()

    def validate(instance, schema):
        if strict:
            schema = copy.deepcopy(schema)
            close_objects(schema)
        v = jsonschema.Draft202012Validator(schema, resolver=resolver,
                                            format_checker=checker)
        errors = sorted(v.iter_errors(instance), key=lambda e: e.path)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: "
                f"{e.message[:300]}" for e in errors]
    return validate


def close_objects(node, role=None):
    """unevaluatedProperties: false on every schema that lists properties
    and says nothing of other members, except the conditions and parts of
    a composition (if/then/else, not, allOf members), which see only part
    of the object."""
    if isinstance(node, list):
        for v in node:
            close_objects(v, role)
        return
    if not isinstance(node, dict):
        return
    if ("properties" in node and role not in ("if", "then", "else", "not",
                                              "allOf")
            and "additionalProperties" not in node
            and "unevaluatedProperties" not in node):
        node["unevaluatedProperties"] = False
    for k, v in node.items():
        if k == "properties" and isinstance(v, dict):
            for sub in v.values():
                close_objects(sub)
        elif k in ("if", "then", "else", "not", "allOf"):
            close_objects(v, k)
        else:
            close_objects(v)


def find_operation(spec, method, url):
    """(path pattern, operation) for a concrete request path."""
    path = url.split("?", 1)[0]
    found = []
    for pattern, item in spec["paths"].items():
        rx = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(pattern))
        if re.fullmatch(rx, path) and method.lower() in item:
            found.append((pattern.count("{"), pattern, item[method.lower()]))
    assert found, f"{method} {path}: no operation in openapi.yaml"
    return min(found)[1:]


def check_answers(spec, log):
    """Every answer of the log: a documented status of its operation, a
    documented Content-Type, and a JSON body valid for the documented
    schema with no undocumented member. Returns {(METHOD, pattern)}."""
    validate = schema_validator(spec, strict=True)
    seen, problems = set(), []
    for r in log:
        assert r.status is not None, f"no answer: {r!r}"
        pattern, op = find_operation(spec, r.method, r.path)
        seen.add((r.method, pattern))
        where = f"{r.method} {r.path} -> {r.status}"
        doc = response_doc(spec, op, r.status)
        if doc is None:
            problems.append(f"{where}: status not documented")
            continue
        content = doc.get("content") or {}
        ctype = (r.header("Content-Type") or "").split(";")[0].strip()
        if not content:
            continue                # a redirect
        if ctype not in content:
            problems.append(f"{where}: Content-Type {ctype!r}, documented "
                            f"{sorted(content)}")
            continue
        if ctype == "application/json":
            problems += [f"{where}: {e}" for e in validate(
                json.loads(r.body), content[ctype]["schema"])]
    assert not problems, (f"{len(problems)} answers differ from "
                          "docs/openapi.yaml:\n" + "\n".join(problems[:60]))
    return seen


def request_schema(spec, method, url):
    _, op = find_operation(spec, method, url)
    body = op.get("requestBody")
    return body["content"]["application/json"]["schema"] if body else None


def send(spec, who, method, url, body=None, status=200):
    """A request the spec calls valid (checked first), expecting status."""
    if body is not None:
        schema = request_schema(spec, method, url)
        assert schema is not None, f"{method} {url}: no request body"
        errors = schema_validator(spec, strict=False)(body, schema)
        assert not errors, f"{method} {url}: the example is invalid: {errors}"
    r = who.request(method, url, body=body)
    assert r.status == status, f"expected {status}: {r!r}"
    return r


class Bearer:
    """Requests with an API token (a Session's counterpart)."""

    def __init__(self, api, token):
        self.api, self.token = api, token

    def request(self, method, url, **kw):
        return self.api.request(method, url, token=self.token, **kw)


def openssl_cert(tmp_path, cn):
    """(certificate PEM, key PEM) of a new self-signed RSA certificate."""
    key, crt = tmp_path / f"{cn}.key", tmp_path / f"{cn}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-subj", f"/CN={cn}/O=Wharf tests", "-days", "400"],
                   check=True, capture_output=True)
    return crt.read_text(), key.read_text()


def spec_flow(tmp_path):
    """A file flow, an AS2 profile and a partner (no AS2 connector: no
    exchange is needed to show them)."""
    recv, out = tmp_path / "in", tmp_path / "out"
    recv.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    own_crt, own_key = openssl_cert(tmp_path, "wharf-a")
    partner_crt, _ = openssl_cert(tmp_path, "acme-as2")
    doc = flow_doc([file_source("inbox", recv), file_dest("outbox", out)],
                   [("inbox", "outbox")])
    doc["profile"] = {"as2_id": "wharf-a", "keys": [
        {"cert": {"content": own_crt}, "key": {"content": own_key}}]}
    doc["partners"] = [{"name": "acme", "as2_id": "acme as2",
                        "url": "https://127.0.0.1:9/as2",
                        "certificates": [{"content": partner_crt}],
                        "sign": "sha256", "encrypt": "aes256-cbc",
                        "mdn": "sync", "mdn_signed": True}]
    return doc, recv


@pytest.fixture
def spec_server(spec, wharf, served, tmp_path):
    """A server with the spec flow, a delivered message and an
    administrator's token: (api, data, Bearer, message id)."""
    doc, recv = spec_flow(tmp_path)
    ctx = {}

    def before(data):
        wharf.import_flow(data, doc, tmp_path / "flow.json")
        ctx["token"] = cli_token(wharf, data, "admin")[0]
    srv, data, api, _ = served(before=before)
    tok = Bearer(api, ctx["token"])
    drop_file(recv, "order-1.edi", b"UNB+UNOC:3+A+B'\n" + b"x" * 5000)

    def sent():
        return send(spec, tok, "GET", "/api/v1/messages?state=sent").json()[
            "messages"]
    (msg,) = wait_until(sent, timeout=60, interval=0.3,
                        desc="the message to be delivered")
    yield api, data, tok, msg["id"]
    srv.check_alive()


# GET routes that cannot answer 200 in this setting (their 200 is not
# validated here): OIDC is not configured, no OAuth authorization is
# pending, a file flow has no AS2 receipts.
NOT_2XX_HERE = {"/api/v1/auth/oidc/login": 503,
                "/api/v1/auth/oidc/callback": 400,
                "/oauth/callback": 400,
                "/api/v1/messages/{id}/receipts/{n}": 404}
# Real values for the {parameters} of GET routes, by the segment before.
REAL = {"connectors": "inbox", "users": "admin", "partners": "acme",
        "actions": "test", "receipts": "1",
        # R19: `wharf init` made the first alert (the administrator is a
        # configuration change); the test escalates it into incident 1
        "alerts": "1", "incidents": "1"}


def concrete_get(path, message_id, cert_id):
    def value(m):
        before = path[:m.start()].rstrip("/").rsplit("/", 1)[-1]
        if before == "messages":
            return message_id
        if before == "certificates":
            return cert_id
        assert before in REAL, (f"GET {path}: add a real value for "
                                f"{m.group(0)} to REAL in this test")
        return REAL[before]
    return re.sub(r"\{[^}]+\}", value, path)


def test_m8_openapi_answers_match_schemas(spec, routes, wharf, spec_server,
                                          tmp_path):
    api, data, tok, mid = spec_server
    # the console's sign-in: one-time password, password change, TOTP
    e = admin_mfa_enrolment(wharf, data, api)
    s = e["session"]
    other = Session(api, "admin", e["password"], code=e["codes"][0])
    third = Session(api, "admin", e["password"], code=e["codes"][1])

    # an incident for GET /api/v1/incidents/{id} (R19)
    send(spec, tok, "POST", "/api/v1/alerts/1/escalate",
         {"owner": "ada", "notes": "who made this administrator?"})
    # every GET route of the table, as the token; /auth/* as the session
    certs = send(spec, tok, "GET", "/api/v1/certificates").json()
    cert_id = certs["certificates"][0]["id"]
    for r in routes:
        if r["method"] != "GET":
            continue
        url = concrete_get(r["path"], mid, cert_id)
        got = tok.request("GET", url)
        want = NOT_2XX_HERE.get(r["path"], 200)
        assert got.status == want, f"expected {want}: {got!r}"
        if r["permission"] == "self":
            s.request("GET", url)
    for url in ["/api/v1/messages?q=order&state=sent&connector=inbox"
                f"&since=0&until={int(time.time() * 1000) + 60000}&limit=1",
                "/api/v1/messages?partner=acme",
                "/api/v1/messages?limit=2&offset=0&state=sent",
                "/api/v1/audit?after=1&limit=20",
                "/api/v1/auth/oidc/callback?state=nope&code=x",
                "/api/v1/auth/oidc/callback?error=access_denied",
                "/oauth/callback?state=nope&code=x",
                "/api/v1/connectors/inbox/actions/hostkey.capture",
                "/api/v1/messages/00000000-0000-7000-8000-000000000000"]:
        tok.request("GET", url)
    page = send(spec, tok, "GET", "/api/v1/messages?limit=1").json()
    assert page["next"] == mid, page

    # the write routes that are safe here
    send(spec, tok, "POST", "/api/v1/users",
         {"name": "olga", "role": "operator"}, 201)
    send(spec, tok, "POST", "/api/v1/users",
         {"name": "olga", "role": "operator"}, 409)
    send(spec, tok, "PUT", "/api/v1/users/olga",
         {"role": "viewer", "disabled": True})
    send(spec, tok, "PUT", "/api/v1/users/olga", {"reset_mfa": True},
         409)                   # olga has no TOTP to reset
    r = send(spec, tok, "PUT", "/api/v1/users/olga",
             {"disabled": False, "reset_password": True})
    assert r.json()["one_time_password"], r
    t = send(spec, tok, "POST", "/api/v1/tokens",
             {"role": "viewer", "name": "spec check", "days": 1}, 201).json()
    send(spec, tok, "GET", "/api/v1/tokens")
    send(spec, tok, "DELETE", f"/api/v1/tokens/{t['id']}")
    send(spec, tok, "DELETE", "/api/v1/users/olga")
    send(spec, tok, "DELETE", "/api/v1/users/admin", status=409)
    send(spec, tok, "PUT", "/api/v1/settings/session_idle_minutes",
         {"value": "120"})
    send(spec, tok, "PUT", "/api/v1/settings/no_such_setting",
         {"value": "1"}, 404)
    exported = send(spec, tok, "GET", "/api/v1/flows").json()
    send(spec, tok, "PUT", "/api/v1/flows", exported)
    rollover, _ = openssl_cert(tmp_path, "acme-as2-2027")
    send(spec, tok, "POST", "/api/v1/partners/acme/certificates",
         {"pem": rollover, "use_from": "2030-01-31T00:00:00Z"}, 201)
    partners = send(spec, tok, "GET", "/api/v1/partners").json()
    (acme,) = [x for x in partners["partners"] if x["name"] == "acme"]
    assert [c.get("use_from") for c in acme["certificates"]] == [
        None, "2030-01-31T00:00:00Z"], acme
    certs = send(spec, tok, "GET", "/api/v1/certificates").json()
    assert "2030-01-31T00:00:00Z" in [c["use_from"]
                                      for c in certs["certificates"]], certs
    send(spec, tok, "POST", "/api/v1/connectors/inbox/actions/test", {})
    send(spec, tok, "POST", "/api/v1/connectors/inbox/actions/oauth.authorize",
         {}, 404)
    send(spec, tok, "POST", f"/api/v1/messages/{mid}/resend")
    send(spec, tok, "POST", f"/api/v1/messages/{mid}/erase")
    send(spec, tok, "GET", f"/api/v1/messages/{mid}/payload", status=410)
    send(spec, tok, "GET", f"/api/v1/messages/{mid}")
    send(spec, s, "POST", "/api/v1/auth/mfa/enroll", status=409)
    send(spec, tok, "POST", "/api/v1/auth/mfa/enroll", status=400)
    send(spec, tok, "POST", "/api/v1/auth/password",
         {"old": "x" * 12, "new": new_password()}, 400)
    # R19: the ladder
    alerts = send(spec, tok, "GET", "/api/v1/alerts?state=open&limit=50")
    open_id = alerts.json()["alerts"][0]["id"]
    send(spec, tok, "POST", f"/api/v1/alerts/{open_id}/ack",
         {"reason": "our own change"})
    send(spec, tok, "POST", f"/api/v1/alerts/{open_id}/ack",
         {"reason": "again"}, 409)
    send(spec, tok, "POST", f"/api/v1/alerts/{open_id}/escalate",
         {"owner": "ada", "notes": "same story", "incident": 1})
    send(spec, tok, "PUT", "/api/v1/incidents/1",
         {"note": "confirmed", "tier": "incident", "severity": "low",
          "partners": ["acme"], "messages": [mid]})
    send(spec, tok, "PUT", "/api/v1/incidents/1",
         {"note": "down", "tier": "investigation"}, 400)
    send(spec, tok, "GET", "/api/v1/incidents?state=all")
    send(spec, tok, "POST", "/api/v1/incidents/1/close",
         {"note": "a planned change"})
    send(spec, tok, "PUT", "/api/v1/incidents/1",
         {"note": "late", "owner": "bob"}, 409)
    send(spec, tok, "GET", "/api/v1/alerts/999999", status=404)
    send(spec, tok, "GET", "/api/v1/sessions")
    send(spec, tok, "DELETE", f"/api/v1/sessions/{other.handle}")
    send(spec, s, "DELETE", f"/api/v1/auth/sessions/{third.handle}")
    send(spec, tok, "DELETE", f"/api/v1/auth/sessions/{s.handle}", status=404)
    send(spec, tok, "POST", "/api/v1/auth/logout", status=400)
    send(spec, s, "POST", "/api/v1/auth/logout")
    send(spec, s, "GET", "/api/v1/auth/me", status=401)

    seen = check_answers(spec, api.log)
    missing = sorted({(r["method"], r["path"]) for r in routes} - seen)
    assert not missing, (
        f"routes whose answers this test never checked: {missing}; call "
        "them in test_m8_openapi_answers_match_schemas")


# ---- what the spec calls invalid, the server refuses -------------------------------

SESSION_ROUTES = {("POST", "/api/v1/auth/password"),
                  ("POST", "/api/v1/auth/mfa/confirm")}


def valid_bodies(exported, pem):
    """A valid body for every operation that takes one, with the concrete
    path to send it to."""
    return {
        ("POST", "/api/v1/auth/login"): (
            "/api/v1/auth/login", {"user": "admin", "password": "x" * 12}),
        ("POST", "/api/v1/auth/password"): (
            "/api/v1/auth/password", {"old": "x" * 12,
                                      "new": new_password()}),
        ("POST", "/api/v1/auth/mfa/confirm"): (
            "/api/v1/auth/mfa/confirm", {"code": "123456"}),
        ("POST", "/api/v1/users"): (
            "/api/v1/users", {"name": "nina", "role": "viewer"}),
        ("PUT", "/api/v1/users/{name}"): (
            "/api/v1/users/admin", {"role": "admin"}),
        ("POST", "/api/v1/tokens"): (
            "/api/v1/tokens", {"role": "viewer", "name": "t", "days": 1}),
        ("PUT", "/api/v1/settings/{key}"): (
            "/api/v1/settings/session_idle_minutes", {"value": "30"}),
        ("PUT", "/api/v1/flows"): ("/api/v1/flows", exported),
        ("POST", "/api/v1/partners/{name}/certificates"): (
            "/api/v1/partners/acme/certificates", {"pem": pem}),
        ("POST", "/api/v1/connectors/{name}/actions/{verb}"): (
            "/api/v1/connectors/inbox/actions/test", {}),
        ("POST", "/api/v1/alerts/{id}/ack"): (
            "/api/v1/alerts/1/ack", {"reason": "expected"}),
        ("POST", "/api/v1/alerts/{id}/escalate"): (
            "/api/v1/alerts/1/escalate", {"owner": "ada", "notes": "why"}),
        ("PUT", "/api/v1/incidents/{id}"): (
            "/api/v1/incidents/1", {"note": "n", "tier": "incident",
                                    "severity": "high"}),
        ("POST", "/api/v1/incidents/{id}/close"): (
            "/api/v1/incidents/1/close", {"note": "done"}),
    }


def wrong_type(spec, schema):
    """A JSON value of another type than the schema's."""
    if "$ref" in schema:
        schema = resolve(spec, schema["$ref"])
    t = schema.get("type")
    return "not-a-list" if t in ("array", "object") else 12345


def invalid_variants(spec, schema, body):
    """(what, body) variants of a valid body that the schema forbids:
    each required member left out or of the wrong type, an empty object
    where members are needed, an unknown member where the object is
    closed, a value outside an enum."""
    if "$ref" in schema:
        schema = resolve(spec, schema["$ref"])
    props = schema.get("properties") or {}
    out = []
    for name in schema.get("required") or []:
        out.append((f"without {name}",
                    {k: v for k, v in body.items() if k != name}))
        out.append((f"{name} of a wrong type",
                    dict(body, **{name: wrong_type(spec, props[name])})))
    if schema.get("minProperties"):
        out.append(("empty", {}))
    if schema.get("additionalProperties") is False:
        out.append(("an unknown member", dict(body, no_such_member=1)))
    for name, p in props.items():
        if "$ref" in p:
            p = resolve(spec, p["$ref"])
        if "enum" in p:
            out.append((f"{name} outside its enum",
                        dict(body, **{name: "no-such-value"})))
    return out


def test_m8_openapi_invalid_requests_are_400(spec, routes, wharf,
                                             spec_server, tmp_path):
    api, data, tok, _ = spec_server
    otp = admin_otp(wharf, data)
    s = Session(api, "admin", otp)          # limited: must change password
    exported = send(spec, tok, "GET", "/api/v1/flows").json()
    users_before = send(spec, tok, "GET", "/api/v1/users").json()
    pem, _ = openssl_cert(tmp_path, "acme-as2-next")
    valid = valid_bodies(exported, pem)
    strict_enough = schema_validator(spec, strict=False)
    tried = 0
    for method, path, _, op in operations(spec):
        if op.get("requestBody") is None:
            continue
        assert (method, path) in valid, (
            f"{method} {path}: add a valid body to valid_bodies()")
        url, body = valid[(method, path)]
        schema = request_schema(spec, method, url)
        assert not strict_enough(body, schema), (method, path, body)
        for what, bad in invalid_variants(spec, schema, body):
            assert strict_enough(bad, schema), (
                f"{method} {path} {what}: the spec accepts {bad!r}")
            if (method, path) in SESSION_ROUTES:
                r = s.request(method, url, body=bad)
            else:
                r = tok.request(method, url, body=bad)
            assert r.status == 400, (
                f"{method} {path} {what}: the spec calls the body invalid, "
                f"the server answered {r!r}")
            assert r.json()["error"]["code"] in ("invalid", "invalid_flow"), r
            tried += 1
    assert tried >= 20, tried
    # nothing changed: the flow, the users, the sessions' passwords
    assert send(spec, tok, "GET", "/api/v1/flows").json() == exported
    assert send(spec, tok, "GET", "/api/v1/users").json() == users_before
    assert s.request("GET", "/api/v1/flows").code() == (
        "password_change_required")
    check_answers(spec, api.log)
