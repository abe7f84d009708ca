/*
 * vault_internal.h - what keystore.c shares with payload.c (and the unit
 * test): the in-memory shape of a loaded keystore and the payload header
 * layout. Nothing outside src/vault/ and tests/unit/test_vault.c may
 * include this file: master key bytes must not leave the vault module.
 */
#ifndef WHARF_VAULT_INTERNAL_H
#define WHARF_VAULT_INTERNAL_H

#include <stddef.h>

#include "vault/vault.h"

#define VAULT_KEY_LEN 32        /* AES-256 master key bytes */
#define VAULT_MAX_KEYS 64       /* keys one keystore may hold */
#define VAULT_AUDIT_SEED_LEN 32 /* Ed25519 private key (seed) bytes */
#define VAULT_MAX_AUDIT_KEYS 16 /* audit signing keys one keystore may hold */

/* Payload header layout (see payload.c for the full format). */
#define PAYLOAD_MAGIC "WHPAYLD1"
#define PAYLOAD_VERSION 1
#define PAYLOAD_OFF_VERSION 8
#define PAYLOAD_OFF_KEYID 9
#define PAYLOAD_OFF_PREFIX 25
#define PAYLOAD_OFF_WNONCE 32
#define PAYLOAD_OFF_WKEY 44
#define PAYLOAD_OFF_WTAG 76
#define PAYLOAD_HEADER_LEN 92
_Static_assert(PAYLOAD_HEADER_LEN == VAULT_PAYLOAD_HEADER_LEN,
               "vault.h names the payload header length");
#define PAYLOAD_PREFIX_LEN 7
#define PAYLOAD_NONCE_LEN 12
#define PAYLOAD_TAG_LEN 16

/* Tell the integrity hook (vault.h) about the failure in err, unless it
 * is an I/O error or a lost key process (err->code set). err may be NULL. */
void vault_integrity_check(const struct error *err, const char *what,
                           const char *id);

struct vault_key {
    char id[VAULT_KEY_ID_LEN + 1];      /* lowercase hex, NUL-terminated */
    unsigned char key[VAULT_KEY_LEN];
};

/* An Ed25519 audit signing key: its id and private seed (the public key
 * is derived from the seed when needed). */
struct vault_audit_key {
    char id[VAULT_KEY_ID_LEN + 1];      /* lowercase hex, NUL-terminated */
    unsigned char seed[VAULT_AUDIT_SEED_LEN];
};

/* One allocation (calloc in vault_open), mlock()ed when allowed, wiped
 * with OPENSSL_cleanse and freed by vault_close (which also closes lockfd,
 * releasing the keystore lock, see keystore.c). keys[active] is the
 * active key; keys[0..n) are all loaded keys. audit[0..naudit) are the
 * audit signing keys; audit[audit_active] signs, or audit_active is
 * SIZE_MAX when the keystore has no active audit key. */
struct vault {
    int remote;                         /* 1: the keys are in the key
                                           process (keyproc.h); keys[0]
                                           holds only the active id */
    size_t n;
    size_t active;
    int locked;                         /* 1 when mlock succeeded */
    int lockfd;                         /* KEYSTORE.lock, flock()ed; -1 none */
    struct vault_key keys[VAULT_MAX_KEYS];
    size_t naudit;
    size_t audit_active;
    struct vault_audit_key audit[VAULT_MAX_AUDIT_KEYS];
};

/* The key with this id (exactly VAULT_KEY_ID_LEN hex digits), or NULL. The
 * result is owned by v. */
const struct vault_key *keystore_find(const struct vault *v, const char *id);

/* The active key, owned by v. */
const struct vault_key *keystore_active(const struct vault *v);

/* The audit key with this id (exactly VAULT_KEY_ID_LEN hex digits), or
 * NULL; the active audit key, or NULL when there is none. Owned by v. */
const struct vault_audit_key *keystore_audit_find(const struct vault *v,
                                                  const char *id);
const struct vault_audit_key *keystore_audit_active(const struct vault *v);

/* n bytes as 2n lowercase hex digits plus a NUL into out. */
void keystore_hex(const unsigned char *in, size_t n, char *out);

/* 1 when s[0..n) are all lowercase hex digits. */
int keystore_is_hex(const char *s, size_t n);

/* Wrap dkey under v's active master key into hdr (a payload header whose
 * magic, version and nonce prefix are set; the key id, wrap nonce, wrapped
 * key and tag are filled), message msgid bound in. Forwarded to the key
 * process when v is remote. 0 or -1. */
int vault_payload_wrap(struct vault *v, unsigned char *hdr,
                       const unsigned char *dkey, const char *msgid,
                       struct error *err);

/* Check hdr and unwrap its data key into dkey with the master key it
 * names (forwarded when v is remote). 0 or -1 (err names msgid). */
int vault_payload_unwrap(struct vault *v, unsigned char *hdr,
                         const char *msgid, unsigned char *dkey,
                         struct error *err);

/* The keystore file text of local vault v (every master and audit key)
 * into buf, which must hold VAULT_KEYSTORE_TEXT_MAX bytes; its length, or
 * 0 (v is remote, buf too small). buf then holds key text: the caller
 * wipes it. For a backup's key block (backup_key.c). */
#define VAULT_KEYSTORE_TEXT_MAX 12288
size_t keystore_text(const struct vault *v, char *buf, size_t n);

/* A vault holding the keys of keystore text[0..len) (no file, no lock;
 * what names it in errors). Caller owns; vault_close. */
struct vault *keystore_from_text(const char *text, size_t len,
                                 const char *what, struct error *err);

/* fsync the directory that holds path (a new or renamed entry in it). */
int vault_fsync_parent(const char *path, struct error *err);

#endif
