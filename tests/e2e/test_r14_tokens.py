"""
R14 (least privilege) for programs: an API token acts as the user who owns
it, seen from outside against a running `wharf serve` (issue item 3: a
token made by an administrator who was then disabled or deleted still
worked, with admin rights; it even created a new administrator).

  - a token made through the API by an administrator stops (401) while
    that administrator is disabled, and its attempt to create an
    administrator fails; enabled again and demoted to viewer, the same
    admin token can do only what a viewer may (403 elsewhere, /auth/me says
    viewer); once the owner is deleted it is refused for good, listed as
    revoked, and the deletion is audited with the tokens it revoked;
  - a token made by a token belongs to the first token's owner;
  - those refusals of tokens that once worked do not count as failed
    authentications: the address is not banned (R22).
"""
import json

from test_r14_api import (Api, Session, audit_entries, cli_token, cli_user,
                          new_password, served)  # noqa: F401 (fixture)

ADA_TOKEN_BODY = {"role": "admin", "name": "ada-robot", "days": 1}


def ada_setup(wharf, ctx):
    def before(data):
        ctx["root"] = cli_token(wharf, data, "admin", "root")[0]
        ctx["pw"] = cli_user(wharf, data, "ada", "admin", new_password())
    return before


def ada_session(api, root, pw):
    """ada, an administrator, logged in (MFA not required for this test's
    administrators, set through the API by the root token)."""
    api.ok("PUT", "/api/v1/settings/mfa_required_admin",
           body={"value": "false"}, token=root)
    s = Session(api, "ada", pw)
    assert s.me["role"] == "admin" and not s.me["must_change"], s.me
    return s


def test_r14_token_stops_with_its_owner(wharf, served):
    ctx = {}
    srv, data, api, _ = served(before=ada_setup(wharf, ctx))
    root = ctx["root"]
    ada = ada_session(api, root, ctx["pw"])
    r = ada.ok("POST", "/api/v1/tokens", status=201, body=ADA_TOKEN_BODY)
    tok, tid = r.json()["token"], r.json()["id"]
    assert r.json()["owner"] == "ada", r.json()
    me = api.ok("GET", "/api/v1/auth/me", token=tok).json()
    assert (me["kind"], me["role"], me["user"]) == ("token", "admin", "ada")
    api.ok("GET", "/api/v1/users", token=tok)

    # disabled: the token is refused, and cannot create an administrator
    api.ok("PUT", "/api/v1/users/ada", body={"disabled": True}, token=root)
    for path in ("/api/v1/auth/me", "/api/v1/users", "/api/v1/flows"):
        r = api.request("GET", path, token=tok)
        assert r.status == 401 and r.code() == "unauthorized", r
    r = api.request("POST", "/api/v1/users", token=tok,
                    body={"name": "mallory", "role": "admin"})
    assert r.status == 401, r
    names = [u["name"] for u in api.ok("GET", "/api/v1/users",
                                       token=root).json()["users"]]
    assert "mallory" not in names, names

    # enabled again and demoted to viewer: the admin token acts as a viewer
    api.ok("PUT", "/api/v1/users/ada", body={"disabled": False}, token=root)
    api.ok("PUT", "/api/v1/users/ada", body={"role": "viewer"}, token=root)
    me = api.ok("GET", "/api/v1/auth/me", token=tok).json()
    assert (me["role"], me["user"]) == ("viewer", "ada"), me
    api.ok("GET", "/api/v1/flows", token=tok)          # a viewer may
    api.ok("GET", "/api/v1/messages", token=tok)
    for method, path, body in [
            ("GET", "/api/v1/users", None),
            ("POST", "/api/v1/users", {"name": "mallory", "role": "admin"}),
            ("POST", "/api/v1/tokens", {"role": "viewer"}),
            ("GET", "/api/v1/audit", None),
            ("PUT", "/api/v1/settings/mfa_required_admin",
             {"value": "false"})]:
        r = api.request(method, path, body=body, token=tok)
        assert r.status == 403 and r.code() == "forbidden", r
    # promoted back: the token gets its own role again, never more
    api.ok("PUT", "/api/v1/users/ada", body={"role": "admin"}, token=root)
    assert api.ok("GET", "/api/v1/auth/me",
                  token=tok).json()["role"] == "admin"

    # deleted: refused for good, listed as revoked, audited
    api.ok("DELETE", "/api/v1/users/ada", token=root)
    r = api.request("GET", "/api/v1/auth/me", token=tok)
    assert r.status == 401, r
    listed = {t["id"]: t for t in api.ok("GET", "/api/v1/tokens",
                                        token=root).json()["tokens"]}
    assert listed[tid]["revoked_at"] > 0 and listed[tid]["owner"] is None
    # a new user with the same name does not bring the token back
    cli = wharf.ok("user", "add", "ada", "--role", "admin", "--data", data)
    assert cli.returncode == 0
    r = api.request("GET", "/api/v1/auth/me", token=tok)
    assert r.status == 401, r
    deletes = [e for e in audit_entries(wharf, data)
               if e["action"] == "user.delete"]
    assert [(e["target"], e["detail"]) for e in deletes] == [
        ("ada", "tokens_revoked=1")], deletes

    # none of those refusals was counted against 127.0.0.1 (the ban
    # threshold is 10): it is still served
    for _ in range(12):
        assert api.request("GET", "/api/v1/auth/me",
                           token=tok).status == 401
    api.ok("GET", "/api/v1/auth/me", token=root)
    srv.check_alive()


def test_r14_token_made_by_a_token_belongs_to_its_owner(wharf, served):
    ctx = {}
    srv, data, api, _ = served(before=ada_setup(wharf, ctx))
    root = ctx["root"]
    ada = ada_session(api, root, ctx["pw"])
    first = ada.ok("POST", "/api/v1/tokens", status=201,
                   body=ADA_TOKEN_BODY).json()["token"]
    r = api.ok("POST", "/api/v1/tokens", status=201, token=first,
               body={"role": "operator", "name": "second"})
    second = r.json()
    assert second["owner"] == "ada", second
    me = api.ok("GET", "/api/v1/auth/me", token=second["token"]).json()
    assert (me["role"], me["user"]) == ("operator", "ada"), me
    # the owner leaves: both stop
    api.ok("DELETE", "/api/v1/users/ada", token=root)
    for t in (first, second["token"]):
        assert api.request("GET", "/api/v1/auth/me", token=t).status == 401
    rows = json.loads(wharf.ok("token", "list", "--json", "--data",
                               data).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["second"]["status"] == "revoked", by_name
    assert by_name["ada-robot"]["status"] == "revoked", by_name
    assert by_name["root"]["owner"] == "admin", by_name
    srv.check_alive()
