/*
 * api_connector_actions.c - connector types and the generic connector
 * actions of the REST API:
 *   GET  /api/v1/connector-types                 (flow.read) every type's
 *        config map and actions, from the type tables (connector.h): what
 *        the console's forms are generated from;
 *   GET|POST /api/v1/connectors/{name}/actions/{verb}   (flow.read to reach
 *        it, then the action's own permission from its type's table):
 *        POST runs any action with the JSON body as its arguments; GET
 *        only an action that changes nothing (hostkey.capture, test).
 * The dispatch is core/flow.c's (flow_action_find, flow_action_run), the
 * same as `wharf connector NAME VERB`; the API knows no connector type.
 * Audited as the action's table says; an attempt at a verb some type
 * declares on a connector that lacks it (or does not exist) too, as
 * "refused: why". Must never put a secret into a
 * response: an action's result and the type tables hold none.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "connectors/connector.h"
#include "core/flow.h"
#include "net/server.h"

int api_connector_types(struct api_ctx *c)
{
    json_t *types = connector_types_json();
    return types ? api_ok(c, 200, types)
                 : api_fail(c, 500, "internal", "out of memory");
}

/* A failed action as the API's answer. */
static int action_fail(struct api_ctx *c, int rc,
                       const struct conn_action_ctx *x,
                       const struct error *err)
{
    switch (rc) {
    case CONN_ACT_INVALID:
        return api_fail(c, 400, "invalid", "%s", err->msg);
    case CONN_ACT_REFUSED:
        return api_fail(c, 409, x->code[0] ? x->code : "conflict", "%s",
                        err->msg);
    case CONN_ACT_UNREACHABLE:
        return api_fail(c, 502, "unreachable", "%s", err->msg);
    case CONN_ACT_NOT_FOUND:
        return api_fail(c, 404, "not_found", "%s", err->msg);
    default:
        return api_fail(c, 500, "internal", "%s", err->msg);
    }
}

/* The caller's role holds a's permission (an unknown name: nobody does). */
static int action_allowed(const struct api_ctx *c, const struct conn_action *a)
{
    enum perm p;
    return rbac_perm_parse(a->permission, &p) == 0 &&
           rbac_allows(c->who.role, p);
}

int api_connector_action(struct api_ctx *c)
{
    struct error err = {0};
    const struct conn_action *a = NULL;
    struct conn_action_ctx x;
    const char *name = c->param[0], *verb = c->param[1];
    int rc = flow_action_find(c->st, name, verb, &a, &err);
    const struct conn_action *any = rc == CONN_ACT_NOT_FOUND
                                    ? connector_action_any(verb) : NULL;
    char detail[ERROR_MSG_MAX + 16];
    snprintf(detail, sizeof(detail), "refused: %s", err.msg);
    if (any && any->audit && action_allowed(c, any))
        api_audit(c, any->audit, name, detail);     /* the attempt */
    if (rc != CONN_ACT_OK)
        return rc == CONN_ACT_NOT_FOUND
               ? api_fail(c, 404, "not_found", "%s", err.msg)
               : api_fail(c, 500, "internal", "%s", err.msg);
    if (!action_allowed(c, a))
        return api_fail(c, 403, "forbidden", "role %s may not %s (action %s)",
                        rbac_role_name(c->who.role), a->permission, verb);
    if (strcmp(net_req_method(c->req), "GET") == 0 && !a->read_only)
        return api_fail(c, 405, "method_not_allowed", "action %s changes "
                        "things: use POST", verb);
    if (c->body && !json_is_object(c->body))
        return api_fail(c, 400, "invalid", "send the action's arguments as "
                        "a JSON object");
    json_t *none = json_object();
    rc = flow_action_run(c->w, c->st, name, a, c->body ? c->body : none, &x,
                         &err);
    json_decref(none);
    if (a->audit && x.audit[0])
        api_audit(c, a->audit, name, x.audit);
    if (rc != CONN_ACT_OK) {
        int sent = action_fail(c, rc, &x, &err);
        flow_action_clear(&x);
        return sent;
    }
    json_t *body = x.result ? json_incref(x.result)
                            : json_pack("{s:s, s:s}", "connector", name,
                                        "detail", x.text);
    flow_action_clear(&x);
    return api_ok(c, 200, body);
}
