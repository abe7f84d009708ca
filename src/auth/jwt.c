/*
 * jwt.c - owns the verification of JWS compact tokens (RS256, ES256)
 * against a parsed JWKS, the claim checks of an OpenID Connect ID token,
 * and the base64url codec (OpenSSL's base64 with the alphabet and padding
 * converted, lengths checked before every conversion).
 *
 * It must never accept an algorithm other than RS256 / ES256 (no "none",
 * no HMAC with a public key as secret), never take a key from the token
 * itself, never parse the payload before the signature verified, never
 * do I/O, and never put token bytes, signatures or claim values in an
 * error message (only short kid / alg names made of safe characters).
 */
#include "auth/oidc.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JWT_RSA_MIN_BITS 2048
#define JWT_RSA_MAX_BITS 4096
#define JWT_SUB_MAX 255
#define JWT_AUD_MAX 32

enum jwt_kty { JWT_KTY_RSA, JWT_KTY_EC };
enum jwt_alg { JWT_ALG_RS256, JWT_ALG_ES256 };

struct jwt_key {
    char *kid;              /* NULL when the JWK has none */
    enum jwt_kty kty;
    char *alg;              /* the JWK's own "alg", or NULL */
    EVP_PKEY *pkey;
};

struct jwt_keyset {
    size_t n;
    struct jwt_key keys[];
};

/* Set err and return rc: `return jwt_fail(err, JWT_MALFORMED, "...")`. */
static enum jwt_rc jwt_fail(struct error *err, enum jwt_rc rc,
                            const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum jwt_rc jwt_fail(struct error *err, enum jwt_rc rc,
                            const char *fmt, ...)
{
    char msg[ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_set(err, "%s", msg);
    return rc;
}

/* ---- base64url ----------------------------------------------------------- */

static int jwt_b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t jwt_b64url_len(size_t len)
{
    return len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
}

long jwt_b64url_encode(const void *in, size_t len, char *out, size_t outsz)
{
    size_t need = jwt_b64url_len(len);
    if (len > (size_t)INT32_MAX / 2 || outsz < need + 1)
        return -1;
    /* EVP_EncodeBlock writes the padded form and a NUL: encode through a
     * bounded scratch buffer when out has no room for the padding. */
    unsigned char tmp[4 + 1];
    size_t whole = len / 3 * 3;
    if (whole > 0)
        EVP_EncodeBlock((unsigned char *)out, in, (int)whole);
    if (whole < len) {
        EVP_EncodeBlock(tmp, (const unsigned char *)in + whole,
                        (int)(len - whole));
        memcpy(out + whole / 3 * 4, tmp, need - whole / 3 * 4);
        OPENSSL_cleanse(tmp, sizeof(tmp));
    }
    for (size_t i = 0; i < need; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    out[need] = '\0';
    return (long)need;
}

/* The characters are all in the alphabet, the length is possible and the
 * bits beyond the last whole byte are zero (one encoding per value). */
static bool jwt_b64url_valid(const char *in, size_t len)
{
    if (len % 4 == 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (jwt_b64url_value((unsigned char)in[i]) < 0)
            return false;
    if (len % 4 == 2)
        return (jwt_b64url_value((unsigned char)in[len - 1]) & 0x0F) == 0;
    if (len % 4 == 3)
        return (jwt_b64url_value((unsigned char)in[len - 1]) & 0x03) == 0;
    return true;
}

int jwt_b64url_decode(const char *in, size_t len, unsigned char **out,
                      size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (len > (size_t)INT32_MAX / 2 || !jwt_b64url_valid(in, len))
        return -1;
    size_t pad = (4 - len % 4) % 4;
    size_t blen = len + pad;
    unsigned char *b64 = malloc(blen + 1);
    unsigned char *bin = malloc(blen / 4 * 3 + 1);
    if (b64 == NULL || bin == NULL) {
        free(b64);
        free(bin);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        b64[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : (unsigned char)in[i];
    memset(b64 + len, '=', pad);
    b64[blen] = '\0';
    int n = blen == 0 ? 0 : EVP_DecodeBlock(bin, b64, (int)blen);
    OPENSSL_cleanse(b64, blen);
    free(b64);
    if (n < 0 || (size_t)n < pad) {
        free(bin);
        return -1;
    }
    *outlen = (size_t)n - pad;
    bin[*outlen] = '\0';
    *out = bin;
    return 0;
}

/* ---- small helpers ------------------------------------------------------- */

/* s if it is short and made of characters safe to show, else a stand-in. */
static const char *jwt_safe_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return "(unprintable)";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(jwt_b64url_value(c) >= 0 || c == '.' || c == '+' || c == ':'))
            return "(unprintable)";
    }
    return s;
}

/* Decode one base64url part and parse it as a JSON object. */
static enum jwt_rc jwt_decode_json(const char *part, size_t len,
                                   const char *what, json_t **out,
                                   struct error *err)
{
    unsigned char *raw;
    size_t rawlen;
    *out = NULL;
    if (jwt_b64url_decode(part, len, &raw, &rawlen) < 0)
        return jwt_fail(err, JWT_MALFORMED,
                        "the token is malformed: the %s is not valid "
                        "base64url", what);
    json_error_t je;
    json_t *j = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES,
                           &je);
    OPENSSL_cleanse(raw, rawlen);
    free(raw);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        return jwt_fail(err, JWT_MALFORMED,
                        "the token is malformed: the %s is not a JSON object "
                        "(or repeats a member)", what);
    }
    *out = j;
    return JWT_OK;
}

/* A string member, or NULL when absent or not a string. */
static const char *jwt_str(const json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

/* ---- key set ------------------------------------------------------------- */

static void jwt_key_clear(struct jwt_key *k)
{
    free(k->kid);
    free(k->alg);
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

void jwt_keyset_free(struct jwt_keyset *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++)
        jwt_key_clear(&ks->keys[i]);
    free(ks);
}

size_t jwt_keyset_count(const struct jwt_keyset *ks)
{
    return ks == NULL ? 0 : ks->n;
}

/* A big number from a base64url member (no leading-zero games: OpenSSL
 * reads the magnitude). NULL when absent, invalid or empty. */
static BIGNUM *jwt_bn_member(const json_t *jwk, const char *name,
                             size_t maxlen)
{
    const char *s = jwt_str(jwk, name);
    if (s == NULL)
        return NULL;
    unsigned char *raw;
    size_t rawlen;
    if (jwt_b64url_decode(s, strlen(s), &raw, &rawlen) < 0)
        return NULL;
    BIGNUM *bn = NULL;
    if (rawlen > 0 && rawlen <= maxlen)
        bn = BN_bin2bn(raw, (int)rawlen, NULL);
    free(raw);
    return bn;
}

/* Import a public key from OSSL_PARAMs and check it. */
static EVP_PKEY *jwt_pkey_fromdata(const char *type, OSSL_PARAM *params)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = chk != NULL && EVP_PKEY_public_check(chk) == 1;
    EVP_PKEY_CTX_free(chk);
    if (!ok) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return pkey;
}

static EVP_PKEY *jwt_rsa_from_jwk(const json_t *jwk)
{
    BIGNUM *n = jwt_bn_member(jwk, "n", JWT_RSA_MAX_BITS / 8 + 1);
    BIGNUM *e = jwt_bn_member(jwk, "e", 8);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    if (n != NULL && e != NULL && bld != NULL &&
        BN_num_bits(n) >= JWT_RSA_MIN_BITS &&
        BN_num_bits(n) <= JWT_RSA_MAX_BITS &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL)
        pkey = jwt_pkey_fromdata("RSA", params);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

/* One P-256 coordinate: exactly 32 bytes. */
static int jwt_ec_coord(const json_t *jwk, const char *name,
                        unsigned char out[32])
{
    const char *s = jwt_str(jwk, name);
    unsigned char *raw;
    size_t rawlen;
    if (s == NULL || jwt_b64url_decode(s, strlen(s), &raw, &rawlen) < 0)
        return -1;
    int rc = rawlen == 32 ? 0 : -1;
    if (rc == 0)
        memcpy(out, raw, 32);
    free(raw);
    return rc;
}

static EVP_PKEY *jwt_ec_from_jwk(const json_t *jwk)
{
    const char *crv = jwt_str(jwk, "crv");
    unsigned char point[65];
    if (crv == NULL || strcmp(crv, "P-256") != 0)
        return NULL;
    point[0] = 0x04;    /* uncompressed */
    if (jwt_ec_coord(jwk, "x", point + 1) < 0 ||
        jwt_ec_coord(jwk, "y", point + 33) < 0)
        return NULL;
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point,
                                          sizeof(point)),
        OSSL_PARAM_construct_end(),
    };
    return jwt_pkey_fromdata("EC", params);
}

/* Fill k from one JWK; -1 when the key is not usable (skipped). */
static int jwt_key_from_jwk(const json_t *jwk, struct jwt_key *k)
{
    const char *kty = jwt_str(jwk, "kty");
    const char *use = jwt_str(jwk, "use");
    const json_t *kid = json_object_get(jwk, "kid");
    const json_t *alg = json_object_get(jwk, "alg");
    if (!json_is_object(jwk) || kty == NULL ||
        (json_object_get(jwk, "use") != NULL &&
         (use == NULL || strcmp(use, "sig") != 0)) ||
        (kid != NULL && !json_is_string(kid)) ||
        (alg != NULL && !json_is_string(alg)) ||
        json_object_get(jwk, "d") != NULL)      /* private key material */
        return -1;
    memset(k, 0, sizeof(*k));
    if (strcmp(kty, "RSA") == 0) {
        k->kty = JWT_KTY_RSA;
        k->pkey = jwt_rsa_from_jwk(jwk);
    } else if (strcmp(kty, "EC") == 0) {
        k->kty = JWT_KTY_EC;
        k->pkey = jwt_ec_from_jwk(jwk);
    }
    ERR_clear_error();
    if (k->pkey == NULL)
        return -1;
    if ((kid != NULL && (k->kid = strdup(json_string_value(kid))) == NULL) ||
        (alg != NULL && (k->alg = strdup(json_string_value(alg))) == NULL)) {
        jwt_key_clear(k);
        return -1;
    }
    return 0;
}

enum jwt_rc jwt_keyset_parse(const char *json, size_t len,
                             struct jwt_keyset **out, struct error *err)
{
    *out = NULL;
    if (len > JWKS_MAX_LEN)
        return jwt_fail(err, JWT_MALFORMED,
                        "the key set is larger than %d bytes", JWKS_MAX_LEN);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_object(root) || !json_is_array(keys)) {
        json_decref(root);
        return jwt_fail(err, JWT_MALFORMED,
                        "the key set is not a JSON object with a \"keys\" "
                        "array");
    }
    size_t max = json_array_size(keys);
    if (max > JWT_MAX_KEYS)
        max = JWT_MAX_KEYS;
    struct jwt_keyset *ks = calloc(1, sizeof(*ks) + max * sizeof(ks->keys[0]));
    if (ks == NULL) {
        json_decref(root);
        return jwt_fail(err, JWT_ERROR, "out of memory reading the key set");
    }
    for (size_t i = 0; i < max; i++)
        if (jwt_key_from_jwk(json_array_get(keys, i), &ks->keys[ks->n]) == 0)
            ks->n++;
    json_decref(root);
    if (ks->n == 0) {
        jwt_keyset_free(ks);
        return jwt_fail(err, JWT_MALFORMED,
                        "the key set holds no usable RS256 or ES256 signing "
                        "key");
    }
    *out = ks;
    return JWT_OK;
}

/* ---- algorithm and key selection ----------------------------------------- */

static enum jwt_rc jwt_parse_alg(const json_t *header, enum jwt_alg *alg,
                                 struct error *err)
{
    const char *name = jwt_str(header, "alg");
    if (name == NULL)
        return jwt_fail(err, JWT_MALFORMED,
                        "the token header names no algorithm");
    if (strcasecmp(name, "none") == 0)
        return jwt_fail(err, JWT_UNSUPPORTED,
                        "the token is unsigned (alg none), which is refused");
    if (strcmp(name, "RS256") == 0)
        *alg = JWT_ALG_RS256;
    else if (strcmp(name, "ES256") == 0)
        *alg = JWT_ALG_ES256;
    else
        return jwt_fail(err, JWT_UNSUPPORTED,
                        "the token algorithm %s is not accepted (only RS256 "
                        "and ES256 are)", jwt_safe_name(name));
    if (json_object_get(header, "crit") != NULL)
        return jwt_fail(err, JWT_UNSUPPORTED,
                        "the token header has critical extensions, which are "
                        "not supported");
    return JWT_OK;
}

static const char *jwt_alg_name(enum jwt_alg alg)
{
    return alg == JWT_ALG_RS256 ? "RS256" : "ES256";
}

static enum jwt_kty jwt_alg_kty(enum jwt_alg alg)
{
    return alg == JWT_ALG_RS256 ? JWT_KTY_RSA : JWT_KTY_EC;
}

/* The key a kid names that fits alg. A kid that only names keys of
 * another type or algorithm is a mismatch, not an unknown key. Without a
 * kid: the only key of the right type. */
static enum jwt_rc jwt_find_key(const struct jwt_keyset *ks, const char *kid,
                                enum jwt_alg alg, const struct jwt_key **out,
                                struct error *err)
{
    const struct jwt_key *found = NULL, *wrong_kty = NULL, *wrong_alg = NULL;
    size_t candidates = 0;
    for (size_t i = 0; i < ks->n; i++) {
        const struct jwt_key *k = &ks->keys[i];
        if (kid != NULL && (k->kid == NULL || strcmp(k->kid, kid) != 0))
            continue;
        if (k->kty != jwt_alg_kty(alg))
            wrong_kty = k;
        else if (k->alg != NULL && strcmp(k->alg, jwt_alg_name(alg)) != 0)
            wrong_alg = k;
        else if (candidates++ == 0)
            found = k;
    }
    if (found != NULL && (kid != NULL || candidates == 1)) {
        *out = found;
        return JWT_OK;
    }
    if (found != NULL)
        return jwt_fail(err, JWT_UNKNOWN_KEY,
                        "the token names no key id and the key set holds "
                        "several %s keys", jwt_alg_name(alg));
    if (kid != NULL && wrong_alg != NULL)
        return jwt_fail(err, JWT_UNSUPPORTED,
                        "signing key %s is for %s, not for %s",
                        jwt_safe_name(kid), jwt_safe_name(wrong_alg->alg),
                        jwt_alg_name(alg));
    if (kid != NULL && wrong_kty != NULL)
        return jwt_fail(err, JWT_UNSUPPORTED,
                        "signing key %s is %s key but the token says %s",
                        jwt_safe_name(kid),
                        wrong_kty->kty == JWT_KTY_RSA ? "an RSA" : "an EC",
                        jwt_alg_name(alg));
    if (kid != NULL)
        return jwt_fail(err, JWT_UNKNOWN_KEY,
                        "no signing key with id %s in the identity provider's "
                        "key set", jwt_safe_name(kid));
    return jwt_fail(err, JWT_UNKNOWN_KEY,
                    "the token names no key id and the key set holds no %s "
                    "key", jwt_alg_name(alg));
}

/* ---- signature ----------------------------------------------------------- */

/* ES256 signatures are r||s (32 bytes each); OpenSSL wants DER. */
static unsigned char *jwt_es256_der(const unsigned char *sig, size_t len,
                                    size_t *derlen)
{
    if (len != 64)
        return NULL;
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
    ECDSA_SIG *es = ECDSA_SIG_new();
    unsigned char *der = NULL;
    if (r == NULL || s == NULL || es == NULL || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    int n = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (n <= 0)
        return NULL;
    *derlen = (size_t)n;
    return der;
}

static enum jwt_rc jwt_check_sig(const struct jwt_key *key, enum jwt_alg alg,
                                 const char *input, size_t inlen,
                                 const unsigned char *sig, size_t siglen,
                                 struct error *err)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    if (alg == JWT_ALG_ES256) {
        der = jwt_es256_der(sig, siglen, &derlen);
        if (der == NULL)
            return jwt_fail(err, JWT_BAD_SIGNATURE,
                            "the token signature is not a 64-byte ES256 "
                            "signature");
        sig = der;
        siglen = derlen;
    } else if (siglen != (size_t)EVP_PKEY_get_size(key->pkey)) {
        return jwt_fail(err, JWT_BAD_SIGNATURE,
                        "the token signature has the wrong length for its RSA "
                        "key");
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL &&
             EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key->pkey) == 1
             && EVP_DigestVerify(md, sig, siglen, (const unsigned char *)input,
                                 inlen) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();
    if (!ok)
        return jwt_fail(err, JWT_BAD_SIGNATURE,
                        "the token signature does not verify");
    return JWT_OK;
}

/* ---- claims -------------------------------------------------------------- */

/* A NumericDate (integer or real seconds), floored; -1 when absent or not
 * a number in a sane range. */
static int jwt_time_claim(const json_t *claims, const char *name,
                          int64_t *out)
{
    const json_t *v = json_object_get(claims, name);
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= -9.0e15 && d <= 9.0e15))    /* also NaN and infinities */
            return -1;
        int64_t t = (int64_t)d;                 /* toward zero, then floor */
        *out = (double)t > d ? t - 1 : t;
        return 0;
    }
    return -1;
}

static enum jwt_rc jwt_check_aud(const json_t *claims, const char *audience,
                                 struct error *err)
{
    const json_t *aud = json_object_get(claims, "aud");
    const char *azp = jwt_str(claims, "azp");
    size_t count = 0;
    bool found = false;
    if (json_is_string(aud)) {
        count = 1;
        found = strcmp(json_string_value(aud), audience) == 0;
    } else if (json_is_array(aud) && json_array_size(aud) <= JWT_AUD_MAX) {
        for (size_t i = 0; i < json_array_size(aud); i++) {
            const char *a = json_string_value(json_array_get(aud, i));
            if (a == NULL)
                return jwt_fail(err, JWT_BAD_CLAIMS,
                                "the token audience list holds a non-string");
            found = found || strcmp(a, audience) == 0;
            count++;
        }
    }
    if (!found)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token is not meant for this client (audience)");
    if (json_object_get(claims, "azp") != NULL &&
        (azp == NULL || strcmp(azp, audience) != 0))
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token was issued to another party (azp)");
    if (count > 1 && azp == NULL)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token has several audiences but no authorized "
                        "party (azp)");
    return JWT_OK;
}

static enum jwt_rc jwt_check_times(const json_t *claims,
                                   const struct jwt_expect *want,
                                   struct error *err)
{
    int64_t exp, iat, nbf;
    int64_t leeway = want->leeway < 0 ? 0 : want->leeway;
    if (jwt_time_claim(claims, "exp", &exp) < 0)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token has no valid expiry (exp)");
    if (exp <= want->now - leeway)
        return jwt_fail(err, JWT_BAD_CLAIMS, "the token has expired");
    if (jwt_time_claim(claims, "iat", &iat) < 0)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token has no valid issue time (iat)");
    if (iat > want->now + leeway)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token is issued in the future (iat)");
    if (json_object_get(claims, "nbf") != NULL &&
        (jwt_time_claim(claims, "nbf", &nbf) < 0 || nbf > want->now + leeway))
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token is not valid yet (nbf)");
    return JWT_OK;
}

static enum jwt_rc jwt_check_nonce(const json_t *claims, const char *nonce,
                                   struct error *err)
{
    if (nonce == NULL)
        return JWT_OK;
    const json_t *v = json_object_get(claims, "nonce");
    const char *got = json_string_value(v);
    size_t n = strlen(nonce);
    if (got == NULL || json_string_length(v) != n ||
        CRYPTO_memcmp(got, nonce, n) != 0)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token nonce does not match this login");
    return JWT_OK;
}

enum jwt_rc jwt_check_claims(const json_t *claims,
                             const struct jwt_expect *want, struct error *err)
{
    if (!json_is_object(claims) || want == NULL || want->issuer == NULL ||
        want->audience == NULL)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "no claims or no expectations to check");
    const char *iss = jwt_str(claims, "iss");
    if (iss == NULL || strcmp(iss, want->issuer) != 0)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token issuer is not the configured issuer");
    enum jwt_rc rc = jwt_check_aud(claims, want->audience, err);
    if (rc == JWT_OK)
        rc = jwt_check_times(claims, want, err);
    if (rc == JWT_OK)
        rc = jwt_check_nonce(claims, want->nonce, err);
    if (rc != JWT_OK)
        return rc;
    const json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(sub) || json_string_length(sub) == 0 ||
        json_string_length(sub) > JWT_SUB_MAX)
        return jwt_fail(err, JWT_BAD_CLAIMS,
                        "the token has no valid subject (sub)");
    return JWT_OK;
}

/* ---- the whole token ----------------------------------------------------- */

/* Split token into its three parts; JWT_MALFORMED otherwise. */
static enum jwt_rc jwt_split(const char *token, size_t len,
                             size_t dot[2], struct error *err)
{
    size_t dots = 0;
    if (len == 0 || len > JWT_MAX_LEN)
        return jwt_fail(err, JWT_MALFORMED,
                        "the token is empty or longer than %d bytes",
                        JWT_MAX_LEN);
    for (size_t i = 0; i < len; i++) {
        if (token[i] != '.')
            continue;
        if (dots < 2)
            dot[dots] = i;
        dots++;
    }
    if (dots == 4)
        return jwt_fail(err, JWT_MALFORMED,
                        "the token is encrypted (JWE), which is not supported");
    if (dots != 2)
        return jwt_fail(err, JWT_MALFORMED,
                        "the token is malformed: a compact JWS has exactly "
                        "three parts");
    /* an empty signature (alg none) is refused by the algorithm check */
    if (dot[0] == 0 || dot[1] == dot[0] + 1)
        return jwt_fail(err, JWT_MALFORMED,
                        "the token is malformed: the header or payload is "
                        "empty");
    return JWT_OK;
}

/* Header, algorithm, key and signature; the payload is not looked at. */
static enum jwt_rc jwt_verify_sig(const char *token, size_t len,
                                  const size_t dot[2],
                                  const struct jwt_keyset *keys,
                                  struct error *err)
{
    json_t *header;
    enum jwt_rc rc = jwt_decode_json(token, dot[0], "header", &header, err);
    if (rc != JWT_OK)
        return rc;
    enum jwt_alg alg = JWT_ALG_RS256;
    const struct jwt_key *key = NULL;
    const json_t *kid = json_object_get(header, "kid");
    rc = jwt_parse_alg(header, &alg, err);
    if (rc == JWT_OK && kid != NULL && !json_is_string(kid))
        rc = jwt_fail(err, JWT_MALFORMED,
                      "the token key id (kid) is not a string");
    if (rc == JWT_OK)
        rc = jwt_find_key(keys, json_string_value(kid), alg, &key, err);
    json_decref(header);
    if (rc != JWT_OK)
        return rc;
    unsigned char *sig;
    size_t siglen;
    if (jwt_b64url_decode(token + dot[1] + 1, len - dot[1] - 1, &sig,
                          &siglen) < 0)
        return jwt_fail(err, JWT_MALFORMED,
                        "the token is malformed: the signature is not valid "
                        "base64url");
    rc = jwt_check_sig(key, alg, token, dot[1], sig, siglen, err);
    free(sig);
    return rc;
}

enum jwt_rc jwt_verify(const char *token, size_t len,
                       const struct jwt_keyset *keys,
                       const struct jwt_expect *want, json_t **claims,
                       struct error *err)
{
    size_t dot[2] = {0, 0};
    if (claims != NULL)
        *claims = NULL;
    if (token == NULL || keys == NULL || want == NULL)
        return jwt_fail(err, JWT_ERROR,
                        "no token, key set or expectations to verify against");
    enum jwt_rc rc = jwt_split(token, len, dot, err);
    if (rc == JWT_OK)
        rc = jwt_verify_sig(token, len, dot, keys, err);
    if (rc != JWT_OK)
        return rc;
    json_t *payload;
    rc = jwt_decode_json(token + dot[0] + 1, dot[1] - dot[0] - 1, "payload",
                         &payload, err);
    if (rc == JWT_OK)
        rc = jwt_check_claims(payload, want, err);
    if (rc == JWT_OK && claims != NULL)
        *claims = payload;
    else
        json_decref(payload);
    return rc;
}

enum jwt_rc jwt_verify_jwks(const char *token, size_t len, const char *jwks,
                            size_t jwks_len, const struct jwt_expect *want,
                            json_t **claims, struct error *err)
{
    struct jwt_keyset *ks;
    if (claims != NULL)
        *claims = NULL;
    enum jwt_rc rc = jwt_keyset_parse(jwks, jwks_len, &ks, err);
    if (rc != JWT_OK)
        return rc;
    rc = jwt_verify(token, len, ks, want, claims, err);
    jwt_keyset_free(ks);
    return rc;
}
