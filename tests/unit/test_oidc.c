/*
 * test_oidc.c - OIDC single sign-on (R17): JWT verification against keys
 * made here (RSA-2048 and EC P-256, tokens signed here, ES256 as r||s),
 * base64url and PKCE, configuration and role mapping; then the network
 * half against a test identity provider (oidc_idp.py, HTTPS with a test CA
 * made here by the openssl CLI, on 127.0.0.1 only): discovery, the whole
 * authorization-code flow with PKCE, and every refusal the callback owes.
 */
#include "testutil.h"

#include "auth/oidc.h"
#include "net/oauth.h"
#include "util/log.h"
#include "util/secret.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define ISS "https://idp.example.test/realms/wharf"
#define AUD "wharf-console"
#define NONCE "n-0S6_WzA2Mj"
#define NOW 1700000000LL

/* ======================================================================
 * Keys, JWKS and tokens made by the test
 * ====================================================================== */

static EVP_PKEY *g_rsa, *g_ec, *g_rsa_small;
static char *g_jwks;

static char *b64u(const void *p, size_t n)
{
    char *out = malloc(jwt_b64url_len(n) + 1);
    assert_non_null(out);
    assert_int_equal(jwt_b64url_encode(p, n, out, jwt_b64url_len(n) + 1),
                     (long)jwt_b64url_len(n));
    return out;
}

static void set_b64_bn(json_t *jwk, const char *name, EVP_PKEY *k,
                       const char *param, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0);
    char *s = b64u(buf, (size_t)n);
    json_object_set_new(jwk, name, json_string(s));
    free(s);
    BN_free(bn);
}

static json_t *jwk_rsa(EVP_PKEY *k, const char *kid)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "kid", kid,
                          "use", "sig");
    set_b64_bn(j, "n", k, OSSL_PKEY_PARAM_RSA_N, 0);
    set_b64_bn(j, "e", k, OSSL_PKEY_PARAM_RSA_E, 0);
    return j;
}

static json_t *jwk_ec(EVP_PKEY *k, const char *kid)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
                          "kid", kid, "alg", "ES256");
    set_b64_bn(j, "x", k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    set_b64_bn(j, "y", k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    return j;
}

static int keys_setup(void **state)
{
    (void)state;
    g_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g_rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    if (g_rsa == NULL || g_ec == NULL || g_rsa_small == NULL)
        return -1;
    json_t *keys = json_array();
    json_array_append_new(keys, jwk_rsa(g_rsa, "rsa-1"));
    json_array_append_new(keys, jwk_ec(g_ec, "ec-1"));
    json_array_append_new(keys, jwk_rsa(g_rsa_small, "rsa-small"));
    /* an encryption key and a symmetric key: both must be ignored */
    json_t *enc = jwk_rsa(g_rsa, "rsa-enc");
    json_object_set_new(enc, "use", json_string("enc"));
    json_array_append_new(keys, enc);
    json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "kty", "oct",
                                          "kid", "hmac-1", "k", "c2VjcmV0"));
    json_t *doc = json_pack("{s:o}", "keys", keys);
    g_jwks = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return g_jwks == NULL ? -1 : 0;
}

static int keys_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_ec);
    EVP_PKEY_free(g_rsa_small);
    free(g_jwks);
    return 0;
}

/* The signature of input by key as JWS wants it (ES256: r||s). */
static char *jws_sign(EVP_PKEY *key, const char *input)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen,
                                    (const unsigned char *)input,
                                    strlen(input)), 1);
    EVP_MD_CTX_free(md);
    if (!EVP_PKEY_is_a(key, "EC"))
        return b64u(sig, siglen);
    const unsigned char *p = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
    assert_non_null(es);
    unsigned char rs[64];
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32), 32);
    ECDSA_SIG_free(es);
    return b64u(rs, 64);
}

/* header.payload of two JSON texts. */
static char *jws_input(const char *header, const char *payload)
{
    char *h = b64u(header, strlen(header));
    char *p = b64u(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%s.%s", h, p);
    free(h);
    free(p);
    return out;
}

/* input.signature-of-input */
static char *sign_input(EVP_PKEY *key, const char *input)
{
    char *sig = jws_sign(key, input);
    size_t n = strlen(input) + strlen(sig) + 2;
    char *tok = malloc(n);
    assert_non_null(tok);
    snprintf(tok, n, "%s.%s", input, sig);
    free(sig);
    return tok;
}

/* A whole token; key NULL: an empty signature part; claims is consumed. */
static char *make_token(const char *alg, const char *kid, json_t *claims,
                        EVP_PKEY *key)
{
    json_t *hdr = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
    if (kid != NULL)
        json_object_set_new(hdr, "kid", json_string(kid));
    char *h = json_dumps(hdr, JSON_COMPACT);
    char *c = json_dumps(claims, JSON_COMPACT);
    json_decref(hdr);
    json_decref(claims);
    char *input = jws_input(h, c);
    free(h);
    free(c);
    char *sig = key != NULL ? jws_sign(key, input) : strdup("");
    size_t n = strlen(input) + strlen(sig) + 2;
    char *tok = malloc(n);
    assert_non_null(tok);
    snprintf(tok, n, "%s.%s", input, sig);
    free(input);
    free(sig);
    return tok;
}

static json_t *claims_std(void)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "iss", ISS,
                     "sub", "248289761001", "aud", AUD, "exp",
                     (json_int_t)(NOW + 300), "iat", (json_int_t)(NOW - 5),
                     "nonce", NONCE, "email", "ada@example.test");
}

static json_t *claims_with(const char *name, json_t *value)
{
    json_t *c = claims_std();
    json_object_set_new(c, name, value);
    return c;
}

static enum jwt_rc verify(const char *tok, struct error *err)
{
    struct jwt_expect want = {ISS, AUD, NONCE, NOW, 60};
    error_clear(err);
    return jwt_verify_jwks(tok, strlen(tok), g_jwks, strlen(g_jwks), &want,
                           NULL, err);
}

/* verify gives rc and a message containing text ("" for JWT_OK). */
static void check_token(char *tok, enum jwt_rc rc, const char *text)
{
    struct error err = {0};
    enum jwt_rc got = verify(tok, &err);
    if (got != rc || strstr(err.msg, text) == NULL)
        fail_msg("expected rc %d \"%s\", got rc %d \"%s\"", rc, text, got,
                 err.msg);
    free(tok);
}

/* ======================================================================
 * JWT verification
 * ====================================================================== */

static void test_r17_jwt_rs256_valid_accepted(void **state)
{
    (void)state;
    char *tok = make_token("RS256", "rsa-1", claims_std(), g_rsa);
    struct jwt_expect want = {ISS, AUD, NONCE, NOW, 60};
    struct error err = {0};
    json_t *claims = NULL;
    assert_int_equal(jwt_verify_jwks(tok, strlen(tok), g_jwks,
                                     strlen(g_jwks), &want, &claims, &err),
                     JWT_OK);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")),
                        "248289761001");
    json_decref(claims);
    free(tok);
    /* without a kid: the only RSA key of the set that is usable */
    check_token(make_token("RS256", NULL, claims_std(), g_rsa), JWT_OK, "");
}

static void test_r17_jwt_es256_valid_accepted(void **state)
{
    (void)state;
    check_token(make_token("ES256", "ec-1", claims_std(), g_ec), JWT_OK,
                   "");
    /* aud as an array with azp, exp as a real number, nbf in the past */
    json_t *c = claims_with("aud", json_pack("[s, s]", AUD, "other-api"));
    json_object_set_new(c, "azp", json_string(AUD));
    json_object_set_new(c, "exp", json_real((double)NOW + 10.5));
    json_object_set_new(c, "nbf", json_integer(NOW - 10));
    check_token(make_token("ES256", "ec-1", c, g_ec), JWT_OK, "");
}

static void test_r17_jwt_bad_signature_refused(void **state)
{
    (void)state;
    char *tok = make_token("RS256", "rsa-1", claims_std(), g_rsa);
    char *last = strrchr(tok, '.') + 5;     /* a byte inside the signature */
    *last = *last == 'A' ? 'B' : 'A';
    check_token(tok, JWT_BAD_SIGNATURE, "signature does not verify");

    tok = make_token("ES256", "ec-1", claims_std(), g_ec);
    last = strrchr(tok, '.') + 10;
    *last = *last == 'A' ? 'B' : 'A';
    check_token(tok, JWT_BAD_SIGNATURE, "signature does not verify");

    /* the signature cut off */
    tok = make_token("RS256", "rsa-1", claims_std(), g_rsa);
    strrchr(tok, '.')[1] = '\0';
    check_token(tok, JWT_BAD_SIGNATURE, "wrong length for its RSA key");

    /* a payload changed after signing */
    tok = make_token("RS256", "rsa-1", claims_std(), g_rsa);
    char *good = make_token("RS256", "rsa-1",
                            claims_with("sub", json_string("admin")), g_rsa);
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    char *gdot1 = strchr(good, '.'), *gdot2 = strrchr(good, '.');
    size_t n = strlen(tok) + strlen(good);
    char *mixed = malloc(n);
    snprintf(mixed, n, "%.*s%.*s%s", (int)(dot1 - tok), tok,
             (int)(gdot2 - gdot1), gdot1, dot2);
    free(tok);
    free(good);
    check_token(mixed, JWT_BAD_SIGNATURE, "signature does not verify");

    /* ES256 with the DER signature OpenSSL makes, not r||s */
    char *input = jws_input("{\"alg\":\"ES256\",\"kid\":\"ec-1\"}",
                            "{\"sub\":\"x\"}");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[128];
    size_t siglen = sizeof(sig);
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, g_ec),
                     1);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen,
                                    (unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    char *s = b64u(sig, siglen);
    n = strlen(input) + strlen(s) + 2;
    char *der_tok = malloc(n);
    snprintf(der_tok, n, "%s.%s", input, s);
    free(input);
    free(s);
    check_token(der_tok, JWT_BAD_SIGNATURE, "64-byte ES256");
}

static void test_r17_jwt_wrong_audience_refused(void **state)
{
    (void)state;
    check_token(make_token("RS256", "rsa-1",
                              claims_with("aud", json_string("other")), g_rsa),
                   JWT_BAD_CLAIMS, "not meant for this client (audience)");
    check_token(make_token("RS256", "rsa-1",
                              claims_with("aud", json_pack("[s]", "x")),
                              g_rsa),
                   JWT_BAD_CLAIMS, "not meant for this client (audience)");
    /* several audiences and no azp; an azp naming another party */
    check_token(make_token("RS256", "rsa-1",
                              claims_with("aud", json_pack("[s,s]", AUD, "x")),
                              g_rsa),
                   JWT_BAD_CLAIMS, "several audiences but no authorized");
    check_token(make_token("RS256", "rsa-1",
                              claims_with("azp", json_string("x")), g_rsa),
                   JWT_BAD_CLAIMS, "issued to another party (azp)");
}

static void test_r17_jwt_wrong_issuer_refused(void **state)
{
    (void)state;
    check_token(make_token("RS256", "rsa-1",
                              claims_with("iss", json_string(ISS "/")), g_rsa),
                   JWT_BAD_CLAIMS, "issuer is not the configured issuer");
    json_t *c = claims_std();
    json_object_del(c, "iss");
    check_token(make_token("ES256", "ec-1", c, g_ec), JWT_BAD_CLAIMS,
                   "issuer is not the configured issuer");
}

static void test_r17_jwt_expired_refused(void **state)
{
    (void)state;
    /* the leeway is 60 s: exp = now - 59 passes, now - 60 does not */
    check_token(make_token("RS256", "rsa-1",
                              claims_with("exp", json_integer(NOW - 59)),
                              g_rsa), JWT_OK, "");
    check_token(make_token("RS256", "rsa-1",
                              claims_with("exp", json_integer(NOW - 60)),
                              g_rsa), JWT_BAD_CLAIMS, "the token has expired");
    check_token(make_token("RS256", "rsa-1",
                              claims_with("exp", json_string("never")), g_rsa),
                   JWT_BAD_CLAIMS, "no valid expiry (exp)");
    check_token(make_token("RS256", "rsa-1",
                              claims_with("nbf", json_integer(NOW + 61)),
                              g_rsa), JWT_BAD_CLAIMS, "not valid yet (nbf)");
}

static void test_r17_jwt_iat_in_future_refused(void **state)
{
    (void)state;
    check_token(make_token("RS256", "rsa-1",
                              claims_with("iat", json_integer(NOW + 60)),
                              g_rsa), JWT_OK, "");
    check_token(make_token("RS256", "rsa-1",
                              claims_with("iat", json_integer(NOW + 61)),
                              g_rsa),
                   JWT_BAD_CLAIMS, "issued in the future (iat)");
    json_t *c = claims_std();
    json_object_del(c, "iat");
    check_token(make_token("RS256", "rsa-1", c, g_rsa), JWT_BAD_CLAIMS,
                   "no valid issue time (iat)");
}

static void test_r17_jwt_wrong_nonce_refused(void **state)
{
    (void)state;
    check_token(make_token("RS256", "rsa-1",
                              claims_with("nonce", json_string(NONCE "x")),
                              g_rsa),
                   JWT_BAD_CLAIMS, "nonce does not match this login");
    json_t *c = claims_std();
    json_object_del(c, "nonce");
    check_token(make_token("ES256", "ec-1", c, g_ec), JWT_BAD_CLAIMS,
                   "nonce does not match this login");
    /* no sub */
    c = claims_std();
    json_object_del(c, "sub");
    check_token(make_token("ES256", "ec-1", c, g_ec), JWT_BAD_CLAIMS,
                   "no valid subject (sub)");
}

static void test_r17_jwt_alg_none_refused(void **state)
{
    (void)state;
    check_token(make_token("none", NULL, claims_std(), NULL),
                   JWT_UNSUPPORTED, "unsigned (alg none)");
    /* with a (meaningless) signature part and odd case */
    char *tok = make_token("None", "rsa-1", claims_std(), g_rsa);
    check_token(tok, JWT_UNSUPPORTED, "unsigned (alg none)");
}

static void test_r17_jwt_alg_hs256_refused(void **state)
{
    (void)state;
    /* the classic confusion: HMAC keyed with the public key's JWKS text */
    json_t *hdr = json_pack("{s:s, s:s}", "alg", "HS256", "kid", "rsa-1");
    char *h = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    char *input = jws_input(h, "{\"iss\":\"" ISS "\"}");
    unsigned char mac[32];
    size_t maclen = 0;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, g_jwks,
                              strlen(g_jwks), (unsigned char *)input,
                              strlen(input), mac, sizeof(mac), &maclen));
    char *s = b64u(mac, maclen);
    size_t n = strlen(input) + strlen(s) + 2;
    char *tok = malloc(n);
    snprintf(tok, n, "%s.%s", input, s);
    free(h);
    free(input);
    free(s);
    check_token(tok, JWT_UNSUPPORTED,
                   "algorithm HS256 is not accepted (only RS256 and ES256");
    check_token(make_token("PS256", "rsa-1", claims_std(), g_rsa),
                   JWT_UNSUPPORTED, "algorithm PS256 is not accepted");
    /* a "crit" header is refused */
    char *in2 = jws_input("{\"alg\":\"RS256\",\"kid\":\"rsa-1\","
                          "\"crit\":[\"exp\"],\"exp\":1}", "{}");
    check_token(sign_input(g_rsa, in2), JWT_UNSUPPORTED,
                "critical extensions");
    free(in2);
}

static void test_r17_jwt_unknown_kid_refused(void **state)
{
    (void)state;
    check_token(make_token("RS256", "rsa-2", claims_std(), g_rsa),
                   JWT_UNKNOWN_KEY, "no signing key with id rsa-2");
    /* keys that are not for signatures, symmetric or too small are not
     * in the set at all */
    check_token(make_token("RS256", "rsa-enc", claims_std(), g_rsa),
                   JWT_UNKNOWN_KEY, "no signing key with id rsa-enc");
    check_token(make_token("RS256", "rsa-small", claims_std(),
                              g_rsa_small),
                   JWT_UNKNOWN_KEY, "no signing key with id rsa-small");
    check_token(make_token("RS256", "hmac-1", claims_std(), g_rsa),
                   JWT_UNKNOWN_KEY, "no signing key with id hmac-1");
    /* an unprintable kid is not echoed */
    check_token(make_token("RS256", "a\"b\nc", claims_std(), g_rsa),
                   JWT_UNKNOWN_KEY, "no signing key with id (unprintable)");
}

static void test_r17_jwt_kid_of_rsa_key_with_es256_refused(void **state)
{
    (void)state;
    check_token(make_token("ES256", "rsa-1", claims_std(), g_ec),
                   JWT_UNSUPPORTED,
                   "signing key rsa-1 is an RSA key but the token says ES256");
    check_token(make_token("RS256", "ec-1", claims_std(), g_rsa),
                   JWT_UNSUPPORTED,
                   "signing key ec-1 is an EC key but the token says RS256");
    /* the JWK's own alg must agree too */
    struct jwt_expect want = {ISS, AUD, NONCE, NOW, 60};
    struct error err = {0};
    json_t *jwk = jwk_rsa(g_rsa, "rsa-1");
    json_object_set_new(jwk, "alg", json_string("RS512"));
    json_t *doc = json_pack("{s:[o]}", "keys", jwk);
    char *jwks = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    char *tok = make_token("RS256", "rsa-1", claims_std(), g_rsa);
    assert_int_equal(jwt_verify_jwks(tok, strlen(tok), jwks, strlen(jwks),
                                     &want, NULL, &err), JWT_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "signing key rsa-1 is for RS512, not "
                                    "for RS256"));
    free(tok);
    free(jwks);
}

static void test_r17_jwt_malformed_base64_refused(void **state)
{
    (void)state;
    char *tok = make_token("RS256", "rsa-1", claims_std(), g_rsa);
    char *bad = strdup(tok);
    bad[3] = '*';
    check_token(bad, JWT_MALFORMED, "header is not valid base64url");
    /* a payload in base64, not base64url, under a good signature */
    check_token(sign_input(g_rsa, "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0"
                                  ".eyJz+WIiOiJ4In0"),
                JWT_MALFORMED, "payload is not valid base64url");
    bad = strdup(tok);
    bad[strlen(bad) - 2] = '=';
    check_token(bad, JWT_MALFORMED, "signature is not valid base64url");
    free(tok);
    /* header that decodes but is not JSON */
    char *in = jws_input("not json", "{}");
    size_t n = strlen(in) + 8;
    bad = malloc(n);
    snprintf(bad, n, "%s.AAAA", in);
    free(in);
    check_token(bad, JWT_MALFORMED, "header is not a JSON object");
    /* duplicate claim names are refused, not resolved */
    in = jws_input("{\"alg\":\"RS256\",\"alg\":\"none\"}", "{}");
    n = strlen(in) + 8;
    bad = malloc(n);
    snprintf(bad, n, "%s.AAAA", in);
    free(in);
    check_token(bad, JWT_MALFORMED, "header is not a JSON object (or "
                                    "repeats a member)");
}

static void test_r17_jwt_too_many_segments_refused(void **state)
{
    (void)state;
    char *tok = make_token("RS256", "rsa-1", claims_std(), g_rsa);
    size_t n = strlen(tok) + 8;
    char *four = malloc(n);
    snprintf(four, n, "%s.AAAA", tok);
    check_token(four, JWT_MALFORMED, "exactly three parts");
    char *two = strdup(tok);
    *strrchr(two, '.') = '\0';
    check_token(two, JWT_MALFORMED, "exactly three parts");
    n = strlen(tok) + 16;
    char *five = malloc(n);
    snprintf(five, n, "%s.AAAA.AAAA", tok);
    check_token(five, JWT_MALFORMED, "encrypted (JWE)");
    char *empty = strdup("..");
    check_token(empty, JWT_MALFORMED, "header or payload is empty");
    free(tok);
    /* too long */
    char *big = malloc(JWT_MAX_LEN + 2);
    memset(big, 'A', JWT_MAX_LEN + 1);
    big[JWT_MAX_LEN + 1] = '\0';
    check_token(big, JWT_MALFORMED, "longer than");
}

static void test_r17_jwt_keyset_refusals(void **state)
{
    (void)state;
    struct jwt_keyset *ks = NULL;
    struct error err = {0};
    const char *bad[] = {
        "", "[]", "{\"keys\":{}}", "{\"keys\":[]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\","
        "\"y\":\"AAAA\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(jwt_keyset_parse(bad[i], strlen(bad[i]), &ks, &err),
                         JWT_MALFORMED);
        assert_null(ks);
        assert_true(err.msg[0] != '\0');
    }
    /* a point that is not on the curve */
    json_t *jwk = jwk_ec(g_ec, "ec-1");
    const char *x = json_string_value(json_object_get(jwk, "x"));
    char *x2 = strdup(x);
    x2[5] = x2[5] == 'A' ? 'B' : 'A';
    json_object_set_new(jwk, "x", json_string(x2));
    free(x2);
    json_t *doc = json_pack("{s:[o]}", "keys", jwk);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    assert_int_equal(jwt_keyset_parse(text, strlen(text), &ks, &err),
                     JWT_MALFORMED);
    free(text);
    /* a JWK with private material is skipped */
    jwk = jwk_rsa(g_rsa, "rsa-1");
    json_object_set_new(jwk, "d", json_string("AAAA"));
    doc = json_pack("{s:[o]}", "keys", jwk);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    assert_int_equal(jwt_keyset_parse(text, strlen(text), &ks, &err),
                     JWT_MALFORMED);
    free(text);
    /* the good set: RSA-2048 and EC only */
    assert_int_equal(jwt_keyset_parse(g_jwks, strlen(g_jwks), &ks, &err),
                     JWT_OK);
    assert_int_equal(jwt_keyset_count(ks), 2);
    jwt_keyset_free(ks);
}

/* ======================================================================
 * base64url and PKCE
 * ====================================================================== */

static void test_r17_b64url_round_trip(void **state)
{
    (void)state;
    unsigned char in[64];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 37 + 250);
    for (size_t n = 0; n <= sizeof(in); n++) {
        char enc[100];
        assert_int_equal(jwt_b64url_encode(in, n, enc, sizeof(enc)),
                         (long)jwt_b64url_len(n));
        assert_null(strpbrk(enc, "+/="));
        unsigned char *dec;
        size_t declen;
        assert_int_equal(jwt_b64url_decode(enc, strlen(enc), &dec, &declen),
                         0);
        assert_int_equal(declen, n);
        assert_memory_equal(dec, in, n);
        free(dec);
    }
    char small[4];
    assert_int_equal(jwt_b64url_encode("abc", 3, small, sizeof(small)), -1);
    /* RFC 4648 vector in the url alphabet */
    char enc[16];
    jwt_b64url_encode("\xfb\xff\xbf", 3, enc, sizeof(enc));
    assert_string_equal(enc, "-_-_");
    unsigned char *dec;
    size_t declen;
    const char *bad[] = {"A", "AB=", "A+B/", "AB\n", "AB", "ABC", "QR"};
    /* "AB" and "ABC" have non-zero trailing bits: not canonical ("QQ",
     * "QUI" are); "QR" too */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(jwt_b64url_decode(bad[i], strlen(bad[i]), &dec,
                                           &declen), -1);
        assert_null(dec);
    }
    assert_int_equal(jwt_b64url_decode("QUI", 3, &dec, &declen), 0);
    assert_int_equal(declen, 2);
    assert_memory_equal(dec, "AB", 2);
    free(dec);
}

/* RFC 7636 appendix B: the 32 random octets, their base64url (the
 * verifier) and its S256 challenge, by the one PKCE of Wharf (net/oauth.c,
 * which OIDC logins and OAuth connectors both use). */
static void test_r17_pkce_rfc7636_vector(void **state)
{
    (void)state;
    static const unsigned char octets[32] = {
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173,
        187, 186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83,
        132, 141, 121};
    const char *v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    char enc[OIDC_RANDOM_LEN + 1];
    assert_int_equal(jwt_b64url_encode(octets, 32, enc, sizeof(enc)), 43);
    assert_string_equal(enc, v);
    char ch[OIDC_CHALLENGE_LEN + 1];
    struct error err = {0};
    assert_int_equal(oauth_pkce_challenge(v, strlen(v), ch, &err), 0);
    assert_string_equal(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    /* too short; a character outside the unreserved set */
    assert_int_equal(oauth_pkce_challenge("short", 5, ch, &err), -1);
    assert_non_null(strstr(err.msg, "43 to 128 characters"));
    assert_int_equal(oauth_pkce_challenge(
                         "dBjftJeZ4CVP+mB92K27uhbUJU1p1r_wW1gFWFOEjXk", 43,
                         ch, &err), -1);
    assert_non_null(strstr(err.msg, "unreserved"));
}

/* ======================================================================
 * Configuration and roles (no network)
 * ====================================================================== */

static const struct oidc_role_map g_map[] = {
    {"wharf-admins", "admin"},
    {"wharf-ops", "operator"},
    {"wharf-audit", "auditor"},
};

static void base_config(struct oidc_config *c)
{
    oidc_config_init(c);
    c->issuer = ISS;
    c->client_id = AUD;
    c->redirect_uri = "https://127.0.0.1:8443/api/v1/auth/oidc/callback";
    c->role_claim = "groups";
    c->role_map = g_map;
    c->role_map_len = 3;
}

static void test_r17_oidc_config_refused(void **state)
{
    (void)state;
    struct oidc_config c;
    struct error err = {0};
    struct oidc *o;

    base_config(&c);
    o = oidc_new(&c, &err);
    assert_non_null(o);
    oidc_free(o);

    struct {
        const char *field, *value, *msg;
    } cases[] = {
        {"issuer", "http://idp.example.test", "issuer must be an https://"},
        {"issuer", "https://idp.example.test/?x=1", "without query"},
        {"redirect", "http://127.0.0.1:8080/cb", "redirect URI must be"},
        {"scopes", "email profile", "must include \"openid\""},
        {"scopes", "openidx email", "must include \"openid\""},
        {"default", "root", "default role \"root\" is not one of"},
        {"client", "", "client id must be"},
        {"ca", "/nonexistent/ca.pem", "CA file /nonexistent/ca.pem"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        base_config(&c);
        if (strcmp(cases[i].field, "issuer") == 0)
            c.issuer = cases[i].value;
        else if (strcmp(cases[i].field, "redirect") == 0)
            c.redirect_uri = cases[i].value;
        else if (strcmp(cases[i].field, "scopes") == 0)
            c.scopes = cases[i].value;
        else if (strcmp(cases[i].field, "default") == 0)
            c.default_role = cases[i].value;
        else if (strcmp(cases[i].field, "client") == 0)
            c.client_id = cases[i].value;
        else
            c.ca_file = cases[i].value;
        error_clear(&err);
        assert_null(oidc_new(&c, &err));
        if (strstr(err.msg, cases[i].msg) == NULL)
            fail_msg("case %zu: \"%s\"", i, err.msg);
    }
    /* an unknown role in the mapping; no way to get any role */
    static const struct oidc_role_map bad_map[] = {{"g", "superuser"}};
    base_config(&c);
    c.role_map = bad_map;
    c.role_map_len = 1;
    assert_null(oidc_new(&c, &err));
    assert_non_null(strstr(err.msg, "mapping entry 1"));
    base_config(&c);
    c.role_claim = NULL;
    assert_null(oidc_new(&c, &err));
    assert_non_null(strstr(err.msg, "nobody could log in"));
    base_config(&c);
    c.leeway_s = 3600;
    assert_null(oidc_new(&c, &err));
    assert_non_null(strstr(err.msg, "leeway"));
}

static void test_r17_oidc_role_mapping(void **state)
{
    (void)state;
    struct oidc_config c;
    struct error err = {0};
    char role[OIDC_ROLE_MAX];
    base_config(&c);
    struct oidc *o = oidc_new(&c, &err);
    assert_non_null(o);

    /* first mapping entry that matches wins, whatever the claim order */
    json_t *cl = json_pack("{s:[s,s,s]}", "groups", "staff", "wharf-ops",
                           "wharf-admins");
    assert_int_equal(oidc_map_role(o, cl, role, &err), OIDC_OK);
    assert_string_equal(role, "admin");
    json_decref(cl);
    cl = json_pack("{s:s}", "groups", "wharf-audit");
    assert_int_equal(oidc_map_role(o, cl, role, &err), OIDC_OK);
    assert_string_equal(role, "auditor");
    json_decref(cl);
    /* no match, no default: a clear refusal */
    cl = json_pack("{s:[s], s:s}", "groups", "staff", "other", "wharf-admins");
    assert_int_equal(oidc_map_role(o, cl, role, &err), OIDC_NO_ROLE);
    assert_string_equal(role, "");
    assert_non_null(strstr(err.msg, "no Wharf role for this person: the "
                                    "claim \"groups\" holds no mapped value"));
    json_decref(cl);
    oidc_free(o);

    /* a dotted path (Keycloak realm roles) and a default role */
    base_config(&c);
    c.role_claim = "realm_access.roles";
    c.default_role = "viewer";
    o = oidc_new(&c, &err);
    assert_non_null(o);
    cl = json_pack("{s:{s:[s]}}", "realm_access", "roles", "wharf-ops");
    assert_int_equal(oidc_map_role(o, cl, role, &err), OIDC_OK);
    assert_string_equal(role, "operator");
    json_decref(cl);
    cl = json_pack("{s:{s:[s]}}", "realm_access", "roles", "nothing");
    assert_int_equal(oidc_map_role(o, cl, role, &err), OIDC_OK);
    assert_string_equal(role, "viewer");
    json_decref(cl);
    oidc_free(o);
}

/* ======================================================================
 * The network half: a test identity provider on 127.0.0.1
 * ====================================================================== */

#define CLIENT_ID "wharf-test"
#define CLIENT_SECRET "s3cr3t-Client-Value!&="
#define REDIRECT "https://127.0.0.1:8443/api/v1/auth/oidc/callback"

static struct {
    char dir[PATH_MAX];
    char ca[PATH_MAX + 32];
    char other_ca[PATH_MAX + 32];
    char issuer[64];
    pid_t pid;
} g_idp;

/* Run argv (PATH lookup), output to DIR/cmd.log; its exit status. */
static int run_cmd(char *const argv[])
{
    char log[PATH_MAX + 32];
    snprintf(log, sizeof(log), "%s/cmd.log", g_idp.dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT |
                                     O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int make_ca(const char *name, char *out, size_t outsz)
{
    char key[PATH_MAX + 32];
    snprintf(out, outsz, "%s/%s.pem", g_idp.dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", g_idp.dir, name);
    char *argv[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", out, "-days", "2", "-subj", "/CN=Wharf test CA",
                    NULL};
    return run_cmd(argv);
}

static int make_server_cert(void)
{
    char ca_key[PATH_MAX + 32], key[PATH_MAX + 32], crt[PATH_MAX + 32];
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", g_idp.dir);
    snprintf(key, sizeof(key), "%s/idp.key", g_idp.dir);
    snprintf(crt, sizeof(crt), "%s/idp.pem", g_idp.dir);
    char *argv[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-CA", g_idp.ca, "-CAkey", ca_key,
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE", NULL};
    return run_cmd(argv);
}

/* tests/unit/oidc_idp.py: $WHARF_OIDC_IDP, or beside this source file
 * (relative to the repository root), or found from the binary
 * (build/VARIANT/tests/test_oidc). */
static int find_idp_script(char *out, size_t outsz)
{
    const char *env = getenv("WHARF_OIDC_IDP");
    if (env != NULL && access(env, R_OK) == 0)
        return snprintf(out, outsz, "%s", env), 0;
    if (access("tests/unit/oidc_idp.py", R_OK) == 0 &&
        realpath("tests/unit/oidc_idp.py", out) != NULL)
        return 0;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    char cand[PATH_MAX + 64];
    snprintf(cand, sizeof(cand), "%s/../../../tests/unit/oidc_idp.py", exe);
    if (access(cand, R_OK) != 0 || realpath(cand, out) == NULL)
        return -1;
    return 0;
}

static int start_idp(void)
{
    char script[PATH_MAX], portfile[PATH_MAX + 32], cert[PATH_MAX + 32];
    char key[PATH_MAX + 32], log[PATH_MAX + 32];
    if (find_idp_script(script, sizeof(script)) < 0) {
        fprintf(stderr, "test_oidc: oidc_idp.py not found\n");
        return -1;
    }
    snprintf(portfile, sizeof(portfile), "%s/port", g_idp.dir);
    snprintf(cert, sizeof(cert), "%s/idp.pem", g_idp.dir);
    snprintf(key, sizeof(key), "%s/idp.key", g_idp.dir);
    snprintf(log, sizeof(log), "%s/idp.log", g_idp.dir);
    char parent[32];
    snprintf(parent, sizeof(parent), "%ld", (long)getpid());
    char *argv[] = {"/usr/bin/python3", script, "--cert", cert, "--key", key,
                    "--port-file", portfile, "--workdir", g_idp.dir,
                    "--client-id", CLIENT_ID, "--client-secret",
                    CLIENT_SECRET, "--parent-pid", parent, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT |
                                     O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&g_idp.pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    for (int i = 0; i < 300; i++) {     /* up to 30 s: it makes two keys */
        FILE *f = fopen(portfile, "r");
        int port = 0;
        if (f != NULL) {
            rc = fscanf(f, "%d", &port);
            fclose(f);
            if (rc == 1 && port > 0 && port < 65536) {
                snprintf(g_idp.issuer, sizeof(g_idp.issuer),
                         "https://127.0.0.1:%d", port);
                return 0;
            }
        }
        if (waitpid(g_idp.pid, NULL, WNOHANG) == g_idp.pid) {
            g_idp.pid = 0;
            fprintf(stderr, "test_oidc: the test IdP exited; see %s\n", log);
            return -1;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "test_oidc: the test IdP did not start; see %s\n", log);
    return -1;
}

static int idp_start_all(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_idp.dir, sizeof(g_idp.dir), "%s/wharf-oidc-XXXXXX",
             base ? base : "/tmp");
    if (mkdtemp(g_idp.dir) == NULL)
        return -1;
    if (make_ca("ca", g_idp.ca, sizeof(g_idp.ca)) != 0 ||
        make_ca("other-ca", g_idp.other_ca, sizeof(g_idp.other_ca)) != 0 ||
        make_server_cert() != 0) {
        fprintf(stderr, "test_oidc: openssl failed; see %s/cmd.log\n",
                g_idp.dir);
        return -1;
    }
    return start_idp();
}

/* Start the test IdP on first use; a test that needs it fails when it
 * cannot start. */
static void need_idp(void)
{
    static int started;   /* 0 not tried, 1 running, -1 failed */
    if (started == 0)
        started = idp_start_all() == 0 ? 1 : -1;
    if (started < 0)
        fail_msg("the test identity provider could not be started");
}

static void idp_stop(void)
{
    if (g_idp.pid > 0) {
        kill(g_idp.pid, SIGTERM);
        waitpid(g_idp.pid, NULL, 0);
        g_idp.pid = 0;
    }
    if (g_idp.dir[0] != '\0')
        test_rmtree(g_idp.dir);
}

static int group_teardown(void **state)
{
    idp_stop();
    return keys_teardown(state);
}

static struct oidc *idp_client(enum oidc_client_auth auth,
                               const char *secret, const char *issuer_suffix,
                               const char *ca, int refresh_min)
{
    need_idp();
    struct oidc_config c;
    char issuer[128];
    snprintf(issuer, sizeof(issuer), "%s%s", g_idp.issuer, issuer_suffix);
    struct secret *s = secret_from(secret, strlen(secret));
    oidc_config_init(&c);
    c.issuer = issuer;
    c.client_id = CLIENT_ID;
    c.client_secret = s;
    c.redirect_uri = REDIRECT;
    c.role_claim = "groups";
    c.role_map = g_map;
    c.role_map_len = 3;
    c.ca_file = ca;
    c.client_auth = auth;
    c.timeout_ms = 5000;
    c.jwks_refresh_min_s = refresh_min;
    struct error err = {0};
    struct oidc *o = oidc_new(&c, &err);
    secret_free(s);
    if (o == NULL)
        fail_msg("oidc_new: %s", err.msg);
    return o;
}

/* The value of query parameter name in url, decoded; caller frees. */
static char *query_param(const char *url, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strchr(url, '?'); p != NULL; p = strchr(p, '&')) {
        p++;
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1;
            int len = (int)strcspn(v, "&#");
            char *raw = curl_easy_unescape(NULL, v, len, NULL);
            char *out = strdup(raw);
            curl_free(raw);
            return out;
        }
    }
    return NULL;
}

/* Play the browser: GET the authorization URL (plus extra parameters for
 * the test IdP) and return the Location it redirects to. */
static char *browser_authorize(const char *url, const char *extra)
{
    size_t n = strlen(url) + strlen(extra) + 1;
    char *full = malloc(n);
    snprintf(full, n, "%s%s", url, extra);
    CURL *c = curl_easy_init();
    long status = 0;
    char *loc = NULL;
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_CAINFO, g_idp.ca);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
    if (rc != CURLE_OK || status != 302 || loc == NULL)
        fail_msg("authorize: curl %d, HTTP %ld", rc, status);
    char *out = strdup(loc);
    curl_easy_cleanup(c);
    free(full);
    return out;
}

/* Codes and verifiers seen, to look for them in the log later. */
static char g_seen[64][128];
static int g_nseen;

static void remember(const char *s)
{
    if (g_nseen < 64)
        snprintf(g_seen[g_nseen++], sizeof(g_seen[0]), "%s", s);
}

enum tamper { T_NONE, T_STATE, T_VERIFIER, T_REPLAY, T_LATE };

/* One whole login; returns oidc_callback's code, fills id and err. */
static int login(struct oidc *o, const char *extra, enum tamper t,
                 struct oidc_identity *id, struct error *err)
{
    struct oidc_pending p;
    char *url = NULL;
    error_clear(err);
    int rc = oidc_login_start(o, time(NULL), &p, &url, err);
    if (rc != OIDC_OK)
        fail_msg("login start: %s", err->msg);
    char *loc = browser_authorize(url, extra);
    assert_int_equal(strncmp(loc, REDIRECT "?", strlen(REDIRECT) + 1), 0);
    char *code = query_param(loc, "code");
    char *state = query_param(loc, "state");
    assert_non_null(code);
    assert_non_null(state);
    if (t == T_STATE)
        state[0] = state[0] == 'A' ? 'B' : 'A';
    if (t == T_VERIFIER) {
        unsigned char *v = secret_data_mut(p.verifier);
        v[0] = v[0] == 'A' ? 'B' : 'A';
    }
    int64_t now = time(NULL) + (t == T_LATE ? 601 : 0);
    rc = oidc_callback(o, &p, state, code, now, id, err);
    if (t == T_REPLAY) {
        assert_int_equal(rc, OIDC_OK);
        oidc_identity_clear(id);
        rc = oidc_callback(o, &p, state, code, now, id, err);
    }
    remember(code);
    remember((const char *)secret_data(p.verifier));
    /* R6: no secret, code or verifier in the message */
    assert_null(strstr(err->msg, CLIENT_SECRET));
    assert_null(strstr(err->msg, code));
    assert_null(strstr(err->msg, (const char *)secret_data(p.verifier)));
    oidc_pending_clear(&p);
    free(url);
    free(loc);
    free(code);
    free(state);
    return rc;
}

static void test_r17_oidc_idp_login_flow(void **state)
{
    (void)state;
    struct oidc *o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "", g_idp.ca,
                                10);
    struct error err = {0};
    assert_int_equal(oidc_discover(o, &err), OIDC_OK);

    /* the authorization URL carries everything RFC 6749 / 7636 and OIDC
     * ask for, and the challenge is S256 of the kept verifier */
    struct oidc_pending p;
    char *url = NULL;
    assert_int_equal(oidc_login_start(o, time(NULL), &p, &url, &err),
                     OIDC_OK);
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s/authorize?", g_idp.issuer);
    assert_int_equal(strncmp(url, prefix, strlen(prefix)), 0);
    const char *expect[][2] = {
        {"response_type", "code"}, {"client_id", CLIENT_ID},
        {"redirect_uri", REDIRECT}, {"scope", "openid email profile"},
        {"state", p.state}, {"nonce", p.nonce},
        {"code_challenge_method", "S256"},
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        char *v = query_param(url, expect[i][0]);
        assert_non_null(v);
        assert_string_equal(v, expect[i][1]);
        free(v);
    }
    char ch[OIDC_CHALLENGE_LEN + 1];
    assert_int_equal(oauth_pkce_challenge((const char *)secret_data(
                                             p.verifier),
                                         secret_len(p.verifier), ch, &err),
                     0);
    char *got = query_param(url, "code_challenge");
    assert_string_equal(got, ch);
    assert_int_equal(strlen(p.state), 43);
    assert_int_equal(secret_len(p.verifier), 43);
    assert_string_not_equal(p.state, p.nonce);
    free(got);
    free(url);
    oidc_pending_clear(&p);

    /* the whole flow: code exchange with client_secret_basic and PKCE */
    struct oidc_identity id;
    assert_int_equal(login(o, "&test_groups=staff,wharf-ops", T_NONE, &id,
                           &err), OIDC_OK);
    assert_string_equal(id.subject, "user-42");
    assert_string_equal(id.issuer, g_idp.issuer);
    assert_string_equal(id.email, "ada@example.test");
    assert_true(id.email_verified);
    assert_string_equal(id.username, "ada");
    assert_string_equal(id.name, "Ada Lovelace");
    assert_string_equal(id.role, "operator");
    oidc_identity_clear(&id);
    oidc_free(o);

    /* client_secret_post */
    o = idp_client(OIDC_AUTH_POST, CLIENT_SECRET, "", g_idp.ca, 10);
    assert_int_equal(login(o, "&test_groups=wharf-admins", T_NONE, &id,
                           &err), OIDC_OK);
    assert_string_equal(id.role, "admin");
    oidc_identity_clear(&id);
    oidc_free(o);
}

static void test_r17_oidc_idp_bad_tokens_refused(void **state)
{
    (void)state;
    struct oidc *o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "", g_idp.ca,
                                10);
    struct error err = {0};
    struct oidc_identity id;
    const char *cases[][2] = {
        {"bad_sig", "the token signature does not verify"},
        {"wrong_aud", "not meant for this client (audience)"},
        {"expired", "the token has expired"},
        {"wrong_nonce", "nonce does not match this login"},
        {"wrong_iss", "issuer is not the configured issuer"},
        {"iat_future", "issued in the future"},
        {"none", "unsigned (alg none)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char extra[64];
        snprintf(extra, sizeof(extra), "&test_mode=%s&test_groups=wharf-ops",
                 cases[i][0]);
        int rc = login(o, extra, T_NONE, &id, &err);
        if (rc != OIDC_DENIED || strstr(err.msg, cases[i][1]) == NULL ||
            strncmp(err.msg, "OIDC login refused: ", 20) != 0)
            fail_msg("%s: rc %d \"%s\"", cases[i][0], rc, err.msg);
        assert_null(id.subject);
        assert_string_equal(id.role, "");
    }
    /* a valid person without a mapped group, and no default role */
    assert_int_equal(login(o, "&test_groups=staff", T_NONE, &id, &err),
                     OIDC_NO_ROLE);
    assert_non_null(strstr(err.msg, "OIDC login refused: no Wharf role for "
                                    "this person"));
    assert_string_equal(id.subject, "user-42");     /* for the audit trail */
    assert_string_equal(id.role, "");
    oidc_identity_clear(&id);
    oidc_free(o);
}

static void test_r17_oidc_idp_state_pkce_and_client_checked(void **state)
{
    (void)state;
    struct oidc *o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "", g_idp.ca,
                                10);
    struct error err = {0};
    struct oidc_identity id;
    const char *g = "&test_groups=wharf-ops";
    assert_int_equal(login(o, g, T_STATE, &id, &err), OIDC_DENIED);
    assert_non_null(strstr(err.msg, "state parameter does not match"));
    assert_int_equal(login(o, g, T_VERIFIER, &id, &err), OIDC_DENIED);
    assert_non_null(strstr(err.msg, "refused the code exchange (HTTP 400, "
                                    "invalid_grant)"));
    assert_int_equal(login(o, g, T_REPLAY, &id, &err), OIDC_DENIED);
    assert_non_null(strstr(err.msg, "invalid_grant"));
    assert_int_equal(login(o, g, T_LATE, &id, &err), OIDC_DENIED);
    assert_non_null(strstr(err.msg, "took too long"));
    oidc_free(o);

    o = idp_client(OIDC_AUTH_BASIC, "wrong-secret", "", g_idp.ca, 10);
    assert_int_equal(login(o, g, T_NONE, &id, &err), OIDC_DENIED);
    assert_non_null(strstr(err.msg, "(HTTP 401, invalid_client)"));
    oidc_free(o);
    o = idp_client(OIDC_AUTH_POST, "wrong-secret", "", g_idp.ca, 10);
    assert_int_equal(login(o, g, T_NONE, &id, &err), OIDC_DENIED);
    assert_non_null(strstr(err.msg, "(HTTP 401, invalid_client)"));
    oidc_free(o);
}

static void test_r17_oidc_idp_key_rotation(void **state)
{
    (void)state;
    struct error err = {0};
    struct oidc_identity id;
    /* both know only the first key */
    struct oidc *slow = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "",
                                   g_idp.ca, 3600);
    struct oidc *fast = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "",
                                   g_idp.ca, 0);
    assert_int_equal(oidc_discover(slow, &err), OIDC_OK);
    assert_int_equal(oidc_discover(fast, &err), OIDC_OK);
    /* the IdP now signs with a second key: a client that may not refetch
     * yet refuses it; one that may, refetches the key set and accepts */
    assert_int_equal(login(slow, "&test_mode=rotate&test_groups=wharf-ops",
                           T_NONE, &id, &err), OIDC_DENIED);
    assert_non_null(strstr(err.msg, "no signing key with id key-2"));
    assert_int_equal(login(fast, "&test_mode=rotate&test_groups=wharf-ops",
                           T_NONE, &id, &err), OIDC_OK);
    assert_string_equal(id.role, "operator");
    oidc_identity_clear(&id);
    oidc_free(slow);
    oidc_free(fast);
}

static void test_r17_oidc_idp_discovery_checked(void **state)
{
    (void)state;
    struct error err = {0};
    /* a certificate from a CA we were not told to trust; and the system CAs */
    struct oidc *o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "",
                                g_idp.other_ca, 10);
    assert_int_equal(oidc_discover(o, &err), OIDC_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "certificate"));
    oidc_free(o);
    o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "", NULL, 10);
    assert_int_equal(oidc_discover(o, &err), OIDC_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "certificate"));
    /* and login start cannot go on without discovery */
    struct oidc_pending p;
    char *url = (char *)"x";
    assert_int_equal(oidc_login_start(o, time(NULL), &p, &url, &err),
                     OIDC_UNAVAILABLE);
    assert_null(url);
    assert_null(p.verifier);
    oidc_free(o);
    /* a discovery document naming another issuer */
    o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "/wrong-issuer", g_idp.ca,
                   10);
    assert_int_equal(oidc_discover(o, &err), OIDC_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "/other\", not the configured"));
    oidc_free(o);
    /* an oversized answer, announced or not */
    const char *big[] = {"/big", "/big-unsized"};
    for (int i = 0; i < 2; i++) {
        o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, big[i], g_idp.ca, 10);
        assert_int_equal(oidc_discover(o, &err), OIDC_UNAVAILABLE);
        if (strstr(err.msg, "larger than 262144 bytes") == NULL)
            fail_msg("%s: \"%s\"", big[i], err.msg);
        oidc_free(o);
    }
    /* a plain-HTTP issuer is not even configurable */
    struct oidc_config c;
    base_config(&c);
    char plain[80];
    snprintf(plain, sizeof(plain), "http://%s", g_idp.issuer + 8);
    c.issuer = plain;
    assert_null(oidc_new(&c, &err));
}

/* R6 at trace level: logins that succeed, fail on the token and fail on
 * the client secret leave no secret, code, verifier or JWT in the log. */
static void test_r17_oidc_no_secret_in_trace_log(void **state)
{
    (void)state;
    struct oidc *o = idp_client(OIDC_AUTH_BASIC, CLIENT_SECRET, "", g_idp.ca,
                                0);
    char logdir[PATH_MAX + 16], path[PATH_MAX + 32];
    snprintf(logdir, sizeof(logdir), "%s/logs", g_idp.dir);
    snprintf(path, sizeof(path), "%s/wharf.log", logdir);
    struct error err = {0};
    assert_int_equal(log_open(logdir, LOG_TRACE, false, &err), 0);
    g_nseen = 0;
    struct oidc_identity id;
    assert_int_equal(oidc_discover(o, &err), OIDC_OK);
    assert_int_equal(login(o, "&test_groups=wharf-ops", T_NONE, &id, &err),
                     OIDC_OK);
    oidc_identity_clear(&id);
    assert_int_equal(login(o, "&test_mode=bad_sig", T_NONE, &id, &err),
                     OIDC_DENIED);
    log_write(LOG_ERROR, -1, NULL, NULL, "%s", err.msg);
    oidc_free(o);
    o = idp_client(OIDC_AUTH_POST, "wrong-secret", "", g_idp.ca, 10);
    assert_int_equal(login(o, "", T_NONE, &id, &err), OIDC_DENIED);
    log_write(LOG_ERROR, -1, NULL, NULL, "%s", err.msg);
    oidc_free(o);
    log_close();
    log_open(NULL, LOG_INFO, true, NULL);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[256 * 1024];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* the log says what happened ... */
    assert_non_null(strstr(text, "oidc: discovered"));
    assert_non_null(strstr(text, "signature does not verify"));
    assert_non_null(strstr(text, "invalid_client"));
    /* ... and holds no secret */
    assert_true(g_nseen >= 6);
    assert_null(strstr(text, "s3cr3t"));     /* raw or percent-encoded */
    assert_null(strstr(text, "wrong-secret"));
    assert_null(strstr(text, "eyJ"));       /* no JWT, whatever its kind */
    for (int i = 0; i < g_nseen; i++)
        if (strstr(text, g_seen[i]) != NULL)
            fail_msg("the log holds a code or verifier");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r17_jwt_rs256_valid_accepted),
        cmocka_unit_test(test_r17_jwt_es256_valid_accepted),
        cmocka_unit_test(test_r17_jwt_bad_signature_refused),
        cmocka_unit_test(test_r17_jwt_wrong_audience_refused),
        cmocka_unit_test(test_r17_jwt_wrong_issuer_refused),
        cmocka_unit_test(test_r17_jwt_expired_refused),
        cmocka_unit_test(test_r17_jwt_iat_in_future_refused),
        cmocka_unit_test(test_r17_jwt_wrong_nonce_refused),
        cmocka_unit_test(test_r17_jwt_alg_none_refused),
        cmocka_unit_test(test_r17_jwt_alg_hs256_refused),
        cmocka_unit_test(test_r17_jwt_unknown_kid_refused),
        cmocka_unit_test(test_r17_jwt_kid_of_rsa_key_with_es256_refused),
        cmocka_unit_test(test_r17_jwt_malformed_base64_refused),
        cmocka_unit_test(test_r17_jwt_too_many_segments_refused),
        cmocka_unit_test(test_r17_jwt_keyset_refusals),
        cmocka_unit_test(test_r17_b64url_round_trip),
        cmocka_unit_test(test_r17_pkce_rfc7636_vector),
        cmocka_unit_test(test_r17_oidc_config_refused),
        cmocka_unit_test(test_r17_oidc_role_mapping),
        cmocka_unit_test(test_r17_oidc_idp_login_flow),
        cmocka_unit_test(test_r17_oidc_idp_bad_tokens_refused),
        cmocka_unit_test(test_r17_oidc_idp_state_pkce_and_client_checked),
        cmocka_unit_test(test_r17_oidc_idp_key_rotation),
        cmocka_unit_test(test_r17_oidc_idp_discovery_checked),
        cmocka_unit_test(test_r17_oidc_no_secret_in_trace_log),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests(tests, keys_setup, group_teardown);
    curl_global_cleanup();
    return failed;
}
