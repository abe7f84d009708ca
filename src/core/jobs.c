/*
 * jobs.c - durable jobs of messages (connectors/env.h, "jobs"): the
 * environment's functions that add, cancel and feed them (sealing their
 * data and input with the vault: contexts "job:ID:data", "job:ID:input";
 * or, for a kind whose type says in_clear, keeping them in the clear
 * behind JOBS_CLEAR_TAG) and the runner the engine's workers call
 * (core/jobs.h).
 *
 * A run: the job is leased (never while its hop is being delivered), its
 * data and input unsealed, its kind's handler called with the connector
 * of the current flow generation; then, in one transaction, the job's new
 * state (done, queued again after the kind's backoff, waiting, failed or
 * expired), an event in the message's history, and, when the handler says
 * so, the outcome of the hop that waits for it (sent; or a failed attempt
 * of the hop, by the connector's own retry policy). A lease of a process
 * that died expires (serve releases them all at start), so the job runs
 * again.
 *
 * Owns nothing beyond a call. Must never: log or put into an event a byte
 * of a job's data or input; run a job while its hop is being delivered.
 */
#include "core/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/connector.h"
#include "core/env.h"
#include "core/env_internal.h"
#include "core/flow.h"
#include "core/wharf.h"
#include "security/alerts.h"
#include "store/job_store.h"
#include "store/store.h"
#include "util/fanout.h"
#include "util/log.h"
#include "util/secret.h"
#include "vault/vault.h"

#define JOB_MIN_WAIT_MS 100         /* WH_AGAIN: not sooner than this */
#define JOB_MISSING_MS 60000        /* its connector is not there: again in */

static void job_context(char *out, size_t n, const char *id, const char *what)
{
    snprintf(out, n, "job:%s:%s", id, what);
}

int jobs_value_clear(const unsigned char *blob, size_t len)
{
    return blob != NULL && len >= JOBS_CLEAR_LEN &&
           memcmp(blob, JOBS_CLEAR_TAG, JOBS_CLEAR_LEN) == 0;
}

/* Seal v for job id's `what` (clear: keep it in the clear, tagged):
 * *blob malloc'ed (NULL when v is NULL). */
static int job_seal(struct env_full *e, const char *id, const char *what,
                    const struct secret *v, int clear, unsigned char **blob,
                    size_t *len, struct error *err)
{
    char ctx[96];
    *blob = NULL;
    *len = 0;
    if (v == NULL)
        return 0;
    if (clear) {
        size_t n = secret_len(v);
        if ((*blob = malloc(JOBS_CLEAR_LEN + n)) == NULL)
            return error_set(err, "out of memory keeping a job's %s", what);
        memcpy(*blob, JOBS_CLEAR_TAG, JOBS_CLEAR_LEN);
        memcpy(*blob + JOBS_CLEAR_LEN, secret_data(v), n);
        *len = JOBS_CLEAR_LEN + n;
        return 0;
    }
    job_context(ctx, sizeof(ctx), id, what);
    return vault_seal(e->w->vault, ctx, v, blob, len, err);
}

static void jobs_wake(struct conn_jobs *j)
{
    if (j->wake)
        j->wake(j->wake_ud);
}

int conn_job_prepare(struct conn_jobs *j, const struct conn_job_new *n,
                     struct conn_job_ready *s, struct error *err)
{
    memset(s, 0, sizeof(*s));
    s->jobs = j;
    s->n = *n;
    s->n.data = NULL;
    id_new(s->id);
    return job_seal(j->e, s->id, "data", n->data, n->in_clear, &s->data,
                    &s->data_len, err);
}

void conn_job_ready_row(const struct conn_job_ready *s,
                        struct store_job_new *row)
{
    *row = (struct store_job_new){ .id = s->id,
        .message_id = s->n.message_id, .hop_id = s->n.hop_id,
        .connector = s->n.conn, .kind = s->n.kind, .waiting = s->n.waiting,
        .window_ms = s->n.give_up_ms, .data = s->data,
        .data_len = s->data_len, .level = "info", .text = s->n.note };
}

void conn_job_ready_added(const struct conn_job_ready *s)
{
    if (!s->n.waiting)
        jobs_wake(s->jobs);
}

int conn_job_add_ready(const struct conn_job_ready *s, struct error *err)
{
    struct store_job_new row;
    conn_job_ready_row(s, &row);
    struct store *st = wharf_store(s->jobs->e->w, err);
    int rc = st ? store_job_add(st, &row, err) : -1;
    if (rc == 0)
        conn_job_ready_added(s);
    return rc;
}

void conn_job_ready_clear(struct conn_job_ready *s)
{
    free(s->data);
    memset(s, 0, sizeof(*s));
}

int conn_job_add(struct conn_jobs *j, const struct conn_job_new *n,
                 struct error *err)
{
    struct conn_job_ready s;
    int rc = conn_job_prepare(j, n, &s, err);
    if (rc == 0)
        rc = conn_job_add_ready(&s, err);
    conn_job_ready_clear(&s);
    return rc;
}

int conn_job_active(struct conn_jobs *j, const char *conn, const char *msgid,
                    const char *kind, struct error *err)
{
    struct store *st = wharf_store(j->e->w, err);
    return st ? store_job_active(st, msgid, conn, kind, NULL, err) : -1;
}

int conn_job_cancel(struct conn_jobs *j, const char *conn, const char *msgid,
                    const char *kind, struct error *err)
{
    struct store *st = wharf_store(j->e->w, err);
    return st ? store_job_cancel(st, msgid, conn, kind, err) : -1;
}

int conn_job_input(struct conn_jobs *j, const char *conn, const char *msgid,
                   const char *kind, const struct secret *input, int in_clear,
                   struct error *err)
{
    char id[ID_LEN + 1];
    unsigned char *blob = NULL;
    size_t len = 0;
    struct store *st = wharf_store(j->e->w, err);
    int rc = st ? store_job_active(st, msgid, conn, kind, id, err) : -1;
    if (rc == 1 && job_seal(j->e, id, "input", input, in_clear, &blob, &len,
                            err) < 0)
        rc = -1;
    if (rc == 1)
        rc = store_job_input(st, id, blob, len, err);
    free(blob);
    if (rc == 1)
        jobs_wake(j);
    return rc;
}

/* ---- the runner ----------------------------------------------------------------- */

/* One leased job and what became of it. */
struct run {
    const struct flow *f;
    struct store_job *row;
    struct connector *c;
    const struct conn_job_type *type;
    struct secret *data, *input;
    struct conn_job job;
    enum wh_status st;
    /* outcome */
    struct store_job_outcome out;
    struct store_outcome hop;
    const char **next;
    char text[ERROR_MSG_MAX + 700];
    char hop_error[ERROR_MSG_MAX + 64];
};

/* Open a job's value: unsealed, or, when its kind keeps its values in
 * the clear (type->in_clear), as kept. A value in the clear is refused
 * for a kind that seals them: it was not written by Wharf. */
static struct secret *job_unseal(const struct flow *f,
                                 const struct conn_job_type *type,
                                 const char *id, const char *what,
                                 const unsigned char *blob, size_t len,
                                 struct error *err)
{
    char ctx[96];
    if (blob == NULL)
        return NULL;
    if (jobs_value_clear(blob, len) && !type->in_clear) {
        error_set(err, "its %s is in the clear, but jobs of kind %s keep "
                  "theirs sealed (refused)", what, type->kind);
        return NULL;
    }
    if (jobs_value_clear(blob, len)) {
        struct secret *s = secret_from(blob + JOBS_CLEAR_LEN,
                                       len - JOBS_CLEAR_LEN);
        if (s == NULL)
            error_set(err, "out of memory");
        return s;
    }
    job_context(ctx, sizeof(ctx), id, what);
    return vault_unseal(conn_env_wharf(f->env)->vault, ctx, blob, len, err);
}

/* Find the connector and kind, open the data: 0, or -1 with r->st and
 * r->job.err set (the job is not run). */
static int run_prepare(struct run *r)
{
    struct store_job *row = r->row;
    struct error *err = &r->job.err;
    r->c = flow_find(r->f, row->connector);
    if (r->c == NULL) {
        r->st = WH_RETRY;
        return error_set(err, "connector '%s' is not configured (or failed "
                         "to open; see the log)", row->connector);
    }
    if ((r->type = connector_job_type(r->c->type, row->kind)) == NULL) {
        r->st = WH_FAIL;
        return error_set(err, "connector '%s' (%s) has no job kind '%s'",
                         row->connector, r->c->type->name, row->kind);
    }
    r->data = job_unseal(r->f, r->type, row->id, "data", row->data,
                         row->data_len, err);
    r->input = row->data && r->data == NULL ? NULL
             : job_unseal(r->f, r->type, row->id, "input", row->input,
                          row->input_len, err);
    if ((row->data && r->data == NULL) || (row->input && r->input == NULL)) {
        r->st = WH_RETRY;
        return error_prefix(err, "job %s cannot be read", row->id), -1;
    }
    return 0;
}

static void run_call(struct run *r)
{
    struct store_job *row = r->row;
    struct conn_job *j = &r->job;
    j->id = row->id;
    j->message_id = row->message_id;
    j->hop_id = row->hop_id;
    j->kind = row->kind;
    j->attempts = row->attempts;
    j->waits = row->waits;
    j->created_at = row->created_at;
    j->give_up_at = row->give_up_at;
    if (run_prepare(r) < 0)
        return;
    j->data = r->data;
    j->input = r->input;
    r->st = r->type->run(r->c, j);
    if (r->st != WH_OK && r->st != WH_RETRY && r->st != WH_FAIL &&
        !(r->st == WH_AGAIN && j->again_at > 0)) {
        r->st = WH_RETRY;
        if (j->err.msg[0] == '\0')
            error_set(&j->err, "the handler of %s did not finish",
                      row->kind);
    }
}

static const struct retry_policy *run_policy(const struct run *r)
{
    static const struct retry_policy def = { 10, 1000, 600000 };
    return r->type ? &r->type->retry : &def;
}

/* The outcome of the job's hop (CONN_JOB_HOP_*), by the connector's own
 * retry policy for a failed attempt. */
static void run_hop(struct run *r)
{
    const struct conn_job *j = &r->job;
    struct store_outcome *o = &r->hop;
    if (j->hop == CONN_JOB_HOP_NONE || r->row->hop_id <= 0 || r->c == NULL)
        return;
    o->hop_id = r->row->hop_id;
    o->message_id = r->row->message_id;
    o->connector = r->row->connector;
    o->attempts = r->row->hop_attempts + (j->hop == CONN_JOB_HOP_SENT ? 0
                                                                      : 1);
    if (j->hop == CONN_JOB_HOP_SENT) {
        o->result = HOP_SENT;
        o->receipt = j->receipt[0] ? j->receipt : NULL;
        o->nnext = r->c->type->ends_path ? 0
                 : flow_next(r->f, r->row->connector, &r->next);
        o->next = r->next;
    } else {
        snprintf(r->hop_error, sizeof(r->hop_error), "%s", j->err.msg[0]
                 ? j->err.msg : "the job gave no reason");
        o->error = r->hop_error;
        o->result = j->hop == CONN_JOB_HOP_RETRY &&
                    o->attempts < r->c->retry.max_attempts
                    ? HOP_RETRY : HOP_FAILED;
    }
    r->out.hop = o;
}

static void hop_backoff(struct run *r, unsigned *seed)
{
    struct store_outcome *o = &r->hop;
    if (o->result == HOP_RETRY) {
        o->next_at = time_now_ms() + engine_backoff_ms(r->c->retry.initial_ms,
                     r->c->retry.max_ms, o->attempts, (unsigned)rand_r(seed));
    } else if (o->result == HOP_FAILED && r->job.hop == CONN_JOB_HOP_RETRY) {
        snprintf(r->hop_error, sizeof(r->hop_error), "%s (gave up after %d "
                 "attempts)", r->job.err.msg, o->attempts);
    }
}

/* Given up: failed, or expired when the hop takes the outcome. */
static void run_give_up(struct run *r, const char *why)
{
    struct store_job_outcome *o = &r->out;
    o->state = r->job.hop != CONN_JOB_HOP_NONE ? "expired" : "failed";
    o->level = r->job.hop != CONN_JOB_HOP_NONE ? "warning" : "error";
    snprintf(r->text, sizeof(r->text), "job %s %s: %s", r->row->kind, why,
             o->error);
}

static void run_outcome(struct run *r, unsigned *seed)
{
    struct store_job_outcome *o = &r->out;
    struct conn_job *j = &r->job;
    const struct retry_policy *rp = run_policy(r);
    int64_t now = time_now_ms();
    o->id = r->row->id;
    o->message_id = r->row->message_id;
    o->hop_id = r->row->hop_id;
    o->attempts = r->row->attempts;
    o->waits = r->row->waits;
    o->due_at = now;
    o->text = r->text;
    o->level = "info";
    o->kept = conn_held_row(j->held);       /* recorded with the outcome */
    if (r->st == WH_OK) {
        o->state = "done";
        snprintf(r->text, sizeof(r->text), "job %s done: %s", r->row->kind,
                 j->note[0] ? j->note : j->receipt[0] ? j->receipt : "done");
    } else if (r->st == WH_AGAIN) {
        o->state = "waiting";
        o->waits++;
        o->due_at = j->again_at > now + JOB_MIN_WAIT_MS ? j->again_at
                                                        : now + JOB_MIN_WAIT_MS;
        o->level = j->note_level ? j->note_level : "info";
        o->text = j->note[0] ? j->note : NULL;
    } else {
        o->error = j->err.msg[0] ? j->err.msg : "the job gave no reason";
        o->attempts += r->c ? 1 : 0;        /* a missing connector is not
                                               the job's attempt */
        int spent = rp->max_attempts > 0 && o->attempts >= rp->max_attempts;
        int late = r->row->give_up_at > 0 && now >= r->row->give_up_at;
        if (r->st == WH_FAIL) {
            run_give_up(r, "failed");
        } else if (spent || late) {
            char why[64];
            snprintf(why, sizeof(why), "given up after %d attempt(s)",
                     o->attempts);
            run_give_up(r, why);
        } else {
            o->state = "queued";
            o->level = "warning";
            o->due_at = now + (r->c ? engine_backoff_ms(rp->initial_ms,
                               rp->max_ms, o->attempts, (unsigned)rand_r(seed))
                               : JOB_MISSING_MS);
            snprintf(r->text, sizeof(r->text), "job %s attempt %d failed, "
                     "again in %lld s: %s", r->row->kind, o->attempts,
                     (long long)((o->due_at - now + 999) / 1000), o->error);
        }
    }
    run_hop(r);
    if (o->hop)
        hop_backoff(r, seed);
}

static void run_log(const struct run *r, int settled)
{
    const struct store_job_outcome *o = &r->out;
    int lvl = r->c ? r->c->log_level : -1;
    const char *name = r->row->connector, *msg = r->row->message_id;
    if (!strcmp(o->state, "done"))
        log_write(LOG_INFO, lvl, name, msg, "%s", r->text);
    else if (!strcmp(o->state, "waiting"))
        log_write(LOG_DEBUG, lvl, name, msg, "job %s waits (%lld ms)",
                  r->row->kind, (long long)(o->due_at - time_now_ms()));
    else if (!strcmp(o->state, "queued"))
        log_write(LOG_WARNING, lvl, name, msg, "%s", r->text);
    else
        log_write(!strcmp(o->state, "failed") ? LOG_ERROR : LOG_WARNING, lvl,
                  name, msg, "%s%s", !strcmp(o->state, "failed") ? "ALERT: "
                  : "", r->text);
    const struct store_outcome *h = settled ? o->hop : NULL;
    if (h && h->result == HOP_SENT)
        log_write(LOG_INFO, lvl, name, msg, "delivered (attempt %d)%s%s",
                  h->attempts, h->receipt ? ": " : "",
                  h->receipt ? h->receipt : "");
    else if (h && h->result == HOP_RETRY)
        log_write(LOG_WARNING, lvl, name, msg, "attempt %d failed, retry in "
                  "%lld ms: %s", h->attempts,
                  (long long)(h->next_at - time_now_ms()), h->error);
    else if (h)
        log_write(LOG_ERROR, lvl, name, msg, "failed: %s", h->error);
}

/* Logged; a job given up raises its type's alert (R19) through st, whose
 * transaction store_job_finish(_all) has ended. */
static void run_report(const struct run *r, int settled, struct store *st)
{
    const char *state = r->out.state;
    run_log(r, settled);
    if (r->type == NULL || r->type->alert_given_up == NULL ||
        (strcmp(state, "failed") && strcmp(state, "expired")))
        return;
    alert_raise_st(st, r->type->alert_given_up, r->row->connector,
                   ALERT_WARNING, r->text, r->row->message_id);
}

/* One job's outcome committed alone: what a batch falls back to when its
 * one transaction fails. */
static void run_commit_one(struct run *r, struct store *st)
{
    struct error err = {0};
    int skipped = 0, settled = 0;
    if (store_job_finish(st, &r->out, &skipped, &settled, &err) < 0)
        log_error("job %s of message %s: cannot commit its outcome (it runs "
                  "again when its lease expires): %s", r->row->id,
                  r->row->message_id, err.msg);
    else if (skipped)
        log_warn("job %s of message %s had lost its lease; outcome not "
                 "recorded, it runs again", r->row->id, r->row->message_id);
    else
        run_report(r, settled, st);
}

/* The outcomes of runs r[0..n) in one transaction (one sync for the
 * batch); one by one if that fails. */
static void runs_commit(struct run *r, size_t n, struct store *st)
{
    struct error err = {0};
    struct store_job_outcome *outs = calloc(n, sizeof(*outs));
    int *flags = calloc(2 * n, sizeof(int));
    int rc = outs && flags ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++)
        outs[i] = r[i].out;
    if (rc == 0)
        rc = store_job_finish_all(st, outs, n, flags, flags + n, &err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (flags[i])
            log_warn("job %s of message %s had lost its lease; outcome not "
                     "recorded, it runs again", r[i].row->id,
                     r[i].row->message_id);
        else
            run_report(&r[i], flags[n + i], st);
    }
    if (rc < 0 && n > 1)
        log_warn("the outcomes of %zu jobs are committed one by one: %s", n,
                 err.msg[0] ? err.msg : "out of memory");
    for (size_t i = 0; rc < 0 && i < n; i++)
        run_commit_one(&r[i], st);
    free(outs);
    free(flags);
}

/* Jobs at once: the largest concurrency of their connectors. */
static size_t runs_width(const struct flow *f, const struct store_job *rows,
                         size_t n)
{
    size_t w = 1;
    for (size_t i = 0; i < n; i++) {
        const struct connector *c = flow_find(f, rows[i].connector);
        if (c != NULL && c->concurrency > 0 && (size_t)c->concurrency > w)
            w = (size_t)c->concurrency;
    }
    return w;
}

static void run_call_at(void *ctx, size_t i)
{
    run_call(&((struct run *)ctx)[i]);
}

static int job_by_message(const void *a, const void *b)
{
    return strcmp(((const struct store_job *)a)->message_id,
                  ((const struct store_job *)b)->message_id);
}

/* The handlers of rows[0..n) run side by side (an AS2 connector's MDNs
 * are POSTs that wait for the partner); then every outcome is computed
 * here and committed together. Rows are taken in message order, the order
 * in which the commit locks their messages (PostgreSQL). */
static void runs_do(const struct flow *f, struct store *st, const char *owner,
                    struct store_job *rows, size_t n, unsigned *seed)
{
    struct run *r = calloc(n, sizeof(*r));
    if (r == NULL) {
        log_error("%s: out of memory for %zu jobs (they run again when "
                  "their lease expires)", owner, n);
        return;
    }
    qsort(rows, n, sizeof(*rows), job_by_message);
    for (size_t i = 0; i < n; i++) {
        r[i].f = f;
        r[i].row = &rows[i];
    }
    fanout_run(n, runs_width(f, rows, n), run_call_at, r);
    for (size_t i = 0; i < n; i++) {
        run_outcome(&r[i], seed);
        r[i].out.owner = owner;
    }
    runs_commit(r, n, st);
    for (size_t i = 0; i < n; i++) {
        secret_free(r[i].data);
        secret_free(r[i].input);
        free(r[i].next);
        conn_held_free(r[i].job.held);
    }
    free(r);
}

size_t jobs_run(const struct flow *f, struct store *st, const char *owner,
                int64_t lease_ms, size_t max, unsigned *seed)
{
    struct error err = {0};
    struct store_job *rows = NULL;
    size_t n = 0;
    if (store_job_lease(st, owner, time_now_ms(), lease_ms, max, &rows, &n,
                        &err) < 0) {
        log_error("%s: cannot lease jobs: %s", owner, err.msg);
        return 0;
    }
    if (n > 0)
        runs_do(f, st, owner, rows, n, seed);
    store_jobs_free(rows, n);
    return n;
}
