/*
 * mdn.c - building and parsing AS2 MDNs (RFC 3798/8098, RFC 4130 section
 * 7): the multipart/report with its human-readable text part and its
 * machine-readable message/disposition-notification part.
 *
 * Owns nothing beyond short-lived scratch memory (decoded part bodies,
 * parsed headers) freed before returning; results are struct mdn (fixed
 * fields) or bytes appended to the caller's struct mime_buf.
 *
 * Must never: do I/O, keep global state, sign or verify anything (the
 * caller wraps and unwraps multipart/signed), accept a second value of a
 * field that decides what the MDN means, or quote more than one character
 * of the received MDN in an error.
 */
#include "as2/mdn.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ----------------------------------------------------------------- */

static bool is_wsp(int c) { return c == ' ' || c == '\t'; }

/* s[0..n) trimmed of spaces/tabs on both sides. */
static const char *trim(const char *s, size_t *n)
{
    while (*n > 0 && is_wsp(*s)) {
        s++;
        (*n)--;
    }
    while (*n > 0 && is_wsp(s[*n - 1]))
        (*n)--;
    return s;
}

/* Copy s[0..n) trimmed into dst (cap bytes), cutting when too long (and
 * trimming again after the cut). */
static void copy_cut(char *dst, size_t cap, const char *s, size_t n)
{
    s = trim(s, &n);
    if (n >= cap)
        n = cap - 1;
    while (n > 0 && is_wsp(s[n - 1]))
        n--;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static bool eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static bool is_token(int c)
{
    return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* ---- names ----------------------------------------------------------------------------- */

static const char *const error_names[] = {
    [MDN_ERROR_AUTHENTICATION_FAILED] = "authentication-failed",
    [MDN_ERROR_DECOMPRESSION_FAILED] = "decompression-failed",
    [MDN_ERROR_DECRYPTION_FAILED] = "decryption-failed",
    [MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY] = "insufficient-message-security",
    [MDN_ERROR_INTEGRITY_CHECK_FAILED] = "integrity-check-failed",
    [MDN_ERROR_UNEXPECTED_PROCESSING_ERROR] = "unexpected-processing-error",
};

const char *mdn_error_name(enum mdn_error e)
{
    if (e <= MDN_ERROR_NONE || e >= MDN_ERROR_OTHER)
        return NULL;
    return error_names[e];
}

enum mdn_error mdn_error_from_name(const char *s)
{
    if (*s == '\0')
        return MDN_ERROR_NONE;
    for (int e = MDN_ERROR_AUTHENTICATION_FAILED; e < MDN_ERROR_OTHER; e++)
        if (strcasecmp(s, error_names[e]) == 0)
            return (enum mdn_error)e;
    return MDN_ERROR_OTHER;
}

bool mdn_is_success(const struct mdn *m)
{
    return m->type == MDN_TYPE_PROCESSED &&
           (m->modifier == MDN_MOD_NONE || m->modifier == MDN_MOD_WARNING);
}

/* ---- building ------------------------------------------------------------------------------ */

/* "automatic-action/MDN-sent-automatically; processed/error: x" */
static int disposition_text(const struct mdn *m, struct mime_buf *d,
                            struct error *err)
{
    static const char *const mods[] = {
        [MDN_MOD_ERROR] = "/error", [MDN_MOD_WARNING] = "/warning",
        [MDN_MOD_FAILURE] = "/failure",
    };
    const char *desc = m->description;
    if (m->type != MDN_TYPE_PROCESSED && m->type != MDN_TYPE_FAILED)
        return error_set(err, "an AS2 MDN is either processed or failed");
    if (mime_buf_puts(d, m->manual_action ? "manual-action/" : "automatic-action/", err) ||
        mime_buf_puts(d, m->sent_manually ? "MDN-sent-manually; " : "MDN-sent-automatically; ", err) ||
        mime_buf_puts(d, m->type == MDN_TYPE_FAILED ? "failed" : "processed", err))
        return -1;
    if (m->modifier == MDN_MOD_NONE)
        return 0;
    if (m->modifier == MDN_MOD_OTHER) {
        if (*desc == '\0')
            return error_set(err, "an MDN with an unnamed modifier needs its text");
        return mime_buf_puts(d, "/", err) || mime_buf_puts(d, desc, err) ? -1 : 0;
    }
    if (m->modifier < MDN_MOD_ERROR || m->modifier > MDN_MOD_FAILURE)
        return error_set(err, "unknown MDN disposition modifier");
    if (m->modifier == MDN_MOD_ERROR && *desc == '\0' && mdn_error_name(m->error))
        desc = mdn_error_name(m->error);
    if (mime_buf_puts(d, mods[m->modifier], err) != 0)
        return -1;
    if (*desc != '\0' && (mime_buf_puts(d, ": ", err) || mime_buf_puts(d, desc, err)))
        return -1;
    return 0;
}

static int write_disposition(struct mime_buf *out, const struct mdn *m,
                             struct error *err)
{
    struct mime_buf d;
    mime_buf_init(&d);
    int rc = disposition_text(m, &d, err);
    if (rc == 0)
        rc = mime_header_write(out, "Disposition", d.data, err);
    mime_buf_free(&d);
    return rc;
}

static int write_recipient(struct mime_buf *out, const char *field,
                           const char *id, struct error *err)
{
    char q[AS2_ID_FMT_MAX], v[AS2_ID_FMT_MAX + 16];
    if (as2_id_format(id, q, err) != 0) {
        error_prefix(err, "%s", field);
        return -1;
    }
    memcpy(v, "rfc822; ", 8);
    memcpy(v + 8, q, strlen(q) + 1);
    return mime_header_write(out, field, v, err);
}

static int write_mic(struct mime_buf *out, const struct mdn *m, bool no_hyphen,
                     struct error *err)
{
    const char *alg = as2_micalg_name(m->mic_alg, no_hyphen);
    if (alg == NULL)
        alg = m->mic_alg_name;
    size_t n = strlen(m->mic);
    if (n == 0 || strspn(m->mic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789+/=") != n)
        return error_set(err, "the MDN's MIC is not base64");
    if (*alg == '\0')
        return error_set(err, "the MDN's MIC has no algorithm");
    for (const char *p = alg; *p; p++)
        if (!is_token((unsigned char)*p))
            return error_set(err, "the MDN's MIC algorithm name is not a token");
    char v[MDN_MIC_MAX + sizeof(m->mic_alg_name) + 4];
    memcpy(v, m->mic, n);
    memcpy(v + n, ", ", 2);
    memcpy(v + n + 2, alg, strlen(alg) + 1);
    return mime_header_write(out, "Received-Content-MIC", v, err);
}

int mdn_build_notification(struct mime_buf *out, const struct mdn *m,
                           bool micalg_no_hyphen, struct error *err)
{
    if (m->final_recipient[0] == '\0' || m->original_message_id[0] == '\0')
        return error_set(err, "an MDN needs a final recipient and the original Message-ID");
    if (mime_buf_puts(out, "Content-Type: message/disposition-notification\r\n"
                           "Content-Transfer-Encoding: 7bit\r\n\r\n", err) != 0)
        return -1;
    if (m->reporting_ua[0] &&
        mime_header_write(out, "Reporting-UA", m->reporting_ua, err) != 0)
        return -1;
    if (m->original_recipient[0] &&
        write_recipient(out, "Original-Recipient", m->original_recipient, err) != 0)
        return -1;
    if (write_recipient(out, "Final-Recipient", m->final_recipient, err) != 0 ||
        mime_header_write(out, "Original-Message-ID", m->original_message_id, err) != 0 ||
        write_disposition(out, m, err) != 0)
        return -1;
    if (m->has_mic && write_mic(out, m, micalg_no_hyphen, err) != 0)
        return -1;
    return 0;
}

static int default_text(struct mime_buf *t, const struct mdn *m, struct error *err)
{
    int rc = mime_buf_puts(t, "The AS2 message ", err) ||
             mime_buf_puts(t, m->original_message_id, err) ||
             mime_buf_puts(t, "\r\nsent to ", err) ||
             mime_buf_puts(t, m->final_recipient, err);
    if (rc)
        return -1;
    if (m->type == MDN_TYPE_PROCESSED && m->modifier == MDN_MOD_NONE)
        return mime_buf_puts(t, "\r\nwas received and processed.\r\n"
                                "This receipt does not say that the content was "
                                "read or acted upon.\r\n", err);
    struct mime_buf d;
    mime_buf_init(&d);
    rc = disposition_text(m, &d, err);
    if (rc == 0)
        rc = mime_buf_puts(t, "\r\nwas received; its disposition is:\r\n", err) ||
             mime_buf_puts(t, d.data, err) || mime_buf_puts(t, "\r\n", err) ? -1 : 0;
    mime_buf_free(&d);
    return rc;
}

/* The text/plain entity: headers, then text with CRLF line ends. */
static int text_entity(struct mime_buf *e, const struct mdn *m, const char *text,
                       const char *boundary, struct error *err)
{
    struct mime_buf t;
    mime_buf_init(&t);
    int rc = 0;
    if (text == NULL) {
        rc = default_text(&t, m, err);
    } else {
        size_t n = strlen(text);
        struct mime_canon c;
        char *canon = malloc(2 * n + 1);
        mime_canon_init(&c);
        if (canon == NULL)
            rc = error_set(err, "out of memory building the MDN text");
        else
            rc = mime_buf_append(&t, canon, mime_canon_update(&c, text, n, canon), err);
        free(canon);
    }
    bool eight = false;
    for (size_t i = 0; rc == 0 && i < t.len; i++)
        eight |= (unsigned char)t.data[i] >= 0x80;
    if (rc == 0 && memmem(t.data, t.len, boundary, strlen(boundary)) != NULL)
        rc = error_set(err, "the MDN text contains the multipart boundary");
    if (rc == 0)
        rc = mime_buf_puts(e, eight ? "Content-Type: text/plain; charset=utf-8\r\n"
                                      "Content-Transfer-Encoding: 8bit\r\n\r\n"
                                    : "Content-Type: text/plain; charset=us-ascii\r\n"
                                      "Content-Transfer-Encoding: 7bit\r\n\r\n", err) ||
             mime_buf_append(e, t.data, t.len, err) ? -1 : 0;
    mime_buf_free(&t);
    return rc;
}

int mdn_build_report(struct mime_buf *out, const char *boundary,
                     const struct mdn *m, const char *text,
                     bool micalg_no_hyphen, struct error *err)
{
    struct mime_buf txt, dn;
    mime_buf_init(&txt);
    mime_buf_init(&dn);
    int rc = mime_boundary_check(boundary, err);
    if (rc == 0)
        rc = text_entity(&txt, m, text, boundary, err);
    if (rc == 0)
        rc = mdn_build_notification(&dn, m, micalg_no_hyphen, err);
    if (rc == 0 && memmem(dn.data, dn.len, boundary, strlen(boundary)) != NULL)
        rc = error_set(err, "the MDN fields contain the multipart boundary");
    if (rc == 0) {
        struct mime_entity parts[2] = {{txt.data, txt.len}, {dn.data, dn.len}};
        rc = mime_build_multipart(out, boundary, parts, 2, err);
    }
    mime_buf_free(&txt);
    mime_buf_free(&dn);
    return rc;
}

int mdn_build_entity(struct mime_buf *out, const char *boundary,
                     const struct mdn *m, const char *text,
                     bool micalg_no_hyphen, struct error *err)
{
    char ct[160];
    if (mime_report_content_type(ct, sizeof(ct), boundary, err) != 0 ||
        mime_header_write(out, "Content-Type", ct, err) != 0 ||
        mime_buf_puts(out, "\r\n", err) != 0)
        return -1;
    return mdn_build_report(out, boundary, m, text, micalg_no_hyphen, err);
}

/* ---- parsing: the fields ----------------------------------------------------------------------- */

/* "automatic-action/MDN-sent-automatically" */
static int parse_mode(const char *s, size_t n, struct mdn *out, struct error *err)
{
    s = trim(s, &n);
    const char *slash = memchr(s, '/', n);
    if (slash == NULL)
        return error_set(err, "MDN Disposition has no action/sending mode");
    size_t an = (size_t)(slash - s), sn = n - an - 1;
    const char *a = trim(s, &an), *m = trim(slash + 1, &sn);
    if (eq(a, an, "manual-action"))
        out->manual_action = true;
    else if (!eq(a, an, "automatic-action"))
        return error_set(err, "MDN Disposition has an unknown action mode");
    if (eq(m, sn, "MDN-sent-manually"))
        out->sent_manually = true;
    else if (!eq(m, sn, "MDN-sent-automatically"))
        return error_set(err, "MDN Disposition has an unknown sending mode");
    return 0;
}

static int parse_type(const char *s, size_t n, struct mdn *out, struct error *err)
{
    static const char *const others[] = {"displayed", "deleted", "dispatched", "denied"};
    if (eq(s, n, "processed")) {
        out->type = MDN_TYPE_PROCESSED;
        return 0;
    }
    if (eq(s, n, "failed")) {
        out->type = MDN_TYPE_FAILED;
        return 0;
    }
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        if (eq(s, n, others[i])) {
            out->type = MDN_TYPE_OTHER;
            return 0;
        }
    return error_set(err, "MDN Disposition has an unknown disposition type");
}

/* "error: text", "warning: text", "failure: text", or anything else. */
static int parse_modifier(const char *s, size_t n, struct mdn *out,
                          struct error *err)
{
    s = trim(s, &n);
    if (n == 0)
        return 0;
    const char *colon = memchr(s, ':', n);
    size_t wn = colon ? (size_t)(colon - s) : n;
    const char *w = trim(s, &wn);
    const char *d = colon ? colon + 1 : s + n;
    size_t dn = (size_t)(s + n - d);
    if (eq(w, wn, "error"))
        out->modifier = MDN_MOD_ERROR;
    else if (eq(w, wn, "warning"))
        out->modifier = MDN_MOD_WARNING;
    else if (eq(w, wn, "failure"))
        out->modifier = MDN_MOD_FAILURE;
    else {
        out->modifier = MDN_MOD_OTHER;
        d = s;
        dn = n;
    }
    d = trim(d, &dn);
    if (dn >= sizeof(out->description))
        return error_set(err, "MDN Disposition text is longer than %d characters",
                         MDN_TEXT_MAX - 1);
    copy_cut(out->description, sizeof(out->description), d, dn);
    if (out->modifier == MDN_MOD_ERROR)
        out->error = mdn_error_from_name(out->description);
    return 0;
}

static int parse_disposition(const char *v, struct mdn *out, struct error *err)
{
    size_t n = strlen(v);
    const char *semi = memchr(v, ';', n);
    if (semi == NULL)
        return error_set(err, "MDN Disposition has no disposition type");
    if (parse_mode(v, (size_t)(semi - v), out, err) != 0)
        return -1;
    size_t rn = n - (size_t)(semi - v) - 1;
    const char *r = trim(semi + 1, &rn);
    const char *slash = memchr(r, '/', rn);
    size_t tn = slash ? (size_t)(slash - r) : rn;
    const char *t = trim(r, &tn);
    if (parse_type(t, tn, out, err) != 0)
        return -1;
    if (slash)
        return parse_modifier(slash + 1, (size_t)(r + rn - (slash + 1)), out, err);
    return 0;
}

/* "rfc822; ID" (or just "ID") into dst. */
static int parse_recipient(const char *v, const char *field, char *dst,
                           struct error *err)
{
    const char *semi = strchr(v, ';');
    if (as2_id_parse(semi ? semi + 1 : v, dst, err) != 0) {
        error_prefix(err, "MDN %s", field);
        return -1;
    }
    return 0;
}

/* "base64digest, algorithm" */
static int parse_mic(const char *v, struct mdn *out, struct error *err)
{
    const char *comma = strchr(v, ',');
    if (comma == NULL)
        return error_set(err, "MDN Received-Content-MIC has no algorithm");
    size_t dn = (size_t)(comma - v), an = strlen(comma + 1);
    const char *d = trim(v, &dn), *a = trim(comma + 1, &an);
    if (dn == 0 || dn > MDN_MIC_MAX ||
        strspn(d, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") < dn)
        return error_set(err, "MDN Received-Content-MIC is not a base64 digest");
    if (an == 0 || an >= sizeof(out->mic_alg_name))
        return error_set(err, "MDN Received-Content-MIC has an empty or too long algorithm");
    for (size_t i = 0; i < an; i++)
        if (!is_token((unsigned char)a[i]))
            return error_set(err, "MDN Received-Content-MIC algorithm holds the "
                             "invalid character 0x%02x", (unsigned char)a[i]);
    memcpy(out->mic, d, dn);
    out->mic[dn] = '\0';
    memcpy(out->mic_alg_name, a, an);
    out->mic_alg_name[an] = '\0';
    out->mic_alg = as2_micalg_from_name(a, an);
    out->has_mic = true;
    return 0;
}

/* The single value of a field that decides what the MDN says. */
static int critical(const struct mime_headers *hs, const char *name,
                    const char **v, struct error *err)
{
    if (mime_header_get_unique(hs, name, v, err) != 0) {
        error_prefix(err, "MDN");
        return -1;
    }
    return 0;
}

static int fields_extract(const struct mime_headers *hs, struct mdn *out,
                          struct error *err)
{
    const char *disp, *fin, *orig, *mid, *mic;
    if (critical(hs, "Disposition", &disp, err) ||
        critical(hs, "Final-Recipient", &fin, err) ||
        critical(hs, "Original-Recipient", &orig, err) ||
        critical(hs, "Original-Message-ID", &mid, err) ||
        critical(hs, "Received-Content-MIC", &mic, err))
        return -1;
    if (disp == NULL)
        return error_set(err, "MDN has no Disposition field");
    const char *ua = mime_header_get(hs, "Reporting-UA");
    if (ua)
        copy_cut(out->reporting_ua, sizeof(out->reporting_ua), ua, strlen(ua));
    if (mid) {
        if (strlen(mid) > AS2_MSGID_MAX)
            return error_set(err, "MDN Original-Message-ID is longer than %d characters",
                             AS2_MSGID_MAX);
        copy_cut(out->original_message_id, sizeof(out->original_message_id), mid,
                 strlen(mid));
    }
    if ((fin && parse_recipient(fin, "Final-Recipient", out->final_recipient, err)) ||
        (orig && parse_recipient(orig, "Original-Recipient", out->original_recipient, err)) ||
        (mic && parse_mic(mic, out, err)))
        return -1;
    return parse_disposition(disp, out, err);
}

/* Length of a blank (empty or whitespace-only) line at s, 0 if none. */
static size_t blank_line(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_wsp(s[i]))
        i++;
    if (i < n && s[i] == '\r')
        i++;
    if (i < n && s[i] == '\n')
        return i + 1;
    return i == n && n > 0 ? n : 0;
}

/* The body of a message/disposition-notification: one or more header-like
 * blocks (blank lines between them tolerated). */
static int parse_fields(const char *s, size_t n, struct mdn *out, struct error *err)
{
    struct mime_headers hs;
    mime_headers_init(&hs);
    size_t pos = 0, b, off;
    int rc = 0;
    while (rc == 0 && pos < n) {
        if ((b = blank_line(s + pos, n - pos)) > 0) {
            pos += b;
            continue;
        }
        rc = mime_headers_parse(&hs, s + pos, n - pos, &off, err);
        pos += off;
    }
    if (rc != 0)
        error_prefix(err, "MDN fields");
    else
        rc = fields_extract(&hs, out, err);
    mime_headers_free(&hs);
    return rc;
}

/* Decode a notification body by its transfer encoding and parse it. */
static int parse_encoded(const char *cte_value, const char *s, size_t n,
                         struct mdn *out, struct error *err)
{
    enum mime_cte cte;
    unsigned char *d;
    size_t dn;
    if (mime_cte_parse(cte_value, &cte, err) != 0 ||
        mime_decode_alloc(cte, s, n, &d, &dn, err) != 0) {
        error_prefix(err, "MDN notification part");
        return -1;
    }
    int rc = parse_fields((const char *)d, dn, out, err);
    free(d);
    return rc;
}

/* ---- parsing: the report ------------------------------------------------------------------------- */

/* Is this part the notification? 1 yes (and *body, *cte), 0 no, -1. */
static int part_is_dn(const char *p, size_t n, struct mime_headers *hs,
                      size_t *body, struct error *err)
{
    const char *ctv;
    struct mime_content_type ct;
    if (mime_headers_parse(hs, p, n, body, err) != 0 ||
        mime_header_get_unique(hs, "Content-Type", &ctv, err) != 0)
        return -1;
    if (ctv == NULL)
        return 0;       /* text/plain by default */
    if (mime_content_type_parse(ctv, &ct, err) != 0)
        return -1;
    int yes = mime_content_type_is(&ct, "message", "disposition-notification");
    mime_content_type_free(&ct);
    return yes;
}

static int parse_report(const struct mime_content_type *ct, const char *body,
                        size_t len, struct mdn *out, struct error *err)
{
    const char *rt = mime_param_get(&ct->params, "report-type");
    const char *b = mime_param_get(&ct->params, "boundary");
    struct mime_part_range parts[MDN_MAX_PARTS];
    size_t np, found = 0, boff = 0, fpart = 0;
    if (rt && strcasecmp(rt, "disposition-notification") != 0)
        return error_set(err, "MDN report-type is not disposition-notification");
    if (b == NULL)
        return error_set(err, "MDN multipart/report has no boundary");
    if (mime_multipart_split(body, len, b, parts, MDN_MAX_PARTS, &np, err) != 0) {
        error_prefix(err, "MDN");
        return -1;
    }
    char cte[64] = "";
    for (size_t i = 0; i < np; i++) {
        struct mime_headers hs;
        size_t off = 0;
        mime_headers_init(&hs);
        int r = part_is_dn(body + parts[i].off, parts[i].len, &hs, &off, err);
        if (r == 1 && found++ == 0) {
            const char *c = mime_header_get(&hs, "Content-Transfer-Encoding");
            copy_cut(cte, sizeof(cte), c ? c : "", c ? strlen(c) : 0);
            boff = off;
            fpart = i;
        }
        mime_headers_free(&hs);
        if (r < 0) {
            error_prefix(err, "MDN part %zu", i + 1);
            return -1;
        }
    }
    if (found != 1)
        return error_set(err, found ? "MDN has more than one disposition-notification part"
                                    : "MDN has no disposition-notification part");
    return parse_encoded(cte, body + parts[fpart].off + boff,
                         parts[fpart].len - boff, out, err);
}

int mdn_parse(const char *content_type, const char *body, size_t len,
              struct mdn *out, struct error *err)
{
    struct mime_content_type ct;
    memset(out, 0, sizeof(*out));
    if (content_type == NULL)
        return error_set(err, "MDN has no Content-Type");
    if (mime_content_type_parse(content_type, &ct, err) != 0) {
        error_prefix(err, "MDN Content-Type");
        return -1;
    }
    int rc;
    if (mime_content_type_is(&ct, "multipart", "report"))
        rc = parse_report(&ct, body, len, out, err);
    else if (mime_content_type_is(&ct, "message", "disposition-notification"))
        rc = parse_fields(body, len, out, err);
    else
        rc = error_set(err, "MDN is neither multipart/report nor "
                       "message/disposition-notification");
    mime_content_type_free(&ct);
    return rc;
}

int mdn_parse_entity(const char *entity, size_t len, struct mdn *out,
                     struct error *err)
{
    struct mime_headers hs;
    size_t off;
    const char *ct;
    memset(out, 0, sizeof(*out));
    mime_headers_init(&hs);
    int rc = mime_headers_parse(&hs, entity, len, &off, err);
    if (rc == 0)
        rc = mime_header_get_unique(&hs, "Content-Type", &ct, err);
    if (rc == 0)
        rc = mdn_parse(ct, entity + off, len - off, out, err);
    else
        error_prefix(err, "MDN entity");
    mime_headers_free(&hs);
    return rc;
}
