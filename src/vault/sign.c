/*
 * sign.c - signatures with the keystore's Ed25519 audit keys (R15, R18):
 * vault_audit_sign with the active audit key, vault_audit_verify with any
 * audit key the keystore holds (active or retired).
 *
 * The keystore stores only each key's 32-byte private seed; verification
 * derives the public key from it (EVP_PKEY_get_raw_public_key) and checks
 * with a public-only key. Signing is pure Ed25519 (EVP_DigestSign with a
 * NULL digest, RFC 8032), so a signature is 64 bytes.
 *
 * It owns the EVP_PKEY objects it makes for one call (OpenSSL wipes their
 * key material on free). It must never hand a seed or a private EVP_PKEY
 * out of the call, nor put key bytes in an error message.
 */
#include "vault/vault_internal.h"
#include "vault/keyhost.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#define SIGN_PUB_LEN 32

static EVP_PKEY *sign_private_key(const struct vault_audit_key *k)
{
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->seed,
                                        sizeof(k->seed));
}

/* vault_audit_sign in the key process. */
static int sign_remote(const void *msg, size_t n,
                       unsigned char sig[VAULT_SIG_LEN],
                       char key_id[VAULT_KEY_ID_LEN + 1], struct error *err)
{
    struct keyproto_field f[1] = { { msg, n } }, r[2];
    unsigned char *buf = NULL;
    int rc = keyclient_call(KP_AUDIT_SIGN, f, 1, r, &buf, err);
    if (rc == 0 && !keystore_is_hex((const char *)r[0].p, VAULT_KEY_ID_LEN))
        rc = error_set(err, "the key process named a malformed audit key");
    if (rc == 0) {
        memcpy(key_id, r[0].p, VAULT_KEY_ID_LEN);
        key_id[VAULT_KEY_ID_LEN] = '\0';
        memcpy(sig, r[1].p, VAULT_SIG_LEN);
    }
    free(buf);
    return rc;
}

/* vault_audit_verify in the key process. */
static int verify_remote(const char *key_id, const void *msg, size_t n,
                         const unsigned char sig[VAULT_SIG_LEN],
                         struct error *err)
{
    struct keyproto_field f[3] = {
        { (const unsigned char *)key_id, VAULT_KEY_ID_LEN },
        { sig, VAULT_SIG_LEN }, { msg, n },
    }, r[1];
    unsigned char *buf = NULL;
    int rc = keyclient_call(KP_AUDIT_VERIFY, f, 3, r, &buf, err);
    free(buf);
    return rc;
}

int vault_audit_sign(struct vault *v, const void *msg, size_t n,
                     unsigned char sig[VAULT_SIG_LEN],
                     char key_id[VAULT_KEY_ID_LEN + 1], struct error *err)
{
    if (v->remote)
        return sign_remote(msg, n, sig, key_id, err);
    const struct vault_audit_key *k = keystore_audit_active(v);
    if (k == NULL)
        return error_set(err, v->naudit == 0 ?
                         "keystore has no audit signing key" :
                         "keystore has no active audit signing key (only "
                         "retired ones)");
    EVP_PKEY *pk = sign_private_key(k);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t siglen = VAULT_SIG_LEN;
    int ok = pk != NULL && ctx != NULL &&
             EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, msg, n) == 1 &&
             siglen == VAULT_SIG_LEN;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    if (!ok)
        return error_openssl(err, "cannot sign with the audit key");
    memcpy(key_id, k->id, VAULT_KEY_ID_LEN + 1);
    return 0;
}

/* The public key of k, as a public-only EVP_PKEY (caller frees). */
static EVP_PKEY *sign_public_key(const struct vault_audit_key *k)
{
    unsigned char pub[SIGN_PUB_LEN];
    size_t publen = sizeof(pub);
    EVP_PKEY *priv = sign_private_key(k);
    int ok = priv != NULL &&
             EVP_PKEY_get_raw_public_key(priv, pub, &publen) == 1 &&
             publen == sizeof(pub);
    EVP_PKEY_free(priv);
    return ok ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
                                            publen)
              : NULL;
}

/* The audit key named by key_id (checked to be 16 lowercase hex digits). */
static const struct vault_audit_key *sign_find(const struct vault *v,
                                               const char *key_id,
                                               struct error *err)
{
    if (key_id == NULL || strnlen(key_id, VAULT_KEY_ID_LEN + 1) !=
                              VAULT_KEY_ID_LEN ||
        !keystore_is_hex(key_id, VAULT_KEY_ID_LEN)) {
        error_set(err, "audit key id is malformed (not %d lowercase hex "
                  "digits)", VAULT_KEY_ID_LEN);
        return NULL;
    }
    const struct vault_audit_key *k = keystore_audit_find(v, key_id);
    if (k == NULL)
        error_set(err, "audit key %s is not in this keystore (signed with "
                  "another keystore's key?)", key_id);
    return k;
}

int vault_audit_verify(struct vault *v, const char *key_id, const void *msg,
                       size_t n, const unsigned char sig[VAULT_SIG_LEN],
                       struct error *err)
{
    if (v->remote && (key_id == NULL ||
                      strnlen(key_id, VAULT_KEY_ID_LEN + 1) !=
                          VAULT_KEY_ID_LEN))
        return error_set(err, "audit key id is malformed (not %d lowercase "
                         "hex digits)", VAULT_KEY_ID_LEN);
    if (v->remote)
        return verify_remote(key_id, msg, n, sig, err);
    const struct vault_audit_key *k = sign_find(v, key_id, err);
    if (k == NULL)
        return -1;
    EVP_PKEY *pub = sign_public_key(k);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (pub == NULL || ctx == NULL ||
        EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) != 1) {
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pub);
        return error_openssl(err, "cannot set up audit signature check");
    }
    int rc = EVP_DigestVerify(ctx, sig, VAULT_SIG_LEN, msg, n);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pub);
    if (rc != 1) {
        ERR_clear_error();
        return error_set(err, "signature invalid (it does not verify with "
                         "audit key %s)", key_id);
    }
    return 0;
}
