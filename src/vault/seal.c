/*
 * seal.c - small sealed secrets (R15): TOTP seeds, OIDC client secrets,
 * OAuth tokens kept in the database, encrypted under the active master key
 * and bound to the use they were sealed for.
 *
 * Sealed blob, version 1 (opaque to callers, not secret):
 *
 *     0  version (1)                                1
 *     1  master key id, ascii lowercase hex        16
 *    17  nonce, random per seal                    12
 *    29  ciphertext (as long as the plaintext)      n
 *  29+n  GCM tag                                   16
 *
 * AES-256-GCM under the named master key; AAD = version || key id ||
 * context (the first two have a fixed length, so the AAD is unambiguous).
 * A wrong context, a wrong or unknown master key and any modified,
 * truncated or extended blob all fail to open.
 *
 * It owns nothing beyond a call: the blobs it returns belong to the caller,
 * the plaintext goes straight into a struct secret. It must never put
 * plaintext or key bytes in an error message, and never return a byte of
 * plaintext whose tag did not verify (the secret is wiped and freed first).
 */
#include "vault/vault_internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/secret.h"
#include "vault/keyhost.h"

#define SEAL_VERSION 1
#define SEAL_OFF_KEYID 1
#define SEAL_OFF_NONCE (SEAL_OFF_KEYID + VAULT_KEY_ID_LEN)
#define SEAL_NONCE_LEN 12
#define SEAL_OFF_CT (SEAL_OFF_NONCE + SEAL_NONCE_LEN)
#define SEAL_TAG_LEN 16
#define SEAL_OVERHEAD (SEAL_OFF_CT + SEAL_TAG_LEN)
#define SEAL_MAX (64 * 1024)        /* plaintext bytes: small secrets only */
#define SEAL_CONTEXT_MAX 1024

/* One AES-256-GCM operation: hdr (version || key id) and context as AAD;
 * encrypting writes the tag, decrypting checks it. 0, or -1. */
static int seal_gcm(int enc, const unsigned char *key,
                    const unsigned char *hdr, const char *context,
                    const unsigned char *nonce, const unsigned char *in,
                    size_t n, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char fin[SEAL_TAG_LEN];
    int len = 0, ok = ctx != NULL;
    ok = ok && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL,
                                 enc) == 1;
    ok = ok && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) == 1;
    ok = ok && EVP_CipherUpdate(ctx, NULL, &len, hdr, SEAL_OFF_NONCE) == 1;
    ok = ok && EVP_CipherUpdate(ctx, NULL, &len, (const unsigned char *)context,
                                (int)strlen(context)) == 1;
    if (ok && n > 0)
        ok = EVP_CipherUpdate(ctx, out, &len, in, (int)n) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
                                 tag) == 1;
    ok = ok && EVP_CipherFinal_ex(ctx, fin, &len) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
                                 tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

static int seal_context_ok(const char *context, struct error *err)
{
    if (context == NULL || context[0] == '\0' ||
        strlen(context) > SEAL_CONTEXT_MAX)
        return error_set(err, "sealed value: the context is empty or longer "
                         "than %d bytes", SEAL_CONTEXT_MAX);
    return 0;
}

/* vault_seal in the key process: the blob comes back (not secret). */
static int seal_remote(const char *context, const struct secret *plain,
                       unsigned char **out, size_t *outlen, struct error *err)
{
    struct keyproto_field f[2] = {
        { (const unsigned char *)context, strlen(context) },
        { secret_data(plain), secret_len(plain) },
    }, r[1];
    unsigned char *buf = NULL;
    int rc = keyclient_call(KP_SEAL, f, 2, r, &buf, err);
    if (rc == 0 && (*out = malloc(r[0].n)) == NULL)
        rc = error_set(err, "out of memory sealing a value for %.64s",
                       context);
    if (rc == 0) {
        memcpy(*out, r[0].p, r[0].n);
        *outlen = r[0].n;
    }
    free(buf);
    return rc;
}

/* vault_unseal in the key process (which refuses AS2 profile keys). */
static struct secret *unseal_remote(const char *context,
                                    const unsigned char *blob, size_t len,
                                    struct error *err)
{
    struct keyproto_field f[2] = {
        { (const unsigned char *)context, strlen(context) }, { blob, len },
    }, r[1];
    unsigned char *buf = NULL;
    struct secret *s = NULL;
    if (len > SEAL_OVERHEAD + SEAL_MAX || len < SEAL_OVERHEAD) {
        error_set(err, "sealed value for %.64s is truncated or not a sealed "
                  "value (%zu bytes)", context, len);
        return NULL;
    }
    if (keyclient_call(KP_UNSEAL, f, 2, r, &buf, err) == 0) {
        s = secret_from(r[0].p, r[0].n);
        OPENSSL_cleanse((void *)r[0].p, r[0].n);
        if (s == NULL)
            error_set(err, "out of memory opening a sealed value");
    }
    free(buf);
    return s;
}

int vault_seal(struct vault *v, const char *context, const struct secret *plain,
               unsigned char **out, size_t *outlen, struct error *err)
{
    *out = NULL;
    *outlen = 0;
    if (seal_context_ok(context, err) != 0)
        return -1;
    size_t n = secret_len(plain);
    if (plain == NULL || n > SEAL_MAX)
        return error_set(err, "cannot seal a value for %.64s: it is missing "
                         "or longer than %d bytes", context, SEAL_MAX);
    if (v->remote)
        return seal_remote(context, plain, out, outlen, err);
    unsigned char *blob = malloc(SEAL_OVERHEAD + n);
    if (blob == NULL)
        return error_set(err, "out of memory sealing a value for %.64s",
                         context);
    const struct vault_key *mk = keystore_active(v);
    blob[0] = SEAL_VERSION;
    memcpy(blob + SEAL_OFF_KEYID, mk->id, VAULT_KEY_ID_LEN);
    if (RAND_bytes(blob + SEAL_OFF_NONCE, SEAL_NONCE_LEN) != 1 ||
        seal_gcm(1, mk->key, blob, context, blob + SEAL_OFF_NONCE,
                 secret_data(plain), n, blob + SEAL_OFF_CT,
                 blob + SEAL_OFF_CT + n) != 0) {
        OPENSSL_cleanse(blob, SEAL_OVERHEAD + n);
        free(blob);
        return error_openssl(err, "cannot seal a value");
    }
    *out = blob;
    *outlen = SEAL_OVERHEAD + n;
    return 0;
}

/* Check the blob's framing and find the master key it names. */
static const struct vault_key *seal_key(const struct vault *v,
                                        const char *context,
                                        const unsigned char *blob, size_t len,
                                        struct error *err)
{
    if (blob == NULL || len < SEAL_OVERHEAD || len > SEAL_OVERHEAD + SEAL_MAX) {
        error_set(err, "sealed value for %.64s is truncated or not a sealed "
                  "value (%zu bytes)", context, blob == NULL ? 0 : len);
        return NULL;
    }
    if (blob[0] != SEAL_VERSION) {
        error_set(err, "sealed value for %.64s has unsupported version %u",
                  context, blob[0]);
        return NULL;
    }
    if (!keystore_is_hex((const char *)blob + SEAL_OFF_KEYID,
                         VAULT_KEY_ID_LEN)) {
        error_set(err, "sealed value for %.64s is corrupted (bad master key "
                  "id)", context);
        return NULL;
    }
    const struct vault_key *mk =
        keystore_find(v, (const char *)blob + SEAL_OFF_KEYID);
    if (mk == NULL)
        error_set(err, "sealed value for %.64s uses unknown master key %.16s",
                  context, (const char *)blob + SEAL_OFF_KEYID);
    return mk;
}

/* ---- integrity failures -------------------------------------------------- */

static vault_integrity_fn integrity_hook;

void vault_set_integrity_hook(vault_integrity_fn fn)
{
    integrity_hook = fn;
}

void vault_integrity_check(const struct error *err, const char *what,
                           const char *id)
{
    if (integrity_hook != NULL && (err == NULL || err->code == 0))
        integrity_hook(what, id, err ? err->msg : "");
}

static struct secret *unseal_local(struct vault *v, const char *context,
                                   const unsigned char *blob, size_t len,
                                   struct error *err);

struct secret *vault_unseal(struct vault *v, const char *context,
                            const unsigned char *blob, size_t len,
                            struct error *err)
{
    if (seal_context_ok(context, err) != 0)
        return NULL;
    struct error local = {0};
    struct error *e = err ? err : &local;
    struct secret *s = v->remote ? unseal_remote(context, blob, len, e)
                                 : unseal_local(v, context, blob, len, e);
    if (s == NULL)
        vault_integrity_check(e, "sealed", context);
    return s;
}

static struct secret *unseal_local(struct vault *v, const char *context,
                                   const unsigned char *blob, size_t len,
                                   struct error *err)
{
    const struct vault_key *mk = seal_key(v, context, blob, len, err);
    if (mk == NULL)
        return NULL;
    size_t n = len - SEAL_OVERHEAD;
    unsigned char tag[SEAL_TAG_LEN];
    memcpy(tag, blob + SEAL_OFF_CT + n, SEAL_TAG_LEN);
    struct secret *s = secret_new(n);
    if (s == NULL) {
        error_set(err, "out of memory opening a sealed value");
        return NULL;
    }
    if (seal_gcm(0, mk->key, blob, context, blob + SEAL_OFF_NONCE,
                 blob + SEAL_OFF_CT, n, secret_data_mut(s), tag) != 0) {
        secret_free(s);
        ERR_clear_error();
        error_set(err, "sealed value for %.64s does not open (sealed for "
                  "another use, with another master key, or modified)",
                  context);
        return NULL;
    }
    return s;
}

int vault_reseal(struct vault *v, const char *context,
                 const unsigned char *blob, size_t len, unsigned char **out,
                 size_t *outlen, struct error *err)
{
    *out = NULL;
    *outlen = 0;
    if (v->remote)
        return error_set(err, "sealed values are re-sealed only by `wharf "
                         "key rotate`, while wharf serve is stopped");
    struct secret *s = vault_unseal(v, context, blob, len, err);
    if (s == NULL)
        return -1;
    int rc = 0;
    if (memcmp(blob + SEAL_OFF_KEYID, vault_active_id(v),
               VAULT_KEY_ID_LEN) != 0)
        rc = vault_seal(v, context, s, out, outlen, err) == 0 ? 1 : -1;
    secret_free(s);
    return rc;
}
