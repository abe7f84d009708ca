/*
 * http1.c - HTTP/1.1 request framing over bytes (see http1.h): Debian's
 * http-parser (2.9, built without HTTP_PARSER_STRICT) parses; this file
 * keeps the head, decodes the body and refuses what that build accepts
 * but RFC 9112 (or plain caution) does not:
 *
 *   - a header name with a character that is not a token character, in
 *     particular white space before the colon ("Content-Length : 5",
 *     which the library frames by while a lookup of "Content-Length"
 *     would miss it);
 *   - obsolete line folding (a header line starting with SP or HTAB);
 *   - control characters in the request line or a header value, bytes
 *     >= 0x80 in the request line, a request line that is not exactly
 *     METHOD SP TARGET SP VERSION, a CR not followed by LF;
 *   - HTTP versions other than 1.0 and 1.1;
 *   - a Transfer-Encoding other than one "chunked" (501), and any
 *     Transfer-Encoding in an HTTP/1.0 request (400);
 *   - an HTTP/1.1 request without exactly one Host (HTTP/1.0: at most one);
 *   - chunked framing that build lets through: any two bytes after chunk
 *     data taken for its CRLF, any byte after a chunk size's CR taken for
 *     LF, white space in trailer names, chunk lines of any length.
 * The library itself refuses Content-Length together with
 * Transfer-Encoding, repeated Content-Length, and bad chunk sizes.
 *
 * The raw-byte checks are two small state machines that only reject: one
 * over the head bytes, one over the bytes of a chunked body, each run on
 * the bytes before the library sees them; the header checks run once the
 * library has the whole head. Trailer fields of a chunked body are parsed
 * by the library and dropped here: they never join the header table, so
 * nothing can authenticate or frame by a trailer.
 *
 * Must never: allocate past max_head for a head; hand out a header value
 * that the library did not frame the same way; quote request bytes in an
 * error text; touch a socket, a clock or a global (the library's
 * max-header-size setting is the listener's business).
 */
#include "net/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <http_parser.h>

#define HTTP1_MAX_BLANK 4           /* CR/LF bytes allowed before a request */
#define HTTP1_FIRST_CAP 1024        /* head buffer before it grows */

/* States of the raw head scanner. */
enum { SCAN_START, SCAN_REQLINE, SCAN_REQLINE_CR, SCAN_LINE, SCAN_NAME,
       SCAN_VALUE, SCAN_VALUE_CR, SCAN_END_CR, SCAN_DONE };

/* States of the chunked-body scanner. */
enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
       CH_TLINE, CH_TNAME, CH_TVALUE, CH_TVALUE_LF, CH_END_LF, CH_DONE };

/* Pieces of the head as the library hands them over. */
enum { PIECE_NONE, PIECE_URL, PIECE_NAME, PIECE_VALUE };

struct http1 {
    http_parser hp;
    int scan;                       /* SCAN_* */
    int spaces, blank;              /* in / before the request line */
    int chunk;                      /* CH_* */
    int digits;                     /* of the chunk size */
    uint64_t left;                  /* chunk size, then data bytes to come */
    size_t line;                    /* bytes of a chunk line / the trailers */
    char *buf;                      /* the head, NUL-separated pieces */
    size_t len, cap, max;
    size_t url, name[HTTP1_MAX_HEADERS], value[HTTP1_MAX_HEADERS];
    int n, last;                    /* headers kept; last piece kind */
    bool started, too_big, head_done, message_done, keep_alive, chunked;
    int64_t content_length;
    char *out;                      /* body output of the current call */
    size_t out_len, out_cap;
    int status;                     /* of an error */
    const char *why;
};

/* ---- errors ------------------------------------------------------------------- */

static int http1_fail(struct http1 *h, int status, const char *why)
{
    if (h->status == 0) {           /* the first reason wins */
        h->status = status;
        h->why = why;
    }
    return HTTP1_ERROR;
}

int http1_error_status(const struct http1 *h)
{
    return h->status ? h->status : 400;
}

const char *http1_error(const struct http1 *h)
{
    return h->why ? h->why : "malformed request";
}

/* ---- the raw head scanner ------------------------------------------------------- */

static bool http1_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || (ch != '\0' && strchr("!#$%&'*+-.^_`|~",
                                                             ch) != NULL);
}

static bool http1_ctl(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

static int http1_scan_start(struct http1 *h, unsigned char ch)
{
    if (ch == '\r' || ch == '\n') {
        if (++h->blank > HTTP1_MAX_BLANK)
            return http1_fail(h, 400, "too many empty lines before the "
                              "request line");
        return 0;
    }
    h->started = true;
    h->scan = SCAN_REQLINE;
    if (ch == ' ')
        return http1_fail(h, 400, "the request line starts with a space");
    return 1;                       /* scan ch again as a request line byte */
}

static int http1_reqline_end(struct http1 *h)
{
    if (h->spaces != 2)
        return http1_fail(h, 400, "the request line is not METHOD SP "
                          "TARGET SP VERSION");
    h->scan = SCAN_LINE;
    return 0;
}

static int http1_scan_reqline(struct http1 *h, unsigned char ch)
{
    if (ch == '\r') {
        h->scan = SCAN_REQLINE_CR;
    } else if (ch == '\n') {
        return http1_reqline_end(h);
    } else if (ch == ' ') {
        h->spaces++;
    } else if (http1_ctl(ch) || ch >= 0x80) {
        return http1_fail(h, 400, "a control character or non-ASCII byte "
                          "in the request line");
    }
    return 0;
}

static int http1_scan_line(struct http1 *h, unsigned char ch)
{
    if (ch == '\r') {
        h->scan = SCAN_END_CR;
    } else if (ch == '\n') {
        h->scan = SCAN_DONE;
    } else if (ch == ' ' || ch == '\t') {
        return http1_fail(h, 400, "a header line starts with white space "
                          "(obsolete line folding is not accepted)");
    } else if (http1_tchar(ch)) {
        h->scan = SCAN_NAME;
    } else {
        return http1_fail(h, 400, "a header name is empty or holds a "
                          "character that is not allowed");
    }
    return 0;
}

static int http1_scan_byte(struct http1 *h, unsigned char ch)
{
    switch (h->scan) {
    case SCAN_START:
        return http1_scan_start(h, ch);
    case SCAN_REQLINE:
        return http1_scan_reqline(h, ch);
    case SCAN_LINE:
        return http1_scan_line(h, ch);
    case SCAN_NAME:
        if (ch == ':')
            h->scan = SCAN_VALUE;
        else if (!http1_tchar(ch))
            return http1_fail(h, 400, "a header name holds a character "
                              "that is not allowed (no space before ':')");
        return 0;
    case SCAN_VALUE:
        if (ch == '\r')
            h->scan = SCAN_VALUE_CR;
        else if (ch == '\n')
            h->scan = SCAN_LINE;
        else if (ch != '\t' && http1_ctl(ch))
            return http1_fail(h, 400, "a control character in a header "
                              "value");
        return 0;
    case SCAN_REQLINE_CR:
        if (ch != '\n')
            return http1_fail(h, 400, "a CR not followed by LF");
        return http1_reqline_end(h);
    case SCAN_VALUE_CR:
        if (ch != '\n')
            return http1_fail(h, 400, "a CR not followed by LF");
        h->scan = SCAN_LINE;
        return 0;
    default:                        /* SCAN_END_CR */
        if (ch != '\n')
            return http1_fail(h, 400, "a CR not followed by LF");
        h->scan = SCAN_DONE;
        return 0;
    }
}

/* Check the head bytes in data (up to the end of the head). 0 or -1. */
static int http1_scan(struct http1 *h, const char *data, size_t n)
{
    for (size_t i = 0; i < n && h->scan != SCAN_DONE; i++) {
        int rc = http1_scan_byte(h, (unsigned char)data[i]);
        if (rc == 1)                /* the first byte of the request line */
            rc = http1_scan_byte(h, (unsigned char)data[i]);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- the chunked-body scanner ----------------------------------------------------- */

static int http1_hex(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The chunk-size line: 1*HEXDIG [ext] CRLF (ext: anything but CTLs). */
static int http1_chunk_size_byte(struct http1 *h, unsigned char ch)
{
    int v = http1_hex(ch);
    if (h->chunk == CH_SIZE && v >= 0) {
        if (h->left >= (UINT64_C(1) << 59))
            return http1_fail(h, 400, "a chunk size is too large");
        h->digits++;
        h->left = h->left * 16 + (uint64_t)v;
    } else if (h->chunk == CH_SIZE && h->digits > 0 &&
               (ch == ';' || ch == ' ' || ch == '\t')) {
        h->chunk = CH_EXT;
    } else if (ch == '\r' && (h->chunk == CH_EXT || h->digits > 0)) {
        h->chunk = CH_SIZE_LF;
    } else if (h->chunk == CH_EXT && (ch == '\t' || !http1_ctl(ch))) {
        return 0;
    } else {
        return http1_fail(h, 400, "malformed chunk size line");
    }
    return 0;
}

/* The trailer section: field lines, then an empty line, all CRLF. */
static int http1_trailer_byte(struct http1 *h, unsigned char ch)
{
    switch (h->chunk) {
    case CH_TLINE:
        if (ch == '\r')
            h->chunk = CH_END_LF;
        else if (http1_tchar(ch))
            h->chunk = CH_TNAME;
        else
            return http1_fail(h, 400, "malformed trailer field");
        return 0;
    case CH_TNAME:
        if (ch == ':')
            h->chunk = CH_TVALUE;
        else if (!http1_tchar(ch))
            return http1_fail(h, 400, "malformed trailer field name");
        return 0;
    default:                        /* CH_TVALUE */
        if (ch == '\r')
            h->chunk = CH_TVALUE_LF;
        else if (ch != '\t' && http1_ctl(ch))
            return http1_fail(h, 400, "a control character in a trailer");
        return 0;
    }
}

/* One byte of chunked framing (not of chunk data). 0 or -1. */
static int http1_chunk_byte(struct http1 *h, unsigned char ch)
{
    int next;
    if (++h->line > h->max)
        return http1_fail(h, 400, "a chunk line or the trailers are too "
                          "long");
    switch (h->chunk) {
    case CH_SIZE:
    case CH_EXT:
        return http1_chunk_size_byte(h, ch);
    case CH_SIZE_LF:
        next = h->left == 0 ? CH_TLINE : CH_DATA;
        break;
    case CH_DATA_CR:
        if (ch != '\r')
            return http1_fail(h, 400, "chunk data not followed by CRLF");
        h->chunk = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        next = CH_SIZE;
        break;
    case CH_TVALUE_LF:
        next = CH_TLINE;
        break;
    case CH_END_LF:
        next = CH_DONE;
        break;
    default:
        return http1_trailer_byte(h, ch);
    }
    if (ch != '\n')
        return http1_fail(h, 400, "a CR not followed by LF in a chunked "
                          "body");
    if (next == CH_SIZE || next == CH_DATA)
        h->line = 0;
    if (next == CH_SIZE)
        h->digits = 0;
    h->chunk = next;
    return 0;
}

/* Check the bytes of a chunked body (up to its end). 0 or -1. */
static int http1_chunk_scan(struct http1 *h, const char *data, size_t n)
{
    for (size_t i = 0; i < n && h->chunk != CH_DONE; i++) {
        if (h->chunk == CH_DATA) {  /* data bytes: only counted */
            size_t k = h->left < n - i ? (size_t)h->left : n - i;
            h->left -= k;
            i += k - 1;
            if (h->left == 0)
                h->chunk = CH_DATA_CR;
        } else if (http1_chunk_byte(h, (unsigned char)data[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- the head (library callbacks) ------------------------------------------------ */

static int http1_grow(struct http1 *h, size_t need)
{
    if (need <= h->cap)
        return 0;
    if (need > h->max) {
        h->too_big = true;
        return -1;
    }
    size_t cap = h->cap;
    while (cap < need)
        cap *= 2;
    if (cap > h->max)
        cap = h->max;
    char *b = realloc(h->buf, cap);
    if (b == NULL)
        return -1;
    h->buf = b;
    h->cap = cap;
    return 0;
}

/* End the current piece: trailing white space of a value dropped, NUL. */
static void http1_piece_end(struct http1 *h)
{
    if (h->last == PIECE_VALUE)
        while (h->len > h->value[h->n - 1] &&
               (h->buf[h->len - 1] == ' ' || h->buf[h->len - 1] == '\t'))
            h->len--;
    h->buf[h->len++] = '\0';        /* room kept by http1_put */
}

/* Start a piece of kind. -1 when there are too many headers. */
static int http1_piece_start(struct http1 *h, int kind)
{
    if (h->last != PIECE_NONE)
        http1_piece_end(h);
    if (kind == PIECE_URL) {
        h->url = h->len;
    } else if (kind == PIECE_NAME) {
        if (h->n == HTTP1_MAX_HEADERS) {
            h->too_big = true;
            return -1;
        }
        h->name[h->n] = h->len;
    } else if (h->last == PIECE_NAME) {
        h->value[h->n++] = h->len;
    } else {
        return -1;                  /* a value without a name */
    }
    h->last = kind;
    return 0;
}

/* Append a piece of kind; a new piece starts when the kind changes.
 * Pieces after the head (chunked trailers) are dropped. */
static int http1_put(http_parser *p, int kind, const char *at, size_t n)
{
    struct http1 *h = p->data;
    if (h->head_done)
        return 0;
    if (http1_grow(h, h->len + n + 2) < 0)
        return -1;
    if (h->last != kind && http1_piece_start(h, kind) < 0)
        return -1;
    memcpy(h->buf + h->len, at, n);
    h->len += n;
    return 0;
}

static int http1_on_url(http_parser *p, const char *at, size_t n)
{
    return http1_put(p, PIECE_URL, at, n);
}

static int http1_on_field(http_parser *p, const char *at, size_t n)
{
    return http1_put(p, PIECE_NAME, at, n);
}

static int http1_on_value(http_parser *p, const char *at, size_t n)
{
    return http1_put(p, PIECE_VALUE, at, n);
}

static int http1_count(const struct http1 *h, const char *name,
                       const char **first)
{
    int k = 0;
    *first = NULL;
    for (int i = 0; i < h->n; i++) {
        if (strcasecmp(h->buf + h->name[i], name) == 0) {
            if (k++ == 0)
                *first = h->buf + h->value[i];
        }
    }
    return k;
}

/* The checks that need the whole head. 0 or -1. */
static int http1_head_rules(struct http1 *h)
{
    const http_parser *p = &h->hp;
    const char *te, *host;
    if (p->http_major != 1 || p->http_minor > 1)
        return http1_fail(h, 400, "only HTTP/1.0 and HTTP/1.1 are "
                          "supported");
    int hosts = http1_count(h, "Host", &host);
    if (hosts > 1 || (hosts == 0 && p->http_minor == 1))
        return http1_fail(h, 400, "an HTTP/1.1 request needs exactly one "
                          "Host header");
    int tes = http1_count(h, "Transfer-Encoding", &te);
    if (tes > 0 && p->http_minor == 0)
        return http1_fail(h, 400, "Transfer-Encoding is not allowed in "
                          "HTTP/1.0");
    if (tes > 1 || (tes == 1 && strcasecmp(te, "chunked") != 0))
        return http1_fail(h, 501, "only Transfer-Encoding: chunked is "
                          "supported");
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > INT64_MAX)
        return http1_fail(h, 400, "the Content-Length is too large");
    return 0;
}

static int http1_on_headers_complete(http_parser *p)
{
    struct http1 *h = p->data;
    if (h->last == PIECE_NONE || h->len + 1 > h->cap)
        return -1;
    http1_piece_end(h);
    h->last = PIECE_NONE;
    if (http1_head_rules(h) < 0)
        return -1;
    h->head_done = true;
    h->chunked = (p->flags & F_CHUNKED) != 0;
    h->content_length = (!h->chunked && (p->flags & F_CONTENTLENGTH))
                        ? (int64_t)p->content_length : -1;
    h->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    http_parser_pause(&h->hp, 1);   /* the body is the caller's next step */
    return 0;
}

static int http1_on_body(http_parser *p, const char *at, size_t n)
{
    struct http1 *h = p->data;
    if (h->out_len + n > h->out_cap)
        return -1;                  /* cannot happen: input <= cap */
    memcpy(h->out + h->out_len, at, n);
    h->out_len += n;
    return 0;
}

static int http1_on_message_complete(http_parser *p)
{
    struct http1 *h = p->data;
    h->message_done = true;
    http_parser_pause(p, 1);        /* a pipelined request stays unparsed */
    return 0;
}

/* ---- life cycle -------------------------------------------------------------------- */

static const http_parser_settings http1_settings = {
    .on_url = http1_on_url,
    .on_header_field = http1_on_field,
    .on_header_value = http1_on_value,
    .on_headers_complete = http1_on_headers_complete,
    .on_body = http1_on_body,
    .on_message_complete = http1_on_message_complete,
};

struct http1 *http1_new(size_t max_head)
{
    struct http1 *h = max_head >= 64 ? calloc(1, sizeof(*h)) : NULL;
    if (h == NULL)
        return NULL;
    h->max = max_head + 2;          /* + the NULs ending the last pieces */
    h->cap = h->max < HTTP1_FIRST_CAP ? h->max : HTTP1_FIRST_CAP;
    h->buf = malloc(h->cap);
    if (h->buf == NULL) {
        free(h);
        return NULL;
    }
    http1_reset(h);
    return h;
}

void http1_free(struct http1 *h)
{
    if (h == NULL)
        return;
    free(h->buf);
    free(h);
}

void http1_reset(struct http1 *h)
{
    http_parser_init(&h->hp, HTTP_REQUEST);
    h->hp.data = h;
    h->scan = SCAN_START;
    h->spaces = h->blank = 0;
    h->chunk = CH_SIZE;
    h->digits = 0;
    h->left = 0;
    h->line = 0;
    h->len = 0;
    h->url = 0;
    h->n = 0;
    h->last = PIECE_NONE;
    h->started = h->too_big = h->head_done = h->message_done = false;
    h->keep_alive = h->chunked = false;
    h->content_length = -1;
    h->out = NULL;
    h->out_len = h->out_cap = 0;
    h->status = 0;
    h->why = NULL;
}

bool http1_started(const struct http1 *h)
{
    return h->started;
}

bool http1_message_done(const struct http1 *h)
{
    return h->message_done;
}

/* ---- feeding ------------------------------------------------------------------------ */

/* Run the library over data. Bytes consumed; -1 on a parse error. */
static ssize_t http1_exec(struct http1 *h, const char *data, size_t n)
{
    if (n == 0)
        return 0;                   /* 0 bytes would mean EOF to the library */
    if (HTTP_PARSER_ERRNO(&h->hp) == HPE_PAUSED)
        http_parser_pause(&h->hp, 0);
    size_t used = http_parser_execute(&h->hp, &http1_settings, data, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&h->hp);
    if (e == HPE_OK || e == HPE_PAUSED)
        return (ssize_t)used;
    if (h->too_big || e == HPE_HEADER_OVERFLOW)
        http1_fail(h, 431, "the request head is too large");
    else
        http1_fail(h, 400, http_errno_description(e));
    return -1;
}

int http1_head(struct http1 *h, const char *data, size_t n, size_t *used)
{
    *used = 0;
    if (h->status)
        return HTTP1_ERROR;
    if (h->head_done)
        return HTTP1_DONE;
    if (http1_scan(h, data, n) < 0)
        return HTTP1_ERROR;
    ssize_t k = http1_exec(h, data, n);
    if (k < 0)
        return HTTP1_ERROR;
    *used = (size_t)k;
    if (!h->head_done)
        return HTTP1_MORE;
    if (h->scan != SCAN_DONE)       /* the two must agree on the head's end */
        return http1_fail(h, 400, "malformed request head");
    /* The library stops on the head's last LF; that byte ends the head,
     * finishes a bodiless message and checks Transfer-Encoding. */
    k = http1_exec(h, data + *used, 1);
    if (k < 0)
        return HTTP1_ERROR;
    *used += (size_t)k;
    return HTTP1_DONE;
}

int http1_body(struct http1 *h, const char *data, size_t n, size_t *used,
               char *out, size_t cap, size_t *got)
{
    *used = *got = 0;
    if (h->status || !h->head_done)
        return HTTP1_ERROR;
    if (h->message_done)
        return HTTP1_DONE;
    size_t feed = n < cap ? n : cap;    /* body bytes <= input bytes */
    if (h->chunked && http1_chunk_scan(h, data, feed) < 0)
        return HTTP1_ERROR;
    h->out = out;
    h->out_cap = cap;
    h->out_len = 0;
    ssize_t k = http1_exec(h, data, feed);
    h->out = NULL;
    if (k < 0)
        return HTTP1_ERROR;         /* nothing of a broken body is delivered */
    *got = h->out_len;
    *used = (size_t)k;
    if (h->chunked && h->message_done != (h->chunk == CH_DONE))
        return http1_fail(h, 400, "malformed chunked body");
    return h->message_done ? HTTP1_DONE : HTTP1_MORE;
}

/* ---- the parsed head ------------------------------------------------------------------ */

const char *http1_method(const struct http1 *h)
{
    return h->head_done ? http_method_str((enum http_method)h->hp.method)
                        : NULL;
}

const char *http1_target(const struct http1 *h)
{
    return h->head_done ? h->buf + h->url : NULL;
}

const char *http1_header(const struct http1 *h, const char *name)
{
    const char *v;
    if (!h->head_done)
        return NULL;
    return http1_count(h, name, &v) > 0 ? v : NULL;
}

int64_t http1_content_length(const struct http1 *h)
{
    return h->content_length;
}

bool http1_chunked(const struct http1 *h)
{
    return h->chunked;
}

bool http1_keep_alive(const struct http1 *h)
{
    return h->head_done && h->keep_alive;
}

void http1_lib_version(char *buf, size_t n)
{
    unsigned long v = http_parser_version();
    snprintf(buf, n, "%lu.%lu.%lu", (v >> 16) & 255, (v >> 8) & 255,
             v & 255);
}
