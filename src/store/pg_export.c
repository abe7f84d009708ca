/*
 * pg_export.c - the logical export of a PostgreSQL store into a SQLite
 * database file, and the load of such a file into an empty PostgreSQL
 * database (pg_export.h): the `wharf.db` entry of a backup of a PostgreSQL
 * store, and `wharf restore --store URL` (R20 on R21's backend).
 *
 * What it owns: PX_TABLES, the one list of Wharf's tables with their
 * columns as both schemas have them (pg.c's and sqlite.c's migrations:
 * same names, same columns; PostgreSQL's extra `seq` of connectors and
 * links only keeps their order, which SQLite keeps as rowid order), each
 * with constant statement pairs: PostgreSQL SELECT -> SQLite INSERT
 * (export) and SQLite SELECT -> PostgreSQL INSERT (import). Types convert
 * by a letter per column: i (BIGINT/INTEGER, ms times and flags alike),
 * t (TEXT), b (BYTEA <-> BLOB); NULL stays NULL. schema_version is not
 * copied: each side keeps its own migrations' record. Each export first
 * checks that both schemas have exactly PX_TABLES' tables (a table added
 * to a migration and not here fails the backup instead of missing from
 * it).
 *
 * The export reads in one REPEATABLE READ, READ ONLY transaction (every
 * table from the same snapshot: what was committed before it started is
 * in it, nothing after), one row in memory at a time (libpq's single-row
 * mode), into a file made by the SQLite store's own migrations
 * (store_open), written with the journal off (a temp copy; any failure
 * removes it). The import runs in one transaction: it locks every table
 * against writers (PX_LOCK), checks they are empty (a node that wrote
 * first makes it fail; one that starts meanwhile waits: no mix), drops the
 * migration's seed setting, copies every table
 * in an order that satisfies the foreign keys, and sets each BIGSERIAL
 * sequence past the ids copied.
 *
 * Owns the connections it opens (closed before returning). Must never
 * build SQL from data (statements are constant strings; values are
 * parameters) nor write to the database it exports.
 */
#include "store/pg_export.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/pg_internal.h"
#include "store/store.h"

#define PX_MAX_COLS 18

/* Placeholders for n columns: SQLite (?) and PostgreSQL ($n). */
#define SQ1 "?"
#define SQ2 SQ1 ", ?"
#define SQ3 SQ2 ", ?"
#define SQ4 SQ3 ", ?"
#define SQ5 SQ4 ", ?"
#define SQ6 SQ5 ", ?"
#define SQ7 SQ6 ", ?"
#define SQ8 SQ7 ", ?"
#define SQ9 SQ8 ", ?"
#define SQ10 SQ9 ", ?"
#define SQ11 SQ10 ", ?"
#define SQ12 SQ11 ", ?"
#define SQ13 SQ12 ", ?"
#define SQ14 SQ13 ", ?"
#define SQ18 SQ14 ", ?, ?, ?, ?"
#define PG1 "$1"
#define PG2 PG1 ", $2"
#define PG3 PG2 ", $3"
#define PG4 PG3 ", $4"
#define PG5 PG4 ", $5"
#define PG6 PG5 ", $6"
#define PG7 PG6 ", $7"
#define PG8 PG7 ", $8"
#define PG9 PG8 ", $9"
#define PG10 PG9 ", $10"
#define PG11 PG10 ", $11"
#define PG12 PG11 ", $12"
#define PG13 PG12 ", $13"
#define PG14 PG13 ", $14"
#define PG18 PG14 ", $15, $16, $17, $18"

struct px_table {
    const char *name;
    const char *types;          /* one letter per column: i, t, b */
    const char *pg_select;      /* export: read, in a stable order */
    const char *lite_insert;    /* export: write */
    const char *lite_select;    /* import: read, in rowid order */
    const char *pg_insert;      /* import: write */
    const char *pg_any;         /* a row that makes a target not empty */
};

#define PX(tbl, cols, order, n, types) \
    { tbl, types, "SELECT " cols " FROM " tbl " ORDER BY " order, \
      "INSERT INTO " tbl "(" cols ") VALUES(" SQ##n ")", \
      "SELECT " cols " FROM " tbl " ORDER BY rowid", \
      "INSERT INTO " tbl "(" cols ") VALUES(" PG##n ")", \
      "SELECT 1 FROM " tbl " LIMIT 1" }

/* Parents before the rows that reference them (messages before hops,
 * users before recovery codes, sessions and tokens). */
static const struct px_table PX_TABLES[] = {
    { "settings", "tt", "SELECT key, value FROM settings ORDER BY key",
      "INSERT INTO settings(key, value) VALUES(?, ?)",
      "SELECT key, value FROM settings ORDER BY rowid",
      "INSERT INTO settings(key, value) VALUES($1, $2)",
      "SELECT 1 FROM settings WHERE key <> 'flow_generation'"
      " OR value <> '0' LIMIT 1" },
    PX("connectors", "name, type, config", "seq", 3, "ttt"),
    PX("links", "src, dst", "seq", 2, "tt"),
    PX("messages", "id, created_at, updated_at, source, filename, size,"
       " sha256, state, payload_path, dedup_key", "id", 10, "tiittittt" "t"),
    PX("hops", "id, message_id, connector, state, attempts, next_at,"
       " lease_owner, lease_until, last_error, receipt, created_at,"
       " updated_at, size", "id", 13, "ittti" "ititt" "iii"),
    PX("events", "id, message_id, hop_id, at, level, text", "id", 6,
       "itiitt"),
    PX("connector_secrets", "connector, name, blob, expires_at, updated_at",
       "connector, name", 5, "ttbii"),
    PX("partners", "name, as2_id, config", "name", 3, "ttt"),
    PX("certificates", "owner, id, subject, not_before, not_after, use_from,"
       " der, key_sealed", "owner, id", 8, "tttiiibb"),
    PX("jobs", "id, message_id, hop_id, connector, kind, state, attempts,"
       " waits, due_at, give_up_at, window_ms, lease_owner, lease_until,"
       " data, input, last_error, created_at, updated_at", "id", 18,
       "ttitt" "tiiii" "itibb" "tii"),
    PX("users", "id, name, role, password_hash, must_change, totp_sealed,"
       " totp_enabled, totp_last_step, oidc_subject, disabled, created_at,"
       " updated_at", "id", 12, "ittti" "biiti" "ii"),
    PX("recovery_codes", "user_id, code_hash, used_at", "user_id, code_hash",
       3, "iti"),
    PX("sessions", "id_hash, user_id, csrf_hash, address, mfa, created_at,"
       " last_seen_at, expires_at, revoked_at", "id_hash", 9, "titti" "iiii"),
    PX("tokens", "id, name, hash, role, created_by, created_at, expires_at,"
       " last_used_at, revoked_at, owner_id", "id", 10, "ttttt" "iiiii"),
    PX("audit", "seq, at, actor, address, action, target, detail,"
       " prev_hash, hash", "seq", 9, "iittt" "tttt"),
    PX("audit_checkpoints", "seq, hash, at, key_id, signature", "seq", 5,
       "ititt"),
    PX("bans", "address, failures, level, banned_until, updated_at",
       "address", 5, "tiiii"),
    PX("receipts", "id, message_id, direction, at, as2_message_id,"
       " original_message_id, headers, body", "id", 8, "ittit" "ttb"),
    PX("refusals", "message_id, source, address, reason, count, first_at,"
       " last_at, event_id", "message_id", 8, "tttti" "iii"),
    PX("login_throttle", "account, failures, first_at, level, locked_until,"
       " updated_at", "account", 6, "tiiiii"),
    PX("replay_guard", "scope, sig, until, run, done", "scope, sig", 5,
       "ttiti"),
    PX("alerts", "id, kind, key, level, state, summary, details, count,"
       " first_at, last_at, updated_at, resolved_at, incident_id", "id", 13,
       "itttt" "ttiii" "iii"),
    PX("incidents", "id, tier, state, title, owner, severity, partners,"
       " messages, notify, created_at, updated_at, incident_at, breach_at,"
       " closed_at", "id", 14, "itttt" "tttti" "iiii"),
    PX("security_events", "id, at, alert_id, incident_id, actor, action,"
       " level, text", "id", 8, "iiiit" "ttt"),
    PX("backups", "id, started_at, finished_at, ok, location, bytes, kind,"
       " backup_id, messages, payloads, missing, sha256, error", "id", 13,
       "iiiit" "ittii" "itt"),
    PX("legal_holds", "message_id, at, actor, reason", "message_id", 4,
       "titt"),
    PX("purge_pending", "message_id, payload_path, at", "message_id", 3,
       "tti"),
    PX("nodes", "id, address, version, started_at, seen_at, beat_ms,"
       " stopped_at", "id", 7, "tttii" "ii"),
};
#define PX_NTABLES (sizeof(PX_TABLES) / sizeof(PX_TABLES[0]))

/* Every BIGSERIAL id of pg.c's schema, set past the rows an import wrote
 * (connectors.seq and links.seq were drawn by the inserts themselves). */
static const char *const PX_SEQUENCES[] = {
    "SELECT setval(pg_get_serial_sequence('hops', 'id'),"
    " COALESCE((SELECT MAX(id) FROM hops), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('events', 'id'),"
    " COALESCE((SELECT MAX(id) FROM events), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('users', 'id'),"
    " COALESCE((SELECT MAX(id) FROM users), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('receipts', 'id'),"
    " COALESCE((SELECT MAX(id) FROM receipts), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('alerts', 'id'),"
    " COALESCE((SELECT MAX(id) FROM alerts), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('incidents', 'id'),"
    " COALESCE((SELECT MAX(id) FROM incidents), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('security_events', 'id'),"
    " COALESCE((SELECT MAX(id) FROM security_events), 0) + 1, false)",
    "SELECT setval(pg_get_serial_sequence('backups', 'id'),"
    " COALESCE((SELECT MAX(id) FROM backups), 0) + 1, false)",
};
#define PX_NSEQUENCES (sizeof(PX_SEQUENCES) / sizeof(PX_SEQUENCES[0]))

/* The import holds every table against writers (readers go on) from its
 * emptiness check to its commit: a node that starts on the database
 * meanwhile waits, and cannot mix its rows with the restored ones. */
#define PX_LOCK "LOCK TABLE settings, connectors, links, messages, hops," \
    " events, connector_secrets, partners, certificates, jobs, users," \
    " recovery_codes, sessions, tokens, audit, audit_checkpoints, bans," \
    " receipts, refusals, login_throttle, replay_guard, alerts, incidents," \
    " security_events, backups, legal_holds, purge_pending, nodes" \
    " IN EXCLUSIVE MODE"

/* How many tables each schema has besides schema_version: both must be
 * PX_NTABLES, so a table added to a migration without its entry here
 * fails every export instead of being left out of backups. Not counted
 * (PostgreSQL only, never exported): net_failures, each node's live
 * failure counts of the defender's window, which a restored cluster
 * starts anew (the bans they led to are in bans, which is exported);
 * payload_segments, the payloads of payload_dir = database, which the
 * backup holds as payload entries like any node's files (core/backup.c). */
#define PX_PG_TABLES "SELECT COUNT(*) FROM information_schema.tables" \
    " WHERE table_schema = current_schema() AND table_name NOT IN" \
    " ('schema_version', 'net_failures', 'payload_segments')"
#define PX_LITE_TABLES "SELECT COUNT(*) FROM sqlite_master WHERE type =" \
    " 'table' AND name <> 'schema_version' AND name NOT LIKE 'sqlite_%'"

/* ---- the SQLite side -------------------------------------------------------- */

static int px_lite_error(sqlite3 *db, const char *path, const char *what,
                         struct error *err)
{
    return error_set(err, "database %s: %s: %s", path, what,
                     db ? sqlite3_errmsg(db) : "out of memory");
}

static sqlite3 *px_lite_open(const char *path, int flags, struct error *err)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        px_lite_error(db, path, "cannot open", err);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static int px_lite_exec(sqlite3 *db, const char *path, const char *sql,
                        struct error *err)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK
           ? 0 : px_lite_error(db, path, "write the copy", err);
}

/* A new file at path (0600, O_EXCL) with the SQLite store's schema. */
static sqlite3 *px_lite_create(const char *path, struct error *err)
{
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
                  0600);
    if (fd < 0) {
        error_errno(err, errno, "cannot create %s", path);
        return NULL;
    }
    close(fd);
    struct store *st = store_open(path, err);     /* its migrations */
    if (st == NULL)
        return NULL;
    store_close(st);
    sqlite3 *db = px_lite_open(path, SQLITE_OPEN_READWRITE, err);
    if (db != NULL && px_lite_exec(db, path, "PRAGMA journal_mode=DELETE;"
                                   " PRAGMA synchronous=OFF;"
                                   " BEGIN; DELETE FROM settings;", err)) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* ---- export: PostgreSQL rows into SQLite ------------------------------------ */

/* Bind column col of the single-row result r as t's type says. */
static int px_bind(sqlite3_stmt *ins, const PGresult *r, int col, char type)
{
    if (PQgetisnull(r, 0, col))
        return sqlite3_bind_null(ins, col + 1);
    const char *v = PQgetvalue(r, 0, col);
    if (type == 'i')
        return sqlite3_bind_int64(ins, col + 1, strtoll(v, NULL, 10));
    if (type == 't')
        return sqlite3_bind_text(ins, col + 1, v, PQgetlength(r, 0, col),
                                 SQLITE_TRANSIENT);
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)v, &n);
    if (raw == NULL)
        return SQLITE_NOMEM;
    int rc = sqlite3_bind_blob64(ins, col + 1, raw, n, SQLITE_TRANSIENT);
    PQfreemem(raw);
    return rc;
}

static int px_put_row(sqlite3 *db, sqlite3_stmt *ins, const PGresult *r,
                      const struct px_table *t, const char *path,
                      struct error *err)
{
    int n = (int)strlen(t->types);
    if (PQnfields(r) != n)
        return error_set(err, "export of %s: %d columns, %d expected",
                         t->name, PQnfields(r), n);
    for (int c = 0; c < n; c++)
        if (px_bind(ins, r, c, t->types[c]) != SQLITE_OK)
            return px_lite_error(db, path, t->name, err);
    int rc = sqlite3_step(ins);
    sqlite3_reset(ins);
    sqlite3_clear_bindings(ins);
    return rc == SQLITE_DONE ? 0 : px_lite_error(db, path, t->name, err);
}

/* One table, one row in memory at a time. Every result is read to the end
 * (the connection is then ready for the next table), also after a
 * failure. */
static int px_export_table(struct pg_store *p, sqlite3 *db, const char *path,
                           const struct px_table *t, struct error *err)
{
    sqlite3_stmt *ins = NULL;
    if (sqlite3_prepare_v2(db, t->lite_insert, -1, &ins, NULL) != SQLITE_OK)
        return px_lite_error(db, path, t->name, err);
    int rc = 0;
    if (!PQsendQueryParams(p->conn, t->pg_select, 0, NULL, NULL, NULL, NULL,
                           0) || !PQsetSingleRowMode(p->conn))
        rc = pg_db_error(p, err, "export the tables", NULL);
    PGresult *r;
    while ((r = PQgetResult(p->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (rc == 0 && st == PGRES_SINGLE_TUPLE)
            rc = px_put_row(db, ins, r, t, path, err);
        else if (rc == 0 && st != PGRES_TUPLES_OK)
            rc = pg_db_error(p, err, "export the tables", r);
        PQclear(r);
    }
    sqlite3_finalize(ins);
    return rc;
}

/* 0 when both schemas have exactly the tables of PX_TABLES. */
static int px_tables_known(struct pg_store *p, sqlite3 *db, const char *path,
                           struct error *err)
{
    PGresult *r = PQexec(p->conn, PX_PG_TABLES);
    long long pg = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                   ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    int rc = pg < 0 ? pg_db_error(p, err, "list the tables", r) : 0;
    PQclear(r);
    sqlite3_stmt *st = NULL;
    long long lite = -1;
    if (rc == 0 && sqlite3_prepare_v2(db, PX_LITE_TABLES, -1, &st, NULL) ==
        SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        lite = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == 0 && lite < 0)
        rc = px_lite_error(db, path, "list the tables", err);
    if (rc == 0 && (pg != (long long)PX_NTABLES ||
                    lite != (long long)PX_NTABLES))
        rc = error_set(err, "the export knows %zu tables, the PostgreSQL "
                       "store has %lld and the SQLite one %lld: a table was "
                       "added to a schema without store/pg_export.c",
                       PX_NTABLES, pg, lite);
    return rc;
}

static int px_export_all(struct pg_store *p, sqlite3 *db, const char *path,
                         struct error *err)
{
    if (pg_exec(p, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                err) != 0)
        return -1;
    int rc = px_tables_known(p, db, path, err);
    for (size_t i = 0; rc == 0 && i < PX_NTABLES; i++)
        rc = px_export_table(p, db, path, &PX_TABLES[i], err);
    pg_exec(p, "COMMIT", NULL);
    if (rc == 0)
        rc = px_lite_exec(db, path, "COMMIT", err);
    return rc;
}

int pgx_export(const char *url, const char *path, struct error *err)
{
    struct pg_store *p = pgs_open(url, err);
    if (p == NULL)
        return -1;
    sqlite3 *db = px_lite_create(path, err);
    int rc = db != NULL ? px_export_all(p, db, path, err) : -1;
    sqlite3_close(db);
    pgs_close(p);
    if (rc != 0)
        unlink(path);
    return rc;
}

/* ---- import: SQLite rows into PostgreSQL ------------------------------------ */

/* Parameters of one row: ints as text, text as is, blobs in binary. */
struct px_row {
    const char *v[PX_MAX_COLS];
    int len[PX_MAX_COLS], fmt[PX_MAX_COLS];
    char num[PX_MAX_COLS][24];
};

static void px_row_fill(struct px_row *w, sqlite3_stmt *sel,
                        const char *types, int n)
{
    memset(w->fmt, 0, sizeof(w->fmt));
    memset(w->len, 0, sizeof(w->len));
    for (int c = 0; c < n; c++) {
        w->v[c] = NULL;
        if (sqlite3_column_type(sel, c) == SQLITE_NULL)
            continue;
        if (types[c] == 'i') {
            snprintf(w->num[c], sizeof(w->num[c]), "%lld",
                     (long long)sqlite3_column_int64(sel, c));
            w->v[c] = w->num[c];
        } else if (types[c] == 't') {
            w->v[c] = (const char *)sqlite3_column_text(sel, c);
        } else {
            const void *b = sqlite3_column_blob(sel, c);
            w->len[c] = sqlite3_column_bytes(sel, c);
            w->v[c] = b != NULL ? b : "";
            w->fmt[c] = 1;
        }
    }
}

static int px_import_table(struct pg_store *p, sqlite3 *db, const char *path,
                           const struct px_table *t, struct error *err)
{
    int n = (int)strlen(t->types);
    PGresult *r = PQprepare(p->conn, "", t->pg_insert, n, NULL);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK
             ? 0 : pg_db_error(p, err, "load the tables", r);
    PQclear(r);
    sqlite3_stmt *sel = NULL;
    if (rc == 0 && sqlite3_prepare_v2(db, t->lite_select, -1, &sel, NULL) !=
        SQLITE_OK)
        rc = px_lite_error(db, path, t->name, err);
    struct px_row w;
    int step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(sel)) == SQLITE_ROW) {
        px_row_fill(&w, sel, t->types, n);
        r = PQexecPrepared(p->conn, "", n, w.v, w.len, w.fmt, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = pg_db_error(p, err, t->name, r);
        PQclear(r);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = px_lite_error(db, path, t->name, err);
    sqlite3_finalize(sel);
    return rc;
}

/* 0 when no table holds a Wharf row, -1 with err naming one that does. */
static int px_check_empty(struct pg_store *p, struct error *err)
{
    for (size_t i = 0; i < PX_NTABLES; i++) {
        PGresult *r = PQexec(p->conn, PX_TABLES[i].pg_any);
        int rc = PQresultStatus(r) == PGRES_TUPLES_OK
                 ? 0 : pg_db_error(p, err, "check the target is empty", r);
        if (rc == 0 && PQntuples(r) > 0)
            rc = error_set(err, "database %s already holds Wharf data "
                           "(table %s has rows): restore only into an empty "
                           "database (create a new one)", p->name,
                           PX_TABLES[i].name);
        PQclear(r);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int px_import_all(struct pg_store *p, sqlite3 *db, const char *path,
                         struct error *err)
{
    if (pg_tx_begin(p, err) != 0)
        return -1;
    int rc = pg_exec(p, PX_LOCK, err);
    if (rc == 0)
        rc = px_check_empty(p, err);
    if (rc == 0)
        rc = pg_exec(p, "DELETE FROM settings", err);
    for (size_t i = 0; rc == 0 && i < PX_NTABLES; i++)
        rc = px_import_table(p, db, path, &PX_TABLES[i], err);
    for (size_t i = 0; rc == 0 && i < PX_NSEQUENCES; i++)
        rc = pg_exec(p, PX_SEQUENCES[i], err);
    return rc == 0 ? pg_tx_end(p, err) : pg_tx_fail(p);
}

int pgx_target_empty(const char *url, struct error *err)
{
    struct pg_store *p = pgs_open(url, err);
    if (p == NULL)
        return -1;
    int rc = px_check_empty(p, err);
    pgs_close(p);
    return rc;
}

int pgx_import(const char *path, const char *url, struct error *err)
{
    sqlite3 *db = px_lite_open(path, SQLITE_OPEN_READONLY, err);
    if (db == NULL)
        return -1;
    struct pg_store *p = pgs_open(url, err);
    int rc = p != NULL ? px_import_all(p, db, path, err) : -1;
    pgs_close(p);
    sqlite3_close(db);
    return rc;
}
