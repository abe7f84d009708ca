/*
 * pg_internal.h - what the PostgreSQL backend files of src/store/ share:
 * pg_conn.c (the connection, statements, parameters, transactions, row
 * values), pg.c (the schema and the statements of store.h) and the pg_*.c
 * files that hold the statements of one subsystem each, beside their
 * sqlite_*.c twins. Nothing outside src/store/ includes this header.
 *
 * Statements are constant strings with $n parameters; pg_run prepares each
 * once per connection under its slot and runs it with PQexecPrepared, so
 * values never become SQL text. Slot ranges, one per file:
 *   0..63     pg.c           64..159   pg_auth.c
 *   160..223  pg_security.c, pg_posture.c, pg_console.c
 *   224..287  pg_jobs.c      288..351  pg_retention.c, pg_sealed.c
 *   352..415  pg_audit.c     416..479  pg_partners.c, pg_secrets.c, pg_net.c
 *   480..487  pg_nodes.c     488..495  pg_backup.c
 *   496..511  pg_payload.c
 *
 * Types: times are BIGINT milliseconds, blobs BYTEA (sent in binary with
 * pg_arg_blob, read back with pg_val_blob), text ids and keys COLLATE "C".
 */
#ifndef WHARF_PG_INTERNAL_H
#define WHARF_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/pg_store.h"
#include "util/error.h"
#include "util/id.h"

#define PG_SLOTS 512

struct pg_store {
    PGconn *conn;
    char *name;                 /* postgresql://host:port/db, no password */
    bool prepared[PG_SLOTS];
    bool in_tx;
    unsigned leads;             /* session advisory locks held (pg_nodes.c);
                                   gone with the connection */
};

/* A new connection to url, with the password of store_password_set when
 * there is one (pg_conn.c); check PQstatus. */
PGconn *pg_connect(const char *url);

/* Send the server's notices on c to Wharf's log (pg_conn.c). */
void pg_notices_to_log(PGconn *c);

/* ---- parameters of one statement ---------------------------------------- */

#define PG_MAX_ARGS 16

/* Text (format 0) or bytes (format 1); numbers are written into num[].
 * Strings are borrowed until the statement ran. Do not copy once filled. */
struct pg_args {
    int n;
    const char *v[PG_MAX_ARGS];
    int len[PG_MAX_ARGS];
    int fmt[PG_MAX_ARGS];
    char num[PG_MAX_ARGS][24];
    int binary_rows;            /* 1: result columns in binary (a BYTEA
                                   column's bytes as they are) */
};

void pg_arg_text(struct pg_args *a, const char *s);     /* NULL: SQL NULL */
void pg_arg_int(struct pg_args *a, int64_t x);
void pg_arg_blob(struct pg_args *a, const void *b, size_t len);

/* ---- running statements ---------------------------------------------------- */

/* Run sql (a constant string) prepared under slot, with a (may be NULL).
 * The result (rows or none; the caller PQclear()s it) or NULL with err
 * ("database NAME: what: server message"). */
PGresult *pg_run(struct pg_store *p, int slot, const char *sql,
                 const struct pg_args *a, const char *what,
                 struct error *err);
/* pg_run for a statement whose rows do not matter; *changed (may be NULL)
 * gets the count of rows it inserted, updated or deleted. 0 or -1. */
int pg_run_done(struct pg_store *p, int slot, const char *sql,
                const struct pg_args *a, const char *what, int64_t *changed,
                struct error *err);
/* A constant command (BEGIN, COMMIT, a migration) through the simple
 * protocol. 0 or -1. */
int pg_exec(struct pg_store *p, const char *cmd, struct error *err);
int pg_db_error(struct pg_store *p, struct error *err, const char *what,
                const PGresult *r);

/* BEGIN (read committed); pg_tx_end commits, or rolls back when the commit
 * fails (0 or -1); pg_tx_fail rolls back and returns -1. */
int pg_tx_begin(struct pg_store *p, struct error *err);
int pg_tx_end(struct pg_store *p, struct error *err);
int pg_tx_fail(struct pg_store *p);

/* ---- values of result rows ------------------------------------------------ */

char *pg_val_dup(const PGresult *r, int row, int col);  /* NULL for NULL */
int64_t pg_val_int(const PGresult *r, int row, int col); /* 0 for NULL */
void pg_val_id(const PGresult *r, int row, int col, char out[ID_LEN + 1]);
/* A BYTEA column: malloc'ed bytes (caller frees) and *len; NULL for NULL
 * (or out of memory, *len 0). */
unsigned char *pg_val_blob(const PGresult *r, int row, int col, size_t *len);

/* ---- shared by pg.c and pg_jobs.c ----------------------------------------- */

/* Inside a transaction: lock the rows of the messages named (sorted, so
 * two transactions cannot deadlock) until it ends. A transaction that
 * changes hops does this first, so the message state it computes sees
 * every hop (pg.c's file comment). 0 or -1. */
int pg_messages_lock(struct pg_store *p, const char *const *ids, size_t n,
                     struct error *err);
/* Inside a transaction, the messages locked: outcome o to its hop (leased
 * by o->owner; or, waiting, a hop in state retrying: an asynchronous MDN),
 * then its event, next hops and message state. 0 applied, 1 when the hop
 * was not in that state (nothing written), -1 with err. */
int pg_hop_apply(struct pg_store *p, bool waiting,
                 const struct store_outcome *o, int64_t now,
                 struct error *err);

/* Inside a transaction: add job j as pgs_job_add does (pg_jobs.c; the
 * release of a message adds its owed MDN with it), locking j's message
 * row first. 0 or -1. */
struct store_job_new;
int pgs_job_add_tx(struct pg_store *p, const struct store_job_new *j,
                   int64_t now, struct error *err);

/* Insert certificate c, or update its use_from and (when c has one) its
 * sealed key (pg_partners.c; pg.c's flow import writes them with it). */
int pg_cert_write(struct pg_store *p, const struct store_cert *c,
                  struct error *err);

/* Test hook (util/fault.h), as in sqlite.c: the commit at point fails as a
 * full disk or an I/O error would. 1 then, with err. */
int pg_injected_io_error(const char *point, struct error *err);
/* Test hook (util/fault.h): a commit that succeeded is reported failed,
 * as when the connection is lost before COMMIT's answer arrives (the
 * caller cannot tell whether it happened). 1 then, with err set. */
int pg_injected_lost_commit(const char *point, struct error *err);

#endif
