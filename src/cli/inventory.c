/*
 * inventory.c (cli) - `wharf inventory [--json|--csv]`: the asset
 * inventory of security/inventory.h (R23): connectors, endpoints,
 * partners, certificates (the listeners' own included), keys, users and
 * tokens. Reads only; owns nothing beyond the call. Never prints a key's
 * or a secret's bytes.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/wharf.h"
#include "security/inventory.h"
#include "store/store.h"

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

static void text_endpoints(const json_t *inv)
{
    size_t i;
    json_t *o;
    printf("\nENDPOINTS\n  %-28s %-8s %-30s %6s %s\n", "OWNER", "PROTOCOL",
           "HOST OR PATH", "PORT", "TLS");
    json_array_foreach(json_object_get(inv, "endpoints"), i, o) {
        int host = json_object_get(o, "host") != NULL;
        char port[16] = "-";
        if (json_is_integer(json_object_get(o, "port")))
            snprintf(port, sizeof(port), "%lld", (long long)
                     json_integer_value(json_object_get(o, "port")));
        const char *tls = !host && !strcmp(str(o, "protocol"), "file") ? "-"
            : json_is_true(json_object_get(o, "tls")) ? "yes"
            : json_is_true(json_object_get(o, "encrypted")) ? "no (ssh)"
            : "no";
        printf("  %-28s %-8s %-30s %6s %s\n", str(o, "owner"),
               str(o, "protocol"), host ? str(o, "host") : str(o, "path"),
               port, tls);
    }
}

static void text_print(const json_t *inv)
{
    size_t i;
    json_t *o;
    printf("CONNECTORS\n");
    json_array_foreach(json_object_get(inv, "connectors"), i, o) {
        printf("  %-24s %-8s %-5s %s\n", str(o, "name"), str(o, "type"),
               str(o, "direction"), str(o, "partner"));
    }
    text_endpoints(inv);
    printf("\nPARTNERS\n");
    json_array_foreach(json_object_get(inv, "partners"), i, o) {
        printf("  %-20s %-24s %s\n", str(o, "name"), str(o, "as2_id"),
               str(o, "url"));
    }
    printf("\nCERTIFICATES\n");
    json_array_foreach(json_object_get(inv, "certificates"), i, o) {
        printf("  %-16s %-8s %s  %s\n    subject %s\n    issuer  %s\n"
               "    sha256  %s\n", str(o, "owner"), str(o, "status"),
               str(o, "not_after"), str(o, "use"), str(o, "subject"),
               str(o, "issuer"), str(o, "sha256"));
    }
    printf("\nKEYS\n");
    json_array_foreach(json_object_get(inv, "keys"), i, o) {
        printf("  %-16s %-18s %-12s %s (%s)\n", str(o, "kind"), str(o, "id"),
               str(o, "owner"), str(o, "use"), str(o, "where"));
    }
    printf("\nUSERS\n");
    json_array_foreach(json_object_get(inv, "users"), i, o) {
        printf("  %-20s %-9s mfa=%-5s%s\n", str(o, "name"), str(o, "role"),
               str(o, "mfa"), json_is_true(json_object_get(o, "disabled"))
               ? " disabled" : "");
    }
    printf("\nTOKENS\n");
    json_array_foreach(json_object_get(inv, "tokens"), i, o) {
        printf("  %-36s %-16s %-9s owner=%s expires=%s last_used=%s\n",
               str(o, "id"), str(o, "name"), str(o, "role"), str(o, "owner"),
               str(o, "expires"), str(o, "last_used"));
    }
}

static int inventory_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--csv", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_inventory, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos > 0)
        return cli_usage(&cmd_inventory, "unexpected argument %s", a.pos[0]);
    if (a.flags[0] && a.flags[1])
        return cli_usage(&cmd_inventory, "--json or --csv, not both");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    struct error err = {0};
    json_t *inv = inventory_json(w, st, 0, &err);
    int rc = inv ? EXIT_OK : cli_fail("%s", err.msg);
    if (inv && a.flags[0]) {
        char *t = json_dumps(inv, JSON_INDENT(2));
        printf("%s\n", t ? t : "{}");
        free(t);
    } else if (inv && a.flags[1]) {
        char *t = inventory_csv(inv);
        rc = t ? EXIT_OK : cli_fail("out of memory");
        if (t)
            fputs(t, stdout);
        free(t);
    } else if (inv) {
        text_print(inv);
    }
    json_decref(inv);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_inventory = {
    "inventory", "every connector, endpoint, partner, certificate, key, user",
    "wharf inventory [--data DIR] [--json | --csv]\n"
    "  The assets of this installation: connectors (type, direction,\n"
    "  partner), endpoints (protocol, host, port, TLS or not; folders),\n"
    "  partners, certificates (subject, issuer, SHA-256 fingerprint,\n"
    "  expiry; the listeners' own and client CAs included), keys (what and\n"
    "  where, never their bytes), users (role, second factor) and API\n"
    "  tokens. --csv: one table with a kind column.\n",
    inventory_run,
};
