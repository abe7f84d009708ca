/*
 * vault.h - master keys and encrypted payload files (R15, M2).
 *
 * The keystore file (DATA/keystore, mode 0600) holds one or more 256-bit
 * master keys, each with a 16-hex-digit id; exactly one is active. The vault
 * refuses a keystore readable or writable by group or others.
 *
 * A payload file is a header followed by a stream of AES-256-GCM segments:
 *   - one random 256-bit data key per file, wrapped (AES-256-GCM) by the
 *     active master key; the header names the master key id;
 *   - the plaintext is cut into 64 KiB segments; segment i is sealed with
 *     nonce = 7-byte random file prefix || i (32-bit big endian) || last flag
 *     and with the message id and the header bound in as associated data;
 *   - so flipping a byte, truncating, appending, reordering or swapping
 *     segments, moving a payload to another message, or a wrong master key
 *     are all detected; a segment is returned only after its tag verified.
 * Reading and writing use constant memory whatever the payload size.
 * Key rotation adds a master key, re-wraps each file's data key in place
 * (the header only, fsynced; payload bytes are never rewritten) and
 * re-seals every sealed value, then retires the old key: the crash-safe
 * protocol is described at the top of keystore.c. Every new place that keeps
 * a vault_seal blob must be added to the rotation (core/rotate.c).
 *
 * Private key material never leaves this module: callers get streams,
 * sealed blobs and signatures. The keystore also holds the Ed25519 audit
 * signing key (created by vault_create).
 */
#ifndef WHARF_VAULT_H
#define WHARF_VAULT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

#define VAULT_KEY_ID_LEN 16          /* hex digits */
#define PAYLOAD_SEGMENT (64 * 1024)  /* plaintext bytes per segment */

struct vault;

/* Create a keystore file at path with one new active master key (mode
 * 0600, O_EXCL: fails if the file exists). */
int vault_create(const char *path, struct error *err);

/* Load the keystore at path. Refuses (clear message naming the path and
 * the mode) a file accessible by group or others, and (at once, no
 * waiting) a keystore that `wharf key rotate` is rotating. Holds a shared
 * lock on path.lock until vault_close. Caller owns the result; free with
 * vault_close (keys are wiped, the lock released). */
struct vault *vault_open(const char *path, struct error *err);
void vault_close(struct vault *v);

/* Write v's keys back to path (held exclusively: vault_lock_exclusive),
 * sealed by the KMS (sealed: 1, vault/kms.h) or as text (0): `wharf key
 * kms-seal` and `kms-unseal`. Atomic and durable as every keystore
 * write. 0, or -1 with err. */
int vault_rewrite(const struct vault *v, const char *path, int sealed,
                  struct error *err);

/* 1 when the keystore at path is sealed by a KMS, 0 when it is text, -1
 * when it cannot be read. */
int vault_keystore_sealed(const char *path);

/* Turn v's shared keystore lock into an exclusive one, without waiting:
 * fails while any other process (or another vault_open of this process)
 * has the keystore open. For rotation: while it holds the lock, nobody else
 * can seal under a key it is about to retire. */
int vault_lock_exclusive(struct vault *v, struct error *err);

/* Id of the active master key (owned by v). */
const char *vault_active_id(const struct vault *v);

/* How many master keys v holds (the active one and any retired ones: more
 * than one means a rotation has not finished), and the id of key i (owned
 * by v; NULL when i is out of range). */
size_t vault_key_count(const struct vault *v);
const char *vault_key_id(const struct vault *v, size_t i);

/* Add a new master key, make it active, keep the old ones, and rewrite the
 * keystore atomically (temp + fsync + rename + dir fsync). */
int vault_rotate(struct vault *v, const char *path, struct error *err);

/* Write every key of v to a new keystore file at path, durably (0600
 * temp file, fsync, link into place, fsync of the directory); refuses an
 * existing path. For `wharf restore` (a local vault only). */
int vault_save_new(const struct vault *v, const char *path,
                   struct error *err);

/* Drop every key but the active one and rewrite the keystore. Call only
 * after every payload was re-wrapped. */
int vault_retire_old(struct vault *v, const char *path, struct error *err);

/* ---- payload files ---------------------------------------------------- */

struct payload_info {
    uint64_t size;          /* plaintext bytes */
    char sha256[65];        /* hex SHA-256 of the plaintext */
};

struct payload_writer;

/* Create path (O_EXCL, mode 0600) for message msgid. Caller owns the
 * writer until payload_finish or payload_abort. */
struct payload_writer *payload_create(struct vault *v, const char *path,
                                      const char *msgid, struct error *err);

int payload_write(struct payload_writer *w, const void *buf, size_t n,
                  struct error *err);

/* Seal the last segment and fill info. If fd_out is non-NULL the file is
 * NOT synced: its open fd is handed to the caller, who must make it durable
 * (fsx_sync_fds, for a batch) and close it. If fd_out is NULL the file is
 * fsynced and closed here. Frees w in every case; on failure the file is
 * removed. */
int payload_finish(struct payload_writer *w, struct payload_info *info,
                   int *fd_out, struct error *err);

/* Close and unlink the partial file; frees w. NULL is fine. */
void payload_abort(struct payload_writer *w);

struct payload_reader;

/* Open path written for msgid. Fails clearly (naming msgid) on a bad
 * header, an unknown master key id or a data key that does not unwrap.
 * Caller owns; free with payload_close. */
struct payload_reader *payload_open(struct vault *v, const char *path,
                                    const char *msgid, struct error *err);

/* Up to n plaintext bytes into buf. Returns the count, 0 at the verified
 * end, -1 on error (err names msgid and the segment). After an error every
 * later call fails too. */
ssize_t payload_read(struct payload_reader *r, void *buf, size_t n,
                     struct error *err);

void payload_close(struct payload_reader *r);

/* Erase a payload for good (R9): overwrite the header, which holds the only
 * copy of the wrapped data key in the data dir, with zeros and fsync it
 * (crypto-shredding: any copy of the ciphertext left on the disk is now
 * unreadable; a `wharf backup` taken earlier holds the whole file, header
 * included: docs/operations.md, Backups), then unlink the file and fsync
 * its folder. A missing file is
 * not an error. */
int payload_destroy(const char *path, struct error *err);

/* Check that hdr[0..n), the start of a payload file written for msgid,
 * is a payload header whose data key unwraps with a master key of v (the
 * key is wiped at once; no segment is read). For `wharf backup verify`
 * and `wharf restore`: the keystore they use can read this payload. */
#define VAULT_PAYLOAD_HEADER_LEN 92
/* Bytes of every sealed segment but the final one (plaintext and tag). */
#define VAULT_PAYLOAD_SEALED_SEGMENT (PAYLOAD_SEGMENT + 16)
int payload_header_check(struct vault *v, const unsigned char *hdr, size_t n,
                         const char *msgid, struct error *err);

/* Re-wrap the data key of the file at path with the active master key,
 * rewriting the header in place and fsyncing. Returns 1 when rewrapped,
 * 0 when it already used the active key, -1 on error. */
int payload_rewrap(struct vault *v, const char *path, const char *msgid,
                   struct error *err);

/* ---- payloads kept elsewhere than in a file ------------------------------ */

/* The bytes of a payload kept by someone else (core/payloads.c: rows of a
 * PostgreSQL store, wharf.conf payload_dir = database): the same bytes a
 * payload file holds, header then segments, so the format and its checks
 * are the same. A writer calls write (in order), then commit once (0: the
 * bytes are durable), then release; a reader calls read (in order from the
 * first byte; 0 at the end), then release. release(ctx, discard) is called
 * exactly once (discard: the payload was not finished, remove what was
 * written). The io's error messages name no secret. */
struct payload_io {
    int (*write)(void *ctx, const void *p, size_t n, struct error *err);
    ssize_t (*read)(void *ctx, void *p, size_t n, struct error *err);
    int (*commit)(void *ctx, struct error *err);
    void (*release)(void *ctx, int discard);
    void *ctx;
};

/* payload_create and payload_open on io instead of a file. io is copied;
 * its ctx belongs to the writer or reader from the call on (released even
 * when the call fails). payload_finish commits through io (fd_out, when
 * given, gets -1). */
struct payload_writer *payload_create_io(struct vault *v,
                                         const struct payload_io *io,
                                         const char *msgid, struct error *err);
struct payload_reader *payload_open_io(struct vault *v,
                                       const struct payload_io *io,
                                       const char *msgid, struct error *err);

/* Re-wrap the data key of a payload header hdr (n bytes, written for
 * msgid) in place with the active master key (a local vault only, as
 * payload_rewrap). Returns 1 when rewrapped, 0 when it already used the
 * active key, -1 on error. */
int payload_header_rewrap(struct vault *v, unsigned char *hdr, size_t n,
                          const char *msgid, struct error *err);

/* ---- small sealed secrets (TOTP seeds, client secrets, OAuth tokens) ---- */

struct secret;

/* Seal plain under the active master key (AES-256-GCM, fresh nonce) with
 * `context` (e.g. "totp:alice") bound as associated data, so a sealed value
 * cannot be moved to another use. *out is a malloc'ed opaque blob that
 * names the master key id (caller frees; it is not secret). */
int vault_seal(struct vault *v, const char *context, const struct secret *plain,
               unsigned char **out, size_t *outlen, struct error *err);

/* Open a blob made by vault_seal with the same context. Caller owns the
 * result (secret_free). Fails clearly on a wrong context, an unknown or
 * wrong master key, or a modified blob. */
struct secret *vault_unseal(struct vault *v, const char *context,
                            const unsigned char *blob, size_t len,
                            struct error *err);

/* Re-seal a blob under the active master key (rotation). *out as above.
 * Returns 1 when resealed, 0 when already current, -1 on error. */
int vault_reseal(struct vault *v, const char *context,
                 const unsigned char *blob, size_t len, unsigned char **out,
                 size_t *outlen, struct error *err);

/* ---- integrity failures (R19) ----------------------------------------- */

/* A payload or sealed value that fails its integrity check in this
 * process (a GCM tag, a header, a data key or sealed value that does not
 * open; not an I/O error, not a lost key process) is reported to the hook
 * once per failure: what is "payload" or "sealed", id the message id or
 * the seal context, problem the error text (names and ids, never a
 * secret). Set once before threads start (security/alerts.c turns it into
 * an alert); NULL: nobody is told. */
typedef void (*vault_integrity_fn)(const char *what, const char *id,
                                   const char *problem);
void vault_set_integrity_hook(vault_integrity_fn fn);

/* ---- the audit signing key (Ed25519, R15, R18) ------------------------- */

#define VAULT_SIG_LEN 64

/* Sign msg with the keystore's active audit key; key_id (16 hex + NUL)
 * names it. The private key never leaves the vault. */
int vault_audit_sign(struct vault *v, const void *msg, size_t n,
                     unsigned char sig[VAULT_SIG_LEN],
                     char key_id[VAULT_KEY_ID_LEN + 1], struct error *err);

/* 0 when sig is a valid signature of msg by the audit key key_id (active or
 * retired), -1 with err otherwise; err->code is EPIPE when no answer came
 * (under serve: the key process is gone), which says nothing about sig. */
int vault_audit_verify(struct vault *v, const char *key_id, const void *msg,
                       size_t n, const unsigned char sig[VAULT_SIG_LEN],
                       struct error *err);

#endif
