/*
 * mic.c - the AS2 Message Integrity Check: which entity a MIC covers
 * (RFC 4130 7.3.1, RFC 5402), streaming digests with optional CRLF
 * canonicalization of text, and the "base64, algorithm" form.
 *
 * It owns the digest context of a struct as2_mic and nothing else. It
 * must never parse MIME (the caller hands it the right bytes) and never
 * put digested bytes in an error.
 */
#include "as2/mic.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "as2/cms_internal.h"

struct as2_mic {
    EVP_MD_CTX *ctx;
    enum as2_digest digest;
    int last_cr;                /* the last canon byte seen was CR */
};

int as2_mic_scope(const enum as2_layer *layers, size_t n,
                  struct as2_mic_scope *scope, struct error *err)
{
    int seen[4] = {0};
    size_t signed_at = n;
    for (size_t i = 0; i < n; i++) {
        enum as2_layer l = layers[i];
        if (l < AS2_LAYER_ENCRYPTED || l > AS2_LAYER_COMPRESSED)
            return error_set(err, "MIC: unknown message layer %d", (int)l);
        if (seen[l]++)
            return error_set(err, "MIC: the message is %s twice",
                             l == AS2_LAYER_ENCRYPTED ? "encrypted"
                             : l == AS2_LAYER_SIGNED ? "signed"
                             : "compressed");
        if (l == AS2_LAYER_SIGNED)
            signed_at = i;
    }
    if (signed_at < n) {
        scope->depth = signed_at + 1;
        scope->headers = 1;
    } else {
        scope->depth = n;
        scope->headers = n > 0;
    }
    return 0;
}

const char *as2_mic_alg_name(enum as2_digest d)
{
    switch (d) {
    case AS2_DIGEST_SHA1: return "sha-1";
    case AS2_DIGEST_SHA256: return "sha-256";
    case AS2_DIGEST_SHA384: return "sha-384";
    case AS2_DIGEST_SHA512: return "sha-512";
    case AS2_DIGEST_NONE: break;
    }
    return "unknown";
}

/* Copy s[0..n) without surrounding spaces into buf; 0, or -1 if long. */
static int trimmed(const char *s, size_t n, char *buf, size_t cap)
{
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n >= cap)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

struct as2_mic *as2_mic_new(enum as2_digest d, struct error *err)
{
    const EVP_MD *md = cms_digest_md(d);
    if (md == NULL) {
        error_set(err, "MIC: unsupported digest algorithm");
        return NULL;
    }
    struct as2_mic *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex(m->ctx, md, NULL) != 1) {
        as2_mic_free(m);
        error_openssl(err, "MIC: cannot start the digest");
        return NULL;
    }
    m->digest = d;
    return m;
}

int as2_mic_update(struct as2_mic *m, const void *p, size_t n,
                   struct error *err)
{
    if (n > 0 && EVP_DigestUpdate(m->ctx, p, n) != 1)
        return error_openssl(err, "MIC: digest failed");
    if (n > 0)
        m->last_cr = ((const unsigned char *)p)[n - 1] == '\r';
    return 0;
}

enum as2_digest as2_mic_alg(const struct as2_mic *m)
{
    return m->digest;
}

int as2_mic_adopt(struct as2_mic *m, BIO *chain, struct error *err)
{
    const EVP_MD *want = EVP_MD_CTX_get0_md(m->ctx);
    for (BIO *b = BIO_find_type(chain, BIO_TYPE_MD); b != NULL;
         b = BIO_find_type(BIO_next(b), BIO_TYPE_MD)) {
        EVP_MD_CTX *c = NULL;
        if (BIO_get_md_ctx(b, &c) <= 0 || c == NULL || want == NULL ||
            EVP_MD_get_type(EVP_MD_CTX_get0_md(c)) != EVP_MD_get_type(want))
            continue;
        if (EVP_MD_CTX_copy_ex(m->ctx, c) != 1)
            return error_openssl(err, "MIC: cannot copy a digest");
        return 0;
    }
    return error_set(err, "MIC: the content was not digested with %s",
                     as2_mic_alg_name(m->digest));
}

int as2_mic_update_canon(struct as2_mic *m, const void *p, size_t n,
                         struct error *err)
{
    const unsigned char *s = p;
    size_t run = 0;                 /* start of the bytes not yet digested */
    for (size_t i = 0; i < n; i++) {
        int bare_lf = s[i] == '\n' && !(i > 0 ? s[i - 1] == '\r'
                                              : m->last_cr);
        if (!bare_lf)
            continue;
        if (as2_mic_update(m, s + run, i - run, err) != 0 ||
            as2_mic_update(m, "\r", 1, err) != 0)
            return -1;
        run = i;                    /* the LF itself goes with the next run */
    }
    return as2_mic_update(m, s + run, n - run, err);
}

int as2_mic_final_b64(struct as2_mic *m, char *out, size_t outsz,
                      struct error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(m->ctx, md, &len) != 1)
        return error_openssl(err, "MIC: digest failed");
    if (outsz < 4 * ((len + 2) / 3) + 1)
        return error_set(err, "MIC: output buffer too small");
    EVP_EncodeBlock((unsigned char *)out, md, (int)len);
    return 0;
}

int as2_mic_final(struct as2_mic *m, char *out, size_t outsz,
                  struct error *err)
{
    char b64[EVP_MAX_MD_SIZE * 2];
    if (as2_mic_final_b64(m, b64, sizeof(b64), err) != 0)
        return -1;
    int w = snprintf(out, outsz, "%s, %s", b64, as2_mic_alg_name(m->digest));
    if (w < 0 || (size_t)w >= outsz)
        return error_set(err, "MIC: output buffer too small");
    return 0;
}

void as2_mic_free(struct as2_mic *m)
{
    if (m == NULL)
        return;
    EVP_MD_CTX_free(m->ctx);
    free(m);
}

int as2_mic_compute(enum as2_digest d, const void *p, size_t n, char *out,
                    size_t outsz, struct error *err)
{
    struct as2_mic *m = as2_mic_new(d, err);
    if (m == NULL)
        return -1;
    int rc = as2_mic_update(m, p, n, err);
    if (rc == 0)
        rc = as2_mic_final(m, out, outsz, err);
    as2_mic_free(m);
    return rc;
}

int as2_mic_compute_bio(enum as2_digest d, BIO *in, char *out, size_t outsz,
                        struct error *err)
{
    struct as2_mic *m = as2_mic_new(d, err);
    if (m == NULL)
        return -1;
    unsigned char buf[CMS_CHUNK];
    long r;
    int rc = 0;
    while (rc == 0 && (r = cms_read(in, buf, sizeof(buf), err)) != 0)
        rc = r < 0 ? -1 : as2_mic_update(m, buf, (size_t)r, err);
    if (rc == 0)
        rc = as2_mic_final(m, out, outsz, err);
    as2_mic_free(m);
    return rc;
}

/* Split "b64, alg" into the decoded digest and the algorithm. */
static int mic_parse(const char *s, unsigned char *md, int *mdlen,
                     enum as2_digest *d)
{
    const char *comma = s != NULL ? strchr(s, ',') : NULL;
    char b64[AS2_MIC_MAX], alg[32];
    if (comma == NULL ||
        trimmed(s, (size_t)(comma - s), b64, sizeof(b64)) != 0 ||
        trimmed(comma + 1, strlen(comma + 1), alg, sizeof(alg)) != 0)
        return -1;
    size_t n = strlen(b64);
    if (n == 0 || n % 4 != 0)
        return -1;
    int len = EVP_DecodeBlock(md, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return -1;
    len -= (b64[n - 1] == '=') + (n > 1 && b64[n - 2] == '=');
    *mdlen = len;
    *d = as2_digest_from_name(alg);
    return *d == AS2_DIGEST_NONE ? -1 : 0;
}

int as2_mic_equal(const char *a, const char *b)
{
    unsigned char ma[AS2_MIC_MAX], mb[AS2_MIC_MAX];
    int la, lb;
    enum as2_digest da, db;
    if (mic_parse(a, ma, &la, &da) != 0 || mic_parse(b, mb, &lb, &db) != 0)
        return 0;
    return da == db && la == lb && CRYPTO_memcmp(ma, mb, (size_t)la) == 0;
}
