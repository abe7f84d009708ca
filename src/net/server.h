/*
 * server.h - Wharf's two HTTPS listeners (R22, DESIGN.md "Listeners"), the
 * route table that the REST API and the receivers plug into, and the
 * request/response wrapper their handlers see.
 *
 *   admin listener   (admin_listen, default 127.0.0.1:8443): /healthz;
 *                    the REST API adds /api/v1 and /metrics (api.h);
 *   partner listener (partner_listen, default 127.0.0.1:4080): only the
 *                    routes registered for it (AS2, webhooks, async MDNs).
 * Anything not routed gets 404 {"error":{"code":"not_found",...}}.
 *
 * Both listeners are HTTPS only with the policy of tls.h, and enforce, in
 * this order, before a handler runs:
 *   1. right after accept(), before any TLS work: a banned address
 *      (defender.h) or one that already holds max_conns_per_address
 *      connections is closed; when max_connections are open, the oldest
 *      idle or unfinished connection is closed to make room;
 *   2. the TLS handshake and the request head must arrive within
 *      request_timeout_ms of accept, the head within max_header_bytes
 *      (else 431), framed strictly (http1.h: else 400, or 501 for a
 *      transfer coding other than chunked); else 408 and closed;
 *   3. a banned address gets 429 (bans that began after it connected);
 *   4. a declared body larger than the route's cap gets 413 (the listener
 *      default max_body_bytes when no route matched), without reading it;
 *      a chunked body is cut at the cap by net_body_read (413).
 * While the handler reads the body (net_body_read), the server itself
 * answers a body that misses its deadline (request_timeout_ms plus one
 * second per min_body_rate bytes) with 408, and malformed chunked framing
 * with 400; the handler's own reply is then refused (-1).
 *
 * Threads: per listener, one event-loop thread holds every connection
 * until its request head is complete (slow clients cost no thread), and
 * http_threads workers run the handlers, one request each at a time.
 * Handlers run concurrently and must be thread-safe.
 */
#ifndef WHARF_NET_SERVER_H
#define WHARF_NET_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "util/error.h"

struct wharf;
struct defender;

enum net_which { NET_ADMIN = 0, NET_PARTNER = 1 };
#define NET_LISTENERS 2
#define NET_MAX_ROUTES 128

struct net_server;
struct net_listener;
struct net_request;

/* A route handler. It replies with one of the net_reply* functions and
 * returns 0; if it returns without replying, the server answers 500 (or
 * 413 when the body went past the cap). */
typedef int (*net_handler)(struct net_request *req, void *user_data);

/* "IPv4:PORT" (what admin_listen / partner_listen hold) into host and
 * port. 0, or -1 with err set. */
int net_listen_parse(const char *spec, char *host, size_t hostsz, int *port,
                     struct error *err);

/* Read the listener settings of w's wharf.conf and set up the built-in
 * routes. No socket is opened yet. w must outlive the server. Caller owns;
 * free with net_server_free. */
struct net_server *net_server_new(struct wharf *w, struct error *err);

/* The admin or partner listener of s (owned by s). */
struct net_listener *net_listener(struct net_server *s, enum net_which which);

/* Route method + path prefix to handler, before net_server_start. method:
 * "GET", "POST", ... or "*" (any). A prefix matches the path itself and
 * what lies below it ("/api/v1" matches "/api/v1" and "/api/v1/flows",
 * not "/api/v1x"); the longest matching prefix wins. Bodies are capped at
 * the listener's max_body_bytes. 0, or -1 (bad arguments, duplicate, table
 * full, server already started). */
int net_route(struct net_listener *l, const char *method,
              const char *path_prefix, net_handler handler, void *user_data);

/* The same with this route's own body cap in bytes (e.g. AS2 receive). */
int net_route_capped(struct net_listener *l, const char *method,
                     const char *path_prefix, int64_t max_body,
                     net_handler handler, void *user_data);

/* Set up TLS (certificate and key read now) and bind both listeners,
 * without starting a thread: `serve` binds, then drops root and enters
 * its sandbox (core/sandbox.h), then starts. Connections wait in the
 * backlog until net_server_start. On failure err names the listener, its
 * address and the reason (net_server_free closes what was opened). */
int net_server_bind(struct net_server *s, struct error *err);

/* Bind both listeners (unless net_server_bind did) and start serving. On
 * failure nothing is left listening and err names the listener, its
 * address and the reason. */
int net_server_start(struct net_server *s, struct error *err);

/* Stop both listeners (waits for running requests), then free s. */
void net_server_free(struct net_server *s);

/* The defender both listeners consult (owned by s). */
struct defender *net_server_defender(struct net_server *s);

/* Why a listener closed a connection at accept, before any TLS work:
 * outside its allow-list (*_allow_from), a banned address, an address at
 * max_conns_per_address with none idle, max_connections all busy. */
enum net_refusal {
    NET_REFUSED_ALLOW_LIST, NET_REFUSED_BANNED, NET_REFUSED_PER_ADDRESS,
    NET_REFUSED_FULL, NET_REFUSED_N
};

/* The reason's name for GET /metrics ("allow_list", ...). */
const char *net_refusal_name(enum net_refusal r);

/* Connections listener `which` refused for reason r since s started. */
int64_t net_server_refused(struct net_server *s, enum net_which which,
                           enum net_refusal r);

/* Apply the defender settings of w->conf now (ban_after_failures,
 * ban_seconds, ban_window_seconds; `serve` calls it on SIGHUP). Running
 * bans keep their end. 0, or -1 with err (settings refused, none
 * changed). */
int net_server_reload_defender(struct net_server *s, struct error *err);

/* What GET /healthz answers: fn returns a JSON report (new reference,
 * freed by the server) and sets *healthy; 200 when healthy, else 503.
 * Without fn (or when it returns NULL) the answer is 200 {"status":"ok"}.
 * fn runs on the listener's threads: it must be thread-safe. Set before
 * net_server_start. */
typedef json_t *(*net_health_fn)(void *arg, int *healthy);
void net_server_set_health(struct net_server *s, net_health_fn fn,
                           void *arg);

/* Whether a started listener is down: its loop ended (an error the log
 * names) or has not turned for 10 s. 1 with why (one line, no secret),
 * else 0. Thread-safe. */
int net_server_listener_down(struct net_server *s, enum net_which which,
                             char *why, size_t n);

/* ---- the request (valid only during the handler call) ------------------ */

const char *net_req_method(const struct net_request *r);
/* The URL-decoded path with dot segments removed, without the query. */
const char *net_req_path(const struct net_request *r);
/* The raw query string (after '?'), or NULL. */
const char *net_req_query(const struct net_request *r);
/* A request header (case-insensitive name; the first of that name), or
 * NULL. At most 64 headers within max_header_bytes; the trailer fields of
 * a chunked body are never among them. */
const char *net_req_header(const struct net_request *r, const char *name);
/* The client's IP address. */
const char *net_req_address(const struct net_request *r);
enum net_which net_req_listener(const struct net_request *r);
/* Subject of the verified client certificate (mutual TLS), or NULL. */
const char *net_req_client_subject(const struct net_request *r);
/* Declared body length, or -1 when not declared (chunked). */
int64_t net_req_body_length(const struct net_request *r);

/* Report a failed authentication by this request's address to the
 * defender (may ban it; the ban is audited). */
void net_req_auth_failure(struct net_request *r);

#define NET_BODY_TOO_LARGE (-2)
#define NET_BODY_ERROR (-1)

/* Read up to n body bytes: > 0 bytes read, 0 at the end of the body,
 * NET_BODY_TOO_LARGE once the body passes the route's cap (the bytes are
 * not delivered), NET_BODY_ERROR on a read error, a timeout (answered 408)
 * or malformed framing (answered 400). */
ssize_t net_body_read(struct net_request *r, void *buf, size_t n);

/* The whole body (at most the cap), NUL-terminated; *out malloc'ed, caller
 * frees. -1 with err set (and *too_large, if non-NULL, set when the cap
 * was the reason). */
int net_body_read_all(struct net_request *r, char **out, size_t *len,
                      int *too_large, struct error *err);

/* ---- the response --------------------------------------------------------- */

/* Add a response header (before the reply). CR/LF are refused. At most
 * ~1 KiB of extra headers. 0 or -1. */
int net_reply_header(struct net_request *r, const char *name,
                     const char *value);

/* A complete response. Every response carries Cache-Control: no-store,
 * X-Content-Type-Options: nosniff and Strict-Transport-Security. */
int net_reply(struct net_request *r, int status, const char *content_type,
              const void *body, size_t len);

/* body serialized compactly as application/json. */
int net_reply_json(struct net_request *r, int status, const json_t *body);

/* {"error":{"code":code,"message":message}} with status. */
int net_reply_error(struct net_request *r, int status, const char *code,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A streamed response of exactly length bytes: the head now, then the body
 * with net_reply_write. */
int net_reply_start(struct net_request *r, int status,
                    const char *content_type, int64_t length);
int net_reply_write(struct net_request *r, const void *buf, size_t n);

#endif
