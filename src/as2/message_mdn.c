/*
 * message_mdn.c - the MDN around an AS2 exchange: as2_mdn_make builds the
 * answer to an unpacked message (multipart/report from mdn.c, signed as
 * multipart/signed with our profile key when the sender asked for it),
 * as2_mdn_read reads one a partner sent (verifying its signature with the
 * partner's certificates) and as2_mdn_check decides whether it confirms
 * a delivery (disposition, Original-Message-ID, MIC).
 *
 * MDNs are small, so they are handled in memory, bounded by max_size. It
 * owns only the scratch buffers of one call. It must never accept a
 * signed MDN whose signature does not verify against the partner's own
 * certificates, never report a MIC for a refused message, and never put
 * key material in an error.
 */
#include "as2/message.h"

#include <stdlib.h>
#include <string.h>

#include "as2/message_internal.h"

#define DEFAULT_DIGESTS (AS2_DIGEST_BIT(AS2_DIGEST_SHA256) | \
                         AS2_DIGEST_BIT(AS2_DIGEST_SHA384) | \
                         AS2_DIGEST_BIT(AS2_DIGEST_SHA512))

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int add_id(struct mime_headers *hs, const char *name, const char *id,
                  struct error *err)
{
    char q[AS2_ID_FMT_MAX];
    if (as2_id_format(id, q, err) != 0) {
        error_prefix(err, "%s", name);
        return -1;
    }
    return mime_headers_add(hs, name, q, err);
}

/* The struct mdn that says what happened to msg. */
static int mdn_fill(const struct as2_mdn_opts *o,
                    const struct as2_unpacked *msg, enum mdn_error error,
                    const char *warning, struct mdn *m, struct error *err)
{
    memset(m, 0, sizeof(*m));
    copy_str(m->reporting_ua, sizeof(m->reporting_ua),
             o->reporting_ua ? o->reporting_ua : "Wharf");
    copy_str(m->original_recipient, sizeof(m->original_recipient),
             msg->req.to);
    copy_str(m->final_recipient, sizeof(m->final_recipient), msg->req.to);
    copy_str(m->original_message_id, sizeof(m->original_message_id),
             msg->req.message_id);
    if (msg->unsupported_micalg) {
        m->type = MDN_TYPE_FAILED;
        m->modifier = MDN_MOD_FAILURE;
        copy_str(m->description, sizeof(m->description),
                 MDN_FAILURE_UNSUPPORTED_MICALG);
        return 0;
    }
    m->type = MDN_TYPE_PROCESSED;
    if (error != MDN_ERROR_NONE) {
        if (mdn_error_name(error) == NULL)
            return error_set(err, "cannot build an MDN for an unnamed error");
        m->modifier = MDN_MOD_ERROR;
        m->error = error;
        return 0;
    }
    if (warning != NULL) {
        if (strlen(warning) >= sizeof(m->description))
            return error_set(err, "the MDN warning is too long");
        m->modifier = MDN_MOD_WARNING;
        copy_str(m->description, sizeof(m->description), warning);
    }
    const char *comma = strchr(msg->mic, ',');
    if (comma == NULL || msg->mic_alg == AS2_MICALG_UNKNOWN)
        return error_set(err, "cannot build a positive MDN without the "
                         "message's MIC");
    size_t n = (size_t)(comma - msg->mic);
    if (n == 0 || n > MDN_MIC_MAX)
        return error_set(err, "the message's MIC is malformed");
    memcpy(m->mic, msg->mic, n);
    m->mic[n] = '\0';
    m->has_mic = true;
    m->mic_alg = msg->mic_alg;
    return 0;
}

int as2_mdn_make(const struct as2_mdn_opts *o, const struct as2_unpacked *msg,
                 enum mdn_error error, const char *warning, BIO *out,
                 struct as2_mdn_built *res, struct error *err)
{
    struct error local;
    if (err == NULL)
        err = &local;
    if (res == NULL)
        return error_set(err, "cannot build an MDN: no result structure");
    memset(res, 0, sizeof(*res));
    mime_headers_init(&res->headers);
    if (o == NULL || msg == NULL || out == NULL)
        return error_set(err, "cannot build an MDN: no options, message or "
                         "output");
    if (msg->req.from[0] == '\0' || msg->req.to[0] == '\0' ||
        msg->req.message_id[0] == '\0')
        return error_set(err, "cannot build an MDN: the message's AS2-From, "
                         "AS2-To or Message-ID is unknown");
    struct mdn m;
    if (mdn_fill(o, msg, error, warning, &m, err) != 0)
        return -1;
    bool no_hyphen = msg->mic_alg_name[0] != '\0' &&
                     strchr(msg->mic_alg_name, '-') == NULL;
    char boundary[MIME_BOUNDARY_BUFSZ], outer[MIME_BOUNDARY_BUFSZ];
    char ct[512];
    struct mime_buf ent, body;
    mime_buf_init(&ent);
    mime_buf_init(&body);
    bool sign = msg->mdn_signed && o->signer != NULL &&
                !msg->unsupported_micalg;
    int rc = mime_boundary_new(boundary, err);
    if (rc == 0 && !sign) {
        rc = mdn_build_report(&body, boundary, &m, o->text, no_hyphen, err);
        if (rc == 0)
            rc = mime_report_content_type(ct, sizeof(ct), boundary, err);
    } else if (rc == 0) {
        struct as2_signer s = *o->signer;
        s.digest = msg_digest_of(msg->mic_alg);
        if (s.digest == AS2_DIGEST_NONE)
            s.digest = AS2_DIGEST_SHA256;
        const char *micalg = msg->mic_alg_name[0] != '\0'
                             ? msg->mic_alg_name
                             : as2_mic_alg_name(s.digest);
        BIO *in = NULL, *sig = NULL;
        rc = mdn_build_entity(&ent, boundary, &m, o->text, no_hyphen, err);
        if (rc == 0)
            rc = mime_boundary_new(outer, err);
        if (rc == 0 && ((in = BIO_new_mem_buf(ent.data, (int)ent.len)) == NULL ||
                        (sig = BIO_new(BIO_s_mem())) == NULL))
            rc = error_set(err, "out of memory signing the MDN");
        if (rc == 0)
            rc = as2_cms_sign_detached(&s, in, sig, err);
        if (rc == 0) {
            char *p;
            long n = BIO_get_mem_data(sig, &p);
            rc = mime_build_signed(&body, outer, ent.data, ent.len,
                                   (const unsigned char *)p, (size_t)n, err);
        }
        if (rc == 0)
            rc = mime_signed_content_type(ct, sizeof(ct), micalg, outer, err);
        BIO_free(in);
        BIO_free(sig);
        res->is_signed = rc == 0;
    }
    struct mime_headers *hs = &res->headers;
    if (rc == 0)
        rc = as2_message_id_new(res->message_id, sizeof(res->message_id),
                                o->host, err);
    if (rc == 0 &&
        (mime_headers_add(hs, "Content-Type", ct, err) != 0 ||
         mime_headers_add(hs, "MIME-Version", "1.0", err) != 0 ||
         mime_headers_add(hs, "AS2-Version", "1.2", err) != 0 ||
         add_id(hs, "AS2-From", msg->req.to, err) != 0 ||
         add_id(hs, "AS2-To", msg->req.from, err) != 0 ||
         mime_headers_add(hs, "Message-ID", res->message_id, err) != 0 ||
         mime_headers_add(hs, "Subject", "Message Disposition Notification",
                          err) != 0))
        rc = -1;
    if (rc == 0)
        rc = msg_write(out, body.data, body.len, "cannot write the MDN", err);
    if (rc == 0 && BIO_flush(out) <= 0)
        rc = error_openssl(err, "cannot write the MDN");
    mime_buf_free(&ent);
    mime_buf_free(&body);
    return rc;
}

void as2_mdn_built_free(struct as2_mdn_built *res)
{
    if (res != NULL)
        mime_headers_free(&res->headers);
}

/* ---- reading ---- */

static int slurp(BIO *in, size_t max, struct mime_buf *b, struct error *err)
{
    char buf[8192];
    long r;
    while ((r = msg_read(in, buf, sizeof(buf), err)) > 0) {
        if (b->len + (size_t)r > max)
            return error_set(err, "the MDN is larger than %zu bytes", max);
        if (mime_buf_append(b, buf, (size_t)r, err) != 0)
            return -1;
    }
    return r < 0 ? -1 : 0;
}

/* The MDN's own AS2 headers, when present and well formed. */
static void mdn_ids(const struct mime_headers *h, struct as2_mdn_received *out)
{
    const char *v;
    struct error e;
    if ((v = mime_header_get(h, "AS2-From")) != NULL &&
        as2_id_parse(v, out->from, &e) != 0)
        out->from[0] = '\0';
    if ((v = mime_header_get(h, "AS2-To")) != NULL &&
        as2_id_parse(v, out->to, &e) != 0)
        out->to[0] = '\0';
    if ((v = mime_header_get(h, "Message-ID")) != NULL &&
        as2_message_id_parse(v, out->message_id, sizeof(out->message_id),
                             &e) != 0)
        out->message_id[0] = '\0';
}

static int read_signed(const struct as2_mdn_read_opts *o,
                       const struct mime_content_type *ct,
                       const struct mime_buf *body,
                       struct as2_mdn_received *out, struct error *err)
{
    const char *boundary = mime_param_get(&ct->params, "boundary");
    struct mime_part_range parts[3];
    size_t n = 0;
    if (boundary == NULL)
        return error_set(err, "the signed MDN has no boundary");
    if (mime_multipart_split(body->data, body->len, boundary, parts, 3, &n,
                             err) != 0)
        return -1;
    if (n != 2)
        return error_set(err, "the signed MDN has %zu parts instead of two",
                         n);
    if (o->certs == NULL || o->ncerts == 0)
        return error_set(err, "the MDN is signed but no certificate is "
                         "configured for partner %s",
                         o->partner ? o->partner : "(unnamed)");
    unsigned char *der = NULL;
    size_t derlen = 0;
    const char *p0 = body->data + parts[0].off;
    if (msg_sig_part_der(body->data + parts[1].off, parts[1].len, &der,
                         &derlen, err) != 0)
        return -1;
    struct as2_trust t = {o->certs, o->ncerts, o->partner,
                          o->digests ? o->digests : DEFAULT_DIGESTS};
    BIO *c = BIO_new_mem_buf(p0, (int)parts[0].len);
    int rc = c == NULL ? error_set(err, "out of memory reading the MDN")
                       : as2_cms_verify_detached(&t, der, derlen, c,
                                                 &out->sig, err);
    BIO_free(c);
    free(der);
    if (rc != 0) {
        error_prefix(err, "MDN");
        return -1;
    }
    out->is_signed = true;
    return mdn_parse_entity(p0, parts[0].len, &out->mdn, err);
}

int as2_mdn_read(const struct as2_mdn_read_opts *o, const struct mime_headers *h,
                 BIO *body, struct as2_mdn_received *out, struct error *err)
{
    struct error local;
    if (err == NULL)
        err = &local;
    if (out == NULL)
        return error_set(err, "cannot read the MDN: no result structure");
    memset(out, 0, sizeof(*out));
    if (o == NULL || h == NULL || body == NULL)
        return error_set(err, "cannot read the MDN: no options, headers or "
                         "body");
    size_t max = o->max_size ? o->max_size : AS2_MDN_MAX_DEFAULT;
    const char *ctv = NULL;
    struct mime_content_type ct;
    struct mime_buf b;
    memset(&ct, 0, sizeof(ct));
    mime_buf_init(&b);
    mdn_ids(h, out);
    int rc = mime_header_get_unique(h, "Content-Type", &ctv, err);
    if (rc == 0 && ctv == NULL)
        rc = error_set(err, "the MDN has no Content-Type");
    if (rc == 0)
        rc = mime_content_type_parse(ctv, &ct, err);
    if (rc == 0)
        rc = slurp(body, max, &b, err);
    if (rc == 0 && b.data == NULL)
        rc = error_set(err, "the MDN is empty");
    if (rc == 0) {
        if (mime_content_type_is(&ct, "multipart", "signed"))
            rc = read_signed(o, &ct, &b, out, err);
        else if (o->require_signed)
            rc = error_set(err, "the MDN is not signed, and partner %s must "
                           "sign its MDNs", o->partner ? o->partner
                                                       : "(unnamed)");
        else
            rc = mdn_parse(ctv, b.data, b.len, &out->mdn, err);
    }
    if (rc == 0 && out->mdn.has_mic) {
        const char *alg = out->mdn.mic_alg_name[0] != '\0'
                          ? out->mdn.mic_alg_name
                          : as2_micalg_name(out->mdn.mic_alg, false);
        int w = snprintf(out->mic, sizeof(out->mic), "%s, %s", out->mdn.mic,
                         alg ? alg : "unknown");
        if (w < 0 || (size_t)w >= sizeof(out->mic))
            out->mic[0] = '\0';
    }
    if (rc != 0)
        out->is_signed = false;
    mime_content_type_free(&ct);
    mime_buf_free(&b);
    return rc;
}

/* "processed/error: decryption-failed" and the like. */
static void disposition_text(const struct mdn *m, char *buf, size_t cap)
{
    static const char *const mods[] = {"", "/error", "/warning", "/failure",
                                       "/"};
    const char *desc = m->description;
    if (m->modifier == MDN_MOD_ERROR && *desc == '\0' &&
        mdn_error_name(m->error) != NULL)
        desc = mdn_error_name(m->error);
    snprintf(buf, cap, "%s%s%s%s",
             m->type == MDN_TYPE_PROCESSED ? "processed"
             : m->type == MDN_TYPE_FAILED ? "failed" : "other",
             m->modifier <= MDN_MOD_OTHER ? mods[m->modifier] : "",
             *desc && m->modifier != MDN_MOD_OTHER ? ": " : "", desc);
}

/* s without surrounding spaces and one pair of angle brackets. */
static const char *bare_id(const char *s, size_t *n)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t k = strlen(s);
    while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
        k--;
    if (k >= 2 && s[0] == '<' && s[k - 1] == '>') {
        s++;
        k -= 2;
    }
    *n = k;
    return s;
}

/* Message-IDs compared as RFC 5322 ids: some partners drop the angle
 * brackets in Original-Message-ID. */
static bool same_id(const char *a, const char *b)
{
    size_t na, nb;
    a = bare_id(a, &na);
    b = bare_id(b, &nb);
    return na > 0 && na == nb && memcmp(a, b, na) == 0;
}

int as2_mdn_check(const struct as2_mdn_received *r, const char *message_id,
                  const char *mic, bool mic_optional, struct error *err)
{
    char what[MDN_TEXT_MAX + 64];
    if (r == NULL)
        return error_set(err, "no MDN to check");
    if (!mdn_is_success(&r->mdn)) {
        disposition_text(&r->mdn, what, sizeof(what));
        return error_set(err, "the partner did not accept the message: %.300s",
                         what);
    }
    if (message_id != NULL && !same_id(r->mdn.original_message_id, message_id))
        return error_set(err, "the MDN answers another message (its "
                         "Original-Message-ID is not %.200s)", message_id);
    if (mic != NULL) {
        /* RFC 4130 7.4.3: the MIC is only required of a signed receipt */
        if (!r->mdn.has_mic && mic_optional && !r->is_signed)
            return 0;
        if (!r->mdn.has_mic)
            return error_set(err, "the MDN carries no Received-Content-MIC%s",
                             r->is_signed ? "" : " (the partner's setting "
                             "require_mic asks for one in unsigned receipts)");
        if (!as2_mic_equal(r->mic, mic))
            return error_set(err, "the MIC in the MDN differs from the one "
                             "computed when sending: the partner received "
                             "other content");
    }
    return 0;
}
