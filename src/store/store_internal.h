/*
 * store_internal.h - what the SQLite backend files of src/store/ share:
 * sqlite.c (schema, messages, hops, flow) and the files that add the
 * statements of one subsystem each (sqlite_audit.c, sqlite_auth.c, ...).
 * Nothing outside src/store/ may include this header: the rest of Wharf
 * sees only store.h and the per-subsystem store headers.
 *
 * The schema (every migration) lives in sqlite.c only, so the order of
 * migrations is in one place.
 */
#ifndef WHARF_STORE_INTERNAL_H
#define WHARF_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store/store.h"

/* Statement cache slots for store_stmt_ext, one range per file:
 *   0..31    sqlite_audit.c
 *   32..95   sqlite_auth.c
 *   96..127  sqlite_net.c
 *   128..143 sqlite_secrets.c
 *   144..175 sqlite_partners.c
 *   176..191 sqlite_sealed.c
 *   192..199 sqlite_console.c
 *   200..247 sqlite_security.c
 *   248..271 sqlite_retention.c
 *   272..303 sqlite_jobs.c
 *   304..311 sqlite_nodes.c */
#define STORE_EXT_SLOTS 312

/* The cached prepared statement for slot, reset and unbound. sql must be
 * a constant string (bound parameters only; make lint checks). NULL with
 * err set on failure. The statement is owned by the store. */
sqlite3_stmt *store_stmt_ext(struct store *s, int slot, const char *sql,
                             struct error *err);

/* A statement run once in a while, not worth a cache slot: prepared from
 * a constant string (bound parameters only), owned by the caller, who
 * finalizes it. NULL with err set (what names the purpose). */
sqlite3_stmt *store_stmt_once(struct store *s, const char *sql,
                              const char *what, struct error *err);

/* The raw handle (for sqlite3_changes / last_insert_rowid); NULL on a
 * PostgreSQL store. */
sqlite3 *store_db(struct store *s);

/* The PostgreSQL connection of a store opened with a postgresql:// URL
 * (pg_internal.h), NULL on SQLite. Each entry point of a sqlite_*.c file
 * that has a pg_*.c twin hands the call over when it is not NULL. */
struct pg_store *store_pg(struct store *s);

int store_db_error(struct store *s, struct error *err, const char *what);
int store_bind_text(sqlite3_stmt *st, int i, const char *v);
/* Step a bound statement that returns no rows (or ignores them). */
int store_step_done(struct store *s, sqlite3_stmt *st, struct error *err,
                    const char *what);
/* store_step_done as a transaction of its own (store_tx_begin ...
 * store_tx_commit: group commit), for a write that would otherwise
 * commit alone and hold the write lock across its fsync. */
int store_step_tx(struct store *s, sqlite3_stmt *st, struct error *err,
                  const char *what);
/* store_job_add inside the caller's transaction (SQLite; sqlite_jobs.c):
 * the release of a message adds its owed MDN with it. now: its time. */
struct store_job_new;
int store_job_add_tx(struct store *s, const struct store_job_new *j,
                     int64_t now, struct error *err);

/* store_receipt_add inside the caller's transaction (SQLite). */
struct store_receipt;
int store_receipt_add_tx(struct store *s, const struct store_receipt *r,
                         struct error *err);

int store_tx_begin(struct store *s, struct error *err);
int store_tx_commit(struct store *s, struct error *err);
/* Roll back; always returns -1. */
int store_tx_fail(struct store *s);
/* strdup of a text column, NULL for NULL. Caller frees. */
char *store_col_dup(sqlite3_stmt *st, int i);
int store_exec(struct store *s, const char *sql, struct error *err);

/* Inside a transaction: apply outcome o to its hop if that hop waits
 * (state retrying, e.g. for an asynchronous MDN): hop row, event, next
 * hops, message state, as store_hop_finish does for a leased hop. 1 when
 * applied, 0 when the hop does not wait (any more), -1 with err.
 * (sqlite.c) */
int store_hop_settle(struct store *s, const struct store_outcome *o,
                     int64_t now, struct error *err);

/* Inside a transaction (sqlite_jobs.c): give every job lease back
 * (serve start); queue the failed jobs of message msgid again (resend). */
int store_jobs_release(struct store *s, struct error *err);
/* The job half of store_leases_renew (sqlite_jobs.c). */
int store_jobs_renew(struct store *s, const char *owner, int64_t until,
                     struct error *err);
int store_jobs_resend(struct store *s, const char *msgid, int64_t now,
                      int *requeued, struct error *err);

#endif
