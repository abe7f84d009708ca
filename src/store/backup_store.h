/*
 * backup_store.h - what backups and restores (R20, core/backup*.c) need
 * from the database: a consistent copy of a live database, the payload
 * files such a copy references, a check of a database file before a
 * restore puts it in place, the load of a restored database into an
 * empty PostgreSQL store, and the record of backup runs. Implemented in
 * sqlite_backup.c (a PostgreSQL store's snapshot and load: pg_export.c).
 *
 * The record: a table (migration 8)
 *   backups(id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,
 *           finished_at INTEGER NOT NULL, ok INTEGER NOT NULL,
 *           location TEXT, bytes INTEGER, kind TEXT NOT NULL,
 *           backup_id TEXT, messages INTEGER, payloads INTEGER,
 *           missing INTEGER, sha256 TEXT, error TEXT)
 * one row per `wharf backup` run, times in ms since the epoch; ok 1 when
 * the backup file was completely written and synced (location: its
 * absolute path; sha256: of the whole file, as sha256sum prints it), 0
 * with error when the run failed. kind: "master-key" or "public-key".
 * The posture report (`wharf doctor`) reads the newest ok row.
 */
#ifndef WHARF_BACKUP_STORE_H
#define WHARF_BACKUP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;

struct store_backup_counts {
    int64_t messages;           /* messages in the snapshot */
    int64_t payloads;           /* of them, with a payload file */
    int schema_version;         /* of the SQLite copy */
    int64_t audit_seq;          /* the snapshot's newest audit entry (0: none) */
    char audit_hash[65];        /* its hash */
};

/* Copy the database at db_path into a new file copy_path as one
 * consistent snapshot: a read transaction on a connection of its own,
 * then SQLite's online backup API in one step inside it (in WAL mode the
 * writers of a running serve go on meanwhile). A postgresql:// db_path is
 * exported row by row from one REPEATABLE READ snapshot into a SQLite
 * file of the current SQLite schema (pg_export.c), so the copy is a
 * SQLite database either way. c is counted from the copy. The copy is in
 * rollback-journal mode, mode 0600, not synced (it is read back at once).
 * copy_path must not exist. */
int store_backup_copy(const char *db_path, const char *copy_path,
                      struct store_backup_counts *c, struct error *err);

/* For each message of the database (copy) at path that references a
 * payload file, in id order: fn(ctx, message id, payload path relative to
 * the data dir, err). fn returns 0 to go on, -1 to stop (its err kept).
 * One row in memory at a time. Opens path read-only. */
typedef int (*store_backup_payload_fn)(void *ctx, const char *msgid,
                                       const char *path, struct error *err);
int store_backup_payloads(const char *path, store_backup_payload_fn fn,
                          void *ctx, struct error *err);

/* SQLite's quick_check of the database file at path (opened read-only):
 * 0 when it says ok, -1 with its first complaint. */
int store_backup_check(const char *path, struct error *err);

/* Restore into PostgreSQL (`wharf restore --store URL`): 0 when the
 * database at url holds no Wharf rows (-1 with err naming a table that
 * does), and the load of the restored SQLite database at path into it (one
 * transaction; the sequences set past the rows). */
int store_backup_target_empty(const char *url, struct error *err);
int store_backup_load(const char *path, const char *url, struct error *err);

/* After a restore: end every session the snapshot held (a session
 * revoked after the backup must not come back; people sign in again).
 * API tokens are kept (programs would stop): docs/operations.md says to
 * review them. *n: sessions ended. */
int store_backup_restored(struct store *s, int64_t now, int64_t *n,
                          struct error *err);

/* One backup run for the record. Strings may be NULL. */
struct store_backup_row {
    int64_t started_at, finished_at;
    int ok;
    const char *location;
    int64_t bytes;
    const char *kind;
    const char *backup_id;
    int64_t messages, payloads, missing;
    const char *sha256;
    const char *error;
};
int store_backup_record(struct store *s, const struct store_backup_row *r,
                        struct error *err);

/* The newest runs, newest first: *out malloc'ed (strings owned by it);
 * free with store_backup_items_free. */
struct store_backup_item {
    int64_t id, started_at, finished_at;
    int ok;
    char *location, *kind, *backup_id, *sha256, *error;
    int64_t bytes, messages, payloads, missing;
};
int store_backup_list(struct store *s, size_t limit,
                      struct store_backup_item **out, size_t *n,
                      struct error *err);
void store_backup_items_free(struct store_backup_item *items, size_t n);

#endif
