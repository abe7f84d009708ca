/*
 * sqlite.c - the SQLite backend of store.h.
 *
 * Owns the schema (migrations below, recorded in schema_version), the one
 * connection of each struct store, and every SQL statement Wharf runs.
 * Statements are constant strings with bound parameters, prepared once per
 * connection and cached; nothing here ever builds SQL from data.
 *
 * Durability: journal_mode=WAL, synchronous=FULL, so a committed transaction
 * is on disk. Batch functions wrap their whole batch in one IMMEDIATE
 * transaction: one commit, one WAL fsync for many messages.
 *
 * Group commit: the transactions of store_tx_begin/store_tx_commit commit
 * with synchronous=NORMAL (SQLite writes the WAL frames, no fsync), then
 * store_tx_commit waits on the database's sync group (util/syncgroup.h):
 * one fsync of the WAL, by whichever thread leads the round, covers every
 * connection that committed before it began. A commit still returns only
 * once it is on disk, but concurrent threads (the AS2 requests of many
 * partners, the deliveries in flight) share one fsync instead of queueing
 * one each behind SQLite's write lock. Statements run outside those
 * transactions run at synchronous=FULL: a connection stays at NORMAL
 * after a grouped transaction and is put back to FULL before a statement
 * that may write runs alone (sync_level, stmt_ready). Not with a
 * rollback journal (a database that could not switch to WAL): those
 * commit FULL as before.
 * The threads of one process take turns for those transactions through
 * the group's writer turn (woken at once), not in SQLite's busy handler,
 * which sleeps 1, 2, 5... ms between tries; the turn is given back at
 * COMMIT, before the sync, so the write lock is never held across an
 * fsync.
 *
 * Must never: log or return payload bytes; hold a transaction across calls.
 */
#include "store/store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store_internal.h"
#include "store/outcome.h"
#include "store/pg_store.h"
#include "store/partner_store.h"
#include "store/secret_store.h"
#include "util/fault.h"
#include "util/id.h"
#include "util/syncgroup.h"

/* How long a writer waits for another (thread or process) to finish. */
#define STORE_BUSY_MS 10000

/* ---- schema ---------------------------------------------------------------- */

static const char *const MIGRATIONS[] = {
    /* 1: the foundation */
    "CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE connectors(name TEXT PRIMARY KEY, type TEXT NOT NULL,"
    "  config TEXT NOT NULL);"
    "CREATE TABLE links(src TEXT NOT NULL, dst TEXT NOT NULL,"
    "  PRIMARY KEY(src, dst));"
    "CREATE TABLE messages(id TEXT PRIMARY KEY, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL, source TEXT NOT NULL, filename TEXT,"
    "  size INTEGER NOT NULL DEFAULT 0, sha256 TEXT, state TEXT NOT NULL,"
    "  payload_path TEXT, dedup_key TEXT);"
    "CREATE UNIQUE INDEX messages_dedup ON messages(source, dedup_key)"
    "  WHERE dedup_key IS NOT NULL;"
    "CREATE INDEX messages_state ON messages(state, id);"
    "CREATE TABLE hops(id INTEGER PRIMARY KEY, message_id TEXT NOT NULL"
    "  REFERENCES messages(id), connector TEXT NOT NULL, state TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,"
    "  lease_owner TEXT, lease_until INTEGER, last_error TEXT, receipt TEXT,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX hops_due ON hops(state, next_at);"
    "CREATE INDEX hops_lease ON hops(state, lease_until);"
    "CREATE INDEX hops_message ON hops(message_id);"
    "CREATE TABLE events(id INTEGER PRIMARY KEY, message_id TEXT NOT NULL,"
    "  hop_id INTEGER NOT NULL DEFAULT 0, at INTEGER NOT NULL,"
    "  level TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX events_message ON events(message_id, id);"
    "INSERT INTO settings(key, value) VALUES('flow_generation', '0');",
    /* 2: people, programs, sessions, the audit trail, bans */
    "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    "  role TEXT NOT NULL, password_hash TEXT, must_change INTEGER NOT NULL"
    "  DEFAULT 0, totp_sealed BLOB, totp_enabled INTEGER NOT NULL DEFAULT 0,"
    "  totp_last_step INTEGER NOT NULL DEFAULT 0, oidc_subject TEXT UNIQUE,"
    "  disabled INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE recovery_codes(user_id INTEGER NOT NULL REFERENCES users(id)"
    "  ON DELETE CASCADE, code_hash TEXT NOT NULL, used_at INTEGER,"
    "  PRIMARY KEY(user_id, code_hash));"
    "CREATE TABLE sessions(id_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL"
    "  REFERENCES users(id) ON DELETE CASCADE, csrf_hash TEXT NOT NULL,"
    "  address TEXT, mfa INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
    "  last_seen_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
    "  revoked_at INTEGER);"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE TABLE tokens(id TEXT PRIMARY KEY, name TEXT NOT NULL,"
    "  hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, created_by TEXT,"
    "  created_at INTEGER NOT NULL, expires_at INTEGER, last_used_at INTEGER,"
    "  revoked_at INTEGER);"
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL, address TEXT, action TEXT NOT NULL, target TEXT,"
    "  detail TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TABLE audit_checkpoints(seq INTEGER PRIMARY KEY, hash TEXT NOT NULL,"
    "  at INTEGER NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL);"
    "CREATE TABLE bans(address TEXT PRIMARY KEY, failures INTEGER NOT NULL"
    "  DEFAULT 0, level INTEGER NOT NULL DEFAULT 0, banned_until INTEGER"
    "  NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL);",
    /* 3: secrets of connectors, sealed by the vault (sqlite_secrets.c) */
    "CREATE TABLE connector_secrets(connector TEXT NOT NULL,"
    "  name TEXT NOT NULL, blob BLOB NOT NULL, expires_at INTEGER NOT NULL"
    "  DEFAULT 0, updated_at INTEGER NOT NULL, PRIMARY KEY(connector, name));",
    /* 4: the AS2 profile and partners, certificates (sqlite_partners.c) */
    "CREATE TABLE partners(name TEXT PRIMARY KEY, as2_id TEXT NOT NULL"
    "  UNIQUE, config TEXT NOT NULL);"
    "CREATE TABLE certificates(owner TEXT NOT NULL, id TEXT NOT NULL,"
    "  subject TEXT NOT NULL, not_before INTEGER NOT NULL, not_after INTEGER"
    "  NOT NULL, use_from INTEGER NOT NULL DEFAULT 0, der BLOB NOT NULL,"
    "  key_sealed BLOB, PRIMARY KEY(owner, id));",
    /* 5: AS2 receipts (MDNs) kept with their message (sqlite_partners.c) */
    "CREATE TABLE receipts(id INTEGER PRIMARY KEY, message_id TEXT NOT NULL,"
    "  direction TEXT NOT NULL, at INTEGER NOT NULL, as2_message_id TEXT,"
    "  original_message_id TEXT, headers TEXT NOT NULL, body BLOB NOT NULL);"
    "CREATE INDEX receipts_message ON receipts(message_id, id);",
    /* 6: refused inbound AS2 requests folded into bursts (one "refused"
     * message per source, address and reason while they keep coming;
     * sqlite_partners.c) */
    "CREATE TABLE refusals(message_id TEXT PRIMARY KEY,"
    "  source TEXT NOT NULL, address TEXT NOT NULL,"
    "  reason TEXT NOT NULL, count INTEGER NOT NULL, first_at INTEGER"
    "  NOT NULL, last_at INTEGER NOT NULL, event_id INTEGER NOT NULL"
    "  DEFAULT 0);"
    "CREATE INDEX refusals_burst ON refusals(source, address, reason,"
    "  last_at);",
    /* 7: API tokens act as their owner (legacy rows get the user or token
     * that created them, else none: refused); per-account login throttle;
     * webhook HMAC signatures seen (sqlite_auth.c) */
    "ALTER TABLE tokens ADD COLUMN owner_id INTEGER REFERENCES users(id)"
    "  ON DELETE SET NULL;"
    "UPDATE tokens SET owner_id = (SELECT id FROM users"
    "  WHERE 'user:' || users.name = tokens.created_by);"
    "UPDATE tokens SET owner_id = (SELECT t2.owner_id FROM tokens t2"
    "  WHERE 'token:' || t2.id = tokens.created_by) WHERE owner_id IS NULL;"
    "CREATE INDEX tokens_owner ON tokens(owner_id);"
    "CREATE TABLE login_throttle(account TEXT PRIMARY KEY,"
    "  failures INTEGER NOT NULL, first_at INTEGER NOT NULL,"
    "  level INTEGER NOT NULL, locked_until INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE replay_guard(scope TEXT NOT NULL, sig TEXT NOT NULL,"
    "  until INTEGER NOT NULL, run TEXT NOT NULL, done INTEGER NOT NULL"
    "  DEFAULT 0, PRIMARY KEY(scope, sig));"
    "CREATE INDEX replay_guard_until ON replay_guard(until);",
    /* 8: alerts (folded repeats), the incident ladder (investigation,
     * incident, breach) and their timeline, which is also the outbox of
     * notifications (sqlite_security.c) */
    "CREATE TABLE alerts(id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
    "  key TEXT NOT NULL, level TEXT NOT NULL, state TEXT NOT NULL,"
    "  summary TEXT NOT NULL, details TEXT, count INTEGER NOT NULL,"
    "  first_at INTEGER NOT NULL, last_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL, resolved_at INTEGER,"
    "  incident_id INTEGER);"
    "CREATE INDEX alerts_key ON alerts(kind, key, state);"
    "CREATE INDEX alerts_state ON alerts(state, id);"
    "CREATE INDEX alerts_incident ON alerts(incident_id);"
    "CREATE TABLE incidents(id INTEGER PRIMARY KEY, tier TEXT NOT NULL,"
    "  state TEXT NOT NULL, title TEXT NOT NULL, owner TEXT NOT NULL,"
    "  severity TEXT, partners TEXT NOT NULL, messages TEXT NOT NULL,"
    "  notify TEXT, created_at INTEGER NOT NULL, updated_at INTEGER"
    "  NOT NULL, incident_at INTEGER, breach_at INTEGER, closed_at"
    "  INTEGER);"
    "CREATE INDEX incidents_state ON incidents(state, id);"
    "CREATE TABLE security_events(id INTEGER PRIMARY KEY, at INTEGER"
    "  NOT NULL, alert_id INTEGER, incident_id INTEGER, actor TEXT"
    "  NOT NULL, action TEXT NOT NULL, level TEXT NOT NULL, text TEXT"
    "  NOT NULL);"
    "CREATE INDEX security_events_alert ON security_events(alert_id);"
    "CREATE INDEX security_events_incident ON"
    "  security_events(incident_id);",
    /* 9: the record of backup runs (R20, sqlite_backup.c; its shape is in
     * store/backup_store.h: the posture report reads it) */
    "CREATE TABLE backups(id INTEGER PRIMARY KEY, started_at INTEGER"
    "  NOT NULL, finished_at INTEGER NOT NULL, ok INTEGER NOT NULL,"
    "  location TEXT, bytes INTEGER, kind TEXT NOT NULL, backup_id TEXT,"
    "  messages INTEGER, payloads INTEGER, missing INTEGER, sha256 TEXT,"
    "  error TEXT);"
    "CREATE INDEX backups_newest ON backups(ok, finished_at);",
    /* 10: durable jobs of messages the engine runs through a connector
     * (AS2 MDN out, MDN wait); data and input sealed (sqlite_jobs.c) */
    "CREATE TABLE jobs(id TEXT PRIMARY KEY, message_id TEXT NOT NULL,"
    "  hop_id INTEGER NOT NULL DEFAULT 0, connector TEXT NOT NULL,"
    "  kind TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL"
    "  DEFAULT 0, waits INTEGER NOT NULL DEFAULT 0, due_at INTEGER NOT NULL,"
    "  give_up_at INTEGER NOT NULL DEFAULT 0, window_ms INTEGER NOT NULL"
    "  DEFAULT 0, lease_owner TEXT, lease_until INTEGER, data BLOB,"
    "  input BLOB, last_error TEXT, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE INDEX jobs_due ON jobs(state, due_at);"
    "CREATE INDEX jobs_message ON jobs(message_id, id);"
    "CREATE UNIQUE INDEX jobs_active ON jobs(message_id, connector, kind)"
    "  WHERE state IN ('queued', 'waiting', 'processing');",
    /* 11: retention and erasure (R9; sqlite_retention.c): legal holds, kept
     * apart from the message rows; payload files whose rows a purge
     * deleted, until they are shredded (so a kill -9 between the commit
     * and the shredding leaves them listed for the next purge); the
     * purge's index by age */
    "CREATE TABLE legal_holds(message_id TEXT PRIMARY KEY, at INTEGER"
    "  NOT NULL, actor TEXT NOT NULL, reason TEXT);"
    "CREATE TABLE purge_pending(message_id TEXT PRIMARY KEY,"
    "  payload_path TEXT NOT NULL, at INTEGER NOT NULL);"
    "CREATE INDEX messages_created ON messages(created_at);",
    /* 12: the nodes serving this database (R21, sqlite_nodes.c) */
    "CREATE TABLE nodes(id TEXT PRIMARY KEY, address TEXT NOT NULL,"
    "  version TEXT NOT NULL, started_at INTEGER NOT NULL, seen_at INTEGER"
    "  NOT NULL, beat_ms INTEGER NOT NULL, stopped_at INTEGER);",
    /* 13: a hop carries its message's size, so the large lane reads its
     * own hops through an index of their own instead of past every due
     * small one (engine.c's lanes; S_HOP_DUE_LARGE) */
    "ALTER TABLE hops ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"
    "UPDATE hops SET size = COALESCE((SELECT size FROM messages"
    "  WHERE messages.id = hops.message_id), 0);"
    "CREATE INDEX hops_large ON hops(size, next_at)"
    "  WHERE state IN ('queued', 'retrying');",
};
#define NMIGRATIONS (sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0]))

/* ---- statements -------------------------------------------------------- */

enum stmt_id {
    S_BEGIN, S_COMMIT, S_ROLLBACK,
    S_SETTING_GET, S_SETTING_SET,
    S_CONN_ALL, S_LINK_ALL, S_CONN_DEL, S_LINK_DEL, S_CONN_INS, S_LINK_INS,
    S_GEN_BUMP,
    S_MSG_INS, S_MSG_BY_DEDUP, S_MSG_GET, S_MSG_LIST, S_MSG_LIST_STATE,
    S_MSG_EACH, S_MSG_STATE,
    S_MSG_PREFIX,
    S_HOP_INS, S_HOP_DUE, S_HOP_DUE_LARGE, S_HOP_TAKE, S_HOP_SET, S_HOP_OF_MSG,
    S_HOP_RELEASE, S_HOP_RESEND_FAILED, S_HOP_RESEND_ALL, S_HOP_COUNTS,
    S_HOP_ONWARD,
    S_EVT_INS, S_EVT_OF_MSG,
    S_MSG_ERASE, S_HOP_CANCEL, S_SETTING_ALL,
    S_CONN_SET_CONFIG, S_HOP_HOLD, S_HOP_UNHOLD, S_HOP_UNHOLD_ALL,
    S_HOP_SETTLE, S_HOP_RENEW, S_HOP_UNHOLD_STALE,
    S_SYNC_NORMAL, S_SYNC_FULL,
    S_COUNT
};

/* One branch of S_HOP_DUE: the hops in one state that are due (cond),
 * read through index idx, of the lane's sizes, the first ?2 in (next_at,
 * id) order. */
#define HOP_DUE_BRANCH(idx, cond)                                          \
    "SELECT * FROM (SELECT * FROM hops INDEXED BY " idx " WHERE " cond    \
    " AND size BETWEEN ?3 AND ?4 ORDER BY next_at, id LIMIT ?2)"
#define HOP_DUE_COLS "SELECT id, message_id, connector, state, attempts," \
                     " next_at, created_at, updated_at, last_error, receipt"
/* Queued or retrying and due, not leased by anyone now. */
#define HOP_WAITING "next_at <= ?1 AND (lease_until IS NULL" \
                    " OR lease_until < ?1)"
/* Leased, and the lease ran out. */
#define HOP_EXPIRED HOP_DUE_BRANCH("hops_lease",                           \
                                   "state = 'processing'"                  \
                                   " AND lease_until < ?1")

static const char *const SQL[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [S_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [S_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
    [S_SETTING_SET] = "INSERT INTO settings(key, value) VALUES(?1, ?2)"
                      " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_CONN_ALL] = "SELECT name, type, config FROM connectors ORDER BY rowid",
    [S_LINK_ALL] = "SELECT src, dst FROM links ORDER BY rowid",
    [S_CONN_DEL] = "DELETE FROM connectors",
    [S_LINK_DEL] = "DELETE FROM links",
    [S_CONN_INS] = "INSERT INTO connectors(name, type, config) VALUES(?1, ?2, ?3)",
    [S_LINK_INS] = "INSERT INTO links(src, dst) VALUES(?1, ?2)",
    [S_GEN_BUMP] = "UPDATE settings SET value = CAST(value AS INTEGER) + 1"
                   " WHERE key = 'flow_generation'",
    [S_MSG_INS] = "INSERT INTO messages(id, created_at, updated_at, source,"
                  " filename, size, sha256, state, payload_path, dedup_key)"
                  " VALUES(?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                  " ON CONFLICT DO NOTHING",
    [S_MSG_BY_DEDUP] = "SELECT id FROM messages WHERE source = ?1 AND dedup_key = ?2",
    [S_MSG_GET] = "SELECT id, created_at, updated_at, source, filename, size,"
                  " sha256, state, payload_path, dedup_key FROM messages WHERE id = ?1",
    [S_MSG_LIST] = "SELECT id, created_at, updated_at, source, filename, size,"
                   " sha256, state, payload_path, dedup_key FROM messages"
                   " ORDER BY id DESC LIMIT ?1 OFFSET ?2",
    [S_MSG_LIST_STATE] = "SELECT id, created_at, updated_at, source, filename,"
                         " size, sha256, state, payload_path, dedup_key FROM messages"
                         " WHERE state = ?3 ORDER BY id DESC LIMIT ?1 OFFSET ?2",
    [S_MSG_EACH] = "SELECT id, created_at, updated_at, source, filename, size,"
                   " sha256, state, payload_path, dedup_key FROM messages"
                   " WHERE payload_path IS NOT NULL AND id > ?1 ORDER BY id LIMIT 256",
    /* Ids are lowercase hex and '-', all below '~': a prefix is a range
     * of the primary key. */
    [S_MSG_PREFIX] = "SELECT COUNT(*), MIN(id) FROM messages"
                     " WHERE id >= ?1 AND id < ?1 || '~'",
    /* A message's state is the state of its delivery hops, worst first. */
    [S_MSG_STATE] =
        "UPDATE messages SET updated_at = ?2, state = COALESCE(("
        " SELECT CASE"
        "  WHEN SUM(state = 'failed') > 0 THEN 'failed'"
        "  WHEN SUM(state = 'processing') > 0 THEN 'processing'"
        "  WHEN SUM(state = 'retrying') > 0 THEN 'retrying'"
        "  WHEN SUM(state = 'queued') > 0 THEN 'queued'"
        "  ELSE 'sent' END"
        " FROM hops WHERE message_id = ?1 AND state != 'received'"
        " HAVING COUNT(*) > 0), 'received') WHERE id = ?1",
    [S_HOP_INS] = "INSERT INTO hops(message_id, connector, state, next_at,"
                  " created_at, updated_at, size) VALUES(?1, ?2, ?3, ?4, ?4,"
                  " ?4, COALESCE((SELECT size FROM messages"
                  " WHERE id = ?1), 0))",
    /* Due hops of a lane from 0 to ?4 bytes (engine.c), the first ?2 by
     * (next_at, id). One branch per state, each read in its index's order
     * and cut at ?2, so a lease reads about ?2 rows of each however long
     * the queue is; one WHERE with an OR of the states made SQLite
     * collect and sort every due hop first (100,000 queued: 150 ms per
     * lease, under the write lock; docs/performance.md). */
    [S_HOP_DUE] = HOP_DUE_COLS " FROM ("
                  HOP_DUE_BRANCH("hops_due", "state = 'queued' AND "
                                 HOP_WAITING)
                  " UNION ALL "
                  HOP_DUE_BRANCH("hops_due", "state = 'retrying' AND "
                                 HOP_WAITING)
                  " UNION ALL " HOP_EXPIRED
                  ") ORDER BY next_at, id LIMIT ?2",
    /* The same for the large lane (?3 bytes or more): its waiting hops
     * through hops_large, which holds only those, by size. Read in due
     * order, a lease of the large lane went past every due small hop
     * (100,000 queued: 144 ms per lease). */
    [S_HOP_DUE_LARGE] = HOP_DUE_COLS " FROM ("
                  HOP_DUE_BRANCH("hops_large", "state IN ('queued',"
                                 " 'retrying') AND " HOP_WAITING)
                  " UNION ALL " HOP_EXPIRED
                  ") ORDER BY next_at, id LIMIT ?2",
    [S_HOP_TAKE] = "UPDATE hops SET state = 'processing', lease_owner = ?2,"
                   " lease_until = ?3, updated_at = ?4 WHERE id = ?1",
    [S_HOP_SET] = "UPDATE hops SET state = ?2, attempts = ?3, next_at = ?4,"
                  " last_error = ?5, receipt = COALESCE(?6, receipt),"
                  " lease_owner = NULL, lease_until = NULL, updated_at = ?7"
                  " WHERE id = ?1 AND state = 'processing' AND lease_owner = ?8",
    /* A waiting hop (an asynchronous MDN) takes its job's outcome. */
    [S_HOP_SETTLE] = "UPDATE hops SET state = ?2, attempts = ?3, next_at = ?4,"
                     " last_error = ?5, receipt = COALESCE(?6, receipt),"
                     " updated_at = ?7 WHERE id = ?1 AND state = 'retrying'",
    [S_HOP_OF_MSG] = "SELECT id, message_id, connector, state, attempts, next_at,"
                     " created_at, updated_at, last_error, receipt FROM hops"
                     " WHERE message_id = ?1 ORDER BY id",
    [S_HOP_RENEW] = "UPDATE hops SET lease_until = ?2"
                    " WHERE state = 'processing' AND lease_owner = ?1",
    [S_HOP_RELEASE] = "UPDATE hops SET state = 'queued', lease_owner = NULL,"
                      " lease_until = NULL WHERE state = 'processing'",
    [S_HOP_RESEND_FAILED] = "UPDATE hops SET state = 'queued', attempts = 0,"
                            " next_at = ?2, last_error = NULL, updated_at = ?2,"
                            " lease_owner = NULL, lease_until = NULL"
                            " WHERE message_id = ?1 AND state = 'failed'",
    [S_HOP_RESEND_ALL] = "UPDATE hops SET state = 'queued', attempts = 0,"
                         " next_at = ?2, last_error = NULL, updated_at = ?2,"
                         " lease_owner = NULL, lease_until = NULL"
                         " WHERE message_id = ?1 AND state IN ('sent', 'failed')",
    [S_HOP_COUNTS] = "SELECT state, COUNT(*) FROM hops GROUP BY state",
    [S_HOP_ONWARD] = "SELECT COUNT(*) FROM hops WHERE message_id = ?1"
                     " AND state != 'received'",
    [S_EVT_INS] = "INSERT INTO events(message_id, hop_id, at, level, text)"
                  " VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_MSG_ERASE] = "UPDATE messages SET payload_path = NULL, state = 'erased',"
                    " updated_at = ?2 WHERE id = ?1",
    [S_HOP_CANCEL] = "UPDATE hops SET state = 'failed', last_error = 'erased',"
                     " lease_owner = NULL, lease_until = NULL, updated_at = ?2"
                     " WHERE message_id = ?1 AND state IN ('queued', 'retrying',"
                     " 'processing')",
    [S_SETTING_ALL] = "SELECT key, value FROM settings ORDER BY key",
    /* Held hops: queued but due only when released (STORE_HELD_AT). */
    [S_HOP_HOLD] = "UPDATE hops SET next_at = ?2 WHERE message_id = ?1"
                   " AND state = 'queued'",
    [S_HOP_UNHOLD] = "UPDATE hops SET next_at = ?3, updated_at = ?3"
                     " WHERE message_id = ?1 AND state = 'queued'"
                     " AND next_at >= ?2",
    [S_HOP_UNHOLD_ALL] = "UPDATE hops SET next_at = ?2, updated_at = ?2"
                         " WHERE state = 'queued' AND next_at >= ?1",
    /* a hold's start is the held hop's updated_at (set when it was
     * queued; holding does not change it) */
    [S_HOP_UNHOLD_STALE] = "UPDATE hops SET next_at = ?2, updated_at = ?2"
                           " WHERE state = 'queued' AND next_at >= ?1"
                           " AND updated_at < ?3 RETURNING message_id",
    [S_CONN_SET_CONFIG] = "UPDATE connectors SET config = ?3"
                          " WHERE name = ?1 AND config = ?2",
    [S_EVT_OF_MSG] = "SELECT id, at, hop_id, level, text FROM events"
                     " WHERE message_id = ?1 ORDER BY id",
};

struct store {
    sqlite3 *db;                /* NULL on PostgreSQL */
    struct pg_store *pg;        /* NULL on SQLite (pg_store.h) */
    char *given;                /* PostgreSQL: the URL store_open got */
    char *path;
    sqlite3_stmt *stmt[S_COUNT];
    sqlite3_stmt *ext[STORE_EXT_SLOTS];     /* store_stmt_ext() */
    struct sync_group *wal;     /* group commit; NULL: commit FULL alone */
    int turn;                   /* this connection holds wal's writer turn */
    int normal;                 /* at synchronous=NORMAL (sync_level) */
};

/* What the PostgreSQL backend does not hold yet refuses, by name. */
static int pg_not_yet(struct store *s, struct error *err)
{
    return error_set(err, "database %s: this part of Wharf's data is not "
                     "kept in PostgreSQL yet (the cluster work of R21 is in "
                     "progress): use store = sqlite", s->path);
}

static sqlite3_stmt *stmt_ready(struct store *s, sqlite3_stmt *st,
                                struct error *err);
static int sync_level(struct store *s, int normal, struct error *err);

sqlite3_stmt *store_stmt_once(struct store *s, const char *sql,
                              const char *what, struct error *err)
{
    if (s->pg) {
        pg_not_yet(s, err);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        store_db_error(s, err, what);
        sqlite3_finalize(st);
        return NULL;
    }
    if (stmt_ready(s, st, err) == NULL) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

sqlite3_stmt *store_stmt_ext(struct store *s, int slot, const char *sql,
                             struct error *err)
{
    if (s->pg) {
        pg_not_yet(s, err);
        return NULL;
    }
    if (slot < 0 || slot >= STORE_EXT_SLOTS) {
        error_set(err, "internal: statement slot %d out of range", slot);
        return NULL;
    }
    if (s->ext[slot] == NULL &&
        sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                           &s->ext[slot], NULL) != SQLITE_OK) {
        store_db_error(s, err, "prepare");
        return NULL;
    }
    sqlite3_reset(s->ext[slot]);
    sqlite3_clear_bindings(s->ext[slot]);
    return stmt_ready(s, s->ext[slot], err);
}

sqlite3 *store_db(struct store *s)
{
    return s->db;
}

struct pg_store *store_pg(struct store *s)
{
    return s->pg;
}

/* ---- small helpers ------------------------------------------------------ */

int store_db_error(struct store *s, struct error *err, const char *what)
{
    return error_set(err, "database %s: %s: %s", s->path, what,
                     sqlite3_errmsg(s->db));
}

/* The cached statement for id, reset and unbound; NULL on error. */
static sqlite3_stmt *stmt_raw(struct store *s, enum stmt_id id,
                              struct error *err)
{
    if (s->pg) {
        pg_not_yet(s, err);
        return NULL;
    }
    if (s->stmt[id] == NULL) {
        if (sqlite3_prepare_v3(s->db, SQL[id], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->stmt[id], NULL) != SQLITE_OK) {
            store_db_error(s, err, "prepare");
            return NULL;
        }
    }
    sqlite3_reset(s->stmt[id]);
    sqlite3_clear_bindings(s->stmt[id]);
    return s->stmt[id];
}

/* Set the connection's synchronous level, if it is not at it already.
 * Grouped transactions commit at NORMAL (the group's sync covers them);
 * everything else commits at FULL. SQLite applies PRAGMA synchronous
 * while preparing it, so each run prepares it again: the level is left
 * at NORMAL after a grouped transaction and put back to FULL only when a
 * statement that may write is about to run outside a transaction
 * (stmt_ready), not twice per transaction. */
static int sync_level(struct store *s, int normal, struct error *err)
{
    if (s->normal == normal)
        return 0;
    sqlite3_stmt *st = stmt_raw(s, normal ? S_SYNC_NORMAL : S_SYNC_FULL,
                                err);
    if (st == NULL || store_step_done(s, st, err, "group commit") < 0)
        return -1;
    s->normal = normal;
    return 0;
}

/* st is about to run: one that may write, outside a transaction, commits
 * alone and so at FULL. Every statement of this connection passes here
 * (stmt_get, store_stmt_ext, store_stmt_once; store_exec does the same
 * for any SQL). st, or NULL with err. */
static sqlite3_stmt *stmt_ready(struct store *s, sqlite3_stmt *st,
                                struct error *err)
{
    if (st != NULL && s->normal && sqlite3_get_autocommit(s->db) &&
        !sqlite3_stmt_readonly(st) && sync_level(s, 0, err) < 0)
        return NULL;
    return st;
}

static sqlite3_stmt *stmt_get(struct store *s, enum stmt_id id,
                              struct error *err)
{
    return stmt_ready(s, stmt_raw(s, id, err), err);
}

int store_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC)
             : sqlite3_bind_null(st, i);
}

/* Run a statement that returns no rows (already bound). */
int store_step_done(struct store *s, sqlite3_stmt *st, struct error *err,
                     const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_db_error(s, err, what);
    return 0;
}

int store_step_tx(struct store *s, sqlite3_stmt *st, struct error *err,
                  const char *what)
{
    if (store_tx_begin(s, err) < 0) {
        sqlite3_reset(st);
        return -1;
    }
    if (store_step_done(s, st, err, what) < 0 || store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    return 0;
}

static int simple(struct store *s, enum stmt_id id, struct error *err,
                  const char *what)
{
    sqlite3_stmt *st = stmt_get(s, id, err);
    return st ? store_step_done(s, st, err, what) : -1;
}

/* BEGIN IMMEDIATE, COMMIT, ROLLBACK of a grouped transaction: at the
 * level store_tx_begin set (BEGIN IMMEDIATE is no read-only statement
 * for stmt_ready). */
static int tx_control(struct store *s, enum stmt_id id, struct error *err,
                      const char *what)
{
    sqlite3_stmt *st = stmt_raw(s, id, err);
    return st ? store_step_done(s, st, err, what) : -1;
}

/* The end of a grouped transaction's write: the writer turn to the next
 * thread. The connection stays at NORMAL (sync_level). */
static void tx_write_end(struct store *s)
{
    if (!s->turn)
        return;
    s->turn = 0;
    sync_group_turn_end(s->wal);
}

int store_tx_begin(struct store *s, struct error *err)
{
    if (s->wal) {
        if (sync_group_turn(s->wal, STORE_BUSY_MS, s->path, err) < 0)
            return -1;
        s->turn = 1;
        if (sync_level(s, 1, err) < 0) {
            tx_write_end(s);
            return -1;
        }
    }
    if (tx_control(s, S_BEGIN, err, "begin transaction") == 0)
        return 0;
    tx_write_end(s);
    return -1;
}

/* The leader's fsync of the WAL, through this connection's own handle of
 * it (any handle of the file syncs every frame written to it). */
static int wal_sync(void *arg)
{
    struct store *s = arg;
    sqlite3_file *f = NULL;
    if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER,
                             &f) != SQLITE_OK || f == NULL ||
        f->pMethods == NULL)
        return EIO;
    return f->pMethods->xSync(f, SQLITE_SYNC_NORMAL) == SQLITE_OK ? 0 : EIO;
}

/* On failure the caller still calls store_tx_fail (which rolls back
 * what COMMIT did not end). */
int store_tx_commit(struct store *s, struct error *err)
{
    if (tx_control(s, S_COMMIT, err, "commit") < 0)
        return -1;
    if (s->wal == NULL)
        return 0;
    tx_write_end(s);
    return sync_group_wait(s->wal, wal_sync, s, s->path, err);
}

int store_tx_fail(struct store *s)
{
    tx_control(s, S_ROLLBACK, NULL, "rollback");
    tx_write_end(s);
    return -1;
}

char *store_col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void col_id(sqlite3_stmt *st, int i, char out[ID_LEN + 1])
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, ID_LEN + 1, "%s", t ? (const char *)t : "");
}

static int event_add(struct store *s, const char *msgid, int64_t hop_id,
                     int64_t at, const char *level, const char *text,
                     struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_EVT_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, msgid);
    sqlite3_bind_int64(st, 2, hop_id);
    sqlite3_bind_int64(st, 3, at);
    store_bind_text(st, 4, level);
    store_bind_text(st, 5, text);
    return store_step_done(s, st, err, "insert event");
}

/* ---- open, close, migrate ----------------------------------------------- */

int store_exec(struct store *s, const char *sql, struct error *err)
{
    char *msg = NULL;
    if (s->pg)
        return pg_not_yet(s, err);
    /* any SQL: outside a transaction, at FULL (stmt_ready) */
    if (sqlite3_get_autocommit(s->db) && sync_level(s, 0, err) < 0)
        return -1;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        error_set(err, "database %s: %s", s->path, msg ? msg : "exec failed");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int version_read(struct store *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT MAX(version) FROM schema_version",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(struct store *s, struct error *err)
{
    if (store_exec(s, "CREATE TABLE IF NOT EXISTS schema_version("
                      "version INTEGER NOT NULL, applied_at INTEGER NOT NULL)",
                   err) < 0)
        return -1;
    int v = version_read(s);
    if (v > (int)NMIGRATIONS)
        return error_set(err, "database %s has schema version %d, newer than "
                         "this wharf (%d): upgrade wharf", s->path, v,
                         (int)NMIGRATIONS);
    for (int i = v < 0 ? 0 : v; i < (int)NMIGRATIONS; i++) {
        if (store_tx_begin(s, err) < 0)
            return -1;
        sqlite3_stmt *st = NULL;
        if (store_exec(s, MIGRATIONS[i], err) < 0)
            return store_tx_fail(s);
        if (sqlite3_prepare_v2(s->db, "INSERT INTO schema_version(version,"
                               " applied_at) VALUES(?1, ?2)", -1, &st,
                               NULL) != SQLITE_OK)
            return store_db_error(s, err, "migrate"), store_tx_fail(s);
        sqlite3_bind_int(st, 1, i + 1);
        sqlite3_bind_int64(st, 2, time_now_ms());
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return store_db_error(s, err, "migrate"), store_tx_fail(s);
        if (store_tx_commit(s, err) < 0)
            return store_tx_fail(s);
    }
    return 0;
}

/* A PostgreSQL store: its path is the URL without a password. */
static struct store *store_open_pg(const char *url, struct error *err)
{
    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    if ((s->pg = pgs_open(url, err)) == NULL ||
        (s->path = strdup(pgs_name(s->pg))) == NULL ||
        (s->given = strdup(url)) == NULL) {
        if (s->pg)
            error_set(err, "out of memory");
        store_close(s);
        return NULL;
    }
    return s;
}

/* The sync group of the database file when it runs in WAL mode (group
 * commit: the top of this file), else NULL. */
static struct sync_group *wal_group(struct store *s)
{
    sqlite3_stmt *st = NULL;
    int wal = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL)
            == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *m = sqlite3_column_text(st, 0);
        wal = m && strcmp((const char *)m, "wal") == 0;
    }
    sqlite3_finalize(st);
    struct stat sb;
    if (!wal || stat(s->path, &sb) != 0)
        return NULL;
    return sync_group_of(sb.st_dev, sb.st_ino);
}

struct store *store_open(const char *path, struct error *err)
{
    if (pgs_is_url(path))
        return store_open_pg(path, err);
    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->path = strdup(path)) == NULL) {
        free(s);
        error_set(err, "out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        error_set(err, "cannot open database %s: %s", path,
                  s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    sqlite3_extended_result_codes(s->db, 1);
    if (store_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                      " PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
                   err) < 0 ||
        migrate(s, err) < 0) {
        store_close(s);
        return NULL;
    }
    s->wal = wal_group(s);
    return s;
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    for (int i = 0; i < STORE_EXT_SLOTS; i++)
        sqlite3_finalize(s->ext[i]);
    sqlite3_close(s->db);
    pgs_close(s->pg);
    free(s->given);
    free(s->path);
    free(s);
}

const char *store_path(const struct store *s)
{
    return s->path;
}

bool store_opened_from(const struct store *s, const char *path)
{
    return strcmp(s->given ? s->given : s->path, path) == 0;
}

int store_temp_dir(const char *dir, struct error *err)
{
    size_t n = strlen(dir) + 1;
    char *copy = sqlite3_malloc64(n);
    if (copy == NULL)
        return error_set(err, "out of memory");
    memcpy(copy, dir, n);
    sqlite3_free(sqlite3_temp_directory);
    sqlite3_temp_directory = copy;      /* SQLite reads it from now on */
    return 0;
}

int store_schema_version(struct store *s)
{
    if (s->pg)
        return pgs_schema_version(s->pg);
    return version_read(s);
}

/* ---- settings -------------------------------------------------------------- */

int store_setting_get(struct store *s, const char *key, char **value,
                      struct error *err)
{
    if (s->pg)
        return pgs_setting_get(s->pg, key, value, err);
    *value = NULL;
    sqlite3_stmt *st = stmt_get(s, S_SETTING_GET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *value = store_col_dup(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read setting");
    return 0;
}

int store_setting_set(struct store *s, const char *key, const char *value,
                      struct error *err)
{
    if (s->pg)
        return pgs_setting_set(s->pg, key, value, err);
    sqlite3_stmt *st = stmt_get(s, S_SETTING_SET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, key);
    store_bind_text(st, 2, value);
    return store_step_done(s, st, err, "write setting");
}

/* ---- flow ------------------------------------------------------------------ */

void store_flow_clear(struct store_flow *f)
{
    for (size_t i = 0; i < f->nconns; i++) {
        free(f->conns[i].name);
        free(f->conns[i].type);
        free(f->conns[i].config);
    }
    for (size_t i = 0; i < f->nlinks; i++) {
        free(f->links[i].src);
        free(f->links[i].dst);
    }
    for (size_t i = 0; i < f->nsecrets; i++) {
        free(f->secrets[i].connector);
        free(f->secrets[i].name);
        free(f->secrets[i].blob);
    }
    for (size_t i = 0; i < f->npartners; i++) {
        free(f->partners[i].name);
        free(f->partners[i].as2_id);
        free(f->partners[i].config);
    }
    for (size_t i = 0; i < f->ncerts; i++)
        store_cert_clear(&f->certs[i]);
    free(f->conns);
    free(f->links);
    free(f->secrets);
    free(f->profile);
    free(f->partners);
    free(f->certs);
    memset(f, 0, sizeof(*f));
}

int64_t store_flow_generation(struct store *s, struct error *err)
{
    char *v = NULL;
    if (store_setting_get(s, "flow_generation", &v, err) < 0)
        return -1;
    int64_t g = v ? strtoll(v, NULL, 10) : 0;
    free(v);
    return g;
}

static int flow_read_conns(struct store *s, struct store_flow *f,
                           struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_CONN_ALL, err);
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        void *p = realloc(f->conns, (f->nconns + 1) * sizeof(*f->conns));
        if (p == NULL)
            break;
        f->conns = p;
        struct store_connector *c = &f->conns[f->nconns++];
        c->name = store_col_dup(st, 0);
        c->type = store_col_dup(st, 1);
        c->config = store_col_dup(st, 2);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "read connectors");
}

static int flow_read_links(struct store *s, struct store_flow *f,
                           struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_LINK_ALL, err);
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        void *p = realloc(f->links, (f->nlinks + 1) * sizeof(*f->links));
        if (p == NULL)
            break;
        f->links = p;
        f->links[f->nlinks].src = store_col_dup(st, 0);
        f->links[f->nlinks].dst = store_col_dup(st, 1);
        f->nlinks++;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "read links");
}

int store_flow_get(struct store *s, struct store_flow *out, struct error *err)
{
    if (s->pg)
        return pgs_flow_get(s->pg, out, err);
    memset(out, 0, sizeof(*out));
    /* A read transaction so connectors, links and generation agree. */
    if (store_exec(s, "BEGIN", err) < 0)
        return -1;
    int rc = flow_read_conns(s, out, err);
    if (rc == 0)
        rc = flow_read_links(s, out, err);
    if (rc == 0)
        rc = store_partners_read(s, out, err);
    if (rc == 0 && (out->generation = store_flow_generation(s, err)) < 0)
        rc = -1;
    store_exec(s, "COMMIT", NULL);
    if (rc < 0)
        store_flow_clear(out);
    return rc;
}

static int flow_write(struct store *s, const struct store_flow *f,
                      struct error *err)
{
    if (simple(s, S_LINK_DEL, err, "delete links") < 0 ||
        simple(s, S_CONN_DEL, err, "delete connectors") < 0)
        return -1;
    for (size_t i = 0; i < f->nconns; i++) {
        sqlite3_stmt *st = stmt_get(s, S_CONN_INS, err);
        if (st == NULL)
            return -1;
        store_bind_text(st, 1, f->conns[i].name);
        store_bind_text(st, 2, f->conns[i].type);
        store_bind_text(st, 3, f->conns[i].config);
        if (store_step_done(s, st, err, "insert connector") < 0)
            return -1;
    }
    for (size_t i = 0; i < f->nlinks; i++) {
        sqlite3_stmt *st = stmt_get(s, S_LINK_INS, err);
        if (st == NULL)
            return -1;
        store_bind_text(st, 1, f->links[i].src);
        store_bind_text(st, 2, f->links[i].dst);
        if (store_step_done(s, st, err, "insert link") < 0)
            return -1;
    }
    if (store_csecret_replace(s, f->secrets, f->nsecrets, err) < 0 ||
        store_partners_write(s, f, err) < 0)
        return -1;
    return simple(s, S_GEN_BUMP, err, "bump flow generation");
}

int store_flow_put(struct store *s, const struct store_flow *f,
                   struct error *err)
{
    if (s->pg)
        return pgs_flow_put(s->pg, f, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (flow_write(s, f, err) < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

int store_connector_config_set(struct store *s, const char *name,
                               const char *old_config, const char *config,
                               struct error *err)
{
    if (s->pg)
        return pgs_connector_config_set(s->pg, name, old_config, config,
                                        err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    sqlite3_stmt *st = stmt_get(s, S_CONN_SET_CONFIG, err);
    if (st == NULL)
        return store_tx_fail(s);
    store_bind_text(st, 1, name);
    store_bind_text(st, 2, old_config);
    store_bind_text(st, 3, config);
    if (store_step_done(s, st, err, "change connector config") < 0)
        return store_tx_fail(s);
    if (sqlite3_changes(s->db) != 1) {
        store_tx_fail(s);
        return 1;
    }
    if (simple(s, S_GEN_BUMP, err, "bump flow generation") < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

/* ---- messages -------------------------------------------------------------- */

void store_message_clear(struct store_message *m)
{
    free(m->source);
    free(m->filename);
    free(m->sha256);
    free(m->state);
    free(m->payload_path);
    free(m->dedup_key);
    memset(m, 0, sizeof(*m));
}

void store_messages_free(struct store_message *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_message_clear(&m[i]);
    free(m);
}

static void message_row(sqlite3_stmt *st, struct store_message *m)
{
    col_id(st, 0, m->id);
    m->created_at = sqlite3_column_int64(st, 1);
    m->updated_at = sqlite3_column_int64(st, 2);
    m->source = store_col_dup(st, 3);
    m->filename = store_col_dup(st, 4);
    m->size = sqlite3_column_int64(st, 5);
    m->sha256 = store_col_dup(st, 6);
    m->state = store_col_dup(st, 7);
    m->payload_path = store_col_dup(st, 8);
    m->dedup_key = store_col_dup(st, 9);
}

static int hop_insert(struct store *s, const char *msgid, const char *conn,
                      const char *state, int64_t now, int64_t *hop_id,
                      struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_HOP_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, msgid);
    store_bind_text(st, 2, conn);
    store_bind_text(st, 3, state);
    sqlite3_bind_int64(st, 4, now);
    if (store_step_done(s, st, err, "insert hop") < 0)
        return -1;
    *hop_id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

/* Queue one hop per next connector, each with its event. */
static int hops_queue(struct store *s, const char *msgid,
                      const char *const *next, size_t nnext, int64_t now,
                      struct error *err)
{
    for (size_t j = 0; j < nnext; j++) {
        int64_t hop;
        char text[300];
        if (hop_insert(s, msgid, next[j], "queued", now, &hop, err) < 0)
            return -1;
        snprintf(text, sizeof(text), "queued for %s", next[j]);
        if (event_add(s, msgid, hop, now, "info", text, err) < 0)
            return -1;
    }
    return 0;
}

/* Hold the queued hops of msgid until store_message_release. */
static int hops_hold(struct store *s, const char *msgid, int64_t now,
                     struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_HOP_HOLD, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, msgid);
    sqlite3_bind_int64(st, 2, STORE_HELD_AT);
    if (store_step_done(s, st, err, "hold hops") < 0)
        return -1;
    return event_add(s, msgid, 0, now, "info", "held until the source has "
                     "acknowledged it (MDN)", err);
}

int store_message_release(struct store *s, const char *msgid,
                          const char *why, const struct store_receipt *kept,
                          const struct store_job_new *job, struct error *err)
{
    if (s->pg)
        return pgs_message_release(s->pg, msgid, why, kept, job, err);
    int64_t now = time_now_ms();
    if (store_tx_begin(s, err) < 0)
        return -1;
    if ((job != NULL && store_job_add_tx(s, job, now, err) < 0) ||
        (kept != NULL && store_receipt_add_tx(s, kept, err) < 0))
        return store_tx_fail(s);
    sqlite3_stmt *st = stmt_get(s, S_HOP_UNHOLD, err);
    if (st == NULL)
        return store_tx_fail(s);
    store_bind_text(st, 1, msgid);
    sqlite3_bind_int64(st, 2, STORE_HELD_AT);
    sqlite3_bind_int64(st, 3, now);
    if (store_step_done(s, st, err, "release hops") < 0)
        return store_tx_fail(s);
    if (sqlite3_changes(s->db) > 0 &&
        event_add(s, msgid, 0, now, "info", why, err) < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

int store_release_held(struct store *s, struct error *err)
{
    if (s->pg)
        return pgs_release_held(s->pg, err);
    sqlite3_stmt *st = stmt_get(s, S_HOP_UNHOLD_ALL, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, STORE_HELD_AT);
    sqlite3_bind_int64(st, 2, time_now_ms());
    return store_step_done(s, st, err, "release held hops");
}

#define STALE_HOLD_TEXT "released: the node that received it did not " \
    "release it after its MDN (it stopped or lost it)"

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int stale_holds_tx(struct store *s, int64_t before, int64_t now,
                          int64_t *released, struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_HOP_UNHOLD_STALE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, STORE_HELD_AT);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, before);
    char (*ids)[ID_LEN + 1] = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        void *grown = realloc(ids, (n + 1) * sizeof(*ids));
        if (grown == NULL)
            break;
        ids = grown;
        col_id(st, 0, ids[n++]);
    }
    sqlite3_reset(st);
    int ok = rc == SQLITE_DONE ? 0 : store_db_error(s, err, "release holds");
    if (n > 1)              /* one event per message */
        qsort(ids, n, sizeof(*ids), cmp_id);
    for (size_t i = 0; ok == 0 && i < n; i++)
        if (i == 0 || strcmp(ids[i], ids[i - 1]) != 0)
            ok = event_add(s, ids[i], 0, now, "warning", STALE_HOLD_TEXT,
                           err);
    free(ids);
    *released = (int64_t)n;
    return ok;
}

int store_release_stale_holds(struct store *s, int64_t before,
                              int64_t *released, struct error *err)
{
    int64_t n = 0;
    if (released)
        *released = 0;
    if (s->pg)
        return pgs_release_stale_holds(s->pg, before, released, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (stale_holds_tx(s, before, time_now_ms(), &n, err) < 0)
        return store_tx_fail(s);
    if (store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    if (released)
        *released = n;
    return 0;
}

/* 1 when a message with the same source and dedup key exists (its id is
 * copied to existing), 0 when not, -1 on error. */
static int dedup_find(struct store *s, const struct store_message *m,
                      char existing[ID_LEN + 1], struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_MSG_BY_DEDUP, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, m->source);
    store_bind_text(st, 2, m->dedup_key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        col_id(st, 0, existing);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "look up duplicate");
    return rc == SQLITE_ROW;
}

static int intake_one(struct store *s, struct store_new *it, int64_t now,
                      struct error *err)
{
    const struct store_message *m = it->msg;
    sqlite3_stmt *st = stmt_get(s, S_MSG_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, m->id);
    sqlite3_bind_int64(st, 2, m->created_at);
    store_bind_text(st, 3, m->source);
    store_bind_text(st, 4, m->filename);
    sqlite3_bind_int64(st, 5, m->size);
    store_bind_text(st, 6, m->sha256);
    store_bind_text(st, 7, it->nnext ? "queued" : "received");
    store_bind_text(st, 8, m->payload_path);
    store_bind_text(st, 9, m->dedup_key);
    if (store_step_done(s, st, err, "insert message") < 0)
        return -1;
    it->duplicate = sqlite3_changes(s->db) == 0;
    if (it->duplicate)
        return m->dedup_key && dedup_find(s, m, it->existing_id, err) < 0
                   ? -1 : 0;
    int64_t hop;
    char text[600];
    if (hop_insert(s, m->id, m->source, "received", now, &hop, err) < 0)
        return -1;
    snprintf(text, sizeof(text), "received by %s: %s (%lld bytes, sha256 %s)",
             m->source, m->filename ? m->filename : "-", (long long)m->size,
             m->sha256 ? m->sha256 : "-");
    if (event_add(s, m->id, hop, now, "info", text, err) < 0)
        return -1;
    if (hops_queue(s, m->id, it->next, it->nnext, now, err) < 0)
        return -1;
    if ((it->job != NULL && store_job_add_tx(s, it->job, now, err) < 0) ||
        (it->kept != NULL && store_receipt_add_tx(s, it->kept, err) < 0) ||
        (it->why != NULL &&
         event_add(s, m->id, 0, now, "info", it->why, err) < 0))
        return -1;
    return it->hold && it->nnext ? hops_hold(s, m->id, now, err) : 0;
}

int store_message_refused(struct store *s, const char *source,
                          const char *text, char id[ID_LEN + 1],
                          struct error *err)
{
    if (s->pg)
        return pgs_message_refused(s->pg, source, text, id, err);
    int64_t now = time_now_ms();
    id_new(id);
    if (store_tx_begin(s, err) < 0)
        return -1;
    sqlite3_stmt *st = stmt_get(s, S_MSG_INS, err);
    if (st == NULL)
        return store_tx_fail(s);
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    store_bind_text(st, 3, source);
    sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, 0);
    sqlite3_bind_null(st, 6);
    store_bind_text(st, 7, "refused");
    sqlite3_bind_null(st, 8);
    sqlite3_bind_null(st, 9);
    if (store_step_done(s, st, err, "insert a refused message") < 0 ||
        event_add(s, id, 0, now, "error", text, err) < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

/* Test hook (util/fault.h): the commit at point fails as SQLite's
 * SQLITE_IOERR or SQLITE_FULL would (the caller rolls back). 1 then. */
static int injected_io_error(struct store *s, const char *point,
                             struct error *err)
{
    (void)s;
    int e = fault_fail(point);
    if (e == 0)
        return 0;
    error_set(err, "cannot commit: %s (injected)", e == ENOSPC
              ? "database or disk is full" : "disk I/O error");
    return 1;
}

int store_intake(struct store *s, struct store_new *items, size_t n,
                 struct error *err)
{
    if (s->pg)
        return pgs_intake(s->pg, items, n, err);
    int64_t now = time_now_ms();
    if (store_tx_begin(s, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (intake_one(s, &items[i], now, err) < 0)
            return store_tx_fail(s);
    if (injected_io_error(s, "store.intake", err))
        return store_tx_fail(s);
    if (store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    if (fault_fail("store.intake_lost") != 0)   /* test hook: fault.h */
        return error_set(err, "cannot commit: the outcome is not known "
                         "(injected after the commit)");
    return 0;
}

int store_message_get(struct store *s, const char *id,
                      struct store_message *out, struct error *err)
{
    if (s->pg)
        return pgs_message_get(s->pg, id, out, err);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = stmt_get(s, S_MSG_GET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        message_row(st, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read message");
    return rc == SQLITE_ROW ? 0 : 1;
}

/* Collect every row of a bound message query. */
static int message_rows(struct store *s, sqlite3_stmt *st,
                        struct store_message **out, size_t *n,
                        struct error *err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            void *p = realloc(*out, cap * sizeof(**out));
            if (p == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
        }
        memset(&(*out)[*n], 0, sizeof(**out));
        message_row(st, &(*out)[(*n)++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_messages_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "list messages");
    }
    return 0;
}

int store_message_list(struct store *s, const char *state, int64_t limit,
                       int64_t offset, struct store_message **out, size_t *n,
                       struct error *err)
{
    if (s->pg)
        return pgs_message_list(s->pg, state, limit, offset, out, n, err);
    sqlite3_stmt *st = stmt_get(s, state ? S_MSG_LIST_STATE : S_MSG_LIST, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, limit);
    sqlite3_bind_int64(st, 2, offset);
    if (state)
        store_bind_text(st, 3, state);
    return message_rows(s, st, out, n, err);
}

const char *const store_message_states[] = {
    "queued", "processing", "retrying", "sent", "failed", "received",
    "refused", "erased", NULL
};

bool store_message_state_known(const char *state)
{
    for (int i = 0; state && store_message_states[i]; i++)
        if (strcmp(state, store_message_states[i]) == 0)
            return true;
    return false;
}

int store_message_prefix(struct store *s, const char *prefix,
                         char id[ID_LEN + 1], int64_t *count,
                         struct error *err)
{
    if (s->pg)
        return pgs_message_prefix(s->pg, prefix, id, count, err);
    id[0] = '\0';
    *count = 0;
    sqlite3_stmt *st = stmt_get(s, S_MSG_PREFIX, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, prefix);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *count = sqlite3_column_int64(st, 0);
        const unsigned char *first = sqlite3_column_text(st, 1);
        if (*count == 1 && first)
            snprintf(id, ID_LEN + 1, "%s", (const char *)first);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return store_db_error(s, err, "look up a message id prefix");
    return 0;
}

int store_message_each(struct store *s,
                       int (*cb)(const struct store_message *m, void *arg),
                       void *arg, struct error *err)
{
    if (s->pg)
        return pgs_message_each(s->pg, cb, arg, err);
    char after[ID_LEN + 1] = "";
    for (;;) {
        struct store_message *rows;
        size_t n;
        sqlite3_stmt *st = stmt_get(s, S_MSG_EACH, err);
        if (st == NULL)
            return -1;
        store_bind_text(st, 1, after);
        if (message_rows(s, st, &rows, &n, err) < 0)
            return -1;
        int stop = 0;
        for (size_t i = 0; i < n && !stop; i++)
            stop = cb(&rows[i], arg);
        if (n > 0)
            memcpy(after, rows[n - 1].id, sizeof(after));
        store_messages_free(rows, n);
        if (stop)
            return stop;
        if (n == 0)
            return 0;
    }
}

static int message_state_update(struct store *s, const char *id, int64_t now,
                                struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_MSG_STATE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    return store_step_done(s, st, err, "update message state");
}

/* How many hops message id has beyond its source's; -1 on error. */
static int64_t hops_onward(struct store *s, const char *id, struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_HOP_ONWARD, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    if (n < 0)
        store_db_error(s, err, "count hops");
    return n;
}

/* Requeue the failed hops, else the sent and failed ones. */
static int requeue(struct store *s, const char *id, int64_t now,
                   int *requeued, struct error *err)
{
    static const int which[] = { S_HOP_RESEND_FAILED, S_HOP_RESEND_ALL };
    *requeued = 0;
    for (size_t i = 0; i < 2 && *requeued == 0; i++) {
        sqlite3_stmt *st = stmt_get(s, which[i], err);
        if (st == NULL)
            return -1;
        store_bind_text(st, 1, id);
        sqlite3_bind_int64(st, 2, now);
        if (store_step_done(s, st, err, "resend") < 0)
            return -1;
        *requeued = sqlite3_changes(s->db);
    }
    return 0;
}

static int resend_tx(struct store *s, const struct store_message *m,
                     const char *who, const char *const *next, size_t nnext,
                     int64_t now, int *requeued, int *njobs,
                     struct error *err)
{
    char text[300];
    int jobs = 0;
    if (store_jobs_resend(s, m->id, now, &jobs, err) < 0)
        return -1;
    *njobs = jobs;
    if (jobs > 0) {     /* what failed was a job: only failed hops go too */
        sqlite3_stmt *st = stmt_get(s, S_HOP_RESEND_FAILED, err);
        if (st == NULL)
            return -1;
        store_bind_text(st, 1, m->id);
        sqlite3_bind_int64(st, 2, now);
        if (store_step_done(s, st, err, "resend") < 0)
            return -1;
        *requeued = sqlite3_changes(s->db);
    } else if (requeue(s, m->id, now, requeued, err) < 0) {
        return -1;
    }
    if (jobs > 0) {
        snprintf(text, sizeof(text), "resend requested by %s: %d hop(s) and "
                 "%d job(s) queued", who, *requeued, jobs);
    } else if (*requeued > 0) {
        snprintf(text, sizeof(text), "resend requested by %s: %d hop(s) "
                 "queued", who, *requeued);
    } else {
        int64_t onward = hops_onward(s, m->id, err);
        if (onward < 0)
            return -1;
        if (onward > 0)
            return error_set(err, "message %s is still being delivered "
                             "(%lld hop(s) queued or in progress): nothing to "
                             "resend", m->id, (long long)onward) - 1;
        if (nnext == 0)
            return error_set(err, "message %s never left %s, which has no "
                             "outgoing link: add a link with `wharf flow "
                             "import`, then resend it", m->id, m->source) - 1;
        if (hops_queue(s, m->id, next, nnext, now, err) < 0)
            return -1;
        *requeued = (int)nnext;
        snprintf(text, sizeof(text), "resend requested by %s: routed through "
                 "the current links of %s (%zu hop(s))", who, m->source,
                 nnext);
    }
    if (event_add(s, m->id, 0, now, "info", text, err) < 0)
        return -1;
    return message_state_update(s, m->id, now, err);
}

int store_message_resend(struct store *s, const char *id, const char *who,
                         const char *const *next, size_t nnext,
                         int *requeued, int *jobs, struct error *err)
{
    if (s->pg)
        return pgs_message_resend(s->pg, id, who, next, nnext, requeued,
                                  jobs, err);
    int njobs = 0;
    struct store_message m;
    int found = store_message_get(s, id, &m, err);
    if (found != 0) {
        store_message_clear(&m);
        return found;
    }
    int rc = store_tx_begin(s, err);
    int tx = rc == 0 ? resend_tx(s, &m, who, next, nnext, time_now_ms(),
                                 requeued, &njobs, err) : 0;
    if (rc == 0 && tx < 0)
        rc = store_tx_fail(s) + (tx == -2 ? 3 : 0);     /* -2: refused */
    else if (rc == 0 && store_tx_commit(s, err) < 0)
        rc = store_tx_fail(s);
    store_message_clear(&m);
    if (jobs)
        *jobs = rc == 0 ? njobs : 0;
    return rc;
}

/* ---- hops ------------------------------------------------------------------ */

void store_hops_free(struct store_hop *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].connector);
        free(h[i].state);
        free(h[i].last_error);
        free(h[i].receipt);
    }
    free(h);
}

static void hop_row(sqlite3_stmt *st, struct store_hop *h)
{
    h->id = sqlite3_column_int64(st, 0);
    col_id(st, 1, h->message_id);
    h->connector = store_col_dup(st, 2);
    h->state = store_col_dup(st, 3);
    h->attempts = sqlite3_column_int(st, 4);
    h->next_at = sqlite3_column_int64(st, 5);
    h->created_at = sqlite3_column_int64(st, 6);
    h->updated_at = sqlite3_column_int64(st, 7);
    h->last_error = store_col_dup(st, 8);
    h->receipt = store_col_dup(st, 9);
}

static int hop_rows(struct store *s, sqlite3_stmt *st, struct store_hop **out,
                    size_t *n, size_t max, struct error *err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : (max && max < 16 ? max : 16);
            void *p = realloc(*out, cap * sizeof(**out));
            if (p == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
        }
        memset(&(*out)[*n], 0, sizeof(**out));
        hop_row(st, &(*out)[(*n)++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_hops_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "read hops");
    }
    return 0;
}

static int lease_tx(struct store *s, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max,
                    const struct store_lane *lane, struct store_hop **out,
                    size_t *n, struct error *err)
{
    int large = lane && lane->min_size > 0;
    sqlite3_stmt *st = stmt_get(s, large ? S_HOP_DUE_LARGE : S_HOP_DUE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    sqlite3_bind_int64(st, 3, lane ? lane->min_size : 0);
    sqlite3_bind_int64(st, 4, lane ? lane->max_size : INT64_MAX);
    if (hop_rows(s, st, out, n, max, err) < 0)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        if ((st = stmt_get(s, S_HOP_TAKE, err)) == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, (*out)[i].id);
        store_bind_text(st, 2, owner);
        sqlite3_bind_int64(st, 3, now + lease_ms);
        sqlite3_bind_int64(st, 4, now);
        if (store_step_done(s, st, err, "lease hop") < 0)
            return -1;
    }
    return 0;
}

int store_hop_lease(struct store *s, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max, struct store_hop **out,
                    size_t *n, struct error *err)
{
    return store_hop_lease_lane(s, owner, now, lease_ms, max, NULL, out, n,
                                err);
}

int store_hop_lease_lane(struct store *s, const char *owner, int64_t now,
                         int64_t lease_ms, size_t max,
                         const struct store_lane *lane,
                         struct store_hop **out, size_t *n,
                         struct error *err)
{
    if (s->pg)
        return pgs_hop_lease(s->pg, owner, now, lease_ms, max, lane, out, n,
                             err);
    *out = NULL;
    *n = 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (lease_tx(s, owner, now, lease_ms, max, lane, out, n, err) < 0 ||
        store_tx_commit(s, err) < 0) {
        store_hops_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_tx_fail(s);
    }
    return 0;
}

int store_leases_renew(struct store *s, const char *owner, int64_t until,
                       struct error *err)
{
    if (s->pg)
        return pgs_leases_renew(s->pg, owner, until, err);
    sqlite3_stmt *st = stmt_get(s, S_HOP_RENEW, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, until);
    if (store_step_done(s, st, err, "renew hop leases") < 0)
        return -1;
    return store_jobs_renew(s, owner, until, err);
}

int store_leases_release(struct store *s, struct error *err)
{
    if (s->pg)
        return pgs_leases_release(s->pg, err);
    if (simple(s, S_HOP_RELEASE, err, "release leases") < 0)
        return -1;
    return store_jobs_release(s, err);
}

/* Write outcome o to its hop with statement which (S_HOP_SET: the hop
 * leased by o->owner; S_HOP_SETTLE: the hop waiting), then its event,
 * next hops and message state. 1 when the hop was not in that state. */
static int hop_apply(struct store *s, enum stmt_id which,
                     const struct store_outcome *o, int64_t now,
                     struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, which, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, o->hop_id);
    store_bind_text(st, 2, outcome_state(o->result));
    sqlite3_bind_int(st, 3, o->attempts);
    sqlite3_bind_int64(st, 4, o->result == HOP_RETRY ||
                              o->result == HOP_WAIT ? o->next_at : now);
    store_bind_text(st, 5, o->result == HOP_SENT || o->result == HOP_WAIT
                           ? NULL : o->error);
    /* a wait's text is for the history, not the hop's receipt */
    store_bind_text(st, 6, o->result == HOP_WAIT ? NULL : o->receipt);
    sqlite3_bind_int64(st, 7, now);
    if (which == S_HOP_SET)
        store_bind_text(st, 8, o->owner);
    if (store_step_done(s, st, err, "update hop") < 0)
        return -1;
    if (sqlite3_changes(s->db) == 0)
        return 1;
    if (o->kept != NULL && store_receipt_add_tx(s, o->kept, err) < 0)
        return -1;
    char text[900];
    outcome_text(o, text, sizeof(text));
    const char *level = outcome_level(o->result);
    /* a hop still waiting says so once (when it starts), not at each look */
    if ((o->result != HOP_WAIT || o->receipt) &&
        event_add(s, o->message_id, o->hop_id, now, level, text, err) < 0)
        return -1;
    if (o->result == HOP_SENT &&
        hops_queue(s, o->message_id, o->next, o->nnext, now, err) < 0)
        return -1;
    return message_state_update(s, o->message_id, now, err) < 0 ? -1 : 0;
}

/* Returns 1 when the hop was not ours any more (skipped). */
static int finish_one(struct store *s, const struct store_outcome *o,
                      int64_t now, struct error *err)
{
    return hop_apply(s, S_HOP_SET, o, now, err);
}

int store_hop_settle(struct store *s, const struct store_outcome *o,
                     int64_t now, struct error *err)
{
    int rc = hop_apply(s, S_HOP_SETTLE, o, now, err);
    return rc < 0 ? -1 : rc == 0;
}

int store_hop_finish(struct store *s, const struct store_outcome *o, size_t n,
                     size_t *skipped, struct error *err)
{
    if (s->pg)
        return pgs_hop_finish(s->pg, o, n, skipped, err);
    int64_t now = time_now_ms();
    size_t skip = 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int rc = finish_one(s, &o[i], now, err);
        if (rc < 0)
            return store_tx_fail(s);
        skip += (size_t)rc;
    }
    if (injected_io_error(s, "store.finish", err) ||
        store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    if (skipped)
        *skipped = skip;
    return 0;
}

int store_message_hops(struct store *s, const char *id, struct store_hop **out,
                       size_t *n, struct error *err)
{
    if (s->pg)
        return pgs_message_hops(s->pg, id, out, n, err);
    sqlite3_stmt *st = stmt_get(s, S_HOP_OF_MSG, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    return hop_rows(s, st, out, n, 0, err);
}

int store_hop_counts(struct store *s, int64_t *queued, int64_t *processing,
                     int64_t *retrying, int64_t *sent, int64_t *failed,
                     struct error *err)
{
    if (s->pg)
        return pgs_hop_counts(s->pg, queued, processing, retrying, sent,
                              failed, err);
    *queued = *processing = *retrying = *sent = *failed = 0;
    sqlite3_stmt *st = stmt_get(s, S_HOP_COUNTS, err);
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 0);
        int64_t c = sqlite3_column_int64(st, 1);
        if (state == NULL)
            continue;
        if (strcmp(state, "queued") == 0) *queued = c;
        else if (strcmp(state, "processing") == 0) *processing = c;
        else if (strcmp(state, "retrying") == 0) *retrying = c;
        else if (strcmp(state, "sent") == 0) *sent = c;
        else if (strcmp(state, "failed") == 0) *failed = c;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "count hops");
}

/* ---- events ---------------------------------------------------------------- */

void store_events_free(struct store_event *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].level);
        free(e[i].text);
    }
    free(e);
}

int store_event_add(struct store *s, const char *msgid, int64_t hop_id,
                    const char *level, const char *text, struct error *err)
{
    if (s->pg)
        return pgs_event_add(s->pg, msgid, hop_id, level, text, err);
    return event_add(s, msgid, hop_id, time_now_ms(), level, text, err);
}

int store_message_events(struct store *s, const char *id,
                         struct store_event **out, size_t *n,
                         struct error *err)
{
    if (s->pg)
        return pgs_message_events(s->pg, id, out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(s, S_EVT_OF_MSG, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            void *p = realloc(*out, cap * sizeof(**out));
            if (p == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
        }
        struct store_event *e = &(*out)[(*n)++];
        e->id = sqlite3_column_int64(st, 0);
        e->at = sqlite3_column_int64(st, 1);
        e->hop_id = sqlite3_column_int64(st, 2);
        e->level = store_col_dup(st, 3);
        e->text = store_col_dup(st, 4);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_events_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "read events");
    }
    return 0;
}

/* ---- erasure and settings listing ------------------------------------------ */

static int erase_tx(struct store *s, const char *id, const char *who,
                    int64_t now, struct error *err)
{
    sqlite3_stmt *st = stmt_get(s, S_HOP_CANCEL, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    if (store_step_done(s, st, err, "cancel hops") < 0 ||
        (st = stmt_get(s, S_MSG_ERASE, err)) == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    if (store_step_done(s, st, err, "erase message") < 0)
        return -1;
    char text[300];
    snprintf(text, sizeof(text), "payload erased at the request of %s", who);
    return event_add(s, id, 0, now, "warning", text, err);
}

int store_message_erase(struct store *s, const char *id, const char *who,
                        struct error *err)
{
    if (s->pg)
        return pgs_message_erase(s->pg, id, who, err);
    struct store_message m;
    int found = store_message_get(s, id, &m, err);
    store_message_clear(&m);
    if (found != 0)
        return found;
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (erase_tx(s, id, who, time_now_ms(), err) < 0)
        return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

void store_settings_free(char **keys, char **values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        free(values[i]);
    }
    free(keys);
    free(values);
}

int store_settings_list(struct store *s, char ***keys, char ***values,
                        size_t *n, struct error *err)
{
    if (s->pg)
        return pgs_settings_list(s->pg, keys, values, n, err);
    *keys = NULL;
    *values = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt_get(s, S_SETTING_ALL, err);
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **k = realloc(*keys, (*n + 1) * sizeof(char *));
        if (k) *keys = k;
        char **v = realloc(*values, (*n + 1) * sizeof(char *));
        if (v) *values = v;
        if (!k || !v) {
            rc = SQLITE_NOMEM;
            break;
        }
        (*keys)[*n] = store_col_dup(st, 0);
        (*values)[*n] = store_col_dup(st, 1);
        (*n)++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_settings_free(*keys, *values, *n);
        *keys = *values = NULL;
        *n = 0;
        return store_db_error(s, err, "list settings");
    }
    return 0;
}
