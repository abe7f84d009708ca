/*
 * pg_backup.h - the record of backup runs (backup_store.h) on PostgreSQL
 * (pg_backup.c); included only by sqlite_backup.c, which hands the calls
 * over on a PostgreSQL store. The snapshot of a PostgreSQL store and its
 * load into an empty one are pg_export.c's.
 */
#ifndef WHARF_PG_BACKUP_H
#define WHARF_PG_BACKUP_H

#include "store/backup_store.h"

struct pg_store;

int pgs_backup_restored(struct pg_store *p, int64_t now, int64_t *n,
                        struct error *err);
int pgs_backup_record(struct pg_store *p, const struct store_backup_row *r,
                      struct error *err);
int pgs_backup_list(struct pg_store *p, size_t limit,
                    struct store_backup_item **out, size_t *n,
                    struct error *err);

#endif
