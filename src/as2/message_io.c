/*
 * message_io.c - the plumbing of the AS2 message streams
 * (message_internal.h): function BIOs, bounded pipes with a stage thread
 * on the writing side, the failure record shared by those threads, the
 * streaming codecs the send and receive paths are built from, and the
 * micalg-to-digest mapping they share.
 *
 * It owns the pipes and threads of the stages it starts (each joined by
 * msg_stage_finish) and nothing else. It must never do I/O of its own,
 * never let a pipe grow beyond MSG_PIPE_CAP (a slow consumer blocks the
 * producer instead), and never leave a thread running after finish.
 */
#include "as2/message_internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

/* ---- function BIOs ---- */

struct fbio {
    msg_read_fn r;
    msg_write_fn w;
    void *ctx;
};

static BIO_METHOD *fbio_method;
static pthread_once_t fbio_once = PTHREAD_ONCE_INIT;

static int fbio_read(BIO *b, char *out, int len)
{
    struct fbio *f = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (f == NULL || f->r == NULL || len < 0)
        return -1;
    return len == 0 ? 0 : f->r(f->ctx, out, len);
}

static int fbio_write(BIO *b, const char *in, int len)
{
    struct fbio *f = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (f == NULL || f->w == NULL || len < 0)
        return -1;
    return len == 0 ? 0 : f->w(f->ctx, in, len);
}

static long fbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int fbio_destroy(BIO *b)
{
    free(BIO_get_data(b));
    BIO_set_data(b, NULL);
    return 1;
}

static void fbio_setup(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "wharf as2 stream");
    if (m == NULL)
        return;
    if (BIO_meth_set_read(m, fbio_read) != 1 ||
        BIO_meth_set_write(m, fbio_write) != 1 ||
        BIO_meth_set_ctrl(m, fbio_ctrl) != 1 ||
        BIO_meth_set_destroy(m, fbio_destroy) != 1) {
        BIO_meth_free(m);
        return;
    }
    fbio_method = m;
}

BIO *msg_bio_new(msg_read_fn r, msg_write_fn w, void *ctx)
{
    if (pthread_once(&fbio_once, fbio_setup) != 0 || fbio_method == NULL)
        return NULL;
    struct fbio *f = malloc(sizeof(*f));
    if (f == NULL)
        return NULL;
    f->r = r;
    f->w = w;
    f->ctx = ctx;
    BIO *b = BIO_new(fbio_method);
    if (b == NULL) {
        free(f);
        return NULL;
    }
    BIO_set_data(b, f);
    BIO_set_init(b, 1);
    return b;
}

int msg_write(BIO *out, const void *p, size_t n, const char *what,
              struct error *err)
{
    const unsigned char *q = p;
    while (n > 0) {
        int k = n > MSG_CHUNK * 64 ? MSG_CHUNK * 64 : (int)n;
        int r = BIO_write(out, q, k);
        if (r <= 0)
            return error_openssl(err, what);
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

long msg_read(BIO *in, void *buf, size_t cap, struct error *err)
{
    int r = BIO_read(in, buf, cap > MSG_CHUNK * 64 ? MSG_CHUNK * 64
                                                   : (int)cap);
    if (r >= 0)
        return r;
    if (BIO_should_retry(in))
        return error_set(err, "the input would block (a blocking input is "
                         "required)");
    return error_openssl(err, "cannot read the input");
}

/* ---- failures ---- */

static _Thread_local bool tls_aborted;

bool msg_aborted(void)
{
    return tls_aborted;
}

void msg_aborted_reset(void)
{
    tls_aborted = false;
}

void msg_fail_init(struct msg_fail *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
}

void msg_fail_destroy(struct msg_fail *f)
{
    pthread_mutex_destroy(&f->mu);
}

int msg_fail(struct msg_fail *f, size_t rank, enum mdn_error code,
             const struct error *e)
{
    if (tls_aborted)
        return -1;
    return msg_fail_record(f, rank, code, e);
}

int msg_fail_record(struct msg_fail *f, size_t rank, enum mdn_error code,
                    const struct error *e)
{
    pthread_mutex_lock(&f->mu);
    if (!f->set || rank < f->rank) {
        f->set = true;
        f->rank = rank;
        f->code = code;
        if (e != NULL)
            f->err = *e;
        else
            error_set(&f->err, "unexpected failure");
    }
    pthread_mutex_unlock(&f->mu);
    return -1;
}

/* ---- pipes ---- */

/* One writer thread, one reader thread; a side is signalled only when it
 * waits, and then only once half the pipe is there to take (a waiting
 * reader: half full; a waiting writer: half empty) or the other side is
 * gone: one wake-up per half pipe, not per step (docs/performance.md,
 * "Large messages streamed into the POST"). It cannot stall a pipeline: a
 * writer waits only for space (the pipe is full, its reader was woken),
 * never for its own reader's output, and closing wakes the reader. */
struct msg_pipe {
    pthread_mutex_t mu;
    pthread_cond_t rcv, wcv;
    size_t head, len;
    int wstate;             /* 0 open, 1 ended, 2 failed */
    bool rgone;
    bool rwait, wwait;      /* a side is waiting */
    unsigned char buf[MSG_PIPE_CAP];
};

static int pipe_read(void *ctx, char *out, int n)
{
    struct msg_pipe *p = ctx;
    pthread_mutex_lock(&p->mu);
    while (p->len == 0 && p->wstate == 0) {
        p->rwait = true;
        pthread_cond_wait(&p->rcv, &p->mu);
    }
    p->rwait = false;
    if (p->len > 0) {
        size_t k = (size_t)n;
        if (k > p->len)
            k = p->len;
        if (k > MSG_PIPE_CAP - p->head)
            k = MSG_PIPE_CAP - p->head;
        memcpy(out, p->buf + p->head, k);
        p->head = (p->head + k) % MSG_PIPE_CAP;
        p->len -= k;
        if (p->wwait && p->len <= MSG_PIPE_CAP / 2)
            pthread_cond_signal(&p->wcv);
        pthread_mutex_unlock(&p->mu);
        return (int)k;
    }
    int st = p->wstate;
    pthread_mutex_unlock(&p->mu);
    if (st == 2) {
        tls_aborted = true;
        return -1;
    }
    return 0;
}

static int pipe_write(void *ctx, const char *in, int n)
{
    struct msg_pipe *p = ctx;
    size_t done = 0, want = (size_t)n;
    pthread_mutex_lock(&p->mu);
    while (done < want) {
        while (p->len == MSG_PIPE_CAP && !p->rgone) {
            p->wwait = true;
            pthread_cond_wait(&p->wcv, &p->mu);
        }
        p->wwait = false;
        if (p->rgone) {
            pthread_mutex_unlock(&p->mu);
            tls_aborted = true;
            return -1;
        }
        size_t tail = (p->head + p->len) % MSG_PIPE_CAP;
        size_t k = want - done;
        if (k > MSG_PIPE_CAP - p->len)
            k = MSG_PIPE_CAP - p->len;
        if (k > MSG_PIPE_CAP - tail)
            k = MSG_PIPE_CAP - tail;
        memcpy(p->buf + tail, in + done, k);
        p->len += k;
        done += k;
        if (p->rwait && p->len >= MSG_PIPE_CAP / 2)
            pthread_cond_signal(&p->rcv);
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

static void pipe_close_write(struct msg_pipe *p, bool failed)
{
    pthread_mutex_lock(&p->mu);
    p->wstate = failed ? 2 : 1;
    pthread_cond_signal(&p->rcv);
    pthread_mutex_unlock(&p->mu);
}

static void pipe_close_read(struct msg_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->rgone = true;
    pthread_cond_signal(&p->wcv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- stages ---- */

static void *stage_main(void *arg)
{
    struct msg_stage *s = arg;
    msg_aborted_reset();
    error_clear(&s->err);
    s->rc = s->fn(s->arg, s->w, &s->err);
    s->aborted = s->rc != 0 && msg_aborted();
    pipe_close_write(s->pipe, s->rc != 0);
    ERR_clear_error();
    return NULL;
}

int msg_stage_start(struct msg_stage *s, msg_stage_fn fn, void *arg,
                    struct error *err)
{
    memset(s, 0, sizeof(*s));
    s->pipe = calloc(1, sizeof(*s->pipe));
    if (s->pipe == NULL)
        return error_set(err, "out of memory starting a message stream");
    pthread_mutex_init(&s->pipe->mu, NULL);
    pthread_cond_init(&s->pipe->rcv, NULL);
    pthread_cond_init(&s->pipe->wcv, NULL);
    s->w = msg_bio_new(NULL, pipe_write, s->pipe);
    s->r = msg_bio_new(pipe_read, NULL, s->pipe);
    s->fn = fn;
    s->arg = arg;
    if (s->w == NULL || s->r == NULL) {
        msg_stage_finish(s);
        return error_set(err, "out of memory starting a message stream");
    }
    int e = pthread_create(&s->th, NULL, stage_main, s);
    if (e != 0) {
        msg_stage_finish(s);
        return error_errno(err, e, "cannot start a message stream thread");
    }
    s->started = true;
    return 0;
}

int msg_stage_finish(struct msg_stage *s)
{
    if (s->pipe == NULL)
        return s->rc;
    pipe_close_read(s->pipe);
    if (s->started) {
        pthread_join(s->th, NULL);
        s->started = false;
    } else {
        s->rc = -1;
    }
    BIO_free(s->w);
    BIO_free(s->r);
    s->w = s->r = NULL;
    pthread_cond_destroy(&s->pipe->rcv);
    pthread_cond_destroy(&s->pipe->wcv);
    pthread_mutex_destroy(&s->pipe->mu);
    free(s->pipe);
    s->pipe = NULL;
    return s->rc;
}

/* ---- base64 encoding (pull) ---- */

static int b64enc_read(void *ctx, char *buf, int len)
{
    struct msg_b64enc *e = ctx;
    while (e->off == e->len) {
        if (e->eof)
            return 0;
        unsigned char in[(MSG_CHUNK / 57) * 57];
        memcpy(in, e->carry, e->ncarry);
        size_t n = e->ncarry;
        long r = msg_read(e->in, in + n, sizeof(in) - n, &e->err);
        if (r < 0)
            return -1;
        if (r == 0)
            e->eof = true;
        n += (size_t)r;
        size_t whole = e->eof ? n : n - n % 57;
        e->ncarry = n - whole;
        memcpy(e->carry, in + whole, e->ncarry);
        e->off = 0;
        e->len = whole ? mime_base64_encode(in, whole, e->out) : 0;
    }
    size_t k = e->len - e->off;
    if (k > (size_t)len)
        k = (size_t)len;
    memcpy(buf, e->out + e->off, k);
    e->off += k;
    return (int)k;
}

BIO *msg_b64enc_bio(struct msg_b64enc *e, BIO *in)
{
    memset(e, 0, sizeof(*e));
    e->in = in;
    return msg_bio_new(b64enc_read, NULL, e);
}

/* ---- Content-Transfer-Encoding decoding (pull) ---- */

/* Decode the complete quoted-printable lines in d->line.. and keep a
 * partial last line (at the end of input, decode it too). */
static int qp_feed(struct msg_decoder *d, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d->nline >= sizeof(d->line))
            return error_set(&d->err, "quoted-printable line longer than "
                             "%d characters", MIME_LINE_MAX);
        d->line[d->nline++] = p[i];
        if (p[i] != '\n')
            continue;
        size_t got;
        if (d->len + d->nline > sizeof(d->out))
            return error_set(&d->err, "quoted-printable decoding overflow");
        if (mime_qp_decode(d->line, d->nline, d->out + d->len, &got,
                           &d->err) != 0)
            return -1;
        d->len += got;
        d->nline = 0;
    }
    return 0;
}

static int decoder_fill(struct msg_decoder *d)
{
    d->off = d->len = 0;
    size_t cap = d->cte == MIME_CTE_QP ? sizeof(d->out) - sizeof(d->line)
                                       : sizeof(d->raw);
    if (cap > sizeof(d->raw))
        cap = sizeof(d->raw);
    long r = msg_read(d->in, d->raw, cap, &d->err);
    if (r < 0)
        return -1;
    if (r == 0) {
        d->eof = true;
        if (d->cte == MIME_CTE_BASE64)
            return mime_b64_final(&d->b64, d->out, &d->len, &d->err);
        if (d->cte == MIME_CTE_QP && d->nline > 0) {
            int rc = mime_qp_decode(d->line, d->nline, d->out, &d->len,
                                    &d->err);
            d->nline = 0;
            return rc;
        }
        return 0;
    }
    if (d->cte == MIME_CTE_BASE64)
        return mime_b64_update(&d->b64, d->raw, (size_t)r, d->out, &d->len,
                               &d->err);
    return qp_feed(d, d->raw, (size_t)r);
}

static int decoder_read(void *ctx, char *buf, int len)
{
    struct msg_decoder *d = ctx;
    if (d->failed)
        return -1;
    if (d->cte != MIME_CTE_BASE64 && d->cte != MIME_CTE_QP) {
        long r = msg_read(d->in, buf, (size_t)len, &d->err);
        if (r < 0)
            d->failed = true;
        return (int)r;
    }
    while (d->off == d->len) {
        if (d->eof)
            return 0;
        if (decoder_fill(d) != 0) {
            d->failed = true;
            return -1;
        }
    }
    size_t k = d->len - d->off;
    if (k > (size_t)len)
        k = (size_t)len;
    memcpy(buf, d->out + d->off, k);
    d->off += k;
    return (int)k;
}

BIO *msg_decoder_bio(struct msg_decoder *d, BIO *in, enum mime_cte cte)
{
    d->in = in;
    d->cte = cte;
    mime_b64_init(&d->b64);
    d->eof = d->failed = false;
    d->off = d->len = d->nline = 0;
    error_clear(&d->err);
    return msg_bio_new(decoder_read, NULL, d);
}

/* ---- prefix (pull) ---- */

static int prefix_read(void *ctx, char *buf, int len)
{
    struct msg_prefix *p = ctx;
    if (p->off < p->len) {
        size_t k = p->len - p->off;
        if (k > (size_t)len)
            k = (size_t)len;
        memcpy(buf, p->buf + p->off, k);
        p->off += k;
        return (int)k;
    }
    if (p->in == NULL)
        return 0;
    int r = BIO_read(p->in, buf, len);
    return r < 0 ? -1 : r;
}

BIO *msg_prefix_bio(struct msg_prefix *p, const void *buf, size_t len,
                    BIO *in)
{
    p->buf = buf;
    p->off = 0;
    p->len = buf != NULL ? len : 0;
    p->in = in;
    return msg_bio_new(prefix_read, NULL, p);
}

/* ---- header blocks ---- */

int msg_read_headers(BIO *in, struct mime_headers *hs, unsigned char **raw,
                     size_t *raw_len, size_t *hdr_len, struct error *err)
{
    size_t cap = MIME_MAX_HEADER_BYTES + 4096, n = 0, off = 0;
    unsigned char *buf = malloc(cap);
    *raw = NULL;
    *raw_len = *hdr_len = 0;
    if (buf == NULL)
        return error_set(err, "out of memory reading a MIME header block");
    for (;;) {
        size_t want = cap - n < 4096 ? cap - n : 4096;
        long r = want ? msg_read(in, buf + n, want, err) : 0;
        if (r < 0) {
            free(buf);
            return -1;
        }
        if (r == 0) {
            free(buf);
            return error_set(err, n == 0 ? "a MIME entity is empty"
                             : "a MIME entity ends inside its header block");
        }
        n += (size_t)r;
        int got = mime_headers_end((const char *)buf, n, &off, err);
        if (got < 0) {
            free(buf);
            return -1;
        }
        if (got == 1)
            break;
    }
    if (mime_headers_parse(hs, (const char *)buf, off, NULL, err) != 0) {
        free(buf);
        return -1;
    }
    *raw = buf;
    *raw_len = n;
    *hdr_len = off;
    return 0;
}

/* ---- signature parts ---- */

int msg_sig_part_der(const char *entity, size_t len, unsigned char **der,
                     size_t *dlen, struct error *err)
{
    struct mime_headers hs;
    struct mime_content_type ct;
    const char *ctv = NULL, *ctev = NULL;
    size_t off = 0;
    enum mime_cte cte = MIME_CTE_7BIT;
    int rc = 0;
    mime_headers_init(&hs);
    memset(&ct, 0, sizeof(ct));
    *der = NULL;
    *dlen = 0;
    if (len == 0)
        rc = error_set(err, "the signature part is empty");
    if (rc == 0 &&
        (mime_headers_parse(&hs, entity, len, &off, err) != 0 ||
         mime_header_get_unique(&hs, "Content-Type", &ctv, err) != 0 ||
         mime_header_get_unique(&hs, "Content-Transfer-Encoding", &ctev,
                                err) != 0))
        rc = -1;
    if (rc == 0 && ctv == NULL)
        rc = error_set(err, "the signature part has no Content-Type");
    if (rc == 0)
        rc = mime_content_type_parse(ctv, &ct, err);
    if (rc == 0 &&
        !mime_content_type_is(&ct, "application", "pkcs7-signature") &&
        !mime_content_type_is(&ct, "application", "x-pkcs7-signature"))
        rc = error_set(err, "the second part of the multipart/signed is not "
                       "an application/pkcs7-signature");
    if (rc == 0)
        rc = mime_cte_parse(ctev, &cte, err);
    if (rc == 0)
        rc = mime_decode_alloc(cte, entity + off, len - off, der, dlen, err);
    mime_content_type_free(&ct);
    mime_headers_free(&hs);
    return rc;
}

/* ---- algorithm names ---- */

enum as2_digest msg_digest_of(enum as2_micalg a)
{
    switch (a) {
    case AS2_MICALG_SHA1: return AS2_DIGEST_SHA1;
    case AS2_MICALG_SHA256: return AS2_DIGEST_SHA256;
    case AS2_MICALG_SHA384: return AS2_DIGEST_SHA384;
    case AS2_MICALG_SHA512: return AS2_DIGEST_SHA512;
    default: break;
    }
    return AS2_DIGEST_NONE;
}
