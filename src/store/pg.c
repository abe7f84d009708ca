/*
 * pg.c - the PostgreSQL backend of store.h (libpq): the first part of the
 * cluster (R21), the part every node of a cluster shares.
 *
 * What it owns: the PostgreSQL schema (PG_MIGRATIONS, recorded in
 * schema_version, applied under an advisory lock so two nodes starting at
 * once do not both migrate), one connection per struct pg_store, and the
 * statements of settings, the flow, messages, hops, events and job leases.
 * Every statement is a constant string with $n parameters, prepared once per
 * connection (PQprepare) and run with PQexecPrepared; values never become
 * SQL text.
 *
 * How it differs from SQLite, where several nodes share one database:
 *   - Leasing takes due hops with SELECT ... FOR UPDATE SKIP LOCKED, so two
 *     nodes leasing at the same moment never take the same hop and never
 *     wait for each other; a hop leased by a dead node is taken again when
 *     its lease expires.
 *   - Read committed runs each statement on a fresh snapshot, so a
 *     transaction that changes hops locks their message rows first (sorted,
 *     so two of them cannot deadlock) before it recomputes the message's
 *     state: two nodes finishing two hops of one message cannot both
 *     compute it from a view that misses the other's hop.
 *   - store_flow_put and store_connector_config_set lock the
 *     flow_generation row first: flow writes from two nodes take turns.
 *   - store_leases_release (serve start) gives back nothing: a node that
 *     starts does not own the leases other nodes hold; leases of a dead
 *     node expire (lease_seconds) and are taken again.
 *   - Times are BIGINT milliseconds, blobs BYTEA (sent in binary), ids and
 *     keys COLLATE "C" so prefixes and ordering are byte order, as in
 *     SQLite, whatever the database's collation.
 *
 * A connection that broke is reset before the next statement that is not
 * inside a transaction (a restarted or failed-over server).
 *
 * Must never: build SQL from data; log or return payload bytes; hold a
 * transaction across calls.
 */
#include "store/pg_internal.h"
#include "store/outcome.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/partner_store.h"
#include "store/pg_partners.h"
#include "util/id.h"

#define PG_SCHEMA_VERSION 6
/* pg_advisory_lock key of schema migrations ("Whrf"). */
#define PG_MIGRATE_LOCK "1466462822"

static const char *const PG_MIGRATIONS[PG_SCHEMA_VERSION] = {
    /* 1: settings, the flow, messages, hops, events, jobs */
    "CREATE TABLE settings(key TEXT COLLATE \"C\" PRIMARY KEY,"
    "  value TEXT NOT NULL);"
    "CREATE TABLE connectors(seq BIGSERIAL UNIQUE,"
    "  name TEXT COLLATE \"C\" PRIMARY KEY, type TEXT NOT NULL,"
    "  config TEXT NOT NULL);"
    "CREATE TABLE links(seq BIGSERIAL UNIQUE, src TEXT NOT NULL,"
    "  dst TEXT NOT NULL, PRIMARY KEY(src, dst));"
    "CREATE TABLE messages(id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    "  source TEXT NOT NULL, filename TEXT, size BIGINT NOT NULL DEFAULT 0,"
    "  sha256 TEXT, state TEXT NOT NULL, payload_path TEXT, dedup_key TEXT);"
    "CREATE UNIQUE INDEX messages_dedup ON messages(source, dedup_key)"
    "  WHERE dedup_key IS NOT NULL;"
    "CREATE INDEX messages_state ON messages(state, id);"
    "CREATE INDEX messages_created ON messages(created_at);"
    "CREATE TABLE hops(id BIGSERIAL PRIMARY KEY, message_id TEXT COLLATE"
    "  \"C\" NOT NULL REFERENCES messages(id), connector TEXT NOT NULL,"
    "  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_at BIGINT NOT NULL, lease_owner TEXT, lease_until BIGINT,"
    "  last_error TEXT, receipt TEXT, created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL);"
    "CREATE INDEX hops_due ON hops(next_at, id)"
    "  WHERE state IN ('queued', 'retrying');"
    "CREATE INDEX hops_lease ON hops(lease_until) WHERE state = 'processing';"
    "CREATE INDEX hops_message ON hops(message_id);"
    "CREATE TABLE events(id BIGSERIAL PRIMARY KEY, message_id TEXT COLLATE"
    "  \"C\" NOT NULL, hop_id BIGINT NOT NULL DEFAULT 0, at BIGINT NOT NULL,"
    "  level TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX events_message ON events(message_id, id);"
    "CREATE TABLE connector_secrets(connector TEXT NOT NULL,"
    "  name TEXT COLLATE \"C\" NOT NULL, blob BYTEA NOT NULL,"
    "  expires_at BIGINT NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL,"
    "  PRIMARY KEY(connector, name));"
    "CREATE TABLE partners(name TEXT COLLATE \"C\" PRIMARY KEY,"
    "  as2_id TEXT NOT NULL UNIQUE, config TEXT NOT NULL);"
    "CREATE TABLE certificates(owner TEXT COLLATE \"C\" NOT NULL,"
    "  id TEXT COLLATE \"C\" NOT NULL, subject TEXT NOT NULL,"
    "  not_before BIGINT NOT NULL, not_after BIGINT NOT NULL,"
    "  use_from BIGINT NOT NULL DEFAULT 0, der BYTEA NOT NULL,"
    "  key_sealed BYTEA, PRIMARY KEY(owner, id));"
    "CREATE TABLE jobs(id TEXT COLLATE \"C\" PRIMARY KEY, message_id TEXT"
    "  COLLATE \"C\" NOT NULL, hop_id BIGINT NOT NULL DEFAULT 0,"
    "  connector TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, waits INTEGER NOT NULL DEFAULT 0,"
    "  due_at BIGINT NOT NULL, give_up_at BIGINT NOT NULL DEFAULT 0,"
    "  window_ms BIGINT NOT NULL DEFAULT 0, lease_owner TEXT,"
    "  lease_until BIGINT, data BYTEA, input BYTEA, last_error TEXT,"
    "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
    "CREATE INDEX jobs_due ON jobs(state, due_at);"
    "CREATE INDEX jobs_message ON jobs(message_id, id);"
    "CREATE UNIQUE INDEX jobs_active ON jobs(message_id, connector, kind)"
    "  WHERE state IN ('queued', 'waiting', 'processing');"
    "INSERT INTO settings(key, value) VALUES('flow_generation', '0');",
    /* 2: what SQLite's migrations 2 to 11 hold beyond the flow engine:
     * people, programs, sessions, the audit trail, bans, receipts,
     * refusals, throttles, replay guards, alerts, incidents, backups,
     * retention (each used by its pg_*.c file) */
    "CREATE TABLE users(id BIGSERIAL PRIMARY KEY, name TEXT COLLATE \"C\""
    "  NOT NULL UNIQUE, role TEXT NOT NULL, password_hash TEXT,"
    "  must_change INTEGER NOT NULL DEFAULT 0, totp_sealed BYTEA,"
    "  totp_enabled INTEGER NOT NULL DEFAULT 0, totp_last_step BIGINT"
    "  NOT NULL DEFAULT 0, oidc_subject TEXT UNIQUE, disabled INTEGER"
    "  NOT NULL DEFAULT 0, created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL);"
    "CREATE TABLE recovery_codes(user_id BIGINT NOT NULL REFERENCES"
    "  users(id) ON DELETE CASCADE, code_hash TEXT NOT NULL, used_at BIGINT,"
    "  PRIMARY KEY(user_id, code_hash));"
    "CREATE TABLE sessions(id_hash TEXT PRIMARY KEY, user_id BIGINT NOT NULL"
    "  REFERENCES users(id) ON DELETE CASCADE, csrf_hash TEXT NOT NULL,"
    "  address TEXT, mfa INTEGER NOT NULL DEFAULT 0, created_at BIGINT"
    "  NOT NULL, last_seen_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"
    "  revoked_at BIGINT);"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE TABLE tokens(id TEXT COLLATE \"C\" PRIMARY KEY, name TEXT"
    "  NOT NULL, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,"
    "  created_by TEXT, created_at BIGINT NOT NULL, expires_at BIGINT,"
    "  last_used_at BIGINT, revoked_at BIGINT, owner_id BIGINT REFERENCES"
    "  users(id) ON DELETE SET NULL);"
    "CREATE INDEX tokens_owner ON tokens(owner_id);"
    "CREATE TABLE audit(seq BIGINT PRIMARY KEY, at BIGINT NOT NULL,"
    "  actor TEXT NOT NULL, address TEXT, action TEXT NOT NULL, target TEXT,"
    "  detail TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TABLE audit_checkpoints(seq BIGINT PRIMARY KEY, hash TEXT"
    "  NOT NULL, at BIGINT NOT NULL, key_id TEXT NOT NULL, signature TEXT"
    "  NOT NULL);"
    "CREATE TABLE bans(address TEXT COLLATE \"C\" PRIMARY KEY, failures"
    "  INTEGER NOT NULL DEFAULT 0, level INTEGER NOT NULL DEFAULT 0,"
    "  banned_until BIGINT NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL);"
    "CREATE TABLE receipts(id BIGSERIAL PRIMARY KEY, message_id TEXT"
    "  COLLATE \"C\" NOT NULL, direction TEXT NOT NULL, at BIGINT NOT NULL,"
    "  as2_message_id TEXT, original_message_id TEXT, headers TEXT NOT NULL,"
    "  body BYTEA NOT NULL);"
    "CREATE INDEX receipts_message ON receipts(message_id, id);"
    "CREATE TABLE refusals(message_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  source TEXT NOT NULL, address TEXT NOT NULL, reason TEXT NOT NULL,"
    "  count BIGINT NOT NULL, first_at BIGINT NOT NULL, last_at BIGINT"
    "  NOT NULL, event_id BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX refusals_burst ON refusals(source, address, reason,"
    "  last_at);"
    "CREATE TABLE login_throttle(account TEXT COLLATE \"C\" PRIMARY KEY,"
    "  failures INTEGER NOT NULL, first_at BIGINT NOT NULL, level INTEGER"
    "  NOT NULL, locked_until BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
    "CREATE TABLE replay_guard(scope TEXT NOT NULL, sig TEXT NOT NULL,"
    "  until BIGINT NOT NULL, run TEXT NOT NULL, done INTEGER NOT NULL"
    "  DEFAULT 0, PRIMARY KEY(scope, sig));"
    "CREATE INDEX replay_guard_until ON replay_guard(until);"
    "CREATE TABLE alerts(id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL,"
    "  key TEXT NOT NULL, level TEXT NOT NULL, state TEXT NOT NULL,"
    "  summary TEXT NOT NULL, details TEXT, count BIGINT NOT NULL,"
    "  first_at BIGINT NOT NULL, last_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL, resolved_at BIGINT, incident_id BIGINT);"
    "CREATE INDEX alerts_key ON alerts(kind, key, state);"
    "CREATE INDEX alerts_state ON alerts(state, id);"
    "CREATE INDEX alerts_incident ON alerts(incident_id);"
    "CREATE TABLE incidents(id BIGSERIAL PRIMARY KEY, tier TEXT NOT NULL,"
    "  state TEXT NOT NULL, title TEXT NOT NULL, owner TEXT NOT NULL,"
    "  severity TEXT, partners TEXT NOT NULL, messages TEXT NOT NULL,"
    "  notify TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    "  incident_at BIGINT, breach_at BIGINT, closed_at BIGINT);"
    "CREATE INDEX incidents_state ON incidents(state, id);"
    "CREATE TABLE security_events(id BIGSERIAL PRIMARY KEY, at BIGINT"
    "  NOT NULL, alert_id BIGINT, incident_id BIGINT, actor TEXT NOT NULL,"
    "  action TEXT NOT NULL, level TEXT NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX security_events_alert ON security_events(alert_id);"
    "CREATE INDEX security_events_incident ON security_events(incident_id);"
    "CREATE TABLE backups(id BIGSERIAL PRIMARY KEY, started_at BIGINT"
    "  NOT NULL, finished_at BIGINT NOT NULL, ok INTEGER NOT NULL,"
    "  location TEXT, bytes BIGINT, kind TEXT NOT NULL, backup_id TEXT,"
    "  messages BIGINT, payloads BIGINT, missing BIGINT, sha256 TEXT,"
    "  error TEXT);"
    "CREATE INDEX backups_newest ON backups(ok, finished_at);"
    "CREATE TABLE legal_holds(message_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  at BIGINT NOT NULL, actor TEXT NOT NULL, reason TEXT);"
    "CREATE TABLE purge_pending(message_id TEXT COLLATE \"C\" PRIMARY KEY,"
    "  payload_path TEXT NOT NULL, at BIGINT NOT NULL);",
    /* 3: the nodes serving this database (pg_nodes.c) */
    "CREATE TABLE nodes(id TEXT COLLATE \"C\" PRIMARY KEY, address TEXT"
    "  NOT NULL, version TEXT NOT NULL, started_at BIGINT NOT NULL,"
    "  seen_at BIGINT NOT NULL, beat_ms BIGINT NOT NULL, stopped_at BIGINT);",
    /* 4: each node's count of recent failures per address (pg_net.c) */
    "CREATE TABLE net_failures(address TEXT COLLATE \"C\" NOT NULL,"
    "  node TEXT COLLATE \"C\" NOT NULL, failures INTEGER NOT NULL,"
    "  first_at BIGINT NOT NULL, last_at BIGINT NOT NULL,"
    "  PRIMARY KEY(address, node));"
    "CREATE INDEX net_failures_last ON net_failures(last_at);",
    /* 5: payloads kept in the database, payload_dir = database
     * (pg_payload.c): seq 0 the header, 1.. the sealed segments */
    "CREATE TABLE payload_segments(path TEXT COLLATE \"C\" NOT NULL,"
    "  seq INTEGER NOT NULL, created_at BIGINT NOT NULL,"
    "  data BYTEA NOT NULL, PRIMARY KEY(path, seq));"
    "ALTER TABLE payload_segments ALTER COLUMN data SET STORAGE EXTERNAL;",
    /* 6: a hop carries its message's size, so the large lane reads its
     * own hops through an index of their own instead of past every due
     * small one (engine.c's lanes; Q_HOP_DUE_LARGE) */
    "ALTER TABLE hops ADD COLUMN size BIGINT NOT NULL DEFAULT 0;"
    "UPDATE hops SET size = m.size FROM messages m"
    "  WHERE m.id = hops.message_id AND m.size <> 0;"
    "CREATE INDEX hops_large ON hops(size, next_at, id)"
    "  WHERE state IN ('queued', 'retrying');",
};

/* ---- statements ------------------------------------------------------------ */

enum pg_stmt {
    Q_SETTING_GET, Q_SETTING_SET, Q_SETTING_ALL,
    Q_GEN_LOCK, Q_GEN_BUMP,
    Q_CONN_ALL, Q_LINK_ALL, Q_CONN_DEL, Q_LINK_DEL, Q_CONN_INS, Q_LINK_INS,
    Q_CONN_SET_CONFIG,
    Q_SEC_DROP_IMPORTED, Q_SEC_DROP_GONE, Q_SEC_PUT,
    Q_PARTNERS_DEL, Q_CERTS_DEL, Q_PROFILE_DEL, Q_PROFILE_SET, Q_PARTNER_INS,
    Q_PROFILE_GET, Q_PARTNERS_ALL,
    Q_MSG_INS, Q_MSG_BY_DEDUP, Q_MSG_GET, Q_MSG_LIST, Q_MSG_LIST_STATE,
    Q_MSG_EACH, Q_MSG_PREFIX, Q_MSG_LOCK, Q_MSG_STATE, Q_MSG_ERASE,
    Q_HOP_INS, Q_HOP_DUE, Q_HOP_DUE_LARGE, Q_HOP_TAKE, Q_HOP_SET,
    Q_HOP_OF_MSG, Q_HOP_RENEW,
    Q_HOP_RESEND_FAILED, Q_HOP_RESEND_ALL, Q_HOP_COUNTS, Q_HOP_ONWARD,
    Q_HOP_CANCEL, Q_HOP_HOLD, Q_HOP_UNHOLD, Q_HOP_UNHOLD_ALL,
    Q_HOP_UNHOLD_STALE, Q_HOP_SETTLE,
    Q_EVT_INS, Q_EVT_OF_MSG,
    Q_JOB_RENEW, Q_JOB_RESEND,
    Q_COUNT
};

#define MSG_COLS "id, created_at, updated_at, source, filename, size, sha256," \
                 " state, payload_path, dedup_key"
#define HOP_COLS "id, message_id, connector, state, attempts, next_at," \
                 " created_at, updated_at, last_error, receipt"
/* The hops of one lane ($3 to $4 bytes; engine.c) whose lease ran out
 * (hops_lease), the first $2 by (next_at, id), locked as read; hops
 * another node is leasing right now are skipped, not waited for. */
#define HOP_EXPIRED "WITH expired AS (SELECT " HOP_COLS " FROM hops"        \
    "  WHERE state = 'processing' AND lease_until < $1"                   \
    "  AND size BETWEEN $3 AND $4"                                        \
    "  ORDER BY next_at, id LIMIT $2 FOR UPDATE OF hops SKIP LOCKED),"
/* The same of the hops queued or retrying, due and not leased now, of
 * the sizes lane_test says. */
#define HOP_WAITING(lane_test) " due AS (SELECT " HOP_COLS " FROM hops"    \
    "  WHERE state IN ('queued', 'retrying') AND next_at <= $1"           \
    "  AND (lease_until IS NULL OR lease_until < $1) AND " lane_test      \
    "  ORDER BY next_at, id LIMIT $2 FOR UPDATE OF hops SKIP LOCKED)"     \
    " SELECT * FROM expired UNION ALL SELECT * FROM due"                  \
    " ORDER BY next_at, id LIMIT $2"

_Static_assert(Q_COUNT <= 64, "pg.c owns statement slots 0..63");

static const char *const SQL[Q_COUNT] = {
    [Q_SETTING_GET] = "SELECT value FROM settings WHERE key = $1",
    [Q_SETTING_SET] = "INSERT INTO settings(key, value) VALUES($1, $2)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [Q_SETTING_ALL] = "SELECT key, value FROM settings ORDER BY key",
    [Q_GEN_LOCK] = "SELECT value FROM settings"
        " WHERE key = 'flow_generation' FOR UPDATE",
    [Q_GEN_BUMP] = "UPDATE settings SET value = (value::bigint + 1)::text"
        " WHERE key = 'flow_generation'",
    [Q_CONN_ALL] = "SELECT name, type, config FROM connectors ORDER BY seq",
    [Q_LINK_ALL] = "SELECT src, dst FROM links ORDER BY seq",
    [Q_CONN_DEL] = "DELETE FROM connectors",
    [Q_LINK_DEL] = "DELETE FROM links",
    [Q_CONN_INS] = "INSERT INTO connectors(name, type, config)"
        " VALUES($1, $2, $3)",
    [Q_LINK_INS] = "INSERT INTO links(src, dst) VALUES($1, $2)",
    [Q_CONN_SET_CONFIG] = "UPDATE connectors SET config = $3"
        " WHERE name = $1 AND config = $2",
    [Q_SEC_DROP_IMPORTED] = "DELETE FROM connector_secrets"
        " WHERE substr(name, 1, 6) <> 'state:'",
    [Q_SEC_DROP_GONE] = "DELETE FROM connector_secrets WHERE connector"
        " NOT IN (SELECT name FROM connectors)",
    [Q_SEC_PUT] = "INSERT INTO connector_secrets(connector, name, blob,"
        " expires_at, updated_at) VALUES($1, $2, $3, $4, $5)"
        " ON CONFLICT(connector, name) DO UPDATE SET blob = excluded.blob,"
        " expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    [Q_PARTNERS_DEL] = "DELETE FROM partners",
    [Q_CERTS_DEL] = "DELETE FROM certificates",
    [Q_PROFILE_DEL] = "DELETE FROM settings WHERE key = 'profile'",
    [Q_PROFILE_SET] = "INSERT INTO settings(key, value) VALUES('profile', $1)",
    [Q_PARTNER_INS] = "INSERT INTO partners(name, as2_id, config)"
        " VALUES($1, $2, $3)",
    [Q_PROFILE_GET] = "SELECT value FROM settings WHERE key = 'profile'",
    [Q_PARTNERS_ALL] = "SELECT name, as2_id, config FROM partners"
        " ORDER BY name",
    [Q_MSG_INS] = "INSERT INTO messages(" MSG_COLS ")"
        " VALUES($1, $2, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT DO NOTHING",
    [Q_MSG_BY_DEDUP] = "SELECT id FROM messages WHERE source = $1"
        " AND dedup_key = $2",
    [Q_MSG_GET] = "SELECT " MSG_COLS " FROM messages WHERE id = $1",
    [Q_MSG_LIST] = "SELECT " MSG_COLS " FROM messages"
        " ORDER BY id DESC LIMIT $1 OFFSET $2",
    [Q_MSG_LIST_STATE] = "SELECT " MSG_COLS " FROM messages WHERE state = $3"
        " ORDER BY id DESC LIMIT $1 OFFSET $2",
    [Q_MSG_EACH] = "SELECT " MSG_COLS " FROM messages"
        " WHERE payload_path IS NOT NULL AND id > $1 ORDER BY id LIMIT 256",
    /* Ids are lowercase hex and '-', all below '~' (byte order: "C"). */
    [Q_MSG_PREFIX] = "SELECT COUNT(*), MIN(id) FROM messages"
        " WHERE id >= $1::text AND id < $1::text || '~'",
    [Q_MSG_LOCK] = "SELECT id FROM messages WHERE id = ANY($1::text[])"
        " ORDER BY id FOR UPDATE",
    /* A message's state is the state of its delivery hops, worst first. */
    [Q_MSG_STATE] = "UPDATE messages SET updated_at = $2, state = COALESCE(("
        " SELECT CASE"
        "  WHEN bool_or(h.state = 'failed') THEN 'failed'"
        "  WHEN bool_or(h.state = 'processing') THEN 'processing'"
        "  WHEN bool_or(h.state = 'retrying') THEN 'retrying'"
        "  WHEN bool_or(h.state = 'queued') THEN 'queued'"
        "  ELSE 'sent' END"
        " FROM hops h WHERE h.message_id = $1 AND h.state <> 'received'"
        " HAVING COUNT(*) > 0), 'received') WHERE id = $1",
    [Q_MSG_ERASE] = "UPDATE messages SET payload_path = NULL,"
        " state = 'erased', updated_at = $2 WHERE id = $1",
    [Q_HOP_INS] = "INSERT INTO hops(message_id, connector, state, next_at,"
        " created_at, updated_at, size) VALUES($1, $2, $3, $4, $4, $4,"
        " COALESCE((SELECT size FROM messages WHERE id = $1), 0))"
        " RETURNING id",
    /* Due hops of a lane from 0 bytes, locked, the first $2 by (next_at,
     * id): those whose lease ran out and those queued or retrying
     * (hops_due, read in its order), each cut at $2 as it is locked, so
     * a lease reads about $2 rows however long the queue is. One WHERE
     * with an OR of the two made PostgreSQL scan and sort every hop
     * (100,000 queued: 740 ms per lease; docs/performance.md). The size
     * test is not on an indexed expression (size + 0), so no plan reads
     * hops_large instead, which would read and sort every small hop. */
    [Q_HOP_DUE] = HOP_EXPIRED HOP_WAITING("size + 0 BETWEEN $3 AND $4"),
    /* The large lane's ($3 bytes or more): its waiting hops through
     * hops_large, which holds only those, by size. Read in due order, a
     * lease of the large lane went past every due small hop. */
    [Q_HOP_DUE_LARGE] = HOP_EXPIRED HOP_WAITING("size BETWEEN $3 AND $4"),
    [Q_HOP_TAKE] = "UPDATE hops SET state = 'processing', lease_owner = $2,"
        " lease_until = $3, updated_at = $4 WHERE id = ANY($1::bigint[])",
    [Q_HOP_SET] = "UPDATE hops SET state = $2, attempts = $3, next_at = $4,"
        " last_error = $5, receipt = COALESCE($6, receipt),"
        " lease_owner = NULL, lease_until = NULL, updated_at = $7"
        " WHERE id = $1 AND state = 'processing' AND lease_owner = $8",
    /* A waiting hop (an asynchronous MDN) takes its job's outcome. */
    [Q_HOP_SETTLE] = "UPDATE hops SET state = $2, attempts = $3, next_at = $4,"
        " last_error = $5, receipt = COALESCE($6, receipt), updated_at = $7"
        " WHERE id = $1 AND state = 'retrying'",
    [Q_HOP_OF_MSG] = "SELECT " HOP_COLS " FROM hops WHERE message_id = $1"
        " ORDER BY id",
    /* A row locked is being finished by its worker (or taken, its lease
     * over): skipped, not waited for. Waiting, with the rows renewed so
     * far locked, deadlocks with a commit that reaches one of those. */
    [Q_HOP_RENEW] = "UPDATE hops SET lease_until = $2 WHERE id IN"
        " (SELECT id FROM hops WHERE state = 'processing'"
        "  AND lease_owner = $1 FOR UPDATE SKIP LOCKED)",
    [Q_HOP_RESEND_FAILED] = "UPDATE hops SET state = 'queued', attempts = 0,"
        " next_at = $2, last_error = NULL, updated_at = $2,"
        " lease_owner = NULL, lease_until = NULL"
        " WHERE message_id = $1 AND state = 'failed'",
    [Q_HOP_RESEND_ALL] = "UPDATE hops SET state = 'queued', attempts = 0,"
        " next_at = $2, last_error = NULL, updated_at = $2,"
        " lease_owner = NULL, lease_until = NULL"
        " WHERE message_id = $1 AND state IN ('sent', 'failed')",
    [Q_HOP_COUNTS] = "SELECT state, COUNT(*) FROM hops GROUP BY state",
    [Q_HOP_ONWARD] = "SELECT COUNT(*) FROM hops WHERE message_id = $1"
        " AND state <> 'received'",
    [Q_HOP_CANCEL] = "UPDATE hops SET state = 'failed', last_error = 'erased',"
        " lease_owner = NULL, lease_until = NULL, updated_at = $2"
        " WHERE message_id = $1 AND state IN ('queued', 'retrying',"
        " 'processing')",
    [Q_HOP_HOLD] = "UPDATE hops SET next_at = $2 WHERE message_id = $1"
        " AND state = 'queued'",
    [Q_HOP_UNHOLD] = "UPDATE hops SET next_at = $3, updated_at = $3"
        " WHERE message_id = $1 AND state = 'queued' AND next_at >= $2",
    [Q_HOP_UNHOLD_ALL] = "UPDATE hops SET next_at = $2, updated_at = $2"
        " WHERE state = 'queued' AND next_at >= $1",
    /* a hold began at the held hop's updated_at (holding keeps it) */
    [Q_HOP_UNHOLD_STALE] = "WITH u AS (UPDATE hops SET next_at = $2,"
        " updated_at = $2 WHERE state = 'queued' AND next_at >= $1"
        " AND updated_at < $3 RETURNING message_id)"
        " SELECT message_id, COUNT(*) FROM u GROUP BY message_id",
    [Q_EVT_INS] = "INSERT INTO events(message_id, hop_id, at, level, text)"
        " VALUES($1, $2, $3, $4, $5)",
    [Q_EVT_OF_MSG] = "SELECT id, at, hop_id, level, text FROM events"
        " WHERE message_id = $1 ORDER BY id",
    /* as Q_HOP_RENEW: a locked row skipped */
    [Q_JOB_RENEW] = "UPDATE jobs SET lease_until = $2 WHERE id IN"
        " (SELECT id FROM jobs WHERE state = 'processing'"
        "  AND lease_owner = $1 FOR UPDATE SKIP LOCKED)",
    /* the newest failed job of each message, connector and kind */
    [Q_JOB_RESEND] = "UPDATE jobs SET state = 'queued', attempts = 0,"
        " waits = 0, due_at = $2, give_up_at = CASE WHEN window_ms > 0"
        " THEN $2::bigint + window_ms ELSE 0 END, last_error = NULL,"
        " updated_at = $2 WHERE message_id = $1 AND state = 'failed'"
        " AND id = (SELECT MAX(k.id) FROM jobs k WHERE k.message_id ="
        "  jobs.message_id AND k.connector = jobs.connector"
        "  AND k.kind = jobs.kind AND k.state = 'failed')"
        " AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.message_id ="
        "  jobs.message_id AND k.connector = jobs.connector"
        "  AND k.kind = jobs.kind AND k.state IN ('queued', 'waiting',"
        "  'processing'))",
};

/* ---- running the statements above (pg_internal.h) ---------------------------- */

static PGresult *run(struct pg_store *p, enum pg_stmt id,
                     const struct pg_args *a, const char *what,
                     struct error *err)
{
    return pg_run(p, (int)id, SQL[id], a, what, err);
}

static int run_done(struct pg_store *p, enum pg_stmt id, const struct pg_args *a,
                    const char *what, int64_t *changed, struct error *err)
{
    return pg_run_done(p, (int)id, SQL[id], a, what, changed, err);
}

/* ---- open, close, migrate ---------------------------------------------- */

bool pgs_is_url(const char *path)
{
    return path && (strncmp(path, "postgresql://", 13) == 0 ||
                    strncmp(path, "postgres://", 11) == 0);
}

/* host:port/dbname of the connection, never its password. */
static char *conn_name(PGconn *c)
{
    const char *host = PQhost(c), *port = PQport(c), *db = PQdb(c);
    char buf[512];
    snprintf(buf, sizeof(buf), "postgresql://%s:%s/%s", host ? host : "",
             port ? port : "", db ? db : "");
    return strdup(buf);
}

int pgs_schema_version(struct pg_store *p)
{
    PGresult *r = PQexec(p->conn, "SELECT MAX(version) FROM schema_version");
    int v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        !PQgetisnull(r, 0, 0))
        v = (int)pg_val_int(r, 0, 0);
    PQclear(r);
    return v;
}

static int migrate_one(struct pg_store *p, int i, struct error *err)
{
    char version[16], at[24];
    snprintf(version, sizeof(version), "%d", i + 1);
    snprintf(at, sizeof(at), "%lld", (long long)time_now_ms());
    const char *vals[2] = { version, at };
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (pg_exec(p, PG_MIGRATIONS[i], err) < 0)
        return pg_tx_fail(p);
    PGresult *r = PQexecParams(p->conn, "INSERT INTO schema_version(version,"
                               " applied_at) VALUES($1, $2)", 2, NULL, vals,
                               NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        pg_db_error(p, err, "record the schema version", r);
    PQclear(r);
    return ok ? pg_tx_end(p, err) : pg_tx_fail(p);
}

static int migrate_locked(struct pg_store *p, struct error *err)
{
    if (pg_exec(p, "CREATE TABLE IF NOT EXISTS schema_version("
                      "version INTEGER NOT NULL, applied_at BIGINT NOT NULL)",
                   err) < 0)
        return -1;
    int v = pgs_schema_version(p);
    if (v > PG_SCHEMA_VERSION)
        return error_set(err, "database %s has schema version %d, newer than "
                         "this wharf (%d): upgrade wharf", p->name, v,
                         PG_SCHEMA_VERSION);
    for (int i = v < 0 ? 0 : v; i < PG_SCHEMA_VERSION; i++)
        if (migrate_one(p, i, err) < 0)
            return -1;
    return 0;
}

/* Nodes starting together take turns: the first migrates, the others then
 * find the schema current. */
static int migrate(struct pg_store *p, struct error *err)
{
    if (pg_exec(p, "SELECT pg_advisory_lock(" PG_MIGRATE_LOCK ")",
                   err) < 0)
        return -1;
    int rc = migrate_locked(p, err);
    pg_exec(p, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")", NULL);
    return rc;
}

struct pg_store *pgs_open(const char *url, struct error *err)
{
    struct pg_store *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    if (store_url_check(url, err) < 0) {     /* before any byte is sent */
        free(p);
        return NULL;
    }
    p->conn = pg_connect(url);
    if (p->conn == NULL || PQstatus(p->conn) != CONNECTION_OK) {
        const char *msg = p->conn ? PQerrorMessage(p->conn) : "out of memory";
        /* libpq's message names host and port, never the password */
        error_set(err, "cannot connect to the PostgreSQL store: %.*s",
                  (int)strcspn(msg, "\n"), msg);
        pgs_close(p);
        return NULL;
    }
    pg_notices_to_log(p->conn);
    p->name = conn_name(p->conn);
    if (p->name == NULL ||
        pg_exec(p, "SET client_min_messages = warning", err) < 0 ||
        migrate(p, err) < 0) {
        if (p->name == NULL)
            error_set(err, "out of memory");
        pgs_close(p);
        return NULL;
    }
    return p;
}

/* How long a closing store waits for the server to let go of its locks:
 * a server that does not answer by then frees them when it sees the
 * disconnect, as before; closing never hangs on an unreachable server. */
#define PG_UNLOCK_WAIT_MS 2000

/* Session advisory locks (leadership of cluster jobs, the replay guard's
 * run) are let go before the connection ends: the server frees them only
 * when its backend has seen the disconnect, some time after PQfinish
 * returns, and a node that stops should hand its jobs over at once. */
static void pg_unlock_all(struct pg_store *p)
{
    if (PQstatus(p->conn) != CONNECTION_OK
        || PQtransactionStatus(p->conn) != PQTRANS_IDLE
        || !PQsendQuery(p->conn, "SELECT pg_advisory_unlock_all()"))
        return;
    int64_t until = time_mono_ms() + PG_UNLOCK_WAIT_MS;
    while (PQconsumeInput(p->conn) && PQisBusy(p->conn)) {
        struct pollfd fd = { .fd = PQsocket(p->conn), .events = POLLIN };
        int64_t left = until - time_mono_ms();
        int r = left > 0 ? poll(&fd, 1, (int)left) : 0;
        if (r == 0 || (r < 0 && errno != EINTR))
            return;                     /* PQfinish drops the answer */
    }
    PGresult *r;
    while (!PQisBusy(p->conn) && (r = PQgetResult(p->conn)) != NULL)
        PQclear(r);
}

void pgs_close(struct pg_store *p)
{
    if (p == NULL)
        return;
    pg_unlock_all(p);
    PQfinish(p->conn);
    free(p->name);
    free(p);
}

const char *pgs_name(const struct pg_store *p)
{
    return p->name;
}

/* ---- settings -------------------------------------------------------------- */

int pgs_setting_get(struct pg_store *p, const char *key, char **value,
                    struct error *err)
{
    struct pg_args a = {0};
    *value = NULL;
    pg_arg_text(&a, key);
    PGresult *r = run(p, Q_SETTING_GET, &a, "read setting", err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 1)
        *value = pg_val_dup(r, 0, 0);
    PQclear(r);
    return 0;
}

int pgs_setting_set(struct pg_store *p, const char *key, const char *value,
                    struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, key);
    pg_arg_text(&a, value);
    return run_done(p, Q_SETTING_SET, &a, "write setting", NULL, err);
}

int pgs_settings_list(struct pg_store *p, char ***keys, char ***values,
                      size_t *n, struct error *err)
{
    *keys = *values = NULL;
    *n = 0;
    PGresult *r = run(p, Q_SETTING_ALL, NULL, "list settings", err);
    if (r == NULL)
        return -1;
    size_t rows = (size_t)PQntuples(r);
    *keys = calloc(rows + 1, sizeof(char *));
    *values = calloc(rows + 1, sizeof(char *));
    if (*keys == NULL || *values == NULL) {
        PQclear(r);
        store_settings_free(*keys, *values, 0);
        *keys = *values = NULL;
        return error_set(err, "out of memory");
    }
    for (size_t i = 0; i < rows; i++) {
        (*keys)[i] = pg_val_dup(r, (int)i, 0);
        (*values)[i] = pg_val_dup(r, (int)i, 1);
    }
    *n = rows;
    PQclear(r);
    return 0;
}

/* ---- flow ------------------------------------------------------------------ */

static int flow_read(struct pg_store *p, struct store_flow *f,
                     struct error *err)
{
    PGresult *r = run(p, Q_CONN_ALL, NULL, "read connectors", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    f->conns = calloc((size_t)rows + 1, sizeof(*f->conns));
    for (int i = 0; f->conns && i < rows; i++, f->nconns++) {
        f->conns[i].name = pg_val_dup(r, i, 0);
        f->conns[i].type = pg_val_dup(r, i, 1);
        f->conns[i].config = pg_val_dup(r, i, 2);
    }
    PQclear(r);
    if ((r = run(p, Q_LINK_ALL, NULL, "read links", err)) == NULL)
        return -1;
    rows = PQntuples(r);
    f->links = calloc((size_t)rows + 1, sizeof(*f->links));
    for (int i = 0; f->links && i < rows; i++, f->nlinks++) {
        f->links[i].src = pg_val_dup(r, i, 0);
        f->links[i].dst = pg_val_dup(r, i, 1);
    }
    PQclear(r);
    if (f->conns == NULL || f->links == NULL)
        return error_set(err, "out of memory");
    return 0;
}

static int partners_read(struct pg_store *p, struct store_flow *f,
                         struct error *err)
{
    PGresult *r = run(p, Q_PROFILE_GET, NULL, "read the profile", err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 1)
        f->profile = pg_val_dup(r, 0, 0);
    PQclear(r);
    if ((r = run(p, Q_PARTNERS_ALL, NULL, "read partners", err)) == NULL)
        return -1;
    int rows = PQntuples(r);
    f->partners = calloc((size_t)rows + 1, sizeof(*f->partners));
    for (int i = 0; f->partners && i < rows; i++, f->npartners++) {
        f->partners[i].name = pg_val_dup(r, i, 0);
        f->partners[i].as2_id = pg_val_dup(r, i, 1);
        f->partners[i].config = pg_val_dup(r, i, 2);
    }
    PQclear(r);
    return f->partners ? 0 : error_set(err, "out of memory");
}

int pgs_flow_get(struct pg_store *p, struct store_flow *out,
                 struct error *err)
{
    char *gen = NULL;
    memset(out, 0, sizeof(*out));
    /* one snapshot, so connectors, links and generation agree */
    if (pg_exec(p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                   err) < 0)
        return -1;
    p->in_tx = true;
    int rc = flow_read(p, out, err);
    if (rc == 0)
        rc = partners_read(p, out, err);
    if (rc == 0)
        rc = pgs_setting_get(p, "flow_generation", &gen, err);
    out->generation = gen ? strtoll(gen, NULL, 10) : 0;
    free(gen);
    if (rc == 0)
        rc = pg_tx_end(p, err);
    else
        pg_tx_fail(p);
    if (rc < 0)
        store_flow_clear(out);
    return rc;
}

static int secrets_write(struct pg_store *p, const struct store_flow *f,
                         struct error *err)
{
    if (run_done(p, Q_SEC_DROP_IMPORTED, NULL, "drop imported secrets", NULL,
                 err) < 0 ||
        run_done(p, Q_SEC_DROP_GONE, NULL, "drop secrets of removed "
                 "connectors", NULL, err) < 0)
        return -1;
    for (size_t i = 0; i < f->nsecrets; i++) {
        const struct store_secret *s = &f->secrets[i];
        struct pg_args a = {0};
        pg_arg_text(&a, s->connector);
        pg_arg_text(&a, s->name);
        pg_arg_blob(&a, s->blob, s->len);
        pg_arg_int(&a, s->expires_at);
        pg_arg_int(&a, time_now_ms());
        if (run_done(p, Q_SEC_PUT, &a, "store a connector secret", NULL,
                     err) < 0)
            return -1;
    }
    return 0;
}

static int partners_write(struct pg_store *p, const struct store_flow *f,
                          struct error *err)
{
    if (run_done(p, Q_PARTNERS_DEL, NULL, "delete partners", NULL, err) < 0 ||
        run_done(p, Q_CERTS_DEL, NULL, "delete certificates", NULL, err) < 0 ||
        run_done(p, Q_PROFILE_DEL, NULL, "delete the profile", NULL, err) < 0)
        return -1;
    if (f->profile) {
        struct pg_args a = {0};
        pg_arg_text(&a, f->profile);
        if (run_done(p, Q_PROFILE_SET, &a, "store the profile", NULL,
                     err) < 0)
            return -1;
    }
    for (size_t i = 0; i < f->npartners; i++) {
        struct pg_args a = {0};
        pg_arg_text(&a, f->partners[i].name);
        pg_arg_text(&a, f->partners[i].as2_id);
        pg_arg_text(&a, f->partners[i].config);
        if (run_done(p, Q_PARTNER_INS, &a, "store a partner", NULL, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < f->ncerts; i++)
        if (pg_cert_write(p, &f->certs[i], err) < 0)
            return -1;
    return 0;
}

static int flow_write(struct pg_store *p, const struct store_flow *f,
                      struct error *err)
{
    if (run_done(p, Q_GEN_LOCK, NULL, "lock the flow", NULL, err) < 0 ||
        run_done(p, Q_LINK_DEL, NULL, "delete links", NULL, err) < 0 ||
        run_done(p, Q_CONN_DEL, NULL, "delete connectors", NULL, err) < 0)
        return -1;
    for (size_t i = 0; i < f->nconns; i++) {
        struct pg_args a = {0};
        pg_arg_text(&a, f->conns[i].name);
        pg_arg_text(&a, f->conns[i].type);
        pg_arg_text(&a, f->conns[i].config);
        if (run_done(p, Q_CONN_INS, &a, "insert connector", NULL, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < f->nlinks; i++) {
        struct pg_args a = {0};
        pg_arg_text(&a, f->links[i].src);
        pg_arg_text(&a, f->links[i].dst);
        if (run_done(p, Q_LINK_INS, &a, "insert link", NULL, err) < 0)
            return -1;
    }
    if (secrets_write(p, f, err) < 0 || partners_write(p, f, err) < 0)
        return -1;
    return run_done(p, Q_GEN_BUMP, NULL, "bump flow generation", NULL, err);
}

int pgs_flow_put(struct pg_store *p, const struct store_flow *f,
                 struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    return flow_write(p, f, err) < 0 ? pg_tx_fail(p) : pg_tx_end(p, err);
}

int pgs_connector_config_set(struct pg_store *p, const char *name,
                             const char *old_config, const char *config,
                             struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_text(&a, name);
    pg_arg_text(&a, old_config);
    pg_arg_text(&a, config);
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (run_done(p, Q_GEN_LOCK, NULL, "lock the flow", NULL, err) < 0 ||
        run_done(p, Q_CONN_SET_CONFIG, &a, "change connector config",
                 &changed, err) < 0)
        return pg_tx_fail(p);
    if (changed != 1) {
        pg_tx_fail(p);
        return 1;
    }
    if (run_done(p, Q_GEN_BUMP, NULL, "bump flow generation", NULL, err) < 0)
        return pg_tx_fail(p);
    return pg_tx_end(p, err);
}

/* ---- rows -------------------------------------------------------------------- */

static void message_row(const PGresult *r, int i, struct store_message *m)
{
    memset(m, 0, sizeof(*m));
    pg_val_id(r, i, 0, m->id);
    m->created_at = pg_val_int(r, i, 1);
    m->updated_at = pg_val_int(r, i, 2);
    m->source = pg_val_dup(r, i, 3);
    m->filename = pg_val_dup(r, i, 4);
    m->size = pg_val_int(r, i, 5);
    m->sha256 = pg_val_dup(r, i, 6);
    m->state = pg_val_dup(r, i, 7);
    m->payload_path = pg_val_dup(r, i, 8);
    m->dedup_key = pg_val_dup(r, i, 9);
}

static int message_rows(const PGresult *r, struct store_message **out,
                        size_t *n, struct error *err)
{
    int rows = PQntuples(r);
    *n = 0;
    *out = NULL;                /* none: NULL, as SQLite's (callers rely) */
    if (rows == 0)
        return 0;
    *out = calloc((size_t)rows, sizeof(**out));
    if (*out == NULL)
        return error_set(err, "out of memory");
    for (int i = 0; i < rows; i++)
        message_row(r, i, &(*out)[(*n)++]);
    return 0;
}

static void hop_row(const PGresult *r, int i, struct store_hop *h)
{
    memset(h, 0, sizeof(*h));
    h->id = pg_val_int(r, i, 0);
    pg_val_id(r, i, 1, h->message_id);
    h->connector = pg_val_dup(r, i, 2);
    h->state = pg_val_dup(r, i, 3);
    h->attempts = (int)pg_val_int(r, i, 4);
    h->next_at = pg_val_int(r, i, 5);
    h->created_at = pg_val_int(r, i, 6);
    h->updated_at = pg_val_int(r, i, 7);
    h->last_error = pg_val_dup(r, i, 8);
    h->receipt = pg_val_dup(r, i, 9);
}

static int hop_rows(const PGresult *r, struct store_hop **out, size_t *n,
                    struct error *err)
{
    int rows = PQntuples(r);
    *n = 0;
    *out = NULL;                /* none: NULL, as SQLite's (callers rely) */
    if (rows == 0)
        return 0;
    *out = calloc((size_t)rows, sizeof(**out));
    if (*out == NULL)
        return error_set(err, "out of memory");
    for (int i = 0; i < rows; i++)
        hop_row(r, i, &(*out)[(*n)++]);
    return 0;
}

/* An array parameter: {"a","b"} (strings, quoted) or {1,2} (numbers).
 * Malloc'ed, caller frees; NULL when out of memory. */
static char *array_text(const char *const *strs, const int64_t *nums,
                        size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += strs ? 2 * strlen(strs[i]) + 3 : 22;
    char *out = malloc(cap), *w = out;
    if (out == NULL)
        return NULL;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        if (nums) {
            w += snprintf(w, 22, "%lld", (long long)nums[i]);
            continue;
        }
        *w++ = '"';
        for (const char *c = strs[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *w++ = '\\';
            *w++ = *c;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return out;
}

/* Lock the rows of the messages named (in id order) for the rest of the
 * transaction. */
int pg_messages_lock(struct pg_store *p, const char *const *ids, size_t n,
                     struct error *err)
{
    char *arr = array_text(ids, NULL, n);
    if (arr == NULL)
        return error_set(err, "out of memory");
    struct pg_args a = {0};
    pg_arg_text(&a, arr);
    int rc = run_done(p, Q_MSG_LOCK, &a, "lock messages", NULL, err);
    free(arr);
    return rc;
}

/* ---- events and hops inside a transaction ------------------------------------- */

static int event_add(struct pg_store *p, const char *msgid, int64_t hop_id,
                     int64_t at, const char *level, const char *text,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, msgid);
    pg_arg_int(&a, hop_id);
    pg_arg_int(&a, at);
    pg_arg_text(&a, level);
    pg_arg_text(&a, text);
    return run_done(p, Q_EVT_INS, &a, "insert event", NULL, err);
}

static int hop_insert(struct pg_store *p, const char *msgid, const char *conn,
                      const char *state, int64_t now, int64_t *hop_id,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, msgid);
    pg_arg_text(&a, conn);
    pg_arg_text(&a, state);
    pg_arg_int(&a, now);
    PGresult *r = run(p, Q_HOP_INS, &a, "insert hop", err);
    if (r == NULL)
        return -1;
    *hop_id = pg_val_int(r, 0, 0);
    PQclear(r);
    return 0;
}

static int hops_queue(struct pg_store *p, const char *msgid,
                      const char *const *next, size_t nnext, int64_t now,
                      struct error *err)
{
    for (size_t j = 0; j < nnext; j++) {
        int64_t hop;
        char text[300];
        if (hop_insert(p, msgid, next[j], "queued", now, &hop, err) < 0)
            return -1;
        snprintf(text, sizeof(text), "queued for %s", next[j]);
        if (event_add(p, msgid, hop, now, "info", text, err) < 0)
            return -1;
    }
    return 0;
}

static int message_state_update(struct pg_store *p, const char *id,
                                int64_t now, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    pg_arg_int(&a, now);
    return run_done(p, Q_MSG_STATE, &a, "update message state", NULL, err);
}

/* ---- messages ------------------------------------------------------------------ */

static int hops_hold(struct pg_store *p, const char *msgid, int64_t now,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, msgid);
    pg_arg_int(&a, STORE_HELD_AT);
    if (run_done(p, Q_HOP_HOLD, &a, "hold hops", NULL, err) < 0)
        return -1;
    return event_add(p, msgid, 0, now, "info", "held until the source has "
                     "acknowledged it (MDN)", err);
}

static int dedup_find(struct pg_store *p, const struct store_message *m,
                      char existing[ID_LEN + 1], struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, m->source);
    pg_arg_text(&a, m->dedup_key);
    PGresult *r = run(p, Q_MSG_BY_DEDUP, &a, "look up duplicate", err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 1)
        pg_val_id(r, 0, 0, existing);
    PQclear(r);
    return 0;
}

static int message_insert(struct pg_store *p, const struct store_message *m,
                          const char *state, int64_t *inserted,
                          struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, m->id);
    pg_arg_int(&a, m->created_at);
    pg_arg_text(&a, m->source);
    pg_arg_text(&a, m->filename);
    pg_arg_int(&a, m->size);
    pg_arg_text(&a, m->sha256);
    pg_arg_text(&a, state);
    pg_arg_text(&a, m->payload_path);
    pg_arg_text(&a, m->dedup_key);
    return run_done(p, Q_MSG_INS, &a, "insert message", inserted, err);
}

static int intake_one(struct pg_store *p, struct store_new *it, int64_t now,
                      struct error *err)
{
    const struct store_message *m = it->msg;
    int64_t inserted = 0, hop;
    char text[600];
    if (message_insert(p, m, it->nnext ? "queued" : "received", &inserted,
                       err) < 0)
        return -1;
    it->duplicate = inserted == 0;
    if (it->duplicate)
        return m->dedup_key ? dedup_find(p, m, it->existing_id, err) : 0;
    if (hop_insert(p, m->id, m->source, "received", now, &hop, err) < 0)
        return -1;
    snprintf(text, sizeof(text), "received by %s: %s (%lld bytes, sha256 %s)",
             m->source, m->filename ? m->filename : "-", (long long)m->size,
             m->sha256 ? m->sha256 : "-");
    if (event_add(p, m->id, hop, now, "info", text, err) < 0 ||
        hops_queue(p, m->id, it->next, it->nnext, now, err) < 0 ||
        (it->job != NULL && pgs_job_add_tx(p, it->job, now, err) < 0) ||
        (it->kept != NULL && pgs_receipt_add(p, it->kept, err) < 0) ||
        (it->why != NULL &&
         event_add(p, m->id, 0, now, "info", it->why, err) < 0))
        return -1;
    return it->hold && it->nnext ? hops_hold(p, m->id, now, err) : 0;
}

int pgs_intake(struct pg_store *p, struct store_new *items, size_t n,
               struct error *err)
{
    int64_t now = time_now_ms();
    if (pg_tx_begin(p, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (intake_one(p, &items[i], now, err) < 0)
            return pg_tx_fail(p);
    if (pg_injected_io_error("store.intake", err))
        return pg_tx_fail(p);
    if (pg_tx_end(p, err) < 0)
        return -1;
    return pg_injected_lost_commit("store.intake_lost", err) ? -1 : 0;
}

int pgs_message_release(struct pg_store *p, const char *msgid,
                        const char *why, const struct store_receipt *kept,
                        const struct store_job_new *job, struct error *err)
{
    int64_t now = time_now_ms(), changed = 0;
    struct pg_args a = {0};
    pg_arg_text(&a, msgid);
    pg_arg_int(&a, STORE_HELD_AT);
    pg_arg_int(&a, now);
    if (pg_tx_begin(p, err) < 0)
        return -1;
    /* the job first: it locks the message row before any hop's */
    if ((job != NULL && pgs_job_add_tx(p, job, now, err) < 0) ||
        (kept != NULL && pgs_receipt_add(p, kept, err) < 0) ||
        run_done(p, Q_HOP_UNHOLD, &a, "release hops", &changed, err) < 0 ||
        (changed > 0 && event_add(p, msgid, 0, now, "info", why, err) < 0))
        return pg_tx_fail(p);
    return pg_tx_end(p, err);
}

int pgs_release_held(struct pg_store *p, struct error *err)
{
    /* Other nodes hold hops until their MDNs went out: a node that starts
     * takes none of them; a dead node's holds go when they are stale
     * (pgs_release_stale_holds, from every node's keeper). */
    (void)p;
    (void)err;
    return 0;
}

static int stale_holds_tx(struct pg_store *p, int64_t before, int64_t now,
                          int64_t *released, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, STORE_HELD_AT);
    pg_arg_int(&a, now);
    pg_arg_int(&a, before);
    PGresult *r = run(p, Q_HOP_UNHOLD_STALE, &a, "release holds", err);
    if (r == NULL)
        return -1;
    int rc = 0;
    *released = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        *released += pg_val_int(r, i, 1);
        rc = event_add(p, PQgetvalue(r, i, 0), 0, now, "warning",
                       "released: the node that received it did not "
                       "release it after its MDN (it stopped or lost it)",
                       err);
    }
    PQclear(r);
    return rc;
}

int pgs_release_stale_holds(struct pg_store *p, int64_t before,
                            int64_t *released, struct error *err)
{
    int64_t n = 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (stale_holds_tx(p, before, time_now_ms(), &n, err) < 0)
        return pg_tx_fail(p);
    if (pg_tx_end(p, err) < 0)
        return -1;
    if (released)
        *released = n;
    return 0;
}

int pgs_message_refused(struct pg_store *p, const char *source,
                        const char *text, char id[ID_LEN + 1],
                        struct error *err)
{
    int64_t now = time_now_ms();
    struct store_message m;
    memset(&m, 0, sizeof(m));
    id_new(id);
    snprintf(m.id, sizeof(m.id), "%s", id);
    m.created_at = now;
    m.source = (char *)source;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (message_insert(p, &m, "refused", NULL, err) < 0 ||
        event_add(p, id, 0, now, "error", text, err) < 0)
        return pg_tx_fail(p);
    return pg_tx_end(p, err);
}

int pgs_message_get(struct pg_store *p, const char *id,
                    struct store_message *out, struct error *err)
{
    struct pg_args a = {0};
    memset(out, 0, sizeof(*out));
    pg_arg_text(&a, id);
    PGresult *r = run(p, Q_MSG_GET, &a, "read message", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    if (found)
        message_row(r, 0, out);
    PQclear(r);
    return found ? 0 : 1;
}

int pgs_message_prefix(struct pg_store *p, const char *prefix,
                       char id[ID_LEN + 1], int64_t *count,
                       struct error *err)
{
    struct pg_args a = {0};
    id[0] = '\0';
    *count = 0;
    pg_arg_text(&a, prefix);
    PGresult *r = run(p, Q_MSG_PREFIX, &a, "look up a message id prefix",
                      err);
    if (r == NULL)
        return -1;
    *count = pg_val_int(r, 0, 0);
    if (*count == 1)
        pg_val_id(r, 0, 1, id);
    PQclear(r);
    return 0;
}

int pgs_message_list(struct pg_store *p, const char *state, int64_t limit,
                     int64_t offset, struct store_message **out, size_t *n,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, limit);
    pg_arg_int(&a, offset);
    if (state)
        pg_arg_text(&a, state);
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, state ? Q_MSG_LIST_STATE : Q_MSG_LIST, &a,
                      "list messages", err);
    if (r == NULL)
        return -1;
    int rc = message_rows(r, out, n, err);
    PQclear(r);
    return rc;
}

int pgs_message_each(struct pg_store *p,
                     int (*cb)(const struct store_message *m, void *arg),
                     void *arg, struct error *err)
{
    char after[ID_LEN + 1] = "";
    for (;;) {
        struct store_message *rows;
        size_t n;
        struct pg_args a = {0};
        pg_arg_text(&a, after);
        PGresult *r = run(p, Q_MSG_EACH, &a, "list messages", err);
        if (r == NULL)
            return -1;
        int rc = message_rows(r, &rows, &n, err);
        PQclear(r);
        if (rc < 0)
            return -1;
        int stop = 0;
        for (size_t i = 0; i < n && !stop; i++)
            stop = cb(&rows[i], arg);
        if (n > 0)
            memcpy(after, rows[n - 1].id, sizeof(after));
        store_messages_free(rows, n);
        if (stop || n == 0)
            return stop;
    }
}

/* ---- resend ------------------------------------------------------------------- */

static int hops_requeue(struct pg_store *p, enum pg_stmt which,
                        const char *id, int64_t now, int *requeued,
                        struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_text(&a, id);
    pg_arg_int(&a, now);
    if (run_done(p, which, &a, "resend", &changed, err) < 0)
        return -1;
    *requeued = (int)changed;
    return 0;
}

/* Nothing failed or was sent: route the message anew, unless it is still
 * on its way. -2 with err when refused. */
static int resend_route(struct pg_store *p, const struct store_message *m,
                        const char *const *next, size_t nnext, int64_t now,
                        int *requeued, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, m->id);
    PGresult *r = run(p, Q_HOP_ONWARD, &a, "count hops", err);
    if (r == NULL)
        return -1;
    int64_t onward = pg_val_int(r, 0, 0);
    PQclear(r);
    if (onward > 0)
        return error_set(err, "message %s is still being delivered "
                         "(%lld hop(s) queued or in progress): nothing to "
                         "resend", m->id, (long long)onward) - 1;
    if (nnext == 0)
        return error_set(err, "message %s never left %s, which has no "
                         "outgoing link: add a link with `wharf flow "
                         "import`, then resend it", m->id, m->source) - 1;
    if (hops_queue(p, m->id, next, nnext, now, err) < 0)
        return -1;
    *requeued = (int)nnext;
    return 0;
}

static int resend_tx(struct pg_store *p, const struct store_message *m,
                     const char *who, const char *const *next, size_t nnext,
                     int64_t now, int *requeued, int *njobs,
                     struct error *err)
{
    char text[300];
    struct pg_args a = {0};
    int64_t jobs = 0;
    const char *ids[1] = { m->id };
    pg_arg_text(&a, m->id);
    pg_arg_int(&a, now);
    if (pg_messages_lock(p, ids, 1, err) < 0 ||
        run_done(p, Q_JOB_RESEND, &a, "resend jobs", &jobs, err) < 0 ||
        hops_requeue(p, Q_HOP_RESEND_FAILED, m->id, now, requeued, err) < 0)
        return -1;
    *njobs = (int)jobs;
    if (jobs == 0 && *requeued == 0 &&
        hops_requeue(p, Q_HOP_RESEND_ALL, m->id, now, requeued, err) < 0)
        return -1;
    if (jobs > 0) {
        snprintf(text, sizeof(text), "resend requested by %s: %d hop(s) and "
                 "%d job(s) queued", who, *requeued, (int)jobs);
    } else if (*requeued > 0) {
        snprintf(text, sizeof(text), "resend requested by %s: %d hop(s) "
                 "queued", who, *requeued);
    } else {
        int rc = resend_route(p, m, next, nnext, now, requeued, err);
        if (rc < 0)
            return rc;
        snprintf(text, sizeof(text), "resend requested by %s: routed through "
                 "the current links of %s (%zu hop(s))", who, m->source,
                 nnext);
    }
    if (event_add(p, m->id, 0, now, "info", text, err) < 0)
        return -1;
    return message_state_update(p, m->id, now, err);
}

int pgs_message_resend(struct pg_store *p, const char *id, const char *who,
                       const char *const *next, size_t nnext, int *requeued,
                       int *jobs, struct error *err)
{
    int njobs = 0;
    struct store_message m;
    int found = pgs_message_get(p, id, &m, err);
    if (found != 0) {
        store_message_clear(&m);
        return found;
    }
    int rc = pg_tx_begin(p, err);
    int tx = rc == 0 ? resend_tx(p, &m, who, next, nnext, time_now_ms(),
                                 requeued, &njobs, err) : 0;
    if (rc == 0 && tx < 0)
        rc = pg_tx_fail(p) + (tx == -2 ? 3 : 0);     /* -2: refused */
    else if (rc == 0)
        rc = pg_tx_end(p, err);
    store_message_clear(&m);
    if (jobs)
        *jobs = rc == 0 ? njobs : 0;
    return rc;
}

static int erase_tx(struct pg_store *p, const char *id, const char *who,
                    int64_t now, struct error *err)
{
    struct pg_args a = {0};
    char text[300];
    const char *ids[1] = { id };
    pg_arg_text(&a, id);
    pg_arg_int(&a, now);
    if (pg_messages_lock(p, ids, 1, err) < 0 ||
        run_done(p, Q_HOP_CANCEL, &a, "cancel hops", NULL, err) < 0 ||
        run_done(p, Q_MSG_ERASE, &a, "erase message", NULL, err) < 0)
        return -1;
    snprintf(text, sizeof(text), "payload erased at the request of %s", who);
    return event_add(p, id, 0, now, "warning", text, err);
}

int pgs_message_erase(struct pg_store *p, const char *id, const char *who,
                      struct error *err)
{
    struct store_message m;
    int found = pgs_message_get(p, id, &m, err);
    store_message_clear(&m);
    if (found != 0)
        return found;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    return erase_tx(p, id, who, time_now_ms(), err) < 0 ? pg_tx_fail(p)
                                                        : pg_tx_end(p, err);
}

/* ---- hops ------------------------------------------------------------------------ */

static int lease_tx(struct pg_store *p, const char *owner, int64_t now,
                    int64_t lease_ms, size_t max,
                    const struct store_lane *lane, struct store_hop **out,
                    size_t *n, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, now);
    pg_arg_int(&a, (int64_t)max);
    pg_arg_int(&a, lane ? lane->min_size : 0);
    pg_arg_int(&a, lane ? lane->max_size : INT64_MAX);
    int large = lane && lane->min_size > 0;
    PGresult *r = run(p, large ? Q_HOP_DUE_LARGE : Q_HOP_DUE, &a,
                      "read due hops", err);
    if (r == NULL)
        return -1;
    int rc = hop_rows(r, out, n, err);
    PQclear(r);
    if (rc < 0 || *n == 0)
        return rc;
    int64_t *ids = calloc(*n, sizeof(*ids));
    if (ids == NULL)
        return error_set(err, "out of memory");
    for (size_t i = 0; i < *n; i++)
        ids[i] = (*out)[i].id;
    char *arr = array_text(NULL, ids, *n);
    free(ids);
    if (arr == NULL)
        return error_set(err, "out of memory");
    struct pg_args t = {0};
    pg_arg_text(&t, arr);
    pg_arg_text(&t, owner);
    pg_arg_int(&t, now + lease_ms);
    pg_arg_int(&t, now);
    rc = run_done(p, Q_HOP_TAKE, &t, "lease hops", NULL, err);
    free(arr);
    return rc;
}

int pgs_hop_lease(struct pg_store *p, const char *owner, int64_t now,
                  int64_t lease_ms, size_t max, const struct store_lane *lane,
                  struct store_hop **out, size_t *n, struct error *err)
{
    *out = NULL;
    *n = 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (lease_tx(p, owner, now, lease_ms, max, lane, out, n, err) < 0 ||
        pg_tx_end(p, err) < 0) {
        store_hops_free(*out, *n);
        *out = NULL;
        *n = 0;
        return pg_tx_fail(p);
    }
    return 0;
}

int pgs_leases_renew(struct pg_store *p, const char *owner, int64_t until,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, owner);
    pg_arg_int(&a, until);
    if (run_done(p, Q_HOP_RENEW, &a, "renew hop leases", NULL, err) < 0)
        return -1;
    return run_done(p, Q_JOB_RENEW, &a, "renew job leases", NULL, err);
}

int pgs_leases_release(struct pg_store *p, struct error *err)
{
    /* Other nodes hold leases in this database: a node that starts gives
     * back nothing; a dead node's leases expire and are taken again. */
    (void)p;
    (void)err;
    return 0;
}

int pg_hop_apply(struct pg_store *p, bool waiting,
                 const struct store_outcome *o, int64_t now,
                 struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_int(&a, o->hop_id);
    pg_arg_text(&a, outcome_state(o->result));
    pg_arg_int(&a, o->attempts);
    pg_arg_int(&a, o->result == HOP_RETRY || o->result == HOP_WAIT ? o->next_at
                                                              : now);
    pg_arg_text(&a, o->result == HOP_SENT || o->result == HOP_WAIT ? NULL
                                                              : o->error);
    /* a wait's text is for the history, not the hop's receipt */
    pg_arg_text(&a, o->result == HOP_WAIT ? NULL : o->receipt);
    pg_arg_int(&a, now);
    if (!waiting)
        pg_arg_text(&a, o->owner);
    if (run_done(p, waiting ? Q_HOP_SETTLE : Q_HOP_SET, &a, "update hop",
                 &changed, err) < 0)
        return -1;
    if (changed == 0)
        return 1;
    if (o->kept != NULL && pgs_receipt_add(p, o->kept, err) < 0)
        return -1;
    char text[900];
    outcome_text(o, text, sizeof(text));
    /* a hop still waiting says so once (when it starts), not at each look */
    if ((o->result != HOP_WAIT || o->receipt) &&
        event_add(p, o->message_id, o->hop_id, now, outcome_level(o->result),
                  text, err) < 0)
        return -1;
    if (o->result == HOP_SENT &&
        hops_queue(p, o->message_id, o->next, o->nnext, now, err) < 0)
        return -1;
    return message_state_update(p, o->message_id, now, err) < 0 ? -1 : 0;
}

static int finish_tx(struct pg_store *p, const struct store_outcome *o,
                     size_t n, size_t *skip, struct error *err)
{
    int64_t now = time_now_ms();
    const char **ids = calloc(n + 1, sizeof(*ids));
    if (ids == NULL)
        return error_set(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = o[i].message_id;
    int rc = pg_messages_lock(p, ids, n, err);
    free(ids);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int one = pg_hop_apply(p, false, &o[i], now, err);
        if (one < 0)
            rc = -1;
        *skip += (size_t)(one > 0);
    }
    return rc;
}

int pgs_hop_finish(struct pg_store *p, const struct store_outcome *o,
                   size_t n, size_t *skipped, struct error *err)
{
    size_t skip = 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    if (finish_tx(p, o, n, &skip, err) < 0 ||
        pg_injected_io_error("store.finish", err))
        return pg_tx_fail(p);
    if (pg_tx_end(p, err) < 0)
        return -1;
    if (skipped)
        *skipped = skip;
    return 0;
}

int pgs_message_hops(struct pg_store *p, const char *id,
                     struct store_hop **out, size_t *n, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, Q_HOP_OF_MSG, &a, "read hops", err);
    if (r == NULL)
        return -1;
    int rc = hop_rows(r, out, n, err);
    PQclear(r);
    return rc;
}

int pgs_hop_counts(struct pg_store *p, int64_t *queued, int64_t *processing,
                   int64_t *retrying, int64_t *sent, int64_t *failed,
                   struct error *err)
{
    *queued = *processing = *retrying = *sent = *failed = 0;
    PGresult *r = run(p, Q_HOP_COUNTS, NULL, "count hops", err);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *state = PQgetvalue(r, i, 0);
        int64_t c = pg_val_int(r, i, 1);
        if (strcmp(state, "queued") == 0) *queued = c;
        else if (strcmp(state, "processing") == 0) *processing = c;
        else if (strcmp(state, "retrying") == 0) *retrying = c;
        else if (strcmp(state, "sent") == 0) *sent = c;
        else if (strcmp(state, "failed") == 0) *failed = c;
    }
    PQclear(r);
    return 0;
}

/* ---- events ------------------------------------------------------------------------ */

int pgs_event_add(struct pg_store *p, const char *msgid, int64_t hop_id,
                  const char *level, const char *text, struct error *err)
{
    return event_add(p, msgid, hop_id, time_now_ms(), level, text, err);
}

int pgs_message_events(struct pg_store *p, const char *id,
                       struct store_event **out, size_t *n,
                       struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, id);
    *out = NULL;
    *n = 0;
    PGresult *r = run(p, Q_EVT_OF_MSG, &a, "read events", err);
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    *out = calloc((size_t)rows + 1, sizeof(**out));
    if (*out == NULL) {
        PQclear(r);
        return error_set(err, "out of memory");
    }
    for (int i = 0; i < rows; i++, (*n)++) {
        struct store_event *e = &(*out)[i];
        e->id = pg_val_int(r, i, 0);
        e->at = pg_val_int(r, i, 1);
        e->hop_id = pg_val_int(r, i, 2);
        e->level = pg_val_dup(r, i, 3);
        e->text = pg_val_dup(r, i, 4);
    }
    PQclear(r);
    return 0;
}
