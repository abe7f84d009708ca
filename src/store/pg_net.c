/*
 * pg_net.c - the PostgreSQL statements of net_store.h (pg_net.h): the
 * defender's bans, table `bans` of PG_MIGRATIONS 2 in pg.c, and each
 * node's failure counts per address, table `net_failures` of PG_MIGRATIONS
 * 4.
 *
 * Owns statement slots 416..423 of pg_internal.h (the rest of 416..479 is
 * pg_partners.c's and pg_secrets.c's) and nothing else. Every statement is
 * a constant string with $n parameters.
 *
 * Several nodes may write the same address: a put is one upsert (INSERT
 * ... ON CONFLICT DO UPDATE), so the row is whole, the last writer's; the
 * counting is the defender's, in memory, per node (src/net/defender.c);
 * each node publishes its counts (one row per address and node, written
 * only by that node) and reads the sums of the others' to decide a ban
 * on the failures of the whole cluster.
 *
 * Must never: decide policy (defender.c does) or build SQL from data.
 */
#include "store/pg_net.h"

#include <stdlib.h>

#include "store/pg_internal.h"

#define SLOT_BASE 416

enum { N_BAN_PUT, N_BAN_EACH, N_BAN_PRUNE, N_FAIL_PUT, N_FAIL_DEL,
       N_FAIL_SUMS, N_FAIL_PRUNE, N_LAST };
_Static_assert(SLOT_BASE + N_LAST <= 424, "pg_net.c owns slots 416..423");

static const char *const SQL_NET[N_LAST] = {
    [N_BAN_PUT] = "INSERT INTO bans(address, failures, level,"
        " banned_until, updated_at) VALUES($1, $2, $3, $4, $5)"
        " ON CONFLICT(address) DO UPDATE SET failures = excluded.failures,"
        " level = excluded.level, banned_until = excluded.banned_until,"
        " updated_at = excluded.updated_at",
    [N_BAN_EACH] = "SELECT address, failures, level, banned_until,"
        " updated_at FROM bans WHERE banned_until >= $1 ORDER BY address",
    [N_BAN_PRUNE] = "DELETE FROM bans WHERE banned_until < $1",
    [N_FAIL_PUT] = "INSERT INTO net_failures(address, node, failures,"
        " first_at, last_at) VALUES($1, $2, $3, $4, $5)"
        " ON CONFLICT(address, node) DO UPDATE SET"
        " failures = excluded.failures, first_at = excluded.first_at,"
        " last_at = excluded.last_at",
    [N_FAIL_DEL] = "DELETE FROM net_failures WHERE address = $1"
        " AND node = $2",
    [N_FAIL_SUMS] = "SELECT address, sum(failures)::bigint FROM"
        " net_failures WHERE node <> $1 AND last_at >= $2"
        " GROUP BY address ORDER BY address",
    [N_FAIL_PRUNE] = "DELETE FROM net_failures WHERE last_at < $1",
};

int pgs_ban_put(struct pg_store *p, const struct store_ban *b,
                struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, b->address);
    pg_arg_int(&a, b->failures);
    pg_arg_int(&a, b->level);
    pg_arg_int(&a, b->banned_until);
    pg_arg_int(&a, b->updated_at);
    return pg_run_done(p, SLOT_BASE + N_BAN_PUT, SQL_NET[N_BAN_PUT], &a,
                       "record a ban", NULL, err);
}

int pgs_ban_each(struct pg_store *p, int64_t min_until,
                 int (*cb)(const struct store_ban *b, void *arg), void *arg,
                 struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, min_until);
    PGresult *r = pg_run(p, SLOT_BASE + N_BAN_EACH, SQL_NET[N_BAN_EACH], &a,
                         "read bans", err);
    if (r == NULL)
        return -1;
    int stop = 0;
    for (int i = 0; !stop && i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 0))
            continue;
        struct store_ban b = {
            .address = PQgetvalue(r, i, 0),
            .failures = (int)pg_val_int(r, i, 1),
            .level = (int)pg_val_int(r, i, 2),
            .banned_until = pg_val_int(r, i, 3),
            .updated_at = pg_val_int(r, i, 4),
        };
        stop = cb(&b, arg);
    }
    PQclear(r);
    return stop;
}

int pgs_ban_prune(struct pg_store *p, int64_t before, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, before);
    return pg_run_done(p, SLOT_BASE + N_BAN_PRUNE, SQL_NET[N_BAN_PRUNE], &a,
                       "prune bans", NULL, err);
}

int pgs_failures_put(struct pg_store *p, const struct store_failures *f,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, f->address);
    pg_arg_text(&a, f->node);
    if (f->failures <= 0)
        return pg_run_done(p, SLOT_BASE + N_FAIL_DEL, SQL_NET[N_FAIL_DEL],
                           &a, "forget failures", NULL, err);
    pg_arg_int(&a, f->failures);
    pg_arg_int(&a, f->first_at);
    pg_arg_int(&a, f->last_at);
    return pg_run_done(p, SLOT_BASE + N_FAIL_PUT, SQL_NET[N_FAIL_PUT], &a,
                       "publish failures", NULL, err);
}

int pgs_failures_each(struct pg_store *p, const char *node, int64_t since,
                      int (*cb)(const char *address, int failures, void *arg),
                      void *arg, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, node);
    pg_arg_int(&a, since);
    PGresult *r = pg_run(p, SLOT_BASE + N_FAIL_SUMS, SQL_NET[N_FAIL_SUMS],
                         &a, "read the failures of the other nodes", err);
    if (r == NULL)
        return -1;
    int stop = 0;
    for (int i = 0; !stop && i < PQntuples(r); i++) {
        int64_t n = pg_val_int(r, i, 1);
        if (!PQgetisnull(r, i, 0))
            stop = cb(PQgetvalue(r, i, 0), n > 1000000 ? 1000000 : (int)n,
                      arg);
    }
    PQclear(r);
    return stop;
}

int pgs_failures_prune(struct pg_store *p, int64_t before, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, before);
    return pg_run_done(p, SLOT_BASE + N_FAIL_PRUNE, SQL_NET[N_FAIL_PRUNE],
                       &a, "prune failures", NULL, err);
}
