/*
 * pg_posture.c - the PostgreSQL statements of posture_store.h (R21): the
 * newest audit entry of some actions, the newest backup, counts for
 * /metrics, and whether a table exists.
 *
 * Owns statement slots 216..223 of pg_internal.h and nothing else. Read
 * only. What SQLite reads from sqlite_master is read from pg_catalog here:
 * a table "exists" when pg_class holds an ordinary or partitioned table
 * (relkind 'r' or 'p') of that name in current_schema(), the schema the
 * unqualified CREATE TABLEs of pg.c's migrations put Wharf's tables in
 * (pg_catalog, not information_schema: like sqlite_master it lists a
 * table whatever the privileges on it). The shape of the backups table is
 * read from pg_catalog.pg_attribute before its statement is prepared, so a
 * table of another shape gets posture_store.h's message, as on SQLite.
 * json_each(?) is json_array_elements_text($1::json); names order by
 * byte (COLLATE "C"), as SQLite's BINARY.
 *
 * Must never: write; build SQL from data.
 */
#include "store/pg_posture.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

#define SLOT_BASE 216

enum {
    P_AUDIT_NEWEST, P_TABLE_EXISTS, P_BACKUP_SHAPE, P_BACKUP_NEWEST,
    P_HOPS_BY_CONN, P_MSGS_BY_STATE, P_COUNT
};
_Static_assert(SLOT_BASE + P_COUNT <= 224,
               "pg_posture.c owns statement slots 216..223");

#define IN_SCHEMA "c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace" \
    " WHERE nspname = current_schema())"

static const char *const SQL_POSTURE[P_COUNT] = {
    [P_AUDIT_NEWEST] = "SELECT at, action FROM audit WHERE action IN"
        " (SELECT json_array_elements_text($1::json))"
        " ORDER BY seq DESC LIMIT 1",
    [P_TABLE_EXISTS] = "SELECT COUNT(*) FROM pg_catalog.pg_class c"
        " WHERE c.relname = $1::text AND c.relkind IN ('r', 'p') AND "
        IN_SCHEMA,
    /* how many of the columns the doctor reads the backups table has */
    [P_BACKUP_SHAPE] = "SELECT COUNT(*) FROM pg_catalog.pg_attribute a"
        " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
        " WHERE c.relname = 'backups' AND c.relkind IN ('r', 'p') AND "
        IN_SCHEMA " AND a.attnum > 0 AND NOT a.attisdropped"
        " AND a.attname IN ('finished_at', 'ok', 'location')",
    [P_BACKUP_NEWEST] = "SELECT finished_at, location FROM backups"
        " WHERE ok = 1 ORDER BY finished_at DESC LIMIT 1",
    [P_HOPS_BY_CONN] = "SELECT connector, state, COUNT(*) FROM hops"
        " GROUP BY connector, state"
        " ORDER BY connector COLLATE \"C\", state COLLATE \"C\"",
    [P_MSGS_BY_STATE] = "SELECT NULL::text, state, COUNT(*) FROM messages"
        " GROUP BY state ORDER BY state COLLATE \"C\"",
};

static PGresult *run(struct pg_store *p, int i, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, SLOT_BASE + i, SQL_POSTURE[i], a, what, err);
}

/* The single number a COUNT(*) statement returns; -1 with err. */
static int64_t count_of(struct pg_store *p, int i, const struct pg_args *a,
                        const char *what, struct error *err)
{
    PGresult *r = run(p, i, a, what, err);
    if (r == NULL)
        return -1;
    int64_t v = PQntuples(r) == 1 ? pg_val_int(r, 0, 0) : 0;
    PQclear(r);
    return v;
}

int pgs_audit_newest(struct pg_store *p, const char *actions_json,
                     int64_t *at, char **action, struct error *err)
{
    *at = 0;
    *action = NULL;
    struct pg_args a = {0};
    pg_arg_text(&a, actions_json);
    PGresult *r = run(p, P_AUDIT_NEWEST, &a, "read the audit trail", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        *at = pg_val_int(r, 0, 0);
        *action = pg_val_dup(r, 0, 1);
    }
    PQclear(r);
    return found ? 0 : 1;
}

int pgs_table_exists(struct pg_store *p, const char *name, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, name);
    int64_t n = count_of(p, P_TABLE_EXISTS, &a, "read the schema", err);
    return n < 0 ? -1 : n > 0;
}

int pgs_backup_newest(struct pg_store *p, int64_t *finished_at,
                      char **location, struct error *err)
{
    *finished_at = 0;
    *location = NULL;
    int exists = pgs_table_exists(p, "backups", err);
    if (exists <= 0)
        return exists < 0 ? -1 : 1;
    int64_t cols = count_of(p, P_BACKUP_SHAPE, NULL, "read the schema", err);
    if (cols < 0)
        return -1;
    if (cols != 3)
        return error_set(err, "the backups table does not have the shape "
                         "posture_store.h documents (finished_at, ok, "
                         "location)");
    PGresult *r = run(p, P_BACKUP_NEWEST, NULL, "read the backups", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        *finished_at = pg_val_int(r, 0, 0);
        *location = pg_val_dup(r, 0, 1);
    }
    PQclear(r);
    return found ? 0 : 1;
}

/* Rows (name, state, count) of statement i. */
static int counts(struct pg_store *p, int i, struct store_count **out,
                  size_t *n, struct error *err)
{
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, i, NULL, "count", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    if (rows > 0) {
        *out = calloc((size_t)rows, sizeof(**out));
        if (*out == NULL) {
            PQclear(r);
            return error_set(err, "out of memory");
        }
    }
    for (int k = 0; k < rows; k++) {
        (*out)[k].name = pg_val_dup(r, k, 0);
        (*out)[k].state = pg_val_dup(r, k, 1);
        (*out)[k].n = pg_val_int(r, k, 2);
    }
    *n = (size_t)rows;
    PQclear(r);
    return 0;
}

int pgs_hop_counts_by_connector(struct pg_store *p, struct store_count **out,
                                size_t *n, struct error *err)
{
    return counts(p, P_HOPS_BY_CONN, out, n, err);
}

int pgs_message_counts(struct pg_store *p, struct store_count **out,
                       size_t *n, struct error *err)
{
    return counts(p, P_MSGS_BY_STATE, out, n, err);
}
