/*
 * fuzz_http1.c - libFuzzer target for the request framing of the HTTPS
 * listeners (src/net/http1.c): raw bytes as a client would send them on
 * one connection, fed in pieces whose size the first input byte picks
 * (1 byte, a few bytes, everything), head then body then the next
 * pipelined request, as server.c does. Besides the sanitizers it checks
 * the promises the listener relies on: no more bytes used than given, a
 * body never longer than the input it came from, a complete head always
 * has a method and a target, header values hold no CR, LF or NUL, a
 * chunked body has no Content-Length, an error always has a status of
 * 400, 431 or 501, and every call makes progress or stops.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http1.h"

#define FUZZ_HEAD_MAX 4096

static size_t piece(uint8_t mode, size_t left)
{
    size_t step = mode % 4 == 0 ? 1 : mode % 4 == 1 ? 7 : mode % 4 == 2
                  ? 100 : left;
    return step < left ? step : left;
}

static void check_head(const struct http1 *h)
{
    static const char *names[] = { "Host", "Content-Length",
                                   "Transfer-Encoding", "Authorization",
                                   "Expect", "Connection" };
    if (http1_method(h) == NULL || http1_target(h) == NULL)
        abort();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = http1_header(h, names[i]);
        if (v && strpbrk(v, "\r\n"))
            abort();
    }
    if (http1_chunked(h) && http1_content_length(h) != -1)
        abort();
    if (http1_content_length(h) < -1)
        abort();
}

static void check_error(const struct http1 *h)
{
    int s = http1_error_status(h);
    if ((s != 400 && s != 431 && s != 501) || http1_error(h) == NULL)
        abort();
}

/* One request from data; bytes used, or 0 to stop. */
static size_t one_request(struct http1 *h, const uint8_t *data, size_t n,
                          uint8_t mode)
{
    size_t off = 0, used = 0, got = 0;
    int rc = HTTP1_MORE;
    while (rc == HTTP1_MORE && off < n) {
        size_t k = piece(mode, n - off);
        rc = http1_head(h, (const char *)data + off, k, &used);
        if (used > k || (rc == HTTP1_MORE && used != k))
            abort();
        off += used;
    }
    if (rc != HTTP1_DONE) {
        if (rc == HTTP1_ERROR)
            check_error(h);
        return 0;
    }
    check_head(h);
    char out[64];
    while (off < n || http1_message_done(h)) {
        size_t k = piece(mode, n - off);
        rc = http1_body(h, (const char *)data + off, k, &used, out,
                        1 + mode % sizeof(out), &got);
        if (used > k || got > used || got > 1 + mode % sizeof(out))
            abort();
        off += used;
        if (rc == HTTP1_ERROR) {
            check_error(h);
            return 0;
        }
        if (rc == HTTP1_DONE)
            return http1_keep_alive(h) ? off : 0;
        if (used == 0)
            abort();                /* no progress with input left */
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    struct http1 *h = http1_new(FUZZ_HEAD_MAX);
    if (h == NULL)
        return 0;
    size_t off = 1;
    for (int i = 0; i < 16 && off < size; i++) {   /* pipelined requests */
        size_t used = one_request(h, data + off, size - off, mode);
        if (used == 0)
            break;
        off += used;
        http1_reset(h);
    }
    http1_free(h);
    return 0;
}
