/*
 * flow.c (cli) - `wharf flow import FILE` and `wharf flow export`.
 * Import validates the whole document first; a running server picks the
 * new flow up within a second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "connectors/connector.h"
#include "core/flow.h"
#include "core/wharf.h"
#include "store/store.h"
#include "util/fsx.h"

static int flow_import_cmd(const char *data, const char *file)
{
    struct error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (fsx_read_all(file, FLOW_DOC_MAX, &text, &len, &err) < 0)
        return cli_fail("%s", err.msg);
    /* The data dir first: its wharf.conf says which folders a flow may
     * name (allowed_paths); nothing is written before the flow is valid. */
    struct wharf *w;
    struct store *st;
    if (cli_open(data, &w, &st) != 0) {
        free(text);
        return EXIT_FAIL;
    }
    struct store_flow f;
    if (flow_parse(text, len, &f, &err) < 0) {
        free(text);
        cli_close(w, st);
        return cli_fail("%s: %s", file, err.msg);
    }
    char before[65], after[65];
    cli_flow_sha256(st, before);
    int rc = flow_read_files(w, st, &f, FLOW_FROM_CLI, &err);
    if (rc == 0)
        rc = store_flow_put(st, &f, &err);
    int64_t gen = rc == 0 ? store_flow_generation(st, &err) : -1;
    if (rc == 0)
        printf("imported %zu connector(s) and %zu link(s) (flow generation "
               "%lld)\n", f.nconns, f.nlinks, (long long)gen);
    int arc = EXIT_OK;
    if (rc == 0) {
        cli_flow_sha256(st, after);
        arc = cli_audit(w, st, "flow.import", file, "flow sha256 before=%s "
                        "after=%s", before, after);
    }
    store_flow_clear(&f);
    free(text);
    cli_close(w, st);
    return rc == 0 ? arc : cli_fail("%s", err.msg);
}

static int flow_export_cmd(const char *data)
{
    struct wharf *w;
    struct store *st;
    struct error err = {0};
    if (cli_open(data, &w, &st) != 0)
        return EXIT_FAIL;
    char *text = flow_export(st, &err), sha[65];
    cli_flow_sha256(st, sha);
    int arc = text == NULL ? EXIT_FAIL
                           : cli_audit(w, st, "flow.export", NULL,
                                       "flow sha256 %s", sha);
    cli_close(w, st);
    if (text == NULL)
        return cli_fail("%s", err.msg);
    if (arc == EXIT_OK)
        printf("%s\n", text);
    free(text);
    return arc;
}

static int flow_run(int argc, char **argv)
{
    struct cli_args a;
    int p = cli_parse(&cmd_flow, argc, argv, NULL, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos == 2 && !strcmp(a.pos[0], "import"))
        return flow_import_cmd(a.data, a.pos[1]);
    if (a.npos == 1 && !strcmp(a.pos[0], "export"))
        return flow_export_cmd(a.data);
    return cli_usage(&cmd_flow, "expected 'import FILE' or 'export'");
}

const struct cli_cmd cmd_flow = {
    "flow", "import or export connectors and links as JSON",
    "wharf flow import [--data DIR] FILE.json\n"
    "       wharf flow export [--data DIR]\n"
    "  The document: {\"connectors\":[{\"name\":..,\"type\":..,\"config\":{..}}],\n"
    "  \"links\":[[\"from\",\"to\"]]}. Import replaces the stored flow after\n"
    "  validating all of it; export prints it.\n",
    flow_run,
};
