/*
 * token.c (cli) - `wharf token create|list|revoke`: API tokens for
 * programs, offline against the data dir (the same auth_ functions the
 * REST API calls).
 *
 * create prints the token alone on stdout (so TOKEN=$(wharf token create
 * ...) works) and what was created on stderr; the token is shown that once
 * and never again: list shows ids, names, roles, owners and times only.
 * Every token acts as a user, named with --owner (required: the CLI has
 * no user of its own to lend it).
 *
 * Owns nothing beyond a call. Must never: print a token except the one
 * just created, or accept a token value as an argument.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "cli/cli.h"
#include "core/wharf.h"
#include "store/store.h"
#include "util/log.h"
#include "util/secret.h"

#define TOKEN_DAYS_DEFAULT 90

static const struct auth_actor CLI_ACTOR = { "cli", NULL };

static int days_arg(const char *v, int *days)
{
    *days = TOKEN_DAYS_DEFAULT;
    if (v == NULL)
        return 0;
    char *end;
    errno = 0;
    long d = strtol(v, &end, 10);
    if (errno || end == v || *end || d < 0 || d > AUTH_TOKEN_DAYS_MAX)
        return -1;
    *days = (int)d;
    return 0;
}

static int token_create(struct auth *a, const struct cli_args *args)
{
    enum role role;
    int days;
    struct error err = {0};
    struct auth_token_new t;
    if (args->values[0] == NULL || rbac_role_parse(args->values[0], &role) < 0)
        return cli_usage(&cmd_token, "create needs --role admin, operator, "
                         "auditor or viewer");
    if (days_arg(args->values[2], &days) < 0)
        return cli_usage(&cmd_token, "--days must be 0 (never expires) to %d",
                         AUTH_TOKEN_DAYS_MAX);
    if (args->values[4] == NULL)
        return cli_usage(&cmd_token, "create needs --owner USER: the user "
                         "the token acts as");
    struct store_user owner;
    int rc = auth_user_get(a, args->values[4], &owner, &err);
    int64_t owner_id = owner.id;
    store_user_clear(&owner);
    if (rc == AUTH_OK)
        rc = auth_token_create(a, &CLI_ACTOR, owner_id, args->values[1], role,
                               days, &t, &err);
    if (rc != AUTH_OK)
        return cli_fail("%s", err.msg);
    fwrite(secret_data(t.token), 1, secret_len(t.token), stdout);
    fputc('\n', stdout);
    fflush(stdout);
    char when[32] = "never";
    if (t.expires_at)
        time_iso(t.expires_at, when, sizeof(when));
    fprintf(stderr, "created API token %s (role %s, owner %s, expires %s); "
            "it is shown only once\n", t.id, rbac_role_name(role),
            args->values[4], when);
    auth_token_new_clear(&t);
    return EXIT_OK;
}

static const char *token_status(const struct store_token *t, int64_t now)
{
    if (t->revoked_at)
        return "revoked";
    if (t->expires_at && now >= t->expires_at)
        return "expired";
    return "active";
}

static void iso_or(int64_t ms, const char *none, char *out, size_t n)
{
    if (ms > 0)
        time_iso(ms, out, (unsigned)n);
    else
        snprintf(out, n, "%s", none);
}

static json_t *token_json(const struct store_token *t, int64_t now)
{
    char c[32], e[32], u[32];
    iso_or(t->created_at, "", c, sizeof(c));
    iso_or(t->expires_at, "", e, sizeof(e));
    iso_or(t->last_used_at, "", u, sizeof(u));
    return json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s, s:s?, s:s?, s:s?}",
                     "id", t->id, "name", t->name, "role", t->role,
                     "owner", t->owner,
                     "status", token_status(t, now), "created_at", c,
                     "expires_at", t->expires_at ? e : NULL,
                     "last_used_at", t->last_used_at ? u : NULL,
                     "created_by", t->created_by);
}

static void token_table(const struct store_token *t, size_t n, int64_t now)
{
    printf("%-36s %-16s %-8s %-16s %-7s %-24s %-24s %s\n", "ID", "NAME",
           "ROLE", "OWNER", "STATUS", "EXPIRES", "LAST USED", "CREATED BY");
    for (size_t i = 0; i < n; i++) {
        char e[32], u[32];
        iso_or(t[i].expires_at, "never", e, sizeof(e));
        iso_or(t[i].last_used_at, "never", u, sizeof(u));
        printf("%-36s %-16.16s %-8s %-16.16s %-7s %-24s %-24s %s\n", t[i].id,
               t[i].name, t[i].role, t[i].owner ? t[i].owner : "-",
               token_status(&t[i], now), e, u,
               t[i].created_by ? t[i].created_by : "-");
    }
}

static int token_list(struct auth *a, int json)
{
    struct store_token *t;
    size_t n;
    struct error err = {0};
    if (auth_token_list(a, &t, &n, &err) != AUTH_OK)
        return cli_fail("%s", err.msg);
    int64_t now = auth_now(a);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, token_json(&t[i], now));
        char *s = json_dumps(arr, JSON_INDENT(2));
        printf("%s\n", s ? s : "[]");
        free(s);
        json_decref(arr);
    } else {
        token_table(t, n, now);
    }
    store_tokens_free(t, n);
    return EXIT_OK;
}

static int token_dispatch(struct auth *a, const struct cli_args *args)
{
    const char *verb = args->pos[0];
    struct error err = {0};
    if (strcmp(verb, "create") == 0 && args->npos == 1)
        return token_create(a, args);
    if (strcmp(verb, "list") == 0 && args->npos == 1)
        return token_list(a, args->flags[3]);
    if (strcmp(verb, "revoke") == 0 && args->npos == 2) {
        if (auth_token_revoke(a, &CLI_ACTOR, args->pos[1], &err) != AUTH_OK)
            return cli_fail("%s", err.msg);
        printf("token %s revoked\n", args->pos[1]);
        return EXIT_OK;
    }
    return cli_usage(&cmd_token, "expected create, list or revoke ID");
}

static int token_run(int argc, char **argv)
{
    static const char *const opts[] = { "--role=", "--name=", "--days=",
                                        "--json", "--owner=", NULL };
    struct cli_args args;
    int p = cli_parse(&cmd_token, argc, argv, opts, &args);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (args.npos == 0)
        return cli_usage(&cmd_token, "expected create, list or revoke ID");
    struct wharf *w;
    struct store *st;
    if (cli_open(args.data, &w, &st) != 0)
        return EXIT_FAIL;
    log_set_stderr(false);      /* the audit trail records; stdout answers */
    struct auth a;
    auth_init(&a, st, w->vault);
    int rc = token_dispatch(&a, &args);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_token = {
    "token", "manage API tokens for programs: create, list, revoke",
    "wharf token COMMAND [--data DIR] ...\n"
    "  create --role ROLE --owner USER [--name N] [--days D]\n"
    "        prints a new token (wharf_...) once on stdout; it acts as USER\n"
    "        (never with more than USER's role; it stops while USER is\n"
    "        disabled and is revoked when USER is deleted); D days until it\n"
    "        expires (default 90, 0: never, at most 3650)\n"
    "  list [--json]   ids, names, roles, owners, expiry, last use (never\n"
    "                  the token)\n"
    "  revoke ID       the token stops working at once\n"
    "  Programs send it as: Authorization: Bearer TOKEN\n",
    token_run,
};
