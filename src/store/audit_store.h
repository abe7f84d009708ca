/*
 * audit_store.h - the rows of the audit trail (R18): tables `audit` and
 * `audit_checkpoints` of schema migration 2 (see sqlite.c). Implemented in
 * sqlite_audit.c.
 *
 * Plain rows, no policy: src/audit/ computes the hashes, signs and
 * verifies. The store only guarantees that an entry is numbered and linked
 * to the current head inside one IMMEDIATE transaction (on PostgreSQL: a
 * transaction that first takes the chain's advisory lock, pg_audit.c), so
 * two writers, of one node or of several, can never give two entries the
 * same seq or the same previous hash.
 *
 * Ownership: rows and checkpoints filled by store_audit_list and
 * store_audit_checkpoints own their strings (free with the matching *_free).
 * During store_audit_append and store_audit_checkpoint_head every string of
 * the row and checkpoint is borrowed (the caller's, the callback's or the
 * store's own buffers) and valid only for the call. Times are ms since the
 * epoch. Hashes are SHA-256 as 64 lowercase hex digits.
 */
#ifndef WHARF_AUDIT_STORE_H
#define WHARF_AUDIT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;

struct store_audit_row {
    int64_t seq;                /* 1, 2, 3 ... */
    int64_t at;
    char *actor;
    char *address;              /* NULL when none */
    char *action;
    char *target;               /* NULL when none */
    char *detail;               /* NULL when none */
    char *prev_hash;            /* hash of entry seq - 1 */
    char *hash;                 /* hash of this entry (src/audit/audit.c) */
    int has_nul;                /* read rows: a text column held a NUL byte
                                   (it was cut there; only tampering does it) */
};

struct store_audit_checkpoint {
    int64_t seq;                /* the entry whose hash is signed */
    int64_t at;
    char *hash;                 /* that entry's hash, as signed */
    char *key_id;               /* the vault's audit key id */
    char *signature;            /* Ed25519 signature, 128 lowercase hex digits */
};

/* Called by store_audit_append inside its transaction, with row->seq set
 * to the head's seq + 1 and row->prev_hash to the head's hash (NULL when
 * the trail is empty). It sets row->prev_hash (when NULL) and row->hash,
 * and when it sets *checkpoint to 1 it also fills cp (seq, hash, at,
 * key_id, signature), which is inserted in the same transaction. Returns 0,
 * or -1 (err set) to roll everything back. */
typedef int (*store_audit_seal_fn)(void *arg, struct store_audit_row *row,
                                   struct store_audit_checkpoint *cp,
                                   int *checkpoint, struct error *err);

/* Append row (its seq, prev_hash and hash are set here and by seal) in one
 * IMMEDIATE transaction that reads the head, calls seal, and inserts the
 * entry and maybe a checkpoint. 0, or -1 with nothing written. */
int store_audit_append(struct store *s, struct store_audit_row *row,
                       store_audit_seal_fn seal, void *arg,
                       struct error *err);

/* Called by store_audit_checkpoint_head inside its transaction with
 * cp->seq and cp->hash set to the head entry; it fills at, key_id and
 * signature. 0, or -1 (err set) to roll back. */
typedef int (*store_audit_sign_fn)(void *arg,
                                   struct store_audit_checkpoint *cp,
                                   struct error *err);

/* In one IMMEDIATE transaction: read the head; unless the trail is empty
 * or the head already has a checkpoint, call sign and insert the
 * checkpoint. Returns 1 when a checkpoint was written, 0 when none was
 * needed, -1 on error. */
int store_audit_checkpoint_head(struct store *s, store_audit_sign_fn sign,
                                void *arg, struct error *err);

/* The head's seq (0 when the trail is empty). */
int store_audit_head(struct store *s, int64_t *seq, struct error *err);

/* The head's seq (0 when empty) and hash ("" when empty) into hash. */
int store_audit_head_hash(struct store *s, int64_t *seq, char hash[65],
                          struct error *err);

/* The stored hash of entry seq into hash: 1 found, 0 no such entry (hash
 * ""), -1 error. */
int store_audit_hash_at(struct store *s, int64_t seq, char hash[65],
                        struct error *err);

/* The path of the database file (absolute; owned by the store; "" for a
 * database without a file, and for PostgreSQL). The audit head anchor
 * lives beside it (none on PostgreSQL). */
const char *store_audit_db_file(struct store *s);

/* Up to limit entries with seq > after, in seq order (a page: call again
 * with the last seq). *rows malloc'ed (NULL when *n is 0); free with
 * store_audit_rows_free(*rows, *n). */
int store_audit_list(struct store *s, int64_t after, size_t limit,
                     struct store_audit_row **rows, size_t *n,
                     struct error *err);
void store_audit_rows_free(struct store_audit_row *rows, size_t n);

/* Up to limit checkpoints with seq > after, in seq order (a page). *cps
 * malloc'ed; free with store_audit_checkpoints_free(*cps, *n). */
int store_audit_checkpoints(struct store *s, int64_t after, size_t limit,
                            struct store_audit_checkpoint **cps, size_t *n,
                            struct error *err);
void store_audit_checkpoints_free(struct store_audit_checkpoint *cps,
                                  size_t n);

#endif
