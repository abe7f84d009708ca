/*
 * mime.c - MIME parsing and building for AS2 (see mime.h): header blocks,
 * parameters, Content-Type, buffered and streaming multipart splitting,
 * transfer encodings, header folding, envelopes, CRLF canonicalization.
 *
 * Owns only the heap memory of the structs declared in mime.h. Base64 bit
 * work is OpenSSL's (EVP_EncodeBlock/EVP_DecodeBlock); the strict input
 * checks around it are ours. Randomness is RAND_bytes.
 *
 * Must never: do I/O, keep global state, read past a caller's length, put
 * more than one character of untrusted input into an error message, or
 * let a header value carry a line break into written output.
 */
#include "as2/mime.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ---------------------------------------------------------- */

static bool is_wsp(int c) { return c == ' ' || c == '\t'; }

/* RFC 5322 field-name character: printable ASCII except ':'. */
static bool is_fname(int c) { return c > 32 && c < 127 && c != ':'; }

/* RFC 2045 token character. */
static bool is_token(int c)
{
    return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* A control character other than HTAB (header values may not hold one). */
static bool is_bad_ctl(int c)
{
    unsigned char u = (unsigned char)c;
    return (u < 32 && u != '\t') || u == 127;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* ---- mime_buf ------------------------------------------------------------------ */

void mime_buf_init(struct mime_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void mime_buf_free(struct mime_buf *b)
{
    free(b->data);
    mime_buf_init(b);
}

static int buf_reserve(struct mime_buf *b, size_t extra, struct error *err)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return error_set(err, "output buffer would exceed addressable size");
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return error_set(err, "out of memory growing a MIME buffer to %zu bytes", cap);
    b->data = d;
    b->cap = cap;
    return 0;
}

int mime_buf_append(struct mime_buf *b, const void *data, size_t len,
                    struct error *err)
{
    if (buf_reserve(b, len, err) != 0)
        return -1;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int mime_buf_puts(struct mime_buf *b, const char *s, struct error *err)
{
    return mime_buf_append(b, s, strlen(s), err);
}

/* ---- header blocks --------------------------------------------------------------- */

void mime_headers_init(struct mime_headers *hs)
{
    memset(hs, 0, sizeof(*hs));
}

void mime_headers_free(struct mime_headers *hs)
{
    for (size_t i = 0; i < hs->count; i++)
        free(hs->h[i].name);    /* value lives in the same allocation */
    free(hs->h);
    mime_headers_init(hs);
}

/* Store name (nlen bytes) and an already unfolded, checked value. */
static int headers_push(struct mime_headers *hs, const char *name, size_t nlen,
                        const char *value, size_t vlen, struct error *err)
{
    if (hs->count >= MIME_MAX_HEADERS)
        return error_set(err, "more than %d MIME headers", MIME_MAX_HEADERS);
    if (hs->count == hs->cap) {
        size_t cap = hs->cap ? hs->cap * 2 : 16;
        if (cap > MIME_MAX_HEADERS)
            cap = MIME_MAX_HEADERS;
        struct mime_header *h = realloc(hs->h, cap * sizeof(*h));
        if (h == NULL)
            return error_set(err, "out of memory storing MIME headers");
        hs->h = h;
        hs->cap = cap;
    }
    char *mem = malloc(nlen + vlen + 2);
    if (mem == NULL)
        return error_set(err, "out of memory storing a MIME header");
    memcpy(mem, name, nlen);
    mem[nlen] = '\0';
    memcpy(mem + nlen + 1, value, vlen);
    mem[nlen + 1 + vlen] = '\0';
    hs->h[hs->count].name = mem;
    hs->h[hs->count].value = mem + nlen + 1;
    hs->count++;
    return 0;
}

static int check_name(const char *name, size_t nlen, struct error *err)
{
    if (nlen == 0)
        return error_set(err, "a MIME header has an empty name");
    for (size_t i = 0; i < nlen; i++)
        if (!is_fname((unsigned char)name[i]))
            return error_set(err, "a MIME header name holds the invalid character 0x%02x",
                             (unsigned char)name[i]);
    return 0;
}

/* Unfold raw[0..n) (drop CR and LF, keep the rest), reject control
 * characters and NUL, trim, and store. */
static int header_finish(struct mime_headers *hs, const char *name, size_t nlen,
                         const char *raw, size_t n, struct error *err)
{
    char *v = malloc(n + 1);
    if (v == NULL)
        return error_set(err, "out of memory unfolding a MIME header");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '\n' || (c == '\r' && i + 1 < n && raw[i + 1] == '\n'))
            continue;           /* the line break of a fold */
        if (is_bad_ctl(c)) {
            free(v);
            return error_set(err, "MIME header value holds the control character 0x%02x", c);
        }
        v[o++] = (char)c;
    }
    size_t s = 0;
    while (s < o && is_wsp(v[s]))
        s++;
    while (o > s && is_wsp(v[o - 1]))
        o--;
    int rc = headers_push(hs, name, nlen, v + s, o - s, err);
    free(v);
    return rc;
}

static bool only_wsp(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_wsp(s[i]))
            return false;
    return true;
}

/* One header line being collected: name and the raw value range. */
struct pending {
    const char *name;
    size_t nlen;
    const char *val;
    size_t vend;        /* offset in data where the value ends (so far) */
    bool on;
};

static int pending_flush(struct mime_headers *hs, const char *data,
                         struct pending *p, struct error *err)
{
    if (!p->on)
        return 0;
    p->on = false;
    return header_finish(hs, p->name, p->nlen, p->val,
                         (size_t)(data + p->vend - p->val), err);
}

/* A header line [pos, end) that does not start with whitespace. */
static int header_line(const char *data, size_t pos, size_t end,
                       struct pending *p, size_t lineno, struct error *err)
{
    const char *colon = memchr(data + pos, ':', end - pos);
    if (colon == NULL)
        return error_set(err, "MIME header line %zu has no colon", lineno);
    size_t nlen = (size_t)(colon - (data + pos));
    while (nlen > 0 && is_wsp(data[pos + nlen - 1]))
        nlen--;
    if (check_name(data + pos, nlen, err) != 0)
        return -1;
    p->name = data + pos;
    p->nlen = nlen;
    p->val = colon + 1;
    p->vend = end;
    p->on = true;
    return 0;
}

int mime_headers_parse(struct mime_headers *hs, const char *data, size_t len,
                       size_t *body_off, struct error *err)
{
    struct pending p = {0};
    size_t pos = 0, lineno = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t next = nl ? (size_t)(nl - data) + 1 : len;
        size_t end = nl ? next - 1 : len;
        if (end > pos && data[end - 1] == '\r')
            end--;
        lineno++;
        if (hs->bytes + next > MIME_MAX_HEADER_BYTES)
            return error_set(err, "MIME header block is larger than %d bytes",
                             MIME_MAX_HEADER_BYTES);
        if (end == pos) {               /* the empty line */
            pos = next;
            break;
        }
        if (is_wsp(data[pos])) {
            if (!p.on)
                return error_set(err, "MIME header line %zu continues no header", lineno);
            if (only_wsp(data + pos, end - pos))
                return error_set(err, "MIME header line %zu holds only whitespace "
                                 "(ambiguous end of headers)", lineno);
            p.vend = end;
        } else if (pending_flush(hs, data, &p, err) != 0 ||
                   header_line(data, pos, end, &p, lineno, err) != 0) {
            return -1;
        }
        pos = next;
    }
    if (pending_flush(hs, data, &p, err) != 0)
        return -1;
    hs->bytes += pos;
    if (body_off)
        *body_off = pos;
    return 0;
}

int mime_headers_end(const char *data, size_t len, size_t *body_off,
                     struct error *err)
{
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        if (nl == NULL)
            break;
        size_t next = (size_t)(nl - data) + 1;
        size_t end = next - 1;
        if (end > pos && data[end - 1] == '\r')
            end--;
        if (next > MIME_MAX_HEADER_BYTES)
            break;
        if (end == pos) {
            *body_off = next;
            return 1;
        }
        pos = next;
    }
    if (len >= MIME_MAX_HEADER_BYTES)
        return error_set(err, "MIME header block is larger than %d bytes",
                         MIME_MAX_HEADER_BYTES);
    return 0;
}

int mime_headers_add(struct mime_headers *hs, const char *name,
                     const char *value, struct error *err)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    if (check_name(name, nlen, err) != 0)
        return -1;
    for (size_t i = 0; i < vlen; i++)
        if (is_bad_ctl(value[i]))
            return error_set(err, "MIME header %s holds the control character 0x%02x",
                             name, (unsigned char)value[i]);
    if (hs->bytes + nlen + vlen + 4 > MIME_MAX_HEADER_BYTES)
        return error_set(err, "MIME headers are larger than %d bytes",
                         MIME_MAX_HEADER_BYTES);
    if (headers_push(hs, name, nlen, value, vlen, err) != 0)
        return -1;
    hs->bytes += nlen + vlen + 4;
    return 0;
}

const char *mime_header_get(const struct mime_headers *hs, const char *name)
{
    for (size_t i = 0; i < hs->count; i++)
        if (strcasecmp(hs->h[i].name, name) == 0)
            return hs->h[i].value;
    return NULL;
}

size_t mime_header_count(const struct mime_headers *hs, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < hs->count; i++)
        n += strcasecmp(hs->h[i].name, name) == 0;
    return n;
}

int mime_header_get_unique(const struct mime_headers *hs, const char *name,
                           const char **value, struct error *err)
{
    *value = NULL;
    if (mime_header_count(hs, name) > 1)
        return error_set(err, "header %s appears more than once", name);
    *value = mime_header_get(hs, name);
    return 0;
}

/* ---- parameters ----------------------------------------------------------------- */

void mime_params_free(struct mime_params *p)
{
    free(p->value);
    for (size_t i = 0; i < p->count; i++) {
        free(p->p[i].name);
        free(p->p[i].value);
    }
    memset(p, 0, sizeof(*p));
}

const char *mime_param_get(const struct mime_params *p, const char *name)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcasecmp(p->p[i].name, name) == 0)
            return p->p[i].value;
    return NULL;
}

/* Read a quoted-string starting at s (on the '"') into a new string;
 * *end gets the position after the closing quote. */
static char *read_quoted(const char *s, const char **end, struct error *err)
{
    size_t n = strlen(s);
    char *v = malloc(n + 1);
    if (v == NULL) {
        error_set(err, "out of memory reading a quoted parameter");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            v[o] = '\0';
            *end = s + i + 1;
            return v;
        }
        if (c == '\\') {
            if (++i == n)
                break;
            c = s[i];
        }
        if (c == '\r' || c == '\n') {
            free(v);
            error_set(err, "a quoted parameter value holds a line break");
            return NULL;
        }
        v[o++] = c;
    }
    free(v);
    error_set(err, "a quoted parameter value is not terminated");
    return NULL;
}

/* A bare value: up to whitespace, ';' or '"'. */
static char *read_bare(const char *s, const char **end, struct error *err)
{
    size_t n = 0;
    while (s[n] && !is_wsp(s[n]) && s[n] != ';' && s[n] != '"' &&
           !is_bad_ctl(s[n]))
        n++;
    if (n == 0) {
        error_set(err, "a parameter has an empty or invalid value");
        return NULL;
    }
    *end = s + n;
    char *v = dup_range(s, n);
    if (v == NULL)
        error_set(err, "out of memory reading a parameter");
    return v;
}

/* One "name=value" at s (whitespace skipped); *end gets what follows. */
static int param_one(const char *s, struct mime_params *out, const char **end,
                     struct error *err)
{
    size_t n = 0;
    while (is_token((unsigned char)s[n]))
        n++;
    if (n == 0)
        return error_set(err, "expected a parameter name, found character 0x%02x",
                         (unsigned char)*s);
    const char *q = s + n;
    while (is_wsp(*q))
        q++;
    if (*q != '=')
        return error_set(err, "a parameter has no '=' and value");
    q++;
    while (is_wsp(*q))
        q++;
    if (out->count >= MIME_MAX_PARAMS)
        return error_set(err, "more than %d parameters", MIME_MAX_PARAMS);
    char *name = dup_range(s, n);
    if (name == NULL)
        return error_set(err, "out of memory reading a parameter");
    lower(name);
    if (mime_param_get(out, name) != NULL) {
        error_set(err, "parameter %.40s appears more than once", name);
        free(name);
        return -1;
    }
    char *value = *q == '"' ? read_quoted(q, &q, err) : read_bare(q, &q, err);
    if (value == NULL) {
        free(name);
        return -1;
    }
    out->p[out->count].name = name;
    out->p[out->count].value = value;
    out->count++;
    *end = q;
    return 0;
}

int mime_params_parse(const char *s, struct mime_params *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    const char *semi = strchr(s, ';');
    size_t n = semi ? (size_t)(semi - s) : strlen(s);
    while (n > 0 && is_wsp(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_wsp(s[n - 1]))
        n--;
    out->value = dup_range(s, n);
    if (out->value == NULL)
        return error_set(err, "out of memory reading a header value");
    const char *q = semi;
    while (q != NULL && *q) {
        while (*q == ';' || is_wsp(*q))
            q++;
        if (*q == '\0')
            break;
        if (param_one(q, out, &q, err) != 0)
            goto fail;
        while (is_wsp(*q))
            q++;
        if (*q != '\0' && *q != ';') {
            error_set(err, "unexpected character 0x%02x after a parameter",
                      (unsigned char)*q);
            goto fail;
        }
    }
    return 0;
fail:
    mime_params_free(out);
    return -1;
}

/* ---- Content-Type --------------------------------------------------------------------- */

static int copy_token(char *dst, const char *s, size_t n, const char *what,
                      struct error *err)
{
    if (n == 0 || n > MIME_TOKEN_MAX)
        return error_set(err, "Content-Type has an empty or too long %s", what);
    for (size_t i = 0; i < n; i++)
        if (!is_token((unsigned char)s[i]))
            return error_set(err, "Content-Type %s holds the invalid character 0x%02x",
                             what, (unsigned char)s[i]);
    memcpy(dst, s, n);
    dst[n] = '\0';
    lower(dst);
    return 0;
}

int mime_content_type_parse(const char *value, struct mime_content_type *ct,
                            struct error *err)
{
    memset(ct, 0, sizeof(*ct));
    if (mime_params_parse(value, &ct->params, err) != 0)
        return -1;
    const char *v = ct->params.value;
    const char *slash = strchr(v, '/');
    if (slash == NULL) {
        error_set(err, "Content-Type is not of the form type/subtype");
        goto fail;
    }
    if (copy_token(ct->type, v, (size_t)(slash - v), "type", err) != 0 ||
        copy_token(ct->subtype, slash + 1, strlen(slash + 1), "subtype", err) != 0)
        goto fail;
    return 0;
fail:
    mime_content_type_free(ct);
    return -1;
}

void mime_content_type_free(struct mime_content_type *ct)
{
    mime_params_free(&ct->params);
    ct->type[0] = ct->subtype[0] = '\0';
}

bool mime_content_type_is(const struct mime_content_type *ct, const char *type,
                          const char *subtype)
{
    return strcasecmp(ct->type, type) == 0 &&
           (subtype == NULL || strcasecmp(ct->subtype, subtype) == 0);
}

/* ---- multipart: buffered ---------------------------------------------------------------- */

int mime_boundary_check(const char *b, struct error *err)
{
    size_t n = strlen(b);
    if (n == 0 || n > MIME_MAX_BOUNDARY)
        return error_set(err, "multipart boundary must be 1 to %d characters, not %zu",
                         MIME_MAX_BOUNDARY, n);
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x20 || b[i] > 0x7e)
            return error_set(err, "multipart boundary holds the invalid character 0x%02x",
                             (unsigned char)b[i]);
    if (b[n - 1] == ' ')
        return error_set(err, "multipart boundary ends with a space");
    return 0;
}

/* Offset of the next line start >= pos that begins with dash[0..dlen), or
 * len when there is none. pos is a line start. */
static size_t next_delim(const char *data, size_t len, size_t pos,
                         const char *pat, size_t plen)
{
    /* pat is "\n--boundary"; the line at pos is checked without the LF. */
    if (len - pos >= plen - 1 && memcmp(data + pos, pat + 1, plen - 1) == 0)
        return pos;
    const char *hit = memmem(data + pos, len - pos, pat, plen);
    return hit ? (size_t)(hit - data) + 1 : len;
}

/* After "--boundary" at q: 1 for a close delimiter, 0 for a delimiter line
 * (*after = the first byte of the next line), -1 for an error. */
static int delim_tail(const char *data, size_t len, size_t q, size_t *after,
                      struct error *err)
{
    if (q < len && data[q] == '-') {
        if (q + 1 < len && data[q + 1] == '-')
            return 1;
        if (q + 1 == len)
            return error_set(err, "multipart body has no close delimiter");
        return error_set(err, "malformed multipart delimiter line");
    }
    while (q < len && is_wsp(data[q]))
        q++;
    if (q < len && data[q] == '\r')
        q++;
    if (q < len && data[q] == '\n') {
        *after = q + 1;
        return 0;
    }
    if (q == len)
        return error_set(err, "multipart body has no close delimiter");
    return error_set(err, "malformed multipart delimiter line");
}

/* End of a part that starts at ps and whose next delimiter line starts at
 * line (line > ps means data[line-1] is its LF). */
static size_t part_end_at(const char *data, size_t ps, size_t line)
{
    if (line == ps)
        return ps;
    size_t e = line - 1;
    if (e > ps && data[e - 1] == '\r')
        e--;
    return e;
}

int mime_multipart_split(const char *data, size_t len, const char *boundary,
                         struct mime_part_range *parts, size_t max_parts,
                         size_t *nparts, struct error *err)
{
    *nparts = 0;
    if (mime_boundary_check(boundary, err) != 0)
        return -1;
    char pat[MIME_MAX_BOUNDARY + 4];
    size_t blen = strlen(boundary), plen = blen + 3;
    pat[0] = '\n';
    pat[1] = pat[2] = '-';
    memcpy(pat + 3, boundary, blen);

    bool preamble = true;
    size_t pos = 0, ps = 0, n = 0;
    for (;;) {
        size_t line = next_delim(data, len, pos, pat, plen);
        if (line == len)
            return error_set(err, preamble ? "multipart body has no delimiter line"
                                           : "multipart body has no close delimiter");
        size_t after = 0;
        int t = delim_tail(data, len, line + plen - 1, &after, err);
        if (t < 0)
            return -1;
        if (!preamble) {
            if (n == max_parts)
                return error_set(err, "multipart body has more than %zu parts", max_parts);
            parts[n].off = ps;
            parts[n].len = part_end_at(data, ps, line) - ps;
            n++;
        }
        if (t == 1) {
            if (preamble)
                return error_set(err, "multipart body has no parts");
            *nparts = n;
            return 0;
        }
        preamble = false;
        ps = pos = after;
    }
}

/* ---- multipart: streaming ---------------------------------------------------------------- */

enum { PH_PREAMBLE, PH_PART, PH_EPILOGUE, PH_FAILED };
enum { ST_TEXT, ST_CR, ST_MATCH, ST_AFTER, ST_CLOSE1, ST_PAD, ST_PADCR };

int mime_splitter_init(struct mime_splitter *s, const char *boundary,
                       const struct mime_splitter_cb *cb, void *ctx,
                       struct error *err)
{
    memset(s, 0, sizeof(*s));
    s->phase = PH_FAILED;
    if (mime_boundary_check(boundary, err) != 0)
        return -1;
    size_t blen = strlen(boundary);
    s->dash[0] = s->dash[1] = '-';
    memcpy(s->dash + 2, boundary, blen);
    s->dlen = blen + 2;
    s->cb = cb;
    s->ctx = ctx;
    s->phase = PH_PREAMBLE;
    s->st = ST_MATCH;       /* the stream starts at a line start */
    return 0;
}

static int sp_fail(struct mime_splitter *s)
{
    s->phase = PH_FAILED;
    return -1;
}

static int sp_emit(struct mime_splitter *s, const char *d, size_t n,
                   struct error *err)
{
    if (n == 0 || s->phase != PH_PART)
        return 0;
    if (s->cb->part_data(s->ctx, d, n, err) != 0)
        return sp_fail(s);
    return 0;
}

/* The held bytes turned out to be content. */
static int sp_release(struct mime_splitter *s, struct error *err)
{
    size_t n = s->hold_len;
    s->hold_len = 0;
    s->st = ST_TEXT;
    return sp_emit(s, s->hold, n, err);
}

/* A delimiter line ended (LF seen): close the part, open the next. */
static int sp_delim_done(struct mime_splitter *s, struct error *err)
{
    if (s->phase == PH_PART && s->cb->part_end(s->ctx, err) != 0)
        return sp_fail(s);
    s->phase = PH_PART;
    if (s->cb->part_begin(s->ctx, s->nparts, s->offset + 1, err) != 0)
        return sp_fail(s);
    s->nparts++;
    s->st = ST_MATCH;
    s->k = 0;
    s->hold_len = 0;
    return 0;
}

static int sp_close_done(struct mime_splitter *s, struct error *err)
{
    if (s->phase == PH_PREAMBLE) {
        error_set(err, "multipart body has no parts");
        return sp_fail(s);
    }
    if (s->cb->part_end(s->ctx, err) != 0)
        return sp_fail(s);
    s->phase = PH_EPILOGUE;
    return 0;
}

/* The line break ([CR] LF) that ends at lf, within data[start..]. */
static size_t sp_break_at(const char *data, size_t start, size_t lf)
{
    return lf > start && data[lf - 1] == '\r' ? lf - 1 : lf;
}

/* Where content from data[start] must stop: at the line break of an LF
 * that '-' follows (only there can a delimiter begin), or at an LF or CR
 * that ends the chunk; else at len. Lines that cannot start a delimiter
 * stay in the run, so a part's content goes out in runs as long as the
 * chunks, not a line at a time. The scan looks for the '-' (memchr:
 * 6 GB/s on EDI, where most lines hold one; memmem's "\n-" ran at 1.7).
 * In ST_TEXT the byte before data[start] is never an LF still to be
 * matched, so a '-' at start cannot begin a delimiter. */
static size_t sp_text_end(const char *data, size_t len, size_t start)
{
    size_t j = start;
    const char *dash;
    while ((dash = memchr(data + j, '-', len - j)) != NULL) {
        size_t at = (size_t)(dash - data);
        if (at > start && data[at - 1] == '\n')
            return sp_break_at(data, start, at - 1);
        j = at + 1;
    }
    if (len > start && data[len - 1] == '\n')
        return sp_break_at(data, start, len - 1);
    return len > start && data[len - 1] == '\r' ? len - 1 : len;
}

/* Content bytes from data[*i]: pass the run sp_text_end finds, then hold
 * the line break that ends it (it may belong to a delimiter). */
static int sp_text(struct mime_splitter *s, const char *data, size_t len,
                   size_t *i, struct error *err)
{
    size_t j = sp_text_end(data, len, *i);
    if (sp_emit(s, data + *i, j - *i, err) != 0)
        return -1;
    s->offset += j - *i;
    *i = j;
    if (j < len) {
        s->hold[0] = data[j];
        s->hold_len = 1;
        s->st = data[j] == '\r' ? ST_CR : ST_MATCH;
        s->k = 0;
        s->offset++;
        *i = j + 1;
    }
    return 0;
}

/* One byte in the states that may hold bytes back. Returns 1 when c was
 * consumed, 0 when it must be looked at again (state changed), -1. */
static int sp_hold_byte(struct mime_splitter *s, char c, struct error *err)
{
    if (s->st == ST_CR) {
        if (c == '\n') {
            s->hold[s->hold_len++] = c;
            s->st = ST_MATCH;
            s->k = 0;
            return 1;
        }
        if (c == '\r')
            return sp_emit(s, "\r", 1, err) == 0 ? 1 : -1;
        return sp_release(s, err) == 0 ? 0 : -1;
    }
    /* ST_MATCH */
    if (c != s->dash[s->k])
        return sp_release(s, err) == 0 ? 0 : -1;
    s->hold[s->hold_len++] = c;
    if (++s->k == s->dlen) {
        s->hold_len = 0;    /* the line break belongs to the delimiter */
        s->st = ST_AFTER;
    }
    return 1;
}

/* One byte of a delimiter line after "--boundary". */
static int sp_tail_byte(struct mime_splitter *s, char c, struct error *err)
{
    int st = s->st;
    if (st == ST_CLOSE1) {
        if (c == '-')
            return sp_close_done(s, err);
    } else if (c == '\n') {
        return sp_delim_done(s, err);
    } else if (c == '\r' && st != ST_PADCR) {
        s->st = ST_PADCR;
        return 0;
    } else if (st == ST_AFTER && c == '-') {
        s->st = ST_CLOSE1;
        return 0;
    } else if (st != ST_PADCR && is_wsp(c)) {
        s->st = ST_PAD;
        return 0;
    }
    error_set(err, "malformed multipart delimiter line");
    return sp_fail(s);
}

int mime_splitter_feed(struct mime_splitter *s, const char *data, size_t len,
                       struct error *err)
{
    if (s->phase == PH_FAILED)
        return error_set(err, "multipart splitter already failed");
    size_t i = 0;
    while (i < len && s->phase != PH_EPILOGUE) {
        int r;
        if (s->st == ST_TEXT) {
            if (sp_text(s, data, len, &i, err) != 0)
                return -1;
            continue;
        }
        if (s->st == ST_CR || s->st == ST_MATCH) {
            r = sp_hold_byte(s, data[i], err);
            if (r < 0)
                return -1;
            if (r == 0)
                continue;
        } else if (sp_tail_byte(s, data[i], err) != 0) {
            return -1;
        }
        s->offset++;
        i++;
    }
    s->offset += len - i;   /* epilogue */
    return 0;
}

int mime_splitter_finish(struct mime_splitter *s, struct error *err)
{
    if (s->phase == PH_EPILOGUE)
        return 0;
    if (s->phase == PH_FAILED)
        return error_set(err, "multipart splitter already failed");
    int pre = s->phase == PH_PREAMBLE;
    s->phase = PH_FAILED;
    return error_set(err, pre ? "multipart body has no delimiter line"
                              : "multipart body has no close delimiter");
}

/* ---- transfer encodings ------------------------------------------------------------------ */

int mime_cte_parse(const char *value, enum mime_cte *out, struct error *err)
{
    static const struct { const char *name; enum mime_cte cte; } map[] = {
        {"7bit", MIME_CTE_7BIT}, {"8bit", MIME_CTE_8BIT},
        {"binary", MIME_CTE_BINARY}, {"base64", MIME_CTE_BASE64},
        {"quoted-printable", MIME_CTE_QP},
    };
    *out = MIME_CTE_7BIT;
    if (value == NULL || *value == '\0')
        return 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcasecmp(value, map[i].name) == 0) {
            *out = map[i].cte;
            return 0;
        }
    return error_set(err, "unknown Content-Transfer-Encoding (%zu characters)",
                     strlen(value));
}

/* Base64 alphabet: -1 not base64, -2 '=', else the 6-bit value. */
static const signed char b64_tab[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -2, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

void mime_b64_init(struct mime_b64 *d)
{
    memset(d, 0, sizeof(*d));
}

/* Decode whole unpadded groups in g[0..n) (n a multiple of 4). */
static size_t b64_groups(const char *g, size_t n, unsigned char *out)
{
    if (n == 0)
        return 0;
    int r = EVP_DecodeBlock(out, (const unsigned char *)g, (int)n);
    return r < 0 ? 0 : (size_t)r;   /* cannot fail: input pre-checked */
}

/* The final group (2 or 3 data characters, rest '=' or missing). */
static size_t b64_last(struct mime_b64 *d, unsigned char *out)
{
    unsigned data = 0;
    char g[4];
    for (unsigned i = 0; i < 4; i++) {
        bool real = i < d->nq && d->q[i] != '=';
        g[i] = real ? d->q[i] : 'A';
        data += real;
    }
    unsigned char tmp[3];
    b64_groups(g, 4, tmp);
    memcpy(out, tmp, data - 1);
    d->nq = 0;
    d->ended = true;
    return data - 1;
}

/* Take one significant character into the group. */
static int b64_take(struct mime_b64 *d, unsigned char c, struct error *err)
{
    int v = b64_tab[c];
    if (v == -1)
        return error_set(err, "invalid character 0x%02x in base64 data at offset %llu",
                         c, (unsigned long long)d->pos);
    if (d->ended)
        return error_set(err, "base64 data continues after its padding at offset %llu",
                         (unsigned long long)d->pos);
    if (v == -2 && d->nq < 2)
        return error_set(err, "misplaced '=' in base64 data at offset %llu",
                         (unsigned long long)d->pos);
    if (v >= 0 && d->nq == 3 && d->q[2] == '=')
        return error_set(err, "base64 padding is incomplete at offset %llu",
                         (unsigned long long)d->pos);
    d->q[d->nq++] = (char)c;
    return 0;
}

/* Whole groups collected in a batch; the partial group being filled sits
 * at batch[nb..nb+nq) and goes back to d->q at the end of the call. */
struct b64_run {
    char batch[1024];
    size_t nb;
    unsigned char *out;
    size_t o;
};

static void b64_flush(struct b64_run *r)
{
    r->o += b64_groups(r->batch, r->nb, r->out + r->o);
    r->nb = 0;
}

/* The slow path: '=', a character after the padding, a bad character. */
static int b64_slow(struct mime_b64 *d, struct b64_run *r, unsigned char c,
                    struct error *err)
{
    memcpy(d->q, r->batch + r->nb, d->nq);
    if (b64_take(d, c, err) != 0)
        return -1;
    if (d->nq == 4 && d->q[3] == '=') {
        b64_flush(r);
        r->o += b64_last(d, r->out + r->o);
    }
    memcpy(r->batch + r->nb, d->q, d->nq);
    return 0;
}

int mime_b64_update(struct mime_b64 *d, const char *in, size_t len,
                    unsigned char *out, size_t *outlen, struct error *err)
{
    struct b64_run r = {.nb = 0, .out = out, .o = 0};
    uint64_t base = d->pos;
    unsigned nq = d->nq;
    *outlen = 0;
    memcpy(r.batch, d->q, nq);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (b64_tab[c] < 0 || d->ended || (nq == 3 && r.batch[r.nb + 2] == '=')) {
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
                continue;
            d->nq = nq;
            d->pos = base + i;
            if (b64_slow(d, &r, c, err) != 0)
                return -1;
            nq = d->nq;
            continue;
        }
        r.batch[r.nb + nq++] = (char)c;
        if (nq == 4) {
            nq = 0;
            r.nb += 4;
            if (r.nb == sizeof(r.batch))
                b64_flush(&r);
        }
    }
    d->nq = nq;
    d->pos = base + len;
    memcpy(d->q, r.batch + r.nb, nq);
    b64_flush(&r);
    *outlen = r.o;
    return 0;
}

int mime_b64_final(struct mime_b64 *d, unsigned char *out, size_t *outlen,
                   struct error *err)
{
    *outlen = 0;
    if (d->nq == 0)
        return 0;
    if (d->nq == 1)
        return error_set(err, "base64 data ends in the middle of a group");
    *outlen = b64_last(d, out);
    return 0;
}

int mime_base64_decode(const char *in, size_t len, unsigned char *out,
                       size_t *outlen, struct error *err)
{
    struct mime_b64 d;
    size_t n1, n2;
    mime_b64_init(&d);
    if (mime_b64_update(&d, in, len, out, &n1, err) != 0 ||
        mime_b64_final(&d, out + n1, &n2, err) != 0)
        return -1;
    *outlen = n1 + n2;
    return 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decode one line in[0..n) (trailing whitespace already cut). Returns 1
 * when it ended with a soft line break. */
static int qp_line(const char *in, size_t n, unsigned char *out, size_t *o,
                   size_t lineno, struct error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '=') {
            out[(*o)++] = (unsigned char)in[i];
            continue;
        }
        if (i + 1 == n)
            return 1;
        int hi = i + 2 < n ? hexval((unsigned char)in[i + 1]) : -1;
        int lo = hi >= 0 ? hexval((unsigned char)in[i + 2]) : -1;
        if (lo < 0)
            return error_set(err, "malformed '=' escape in quoted-printable line %zu",
                             lineno);
        out[(*o)++] = (unsigned char)(hi * 16 + lo);
        i += 2;
    }
    return 0;
}

int mime_qp_decode(const char *in, size_t len, unsigned char *out,
                   size_t *outlen, struct error *err)
{
    size_t pos = 0, o = 0, lineno = 0;
    *outlen = 0;
    while (pos < len) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        size_t next = nl ? (size_t)(nl - in) + 1 : len;
        size_t end = nl ? next - 1 : len;
        bool crlf = nl && end > pos && in[end - 1] == '\r';
        if (crlf)
            end--;
        while (end > pos && is_wsp(in[end - 1]))
            end--;
        int soft = qp_line(in + pos, end - pos, out, &o, ++lineno, err);
        if (soft < 0)
            return -1;
        if (!soft && nl) {
            if (crlf)
                out[o++] = '\r';
            out[o++] = '\n';
        }
        pos = next;
    }
    *outlen = o;
    return 0;
}

int mime_decode_alloc(enum mime_cte cte, const char *in, size_t len,
                      unsigned char **out, size_t *outlen, struct error *err)
{
    size_t cap = cte == MIME_CTE_BASE64 ? MIME_B64_DECODED_MAX(len) : len;
    unsigned char *o = malloc(cap + 1);
    int rc = 0;
    *out = NULL;
    *outlen = 0;
    if (o == NULL)
        return error_set(err, "out of memory decoding a %zu-byte MIME body", len);
    if (cte == MIME_CTE_BASE64) {
        rc = mime_base64_decode(in, len, o, outlen, err);
    } else if (cte == MIME_CTE_QP) {
        rc = mime_qp_decode(in, len, o, outlen, err);
    } else {
        if (len > 0)
            memcpy(o, in, len);
        *outlen = len;
    }
    if (rc != 0) {
        free(o);
        *outlen = 0;
        return -1;
    }
    o[*outlen] = '\0';
    *out = o;
    return 0;
}

size_t mime_base64_encoded_len(size_t n)
{
    size_t lines = (n + 56) / 57;
    return ((n + 2) / 3) * 4 + 2 * lines;
}

size_t mime_base64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 57) {
        size_t chunk = n - i < 57 ? n - i : 57;
        o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, in + i, (int)chunk);
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o] = '\0';
    return o;
}

int mime_buf_base64(struct mime_buf *b, const unsigned char *in, size_t n,
                    struct error *err)
{
    size_t need = mime_base64_encoded_len(n);
    if (buf_reserve(b, need + 1, err) != 0)
        return -1;
    b->len += mime_base64_encode(in, n, b->data + b->len);
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

static int check_value(const char *name, const char *value, struct error *err)
{
    for (const char *p = value; *p; p++)
        if (is_bad_ctl(*p))
            return error_set(err, "value of header %.60s holds the control character 0x%02x",
                             name, (unsigned char)*p);
    return 0;
}

int mime_header_write(struct mime_buf *b, const char *name, const char *value,
                      struct error *err)
{
    size_t nlen = strlen(name);
    if (check_name(name, nlen, err) != 0 || check_value(name, value, err) != 0)
        return -1;
    if (mime_buf_append(b, name, nlen, err) != 0 ||
        mime_buf_append(b, ": ", 2, err) != 0)
        return -1;
    size_t col = nlen + 2;
    const char *p = value;
    bool first = true;
    while (*p) {
        const char *w = p;
        while (is_wsp(*p))
            p++;
        const char *text = p;
        while (*p && !is_wsp(*p))
            p++;
        size_t wlen = (size_t)(p - w);
        if (!first && w < text && p > text && col + wlen > MIME_LINE_FOLD) {
            if (mime_buf_append(b, "\r\n", 2, err) != 0)
                return -1;
            col = 0;
        }
        if (col + wlen > MIME_LINE_MAX)
            return error_set(err, "header %.60s has a run longer than %d characters",
                             name, MIME_LINE_MAX);
        if (mime_buf_append(b, w, wlen, err) != 0)
            return -1;
        col += wlen;
        first = false;
    }
    return mime_buf_append(b, "\r\n", 2, err);
}

int mime_boundary_new(char out[MIME_BOUNDARY_BUFSZ], struct error *err)
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return error_openssl(err, "cannot generate a multipart boundary");
    int n = snprintf(out, MIME_BOUNDARY_BUFSZ, "----=_Wharf_");
    for (size_t i = 0; i < sizeof(r); i++)
        n += snprintf(out + n, MIME_BOUNDARY_BUFSZ - (size_t)n, "%02x", r[i]);
    return 0;
}

static int fmt_into(char *out, size_t cap, struct error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fmt_into(char *out, size_t cap, struct error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return error_set(err, "buffer of %zu bytes is too small for a Content-Type", cap);
    return 0;
}

/* A boundary that can go inside a quoted-string untouched. */
static int check_out_boundary(const char *b, struct error *err)
{
    if (mime_boundary_check(b, err) != 0)
        return -1;
    if (strpbrk(b, "\"\\") != NULL)
        return error_set(err, "multipart boundary holds a quote or backslash");
    return 0;
}

int mime_signed_content_type(char *out, size_t cap, const char *micalg,
                             const char *boundary, struct error *err)
{
    if (check_out_boundary(boundary, err) != 0)
        return -1;
    for (const char *p = micalg; *p; p++)
        if (!is_token((unsigned char)*p))
            return error_set(err, "micalg holds the invalid character 0x%02x",
                             (unsigned char)*p);
    return fmt_into(out, cap, err,
                    "multipart/signed; protocol=\"application/pkcs7-signature\"; "
                    "micalg=%s; boundary=\"%s\"", micalg, boundary);
}

int mime_report_content_type(char *out, size_t cap, const char *boundary,
                             struct error *err)
{
    if (check_out_boundary(boundary, err) != 0)
        return -1;
    return fmt_into(out, cap, err,
                    "multipart/report; report-type=disposition-notification; "
                    "boundary=\"%s\"", boundary);
}

static int put_delim(struct mime_buf *b, const char *pre, const char *boundary,
                     const char *post, struct error *err)
{
    if (mime_buf_puts(b, pre, err) != 0 || mime_buf_puts(b, "--", err) != 0 ||
        mime_buf_puts(b, boundary, err) != 0 || mime_buf_puts(b, post, err) != 0)
        return -1;
    return 0;
}

int mime_signed_begin(struct mime_buf *b, const char *boundary, struct error *err)
{
    if (check_out_boundary(boundary, err) != 0)
        return -1;
    return put_delim(b, "", boundary, "\r\n", err);
}

int mime_signed_end(struct mime_buf *b, const char *boundary,
                    const unsigned char *sig, size_t siglen, struct error *err)
{
    if (check_out_boundary(boundary, err) != 0)
        return -1;
    if (put_delim(b, "\r\n", boundary, "\r\n", err) != 0 ||
        mime_buf_puts(b,
                      "Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
                      "Content-Transfer-Encoding: base64\r\n"
                      "Content-Disposition: attachment; filename=smime.p7s\r\n"
                      "\r\n", err) != 0 ||
        mime_buf_base64(b, sig, siglen, err) != 0)
        return -1;
    return put_delim(b, "", boundary, "--\r\n", err);
}

int mime_build_signed(struct mime_buf *b, const char *boundary,
                      const char *entity, size_t entity_len,
                      const unsigned char *sig, size_t siglen, struct error *err)
{
    if (mime_signed_begin(b, boundary, err) != 0 ||
        mime_buf_append(b, entity, entity_len, err) != 0)
        return -1;
    return mime_signed_end(b, boundary, sig, siglen, err);
}

int mime_build_multipart(struct mime_buf *b, const char *boundary,
                         const struct mime_entity *parts, size_t n,
                         struct error *err)
{
    if (check_out_boundary(boundary, err) != 0)
        return -1;
    if (n == 0)
        return error_set(err, "a multipart body needs at least one part");
    for (size_t i = 0; i < n; i++)
        if (put_delim(b, "", boundary, "\r\n", err) != 0 ||
            mime_buf_append(b, parts[i].data, parts[i].len, err) != 0 ||
            mime_buf_puts(b, "\r\n", err) != 0)
            return -1;
    return put_delim(b, "", boundary, "--\r\n", err);
}

/* ---- canonical text ------------------------------------------------------------------------ */

void mime_canon_init(struct mime_canon *c)
{
    c->last_cr = false;
}

size_t mime_canon_update(struct mime_canon *c, const char *in, size_t len,
                         char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '\n' && c->last_cr) {
            c->last_cr = false;     /* the CRLF was written at the CR */
            continue;
        }
        c->last_cr = ch == '\r';
        if (ch == '\r' || ch == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
        } else {
            out[o++] = ch;
        }
    }
    return o;
}
