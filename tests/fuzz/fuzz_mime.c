/*
 * fuzz_mime.c - libFuzzer target for the MIME code of src/as2/mime.c, all
 * of which sees partner-controlled bytes: header blocks, Content-Type and
 * parameters, the buffered and the streaming multipart splitter, base64
 * and quoted-printable decoding, CRLF canonicalization.
 *
 * Besides the sanitizers, it checks (abort() on violation):
 *   - parsed headers are clean (name without ':' or controls, value without
 *     CR/LF/controls, trimmed) and survive mime_header_write + re-parse;
 *   - the streaming splitter fed the same body in random-sized chunks
 *     agrees with mime_multipart_split: both fail, or both yield the same
 *     parts (offsets and bytes); parts are in bounds and ascending;
 *   - the streaming base64 decoder in random chunks equals the buffered
 *     one; base64 encode -> decode gives the input back; quoted-printable
 *     never grows; streaming canonicalization equals the one-shot result
 *     and leaves no bare CR or LF.
 * The splitter runs twice: with the body's Content-Type boundary (when the
 * input starts with a header block) and with the input's first line as the
 * boundary, so the fuzzer reaches it without building valid headers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as2/mime.h"

/* ---- a tiny deterministic PRNG for chunk sizes ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t seed_of(const uint8_t *d, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 1099511628211ULL;
    return h | 1;
}

/* Chunk sizes: mostly tiny (to split delimiters everywhere), sometimes big. */
static size_t chunk(uint64_t *s, size_t left)
{
    uint64_t r = rng_next(s);
    size_t n = (r & 3) ? 1 + (size_t)((r >> 8) % 8) : 1 + (size_t)((r >> 8) % 300);
    return n < left ? n : left;
}

/* ---- headers ---- */

static void check_headers(const struct mime_headers *hs)
{
    if (hs->count > MIME_MAX_HEADERS)
        abort();
    for (size_t i = 0; i < hs->count; i++) {
        const char *n = hs->h[i].name, *v = hs->h[i].value;
        size_t vl = strlen(v);
        if (*n == '\0' || strchr(n, ':'))
            abort();
        for (const char *p = n; *p; p++)
            if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127)
                abort();
        for (const char *p = v; *p; p++)
            if (((unsigned char)*p < 32 && *p != '\t') || *p == 127)
                abort();
        if (vl && (v[0] == ' ' || v[0] == '\t' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            abort();
    }
}

/* Writing a parsed header and parsing it again gives it back. */
static void header_round_trip(const char *name, const char *value)
{
    struct mime_buf b;
    struct mime_headers hs;
    mime_buf_init(&b);
    mime_headers_init(&hs);
    if (mime_header_write(&b, name, value, NULL) == 0) {
        size_t off;
        if (mime_headers_parse(&hs, b.data, b.len, &off, NULL) != 0)
            abort();
        if (off != b.len || hs.count != 1 || strcmp(hs.h[0].name, name) ||
            strcmp(hs.h[0].value, value))
            abort();
    }
    mime_headers_free(&hs);
    mime_buf_free(&b);
}

/* ---- splitter comparison ---- */

struct cmp {
    const char *body;
    const struct mime_part_range *parts;
    size_t nparts;
    bool check;         /* the buffered split succeeded: compare */
    size_t cur, pos, begun, ended;
    bool open;
};

static int cb_begin(void *ctx, size_t index, uint64_t offset, struct error *err)
{
    struct cmp *c = ctx;
    (void)err;
    if (c->open || index != c->begun)
        abort();
    if (c->check && (index >= c->nparts || offset != c->parts[index].off))
        abort();
    c->cur = index;
    c->pos = 0;
    c->open = true;
    c->begun++;
    return 0;
}

static int cb_data(void *ctx, const char *data, size_t len, struct error *err)
{
    struct cmp *c = ctx;
    (void)err;
    if (!c->open || len == 0)
        abort();
    if (c->check) {
        const struct mime_part_range *p = &c->parts[c->cur];
        if (c->pos + len > p->len || memcmp(data, c->body + p->off + c->pos, len))
            abort();
    }
    c->pos += len;
    return 0;
}

static int cb_end(void *ctx, struct error *err)
{
    struct cmp *c = ctx;
    (void)err;
    if (!c->open)
        abort();
    if (c->check && c->pos != c->parts[c->cur].len)
        abort();
    c->open = false;
    c->ended++;
    return 0;
}

static const struct mime_splitter_cb cmp_cb = {cb_begin, cb_data, cb_end};

static void check_ranges(const char *body, size_t len,
                         const struct mime_part_range *p, size_t n)
{
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].off < last || p[i].off > len || p[i].len > len - p[i].off)
            abort();
        if (p[i].off == 0 || body[p[i].off - 1] != '\n')
            abort();        /* a part starts right after a delimiter line */
        last = p[i].off + p[i].len;
    }
}

/* Decode each part's body by its transfer encoding (exercise only). */
static void decode_parts(const char *body, const struct mime_part_range *p, size_t n)
{
    for (size_t i = 0; i < n && i < 8; i++) {
        struct mime_headers hs;
        size_t off;
        mime_headers_init(&hs);
        if (mime_headers_parse(&hs, body + p[i].off, p[i].len, &off, NULL) == 0) {
            enum mime_cte cte;
            unsigned char *d;
            size_t dn;
            check_headers(&hs);
            const char *v = mime_header_get(&hs, "Content-Transfer-Encoding");
            if (off > p[i].len)
                abort();
            if (mime_cte_parse(v, &cte, NULL) == 0 &&
                mime_decode_alloc(cte, body + p[i].off + off, p[i].len - off,
                                  &d, &dn, NULL) == 0)
                free(d);
        }
        mime_headers_free(&hs);
    }
}

static void split_both(const char *body, size_t len, const char *boundary,
                       uint64_t seed)
{
    size_t maxp = len / 2 + 2, n = 0;
    struct mime_part_range *parts = malloc(maxp * sizeof(*parts));
    if (parts == NULL)
        return;
    int rb = mime_multipart_split(body, len, boundary, parts, maxp, &n, NULL);
    if (rb == 0) {
        if (n == 0)
            abort();
        check_ranges(body, len, parts, n);
        decode_parts(body, parts, n);
    }

    struct cmp c = {body, parts, n, rb == 0, 0, 0, 0, 0, false};
    struct mime_splitter s;
    int rs = mime_splitter_init(&s, boundary, &cmp_cb, &c, NULL);
    if (rs == 0) {
        for (size_t i = 0; rs == 0 && i < len;) {
            size_t k = chunk(&seed, len - i);
            rs = mime_splitter_feed(&s, body + i, k, NULL);
            i += k;
        }
        if (rs == 0)
            rs = mime_splitter_finish(&s, NULL);
    }
    if ((rb == 0) != (rs == 0))
        abort();
    if (rb == 0 && (c.begun != n || c.ended != n || c.open))
        abort();
    free(parts);
}

/* ---- encodings ---- */

static void b64_both(const char *in, size_t len, uint64_t seed)
{
    unsigned char *a = malloc(MIME_B64_DECODED_MAX(len) + 3);
    unsigned char *b = malloc(MIME_B64_DECODED_MAX(len) + 3);
    unsigned char tmp[MIME_B64_DECODED_MAX(300) + 3];
    size_t an = 0, bn = 0, k, o;
    if (a == NULL || b == NULL)
        goto out;
    int ra = mime_base64_decode(in, len, a, &an, NULL);
    if (ra == 0 && an > MIME_B64_DECODED_MAX(len))
        abort();
    struct mime_b64 d;
    int rs = 0;
    mime_b64_init(&d);
    for (size_t i = 0; rs == 0 && i < len; i += k) {
        k = chunk(&seed, len - i);
        rs = mime_b64_update(&d, in + i, k, tmp, &o, NULL);
        if (rs == 0) {
            if (o > MIME_B64_DECODED_MAX(k) || bn + o > MIME_B64_DECODED_MAX(len))
                abort();
            memcpy(b + bn, tmp, o);
            bn += o;
        }
    }
    if (rs == 0 && (rs = mime_b64_final(&d, tmp, &o, NULL)) == 0) {
        memcpy(b + bn, tmp, o);
        bn += o;
    }
    if ((ra == 0) != (rs == 0) || (ra == 0 && (an != bn || memcmp(a, b, an))))
        abort();
out:
    free(a);
    free(b);
}

static void b64_round_trip(const uint8_t *in, size_t len)
{
    size_t el = mime_base64_encoded_len(len);
    char *e = malloc(el + 1);
    unsigned char *d = malloc(MIME_B64_DECODED_MAX(el) + 1);
    size_t dn;
    if (e && d) {
        if (mime_base64_encode(in, len, e) != el)
            abort();
        for (size_t i = 0; i < el; i += 78)     /* 76 characters + CRLF */
            if (el - i < 2 || e[i + (el - i < 78 ? el - i : 78) - 1] != '\n')
                abort();
        if (mime_base64_decode(e, el, d, &dn, NULL) != 0 || dn != len ||
            (len && memcmp(d, in, len)))
            abort();
    }
    free(e);
    free(d);
}

static void qp_and_canon(const char *in, size_t len, uint64_t seed)
{
    unsigned char *q = malloc(len + 1);
    char *c1 = malloc(2 * len + 1), *c2 = malloc(2 * len + 1);
    size_t qn, n1, n2 = 0, k;
    if (q && mime_qp_decode(in, len, q, &qn, NULL) == 0 && qn > len)
        abort();
    if (c1 && c2) {
        struct mime_canon a, b;
        mime_canon_init(&a);
        mime_canon_init(&b);
        n1 = mime_canon_update(&a, in, len, c1);
        for (size_t i = 0; i < len; i += k) {
            k = chunk(&seed, len - i);
            n2 += mime_canon_update(&b, in + i, k, c2 + n2);
        }
        if (n1 != n2 || memcmp(c1, c2, n1))
            abort();
        for (size_t i = 0; i < n1; i++)
            if ((c1[i] == '\r' && (i + 1 == n1 || c1[i + 1] != '\n')) ||
                (c1[i] == '\n' && (i == 0 || c1[i - 1] != '\r')))
                abort();
    }
    free(q);
    free(c1);
    free(c2);
}

/* ---- entry ---- */

static void headers_and_body(const char *in, size_t len, uint64_t seed)
{
    struct mime_headers hs;
    size_t off;
    mime_headers_init(&hs);
    if (mime_headers_parse(&hs, in, len, &off, NULL) == 0) {
        if (off > len)
            abort();
        check_headers(&hs);
        for (size_t i = 0; i < hs.count && i < 16; i++)
            header_round_trip(hs.h[i].name, hs.h[i].value);
        const char *ctv = mime_header_get(&hs, "Content-Type");
        struct mime_content_type ct;
        if (ctv && mime_content_type_parse(ctv, &ct, NULL) == 0) {
            const char *b = mime_param_get(&ct.params, "boundary");
            if (b)
                split_both(in + off, len - off, b, seed);
            mime_content_type_free(&ct);
        }
    }
    mime_headers_free(&hs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    uint64_t seed = seed_of(data, size);

    headers_and_body(in, size, seed);

    /* First line as the boundary, the rest as a multipart body. */
    const char *nl = memchr(in, '\n', size);
    if (nl && nl - in <= MIME_MAX_BOUNDARY) {
        char b[MIME_MAX_BOUNDARY + 1];
        size_t bl = (size_t)(nl - in);
        memcpy(b, in, bl);
        b[bl] = '\0';
        size_t blen = bl;
        if (blen > 0 && b[blen - 1] == '\r')   /* a CRLF first line */
            b[--blen] = '\0';
        if (strlen(b) == blen)                  /* no NUL inside */
            split_both(nl + 1, size - bl - 1, b, seed);
    }

    /* Parameters of the first line as a header value. */
    char *line = malloc(size + 1);
    if (line) {
        memcpy(line, in, size);
        line[size] = '\0';
        struct mime_params p;
        if (mime_params_parse(line, &p, NULL) == 0) {
            if (p.count > MIME_MAX_PARAMS)
                abort();
            mime_params_free(&p);
        }
        free(line);
    }

    b64_both(in, size, seed);
    b64_round_trip(data, size);
    qp_and_canon(in, size, seed);
    return 0;
}
