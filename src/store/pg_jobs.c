/*
 * pg_jobs.c - the PostgreSQL statements of job_store.h: durable jobs of
 * messages (table jobs of PG_MIGRATIONS 1 in pg.c), beside sqlite_jobs.c.
 * The job halves of store_leases_renew / store_leases_release and
 * store_message_resend are pg.c's, not this file's.
 *
 * Owns statement slots 224..287 of pg_internal.h and nothing else.
 *
 * How it keeps several nodes sharing one database right:
 *   - store_job_lease takes due jobs with SELECT ... FOR UPDATE OF j SKIP
 *     LOCKED: two nodes leasing at once never take the same job and never
 *     wait for each other; the rows it returns are then marked processing
 *     in the same transaction.
 *   - store_job_add and store_job_finish lock the job's message row first
 *     (SELECT ... FOR UPDATE), as pg.c does before it recomputes a
 *     message's state: two adds of one message, connector and kind take
 *     turns (the second replaces the first instead of running into the
 *     jobs_active unique index), and a job's outcome handed to its waiting
 *     hop recomputes the message's state from a view no other node is
 *     changing (pg.c's store_hop_finish locks the same row).
 *   - Settling a waiting hop (job_store.h: the hop takes the job's outcome
 *     while it is retrying) is done here, with pg.c's rules for a hop's
 *     outcome (event, next hops, message state) copied, since sqlite.c's
 *     store_hop_settle works on SQLite only.
 *
 * Stores and returns sealed blobs as given: must never see plaintext
 * (sealing is core/jobs.c's), build SQL from data, or hold a transaction
 * across calls.
 */
#include "store/pg_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "store/pg_partners.h"

enum {
    JB_BASE = 224,
    JB_DROP_ACTIVE = JB_BASE, JB_INSERT, JB_ACTIVE, JB_CANCEL,
    JB_INPUT, JB_DUE, JB_TAKE, JB_SET, JB_OF_MSG, JB_COUNTS, JB_EVENT,
    JB_LAST
};
_Static_assert(JB_LAST <= 288, "pg_jobs.c owns statement slots 224..287");

#define ACTIVE "('queued', 'waiting', 'processing')"
#define COLS "j.id, j.message_id, j.hop_id, j.connector, j.kind, j.state," \
    " j.attempts, j.waits, j.due_at, j.give_up_at, j.created_at," \
    " j.updated_at, j.last_error"

static const char *const SQL_JOBS[JB_LAST - JB_BASE] = {
    [JB_DROP_ACTIVE - JB_BASE] = "DELETE FROM jobs WHERE message_id = $1"
        " AND connector = $2 AND kind = $3 AND state IN " ACTIVE,
    [JB_INSERT - JB_BASE] = "INSERT INTO jobs(id, message_id, hop_id,"
        " connector, kind, state, due_at, give_up_at, window_ms, data,"
        " created_at, updated_at) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9,"
        " $10, $11, $11)",
    [JB_ACTIVE - JB_BASE] = "SELECT id FROM jobs WHERE message_id = $1"
        " AND connector = $2 AND kind = $3 AND state IN " ACTIVE,
    [JB_CANCEL - JB_BASE] = "DELETE FROM jobs WHERE message_id = $1"
        " AND connector = $2 AND kind = $3 AND state IN ('queued', 'waiting')",
    [JB_INPUT - JB_BASE] = "UPDATE jobs SET input = $2, state = 'queued',"
        " due_at = $3, updated_at = $3 WHERE id = $1"
        " AND state IN ('queued', 'waiting')",
    /* Due, and not while its hop is being delivered; locked, and jobs
     * another node is leasing right now are skipped, not waited for. */
    [JB_DUE - JB_BASE] = "SELECT " COLS ", j.data, j.input,"
        " COALESCE(h.attempts, 0) FROM jobs j"
        " LEFT JOIN hops h ON h.id = j.hop_id"
        " WHERE ((j.state IN ('queued', 'waiting') AND j.due_at <= $1)"
        "     OR (j.state = 'processing' AND j.lease_until < $1))"
        "   AND (h.id IS NULL OR h.state <> 'processing')"
        " ORDER BY j.due_at, j.id LIMIT $2 FOR UPDATE OF j SKIP LOCKED",
    [JB_TAKE - JB_BASE] = "UPDATE jobs SET state = 'processing',"
        " lease_owner = $2, lease_until = $3, updated_at = $4 WHERE id = $1",
    [JB_SET - JB_BASE] = "UPDATE jobs SET state = $2, attempts = $3,"
        " waits = $4, due_at = $5, last_error = $6, lease_owner = NULL,"
        " lease_until = NULL, updated_at = $7"
        " WHERE id = $1 AND state = 'processing' AND lease_owner = $8",
    [JB_OF_MSG - JB_BASE] = "SELECT " COLS " FROM jobs j"
        " WHERE j.message_id = $1 ORDER BY j.id",
    [JB_COUNTS - JB_BASE] = "SELECT state, COUNT(*) FROM jobs GROUP BY state",
    [JB_EVENT - JB_BASE] = "INSERT INTO events(message_id, hop_id, at, level,"
        " text) VALUES($1, $2, $3, $4, $5)",
};

static PGresult *run(struct pg_store *p, int slot, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, slot, SQL_JOBS[slot - JB_BASE], a, what, err);
}

static int run_done(struct pg_store *p, int slot, const struct pg_args *a,
                    const char *what, int64_t *changed, struct error *err)
{
    return pg_run_done(p, slot, SQL_JOBS[slot - JB_BASE], a, what, changed,
                       err);
}

/* ---- rows ------------------------------------------------------------------ */

/* One row of COLS (and, with blobs, data, input, hop attempts). 0, or -1
 * out of memory. */
static int job_row(const PGresult *r, int i, struct store_job *j, int blobs)
{
    memset(j, 0, sizeof(*j));
    pg_val_id(r, i, 0, j->id);
    pg_val_id(r, i, 1, j->message_id);
    j->hop_id = pg_val_int(r, i, 2);
    j->connector = pg_val_dup(r, i, 3);
    j->kind = pg_val_dup(r, i, 4);
    j->state = pg_val_dup(r, i, 5);
    j->attempts = (int)pg_val_int(r, i, 6);
    j->waits = (int)pg_val_int(r, i, 7);
    j->due_at = pg_val_int(r, i, 8);
    j->give_up_at = pg_val_int(r, i, 9);
    j->created_at = pg_val_int(r, i, 10);
    j->updated_at = pg_val_int(r, i, 11);
    j->last_error = pg_val_dup(r, i, 12);
    if (!j->connector || !j->kind || !j->state ||
        (!PQgetisnull(r, i, 12) && j->last_error == NULL))
        return -1;
    if (!blobs)
        return 0;
    j->hop_attempts = (int)pg_val_int(r, i, 15);
    j->data = pg_val_blob(r, i, 13, &j->data_len);
    j->input = pg_val_blob(r, i, 14, &j->input_len);
    return (!PQgetisnull(r, i, 13) && j->data == NULL) ||
           (!PQgetisnull(r, i, 14) && j->input == NULL) ? -1 : 0;
}

static int job_rows(const PGresult *r, int blobs, struct store_job **out,
                    size_t *n, struct error *err)
{
    int rows = PQntuples(r);
    *n = 0;
    *out = calloc((size_t)rows + 1, sizeof(**out));
    if (*out == NULL)
        return error_set(err, "out of memory reading jobs");
    for (int i = 0; i < rows; i++) {
        if (job_row(r, i, &(*out)[(*n)++], blobs) < 0) {
            store_jobs_free(*out, *n);
            *out = NULL;
            *n = 0;
            return error_set(err, "out of memory reading jobs");
        }
    }
    return 0;
}

/* ---- inside a transaction ------------------------------------------------------ */

static int message_lock(struct pg_store *p, const char *msgid,
                        struct error *err)
{
    const char *ids[1] = { msgid };
    return pg_messages_lock(p, ids, 1, err);
}

static int job_event(struct pg_store *p, const char *msgid, int64_t hop_id,
                     int64_t now, const char *level, const char *text,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, msgid);
    pg_arg_int(&a, hop_id);
    pg_arg_int(&a, now);
    pg_arg_text(&a, level ? level : "info");
    pg_arg_text(&a, text);
    return run_done(p, JB_EVENT, &a, "insert event", NULL, err);
}

/* message, connector and kind as $1 $2 $3 */
static void keyed(struct pg_args *a, const char *msgid, const char *connector,
                  const char *kind)
{
    pg_arg_text(a, msgid);
    pg_arg_text(a, connector);
    pg_arg_text(a, kind);
}

/* ---- adding and finding jobs ----------------------------------------------- */

int pgs_job_add_tx(struct pg_store *p, const struct store_job_new *j,
                   int64_t now, struct error *err)
{
    struct pg_args d = {0};
    keyed(&d, j->message_id, j->connector, j->kind);
    if (message_lock(p, j->message_id, err) < 0 ||
        run_done(p, JB_DROP_ACTIVE, &d, "replace a job", NULL, err) < 0)
        return -1;
    int64_t give_up = j->window_ms > 0 ? now + j->window_ms : 0;
    struct pg_args a = {0};
    pg_arg_text(&a, j->id);
    pg_arg_text(&a, j->message_id);
    pg_arg_int(&a, j->hop_id);
    pg_arg_text(&a, j->connector);
    pg_arg_text(&a, j->kind);
    pg_arg_text(&a, j->waiting ? "waiting" : "queued");
    pg_arg_int(&a, j->waiting ? (give_up ? give_up : STORE_HELD_AT) : now);
    pg_arg_int(&a, give_up);
    pg_arg_int(&a, j->window_ms);
    pg_arg_blob(&a, j->data, j->data_len);
    pg_arg_int(&a, now);
    if (run_done(p, JB_INSERT, &a, "insert a job", NULL, err) < 0)
        return -1;
    return j->text ? job_event(p, j->message_id, j->hop_id, now, j->level,
                               j->text, err) : 0;
}

int pgs_job_add(struct pg_store *p, const struct store_job_new *j,
                struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (pgs_job_add_tx(p, j, time_now_ms(), err) < 0)
        return pg_tx_fail(p);
    return pg_tx_end(p, err);
}

int pgs_job_active(struct pg_store *p, const char *msgid,
                   const char *connector, const char *kind,
                   char id[ID_LEN + 1], struct error *err)
{
    struct pg_args a = {0};
    keyed(&a, msgid, connector, kind);
    PGresult *r = run(p, JB_ACTIVE, &a, "find a job", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) > 0;
    if (found && id)
        pg_val_id(r, 0, 0, id);
    PQclear(r);
    return found;
}

int pgs_job_cancel(struct pg_store *p, const char *msgid,
                   const char *connector, const char *kind,
                   struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    keyed(&a, msgid, connector, kind);
    if (run_done(p, JB_CANCEL, &a, "cancel a job", &changed, err) < 0)
        return -1;
    return changed > 0;
}

int pgs_job_input(struct pg_store *p, const char *id,
                  const unsigned char *input, size_t len, struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_text(&a, id);
    pg_arg_blob(&a, input, len);
    pg_arg_int(&a, time_now_ms());
    if (run_done(p, JB_INPUT, &a, "give a job its input", &changed, err) < 0)
        return -1;
    return changed > 0;
}

/* ---- leases ------------------------------------------------------------------ */

static int lease_tx(struct pg_store *p, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max, struct store_job **out,
                    size_t *n, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, now);
    pg_arg_int(&a, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max);
    PGresult *r = run(p, JB_DUE, &a, "read due jobs", err);
    if (r == NULL)
        return -1;
    int rc = job_rows(r, 1, out, n, err);
    PQclear(r);
    for (size_t i = 0; rc == 0 && i < *n; i++) {
        struct pg_args t = {0};
        pg_arg_text(&t, (*out)[i].id);
        pg_arg_text(&t, owner);
        pg_arg_int(&t, now + lease_ms);
        pg_arg_int(&t, now);
        rc = run_done(p, JB_TAKE, &t, "lease a job", NULL, err);
    }
    return rc;
}

int pgs_job_lease(struct pg_store *p, const char *owner, int64_t now,
                  int64_t lease_ms, size_t max, struct store_job **out,
                  size_t *n, struct error *err)
{
    *out = NULL;
    *n = 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (lease_tx(p, owner, now, lease_ms, max, out, n, err) < 0 ||
        pg_tx_end(p, err) < 0) {
        store_jobs_free(*out, *n);
        *out = NULL;
        *n = 0;
        return pg_tx_fail(p);
    }
    return 0;
}

/* ---- a job's outcome, and its waiting hop's ------------------------------------ */

/* store_internal.h's store_hop_settle on PostgreSQL, the message row
 * already locked (pg.c's pg_hop_apply on a waiting hop): 1 applied, 0 the
 * hop does not wait (any more), -1 with err. */
static int hop_settle(struct pg_store *p, const struct store_outcome *o,
                      int64_t now, struct error *err)
{
    int rc = pg_hop_apply(p, true, o, now, err);
    return rc < 0 ? -1 : rc == 0;
}

static int finish_tx(struct pg_store *p, const struct store_job_outcome *o,
                     int64_t now, int *skipped, int *hop_settled,
                     struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_text(&a, o->id);
    pg_arg_text(&a, o->state);
    pg_arg_int(&a, o->attempts);
    pg_arg_int(&a, o->waits);
    pg_arg_int(&a, o->due_at);
    pg_arg_text(&a, o->error);
    pg_arg_int(&a, now);
    pg_arg_text(&a, o->owner);
    /* the message row first: its state may be recomputed below */
    if (message_lock(p, o->message_id, err) < 0 ||
        run_done(p, JB_SET, &a, "update a job", &changed, err) < 0)
        return -1;
    if (changed == 0)
        return *skipped = 1, 0;
    if (o->kept != NULL && pgs_receipt_add(p, o->kept, err) < 0)
        return -1;
    if (o->text && job_event(p, o->message_id, o->hop_id, now, o->level,
                             o->text, err) < 0)
        return -1;
    int rc = o->hop ? hop_settle(p, o->hop, now, err) : 0;
    if (rc < 0)
        return -1;
    *hop_settled = rc;
    return 0;
}

int pgs_job_finish_all(struct pg_store *p, const struct store_job_outcome *o,
                       size_t n, int *skipped, int *hop_settled,
                       struct error *err)
{
    memset(skipped, 0, n * sizeof(*skipped));
    memset(hop_settled, 0, n * sizeof(*hop_settled));
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int64_t now = time_now_ms();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = finish_tx(p, &o[i], now, &skipped[i], &hop_settled[i], err);
    if (rc < 0 || pg_tx_end(p, err) < 0) {
        memset(skipped, 0, n * sizeof(*skipped));
        memset(hop_settled, 0, n * sizeof(*hop_settled));
        return rc < 0 ? pg_tx_fail(p) : -1;
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------------- */

int pgs_message_jobs(struct pg_store *p, const char *msgid,
                     struct store_job **out, size_t *n, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, msgid);
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, JB_OF_MSG, &a, "read jobs", err);
    if (r == NULL)
        return -1;
    int rc = job_rows(r, 0, out, n, err);
    PQclear(r);
    return rc;
}

int pgs_job_counts(struct pg_store *p, int64_t *pending, int64_t *processing,
                   int64_t *failed, struct error *err)
{
    *pending = *processing = *failed = 0;
    PGresult *r = run(p, JB_COUNTS, NULL, "count jobs", err);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *state = PQgetvalue(r, i, 0);
        int64_t c = pg_val_int(r, i, 1);
        if (!strcmp(state, "queued") || !strcmp(state, "waiting"))
            *pending += c;
        else if (!strcmp(state, "processing"))
            *processing += c;
        else if (!strcmp(state, "failed"))
            *failed += c;
    }
    PQclear(r);
    return 0;
}
