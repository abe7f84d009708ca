/*
 * sqlite_jobs.c - the SQLite statements of job_store.h: durable jobs of
 * messages (table of migration 10 in sqlite.c).
 *
 * Owns statement cache slots 272..303 of store_stmt_ext and nothing else.
 * On a PostgreSQL store each entry point of job_store.h hands the call
 * over to pg_jobs.c.
 * Every statement is a constant string with bound parameters. It stores
 * and returns sealed blobs as given; it must never see plaintext (sealing
 * is core/jobs.c's) nor build SQL from data.
 */
#include "store/job_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_jobs.h"
#include "store/store_internal.h"

enum { J_BASE = 272, J_DROP_ACTIVE = J_BASE, J_INSERT, J_ACTIVE, J_CANCEL, J_INPUT, J_DUE,
       J_TAKE, J_SET, J_OF_MSG, J_RELEASE, J_RESEND, J_COUNTS, J_EVENT,
       J_RENEW, J_LAST };
_Static_assert(J_LAST <= 304, "sqlite_jobs.c owns statement slots 272..303");

#define ACTIVE "('queued', 'waiting', 'processing')"
#define COLS "j.id, j.message_id, j.hop_id, j.connector, j.kind, j.state," \
    " j.attempts, j.waits, j.due_at, j.give_up_at, j.created_at," \
    " j.updated_at, j.last_error"

static const char *const SQL_JOBS[J_LAST - J_BASE] = {
    [J_DROP_ACTIVE - J_BASE] = "DELETE FROM jobs WHERE message_id = ?1"
        " AND connector = ?2 AND kind = ?3 AND state IN " ACTIVE,
    [J_INSERT - J_BASE] = "INSERT INTO jobs(id, message_id, hop_id, connector,"
        " kind, state, due_at, give_up_at, window_ms, data, created_at,"
        " updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
        " ?11)",
    [J_ACTIVE - J_BASE] = "SELECT id FROM jobs WHERE message_id = ?1"
        " AND connector = ?2 AND kind = ?3 AND state IN " ACTIVE,
    [J_CANCEL - J_BASE] = "DELETE FROM jobs WHERE message_id = ?1"
        " AND connector = ?2 AND kind = ?3 AND state IN ('queued', 'waiting')",
    [J_INPUT - J_BASE] = "UPDATE jobs SET input = ?2, state = 'queued',"
        " due_at = ?3, updated_at = ?3 WHERE id = ?1"
        " AND state IN ('queued', 'waiting')",
    /* due, and not while its hop is being delivered */
    [J_DUE - J_BASE] = "SELECT " COLS ", j.data, j.input,"
        " COALESCE(h.attempts, 0) FROM jobs j"
        " LEFT JOIN hops h ON h.id = j.hop_id"
        " WHERE ((j.state IN ('queued', 'waiting') AND j.due_at <= ?1)"
        "     OR (j.state = 'processing' AND j.lease_until < ?1))"
        "   AND (h.id IS NULL OR h.state != 'processing')"
        " ORDER BY j.due_at, j.id LIMIT ?2",
    [J_TAKE - J_BASE] = "UPDATE jobs SET state = 'processing', lease_owner = ?2,"
        " lease_until = ?3, updated_at = ?4 WHERE id = ?1",
    [J_SET - J_BASE] = "UPDATE jobs SET state = ?2, attempts = ?3, waits = ?4,"
        " due_at = ?5, last_error = ?6, lease_owner = NULL,"
        " lease_until = NULL, updated_at = ?7"
        " WHERE id = ?1 AND state = 'processing' AND lease_owner = ?8",
    [J_OF_MSG - J_BASE] = "SELECT " COLS " FROM jobs j WHERE j.message_id = ?1"
        " ORDER BY j.id",
    [J_RENEW - J_BASE] = "UPDATE jobs SET lease_until = ?2"
        " WHERE state = 'processing' AND lease_owner = ?1",
    [J_RELEASE - J_BASE] = "UPDATE jobs SET state = 'queued', lease_owner = NULL,"
        " lease_until = NULL WHERE state = 'processing'",
    /* the newest failed job of each message, connector and kind, unless
     * one of them is active */
    [J_RESEND - J_BASE] = "UPDATE jobs SET state = 'queued', attempts = 0,"
        " waits = 0, due_at = ?2, give_up_at = CASE WHEN window_ms > 0"
        " THEN ?2 + window_ms ELSE 0 END, last_error = NULL, updated_at = ?2"
        " WHERE message_id = ?1 AND state = 'failed'"
        " AND id = (SELECT MAX(k.id) FROM jobs k WHERE k.message_id ="
        "  jobs.message_id AND k.connector = jobs.connector"
        "  AND k.kind = jobs.kind AND k.state = 'failed')"
        " AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.message_id ="
        "  jobs.message_id AND k.connector = jobs.connector"
        "  AND k.kind = jobs.kind AND k.state IN " ACTIVE ")",
    [J_COUNTS - J_BASE] = "SELECT state, COUNT(*) FROM jobs GROUP BY state",
    [J_EVENT - J_BASE] = "INSERT INTO events(message_id, hop_id, at, level, text)"
        " VALUES(?1, ?2, ?3, ?4, ?5)",
};

static sqlite3_stmt *j_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_JOBS[slot - J_BASE], err);
}

void store_jobs_free(struct store_job *j, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(j[i].connector);
        free(j[i].kind);
        free(j[i].state);
        free(j[i].last_error);
        free(j[i].data);
        free(j[i].input);
    }
    free(j);
}

static void col_id(sqlite3_stmt *st, int i, char out[ID_LEN + 1])
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, ID_LEN + 1, "%s", t ? (const char *)t : "");
}

static int col_blob(sqlite3_stmt *st, int i, unsigned char **out, size_t *n)
{
    const void *b = sqlite3_column_blob(st, i);
    *n = (size_t)sqlite3_column_bytes(st, i);
    *out = NULL;
    if (b == NULL)
        return 0;
    if ((*out = malloc(*n ? *n : 1)) == NULL)
        return -1;
    memcpy(*out, b, *n);
    return 0;
}

/* One row of COLS (and, with blobs, data, input, hop attempts). */
static int job_row(sqlite3_stmt *st, struct store_job *j, int blobs)
{
    col_id(st, 0, j->id);
    col_id(st, 1, j->message_id);
    j->hop_id = sqlite3_column_int64(st, 2);
    j->connector = store_col_dup(st, 3);
    j->kind = store_col_dup(st, 4);
    j->state = store_col_dup(st, 5);
    j->attempts = sqlite3_column_int(st, 6);
    j->waits = sqlite3_column_int(st, 7);
    j->due_at = sqlite3_column_int64(st, 8);
    j->give_up_at = sqlite3_column_int64(st, 9);
    j->created_at = sqlite3_column_int64(st, 10);
    j->updated_at = sqlite3_column_int64(st, 11);
    j->last_error = store_col_dup(st, 12);
    if (!j->connector || !j->kind || !j->state)
        return -1;
    if (!blobs)
        return 0;
    j->hop_attempts = sqlite3_column_int(st, 15);
    return col_blob(st, 13, &j->data, &j->data_len) < 0 ||
           col_blob(st, 14, &j->input, &j->input_len) < 0 ? -1 : 0;
}

static int job_rows(struct store *s, sqlite3_stmt *st, int blobs,
                    struct store_job **out, size_t *n, struct error *err)
{
    size_t cap = 0;
    int rc, oom = 0;
    *out = NULL;
    *n = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            struct store_job *g = realloc(*out, cap * sizeof(**out));
            if (g == NULL) {
                oom = 1;
                break;
            }
            *out = g;
        }
        memset(&(*out)[*n], 0, sizeof(**out));
        oom = job_row(st, &(*out)[(*n)++], blobs) < 0;
    }
    sqlite3_reset(st);
    if (oom || rc != SQLITE_DONE) {
        store_jobs_free(*out, *n);
        *out = NULL;
        *n = 0;
        return oom ? error_set(err, "out of memory reading jobs")
                   : store_db_error(s, err, "read jobs");
    }
    return 0;
}

static int job_event(struct store *s, const char *msgid, int64_t hop_id,
                     int64_t now, const char *level, const char *text,
                     struct error *err)
{
    sqlite3_stmt *st = j_stmt(s, J_EVENT, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, msgid);
    sqlite3_bind_int64(st, 2, hop_id);
    sqlite3_bind_int64(st, 3, now);
    store_bind_text(st, 4, level ? level : "info");
    store_bind_text(st, 5, text);
    return store_step_done(s, st, err, "insert event");
}

/* Bind message, connector and kind as ?1 ?2 ?3 of slot. */
static sqlite3_stmt *keyed(struct store *s, int slot, const char *msgid,
                           const char *connector, const char *kind,
                           struct error *err)
{
    sqlite3_stmt *st = j_stmt(s, slot, err);
    if (st) {
        store_bind_text(st, 1, msgid);
        store_bind_text(st, 2, connector);
        store_bind_text(st, 3, kind);
    }
    return st;
}

int store_job_add_tx(struct store *s, const struct store_job_new *j,
                     int64_t now, struct error *err)
{
    sqlite3_stmt *st = keyed(s, J_DROP_ACTIVE, j->message_id, j->connector,
                             j->kind, err);
    if (st == NULL || store_step_done(s, st, err, "replace a job") < 0 ||
        (st = j_stmt(s, J_INSERT, err)) == NULL)
        return -1;
    int64_t give_up = j->window_ms > 0 ? now + j->window_ms : 0;
    store_bind_text(st, 1, j->id);
    store_bind_text(st, 2, j->message_id);
    sqlite3_bind_int64(st, 3, j->hop_id);
    store_bind_text(st, 4, j->connector);
    store_bind_text(st, 5, j->kind);
    store_bind_text(st, 6, j->waiting ? "waiting" : "queued");
    sqlite3_bind_int64(st, 7, j->waiting ? (give_up ? give_up
                                                    : STORE_HELD_AT) : now);
    sqlite3_bind_int64(st, 8, give_up);
    sqlite3_bind_int64(st, 9, j->window_ms);
    sqlite3_bind_blob(st, 10, j->data, (int)j->data_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, now);
    if (store_step_done(s, st, err, "insert a job") < 0)
        return -1;
    return j->text ? job_event(s, j->message_id, j->hop_id, now, j->level,
                               j->text, err) : 0;
}

int store_job_add(struct store *s, const struct store_job_new *j,
                  struct error *err)
{
    if (store_pg(s))
        return pgs_job_add(store_pg(s), j, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (store_job_add_tx(s, j, time_now_ms(), err) < 0 ||
        store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    return 0;
}

int store_job_active(struct store *s, const char *msgid, const char *connector,
                     const char *kind, char id[ID_LEN + 1], struct error *err)
{
    if (store_pg(s))
        return pgs_job_active(store_pg(s), msgid, connector, kind, id,
                              err);
    sqlite3_stmt *st = keyed(s, J_ACTIVE, msgid, connector, kind, err);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && id)
        col_id(st, 0, id);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "find a job");
    return rc == SQLITE_ROW;
}

int store_job_cancel(struct store *s, const char *msgid, const char *connector,
                     const char *kind, struct error *err)
{
    if (store_pg(s))
        return pgs_job_cancel(store_pg(s), msgid, connector, kind, err);
    sqlite3_stmt *st = keyed(s, J_CANCEL, msgid, connector, kind, err);
    if (st == NULL || store_step_tx(s, st, err, "cancel a job") < 0)
        return -1;
    return sqlite3_changes(store_db(s)) > 0;    /* COMMIT leaves it */
}

int store_job_input(struct store *s, const char *id, const unsigned char *input,
                    size_t len, struct error *err)
{
    if (store_pg(s))
        return pgs_job_input(store_pg(s), id, input, len, err);
    sqlite3_stmt *st = j_stmt(s, J_INPUT, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_blob(st, 2, input, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, time_now_ms());
    /* in the group commit (an MDN arriving while deliveries commit) */
    if (store_step_tx(s, st, err, "give a job its input") < 0)
        return -1;
    return sqlite3_changes(store_db(s)) > 0;
}

static int lease_tx(struct store *s, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max, struct store_job **out,
                    size_t *n, struct error *err)
{
    sqlite3_stmt *st = j_stmt(s, J_DUE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    if (job_rows(s, st, 1, out, n, err) < 0)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        if ((st = j_stmt(s, J_TAKE, err)) == NULL)
            return -1;
        store_bind_text(st, 1, (*out)[i].id);
        store_bind_text(st, 2, owner);
        sqlite3_bind_int64(st, 3, now + lease_ms);
        sqlite3_bind_int64(st, 4, now);
        if (store_step_done(s, st, err, "lease a job") < 0)
            return -1;
    }
    return 0;
}

int store_job_lease(struct store *s, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max, struct store_job **out,
                    size_t *n, struct error *err)
{
    if (store_pg(s))
        return pgs_job_lease(store_pg(s), owner, now, lease_ms, max, out, n,
                             err);
    *out = NULL;
    *n = 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (lease_tx(s, owner, now, lease_ms, max, out, n, err) < 0 ||
        store_tx_commit(s, err) < 0) {
        store_jobs_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_tx_fail(s);
    }
    return 0;
}

static int finish_tx(struct store *s, const struct store_job_outcome *o,
                     int64_t now, int *skipped, int *hop_settled,
                     struct error *err)
{
    sqlite3_stmt *st = j_stmt(s, J_SET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, o->id);
    store_bind_text(st, 2, o->state);
    sqlite3_bind_int(st, 3, o->attempts);
    sqlite3_bind_int(st, 4, o->waits);
    sqlite3_bind_int64(st, 5, o->due_at);
    store_bind_text(st, 6, o->error);
    sqlite3_bind_int64(st, 7, now);
    store_bind_text(st, 8, o->owner);
    if (store_step_done(s, st, err, "update a job") < 0)
        return -1;
    if (sqlite3_changes(store_db(s)) == 0)
        return *skipped = 1, 0;
    if (o->kept != NULL && store_receipt_add_tx(s, o->kept, err) < 0)
        return -1;
    if (o->text && job_event(s, o->message_id, o->hop_id, now, o->level,
                             o->text, err) < 0)
        return -1;
    int rc = o->hop ? store_hop_settle(s, o->hop, now, err) : 0;
    if (rc < 0)
        return -1;
    *hop_settled = rc;
    return 0;
}

int store_job_finish_all(struct store *s, const struct store_job_outcome *o,
                         size_t n, int *skipped, int *hop_settled,
                         struct error *err)
{
    if (store_pg(s))
        return pgs_job_finish_all(store_pg(s), o, n, skipped, hop_settled,
                                  err);
    memset(skipped, 0, n * sizeof(*skipped));
    memset(hop_settled, 0, n * sizeof(*hop_settled));
    if (store_tx_begin(s, err) < 0)
        return -1;
    int64_t now = time_now_ms();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = finish_tx(s, &o[i], now, &skipped[i], &hop_settled[i], err);
    if (rc < 0 || store_tx_commit(s, err) < 0) {
        memset(skipped, 0, n * sizeof(*skipped));
        memset(hop_settled, 0, n * sizeof(*hop_settled));
        return store_tx_fail(s);
    }
    return 0;
}

int store_job_finish(struct store *s, const struct store_job_outcome *o,
                     int *skipped, int *hop_settled, struct error *err)
{
    return store_job_finish_all(s, o, 1, skipped, hop_settled, err);
}

int store_message_jobs(struct store *s, const char *msgid,
                       struct store_job **out, size_t *n, struct error *err)
{
    if (store_pg(s))
        return pgs_message_jobs(store_pg(s), msgid, out, n, err);
    sqlite3_stmt *st = j_stmt(s, J_OF_MSG, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, msgid);
    return job_rows(s, st, 0, out, n, err);
}

int store_job_counts(struct store *s, int64_t *pending, int64_t *processing,
                     int64_t *failed, struct error *err)
{
    if (store_pg(s))
        return pgs_job_counts(store_pg(s), pending, processing, failed,
                              err);
    sqlite3_stmt *st = j_stmt(s, J_COUNTS, err);
    if (st == NULL)
        return -1;
    *pending = *processing = *failed = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 0);
        int64_t c = sqlite3_column_int64(st, 1);
        if (state && (!strcmp(state, "queued") || !strcmp(state, "waiting")))
            *pending += c;
        else if (state && !strcmp(state, "processing"))
            *processing += c;
        else if (state && !strcmp(state, "failed"))
            *failed += c;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "count jobs");
}

/* ---- for sqlite.c ------------------------------------------------------------- */

int store_jobs_renew(struct store *s, const char *owner, int64_t until,
                     struct error *err)
{
    sqlite3_stmt *st = j_stmt(s, J_RENEW, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, until);
    return store_step_done(s, st, err, "renew job leases");
}

int store_jobs_release(struct store *s, struct error *err)
{
    sqlite3_stmt *st = j_stmt(s, J_RELEASE, err);
    return st ? store_step_done(s, st, err, "release job leases") : -1;
}

int store_jobs_resend(struct store *s, const char *msgid, int64_t now,
                      int *requeued, struct error *err)
{
    sqlite3_stmt *st = j_stmt(s, J_RESEND, err);
    *requeued = 0;
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, msgid);
    sqlite3_bind_int64(st, 2, now);
    if (store_step_done(s, st, err, "resend jobs") < 0)
        return -1;
    *requeued = sqlite3_changes(store_db(s));
    return 0;
}
