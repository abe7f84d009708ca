/*
 * sqlite_payload.c - payload_store.h on a SQLite store: there is nothing
 * to do here, because one node keeps its payloads as files (wharf.conf
 * refuses `payload_dir = database` with store = sqlite). Each entry point
 * hands the call over to pg_payload.c on a PostgreSQL store, and fails
 * clearly on SQLite.
 */
#include "store/payload_store.h"

#include "store/pg_payload.h"
#include "store/store_internal.h"

static int payload_no_sqlite(struct error *err)
{
    return error_set(err, "payloads are kept in the database only on a "
                     "PostgreSQL store (payload_dir = database); a SQLite "
                     "store keeps payload files");
}

int store_payload_begin(struct store *s, int synced, struct error *err)
{
    return store_pg(s) ? pgs_payload_begin(store_pg(s), synced, err)
                       : payload_no_sqlite(err);
}

int store_payload_commit(struct store *s, struct error *err)
{
    return store_pg(s) ? pgs_payload_commit(store_pg(s), err)
                       : payload_no_sqlite(err);
}

void store_payload_rollback(struct store *s)
{
    if (store_pg(s))
        pgs_payload_rollback(store_pg(s));
}

int store_payload_put(struct store *s, const char *path, int64_t seq,
                      const void *b, size_t n, struct error *err)
{
    return store_pg(s) ? pgs_payload_put(store_pg(s), path, seq, b, n, err)
                       : payload_no_sqlite(err);
}

int store_payload_read_begin(struct store *s, struct error *err)
{
    return store_pg(s) ? pgs_payload_read_begin(store_pg(s), err)
                       : payload_no_sqlite(err);
}

void store_payload_read_end(struct store *s)
{
    if (store_pg(s))
        pgs_payload_read_end(store_pg(s));
}

int store_payload_get(struct store *s, const char *path, int64_t seq,
                      unsigned char **b, size_t *n, struct error *err)
{
    *b = NULL;
    *n = 0;
    return store_pg(s) ? pgs_payload_get(store_pg(s), path, seq, b, n, err)
                       : payload_no_sqlite(err);
}

int store_payload_head(struct store *s, const char *path, int max,
                       unsigned char **rows, size_t *lens, int *got,
                       int64_t *total, struct error *err)
{
    *got = 0;
    *total = 0;
    return store_pg(s) ? pgs_payload_head(store_pg(s), path, max, rows, lens,
                                          got, total, err)
                       : payload_no_sqlite(err);
}

int store_payload_size(struct store *s, const char *path, uint64_t *size,
                       struct error *err)
{
    return store_pg(s) ? pgs_payload_size(store_pg(s), path, size, err)
                       : payload_no_sqlite(err);
}

int store_payload_replace(struct store *s, const char *path, int64_t seq,
                          const void *b, size_t n, struct error *err)
{
    return store_pg(s)
           ? pgs_payload_replace(store_pg(s), path, seq, b, n, err)
           : payload_no_sqlite(err);
}

int store_payload_delete(struct store *s, const char *path,
                         struct error *err)
{
    return store_pg(s) ? pgs_payload_delete(store_pg(s), path, err)
                       : payload_no_sqlite(err);
}

int store_payload_sweep(struct store *s, int64_t before_ms, int64_t *deleted,
                        struct error *err)
{
    *deleted = 0;
    return store_pg(s)
           ? pgs_payload_sweep(store_pg(s), before_ms, deleted, err)
           : 0;            /* no rows to sweep on SQLite */
}
