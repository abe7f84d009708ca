/*
 * pg_audit.c - the PostgreSQL statements of audit_store.h: the audit trail
 * and its signed checkpoints (tables `audit` and `audit_checkpoints` of
 * PG_MIGRATIONS 2 in pg.c), beside its twin sqlite_audit.c.
 *
 * Owns statement slots 352..415 (pg_internal.h) and nothing else.
 *
 * One chain, whatever the number of nodes: SQLite's IMMEDIATE transaction
 * serialized every writer; PostgreSQL runs read committed, so two nodes
 * appending at once would both read the same head and both write seq N+1
 * (one then fails on the key) or, worse, link two entries to one parent.
 * Appending (and signing the head) therefore first takes a transaction
 * advisory lock with one constant key, pg_advisory_xact_lock(AUDIT_LOCK),
 * and only then reads the head: appends from every node take turns, the
 * head each one reads (a fresh snapshot per statement, taken after the
 * lock was granted) is the one the previous holder committed, and the
 * lock ends with the transaction (commit or rollback), never held across
 * calls. Readers (list, verify, head) take no lock.
 *
 * PostgreSQL text cannot hold a NUL byte, so rows read here never have
 * has_nul set (the tampering it reports cannot be written to this table).
 *
 * Must never: compute or judge hashes and signatures (src/audit/ does),
 * update or delete an audit row (append-only: no such statement here),
 * hold a transaction or a lock beyond one call, or build SQL from data.
 */
#include "store/pg_audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

#define SLOT_BASE 352
/* pg_advisory_xact_lock key of the audit chain ("Wcha"). */
#define AUDIT_LOCK "1466132577"

enum {
    A_LOCK, A_HEAD, A_INS, A_LIST, A_CP_LIST, A_CP_INS, A_CP_AT, A_HASH_AT,
    A_LAST
};
_Static_assert(SLOT_BASE + A_LAST <= 416, "pg_audit.c owns slots 352..415");

#define ROW_COLS "seq, at, actor, address, action, target, detail," \
    " prev_hash, hash"
#define CP_COLS "seq, hash, at, key_id, signature"

static const char *const SQL_AUDIT[A_LAST] = {
    /* every append and head signature takes turns on this one key */
    [A_LOCK] = "SELECT pg_advisory_xact_lock(" AUDIT_LOCK ")",
    [A_HEAD] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
    [A_INS] = "INSERT INTO audit(" ROW_COLS ")"
        " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    [A_LIST] = "SELECT " ROW_COLS " FROM audit WHERE seq > $1"
        " ORDER BY seq LIMIT $2",
    [A_CP_LIST] = "SELECT " CP_COLS " FROM audit_checkpoints WHERE seq > $1"
        " ORDER BY seq LIMIT $2",
    [A_CP_INS] = "INSERT INTO audit_checkpoints(" CP_COLS ")"
        " VALUES($1, $2, $3, $4, $5)",
    [A_CP_AT] = "SELECT 1 FROM audit_checkpoints WHERE seq = $1",
    [A_HASH_AT] = "SELECT hash FROM audit WHERE seq = $1",
};

#define PAGE_MAX 10000

static PGresult *run(struct pg_store *p, int i, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, SLOT_BASE + i, SQL_AUDIT[i], a, what, err);
}

static int run_done(struct pg_store *p, int i, const struct pg_args *a,
                    const char *what, struct error *err)
{
    return pg_run_done(p, SLOT_BASE + i, SQL_AUDIT[i], a, what, NULL, err);
}

/* ---- reading ------------------------------------------------------------ */

static void row_read(const PGresult *r, int i, struct store_audit_row *o)
{
    memset(o, 0, sizeof(*o));
    o->seq = pg_val_int(r, i, 0);
    o->at = pg_val_int(r, i, 1);
    o->actor = pg_val_dup(r, i, 2);
    o->address = pg_val_dup(r, i, 3);
    o->action = pg_val_dup(r, i, 4);
    o->target = pg_val_dup(r, i, 5);
    o->detail = pg_val_dup(r, i, 6);
    o->prev_hash = pg_val_dup(r, i, 7);
    o->hash = pg_val_dup(r, i, 8);
}

static void cp_read(const PGresult *r, int i, struct store_audit_checkpoint *c)
{
    memset(c, 0, sizeof(*c));
    c->seq = pg_val_int(r, i, 0);
    c->hash = pg_val_dup(r, i, 1);
    c->at = pg_val_int(r, i, 2);
    c->key_id = pg_val_dup(r, i, 3);
    c->signature = pg_val_dup(r, i, 4);
}

/* A page (after, limit) of statement i: its result, or NULL with err. */
static PGresult *page(struct pg_store *p, int i, int64_t after, size_t limit,
                      const char *what, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, after);
    pg_arg_int(&a, (int64_t)limit);
    return run(p, i, &a, what, err);
}

int pgs_audit_list(struct pg_store *p, int64_t after, size_t limit,
                   struct store_audit_row **rows, size_t *n,
                   struct error *err)
{
    *rows = NULL;
    *n = 0;
    limit = limit > PAGE_MAX ? PAGE_MAX : limit;
    PGresult *r = page(p, A_LIST, after, limit, "read the audit trail", err);
    if (r == NULL)
        return -1;
    size_t k = (size_t)PQntuples(r);
    struct store_audit_row *out = calloc(k ? k : 1, sizeof(*out));
    if (out == NULL) {
        PQclear(r);
        return error_set(err, "out of memory reading the audit trail");
    }
    for (size_t i = 0; i < k; i++)
        row_read(r, (int)i, &out[i]);
    PQclear(r);
    *rows = out;
    *n = k;
    return 0;
}

int pgs_audit_checkpoints(struct pg_store *p, int64_t after, size_t limit,
                          struct store_audit_checkpoint **cps, size_t *n,
                          struct error *err)
{
    *cps = NULL;
    *n = 0;
    limit = limit > PAGE_MAX ? PAGE_MAX : limit;
    PGresult *r = page(p, A_CP_LIST, after, limit, "read audit checkpoints",
                       err);
    if (r == NULL)
        return -1;
    size_t k = (size_t)PQntuples(r);
    struct store_audit_checkpoint *out = calloc(k ? k : 1, sizeof(*out));
    if (out == NULL) {
        PQclear(r);
        return error_set(err, "out of memory reading audit checkpoints");
    }
    for (size_t i = 0; i < k; i++)
        cp_read(r, (int)i, &out[i]);
    PQclear(r);
    *cps = out;
    *n = k;
    return 0;
}

/* The head entry: *seq (0 when empty) and a malloc'ed copy of its hash in
 * *hash (NULL when empty). */
static int audit_head(struct pg_store *p, int64_t *seq, char **hash,
                      struct error *err)
{
    *seq = 0;
    *hash = NULL;
    PGresult *r = run(p, A_HEAD, NULL, "read the audit trail head", err);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (PQntuples(r) == 1) {
        *seq = pg_val_int(r, 0, 0);
        if ((*hash = strdup(PQgetvalue(r, 0, 1))) == NULL)
            rc = error_set(err, "out of memory reading the audit trail");
    }
    PQclear(r);
    return rc;
}

int pgs_audit_head_hash(struct pg_store *p, int64_t *seq, char hash[65],
                        struct error *err)
{
    char *h = NULL;
    hash[0] = '\0';
    if (audit_head(p, seq, &h, err) < 0)
        return -1;
    snprintf(hash, 65, "%s", h ? h : "");
    free(h);
    return 0;
}

int pgs_audit_hash_at(struct pg_store *p, int64_t seq, char hash[65],
                      struct error *err)
{
    struct pg_args a = {0};
    hash[0] = '\0';
    pg_arg_int(&a, seq);
    PGresult *r = run(p, A_HASH_AT, &a, "read an audit entry", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    if (found)
        snprintf(hash, 65, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return found;
}

/* ---- writing ------------------------------------------------------------ */

static int insert_row(struct pg_store *p, const struct store_audit_row *r,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, r->seq);
    pg_arg_int(&a, r->at);
    pg_arg_text(&a, r->actor);
    pg_arg_text(&a, r->address);
    pg_arg_text(&a, r->action);
    pg_arg_text(&a, r->target);
    pg_arg_text(&a, r->detail);
    pg_arg_text(&a, r->prev_hash);
    pg_arg_text(&a, r->hash);
    return run_done(p, A_INS, &a, "append an audit entry", err);
}

static int insert_cp(struct pg_store *p, const struct store_audit_checkpoint *c,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, c->seq);
    pg_arg_text(&a, c->hash);
    pg_arg_int(&a, c->at);
    pg_arg_text(&a, c->key_id);
    pg_arg_text(&a, c->signature);
    return run_done(p, A_CP_INS, &a, "insert an audit checkpoint", err);
}

/* Inside the transaction: take the chain's lock, then number and link
 * row, seal it, insert. */
static int append_tx(struct pg_store *p, struct store_audit_row *row,
                     store_audit_seal_fn seal, void *arg, struct error *err)
{
    char *head_hash = NULL;
    int64_t head = 0;
    if (run_done(p, A_LOCK, NULL, "lock the audit trail", err) < 0 ||
        audit_head(p, &head, &head_hash, err) < 0)
        return -1;
    struct store_audit_checkpoint cp = {0};
    int want_cp = 0;
    row->seq = head + 1;
    row->prev_hash = head_hash;
    int rc = seal(arg, row, &cp, &want_cp, err);
    if (rc == 0 && (row->prev_hash == NULL || row->hash == NULL))
        rc = error_set(err, "internal: audit entry was not sealed");
    if (rc == 0)
        rc = insert_row(p, row, err);
    if (rc == 0 && want_cp)
        rc = insert_cp(p, &cp, err);
    if (row->prev_hash == head_hash)
        row->prev_hash = NULL;      /* it was ours: do not leave it dangling */
    free(head_hash);
    return rc;
}

int pgs_audit_append(struct pg_store *p, struct store_audit_row *row,
                     store_audit_seal_fn seal, void *arg, struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (append_tx(p, row, seal, arg, err) < 0)
        return pg_tx_fail(p);
    return pg_tx_end(p, err);
}

/* 1 when a checkpoint exists at seq, 0 when not, -1 on error. */
static int cp_exists(struct pg_store *p, int64_t seq, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, seq);
    PGresult *r = run(p, A_CP_AT, &a, "read audit checkpoints", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) > 0;
    PQclear(r);
    return found;
}

/* Inside the transaction, under the chain's lock: sign the head unless
 * empty or already signed. */
static int checkpoint_tx(struct pg_store *p, store_audit_sign_fn sign,
                         void *arg, struct error *err)
{
    char *head_hash = NULL;
    int64_t head = 0;
    if (run_done(p, A_LOCK, NULL, "lock the audit trail", err) < 0 ||
        audit_head(p, &head, &head_hash, err) < 0)
        return -1;
    int rc = head == 0 ? 0 : cp_exists(p, head, err);
    if (head > 0 && rc == 0) {
        struct store_audit_checkpoint cp = { .seq = head, .hash = head_hash };
        rc = sign(arg, &cp, err);
        if (rc == 0)
            rc = insert_cp(p, &cp, err);
        rc = rc == 0 ? 1 : -1;
    } else if (rc == 1) {
        rc = 0;                     /* already signed */
    }
    free(head_hash);
    return rc;
}

int pgs_audit_checkpoint_head(struct pg_store *p, store_audit_sign_fn sign,
                              void *arg, struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int rc = checkpoint_tx(p, sign, arg, err);
    if (rc < 0)
        return pg_tx_fail(p);
    return pg_tx_end(p, err) < 0 ? -1 : rc;
}
