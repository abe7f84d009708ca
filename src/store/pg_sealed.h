/*
 * pg_sealed.h - the PostgreSQL statements of sealed_store.h (pg_sealed.c).
 * Included only by sqlite_sealed.c (which hands each call over when the
 * store is a PostgreSQL one) and pg_sealed.c. Behaviour, return codes and
 * ownership: as sealed_store.h says for the store_ function of the same
 * name.
 */
#ifndef WHARF_PG_SEALED_H
#define WHARF_PG_SEALED_H

#include "store/pg_store.h"
#include "store/sealed_store.h"

int pgs_sealed_list(struct pg_store *p, enum store_sealed_kind kind,
                    struct store_sealed **out, size_t *n, struct error *err);
int pgs_sealed_rewrite(struct pg_store *p, const struct store_sealed *rows,
                       size_t n, store_sealed_fn fn, void *arg,
                       size_t *replaced, struct error *err);

#endif
