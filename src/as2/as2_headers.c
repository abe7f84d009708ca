/*
 * as2_headers.c - AS2 header rules (RFC 4130 sections 6 and 7.3): AS2
 * names, versions, Message-IDs, MIC algorithm names, the options a sender
 * puts on its MDN request, and the async receipt URL.
 *
 * Owns nothing: every result lands in the caller's fixed-size fields.
 * Randomness for new Message-IDs is RAND_bytes.
 *
 * Must never: allocate, do I/O, keep global state, accept a control
 * character into a name or id (they end up in headers and logs), or put
 * more than one character of untrusted input into an error message.
 */
#include "as2/as2_headers.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- spans: read-only views into a header value -------------------------------- */

struct span {
    const char *p;
    size_t n;
};

static bool is_wsp(int c) { return c == ' ' || c == '\t'; }

static struct span span_trim(struct span s)
{
    while (s.n > 0 && is_wsp(*s.p)) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_wsp(s.p[s.n - 1]))
        s.n--;
    return s;
}

static struct span span_of(const char *s)
{
    struct span r = {s, strlen(s)};
    return span_trim(r);
}

/* Split s at the first sep: *head gets the part before (trimmed), s
 * becomes the rest after sep (or empty). Returns false when s was empty. */
static bool span_next(struct span *s, char sep, struct span *head)
{
    if (s->p == NULL)
        return false;
    const char *q = memchr(s->p, sep, s->n);
    size_t n = q ? (size_t)(q - s->p) : s->n;
    struct span h = {s->p, n};
    *head = span_trim(h);
    if (q) {
        s->p = q + 1;
        s->n -= n + 1;
    } else {
        s->p = NULL;
        s->n = 0;
    }
    return true;
}

static bool span_eq(struct span s, const char *lit)
{
    return strlen(lit) == s.n && strncasecmp(s.p, lit, s.n) == 0;
}

/* ---- AS2 names ---------------------------------------------------------------------- */

int as2_id_check(const char *id, struct error *err)
{
    size_t n = strlen(id);
    if (n == 0 || n > AS2_ID_MAX)
        return error_set(err, "an AS2 name must be 1 to %d characters, not %zu",
                         AS2_ID_MAX, n);
    for (size_t i = 0; i < n; i++)
        if (id[i] < 0x20 || id[i] > 0x7e)
            return error_set(err, "an AS2 name holds the non-printable character 0x%02x",
                             (unsigned char)id[i]);
    return 0;
}

bool as2_id_needs_quotes(const char *id)
{
    return strpbrk(id, " \"\\") != NULL;
}

static int id_unquote(struct span v, char out[AS2_ID_MAX + 1], struct error *err)
{
    size_t o = 0, i = 1;
    for (; i < v.n && v.p[i] != '"'; i++) {
        char c = v.p[i];
        if (c == '\\' && i + 1 < v.n)
            c = v.p[++i];
        if (o == AS2_ID_MAX)
            return error_set(err, "a quoted AS2 name is longer than %d characters",
                             AS2_ID_MAX);
        out[o++] = c;
    }
    if (i >= v.n)
        return error_set(err, "a quoted AS2 name is not terminated");
    if (i + 1 != v.n)
        return error_set(err, "text follows a quoted AS2 name");
    out[o] = '\0';
    return as2_id_check(out, err);
}

int as2_id_parse(const char *value, char out[AS2_ID_MAX + 1], struct error *err)
{
    struct span v = span_of(value);
    out[0] = '\0';
    if (v.n > 0 && v.p[0] == '"') {
        if (id_unquote(v, out, err) != 0) {
            out[0] = '\0';
            return -1;
        }
        return 0;
    }
    if (v.n == 0 || v.n > AS2_ID_MAX)
        return error_set(err, "an AS2 name must be 1 to %d characters, not %zu",
                         AS2_ID_MAX, v.n);
    memcpy(out, v.p, v.n);
    out[v.n] = '\0';
    if (as2_id_check(out, err) != 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int as2_id_format(const char *id, char out[AS2_ID_FMT_MAX], struct error *err)
{
    if (as2_id_check(id, err) != 0)
        return -1;
    if (!as2_id_needs_quotes(id)) {
        memcpy(out, id, strlen(id) + 1);
        return 0;
    }
    size_t o = 0;
    out[o++] = '"';
    for (const char *p = id; *p; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o] = '\0';
    return 0;
}

/* ---- AS2-Version ---------------------------------------------------------------------- */

static int digits(struct span s, int *out)
{
    if (s.n == 0 || s.n > 3)
        return -1;
    int v = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        v = v * 10 + (s.p[i] - '0');
    }
    *out = v;
    return 0;
}

int as2_version_parse(const char *value, int *major, int *minor, struct error *err)
{
    struct span v = span_of(value), a, b;
    const char *dot = memchr(v.p, '.', v.n);
    if (dot == NULL)
        return error_set(err, "AS2-Version is not of the form N.N");
    a.p = v.p;
    a.n = (size_t)(dot - v.p);
    b.p = dot + 1;
    b.n = v.n - a.n - 1;
    if (digits(a, major) != 0 || digits(b, minor) != 0)
        return error_set(err, "AS2-Version is not of the form N.N");
    return 0;
}

/* ---- Message-ID ------------------------------------------------------------------------- */

int as2_message_id_new(char *out, size_t cap, const char *host, struct error *err)
{
    unsigned char r[16];
    char h[65];
    size_t hn = 0;
    if (cap < 100)
        return error_set(err, "buffer of %zu bytes is too small for a Message-ID", cap);
    if (RAND_bytes(r, sizeof(r)) != 1)
        return error_openssl(err, "cannot generate a Message-ID");
    for (const char *p = host ? host : ""; *p && hn < sizeof(h) - 1; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
        h[hn++] = ok ? c : '-';
    }
    h[hn] = '\0';
    size_t o = 0;
    out[o++] = '<';
    for (size_t i = 0; i < sizeof(r); i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", r[i]);
    snprintf(out + o, cap - o, "@%s>", hn ? h : "wharf");
    return 0;
}

int as2_message_id_parse(const char *value, char *out, size_t cap, struct error *err)
{
    struct span v = span_of(value);
    if (cap > 0)
        out[0] = '\0';
    if (v.n > AS2_MSGID_MAX)
        return error_set(err, "Message-ID is longer than %d characters", AS2_MSGID_MAX);
    if (v.n < 5 || v.p[0] != '<' || v.p[v.n - 1] != '>')
        return error_set(err, "Message-ID is not of the form <left@right>");
    const char *at = NULL;
    for (size_t i = 1; i + 1 < v.n; i++) {
        char c = v.p[i];
        if (c <= 0x20 || c > 0x7e || c == '<' || c == '>')
            return error_set(err, "Message-ID holds the invalid character 0x%02x",
                             (unsigned char)c);
        if (c == '@' && at == NULL)
            at = v.p + i;
    }
    if (at == NULL || at == v.p + 1 || at == v.p + v.n - 2)
        return error_set(err, "Message-ID is not of the form <left@right>");
    if (v.n + 1 > cap)
        return error_set(err, "buffer of %zu bytes is too small for the Message-ID", cap);
    memcpy(out, v.p, v.n);
    out[v.n] = '\0';
    return 0;
}

/* ---- MIC algorithms --------------------------------------------------------------------- */

static const struct {
    const char *name;
    enum as2_micalg alg;
} micalg_names[] = {
    {"sha-256", AS2_MICALG_SHA256}, {"sha256", AS2_MICALG_SHA256},
    {"sha-384", AS2_MICALG_SHA384}, {"sha384", AS2_MICALG_SHA384},
    {"sha-512", AS2_MICALG_SHA512}, {"sha512", AS2_MICALG_SHA512},
    {"sha-1", AS2_MICALG_SHA1},     {"sha1", AS2_MICALG_SHA1},
    {"md5", AS2_MICALG_MD5},
};

enum as2_micalg as2_micalg_from_name(const char *name, size_t len)
{
    struct span s = {name, len};
    for (size_t i = 0; i < sizeof(micalg_names) / sizeof(micalg_names[0]); i++)
        if (span_eq(s, micalg_names[i].name))
            return micalg_names[i].alg;
    return AS2_MICALG_UNKNOWN;
}

const char *as2_micalg_name(enum as2_micalg alg, bool no_hyphen)
{
    switch (alg) {
    case AS2_MICALG_MD5: return "md5";
    case AS2_MICALG_SHA1: return no_hyphen ? "sha1" : "sha-1";
    case AS2_MICALG_SHA256: return no_hyphen ? "sha256" : "sha-256";
    case AS2_MICALG_SHA384: return no_hyphen ? "sha384" : "sha-384";
    case AS2_MICALG_SHA512: return no_hyphen ? "sha512" : "sha-512";
    case AS2_MICALG_UNKNOWN: break;
    }
    return NULL;
}

bool as2_micalg_acceptable(enum as2_micalg alg, bool allow_sha1)
{
    return alg == AS2_MICALG_SHA256 || alg == AS2_MICALG_SHA384 ||
           alg == AS2_MICALG_SHA512 || (alg == AS2_MICALG_SHA1 && allow_sha1);
}

/* ---- Disposition-Notification-Options ---------------------------------------------------- */

/* A value, with one pair of surrounding quotes removed. */
static struct span unquote(struct span v)
{
    if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"') {
        v.p++;
        v.n -= 2;
    }
    return span_trim(v);
}

static void dno_protocol(struct as2_dno *d, struct span s)
{
    if (span_eq(s, "pkcs7-signature") || span_eq(s, "application/pkcs7-signature"))
        d->protocol_pkcs7 = true;
}

static void dno_micalg(struct as2_dno *d, struct span s)
{
    enum as2_micalg a = as2_micalg_from_name(s.p, s.n);
    if (a == AS2_MICALG_UNKNOWN)
        d->n_unknown_micalgs++;
    else if (d->n_micalgs < AS2_DNO_MAX_MICALGS)
        d->micalgs[d->n_micalgs++] = a;
}

/* "importance, value, value..." for one known parameter. */
static int dno_values(struct as2_dno *d, struct span rest, bool proto,
                      enum as2_importance *imp, struct error *err)
{
    struct span v;
    if (*imp != AS2_IMPORTANCE_ABSENT)
        return error_set(err, "Disposition-Notification-Options repeats %s",
                         proto ? "signed-receipt-protocol" : "signed-receipt-micalg");
    span_next(&rest, ',', &v);
    v = unquote(v);
    if (span_eq(v, "required"))
        *imp = AS2_IMPORTANCE_REQUIRED;
    else if (span_eq(v, "optional"))
        *imp = AS2_IMPORTANCE_OPTIONAL;
    else
        return error_set(err, "Disposition-Notification-Options: importance must be "
                         "required or optional");
    size_t n = 0;
    while (span_next(&rest, ',', &v)) {
        v = unquote(v);
        if (v.n == 0)
            continue;
        n++;
        if (proto)
            dno_protocol(d, v);
        else
            dno_micalg(d, v);
    }
    if (n == 0)
        return error_set(err, "Disposition-Notification-Options: %s has no value",
                         proto ? "signed-receipt-protocol" : "signed-receipt-micalg");
    return 0;
}

int as2_dno_parse(const char *value, struct as2_dno *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    struct span s = span_of(value), param;
    while (span_next(&s, ';', &param)) {
        if (param.n == 0)
            continue;
        struct span attr;
        span_next(&param, '=', &attr);
        if (param.p == NULL || attr.n == 0)
            return error_set(err, "Disposition-Notification-Options: a parameter "
                             "is not of the form name=importance, value");
        int rc = 0;
        if (span_eq(attr, "signed-receipt-protocol"))
            rc = dno_values(out, param, true, &out->protocol_importance, err);
        else if (span_eq(attr, "signed-receipt-micalg"))
            rc = dno_values(out, param, false, &out->micalg_importance, err);
        if (rc != 0)
            return -1;
    }
    return 0;
}

bool as2_dno_wants_signed(const struct as2_dno *d)
{
    return d->protocol_importance != AS2_IMPORTANCE_ABSENT && d->protocol_pkcs7;
}

int as2_dno_pick_micalg(const struct as2_dno *d, bool allow_sha1,
                        enum as2_micalg *out, struct error *err)
{
    *out = AS2_MICALG_SHA256;
    for (size_t i = 0; i < d->n_micalgs; i++)
        if (as2_micalg_acceptable(d->micalgs[i], allow_sha1)) {
            *out = d->micalgs[i];
            return 0;
        }
    if (d->micalg_importance == AS2_IMPORTANCE_REQUIRED)
        return error_set(err, "none of the partner's required MIC algorithms is acceptable");
    return 0;
}

int as2_dno_format(char *out, size_t cap, const enum as2_micalg *algs, size_t n,
                   bool no_hyphen, struct error *err)
{
    if (n == 0)
        return error_set(err, "Disposition-Notification-Options needs a MIC algorithm");
    int w = snprintf(out, cap, "signed-receipt-protocol=optional, pkcs7-signature; "
                               "signed-receipt-micalg=optional");
    size_t o = w < 0 ? cap : (size_t)w;
    for (size_t i = 0; i < n && o < cap; i++) {
        const char *name = as2_micalg_name(algs[i], no_hyphen);
        if (name == NULL)
            return error_set(err, "cannot name an unknown MIC algorithm");
        w = snprintf(out + o, cap - o, ", %s", name);
        o = w < 0 ? cap : o + (size_t)w;
    }
    if (o >= cap)
        return error_set(err, "buffer of %zu bytes is too small for "
                         "Disposition-Notification-Options", cap);
    return 0;
}

/* ---- Receipt-Delivery-Option --------------------------------------------------------------- */

int as2_receipt_url_parse(const char *value, char *out, size_t cap, struct error *err)
{
    struct span v = span_of(value);
    if (cap > 0)
        out[0] = '\0';
    if (v.n == 0 || v.n > AS2_URL_MAX)
        return error_set(err, "Receipt-Delivery-Option must be a URL of 1 to %d characters",
                         AS2_URL_MAX);
    for (size_t i = 0; i < v.n; i++)
        if (v.p[i] <= 0x20 || v.p[i] > 0x7e)
            return error_set(err, "Receipt-Delivery-Option holds the invalid character 0x%02x",
                             (unsigned char)v.p[i]);
    size_t skip = 0;
    if (v.n > 7 && strncasecmp(v.p, "http://", 7) == 0)
        skip = 7;
    else if (v.n > 8 && strncasecmp(v.p, "https://", 8) == 0)
        skip = 8;
    else
        return error_set(err, "Receipt-Delivery-Option is not an absolute http(s) URL");
    size_t h = skip;
    while (h < v.n && !strchr("/?#", v.p[h])) {
        if (v.p[h] == '@')
            return error_set(err, "Receipt-Delivery-Option must not carry user info");
        h++;
    }
    if (h == skip || v.p[skip] == ':')
        return error_set(err, "Receipt-Delivery-Option has no host");
    if (v.n + 1 > cap)
        return error_set(err, "buffer of %zu bytes is too small for the receipt URL", cap);
    memcpy(out, v.p, v.n);
    out[v.n] = '\0';
    return 0;
}

/* ---- a whole request -------------------------------------------------------------------------- */

/* The single value of a header (NULL if absent), or -1 on a duplicate. */
static int one(const struct mime_headers *h, const char *name, bool required,
               const char **v, struct error *err)
{
    if (mime_header_get_unique(h, name, v, err) != 0)
        return -1;
    if (required && (*v == NULL || **v == '\0'))
        return error_set(err, "the AS2 message has no %s header", name);
    return 0;
}

static int read_ids(const struct mime_headers *h, struct as2_request *out,
                    struct error *err)
{
    const char *v;
    if (one(h, "AS2-From", true, &v, err) != 0)
        return -1;
    if (as2_id_parse(v, out->from, err) != 0) {
        error_prefix(err, "AS2-From");
        return -1;
    }
    if (one(h, "AS2-To", true, &v, err) != 0)
        return -1;
    if (as2_id_parse(v, out->to, err) != 0) {
        error_prefix(err, "AS2-To");
        return -1;
    }
    if (one(h, "Message-ID", true, &v, err) != 0 ||
        as2_message_id_parse(v, out->message_id, sizeof(out->message_id), err) != 0)
        return -1;
    return 0;
}

static int read_mdn_request(const struct mime_headers *h, struct as2_request *out,
                            struct error *err)
{
    const char *dnt, *rdo, *dno;
    if (one(h, "Disposition-Notification-To", false, &dnt, err) != 0 ||
        one(h, "Receipt-Delivery-Option", false, &rdo, err) != 0 ||
        one(h, "Disposition-Notification-Options", false, &dno, err) != 0)
        return -1;
    out->mdn_requested = dnt != NULL && *dnt != '\0';
    if (rdo != NULL && *rdo != '\0') {
        if (as2_receipt_url_parse(rdo, out->receipt_url, sizeof(out->receipt_url),
                                  err) != 0)
            return -1;
        out->mdn_async = out->mdn_requested;
    }
    if (dno != NULL && *dno != '\0') {
        if (as2_dno_parse(dno, &out->dno, err) != 0)
            return -1;
        out->has_dno = true;
    }
    return 0;
}

int as2_request_read(const struct mime_headers *h, struct as2_request *out,
                     struct error *err)
{
    const char *v;
    memset(out, 0, sizeof(*out));
    out->version_major = 1;
    if (read_ids(h, out, err) != 0)
        return -1;
    if (one(h, "AS2-Version", false, &v, err) != 0)
        return -1;
    if (v != NULL && as2_version_parse(v, &out->version_major,
                                       &out->version_minor, err) != 0)
        return -1;
    return read_mdn_request(h, out, err);
}
