/*
 * keytab.c - the private keys this process holds, by handle (see
 * keyhost.h): AS2 profile keys unsealed from the database, TLS listener
 * keys read from their PEM files and http connectors' client certificate
 * keys unsealed from the database, each with the uses it is allowed.
 *
 * It owns every private EVP_PKEY of Wharf (in `wharf serve` they exist only
 * in the key process) until keytab_clear, and the table's lock. It must
 * never hand a private EVP_PKEY or its bytes to a caller (callers get a
 * handle and the public key), never let a key be used for a purpose it was
 * not loaded for, and never put key bytes in an error message.
 */
#include "vault/keyhost.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "util/secret.h"
#include "vault/sshkey.h"
#include "vault/vault_internal.h"

struct keytab_entry {
    EVP_PKEY *key;                  /* owned, private */
    unsigned uses;                  /* KEY_USE_* */
    int client;                     /* a connector's client key */
    unsigned char tag[32];          /* SHA-256 of where it came from */
};

static struct {
    pthread_mutex_t lock;
    size_t n;
    size_t nclient;                 /* entries with client set */
    struct keytab_entry e[KEYTAB_MAX];
} keytab = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The DER SubjectPublicKeyInfo of k, malloc'ed. */
static int keytab_spki(EVP_PKEY *k, unsigned char **spki, size_t *len,
                       struct error *err)
{
    *spki = NULL;
    int n = i2d_PUBKEY(k, spki);
    if (n <= 0 || n > KP_SPKI_MAX) {
        OPENSSL_free(*spki);
        *spki = NULL;
        return error_openssl(err, "cannot encode a public key");
    }
    unsigned char *copy = malloc((size_t)n);
    if (copy != NULL)
        memcpy(copy, *spki, (size_t)n);
    OPENSSL_free(*spki);
    *spki = copy;
    *len = (size_t)n;
    return copy ? 0 : error_set(err, "out of memory");
}

/* Find tag, or add key under it (taking ownership either way). Caller
 * holds the lock. */
static int keytab_put(EVP_PKEY *key, unsigned uses, int client,
                      const unsigned char tag[32], uint32_t *handle,
                      struct error *err)
{
    for (size_t i = 0; i < keytab.n; i++) {
        if (memcmp(keytab.e[i].tag, tag, 32) == 0 &&
            keytab.e[i].uses == uses) {
            EVP_PKEY_free(key);
            *handle = (uint32_t)(i + 1);
            return 0;
        }
    }
    if (keytab.n == KEYTAB_MAX) {
        EVP_PKEY_free(key);
        return error_set(err, "the vault holds %d private keys already; "
                         "restart wharf serve to drop unused ones",
                         KEYTAB_MAX);
    }
    if (client && keytab.nclient == KEYTAB_CLIENT_MAX) {
        EVP_PKEY_free(key);
        return error_set(err, "the vault holds %d client certificate keys "
                         "already; restart wharf serve to drop unused ones",
                         KEYTAB_CLIENT_MAX);
    }
    struct keytab_entry *e = &keytab.e[keytab.n++];
    keytab.nclient += client ? 1 : 0;
    e->key = key;
    e->uses = uses;
    e->client = client;
    memcpy(e->tag, tag, 32);
    *handle = (uint32_t)keytab.n;
    return 0;
}

/* Add key (owned from here on) and return its handle and public key. */
static int keytab_add(EVP_PKEY *key, unsigned uses, int client,
                      const unsigned char *tag, uint32_t *handle,
                      unsigned char **spki, size_t *spkilen,
                      struct error *err)
{
    if (keytab_spki(key, spki, spkilen, err) != 0) {
        EVP_PKEY_free(key);
        return -1;
    }
    pthread_mutex_lock(&keytab.lock);
    int rc = keytab_put(key, uses, client, tag, handle, err);
    pthread_mutex_unlock(&keytab.lock);
    if (rc != 0) {
        free(*spki);
        *spki = NULL;
    }
    return rc;
}

/* SHA-256 of a || 0 || b. */
static int keytab_tag(const void *a, size_t alen, const void *b, size_t blen,
                      unsigned char tag[32])
{
    static const unsigned char zero = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, a, alen) == 1 &&
             EVP_DigestUpdate(ctx, &zero, 1) == 1 &&
             EVP_DigestUpdate(ctx, b, blen) == 1 &&
             EVP_DigestFinal_ex(ctx, tag, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

int keytab_load_sealed(struct vault *v, const char *context,
                       const unsigned char *blob, size_t len,
                       uint32_t *handle, unsigned char **spki,
                       size_t *spkilen, struct error *err)
{
    *spki = NULL;
    if (strncmp(context, KEY_PROFILE_CONTEXT,
                strlen(KEY_PROFILE_CONTEXT)) != 0)
        return error_set(err, "refused: only AS2 profile keys (%s...) load "
                         "as private keys, not %.64s", KEY_PROFILE_CONTEXT,
                         context);
    unsigned char tag[32];
    if (keytab_tag(context, strlen(context), blob, len, tag) != 0)
        return error_openssl(err, "cannot hash a sealed key");
    struct secret *s = vault_unseal(v, context, blob, len, err);
    if (s == NULL)
        return -1;
    const unsigned char *p = secret_data(s);
    EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &p, (long)secret_len(s));
    secret_free(s);
    if (k == NULL) {
        ERR_clear_error();
        return error_set(err, "the sealed key %.64s cannot be read", context);
    }
    return keytab_add(k, KEY_USE_SIGN | KEY_USE_DECRYPT, 0, tag, handle,
                      spki, spkilen, err);
}

/* A private key file others can read is refused (as net/tls.c did). */
static int keytab_file_mode_ok(const char *path, struct error *err)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return error_errno(err, errno, "TLS key %s", path);
    if (sb.st_mode & 007)
        return error_set(err, "TLS key %s is readable by others (mode %04o); "
                         "run: chmod 600 %s", path,
                         (unsigned)(sb.st_mode & 07777), path);
    return 0;
}

int keytab_load_file(const char *path, uint32_t *handle, unsigned char **spki,
                     size_t *spkilen, struct error *err)
{
    *spki = NULL;
    if (keytab_file_mode_ok(path, err) != 0)
        return -1;
    unsigned char tag[32];
    if (keytab_tag("tls", 3, path, strlen(path), tag) != 0)
        return error_openssl(err, "cannot hash a key path");
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return error_errno(err, errno, "TLS key %s", path);
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    if (k == NULL) {
        error_openssl(err, "cannot load the TLS key");
        error_prefix(err, "%s", path);
        return -1;
    }
    return keytab_add(k, KEY_USE_SIGN, 0, tag, handle, spki, spkilen, err);
}

/* A passphrase callback that has none: an encrypted PEM key is refused
 * instead of OpenSSL asking on a terminal. */
static int keytab_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The private key in the PEM (or DER) bytes of s, or NULL. */
static EVP_PKEY *keytab_parse_key(const struct secret *s)
{
    BIO *b = BIO_new_mem_buf(secret_data(s), (int)secret_len(s));
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, keytab_no_passphrase,
                                              NULL) : NULL;
    BIO_free(b);
    if (k == NULL) {
        const unsigned char *p = secret_data(s);
        k = d2i_AutoPrivateKey(NULL, &p, (long)secret_len(s));
    }
    ERR_clear_error();
    return k;
}

/* Whether context is "connector:NAME:" + name. */
static int keytab_conn_context(const char *context, const char *name)
{
    static const char prefix[] = "connector:";
    size_t n = strlen(context), ns = strlen(name);
    return strncmp(context, prefix, sizeof(prefix) - 1) == 0 &&
           n > sizeof(prefix) - 1 + ns &&
           context[n - ns - 1] == ':' && strcmp(context + n - ns, name) == 0;
}

int keyhost_private_context(const char *context)
{
    if (strncmp(context, KEY_PROFILE_CONTEXT,
                strlen(KEY_PROFILE_CONTEXT)) == 0)
        return 1;
    return keytab_conn_context(context, KEY_CLIENT_KEY_NAME) ||
           keytab_conn_context(context, KEY_SSH_KEY_NAME) ||
           keytab_conn_context(context, KEY_SSH_PASS_NAME);
}

int keytab_load_client(struct vault *v, const char *conn,
                       const unsigned char *blob, size_t len,
                       uint32_t *handle, unsigned char **spki,
                       size_t *spkilen, struct error *err)
{
    *spki = NULL;
    char ctx[KP_CONN_NAME_MAX + 64];
    size_t n = strlen(conn);
    if (n == 0 || n > KP_CONN_NAME_MAX || strchr(conn, ':') != NULL)
        return error_set(err, "refused: bad connector name for a client "
                         "certificate key");
    snprintf(ctx, sizeof(ctx), "connector:%s:%s", conn, KEY_CLIENT_KEY_NAME);
    struct secret *s = vault_unseal(v, ctx, blob, len, err);
    if (s == NULL)
        return -1;
    EVP_PKEY *k = keytab_parse_key(s);
    secret_free(s);
    if (k == NULL)
        return error_set(err, "connector %.64s: auth.key is not a private "
                         "key in PEM without a passphrase: import the flow "
                         "again with the key", conn);
    /* tagged by connector and public key: the same key sealed again (each
     * import of its file seals anew) takes no second entry */
    unsigned char tag[32], *pub = NULL;
    size_t publen = 0;
    int rc = keytab_spki(k, &pub, &publen, err);
    if (rc == 0 && keytab_tag(ctx, strlen(ctx), pub, publen, tag) != 0)
        rc = error_openssl(err, "cannot hash a public key");
    free(pub);
    if (rc != 0) {
        EVP_PKEY_free(k);
        return -1;
    }
    return keytab_add(k, KEY_USE_SIGN, 1, tag, handle, spki, spkilen, err);
}

/* The key of handle when it may be used for use, with a reference taken
 * (caller frees). */
static EVP_PKEY *keytab_get(uint32_t handle, unsigned use, struct error *err)
{
    EVP_PKEY *k = NULL;
    pthread_mutex_lock(&keytab.lock);
    if (handle >= 1 && handle <= keytab.n &&
        (keytab.e[handle - 1].uses & use) != 0 &&
        EVP_PKEY_up_ref(keytab.e[handle - 1].key) == 1)
        k = keytab.e[handle - 1].key;
    pthread_mutex_unlock(&keytab.lock);
    if (k == NULL)
        error_set(err, "refused: key %u does not exist or may not be used "
                  "to %s", (unsigned)handle,
                  use == KEY_USE_DECRYPT ? "decrypt"
                  : use == KEY_USE_SSH ? "sign SSH authentications" : "sign");
    return k;
}

/* ---- SSH user keys (an SFTP connector's key_file) ---------------------- */

/* The connector's sealed SSH key (and passphrase, when plen > 0) opened
 * into an EVP_PKEY. */
static EVP_PKEY *keytab_ssh_open(struct vault *v, const char *conn,
                                 const unsigned char *blob, size_t len,
                                 const unsigned char *pass, size_t plen,
                                 struct error *err)
{
    char ctx[KP_CONN_NAME_MAX + 64];
    struct secret *pw = NULL;
    if (plen > 0) {
        snprintf(ctx, sizeof(ctx), "connector:%s:%s", conn,
                 KEY_SSH_PASS_NAME);
        if ((pw = vault_unseal(v, ctx, pass, plen, err)) == NULL)
            return NULL;
    }
    snprintf(ctx, sizeof(ctx), "connector:%s:%s", conn, KEY_SSH_KEY_NAME);
    struct secret *s = vault_unseal(v, ctx, blob, len, err);
    EVP_PKEY *k = NULL;
    if (s != NULL && sshkey_parse(secret_data(s), secret_len(s), pw, &k,
                                  err) != 0)
        error_prefix(err, "connector %.64s: %s: ", conn, KEY_SSH_KEY_NAME);
    secret_free(s);
    secret_free(pw);
    return k;
}

int keytab_load_ssh(struct vault *v, const char *conn,
                    const unsigned char *blob, size_t len,
                    const unsigned char *pass, size_t plen,
                    uint32_t *handle, unsigned char **pub, size_t *publen,
                    struct error *err)
{
    *pub = NULL;
    size_t n = strlen(conn);
    if (n == 0 || n > KP_CONN_NAME_MAX || strchr(conn, ':') != NULL)
        return error_set(err, "refused: bad connector name for an SSH key");
    EVP_PKEY *k = keytab_ssh_open(v, conn, blob, len, pass, plen, err);
    if (k == NULL)
        return -1;
    unsigned char tag[32], *spki = NULL;
    size_t spkilen = 0;
    int rc = sshkey_public_blob(k, pub, publen, err);
    if (rc == 0 && keytab_tag(conn, n, *pub, *publen, tag) != 0)
        rc = error_openssl(err, "cannot hash a public key");
    if (rc != 0)
        EVP_PKEY_free(k);
    else    /* takes k */
        rc = keytab_add(k, KEY_USE_SSH, 1, tag, handle, &spki, &spkilen, err);
    if (rc != 0) {
        free(*pub);
        *pub = NULL;
        return -1;
    }
    free(spki);
    return 0;
}

int keytab_ssh_sign(uint32_t handle, uint32_t flags,
                    const unsigned char *data, size_t n, unsigned char *sig,
                    size_t *siglen, struct error *err)
{
    EVP_PKEY *k = keytab_get(handle, KEY_USE_SSH, err);
    if (k == NULL)
        return -1;
    unsigned char *out = NULL;
    size_t len = 0;
    int rc = sshkey_sign(k, flags, data, n, &out, &len, err);
    EVP_PKEY_free(k);
    if (rc == 0 && len > KP_SSH_SIG_MAX)
        rc = error_set(err, "an SSH signature of %zu bytes is too long", len);
    if (rc == 0) {
        memcpy(sig, out, len);
        *siglen = len;
    }
    free(out);
    return rc;
}

static const EVP_MD *keytab_md(uint32_t md)
{
    const char *name = keyproto_md_name(md);
    return name ? EVP_get_digestbyname(name) : NULL;
}

/* Padding, digest and salt of a signature on ctx. */
static int keytab_sign_setup(EVP_PKEY_CTX *ctx, EVP_PKEY *k,
                             const struct keyproto_params *p)
{
    const EVP_MD *md = keytab_md(p->md);
    int rsa = EVP_PKEY_is_a(k, "RSA");
    if (md == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx, md) != 1)
        return -1;
    if (!rsa)
        return p->pad == KP_PAD_NONE ? 0 : -1;
    if (p->pad == KP_PAD_PKCS1)
        return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
               ? 0 : -1;
    if (p->pad != KP_PAD_PSS)
        return -1;
    const EVP_MD *mgf1 = p->mgf1 ? keytab_md(p->mgf1) : md;
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, p->saltlen) == 1 &&
           mgf1 != NULL && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1) == 1
           ? 0 : -1;
}

int keytab_sign(uint32_t handle, const struct keyproto_params *p,
                const unsigned char *tbs, size_t n, unsigned char *sig,
                size_t *siglen, struct error *err)
{
    if (n != keyproto_md_size(p->md) || n == 0)
        return error_set(err, "refused: a signature needs a digest of the "
                         "size of its digest algorithm");
    EVP_PKEY *k = keytab_get(handle, KEY_USE_SIGN, err);
    if (k == NULL)
        return -1;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
    size_t len = 0;
    int ok = ctx != NULL && keytab_sign_setup(ctx, k, p) == 0 &&
             EVP_PKEY_sign(ctx, NULL, &len, tbs, n) == 1 &&
             len <= KP_SIG_MAX &&
             EVP_PKEY_sign(ctx, sig, &len, tbs, n) == 1;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(k);
    if (!ok)
        return error_openssl(err, "the vault could not sign");
    *siglen = len;
    return 0;
}

/* Padding (and OAEP digests and label) of a decryption on ctx. */
static int keytab_decrypt_setup(EVP_PKEY_CTX *ctx,
                                const struct keyproto_params *p,
                                const unsigned char *label, size_t llen)
{
    if (EVP_PKEY_decrypt_init(ctx) != 1)
        return -1;
    if (p->pad == KP_PAD_PKCS1)
        return llen == 0 &&
               EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
               ? 0 : -1;
    if (p->pad != KP_PAD_OAEP)
        return -1;
    const EVP_MD *md = p->md ? keytab_md(p->md) : EVP_sha1();
    const EVP_MD *mgf1 = p->mgf1 ? keytab_md(p->mgf1) : md;
    if (md == NULL || mgf1 == NULL ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1) != 1)
        return -1;
    if (llen == 0)
        return 0;
    unsigned char *copy = OPENSSL_memdup(label, llen);  /* ctx takes it */
    if (copy == NULL ||
        EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, copy, (int)llen) != 1) {
        OPENSSL_free(copy);
        return -1;
    }
    return 0;
}

int keytab_decrypt(uint32_t handle, const struct keyproto_params *p,
                   const unsigned char *label, size_t llen,
                   const unsigned char *in, size_t n, unsigned char *out,
                   size_t *outlen, struct error *err)
{
    EVP_PKEY *k = keytab_get(handle, KEY_USE_DECRYPT, err);
    if (k == NULL)
        return -1;
    if (!EVP_PKEY_is_a(k, "RSA")) {
        EVP_PKEY_free(k);
        return error_set(err, "refused: key %u is not an RSA key",
                         (unsigned)handle);
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
    size_t len = 0;
    int ok = ctx != NULL && keytab_decrypt_setup(ctx, p, label, llen) == 0 &&
             EVP_PKEY_decrypt(ctx, NULL, &len, in, n) == 1 &&
             len <= KP_CIPHER_MAX &&
             EVP_PKEY_decrypt(ctx, out, &len, in, n) == 1;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(k);
    if (!ok)
        return error_openssl(err, "the vault could not decrypt");
    *outlen = len;
    return 0;
}

void keytab_clear(void)
{
    pthread_mutex_lock(&keytab.lock);
    for (size_t i = 0; i < keytab.n; i++)
        EVP_PKEY_free(keytab.e[i].key);
    memset(keytab.e, 0, sizeof(keytab.e));
    keytab.n = 0;
    keytab.nclient = 0;
    pthread_mutex_unlock(&keytab.lock);
}
