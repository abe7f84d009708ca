/*
 * http1.h - HTTP/1.1 request framing over bytes (RFC 9112): the request
 * line, the header fields, the body (Content-Length or chunked) and the
 * keep-alive rule of each request on one connection. Debian's http-parser
 * does the parsing; http1.c adds the checks that library leaves out and
 * keeps chunked trailers out of the header table (see http1.c).
 *
 * Pure code over bytes: no sockets, no TLS, no threads, no clock. The
 * listener (server.c) feeds it the bytes it read; tests/fuzz/fuzz_http1.c
 * feeds it anything.
 *
 * Use, per connection:
 *   http1_new; then per request: http1_head until HTTP1_DONE, the
 *   accessors, http1_body until HTTP1_DONE, http1_keep_alive, http1_reset.
 * Bytes after the end of one request (pipelining) are left to the caller
 * (*used stops there) and fed again after http1_reset.
 */
#ifndef WHARF_NET_HTTP1_H
#define WHARF_NET_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes of http1_head and http1_body. */
#define HTTP1_MORE 0            /* every byte used; feed more */
#define HTTP1_DONE 1            /* the head (or the message) is complete */
#define HTTP1_ERROR (-1)        /* refuse: http1_error_status, then close */

/* Headers kept per request; more is refused with 431. */
#define HTTP1_MAX_HEADERS 64

struct http1;

/* A parser for the requests of one connection, each request head (request
 * line and header fields) at most max_head bytes. NULL when out of memory.
 * Caller owns; free with http1_free. */
struct http1 *http1_new(size_t max_head);
void http1_free(struct http1 *h);

/* Forget the current request: the next byte fed starts a new one. */
void http1_reset(struct http1 *h);

/* Parse n bytes of the request head. *used: how many of them belong to
 * the head (when HTTP1_DONE, the bytes from data + *used on are the body
 * or the next request). HTTP1_MORE: all used, the head is not complete;
 * HTTP1_DONE: the head is complete; HTTP1_ERROR: malformed or too big. */
int http1_head(struct http1 *h, const char *data, size_t n, size_t *used);

/* True once a byte of this request arrived (the empty lines a client may
 * send between requests do not count). */
bool http1_started(const struct http1 *h);

/* Decode body bytes of the current request into out (at most cap bytes).
 * *used: input bytes consumed; *got: body bytes written to out.
 * HTTP1_MORE: feed more (*got may be > 0); HTTP1_DONE: the message ended
 * (*used stops at its end); HTTP1_ERROR: malformed body framing (400).
 * Chunk extensions and trailer fields are read and dropped. */
int http1_body(struct http1 *h, const char *data, size_t n, size_t *used,
               char *out, size_t cap, size_t *got);

/* True when the whole current message (head and body) has been parsed. */
bool http1_message_done(const struct http1 *h);

/* ---- the parsed head (after http1_head gave HTTP1_DONE, until reset;
 * strings owned by h) ------------------------------------------------------ */

const char *http1_method(const struct http1 *h);
/* The request-target as sent (path and query, not decoded). */
const char *http1_target(const struct http1 *h);
/* The first header field of that name (case-insensitive), or NULL. */
const char *http1_header(const struct http1 *h, const char *name);
/* The Content-Length the body is framed by, or -1 (chunked, or none). */
int64_t http1_content_length(const struct http1 *h);
bool http1_chunked(const struct http1 *h);
/* Whether the connection may carry another request after this one
 * (HTTP/1.1 without "Connection: close", HTTP/1.0 with keep-alive, and
 * never after a request asking for an upgrade). */
bool http1_keep_alive(const struct http1 *h);

/* After HTTP1_ERROR: the status to answer (400, 431 or 501) and a short
 * static sentence saying why (never quotes the request). */
int http1_error_status(const struct http1 *h);
const char *http1_error(const struct http1 *h);

/* Debian's http-parser's version as it says at run time (R10), as
 * "MAJOR.MINOR.PATCH" into buf[0..n). */
void http1_lib_version(char *buf, size_t n);

#endif
