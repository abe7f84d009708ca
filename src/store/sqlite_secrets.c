/*
 * sqlite_secrets.c - the SQLite statements of secret_store.h: sealed
 * secrets of connectors (table of migration 3 in sqlite.c).
 *
 * Owns statement cache slots 128..143 of store_stmt_ext and nothing else.
 * Every statement is a constant string with bound parameters. It stores
 * and returns sealed blobs as given; it must never see plaintext (sealing
 * is the vault's, in core/conn_secrets.c and core/env.c) nor build SQL
 * from data.
 */
#include "store/secret_store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_secrets.h"
#include "store/store_internal.h"

enum { C_PUT = 128, C_GET, C_DEL_ONE, C_DEL_ALL, C_DROP_IMPORTED, C_DROP_GONE,
       C_NAMES, C_LAST };
_Static_assert(C_LAST <= 144, "sqlite_secrets.c owns statement slots 128..143");

static const char *const SQL_SECRETS[C_LAST - 128] = {
    [C_PUT - 128] = "INSERT INTO connector_secrets(connector, name, blob,"
        " expires_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?5)"
        " ON CONFLICT(connector, name) DO UPDATE SET blob = excluded.blob,"
        " expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    [C_GET - 128] = "SELECT blob, expires_at FROM connector_secrets"
        " WHERE connector = ?1 AND name = ?2",
    [C_DEL_ONE - 128] = "DELETE FROM connector_secrets WHERE connector = ?1"
        " AND name = ?2",
    [C_DEL_ALL - 128] = "DELETE FROM connector_secrets WHERE connector = ?1",
    [C_DROP_IMPORTED - 128] = "DELETE FROM connector_secrets"
        " WHERE substr(name, 1, 6) <> 'state:'",
    [C_DROP_GONE - 128] = "DELETE FROM connector_secrets WHERE connector"
        " NOT IN (SELECT name FROM connectors)",
    [C_NAMES - 128] = "SELECT name FROM connector_secrets WHERE connector = ?1"
        " AND substr(name, 1, length(?2)) = ?2 ORDER BY updated_at, name",
};

static sqlite3_stmt *sec_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_SECRETS[slot - 128], err);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int store_csecret_put(struct store *s, const char *connector, const char *name,
                      const void *blob, size_t len, int64_t expires_at,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_csecret_put(store_pg(s), connector, name, blob, len,
                               expires_at, err);
    sqlite3_stmt *st = sec_stmt(s, C_PUT, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, connector);
    store_bind_text(st, 2, name);
    sqlite3_bind_blob(st, 3, blob, (int)len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, expires_at);
    sqlite3_bind_int64(st, 5, now_ms());
    return store_step_done(s, st, err, "store a connector secret");
}

int store_csecret_get(struct store *s, const char *connector, const char *name,
                      unsigned char **blob, size_t *len, int64_t *expires_at,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_csecret_get(store_pg(s), connector, name, blob, len,
                               expires_at, err);
    sqlite3_stmt *st = sec_stmt(s, C_GET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, connector);
    store_bind_text(st, 2, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return store_db_error(s, err, "read a connector secret");
    }
    int n = sqlite3_column_bytes(st, 0);
    *blob = malloc(n > 0 ? (size_t)n : 1);
    if (*blob != NULL && n > 0)
        memcpy(*blob, sqlite3_column_blob(st, 0), (size_t)n);
    *len = (size_t)n;
    if (expires_at)
        *expires_at = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);      /* a statement left on a row pins a snapshot */
    return *blob ? 1 : error_set(err, "out of memory");
}

int store_csecret_del(struct store *s, const char *connector, const char *name,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_csecret_del(store_pg(s), connector, name, err);
    sqlite3_stmt *st = sec_stmt(s, name ? C_DEL_ONE : C_DEL_ALL, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, connector);
    if (name)
        store_bind_text(st, 2, name);
    return store_step_done(s, st, err, "delete a connector secret");
}

int store_csecret_replace(struct store *s, const struct store_secret *rows,
                          size_t n, struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, C_DROP_IMPORTED, err);
    if (st == NULL || store_step_done(s, st, err, "drop imported secrets") < 0)
        return -1;
    st = sec_stmt(s, C_DROP_GONE, err);
    if (st == NULL || store_step_done(s, st, err, "drop secrets of removed "
                                      "connectors") < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (store_csecret_put(s, rows[i].connector, rows[i].name, rows[i].blob,
                              rows[i].len, rows[i].expires_at, err) < 0)
            return -1;
    return 0;
}

int store_csecret_names(struct store *s, const char *connector,
                        const char *prefix, char ***names, size_t *n,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_csecret_names(store_pg(s), connector, prefix, names, n,
                                 err);
    *names = NULL;
    *n = 0;
    sqlite3_stmt *st = sec_stmt(s, C_NAMES, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, connector);
    store_bind_text(st, 2, prefix);
    int rc, oom = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **g = realloc(*names, (*n + 2) * sizeof(char *));
        oom = g == NULL;
        if (g) {
            *names = g;
            g[*n] = store_col_dup(st, 0);
            g[*n + 1] = NULL;
            oom = g[(*n)++] == NULL;
        }
    }
    sqlite3_reset(st);
    if (oom || (rc != SQLITE_DONE && rc != SQLITE_ROW)) {
        for (size_t i = 0; *names && i < *n; i++)
            free((*names)[i]);
        free(*names);
        *names = NULL;
        *n = 0;
        return oom ? error_set(err, "out of memory")
                   : store_db_error(s, err, "list connector state");
    }
    return 0;
}
