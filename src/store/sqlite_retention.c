/*
 * sqlite_retention.c - the SQLite statements of retention_store.h:
 * purge candidates, the purge's deletion of rows (with the payload files
 * it leaves to shred listed in purge_pending, same transaction), legal
 * holds and the messages of a set of connectors (tables of migration 11 in
 * sqlite.c).
 *
 * Owns statement cache slots 248..271 of store_stmt_ext and nothing else.
 * On a PostgreSQL store each entry point of retention_store.h hands the
 * call over to pg_retention.c.
 * Every statement is a constant string with bound parameters (a set of
 * names is one bound JSON array read with json_each). Must never decide
 * what is expired (security/retention.c does), touch a file, or delete a
 * message that is held or still in flight.
 */
#include "store/retention_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_retention.h"
#include "store/store_internal.h"

enum {
    R_CANDIDATES = 248, R_HELD_BEFORE, R_SOURCES, R_STILL_CANDIDATE,
    R_PENDING_ADD, R_DEL_EVENTS, R_DEL_RECEIPTS, R_DEL_REFUSAL, R_DEL_HOPS,
    R_DEL_JOBS, R_DEL_MESSAGE, R_PENDING, R_PENDING_DONE, R_HOLD_SET, R_HOLD_LIFT,
    R_HOLD_GET, R_MSG_EXISTS, R_COUNT, R_LAST
};
_Static_assert(R_LAST <= 272, "sqlite_retention.c owns slots 248..271");

/* The final states, and "nothing in flight, not held", in one place. */
#define FINAL_STATE "state IN ('sent', 'failed', 'received', 'refused'," \
    " 'erased')"
#define NOT_BUSY " NOT EXISTS (SELECT 1 FROM hops h WHERE h.message_id =" \
    " messages.id AND h.state IN ('queued', 'processing', 'retrying'))" \
    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.message_id =" \
    " messages.id AND j.state IN ('queued', 'waiting', 'processing'))" \
    " AND NOT EXISTS (SELECT 1 FROM legal_holds l WHERE l.message_id =" \
    " messages.id)"

static const char *const SQL_RET[R_LAST - 248] = {
    [R_CANDIDATES - 248] = "SELECT id, source, state, payload_path,"
        " created_at, size FROM messages WHERE created_at < ?2 AND"
        " (?1 IS NULL OR source = ?1) AND " FINAL_STATE " AND" NOT_BUSY
        " ORDER BY created_at, id LIMIT ?3",
    [R_HELD_BEFORE - 248] = "SELECT COUNT(*) FROM messages m JOIN"
        " legal_holds l ON l.message_id = m.id WHERE m.created_at < ?2"
        " AND (?1 IS NULL OR m.source = ?1)",
    [R_SOURCES - 248] = "SELECT DISTINCT source FROM messages ORDER BY"
        " source",
    [R_STILL_CANDIDATE - 248] = "SELECT payload_path FROM messages WHERE"
        " id = ?1 AND " FINAL_STATE " AND" NOT_BUSY,
    [R_PENDING_ADD - 248] = "INSERT INTO purge_pending(message_id,"
        " payload_path, at) VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING",
    [R_DEL_EVENTS - 248] = "DELETE FROM events WHERE message_id = ?1",
    [R_DEL_RECEIPTS - 248] = "DELETE FROM receipts WHERE message_id = ?1",
    [R_DEL_REFUSAL - 248] = "DELETE FROM refusals WHERE message_id = ?1",
    [R_DEL_HOPS - 248] = "DELETE FROM hops WHERE message_id = ?1",
    [R_DEL_JOBS - 248] = "DELETE FROM jobs WHERE message_id = ?1",
    [R_DEL_MESSAGE - 248] = "DELETE FROM messages WHERE id = ?1",
    [R_PENDING - 248] = "SELECT message_id, payload_path FROM purge_pending"
        " ORDER BY at, message_id LIMIT ?1",
    [R_PENDING_DONE - 248] = "DELETE FROM purge_pending WHERE message_id"
        " = ?1",
    [R_HOLD_SET - 248] = "INSERT INTO legal_holds(message_id, at, actor,"
        " reason) VALUES(?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    [R_HOLD_LIFT - 248] = "DELETE FROM legal_holds WHERE message_id = ?1",
    [R_HOLD_GET - 248] = "SELECT at, actor, reason FROM legal_holds WHERE"
        " message_id = ?1",
    [R_MSG_EXISTS - 248] = "SELECT 1 FROM messages WHERE id = ?1",
    [R_COUNT - 248] = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
        " WHERE created_at < ?2 AND (?1 IS NULL OR source = ?1) AND "
        FINAL_STATE " AND" NOT_BUSY,
};

/* Statements that run once in a while (not worth a cache slot). */
#define SQL_HOLD_COUNT "SELECT COUNT(*) FROM legal_holds"
#define SQL_MESSAGES_OF "SELECT m.id, m.source, m.state, m.payload_path," \
    " m.created_at, m.size, EXISTS (SELECT 1 FROM legal_holds l WHERE" \
    " l.message_id = m.id) FROM messages m WHERE m.source IN (SELECT value" \
    " FROM json_each(?1)) OR EXISTS (SELECT 1 FROM hops h WHERE" \
    " h.message_id = m.id AND h.connector IN (SELECT value FROM" \
    " json_each(?1))) ORDER BY m.created_at, m.id"

static sqlite3_stmt *ret_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_RET[slot - 248], err);
}

void store_expired_free(struct store_expired *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++) {
        free(e[i].source);
        free(e[i].state);
        free(e[i].payload_path);
    }
    free(e);
}

/* Columns 0..5: id, source, state, payload_path, created_at, size. */
static void expired_row(sqlite3_stmt *st, struct store_expired *e)
{
    const unsigned char *id = sqlite3_column_text(st, 0);
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", id ? (const char *)id : "");
    e->source = store_col_dup(st, 1);
    e->state = store_col_dup(st, 2);
    e->payload_path = store_col_dup(st, 3);
    e->created_at = sqlite3_column_int64(st, 4);
    e->size = sqlite3_column_int64(st, 5);
}

/* Collect the rows of a bound query of expired_row's columns (column 6,
 * when held is not NULL: the hold flag). */
static int expired_rows(struct store *s, sqlite3_stmt *st,
                        struct store_expired **out, int **held, size_t *n,
                        struct error *err)
{
    size_t cap = 0;
    int rc;
    *out = NULL;
    *n = 0;
    if (held)
        *held = NULL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            void *p = realloc(*out, cap * sizeof(**out));
            void *q = held ? realloc(*held, cap * sizeof(int)) : NULL;
            if (p)
                *out = p;
            if (q)
                *held = q;
            if (p == NULL || (held && q == NULL)) {
                rc = SQLITE_NOMEM;
                break;
            }
        }
        if (held)
            (*held)[*n] = sqlite3_column_int(st, 6);
        expired_row(st, &(*out)[(*n)++]);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    store_expired_free(*out, *n);
    *out = NULL;
    *n = 0;
    if (held) {
        free(*held);
        *held = NULL;
    }
    return store_db_error(s, err, "list messages to purge");
}

int store_purge_candidates(struct store *s, const char *source,
                           int64_t before, size_t max,
                           struct store_expired **out, size_t *n,
                           struct error *err)
{
    if (store_pg(s))
        return pgs_purge_candidates(store_pg(s), source, before, max, out, n,
                                    err);
    sqlite3_stmt *st = ret_stmt(s, R_CANDIDATES, err);
    if (st == NULL)
        return -1;
    if (source)
        store_bind_text(st, 1, source);
    sqlite3_bind_int64(st, 2, before);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
    return expired_rows(s, st, out, NULL, n, err);
}

/* One integer of a bound one-row query. */
static int one_int(struct store *s, sqlite3_stmt *st, int64_t *out,
                   struct error *err, const char *what)
{
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, what);
    return 0;
}

int store_purge_count(struct store *s, const char *source, int64_t before,
                      int64_t *count, int64_t *bytes, struct error *err)
{
    if (store_pg(s))
        return pgs_purge_count(store_pg(s), source, before, count, bytes, err);
    sqlite3_stmt *st = ret_stmt(s, R_COUNT, err);
    *count = *bytes = 0;
    if (st == NULL)
        return -1;
    if (source)
        store_bind_text(st, 1, source);
    sqlite3_bind_int64(st, 2, before);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *count = sqlite3_column_int64(st, 0);
        *bytes = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return store_db_error(s, err, "count messages to purge");
    return 0;
}

int store_purge_held(struct store *s, const char *source, int64_t before,
                     int64_t *count, struct error *err)
{
    if (store_pg(s))
        return pgs_purge_held(store_pg(s), source, before, count, err);
    sqlite3_stmt *st = ret_stmt(s, R_HELD_BEFORE, err);
    if (st == NULL)
        return -1;
    if (source)
        store_bind_text(st, 1, source);
    sqlite3_bind_int64(st, 2, before);
    return one_int(s, st, count, err, "count held messages");
}

void store_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

int store_message_sources(struct store *s, char ***out, size_t *n,
                          struct error *err)
{
    if (store_pg(s))
        return pgs_message_sources(store_pg(s), out, n, err);
    sqlite3_stmt *st = ret_stmt(s, R_SOURCES, err);
    *out = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **p = realloc(*out, (*n + 1) * sizeof(char *));
        char *name = store_col_dup(st, 0);
        if (p == NULL || name == NULL) {
            free(name);
            if (p)
                *out = p;
            rc = SQLITE_NOMEM;
            break;
        }
        *out = p;
        (*out)[(*n)++] = name;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    store_names_free(*out, *n);
    *out = NULL;
    *n = 0;
    return store_db_error(s, err, "list message sources");
}

/* Run slot with ?1 = id. */
static int by_id(struct store *s, int slot, const char *id,
                 struct error *err, const char *what)
{
    sqlite3_stmt *st = ret_stmt(s, slot, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    return store_step_done(s, st, err, what);
}

/* Inside the purge's transaction: 1 deleted, 0 no longer a candidate. */
static int purge_one(struct store *s, const char *id, int64_t now,
                     struct error *err)
{
    sqlite3_stmt *st = ret_stmt(s, R_STILL_CANDIDATE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    char *path = rc == SQLITE_ROW ? store_col_dup(st, 0) : NULL;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "check a message to purge");
    if (rc == SQLITE_DONE)
        return 0;
    int ok = 0;
    if (path) {
        st = ret_stmt(s, R_PENDING_ADD, err);
        if (st == NULL) {
            free(path);
            return -1;
        }
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, path);
        sqlite3_bind_int64(st, 3, now);
        ok = store_step_done(s, st, err, "list a payload to shred");
        free(path);
    }
    static const int dels[] = { R_DEL_EVENTS, R_DEL_RECEIPTS, R_DEL_REFUSAL,
                                R_DEL_HOPS, R_DEL_JOBS, R_DEL_MESSAGE };
    for (size_t i = 0; ok == 0 && i < sizeof(dels) / sizeof(dels[0]); i++)
        ok = by_id(s, dels[i], id, err, "delete a purged message");
    return ok < 0 ? -1 : 1;
}

int store_purge_delete(struct store *s, const char *const *ids, size_t n,
                       int64_t now, int *gone, struct error *err)
{
    if (store_pg(s))
        return pgs_purge_delete(store_pg(s), ids, n, now, gone, err);
    memset(gone, 0, n * sizeof(*gone));
    if (n == 0)
        return 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int rc = purge_one(s, ids[i], now, err);
        if (rc < 0) {
            memset(gone, 0, n * sizeof(*gone));
            return store_tx_fail(s);
        }
        gone[i] = rc;
    }
    if (store_tx_commit(s, err) < 0) {
        memset(gone, 0, n * sizeof(*gone));
        return store_tx_fail(s);
    }
    return 0;
}

void store_pending_free(struct store_pending *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++)
        free(p[i].payload_path);
    free(p);
}

int store_purge_pending(struct store *s, size_t max,
                        struct store_pending **out, size_t *n,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_purge_pending(store_pg(s), max, out, n, err);
    sqlite3_stmt *st = ret_stmt(s, R_PENDING, err);
    *out = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    *out = calloc(max + 1, sizeof(**out));
    if (*out == NULL)
        return error_set(err, "out of memory");
    int rc = SQLITE_DONE;
    while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *id = sqlite3_column_text(st, 0);
        snprintf((*out)[*n].id, ID_LEN + 1, "%s", id ? (const char *)id : "");
        (*out)[(*n)++].payload_path = store_col_dup(st, 1);
    }
    if (*n < max && rc != SQLITE_DONE) {
        sqlite3_reset(st);
        store_pending_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "list payloads to shred");
    }
    sqlite3_reset(st);
    return 0;
}

int store_purge_done(struct store *s, const char *id, struct error *err)
{
    if (store_pg(s))
        return pgs_purge_done(store_pg(s), id, err);
    return by_id(s, R_PENDING_DONE, id, err, "forget a shredded payload");
}

/* ---- legal holds ---------------------------------------------------------------- */

void store_hold_clear(struct store_hold *h)
{
    free(h->actor);
    free(h->reason);
    memset(h, 0, sizeof(*h));
}

/* 1 when message id exists, 0 not, -1 error. */
static int message_exists(struct store *s, const char *id, struct error *err)
{
    sqlite3_stmt *st = ret_stmt(s, R_MSG_EXISTS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "find a message");
    return rc == SQLITE_ROW;
}

int store_hold_set(struct store *s, const char *id, const char *actor,
                   const char *reason, int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_hold_set(store_pg(s), id, actor, reason, now, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    int found = message_exists(s, id, err);
    sqlite3_stmt *st = found == 1 ? ret_stmt(s, R_HOLD_SET, err) : NULL;
    if (found < 0 || (found == 1 && st == NULL))
        return store_tx_fail(s);
    if (found == 0) {
        store_tx_fail(s);
        return 1;
    }
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    store_bind_text(st, 3, actor);
    store_bind_text(st, 4, reason);
    if (store_step_done(s, st, err, "place a legal hold") < 0)
        return store_tx_fail(s);
    int added = sqlite3_changes(store_db(s)) > 0;
    if (store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    return added ? 0 : 2;
}

int store_hold_lift(struct store *s, const char *id, struct error *err)
{
    if (store_pg(s))
        return pgs_hold_lift(store_pg(s), id, err);
    if (by_id(s, R_HOLD_LIFT, id, err, "lift a legal hold") < 0)
        return -1;
    return sqlite3_changes(store_db(s)) > 0 ? 0 : 1;
}

int store_hold_get(struct store *s, const char *id, struct store_hold *out,
                   struct error *err)
{
    if (store_pg(s))
        return pgs_hold_get(store_pg(s), id, out, err);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = ret_stmt(s, R_HOLD_GET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->at = sqlite3_column_int64(st, 0);
        out->actor = store_col_dup(st, 1);
        out->reason = store_col_dup(st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read a legal hold");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_hold_count(struct store *s, int64_t *count, struct error *err)
{
    if (store_pg(s))
        return pgs_hold_count(store_pg(s), count, err);
    sqlite3_stmt *st = store_stmt_once(s, SQL_HOLD_COUNT, "prepare", err);
    if (st == NULL)
        return -1;
    int rc = one_int(s, st, count, err, "count legal holds");
    sqlite3_finalize(st);
    return rc;
}

int store_messages_of(struct store *s, const char *conns_json,
                      struct store_expired **out, int **held, size_t *n,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_messages_of(store_pg(s), conns_json, out, held, n, err);
    sqlite3_stmt *st = store_stmt_once(s, SQL_MESSAGES_OF, "prepare", err);
    *out = NULL;
    *held = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, conns_json);
    int rc = expired_rows(s, st, out, held, n, err);
    sqlite3_finalize(st);
    return rc;
}
