/*
 * pg_payload.h - the PostgreSQL twins of payload_store.h (pg_payload.c).
 * Included only by sqlite_payload.c (which hands each call over on a
 * PostgreSQL store) and pg_payload.c. Behaviour: as payload_store.h says
 * for the store_ function of the same name.
 */
#ifndef WHARF_PG_PAYLOAD_H
#define WHARF_PG_PAYLOAD_H

#include "store/payload_store.h"

struct pg_store;

int pgs_payload_begin(struct pg_store *p, int synced, struct error *err);
int pgs_payload_commit(struct pg_store *p, struct error *err);
void pgs_payload_rollback(struct pg_store *p);
int pgs_payload_put(struct pg_store *p, const char *path, int64_t seq,
                    const void *b, size_t n, struct error *err);
int pgs_payload_read_begin(struct pg_store *p, struct error *err);
void pgs_payload_read_end(struct pg_store *p);
int pgs_payload_get(struct pg_store *p, const char *path, int64_t seq,
                    unsigned char **b, size_t *n, struct error *err);
int pgs_payload_head(struct pg_store *p, const char *path, int max,
                     unsigned char **rows, size_t *lens, int *got,
                     int64_t *total, struct error *err);
int pgs_payload_size(struct pg_store *p, const char *path, uint64_t *size,
                     struct error *err);
int pgs_payload_replace(struct pg_store *p, const char *path, int64_t seq,
                        const void *b, size_t n, struct error *err);
int pgs_payload_delete(struct pg_store *p, const char *path,
                       struct error *err);
int pgs_payload_sweep(struct pg_store *p, int64_t before_ms,
                      int64_t *deleted, struct error *err);

#endif
