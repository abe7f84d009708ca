/*
 * connector.c (cli) - `wharf connector list [--json]` (marks connectors
 * that send in the clear: R11), `wharf connector test NAME` ("test
 * connection": says precisely what failed) and `wharf connector authorize
 * NAME` (R8: prints the URL that starts an OAuth authorization; the
 * running server's /oauth/callback completes it). The API's
 * POST /api/v1/connectors/{name}/test and .../oauth/authorize call the
 * same functions. Must never print a token, code or verifier.
 * `wharf connector hostkey NAME [--accept SHA256:...]` (M5) shows the host
 * key an sftp connector's server presents and stores it once the operator
 * confirmed it (GET/POST /api/v1/connectors/{name}/hostkey do the same).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "connectors/http.h"
#include "connectors/sftp.h"
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

static int authorize_cmd(struct wharf *w, struct store *st, const char *name)
{
    struct error err = {0};
    char *url = NULL;
    enum http_oauth_rc rc = http_oauth_authorize(w, st, name, &url, &err);
    if (rc != HTTP_OAUTH_OK)
        return cli_fail("cannot start the OAuth authorization of %s: %s",
                        name, err.msg);
    printf("%s\n", url);
    free(url);
    fprintf(stderr, "open this URL in a browser within %d minutes; the "
            "authorization server sends it back to Wharf's admin listener, "
            "where the running server (wharf serve) completes it\n",
            HTTP_OAUTH_PENDING_S / 60);
    return cli_audit(w, st, "connector.oauth.authorize", name, "started");
}

static void hostkey_print(const char *name, const struct sftp_hostkey *k)
{
    printf("%s: %s presents this %s host key:\n  %s\n", name, k->server,
           k->key.type, k->key.fingerprint);
}

static int hostkey_show(struct wharf *w, struct store *st, const char *name)
{
    struct error err = {0};
    struct sftp_hostkey k;
    int rc = sftp_hostkey_show(w, st, name, &k, &err);
    if (rc != SFTP_HOSTKEY_OK && rc != SFTP_HOSTKEY_MISMATCH)
        return cli_fail("cannot get the host key of %s: %s", name, err.msg);
    hostkey_print(name, &k);
    if (rc == SFTP_HOSTKEY_MISMATCH)
        return cli_fail("%s; if the partner really changed it, compare the "
                        "new one with them, then run: wharf connector "
                        "hostkey %s --accept %s", err.msg, name,
                        k.key.fingerprint);
    if (k.confirmed[0]) {
        printf("This is the confirmed host key (host_key_sha256).\n");
        return EXIT_OK;
    }
    printf("Not confirmed yet. Compare it with the fingerprint your partner "
           "gives you\nover another channel (phone, signed mail). If they "
           "are the same, confirm it:\n  wharf connector hostkey %s "
           "--accept %s\n", name, k.key.fingerprint);
    return EXIT_OK;
}

static int hostkey_accept(struct wharf *w, struct store *st, const char *name,
                          const char *fp)
{
    struct error err = {0};
    struct sftp_hostkey k;
    int rc = sftp_hostkey_accept(w, st, name, fp, &k, &err);
    if (rc == SFTP_HOSTKEY_MISMATCH) {
        cli_audit(w, st, "connector.hostkey.accept", name, "refused: %s",
                  err.msg);
        return cli_fail("host key of %s not accepted: %s", name, err.msg);
    }
    if (rc != SFTP_HOSTKEY_OK)
        return cli_fail("host key of %s not accepted: %s", name, err.msg);
    printf("host key %s of %s confirmed for %s and stored as its "
           "host_key_sha256\n(a running server picks it up within a "
           "second)\n", k.key.fingerprint, k.server, name);
    return cli_audit(w, st, "connector.hostkey.accept", name, "%s %s "
                     "(before: %s)", k.server, k.key.fingerprint,
                     k.confirmed[0] ? k.confirmed : "none");
}

static int connector_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--accept=", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_connector, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int is_list = a.npos == 1 && !strcmp(a.pos[0], "list");
    int is_test = a.npos == 2 && !strcmp(a.pos[0], "test");
    int is_auth = a.npos == 2 && !strcmp(a.pos[0], "authorize");
    int is_key = a.npos == 2 && !strcmp(a.pos[0], "hostkey");
    if (!is_list && !is_test && !is_auth && !is_key)
        return cli_usage(&cmd_connector, "expected 'list', 'test NAME', "
                         "'authorize NAME' or 'hostkey NAME'");
    if (a.values[1] && !is_key)
        return cli_usage(&cmd_connector, "--accept goes with hostkey NAME");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = is_list ? list_cmd(st, a.flags[0])
             : is_test ? test_cmd(w, st, a.pos[1])
             : is_auth ? authorize_cmd(w, st, a.pos[1])
             : a.values[1] ? hostkey_accept(w, st, a.pos[1], a.values[1])
             : hostkey_show(w, st, a.pos[1]);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_connector = {
    "connector", "list connectors, test a connection, authorize OAuth, "
    "confirm an SFTP host key",
    "wharf connector list [--data DIR] [--json]\n"
    "       wharf connector test [--data DIR] NAME\n"
    "       wharf connector authorize [--data DIR] NAME\n"
    "       wharf connector hostkey [--data DIR] NAME [--accept SHA256:...]\n"
    "  list marks connectors that send in the clear (\"insecure\": true).\n"
    "  test opens NAME from the stored flow and checks its connection:\n"
    "  DNS, TCP, TLS (and why), authentication, permissions, path.\n"
    "  authorize prints the URL that starts an OAuth authorization of NAME\n"
    "  (auth oauth2, grant authorization_code); open it in a browser within\n"
    "  10 minutes: the running server's /oauth/callback completes it.\n"
    "  hostkey shows the host key the server of sftp connector NAME\n"
    "  presents (type and SHA256 fingerprint, as ssh-keygen -lf prints it;\n"
    "  no authentication is attempted). Compare it with the partner, then\n"
    "  --accept it: the server must still present exactly that key, which\n"
    "  is stored as NAME's host_key_sha256 (audited).\n",
    connector_run,
};
