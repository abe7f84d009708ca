/*
 * cert.c - the self-signed listener certificate that `wharf init` makes
 * (DATA/tls/cert.pem and DATA/tls/key.pem): ECDSA P-256, SHA-256, one year,
 * SAN IP:127.0.0.1 + DNS:localhost + DNS:<host name>.
 *
 * Owns the creation of those two files only. It must never overwrite an
 * existing key or certificate, never write the key with a mode wider than
 * 0600, and never leave key bytes in freed memory (the PEM buffer is
 * cleansed). The key is private material: R11 wants it encrypted at rest;
 * until the vault can seal it, it relies on mode 0600 inside the 0700 data
 * directory.
 */
#include "net/tls.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "util/fsx.h"

/* A host name usable as a DNS SAN: letters, digits, '-' and '.', not
 * "localhost" (already present), at most 253 characters. */
static int cert_host_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253 || strcmp(h, "localhost") == 0 || h[0] == '.' ||
        h[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
            return 0;
    return 1;
}

static int cert_add_ext(X509 *x, int nid, const char *value,
                        struct error *err)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return error_openssl(err, "cannot make a certificate extension");
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : error_openssl(err, "cannot add a certificate extension");
}

static int cert_extensions(X509 *x, const char *host, struct error *err)
{
    char san[320];
    if (host && cert_host_ok(host))
        snprintf(san, sizeof(san), "IP:127.0.0.1,DNS:localhost,DNS:%s", host);
    else
        snprintf(san, sizeof(san), "IP:127.0.0.1,DNS:localhost");
    if (cert_add_ext(x, NID_basic_constraints, "critical,CA:FALSE", err) < 0 ||
        cert_add_ext(x, NID_key_usage, "critical,digitalSignature", err) < 0 ||
        cert_add_ext(x, NID_ext_key_usage, "serverAuth", err) < 0 ||
        cert_add_ext(x, NID_subject_key_identifier, "hash", err) < 0 ||
        cert_add_ext(x, NID_subject_alt_name, san, err) < 0)
        return -1;
    return 0;
}

static int cert_name(X509 *x, const char *host, struct error *err)
{
    const char *cn = (host && cert_host_ok(host)) ? host : "localhost";
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                    (const unsigned char *)"Wharf", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_issuer_name(x, name))
        return error_openssl(err, "cannot name the certificate");
    return 0;
}

/* Version 3, a random positive 127-bit serial, validity from an hour ago
 * (clock skew) to `days` from now. */
static int cert_basics(X509 *x, int days, struct error *err)
{
    BIGNUM *bn = BN_new();
    int ok = bn && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
             X509_set_version(x, X509_VERSION_3) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400);
    BN_free(bn);
    return ok ? 0 : error_openssl(err, "cannot set up the certificate");
}

static X509 *cert_make(EVP_PKEY *key, const char *host, int days,
                       struct error *err)
{
    X509 *x = X509_new();
    if (x == NULL) {
        error_openssl(err, "out of memory");
        return NULL;
    }
    if (cert_basics(x, days, err) < 0 || !X509_set_pubkey(x, key) ||
        cert_name(x, host, err) < 0 || cert_extensions(x, host, err) < 0) {
        if (err && err->msg[0] == '\0')
            error_openssl(err, "cannot build the certificate");
        X509_free(x);
        return NULL;
    }
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        error_openssl(err, "cannot sign the certificate");
        X509_free(x);
        return NULL;
    }
    return x;
}

/* PEM of the key or the certificate into path; the buffer is cleansed. */
static int cert_write_pem(const char *path, EVP_PKEY *key, X509 *x,
                          mode_t mode, struct error *err)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return error_openssl(err, "out of memory");
    int ok = key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(b, x);
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    int rc = (ok && len > 0)
                 ? fsx_write_atomic(path, data, (size_t)len, mode, err)
                 : error_openssl(err, "cannot encode PEM");
    if (data && len > 0)
        OPENSSL_cleanse(data, (size_t)len);
    BIO_free(b);
    return rc;
}

static int cert_absent(const char *path, struct error *err)
{
    if (access(path, F_OK) == 0)
        return error_set(err, "%s already exists; not overwriting it", path);
    return 0;
}

int tls_selfsigned_create(const char *cert_path, const char *key_path,
                          const char *hostname, int days, struct error *err)
{
    if (cert_absent(cert_path, err) < 0 || cert_absent(key_path, err) < 0)
        return -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL)
        return error_openssl(err, "cannot generate an ECDSA P-256 key");
    X509 *x = cert_make(key, hostname, days, err);
    int rc = -1;
    if (x && cert_write_pem(key_path, key, NULL, 0600, err) == 0 &&
        cert_write_pem(cert_path, NULL, x, 0644, err) == 0)
        rc = 0;
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

int tls_init_data_dir(const char *dir, struct error *err)
{
    char tdir[4200], cert[4300], key[4300], host[256] = "";
    if ((size_t)snprintf(tdir, sizeof(tdir), "%s/tls", dir) >= sizeof(tdir))
        return error_set(err, "data directory path is too long");
    snprintf(cert, sizeof(cert), "%s/cert.pem", tdir);
    snprintf(key, sizeof(key), "%s/key.pem", tdir);
    if (mkdir(tdir, 0700) < 0)
        return error_errno(err, errno, "cannot create %s", tdir);
    if (gethostname(host, sizeof(host) - 1) < 0)
        host[0] = '\0';
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (tls_selfsigned_create(cert, key, host, 365, err) < 0)
        return -1;
    return fsx_fsync_dir(tdir, err);
}
