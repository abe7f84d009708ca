/*
 * pg_posture.h - the PostgreSQL statements of posture_store.h (the newest
 * audit entry of some actions, the newest backup, counts, whether a table
 * exists), in pg_posture.c. Included only by sqlite_posture.c and
 * pg_posture.c. Behaviour and ownership: as posture_store.h says for the
 * store_ function of the same name.
 */
#ifndef WHARF_PG_POSTURE_H
#define WHARF_PG_POSTURE_H

#include "store/posture_store.h"

struct pg_store;

int pgs_audit_newest(struct pg_store *p, const char *actions_json,
                     int64_t *at, char **action, struct error *err);
int pgs_backup_newest(struct pg_store *p, int64_t *finished_at,
                      char **location, struct error *err);
int pgs_hop_counts_by_connector(struct pg_store *p, struct store_count **out,
                                size_t *n, struct error *err);
int pgs_message_counts(struct pg_store *p, struct store_count **out,
                       size_t *n, struct error *err);
int pgs_table_exists(struct pg_store *p, const char *name,
                     struct error *err);

#endif
