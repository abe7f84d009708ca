/*
 * pg_audit.h - the PostgreSQL statements of audit_store.h (pg_audit.c).
 * Included only by sqlite_audit.c (which hands each entry point over on a
 * PostgreSQL store) and pg_audit.c. Behaviour, return codes and ownership
 * are those audit_store.h documents for the function of the same name.
 */
#ifndef WHARF_PG_AUDIT_H
#define WHARF_PG_AUDIT_H

#include "store/audit_store.h"

struct pg_store;

int pgs_audit_append(struct pg_store *p, struct store_audit_row *row,
                     store_audit_seal_fn seal, void *arg, struct error *err);
int pgs_audit_checkpoint_head(struct pg_store *p, store_audit_sign_fn sign,
                              void *arg, struct error *err);
int pgs_audit_head_hash(struct pg_store *p, int64_t *seq, char hash[65],
                        struct error *err);
int pgs_audit_hash_at(struct pg_store *p, int64_t seq, char hash[65],
                      struct error *err);
int pgs_audit_list(struct pg_store *p, int64_t after, size_t limit,
                   struct store_audit_row **rows, size_t *n,
                   struct error *err);
int pgs_audit_checkpoints(struct pg_store *p, int64_t after, size_t limit,
                          struct store_audit_checkpoint **cps, size_t *n,
                          struct error *err);

#endif
