/*
 * server.c - the admin and partner HTTPS listeners: sockets, the TLS
 * handshake, HTTP/1.1 framing (Debian's http-parser), the route table,
 * the request wrapper and the response helpers of server.h.
 *
 * Owns, per listener: the listening socket, the SSL_CTX (configured by
 * tls.c only), one acceptor thread, http_threads worker threads with a
 * bounded queue of accepted sockets, and the per-address connection
 * counts. Shared by both: the defender and one store connection (metrics,
 * bans, the audit of bans) under a mutex.
 *
 * The order of defences: at accept(), before any TLS work, a banned
 * address or one over max_conns_per_address is closed at once; a full
 * queue closes too. A worker then gives the TLS handshake and the request
 * head request_timeout_ms together, the head at most max_header_bytes
 * (431), and the wait for a next request on a kept-alive connection
 * idle_timeout_ms. Every socket wait is a poll() of at most 200 ms, so a
 * stop is noticed quickly. Slow clients hold one worker each, at most
 * max_conns_per_address of them per address.
 *
 * Must never: log a header value, a cookie, a query string or a body;
 * answer on the partner listener anything not routed there; read a body
 * past its cap; loosen the TLS policy of tls.c.
 */
#include "net/server.h"
#include "net/url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "audit/audit.h"
#include "core/wharf.h"
#include "net/defender.h"
#include "net/tls.h"
#include "store/net_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"

#define NET_ADDR_MAX 64
#define NET_EXTRA_HEADERS 1024
#define NET_MAX_HEADERS 64
#define NET_BUF 16384               /* socket read window */
#define NET_SLICE_MS 200            /* longest single poll() */
#define NET_QUEUE_PER_THREAD 2      /* accepted sockets waiting, per worker */

struct net_route_entry {
    char method[16];                /* "*" = any */
    char prefix[256];
    size_t plen;
    int64_t max_body;
    net_handler handler;
    void *user_data;
};

struct net_conn_count {
    char addr[NET_ADDR_MAX];
    int n;
};

struct net_pending {                /* an accepted socket for a worker */
    int fd;
    char addr[NET_ADDR_MAX];
    int64_t accepted_ms;
};

struct net_listener {
    struct net_server *srv;
    enum net_which which;
    const char *name;               /* "admin" "partner" */
    char spec[128];                 /* as configured */
    char host[INET_ADDRSTRLEN + 1];
    int port;
    char client_ca[4200];
    struct net_route_entry routes[NET_MAX_ROUTES];
    int nroutes;
    SSL_CTX *ctx;
    int fd;                         /* listening socket, -1 when closed */
    int wake[2];                    /* stop pipe for the acceptor */
    pthread_t acceptor;
    pthread_t *workers;
    int nworkers;
    bool acceptor_started, sync_ready;
    pthread_mutex_t mu;             /* queue and counts */
    pthread_cond_t cv;
    struct net_pending *queue;
    int qcap, qhead, qlen;
    struct net_conn_count *conns;   /* addresses with open connections */
    int nconns, conns_cap;
};

struct net_server {
    struct wharf *w;
    struct net_listener l[NET_LISTENERS];
    char cert[4200], key[4200];
    struct defender *def;
    pthread_mutex_t store_mu;
    struct store *st;               /* metrics, bans, audit (under store_mu) */
    int64_t start_ms;
    bool started, bound;
    atomic_bool stopping;
    net_health_fn health;           /* /healthz; NULL: always ok */
    void *health_arg;
};

/* The request head as http-parser hands it over, NUL-separated in buf. */
struct net_head {
    char *buf;
    size_t len, cap;
    size_t url, name[NET_MAX_HEADERS], value[NET_MAX_HEADERS];
    int n;
    int last;                       /* 0 none, 1 url, 2 field, 3 value */
    bool too_big, complete, message_done;
};

/* One TLS connection, served by one worker from accept to close. */
struct net_conn {
    struct net_listener *l;
    int fd;
    SSL *ssl;
    char addr[NET_ADDR_MAX];
    char subject[512];              /* verified client certificate, or "" */
    bool cert_failure_counted;
    http_parser hp;
    struct net_head head;
    char in[NET_BUF];               /* bytes read, not yet parsed: [off, len) */
    size_t off, len;
    char *stash;                    /* body bytes parsed, not yet delivered */
    size_t stash_off, stash_len;
    int64_t deadline;               /* of the current wait (mono ms) */
};

struct net_request {
    struct net_conn *c;
    struct net_listener *l;
    const char *method;
    char *path;                     /* decoded, dot segments removed */
    const char *query;
    int64_t declared;               /* Content-Length, -1 when none */
    bool chunked, expect_continue;
    int64_t cap, body_read;
    bool body_eof, too_large, replied, close, io_error;
    int status;
    size_t extra_len;
    char extra[NET_EXTRA_HEADERS];
    char query_buf[2048];
};

static http_parser_settings net_hp_settings;

/* ---- listen addresses ------------------------------------------------------ */

int net_listen_parse(const char *spec, char *host, size_t hostsz, int *port,
                     struct error *err)
{
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec)
        return error_set(err, "'%s' is not IPv4:PORT (e.g. 127.0.0.1:8443)",
                         spec);
    size_t hn = (size_t)(colon - spec);
    char h[INET_ADDRSTRLEN + 1];
    struct in_addr a;
    if (hn >= sizeof(h))
        return error_set(err, "'%s': not an IPv4 address", spec);
    memcpy(h, spec, hn);
    h[hn] = '\0';
    if (inet_pton(AF_INET, h, &a) != 1)
        return error_set(err, "'%s': '%s' is not an IPv4 address (host "
                         "names and IPv6 are not supported)", spec, h);
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end != '\0' || p < 1 || p > 65535)
        return error_set(err, "'%s': the port must be 1 to 65535", spec);
    if (hn >= hostsz)
        return error_set(err, "'%s': address too long", spec);
    memcpy(host, h, hn + 1);
    *port = (int)p;
    return 0;
}

/* ---- per-address connection counts (under l->mu) --------------------------- */

static bool net_conn_acquire(struct net_listener *l, const char *addr)
{
    int max = l->srv->w->conf.max_conns_per_address, free_i = -1;
    for (int i = 0; i < l->nconns; i++) {
        if (l->conns[i].n == 0 && free_i < 0)
            free_i = i;
        if (l->conns[i].n > 0 && strcmp(l->conns[i].addr, addr) == 0) {
            if (l->conns[i].n >= max)
                return false;
            l->conns[i].n++;
            return true;
        }
    }
    if (free_i < 0 && l->nconns < l->conns_cap)
        free_i = l->nconns++;
    if (free_i < 0)
        return false;
    snprintf(l->conns[free_i].addr, NET_ADDR_MAX, "%s", addr);
    l->conns[free_i].n = 1;
    return true;
}

static void net_conn_release(struct net_listener *l, const char *addr)
{
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->nconns; i++) {
        if (l->conns[i].n > 0 && strcmp(l->conns[i].addr, addr) == 0) {
            l->conns[i].n--;
            break;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

/* ---- socket waits and TLS I/O ---------------------------------------------------- */

/* Wait until fd is ready for ev, c->deadline passes (-1) or the server
 * stops (-1). */
static int net_wait(struct net_conn *c, short ev)
{
    for (;;) {
        if (atomic_load(&c->l->srv->stopping))
            return -1;
        int64_t left = c->deadline - time_mono_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = c->fd, .events = ev };
        int rc = poll(&p, 1, (int)(left < NET_SLICE_MS ? left : NET_SLICE_MS));
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* After an SSL call returned rc: 0 to call again (after waiting), -1 to
 * give up. */
static int net_tls_retry(struct net_conn *c, int rc)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return net_wait(c, POLLIN);
    case SSL_ERROR_WANT_WRITE:
        return net_wait(c, POLLOUT);
    default:
        return -1;
    }
}

static int net_tls_handshake(struct net_conn *c)
{
    for (;;) {
        ERR_clear_error();
        int rc = SSL_accept(c->ssl);
        if (rc == 1)
            return 0;
        if (net_tls_retry(c, rc) < 0) {
            unsigned long e = ERR_peek_error();
            if (e)
                log_debug("%s listener: TLS handshake with %s failed: %s",
                          c->l->name, c->addr, ERR_reason_error_string(e));
            ERR_clear_error();
            return -1;
        }
    }
}

/* > 0 bytes, 0 closed by the peer, -1 error or timeout. */
static ssize_t net_tls_read(struct net_conn *c, void *buf, size_t n)
{
    for (;;) {
        size_t got = 0;
        ERR_clear_error();
        int rc = SSL_read_ex(c->ssl, buf, n, &got);
        if (rc == 1)
            return (ssize_t)got;
        if (SSL_get_error(c->ssl, rc) == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (net_tls_retry(c, rc) < 0) {
            ERR_clear_error();
            return -1;
        }
    }
}

static int net_tls_write(struct net_conn *c, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        size_t put = 0;
        ERR_clear_error();
        int rc = SSL_write_ex(c->ssl, p, n, &put);
        if (rc == 1) {
            p += put;
            n -= put;
        } else if (net_tls_retry(c, rc) < 0) {
            ERR_clear_error();
            return -1;
        }
    }
    return 0;
}

/* Read more bytes into c->in (compacting it first). > 0, 0 at EOF, -1. */
static ssize_t net_fill(struct net_conn *c)
{
    if (c->off > 0) {
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof(c->in))
        return -1;
    ssize_t got = net_tls_read(c, c->in + c->len, sizeof(c->in) - c->len);
    if (got > 0)
        c->len += (size_t)got;
    return got;
}

/* ---- the request head (http-parser callbacks) ------------------------------------ */

/* Append a piece of kind (1 url, 2 header name, 3 header value) to the
 * head; a new piece starts when the kind changes. -1 when too big. */
static int net_head_put(struct net_head *h, int kind, const char *at,
                        size_t n)
{
    if (h->last != kind) {
        if (h->last != 0 && h->len < h->cap)
            h->buf[h->len++] = '\0';
        if (kind == 2 && h->n == NET_MAX_HEADERS)
            h->too_big = true;
        else if (kind == 1)
            h->url = h->len;
        else if (kind == 2)
            h->name[h->n] = h->len;
        else if (kind == 3 && h->last == 2)
            h->value[h->n++] = h->len;
        else
            return -1;              /* a value without a name */
        h->last = kind;
    }
    if (h->too_big || h->len + n + 1 > h->cap) {
        h->too_big = true;
        return -1;
    }
    memcpy(h->buf + h->len, at, n);
    h->len += n;
    return 0;
}

static int net_on_url(http_parser *p, const char *at, size_t n)
{
    return net_head_put(&((struct net_conn *)p->data)->head, 1, at, n);
}

static int net_on_field(http_parser *p, const char *at, size_t n)
{
    return net_head_put(&((struct net_conn *)p->data)->head, 2, at, n);
}

static int net_on_value(http_parser *p, const char *at, size_t n)
{
    return net_head_put(&((struct net_conn *)p->data)->head, 3, at, n);
}

static int net_on_headers_complete(http_parser *p)
{
    struct net_head *h = &((struct net_conn *)p->data)->head;
    if (h->len >= h->cap)
        return -1;
    h->buf[h->len] = '\0';
    h->complete = true;
    http_parser_pause(p, 1);        /* the body is read by the handler */
    return 0;
}

static int net_on_body(http_parser *p, const char *at, size_t n)
{
    struct net_conn *c = p->data;
    if (c->stash_off > 0) {
        memmove(c->stash, c->stash + c->stash_off, c->stash_len);
        c->stash_off = 0;
    }
    if (c->stash_len + n > NET_BUF)
        return -1;
    memcpy(c->stash + c->stash_len, at, n);
    c->stash_len += n;
    return 0;
}

static int net_on_message_complete(http_parser *p)
{
    ((struct net_conn *)p->data)->head.message_done = true;
    http_parser_pause(p, 1);        /* a pipelined request stays unparsed */
    return 0;
}

static void net_parser_setup(void)
{
    net_hp_settings.on_url = net_on_url;
    net_hp_settings.on_header_field = net_on_field;
    net_hp_settings.on_header_value = net_on_value;
    net_hp_settings.on_headers_complete = net_on_headers_complete;
    net_hp_settings.on_body = net_on_body;
    net_hp_settings.on_message_complete = net_on_message_complete;
}

/* Feed the unparsed window to the parser. 0, or -1 on a parse error. */
static int net_parse(struct net_conn *c)
{
    if (c->len == c->off)
        return 0;                   /* never 0 bytes: that means EOF */
    if (HTTP_PARSER_ERRNO(&c->hp) == HPE_PAUSED)
        http_parser_pause(&c->hp, 0);
    size_t n = http_parser_execute(&c->hp, &net_hp_settings, c->in + c->off,
                                   c->len - c->off);
    c->off += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->hp);
    return (e == HPE_OK || e == HPE_PAUSED) ? 0 : -1;
}

enum { NET_HEAD_OK = 1, NET_HEAD_EOF = 0, NET_HEAD_FAIL = -1,
       NET_HEAD_TOO_BIG = -2, NET_HEAD_BAD = -3 };

static void net_head_reset(struct net_conn *c)
{
    struct net_head *h = &c->head;
    h->len = 0;
    h->n = 0;
    h->last = 0;
    h->too_big = h->complete = h->message_done = false;
    c->stash_off = c->stash_len = 0;
    http_parser_init(&c->hp, HTTP_REQUEST);
    c->hp.data = c;
}

/* Read and parse one request head. c->deadline is the wait for its first
 * byte; from that byte on, the whole head gets request_timeout_ms (the
 * first request of a connection shares its deadline with the handshake). */
static int net_read_head(struct net_conn *c, bool first)
{
    net_head_reset(c);
    bool started = false;
    for (;;) {
        if (c->len > c->off) {
            if (!started && !first)
                c->deadline = time_mono_ms() +
                              c->l->srv->w->conf.request_timeout_ms;
            started = true;
            int rc = net_parse(c);
            if (c->head.too_big ||
                HTTP_PARSER_ERRNO(&c->hp) == HPE_HEADER_OVERFLOW)
                return NET_HEAD_TOO_BIG;
            if (rc < 0)
                return NET_HEAD_BAD;
            if (c->head.complete)
                return NET_HEAD_OK;
        }
        if (c->len == sizeof(c->in) && c->off == 0)
            return NET_HEAD_TOO_BIG;
        ssize_t got = net_fill(c);
        if (got <= 0)
            return (got == 0 && !started) ? NET_HEAD_EOF : NET_HEAD_FAIL;
    }
}

static const char *net_head_get(const struct net_head *h, const char *name)
{
    for (int i = 0; i < h->n; i++)
        if (strcasecmp(h->buf + h->name[i], name) == 0)
            return h->buf + h->value[i];
    return NULL;
}

/* ---- responses ---------------------------------------------------------------- */

/* Parse what is left of the message from the window, dropping body bytes
 * nobody read. True when the whole message has been consumed. */
static bool net_finish_message(struct net_conn *c)
{
    c->stash_off = c->stash_len = 0;
    while (!c->head.message_done && c->len > c->off) {
        if (net_parse(c) < 0)
            return false;
        c->stash_off = c->stash_len = 0;
    }
    return c->head.message_done;
}

static bool net_keep_alive(struct net_request *r)
{
    return !r->close && !r->io_error &&
           r->l->srv->w->conf.idle_timeout_ms > 0 &&
           http_should_keep_alive(&r->c->hp) && net_finish_message(r->c);
}

static void net_http_date(char *out, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static const char *net_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error"
                                                       : "Server Error";
    }
}

/* Status line and headers. length < 0: the body ends when the connection
 * closes. */
static int net_send_head(struct net_request *r, int status, const char *ctype,
                         int64_t length)
{
    if (r->replied)
        return -1;
    if (length < 0)
        r->close = true;
    bool keep = net_keep_alive(r);
    r->close = !keep;
    char date[64], len[48] = "", head[2560];
    net_http_date(date, sizeof(date));
    if (length >= 0)
        snprintf(len, sizeof(len), "Content-Length: %lld\r\n",
                 (long long)length);
    int n = snprintf(head, sizeof(head),
        "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n%s"
        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
        "Strict-Transport-Security: max-age=31536000\r\n"
        "Connection: %s\r\n%.*s\r\n",
        status, net_reason(status), date, ctype, len,
        keep ? "keep-alive" : "close", (int)r->extra_len, r->extra);
    r->replied = true;
    r->status = status;
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    return net_reply_write(r, head, (size_t)n);
}

int net_reply_header(struct net_request *r, const char *name,
                     const char *value)
{
    if (r->replied || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return -1;
    size_t room = sizeof(r->extra) - r->extra_len;
    int n = snprintf(r->extra + r->extra_len, room, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= room) {
        r->extra[r->extra_len] = '\0';
        return -1;
    }
    r->extra_len += (size_t)n;
    return 0;
}

int net_reply_start(struct net_request *r, int status,
                    const char *content_type, int64_t length)
{
    return net_send_head(r, status, content_type, length);
}

int net_reply_write(struct net_request *r, const void *buf, size_t n)
{
    if (r->io_error)
        return -1;
    r->c->deadline = time_mono_ms() + r->l->srv->w->conf.request_timeout_ms;
    if (n > 0 && net_tls_write(r->c, buf, n) < 0) {
        r->io_error = r->close = true;
        return -1;
    }
    return 0;
}

int net_reply(struct net_request *r, int status, const char *content_type,
              const void *body, size_t len)
{
    if (net_send_head(r, status, content_type, (int64_t)len) < 0)
        return -1;
    return net_reply_write(r, body, len);
}

int net_reply_json(struct net_request *r, int status, const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL)
        return net_reply_error(r, 500, "internal", "cannot encode the reply");
    int rc = net_reply(r, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

int net_reply_error(struct net_request *r, int status, const char *code,
                    const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code,
                          "message", msg);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    static const char fallback[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
    int rc = text ? net_reply(r, status, "application/json", text,
                              strlen(text))
                  : net_reply(r, status, "application/json", fallback,
                              sizeof(fallback) - 1);
    free(text);
    return rc;
}

/* ---- the request ------------------------------------------------------------- */

const char *net_req_method(const struct net_request *r)
{
    return r->method;
}

const char *net_req_path(const struct net_request *r)
{
    return r->path;
}

const char *net_req_query(const struct net_request *r)
{
    return r->query;
}

const char *net_req_header(const struct net_request *r, const char *name)
{
    return net_head_get(&r->c->head, name);
}

const char *net_req_address(const struct net_request *r)
{
    return r->c->addr;
}

enum net_which net_req_listener(const struct net_request *r)
{
    return r->l->which;
}

const char *net_req_client_subject(const struct net_request *r)
{
    return r->c->subject[0] ? r->c->subject : NULL;
}

int64_t net_req_body_length(const struct net_request *r)
{
    return r->declared;
}

void net_req_auth_failure(struct net_request *r)
{
    defender_failure(r->l->srv->def, r->c->addr);
}

/* Parse until body bytes are stashed or the message ends. 0 or -1. */
static int net_body_more(struct net_request *r)
{
    struct net_conn *c = r->c;
    if (r->expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        r->expect_continue = false;
        c->deadline = time_mono_ms() + r->l->srv->w->conf.request_timeout_ms;
        if (net_tls_write(c, cont, sizeof(cont) - 1) < 0)
            return -1;
    }
    while (c->stash_len == 0 && !c->head.message_done) {
        c->deadline = time_mono_ms() + r->l->srv->w->conf.request_timeout_ms;
        if (c->len > c->off) {
            if (net_parse(c) < 0)
                return -1;
        } else if (net_fill(c) <= 0) {
            return -1;
        }
    }
    return 0;
}

ssize_t net_body_read(struct net_request *r, void *buf, size_t n)
{
    struct net_conn *c = r->c;
    if (r->too_large)
        return NET_BODY_TOO_LARGE;
    if (r->io_error)
        return NET_BODY_ERROR;
    if (r->body_eof || n == 0)
        return 0;
    if (net_body_more(r) < 0) {
        r->io_error = r->close = true;
        return NET_BODY_ERROR;
    }
    if (c->stash_len == 0) {
        r->body_eof = true;
        return 0;
    }
    size_t k = n < c->stash_len ? n : c->stash_len;
    if (r->body_read + (int64_t)k > r->cap) {
        r->too_large = r->close = true;
        return NET_BODY_TOO_LARGE;
    }
    memcpy(buf, c->stash + c->stash_off, k);
    c->stash_off += k;
    c->stash_len -= k;
    r->body_read += (int64_t)k;
    return (ssize_t)k;
}

int net_body_read_all(struct net_request *r, char **out, size_t *len,
                      int *too_large, struct error *err)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (too_large)
        *too_large = 0;
    for (ssize_t got = 1; buf && got > 0;) {
        if (n == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (bigger == NULL)
                break;
            buf = bigger;
            cap *= 2;
        }
        got = net_body_read(r, buf + n, cap - n);
        if (got > 0) {
            n += (size_t)got;
        } else if (got < 0) {
            free(buf);
            if (too_large)
                *too_large = got == NET_BODY_TOO_LARGE;
            if (got == NET_BODY_TOO_LARGE)
                return error_set(err, "request body is larger than %lld "
                                 "bytes", (long long)r->cap);
            return error_set(err, "cannot read the request body");
        }
    }
    if (buf == NULL || !r->body_eof) {
        free(buf);
        return error_set(err, "out of memory reading the request body");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* ---- routing -------------------------------------------------------------------- */

static bool net_prefix_match(const struct net_route_entry *rt,
                             const char *path)
{
    if (strncmp(path, rt->prefix, rt->plen) != 0)
        return false;
    return path[rt->plen] == '\0' || path[rt->plen] == '/' ||
           rt->prefix[rt->plen - 1] == '/';
}

/* The longest route matching path and method; *path_known tells whether
 * some route matched the path with another method (405). */
static const struct net_route_entry *
net_route_find(const struct net_listener *l, const char *method,
               const char *path, bool *path_known)
{
    const struct net_route_entry *best = NULL;
    *path_known = false;
    for (int i = 0; i < l->nroutes; i++) {
        const struct net_route_entry *rt = &l->routes[i];
        if (!net_prefix_match(rt, path))
            continue;
        if (strcmp(rt->method, "*") != 0 && strcmp(rt->method, method) != 0) {
            *path_known = true;
            continue;
        }
        if (best == NULL || rt->plen > best->plen)
            best = rt;
    }
    return best;
}

int net_route_capped(struct net_listener *l, const char *method,
                     const char *path_prefix, int64_t max_body,
                     net_handler handler, void *user_data)
{
    if (l == NULL || l->srv->started || handler == NULL || method == NULL ||
        path_prefix == NULL || path_prefix[0] != '/' || max_body < 0 ||
        strlen(method) >= sizeof(l->routes[0].method) ||
        strlen(path_prefix) >= sizeof(l->routes[0].prefix) ||
        l->nroutes == NET_MAX_ROUTES)
        return -1;
    for (int i = 0; i < l->nroutes; i++)
        if (strcmp(l->routes[i].method, method) == 0 &&
            strcmp(l->routes[i].prefix, path_prefix) == 0)
            return -1;
    struct net_route_entry *rt = &l->routes[l->nroutes++];
    snprintf(rt->method, sizeof(rt->method), "%s", method);
    snprintf(rt->prefix, sizeof(rt->prefix), "%s", path_prefix);
    rt->plen = strlen(path_prefix);
    rt->max_body = max_body;
    rt->handler = handler;
    rt->user_data = user_data;
    return 0;
}

int net_route(struct net_listener *l, const char *method,
              const char *path_prefix, net_handler handler, void *user_data)
{
    if (l == NULL)
        return -1;
    return net_route_capped(l, method, path_prefix,
                            l->srv->w->conf.max_body_bytes, handler,
                            user_data);
}

/* ---- dispatch --------------------------------------------------------------------- */

/* Method, path, query, body framing of the parsed head. -1: malformed. */
static int net_req_from_head(struct net_request *r, struct net_conn *c)
{
    const char *url = c->head.buf + c->head.url;
    struct http_parser_url u;
    http_parser_url_init(&u);
    r->method = http_method_str((enum http_method)c->hp.method);
    if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return -1;
    r->path = strndup(url + u.field_data[UF_PATH].off,
                      u.field_data[UF_PATH].len);
    if (r->path == NULL || net_url_decode(r->path) < 0 || r->path[0] != '/')
        return -1;
    net_path_normalize(r->path);
    if (u.field_set & (1 << UF_QUERY)) {
        size_t qn = u.field_data[UF_QUERY].len;
        if (qn >= sizeof(r->query_buf))
            return -1;
        memcpy(r->query_buf, url + u.field_data[UF_QUERY].off, qn);
        r->query_buf[qn] = '\0';
        r->query = r->query_buf;
    }
    const char *cl = net_head_get(&c->head, "Content-Length");
    const char *ex = net_head_get(&c->head, "Expect");
    r->declared = cl ? strtoll(cl, NULL, 10) : -1;
    r->chunked = (c->hp.flags & F_CHUNKED) != 0;
    r->expect_continue = ex && strcasecmp(ex, "100-continue") == 0;
    r->body_eof = !r->chunked && r->declared <= 0;
    return 0;
}

static bool net_refuse_banned(struct net_request *r)
{
    int64_t left;
    if (!defender_check(r->l->srv->def, r->c->addr, &left))
        return false;
    char secs[32];
    snprintf(secs, sizeof(secs), "%lld", (long long)((left + 999) / 1000));
    net_reply_header(r, "Retry-After", secs);
    r->close = true;
    net_reply_error(r, 429, "banned", "too many failed attempts from this "
                    "address; retry after %s seconds", secs);
    return true;
}

static void net_route_request(struct net_request *r)
{
    bool path_known;
    const struct net_route_entry *rt =
        net_route_find(r->l, r->method, r->path, &path_known);
    r->cap = rt ? rt->max_body : r->l->srv->w->conf.max_body_bytes;
    if (r->declared > r->cap) {
        r->close = true;
        net_reply_error(r, 413, "too_large", "request body is larger than "
                        "%lld bytes", (long long)r->cap);
        return;
    }
    if (rt == NULL) {
        if (path_known)
            net_reply_error(r, 405, "method_not_allowed",
                            "%s is not allowed here", r->method);
        else
            net_reply_error(r, 404, "not_found", "no such resource");
        return;
    }
    rt->handler(r, rt->user_data);
    if (r->replied)
        return;
    if (r->too_large)
        net_reply_error(r, 413, "too_large", "request body is larger than "
                        "%lld bytes", (long long)r->cap);
    else
        net_reply_error(r, 500, "internal", "the request failed");
}

/* Serve one parsed request. True when the connection may stay open. */
static bool net_handle(struct net_conn *c)
{
    struct net_request *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return false;
    int64_t t0 = time_mono_ms();
    r->c = c;
    r->l = c->l;
    if (net_req_from_head(r, c) < 0) {
        r->close = true;
        net_reply_error(r, 400, "bad_request", "malformed request target");
    } else if (!net_refuse_banned(r)) {
        net_route_request(r);
    }
    log_debug("%s listener: %s %s %s -> %d (%lld ms)", c->l->name, c->addr,
              r->method ? r->method : "-", r->path ? r->path : "-", r->status,
              (long long)(time_mono_ms() - t0));
    bool keep = !r->close && !r->io_error;
    free(r->path);
    free(r);
    return keep;
}

/* An error reply before there is a request (head too big, malformed). */
static void net_reject_head(struct net_conn *c, int status, const char *code,
                            const char *msg)
{
    struct net_request *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->c = c;
    r->l = c->l;
    r->close = true;
    c->deadline = time_mono_ms() + 1000;
    net_reply_error(r, status, code, "%s", msg);
    log_debug("%s listener: %s -> %d (%s)", c->l->name, c->addr, status, code);
    free(r);
}

static void net_requests(struct net_conn *c)
{
    for (bool first = true;; first = false) {
        if (!first)
            c->deadline = time_mono_ms() + c->l->srv->w->conf.idle_timeout_ms;
        int rc = net_read_head(c, first);
        if (rc == NET_HEAD_TOO_BIG) {
            char msg[96];
            snprintf(msg, sizeof(msg), "request head is larger than %d bytes",
                     c->l->srv->w->conf.max_header_bytes);
            net_reject_head(c, 431, "headers_too_large", msg);
        } else if (rc == NET_HEAD_BAD) {
            net_reject_head(c, 400, "bad_request",
                            http_errno_description(HTTP_PARSER_ERRNO(&c->hp)));
        } else if (rc == NET_HEAD_FAIL && c->len > c->off) {
            log_debug("%s listener: %s cut off: request head not complete "
                      "within %d ms", c->l->name, c->addr,
                      c->l->srv->w->conf.request_timeout_ms);
        }
        if (rc != NET_HEAD_OK || !net_handle(c))
            return;
    }
}

static void net_peer_subject(struct net_conn *c)
{
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    if (x && SSL_get_verify_result(c->ssl) == X509_V_OK)
        X509_NAME_oneline(X509_get_subject_name(x), c->subject,
                          sizeof(c->subject));
}

static struct net_conn *net_conn_new(struct net_listener *l,
                                     const struct net_pending *p)
{
    size_t cap = (size_t)l->srv->w->conf.max_header_bytes;
    struct net_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->l = l;
    c->fd = p->fd;
    snprintf(c->addr, sizeof(c->addr), "%s", p->addr);
    c->stash = malloc(NET_BUF);
    c->head.buf = malloc(cap + 1);
    c->head.cap = cap;
    c->ssl = SSL_new(l->ctx);
    if (!c->stash || !c->head.buf || !c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
        !SSL_set_app_data(c->ssl, c)) {
        SSL_free(c->ssl);
        free(c->stash);
        free(c->head.buf);
        free(c);
        return NULL;
    }
    return c;
}

static void net_serve(struct net_listener *l, const struct net_pending *p)
{
    struct net_conn *c = net_conn_new(l, p);
    if (c == NULL)
        return;
    c->deadline = p->accepted_ms + l->srv->w->conf.request_timeout_ms;
    if (net_tls_handshake(c) == 0) {
        net_peer_subject(c);
        net_requests(c);
        SSL_shutdown(c->ssl);       /* one try, never waits */
    }
    SSL_free(c->ssl);
    free(c->stash);
    free(c->head.buf);
    free(c);
}

/* Mutual TLS: an untrusted client certificate is an authentication
 * failure of its address (counted once per connection). */
static int net_verify(int ok, X509_STORE_CTX *xs)
{
    if (ok)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(
        xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct net_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    if (c && !c->cert_failure_counted) {
        c->cert_failure_counted = true;
        log_info("%s listener: client certificate from %s refused: %s",
                 c->l->name, c->addr, X509_verify_cert_error_string(
                     X509_STORE_CTX_get_error(xs)));
        defender_failure(c->l->srv->def, c->addr);
    }
    return 0;
}
/* ---- built-in routes ------------------------------------------------------------- */

static int net_healthz(struct net_request *r, void *ud)
{
    struct net_server *s = ud;
    static const char ok[] = "{\"status\":\"ok\"}";
    int healthy = 1;
    json_t *report = s->health ? s->health(s->health_arg, &healthy) : NULL;
    if (report == NULL)
        return net_reply(r, 200, "application/json", ok, sizeof(ok) - 1);
    int rc = net_reply_json(r, healthy ? 200 : 503, report);
    json_decref(report);
    return rc;
}

void net_server_set_health(struct net_server *s, net_health_fn fn, void *arg)
{
    s->health = fn;
    s->health_arg = arg;
}

/* ---- bans: audit, log, persist ---------------------------------------------------- */

static void net_on_ban(void *arg, const struct defender_ban *b)
{
    struct net_server *s = arg;
    long long secs = (long long)(b->duration_ms / 1000);
    log_warn("banned %s for %lld s (ban %d, after %d failed "
             "authentications)", b->address, secs, b->level, b->failures);
    char detail[128];
    snprintf(detail, sizeof(detail), "seconds=%lld level=%d failures=%d",
             secs, b->level, b->failures);
    struct audit_event e = {
        .actor = "system", .address = b->address, .action = "ban",
        .target = b->address, .detail = detail,
    };
    struct store_ban row = {
        .address = b->address, .failures = b->failures, .level = b->level,
        .banned_until = b->until_ms, .updated_at = time_now_ms(),
    };
    struct error err = {0};
    pthread_mutex_lock(&s->store_mu);
    if (s->st == NULL || store_ban_put(s->st, &row, &err) < 0 ||
        audit_append(s->st, s->w->vault, &e, &err) < 0)
        log_error("ban of %s not recorded: %s", b->address,
                  err.msg[0] ? err.msg : "no database");
    pthread_mutex_unlock(&s->store_mu);
}

static int net_restore_ban(const struct store_ban *b, void *arg)
{
    defender_restore(arg, b->address, b->level, b->banned_until);
    return 0;
}

/* Bans of earlier runs: running ones stay, levels are remembered for a
 * day after their ban ended; older rows are deleted. */
static int net_load_bans(struct net_server *s, struct error *err)
{
    int64_t horizon = time_now_ms() - 86400000LL;
    if (store_ban_prune(s->st, horizon, err) < 0 ||
        store_ban_each(s->st, horizon, net_restore_ban, s->def, err) < 0)
        return -1;
    return 0;
}

/* ---- threads: one acceptor and http_threads workers per listener ------------------ */

static void net_block_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);       /* a write to a closed peer gives EPIPE */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *net_worker(void *arg)
{
    struct net_listener *l = arg;
    net_block_sigpipe();
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (l->qlen == 0 && !atomic_load(&l->srv->stopping))
            pthread_cond_wait(&l->cv, &l->mu);
        if (atomic_load(&l->srv->stopping)) {
            pthread_mutex_unlock(&l->mu);
            return NULL;
        }
        struct net_pending p = l->queue[l->qhead];
        l->qhead = (l->qhead + 1) % l->qcap;
        l->qlen--;
        pthread_mutex_unlock(&l->mu);
        net_serve(l, &p);
        close(p.fd);
        net_conn_release(l, p.addr);
    }
}

/* A new connection: refused at once (before any TLS work) when its
 * address is banned, holds max_conns_per_address already, or every worker
 * is busy and the queue is full. */
static void net_admit(struct net_listener *l, int fd, const char *addr)
{
    if (defender_check(l->srv->def, addr, NULL)) {
        log_debug("%s listener: refused banned address %s", l->name, addr);
        close(fd);
        return;
    }
    const char *why = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->qlen == l->qcap)
        why = "all workers busy and the queue full";
    else if (!net_conn_acquire(l, addr))
        why = "over max_conns_per_address";
    else {
        struct net_pending *p = &l->queue[(l->qhead + l->qlen) % l->qcap];
        p->fd = fd;
        p->accepted_ms = time_mono_ms();
        snprintf(p->addr, sizeof(p->addr), "%s", addr);
        l->qlen++;
        pthread_cond_signal(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    if (why) {
        log_debug("%s listener: refused %s: %s", l->name, addr, why);
        close(fd);
    }
}

static void net_accept_ready(struct net_listener *l)
{
    for (;;) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(l->fd, (struct sockaddr *)&sa, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                log_warn("%s listener: accept: %s", l->name, strerror(errno));
                usleep(50000);
            }
            return;
        }
        char addr[NET_ADDR_MAX];
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof(addr))) {
            close(fd);
            continue;
        }
        net_admit(l, fd, addr);
    }
}

static void *net_acceptor(void *arg)
{
    struct net_listener *l = arg;
    net_block_sigpipe();
    for (;;) {
        struct pollfd p[2] = { { .fd = l->fd, .events = POLLIN },
                               { .fd = l->wake[0], .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents || atomic_load(&l->srv->stopping))
            break;
        if (p[0].revents & POLLIN)
            net_accept_ready(l);
    }
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------- */

static int net_abs_path(const struct wharf *w, const char *p, char *out,
                        size_t n, struct error *err)
{
    int k = p[0] == '/' ? snprintf(out, n, "%s", p)
                        : snprintf(out, n, "%s/%s", w->dir, p);
    if (k < 0 || (size_t)k >= n)
        return error_set(err, "path %s is too long", p);
    return 0;
}

static int net_listener_init(struct net_server *s, enum net_which which,
                             struct error *err)
{
    struct net_listener *l = &s->l[which];
    const struct wharf_conf *c = &s->w->conf;
    l->srv = s;
    l->which = which;
    l->name = which == NET_ADMIN ? "admin" : "partner";
    l->fd = l->wake[0] = l->wake[1] = -1;
    snprintf(l->spec, sizeof(l->spec), "%s",
             which == NET_ADMIN ? c->admin_listen : c->partner_listen);
    if (net_listen_parse(l->spec, l->host, sizeof(l->host), &l->port,
                         err) < 0)
        return -1;
    const char *ca = which == NET_ADMIN ? c->admin_client_ca
                                        : c->partner_client_ca;
    if (ca[0] && net_abs_path(s->w, ca, l->client_ca, sizeof(l->client_ca),
                              err) < 0)
        return -1;
    l->qcap = c->http_threads * NET_QUEUE_PER_THREAD;
    l->conns_cap = c->http_threads * (NET_QUEUE_PER_THREAD + 1) + 1;
    l->queue = calloc((size_t)l->qcap, sizeof(*l->queue));
    l->conns = calloc((size_t)l->conns_cap, sizeof(*l->conns));
    l->workers = calloc((size_t)c->http_threads, sizeof(*l->workers));
    if (!l->queue || !l->conns || !l->workers)
        return error_set(err, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->sync_ready = true;
    return 0;
}

static void net_defender_conf(const struct wharf_conf *c,
                              struct defender_conf *dc)
{
    defender_conf_defaults(dc);
    dc->ban_after = c->ban_after_failures;
    dc->ban_ms = (int64_t)c->ban_seconds * 1000;
    dc->window_ms = (int64_t)c->ban_window_seconds * 1000;
}

static struct defender *net_defender_new(struct net_server *s,
                                         struct error *err)
{
    struct defender_conf dc;
    net_defender_conf(&s->w->conf, &dc);
    struct defender_ops ops = { .on_ban = net_on_ban, .arg = s };
    return defender_new(&dc, &ops, err);
}

int net_server_reload_defender(struct net_server *s, struct error *err)
{
    struct defender_conf dc;
    net_defender_conf(&s->w->conf, &dc);
    return defender_set_conf(s->def, &dc, err);
}

struct net_server *net_server_new(struct wharf *w, struct error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, net_parser_setup);
    struct net_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    s->w = w;
    s->start_ms = time_now_ms();
    pthread_mutex_init(&s->store_mu, NULL);
    http_parser_set_max_header_size((uint32_t)w->conf.max_header_bytes);
    if (net_abs_path(w, w->conf.tls_cert, s->cert, sizeof(s->cert), err) < 0 ||
        net_abs_path(w, w->conf.tls_key, s->key, sizeof(s->key), err) < 0 ||
        net_listener_init(s, NET_ADMIN, err) < 0 ||
        net_listener_init(s, NET_PARTNER, err) < 0 ||
        (s->def = net_defender_new(s, err)) == NULL ||
        net_route(&s->l[NET_ADMIN], "GET", "/healthz", net_healthz, s) < 0) {
        if (err && err->msg[0] == '\0')
            error_set(err, "cannot set up the listeners");
        net_server_free(s);
        return NULL;
    }
    return s;
}

struct net_listener *net_listener(struct net_server *s, enum net_which which)
{
    return (s && (which == NET_ADMIN || which == NET_PARTNER)) ? &s->l[which]
                                                              : NULL;
}

struct defender *net_server_defender(struct net_server *s)
{
    return s->def;
}

static int net_tls_setup(struct net_listener *l, struct error *err)
{
    l->ctx = SSL_CTX_new(TLS_server_method());
    if (l->ctx == NULL)
        return error_openssl(err, "cannot create a TLS context");
    struct tls_server_opts o = {
        .cert_file = l->srv->cert, .key_file = l->srv->key,
        .client_ca_file = l->client_ca,
    };
    if (tls_server_configure(l->ctx, &o, err) < 0)
        return -1;
    if (l->client_ca[0])
        SSL_CTX_set_verify(l->ctx, SSL_CTX_get_verify_mode(l->ctx),
                           net_verify);
    return 0;
}

static int net_bind(struct net_listener *l, struct error *err)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)l->port) };
    inet_pton(AF_INET, l->host, &sa.sin_addr);
    int one = 1;
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0 ||
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(l->fd, 128) < 0)
        return error_errno(err, errno, "cannot listen on %s", l->spec);
    if (pipe2(l->wake, O_CLOEXEC) < 0)
        return error_errno(err, errno, "cannot create a pipe");
    return 0;
}

static int net_threads_start(struct net_listener *l, struct error *err)
{
    if (pthread_create(&l->acceptor, NULL, net_acceptor, l) != 0)
        return error_set(err, "cannot start the %s acceptor thread", l->name);
    l->acceptor_started = true;
    for (int i = 0; i < l->srv->w->conf.http_threads; i++) {
        if (pthread_create(&l->workers[i], NULL, net_worker, l) != 0)
            return error_set(err, "cannot start %s worker threads", l->name);
        l->nworkers++;
    }
    return 0;
}

static int net_listener_bind(struct net_listener *l, struct error *err)
{
    if (net_tls_setup(l, err) < 0 || net_bind(l, err) < 0) {
        error_prefix(err, "%s listener (%s_listen = %s)", l->name, l->name,
                     l->spec);
        return -1;
    }
    return 0;
}

static int net_listener_start(struct net_listener *l, struct error *err)
{
    if (net_threads_start(l, err) < 0) {
        error_prefix(err, "%s listener (%s_listen = %s)", l->name, l->name,
                     l->spec);
        return -1;
    }
    log_info("%s listener on https://%s/%s", l->name, l->spec,
             l->client_ca[0] ? " (client certificates required)" : "");
    return 0;
}

int net_server_bind(struct net_server *s, struct error *err)
{
    if (s->bound)
        return 0;
    s->bound = true;
    if (net_listener_bind(&s->l[NET_ADMIN], err) < 0 ||
        net_listener_bind(&s->l[NET_PARTNER], err) < 0)
        return -1;                  /* net_server_free closes what opened */
    return 0;
}

int net_server_start(struct net_server *s, struct error *err)
{
    if (s->started)
        return error_set(err, "listeners already started");
    s->started = true;
    if (net_server_bind(s, err) < 0)
        return -1;
    s->st = store_open(s->w->db_path, err);
    if (s->st == NULL || net_load_bans(s, err) < 0 ||
        net_listener_start(&s->l[NET_ADMIN], err) < 0 ||
        net_listener_start(&s->l[NET_PARTNER], err) < 0)
        return -1;                  /* net_server_free stops what started */
    return 0;
}

static void net_listener_stop(struct net_listener *l)
{
    if (l->wake[1] >= 0 && write(l->wake[1], "x", 1) < 0)
        log_warn("%s listener: cannot wake the acceptor", l->name);
    if (l->acceptor_started)
        pthread_join(l->acceptor, NULL);
    pthread_mutex_lock(&l->mu);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nworkers; i++)
        pthread_join(l->workers[i], NULL);
    for (; l->qlen > 0; l->qlen--, l->qhead = (l->qhead + 1) % l->qcap)
        close(l->queue[l->qhead].fd);
    for (int i = 0; i < 2; i++)
        if (l->wake[i] >= 0)
            close(l->wake[i]);
    if (l->fd >= 0)
        close(l->fd);
    SSL_CTX_free(l->ctx);
}

void net_server_free(struct net_server *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, true);
    for (int i = 0; i < NET_LISTENERS; i++) {
        struct net_listener *l = &s->l[i];
        if (l->sync_ready) {
            net_listener_stop(l);
            pthread_mutex_destroy(&l->mu);
            pthread_cond_destroy(&l->cv);
        }
        free(l->queue);
        free(l->conns);
        free(l->workers);
    }
    defender_free(s->def);
    store_close(s->st);
    pthread_mutex_destroy(&s->store_mu);
    free(s);
}
