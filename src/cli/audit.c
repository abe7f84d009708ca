/*
 * audit.c (cli) - `wharf audit verify` and `wharf audit list`, and the
 * helpers the other verbs use to record what they did in the audit trail
 * (actor "cli").
 *
 * verify walks the whole trail and every checkpoint (audit_verify): exit 0
 * with "audit trail intact: N entries, M checkpoints", or exit 1 with the
 * first break as one line on stderr. list prints the newest entries in seq
 * order, a page at a time (memory does not grow with --limit), as a table
 * or as a JSON array. Both only read: they may run beside `wharf serve`.
 *
 * Owns nothing beyond a call. Must never: write to the trail except through
 * audit_append / audit_checkpoint, print a secret (entries hold none), or
 * print an entry's control characters raw in the table (a tampered row
 * could otherwise forge lines of output).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "core/flow.h"
#include "core/wharf.h"
#include "security/detectors.h"
#include "store/audit_store.h"
#include "store/store.h"
#include "util/id.h"

#define AUDIT_LIST_PAGE 256
#define AUDIT_LIST_DEFAULT 100
#define AUDIT_LIST_MAX 1000000

/* ---- recording CLI actions ------------------------------------------------ */

int cli_audit(struct wharf *w, struct store *st, const char *action,
              const char *target, const char *fmt, ...)
{
    char detail[1024];
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
    }
    struct audit_event e = { .actor = "cli", .action = action,
                             .target = target,
                             .detail = fmt != NULL ? detail : NULL };
    struct error err = {0};
    if (audit_append(st, w->vault, &e, &err) < 0)
        return cli_fail("%s was done, but its audit entry could not be "
                        "written: %s", action, err.msg);
    return EXIT_OK;
}

void cli_flow_sha256(struct store *st, char out[65])
{
    struct error err = {0};
    unsigned char md[32];
    unsigned int n = 0;
    char *text = flow_export(st, &err);
    snprintf(out, 65, "-");
    if (text != NULL &&
        EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL) == 1)
        for (unsigned i = 0; i < n && i < 32; i++)
            snprintf(out + 2 * i, 3, "%02x", md[i]);
    free(text);
}

/* ---- verify ----------------------------------------------------------------- */

static int audit_verify_cmd(struct wharf *w, struct store *st)
{
    struct audit_report r;
    struct error err = {0};
    int rc = audit_verify(st, w->vault, &r, &err);
    if (rc < 0)
        return cli_fail("cannot verify the audit trail: %s", err.msg);
    detect_audit_result(st, rc, &r);    /* a break is an alert (R19) */
    if (rc > 0)
        return cli_fail("audit trail broken: %s", r.problem);
    printf("audit trail intact: %" PRId64 " entries, %" PRId64
           " checkpoints\n", r.entries, r.checkpoints);
    return EXIT_OK;
}

/* ---- list ------------------------------------------------------------------- */

/* s with control characters replaced by '?', "-" for NULL, into buf. */
static const char *audit_clean(const char *s, char *buf, size_t n)
{
    if (s == NULL)
        return "-";
    snprintf(buf, n, "%s", s);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return buf;
}

static void audit_print_row(const struct store_audit_row *r)
{
    char t[32], a[128], b[64], c[64], d[256], e[1100];
    time_iso(r->at, t, sizeof(t));
    printf("%6" PRId64 "  %s  %-12s  %-15s  %-16s  %s  %s\n", r->seq, t,
           audit_clean(r->actor, a, sizeof(a)),
           audit_clean(r->address, b, sizeof(b)),
           audit_clean(r->action, c, sizeof(c)),
           audit_clean(r->target, d, sizeof(d)),
           audit_clean(r->detail, e, sizeof(e)));
}

static void audit_print_json(const struct store_audit_row *r, int first)
{
    char t[32];
    time_iso(r->at, t, sizeof(t));
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s?, s:s, s:s?, s:s?, s:s, "
                          "s:s}", "seq", (json_int_t)r->seq,
                          "at", (json_int_t)r->at, "time", t,
                          "actor", r->actor ? r->actor : "",
                          "address", r->address,
                          "action", r->action ? r->action : "",
                          "target", r->target, "detail", r->detail,
                          "prev_hash", r->prev_hash ? r->prev_hash : "",
                          "hash", r->hash ? r->hash : "");
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    printf("%s%s", first ? "" : ",\n", text ? text : "{}");
    free(text);
    json_decref(o);
}

static int audit_list_cmd(struct store *st, long limit, int json)
{
    struct error err = {0};
    int64_t head = 0, after, shown = 0;
    if (store_audit_head(st, &head, &err) < 0)
        return cli_fail("%s", err.msg);
    after = head > limit ? head - limit : 0;
    if (json)
        printf("[\n");
    else
        printf("%6s  %-24s  %-12s  %-15s  %-16s  %s  %s\n", "SEQ", "TIME",
               "ACTOR", "ADDRESS", "ACTION", "TARGET", "DETAIL");
    while (shown < limit) {
        struct store_audit_row *rows;
        size_t n;
        if (store_audit_list(st, after, AUDIT_LIST_PAGE, &rows, &n, &err) < 0)
            return cli_fail("%s", err.msg);
        for (size_t i = 0; i < n && shown < limit; i++, shown++) {
            if (json)
                audit_print_json(&rows[i], shown == 0);
            else
                audit_print_row(&rows[i]);
        }
        after = n > 0 ? rows[n - 1].seq : after;
        store_audit_rows_free(rows, n);
        if (n < AUDIT_LIST_PAGE)
            break;
    }
    if (json)
        printf("%s]\n", shown ? "\n" : "");
    return EXIT_OK;
}

/* ---- the verb --------------------------------------------------------------- */

static int audit_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--limit=", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_audit, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int verify = a.npos == 1 && !strcmp(a.pos[0], "verify");
    int list = a.npos == 1 && !strcmp(a.pos[0], "list");
    if (!verify && !list)
        return cli_usage(&cmd_audit, "expected 'verify' or 'list'");
    long limit = AUDIT_LIST_DEFAULT;
    if (a.values[1] != NULL) {
        char *end;
        errno = 0;
        limit = strtol(a.values[1], &end, 10);
        if (errno || *end || end == a.values[1] || limit < 1 ||
            limit > AUDIT_LIST_MAX)
            return cli_usage(&cmd_audit, "--limit must be 1..%d",
                             AUDIT_LIST_MAX);
    }
    if (verify && (a.flags[0] || a.values[1] != NULL))
        return cli_usage(&cmd_audit, "verify takes no --json or --limit");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = verify ? audit_verify_cmd(w, st)
                    : audit_list_cmd(st, limit, a.flags[0]);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_audit = {
    "audit", "verify or list the tamper-evident audit trail",
    "wharf audit verify [--data DIR]\n"
    "       wharf audit list [--data DIR] [--limit N] [--json]\n"
    "  verify checks every entry's hash and link and every signed checkpoint;\n"
    "  it exits 0 when the trail is intact, 1 naming the first entry where\n"
    "  it breaks. list prints the newest N entries (default 100), oldest\n"
    "  first.\n",
    audit_run,
};
