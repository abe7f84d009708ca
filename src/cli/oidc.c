/*
 * oidc.c (cli) - `wharf oidc configure|show|disable`: the OIDC single
 * sign-on settings, offline against the data dir. The client secret is
 * read from a file and stored sealed by the vault; `show` never prints it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/wharf.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/vault.h"

static const char *const OPTS[] = { "--issuer=", "--client-id=",
    "--client-secret-file=", "--redirect-uri=", "--role-claim=",
    "--role-map=", "--default-role=", "--ca-file=", NULL };
static const char *const KEYS[] = { "oidc_issuer", "oidc_client_id",
    "oidc_client_secret", "oidc_redirect_uri", "oidc_role_claim",
    "oidc_role_map", "oidc_default_role", "oidc_ca_file" };

/* Seal the secret in file and hex-encode it. Caller frees. */
static char *sealed_hex(struct wharf *w, const char *file, struct error *err)
{
    struct secret *s = secret_from_file(file, err);
    unsigned char *blob = NULL;
    size_t n = 0;
    char *hex = NULL;
    if (s && vault_seal(w->vault, "oidc:client_secret", s, &blob, &n, err) == 0 &&
        (hex = malloc(2 * n + 1)) != NULL)
        for (size_t i = 0; i < n; i++)
            snprintf(hex + 2 * i, 3, "%02x", blob[i]);
    secret_free(s);
    free(blob);
    return hex;
}

static int configure(struct wharf *w, struct store *st, const struct cli_args *a)
{
    struct error err = {0};
    if (!a->values[0] || !a->values[1] || !a->values[3])
        return cli_usage(&cmd_oidc, "--issuer, --client-id and --redirect-uri "
                         "are required");
    for (int i = 0; OPTS[i]; i++) {
        if (a->values[i] == NULL)
            continue;
        char *v = i == 2 ? sealed_hex(w, a->values[i], &err)
                         : strdup(a->values[i]);
        int rc = v ? store_setting_set(st, KEYS[i], v, &err) : -1;
        free(v);
        if (rc < 0)
            return cli_fail("%s", err.msg[0] ? err.msg : "out of memory");
    }
    cli_audit(w, st, "settings.change", "oidc", "issuer %s client %s",
              a->values[0], a->values[1]);
    printf("OIDC login configured for %s (redirect %s)\n", a->values[0],
           a->values[3]);
    return EXIT_OK;
}

static int show(struct store *st)
{
    struct error err = {0};
    for (size_t i = 0; i < sizeof(KEYS) / sizeof(*KEYS); i++) {
        char *v = NULL;
        if (store_setting_get(st, KEYS[i], &v, &err) < 0)
            return cli_fail("%s", err.msg);
        printf("%-20s %s\n", KEYS[i], !v ? "-" : i == 2 ? "(sealed)" : v);
        free(v);
    }
    return EXIT_OK;
}

static int oidc_run(int argc, char **argv)
{
    struct cli_args a;
    int p = cli_parse(&cmd_oidc, argc, argv, OPTS, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos != 1 || (strcmp(a.pos[0], "configure") && strcmp(a.pos[0], "show")))
        return cli_usage(&cmd_oidc, "expected configure or show");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = !strcmp(a.pos[0], "show") ? show(st) : configure(w, st, &a);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_oidc = {
    "oidc", "configure OIDC single sign-on for the console and API",
    "wharf oidc configure [--data DIR] --issuer URL --client-id ID\n"
    "          --redirect-uri https://HOST:PORT/api/v1/auth/oidc/callback\n"
    "          [--client-secret-file F] [--role-claim CLAIM]\n"
    "          [--role-map '{\"claim value\":\"role\",...}'] [--default-role R]\n"
    "          [--ca-file PEM]\n"
    "       wharf oidc show [--data DIR]\n"
    "  The redirect URI is Wharf's own admin listener: no relay. The secret\n"
    "  file (mode 0600) is sealed by the vault; show never prints it.\n",
    oidc_run,
};
