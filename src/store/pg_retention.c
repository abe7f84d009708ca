/*
 * pg_retention.c - the PostgreSQL statements of retention_store.h, beside
 * sqlite_retention.c: purge candidates, the purge's deletion of rows (with
 * the payload files it leaves to shred listed in purge_pending, same
 * transaction), legal holds and the messages of a set of connectors
 * (tables legal_holds and purge_pending of PG_MIGRATIONS 2 in pg.c).
 *
 * Owns statement slots 288..335 of pg_internal.h and nothing else.
 *
 * How it keeps several nodes sharing one database right: a purge locks the
 * rows of the messages it was given (SELECT ... ORDER BY id FOR UPDATE, in
 * id order as pg.c locks them, so the two cannot deadlock) before it checks
 * each is still a candidate in a later statement, which read committed
 * runs on a snapshot taken after the lock. So two nodes purging the same
 * messages at once take turns: the second finds them gone, and each message
 * is deleted, reported gone and listed in purge_pending by one of them
 * only. store_hold_set takes the message row FOR SHARE before it places its
 * hold, so a hold and a purge of one message take turns as well: a hold
 * placed first keeps the message, a purge first leaves nothing to hold.
 * Whatever makes a message busy again (a hop queued or resent, a job
 * added) locks the same row (pg.c, pg_jobs.c).
 *
 * A set of names is one bound JSON array read with
 * json_array_elements_text. Must never decide what is expired
 * (security/retention.c does), touch a file, delete a message that is held
 * or still in flight, or build SQL from data.
 */
#include "store/pg_retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

enum {
    RT_BASE = 288,
    RT_CANDIDATES = RT_BASE, RT_HELD_BEFORE, RT_SOURCES, RT_LOCK,
    RT_STILL_CANDIDATE, RT_PENDING_ADD, RT_DEL_EVENTS, RT_DEL_RECEIPTS,
    RT_DEL_REFUSAL, RT_DEL_HOPS, RT_DEL_JOBS, RT_DEL_MESSAGE, RT_PENDING,
    RT_PENDING_DONE, RT_HOLD_LOCK, RT_HOLD_SET, RT_HOLD_LIFT, RT_HOLD_GET,
    RT_COUNT, RT_HOLD_COUNT, RT_MESSAGES_OF,
    RT_LAST
};
_Static_assert(RT_LAST <= 336, "pg_retention.c owns statement slots 288..335");

/* The final states, and "nothing in flight, not held", in one place. */
#define FINAL_STATE "state IN ('sent', 'failed', 'received', 'refused'," \
    " 'erased')"
#define NOT_BUSY " NOT EXISTS (SELECT 1 FROM hops h WHERE h.message_id =" \
    " messages.id AND h.state IN ('queued', 'processing', 'retrying'))" \
    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.message_id =" \
    " messages.id AND j.state IN ('queued', 'waiting', 'processing'))" \
    " AND NOT EXISTS (SELECT 1 FROM legal_holds l WHERE l.message_id =" \
    " messages.id)"
#define IN_NAMES "(SELECT json_array_elements_text($1::json))"

static const char *const SQL_RET[RT_LAST - RT_BASE] = {
    [RT_CANDIDATES - RT_BASE] = "SELECT id, source, state, payload_path,"
        " created_at, size FROM messages WHERE created_at < $2 AND"
        " ($1::text IS NULL OR source = $1) AND " FINAL_STATE " AND" NOT_BUSY
        " ORDER BY created_at, id LIMIT $3",
    [RT_HELD_BEFORE - RT_BASE] = "SELECT COUNT(*) FROM messages m JOIN"
        " legal_holds l ON l.message_id = m.id WHERE m.created_at < $2"
        " AND ($1::text IS NULL OR m.source = $1)",
    [RT_SOURCES - RT_BASE] = "SELECT DISTINCT source FROM messages"
        " ORDER BY source",
    /* the rows of a purge, locked in id order */
    [RT_LOCK - RT_BASE] = "SELECT id FROM messages"
        " WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
    [RT_STILL_CANDIDATE - RT_BASE] = "SELECT payload_path FROM messages"
        " WHERE id = $1 AND " FINAL_STATE " AND" NOT_BUSY,
    [RT_PENDING_ADD - RT_BASE] = "INSERT INTO purge_pending(message_id,"
        " payload_path, at) VALUES($1, $2, $3) ON CONFLICT DO NOTHING",
    [RT_DEL_EVENTS - RT_BASE] = "DELETE FROM events WHERE message_id = $1",
    [RT_DEL_RECEIPTS - RT_BASE] = "DELETE FROM receipts WHERE message_id = $1",
    [RT_DEL_REFUSAL - RT_BASE] = "DELETE FROM refusals WHERE message_id = $1",
    [RT_DEL_HOPS - RT_BASE] = "DELETE FROM hops WHERE message_id = $1",
    [RT_DEL_JOBS - RT_BASE] = "DELETE FROM jobs WHERE message_id = $1",
    [RT_DEL_MESSAGE - RT_BASE] = "DELETE FROM messages WHERE id = $1",
    [RT_PENDING - RT_BASE] = "SELECT message_id, payload_path"
        " FROM purge_pending ORDER BY at, message_id LIMIT $1",
    [RT_PENDING_DONE - RT_BASE] = "DELETE FROM purge_pending"
        " WHERE message_id = $1",
    [RT_HOLD_LOCK - RT_BASE] = "SELECT 1 FROM messages WHERE id = $1"
        " FOR SHARE",
    [RT_HOLD_SET - RT_BASE] = "INSERT INTO legal_holds(message_id, at, actor,"
        " reason) VALUES($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    [RT_HOLD_LIFT - RT_BASE] = "DELETE FROM legal_holds WHERE message_id = $1",
    [RT_HOLD_GET - RT_BASE] = "SELECT at, actor, reason FROM legal_holds"
        " WHERE message_id = $1",
    [RT_COUNT - RT_BASE] = "SELECT COUNT(*), COALESCE(SUM(size), 0)::bigint"
        " FROM messages WHERE created_at < $2"
        " AND ($1::text IS NULL OR source = $1) AND " FINAL_STATE " AND"
        NOT_BUSY,
    [RT_HOLD_COUNT - RT_BASE] = "SELECT COUNT(*) FROM legal_holds",
    [RT_MESSAGES_OF - RT_BASE] = "SELECT m.id, m.source, m.state,"
        " m.payload_path, m.created_at, m.size, (EXISTS (SELECT 1"
        " FROM legal_holds l WHERE l.message_id = m.id))::int FROM messages m"
        " WHERE m.source IN " IN_NAMES " OR EXISTS (SELECT 1 FROM hops h"
        " WHERE h.message_id = m.id AND h.connector IN " IN_NAMES ")"
        " ORDER BY m.created_at, m.id",
};

static PGresult *run(struct pg_store *p, int slot, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, slot, SQL_RET[slot - RT_BASE], a, what, err);
}

static int run_done(struct pg_store *p, int slot, const struct pg_args *a,
                    const char *what, int64_t *changed, struct error *err)
{
    return pg_run_done(p, slot, SQL_RET[slot - RT_BASE], a, what, changed,
                       err);
}

/* $1 = source (NULL: any), $2 = before */
static void source_before(struct pg_args *a, const char *source,
                          int64_t before)
{
    pg_arg_text(a, source);
    pg_arg_int(a, before);
}

/* ---- purge candidates ------------------------------------------------------------ */

/* Rows of id, source, state, payload_path, created_at, size (and, with
 * held, the hold flag in column 6). */
static int expired_rows(const PGresult *r, struct store_expired **out,
                        int **held, size_t *n, struct error *err)
{
    int rows = PQntuples(r);
    *n = 0;
    *out = calloc((size_t)rows + 1, sizeof(**out));
    if (held)
        *held = calloc((size_t)rows + 1, sizeof(int));
    if (*out == NULL || (held && *held == NULL)) {
        free(*out);
        *out = NULL;
        if (held) {
            free(*held);
            *held = NULL;
        }
        return error_set(err, "out of memory listing messages to purge");
    }
    for (int i = 0; i < rows; i++, (*n)++) {
        struct store_expired *e = &(*out)[i];
        pg_val_id(r, i, 0, e->id);
        e->source = pg_val_dup(r, i, 1);
        e->state = pg_val_dup(r, i, 2);
        e->payload_path = pg_val_dup(r, i, 3);
        e->created_at = pg_val_int(r, i, 4);
        e->size = pg_val_int(r, i, 5);
        if (held)
            (*held)[i] = (int)pg_val_int(r, i, 6);
    }
    return 0;
}

int pgs_purge_candidates(struct pg_store *p, const char *source,
                         int64_t before, size_t max,
                         struct store_expired **out, size_t *n,
                         struct error *err)
{
    struct pg_args a = {0};
    source_before(&a, source, before);
    pg_arg_int(&a, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max);
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, RT_CANDIDATES, &a, "list messages to purge", err);
    if (r == NULL)
        return -1;
    int rc = expired_rows(r, out, NULL, n, err);
    PQclear(r);
    return rc;
}

int pgs_purge_count(struct pg_store *p, const char *source, int64_t before,
                    int64_t *count, int64_t *bytes, struct error *err)
{
    struct pg_args a = {0};
    source_before(&a, source, before);
    *count = *bytes = 0;
    PGresult *r = run(p, RT_COUNT, &a, "count messages to purge", err);
    if (r == NULL)
        return -1;
    *count = pg_val_int(r, 0, 0);
    *bytes = pg_val_int(r, 0, 1);
    PQclear(r);
    return 0;
}

/* One integer of a one-row query. */
static int one_int(struct pg_store *p, int slot, const struct pg_args *a,
                   int64_t *out, const char *what, struct error *err)
{
    *out = 0;
    PGresult *r = run(p, slot, a, what, err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) > 0)
        *out = pg_val_int(r, 0, 0);
    PQclear(r);
    return 0;
}

int pgs_purge_held(struct pg_store *p, const char *source, int64_t before,
                   int64_t *count, struct error *err)
{
    struct pg_args a = {0};
    source_before(&a, source, before);
    return one_int(p, RT_HELD_BEFORE, &a, count, "count held messages", err);
}

int pgs_message_sources(struct pg_store *p, char ***out, size_t *n,
                        struct error *err)
{
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, RT_SOURCES, NULL, "list message sources", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    *out = calloc((size_t)rows + 1, sizeof(char *));
    for (int i = 0; *out && i < rows; i++) {
        if (((*out)[i] = pg_val_dup(r, i, 0)) == NULL) {
            store_names_free(*out, *n);
            *out = NULL;
            break;
        }
        (*n)++;
    }
    PQclear(r);
    if (*out == NULL) {
        *n = 0;
        return error_set(err, "out of memory listing message sources");
    }
    return 0;
}

/* ---- the purge ------------------------------------------------------------------- */

/* A text[] parameter {"a","b"}: malloc'ed, caller frees; NULL when out of
 * memory. */
static char *text_array(const char *const *strs, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += 2 * strlen(strs[i]) + 3;
    char *out = malloc(cap), *w = out;
    if (out == NULL)
        return NULL;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        *w++ = '"';
        for (const char *c = strs[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *w++ = '\\';
            *w++ = *c;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return out;
}

/* Run slot with $1 = id. */
static int by_id(struct pg_store *p, int slot, const char *id,
                 const char *what, int64_t *changed, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    return run_done(p, slot, &a, what, changed, err);
}

/* Inside the purge's transaction, its rows locked: 1 deleted, 0 no longer
 * a candidate. */
static int purge_one(struct pg_store *p, const char *id, int64_t now,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    PGresult *r = run(p, RT_STILL_CANDIDATE, &a, "check a message to purge",
                      err);
    if (r == NULL)
        return -1;
    int still = PQntuples(r) > 0;
    char *path = still ? pg_val_dup(r, 0, 0) : NULL;
    int oom = still && path == NULL && !PQgetisnull(r, 0, 0);
    PQclear(r);
    if (!still)
        return 0;
    if (oom)
        return error_set(err, "out of memory");
    int ok = 0;
    if (path) {
        struct pg_args t = {0};
        pg_arg_text(&t, id);
        pg_arg_text(&t, path);
        pg_arg_int(&t, now);
        ok = run_done(p, RT_PENDING_ADD, &t, "list a payload to shred", NULL,
                      err);
        free(path);
    }
    static const int dels[] = { RT_DEL_EVENTS, RT_DEL_RECEIPTS,
                                RT_DEL_REFUSAL, RT_DEL_HOPS, RT_DEL_JOBS,
                                RT_DEL_MESSAGE };
    for (size_t i = 0; ok == 0 && i < sizeof(dels) / sizeof(dels[0]); i++)
        ok = by_id(p, dels[i], id, "delete a purged message", NULL, err);
    return ok < 0 ? -1 : 1;
}

static int purge_tx(struct pg_store *p, const char *const *ids, size_t n,
                    int64_t now, int *gone, struct error *err)
{
    /* every row of the purge locked first (see the file comment) */
    char *arr = text_array(ids, n);
    if (arr == NULL)
        return error_set(err, "out of memory");
    struct pg_args a = {0};
    pg_arg_text(&a, arr);
    int rc = run_done(p, RT_LOCK, &a, "lock messages to purge", NULL, err);
    free(arr);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int one = purge_one(p, ids[i], now, err);
        if (one < 0)
            rc = -1;
        else
            gone[i] = one;
    }
    return rc;
}

int pgs_purge_delete(struct pg_store *p, const char *const *ids, size_t n,
                     int64_t now, int *gone, struct error *err)
{
    memset(gone, 0, n * sizeof(*gone));
    if (n == 0)
        return 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (purge_tx(p, ids, n, now, gone, err) < 0) {
        memset(gone, 0, n * sizeof(*gone));
        return pg_tx_fail(p);
    }
    if (pg_tx_end(p, err) < 0) {
        memset(gone, 0, n * sizeof(*gone));
        return -1;
    }
    return 0;
}

int pgs_purge_pending(struct pg_store *p, size_t max,
                      struct store_pending **out, size_t *n,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max);
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, RT_PENDING, &a, "list payloads to shred", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    *out = calloc((size_t)rows + 1, sizeof(**out));
    if (*out == NULL) {
        PQclear(r);
        return error_set(err, "out of memory");
    }
    for (int i = 0; i < rows; i++, (*n)++) {
        pg_val_id(r, i, 0, (*out)[i].id);
        (*out)[i].payload_path = pg_val_dup(r, i, 1);
    }
    PQclear(r);
    return 0;
}

int pgs_purge_done(struct pg_store *p, const char *id, struct error *err)
{
    return by_id(p, RT_PENDING_DONE, id, "forget a shredded payload", NULL,
                 err);
}

/* ---- legal holds ------------------------------------------------------------------ */

/* Inside the transaction: 0 placed, 1 no such message, 2 already held. */
static int hold_tx(struct pg_store *p, const char *id, const char *actor,
                   const char *reason, int64_t now, struct error *err)
{
    struct pg_args l = {0};
    pg_arg_text(&l, id);
    PGresult *r = run(p, RT_HOLD_LOCK, &l, "find a message", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) > 0;
    PQclear(r);
    if (!found)
        return 1;
    struct pg_args a = {0};
    int64_t added = 0;
    pg_arg_text(&a, id);
    pg_arg_int(&a, now);
    pg_arg_text(&a, actor);
    pg_arg_text(&a, reason);
    if (run_done(p, RT_HOLD_SET, &a, "place a legal hold", &added, err) < 0)
        return -1;
    return added > 0 ? 0 : 2;
}

int pgs_hold_set(struct pg_store *p, const char *id, const char *actor,
                 const char *reason, int64_t now, struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int rc = hold_tx(p, id, actor, reason, now, err);
    if (rc < 0)
        return pg_tx_fail(p);
    if (rc == 1) {
        pg_tx_fail(p);
        return 1;
    }
    return pg_tx_end(p, err) < 0 ? -1 : rc;
}

int pgs_hold_lift(struct pg_store *p, const char *id, struct error *err)
{
    int64_t changed = 0;
    if (by_id(p, RT_HOLD_LIFT, id, "lift a legal hold", &changed, err) < 0)
        return -1;
    return changed > 0 ? 0 : 1;
}

int pgs_hold_get(struct pg_store *p, const char *id, struct store_hold *out,
                 struct error *err)
{
    struct pg_args a = {0};
    memset(out, 0, sizeof(*out));
    pg_arg_text(&a, id);
    PGresult *r = run(p, RT_HOLD_GET, &a, "read a legal hold", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) > 0;
    if (found) {
        out->at = pg_val_int(r, 0, 0);
        out->actor = pg_val_dup(r, 0, 1);
        out->reason = pg_val_dup(r, 0, 2);
    }
    PQclear(r);
    return found ? 0 : 1;
}

int pgs_hold_count(struct pg_store *p, int64_t *count, struct error *err)
{
    return one_int(p, RT_HOLD_COUNT, NULL, count, "count legal holds", err);
}

/* ---- a partner's messages ------------------------------------------------------------ */

int pgs_messages_of(struct pg_store *p, const char *conns_json,
                    struct store_expired **out, int **held, size_t *n,
                    struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, conns_json);
    *out = NULL;
    *held = NULL;
    *n = 0;
    PGresult *r = run(p, RT_MESSAGES_OF, &a, "list messages to purge", err);
    if (r == NULL)
        return -1;
    int rc = expired_rows(r, out, held, n, err);
    PQclear(r);
    return rc;
}
