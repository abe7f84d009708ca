/*
 * payloads.h - a message's payload where this node keeps it (M2, R21):
 * a file under payload_dir (wharf_path of the message's payload_path), or,
 * when wharf.conf says `payload_dir = database` (PostgreSQL stores only),
 * rows of the store's payload_segments table (store/payload_store.h), so
 * the nodes of a cluster share nothing but their database.
 *
 * Either way the bytes are the vault's payload format (vault.h): the
 * database holds the same sealed header and segments a file would, so
 * every check, rotation and crypto-shredding works alike. Every caller
 * that touches a payload goes through here, never through the path.
 *
 * The database's rows are read and written on connections of a small pool
 * (owned by struct wharf, payload_pool) that a writer or reader holds for
 * its whole life: a writer's rows commit together in payload_finish, a
 * reader reads a payload of up to three rows (128 KiB) in one statement
 * and a larger one's other rows in one snapshot. Thread-safe.
 */
#ifndef WHARF_PAYLOADS_H
#define WHARF_PAYLOADS_H

#include <stdint.h>

#include "util/error.h"
#include "vault/vault.h"

struct store;
struct wharf;

/* A new payload rel ("payloads/YYYYMMDD/<id>.wpay") of message msgid;
 * payload_write, then payload_finish (a file with fd_out: the caller
 * syncs it; rows: committed, fd_out gets -1) or payload_abort. Rows are
 * committed without waiting for their WAL flush: only a synchronous commit
 * that follows (the intake's, of the message) makes them durable, so this
 * is for the intake (store_payload_begin's synced 0). */
struct payload_writer *wharf_payload_create(struct wharf *w, const char *rel,
                                            const char *msgid,
                                            struct error *err);

/* Open payload rel of message msgid for reading (payload_read,
 * payload_close). NULL with err. */
struct payload_reader *wharf_payload_open(struct wharf *w, const char *rel,
                                          const char *msgid,
                                          struct error *err);

/* payload_destroy (crypto-shredding: the header zeroed, then removed) and
 * payload_rewrap (rotation) wherever rel is. A missing payload is not an
 * error for destroy; rewrap returns as payload_rewrap does (1 rewrapped,
 * 0 already current, -1), or 2 when there is no such payload (erased or
 * purged: nothing to re-wrap). */
int wharf_payload_destroy(struct wharf *w, const char *rel, struct error *err);
int wharf_payload_rewrap(struct wharf *w, const char *rel, const char *msgid,
                         struct error *err);

/* The sealed bytes of payload rel as they are kept, for backup (reading,
 * *size set; 1 when there is no such payload) and restore (writing: the
 * io's write, commit, release). The io's ctx is the caller's until its
 * release. A writer's commit is synced. Files: a reader only. 0, 1
 * (reading, missing), -1 with err. */
int wharf_payload_raw(struct wharf *w, const char *rel, int writing,
                      struct payload_io *io, uint64_t *size,
                      struct error *err);

/* Remove the payloads that no message names, written before before_ms:
 * database rows, or files of this keystore's (payload_sweep.c says which
 * and why). st: the caller's connection (the purge's). *n how many; 0 or
 * -1 with err (files: what could be removed was). */
int wharf_payloads_sweep(struct wharf *w, struct store *st,
                         int64_t before_ms, int64_t *n, struct error *err);

/* Close the pool's connections (wharf_close). */
void wharf_payloads_close(struct wharf *w);

#endif
