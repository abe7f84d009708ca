/*
 * fuzz_jwt.c - libFuzzer target for the JWT / JWKS code of src/auth/jwt.c,
 * which reads what an identity provider (or an attacker posing as a
 * browser's callback) hands Wharf during an OIDC login (R12, R17).
 *
 * Each input is used three ways: as a compact JWS verified against a fixed
 * key set (an RSA-2048 and an EC P-256 key whose private halves were
 * thrown away; the seeds under corpus/jwt/ were signed with them, so the
 * fuzzer starts past the signature check), as a claim set given straight
 * to jwt_check_claims (the signature cannot be forged, so this is how the
 * claim checks are reached), and as a JWKS document.
 *
 * Oracles beyond the sanitizers: every refusal has a message, no message
 * quotes the token's signature part, an accepted token has an object of
 * claims that passes jwt_check_claims again. Must never write anything.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/oidc.h"

static const char fixed_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rsa-1\",\"use\":\"sig\",\"alg\":"
    "\"RS256\",\"n\":\"sdN6xUvM6XHWqjFIhR9ELtfANHUkbqCqdZ0qozuWxE46v3kahV8u"
    "tWgiKRKYse4t5E7ZEE93a0UHmRr8_gMFNsknlbF345x-QO5TlxgRkS4RN8KWxbiQr2-bIu"
    "EqECy_1x-Hp4zGU1aFcYnMdFwImaJMPwhIgobHEALqAi-6dEbaAa_Re-VcyL_E9j83fQDG"
    "Q-Z63VfwN0YEvw7uVayxjBDrJJOwRD1T9u3H8xEDyXv95u5d9jV8r9lCcqwKx-B2s-51Ro"
    "MxqdOQYiVW3iP3k8z_snWAkVGGujlouI1j8HmKjWiEvK0LZCBRadB9X-E4A3cfyF8TbDQA"
    "Nol7zDj7VQ\",\"e\":\"AQAB\"},{\"kty\":\"EC\",\"kid\":\"ec-1\",\"crv\":"
    "\"P-256\",\"x\":\"qTpcToxpbCUgPyqXjsgqdMhFXRgcPuLxr45jZX0Db3E\",\"y\":"
    "\"AoXEUEvmfigCHqAcywXP_YhG9yd5Kj9c5WyorP6yX80\"}]}";

static const struct jwt_expect fixed_want = {
    "https://idp.example.test", "wharf", "fuzz-nonce", 1700000000, 60};

static const struct jwt_keyset *fixed_keys(void)
{
    static struct jwt_keyset *ks;
    if (ks == NULL && jwt_keyset_parse(fixed_jwks, strlen(fixed_jwks), &ks,
                                       NULL) != JWT_OK)
        abort();
    return ks;
}

static void check_message(enum jwt_rc rc, const struct error *err,
                          const uint8_t *data, size_t size)
{
    if (rc == JWT_OK)
        return;
    if (err->msg[0] == '\0' ||
        strnlen(err->msg, sizeof(err->msg)) == sizeof(err->msg))
        abort();
    /* the signature part (after the last dot) is never quoted */
    const uint8_t *dot = memrchr(data, '.', size);
    if (dot != NULL && data + size - (dot + 1) >= 12 &&
        memmem(err->msg, strlen(err->msg), dot + 1, 12) != NULL)
        abort();
}

static void fuzz_token(const uint8_t *data, size_t size)
{
    struct error err = {0};
    json_t *claims = NULL;
    enum jwt_rc rc = jwt_verify((const char *)data, size, fixed_keys(),
                                &fixed_want, &claims, &err);
    if (rc < JWT_ERROR || rc > JWT_BAD_CLAIMS)
        abort();
    check_message(rc, &err, data, size);
    if ((rc == JWT_OK) != (claims != NULL))
        abort();
    if (rc == JWT_OK &&
        (!json_is_object(claims) ||
         jwt_check_claims(claims, &fixed_want, &err) != JWT_OK))
        abort();
    json_decref(claims);
}

static void fuzz_claims(const uint8_t *data, size_t size)
{
    json_error_t je;
    json_t *claims = json_loadb((const char *)data, size,
                                JSON_REJECT_DUPLICATES, &je);
    if (claims == NULL)
        return;
    struct error err = {0};
    enum jwt_rc rc = jwt_check_claims(claims, &fixed_want, &err);
    if ((rc != JWT_OK && rc != JWT_BAD_CLAIMS) ||
        (rc != JWT_OK && err.msg[0] == '\0'))
        abort();
    json_decref(claims);
}

static void fuzz_jwks(const uint8_t *data, size_t size)
{
    struct jwt_keyset *ks = NULL;
    struct error err = {0};
    enum jwt_rc rc = jwt_keyset_parse((const char *)data, size, &ks, &err);
    if ((rc == JWT_OK) != (ks != NULL) ||
        (ks != NULL && (jwt_keyset_count(ks) == 0 ||
                        jwt_keyset_count(ks) > JWT_MAX_KEYS)) ||
        (rc != JWT_OK && err.msg[0] == '\0'))
        abort();
    jwt_keyset_free(ks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_token(data, size);
    fuzz_claims(data, size);
    fuzz_jwks(data, size);
    return 0;
}
