/*
 * sqlite_sealed.c - the SQLite statements of sealed_store.h: listing and
 * rewriting the vault-sealed blobs of the certificates, connector_secrets
 * and users tables, for key rotation.
 *
 * Owns statement cache slots 176..191 of store_stmt_ext and nothing else.
 * On a PostgreSQL store both entry points hand the call over to
 * pg_sealed.c.
 * Every statement is a constant string with bound parameters; a rewrite
 * changes only the blob column, and only where it still holds the blob that
 * was listed (compare-and-set), all rows of a batch in one transaction. It
 * must never see plaintext, change anything but a sealed blob, or build SQL
 * from data.
 */
#include "store/sealed_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_sealed.h"
#include "store/store_internal.h"

enum { K_LIST = 176, K_SET = K_LIST + STORE_SEALED_KINDS,
       K_LAST = K_SET + STORE_SEALED_KINDS };
_Static_assert(K_LAST <= 192, "sqlite_sealed.c owns statement slots 176..191");

/* Per kind: owner, name, blob of every sealed row. */
static const char *const SQL_LIST[STORE_SEALED_KINDS] = {
    [STORE_SEALED_PROFILE_KEY] = "SELECT owner, id, key_sealed FROM"
        " certificates WHERE key_sealed IS NOT NULL ORDER BY owner, id",
    [STORE_SEALED_CONNECTOR] = "SELECT connector, name, blob FROM"
        " connector_secrets ORDER BY connector, name",
    [STORE_SEALED_TOTP] = "SELECT name, CAST(id AS TEXT), totp_sealed FROM"
        " users WHERE totp_sealed IS NOT NULL ORDER BY id",
    [STORE_SEALED_JOB_DATA] = "SELECT connector, id, data FROM jobs"
        " WHERE data IS NOT NULL ORDER BY id",
    [STORE_SEALED_JOB_INPUT] = "SELECT connector, id, input FROM jobs"
        " WHERE input IS NOT NULL ORDER BY id",
};

/* Per kind: ?1 owner, ?2 name, ?3 new blob, ?4 the blob it must still hold. */
static const char *const SQL_SET[STORE_SEALED_KINDS] = {
    [STORE_SEALED_PROFILE_KEY] = "UPDATE certificates SET key_sealed = ?3"
        " WHERE owner = ?1 AND id = ?2 AND key_sealed = ?4",
    [STORE_SEALED_CONNECTOR] = "UPDATE connector_secrets SET blob = ?3"
        " WHERE connector = ?1 AND name = ?2 AND blob = ?4",
    [STORE_SEALED_TOTP] = "UPDATE users SET totp_sealed = ?3"
        " WHERE name = ?1 AND id = CAST(?2 AS INTEGER) AND totp_sealed = ?4",
    [STORE_SEALED_JOB_DATA] = "UPDATE jobs SET data = ?3"
        " WHERE connector = ?1 AND id = ?2 AND data = ?4",
    [STORE_SEALED_JOB_INPUT] = "UPDATE jobs SET input = ?3"
        " WHERE connector = ?1 AND id = ?2 AND input = ?4",
};

static int sealed_kind_ok(enum store_sealed_kind kind, struct error *err)
{
    if ((int)kind < 0 || kind >= STORE_SEALED_KINDS)
        return error_set(err, "internal: unknown sealed value kind %d",
                         (int)kind);
    return 0;
}

void store_sealed_free(struct store_sealed *rows, size_t n)
{
    for (size_t i = 0; rows != NULL && i < n; i++) {
        free(rows[i].owner);
        free(rows[i].name);
        free(rows[i].blob);
    }
    free(rows);
}

/* The current row of st into r (owned copies). 0, or -1 out of memory. */
static int sealed_row_read(sqlite3_stmt *st, enum store_sealed_kind kind,
                           struct store_sealed *r)
{
    int len = sqlite3_column_bytes(st, 2);
    const void *b = sqlite3_column_blob(st, 2);
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->owner = store_col_dup(st, 0);
    r->name = store_col_dup(st, 1);
    r->blob = malloc(len > 0 ? (size_t)len : 1);
    r->len = len > 0 ? (size_t)len : 0;
    if (r->blob != NULL && len > 0)
        memcpy(r->blob, b, (size_t)len);
    return r->owner && r->name && r->blob ? 0 : -1;
}

int store_sealed_list(struct store *s, enum store_sealed_kind kind,
                      struct store_sealed **out, size_t *n,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_sealed_list(store_pg(s), kind, out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = sealed_kind_ok(kind, err) < 0 ? NULL
        : store_stmt_ext(s, K_LIST + (int)kind, SQL_LIST[kind], err);
    if (st == NULL)
        return -1;
    int rc, oom = 0;
    size_t cap = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            struct store_sealed *g = realloc(*out, cap * sizeof(**out));
            if ((oom = g == NULL))
                break;
            *out = g;
        }
        oom = sealed_row_read(st, kind, &(*out)[(*n)++]) < 0;
    }
    sqlite3_reset(st);
    if (oom || (rc != SQLITE_DONE && rc != SQLITE_ROW)) {
        store_sealed_free(*out, *n);
        *out = NULL;
        *n = 0;
        return oom ? error_set(err, "out of memory listing sealed values")
                   : store_db_error(s, err, "list sealed values");
    }
    return 0;
}

/* Write blob over row's, where it still holds row's blob. 1 written, 0 the
 * row changed meanwhile, -1 error. */
static int sealed_set(struct store *s, const struct store_sealed *row,
                      const unsigned char *blob, size_t len,
                      struct error *err)
{
    sqlite3_stmt *st = store_stmt_ext(s, K_SET + (int)row->kind,
                                      SQL_SET[row->kind], err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, row->owner);
    store_bind_text(st, 2, row->name);
    sqlite3_bind_blob(st, 3, blob, (int)len, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, row->blob, (int)row->len, SQLITE_TRANSIENT);
    if (store_step_done(s, st, err, "rewrite a sealed value") < 0)
        return -1;
    return sqlite3_changes(store_db(s)) > 0;
}

/* Inside the transaction: every row through fn, then written. */
static int sealed_rewrite_tx(struct store *s, const struct store_sealed *rows,
                             size_t n, store_sealed_fn fn, void *arg,
                             size_t *replaced, struct error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (sealed_kind_ok(rows[i].kind, err) < 0)
            return -1;
        unsigned char *blob = NULL;
        size_t len = 0;
        int rc = fn(arg, &rows[i], &blob, &len, err);
        if (rc == 1)
            rc = sealed_set(s, &rows[i], blob, len, err);
        free(blob);
        if (rc < 0)
            return -1;
        *replaced += (size_t)rc;
    }
    return 0;
}

int store_sealed_rewrite(struct store *s, const struct store_sealed *rows,
                         size_t n, store_sealed_fn fn, void *arg,
                         size_t *replaced, struct error *err)
{
    if (store_pg(s))
        return pgs_sealed_rewrite(store_pg(s), rows, n, fn, arg, replaced,
                                  err);
    *replaced = 0;
    if (n == 0)
        return 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (sealed_rewrite_tx(s, rows, n, fn, arg, replaced, err) < 0) {
        *replaced = 0;
        return store_tx_fail(s);
    }
    if (store_tx_commit(s, err) < 0) {
        *replaced = 0;
        return store_tx_fail(s);
    }
    return 0;
}
