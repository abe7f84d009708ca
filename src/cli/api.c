/*
 * api.c (cli) - `wharf api routes [--json]`: the REST API's route table
 * (method, path, permission), straight from the code, for operators
 * writing integrations and for the tests that check docs/openapi.yaml and
 * the authorization matrix against the routes that exist.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cli/cli.h"
#include "connectors/connector.h"

static const char *perm_label(int perm)
{
    if (perm == API_PUBLIC)
        return "public";
    if (perm == API_SELF)
        return "self";
    return rbac_perm_name((enum perm)perm);
}

/* {"connector_config_TYPE": JSON Schema, ...}: what docs/openapi.yaml's
 * components.schemas hold for connector configs (tests compare them). */
static int schemas_print(void)
{
    const struct connector_type *const *types;
    size_t n = connector_types(&types);
    json_t *all = json_object();
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof(name), "connector_config_%s", types[i]->name);
        json_object_set_new(all, name, connector_config_schema(types[i]));
    }
    char *t = json_dumps(all, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("%s\n", t ? t : "{}");
    free(t);
    json_decref(all);
    return EXIT_OK;
}

static int api_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_api, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos == 1 && strcmp(a.pos[0], "connector-schemas") == 0)
        return schemas_print();
    if (a.npos != 1 || strcmp(a.pos[0], "routes") != 0)
        return cli_usage(&cmd_api, "expected 'routes' or 'connector-schemas'");
    size_t n;
    const struct api_route *r = api_routes(&n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (a.flags[0])
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}",
                "method", r[i].method, "path", r[i].pattern, "permission",
                perm_label(r[i].perm), "summary", r[i].summary));
        else
            printf("%-6s %-40s %-16s %s\n", r[i].method, r[i].pattern,
                   perm_label(r[i].perm), r[i].summary);
    }
    if (a.flags[0]) {
        char *t = json_dumps(arr, JSON_INDENT(2));
        printf("%s\n", t ? t : "[]");
        free(t);
    }
    json_decref(arr);
    return EXIT_OK;
}

const struct cli_cmd cmd_api = {
    "api", "list the REST API's routes and the permission each needs",
    "wharf api routes [--json]\n"
    "       wharf api connector-schemas\n"
    "  routes: public: no credentials; self: any caller, about themself;\n"
    "  otherwise the permission a role must hold (see docs/architecture.md).\n"
    "  connector-schemas: the JSON Schema of each connector type's config,\n"
    "  from the type tables (docs/openapi.yaml holds the same).\n",
    api_run,
};
