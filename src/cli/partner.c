/*
 * partner.c (cli) - `wharf partner list|show` and `wharf cert
 * list|export|import` (M7): the AS2 profile, the trading partners and
 * their certificates with expiry. Partners come in with the flow document
 * (`wharf flow import`); `cert import` adds a certificate or key without
 * re-importing it (certificate rollover). The API calls the same
 * core/partners.c functions. `partner erase NAME` erases every message of
 * a partner (GDPR; security/retention.h), audited with the counts. Must
 * never print a private key or password.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/partners.h"
#include "core/wharf.h"
#include "security/retention.h"
#include "store/partner_store.h"
#include "store/store.h"

static void print_json(json_t *j)
{
    char *t = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    printf("%s\n", t ? t : "null");
    free(t);
}

static int partner_list(struct store *st, int json, const char *show)
{
    struct error err = {0};
    json_t *all = partners_list_json(st, &err), *p;
    if (all == NULL)
        return cli_fail("%s", err.msg);
    json_t *parts = json_object_get(all, "partners");
    size_t i;
    int rc = EXIT_OK, found = 0;
    if (!json && !show)
        printf("%-20s %-24s %-8s %-11s %-6s %s\n", "NAME", "AS2 ID", "SIGN",
               "ENCRYPT", "MDN", "URL");
    json_array_foreach(parts, i, p) {
        const char *name = json_string_value(json_object_get(p, "name"));
        if (show && strcmp(show, name))
            continue;
        found = 1;
        if (show)
            print_json(p);
        else if (!json)
            printf("%-20s %-24s %-8s %-11s %-6s %s\n", name,
                   json_string_value(json_object_get(p, "as2_id")),
                   json_string_value(json_object_get(p, "sign")) ?: "sha256",
                   json_string_value(json_object_get(p, "encrypt")) ?: "aes256-cbc",
                   json_string_value(json_object_get(p, "mdn")) ?: "sync",
                   json_string_value(json_object_get(p, "url")));
    }
    if (json && !show)
        print_json(all);
    if (show && !found)
        rc = cli_fail("no partner named '%s'", show);
    json_decref(all);
    return rc;
}

/* Erase every message of partner name (R9, GDPR). */
static int partner_erase(struct wharf *w, struct store *st, const char *name)
{
    struct error err = {0};
    struct retention_result r;
    char *conns = NULL;
    int rc = retention_erase_partner(w, st, name, "cli", &r, &conns, &err);
    if (rc == 1)
        return cli_fail("no partner named '%s' (see `wharf partner list`)",
                        name);
    if (rc == 0)
        printf("erased %lld message(s) of partner %s (%lld payload bytes "
               "shredded); %lld kept under a legal hold\n",
               (long long)r.messages, name, (long long)r.bytes,
               (long long)r.held);
    int arc = cli_audit(w, st, "partner.erase", name, "erased=%lld bytes=%lld "
                        "held_kept=%lld connectors=%s%s", (long long)r.messages,
                        (long long)r.bytes, (long long)r.held,
                        conns && conns[0] ? conns : "-",
                        rc == 0 ? "" : " (stopped by an error)");
    free(conns);
    return rc == 0 ? arc : cli_fail("%s", err.msg);
}

static int partner_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_partner, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int list = a.npos == 1 && !strcmp(a.pos[0], "list");
    int show = a.npos == 2 && !strcmp(a.pos[0], "show");
    int erase = a.npos == 2 && !strcmp(a.pos[0], "erase");
    if (!list && !show && !erase)
        return cli_usage(&cmd_partner, "expected 'list', 'show NAME' or "
                         "'erase NAME'");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = erase ? partner_erase(w, st, a.pos[1])
                   : partner_list(st, a.flags[0], show ? a.pos[1] : NULL);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_partner = {
    "partner", "list the AS2 trading partners and the local profile",
    "wharf partner list [--data DIR] [--json]\n"
    "       wharf partner show [--data DIR] NAME\n"
    "       wharf partner erase [--data DIR] NAME\n"
    "  Partners and the profile are part of the flow document\n"
    "  (\"profile\", \"partners\"): change them with `wharf flow import`.\n"
    "  erase: erase every message of the partner (that entered through or\n"
    "  went to a connector whose partner it is): payloads shredded, records\n"
    "  kept as erased; held messages stay. Audited with the counts.\n",
    partner_run,
};

/* ---- wharf cert --------------------------------------------------------- */

static int cert_list(struct store *st, int json)
{
    struct error err = {0};
    json_t *arr = partners_certs_json(st, &err), *c;
    if (arr == NULL)
        return cli_fail("%s", err.msg);
    size_t i;
    if (json)
        print_json(arr);
    else
        printf("%-16s %-12s %-20s %-13s %s\n", "ID", "OWNER", "NOT AFTER",
               "STATUS", "SUBJECT");
    json_array_foreach(arr, i, c) {
        if (json)
            break;
        printf("%-16.16s %-12s %-20s %-13s %s\n",
               json_string_value(json_object_get(c, "id")),
               json_string_value(json_object_get(c, "owner")),
               json_string_value(json_object_get(c, "not_after")),
               json_string_value(json_object_get(c, "status")),
               json_string_value(json_object_get(c, "subject")));
    }
    json_decref(arr);
    return EXIT_OK;
}

static int cert_export(struct store *st, const char *id)
{
    struct error err = {0};
    char *pem = partners_cert_pem(st, id, &err);
    if (pem == NULL)
        return cli_fail("%s", err.msg);
    fputs(pem, stdout);
    free(pem);
    return EXIT_OK;
}

static int cert_import(struct wharf *w, struct store *st,
                       const struct cli_args *a)
{
    const char *partner = a->values[1], *pw = a->values[2];
    const char *key = a->values[3], *use_from = a->values[4];
    const char *file = a->pos[1];
    if ((partner == NULL) == (a->flags[5] == 0))
        return cli_fail("say --partner NAME (a partner's certificate) or "
                        "--profile (a key of the local profile)");
    json_t *e;
    if (partner)
        e = use_from ? json_pack("{s:s, s:s}", "file", file, "use_from",
                                 use_from) : json_string(file);
    else if (key)
        e = json_pack("{s:s, s:s, s:s*}", "cert", file, "key", key,
                      "password_file", pw);
    else
        e = json_pack("{s:s, s:s*}", "pkcs12", file, "password_file", pw);
    struct error err = {0};
    int rc = e ? partners_cert_import(w, st, partner, e, FLOW_FROM_CLI, &err)
               : error_set(&err, "out of memory");
    json_decref(e);
    if (rc < 0)
        return cli_fail("%s", err.msg);
    printf("imported %s for %s\n", file, partner ? partner : "the profile");
    return cli_audit(w, st, "cert.import", partner ? partner : "(profile)",
                     "file %s", file);
}

static int cert_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--partner=",
        "--password-file=", "--key=", "--use-from=", "--profile", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_cert, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    const char *verb = a.npos > 0 ? a.pos[0] : "";
    int list = a.npos == 1 && !strcmp(verb, "list");
    int exp = a.npos == 2 && !strcmp(verb, "export");
    int imp = a.npos == 2 && !strcmp(verb, "import");
    if (!list && !exp && !imp)
        return cli_usage(&cmd_cert, "expected 'list', 'export ID' or "
                         "'import FILE'");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = list ? cert_list(st, a.flags[0])
             : exp ? cert_export(st, a.pos[1]) : cert_import(w, st, &a);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_cert = {
    "cert", "list, export and import certificates (with their expiry)",
    "wharf cert list [--data DIR] [--json]\n"
    "       wharf cert export [--data DIR] ID\n"
    "       wharf cert import [--data DIR] --partner NAME [--use-from T] FILE\n"
    "       wharf cert import [--data DIR] --profile --password-file F FILE.p12\n"
    "       wharf cert import [--data DIR] --profile --key KEY [--password-file F] CERT\n"
    "  list shows every certificate of the profile and the partners with\n"
    "  its expiry (status valid, expiring within 30 days, expired).\n"
    "  export prints one as PEM (ID: at least 8 characters of it); never a\n"
    "  private key. import adds a partner certificate (PEM or DER; --use-from\n"
    "  2027-01-31T00:00:00Z: send with it from then on, accept it now) or a\n"
    "  profile key (PKCS#12, or PEM/DER certificate + key; sealed by the vault)\n"
    "  during a certificate rollover.\n",
    cert_run,
};
