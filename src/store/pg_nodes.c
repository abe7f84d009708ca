/*
 * pg_nodes.c - node_store.h on PostgreSQL: the row each node of a cluster
 * keeps in `nodes` (migration 3 in pg.c) and the list with the leases
 * each holds (its lease owners start with its id and '/').
 *
 * Owns statement slots 480..487 (pg_internal.h). A beat is one upsert, so
 * nodes beating at once never conflict. Leadership of a cluster-wide job
 * is a session advisory lock: asked once per connection (p->leads), held
 * until the connection ends (a dead node's ends with it). Must never build
 * SQL from data.
 */
#include "store/pg_nodes.h"

#include <stdlib.h>

#include "store/pg_internal.h"

enum { D_BEAT = 480, D_PRUNE, D_STOPPED, D_LIST, D_LEAD, D_LAST };
_Static_assert(D_LAST <= PG_SLOTS, "pg_nodes.c owns slots 480..487");

#define WEEK_MS (7LL * 24 * 3600 * 1000)

static const char *const SQL_NODES[D_LAST - 480] = {
    [D_BEAT - 480] = "INSERT INTO nodes(id, address, version, started_at,"
        " seen_at, beat_ms) VALUES($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT(id) DO UPDATE SET address = excluded.address,"
        " version = excluded.version, seen_at = excluded.seen_at,"
        " beat_ms = excluded.beat_ms, stopped_at = NULL",
    [D_PRUNE - 480] = "DELETE FROM nodes WHERE seen_at < $1",
    [D_STOPPED - 480] = "UPDATE nodes SET stopped_at = $2 WHERE id = $1",
    [D_LIST - 480] = "SELECT n.id, n.address, n.version, n.started_at,"
        " n.seen_at, n.beat_ms, COALESCE(n.stopped_at, 0),"
        " (SELECT COUNT(*) FROM hops h WHERE h.state = 'processing'"
        "   AND substr(h.lease_owner, 1, length(n.id) + 1) = n.id || '/')"
        " + (SELECT COUNT(*) FROM jobs j WHERE j.state = 'processing'"
        "   AND substr(j.lease_owner, 1, length(n.id) + 1) = n.id || '/')"
        " FROM nodes n ORDER BY n.started_at DESC, n.id LIMIT 200",
    /* class 1466462830 ("Whrn"): leadership of cluster-wide jobs */
    [D_LEAD - 480] = "SELECT pg_try_advisory_lock(1466462830, $1::int)",
};

static int run_done(struct pg_store *p, int slot, const struct pg_args *a,
                    const char *what, struct error *err)
{
    return pg_run_done(p, slot, SQL_NODES[slot - 480], a, what, NULL, err);
}

int pgs_node_beat(struct pg_store *p, const struct store_node *n,
                  struct error *err)
{
    struct pg_args a = {0}, old = {0};
    pg_arg_text(&a, n->id);
    pg_arg_text(&a, n->address);
    pg_arg_text(&a, n->version);
    pg_arg_int(&a, n->started_at);
    pg_arg_int(&a, n->seen_at);
    pg_arg_int(&a, n->beat_ms);
    pg_arg_int(&old, n->seen_at - WEEK_MS);
    if (run_done(p, D_BEAT, &a, "record this node", err) < 0)
        return -1;
    return run_done(p, D_PRUNE, &old, "forget old nodes", err);
}

int pgs_node_stopped(struct pg_store *p, const char *id, int64_t at,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    pg_arg_int(&a, at);
    return run_done(p, D_STOPPED, &a, "record this node's stop", err);
}

int pgs_nodes(struct pg_store *p, struct store_node **out, size_t *n,
              struct error *err)
{
    *out = NULL;
    *n = 0;
    PGresult *r = pg_run(p, D_LIST, SQL_NODES[D_LIST - 480], NULL,
                         "list nodes", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    *out = calloc((size_t)rows + 1, sizeof(**out));
    if (*out == NULL) {
        PQclear(r);
        return error_set(err, "out of memory");
    }
    for (int i = 0; i < rows; i++, (*n)++) {
        struct store_node *d = &(*out)[i];
        d->id = pg_val_dup(r, i, 0);
        d->address = pg_val_dup(r, i, 1);
        d->version = pg_val_dup(r, i, 2);
        d->started_at = pg_val_int(r, i, 3);
        d->seen_at = pg_val_int(r, i, 4);
        d->beat_ms = pg_val_int(r, i, 5);
        d->stopped_at = pg_val_int(r, i, 6);
        d->leases = pg_val_int(r, i, 7);
    }
    PQclear(r);
    return 0;
}

int pgs_lead(struct pg_store *p, int job, struct error *err)
{
    unsigned bit = 1u << (job & 31);
    if (p->leads & bit)
        return 1;           /* taken on this connection, still held */
    struct pg_args a = {0};
    pg_arg_int(&a, job);
    PGresult *r = pg_run(p, D_LEAD, SQL_NODES[D_LEAD - 480], &a,
                         "ask to lead", err);
    if (r == NULL)
        return -1;
    int led = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (led)
        p->leads |= bit;
    return led;
}
