/*
 * keyhost.h - where private keys live, inside src/vault/ only (R15, R22).
 *
 * A private key is held in exactly one place: the key table (keytab.c) of
 * the process that loaded it. In `wharf serve` that is the key process
 * (keysrv.c answers the network process's requests with it); in a process
 * without a key process (CLI commands, unit tests) it is the process
 * itself. Everybody else holds a handle: a uint32 naming a table entry,
 * wrapped in an EVP_PKEY of our OpenSSL provider (keyprov.c) that carries
 * only the public key and the handle, and forwards signing and decryption
 * to the table, directly or through the key process client (keyclient.c).
 *
 * Nothing outside src/vault/ may include this file.
 */
#ifndef WHARF_KEYHOST_H
#define WHARF_KEYHOST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>

#include "util/error.h"
#include "vault/keyproto.h"
#include "vault/vault.h"

struct keyproc_confine;                 /* vault/keyproc.h */

/* What a held key may be used for. */
#define KEY_USE_SIGN 1u         /* signatures (CMS, MDN, TLS handshakes) */
#define KEY_USE_DECRYPT 2u      /* CMS key transport (RSA decrypt) */
#define KEY_USE_SSH 4u          /* SSH user authentication (sshkey.h) */
#define KEYTAB_MAX 256          /* keys one process holds */
#define KEYTAB_CLIENT_MAX 64    /* of which http client certificate keys */

/* The context prefix of AS2 profile keys (core/profile.c, partners.c):
 * such a sealed value opens only into the key table, never to a caller. */
#define KEY_PROFILE_CONTEXT "profile-key:"

/* ---- the key table (this process) ------------------------------------- */

/* Unseal the private key sealed under context (which must start with
 * KEY_PROFILE_CONTEXT) into the table, usable to sign and decrypt. The same
 * context and blob give the same handle. *spki (malloc'ed, caller frees)
 * receives the public key (DER SubjectPublicKeyInfo). 0 or -1. */
int keytab_load_sealed(struct vault *v, const char *context,
                       const unsigned char *blob, size_t len,
                       uint32_t *handle, unsigned char **spki,
                       size_t *spkilen, struct error *err);

/* The seal context of connector conn's client certificate key
 * (core/conn_secrets.c: "connector:NAME:auth.key"): the only sealed
 * connector secret that opens as a private key, into the table only. */
#define KEY_CLIENT_KEY_NAME "auth.key"

/* Unseal the client certificate key of connector conn (the PEM its
 * "auth.key" secret holds, sealed under "connector:CONN:auth.key") into
 * the table, usable only to sign (TLS client authentication). The same
 * connector and key (however often sealed) give the same handle; at most
 * KEYTAB_CLIENT_MAX such keys are held. spki as above. 0 or -1. */
int keytab_load_client(struct vault *v, const char *conn,
                       const unsigned char *blob, size_t len,
                       uint32_t *handle, unsigned char **spki,
                       size_t *spkilen, struct error *err);

/* The seal contexts of an SFTP connector's SSH user key and of its
 * passphrase: "connector:NAME:key_file", "connector:NAME:key_passphrase_file". */
#define KEY_SSH_KEY_NAME "key_file"
#define KEY_SSH_PASS_NAME "key_passphrase_file"

/* Unseal connector conn's SSH user key (blob, sealed under
 * "connector:CONN:key_file"; pass, when plen > 0, its passphrase sealed
 * under "connector:CONN:key_passphrase_file") into the table, usable only
 * for SSH signatures (keytab_ssh_sign). *pub (malloc'ed, caller frees)
 * receives the SSH public key blob. The same connector and key give the
 * same handle; it counts against KEYTAB_CLIENT_MAX. 0 or -1. */
int keytab_load_ssh(struct vault *v, const char *conn,
                    const unsigned char *blob, size_t len,
                    const unsigned char *pass, size_t plen,
                    uint32_t *handle, unsigned char **pub, size_t *publen,
                    struct error *err);

/* An SSH signature (sshkey.h: algorithm name + blob) of data by the SSH
 * key handle, flags the ssh-agent sign flags; sig has room for
 * KP_SSH_SIG_MAX bytes. Refused for any other key. 0 or -1. */
int keytab_ssh_sign(uint32_t handle, uint32_t flags,
                    const unsigned char *data, size_t n, unsigned char *sig,
                    size_t *siglen, struct error *err);

/* 1 when context seals a private key (an AS2 profile key, a connector's
 * client certificate key, an SSH user key or its passphrase): such a value
 * opens only into the key table. */
int keyhost_private_context(const char *context);

/* Read the PEM private key at path (a TLS listener key: refused when
 * others can read the file) into the table, usable only to sign. The same
 * path gives the same handle. spki as above. 0 or -1. */
int keytab_load_file(const char *path, uint32_t *handle, unsigned char **spki,
                     size_t *spkilen, struct error *err);

/* Sign the digest tbs (n bytes, the size of p->md) with key handle: RSA
 * PKCS#1 v1.5 or PSS, or ECDSA (DER). sig has room for KP_SIG_MAX bytes.
 * Refused when the key may not sign. 0 or -1. */
int keytab_sign(uint32_t handle, const struct keyproto_params *p,
                const unsigned char *tbs, size_t n, unsigned char *sig,
                size_t *siglen, struct error *err);

/* RSA-decrypt in (PKCS#1 v1.5, or OAEP with p->md, p->mgf1 and label)
 * with key handle into out (room for KP_CIPHER_MAX bytes). Refused when
 * the key may not decrypt. 0 or -1. */
int keytab_decrypt(uint32_t handle, const struct keyproto_params *p,
                   const unsigned char *label, size_t llen,
                   const unsigned char *in, size_t n, unsigned char *out,
                   size_t *outlen, struct error *err);

/* Free every key of the table (OpenSSL wipes them). */
void keytab_clear(void);

/* ---- the key process client (this process has a key process) ---------- */

/* 1 when this process talks to a key process (vault_open then returns a
 * vault that forwards every operation to it). */
int keyclient_active(void);

/* One request/reply exchange: the request's fields f[0..nf), the reply's
 * fields into r[] (pointing into *buf, malloc'ed, caller frees even on
 * failure). A KP_ERR reply becomes err's message. 0 or -1; err->code is
 * EPIPE when the key process did not answer at all (it is gone). */
int keyclient_call(uint32_t type, const struct keyproto_field *f, size_t nf,
                   struct keyproto_field *r, unsigned char **buf,
                   struct error *err);

/* ---- remote vault operations (vault.h's functions forward here) ------- */

int keyclient_hello(char id[VAULT_KEY_ID_LEN + 1], struct error *err);
int keyclient_wrap(const char *msgid, unsigned char *hdr,
                   const unsigned char *dkey, struct error *err);
int keyclient_unwrap(const char *msgid, const unsigned char *hdr,
                     unsigned char *dkey, struct error *err);

/* ---- handles as EVP_PKEYs (keyprov.c) --------------------------------- */

/* Where a handle lives: this process's table, or the key process's. */
enum keyhost_where { KEYHOST_LOCAL = 0, KEYHOST_REMOTE = 1 };

/* An EVP_PKEY of our provider for handle (whose public key is spki),
 * forwarding private operations to where. Caller owns (EVP_PKEY_free). */
EVP_PKEY *keyprov_pkey(enum keyhost_where where, uint32_t handle,
                       const unsigned char *spki, size_t spkilen,
                       struct error *err);

/* Forwarders used by the provider: sign / decrypt with a handle where it
 * lives. Same contract as keytab_sign / keytab_decrypt. */
int keyhost_sign(enum keyhost_where where, uint32_t handle,
                 const struct keyproto_params *p, const unsigned char *tbs,
                 size_t n, unsigned char *sig, size_t *siglen,
                 struct error *err);
int keyhost_decrypt(enum keyhost_where where, uint32_t handle,
                    const struct keyproto_params *p,
                    const unsigned char *label, size_t llen,
                    const unsigned char *in, size_t n, unsigned char *out,
                    size_t *outlen, struct error *err);

/* ---- the key process (keysrv.c) --------------------------------------- */

/* Answer requests on fd with v (a local vault) and the TLS key files
 * tls_paths[0..n) (loaded now, before the first request) until the peer
 * closes fd or breaks the protocol. confine (NULL: none) runs once the
 * TLS keys are loaded, before the first request (the key process's
 * sandbox); when it fails nothing is answered. It is one of share key
 * processes and allows 1/share of the rate limits below. Returns 0 on a
 * clean end, -1 when the protocol was broken (err says why), -2 when
 * confine failed (err says why; the parent was told: keyproc_child_fail).
 */
int keysrv_run(struct vault *v, int fd, const char *const *tls_paths,
               size_t n, const struct keyproc_confine *confine,
               size_t share, struct error *err);

/* The rate limits of all key processes together (each has its share),
 * token buckets that hold one second's worth: private key operations, and
 * requests of any kind. A request beyond them waits; it is not refused. The first is above what one core does of RSA-2048
 * private-key operations (1,600-3,840 a second on the machines in
 * docs/performance.md): an AS2 receiver makes two per message with a
 * signed MDN, and 1,000 a second held it at 500 messages a second. */
#define KEYSRV_KEY_OPS_PER_S 4000
#define KEYSRV_OPS_PER_S 20000

struct keysrv_bucket {
    double tokens, rate;
    struct timespec last;
};

void keysrv_bucket_init(struct keysrv_bucket *b, double rate,
                        const struct timespec *now);
/* Take a token at now: how long the request must wait first (ns, 0 for
 * none); the bucket counts the wait as spent. */
long long keysrv_bucket_take(struct keysrv_bucket *b,
                             const struct timespec *now);

/* The buckets of one of share key processes (0 counts as 1): each limit
 * above divided by share, so that all of them together keep it. */
void keysrv_limits_init(struct keysrv_bucket *key_ops,
                        struct keysrv_bucket *ops, size_t share,
                        const struct timespec *now);

#endif
