/*
 * fuzz_as2_keys.h - the fixed test keys of the AS2 fuzz targets
 * (fuzz_as2_unpack.c, fuzz_cms.c): alice's and bob's 1024-bit RSA keys and
 * self-signed certificates (O=Wharf Fuzz), made for the fuzz targets only
 * so private-key operations stay cheap, and their loading. The seeds in
 * tests/fuzz/corpus/as2_unpack/ and tests/fuzz/corpus/cms/ were made with
 * these keys: replacing them means remaking those seeds. For the fuzz
 * targets only (a header, so scripts/fuzz.sh, which builds
 * tests/fuzz/fuzz_*.c, does not take it for a target).
 */
#ifndef WHARF_FUZZ_AS2_KEYS_H
#define WHARF_FUZZ_AS2_KEYS_H

#include <stdlib.h>

#include <openssl/pem.h>

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

static EVP_PKEY *alice_key, *bob_key;
static X509 *alice_cert, *bob_cert;

/* A PEM key (key != 0) or certificate; abort() when it does not parse. */
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

/* Parse the four PEM blocks into alice_key, alice_cert, bob_key and
 * bob_cert (from LLVMFuzzerInitialize). */
static void load_as2_keys(void)
{
    alice_cert = pem_read(ALICE_CERT, 0);
    alice_key = pem_read(ALICE_KEY, 1);
    bob_cert = pem_read(BOB_CERT, 0);
    bob_key = pem_read(BOB_KEY, 1);
}

#endif
