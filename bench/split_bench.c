/*
 * split_bench.c - throughput of the streaming multipart splitter that
 * every received AS2 message goes through (as2/mime.h: mime_splitter),
 * with the SHA-256 its content feeds on the receiver (the signature's
 * digest), so that the cost of each call it makes is in the figure.
 *
 * Splits N MiB (argument, default 256) of one part, fed in 64 KiB chunks
 * as the receiver reads them, for two kinds of content: EDI (X12 segments,
 * one per line, an item code with a '-' in most lines) and random bytes.
 * Prints, per kind, `split_<kind>_MBps` (MB = 10^6 bytes), the calls per
 * MiB the splitter made, and `sha256_MBps`: SHA-256 alone over the same
 * bytes in the same chunks, the limit the split-and-digest rate tends to.
 * Owns its buffers; touches no file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "as2/mime.h"

#define BENCH_CHUNK 65536

struct sink {
    EVP_MD_CTX *md;
    size_t calls;
};

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_begin(void *ctx, size_t index, uint64_t offset,
                    struct error *err)
{
    (void)ctx; (void)index; (void)offset; (void)err;
    return 0;
}

static int on_data(void *ctx, const char *d, size_t n, struct error *err)
{
    struct sink *s = ctx;
    s->calls++;
    return EVP_DigestUpdate(s->md, d, n) == 1 ? 0
           : error_set(err, "SHA-256 failed");
}

static int on_end(void *ctx, struct error *err)
{
    (void)ctx; (void)err;
    return 0;
}

/* One multipart body of about mib MiB: a delimiter, the part, the close
 * delimiter. edi: X12 lines; else random bytes. *len set; caller frees. */
static char *make_body(size_t mib, int edi, size_t *len)
{
    size_t want = mib << 20, n = 0;
    char *b = malloc(want + 256);
    if (b == NULL)
        return NULL;
    n += (size_t)sprintf(b, "--b\r\nContent-Type: application/edi-x12\r\n\r\n");
    if (!edi && RAND_bytes((unsigned char *)b + n, (int)(want - n)) != 1) {
        free(b);
        return NULL;
    }
    for (unsigned r = 1; edi && n < want;) {
        r = r * 1103515245u + 12345u;
        n += (size_t)sprintf(b + n, "PO1*%u*%u*EA*%u.%02u**VP*WIDGET-%u*UP*"
                             "%012u~\n", r % 12 + 1, r % 50 * 6, r % 300,
                             r % 100, r % 700, r);
    }
    n = edi ? n : want;
    n += (size_t)sprintf(b + n, "\r\n--b--\r\n");
    *len = n;
    return b;
}

static int bench_kind(size_t mib, int edi)
{
    const char *kind = edi ? "edi" : "random";
    size_t len = 0;
    char *body = make_body(mib, edi, &len);
    struct sink s = { EVP_MD_CTX_new(), 0 };
    struct mime_splitter sp;
    struct error err = {0};
    const struct mime_splitter_cb cb = { on_begin, on_data, on_end };
    int rc = body && s.md && EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) &&
             mime_splitter_init(&sp, "b", &cb, &s, &err) == 0 ? 0 : -1;
    double t0 = bench_now();
    for (size_t at = 0; rc == 0 && at < len; at += BENCH_CHUNK)
        rc = mime_splitter_feed(&sp, body + at, len - at < BENCH_CHUNK
                                ? len - at : BENCH_CHUNK, &err);
    if (rc == 0)
        rc = mime_splitter_finish(&sp, &err);
    double split = bench_now() - t0;
    t0 = bench_now();
    for (size_t at = 0; rc == 0 && at < len; at += BENCH_CHUNK)
        EVP_DigestUpdate(s.md, body + at, len - at < BENCH_CHUNK
                         ? len - at : BENCH_CHUNK);
    double digest = bench_now() - t0;
    if (rc == 0)
        printf("split_%s_MBps %.0f\nsplit_%s_calls_per_MiB %.1f\n"
               "sha256_%s_MBps %.0f\n", kind, (double)len / split / 1e6,
               kind, (double)s.calls / (double)(len >> 20), kind,
               (double)len / digest / 1e6);
    else
        fprintf(stderr, "split_bench: %s: %s\n", kind,
                err.msg[0] ? err.msg : "out of memory");
    EVP_MD_CTX_free(s.md);
    free(body);
    return rc;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    if (mib == 0 || mib > 4096) {
        fprintf(stderr, "usage: split_bench [MiB, 1..4096]\n");
        return 2;
    }
    return bench_kind(mib, 1) == 0 && bench_kind(mib, 0) == 0 ? 0 : 1;
}
