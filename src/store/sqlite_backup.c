/*
 * sqlite_backup.c - the SQLite statements of backup_store.h: a consistent
 * copy of the live database (online backup API inside one read
 * transaction; a PostgreSQL store's is pg_export.c's logical export), the
 * payload paths of a copy, quick_check of a restored file, the load of a
 * restored file into PostgreSQL (pg_export.c), and the backups table.
 *
 * Owns the connections it opens (closed before returning) and no cache
 * slot: each runs once per backup, so statements are prepared and
 * finalized per call. Every statement is a constant string with bound
 * parameters. Must never write to the live database except the backups
 * table (and, in a database just restored, the sessions it ends), never
 * hold a transaction on it beyond store_backup_copy, and never follow a
 * payload path (it only reports them).
 */
#include "store/backup_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/pg_backup.h"
#include "store/pg_export.h"
#include "store/store_internal.h"

#define SQL_COUNT_MSGS "SELECT COUNT(*), COUNT(payload_path) FROM messages"
#define SQL_SCHEMA "SELECT MAX(version) FROM schema_version"
#define SQL_AUDIT_HEAD "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
#define SQL_PAYLOADS "SELECT id, payload_path FROM messages" \
    " WHERE payload_path IS NOT NULL ORDER BY id"
#define SQL_RECORD "INSERT INTO backups(started_at, finished_at, ok," \
    " location, bytes, kind, backup_id, messages, payloads, missing," \
    " sha256, error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11," \
    " ?12)"
#define SQL_END_SESSIONS "UPDATE sessions SET revoked_at = ?1" \
    " WHERE revoked_at IS NULL"
#define SQL_LIST "SELECT id, started_at, finished_at, ok, location, bytes," \
    " kind, backup_id, messages, payloads, missing, sha256, error" \
    " FROM backups ORDER BY id DESC LIMIT ?1"

/* ---- connections of their own -------------------------------------------- */

static int bk_db_error(sqlite3 *db, const char *path, const char *what,
                       struct error *err)
{
    return error_set(err, "database %s: %s: %s", path, what,
                     db ? sqlite3_errmsg(db) : "out of memory");
}

static sqlite3 *bk_open(const char *path, int flags, struct error *err)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        bk_db_error(db, path, "cannot open", err);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_extended_result_codes(db, 1);
    return db;
}

static int bk_exec(sqlite3 *db, const char *path, const char *sql,
                   struct error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    error_set(err, "database %s: %s", path, msg ? msg : "exec failed");
    sqlite3_free(msg);
    return -1;
}

/* The snapshot's newest audit entry into c (none: seq 0). */
static int bk_audit_head(sqlite3 *db, struct store_backup_counts *c)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, SQL_AUDIT_HEAD, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 1);
        c->audit_seq = sqlite3_column_int64(st, 0);
        snprintf(c->audit_hash, sizeof(c->audit_hash), "%s", h ? h : "");
        rc = SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The counts of c, read inside the open read transaction of db. */
static int bk_counts(sqlite3 *db, const char *path,
                     struct store_backup_counts *c, struct error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, SQL_COUNT_MSGS, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        c->messages = sqlite3_column_int64(st, 0);
        c->payloads = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_ROW &&
        (rc = sqlite3_prepare_v2(db, SQL_SCHEMA, -1, &st, NULL)) ==
        SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        c->schema_version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW && bk_audit_head(db, c) != 0)
        rc = SQLITE_ERROR;
    return rc == SQLITE_ROW ? 0 : bk_db_error(db, path, "count messages",
                                             err);
}

/* The online backup of src (inside its read transaction) into dst. */
static int bk_copy_pages(sqlite3 *src, sqlite3 *dst, const char *path,
                         struct error *err)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL)
        return bk_db_error(dst, path, "start the copy", err);
    int rc = sqlite3_backup_step(b, -1);    /* every page, one snapshot */
    int fin = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || fin != SQLITE_OK)
        return error_set(err, "database %s: the copy failed: %s", path,
                         sqlite3_errstr(rc != SQLITE_DONE ? rc : fin));
    return 0;
}

/* A new empty database file at copy_path (0600, O_EXCL), opened. */
static sqlite3 *bk_open_copy(const char *copy_path, struct error *err)
{
    int fd = open(copy_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC |
                  O_NOFOLLOW, 0600);
    if (fd < 0) {
        error_errno(err, errno, "cannot create %s", copy_path);
        return NULL;
    }
    close(fd);
    sqlite3 *db = bk_open(copy_path, SQLITE_OPEN_READWRITE, err);
    if (db != NULL && bk_exec(db, copy_path, "PRAGMA journal_mode=OFF;"
                              " PRAGMA synchronous=OFF;", err) != 0) {
        sqlite3_close(db);
        db = NULL;
    }
    return db;
}

/* A PostgreSQL store: the export is the snapshot; counted from it. */
static int bk_copy_pg(const char *url, const char *copy_path,
                      struct store_backup_counts *c, struct error *err)
{
    if (pgx_export(url, copy_path, err) != 0)
        return -1;
    sqlite3 *db = bk_open(copy_path, SQLITE_OPEN_READONLY, err);
    int rc = db != NULL ? bk_counts(db, copy_path, c, err) : -1;
    sqlite3_close(db);
    if (rc != 0)
        unlink(copy_path);
    return rc;
}

int store_backup_copy(const char *db_path, const char *copy_path,
                      struct store_backup_counts *c, struct error *err)
{
    memset(c, 0, sizeof(*c));
    if (strncmp(db_path, "postgres", 8) == 0)     /* a postgresql:// URL */
        return bk_copy_pg(db_path, copy_path, c, err);
    sqlite3 *src = bk_open(db_path, SQLITE_OPEN_READWRITE, err);
    if (src == NULL)
        return -1;
    sqlite3 *dst = bk_open_copy(copy_path, err);
    int rc = dst == NULL ? -1 : 0;
    /* The read transaction starts at the first read (the counts) and
     * holds one snapshot until COMMIT: the backup step reads the same. */
    if (rc == 0)
        rc = bk_exec(src, db_path, "BEGIN", err);
    if (rc == 0)
        rc = bk_counts(src, db_path, c, err);
    if (rc == 0)
        rc = bk_copy_pages(src, dst, db_path, err);
    bk_exec(src, db_path, "COMMIT", NULL);
    if (rc == 0)        /* a plain rollback-journal file from now on */
        rc = bk_exec(dst, copy_path, "PRAGMA journal_mode=DELETE", err);
    sqlite3_close(dst);
    sqlite3_close(src);
    if (rc != 0 && dst != NULL)
        unlink(copy_path);
    return rc;
}

int store_backup_payloads(const char *path, store_backup_payload_fn fn,
                          void *ctx, struct error *err)
{
    sqlite3 *db = bk_open(path, SQLITE_OPEN_READONLY, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, SQL_PAYLOADS, -1, &st, NULL);
    int out = rc == SQLITE_OK ? 0 : bk_db_error(db, path, "list payloads",
                                                err);
    while (out == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *p = (const char *)sqlite3_column_text(st, 1);
        out = fn(ctx, id ? id : "", p ? p : "", err);
    }
    if (out == 0 && rc != SQLITE_DONE)
        out = bk_db_error(db, path, "list payloads", err);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

int store_backup_check(const char *path, struct error *err)
{
    sqlite3 *db = bk_open(path, SQLITE_OPEN_READONLY, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
    int out = rc == SQLITE_OK ? 0 : bk_db_error(db, path, "check", err);
    if (out == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (r == NULL || strcmp(r, "ok") != 0)
            out = error_set(err, "database %s is damaged: %s", path,
                            r ? r : "no answer");
    } else if (out == 0) {
        out = bk_db_error(db, path, "check", err);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

int store_backup_target_empty(const char *url, struct error *err)
{
    return pgx_target_empty(url, err);
}

int store_backup_load(const char *path, const char *url, struct error *err)
{
    return pgx_import(path, url, err);
}

int store_backup_restored(struct store *s, int64_t now, int64_t *n,
                          struct error *err)
{
    if (store_pg(s))
        return pgs_backup_restored(store_pg(s), now, n, err);
    sqlite3_stmt *st = NULL;
    *n = 0;
    if ((st = store_stmt_once(s, SQL_END_SESSIONS, "end the restored sessions", err)) == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_db_error(s, err, "end the restored sessions");
    *n = sqlite3_changes(store_db(s));
    return 0;
}

/* ---- the record -------------------------------------------------------------- */

int store_backup_record(struct store *s, const struct store_backup_row *r,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_backup_record(store_pg(s), r, err);
    sqlite3_stmt *st = NULL;
    if ((st = store_stmt_once(s, SQL_RECORD, "record the backup", err)) == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->started_at);
    sqlite3_bind_int64(st, 2, r->finished_at);
    sqlite3_bind_int(st, 3, r->ok ? 1 : 0);
    store_bind_text(st, 4, r->location);
    sqlite3_bind_int64(st, 5, r->bytes);
    store_bind_text(st, 6, r->kind ? r->kind : "master-key");
    store_bind_text(st, 7, r->backup_id);
    sqlite3_bind_int64(st, 8, r->messages);
    sqlite3_bind_int64(st, 9, r->payloads);
    sqlite3_bind_int64(st, 10, r->missing);
    store_bind_text(st, 11, r->sha256);
    store_bind_text(st, 12, r->error);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "record the "
                                                  "backup");
}

static void bk_item(sqlite3_stmt *st, struct store_backup_item *it)
{
    it->id = sqlite3_column_int64(st, 0);
    it->started_at = sqlite3_column_int64(st, 1);
    it->finished_at = sqlite3_column_int64(st, 2);
    it->ok = sqlite3_column_int(st, 3);
    it->location = store_col_dup(st, 4);
    it->bytes = sqlite3_column_int64(st, 5);
    it->kind = store_col_dup(st, 6);
    it->backup_id = store_col_dup(st, 7);
    it->messages = sqlite3_column_int64(st, 8);
    it->payloads = sqlite3_column_int64(st, 9);
    it->missing = sqlite3_column_int64(st, 10);
    it->sha256 = store_col_dup(st, 11);
    it->error = store_col_dup(st, 12);
}

int store_backup_list(struct store *s, size_t limit,
                      struct store_backup_item **out, size_t *n,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_backup_list(store_pg(s), limit, out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (limit == 0 || limit > 100000)
        return error_set(err, "list 1..100000 backups");
    if ((st = store_stmt_once(s, SQL_LIST, "list the backups", err)) == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)limit);
    struct store_backup_item *items = calloc(limit, sizeof(*items));
    int rc = items == NULL ? SQLITE_NOMEM : SQLITE_OK;
    while (items != NULL && *n < limit &&
           (rc = sqlite3_step(st)) == SQLITE_ROW)
        bk_item(st, &items[(*n)++]);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        store_backup_items_free(items, *n);
        *n = 0;
        return rc == SQLITE_NOMEM ? error_set(err, "out of memory")
                                  : store_db_error(s, err, "list the "
                                                   "backups");
    }
    *out = items;
    return 0;
}

void store_backup_items_free(struct store_backup_item *items, size_t n)
{
    for (size_t i = 0; items != NULL && i < n; i++) {
        free(items[i].location);
        free(items[i].kind);
        free(items[i].backup_id);
        free(items[i].sha256);
        free(items[i].error);
    }
    free(items);
}
