/*
 * payload_store.h - payloads kept in the database instead of files
 * (wharf.conf `payload_dir = database`, R21): what lets the nodes of a
 * cluster share nothing but their PostgreSQL database.
 *
 * A payload is rows (path, seq, bytes) of table payload_segments: seq 0
 * holds its 92-byte header, seq 1.. its sealed segments in order, so the
 * rows' bytes put end to end are the bytes a payload file would hold, and
 * the vault's format and checks (vault.h) apply unchanged. path is the
 * message's payload_path ("payloads/YYYYMMDD/<id>.wpay"). The store never
 * sees plaintext or a key: the bytes are sealed before they get here.
 *
 * PostgreSQL only (pg_payload.c): on a SQLite store every function fails
 * with a clear error (one node keeps files; wharf.conf refuses the
 * setting there). Implemented in sqlite_payload.c, which hands each call
 * over to pg_payload.c.
 *
 * Transactions: a writer's rows commit together (store_payload_begin ...
 * store_payload_commit, synchronous like every commit), so a payload is in
 * the database whole or not at all; a reader reads its first rows with
 * their count in one statement (store_payload_head: a small payload
 * whole), the rest in one REPEATABLE READ, READ ONLY transaction
 * (store_payload_read_begin ... _read_end), so a purge or erasure
 * meanwhile cannot cut it short unnoticed. One connection does one of
 * these at a time (core/payloads.c keeps a pool for them).
 */
#ifndef WHARF_PAYLOAD_STORE_H
#define WHARF_PAYLOAD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;

/* Open and end the transaction of one writer; rollback is for failures
 * (the rows written are gone). 0 or -1.
 *
 * synced 1: the commit returns once the rows are durable (and on the
 * synchronous replicas), as every other commit. synced 0: the commit does
 * not wait for that (synchronous_commit off for this transaction), because
 * the caller makes a synchronous commit afterwards that names the payload
 * (the intake's messages): WAL is one ordered stream, so that later commit
 * is durable only once these rows are, on the primary and on the
 * replicas, and a crash before it loses both (rows no message names, which
 * the purge sweeps). It saves one WAL flush per payload. */
int store_payload_begin(struct store *s, int synced, struct error *err);
int store_payload_commit(struct store *s, struct error *err);
void store_payload_rollback(struct store *s);

/* Inside the writer's transaction: row seq of path (a new row; a row that
 * exists is an error). */
int store_payload_put(struct store *s, const char *path, int64_t seq,
                      const void *b, size_t n, struct error *err);

/* Open and end a reader's snapshot. */
int store_payload_read_begin(struct store *s, struct error *err);
void store_payload_read_end(struct store *s);

/* Row seq of path: *b malloc'ed (caller frees), *n its length. 0 found,
 * 1 no such row (*b NULL), -1 with err. */
int store_payload_get(struct store *s, const char *path, int64_t seq,
                      unsigned char **b, size_t *n, struct error *err);

/* The first rows of path (seq 0 .. max-1, fewer when it has fewer) and
 * how many rows it has in all, in one statement (one snapshot), so a
 * payload of at most max rows is read whole in one round trip. rows[i]
 * malloc'ed (the caller frees each), lens[i] their lengths, *got how
 * many. 0, 1 when path has no row, -1 with err. */
int store_payload_head(struct store *s, const char *path, int max,
                       unsigned char **rows, size_t *lens, int *got,
                       int64_t *total, struct error *err);

/* Total bytes of path's rows. 0, 1 when it has none, -1. */
int store_payload_size(struct store *s, const char *path, uint64_t *size,
                       struct error *err);

/* Replace the bytes of row seq of path (its header, by rotation or
 * erasure), its own transaction. 0, 1 when there is no such row, -1. */
int store_payload_replace(struct store *s, const char *path, int64_t seq,
                          const void *b, size_t n, struct error *err);

/* Delete every row of path (a missing payload is not an error). */
int store_payload_delete(struct store *s, const char *path,
                         struct error *err);

/* Delete the rows of payloads written before before_ms that no message
 * names (an intake that failed or a node killed between committing a
 * payload and its message); *deleted gets how many payloads. */
int store_payload_sweep(struct store *s, int64_t before_ms, int64_t *deleted,
                        struct error *err);

#endif
