/*
 * pg_export.h - the logical export of a PostgreSQL store into a SQLite
 * database file and its way back (pg_export.c): how `wharf backup` takes
 * the snapshot of a PostgreSQL store and how `wharf restore --store URL`
 * loads a backup into an empty PostgreSQL database (R20 on R21's
 * backend). Included only by sqlite_backup.c, which hands backup_store.h's
 * calls over when the store is a postgresql:// URL.
 */
#ifndef WHARF_PG_EXPORT_H
#define WHARF_PG_EXPORT_H

#include "util/error.h"

/* Copy every Wharf table of the PostgreSQL store at url, in one
 * REPEATABLE READ, READ ONLY transaction (one snapshot), into a new SQLite
 * database at path that has the SQLite store's current schema (made here
 * with its migrations; path must not exist; mode 0600; rollback-journal
 * mode, not synced). On failure path is removed. 0, or -1 with err. */
int pgx_export(const char *url, const char *path, struct error *err);

/* 0 when the PostgreSQL database at url holds no Wharf rows (no schema,
 * or a schema whose tables are empty); -1 with err otherwise (which table
 * holds rows, or why it cannot be read). Migrates an empty database. */
int pgx_target_empty(const char *url, struct error *err);

/* Copy every row of the SQLite database at path into the PostgreSQL
 * database at url (migrated here), which must hold no Wharf rows: one
 * transaction (nothing is left on failure), then every BIGSERIAL sequence
 * is set past the rows copied. 0, or -1 with err. */
int pgx_import(const char *path, const char *url, struct error *err);

#endif
