/*
 * pg_retention.h - the PostgreSQL statements of retention_store.h
 * (pg_retention.c). Included only by sqlite_retention.c (which hands each
 * call over when the store is a PostgreSQL one) and pg_retention.c.
 * Behaviour, return codes and ownership: as retention_store.h says for the
 * store_ function of the same name.
 */
#ifndef WHARF_PG_RETENTION_H
#define WHARF_PG_RETENTION_H

#include "store/pg_store.h"
#include "store/retention_store.h"

int pgs_purge_candidates(struct pg_store *p, const char *source,
                         int64_t before, size_t max,
                         struct store_expired **out, size_t *n,
                         struct error *err);
int pgs_purge_count(struct pg_store *p, const char *source, int64_t before,
                    int64_t *count, int64_t *bytes, struct error *err);
int pgs_purge_held(struct pg_store *p, const char *source, int64_t before,
                   int64_t *count, struct error *err);
int pgs_message_sources(struct pg_store *p, char ***out, size_t *n,
                        struct error *err);
int pgs_purge_delete(struct pg_store *p, const char *const *ids, size_t n,
                     int64_t now, int *gone, struct error *err);
int pgs_purge_pending(struct pg_store *p, size_t max,
                      struct store_pending **out, size_t *n,
                      struct error *err);
int pgs_purge_done(struct pg_store *p, const char *id, struct error *err);
int pgs_hold_set(struct pg_store *p, const char *id, const char *actor,
                 const char *reason, int64_t now, struct error *err);
int pgs_hold_lift(struct pg_store *p, const char *id, struct error *err);
int pgs_hold_get(struct pg_store *p, const char *id, struct store_hold *out,
                 struct error *err);
int pgs_hold_count(struct pg_store *p, int64_t *count, struct error *err);
int pgs_messages_of(struct pg_store *p, const char *conns_json,
                    struct store_expired **out, int **held, size_t *n,
                    struct error *err);

#endif
