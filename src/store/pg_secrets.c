/*
 * pg_secrets.c - the PostgreSQL statements of secret_store.h: sealed
 * secrets of connectors by name (table `connector_secrets` of
 * PG_MIGRATIONS 1 in pg.c), beside its twin sqlite_secrets.c.
 *
 * Owns statement slots 464..479 (pg_internal.h) and nothing else. Each
 * call is one statement: put is an upsert (INSERT ... ON CONFLICT DO
 * UPDATE), so two nodes writing one row at once leave one row, the last
 * writer's; nothing here reads and then writes. The imported rows are
 * replaced by pg.c inside store_flow_put, not here.
 *
 * Must never: see plaintext (rows hold what vault_seal() returned; sealing
 * is core/conn_secrets.c's and core/env.c's), log or return a blob in an
 * error, or build SQL from data.
 */
#include "store/pg_secrets.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

#define SLOT_BASE 464

enum { C_PUT, C_GET, C_DEL_ONE, C_DEL_ALL, C_NAMES, C_LAST };
_Static_assert(SLOT_BASE + C_LAST <= 480, "pg_secrets.c owns slots 464..479");

static const char *const SQL_SECRETS[C_LAST] = {
    [C_PUT] = "INSERT INTO connector_secrets(connector, name, blob,"
        " expires_at, updated_at) VALUES($1, $2, $3, $4, $5)"
        " ON CONFLICT(connector, name) DO UPDATE SET blob = excluded.blob,"
        " expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    [C_GET] = "SELECT blob, expires_at FROM connector_secrets"
        " WHERE connector = $1 AND name = $2",
    [C_DEL_ONE] = "DELETE FROM connector_secrets WHERE connector = $1"
        " AND name = $2",
    [C_DEL_ALL] = "DELETE FROM connector_secrets WHERE connector = $1",
    /* names are COLLATE "C": the prefix compares bytes, as in SQLite */
    [C_NAMES] = "SELECT name FROM connector_secrets WHERE connector = $1"
        " AND substr(name, 1, length($2::text)) = $2::text"
        " ORDER BY updated_at, name",
};

static PGresult *run(struct pg_store *p, int i, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, SLOT_BASE + i, SQL_SECRETS[i], a, what, err);
}

int pgs_csecret_put(struct pg_store *p, const char *connector,
                    const char *name, const void *blob, size_t len,
                    int64_t expires_at, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, connector);
    pg_arg_text(&a, name);
    pg_arg_blob(&a, blob ? blob : "", len);
    pg_arg_int(&a, expires_at);
    pg_arg_int(&a, time_now_ms());
    return pg_run_done(p, SLOT_BASE + C_PUT, SQL_SECRETS[C_PUT], &a,
                       "store a connector secret", NULL, err);
}

int pgs_csecret_get(struct pg_store *p, const char *connector,
                    const char *name, unsigned char **blob, size_t *len,
                    int64_t *expires_at, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, connector);
    pg_arg_text(&a, name);
    PGresult *r = run(p, C_GET, &a, "read a connector secret", err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    *blob = pg_val_blob(r, 0, 0, len);
    if (expires_at)
        *expires_at = pg_val_int(r, 0, 1);
    PQclear(r);
    return *blob ? 1 : error_set(err, "out of memory");
}

int pgs_csecret_del(struct pg_store *p, const char *connector,
                    const char *name, struct error *err)
{
    struct pg_args a = {0};
    int i = name ? C_DEL_ONE : C_DEL_ALL;
    pg_arg_text(&a, connector);
    if (name)
        pg_arg_text(&a, name);
    return pg_run_done(p, SLOT_BASE + i, SQL_SECRETS[i], &a,
                       "delete a connector secret", NULL, err);
}

int pgs_csecret_names(struct pg_store *p, const char *connector,
                      const char *prefix, char ***names, size_t *n,
                      struct error *err)
{
    struct pg_args a = {0};
    *names = NULL;
    *n = 0;
    pg_arg_text(&a, connector);
    pg_arg_text(&a, prefix);
    PGresult *r = run(p, C_NAMES, &a, "list connector state", err);
    if (r == NULL)
        return -1;
    size_t rows = (size_t)PQntuples(r);
    char **out = calloc(rows + 1, sizeof(char *));
    int oom = out == NULL;
    for (size_t i = 0; !oom && i < rows; i++)
        oom = (out[i] = pg_val_dup(r, (int)i, 0)) == NULL;
    PQclear(r);
    if (oom) {
        for (size_t i = 0; out && i < rows; i++)
            free(out[i]);
        free(out);
        return error_set(err, "out of memory");
    }
    *names = out;
    *n = rows;
    return 0;
}
