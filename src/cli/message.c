/*
 * message.c (cli) - `wharf send` and `wharf message list|show|resend`.
 * send runs the same intake a source runs: the file is stored (encrypted,
 * fsynced) and its hops committed before the command reports success.
 * show and resend take a whole id or a unique prefix of one (at least
 * MSG_PREFIX_MIN characters); an ambiguous prefix is refused, never
 * guessed. erase, hold, unhold and purge are the retention and erasure
 * verbs of security/retention.h (R9), audited with their counts.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/intake.h"
#include "core/message.h"
#include "core/wharf.h"
#include "security/retention.h"
#include "store/job_store.h"
#include "store/retention_store.h"
#include "store/store.h"
#include "util/id.h"

/* ---- send ------------------------------------------------------------------- */

/* The connectors that follow `name` in the stored flow; 1 if name is not a
 * connector. *next (and its strings) belong to f. */
static int flow_next_names(const struct store_flow *f, const char *name,
                           const char **next, size_t *n)
{
    int known = 0;
    *n = 0;
    for (size_t i = 0; i < f->nconns; i++)
        known |= !strcmp(f->conns[i].name, name);
    for (size_t i = 0; i < f->nlinks; i++)
        if (!strcmp(f->links[i].src, name))
            next[(*n)++] = f->links[i].dst;
    return known ? 0 : 1;
}

static int send_file(struct wharf *w, struct store *st, const char *conn,
                     const char *file)
{
    struct error err = {0};
    struct store_flow f;
    if (store_flow_get(st, &f, &err) < 0)
        return cli_fail("%s", err.msg);
    const char **next = calloc(f.nlinks + 1, sizeof(*next));
    size_t nnext = 0;
    int rc = EXIT_FAIL;
    if (next == NULL || flow_next_names(&f, conn, next, &nnext) != 0) {
        rc = cli_fail("no connector named '%s' (see wharf flow export)", conn);
        goto out;
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = cli_fail("cannot open %s: %s", file, strerror(errno));
        goto out;
    }
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    struct intake *in = intake_new(w, st, conn, next, nnext);
    if (in && intake_add_fd(in, fd, base, NULL, &err) == 0 &&
        intake_commit(in, &err) == 0) {
        printf("%s\n", intake_id(in, 0));
        rc = EXIT_OK;
    } else {
        rc = cli_fail("%s", in ? err.msg : "out of memory");
    }
    close(fd);
    intake_free(in);
out:
    free(next);
    store_flow_clear(&f);
    return rc;
}

static int send_run(int argc, char **argv)
{
    struct cli_args a;
    int p = cli_parse(&cmd_send, argc, argv, NULL, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos != 2)
        return cli_usage(&cmd_send, "expected CONNECTOR FILE");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = send_file(w, st, a.pos[0], a.pos[1]);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_send = {
    "send", "put a file into a flow as if a connector had received it",
    "wharf send [--data DIR] CONNECTOR FILE\n"
    "  Stores FILE (encrypted, durably) as a message received by CONNECTOR\n"
    "  and queues it for the connectors linked after it. Prints its id.\n",
    send_run,
};

/* ---- message ------------------------------------------------------------------ */

#define MSG_PREFIX_MIN 6

/* The whole id that arg names: arg itself when it is a whole id, else the
 * one message whose id starts with it. EXIT_OK, or the exit code after
 * printing why not. */
static int resolve_id(struct store *st, const char *arg, char id[ID_LEN + 1])
{
    if (id_valid(arg)) {
        memcpy(id, arg, ID_LEN + 1);
        return EXIT_OK;
    }
    char prefix[ID_LEN + 1];
    size_t n = strlen(arg);
    if (n < MSG_PREFIX_MIN || n > ID_LEN)
        return cli_usage(&cmd_message, "ID must be a message id or its first "
                         "%d or more characters", MSG_PREFIX_MIN);
    for (size_t i = 0; i <= n; i++) {
        char c = arg[i] >= 'A' && arg[i] <= 'F' ? (char)(arg[i] + 32) : arg[i];
        if (c != '\0' && c != '-' && !(c >= '0' && c <= '9') &&
            !(c >= 'a' && c <= 'f'))
            return cli_usage(&cmd_message, "ID must be a message id or its "
                             "first characters (hex digits and '-')");
        prefix[i] = c;
    }
    struct error err = {0};
    int64_t count = 0;
    if (store_message_prefix(st, prefix, id, &count, &err) < 0)
        return cli_fail("%s", err.msg);
    if (count == 0)
        return cli_fail("no message id starts with %s (see `wharf message "
                        "list`)", prefix);
    if (count > 1)
        return cli_fail("%lld messages have ids starting with %s: give more "
                        "characters of the id", (long long)count, prefix);
    return EXIT_OK;
}

static int list_cmd(struct store *st, const char *state, int json, long limit)
{
    struct error err = {0};
    struct store_message *ms;
    size_t n;
    if (store_message_list(st, state, limit, 0, &ms, &n, &err) < 0)
        return cli_fail("%s", err.msg);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, message_json(&ms[i]));
        char *t = json_dumps(arr, JSON_INDENT(2));
        printf("%s\n", t ? t : "[]");
        free(t);
        json_decref(arr);
    } else {
        printf("%-36s  %-10s  %-16s  %10s  %s\n", "ID", "STATE", "SOURCE",
               "SIZE", "FILENAME");
        for (size_t i = 0; i < n; i++)
            printf("%-36s  %-10s  %-16s  %10lld  %s\n", ms[i].id, ms[i].state,
                   ms[i].source, (long long)ms[i].size,
                   ms[i].filename ? ms[i].filename : "-");
    }
    store_messages_free(ms, n);
    return EXIT_OK;
}

static void detail_text(const struct store_message *m,
                        const struct store_hop *h, size_t nh,
                        const struct store_job *j, size_t nj,
                        const struct store_event *e, size_t ne)
{
    char t[32];
    time_iso(m->created_at, t, sizeof(t));
    printf("id:       %s\nstate:    %s\nsource:   %s\nfilename: %s\n"
           "size:     %lld\nsha256:   %s\ncreated:  %s\n\nhops:\n", m->id,
           m->state, m->source, m->filename ? m->filename : "-",
           (long long)m->size, m->sha256 ? m->sha256 : "-", t);
    for (size_t i = 0; i < nh; i++)
        printf("  %-16s %-10s attempts=%d%s%s\n", h[i].connector, h[i].state,
               h[i].attempts, h[i].last_error ? " error: " : "",
               h[i].last_error ? h[i].last_error : "");
    if (nj > 0)
        printf("\njobs:\n");
    for (size_t i = 0; i < nj; i++)
        printf("  %-16s %-16s %-10s attempts=%d%s%s\n", j[i].connector,
               j[i].kind, j[i].state, j[i].attempts,
               j[i].last_error ? " error: " : "",
               j[i].last_error ? j[i].last_error : "");
    printf("\nevents:\n");
    for (size_t i = 0; i < ne; i++) {
        time_iso(e[i].at, t, sizeof(t));
        printf("  %s %-7s %s\n", t, e[i].level, e[i].text);
    }
}

/* The legal hold on message id, if any (R9). */
static void hold_text(struct store *st, const char *id)
{
    struct error err = {0};
    struct store_hold hd;
    char t[32];
    if (store_hold_get(st, id, &hd, &err) != 0)
        return;
    time_iso(hd.at, t, sizeof(t));
    printf("\nlegal hold: since %s by %s%s%s (kept from purges and "
           "erasure)\n", t, hd.actor ? hd.actor : "-", hd.reason ? ": " : "",
           hd.reason ? hd.reason : "");
    store_hold_clear(&hd);
}

static int show_cmd(struct store *st, const char *arg, int json)
{
    struct error err = {0};
    struct store_message m;
    char id[ID_LEN + 1];
    int rc = resolve_id(st, arg, id);
    if (rc != EXIT_OK)
        return rc;
    int found = store_message_get(st, id, &m, &err);
    if (found != 0)
        return cli_fail("%s", found < 0 ? err.msg : "no such message (see `wharf message list`)");
    if (json) {
        json_t *o = message_detail_json(st, &m, &err);
        char *t = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        if (o == NULL)
            rc = cli_fail("%s", err.msg);
        else
            printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else {
        struct store_hop *h = NULL;
        struct store_job *j = NULL;
        struct store_event *e = NULL;
        size_t nh = 0, nj = 0, ne = 0;
        if (store_message_hops(st, id, &h, &nh, &err) < 0 ||
            store_message_jobs(st, id, &j, &nj, &err) < 0 ||
            store_message_events(st, id, &e, &ne, &err) < 0)
            rc = cli_fail("%s", err.msg);
        else
            detail_text(&m, h, nh, j, nj, e, ne);
        if (rc == EXIT_OK)
            hold_text(st, id);
        store_hops_free(h, nh);
        store_jobs_free(j, nj);
        store_events_free(e, ne);
    }
    store_message_clear(&m);
    return rc;
}

static int resend_cmd(struct wharf *w, struct store *st, const char *arg)
{
    struct error err = {0};
    int n = 0, jobs = 0;
    char id[ID_LEN + 1], more[64] = "";
    int rc = resolve_id(st, arg, id);
    if (rc != EXIT_OK)
        return rc;
    rc = message_resend(st, id, "cli", &n, &jobs, &err);
    if (rc != 0)
        return cli_fail("%s", rc == 1 ? "no such message" : err.msg);
    if (jobs > 0)
        snprintf(more, sizeof(more), " and %d job(s)", jobs);
    printf("requeued %d hop(s)%s of message %s\n", n, more, id);
    return cli_audit(w, st, "message.resend", id, "requeued %d hop(s)%s", n,
                     more);
}

/* ---- retention and erasure (R9) ------------------------------------------------ */

static int erase_cmd(struct wharf *w, struct store *st, const char *arg)
{
    struct error err = {0};
    char id[ID_LEN + 1];
    int64_t bytes = 0;
    int rc = resolve_id(st, arg, id);
    if (rc != EXIT_OK)
        return rc;
    rc = retention_erase(w, st, id, "cli", &bytes, &err);
    if (rc == 1)
        return cli_fail("no such message");
    if (rc != 0)
        return cli_fail("%s", err.msg);
    printf("erased message %s (%lld payload bytes shredded)\n", id,
           (long long)bytes);
    return cli_audit(w, st, "message.erase", id, "bytes=%lld",
                     (long long)bytes);
}

static int hold_cmd(struct wharf *w, struct store *st, const char *arg,
                    int hold, const char *reason)
{
    struct error err = {0};
    char id[ID_LEN + 1];
    int rc = resolve_id(st, arg, id);
    if (rc != EXIT_OK)
        return rc;
    rc = hold ? retention_hold(st, id, "cli", reason, &err)
              : retention_unhold(st, id, &err);
    if (rc < 0)
        return cli_fail("%s", err.msg);
    if (rc == 1)
        return cli_fail(hold ? "no such message" : "message %s is not under "
                        "a legal hold", id);
    if (rc == 2) {
        printf("message %s is already under a legal hold\n", id);
        return EXIT_OK;
    }
    printf("%s message %s\n", hold ? "legal hold placed on" : "legal hold "
           "lifted from", id);
    return hold ? cli_audit(w, st, "message.hold", id, "%s", reason ? reason
                            : "-")
                : cli_audit(w, st, "message.unhold", id, NULL);
}

/* The counts of a purge, as text or JSON. */
static void purge_print(const struct retention_result *r, int dry, int json)
{
    if (json) {
        json_t *o = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I}",
                              "dry_run", dry, "messages",
                              (json_int_t)r->messages, "bytes",
                              (json_int_t)r->bytes, "held", (json_int_t)r->held,
                              "shredded", (json_int_t)r->shredded, "failed",
                              (json_int_t)r->failed, "resumed",
                              (json_int_t)r->resumed);
        char *t = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
        return;
    }
    printf("%s %lld message(s), %lld payload bytes; %lld kept under a legal "
           "hold", dry ? "would purge" : "purged", (long long)r->messages,
           (long long)r->bytes, (long long)r->held);
    if (!dry)
        printf("; %lld payload file(s) shredded", (long long)r->shredded);
    printf("\n");
}

static int purge_cmd(struct wharf *w, struct store *st, const char *before,
                     int dry, int json)
{
    struct error err = {0};
    struct retention_plan p = { .default_days = w->conf.retention_days,
                                .dry_run = dry, .now = time_now_ms() };
    struct retention_result r;
    char detail[256];
    if (before && retention_parse_date(before, &p.before, &err) < 0)
        return cli_usage(&cmd_message, "--before: %s", err.msg);
    int rc = retention_purge(w, st, &p, &r, &err);
    if (rc == 0)
        purge_print(&r, dry, json);
    if (dry)
        return rc == 0 ? EXIT_OK : cli_fail("%s", err.msg);
    retention_detail(&p, &r, rc == 0, detail, sizeof(detail));
    int arc = cli_audit(w, st, "retention.purge", "messages", "%s", detail);
    if (rc != 0)
        return cli_fail("%s", err.msg);
    if (r.failed)
        return cli_fail("%lld payload file(s) could not be shredded (the log "
                        "says why; the next purge tries again)",
                        (long long)r.failed);
    return arc;
}

static int message_dispatch(const struct cli_args *a)
{
    const char *verb = a->pos[0];
    struct wharf *w;
    struct store *st;
    long limit = 100;
    if (a->values[2]) {
        char *end;
        limit = strtol(a->values[2], &end, 10);
        if (*end || limit < 1 || limit > 1000000)
            return cli_usage(&cmd_message, "--limit must be 1..1000000");
    }
    if (a->values[1] != NULL && !store_message_state_known(a->values[1]))
        return cli_usage(&cmd_message, "unknown state '%s'", a->values[1]);
    int single = !strcmp(verb, "list") || !strcmp(verb, "purge");
    if (single ? a->npos != 1 : a->npos != 2)
        return cli_usage(&cmd_message, "wrong number of arguments");
    if (cli_open(a->data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc;
    if (!strcmp(verb, "list"))
        rc = list_cmd(st, a->values[1], a->flags[0], limit);
    else if (!strcmp(verb, "show"))
        rc = show_cmd(st, a->pos[1], a->flags[0]);
    else if (!strcmp(verb, "erase"))
        rc = erase_cmd(w, st, a->pos[1]);
    else if (!strcmp(verb, "hold") || !strcmp(verb, "unhold"))
        rc = hold_cmd(w, st, a->pos[1], !strcmp(verb, "hold"), a->values[5]);
    else if (!strcmp(verb, "purge"))
        rc = purge_cmd(w, st, a->values[3], a->flags[4], a->flags[0]);
    else
        rc = resend_cmd(w, st, a->pos[1]);
    cli_close(w, st);
    return rc;
}

static int message_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--state=", "--limit=",
                                        "--before=", "--dry-run", "--reason=",
                                        NULL };
    static const char *const verbs[] = { "list", "show", "resend", "erase",
                                         "hold", "unhold", "purge", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_message, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int known = 0;
    for (int i = 0; a.npos >= 1 && verbs[i]; i++)
        known |= !strcmp(a.pos[0], verbs[i]);
    if (!known)
        return cli_usage(&cmd_message, "expected list, show ID, resend ID, "
                         "erase ID, hold ID, unhold ID or purge");
    if ((a.values[3] || a.flags[4]) && strcmp(a.pos[0], "purge"))
        return cli_usage(&cmd_message, "--before and --dry-run are options "
                         "of purge");
    if (a.values[5] && strcmp(a.pos[0], "hold"))
        return cli_usage(&cmd_message, "--reason is an option of hold");
    return message_dispatch(&a);
}

const struct cli_cmd cmd_message = {
    "message", "list, show, resend, erase, hold and purge messages",
    "wharf message list [--data DIR] [--state S] [--limit N] [--json]\n"
    "       wharf message show [--data DIR] [--json] ID\n"
    "       wharf message resend [--data DIR] ID\n"
    "       wharf message erase [--data DIR] ID\n"
    "       wharf message hold [--data DIR] [--reason TEXT] ID\n"
    "       wharf message unhold [--data DIR] ID\n"
    "       wharf message purge [--data DIR] [--before DATE] [--dry-run]\n"
    "                           [--json]\n"
    "  S: queued, processing, retrying, sent, failed, received, refused,\n"
    "  erased. ID: a message id, or its first 6 or more characters when\n"
    "  no other message id starts with them.\n"
    "  erase: shred the payload (its key is destroyed), keep the record.\n"
    "  hold/unhold: a legal hold keeps a message from purges and erasure.\n"
    "  purge: delete finished messages (payload shredded, rows deleted)\n"
    "  older than their connector's retention_days (else wharf.conf's), or\n"
    "  with --before, every finished message created before DATE\n"
    "  (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC). Held messages stay.\n"
    "  --dry-run counts and changes nothing. All but --dry-run are audited.\n",
    message_run,
};
