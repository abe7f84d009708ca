/*
 * sqlite_nodes.c - the SQLite statements of node_store.h: the row each
 * running serve keeps in `nodes` (migration 12 in sqlite.c), and the list
 * with the leases each node holds. Hands every call to pg_nodes.c on a
 * PostgreSQL store.
 *
 * Owns statement cache slots 304..311 of store_stmt_ext and nothing else.
 * Must never build SQL from data.
 */
#include "store/node_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_nodes.h"
#include "store/store_internal.h"

enum { D_BEAT = 304, D_PRUNE, D_STOPPED, D_LIST, D_LAST };
_Static_assert(D_LAST <= STORE_EXT_SLOTS,
               "sqlite_nodes.c owns statement slots 304..311");

#define WEEK_MS (7LL * 24 * 3600 * 1000)

static const char *const SQL_NODES[D_LAST - 304] = {
    [D_BEAT - 304] = "INSERT INTO nodes(id, address, version, started_at,"
        " seen_at, beat_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
        " ON CONFLICT(id) DO UPDATE SET address = excluded.address,"
        " version = excluded.version, seen_at = excluded.seen_at,"
        " beat_ms = excluded.beat_ms, stopped_at = NULL",
    [D_PRUNE - 304] = "DELETE FROM nodes WHERE seen_at < ?1",
    [D_STOPPED - 304] = "UPDATE nodes SET stopped_at = ?2 WHERE id = ?1",
    /* a node's lease owners are "id/..." (core/engine.c) */
    [D_LIST - 304] = "SELECT n.id, n.address, n.version, n.started_at,"
        " n.seen_at, n.beat_ms, COALESCE(n.stopped_at, 0),"
        " (SELECT COUNT(*) FROM hops h WHERE h.state = 'processing'"
        "   AND substr(h.lease_owner, 1, length(n.id) + 1) = n.id || '/')"
        " + (SELECT COUNT(*) FROM jobs j WHERE j.state = 'processing'"
        "   AND substr(j.lease_owner, 1, length(n.id) + 1) = n.id || '/')"
        " FROM nodes n ORDER BY n.started_at DESC, n.id LIMIT 200",
};

static sqlite3_stmt *node_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_NODES[slot - 304], err);
}

int store_node_beat(struct store *s, const struct store_node *n,
                    struct error *err)
{
    if (store_pg(s))
        return pgs_node_beat(store_pg(s), n, err);
    sqlite3_stmt *st = node_stmt(s, D_BEAT, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, n->id);
    store_bind_text(st, 2, n->address);
    store_bind_text(st, 3, n->version);
    sqlite3_bind_int64(st, 4, n->started_at);
    sqlite3_bind_int64(st, 5, n->seen_at);
    sqlite3_bind_int64(st, 6, n->beat_ms);
    if (store_step_done(s, st, err, "record this node") < 0 ||
        (st = node_stmt(s, D_PRUNE, err)) == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, n->seen_at - WEEK_MS);
    return store_step_done(s, st, err, "forget old nodes");
}

int store_node_stopped(struct store *s, const char *id, int64_t at,
                       struct error *err)
{
    if (store_pg(s))
        return pgs_node_stopped(store_pg(s), id, at, err);
    sqlite3_stmt *st = node_stmt(s, D_STOPPED, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, at);
    return store_step_done(s, st, err, "record this node's stop");
}

int store_nodes(struct store *s, struct store_node **out, size_t *n,
                struct error *err)
{
    if (store_pg(s))
        return pgs_nodes(store_pg(s), out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = node_stmt(s, D_LIST, err);
    if (st == NULL)
        return -1;
    *out = calloc(200, sizeof(**out));
    if (*out == NULL)
        return error_set(err, "out of memory");
    int rc = SQLITE_DONE;
    while (*n < 200 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_node *d = &(*out)[(*n)++];
        d->id = store_col_dup(st, 0);
        d->address = store_col_dup(st, 1);
        d->version = store_col_dup(st, 2);
        d->started_at = sqlite3_column_int64(st, 3);
        d->seen_at = sqlite3_column_int64(st, 4);
        d->beat_ms = sqlite3_column_int64(st, 5);
        d->stopped_at = sqlite3_column_int64(st, 6);
        d->leases = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    if (*n < 200 && rc != SQLITE_DONE) {
        store_nodes_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "list nodes");
    }
    return 0;
}

int store_lead(struct store *s, enum store_lead_job job, struct error *err)
{
    if (store_pg(s))
        return pgs_lead(store_pg(s), (int)job, err);
    return 1;               /* SQLite: the only node */
}

void store_nodes_free(struct store_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(nodes[i].id);
        free(nodes[i].address);
        free(nodes[i].version);
    }
    free(nodes);
}
