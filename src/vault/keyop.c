/*
 * keyop.c - keyop.h: handle keys for AS2 profile keys, TLS keys, http
 * client certificate keys and SFTP connectors' SSH keys, and the
 * forwarding of their private operations to where the key lives (this
 * process's key table, or the key process).
 *
 * It owns the struct vault_ssh_key objects it hands out (a handle and a
 * public key: vault_ssh_key_free) and nothing else beyond a call (the
 * public key DER it receives is freed before returning). It must never load a private key into an EVP_PKEY
 * itself: keytab.c does, in the process that holds the keys.
 */
#include "vault/keyop.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "vault/keyhost.h"
#include "vault/vault_internal.h"

int keyhost_sign(enum keyhost_where where, uint32_t handle,
                 const struct keyproto_params *p, const unsigned char *tbs,
                 size_t n, unsigned char *sig, size_t *siglen,
                 struct error *err)
{
    if (where == KEYHOST_LOCAL)
        return keytab_sign(handle, p, tbs, n, sig, siglen, err);
    unsigned char h[KP_HANDLE_LEN], pr[KP_PARAMS_LEN], *buf = NULL;
    keyproto_u32_put(handle, h);
    keyproto_params_put(p, pr);
    struct keyproto_field f[3] = { { h, sizeof(h) }, { pr, sizeof(pr) },
                                   { tbs, n } }, r[1];
    int rc = keyclient_call(KP_KEY_SIGN, f, 3, r, &buf, err);
    if (rc == 0) {
        memcpy(sig, r[0].p, r[0].n);
        *siglen = r[0].n;
    }
    free(buf);
    return rc;
}

int keyhost_decrypt(enum keyhost_where where, uint32_t handle,
                    const struct keyproto_params *p,
                    const unsigned char *label, size_t llen,
                    const unsigned char *in, size_t n, unsigned char *out,
                    size_t *outlen, struct error *err)
{
    if (where == KEYHOST_LOCAL)
        return keytab_decrypt(handle, p, label, llen, in, n, out, outlen,
                              err);
    unsigned char h[KP_HANDLE_LEN], pr[KP_PARAMS_LEN], *buf = NULL;
    keyproto_u32_put(handle, h);
    keyproto_params_put(p, pr);
    struct keyproto_field f[4] = { { h, sizeof(h) }, { pr, sizeof(pr) },
                                   { label, llen }, { in, n } }, r[1];
    int rc = keyclient_call(KP_KEY_DECRYPT, f, 4, r, &buf, err);
    if (rc == 0) {
        memcpy(out, r[0].p, r[0].n);
        *outlen = r[0].n;
        OPENSSL_cleanse((void *)r[0].p, r[0].n);    /* a content key */
    }
    free(buf);
    return rc;
}

/* A key request (KP_KEY_LOAD, KP_KEY_TLS or KP_KEY_CLIENT) to the key process: its
 * handle and public key as a handle key. */
static EVP_PKEY *keyop_remote(uint32_t type, const struct keyproto_field *f,
                              size_t nf, struct error *err)
{
    struct keyproto_field r[2];
    unsigned char *buf = NULL;
    EVP_PKEY *k = NULL;
    if (keyclient_call(type, f, nf, r, &buf, err) == 0)
        k = keyprov_pkey(KEYHOST_REMOTE, keyproto_u32_get(r[0].p), r[1].p,
                         r[1].n, err);
    free(buf);
    return k;
}

EVP_PKEY *vault_key_load(struct vault *v, const char *context,
                         const unsigned char *blob, size_t len,
                         struct error *err)
{
    if (v->remote) {
        struct keyproto_field f[2] = {
            { (const unsigned char *)context, strlen(context) },
            { blob, len },
        };
        return keyop_remote(KP_KEY_LOAD, f, 2, err);
    }
    uint32_t handle = 0;
    unsigned char *spki = NULL;
    size_t n = 0;
    EVP_PKEY *k = NULL;
    if (keytab_load_sealed(v, context, blob, len, &handle, &spki, &n,
                           err) == 0)
        k = keyprov_pkey(KEYHOST_LOCAL, handle, spki, n, err);
    free(spki);
    return k;
}

EVP_PKEY *vault_tls_key(const char *path, struct error *err)
{
    if (keyclient_active()) {
        struct keyproto_field f[1] = {
            { (const unsigned char *)path, strlen(path) },
        };
        return keyop_remote(KP_KEY_TLS, f, 1, err);
    }
    uint32_t handle = 0;
    unsigned char *spki = NULL;
    size_t n = 0;
    EVP_PKEY *k = NULL;
    if (keytab_load_file(path, &handle, &spki, &n, err) == 0)
        k = keyprov_pkey(KEYHOST_LOCAL, handle, spki, n, err);
    free(spki);
    return k;
}

EVP_PKEY *vault_client_key(struct vault *v, const char *conn,
                           const unsigned char *blob, size_t len,
                           struct error *err)
{
    if (v->remote) {
        struct keyproto_field f[2] = {
            { (const unsigned char *)conn, strlen(conn) }, { blob, len },
        };
        return keyop_remote(KP_KEY_CLIENT, f, 2, err);
    }
    uint32_t handle = 0;
    unsigned char *spki = NULL;
    size_t n = 0;
    EVP_PKEY *k = NULL;
    if (keytab_load_client(v, conn, blob, len, &handle, &spki, &n, err) == 0)
        k = keyprov_pkey(KEYHOST_LOCAL, handle, spki, n, err);
    free(spki);
    return k;
}

/* ---- SSH user keys ------------------------------------------------------- */

struct vault_ssh_key {
    enum keyhost_where where;
    uint32_t handle;
    unsigned char *pub;         /* owned: SSH wire public key */
    size_t publen;
};

/* KP_KEY_SSH to the key process: the handle and public blob into k. */
static int keyop_ssh_remote(struct vault_ssh_key *k, const char *conn,
                            const unsigned char *blob, size_t len,
                            const unsigned char *pass, size_t plen,
                            struct error *err)
{
    struct keyproto_field f[3] = {
        { (const unsigned char *)conn, strlen(conn) }, { blob, len },
        { pass, plen },
    }, r[2];
    unsigned char *buf = NULL;
    int rc = keyclient_call(KP_KEY_SSH, f, 3, r, &buf, err);
    if (rc == 0 && (k->pub = malloc(r[1].n)) == NULL)
        rc = error_set(err, "out of memory");
    if (rc == 0) {
        k->handle = keyproto_u32_get(r[0].p);
        memcpy(k->pub, r[1].p, r[1].n);
        k->publen = r[1].n;
    }
    free(buf);
    return rc;
}

struct vault_ssh_key *vault_ssh_key(struct vault *v, const char *conn,
                                    const unsigned char *blob, size_t len,
                                    const unsigned char *pass, size_t plen,
                                    struct error *err)
{
    struct vault_ssh_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return error_set(err, "out of memory"), NULL;
    k->where = v->remote ? KEYHOST_REMOTE : KEYHOST_LOCAL;
    int rc = v->remote
           ? keyop_ssh_remote(k, conn, blob, len, pass, plen, err)
           : keytab_load_ssh(v, conn, blob, len, pass, plen, &k->handle,
                             &k->pub, &k->publen, err);
    if (rc != 0) {
        free(k);
        return NULL;
    }
    return k;
}

const unsigned char *vault_ssh_key_public(const struct vault_ssh_key *k,
                                          size_t *len)
{
    *len = k->publen;
    return k->pub;
}

int vault_ssh_sign(const struct vault_ssh_key *k, uint32_t flags,
                   const unsigned char *data, size_t n, unsigned char **sig,
                   size_t *siglen, struct error *err)
{
    *sig = NULL;
    if (n == 0 || n > KP_SSH_DATA_MAX)
        return error_set(err, "an SSH signature request of %zu bytes is "
                         "out of bounds", n);
    unsigned char *out = malloc(KP_SSH_SIG_MAX), h[KP_HANDLE_LEN], fl[4];
    if (out == NULL)
        return error_set(err, "out of memory");
    int rc;
    if (k->where == KEYHOST_LOCAL) {
        rc = keytab_ssh_sign(k->handle, flags, data, n, out, siglen, err);
    } else {
        keyproto_u32_put(k->handle, h);
        keyproto_u32_put(flags, fl);
        struct keyproto_field f[3] = { { h, sizeof(h) }, { fl, sizeof(fl) },
                                       { data, n } }, r[1];
        unsigned char *buf = NULL;
        rc = keyclient_call(KP_SSH_SIGN, f, 3, r, &buf, err);
        if (rc == 0) {
            memcpy(out, r[0].p, r[0].n);
            *siglen = r[0].n;
        }
        free(buf);
    }
    if (rc != 0) {
        free(out);
        return -1;
    }
    *sig = out;
    return 0;
}

void vault_ssh_key_free(struct vault_ssh_key *k)
{
    if (k == NULL)
        return;
    free(k->pub);
    free(k);
}
