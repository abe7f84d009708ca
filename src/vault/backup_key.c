/*
 * backup_key.c - the key block of a backup for a backup public key (R20):
 * the content key and the keystore, in CMS AuthEnvelopedData to one
 * recipient certificate (see vault_backup.h for the construction).
 *
 * Plaintext of the block (text, LF line ends):
 *   wharf-backup-key v1
 *   content-key <64 lowercase hex>
 *   <the keystore file, as keystore.c writes it>
 *
 * It owns what one call allocates; every buffer that holds key text is a
 * secure-memory BIO or wiped before it is freed. It must never put key
 * bytes in an error, never let a private key object leave a call, and
 * never return a content key or keystore whose GCM tag did not verify
 * (CMS_decrypt checks it before anything is parsed).
 */
#include "vault/vault_backup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "util/secret.h"
#include "vault/vault_internal.h"

#define BK_MAGIC "wharf-backup-key v1\ncontent-key "
#define BK_PLAIN_MAX (VAULT_KEYSTORE_TEXT_MAX + 128)

/* Hex SHA-256 of pk's DER SubjectPublicKeyInfo into fp. */
static int bk_spki_sha256(EVP_PKEY *pk, char fp[65], struct error *err)
{
    unsigned char *der = NULL, md[32];
    unsigned int n = 0;
    int len = i2d_PUBKEY(pk, &der);
    int ok = len > 0 && EVP_Digest(der, (size_t)len, md, &n, EVP_sha256(),
                                   NULL) == 1;
    OPENSSL_free(der);
    if (!ok)
        return error_openssl(err, "cannot hash the backup public key");
    keystore_hex(md, 32, fp);
    return 0;
}

static X509 *bk_cert_load(const char *path, struct error *err)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *c = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (c == NULL)
        error_openssl(err, "cannot read the backup certificate");
    if (c == NULL)
        error_prefix(err, "%s (a PEM certificate of the backup key; make one "
                     "with `openssl req -x509 -new -key backup.key -subj "
                     "/CN=wharf-backup -days 3650 -out backup.crt`)", path);
    return c;
}

/* The recipient: RSA-OAEP (SHA-256) for RSA, ECDH for EC keys. */
static int bk_recipient(CMS_ContentInfo *cms, X509 *cert, struct error *err)
{
    int type = EVP_PKEY_get_base_id(X509_get0_pubkey(cert));
    if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC)
        return error_set(err, "the backup certificate's key must be RSA "
                         "(RSA-OAEP) or EC P-256/P-384 (ECDH)");
    int rsa = type == EVP_PKEY_RSA;
    CMS_RecipientInfo *ri = CMS_add1_recipient_cert(
        cms, cert, CMS_BINARY | (rsa ? CMS_KEY_PARAM : 0));
    EVP_PKEY_CTX *pctx = ri != NULL && rsa
                         ? CMS_RecipientInfo_get0_pkey_ctx(ri) : NULL;
    int ok = ri != NULL;
    if (ok && rsa)
        ok = pctx != NULL &&
             EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) > 0;
    return ok ? 0 : error_openssl(err, "cannot encrypt to the backup "
                                  "certificate");
}

/* The block's plaintext into buf (BK_PLAIN_MAX): its length, or 0. */
static size_t bk_plain(struct vault *v, const struct secret *ckey, char *buf,
                       struct error *err)
{
    char hex[2 * VAULT_BACKUP_KEY_LEN + 1];
    if (secret_len(ckey) != VAULT_BACKUP_KEY_LEN) {
        error_set(err, "internal: a backup content key has 32 bytes");
        return 0;
    }
    keystore_hex(secret_data(ckey), VAULT_BACKUP_KEY_LEN, hex);
    size_t n = (size_t)snprintf(buf, BK_PLAIN_MAX, BK_MAGIC "%s\n", hex);
    OPENSSL_cleanse(hex, sizeof(hex));
    size_t k = keystore_text(v, buf + n, BK_PLAIN_MAX - n);
    if (k == 0) {
        error_set(err, "this command cannot read the keystore (it runs "
                  "beside the key process?)");
        return 0;
    }
    return n + k;
}

static int bk_encrypt(X509 *cert, const char *plain, size_t n,
                      unsigned char **der, size_t *dlen, struct error *err)
{
    BIO *in = BIO_new_mem_buf(plain, (int)n);
    CMS_ContentInfo *cms = in == NULL ? NULL : CMS_encrypt(
        NULL, NULL, EVP_aes_256_gcm(), CMS_BINARY | CMS_PARTIAL);
    int rc = cms == NULL ? error_openssl(err, "cannot prepare the backup "
                                         "key block")
                         : bk_recipient(cms, cert, err);
    if (rc == 0 && CMS_final(cms, in, NULL, CMS_BINARY) != 1)
        rc = error_openssl(err, "cannot encrypt the backup key block");
    unsigned char *out = NULL;
    int len = rc == 0 ? i2d_CMS_ContentInfo(cms, &out) : 0;
    if (rc == 0 && len <= 0)
        rc = error_openssl(err, "cannot encode the backup key block");
    if (rc == 0 && (*der = malloc((size_t)len)) == NULL)
        rc = error_set(err, "out of memory");
    if (rc == 0) {
        memcpy(*der, out, (size_t)len);
        *dlen = (size_t)len;
    }
    OPENSSL_free(out);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    return rc;
}

int vault_backup_wrap(struct vault *v, const char *cert_path,
                      const struct secret *ckey, unsigned char **der,
                      size_t *dlen, char fp[65], char *subject,
                      size_t subjn, struct error *err)
{
    *der = NULL;
    X509 *cert = bk_cert_load(cert_path, err);
    if (cert == NULL)
        return -1;
    int rc = bk_spki_sha256(X509_get0_pubkey(cert), fp, err);
    if (rc == 0) {
        X509_NAME_oneline(X509_get_subject_name(cert), subject, (int)subjn);
        for (char *p = subject; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
                *p = '?';
    }
    char *plain = rc == 0 ? OPENSSL_secure_zalloc(BK_PLAIN_MAX) : NULL;
    if (rc == 0 && plain == NULL)
        rc = error_set(err, "out of memory");
    size_t n = rc == 0 ? bk_plain(v, ckey, plain, err) : 0;
    if (rc == 0 && n == 0)
        rc = -1;
    if (rc == 0)
        rc = bk_encrypt(cert, plain, n, der, dlen, err);
    OPENSSL_secure_clear_free(plain, BK_PLAIN_MAX);
    X509_free(cert);
    return rc;
}

/* ---- opening ------------------------------------------------------------- */

static int bk_no_passphrase(char *buf, int size, int rw, void *u)
{
    (void)buf, (void)size, (void)rw, (void)u;
    return -1;
}

static EVP_PKEY *bk_key_load(const char *path, struct error *err)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *pk = b != NULL ? PEM_read_bio_PrivateKey(b, NULL,
                                                       bk_no_passphrase, NULL)
                             : NULL;
    BIO_free(b);
    if (pk == NULL) {
        error_openssl(err, "cannot read the backup private key");
        error_prefix(err, "%s (an unencrypted PEM private key; for an "
                     "encrypted one: openssl pkey -in KEY -out PLAIN.key)",
                     path);
    }
    return pk;
}

/* Split the plaintext: content key, then the keystore. */
static int bk_parse_plain(const char *p, size_t n, struct secret **ckey,
                          struct vault **v, struct error *err)
{
    size_t m = strlen(BK_MAGIC), hexlen = 2 * VAULT_BACKUP_KEY_LEN;
    if (n < m + hexlen + 1 || memcmp(p, BK_MAGIC, m) != 0 ||
        !keystore_is_hex(p + m, hexlen) || p[m + hexlen] != '\n')
        return error_set(err, "the backup's key block is not a Wharf key "
                         "block");
    *ckey = secret_new(VAULT_BACKUP_KEY_LEN);
    if (*ckey == NULL)
        return error_set(err, "out of memory");
    unsigned char *k = secret_data_mut(*ckey);
    for (size_t i = 0; i < VAULT_BACKUP_KEY_LEN; i++) {
        char two[3] = { p[m + 2 * i], p[m + 2 * i + 1], '\0' };
        k[i] = (unsigned char)strtoul(two, NULL, 16);
    }
    size_t off = m + hexlen + 1;
    *v = keystore_from_text(p + off, n - off, "(in the backup)", err);
    if (*v == NULL) {
        secret_free(*ckey);
        *ckey = NULL;
        return -1;
    }
    return 0;
}

static int bk_decrypt(EVP_PKEY *pk, const unsigned char *der, size_t dlen,
                      struct secret **ckey, struct vault **v,
                      struct error *err)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)dlen);
    if (cms == NULL || p != der + dlen) {
        CMS_ContentInfo_free(cms);
        ERR_clear_error();
        return error_set(err, "the backup's key block is not a CMS "
                         "structure (damaged?)");
    }
    BIO *out = BIO_new(BIO_s_secmem());
    int rc = out != NULL && CMS_decrypt(cms, pk, NULL, NULL, out,
                                        CMS_BINARY) == 1 ? 0 : -1;
    if (rc != 0) {
        ERR_clear_error();
        error_set(err, "the backup's key block does not open with this "
                  "private key (damaged, or written for another key)");
    }
    char *plain = NULL;
    long n = rc == 0 ? BIO_get_mem_data(out, &plain) : 0;
    if (rc == 0 && (n <= 0 || n > BK_PLAIN_MAX))
        rc = error_set(err, "the backup's key block has an unexpected size");
    if (rc == 0)
        rc = bk_parse_plain(plain, (size_t)n, ckey, v, err);
    BIO_free(out);                  /* secure memory: wiped on free */
    CMS_ContentInfo_free(cms);
    return rc;
}

int vault_backup_unwrap(const char *key_path, const char *fp,
                        const unsigned char *der, size_t dlen,
                        struct secret **ckey, struct vault **v,
                        struct error *err)
{
    char have[65];
    *ckey = NULL;
    *v = NULL;
    EVP_PKEY *pk = bk_key_load(key_path, err);
    if (pk == NULL)
        return -1;
    int rc = bk_spki_sha256(pk, have, err);
    if (rc == 0 && strcmp(have, fp) != 0)
        rc = error_set(err, "this backup was written for another key (its "
                       "public key SHA-256 is %s; the key in %s has %s)",
                       fp, key_path, have);
    if (rc == 0)
        rc = bk_decrypt(pk, der, dlen, ckey, v, err);
    EVP_PKEY_free(pk);
    return rc;
}
