/*
 * message_send.c - as2_package: a payload into the HTTP headers and body
 * of an AS2 message (RFC 4130 with RFC 5402 compression), in one pass
 * over the payload and constant memory.
 *
 * The body is built as a chain of pull streams, innermost first: the
 * payload (canonicalized if asked, base64 if asked) behind the content
 * entity's headers; a CompressedData behind its entity headers; the
 * multipart/signed (its first part streamed through the detached signer,
 * which digests it while it is copied out, then the signature part); a
 * CompressedData again; and the EnvelopedData written to the caller's
 * out. Each cms.h stage that pumps its input to its output runs in its
 * own thread (message_io.c) so the next can pull from it; the MIC is
 * digested from the bytes of the entity mic.h names, as they pass.
 *
 * The HTTP headers (the outermost entity's and the AS2 ones) are made
 * first, from the options alone (as2_package_begin: the multipart/signed
 * boundary is chosen there), so that a caller can send them before the
 * body exists (as2_package_body).
 *
 * It owns the threads, pipes and small buffers of one call. It must never
 * read the payload twice or hold it whole, never put payload bytes or key
 * material in an error, and never return before every thread is joined.
 */
#include "as2/message.h"

#include <stdlib.h>
#include <string.h>

#include "as2/message_internal.h"

enum { RANK_CONTENT = 0, RANK_COMPRESS1, RANK_SIGN, RANK_COMPRESS2,
       RANK_OUTER };

struct tx {
    const struct as2_package_opts *o;
    struct msg_fail fail;
    struct as2_mic *mic;
};

/* ---- the payload: count, canonicalize, digest (pull) ---- */

struct content_src {
    struct tx *tx;
    BIO *in;
    bool canon;
    struct mime_canon c;
    struct as2_mic *mic;            /* the decoded-body MIC, or NULL */
    uint64_t bytes;
    char raw[MSG_CHUNK / 2];
    char out[MSG_CHUNK];
    size_t off, len;
};

static int content_read(void *ctx, char *buf, int len)
{
    struct content_src *s = ctx;
    struct error e = {0};
    while (s->off == s->len) {
        long r = msg_read(s->in, s->raw, sizeof(s->raw), &e);
        if (r < 0) {
            error_prefix(&e, "cannot read the payload");
            return msg_fail(&s->tx->fail, RANK_CONTENT,
                            MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, &e);
        }
        if (r == 0)
            return 0;
        s->bytes += (uint64_t)r;
        s->off = 0;
        if (s->canon) {
            s->len = mime_canon_update(&s->c, s->raw, (size_t)r, s->out);
        } else {
            memcpy(s->out, s->raw, (size_t)r);
            s->len = (size_t)r;
        }
        if (s->mic != NULL && as2_mic_update(s->mic, s->out, s->len, &e) != 0)
            return msg_fail(&s->tx->fail, RANK_CONTENT,
                            MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, &e);
    }
    size_t k = s->len - s->off;
    if (k > (size_t)len)
        k = (size_t)len;
    memcpy(buf, s->out + s->off, k);
    s->off += k;
    return (int)k;
}

/* ---- a MIC tap (pull): digests what passes ---- */

struct tap {
    struct tx *tx;
    BIO *in;
    struct as2_mic *mic;
    size_t rank;
};

static int tap_read(void *ctx, char *buf, int len)
{
    struct tap *t = ctx;
    int r = BIO_read(t->in, buf, len);
    struct error e = {0};
    if (r > 0 && as2_mic_update(t->mic, buf, (size_t)r, &e) != 0)
        return msg_fail(&t->tx->fail, t->rank,
                        MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, &e);
    return r < 0 ? -1 : r;
}

/* ---- a counting sink (push) ---- */

struct counter {
    BIO *out;
    uint64_t n;
};

static int count_write(void *ctx, const char *buf, int len)
{
    struct counter *c = ctx;
    int r = BIO_write(c->out, buf, len);
    if (r > 0)
        c->n += (uint64_t)r;
    return r <= 0 ? -1 : r;
}

/* ---- stages ---- */

struct compress_stage {
    BIO *in;
    int level;                      /* zlib's, or -1: its default */
};

static int compress_fn(void *arg, BIO *out, struct error *err)
{
    struct compress_stage *c = arg;
    return as2_cms_compress(c->in, out, c->level, err);
}

struct sign_stage {
    struct tx *tx;
    BIO *in;                        /* the entity to sign */
    BIO *out;                       /* set by sign_fn: the tee's copy */
    const char *headers;            /* entity headers when wrapped, or "" */
    const char *boundary;
    struct as2_mic *mic;            /* the signed-entity MIC, or NULL */
    bool mic_shared;                /* mic takes the signature's digest */
};

static int tee_read(void *ctx, char *buf, int len)
{
    struct sign_stage *s = ctx;
    struct error e = {0};
    int r = BIO_read(s->in, buf, len);
    if (r <= 0)
        return r < 0 ? -1 : 0;
    if (s->mic != NULL && !s->mic_shared &&
        as2_mic_update(s->mic, buf, (size_t)r, &e) != 0)
        return msg_fail(&s->tx->fail, RANK_SIGN,
                        MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, &e);
    if (msg_write(s->out, buf, (size_t)r, "cannot write the signed entity",
                  &e) != 0)
        return msg_fail(&s->tx->fail, RANK_SIGN,
                        MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, &e);
    return r;
}

/* The signature's digest of the signed entity is its MIC too. */
static int sign_digested(void *arg, BIO *chain, struct error *err)
{
    struct sign_stage *s = arg;
    return s->mic_shared ? as2_mic_adopt(s->mic, chain, err) : 0;
}

static int sign_fn(void *arg, BIO *out, struct error *err)
{
    struct sign_stage *s = arg;
    struct mime_buf b;
    mime_buf_init(&b);
    s->out = out;
    int rc = mime_buf_puts(&b, s->headers, err);
    if (rc == 0)
        rc = mime_signed_begin(&b, s->boundary, err);
    if (rc == 0)
        rc = msg_write(out, b.data, b.len, "cannot write the signed message",
                       err);
    mime_buf_free(&b);
    BIO *tee = rc == 0 ? msg_bio_new(tee_read, NULL, s) : NULL;
    BIO *sig = rc == 0 ? BIO_new(BIO_s_mem()) : NULL;
    if (rc == 0 && (tee == NULL || sig == NULL))
        rc = error_set(err, "out of memory signing the message");
    if (rc == 0)
        rc = as2_cms_sign_detached_tap(s->tx->o->signer, tee, sig,
                                       sign_digested, s, err);
    if (rc == 0) {
        char *p;
        long n = BIO_get_mem_data(sig, &p);
        mime_buf_init(&b);
        rc = mime_signed_end(&b, s->boundary, (const unsigned char *)p,
                             (size_t)n, err);
        if (rc == 0)
            rc = msg_write(out, b.data, b.len, "cannot write the signed "
                           "message", err);
        mime_buf_free(&b);
    }
    BIO_free(tee);
    BIO_free(sig);
    return rc;
}

/* ---- names and headers ---- */

static enum as2_micalg micalg_of(enum as2_digest d)
{
    switch (d) {
    case AS2_DIGEST_SHA1: return AS2_MICALG_SHA1;
    case AS2_DIGEST_SHA256: return AS2_MICALG_SHA256;
    case AS2_DIGEST_SHA384: return AS2_MICALG_SHA384;
    case AS2_DIGEST_SHA512: return AS2_MICALG_SHA512;
    case AS2_DIGEST_NONE: break;
    }
    return AS2_MICALG_UNKNOWN;
}

static bool is_ascii_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* Content-Disposition for a (sanitized) filename: quoted when ASCII,
 * RFC 2231 UTF-8 percent-encoding otherwise. */
static int disposition_value(const char *name, char *out, size_t cap,
                             struct error *err)
{
    int w;
    if (is_ascii_printable(name)) {
        w = snprintf(out, cap, "attachment; filename=\"%s\"", name);
    } else {
        static const char hex[] = "0123456789ABCDEF";
        w = snprintf(out, cap, "attachment; filename*=UTF-8''");
        size_t o = w < 0 ? cap : (size_t)w;
        for (const unsigned char *p = (const unsigned char *)name;
             *p && o + 4 < cap; p++) {
            if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL) {
                out[o++] = (char)*p;
            } else {
                out[o++] = '%';
                out[o++] = hex[*p >> 4];
                out[o++] = hex[*p & 15];
            }
        }
        out[o < cap ? o : cap - 1] = '\0';
        w = (int)o;
    }
    if (w < 0 || (size_t)w >= cap)
        return error_set(err, "the filename is too long for a header");
    return 0;
}

/* The content entity's header lines. */
static int content_headers(const struct as2_package_opts *o,
                           struct mime_headers *hs, struct error *err)
{
    const char *ct = o->content_type ? o->content_type
                                     : "application/octet-stream";
    struct mime_content_type parsed;
    memset(&parsed, 0, sizeof(parsed));
    if (mime_content_type_parse(ct, &parsed, err) != 0) {
        error_prefix(err, "payload Content-Type");
        return -1;
    }
    bool multipart = strcmp(parsed.type, "multipart") == 0;
    mime_content_type_free(&parsed);
    if (multipart && o->transfer == AS2_TRANSFER_BASE64)
        return error_set(err, "a multipart payload cannot be sent base64 "
                         "encoded (RFC 2045)");
    if (mime_headers_add(hs, "Content-Type", ct, err) != 0 ||
        mime_headers_add(hs, "Content-Transfer-Encoding",
                         o->transfer == AS2_TRANSFER_BASE64 ? "base64"
                                                            : "binary",
                         err) != 0)
        return -1;
    if (o->filename != NULL) {
        char clean[AS2_FILENAME_MAX + 1], v[3 * AS2_FILENAME_MAX + 64];
        as2_filename_sanitize(o->filename, clean);
        if (clean[0] == '\0')
            return error_set(err, "the filename has nothing usable left "
                             "after removing paths and control characters");
        if (disposition_value(clean, v, sizeof(v), err) != 0 ||
            mime_headers_add(hs, "Content-Disposition", v, err) != 0)
            return -1;
    }
    return 0;
}

/* Header lines as an entity's header block (folded, CRLF, empty line). */
static int headers_block(const struct mime_headers *hs, struct mime_buf *b,
                         struct error *err)
{
    for (size_t i = 0; i < hs->count; i++)
        if (mime_header_write(b, hs->h[i].name, hs->h[i].value, err) != 0)
            return -1;
    return mime_buf_puts(b, "\r\n", err);
}

static const char COMPRESSED_CT[] =
    "application/pkcs7-mime; smime-type=compressed-data; name=\"smime.p7z\"";

static int compressed_headers(struct mime_headers *hs, struct error *err)
{
    if (mime_headers_add(hs, "Content-Type", COMPRESSED_CT, err) != 0 ||
        mime_headers_add(hs, "Content-Transfer-Encoding", "binary", err) != 0)
        return -1;
    return mime_headers_add(hs, "Content-Disposition",
                            "attachment; filename=\"smime.p7z\"", err);
}

static int add_id(struct mime_headers *hs, const char *name, const char *id,
                  struct error *err)
{
    char q[AS2_ID_FMT_MAX];
    if (id == NULL)
        return error_set(err, "cannot package: %s is not set", name);
    if (as2_id_format(id, q, err) != 0) {
        error_prefix(err, "%s", name);
        return -1;
    }
    return mime_headers_add(hs, name, q, err);
}

/* The AS2 headers after the entity ones. */
static int as2_headers(const struct as2_package_opts *o,
                       struct as2_packaged *res, enum as2_micalg mic_alg,
                       struct error *err)
{
    struct mime_headers *hs = &res->headers;
    if (mime_headers_add(hs, "MIME-Version", "1.0", err) != 0 ||
        mime_headers_add(hs, "AS2-Version", "1.2", err) != 0 ||
        add_id(hs, "AS2-From", o->from, err) != 0 ||
        add_id(hs, "AS2-To", o->to, err) != 0 ||
        mime_headers_add(hs, "Message-ID", res->message_id, err) != 0)
        return -1;
    if (o->subject != NULL &&
        mime_headers_add(hs, "Subject", o->subject, err) != 0)
        return -1;
    if (o->mdn != AS2_MDN_NONE) {
        if (mime_headers_add(hs, "Disposition-Notification-To",
                             o->mdn_to ? o->mdn_to : o->from, err) != 0)
            return -1;
        if (o->mdn_signed) {
            char dno[512];
            enum as2_micalg one = mic_alg;
            const enum as2_micalg *algs = o->n_mdn_micalgs ? o->mdn_micalgs
                                                           : &one;
            size_t n = o->n_mdn_micalgs ? o->n_mdn_micalgs : 1;
            if (as2_dno_format(dno, sizeof(dno), algs, n,
                               o->micalg_no_hyphen, err) != 0 ||
                mime_headers_add(hs, "Disposition-Notification-Options", dno,
                                 err) != 0)
                return -1;
        }
        if (o->mdn == AS2_MDN_ASYNC) {
            char url[AS2_URL_MAX + 1];
            if (o->receipt_url == NULL)
                return error_set(err, "cannot package: an asynchronous MDN "
                                 "needs a Receipt-Delivery-Option URL");
            if (as2_receipt_url_parse(o->receipt_url, url, sizeof(url),
                                      err) != 0 ||
                mime_headers_add(hs, "Receipt-Delivery-Option", url, err) != 0)
                return -1;
        }
    }
    if (o->ediint_features != NULL &&
        mime_headers_add(hs, "EDIINT-Features", o->ediint_features, err) != 0)
        return -1;
    return 0;
}

static int check_opts(const struct as2_package_opts *o, struct error *err)
{
    if (o->signer != NULL &&
        micalg_of(o->signer->digest) == AS2_MICALG_UNKNOWN)
        return error_set(err, "cannot package: unsupported signing digest");
    if (o->cipher != AS2_CIPHER_NONE && o->recipient == NULL)
        return error_set(err, "cannot package: encryption needs the "
                         "partner's certificate");
    if (o->transfer != AS2_TRANSFER_BINARY &&
        o->transfer != AS2_TRANSFER_BASE64)
        return error_set(err, "cannot package: unknown transfer encoding");
    if (o->compress > AS2_COMPRESS_AFTER_SIGNING)
        return error_set(err, "cannot package: unknown compression order");
    for (size_t i = 0; i < o->n_mdn_micalgs; i++)
        if (msg_digest_of(o->mdn_micalgs[i]) == AS2_DIGEST_NONE)
            return error_set(err, "cannot package: the MDN MIC algorithm "
                             "list holds an unsupported algorithm");
    return 0;
}

/* ---- the layers and the outermost entity's headers ---- */

struct layers {
    bool sign, enc;
    bool c1;                        /* compressed before signing (or the
                                     * only compression) */
    bool c2;                        /* compressed after signing */
    bool layered;                   /* any of them */
};

static struct layers layers_of(const struct as2_package_opts *o)
{
    struct layers l;
    l.sign = o->signer != NULL;
    l.enc = o->cipher != AS2_CIPHER_NONE;
    l.c1 = o->compress != AS2_COMPRESS_NONE &&
           (o->compress == AS2_COMPRESS_BEFORE_SIGNING || !l.sign);
    l.c2 = o->compress == AS2_COMPRESS_AFTER_SIGNING && l.sign;
    l.layered = l.sign || l.enc || l.c1 || l.c2;
    return l;
}

static enum as2_micalg mic_alg_of(const struct as2_package_opts *o)
{
    return o->n_mdn_micalgs ? o->mdn_micalgs[0]
           : o->signer ? micalg_of(o->signer->digest) : AS2_MICALG_SHA256;
}

/* The Content-Type of the multipart/signed with boundary. */
static int signed_ct(const struct as2_package_opts *o, const char *boundary,
                     char *ct, size_t cap, struct error *err)
{
    enum as2_micalg a = micalg_of(o->signer->digest);
    return mime_signed_content_type(ct, cap, as2_micalg_name(a,
                                        o->micalg_no_hyphen),
                                    boundary, err);
}

/* The headers of the outermost entity (they become HTTP headers): they
 * depend on the options and the boundary only, never on the body. */
static int outer_headers(const struct as2_package_opts *o,
                         const char *boundary, struct mime_headers *hs,
                         struct error *err)
{
    struct layers l = layers_of(o);
    if (l.enc) {
        bool gcm = o->cipher >= AS2_CIPHER_AES128_GCM;
        if (mime_headers_add(hs, "Content-Type", gcm
                ? "application/pkcs7-mime; smime-type=authEnveloped-data; "
                  "name=\"smime.p7m\""
                : "application/pkcs7-mime; smime-type=enveloped-data; "
                  "name=\"smime.p7m\"", err) != 0)
            return -1;
        return mime_headers_add(hs, "Content-Transfer-Encoding", "binary",
                                err);
    }
    if (l.c2 || (l.c1 && !l.sign))
        return compressed_headers(hs, err);
    if (l.sign) {
        char ct[512];
        if (signed_ct(o, boundary, ct, sizeof(ct), err) != 0)
            return -1;
        return mime_headers_add(hs, "Content-Type", ct, err);
    }
    return content_headers(o, hs, err);
}

/* ---- the pipeline ---- */

struct pipeline {
    struct content_src content;
    struct msg_b64enc b64;
    struct msg_prefix pre_content, pre_c1, pre_c2;
    struct tap tap;
    struct compress_stage c1, c2;
    struct sign_stage sign;
    struct msg_stage st_c1, st_sign, st_c2;
    struct counter count;
    struct mime_buf h_content, h_c1, h_c2, h_signed;
    char boundary[MIME_BOUNDARY_BUFSZ];
    BIO *bios[8];
    size_t nbios;
};

static BIO *keep(struct pipeline *p, BIO *b)
{
    if (b != NULL)
        p->bios[p->nbios++] = b;
    return b;
}

static int nomem(struct error *err)
{
    return error_set(err, "out of memory packaging the message");
}

/* Build and run the chain (the outermost entity's headers are
 * outer_headers'). */
static int run(struct tx *tx, struct pipeline *p, BIO *payload, BIO *out,
               struct as2_packaged *res, struct error *err)
{
    const struct as2_package_opts *o = tx->o;
    struct layers l = layers_of(o);
    bool sign = l.sign, enc = l.enc, c1 = l.c1, c2 = l.c2;
    bool layered = l.layered;
    int rc = 0;

    /* the content entity */
    p->content = (struct content_src){.tx = tx, .in = payload,
                                      .canon = o->canonicalize,
                                      .mic = layered ? NULL : tx->mic};
    mime_canon_init(&p->content.c);
    BIO *cur = keep(p, msg_bio_new(content_read, NULL, &p->content));
    if (cur != NULL && o->transfer == AS2_TRANSFER_BASE64)
        cur = keep(p, msg_b64enc_bio(&p->b64, cur));
    if (cur == NULL)
        rc = nomem(err);
    struct mime_headers ch;
    mime_headers_init(&ch);
    if (rc == 0)
        rc = content_headers(o, &ch, err);
    if (rc == 0 && layered) {
        if (headers_block(&ch, &p->h_content, err) != 0)
            rc = -1;
        else if ((cur = keep(p, msg_prefix_bio(&p->pre_content,
                                               p->h_content.data,
                                               p->h_content.len, cur))) == NULL)
            rc = nomem(err);
        if (rc == 0 && !sign) {
            p->tap = (struct tap){tx, cur, tx->mic, RANK_CONTENT};
            if ((cur = keep(p, msg_bio_new(tap_read, NULL, &p->tap))) == NULL)
                rc = nomem(err);
        }
    }
    mime_headers_free(&ch);

    /* compressed before signing (or the only compression) */
    if (rc == 0 && c1) {
        p->c1.in = cur;
        p->c1.level = o->compress_level > 0 ? o->compress_level : -1;
        rc = msg_stage_start(&p->st_c1, compress_fn, &p->c1, err);
        struct mime_headers hs;
        mime_headers_init(&hs);
        if (rc == 0)
            rc = compressed_headers(&hs, err);
        bool inner = sign || enc;
        if (rc == 0 && inner) {
            if (headers_block(&hs, &p->h_c1, err) != 0)
                rc = -1;
            else if ((cur = keep(p, msg_prefix_bio(&p->pre_c1, p->h_c1.data,
                                                   p->h_c1.len,
                                                   p->st_c1.r))) == NULL)
                rc = nomem(err);
        } else if (rc == 0) {
            cur = p->st_c1.r;
        }
        mime_headers_free(&hs);
    }

    /* multipart/signed */
    if (rc == 0 && sign) {
        char ct[512];
        snprintf(p->boundary, sizeof(p->boundary), "%s", res->boundary);
        rc = signed_ct(o, p->boundary, ct, sizeof(ct), err);
        bool inner = c2 || enc;
        if (rc == 0 && inner)
            rc = mime_header_write(&p->h_signed, "Content-Type", ct, err) ||
                 mime_buf_puts(&p->h_signed, "\r\n", err) ? -1 : 0;
        if (rc == 0) {
            p->sign = (struct sign_stage){tx, cur, NULL,
                                          p->h_signed.data ? p->h_signed.data
                                                           : "",
                                          p->boundary, tx->mic,
                                          tx->mic != NULL &&
                                          as2_mic_alg(tx->mic) ==
                                          o->signer->digest};
            rc = msg_stage_start(&p->st_sign, sign_fn, &p->sign, err);
            cur = p->st_sign.r;
        }
    }

    /* compressed after signing */
    if (rc == 0 && c2) {
        p->c2.in = cur;
        p->c2.level = o->compress_level > 0 ? o->compress_level : -1;
        rc = msg_stage_start(&p->st_c2, compress_fn, &p->c2, err);
        struct mime_headers hs;
        mime_headers_init(&hs);
        if (rc == 0)
            rc = compressed_headers(&hs, err);
        if (rc == 0 && enc) {
            if (headers_block(&hs, &p->h_c2, err) != 0)
                rc = -1;
            else if ((cur = keep(p, msg_prefix_bio(&p->pre_c2, p->h_c2.data,
                                                   p->h_c2.len,
                                                   p->st_c2.r))) == NULL)
                rc = nomem(err);
        } else if (rc == 0) {
            cur = p->st_c2.r;
        }
        mime_headers_free(&hs);
    }

    /* encrypted, or copied out */
    p->count.out = out;
    BIO *sink = rc == 0 ? keep(p, msg_bio_new(NULL, count_write, &p->count))
                        : NULL;
    if (rc == 0 && sink == NULL)
        rc = nomem(err);
    if (rc == 0 && enc) {
        struct as2_encrypt_opts eo = {o->cipher, o->kt, &o->recipient, 1};
        rc = as2_cms_encrypt(&eo, cur, sink, err);
    } else if (rc == 0) {
        unsigned char *buf = malloc(MSG_CHUNK);
        long r = 1;
        if (buf == NULL)
            rc = nomem(err);
        while (rc == 0 && (r = msg_read(cur, buf, MSG_CHUNK, err)) > 0)
            rc = msg_write(sink, buf, (size_t)r, "cannot write the message "
                           "body", err);
        if (r < 0)
            rc = -1;
        free(buf);
    }
    if (rc == 0 && BIO_flush(out) <= 0)
        rc = error_openssl(err, "cannot flush the message body");
    if (rc != 0)
        msg_fail(&tx->fail, RANK_OUTER, MDN_ERROR_UNEXPECTED_PROCESSING_ERROR,
                 err);

    /* join outermost first: a failed consumer unblocks its producer */
    struct { struct msg_stage *s; size_t rank; } st[] = {
        {&p->st_c2, RANK_COMPRESS2}, {&p->st_sign, RANK_SIGN},
        {&p->st_c1, RANK_COMPRESS1},
    };
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
        bool ran = st[i].s->pipe != NULL;
        if (msg_stage_finish(st[i].s) != 0 && ran) {
            if (!st[i].s->aborted)
                msg_fail_record(&tx->fail, st[i].rank,
                                MDN_ERROR_UNEXPECTED_PROCESSING_ERROR,
                                &st[i].s->err);
            rc = -1;
        }
    }
    res->payload_bytes = p->content.bytes;
    res->body_bytes = p->count.n;
    return rc;
}

int as2_package_begin(const struct as2_package_opts *o,
                      struct as2_packaged *res, struct error *err)
{
    struct error local;
    if (err == NULL)
        err = &local;
    memset(res, 0, sizeof(*res));
    mime_headers_init(&res->headers);
    if (o == NULL)
        return error_set(err, "cannot package: no options");
    if (check_opts(o, err) != 0)
        return -1;
    if (o->message_id != NULL) {
        if (as2_message_id_parse(o->message_id, res->message_id,
                                 sizeof(res->message_id), err) != 0)
            return -1;
    } else if (as2_message_id_new(res->message_id, sizeof(res->message_id),
                                  o->host, err) != 0) {
        return -1;
    }
    enum as2_micalg mic_alg = mic_alg_of(o);
    res->mic_digest = msg_digest_of(mic_alg);
    if (o->signer != NULL && mime_boundary_new(res->boundary, err) != 0)
        return -1;
    /* the content entity's headers are checked even when inner */
    struct mime_headers ch;
    mime_headers_init(&ch);
    int rc = content_headers(o, &ch, err);
    mime_headers_free(&ch);
    if (rc == 0)
        rc = outer_headers(o, res->boundary, &res->headers, err);
    if (rc == 0)
        rc = as2_headers(o, res, mic_alg, err);
    return rc;
}

int as2_package_body(const struct as2_package_opts *o, BIO *payload,
                     BIO *out, struct as2_packaged *res, struct error *err)
{
    struct error local;
    if (err == NULL)
        err = &local;
    res->mic[0] = '\0';
    if (o == NULL || payload == NULL || out == NULL)
        return error_set(err, "cannot package: no options, payload or "
                         "output");
    enum as2_micalg mic_alg = mic_alg_of(o);
    struct tx tx = {.o = o};
    msg_fail_init(&tx.fail);
    struct pipeline *p = calloc(1, sizeof(*p));
    tx.mic = as2_mic_new(res->mic_digest, err);
    int rc = p == NULL ? nomem(err) : tx.mic == NULL ? -1 : 0;
    if (rc == 0) {
        mime_buf_init(&p->h_content);
        mime_buf_init(&p->h_c1);
        mime_buf_init(&p->h_c2);
        mime_buf_init(&p->h_signed);
        msg_aborted_reset();
        rc = run(&tx, p, payload, out, res, err);
        if (rc != 0 && tx.fail.set)
            *err = tx.fail.err;
    }
    if (rc == 0) {
        char b64[AS2_MIC_MAX];
        rc = as2_mic_final_b64(tx.mic, b64, sizeof(b64), err);
        int w = snprintf(res->mic, sizeof(res->mic), "%s, %s", b64,
                         as2_micalg_name(mic_alg, o->micalg_no_hyphen));
        if (rc == 0 && (w < 0 || (size_t)w >= sizeof(res->mic)))
            rc = error_set(err, "the MIC does not fit its buffer");
    }
    if (p != NULL) {
        for (size_t i = 0; i < p->nbios; i++)
            BIO_free(p->bios[i]);
        mime_buf_free(&p->h_content);
        mime_buf_free(&p->h_c1);
        mime_buf_free(&p->h_c2);
        mime_buf_free(&p->h_signed);
        free(p);
    }
    as2_mic_free(tx.mic);
    msg_fail_destroy(&tx.fail);
    if (rc != 0)
        res->mic[0] = '\0';
    return rc;
}

int as2_package(const struct as2_package_opts *o, BIO *payload, BIO *out,
                struct as2_packaged *res, struct error *err)
{
    if (payload == NULL || out == NULL) {
        memset(res, 0, sizeof(*res));
        mime_headers_init(&res->headers);
        return error_set(err, "cannot package: no options, payload or "
                         "output");
    }
    if (as2_package_begin(o, res, err) != 0)
        return -1;
    return as2_package_body(o, payload, out, res, err);
}

void as2_packaged_free(struct as2_packaged *res)
{
    if (res != NULL)
        mime_headers_free(&res->headers);
}
