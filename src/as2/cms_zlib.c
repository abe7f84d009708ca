/*
 * cms_zlib.c - CMS CompressedData (RFC 3274) with zlib, as AS2 uses it
 * (RFC 5402). Debian's OpenSSL is built without zlib, so the structure is
 * written and read here: it is tiny,
 *
 *   ContentInfo { id-ct-compressedData, [0] CompressedData {
 *       version 0, AlgorithmIdentifier { id-alg-zlibCompress },
 *       EncapsulatedContentInfo { id-data, [0] OCTET STRING } } }
 *
 * and the content is a zlib stream (RFC 1950). Writing uses indefinite
 * lengths and a constructed OCTET STRING of chunks; reading accepts
 * definite and indefinite lengths. Both run in constant memory.
 *
 * It owns what one call allocates. It must never write more than the
 * caller's limit when inflating (compression bombs are refused before the
 * excess is written), and never accept trailing bytes after the end of
 * the zlib stream inside the content.
 */
#include "as2/cms_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>
#include <zlib.h>

#include "util/cpus.h"

/* Everything up to the first content chunk. */
static const unsigned char zhead[] = {
    0x30, 0x80,                                     /* ContentInfo */
    0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, /* id-ct-compressedData */
    0x01, 0x09, 0x10, 0x01, 0x09,
    0xa0, 0x80,                                     /* [0] EXPLICIT */
    0x30, 0x80,                                     /* CompressedData */
    0x02, 0x01, 0x00,                               /* version 0 */
    0x30, 0x0d, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, /* id-alg-zlibCompress */
    0xf7, 0x0d, 0x01, 0x09, 0x10, 0x03, 0x08,
    0x30, 0x80,                                     /* EncapsulatedContentInfo */
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, /* id-data */
    0x01, 0x07, 0x01,
    0xa0, 0x80,                                     /* [0] EXPLICIT */
    0x24, 0x80,                                     /* OCTET STRING, chunks */
};
/* Six end-of-contents markers close the six open elements. */
static const unsigned char ztail[12];

static int z_chunk(BIO *out, const unsigned char *p, size_t n,
                   struct error *err)
{
    unsigned char hdr[4] = {BER_OCTETS};
    size_t h = 1;
    if (n >= 256) {
        hdr[h++] = 0x82;
        hdr[h++] = (unsigned char)(n >> 8);
    } else if (n >= 128) {
        hdr[h++] = 0x81;
    }
    hdr[h++] = (unsigned char)n;
    if (cms_write(out, hdr, h, "cannot write the compressed message",
                  err) != 0)
        return -1;
    return cms_write(out, p, n, "cannot write the compressed message", err);
}

/* ---- writing: one zlib stream, deflated in blocks side by side ----
 *
 * Deflate runs at one core's speed, the slowest stage of a large
 * compressed message. So the input is cut into ZBLOCK-byte blocks and up
 * to ZWIDTH blocks are deflated at once, each by its own thread, as raw
 * deflate primed with the last 32 KiB of the block before (so matches
 * reach back across the cut as they would in one stream) and ended with a
 * sync flush (a byte boundary, the last block not final) except the last
 * one. Their outputs, put end to end between the zlib header and the
 * Adler-32 of the whole input (combined from each block's), are one
 * ordinary RFC 1950 stream; any inflater reads it. A round of blocks is
 * deflated while the calling thread writes the round before and reads the
 * next (two sets of buffers), so the threads never wait on the pipes. A
 * message of one block is deflated by the calling thread alone.
 *
 * The threads live for one call: the calling thread starts them at the
 * first round of more than one block, so they run at its priority (the
 * large lane's, engine.c), hands each round to them (thread i deflates
 * block i of the round) and ends them when the call ends. Memory: 2 x
 * width blocks of input and of output and a deflate state per slot,
 * about 10 MiB at most. */

#define ZBLOCK AS2_CMS_ZBLOCK
#define ZWIDTH_MAX 4
#define ZDICT 32768                 /* deflate's window */

struct zslot {
    unsigned char *in, *out;
    size_t inlen, outlen, outcap;
    unsigned char dict[ZDICT];
    size_t dictlen;
    int last, failed;
    uLong adler;
    z_stream zs;                    /* set up once, reset for each block */
    int zinit;
};

struct zpar {
    struct zslot *set[2];           /* two rounds: one deflating, one I/O */
    size_t width, n[2];
    int level;
    uLong adler;                    /* of the input so far, in order */
    int eof;
    /* the call's threads: round counts the rounds handed out, running is
     * the set being deflated, pending the threads not done with it */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t th[ZWIDTH_MAX];
    size_t nth, pending;
    unsigned long round;
    int running, quit;
};

struct zworker {
    struct zpar *zp;
    size_t i;
};

/* Deflate one slot's block as raw deflate into its out buffer. */
static void zslot_run(struct zslot *z)
{
    z_stream *zs = &z->zs;
    z->adler = adler32(adler32(0L, Z_NULL, 0), z->in, (uInt)z->inlen);
    z->outlen = 0;
    if (deflateReset(zs) != Z_OK ||
        (z->dictlen > 0 &&
         deflateSetDictionary(zs, z->dict, (uInt)z->dictlen) != Z_OK)) {
        z->failed = 1;
        return;
    }
    zs->next_in = z->in;
    zs->avail_in = (uInt)z->inlen;
    int flush = z->last ? Z_FINISH : Z_SYNC_FLUSH, ret = Z_OK;
    while (!z->failed) {
        zs->next_out = z->out + z->outlen;
        zs->avail_out = (uInt)(z->outcap - z->outlen);
        ret = deflate(zs, flush);
        z->outlen = z->outcap - zs->avail_out;
        if (ret == Z_STREAM_ERROR)
            z->failed = 1;
        else if (zs->avail_out > 0 || ret == Z_STREAM_END)
            break;                  /* all in, flushed: never fills outcap */
        else
            z->failed = 1;          /* outcap is deflateBound + slack */
    }
    if (z->last && ret != Z_STREAM_END)
        z->failed = 1;
}

/* A slot's buffers and deflate state, the first time it is used (a
 * message of one block uses one slot). */
static int zslot_alloc(struct zslot *z, int level)
{
    if (z->zinit)
        return 0;
    z->outcap = compressBound(ZBLOCK) + 64;
    if ((z->in == NULL && (z->in = malloc(ZBLOCK)) == NULL) ||
        (z->out == NULL && (z->out = malloc(z->outcap)) == NULL))
        return -1;
    z->zinit = deflateInit2(&z->zs, level, Z_DEFLATED, -15, 8,
                            Z_DEFAULT_STRATEGY) == Z_OK;
    return z->zinit ? 0 : -1;
}

/* Fill *n bytes (up to cap) from in; 0, or -1 with err set. */
static int zread_full(BIO *in, unsigned char *buf, size_t cap, size_t *n,
                      int *eof, struct error *err)
{
    *n = 0;
    while (*n < cap) {
        long r = cms_read(in, buf + *n, cap - *n, err);
        if (r < 0)
            return -1;
        if (r == 0) {
            *eof = 1;
            break;
        }
        *n += (size_t)r;
    }
    return 0;
}

/* Read round set k (at most width blocks); the first block's dictionary
 * is the tail of prev's input (NULL at the start). */
static int zpar_read(struct zpar *zp, int k, const struct zslot *prev,
                     BIO *in, struct error *err)
{
    zp->n[k] = 0;
    for (size_t i = 0; i < zp->width && !zp->eof; i++) {
        struct zslot *z = &zp->set[k][i];
        if (zslot_alloc(z, zp->level) != 0)
            return error_set(err, "out of memory compressing a message");
        if (zread_full(in, z->in, ZBLOCK, &z->inlen, &zp->eof, err) != 0)
            return -1;
        if (z->inlen == 0 && zp->eof && zp->n[k] > 0)
            break;                  /* the block before ends the stream */
        /* else an empty block: the whole input, or the final block after
         * a round already deflating (ended with a sync flush) */
        const struct zslot *d = i > 0 ? &zp->set[k][i - 1] : prev;
        z->dictlen = d == NULL ? 0 : d->inlen < ZDICT ? d->inlen : ZDICT;
        if (z->dictlen > 0)
            memcpy(z->dict, d->in + d->inlen - z->dictlen, z->dictlen);
        z->last = 0;
        z->failed = 0;
        zp->n[k]++;
    }
    return 0;
}

/* The last block read (in set k, or, when set k is empty, the one round
 * before, not yet started) is the last of the stream once input ended. */
static void zpar_mark_last(struct zpar *zp, int k)
{
    if (zp->eof && zp->n[k] > 0)
        zp->set[k][zp->n[k] - 1].last = 1;
}

/* Thread i of the call: deflate block i of every round handed out. */
static void *zworker_main(void *arg)
{
    struct zworker *w = arg;
    struct zpar *zp = w->zp;
    unsigned long seen = 0;
    pthread_mutex_lock(&zp->mu);
    for (;;) {
        while (!zp->quit && zp->round == seen)
            pthread_cond_wait(&zp->go, &zp->mu);
        if (zp->quit)
            break;
        seen = zp->round;
        int k = zp->running;
        if (w->i < zp->n[k]) {
            pthread_mutex_unlock(&zp->mu);
            zslot_run(&zp->set[k][w->i]);
            pthread_mutex_lock(&zp->mu);
        }
        if (--zp->pending == 0)
            pthread_cond_signal(&zp->done);
    }
    pthread_mutex_unlock(&zp->mu);
    free(w);
    return NULL;
}

/* Start the call's threads (as many as can be, up to width). */
static void zpar_threads(struct zpar *zp)
{
    while (zp->nth < zp->width) {
        struct zworker *w = malloc(sizeof(*w));
        if (w == NULL)
            return;
        w->zp = zp;
        w->i = zp->nth;
        if (pthread_create(&zp->th[zp->nth], NULL, zworker_main, w) != 0) {
            free(w);
            return;
        }
        zp->nth++;
    }
}

/* Deflate set k: by the threads when it has several blocks (the blocks
 * no thread takes, by the caller now), else by the caller. */
static void zpar_start(struct zpar *zp, int k)
{
    if (zp->n[k] > 1 && zp->nth == 0)
        zpar_threads(zp);
    size_t by_threads = zp->n[k] > 1 ? zp->nth : 0;
    if (by_threads > 0) {
        pthread_mutex_lock(&zp->mu);
        zp->running = k;
        zp->pending = zp->nth;
        zp->round++;
        pthread_cond_broadcast(&zp->go);
        pthread_mutex_unlock(&zp->mu);
    }
    for (size_t i = by_threads; i < zp->n[k]; i++)
        zslot_run(&zp->set[k][i]);
}

static int zpar_join(struct zpar *zp, int k, struct error *err)
{
    pthread_mutex_lock(&zp->mu);
    while (zp->pending > 0)
        pthread_cond_wait(&zp->done, &zp->mu);
    pthread_mutex_unlock(&zp->mu);
    int failed = 0;
    for (size_t i = 0; i < zp->n[k]; i++)
        failed |= zp->set[k][i].failed;
    return failed ? error_set(err, "cannot compress: zlib failed") : 0;
}

/* Write set k's outputs in order as content chunks. */
static int zpar_write(struct zpar *zp, int k, BIO *out, struct error *err)
{
    for (size_t i = 0; i < zp->n[k]; i++) {
        struct zslot *z = &zp->set[k][i];
        zp->adler = adler32_combine(zp->adler, z->adler, (z_off_t)z->inlen);
        for (size_t off = 0; off < z->outlen; off += CMS_CHUNK) {
            size_t n = z->outlen - off < CMS_CHUNK ? z->outlen - off
                                                   : CMS_CHUNK;
            if (z_chunk(out, z->out + off, n, err) != 0)
                return -1;
        }
    }
    return 0;
}

/* The RFC 1950 header zlib writes for level (no preset dictionary). */
static void zlib_header(int level, unsigned char h[2])
{
    unsigned flevel = level < 2 ? 0 : level < 6 ? 1 : level == 6 ? 2 : 3;
    unsigned v = (0x78u << 8) | (flevel << 6);
    v += 31 - v % 31;
    h[0] = (unsigned char)(v >> 8);
    h[1] = (unsigned char)v;
}

/* Every round: read the next into the free set, wait for the running
 * one, start the next, write the finished one. */
static int zpar_rounds(struct zpar *zp, BIO *in, BIO *out, struct error *err)
{
    int k = 0;
    if (zpar_read(zp, k, NULL, in, err) != 0)
        return -1;
    zpar_mark_last(zp, k);
    zpar_start(zp, k);
    for (;;) {
        int j = 1 - k, rc = 0;
        const struct zslot *prev = &zp->set[k][zp->n[k] - 1];
        zp->n[j] = 0;
        if (!zp->eof)
            rc = zpar_read(zp, j, prev, in, err);
        if (zpar_join(zp, k, err) != 0 || rc != 0)
            return -1;
        zpar_mark_last(zp, j);
        zpar_start(zp, j);          /* nothing when set j is empty */
        if (zpar_write(zp, k, out, err) != 0) {
            (void)zpar_join(zp, j, err);
            return -1;
        }
        if (zp->n[j] == 0)
            return 0;
        k = j;
    }
}

static void zpar_free(struct zpar *zp)
{
    pthread_mutex_lock(&zp->mu);
    zp->quit = 1;
    pthread_cond_broadcast(&zp->go);
    pthread_mutex_unlock(&zp->mu);
    for (size_t i = 0; i < zp->nth; i++)
        pthread_join(zp->th[i], NULL);
    pthread_mutex_destroy(&zp->mu);
    pthread_cond_destroy(&zp->go);
    pthread_cond_destroy(&zp->done);
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; zp->set[k] != NULL && i < zp->width; i++) {
            struct zslot *z = &zp->set[k][i];
            if (z->zinit)
                deflateEnd(&z->zs);
            free(z->in);
            free(z->out);
        }
        free(zp->set[k]);
    }
}

static size_t zpar_width(void)
{
    size_t n = cpus_usable();
    return n > ZWIDTH_MAX ? ZWIDTH_MAX : n;
}

static int zpar_init(struct zpar *zp, int level)
{
    memset(zp, 0, sizeof(*zp));
    pthread_mutex_init(&zp->mu, NULL);
    pthread_cond_init(&zp->go, NULL);
    pthread_cond_init(&zp->done, NULL);
    zp->width = zpar_width();
    zp->level = level;
    zp->adler = adler32(0L, Z_NULL, 0);
    for (int k = 0; k < 2; k++)
        if ((zp->set[k] = calloc(zp->width, sizeof(struct zslot))) == NULL)
            return -1;
    return 0;
}

static int z_compress(struct zpar *zp, BIO *in, BIO *out, struct error *err)
{
    unsigned char h[2], a[4];
    zlib_header(zp->level, h);
    if (cms_write(out, zhead, sizeof(zhead), "cannot write the compressed "
                  "message", err) != 0 ||
        z_chunk(out, h, sizeof(h), err) != 0 ||
        zpar_rounds(zp, in, out, err) != 0)
        return -1;
    for (int i = 0; i < 4; i++)
        a[i] = (unsigned char)(zp->adler >> (24 - 8 * i));
    if (z_chunk(out, a, sizeof(a), err) != 0)
        return -1;
    return cms_write(out, ztail, sizeof(ztail), "cannot write the compressed "
                     "message", err);
}

int as2_cms_compress(BIO *in, BIO *out, int level, struct error *err)
{
    if (level < -1 || level > 9)
        return error_set(err, "cannot compress: level %d is not 0-9", level);
    struct zpar *zp = malloc(sizeof(*zp));
    int rc = zp == NULL || zpar_init(zp, level == -1 ? 6 : level) != 0
             ? error_set(err, "out of memory compressing a message")
             : z_compress(zp, in, out, err);
    if (zp != NULL)
        zpar_free(zp);
    free(zp);
    return rc;
}

/* ---- reading ---- */

struct unz {
    z_stream zs;
    BIO *out;
    uint64_t max, written;
    int done;
    unsigned char buf[CMS_CHUNK];
};

/* One inflate step into u->buf; zlib's result. */
static int unz_inflate(struct unz *u)
{
    u->zs.next_out = u->buf;
    u->zs.avail_out = sizeof(u->buf);
    return inflate(&u->zs, Z_NO_FLUSH);
}

/* Write what the last step produced (*got bytes), refusing to pass the
 * limit. */
static int unz_emit(struct unz *u, size_t *got, struct error *err)
{
    *got = sizeof(u->buf) - u->zs.avail_out;
    if (*got > u->max - u->written)
        return error_set(err, "decompression refused: the content "
                         "inflates to more than the limit of %llu bytes "
                         "(a compression bomb?)",
                         (unsigned long long)u->max);
    if (cms_write(u->out, u->buf, *got, "cannot write the decompressed "
                  "content", err) != 0)
        return -1;
    u->written += *got;
    return 0;
}

static int unz_sink(void *ctx, const unsigned char *p, size_t n,
                    struct error *err)
{
    struct unz *u = ctx;
    if (n > 0 && u->done)
        return error_set(err, "decompression failed: data follows the end "
                         "of the compressed stream");
    u->zs.next_in = (unsigned char *)p;
    u->zs.avail_in = (uInt)n;
    while (u->zs.avail_in > 0 && !u->done) {
        int ret = unz_inflate(u);
        if (ret == Z_STREAM_END)
            u->done = 1;
        else if (ret != Z_OK && ret != Z_BUF_ERROR)
            return error_set(err, "decompression failed: the compressed "
                             "data is corrupt (zlib: %s)",
                             u->zs.msg ? u->zs.msg : "error");
        size_t got;
        if (unz_emit(u, &got, err) != 0)
            return -1;
        if (ret == Z_BUF_ERROR && got == 0)
            break;
    }
    if (u->done && u->zs.avail_in > 0)
        return error_set(err, "decompression failed: data follows the end "
                         "of the compressed stream");
    return 0;
}

/* Finish inflating output that zlib still holds without new input. */
static int unz_drain(struct unz *u, struct error *err)
{
    while (!u->done) {
        u->zs.next_in = NULL;
        u->zs.avail_in = 0;
        int ret = unz_inflate(u);
        size_t got;
        if (unz_emit(u, &got, err) != 0)
            return -1;
        if (ret == Z_STREAM_END)
            u->done = 1;
        else if (got == 0)
            return error_set(err, "decompression failed: the compressed "
                             "stream is truncated");
    }
    return 0;
}

/* AlgorithmIdentifier: zlib, with absent or NULL parameters. */
static int unz_alg(struct ber *b, const struct ber_tlv *cd)
{
    struct ber_tlv alg, t;
    if (ber_next(b, cd, &alg, BER_SEQ, "compression algorithm") != 0)
        return -1;
    int nid = ber_oid(b, &alg, NULL, "compression algorithm");
    if (nid < 0)
        return -1;
    if (nid != NID_zlib_compression)
        return error_set(b->err, "decompression failed: unsupported "
                         "compression algorithm %s", nid == NID_undef
                         ? "(unknown)" : OBJ_nid2sn(nid));
    int p = ber_peek(b, &alg);
    if (p < 0)
        return -1;
    if (p != 0 && (ber_next(b, &alg, &t, BER_NULL, "algorithm parameters")
                   != 0 || ber_skip(b, &t) != 0))
        return -1;
    return ber_close(b, &alg, "compression algorithm");
}

static int unz_content(struct ber *b, const struct ber_tlv *cd,
                       struct unz *u)
{
    struct ber_tlv eci, wrap, os;
    if (ber_next(b, cd, &eci, BER_SEQ, "encapsulated content info") != 0 ||
        ber_oid(b, &eci, NULL, "content type") < 0)
        return -1;
    if (ber_econtent(b, &eci, &wrap, &os, "decompression failed: the "
                     "message carries no content") != 0)
        return -1;
    if (ber_octets(b, &os, unz_sink, u) != 0 || unz_drain(u, b->err) != 0 ||
        ber_close(b, &wrap, "content") != 0)
        return -1;
    return ber_close(b, &eci, "encapsulated content info");
}

static int unz_parse(struct ber *b, struct unz *u)
{
    struct ber_tlv ci, c0, cd, v;
    unsigned char ver[4];
    size_t n;
    if (ber_next(b, NULL, &ci, BER_SEQ, "ContentInfo") != 0)
        return -1;
    int nid = ber_oid(b, &ci, NULL, "content type");
    if (nid < 0)
        return -1;
    if (nid != NID_id_smime_ct_compressedData)
        return error_set(b->err, "decompression failed: the message is not "
                         "a CompressedData");
    if (ber_next(b, &ci, &c0, BER_CTX0, "content") != 0 ||
        ber_next(b, &c0, &cd, BER_SEQ, "CompressedData") != 0 ||
        ber_next(b, &cd, &v, BER_INT, "version") != 0 ||
        ber_small(b, &v, ver, sizeof(ver), &n, "version") != 0)
        return -1;
    if (n != 1 || ver[0] != 0)
        return error_set(b->err, "decompression failed: unsupported "
                         "CompressedData version");
    if (unz_alg(b, &cd) != 0 || unz_content(b, &cd, u) != 0 ||
        ber_close(b, &cd, "CompressedData") != 0 ||
        ber_close(b, &c0, "content") != 0)
        return -1;
    return ber_close(b, &ci, "ContentInfo");
}

int as2_cms_decompress(BIO *in, BIO *out, uint64_t max_out,
                       uint64_t *written, struct error *err)
{
    if (written != NULL)
        *written = 0;
    struct ber *b = malloc(sizeof(*b));
    struct unz *u = calloc(1, sizeof(*u));
    if (b == NULL || u == NULL || inflateInit(&u->zs) != Z_OK) {
        free(b);
        free(u);
        return error_set(err, "out of memory decompressing a message");
    }
    ber_init(b, in, "the compressed message", err);
    u->out = out;
    u->max = max_out;
    int rc = unz_parse(b, u);
    if (written != NULL)
        *written = u->written;
    inflateEnd(&u->zs);
    free(u);
    free(b);
    return rc;
}
