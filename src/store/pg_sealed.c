/*
 * pg_sealed.c - the PostgreSQL statements of sealed_store.h, beside
 * sqlite_sealed.c: listing and rewriting the vault-sealed blobs of the
 * certificates, connector_secrets, users and jobs tables, for key rotation.
 *
 * Owns statement slots 336..351 of pg_internal.h and nothing else.
 *
 * A rewrite changes only the blob column, and only where it still holds
 * the blob that was listed: one UPDATE ... WHERE blob = <listed> per row,
 * all rows of a batch in one transaction. That compare-and-set is what
 * keeps nodes sharing one database right: read committed re-checks the
 * WHERE on the newest version of a row another transaction changed
 * meanwhile, so a value rewritten by another node (or changed by anything
 * else) since it was listed is left alone and not counted, and two
 * rotations running at once write each row once. Must never see
 * plaintext, change anything but a sealed blob, or build SQL from data.
 */
#include "store/pg_sealed.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

enum { SL_LIST = 336, SL_SET = SL_LIST + STORE_SEALED_KINDS,
       SL_LAST = SL_SET + STORE_SEALED_KINDS };
_Static_assert(SL_LAST <= 352, "pg_sealed.c owns statement slots 336..351");

/* Per kind: owner, name, blob of every sealed row. */
static const char *const SQL_LIST[STORE_SEALED_KINDS] = {
    [STORE_SEALED_PROFILE_KEY] = "SELECT owner, id, key_sealed FROM"
        " certificates WHERE key_sealed IS NOT NULL ORDER BY owner, id",
    [STORE_SEALED_CONNECTOR] = "SELECT connector, name, blob FROM"
        " connector_secrets ORDER BY connector, name",
    [STORE_SEALED_TOTP] = "SELECT name, id::text, totp_sealed FROM"
        " users WHERE totp_sealed IS NOT NULL ORDER BY id",
    [STORE_SEALED_JOB_DATA] = "SELECT connector, id, data FROM jobs"
        " WHERE data IS NOT NULL ORDER BY id",
    [STORE_SEALED_JOB_INPUT] = "SELECT connector, id, input FROM jobs"
        " WHERE input IS NOT NULL ORDER BY id",
};

/* Per kind: $1 owner, $2 name, $3 new blob, $4 the blob it must still
 * hold. */
static const char *const SQL_SET[STORE_SEALED_KINDS] = {
    [STORE_SEALED_PROFILE_KEY] = "UPDATE certificates SET key_sealed = $3"
        " WHERE owner = $1 AND id = $2 AND key_sealed = $4",
    [STORE_SEALED_CONNECTOR] = "UPDATE connector_secrets SET blob = $3"
        " WHERE connector = $1 AND name = $2 AND blob = $4",
    [STORE_SEALED_TOTP] = "UPDATE users SET totp_sealed = $3"
        " WHERE name = $1 AND id = $2::bigint AND totp_sealed = $4",
    [STORE_SEALED_JOB_DATA] = "UPDATE jobs SET data = $3"
        " WHERE connector = $1 AND id = $2 AND data = $4",
    [STORE_SEALED_JOB_INPUT] = "UPDATE jobs SET input = $3"
        " WHERE connector = $1 AND id = $2 AND input = $4",
};

static int sealed_kind_ok(enum store_sealed_kind kind, struct error *err)
{
    if ((int)kind < 0 || kind >= STORE_SEALED_KINDS)
        return error_set(err, "internal: unknown sealed value kind %d",
                         (int)kind);
    return 0;
}

int pgs_sealed_list(struct pg_store *p, enum store_sealed_kind kind,
                    struct store_sealed **out, size_t *n, struct error *err)
{
    *out = NULL;
    *n = 0;
    if (sealed_kind_ok(kind, err) < 0)
        return -1;
    PGresult *r = pg_run(p, SL_LIST + (int)kind, SQL_LIST[kind], NULL,
                         "list sealed values", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r), oom = 0;
    if (rows > 0 && (*out = calloc((size_t)rows, sizeof(**out))) == NULL)
        oom = 1;
    for (int i = 0; !oom && i < rows; i++, (*n)++) {
        struct store_sealed *s = &(*out)[i];
        s->kind = kind;
        s->owner = pg_val_dup(r, i, 0);
        s->name = pg_val_dup(r, i, 1);
        s->blob = pg_val_blob(r, i, 2, &s->len);
        oom = !s->owner || !s->name || !s->blob;
    }
    PQclear(r);
    if (oom) {
        store_sealed_free(*out, *n);
        *out = NULL;
        *n = 0;
        return error_set(err, "out of memory listing sealed values");
    }
    return 0;
}

/* Write blob over row's, where it still holds row's blob. 1 written, 0 the
 * row changed meanwhile, -1 error. */
static int sealed_set(struct pg_store *p, const struct store_sealed *row,
                      const unsigned char *blob, size_t len,
                      struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_text(&a, row->owner);
    pg_arg_text(&a, row->name);
    /* a blob, never SQL NULL: the columns are NOT NULL or compared */
    pg_arg_blob(&a, blob ? (const void *)blob : "", len);
    pg_arg_blob(&a, row->blob ? (const void *)row->blob : "", row->len);
    if (pg_run_done(p, SL_SET + (int)row->kind, SQL_SET[row->kind], &a,
                    "rewrite a sealed value", &changed, err) < 0)
        return -1;
    return changed > 0;
}

/* Inside the transaction: every row through fn, then written. */
static int rewrite_tx(struct pg_store *p, const struct store_sealed *rows,
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
            rc = sealed_set(p, &rows[i], blob, len, err);
        free(blob);
        if (rc < 0)
            return -1;
        *replaced += (size_t)rc;
    }
    return 0;
}

int pgs_sealed_rewrite(struct pg_store *p, const struct store_sealed *rows,
                       size_t n, store_sealed_fn fn, void *arg,
                       size_t *replaced, struct error *err)
{
    *replaced = 0;
    if (n == 0)
        return 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (rewrite_tx(p, rows, n, fn, arg, replaced, err) < 0) {
        *replaced = 0;
        return pg_tx_fail(p);
    }
    if (pg_tx_end(p, err) < 0) {
        *replaced = 0;
        return -1;
    }
    return 0;
}
