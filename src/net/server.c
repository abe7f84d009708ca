/*
 * server.c - the admin and partner HTTPS listeners: sockets, the TLS
 * handshake, the event loop that holds connections until their request
 * head is complete, the worker threads that run the handlers, the route
 * table, the request wrapper and the response helpers of server.h. HTTP
 * framing (request line, headers, bodies, keep-alive, strictness) is
 * net/http1.c; this file never parses HTTP bytes itself.
 *
 * Owns, per listener: the listening socket, the SSL_CTX (configured by
 * tls.c only), one event-loop thread (epoll), http_threads worker threads,
 * and every connection (at most max_connections, at most
 * max_conns_per_address from one address). Shared by both: the defender
 * and one store connection (metrics, bans, the audit of bans) under a
 * mutex.
 *
 * A connection's life: the loop accepts it (non-blocking), refuses an
 * address outside the listener's allow-list (*_allow_from, net/allow.h),
 * a banned one or one over max_conns_per_address before any TLS work
 * (unless that address has a lingering or idle kept-alive connection: the
 * oldest of those is closed to make room),
 * runs the TLS handshake and reads the request head without blocking
 * (handshake + head within request_timeout_ms of accept, not restarted by
 * each byte; a later request on a kept-alive connection: idle_timeout_ms
 * for its first byte, then request_timeout_ms for its head). Only a
 * complete head goes to a worker, which runs the handler; the body is
 * read there (net_body_read) against an overall deadline: request_timeout_ms
 * plus one second per min_body_rate bytes delivered; a response is
 * written against the same rule. After the response the connection goes
 * back to the loop (kept alive) or is closed, lingering a moment so that
 * the client can read the answer. A connection over its deadline is
 * closed, after a 408 when a request had begun. When max_connections are
 * open, a new connection closes the oldest lingering, then idle, then
 * unfinished one held by the loop. So slow clients cost a little memory
 * each, never a worker.
 *
 * Threads: the loop thread owns the connection table and every connection
 * whose phase is NET_TLS, NET_HEAD or NET_LINGER; a connection in
 * NET_WORKER belongs to the worker that took it from the ready queue
 * until it is handed back (both queues under l->mu). Only the loop writes
 * a connection's phase. Closed connections are freed at the end of a loop
 * iteration, so a stale epoll event never reaches freed memory.
 *
 * TLS reads ahead (tls.c): OpenSSL may hold the next records, a whole
 * pipelined request among them, that the socket no longer shows. So the
 * loop and the workers always call SSL_read first and wait on the socket
 * only when OpenSSL asks for more (SSL_ERROR_WANT_READ); a connection
 * handed back kept alive is read at once, never just armed.
 *
 * Must never: log a header value, a cookie, a query string or a body;
 * answer on the partner listener anything not routed there; read a body
 * past its cap; block the loop thread on a client; loosen the TLS policy
 * of tls.c; wait on a socket before asking OpenSSL for what it holds.
 */
#include "net/server.h"
#include "net/http1.h"
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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "audit/audit.h"
#include "core/wharf.h"
#include "net/allow.h"
#include "net/defender.h"
#include "net/tls.h"
#include "store/net_store.h"
#include "store/store.h"
#include "util/fault.h"
#include "util/id.h"
#include "util/log.h"

#define NET_ADDR_MAX 64
#define NET_EXTRA_HEADERS 1024
#define NET_BUF 16384               /* socket read window */
#define NET_SLICE_MS 200            /* longest single poll() of a worker */
#define NET_SWEEP_MS 100            /* the loop's deadline check interval */
#define NET_STALL_MS 10000          /* a loop quiet this long is down */
#define NET_LINGER_MS 2000          /* reading what a client still sends */
#define NET_ACCEPT_BATCH 64         /* accepts per loop turn */
#define NET_EVENTS 64
#define NET_WRITE_PIECE 16384       /* a response is written in pieces */
#define NET_FD_RESERVE 256          /* descriptors left for everything else */

struct net_route_entry {
    char method[16];                /* "*" = any */
    char prefix[256];
    size_t plen;
    int64_t max_body;
    net_handler handler;
    void *user_data;
};

/* Who holds a connection, and what it waits for. */
enum net_phase {
    NET_TLS,                        /* loop: the handshake */
    NET_HEAD,                       /* loop: a request head (or idle) */
    NET_WORKER,                     /* ready queue or a worker */
    NET_LINGER,                     /* loop: answered, reading until EOF */
    NET_DEAD                        /* closed, freed at the end of the turn */
};

struct net_conn {
    struct net_listener *l;
    int fd;
    SSL *ssl;
    struct http1 *http;
    char addr[NET_ADDR_MAX];
    uint32_t ip;                    /* network order */
    char subject[512];              /* verified client certificate, or "" */
    bool cert_failure_counted;
    enum net_phase phase;           /* written by the loop only */
    int slot;                       /* index in l->conns */
    bool served;                    /* a request was answered on it */
    bool head_started;              /* a byte of the current request came */
    bool keep;                      /* the worker's verdict: next request */
    bool tls_failed, tls_closed;    /* no more TLS I/O / close_notify sent */
    int64_t since;                  /* start of the loop phase (mono ms) */
    int64_t deadline;               /* of the owner's current wait */
    struct net_conn *next_dead;
    char in[NET_BUF];               /* bytes read, not yet parsed: [off, len) */
    size_t off, len;
};

struct net_listener {
    struct net_server *srv;
    enum net_which which;
    const char *name;               /* "admin" "partner" */
    char spec[128];                 /* as configured */
    char host[INET_ADDRSTRLEN + 1];
    int port;
    char client_ca[4200];
    struct net_allow allow;         /* *_allow_from: who may connect */
    struct net_route_entry routes[NET_MAX_ROUTES];
    int nroutes;
    SSL_CTX *ctx;
    int fd;                         /* listening socket, -1 when closed */
    int ep;                         /* epoll of the loop, -1 */
    int wake;                       /* eventfd: stop, connections handed back */
    pthread_t loop;
    pthread_t *workers;
    int nworkers;
    bool loop_started, sync_ready;
    /* the loop thread's own */
    struct net_conn **conns;        /* every open connection */
    int nconns, max_conns, conns_cap;
    struct net_conn *dead;          /* closed this turn */
    bool accept_paused;
    int64_t accept_resume, accept_warned;
    /* liveness, for net_server_listener_down: the loop's last turn (mono
     * ms) and whether it ended while the server runs */
    _Atomic int64_t beat;
    atomic_bool loop_ended;
    /* connections closed at accept, by reason (GET /metrics) */
    _Atomic int64_t refused[NET_REFUSED_N];
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct net_conn **ready;        /* heads complete, for the workers */
    int rhead, rlen;
    struct net_conn **back;         /* from the workers, for the loop */
    int blen;
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
    pthread_t bans_sync;            /* shared store: other nodes' bans */
    bool bans_sync_started;
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
    int64_t body_start, reply_start;    /* mono ms, 0 = not yet */
    int64_t sent;                   /* response bytes written */
    int64_t write_until;            /* a cap on write waits, 0 = none */
    size_t extra_len;
    char extra[NET_EXTRA_HEADERS];
    char query_buf[2048];
};

static void net_conn_close(struct net_conn *c);
static void net_conn_linger(struct net_conn *c);

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


/* ---- socket waits and TLS I/O of a worker ---------------------------------------- */

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
 * give up. A fatal TLS error ends TLS on the connection. */
static int net_tls_retry(struct net_conn *c, int rc)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return net_wait(c, POLLIN);
    case SSL_ERROR_WANT_WRITE:
        return net_wait(c, POLLOUT);
    case SSL_ERROR_ZERO_RETURN:
        return -1;
    default:
        c->tls_failed = true;
        return -1;
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
    if (c->tls_failed || c->tls_closed)
        return -1;
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

/* Read more bytes into c->in (compacting it first), waiting until
 * c->deadline. > 0, 0 at EOF, -1. */
static ssize_t net_fill(struct net_conn *c)
{
    if (c->off > 0) {
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof(c->in) || c->tls_failed)
        return -1;
    ssize_t got = net_tls_read(c, c->in + c->len, sizeof(c->in) - c->len);
    if (got > 0)
        c->len += (size_t)got;
    return got;
}

/* The deadline of a body transfer that began at start and has moved
 * bytes so far: request_timeout_ms, plus a second per min_body_rate
 * bytes (mod_reqtimeout's MinRate): a fast transfer of any size goes
 * through, a trickle is cut. */
static int64_t net_rate_deadline(const struct net_listener *l, int64_t start,
                                 int64_t bytes)
{
    const struct wharf_conf *cf = &l->srv->w->conf;
    return start + cf->request_timeout_ms + bytes * 1000 / cf->min_body_rate;
}

/* ---- responses ---------------------------------------------------------------- */

/* Parse what is left of the message in the window, dropping body bytes
 * nobody read. True when the whole message has been consumed. */
static bool net_finish_message(struct net_conn *c)
{
    char scratch[4096];
    while (!http1_message_done(c->http) && c->len > c->off) {
        size_t used, got;
        int rc = http1_body(c->http, c->in + c->off, c->len - c->off, &used,
                            scratch, sizeof(scratch), &got);
        c->off += used;
        if (rc == HTTP1_ERROR || (used == 0 && rc != HTTP1_DONE))
            return false;
    }
    return http1_message_done(c->http);
}

static bool net_keep_alive(struct net_request *r)
{
    return !r->close && !r->io_error &&
           r->l->srv->w->conf.idle_timeout_ms > 0 &&
           http1_keep_alive(r->c->http) && net_finish_message(r->c);
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

/* Write n response bytes, in pieces, each wait bounded by the rate
 * deadline of the response (and by r->write_until when set). */
int net_reply_write(struct net_request *r, const void *buf, size_t n)
{
    const char *p = buf;
    if (r->io_error)
        return -1;
    if (r->reply_start == 0)
        r->reply_start = time_mono_ms();
    while (n > 0) {
        size_t k = n < NET_WRITE_PIECE ? n : NET_WRITE_PIECE;
        int64_t d = net_rate_deadline(r->l, r->reply_start, r->sent);
        r->c->deadline = r->write_until && r->write_until < d
                         ? r->write_until : d;
        if (net_tls_write(r->c, p, k) < 0) {
            r->io_error = r->close = true;
            return -1;
        }
        p += k;
        n -= k;
        r->sent += (int64_t)k;
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
    return http1_header(r->c->http, name);
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

/* ---- the request body --------------------------------------------------------- */

/* The body cannot be read any further: answer status (408 past its
 * deadline, 400 for broken framing; 0: none) unless a reply went out
 * already, waiting at most a second for the client to take it; the
 * connection closes. The handler's own reply is then refused. */
static ssize_t net_body_fail(struct net_request *r, int status,
                             const char *why)
{
    r->close = true;
    if (status && !r->replied) {
        r->write_until = time_mono_ms() + 1000;
        if (status == 408)
            net_reply_error(r, 408, "timeout", "%s", why);
        else
            net_reply_error(r, status, "bad_request", "%s", why);
    }
    log_debug("%s listener: %s: request body cut off: %s", r->l->name,
              r->c->addr, why);
    r->io_error = true;
    return NET_BODY_ERROR;
}

/* Send "100 Continue" once, before the first body read that needs it. */
static int net_continue(struct net_request *r)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!r->expect_continue)
        return 0;
    r->expect_continue = false;
    r->c->deadline = time_mono_ms() + r->l->srv->w->conf.request_timeout_ms;
    return net_tls_write(r->c, cont, sizeof(cont) - 1);
}

/* Wait for more body bytes within the body's deadline. 0, or a
 * NET_BODY_* code (the reason answered). */
static ssize_t net_body_wait(struct net_request *r)
{
    struct net_conn *c = r->c;
    c->deadline = net_rate_deadline(r->l, r->body_start, r->body_read);
    ssize_t got = net_fill(c);
    if (got > 0)
        return 0;
    if (got < 0 && !c->tls_failed && time_mono_ms() >= c->deadline &&
        !atomic_load(&r->l->srv->stopping)) {
        char why[128];
        snprintf(why, sizeof(why), "the request body was not received in "
                 "time (at least %d bytes per second after the first %d ms)",
                 r->l->srv->w->conf.min_body_rate,
                 r->l->srv->w->conf.request_timeout_ms);
        return net_body_fail(r, 408, why);
    }
    return net_body_fail(r, 0, got == 0 ? "the client closed the connection"
                                        : "read error");
}

/* Decode body bytes the window holds into buf: > 0 bytes, 0 when more
 * must be read first or the body ended (r->body_eof), or a NET_BODY_*
 * code. */
static ssize_t net_body_decode(struct net_request *r, void *buf, size_t n)
{
    struct net_conn *c = r->c;
    size_t used = 0, got = 0;
    int rc = http1_message_done(c->http) ? HTTP1_DONE : HTTP1_MORE;
    if (c->len > c->off)
        rc = http1_body(c->http, c->in + c->off, c->len - c->off, &used, buf,
                        n, &got);
    c->off += used;
    if (rc == HTTP1_ERROR || (rc == HTTP1_MORE && got == 0 && used == 0 &&
                              c->len > c->off))
        return net_body_fail(r, 400, http1_error(c->http));
    if (got > 0 && r->body_read + (int64_t)got > r->cap) {
        r->too_large = r->close = true;
        return NET_BODY_TOO_LARGE;
    }
    r->body_read += (int64_t)got;
    r->body_eof = got == 0 && rc == HTTP1_DONE;
    return (ssize_t)got;
}

ssize_t net_body_read(struct net_request *r, void *buf, size_t n)
{
    if (r->too_large)
        return NET_BODY_TOO_LARGE;
    if (r->io_error)
        return NET_BODY_ERROR;
    if (r->body_eof || n == 0)
        return 0;
    if (net_continue(r) < 0)
        return net_body_fail(r, 0, "cannot send 100 Continue");
    if (r->body_start == 0)
        r->body_start = time_mono_ms();
    for (;;) {
        ssize_t got = net_body_decode(r, buf, n);
        if (got != 0 || r->body_eof)
            return got;
        if (r->c->len == r->c->off && (got = net_body_wait(r)) < 0)
            return got;             /* else: framing bytes only, go on */
    }
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
    const char *url = http1_target(c->http);
    struct http_parser_url u;
    http_parser_url_init(&u);
    r->method = http1_method(c->http);
    if (url == NULL || r->method == NULL ||
        http_parser_parse_url(url, strlen(url), 0, &u) != 0 ||
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
    const char *ex = http1_header(c->http, "Expect");
    r->declared = http1_content_length(c->http);   /* what frames the body */
    r->chunked = http1_chunked(c->http);
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


/* ---- the event loop: connections until their request head is complete ------------ */

static void net_peer_subject(struct net_conn *c)
{
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    if (x && SSL_get_verify_result(c->ssl) == X509_V_OK)
        X509_NAME_oneline(X509_get_subject_name(x), c->subject,
                          sizeof(c->subject));
}

/* Wait for ev on c (one shot: the loop handles one event, then re-arms
 * or hands c on). */
static void net_loop_arm(struct net_conn *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev | EPOLLONESHOT, .data.ptr = c };
    if (epoll_ctl(c->l->ep, EPOLL_CTL_MOD, c->fd, &e) < 0) {
        log_warn("%s listener: epoll: %s", c->l->name, strerror(errno));
        net_conn_close(c);
    }
}

/* An SSL call of the loop returned rc: wait for what it wants (0), or
 * the connection is done and closed (-1). */
static int net_loop_tls_wait(struct net_conn *c, int rc, const char *what)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        net_loop_arm(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return 0;
    }
    if (e != SSL_ERROR_ZERO_RETURN) {
        unsigned long err = ERR_peek_error();
        if (err)
            log_debug("%s listener: %s with %s failed: %s", c->l->name, what,
                      c->addr, ERR_reason_error_string(err));
        c->tls_failed = true;
    }
    ERR_clear_error();
    net_conn_close(c);
    return -1;
}

/* Answer an error on a connection the loop holds, without waiting for
 * the client to read it, and close (lingering). */
static void net_loop_refuse(struct net_conn *c, int status, const char *code,
                            const char *msg)
{
    struct net_request *r = calloc(1, sizeof(*r));
    if (r) {
        r->c = c;
        r->l = c->l;
        r->close = true;
        r->write_until = time_mono_ms();    /* one try, no waiting */
        net_reply_error(r, status, code, "%s", msg);
        free(r);
    }
    log_debug("%s listener: %s -> %d (%s)", c->l->name, c->addr, status, code);
    net_conn_linger(c);
}

static void net_loop_refuse_head(struct net_conn *c)
{
    int status = http1_error_status(c->http);
    char msg[160];
    if (status == 431)
        snprintf(msg, sizeof(msg), "request head is larger than %d bytes",
                 c->l->srv->w->conf.max_header_bytes);
    else
        snprintf(msg, sizeof(msg), "%s", http1_error(c->http));
    net_loop_refuse(c, status, status == 431 ? "headers_too_large"
                    : status == 501 ? "not_implemented" : "bad_request", msg);
}

/* A complete head: hand c to the workers. */
static void net_loop_queue(struct net_conn *c)
{
    struct net_listener *l = c->l;
    c->phase = NET_WORKER;
    pthread_mutex_lock(&l->mu);
    l->ready[(l->rhead + l->rlen) % l->conns_cap] = c;
    l->rlen++;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* The first byte of a request on a kept-alive connection: from now on
 * its head has request_timeout_ms (the first request's deadline runs
 * from accept). */
static void net_loop_note_start(struct net_conn *c)
{
    if (c->head_started || !http1_started(c->http))
        return;
    c->head_started = true;
    if (c->served)
        c->deadline = time_mono_ms() +
                      c->l->srv->w->conf.request_timeout_ms;
}

/* Read what the socket has into c->in. 1 bytes read, 0 waiting (armed),
 * -1 closed. */
static int net_loop_read(struct net_conn *c)
{
    if (c->off > 0) {
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    size_t got = 0;
    ERR_clear_error();
    int rc = c->len < sizeof(c->in)
             ? SSL_read_ex(c->ssl, c->in + c->len, sizeof(c->in) - c->len,
                           &got) : 0;
    if (rc == 1) {
        c->len += got;
        return 1;
    }
    if (c->len == sizeof(c->in)) {  /* http1 always takes a head's bytes */
        net_conn_close(c);
        return -1;
    }
    return net_loop_tls_wait(c, rc, "reading a request head");
}

/* Parse and read until the head is complete (to a worker), refused, or
 * the socket has nothing more (armed). */
static void net_loop_head(struct net_conn *c)
{
    for (;;) {
        if (c->len > c->off) {
            size_t used = 0;
            int rc = http1_head(c->http, c->in + c->off, c->len - c->off,
                                &used);
            c->off += used;
            net_loop_note_start(c);
            if (rc == HTTP1_DONE) {
                net_loop_queue(c);
                return;
            }
            if (rc == HTTP1_ERROR) {
                net_loop_refuse_head(c);
                return;
            }
        }
        if (net_loop_read(c) <= 0)
            return;
    }
}

static void net_loop_handshake(struct net_conn *c)
{
    ERR_clear_error();
    int rc = SSL_accept(c->ssl);
    if (rc != 1) {
        net_loop_tls_wait(c, rc, "TLS handshake");
        return;
    }
    net_peer_subject(c);
    c->phase = NET_HEAD;
    net_loop_head(c);
}

/* Read and drop what a client still sends after its answer, until it
 * closes or NET_LINGER_MS pass: closing with unread bytes would reset the
 * connection and could destroy the answer before the client read it. */
static void net_loop_drain(struct net_conn *c)
{
    char junk[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t k = read(c->fd, junk, sizeof(junk));
        if (k > 0 || (k < 0 && errno == EINTR))
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            net_loop_arm(c, EPOLLIN);
        else
            net_conn_close(c);
        return;
    }
    net_loop_arm(c, EPOLLIN);
}

static void net_loop_event(struct net_conn *c)
{
    switch (c->phase) {
    case NET_TLS:
        net_loop_handshake(c);
        break;
    case NET_HEAD:
        net_loop_head(c);
        break;
    case NET_LINGER:
        net_loop_drain(c);
        break;
    default:                        /* a worker's, or closed this turn */
        break;
    }
}

/* c's deadline passed while the loop held it. */
static void net_loop_expire(struct net_conn *c)
{
    const struct wharf_conf *cf = &c->l->srv->w->conf;
    if (c->phase == NET_HEAD && (c->head_started || !c->served)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the request was not complete within "
                 "%d ms", cf->request_timeout_ms);
        net_loop_refuse(c, 408, "timeout", msg);
        return;
    }
    if (c->phase == NET_TLS)
        log_debug("%s listener: %s cut off: no TLS handshake within %d ms",
                  c->l->name, c->addr, cf->request_timeout_ms);
    net_conn_close(c);
}

static void net_loop_sweep(struct net_listener *l, int64_t now)
{
    for (int i = l->nconns - 1; i >= 0; i--) {   /* closing moves the last */
        struct net_conn *c = l->conns[i];
        if (c->phase != NET_WORKER && now >= c->deadline)
            net_loop_expire(c);
    }
}

/* ---- the event loop: accepting ------------------------------------------------------ */

static int net_loop_count(const struct net_listener *l, uint32_t ip)
{
    int n = 0;
    for (int i = 0; i < l->nconns; i++)
        n += l->conns[i]->ip == ip;
    return n;
}

/* How readily c gives way to a new connection: lingering 0, idle
 * kept-alive 1, handshake or head under way 2, a worker's: never (-1). */
static int net_loop_rank(const struct net_conn *c)
{
    switch (c->phase) {
    case NET_LINGER:
        return 0;
    case NET_HEAD:
        return c->served && !c->head_started ? 1 : 2;
    case NET_TLS:
        return 2;
    default:
        return -1;
    }
}

/* Close the oldest of the most expendable connections the loop holds
 * (those of address *ip only, when ip is not NULL) of rank at most worst.
 * False when there is none. */
static bool net_loop_evict(struct net_listener *l, const uint32_t *ip,
                           int worst)
{
    struct net_conn *victim = NULL;
    int best = worst + 1;
    for (int i = 0; i < l->nconns; i++) {
        struct net_conn *c = l->conns[i];
        int rank = net_loop_rank(c);
        if (rank < 0 || rank > worst || (ip != NULL && c->ip != *ip))
            continue;
        if (victim == NULL || rank < best ||
            (rank == best && c->since < victim->since)) {
            victim = c;
            best = rank;
        }
    }
    if (victim == NULL)
        return false;
    log_debug("%s listener: %s reached: closed a connection of %s (%s)",
              l->name, ip ? "max_conns_per_address" : "max_connections",
              victim->addr, best == 0 ? "answered" : best == 1 ? "idle"
                                                               : "unfinished");
    net_conn_close(victim);
    return true;
}

static struct net_conn *net_conn_new(struct net_listener *l, int fd,
                                     const char *addr, uint32_t ip)
{
    struct net_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->l = l;
    c->fd = fd;
    c->ip = ip;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->http = http1_new((size_t)l->srv->w->conf.max_header_bytes);
    c->ssl = SSL_new(l->ctx);
    if (!c->http || !c->ssl || !SSL_set_fd(c->ssl, fd) ||
        !SSL_set_app_data(c->ssl, c)) {
        SSL_free(c->ssl);
        http1_free(c->http);
        free(c);
        return NULL;
    }
    c->phase = NET_TLS;
    c->since = time_mono_ms();
    c->deadline = c->since + l->srv->w->conf.request_timeout_ms;
    return c;
}

static const struct {
    const char *name;               /* GET /metrics */
    const char *why;                /* the log line */
} net_refusals[NET_REFUSED_N] = {
    [NET_REFUSED_ALLOW_LIST] = { "allow_list", "not in its allow-list" },
    [NET_REFUSED_BANNED] = { "banned", "banned" },
    [NET_REFUSED_PER_ADDRESS] = { "per_address", "over "
        "max_conns_per_address, none of them idle" },
    [NET_REFUSED_FULL] = { "max_connections", "max_connections reached, "
        "all of them busy in workers" },
};

const char *net_refusal_name(enum net_refusal r)
{
    return r < NET_REFUSED_N ? net_refusals[r].name : "?";
}

int64_t net_server_refused(struct net_server *s, enum net_which which,
                           enum net_refusal r)
{
    return r < NET_REFUSED_N ? atomic_load(&s->l[which].refused[r]) : 0;
}

/* Whether a new connection from sa is refused, and why (NET_REFUSED_N:
 * taken; room is made by closing an idle one where that is allowed). */
static enum net_refusal net_loop_refusal(struct net_listener *l,
                                         const struct sockaddr_in *sa,
                                         const char *addr)
{
    if (!net_allow_has(&l->allow, ntohl(sa->sin_addr.s_addr)))
        return NET_REFUSED_ALLOW_LIST;
    if (defender_check(l->srv->def, addr, NULL))
        return NET_REFUSED_BANNED;
    if (net_loop_count(l, sa->sin_addr.s_addr) >=
            l->srv->w->conf.max_conns_per_address &&
        !net_loop_evict(l, &sa->sin_addr.s_addr, 1))
        return NET_REFUSED_PER_ADDRESS;
    if (l->nconns >= l->max_conns && !net_loop_evict(l, NULL, 2))
        return NET_REFUSED_FULL;
    return NET_REFUSED_N;
}

/* A new connection: refused at once (before any TLS work) when its
 * address is outside the allow-list, banned, or holds
 * max_conns_per_address already none of which is idle (a client that
 * keeps connections alive, as a partner's sending threads do, gets its
 * oldest idle one closed instead: it never holds more than the limit
 * either way); when max_connections are open, the most expendable one
 * makes room. Each refusal is counted (net_server_refused). */
static void net_loop_admit(struct net_listener *l, int fd,
                           const struct sockaddr_in *sa)
{
    char addr[NET_ADDR_MAX];
    if (!inet_ntop(AF_INET, &sa->sin_addr, addr, sizeof(addr))) {
        close(fd);
        return;
    }
    enum net_refusal r = net_loop_refusal(l, sa, addr);
    if (r != NET_REFUSED_N)
        atomic_fetch_add(&l->refused[r], 1);
    struct net_conn *c = r != NET_REFUSED_N ? NULL
                         : net_conn_new(l, fd, addr, sa->sin_addr.s_addr);
    if (c == NULL) {
        log_debug("%s listener: refused %s: %s", l->name, addr,
                  r != NET_REFUSED_N ? net_refusals[r].why : "out of memory");
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->slot = l->nconns;
    l->conns[l->nconns++] = c;
    struct epoll_event e = { .events = EPOLLIN | EPOLLONESHOT,
                             .data.ptr = c };
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &e) < 0)
        net_conn_close(c);
}

/* Out of descriptors: stop accepting for a moment (the backlog waits). */
static void net_loop_pause_accept(struct net_listener *l, int err)
{
    int64_t now = time_mono_ms();
    if (now - l->accept_warned >= 10000) {
        log_warn("%s listener: accept: %s (raise the open files limit, or "
                 "lower max_connections)", l->name, strerror(err));
        l->accept_warned = now;
    }
    struct epoll_event e = { .events = 0, .data.ptr = NULL };
    if (epoll_ctl(l->ep, EPOLL_CTL_MOD, l->fd, &e) == 0) {
        l->accept_paused = true;
        l->accept_resume = now + NET_SWEEP_MS;
    }
}

static void net_loop_resume_accept(struct net_listener *l, int64_t now)
{
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
    if (l->accept_paused && now >= l->accept_resume &&
        epoll_ctl(l->ep, EPOLL_CTL_MOD, l->fd, &e) == 0)
        l->accept_paused = false;
}

static void net_loop_accept(struct net_listener *l)
{
    for (int i = 0; i < NET_ACCEPT_BATCH; i++) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(l->fd, (struct sockaddr *)&sa, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            net_loop_admit(l, fd, &sa);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM)
            net_loop_pause_accept(l, errno);
        if (errno != EINTR && errno != ECONNABORTED)
            return;
    }
}

/* ---- the event loop: closing, handing back, the thread --------------------------- */

/* Send close_notify once, never waiting. */
static void net_tls_goodbye(struct net_conn *c)
{
    if (c->tls_failed || c->tls_closed || !SSL_is_init_finished(c->ssl))
        return;
    c->tls_closed = true;
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
}

static void net_conn_close(struct net_conn *c)
{
    struct net_listener *l = c->l;
    if (c->phase == NET_DEAD)
        return;
    net_tls_goodbye(c);
    l->conns[c->slot] = l->conns[--l->nconns];
    l->conns[c->slot]->slot = c->slot;
    close(c->fd);                   /* leaves the epoll set with it */
    c->fd = -1;
    c->phase = NET_DEAD;
    c->next_dead = l->dead;
    l->dead = c;
}

/* Answered and closing: close_notify, no more writes, then read what
 * the client still sends for a moment (net_loop_drain). */
static void net_conn_linger(struct net_conn *c)
{
    if (c->phase == NET_DEAD)
        return;
    net_tls_goodbye(c);
    if (c->tls_failed || shutdown(c->fd, SHUT_WR) < 0) {
        net_conn_close(c);
        return;
    }
    c->phase = NET_LINGER;
    c->since = time_mono_ms();
    c->deadline = c->since + NET_LINGER_MS;
    net_loop_arm(c, EPOLLIN);
}

static void net_conn_free(struct net_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    SSL_free(c->ssl);
    http1_free(c->http);
    free(c);
}

static void net_loop_reap(struct net_listener *l)
{
    while (l->dead) {
        struct net_conn *c = l->dead;
        l->dead = c->next_dead;
        net_conn_free(c);
    }
}

/* A worker is done with c: the next request (its bytes may be here
 * already), or close. */
static void net_loop_returned(struct net_conn *c)
{
    if (!c->keep) {
        net_conn_linger(c);
        return;
    }
    http1_reset(c->http);
    c->phase = NET_HEAD;
    c->served = true;
    c->head_started = false;
    c->since = time_mono_ms();
    c->deadline = c->since + c->l->srv->w->conf.idle_timeout_ms;
    net_loop_head(c);
}

static void net_loop_take_back(struct net_listener *l)
{
    uint64_t n;
    if (read(l->wake, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warn("%s listener: wake: %s", l->name, strerror(errno));
    for (;;) {
        pthread_mutex_lock(&l->mu);
        struct net_conn *c = l->blen > 0 ? l->back[--l->blen] : NULL;
        pthread_mutex_unlock(&l->mu);
        if (c == NULL)
            return;
        net_loop_returned(c);
    }
}

static void net_block_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);       /* a write to a closed peer gives EPIPE */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *net_loop(void *arg)
{
    struct net_listener *l = arg;
    struct epoll_event ev[NET_EVENTS];
    int64_t next_sweep = 0;
    net_block_sigpipe();
    while (!atomic_load(&l->srv->stopping)) {
        atomic_store(&l->beat, time_mono_ms());
        int n = epoll_wait(l->ep, ev, NET_EVENTS, NET_SWEEP_MS);
        int injected = fault_fail(l->which == NET_ADMIN ? "net.loop.admin"
                                                        : "net.loop.partner");
        if (injected) {
            n = -1;
            errno = injected;
        }
        if (n < 0 && errno != EINTR) {
            log_error("%s listener stopped: epoll_wait: %s", l->name,
                      strerror(errno));
            atomic_store(&l->loop_ended, true);
            break;
        }
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == NULL)
                net_loop_accept(l);
            else if (ev[i].data.ptr == &l->wake)
                net_loop_take_back(l);
            else
                net_loop_event(ev[i].data.ptr);
        }
        int64_t now = time_mono_ms();
        if (now >= next_sweep) {
            net_loop_sweep(l, now);
            net_loop_resume_accept(l, now);
            next_sweep = now + NET_SWEEP_MS;
        }
        net_loop_reap(l);
    }
    return NULL;
}

/* ---- workers ------------------------------------------------------------------------ */

static struct net_conn *net_worker_next(struct net_listener *l)
{
    struct net_conn *c = NULL;
    pthread_mutex_lock(&l->mu);
    while (l->rlen == 0 && !atomic_load(&l->srv->stopping))
        pthread_cond_wait(&l->cv, &l->mu);
    if (!atomic_load(&l->srv->stopping)) {
        c = l->ready[l->rhead];
        l->rhead = (l->rhead + 1) % l->conns_cap;
        l->rlen--;
    }
    pthread_mutex_unlock(&l->mu);
    return c;
}

static void net_worker_done(struct net_listener *l, struct net_conn *c)
{
    uint64_t one = 1;
    pthread_mutex_lock(&l->mu);
    l->back[l->blen++] = c;
    pthread_mutex_unlock(&l->mu);
    if (write(l->wake, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("%s listener: cannot wake the loop: %s", l->name,
                 strerror(errno));
}

static void *net_worker(void *arg)
{
    struct net_listener *l = arg;
    net_block_sigpipe();
    for (;;) {
        struct net_conn *c = net_worker_next(l);
        if (c == NULL)
            return NULL;
        c->keep = net_handle(c);
        net_worker_done(l, c);
    }
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

#define NET_BANS_SYNC_MS 2000
#define NET_COUNTS_BATCH 256        /* counts published per statement run */
#define NET_COUNTS_MAX 4096         /* ... and per sync at most */
#define NET_COUNTS_PRUNE_EVERY 30   /* syncs between two prunes (a minute) */

/* This node's id in the nodes table (core/engine.c names it alike). */
static void net_node_id(char *out, size_t n)
{
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    snprintf(out, n, "%s/%d", host, (int)getpid());
}

/* Publish what changed in this node's failure counts (R22 on R21). A
 * count that could not be written is published again at its next
 * change. */
static int net_counts_publish(struct net_server *s, struct store *st,
                              const char *node, struct error *err)
{
    struct defender_count c[NET_COUNTS_BATCH];
    int total = 0, n;
    do {
        n = defender_changed(s->def, c, NET_COUNTS_BATCH);
        for (int i = 0; i < n; i++) {
            struct store_failures f = {
                .address = c[i].address, .node = node,
                .failures = c[i].failures, .first_at = c[i].first_ms,
                .last_at = c[i].last_ms,
            };
            if (store_failures_put(st, &f, err) < 0)
                return -1;
        }
        total += n;
    } while (n == NET_COUNTS_BATCH && total < NET_COUNTS_MAX);
    return 0;
}

static int net_count_remote(const char *address, int failures, void *arg)
{
    defender_remote(arg, address, failures);
    return 0;
}

/* The other nodes' counts within the window; old windows pruned now and
 * then, so the table holds at most a window of failures. */
static int net_counts_read(struct net_server *s, struct store *st,
                           const char *node, int tick, struct error *err)
{
    int64_t since = time_now_ms() -
                    (int64_t)s->w->conf.ban_window_seconds * 1000;
    if (tick % NET_COUNTS_PRUNE_EVERY == 0 &&
        store_failures_prune(st, since, err) < 0)
        return -1;
    defender_remote_begin(s->def);
    if (store_failures_each(st, node, since, net_count_remote, s->def,
                            err) < 0)
        return -1;                  /* the last reading stays */
    defender_remote_end(s->def);
    return 0;
}

/* One sync: the running bans of every node, then the failure counts. */
static int net_sync_once(struct net_server *s, struct store *st,
                         const char *node, int tick, struct error *err)
{
    if (store_ban_each(st, time_now_ms(), net_restore_ban, s->def, err) < 0 ||
        net_counts_publish(s, st, node, err) < 0 ||
        net_counts_read(s, st, node, tick, err) < 0)
        return -1;
    return 0;
}

/* On a store shared with other nodes (PostgreSQL), the bans they make
 * apply here too: every NET_BANS_SYNC_MS the running bans are read again
 * (defender_restore never shortens a ban, so reading one twice is
 * harmless). The same sync publishes this node's changed failure counts
 * and reads the sums of the others' (defender.h: a ban is decided on the
 * failures of every node; why at this sync and not per failure: the top
 * of defender.c). Its own connection; failures are logged once per run of
 * them. */
static void *net_bans_sync_main(void *arg)
{
    struct net_server *s = arg;
    struct error err = {0};
    struct store *st = NULL;
    bool failing = false;
    char node[80];
    net_node_id(node, sizeof(node));
    for (int tick = 0; !atomic_load(&s->stopping); tick++) {
        for (int i = 0; i < NET_BANS_SYNC_MS / 100 &&
                        !atomic_load(&s->stopping); i++)
            usleep(100 * 1000);
        if (st == NULL)
            st = store_open(s->w->db_path, &err);
        int rc = st ? net_sync_once(s, st, node, tick, &err) : -1;
        if (rc < 0 && !failing)
            log_warn("cannot share bans and failure counts with the other "
                     "nodes: %s", err.msg);
        failing = rc < 0;
    }
    store_close(st);
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
    l->fd = l->ep = l->wake = -1;
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
    if (net_allow_parse(&l->allow, which == NET_ADMIN ? c->admin_allow_from
                        : c->partner_allow_from, err) < 0)
        return error_prefix(err, "%s_allow_from", l->name), -1;
    l->conns_cap = l->max_conns = c->max_connections;
    l->conns = calloc((size_t)l->conns_cap, sizeof(*l->conns));
    l->ready = calloc((size_t)l->conns_cap, sizeof(*l->ready));
    l->back = calloc((size_t)l->conns_cap, sizeof(*l->back));
    l->workers = calloc((size_t)c->http_threads, sizeof(*l->workers));
    if (!l->conns || !l->ready || !l->back || !l->workers)
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
        listen(l->fd, 511) < 0)
        return error_errno(err, errno, "cannot listen on %s", l->spec);
    return 0;
}

/* The loop's epoll set: the listening socket (data NULL) and the wake
 * eventfd (data &l->wake), both level-triggered. */
static int net_loop_setup(struct net_listener *l, struct error *err)
{
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event a = { .events = EPOLLIN, .data.ptr = NULL };
    struct epoll_event w = { .events = EPOLLIN, .data.ptr = &l->wake };
    if (l->ep < 0 || l->wake < 0 ||
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->fd, &a) < 0 ||
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &w) < 0)
        return error_errno(err, errno, "cannot set up the event loop");
    return 0;
}

static int net_threads_start(struct net_listener *l, struct error *err)
{
    if (pthread_create(&l->loop, NULL, net_loop, l) != 0)
        return error_set(err, "cannot start the %s listener thread", l->name);
    atomic_store(&l->beat, time_mono_ms());
    l->loop_started = true;
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
    if (net_loop_setup(l, err) < 0 || net_threads_start(l, err) < 0) {
        error_prefix(err, "%s listener (%s_listen = %s)", l->name, l->name,
                     l->spec);
        return -1;
    }
    log_info("%s listener on https://%s/%s%s", l->name, l->spec,
             l->client_ca[0] ? " (client certificates required)" : "",
             l->allow.n ? " (only the addresses of its allow-list)" : "");
    return 0;
}

/* Every connection is a descriptor: raise the soft open-files limit to
 * what both listeners may hold (never past the hard limit); if it stays
 * short, hold fewer connections and say so. */
static void net_fd_budget(struct net_server *s)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)s->w->conf.max_connections * NET_LISTENERS +
                  NET_FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (rl.rlim_cur > old && setrlimit(RLIMIT_NOFILE, &rl) < 0)
        rl.rlim_cur = old;
    if (rl.rlim_cur >= want)
        return;
    long fit = ((long)rl.rlim_cur - NET_FD_RESERVE) / NET_LISTENERS;
    if (fit < 16)
        fit = 16;
    log_warn("the open files limit (%llu) allows %ld connections per "
             "listener, not max_connections = %d: raise it (LimitNOFILE= "
             "of the service, or ulimit -n) or lower max_connections",
             (unsigned long long)rl.rlim_cur, fit,
             s->w->conf.max_connections);
    for (int i = 0; i < NET_LISTENERS; i++)
        if (fit < s->l[i].max_conns)
            s->l[i].max_conns = (int)fit;
}

int net_server_bind(struct net_server *s, struct error *err)
{
    if (s->bound)
        return 0;
    s->bound = true;
    net_fd_budget(s);
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
    if (wharf_store_shared(s->w)) {
        if (pthread_create(&s->bans_sync, NULL, net_bans_sync_main, s) != 0)
            return error_set(err, "cannot start the bans reader");
        s->bans_sync_started = true;
    }
    return 0;
}

int net_server_listener_down(struct net_server *s, enum net_which which,
                             char *why, size_t n)
{
    struct net_listener *l = &s->l[which];
    if (!s->started || !l->loop_started || atomic_load(&s->stopping))
        return 0;
    if (atomic_load(&l->loop_ended)) {
        snprintf(why, n, "the %s listener (%s) stopped accepting "
                 "connections (the log says why): restart wharf serve",
                 l->name, l->spec);
        return 1;
    }
    int64_t quiet = time_mono_ms() - atomic_load(&l->beat);
    if (quiet > NET_STALL_MS) {
        snprintf(why, n, "the %s listener (%s) has not turned its loop for "
                 "%lld s: restart wharf serve", l->name, l->spec,
                 (long long)(quiet / 1000));
        return 1;
    }
    return 0;
}

/* Stop the loop, then the workers (a running request ends at its next
 * wait), then close whatever connection is left. */
static void net_listener_stop(struct net_listener *l)
{
    uint64_t one = 1;
    if (l->wake >= 0 && write(l->wake, &one, sizeof(one)) < 0)
        log_warn("%s listener: cannot wake the loop", l->name);
    if (l->loop_started)
        pthread_join(l->loop, NULL);
    pthread_mutex_lock(&l->mu);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nworkers; i++)
        pthread_join(l->workers[i], NULL);
    for (int i = 0; i < l->nconns; i++)
        net_conn_free(l->conns[i]);
    l->nconns = 0;
    net_loop_reap(l);
    if (l->wake >= 0)
        close(l->wake);
    if (l->ep >= 0)
        close(l->ep);
    if (l->fd >= 0)
        close(l->fd);
    SSL_CTX_free(l->ctx);
}

void net_server_free(struct net_server *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, true);
    if (s->bans_sync_started)
        pthread_join(s->bans_sync, NULL);
    for (int i = 0; i < NET_LISTENERS; i++) {
        struct net_listener *l = &s->l[i];
        if (l->sync_ready) {
            net_listener_stop(l);
            pthread_mutex_destroy(&l->mu);
            pthread_cond_destroy(&l->cv);
        }
        free(l->conns);
        free(l->ready);
        free(l->back);
        free(l->workers);
    }
    defender_free(s->def);
    store_close(s->st);
    pthread_mutex_destroy(&s->store_mu);
    free(s);
}
