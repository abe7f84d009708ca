/*
 * message_recv.c - as2_unpack: a received AS2 request (HTTP headers and
 * body) back to its payload under the partner's policy, in one pass over
 * the body and constant memory, with the RFC 4130 MIC of what was
 * received and, on refusal, the MDN error that says why.
 *
 * Entities are handled from the outside in, each read as a pull stream:
 * its header block, then by Content-Type either a CMS layer
 * (application/pkcs7-mime: enveloped, authEnveloped, compressed or
 * signed data), whose cms.h function runs in a stage thread writing the
 * inner entity into a pipe that the next level reads; or a
 * multipart/signed, whose first part is digested (for the signature and
 * the MIC) while it is handled as the inner entity, the signature part
 * being checked once the whole body went through; or the payload entity,
 * whose body is decoded into the caller's payload BIO.
 *
 * It owns the threads, pipes and buffers of one call. It must never
 * report success before every signature, tag and padding check passed,
 * never use a key on a message the policy refuses when the refusal can
 * be known first, never write more payload than the policy's limit,
 * never trust a filename as a path, and never put payload or key bytes
 * in an error.
 */
#include "as2/message.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "as2/message_internal.h"

#define SIG_PART_MAX (AS2_CMS_SIG_MAX / 3 * 4 + 64 * 1024)
#define DEFAULT_DIGESTS (AS2_DIGEST_BIT(AS2_DIGEST_SHA256) | \
                         AS2_DIGEST_BIT(AS2_DIGEST_SHA384) | \
                         AS2_DIGEST_BIT(AS2_DIGEST_SHA512))
#define DEFAULT_CIPHERS (AS2_CIPHER_BIT(AS2_CIPHER_AES128_CBC) | \
                         AS2_CIPHER_BIT(AS2_CIPHER_AES192_CBC) | \
                         AS2_CIPHER_BIT(AS2_CIPHER_AES256_CBC) | \
                         AS2_CIPHER_BIT(AS2_CIPHER_AES128_GCM) | \
                         AS2_CIPHER_BIT(AS2_CIPHER_AES192_GCM) | \
                         AS2_CIPHER_BIT(AS2_CIPHER_AES256_GCM))

enum { E_UNEXPECTED = MDN_ERROR_UNEXPECTED_PROCESSING_ERROR,
       E_SECURITY = MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY,
       E_DECRYPT = MDN_ERROR_DECRYPTION_FAILED,
       E_DECOMPRESS = MDN_ERROR_DECOMPRESSION_FAILED,
       E_AUTH = MDN_ERROR_AUTHENTICATION_FAILED,
       E_INTEGRITY = MDN_ERROR_INTEGRITY_CHECK_FAILED };

struct rx {
    const struct as2_policy *pol;
    struct as2_unpacked *info;
    BIO *payload;
    struct msg_fail fail;
    struct as2_mic *mic;
    bool mic_taken;                 /* an entity was chosen as MIC scope */
    bool mic_alg_asked;             /* from the sender's signed-receipt-
                                     * micalg list, else the signature's */
    unsigned digests, ciphers;
    uint64_t max;
};

static const char *partner_of(const struct rx *rx)
{
    return rx->pol->partner ? rx->pol->partner : "(unnamed)";
}

/* Record the failure at depth (e is already filled); -1. */
static int rx_fail(struct rx *rx, size_t depth, int code, struct error *e)
{
    return msg_fail(&rx->fail, depth, (enum mdn_error)code, e);
}

static int add_layer(struct rx *rx, enum as2_layer l, size_t depth,
                     struct error *err)
{
    struct as2_unpacked *in = rx->info;
    for (size_t i = 0; i < in->nlayers; i++)
        if (in->layers[i] == l) {
            error_set(err, "the message is %s twice",
                      l == AS2_LAYER_ENCRYPTED ? "encrypted"
                      : l == AS2_LAYER_SIGNED ? "signed" : "compressed");
            return rx_fail(rx, depth, E_UNEXPECTED, err);
        }
    if (in->nlayers >= sizeof(in->layers) / sizeof(in->layers[0]))
        return rx_fail(rx, depth, E_UNEXPECTED,
                       (error_set(err, "the message has too many layers"),
                        err));
    in->layers[in->nlayers++] = l;
    if (l == AS2_LAYER_ENCRYPTED)
        in->is_encrypted = true;
    else if (l == AS2_LAYER_SIGNED)
        in->is_signed = true;
    else
        in->is_compressed = true;
    return 0;
}

static int rx_entity(struct rx *rx, BIO *in, const struct mime_headers *given,
                     size_t depth, struct error *err);

/* ---- pull adaptors ---- */

/* Digests what passes into a MIC (and counts it). */
struct mic_tap {
    struct rx *rx;
    BIO *in;
    size_t depth;
};

static int mic_tap_read(void *ctx, char *buf, int len)
{
    struct mic_tap *t = ctx;
    struct error e = {0};
    int r = BIO_read(t->in, buf, len);
    if (r > 0 && as2_mic_update(t->rx->mic, buf, (size_t)r, &e) != 0)
        return rx_fail(t->rx, t->depth, E_UNEXPECTED, &e);
    return r < 0 ? -1 : r;
}

/* Read everything left in in and drop it (what follows a CMS structure
 * is outside anything authenticated). */
static int drain(BIO *in, struct error *err)
{
    char buf[4096];
    long r;
    while ((r = msg_read(in, buf, sizeof(buf), err)) > 0)
        ;
    return r < 0 ? -1 : 0;
}

/* ---- CMS layers (stage threads) ---- */

enum cms_kind { K_DECRYPT, K_DECOMPRESS, K_VERIFY };

struct cms_stage {
    struct rx *rx;
    enum cms_kind kind;
    BIO *in;
    struct as2_decrypted dec;
    struct as2_verified ver;
};

static int cms_stage_fn(void *arg, BIO *out, struct error *err)
{
    struct cms_stage *c = arg;
    const struct as2_policy *pol = c->rx->pol;
    int rc;
    if (c->kind == K_DECRYPT) {
        struct as2_decrypt_opts o = {pol->keys, pol->nkeys, c->rx->ciphers};
        rc = as2_cms_decrypt(&o, c->in, out, &c->dec, err);
    } else if (c->kind == K_DECOMPRESS) {
        rc = as2_cms_decompress(c->in, out, c->rx->max, NULL, err);
    } else {
        struct as2_trust t = {pol->certs, pol->ncerts, pol->partner,
                              c->rx->digests};
        rc = as2_cms_verify_attached(&t, c->in, out, &c->ver, err);
    }
    if (rc == 0)
        rc = drain(c->in, err);
    return rc;
}

/* The MDN error a failed verification maps to. */
static int verify_code(const struct error *e)
{
    if (strstr(e->msg, "signature refused:") != NULL)
        return E_SECURITY;
    if (strstr(e->msg, "does not match the signature") != NULL)
        return E_INTEGRITY;
    return E_AUTH;
}

static int stage_code(enum cms_kind k, const struct error *e)
{
    if (k == K_DECRYPT)
        return strstr(e->msg, "decryption refused: the message is "
                      "encrypted with") != NULL ||
               strstr(e->msg, "unsupported content encryption") != NULL
               ? E_SECURITY : E_DECRYPT;
    if (k == K_DECOMPRESS)
        return E_DECOMPRESS;
    return verify_code(e);
}

/* Peek at the start of a decoded CMS body to learn its type; the bytes
 * are kept in peek for the stream to give back. */
static int peek_cms(BIO *in, unsigned char *peek, size_t cap, size_t *n,
                    struct error *err)
{
    *n = 0;
    while (*n < cap) {
        long r = msg_read(in, peek + *n, cap - *n, err);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        *n += (size_t)r;
    }
    return 0;
}

/* Only base64 characters and white space. */
static bool looks_base64(const unsigned char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (isalnum(p[i]) || p[i] == '+' || p[i] == '/' || p[i] == '=')
            k++;
        else if (p[i] != '\r' && p[i] != '\n' && p[i] != ' ' &&
                 p[i] != '\t')
            return false;
    }
    return k >= 4;
}

static int code_of_smime_type(const char *st)
{
    if (st == NULL)
        return E_UNEXPECTED;
    if (strcasecmp(st, "enveloped-data") == 0 ||
        strcasecmp(st, "authEnveloped-data") == 0)
        return E_DECRYPT;
    if (strcasecmp(st, "compressed-data") == 0)
        return E_DECOMPRESS;
    if (strcasecmp(st, "signed-data") == 0)
        return E_AUTH;
    return E_UNEXPECTED;
}

struct pkcs7_ctx {
    struct msg_decoder dec, dec64;
    struct msg_prefix pre, pre64;
    unsigned char raw[64];
    struct mic_tap tap;
    struct cms_stage cs;
    struct msg_stage st;
    unsigned char peek[64];
};

static int rx_pkcs7(struct rx *rx, BIO *body, enum mime_cte cte,
                    const struct mime_content_type *ct, size_t depth,
                    struct error *err)
{
    const struct as2_policy *pol = rx->pol;
    struct pkcs7_ctx *c = calloc(1, sizeof(*c));
    BIO *dbio = NULL, *src = NULL, *child = NULL, *tap = NULL;
    BIO *raw64 = NULL, *dbio64 = NULL, *dbio_used;
    size_t np = 0;
    int rc = 0;
    if (c == NULL || (dbio = msg_decoder_bio(&c->dec, body, cte)) == NULL) {
        free(c);
        error_set(err, "out of memory reading the message");
        return rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    dbio_used = dbio;
    if (peek_cms(dbio, c->peek, sizeof(c->peek), &np, err) != 0) {
        if (c->dec.failed)
            *err = c->dec.err;
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
        goto out;
    }
    enum as2_cms_type t = as2_cms_type_of(c->peek, np);
    if (t == AS2_CMS_UNKNOWN && cte != MIME_CTE_BASE64 &&
        cte != MIME_CTE_QP && looks_base64(c->peek, np)) {
        /* base64 without a Content-Transfer-Encoding saying so (some
         * senders): decode it after all */
        memcpy(c->raw, c->peek, np);
        raw64 = msg_prefix_bio(&c->pre64, c->raw, np, body);
        dbio64 = raw64 != NULL ? msg_decoder_bio(&c->dec64, raw64,
                                                 MIME_CTE_BASE64) : NULL;
        if (dbio64 == NULL) {
            error_set(err, "out of memory reading the message");
            rc = rx_fail(rx, depth, E_UNEXPECTED, err);
            goto out;
        }
        if (peek_cms(dbio64, c->peek, sizeof(c->peek), &np, err) == 0) {
            t = as2_cms_type_of(c->peek, np);
            dbio_used = dbio64;
        } else {
            t = AS2_CMS_UNKNOWN;
        }
    }
    const char *stype = mime_param_get(&ct->params, "smime-type");
    enum cms_kind kind;
    enum as2_layer layer;
    switch (t) {
    case AS2_CMS_ENVELOPED:
    case AS2_CMS_AUTH_ENVELOPED:
        kind = K_DECRYPT;
        layer = AS2_LAYER_ENCRYPTED;
        break;
    case AS2_CMS_COMPRESSED:
        kind = K_DECOMPRESS;
        layer = AS2_LAYER_COMPRESSED;
        break;
    case AS2_CMS_SIGNED:
        kind = K_VERIFY;
        layer = AS2_LAYER_SIGNED;
        break;
    default:
        error_set(err, "the application/pkcs7-mime body is not a CMS "
                  "enveloped, compressed or signed message");
        rc = rx_fail(rx, depth, code_of_smime_type(stype), err);
        goto out;
    }
    if (depth == 0 && pol->require_encrypted && kind != K_DECRYPT) {
        error_set(err, "the message is not encrypted, and partner %s must "
                  "encrypt", partner_of(rx));
        rc = rx_fail(rx, depth, E_SECURITY, err);
        goto out;
    }
    if (add_layer(rx, layer, depth, err) != 0) {
        rc = -1;
        goto out;
    }
    if (kind == K_DECRYPT && (pol->keys == NULL || pol->nkeys == 0)) {
        error_set(err, "decryption failed: the message is encrypted but no "
                  "decryption key is configured for partner %s",
                  partner_of(rx));
        rc = rx_fail(rx, depth, E_DECRYPT, err);
        goto out;
    }
    if (kind == K_VERIFY && (pol->certs == NULL || pol->ncerts == 0)) {
        error_set(err, "the message is signed but no certificate is "
                  "configured for partner %s", partner_of(rx));
        rc = rx_fail(rx, depth, E_AUTH, err);
        goto out;
    }
    src = msg_prefix_bio(&c->pre, c->peek, np, dbio_used);
    c->cs = (struct cms_stage){.rx = rx, .kind = kind, .in = src};
    if (src == NULL) {
        error_set(err, "out of memory reading the message");
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
        goto out;
    }
    if (msg_stage_start(&c->st, cms_stage_fn, &c->cs, err) != 0) {
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
        goto out;
    }
    child = c->st.r;
    if (kind == K_VERIFY && !rx->mic_taken) {
        /* the signed entity is the MIC's scope, exactly as received */
        rx->mic_taken = true;
        c->tap = (struct mic_tap){rx, child, depth + 1};
        tap = msg_bio_new(mic_tap_read, NULL, &c->tap);
        if (tap == NULL) {
            error_set(err, "out of memory reading the message");
            rc = rx_fail(rx, depth, E_UNEXPECTED, err);
        }
        child = tap;
    }
    if (rc == 0)
        rc = rx_entity(rx, child, NULL, depth + 1, err);
    /* When the inner entity failed, let the layer finish anyway: its own
     * verdict (a bad tag, padding or zlib stream), nearer the outside,
     * explains an inner failure better than the inner one does. */
    if (rc != 0 && c->st.r != NULL) {
        struct error ignored;
        drain(c->st.r, &ignored);
    }
    if (msg_stage_finish(&c->st) != 0) {
        if (!c->st.aborted)
            msg_fail_record(&rx->fail, depth,
                            (enum mdn_error)stage_code(kind, &c->st.err),
                            &c->st.err);
        rc = -1;
    }
    if (rc == 0 && kind == K_DECRYPT) {
        rx->info->dec = c->cs.dec;
        rx->info->oaep = c->cs.dec.kt != AS2_KT_RSA_PKCS1;
    }
    if (rc == 0 && kind == K_VERIFY)
        rx->info->sig = c->cs.ver;
out:
    BIO_free(tap);
    BIO_free(src);
    BIO_free(dbio64);
    BIO_free(raw64);
    BIO_free(dbio);
    free(c);
    return rc;
}

/* ---- multipart/signed ---- */

struct split0 {
    struct rx *rx;
    size_t depth;
    BIO *in;
    struct mime_splitter sp;
    BIO *digest;                    /* digests part 0 for the signature */
    struct as2_mic *mic;            /* part 0 MIC, or NULL */
    bool mic_shared;                /* mic is the digest chain's, adopted
                                     * at the end (one SHA pass, not two) */
    long part;                      /* the part being read, -1 before */
    size_t nparts;
    bool p0_done, ended, failed;
    struct mime_buf sig;            /* part 1, raw */
    struct error err;
    unsigned char q[MSG_CHUNK + 2 * MIME_MAX_BOUNDARY + 16];
    size_t qoff, qlen;
    char raw[MSG_CHUNK];
};

static int sp_begin(void *ctx, size_t index, uint64_t offset,
                    struct error *err)
{
    struct split0 *s = ctx;
    (void)offset;
    if (index >= 2)
        return error_set(err, "a multipart/signed has more than two parts");
    s->part = (long)index;
    s->nparts = index + 1;
    return 0;
}

static int sp_data(void *ctx, const char *data, size_t len, struct error *err)
{
    struct split0 *s = ctx;
    if (s->part == 1) {
        if (s->sig.len + len > SIG_PART_MAX)
            return error_set(err, "the signature part of the multipart/signed "
                             "is larger than %d bytes", SIG_PART_MAX);
        return mime_buf_append(&s->sig, data, len, err);
    }
    if (s->qlen + len > sizeof(s->q))
        return error_set(err, "multipart/signed: internal buffer overflow");
    memcpy(s->q + s->qlen, data, len);
    s->qlen += len;
    if (msg_write(s->digest, data, len, "cannot digest the signed entity",
                  err) != 0)
        return -1;
    if (s->mic != NULL && !s->mic_shared &&
        as2_mic_update(s->mic, data, len, err) != 0)
        return -1;
    return 0;
}

static int sp_end(void *ctx, struct error *err)
{
    struct split0 *s = ctx;
    (void)err;
    if (s->part == 0)
        s->p0_done = true;
    return 0;
}

static const struct mime_splitter_cb sp_cb = {sp_begin, sp_data, sp_end};

/* Feed the splitter one more chunk of input (or its end). */
static int sp_step(struct split0 *s)
{
    long r = msg_read(s->in, s->raw, sizeof(s->raw), &s->err);
    if (r < 0)
        return -1;
    if (r == 0) {
        s->ended = true;
        return mime_splitter_finish(&s->sp, &s->err);
    }
    return mime_splitter_feed(&s->sp, s->raw, (size_t)r, &s->err);
}

/* Part 0 as a pull stream. */
static int sp_read(void *ctx, char *buf, int len)
{
    struct split0 *s = ctx;
    if (s->failed)
        return -1;
    while (s->qoff == s->qlen) {
        s->qoff = s->qlen = 0;
        if (s->p0_done)
            return 0;
        if (s->ended || sp_step(s) != 0) {
            if (s->ended && s->err.msg[0] == '\0')
                error_set(&s->err, "the multipart/signed ends inside its "
                          "first part");
            s->failed = true;
            return rx_fail(s->rx, s->depth, E_UNEXPECTED, &s->err);
        }
    }
    size_t k = s->qlen - s->qoff;
    if (k > (size_t)len)
        k = (size_t)len;
    memcpy(buf, s->q + s->qoff, k);
    s->qoff += k;
    return (int)k;
}

static int rx_signed(struct rx *rx, BIO *body, enum mime_cte cte,
                     const struct mime_content_type *ct, size_t depth,
                     struct error *err)
{
    const struct as2_policy *pol = rx->pol;
    const char *boundary = mime_param_get(&ct->params, "boundary");
    const char *protocol = mime_param_get(&ct->params, "protocol");
    const char *micalg = mime_param_get(&ct->params, "micalg");
    if (add_layer(rx, AS2_LAYER_SIGNED, depth, err) != 0)
        return -1;
    if (cte == MIME_CTE_BASE64 || cte == MIME_CTE_QP) {
        error_set(err, "a multipart/signed cannot have a base64 or "
                  "quoted-printable transfer encoding");
        return rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    if (boundary == NULL || mime_boundary_check(boundary, err) != 0) {
        if (boundary == NULL)
            error_set(err, "the multipart/signed has no boundary");
        return rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    if (protocol != NULL &&
        strcasecmp(protocol, "application/pkcs7-signature") != 0 &&
        strcasecmp(protocol, "application/x-pkcs7-signature") != 0) {
        error_set(err, "the multipart/signed uses an unsupported signature "
                  "protocol");
        return rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    if (pol->certs == NULL || pol->ncerts == 0) {
        error_set(err, "the message is signed but no certificate is "
                  "configured for partner %s", partner_of(rx));
        return rx_fail(rx, depth, E_AUTH, err);
    }
    /* digest with the announced algorithm only, when it is one we know */
    unsigned digests = rx->digests;
    enum as2_micalg a = micalg != NULL
        ? as2_micalg_from_name(micalg, strlen(micalg)) : AS2_MICALG_UNKNOWN;
    enum as2_digest d = a == AS2_MICALG_SHA1 ? AS2_DIGEST_SHA1
                      : a == AS2_MICALG_SHA256 ? AS2_DIGEST_SHA256
                      : a == AS2_MICALG_SHA384 ? AS2_DIGEST_SHA384
                      : a == AS2_MICALG_SHA512 ? AS2_DIGEST_SHA512
                      : AS2_DIGEST_NONE;
    if (a == AS2_MICALG_MD5 ||
        (d != AS2_DIGEST_NONE && (digests & AS2_DIGEST_BIT(d)) == 0)) {
        error_set(err, "signature refused: the message is signed with %s, "
                  "which partner %s is not allowed to use",
                  a == AS2_MICALG_MD5 ? "md5" : as2_digest_name(d),
                  partner_of(rx));
        return rx_fail(rx, depth, E_SECURITY, err);
    }
    if (d != AS2_DIGEST_NONE)
        digests = AS2_DIGEST_BIT(d);

    struct split0 *s = calloc(1, sizeof(*s));
    BIO *p0 = NULL;
    unsigned char *der = NULL;
    size_t derlen = 0;
    int rc = 0;
    if (s == NULL) {
        error_set(err, "out of memory reading the message");
        return rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    s->rx = rx;
    s->depth = depth;
    s->in = body;
    s->part = -1;
    mime_buf_init(&s->sig);
    if (!rx->mic_taken) {
        /* no MIC algorithm asked for: the signature's (RFC 4130 7.3.1;
         * what as2_package computes then) */
        struct as2_mic *m;
        if (!rx->mic_alg_asked && d != AS2_DIGEST_NONE &&
            a != rx->info->mic_alg && (m = as2_mic_new(d, NULL)) != NULL) {
            as2_mic_free(rx->mic);
            rx->mic = m;
            rx->info->mic_alg = a;
            snprintf(rx->info->mic_alg_name, sizeof(rx->info->mic_alg_name),
                     "%s", micalg);
        }
        rx->mic_taken = true;
        s->mic = rx->mic;
        s->mic_shared = rx->mic != NULL && d != AS2_DIGEST_NONE &&
                        as2_mic_alg(rx->mic) == d;
    }
    if ((s->digest = as2_cms_digest_new(digests, err)) == NULL ||
        mime_splitter_init(&s->sp, boundary, &sp_cb, s, err) != 0) {
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    } else if ((p0 = msg_bio_new(sp_read, NULL, s)) == NULL) {
        error_set(err, "out of memory reading the message");
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    if (rc == 0)
        rc = rx_entity(rx, p0, NULL, depth + 1, err);
    /* the rest: the end of part 0, the signature part, the epilogue */
    while (rc == 0 && !s->ended) {
        s->qoff = s->qlen = 0;
        if (sp_step(s) != 0)
            rc = rx_fail(rx, depth, E_UNEXPECTED, &s->err);
    }
    if (rc == 0 && s->nparts != 2) {
        error_set(err, "the multipart/signed has no signature part");
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    if (rc == 0 && s->mic_shared && as2_mic_adopt(s->mic, s->digest, err))
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    if (rc == 0 && msg_sig_part_der(s->sig.data, s->sig.len, &der, &derlen,
                                    err) != 0)
        rc = rx_fail(rx, depth, E_AUTH, err);
    if (rc == 0) {
        struct as2_trust t = {pol->certs, pol->ncerts, pol->partner,
                              rx->digests};
        if (as2_cms_verify_digested(&t, der, derlen, s->digest,
                                    &rx->info->sig, err) != 0)
            rc = rx_fail(rx, depth, verify_code(err), err);
    }
    free(der);
    BIO_free(p0);
    BIO_free_all(s->digest);
    mime_buf_free(&s->sig);
    free(s);
    return rc;
}

/* ---- the payload entity ---- */

/* Copy the RFC 2231 value "charset'lang'%XX..." decoded into out. */
static void rfc2231_decode(const char *v, char *out, size_t cap)
{
    const char *p = strchr(v, '\'');
    p = p != NULL ? strchr(p + 1, '\'') : NULL;
    p = p != NULL ? p + 1 : v;
    size_t o = 0;
    while (*p && o + 1 < cap) {
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) &&
            isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static void entity_filename(const struct mime_headers *hs,
                            const struct mime_content_type *ct,
                            char out[AS2_FILENAME_MAX + 1])
{
    const char *cd = NULL, *name = NULL;
    char dec[4 * AS2_FILENAME_MAX];
    struct mime_params p;
    memset(&p, 0, sizeof(p));
    out[0] = '\0';
    if (mime_header_get_unique(hs, "Content-Disposition", &cd, NULL) == 0 &&
        cd != NULL && mime_params_parse(cd, &p, NULL) == 0) {
        name = mime_param_get(&p, "filename");
        if (name == NULL && (name = mime_param_get(&p, "filename*")) != NULL) {
            rfc2231_decode(name, dec, sizeof(dec));
            name = dec;
        }
    }
    if (name == NULL)
        name = mime_param_get(&ct->params, "name");
    if (name != NULL)
        as2_filename_sanitize(name, out);
    mime_params_free(&p);
}

struct leaf_ctx {
    struct mic_tap tap;
    struct msg_decoder dec;
    unsigned char buf[MSG_CHUNK];
};

static int rx_leaf(struct rx *rx, BIO *body, const struct mime_headers *hs,
                   const struct mime_content_type *ct, const char *ctv,
                   enum mime_cte cte, const unsigned char *rawhdr,
                   size_t hdrlen, size_t depth, struct error *err)
{
    const struct as2_policy *pol = rx->pol;
    struct as2_unpacked *info = rx->info;
    if (pol->require_encrypted && !info->is_encrypted) {
        error_set(err, "the message is not encrypted, and partner %s must "
                  "encrypt", partner_of(rx));
        return rx_fail(rx, depth, E_SECURITY, err);
    }
    if (pol->require_signed && !info->is_signed) {
        error_set(err, "the message is not signed, and partner %s must sign",
                  partner_of(rx));
        return rx_fail(rx, depth, E_SECURITY, err);
    }
    size_t n = strlen(ctv);
    if (n >= sizeof(info->content_type))
        n = sizeof(info->content_type) - 1;
    memcpy(info->content_type, ctv, n);
    info->content_type[n] = '\0';
    entity_filename(hs, ct, info->filename);

    struct leaf_ctx *c = calloc(1, sizeof(*c));
    BIO *tap = NULL, *dec = NULL;
    int rc = 0;
    bool mic_raw = false, mic_decoded = false;
    if (c == NULL) {
        error_set(err, "out of memory reading the message");
        return rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    if (!rx->mic_taken) {
        rx->mic_taken = true;
        if (depth > 0) {
            mic_raw = true;
            if (as2_mic_update_canon(rx->mic, rawhdr, hdrlen, err) != 0)
                rc = rx_fail(rx, depth, E_UNEXPECTED, err);
        } else {
            mic_decoded = true;
        }
    }
    c->tap = (struct mic_tap){rx, body, depth};
    if (rc == 0 && mic_raw &&
        (tap = msg_bio_new(mic_tap_read, NULL, &c->tap)) == NULL)
        rc = -1;
    if (rc == 0 && (dec = msg_decoder_bio(&c->dec, tap ? tap : body,
                                          cte)) == NULL)
        rc = -1;
    if (rc != 0 && (dec == NULL || (mic_raw && tap == NULL))) {
        error_set(err, "out of memory reading the message");
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    long r = 1;
    while (rc == 0 && (r = msg_read(dec, c->buf, sizeof(c->buf), err)) > 0) {
        if ((uint64_t)r > rx->max - info->payload_bytes) {
            error_set(err, "the payload is larger than the limit of %llu "
                      "bytes", (unsigned long long)rx->max);
            rc = rx_fail(rx, depth, E_UNEXPECTED, err);
            break;
        }
        info->payload_bytes += (uint64_t)r;
        if (mic_decoded &&
            as2_mic_update(rx->mic, c->buf, (size_t)r, err) != 0) {
            rc = rx_fail(rx, depth, E_UNEXPECTED, err);
            break;
        }
        if (msg_write(rx->payload, c->buf, (size_t)r, "cannot write the "
                      "payload", err) != 0)
            rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    if (rc == 0 && r < 0) {
        if (c->dec.failed && c->dec.err.msg[0] != '\0')
            *err = c->dec.err;
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    }
    BIO_free(dec);
    BIO_free(tap);
    free(c);
    return rc;
}

/* ---- one entity ---- */

static int rx_entity(struct rx *rx, BIO *in, const struct mime_headers *given,
                     size_t depth, struct error *err)
{
    struct mime_headers own;
    struct mime_content_type ct;
    struct msg_prefix pre;
    unsigned char *raw = NULL;
    size_t raw_len = 0, hdr_len = 0;
    const struct mime_headers *hs = given;
    const char *ctv = NULL, *ctev = NULL;
    BIO *body = in, *pre_bio = NULL;
    enum mime_cte cte = MIME_CTE_7BIT;
    int rc = 0;
    mime_headers_init(&own);
    memset(&ct, 0, sizeof(ct));
    if (given == NULL) {
        if (msg_read_headers(in, &own, &raw, &raw_len, &hdr_len, err) != 0)
            rc = rx_fail(rx, depth, E_UNEXPECTED, err);
        hs = &own;
        if (rc == 0 && (pre_bio = msg_prefix_bio(&pre, raw + hdr_len,
                                                 raw_len - hdr_len,
                                                 in)) == NULL)
            rc = rx_fail(rx, depth, E_UNEXPECTED,
                         (error_set(err, "out of memory reading the "
                                    "message"), err));
        body = pre_bio;
    }
    if (rc == 0 &&
        (mime_header_get_unique(hs, "Content-Type", &ctv, err) != 0 ||
         mime_header_get_unique(hs, "Content-Transfer-Encoding", &ctev,
                                err) != 0 ||
         mime_cte_parse(ctev, &cte, err) != 0))
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    if (rc == 0 && ctv == NULL) {
        if (depth == 0)
            rc = rx_fail(rx, depth, E_UNEXPECTED,
                         (error_set(err, "the message has no Content-Type"),
                          err));
        else
            ctv = "text/plain";
    }
    if (rc == 0 && mime_content_type_parse(ctv, &ct, err) != 0)
        rc = rx_fail(rx, depth, E_UNEXPECTED, err);
    bool pkcs7 = mime_content_type_is(&ct, "application", "pkcs7-mime") ||
                 mime_content_type_is(&ct, "application", "x-pkcs7-mime");
    bool msigned = mime_content_type_is(&ct, "multipart", "signed");
    if (rc == 0 && depth == 0 && rx->pol->require_encrypted && !pkcs7) {
        error_set(err, "the message is not encrypted, and partner %s must "
                  "encrypt", partner_of(rx));
        rc = rx_fail(rx, depth, E_SECURITY, err);
    }
    if (rc == 0) {
        if (pkcs7)
            rc = rx_pkcs7(rx, body, cte, &ct, depth, err);
        else if (msigned)
            rc = rx_signed(rx, body, cte, &ct, depth, err);
        else
            rc = rx_leaf(rx, body, hs, &ct, ctv, cte, raw, hdr_len, depth,
                         err);
    }
    mime_content_type_free(&ct);
    mime_headers_free(&own);
    BIO_free(pre_bio);
    free(raw);
    return rc;
}

/* ---- the request ---- */

/* The sender's spelling of alg in its signed-receipt-micalg list. */
static void micalg_spelling(const struct mime_headers *h, enum as2_micalg alg,
                            char *out, size_t cap)
{
    const char *v = mime_header_get(h, "Disposition-Notification-Options");
    const char *def = as2_micalg_name(alg, false);
    snprintf(out, cap, "%s", def ? def : "sha-256");
    const char *p = v;
    while (p != NULL && (p = strcasestr(p, "signed-receipt-micalg")) != NULL) {
        p += strlen("signed-receipt-micalg");
        const char *eq = strchr(p, '=');
        if (eq == NULL)
            return;
        const char *end = strchr(eq, ';');
        if (end == NULL)
            end = eq + strlen(eq);
        const char *q = eq + 1;
        while (q < end) {
            while (q < end && (*q == ',' || isspace((unsigned char)*q)))
                q++;
            const char *t = q;
            while (q < end && *q != ',' && !isspace((unsigned char)*q))
                q++;
            size_t n = (size_t)(q - t);
            if (n > 0 && n < cap && as2_micalg_from_name(t, n) == alg) {
                memcpy(out, t, n);
                out[n] = '\0';
                return;
            }
        }
        p = end;
    }
}

/* The request's AS2 headers, the expected ids and the receipt options. */
static int rx_request(struct rx *rx, const struct mime_headers *h,
                      struct error *err)
{
    const struct as2_policy *pol = rx->pol;
    struct as2_unpacked *info = rx->info;
    if (as2_request_read(h, &info->req, err) != 0)
        return rx_fail(rx, 0, E_UNEXPECTED, err);
    /* a refusal below is signed too when a signed receipt was asked for */
    if (info->req.has_dno)
        info->mdn_signed = as2_dno_wants_signed(&info->req.dno);
    if (pol->our_id != NULL && strcmp(pol->our_id, info->req.to) != 0) {
        error_set(err, "the message is addressed to another AS2 id than "
                  "ours (%s)", pol->our_id);
        return rx_fail(rx, 0, E_UNEXPECTED, err);
    }
    if (pol->partner_id != NULL &&
        strcmp(pol->partner_id, info->req.from) != 0) {
        error_set(err, "the message claims to come from another AS2 id than "
                  "partner %s's (%s)", partner_of(rx), pol->partner_id);
        return rx_fail(rx, 0, E_AUTH, err);
    }
    enum as2_micalg alg = AS2_MICALG_SHA256;
    bool allow_sha1 = (rx->digests & AS2_DIGEST_BIT(AS2_DIGEST_SHA1)) != 0;
    if (info->req.has_dno) {
        if (as2_dno_pick_micalg(&info->req.dno, allow_sha1, &alg, err) != 0) {
            info->unsupported_micalg = true;
            return rx_fail(rx, 0, MDN_ERROR_NONE, err);
        }
        enum as2_digest d = msg_digest_of(alg);
        if (d == AS2_DIGEST_NONE || (rx->digests & AS2_DIGEST_BIT(d)) == 0) {
            /* only optional and nothing we allow: our default */
            alg = AS2_MICALG_SHA256;
        }
        for (size_t i = 0; i < info->req.dno.n_micalgs; i++)
            rx->mic_alg_asked |= info->req.dno.micalgs[i] == alg;
    }
    info->mic_alg = alg;
    micalg_spelling(h, alg, info->mic_alg_name, sizeof(info->mic_alg_name));
    return 0;
}

int as2_unpack(const struct as2_policy *pol, const struct mime_headers *h,
               BIO *body, BIO *payload, struct as2_unpacked *info,
               struct error *err)
{
    struct error local;
    if (err == NULL)
        err = &local;
    error_clear(err);
    if (info == NULL)
        return error_set(err, "cannot unpack: no result structure");
    memset(info, 0, sizeof(*info));
    info->mdn_error = MDN_ERROR_UNEXPECTED_PROCESSING_ERROR;
    if (pol == NULL || h == NULL || body == NULL || payload == NULL)
        return error_set(err, "cannot unpack: no policy, headers, body or "
                         "payload output");
    struct rx rx = {.pol = pol, .info = info, .payload = payload};
    rx.digests = pol->digests ? pol->digests : DEFAULT_DIGESTS;
    rx.ciphers = pol->ciphers ? pol->ciphers : DEFAULT_CIPHERS;
    rx.max = pol->max_size ? pol->max_size : AS2_UNPACK_MAX_DEFAULT;
    msg_fail_init(&rx.fail);
    msg_aborted_reset();
    int rc = rx_request(&rx, h, err);
    if (rc == 0 &&
        (rx.mic = as2_mic_new(msg_digest_of(info->mic_alg), err)) == NULL)
        rc = rx_fail(&rx, 0, E_UNEXPECTED, err);
    if (rc == 0)
        rc = rx_entity(&rx, body, h, 0, err);
    if (rc == 0) {
        char b64[AS2_MIC_MAX];
        if (as2_mic_final_b64(rx.mic, b64, sizeof(b64), err) != 0)
            rc = rx_fail(&rx, 0, E_UNEXPECTED, err);
        else
            snprintf(info->mic, sizeof(info->mic), "%s, %s", b64,
                     info->mic_alg_name);
    }
    if (rc != 0) {
        if (rx.fail.set) {
            info->mdn_error = rx.fail.code;
            *err = rx.fail.err;
        } else {
            info->mdn_error = MDN_ERROR_UNEXPECTED_PROCESSING_ERROR;
        }
        info->mic[0] = '\0';
    } else {
        info->mdn_error = MDN_ERROR_NONE;
    }
    as2_mic_free(rx.mic);
    msg_fail_destroy(&rx.fail);
    return rc;
}

/* ---- filenames ---- */

void as2_filename_sanitize(const char *in, char out[AS2_FILENAME_MAX + 1])
{
    const char *base = in != NULL ? in : "";
    for (const char *p = base; *p; p++)
        if (*p == '/' || *p == '\\' || *p == ':')
            base = p + 1;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)base;
         *p && o < AS2_FILENAME_MAX; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '"')
            continue;
        out[o++] = (char)*p;
    }
    /* never end inside a UTF-8 sequence after cutting */
    if (o == AS2_FILENAME_MAX) {
        size_t k = o;
        while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && ((unsigned char)out[k - 1] & 0x80) != 0) {
            unsigned char lead = (unsigned char)out[k - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (o - (k - 1) < need)
                o = k - 1;
        }
    }
    while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '.'))
        o--;
    size_t start = 0;
    while (start < o && out[start] == ' ')
        start++;
    memmove(out, out + start, o - start);
    o -= start;
    out[o] = '\0';
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        out[0] = '\0';
}
