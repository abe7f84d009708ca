/*
 * connector.c (cli) - `wharf connector list [--json]` (marks connectors
 * that send in the clear: R11) and `wharf connector test NAME` ("test
 * connection": says precisely what failed). The API's
 * POST /api/v1/connectors/{name}/test calls the same flow_connector_test.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/flow.h"
#include "core/wharf.h"
#include "store/store.h"

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
    if (json) {
        char *t = json_dumps(arr, JSON_INDENT(2));
        printf("%s\n", t ? t : "[]");
        free(t);
    }
    json_decref(arr);
    store_flow_clear(&f);
    return EXIT_OK;
}

static int test_cmd(struct wharf *w, struct store *st, const char *name)
{
    struct error err = {0};
    int rc = flow_connector_test(w, st, name, &err);
    cli_audit(w, st, "connector.test", name, "%s", rc == 0 ? "ok" : "failed");
    if (rc != 0)
        return cli_fail("connection test of %s failed: %s", name, err.msg);
    printf("connection test of %s passed\n", name);
    return EXIT_OK;
}

static int connector_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_connector, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int is_list = a.npos == 1 && !strcmp(a.pos[0], "list");
    int is_test = a.npos == 2 && !strcmp(a.pos[0], "test");
    if (!is_list && !is_test)
        return cli_usage(&cmd_connector, "expected 'list' or 'test NAME'");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = is_list ? list_cmd(st, a.flags[0]) : test_cmd(w, st, a.pos[1]);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_connector = {
    "connector", "list connectors, test a connection",
    "wharf connector list [--data DIR] [--json]\n"
    "       wharf connector test [--data DIR] NAME\n"
    "  list marks connectors that send in the clear (\"insecure\": true).\n"
    "  test opens NAME from the stored flow and checks its connection:\n"
    "  DNS, TCP, TLS (and why), authentication, permissions, path.\n",
    connector_run,
};
