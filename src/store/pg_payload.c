/*
 * pg_payload.c - the PostgreSQL statements of payload_store.h: payloads
 * kept as rows of table payload_segments (PG_MIGRATIONS 5 in pg.c), one
 * row per sealed segment, seq 0 the header.
 *
 * Owns statement slots 496..511 of pg_internal.h and nothing else. Every
 * statement is a constant string with $n parameters; segment bytes go in
 * and come back in binary (no hex text doubling them).
 *
 * The column holding the bytes is STORAGE EXTERNAL: they are encrypted,
 * so the server is not asked to try compressing them. A row is at most
 * one segment (64 KiB + its tag), so a reader or writer holds one row's
 * bytes at a time whatever the payload's size.
 *
 * Must never: see plaintext, build SQL from data, or leave a writer's
 * transaction open after a failure.
 */
#include "store/pg_payload.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "util/id.h"

enum { PP_PUT = 496, PP_GET, PP_SIZE, PP_REPLACE, PP_DELETE, PP_SWEEP,
       PP_HEAD, PP_LAST };
_Static_assert(PP_LAST <= 512, "pg_payload.c owns statement slots 496..511");

static const char *const SQL_PAYLOAD[PP_LAST - 496] = {
    [PP_PUT - 496] = "INSERT INTO payload_segments(path, seq, created_at,"
        " data) VALUES($1, $2, $3, $4)",
    [PP_GET - 496] = "SELECT data FROM payload_segments WHERE path = $1"
        " AND seq = $2",
    [PP_SIZE - 496] = "SELECT COUNT(*), COALESCE(SUM(length(data)), 0)"
        " FROM payload_segments WHERE path = $1",
    [PP_REPLACE - 496] = "UPDATE payload_segments SET data = $3"
        " WHERE path = $1 AND seq = $2",
    [PP_DELETE - 496] = "DELETE FROM payload_segments WHERE path = $1",
    [PP_SWEEP - 496] = "WITH gone AS (DELETE FROM payload_segments WHERE"
        " path IN (SELECT h.path FROM payload_segments h WHERE h.seq = 0"
        " AND h.created_at < $1 AND NOT EXISTS (SELECT 1 FROM messages m"
        " WHERE m.payload_path = h.path) LIMIT 1000) RETURNING seq)"
        " SELECT COUNT(*) FROM gone WHERE seq = 0",
    [PP_HEAD - 496] = "SELECT data, (SELECT COUNT(*) FROM payload_segments"
        " WHERE path = $1) FROM payload_segments WHERE path = $1"
        " AND seq < $2 ORDER BY seq",
};

static const char *pp_sql(int slot)
{
    return SQL_PAYLOAD[slot - 496];
}

int pgs_payload_begin(struct pg_store *p, int synced, struct error *err)
{
    if (synced)
        return pg_tx_begin(p, err);
    if (pg_exec(p, "BEGIN; SET LOCAL synchronous_commit = off", err) < 0) {
        if (PQtransactionStatus(p->conn) != PQTRANS_IDLE)
            pg_tx_fail(p);
        return -1;
    }
    p->in_tx = true;
    return 0;
}

int pgs_payload_commit(struct pg_store *p, struct error *err)
{
    return pg_tx_end(p, err);
}

void pgs_payload_rollback(struct pg_store *p)
{
    if (p->in_tx)
        pg_tx_fail(p);
}

int pgs_payload_put(struct pg_store *p, const char *path, int64_t seq,
                    const void *b, size_t n, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, path);
    pg_arg_int(&a, seq);
    pg_arg_int(&a, time_now_ms());
    pg_arg_blob(&a, n > 0 ? b : "", n);
    return pg_run_done(p, PP_PUT, pp_sql(PP_PUT), &a, "store a payload "
                       "segment", NULL, err);
}

int pgs_payload_read_begin(struct pg_store *p, struct error *err)
{
    if (pg_exec(p, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                err) < 0)
        return -1;
    p->in_tx = true;
    return 0;
}

void pgs_payload_read_end(struct pg_store *p)
{
    if (p->in_tx)
        pg_tx_fail(p);          /* read only: a rollback ends it */
}

int pgs_payload_get(struct pg_store *p, const char *path, int64_t seq,
                    unsigned char **b, size_t *n, struct error *err)
{
    struct pg_args a = {0};
    *b = NULL;
    *n = 0;
    pg_arg_text(&a, path);
    pg_arg_int(&a, seq);
    a.binary_rows = 1;
    PGresult *r = pg_run(p, PP_GET, pp_sql(PP_GET), &a, "read a payload "
                         "segment", err);
    if (r == NULL)
        return -1;
    int rc = 1;
    if (PQntuples(r) == 1) {
        size_t len = (size_t)PQgetlength(r, 0, 0);
        *b = malloc(len ? len : 1);
        if (*b == NULL) {
            rc = error_set(err, "out of memory reading a payload segment");
        } else {
            memcpy(*b, PQgetvalue(r, 0, 0), len);
            *n = len;
            rc = 0;
        }
    }
    PQclear(r);
    return rc;
}

/* A BIGINT column of a binary row: 8 bytes, big endian. */
static int64_t pp_int8(const PGresult *r, int row, int col)
{
    const unsigned char *b = (const unsigned char *)PQgetvalue(r, row, col);
    uint64_t v = 0;
    for (int i = 0; PQgetlength(r, row, col) == 8 && i < 8; i++)
        v = v << 8 | b[i];
    return (int64_t)v;
}

int pgs_payload_head(struct pg_store *p, const char *path, int max,
                     unsigned char **rows, size_t *lens, int *got,
                     int64_t *total, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, path);
    pg_arg_int(&a, max);
    a.binary_rows = 1;
    PGresult *r = pg_run(p, PP_HEAD, pp_sql(PP_HEAD), &a, "read a payload",
                         err);
    if (r == NULL)
        return -1;
    int n = PQntuples(r) < max ? PQntuples(r) : max, rc = n > 0 ? 0 : 1;
    *total = n > 0 ? pp_int8(r, 0, 1) : 0;
    for (int i = 0; i < n && rc == 0; i++) {
        lens[i] = (size_t)PQgetlength(r, i, 0);
        if ((rows[i] = malloc(lens[i] ? lens[i] : 1)) == NULL) {
            rc = error_set(err, "out of memory reading a payload");
            break;
        }
        memcpy(rows[i], PQgetvalue(r, i, 0), lens[i]);
        (*got)++;
    }
    PQclear(r);
    return rc;
}

int pgs_payload_size(struct pg_store *p, const char *path, uint64_t *size,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, path);
    PGresult *r = pg_run(p, PP_SIZE, pp_sql(PP_SIZE), &a, "size a payload",
                         err);
    if (r == NULL)
        return -1;
    int64_t rows = pg_val_int(r, 0, 0);
    *size = (uint64_t)pg_val_int(r, 0, 1);
    PQclear(r);
    return rows > 0 ? 0 : 1;
}

int pgs_payload_replace(struct pg_store *p, const char *path, int64_t seq,
                        const void *b, size_t n, struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_text(&a, path);
    pg_arg_int(&a, seq);
    pg_arg_blob(&a, n > 0 ? b : "", n);
    if (pg_run_done(p, PP_REPLACE, pp_sql(PP_REPLACE), &a, "rewrite a "
                    "payload header", &changed, err) < 0)
        return -1;
    return changed > 0 ? 0 : 1;
}

int pgs_payload_delete(struct pg_store *p, const char *path,
                       struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, path);
    return pg_run_done(p, PP_DELETE, pp_sql(PP_DELETE), &a, "delete a "
                       "payload", NULL, err);
}

int pgs_payload_sweep(struct pg_store *p, int64_t before_ms,
                      int64_t *deleted, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, before_ms);
    PGresult *r = pg_run(p, PP_SWEEP, pp_sql(PP_SWEEP), &a, "sweep payloads "
                         "no message names", err);
    if (r == NULL)
        return -1;
    *deleted = pg_val_int(r, 0, 0);
    PQclear(r);
    return 0;
}
