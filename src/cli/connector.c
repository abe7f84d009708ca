/*
 * connector.c (cli) - `wharf connector`:
 *   list [--json]          the stored connectors (marks those that send in
 *                          the clear: R11);
 *   help [TYPE] [--json]   every connector type, or one type's config keys
 *                          (type, default, required/secret/advanced, help)
 *                          and actions, printed from the type tables
 *                          (connector.h): the same as GET /api/v1/
 *                          connector-types;
 *   NAME VERB [ARGS]       a generic action of connector NAME's type (test,
 *                          hostkey.capture, hostkey.accept, oauth.authorize
 *                          ...): ARGS are the action's parameters in order,
 *                          or PARAM=VALUE; dispatched by core/flow.c like
 *                          POST /api/v1/connectors/{name}/actions/{verb}.
 * Knows no connector type by name. Must never print a token, code,
 * verifier or secret: actions' texts and results hold none.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "connectors/connector.h"
#include "core/flow.h"
#include "core/wharf.h"
#include "store/store.h"

static void print_json(json_t *j)
{
    char *t = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    printf("%s\n", t ? t : "null");
    free(t);
}

static int list_cmd(struct store *st, int json)
{
    struct error err = {0};
    struct store_flow f;
    if (store_flow_get(st, &f, &err) < 0)
        return cli_fail("%s", err.msg);
    json_t *arr = json_array();
    if (!json)
        printf("%-24s %-10s %s\n", "NAME", "TYPE", "TRANSPORT");
    for (size_t i = 0; i < f.nconns; i++) {
        int insecure = flow_connector_insecure(f.conns[i].config);
        if (json)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "name",
                f.conns[i].name, "type", f.conns[i].type, "insecure", insecure));
        else
            printf("%-24s %-10s %s\n", f.conns[i].name, f.conns[i].type,
                   insecure ? "INSECURE (plain text, no TLS)" : "-");
    }
    if (json)
        print_json(arr);
    json_decref(arr);
    store_flow_clear(&f);
    return EXIT_OK;
}

/* ---- help ----------------------------------------------------------------- */

/* One option of the JSON description as two lines. */
static void option_print(const json_t *o)
{
    const json_t *d = json_object_get(o, "default");
    const json_t *w = json_object_get(o, "when");
    char *dv = d ? json_dumps(d, JSON_ENCODE_ANY) : NULL;
    printf("  %s (%s", json_string_value(json_object_get(o, "key")),
           json_string_value(json_object_get(o, "type")));
    if (json_is_true(json_object_get(o, "required")))
        printf(", required");
    if (json_is_true(json_object_get(o, "secret")) &&
        strcmp(json_string_value(json_object_get(o, "type")), "secret") != 0)
        printf(", secret members");
    if (json_is_true(json_object_get(o, "advanced")))
        printf(", advanced");
    if (dv)
        printf(", default %s", dv);
    size_t i;
    json_t *v;
    const json_t *values = json_object_get(o, "values");
    json_array_foreach(values, i, v) {
        printf("%s%s", i ? "|" : ", one of ", json_string_value(v));
    }
    if (json_object_get(o, "min") && json_object_get(o, "max"))
        printf(", %lld..%lld",
               (long long)json_integer_value(json_object_get(o, "min")),
               (long long)json_integer_value(json_object_get(o, "max")));
    if (w) {
        const json_t *when = json_object_get(w, "values");
        printf(", only when %s is ",
               json_string_value(json_object_get(w, "key")));
        json_array_foreach(when, i, v) {
            printf("%s%s", i ? "|" : "", json_string_value(v));
        }
    }
    printf(")\n      %s\n", json_string_value(json_object_get(o, "help")));
    free(dv);
}

static void type_print(const json_t *t, const json_t *common)
{
    size_t i;
    json_t *v;
    printf("%s: %s\n\nconfig keys:\n",
           json_string_value(json_object_get(t, "name")),
           json_string_value(json_object_get(t, "summary")));
    const json_t *options = json_object_get(t, "options");
    const json_t *actions = json_object_get(t, "actions");
    json_array_foreach(options, i, v) {
        option_print(v);
    }
    printf("\nkeys every connector takes:\n");
    json_array_foreach(common, i, v) {
        option_print(v);
    }
    printf("\nactions (wharf connector NAME VERB [ARGS]):\n");
    json_array_foreach(actions, i, v) {
        size_t k;
        json_t *p;
        const json_t *params = json_object_get(v, "params");
        printf("  %s", json_string_value(json_object_get(v, "verb")));
        json_array_foreach(params, k, p) {
            printf(" %s", json_string_value(p));
        }
        printf(" (%s%s)\n      %s\n",
               json_string_value(json_object_get(v, "permission")),
               json_is_true(json_object_get(v, "read_only")) ? ", read-only"
                                                              : "",
               json_string_value(json_object_get(v, "summary")));
    }
}

static int help_cmd(const char *type, int json)
{
    json_t *all = connector_types_json();
    json_t *types = json_object_get(all, "types"), *t, *one = NULL;
    size_t i;
    json_array_foreach(types, i, t) {
        if (type && !strcmp(json_string_value(json_object_get(t, "name")),
                            type))
            one = t;
    }
    int rc = EXIT_OK;
    if (type && one == NULL)
        rc = cli_fail("no connector type '%s' (wharf connector help lists "
                      "them)", type);
    else if (json)
        print_json(one ? one : all);
    else if (one)
        type_print(one, json_object_get(all, "common"));
    else {
        printf("connector types (wharf connector help TYPE for its config "
               "keys and actions):\n");
        json_array_foreach(types, i, t) {
            printf("  %-10s %s\n", json_string_value(json_object_get(t,
                   "name")), json_string_value(json_object_get(t,
                   "summary")));
        }
    }
    json_decref(all);
    return rc;
}

/* ---- actions -------------------------------------------------------------- */

/* ARGS (PARAM=VALUE, or positional in the order of a's params) as an
 * object; NULL after printing a usage error. */
static json_t *action_args(const struct conn_action *a, const char *const *pos,
                           int n)
{
    json_t *args = json_object();
    int next = 0;
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(pos[i], '=');
        if (eq) {
            char k[64];
            snprintf(k, sizeof(k), "%.*s", (int)(eq - pos[i]), pos[i]);
            json_object_set_new(args, k, json_string(eq + 1));
            continue;
        }
        const char *key = a->params ? a->params[next] : NULL;
        if (key == NULL) {
            json_decref(args);
            cli_usage(&cmd_connector, "action %s takes no more arguments "
                      "(\"%s\")", a->verb, pos[i]);
            return NULL;
        }
        next++;
        json_object_set_new(args, key, json_string(pos[i]));
    }
    return args;
}

static int action_cmd(struct wharf *w, struct store *st, const char *name,
                      const char *verb, const char *const *pos, int n,
                      int json)
{
    struct error err = {0};
    const struct conn_action *a = NULL;
    struct conn_action_ctx x;
    int rc = flow_action_find(st, name, verb, &a, &err);
    if (rc != CONN_ACT_OK) {
        const struct conn_action *any = connector_action_any(verb);
        if (any && any->audit)      /* the attempt is audited too */
            cli_audit(w, st, any->audit, name, "refused: %s", err.msg);
        return cli_fail("%s", err.msg);
    }
    json_t *args = action_args(a, pos, n);
    if (args == NULL)
        return EXIT_USAGE;
    rc = flow_action_run(w, st, name, a, args, &x, &err);
    json_decref(args);
    if (json && x.result)
        print_json(x.result);
    else if (x.text[0])
        printf("%s\n", x.text);
    if (x.note[0])
        fprintf(stderr, "%s\n", x.note);
    flow_action_clear(&x);
    int audited = a->audit && x.audit[0]
                  ? cli_audit(w, st, a->audit, name, "%s", x.audit) : EXIT_OK;
    if (rc != CONN_ACT_OK)
        return cli_fail("%s", err.msg);
    return audited;
}

static int connector_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_connector, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int is_list = a.npos == 1 && !strcmp(a.pos[0], "list");
    int is_help = a.npos >= 1 && a.npos <= 2 && !strcmp(a.pos[0], "help");
    if (is_help)
        return help_cmd(a.npos == 2 ? a.pos[1] : NULL, a.flags[0]);
    if (!is_list && a.npos < 2)
        return cli_usage(&cmd_connector, "expected 'list', 'help [TYPE]' or "
                         "'NAME VERB [ARGS]'");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = is_list ? list_cmd(st, a.flags[0])
             : action_cmd(w, st, a.pos[0], a.pos[1], a.pos + 2, a.npos - 2,
                          a.flags[0]);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_connector = {
    "connector", "list connectors, describe connector types, run a "
    "connector's actions (test, host keys, OAuth)",
    "wharf connector list [--data DIR] [--json]\n"
    "       wharf connector help [TYPE] [--json]\n"
    "       wharf connector [--data DIR] [--json] NAME VERB [ARGS]\n"
    "  list marks connectors that send in the clear (\"insecure\": true).\n"
    "  help lists the connector types; help TYPE prints its config keys\n"
    "  (type, default, required / secret / advanced, help) and actions.\n"
    "  NAME VERB runs an action of connector NAME (its type's: see help\n"
    "  TYPE), ARGS its parameters in order or as PARAM=VALUE:\n"
    "    test             opens NAME from the stored flow and checks its\n"
    "                     connection: DNS, TCP, TLS (and why),\n"
    "                     authentication, permissions, path\n"
    "    hostkey.capture  (sftp) the host key the server presents (type\n"
    "                     and SHA256 fingerprint as ssh-keygen -lf prints\n"
    "                     it; no authentication is attempted)\n"
    "    hostkey.accept FINGERPRINT  (sftp) compare it with the partner\n"
    "                     first: the server must still present exactly that\n"
    "                     key, stored as NAME's host_key_sha256 (audited)\n"
    "    oauth.authorize  (http, auth oauth2 authorization_code) prints the\n"
    "                     URL that starts an OAuth authorization; open it\n"
    "                     within 10 minutes: the running server's\n"
    "                     /oauth/callback completes it\n",
    connector_run,
};
