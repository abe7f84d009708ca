/*
 * sqlite_audit.c - the SQLite statements of audit_store.h: the audit trail
 * and its checkpoints (tables `audit` and `audit_checkpoints` of migration 2
 * in sqlite.c).
 *
 * Owns statement cache slots 0..31 of store_stmt_ext and nothing else.
 * Every statement is a constant string with bound parameters. Appending is
 * one IMMEDIATE transaction that reads the head, lets src/audit/ hash (and
 * maybe sign) the new entry, and inserts it (and the checkpoint), so
 * concurrent writers (serve's threads, a CLI command) serialize on the
 * write lock and the chain never forks. On a PostgreSQL store each entry
 * point hands the call to its twin in pg_audit.c (the same transaction,
 * after an advisory lock that nodes appending at once take in turn).
 *
 * Must never: compute or judge hashes and signatures (src/audit/ does),
 * update or delete an audit row (the trail is append-only: no such
 * statement exists here), hold a transaction beyond one call, or build SQL
 * from data.
 */
#include "store/audit_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_audit.h"
#include "store/store_internal.h"

enum {
    U_HEAD, U_INS, U_LIST, U_CP_LIST, U_CP_INS, U_CP_AT, U_HASH_AT,
    U_LAST
};
_Static_assert(U_LAST <= 32, "sqlite_audit.c owns statement slots 0..31");

#define ROW_COLS "seq, at, actor, address, action, target, detail," \
    " prev_hash, hash"
#define CP_COLS "seq, hash, at, key_id, signature"

static const char *const SQL_AUDIT[U_LAST] = {
    [U_HEAD] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
    [U_INS] = "INSERT INTO audit(" ROW_COLS ")"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [U_LIST] = "SELECT " ROW_COLS " FROM audit WHERE seq > ?1"
        " ORDER BY seq LIMIT ?2",
    [U_CP_LIST] = "SELECT " CP_COLS " FROM audit_checkpoints WHERE seq > ?1"
        " ORDER BY seq LIMIT ?2",
    [U_CP_INS] = "INSERT INTO audit_checkpoints(" CP_COLS ")"
        " VALUES(?1, ?2, ?3, ?4, ?5)",
    [U_CP_AT] = "SELECT 1 FROM audit_checkpoints WHERE seq = ?1",
    [U_HASH_AT] = "SELECT hash FROM audit WHERE seq = ?1",
};

#define PAGE_MAX 10000

static sqlite3_stmt *audit_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_AUDIT[slot], err);
}

/* ---- reading ------------------------------------------------------------ */

/* strdup of text column i; sets *nul when the text holds a NUL byte. */
static char *audit_col(sqlite3_stmt *st, int i, int *nul)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (t == NULL)
        return NULL;
    if (strlen((const char *)t) != (size_t)sqlite3_column_bytes(st, i))
        *nul = 1;
    return strdup((const char *)t);
}

void store_audit_rows_free(struct store_audit_row *rows, size_t n)
{
    for (size_t i = 0; rows != NULL && i < n; i++) {
        free(rows[i].actor);
        free(rows[i].address);
        free(rows[i].action);
        free(rows[i].target);
        free(rows[i].detail);
        free(rows[i].prev_hash);
        free(rows[i].hash);
    }
    free(rows);
}

void store_audit_checkpoints_free(struct store_audit_checkpoint *cps,
                                  size_t n)
{
    for (size_t i = 0; cps != NULL && i < n; i++) {
        free(cps[i].hash);
        free(cps[i].key_id);
        free(cps[i].signature);
    }
    free(cps);
}

static void audit_row_read(sqlite3_stmt *st, struct store_audit_row *r)
{
    r->seq = sqlite3_column_int64(st, 0);
    r->at = sqlite3_column_int64(st, 1);
    r->actor = audit_col(st, 2, &r->has_nul);
    r->address = audit_col(st, 3, &r->has_nul);
    r->action = audit_col(st, 4, &r->has_nul);
    r->target = audit_col(st, 5, &r->has_nul);
    r->detail = audit_col(st, 6, &r->has_nul);
    r->prev_hash = audit_col(st, 7, &r->has_nul);
    r->hash = audit_col(st, 8, &r->has_nul);
}

static void audit_cp_read(sqlite3_stmt *st, struct store_audit_checkpoint *c)
{
    int nul = 0;
    c->seq = sqlite3_column_int64(st, 0);
    c->hash = audit_col(st, 1, &nul);
    c->at = sqlite3_column_int64(st, 2);
    c->key_id = audit_col(st, 3, &nul);
    c->signature = audit_col(st, 4, &nul);
}

int store_audit_list(struct store *s, int64_t after, size_t limit,
                     struct store_audit_row **rows, size_t *n,
                     struct error *err)
{
    if (store_pg(s))
        return pgs_audit_list(store_pg(s), after, limit, rows, n, err);
    *rows = NULL;
    *n = 0;
    limit = limit > PAGE_MAX ? PAGE_MAX : limit;
    sqlite3_stmt *st = audit_stmt(s, U_LIST, err);
    if (st == NULL)
        return -1;
    struct store_audit_row *out = calloc(limit ? limit : 1, sizeof(*out));
    if (out == NULL)
        return error_set(err, "out of memory reading the audit trail");
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    size_t k = 0;
    int rc = SQLITE_DONE;
    while (k < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
        audit_row_read(st, &out[k++]);
    if (k < limit && rc != SQLITE_DONE) {
        sqlite3_reset(st);
        store_audit_rows_free(out, k);
        return store_db_error(s, err, "read the audit trail");
    }
    sqlite3_reset(st);
    *rows = out;
    *n = k;
    return 0;
}

int store_audit_checkpoints(struct store *s, int64_t after, size_t limit,
                            struct store_audit_checkpoint **cps, size_t *n,
                            struct error *err)
{
    if (store_pg(s))
        return pgs_audit_checkpoints(store_pg(s), after, limit, cps, n,
                                     err);
    *cps = NULL;
    *n = 0;
    limit = limit > PAGE_MAX ? PAGE_MAX : limit;
    sqlite3_stmt *st = audit_stmt(s, U_CP_LIST, err);
    if (st == NULL)
        return -1;
    struct store_audit_checkpoint *out = calloc(limit ? limit : 1,
                                                sizeof(*out));
    if (out == NULL)
        return error_set(err, "out of memory reading audit checkpoints");
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    size_t k = 0;
    int rc = SQLITE_DONE;
    while (k < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
        audit_cp_read(st, &out[k++]);
    if (k < limit && rc != SQLITE_DONE) {
        sqlite3_reset(st);
        store_audit_checkpoints_free(out, k);
        return store_db_error(s, err, "read audit checkpoints");
    }
    sqlite3_reset(st);
    *cps = out;
    *n = k;
    return 0;
}

/* The head entry: *seq (0 when empty) and, when hash is non-NULL, a
 * malloc'ed copy of its hash in *hash (NULL when empty). */
static int audit_head(struct store *s, int64_t *seq, char **hash,
                      struct error *err)
{
    *seq = 0;
    if (hash != NULL)
        *hash = NULL;
    sqlite3_stmt *st = audit_stmt(s, U_HEAD, err);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        const unsigned char *t = sqlite3_column_text(st, 1);
        if (hash != NULL && (*hash = strdup(t ? (const char *)t : "")) ==
                                NULL) {
            sqlite3_reset(st);
            return error_set(err, "out of memory reading the audit trail");
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read the audit trail head");
    return 0;
}

int store_audit_head(struct store *s, int64_t *seq, struct error *err)
{
    char hash[65];
    if (store_pg(s))
        return pgs_audit_head_hash(store_pg(s), seq, hash, err);
    return audit_head(s, seq, NULL, err);
}

/* Copy text t into a 65-byte hash buffer ("" for NULL; cut at 64). */
static void audit_hash_copy(const unsigned char *t, char out[65])
{
    snprintf(out, 65, "%s", t ? (const char *)t : "");
}

int store_audit_head_hash(struct store *s, int64_t *seq, char hash[65],
                          struct error *err)
{
    if (store_pg(s))
        return pgs_audit_head_hash(store_pg(s), seq, hash, err);
    char *h = NULL;
    hash[0] = '\0';
    if (audit_head(s, seq, &h, err) < 0)
        return -1;
    audit_hash_copy((const unsigned char *)h, hash);
    free(h);
    return 0;
}

int store_audit_hash_at(struct store *s, int64_t seq, char hash[65],
                        struct error *err)
{
    if (store_pg(s))
        return pgs_audit_hash_at(store_pg(s), seq, hash, err);
    hash[0] = '\0';
    sqlite3_stmt *st = audit_stmt(s, U_HASH_AT, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, seq);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        audit_hash_copy(sqlite3_column_text(st, 0), hash);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read an audit entry");
    return rc == SQLITE_ROW;
}

const char *store_audit_db_file(struct store *s)
{
    /* PostgreSQL: no database file, so no head anchor beside it */
    if (store_pg(s))
        return "";
    const char *f = sqlite3_db_filename(store_db(s), "main");
    return f != NULL ? f : "";
}

/* ---- writing ------------------------------------------------------------ */

static int audit_insert_row(struct store *s, const struct store_audit_row *r,
                            struct error *err)
{
    sqlite3_stmt *st = audit_stmt(s, U_INS, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->seq);
    sqlite3_bind_int64(st, 2, r->at);
    store_bind_text(st, 3, r->actor);
    store_bind_text(st, 4, r->address);
    store_bind_text(st, 5, r->action);
    store_bind_text(st, 6, r->target);
    store_bind_text(st, 7, r->detail);
    store_bind_text(st, 8, r->prev_hash);
    store_bind_text(st, 9, r->hash);
    return store_step_done(s, st, err, "append an audit entry");
}

static int audit_insert_cp(struct store *s,
                           const struct store_audit_checkpoint *c,
                           struct error *err)
{
    sqlite3_stmt *st = audit_stmt(s, U_CP_INS, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, c->seq);
    store_bind_text(st, 2, c->hash);
    sqlite3_bind_int64(st, 3, c->at);
    store_bind_text(st, 4, c->key_id);
    store_bind_text(st, 5, c->signature);
    return store_step_done(s, st, err, "insert an audit checkpoint");
}

/* Inside the transaction: number and link row, seal it, insert. */
static int audit_append_tx(struct store *s, struct store_audit_row *row,
                           store_audit_seal_fn seal, void *arg,
                           struct error *err)
{
    char *head_hash = NULL;
    int64_t head = 0;
    if (audit_head(s, &head, &head_hash, err) < 0)
        return -1;
    struct store_audit_checkpoint cp = {0};
    int want_cp = 0;
    row->seq = head + 1;
    row->prev_hash = head_hash;
    int rc = seal(arg, row, &cp, &want_cp, err);
    if (rc == 0 && (row->prev_hash == NULL || row->hash == NULL))
        rc = error_set(err, "internal: audit entry was not sealed");
    if (rc == 0)
        rc = audit_insert_row(s, row, err);
    if (rc == 0 && want_cp)
        rc = audit_insert_cp(s, &cp, err);
    if (row->prev_hash == head_hash)
        row->prev_hash = NULL;      /* it was ours: do not leave it dangling */
    free(head_hash);
    return rc;
}

int store_audit_append(struct store *s, struct store_audit_row *row,
                       store_audit_seal_fn seal, void *arg,
                       struct error *err)
{
    if (store_pg(s))
        return pgs_audit_append(store_pg(s), row, seal, arg, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (audit_append_tx(s, row, seal, arg, err) < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

/* 1 when a checkpoint exists at seq, 0 when not, -1 on error. */
static int audit_cp_exists(struct store *s, int64_t seq, struct error *err)
{
    sqlite3_stmt *st = audit_stmt(s, U_CP_AT, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, seq);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read audit checkpoints");
    return rc == SQLITE_ROW;
}

/* Inside the transaction: sign the head unless empty or already signed. */
static int audit_checkpoint_tx(struct store *s, store_audit_sign_fn sign,
                               void *arg, struct error *err)
{
    char *head_hash = NULL;
    int64_t head = 0;
    if (audit_head(s, &head, &head_hash, err) < 0)
        return -1;
    int rc = head == 0 ? 0 : audit_cp_exists(s, head, err);
    if (head > 0 && rc == 0) {
        struct store_audit_checkpoint cp = { .seq = head, .hash = head_hash };
        rc = sign(arg, &cp, err);
        if (rc == 0)
            rc = audit_insert_cp(s, &cp, err);
        rc = rc == 0 ? 1 : -1;
    } else if (rc == 1) {
        rc = 0;                     /* already signed */
    }
    free(head_hash);
    return rc;
}

int store_audit_checkpoint_head(struct store *s, store_audit_sign_fn sign,
                                void *arg, struct error *err)
{
    if (store_pg(s))
        return pgs_audit_checkpoint_head(store_pg(s), sign, arg, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    int rc = audit_checkpoint_tx(s, sign, arg, err);
    if (rc < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : rc;
}
