/*
 * pg_backup.c - backup_store.h's record of backup runs on PostgreSQL
 * (table `backups` of migration 2 in pg.c) and the end of the sessions a
 * restore brings back. The snapshot of a PostgreSQL store (a logical
 * export) and the load of a restore are pg_export.c's.
 *
 * Owns statement slots 488..495 (pg_internal.h). Must never build SQL from
 * data.
 */
#include "store/pg_backup.h"

#include <stdlib.h>

#include "store/pg_internal.h"

enum { K_END_SESSIONS = 488, K_RECORD, K_LIST, K_LAST };
_Static_assert(K_LAST <= PG_SLOTS, "pg_backup.c owns slots 488..495");

static const char *const SQL_BACKUP[K_LAST - 488] = {
    [K_END_SESSIONS - 488] = "UPDATE sessions SET revoked_at = $1"
        " WHERE revoked_at IS NULL",
    [K_RECORD - 488] = "INSERT INTO backups(started_at, finished_at, ok,"
        " location, bytes, kind, backup_id, messages, payloads, missing,"
        " sha256, error) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
        " $11, $12)",
    [K_LIST - 488] = "SELECT id, started_at, finished_at, ok, location,"
        " bytes, kind, backup_id, messages, payloads, missing, sha256, error"
        " FROM backups ORDER BY id DESC LIMIT $1",
};

int pgs_backup_restored(struct pg_store *p, int64_t now, int64_t *n,
                        struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, now);
    *n = 0;
    return pg_run_done(p, K_END_SESSIONS, SQL_BACKUP[K_END_SESSIONS - 488],
                       &a, "end the restored sessions", n, err);
}

int pgs_backup_record(struct pg_store *p, const struct store_backup_row *r,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, r->started_at);
    pg_arg_int(&a, r->finished_at);
    pg_arg_int(&a, r->ok ? 1 : 0);
    pg_arg_text(&a, r->location);
    pg_arg_int(&a, r->bytes);
    pg_arg_text(&a, r->kind ? r->kind : "master-key");
    pg_arg_text(&a, r->backup_id);
    pg_arg_int(&a, r->messages);
    pg_arg_int(&a, r->payloads);
    pg_arg_int(&a, r->missing);
    pg_arg_text(&a, r->sha256);
    pg_arg_text(&a, r->error);
    return pg_run_done(p, K_RECORD, SQL_BACKUP[K_RECORD - 488], &a,
                       "record the backup", NULL, err);
}

int pgs_backup_list(struct pg_store *p, size_t limit,
                    struct store_backup_item **out, size_t *n,
                    struct error *err)
{
    struct pg_args a = {0};
    *out = NULL;
    *n = 0;
    if (limit == 0 || limit > 100000)
        return error_set(err, "list 1..100000 backups");
    pg_arg_int(&a, (int64_t)limit);
    PGresult *r = pg_run(p, K_LIST, SQL_BACKUP[K_LIST - 488], &a,
                         "list the backups", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    struct store_backup_item *items = calloc((size_t)rows + 1,
                                             sizeof(*items));
    for (int i = 0; items && i < rows; i++) {
        struct store_backup_item *it = &items[i];
        it->id = pg_val_int(r, i, 0);
        it->started_at = pg_val_int(r, i, 1);
        it->finished_at = pg_val_int(r, i, 2);
        it->ok = (int)pg_val_int(r, i, 3);
        it->location = pg_val_dup(r, i, 4);
        it->bytes = pg_val_int(r, i, 5);
        it->kind = pg_val_dup(r, i, 6);
        it->backup_id = pg_val_dup(r, i, 7);
        it->messages = pg_val_int(r, i, 8);
        it->payloads = pg_val_int(r, i, 9);
        it->missing = pg_val_int(r, i, 10);
        it->sha256 = pg_val_dup(r, i, 11);
        it->error = pg_val_dup(r, i, 12);
    }
    PQclear(r);
    if (items == NULL)
        return error_set(err, "out of memory");
    *out = items;
    *n = (size_t)rows;
    return 0;
}
