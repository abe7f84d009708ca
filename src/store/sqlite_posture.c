/*
 * sqlite_posture.c - the SQLite statements of posture_store.h: the newest
 * audit entry of some actions, the newest backup, counts for /metrics,
 * and whether a table of another task exists yet.
 *
 * Owns no cache slot: these run once per report or scrape, prepared and
 * finalized each time. Every statement is a constant string with bound
 * parameters. Must never write. On a PostgreSQL store each entry point
 * hands over to pg_posture.c.
 */
#include "store/posture_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_posture.h"
#include "store/store_internal.h"

#define SQL_AUDIT_NEWEST "SELECT at, action FROM audit WHERE action IN" \
    " (SELECT value FROM json_each(?1)) ORDER BY seq DESC LIMIT 1"
#define SQL_TABLE_EXISTS "SELECT COUNT(*) FROM sqlite_master WHERE" \
    " type = 'table' AND name = ?1"
#define SQL_BACKUP_NEWEST "SELECT finished_at, location FROM backups" \
    " WHERE ok = 1 ORDER BY finished_at DESC LIMIT 1"
#define SQL_HOPS_BY_CONN "SELECT connector, state, COUNT(*) FROM hops" \
    " GROUP BY connector, state ORDER BY connector, state"
#define SQL_MSGS_BY_STATE "SELECT NULL, state, COUNT(*) FROM messages" \
    " GROUP BY state ORDER BY state"

int store_audit_newest(struct store *s, const char *actions_json,
                       int64_t *at, char **action, struct error *err)
{
    if (store_pg(s))
        return pgs_audit_newest(store_pg(s), actions_json, at, action, err);
    *at = 0;
    *action = NULL;
    sqlite3_stmt *st = store_stmt_once(s, SQL_AUDIT_NEWEST, "prepare", err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, actions_json);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *at = sqlite3_column_int64(st, 0);
        *action = store_col_dup(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read the audit trail");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_table_exists(struct store *s, const char *name, struct error *err)
{
    if (store_pg(s))
        return pgs_table_exists(store_pg(s), name, err);
    sqlite3_stmt *st = store_stmt_once(s, SQL_TABLE_EXISTS, "prepare", err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, name);
    int rc = sqlite3_step(st);
    int n = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return store_db_error(s, err, "read the schema");
    return n > 0;
}

int store_backup_newest(struct store *s, int64_t *finished_at,
                        char **location, struct error *err)
{
    if (store_pg(s))
        return pgs_backup_newest(store_pg(s), finished_at, location,
                                 err);
    *finished_at = 0;
    *location = NULL;
    int exists = store_table_exists(s, "backups", err);
    if (exists <= 0)
        return exists < 0 ? -1 : 1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_db(s), SQL_BACKUP_NEWEST, -1, &st, NULL) !=
        SQLITE_OK) {
        sqlite3_finalize(st);
        return error_set(err, "the backups table does not have the shape "
                         "posture_store.h documents (finished_at, ok, "
                         "location)");
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *finished_at = sqlite3_column_int64(st, 0);
        *location = store_col_dup(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read the backups");
    return rc == SQLITE_ROW ? 0 : 1;
}

void store_counts_free(struct store_count *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].name);
        free(c[i].state);
    }
    free(c);
}

/* Rows (name, state, count) of sql. */
static int counts(struct store *s, const char *sql, struct store_count **out,
                  size_t *n, struct error *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = store_stmt_once(s, sql, "prepare", err);
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_count *p = realloc(*out, (*n + 1) * sizeof(**out));
        if (p == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        *out = p;
        p[*n].name = store_col_dup(st, 0);
        p[*n].state = store_col_dup(st, 1);
        p[(*n)++].n = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return 0;
    store_counts_free(*out, *n);
    *out = NULL;
    *n = 0;
    return store_db_error(s, err, "count");
}

int store_hop_counts_by_connector(struct store *s, struct store_count **out,
                                  size_t *n, struct error *err)
{
    if (store_pg(s))
        return pgs_hop_counts_by_connector(store_pg(s), out, n, err);
    return counts(s, SQL_HOPS_BY_CONN, out, n, err);
}

int store_message_counts(struct store *s, struct store_count **out,
                         size_t *n, struct error *err)
{
    if (store_pg(s))
        return pgs_message_counts(store_pg(s), out, n, err);
    return counts(s, SQL_MSGS_BY_STATE, out, n, err);
}
