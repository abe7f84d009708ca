/*
 * fuzz_cms.c - libFuzzer target for the streaming BER readers of the CMS
 * layer (src/as2/cms*.c): arbitrary bytes go to as2_cms_decrypt,
 * as2_cms_verify_attached and as2_cms_decompress (the paths that parse
 * the outer structure themselves and hand OpenSSL only small stubs), to
 * the detached verifiers (as the signature) and to as2_cms_type_of. The
 * keys are fixed test keys embedded below (1024-bit RSA made for the
 * fuzz targets only).
 *
 * Besides the sanitizers it checks (abort() on violation): decompression
 * never writes more than its limit, and every refusal fills the error.
 * Seeds: tests/fuzz/corpus/cms/ (DER made with these keys).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "as2/cms.h"

static const char ALICE_CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICKDCCAZGgAwIBAgIUJ+r5ST3xXn6/761pzpwh7l9YRpIwDQYJKoZIhvcNAQEL\n"
    "BQAwJTETMBEGA1UECgwKV2hhcmYgRnV6ejEOMAwGA1UEAwwFYWxpY2UwIBcNMjYx\n"
    "MTIzMTQ1NzI2WhgPMjEyNjEwMzAxNDU3MjZaMCUxEzARBgNVBAoMCldoYXJmIEZ1\n"
    "enoxDjAMBgNVBAMMBWFsaWNlMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCr\n"
    "o5Ixp9GsC8JoiQOrbJrujf6Gn62dBFlHtKmaqMqjSQTb3GEpRZ9JnYfMfUqC+9q4\n"
    "WI7BVT+ZaUzOd17VBcMZT9I2EDt+xBbCAiQFJjf9wC0WUnjhGPh+UmYJT8CRQsKX\n"
    "d6j4Fml6Gv8if0D57WSaHQqEp+ewtFUJrFc35aautQIDAQABo1MwUTAdBgNVHQ4E\n"
    "FgQUAMWgwqiRP4XHL5gx5ckeTM7MBB4wHwYDVR0jBBgwFoAUAMWgwqiRP4XHL5gx\n"
    "5ckeTM7MBB4wDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOBgQAwjJMW\n"
    "Q/ddmdZLBGM/VoJTrKeEeAkXe4PMPldJJweKMNypcRGy2BHW5ooUu+agaPzzT38L\n"
    "krFdsuLHzoPBiFFpdhoehjOmnFEmrNXsGM/YccY1pNvRsfWcJW7+nG8q01XaXT2H\n"
    "dfVAGlfNxf58wBZ0ByfeVRZXnk2mgrcDwtaePQ==\n"
    "-----END CERTIFICATE-----\n";
static const char BOB_CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICJDCCAY2gAwIBAgIUNFWCl6o31BFc/yXYOT7rW9FXFM8wDQYJKoZIhvcNAQEL\n"
    "BQAwIzETMBEGA1UECgwKV2hhcmYgRnV6ejEMMAoGA1UEAwwDYm9iMCAXDTI2MTEy\n"
    "MzE0NTcyNloYDzIxMjYxMDMwMTQ1NzI2WjAjMRMwEQYDVQQKDApXaGFyZiBGdXp6\n"
    "MQwwCgYDVQQDDANib2IwgZ8wDQYJKoZIhvcNAQEBBQADgY0AMIGJAoGBANPj+H4e\n"
    "KVXEUF0wOEwPiYTvkjcrdpfBe3QIXuYNsEPba2fPedRoQXZDUSiQm3mtxBAWDMfV\n"
    "p/Em4Khk2PrxE1zmyNiWWoTNVBKXVCC4eJaJu/U2GWEQ12PXMTjZEupA1mOTpkmq\n"
    "mdydNjFC0AhWoNs0p98kqxH6/i0+vjYoMcsVAgMBAAGjUzBRMB0GA1UdDgQWBBRX\n"
    "TPrkiJNT7oqtFAirFuOB9G5D6jAfBgNVHSMEGDAWgBRXTPrkiJNT7oqtFAirFuOB\n"
    "9G5D6jAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4GBAAIJUTcKrbjW\n"
    "r/7jhIBLcjtiJNEw5mq+h1JY+IxRB6by84KFuM8O2X7JCv972NEeOlrAP1tATPzJ\n"
    "ALTwEydwl6nY8ZbeMPvHNsEExJLqqBi/J5pFNmUp5bzcImRdhr17QMoNdAX6RzXJ\n"
    "n2ZPD2ueyLSZIScmm9uc8WCw4VMBOHK4\n"
    "-----END CERTIFICATE-----\n";
static const char BOB_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBANPj+H4eKVXEUF0w\n"
    "OEwPiYTvkjcrdpfBe3QIXuYNsEPba2fPedRoQXZDUSiQm3mtxBAWDMfVp/Em4Khk\n"
    "2PrxE1zmyNiWWoTNVBKXVCC4eJaJu/U2GWEQ12PXMTjZEupA1mOTpkmqmdydNjFC\n"
    "0AhWoNs0p98kqxH6/i0+vjYoMcsVAgMBAAECfxPdS26HZVilDuOtoZl/22SbERoa\n"
    "+QNBIFHAdyUaI2w5JdiVmtZO79Qme3VSGUFPCRJ4/rm9TgFNo8IlsjHUZ/wh5Ni7\n"
    "F1zJc0rDROHSFe4Pm/WEPiDSojU8n+AIhY3jAaHHX5VjBxHPrXdmbnPfMT89fjhr\n"
    "j/iwTbvEQD1tdgECQQD4JwU3wRjNiROW4IvwE17GvLFHOdlPDI8c5DHhvSdMDLXF\n"
    "eDiaLD3HfFQHewNNqmwdd08ee2uVxbKcvrt0T3GRAkEA2pdiCe3CoconZSIJKL02\n"
    "MpRil2NRuaqAxsEqncTT7s7QGMoznz4V4xbnEcFBzL/VJKD7ndYjt56kjNS+Ib2/\n"
    "RQJBALLZXLdcYoXwX8AEQpdbPpm58YNGPEru4E6QYSszaxkyp+eUyCbF8BjQkLd7\n"
    "f1wAkj+Cd/GePmIJxLuX8/7WKyECQF0MHY5uZ/AothZFo7J0wHJNWZ5ph6tJ2eFA\n"
    "7pwT4ccAv/IdeFXrvrNY12lmY1T9v4QFBrZMJg4OeKr+ECUauSUCQQDI0gI/Mg/W\n"
    "nCIUJ9Uy3BWYeaxX/ny9p18xENZe5x8zPPnHwWY+btsrrBnJ8Ijsjlsyy/QFMB/w\n"
    "B4NSsrrBb5g+\n"
    "-----END PRIVATE KEY-----\n";

#define MAX_OUT (1u << 20)

static EVP_PKEY *bob_key;
static X509 *alice_cert, *bob_cert;

static void *pem_read(const char *pem, int key)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    void *r = b == NULL ? NULL
              : key ? (void *)PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)
                    : (void *)PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (r == NULL)
        abort();
    return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    alice_cert = pem_read(ALICE_CERT, 0);
    bob_cert = pem_read(BOB_CERT, 0);
    bob_key = pem_read(BOB_KEY, 1);
    return 0;
}

/* Run one reader over data; out is a fresh memory BIO. */
static void one(int which, const uint8_t *data, size_t size)
{
    BIO *in = BIO_new_mem_buf(data, (int)size);
    BIO *out = BIO_new(BIO_s_mem());
    struct error err = {0};
    int rc = 0;
    if (in == NULL || out == NULL)
        goto done;
    if (which == 0) {
        struct as2_key keys[] = {{bob_key, bob_cert}};
        struct as2_decrypt_opts o = {keys, 1, 0};
        struct as2_decrypted d;
        rc = as2_cms_decrypt(&o, in, out, &d, &err);
    } else if (which == 1) {
        X509 *certs[] = {alice_cert};
        struct as2_trust t = {certs, 1, "alice", 0};
        struct as2_verified v;
        rc = as2_cms_verify_attached(&t, in, out, &v, &err);
    } else {
        uint64_t written = 0;
        rc = as2_cms_decompress(in, out, MAX_OUT, &written, &err);
        if (written > MAX_OUT || BIO_ctrl_pending(out) > MAX_OUT)
            abort();
    }
    if (rc != 0 && err.msg[0] == '\0')
        abort();
done:
    BIO_free(in);
    BIO_free(out);
    ERR_clear_error();
}

static void detached(const uint8_t *data, size_t size)
{
    static const char content[] = "Content-Type: text/plain\r\n\r\nhello";
    X509 *certs[] = {alice_cert};
    struct as2_trust t = {certs, 1, "alice", 0};
    struct error err = {0};
    BIO *c = BIO_new_mem_buf(content, (int)sizeof(content) - 1);
    if (c != NULL && as2_cms_verify_detached(&t, data, size, c, NULL,
                                             &err) == 0)
        abort();                /* nobody signed "hello" with alice's key */
    BIO_free(c);
    BIO *dg = as2_cms_digest_new(0, &err);
    if (dg != NULL) {
        BIO_write(dg, content, (int)sizeof(content) - 1);
        if (as2_cms_verify_digested(&t, data, size, dg, NULL, &err) == 0)
            abort();
        BIO_free_all(dg);
    }
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    (void)as2_cms_type_of(data, size);
    for (int i = 0; i < 3; i++)
        one(i, data, size);
    detached(data, size);
    return 0;
}
