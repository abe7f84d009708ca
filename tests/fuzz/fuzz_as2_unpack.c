/*
 * fuzz_as2_unpack.c - libFuzzer target for as2_unpack (src/as2/message*.c):
 * a whole received AS2 request, the input being its HTTP header block,
 * an empty line and the body. AS2-From, AS2-To and Message-ID are added
 * when the input lacks them, so mutations reach the body. The policy
 * holds fixed test keys (embedded below: 1024-bit RSA made for this
 * target only, so private-key operations stay cheap), allows every
 * algorithm and bounds the payload at 1 MiB.
 *
 * Besides the sanitizers it checks (abort() on violation):
 *   - success: a MIC, the payload byte count equal to what was written and
 *     within the limit, at most three layers, a filename without '/',
 *     '\\' or control characters, and an MDN that can be built (signed
 *     with the test key when the sender asked for it);
 *   - failure: a named RFC 4130 MDN error (or the unsupported-MIC-algorithm
 *     failure), no MIC, and an error sentence.
 * Seeds: tests/fuzz/corpus/as2_unpack/ (messages packaged with these keys).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "as2/message.h"

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
static const char ALICE_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICeQIBADANBgkqhkiG9w0BAQEFAASCAmMwggJfAgEAAoGBAKujkjGn0awLwmiJ\n"
    "A6tsmu6N/oafrZ0EWUe0qZqoyqNJBNvcYSlFn0mdh8x9SoL72rhYjsFVP5lpTM53\n"
    "XtUFwxlP0jYQO37EFsICJAUmN/3ALRZSeOEY+H5SZglPwJFCwpd3qPgWaXoa/yJ/\n"
    "QPntZJodCoSn57C0VQmsVzflpq61AgMBAAECgYEAnSKYMgug4nC1n/xoNqWsReAL\n"
    "eHZxfIHBtusIJ0aGlezAnQRqk11hEgU9kRHXiIlI2WKB9y+zlSCZJ6CTWlT3IhJl\n"
    "kl+QYq788jGNP8IMPGhvQPXX44So/jZYhYFOAO76zLkWAM6OtTHrIAeu8TX5Ls8q\n"
    "a/6oBr6VR2aE3RHHxsECQQDTHFPqq4erpwDheg/s5zNAVnrnJEP1t6HlYCqlVlM9\n"
    "jhRp/qafkL6ff2GYDGYJCjIhPwGOMvqwwvG1pv0Eos2lAkEA0CKgXsAfccQ8K25m\n"
    "xff36Esz20k9zbujD/mcsbI3g30ons/2z4zFziT2Osp3+aAbyWQZN3qm2xvuPow0\n"
    "EzWv0QJBALkyHJu9JiN7OdaTUe0tVVSXiPHEaqngEfI6zq6EcDmLrnTdpCZOwCsD\n"
    "gAX2unwrqZZow2CPcEQogAovF789YtECQQCsiLe2M78dONXEDv3FCByKhKSVGC7S\n"
    "d8Phf0Lkjt6z8jGVDMIFJSXoD/3JmINB+/ZsyLyan+LnaUzirqiQcAWxAkEAt3zX\n"
    "8qXsyosxKwkVi4WeXAamfDRx9otTTWeMJJ0uHvazPV3Slckl6u+7e3Mq507+VqTh\n"
    "b3CoJcxDRJom1SMEiA==\n"
    "-----END PRIVATE KEY-----\n";
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

#define MAX_PAYLOAD (1u << 20)

static EVP_PKEY *alice_key, *bob_key;
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
    alice_key = pem_read(ALICE_KEY, 1);
    bob_cert = pem_read(BOB_CERT, 0);
    bob_key = pem_read(BOB_KEY, 1);
    return 0;
}

static void check_success(const struct as2_unpacked *info, BIO *payload)
{
    char *p;
    long n = BIO_get_mem_data(payload, &p);
    if (info->mic[0] == '\0' || n < 0 || (uint64_t)n != info->payload_bytes ||
        info->payload_bytes > MAX_PAYLOAD || info->nlayers > 3 ||
        info->mdn_error != MDN_ERROR_NONE)
        abort();
    for (const char *q = info->filename; *q; q++)
        if (*q == '/' || *q == '\\' || (unsigned char)*q < 0x20)
            abort();
    struct as2_signer s = {bob_cert, bob_key, AS2_DIGEST_SHA256,
                           AS2_SIG_PKCS1};
    struct as2_mdn_opts mo = {NULL, "fuzz", &s, NULL};
    struct as2_mdn_built built;
    struct error err;
    BIO *out = BIO_new(BIO_s_mem());
    if (out == NULL)
        return;
    if (as2_mdn_make(&mo, info, MDN_ERROR_NONE, NULL, out, &built,
                     &err) != 0)
        abort();
    as2_mdn_built_free(&built);
    BIO_free(out);
}

static void check_failure(const struct as2_unpacked *info,
                          const struct error *err)
{
    if (info->mic[0] != '\0' || err->msg[0] == '\0')
        abort();
    if (info->unsupported_micalg ? info->mdn_error != MDN_ERROR_NONE
                                 : mdn_error_name(info->mdn_error) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mime_headers h;
    size_t off = 0;
    mime_headers_init(&h);
    if (mime_headers_parse(&h, (const char *)data, size, &off, NULL) != 0) {
        mime_headers_free(&h);
        return 0;
    }
    if (mime_header_get(&h, "AS2-From") == NULL)
        mime_headers_add(&h, "AS2-From", "alice", NULL);
    if (mime_header_get(&h, "AS2-To") == NULL)
        mime_headers_add(&h, "AS2-To", "bob", NULL);
    if (mime_header_get(&h, "Message-ID") == NULL)
        mime_headers_add(&h, "Message-ID", "<fuzz@wharf>", NULL);

    struct as2_key keys[] = {{bob_key, bob_cert}};
    X509 *certs[] = {alice_cert};
    struct as2_policy pol = {0};
    pol.partner = "alice";
    pol.keys = keys;
    pol.nkeys = 1;
    pol.certs = certs;
    pol.ncerts = 1;
    pol.digests = AS2_DIGEST_BIT(AS2_DIGEST_SHA1) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA256) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA384) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA512);
    pol.ciphers = 0xffu;
    pol.max_size = MAX_PAYLOAD;

    BIO *body = BIO_new_mem_buf(data + off, (int)(size - off));
    BIO *payload = BIO_new(BIO_s_mem());
    if (body != NULL && payload != NULL) {
        struct as2_unpacked info;
        struct error err = {0};
        if (as2_unpack(&pol, &h, body, payload, &info, &err) == 0)
            check_success(&info, payload);
        else
            check_failure(&info, &err);
    }
    BIO_free(body);
    BIO_free(payload);
    mime_headers_free(&h);
    ERR_clear_error();
    return 0;
}
