/*
 * sqlite_net.c - the SQLite statements of net_store.h: the defender's bans
 * (table of migration 2 in sqlite.c).
 *
 * Owns statement cache slots 96..127 of store_stmt_ext and nothing else.
 * Every statement is a constant string with bound parameters. Must never
 * decide policy (defender.c does) or build SQL from data. On a PostgreSQL
 * store each entry point hands the call to its pg_net.c twin.
 *
 * The failure counts of the nodes (store_failures_*) exist only on
 * PostgreSQL: a SQLite store has one node, whose defender counts alone, so
 * here they do nothing and find nothing (no table, no migration).
 */
#include "store/net_store.h"

#include "store/pg_net.h"
#include "store/store_internal.h"

enum { N_BAN_PUT = 96, N_BAN_EACH, N_BAN_PRUNE, N_LAST };
_Static_assert(N_LAST <= STORE_EXT_SLOTS,
               "sqlite_net.c owns statement slots 96..127");

static const char *const SQL_NET[N_LAST - 96] = {
    [N_BAN_PUT - 96] = "INSERT INTO bans(address, failures, level,"
        " banned_until, updated_at) VALUES(?1, ?2, ?3, ?4, ?5)"
        " ON CONFLICT(address) DO UPDATE SET failures = excluded.failures,"
        " level = excluded.level, banned_until = excluded.banned_until,"
        " updated_at = excluded.updated_at",
    [N_BAN_EACH - 96] = "SELECT address, failures, level, banned_until,"
        " updated_at FROM bans WHERE banned_until >= ?1 ORDER BY address",
    [N_BAN_PRUNE - 96] = "DELETE FROM bans WHERE banned_until < ?1",
};

static sqlite3_stmt *net_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_NET[slot - 96], err);
}

int store_ban_put(struct store *s, const struct store_ban *b,
                  struct error *err)
{
    if (store_pg(s))
        return pgs_ban_put(store_pg(s), b, err);
    sqlite3_stmt *st = net_stmt(s, N_BAN_PUT, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, b->address);
    sqlite3_bind_int(st, 2, b->failures);
    sqlite3_bind_int(st, 3, b->level);
    sqlite3_bind_int64(st, 4, b->banned_until);
    sqlite3_bind_int64(st, 5, b->updated_at);
    return store_step_done(s, st, err, "record a ban");
}

int store_ban_each(struct store *s, int64_t min_until,
                   int (*cb)(const struct store_ban *b, void *arg), void *arg,
                   struct error *err)
{
    if (store_pg(s))
        return pgs_ban_each(store_pg(s), min_until, cb, arg, err);
    sqlite3_stmt *st = net_stmt(s, N_BAN_EACH, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, min_until);
    int rc = SQLITE_DONE, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_ban b = {
            .address = (const char *)sqlite3_column_text(st, 0),
            .failures = sqlite3_column_int(st, 1),
            .level = sqlite3_column_int(st, 2),
            .banned_until = sqlite3_column_int64(st, 3),
            .updated_at = sqlite3_column_int64(st, 4),
        };
        if (b.address)
            stop = cb(&b, arg);
    }
    sqlite3_reset(st);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "read bans");
}

int store_ban_prune(struct store *s, int64_t before, struct error *err)
{
    if (store_pg(s))
        return pgs_ban_prune(store_pg(s), before, err);
    sqlite3_stmt *st = net_stmt(s, N_BAN_PRUNE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, before);
    return store_step_done(s, st, err, "prune bans");
}

int store_failures_put(struct store *s, const struct store_failures *f,
                       struct error *err)
{
    return store_pg(s) ? pgs_failures_put(store_pg(s), f, err) : 0;
}

int store_failures_each(struct store *s, const char *node, int64_t since,
                        int (*cb)(const char *address, int failures,
                                  void *arg),
                        void *arg, struct error *err)
{
    return store_pg(s) ? pgs_failures_each(store_pg(s), node, since, cb, arg,
                                           err) : 0;
}

int store_failures_prune(struct store *s, int64_t before, struct error *err)
{
    return store_pg(s) ? pgs_failures_prune(store_pg(s), before, err) : 0;
}
