/*
 * cms.c - the shared machinery of the CMS layer: the streaming BER reader
 * that lets decrypt, verify and decompress run in constant memory, the
 * bounded DER writer for the stubs handed to OpenSSL, the BIO pumps, and
 * the algorithm names and tables.
 *
 * It owns only what one call allocates. It must never trust a length
 * read from the input for an allocation (captures grow a buffer bounded
 * by AS2_CMS_HEAD_MAX, content is streamed in CMS_CHUNK pieces), never
 * recurse deeper than CMS_DEPTH_MAX, and never put input bytes in an
 * error message.
 */
#include "as2/cms_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>

/* ---- cbuf ---- */

int cbuf_put(struct cbuf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (n > b->max || b->len > b->max - n)
        return -1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        unsigned char *q = realloc(b->p, cap);
        if (q == NULL)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

int cbuf_wrap(struct cbuf *b, size_t from, unsigned char id)
{
    size_t len = b->len - from;
    unsigned char hdr[10];
    size_t h = 0;
    hdr[h++] = id;
    if (len < 0x80) {
        hdr[h++] = (unsigned char)len;
    } else {
        int k = 0;
        for (size_t v = len; v > 0; v >>= 8)
            k++;
        hdr[h++] = (unsigned char)(0x80 | k);
        for (int i = k - 1; i >= 0; i--)
            hdr[h++] = (unsigned char)(len >> (8 * i));
    }
    /* grow by h bytes, then shift the wrapped bytes right */
    if (cbuf_put(b, hdr, h) != 0)
        return -1;
    memmove(b->p + from + h, b->p + from, len);
    memcpy(b->p + from, hdr, h);
    return 0;
}

void cbuf_free(struct cbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- BER reader ---- */

void ber_init(struct ber *b, BIO *in, const char *what, struct error *err)
{
    b->in = in;
    b->what = what;
    b->err = err;
    b->off = 0;
    b->pos = b->len = 0;
}

static int ber_bad(struct ber *b, const char *problem, const char *name)
{
    return error_set(b->err, "%s is malformed: %s %s (at byte %llu)",
                     b->what, name, problem, (unsigned long long)b->off);
}

/* Make at least n (<= CMS_CHUNK) bytes available in the buffer. */
static int ber_fill(struct ber *b, size_t n)
{
    if (b->len - b->pos >= n)
        return 0;
    memmove(b->buf, b->buf + b->pos, b->len - b->pos);
    b->len -= b->pos;
    b->pos = 0;
    while (b->len < n) {
        long r = cms_read(b->in, b->buf + b->len, sizeof(b->buf) - b->len,
                          b->err);
        if (r < 0) {
            error_prefix(b->err, "%s", b->what);
            return -1;
        }
        if (r == 0)
            return error_set(b->err, "%s is truncated (the input ends at "
                             "byte %llu)", b->what,
                             (unsigned long long)(b->off + b->len - b->pos));
        b->len += (size_t)r;
    }
    return 0;
}

/* Consume up to n bytes, at least one: *p points at them in the buffer. */
static int ber_chunk(struct ber *b, uint64_t n, const unsigned char **p,
                     size_t *got)
{
    if (ber_fill(b, 1) != 0)
        return -1;
    size_t avail = b->len - b->pos;
    size_t k = n < avail ? (size_t)n : avail;
    *p = b->buf + b->pos;
    b->pos += k;
    b->off += k;
    *got = k;
    return 0;
}

static int ber_byte(struct ber *b, struct ber_tlv *t, unsigned char *c)
{
    if (ber_fill(b, 1) != 0)
        return -1;
    if (t->hdrlen >= sizeof(t->hdr))
        return ber_bad(b, "has an oversized header", "an element");
    *c = b->buf[b->pos++];
    b->off++;
    t->hdr[t->hdrlen++] = *c;
    return 0;
}

static int ber_length(struct ber *b, struct ber_tlv *t)
{
    unsigned char c;
    if (ber_byte(b, t, &c) != 0)
        return -1;
    if (c == 0x80) {
        if (!t->cons)
            return ber_bad(b, "has an indefinite length but is primitive",
                           "an element");
        t->indef = 1;
        return 0;
    }
    uint64_t len = c;
    if (c > 0x80) {
        int n = c & 0x7f;
        if (n > 7)
            return ber_bad(b, "has an impossible length", "an element");
        len = 0;
        for (int i = 0; i < n; i++) {
            if (ber_byte(b, t, &c) != 0)
                return -1;
            len = (len << 8) | c;
        }
    }
    t->len = len;
    t->end = b->off + len;
    return 0;
}

static int ber_header(struct ber *b, struct ber_tlv *t)
{
    unsigned char c;
    memset(t, 0, sizeof(*t));
    if (ber_byte(b, t, &c) != 0)
        return -1;
    t->id = c;
    t->cons = (c & 0x20) != 0;
    if ((c & 0x1f) == 0x1f) {       /* high tag number: base-128 octets */
        int k = 0;
        do {
            if (ber_byte(b, t, &c) != 0)
                return -1;
        } while ((c & 0x80) && ++k < 4);
        if (c & 0x80)
            return ber_bad(b, "has a tag number too large", "an element");
    }
    return ber_length(b, t);
}

int ber_peek(struct ber *b, const struct ber_tlv *parent)
{
    if (parent != NULL && !parent->indef) {
        if (b->off == parent->end)
            return 0;
        if (b->off > parent->end)
            return ber_bad(b, "overruns its container", "an element");
    }
    if (ber_fill(b, 1) != 0)
        return -1;
    if (b->buf[b->pos] != 0)
        return b->buf[b->pos];
    if (parent == NULL || !parent->indef)
        return ber_bad(b, "is misplaced", "an end-of-contents marker");
    if (ber_fill(b, 2) != 0)
        return -1;
    if (b->buf[b->pos + 1] != 0)
        return ber_bad(b, "is not 00 00", "an end-of-contents marker");
    return 0;
}

int ber_next(struct ber *b, const struct ber_tlv *parent, struct ber_tlv *t,
             unsigned char id, const char *name)
{
    int p = ber_peek(b, parent);
    if (p < 0)
        return -1;
    if (p == 0)
        return ber_bad(b, "is missing", name);
    if (ber_header(b, t) != 0)
        return -1;
    if (id != 0 && t->id != id)
        return error_set(b->err, "%s is malformed: %s has tag 0x%02x where "
                         "0x%02x was expected (at byte %llu)", b->what, name,
                         t->id, id, (unsigned long long)b->off);
    if (parent != NULL && !parent->indef &&
        (b->off > parent->end || (!t->indef && t->end > parent->end)))
        return ber_bad(b, "overruns its container", name);
    return 0;
}

int ber_close(struct ber *b, const struct ber_tlv *t, const char *name)
{
    if (!t->indef)
        return b->off == t->end ? 0
                                : ber_bad(b, "has unexpected data at its end",
                                          name);
    int p = ber_peek(b, t);
    if (p < 0)
        return -1;
    if (p != 0)
        return ber_bad(b, "has unexpected data at its end", name);
    b->pos += 2;
    b->off += 2;
    return 0;
}

/* Walk t's content: definite content goes to fn in chunks; indefinite
 * content is walked child by child (each child's header goes to fn too
 * when keep_hdr is set). Shared by skip and capture. */
typedef int (*ber_walk_fn)(void *ctx, const unsigned char *p, size_t n);

static int ber_walk(struct ber *b, const struct ber_tlv *t, ber_walk_fn fn,
                    void *ctx, int depth)
{
    if (depth > CMS_DEPTH_MAX)
        return ber_bad(b, "is nested too deeply", "an element");
    if (!t->indef) {
        for (uint64_t left = t->len; left > 0;) {
            const unsigned char *p;
            size_t got;
            if (ber_chunk(b, left, &p, &got) != 0)
                return -1;
            if (fn(ctx, p, got) != 0)
                return -1;
            left -= got;
        }
        return 0;
    }
    for (;;) {
        int p = ber_peek(b, t);
        if (p < 0)
            return -1;
        if (p == 0)
            break;
        struct ber_tlv c;
        if (ber_next(b, t, &c, 0, "an element") != 0 ||
            fn(ctx, c.hdr, c.hdrlen) != 0 ||
            ber_walk(b, &c, fn, ctx, depth + 1) != 0)
            return -1;
    }
    static const unsigned char eoc[2] = {0, 0};
    if (fn(ctx, eoc, 2) != 0)
        return -1;
    return ber_close(b, t, "an element");
}

static int walk_drop(void *ctx, const unsigned char *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return 0;
}

struct walk_keep {
    struct cbuf *out;
    struct ber *b;
};

static int walk_keep(void *ctx, const unsigned char *p, size_t n)
{
    struct walk_keep *k = ctx;
    if (cbuf_put(k->out, p, n) == 0)
        return 0;
    return error_set(k->b->err, "%s has more than %zu bytes of structure "
                     "around its content", k->b->what, k->out->max);
}

int ber_skip(struct ber *b, const struct ber_tlv *t)
{
    return ber_walk(b, t, walk_drop, NULL, 0);
}

int ber_capture(struct ber *b, const struct ber_tlv *t, struct cbuf *out)
{
    struct walk_keep k = {out, b};
    if (walk_keep(&k, t->hdr, t->hdrlen) != 0)
        return -1;
    return ber_walk(b, t, walk_keep, &k, 0);
}

int ber_small(struct ber *b, const struct ber_tlv *t, unsigned char *dst,
              size_t cap, size_t *n, const char *name)
{
    if (t->cons || t->len > cap)
        return ber_bad(b, "is not a small primitive value", name);
    size_t have = 0;
    while (have < t->len) {
        const unsigned char *p;
        size_t got;
        if (ber_chunk(b, t->len - have, &p, &got) != 0)
            return -1;
        memcpy(dst + have, p, got);
        have += got;
    }
    *n = have;
    return 0;
}

static int ber_octets_at(struct ber *b, const struct ber_tlv *t,
                         ber_sink sink, void *ctx, int depth)
{
    if (depth > CMS_DEPTH_MAX)
        return ber_bad(b, "is nested too deeply", "the content");
    if (!t->cons) {
        for (uint64_t left = t->len; left > 0;) {
            const unsigned char *p;
            size_t got;
            if (ber_chunk(b, left, &p, &got) != 0 ||
                sink(ctx, p, got, b->err) != 0)
                return -1;
            left -= got;
        }
        return 0;
    }
    for (;;) {
        int p = ber_peek(b, t);
        if (p < 0)
            return -1;
        if (p == 0)
            return ber_close(b, t, "the content");
        struct ber_tlv c;
        if (ber_next(b, t, &c, 0, "a content segment") != 0)
            return -1;
        if (c.id != BER_OCTETS && c.id != BER_OCTETS_C)
            return ber_bad(b, "is not an OCTET STRING", "a content segment");
        if (ber_octets_at(b, &c, sink, ctx, depth + 1) != 0)
            return -1;
    }
}

int ber_octets(struct ber *b, const struct ber_tlv *t, ber_sink sink,
               void *ctx)
{
    return ber_octets_at(b, t, sink, ctx, 0);
}

int ber_take(struct ber *b, const struct ber_tlv *parent, unsigned char id,
             struct cbuf *out, const char *name)
{
    struct ber_tlv t;
    if (ber_next(b, parent, &t, id, name) != 0)
        return -1;
    return ber_capture(b, &t, out);
}

int ber_take_opt(struct ber *b, const struct ber_tlv *parent,
                 unsigned char id, struct cbuf *out, const char *name)
{
    int p = ber_peek(b, parent);
    if (p < 0)
        return -1;
    if (p != id)
        return 0;
    return ber_take(b, parent, id, out, name) == 0 ? 1 : -1;
}

int ber_oid(struct ber *b, const struct ber_tlv *parent, struct cbuf *raw,
            const char *name)
{
    struct ber_tlv t;
    unsigned char der[80];
    size_t n;
    if (ber_next(b, parent, &t, BER_OID, name) != 0)
        return -1;
    if (t.hdrlen != 2 ||
        ber_small(b, &t, der + 2, sizeof(der) - 2, &n, name) != 0)
        return ber_bad(b, "is not a short object identifier", name);
    der[0] = t.hdr[0];
    der[1] = t.hdr[1];
    if (raw != NULL && cbuf_put(raw, der, n + 2) != 0)
        return error_set(b->err, "out of memory reading %s", b->what);
    const unsigned char *p = der;
    ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &p, (long)(n + 2));
    if (obj == NULL) {
        ERR_clear_error();
        return ber_bad(b, "is not a valid object identifier", name);
    }
    int nid = OBJ_obj2nid(obj);
    ASN1_OBJECT_free(obj);
    return nid;
}

int ber_econtent(struct ber *b, const struct ber_tlv *eci,
                 struct ber_tlv *wrap, struct ber_tlv *os,
                 const char *absent)
{
    int p = ber_peek(b, eci);
    if (p < 0)
        return -1;
    if (p != BER_CTX0)
        return error_set(b->err, "%s", absent);
    if (ber_next(b, eci, wrap, BER_CTX0, "content") != 0 ||
        ber_next(b, wrap, os, 0, "content") != 0)
        return -1;
    if (os->id != BER_OCTETS && os->id != BER_OCTETS_C)
        return error_set(b->err, "%s is malformed: the content is not an "
                         "OCTET STRING", b->what);
    return 0;
}

/* ---- BIO helpers ---- */

long cms_read(BIO *in, unsigned char *buf, size_t cap, struct error *err)
{
    int r = BIO_read(in, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (r >= 0)
        return r;
    if (BIO_should_retry(in))
        return error_set(err, "the input would block (blocking input is "
                         "required; a memory BIO needs mem_eof_return 0)");
    return error_openssl(err, "cannot read the input");
}

int cms_write(BIO *out, const void *p, size_t n, const char *what,
              struct error *err)
{
    const unsigned char *q = p;
    while (n > 0) {
        int k = n > INT32_MAX ? INT32_MAX : (int)n;
        int r = BIO_write(out, q, k);
        if (r <= 0)
            return error_openssl(err, what);
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

int cms_pump(BIO *in, BIO *out, const char *what, struct error *err)
{
    unsigned char buf[CMS_CHUNK];
    for (;;) {
        long r = cms_read(in, buf, sizeof(buf), err);
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        if (cms_write(out, buf, (size_t)r, what, err) != 0)
            return -1;
    }
}

void cms_free_upto(BIO *top, BIO *stop)
{
    while (top != NULL && top != stop) {
        BIO *next = BIO_pop(top);
        BIO_free(top);
        top = next;
    }
}

int cms_sink_bio(void *ctx, const unsigned char *p, size_t n,
                 struct error *err)
{
    return cms_write(ctx, p, n, "cannot write the output", err);
}

void cms_name(X509_NAME *name, char *buf, size_t n)
{
    snprintf(buf, n, "(unknown)");
    BIO *m = name != NULL ? BIO_new(BIO_s_mem()) : NULL;
    char *p;
    if (m != NULL && X509_NAME_print_ex(m, name, 0, XN_FLAG_RFC2253) >= 0) {
        long len = BIO_get_mem_data(m, &p);
        size_t k = len < 0 ? 0 : (size_t)len < n - 1 ? (size_t)len : n - 1;
        for (size_t i = 0; i < k; i++)
            buf[i] = ((unsigned char)p[i] >= 0x20 && p[i] != 0x7f) ? p[i]
                                                                  : '?';
        buf[k] = '\0';
    }
    BIO_free(m);
}

void cms_subject(X509 *c, char *buf, size_t n)
{
    cms_name(c != NULL ? X509_get_subject_name(c) : NULL, buf, n);
}

/* ---- algorithm tables ---- */

static const struct {
    enum as2_digest d;
    int nid;
    const char *name;
} digests[] = {
    {AS2_DIGEST_SHA1, NID_sha1, "sha1"},
    {AS2_DIGEST_SHA256, NID_sha256, "sha256"},
    {AS2_DIGEST_SHA384, NID_sha384, "sha384"},
    {AS2_DIGEST_SHA512, NID_sha512, "sha512"},
};

static const struct {
    enum as2_cipher c;
    int nid;
    const char *name;
    const char *alias;
} ciphers[] = {
    {AS2_CIPHER_3DES, NID_des_ede3_cbc, "des-ede3-cbc", "3des"},
    {AS2_CIPHER_AES128_CBC, NID_aes_128_cbc, "aes-128-cbc", "aes128"},
    {AS2_CIPHER_AES192_CBC, NID_aes_192_cbc, "aes-192-cbc", "aes192"},
    {AS2_CIPHER_AES256_CBC, NID_aes_256_cbc, "aes-256-cbc", "aes256"},
    {AS2_CIPHER_AES128_GCM, NID_aes_128_gcm, "aes-128-gcm", NULL},
    {AS2_CIPHER_AES192_GCM, NID_aes_192_gcm, "aes-192-gcm", NULL},
    {AS2_CIPHER_AES256_GCM, NID_aes_256_gcm, "aes-256-gcm", NULL},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const EVP_MD *cms_digest_md(enum as2_digest d)
{
    switch (d) {
    case AS2_DIGEST_SHA1: return EVP_sha1();
    case AS2_DIGEST_SHA256: return EVP_sha256();
    case AS2_DIGEST_SHA384: return EVP_sha384();
    case AS2_DIGEST_SHA512: return EVP_sha512();
    case AS2_DIGEST_NONE: break;
    }
    return NULL;
}

enum as2_digest cms_digest_from_nid(int nid)
{
    for (size_t i = 0; i < COUNT(digests); i++)
        if (digests[i].nid == nid)
            return digests[i].d;
    return AS2_DIGEST_NONE;
}

const EVP_CIPHER *cms_cipher_evp(enum as2_cipher c)
{
    switch (c) {
    case AS2_CIPHER_3DES: return EVP_des_ede3_cbc();
    case AS2_CIPHER_AES128_CBC: return EVP_aes_128_cbc();
    case AS2_CIPHER_AES192_CBC: return EVP_aes_192_cbc();
    case AS2_CIPHER_AES256_CBC: return EVP_aes_256_cbc();
    case AS2_CIPHER_AES128_GCM: return EVP_aes_128_gcm();
    case AS2_CIPHER_AES192_GCM: return EVP_aes_192_gcm();
    case AS2_CIPHER_AES256_GCM: return EVP_aes_256_gcm();
    case AS2_CIPHER_NONE: break;
    }
    return NULL;
}

enum as2_cipher cms_cipher_from_nid(int nid)
{
    for (size_t i = 0; i < COUNT(ciphers); i++)
        if (ciphers[i].nid == nid)
            return ciphers[i].c;
    return AS2_CIPHER_NONE;
}

const char *as2_digest_name(enum as2_digest d)
{
    for (size_t i = 0; i < COUNT(digests); i++)
        if (digests[i].d == d)
            return digests[i].name;
    return "unknown";
}

const char *as2_cipher_name(enum as2_cipher c)
{
    for (size_t i = 0; i < COUNT(ciphers); i++)
        if (ciphers[i].c == c)
            return ciphers[i].name;
    return "unknown";
}

const char *as2_key_transport_name(enum as2_key_transport k)
{
    switch (k) {
    case AS2_KT_RSA_PKCS1: return "rsa-pkcs1";
    case AS2_KT_RSA_OAEP: return "rsa-oaep";
    case AS2_KT_RSA_OAEP_SHA256: return "rsa-oaep-sha256";
    }
    return "unknown";
}

/* Lower-case name without '-', '_' and spaces into buf; 0, or -1 when it
 * does not fit. */
static int squash(const char *name, char *buf, size_t n)
{
    size_t k = 0;
    for (; name != NULL && *name != '\0'; name++) {
        if (*name == '-' || *name == '_' || *name == ' ')
            continue;
        if (k + 1 >= n)
            return -1;
        buf[k++] = (char)tolower((unsigned char)*name);
    }
    buf[k] = '\0';
    return k > 0 ? 0 : -1;
}

enum as2_digest as2_digest_from_name(const char *name)
{
    char want[32], have[32];
    if (squash(name, want, sizeof(want)) != 0)
        return AS2_DIGEST_NONE;
    for (size_t i = 0; i < COUNT(digests); i++)
        if (squash(digests[i].name, have, sizeof(have)) == 0 &&
            strcmp(want, have) == 0)
            return digests[i].d;
    return AS2_DIGEST_NONE;
}

enum as2_cipher as2_cipher_from_name(const char *name)
{
    char want[32], have[32];
    if (squash(name, want, sizeof(want)) != 0)
        return AS2_CIPHER_NONE;
    if (strcmp(want, "tripledes") == 0 || strcmp(want, "desede3") == 0)
        return AS2_CIPHER_3DES;
    for (size_t i = 0; i < COUNT(ciphers); i++) {
        if ((squash(ciphers[i].name, have, sizeof(have)) == 0 &&
             strcmp(want, have) == 0) ||
            (ciphers[i].alias != NULL &&
             squash(ciphers[i].alias, have, sizeof(have)) == 0 &&
             strcmp(want, have) == 0))
            return ciphers[i].c;
    }
    return AS2_CIPHER_NONE;
}

enum as2_cms_type as2_cms_type_of(const unsigned char *p, size_t n)
{
    BIO *in = BIO_new_mem_buf(p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (in == NULL)
        return AS2_CMS_UNKNOWN;
    struct ber *b = malloc(sizeof(*b));
    struct ber_tlv ci;
    int nid = -1;
    if (b != NULL) {
        ber_init(b, in, "message", NULL);
        if (ber_next(b, NULL, &ci, BER_SEQ, "ContentInfo") == 0)
            nid = ber_oid(b, &ci, NULL, "content type");
    }
    free(b);
    BIO_free(in);
    ERR_clear_error();
    switch (nid) {
    case NID_pkcs7_data: return AS2_CMS_DATA;
    case NID_pkcs7_signed: return AS2_CMS_SIGNED;
    case NID_pkcs7_enveloped: return AS2_CMS_ENVELOPED;
    case NID_id_smime_ct_authEnvelopedData: return AS2_CMS_AUTH_ENVELOPED;
    case NID_id_smime_ct_compressedData: return AS2_CMS_COMPRESSED;
    default: return AS2_CMS_UNKNOWN;
    }
}
