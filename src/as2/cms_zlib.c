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

#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>
#include <zlib.h>

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

/* Deflate one input block (flush = Z_FINISH at the end) to chunks. */
static int z_deflate(z_stream *zs, int flush, unsigned char *obuf, BIO *out,
                     struct error *err)
{
    do {
        zs->next_out = obuf;
        zs->avail_out = CMS_CHUNK;
        int ret = deflate(zs, flush);
        if (ret == Z_STREAM_ERROR)
            return error_set(err, "cannot compress: zlib failed");
        size_t n = CMS_CHUNK - zs->avail_out;
        if (n > 0 && z_chunk(out, obuf, n, err) != 0)
            return -1;
    } while (zs->avail_out == 0);
    return 0;
}

static int z_compress(z_stream *zs, BIO *in, BIO *out, unsigned char *ibuf,
                      unsigned char *obuf, struct error *err)
{
    if (cms_write(out, zhead, sizeof(zhead), "cannot write the compressed "
                  "message", err) != 0)
        return -1;
    for (;;) {
        long r = cms_read(in, ibuf, CMS_CHUNK, err);
        if (r < 0)
            return -1;
        zs->next_in = ibuf;
        zs->avail_in = (uInt)r;
        if (z_deflate(zs, r == 0 ? Z_FINISH : Z_NO_FLUSH, obuf, out, err) != 0)
            return -1;
        if (r == 0)
            break;
    }
    return cms_write(out, ztail, sizeof(ztail), "cannot write the compressed "
                     "message", err);
}

int as2_cms_compress(BIO *in, BIO *out, int level, struct error *err)
{
    if (level < -1 || level > 9)
        return error_set(err, "cannot compress: level %d is not 0-9", level);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit(&zs, level == -1 ? 6 : level) != Z_OK)
        return error_set(err, "cannot compress: zlib failed to start");
    unsigned char *ibuf = malloc(CMS_CHUNK), *obuf = malloc(CMS_CHUNK);
    int rc = ibuf == NULL || obuf == NULL
             ? error_set(err, "out of memory compressing a message")
             : z_compress(&zs, in, out, ibuf, obuf, err);
    deflateEnd(&zs);
    free(ibuf);
    free(obuf);
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
