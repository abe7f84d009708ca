/*
 * client.h - THE outbound HTTP(S) client of Wharf (R3, R11, R2), on
 * libcurl. Every connector that speaks HTTP to a partner goes through
 * net_client_request(); nothing else in Wharf sets curl TLS options
 * (auth/oidc.c predates this file and has its own fixed set). Proxy
 * options are set here for every connector: the SFTP connector, which
 * has its own curl handles, sets them through net_client_proxy_setopt.
 *
 * Policy, not configurable:
 *   - TLS 1.2 minimum with the cipher suites and groups of tls.h;
 *   - the peer certificate and host name are ALWAYS verified for https;
 *     `insecure` only allows plain http:// URLs, it never turns
 *     verification off;
 *   - protocols "https" only ("http,https" when insecure); no redirects;
 *   - no proxy from the environment: only the one configured;
 *   - bodies are streamed through a read callback (constant memory);
 *     the response body is kept up to a cap, the rest is discarded;
 *   - curl's verbose output is never enabled (it would print headers).
 *
 * Errors say which stage failed: "DNS", "TCP connect", "TLS (certificate
 * expired | host name mismatch | untrusted | pin mismatch | handshake)",
 * "proxy", "timeout", and are classified WH_RETRY (transient) or WH_FAIL
 * (permanent). HTTP statuses are the caller's to judge
 * (net_client_status_class).
 */
#ifndef WHARF_NET_CLIENT_H
#define WHARF_NET_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"
#include "util/status.h"

struct secret;

/* ---- proxies (R2) ----------------------------------------------------------
 * One rule for every outbound connection of a connector (http, sftp, ...):
 * the connector's own `proxy` wins; its `"proxy": "direct"` means no proxy
 * at all; without one, the global proxy of wharf.conf applies, except for
 * the hosts its no_proxy list names (curl's CURLOPT_NOPROXY matching).
 * A proxy never comes from the environment. */
struct net_proxy {
    const char *url;            /* http://, https://, socks5://, socks5h://
                                   with host and port; NULL: direct */
    const char *no_proxy;       /* comma-separated hosts that go direct */
    const struct secret *auth;  /* "user:password", or NULL */
};

enum net_proxy_from { NET_PROXY_DIRECT, NET_PROXY_OWN, NET_PROXY_GLOBAL };

/* A proxy URL as a config gives it: a known scheme, host and port, and no
 * credentials inside it. 0 or -1 with err. */
int net_client_proxy_check(const char *url, struct error *err);

/* A no_proxy list: host names, domains, addresses (CIDR too) or "*",
 * separated by commas. 0 or -1 with err. */
int net_client_no_proxy_check(const char *list, struct error *err);

/* The rule above: own is the connector's (url "direct" or NULL allowed),
 * global wharf.conf's (url NULL or "": none). *out borrows their
 * pointers; the result says where it came from (the caller reads the
 * global credentials only when they are used). */
enum net_proxy_from net_client_proxy_pick(const struct net_proxy *own,
                                          const struct net_proxy *global,
                                          struct net_proxy *out);

/* Set every proxy option of the curl easy handle h (a CURL *) from p
 * (NULL or no url: none, not even one from the environment):
 * CURLOPT_PROXY, NOPROXY, PROXYUSERPWD, a CONNECT tunnel for http(s)
 * proxies and TLS 1.2+ with verification for https:// ones. Both the HTTP
 * client and the SFTP connector go through here. CURLE_OK (0) or the
 * CURLcode of the option that failed. */
int net_client_proxy_setopt(void *h, const struct net_proxy *p);

/* Report the transfer's progress of h (a CURL *) to core/progress.h (the
 * current transfer of the thread that performs it). CURLE_OK or the
 * failing option's CURLcode. */
int net_client_progress_setopt(void *h);

/* After curl_easy_perform on h failed with rc (a CURLcode): when it failed at the
 * proxy (refused the tunnel or the credentials, unreachable, ...), 1 with
 * err saying so ("proxy ...", naming target) and *st (WH_FAIL for refused
 * credentials or destinations, WH_RETRY otherwise); else 0. */
int net_client_proxy_failed(void *h, int rc, const struct net_proxy *p,
                            const char *target, const char *ebuf,
                            enum wh_status *st, struct error *err);

struct net_client_opts {
    const char *ca_file;        /* PEM CA bundle; NULL: the system store */
    const struct secret *ca_pem;    /* or the bundle itself (PEM) */
    const char *pin_sha256;     /* base64 SHA-256 of the peer's public key
                                   (SPKI), optionally "sha256//" prefixed */
    const char *cert_file;      /* client certificate (mutual TLS), or NULL */
    const struct secret *cert_pem;  /* or the certificate itself (PEM) */
    const char *key_file;       /* its key: a file, or key_pem (sealed) */
    const struct secret *key_pem;
    const char *proxy;          /* http://, https://, socks5://, socks5h:// */
    const struct secret *proxy_auth;    /* "user:password", or NULL */
    const char *no_proxy;       /* comma-separated hosts, or NULL */
    int insecure;               /* allow http:// (verification stays on) */
    long connect_timeout_ms;    /* 0: 10 s */
    long timeout_ms;            /* whole request; 0: 10 min */
    size_t max_response;        /* response body bytes kept; 0: 16 KiB */
};

/* Reads up to n body bytes into buf: > 0 bytes, 0 at the end, -1 with err
 * set on failure (the request is aborted, WH_FAIL). */
typedef ssize_t (*net_client_read_fn)(void *ud, void *buf, size_t n,
                                      struct error *err);

struct net_client_req {
    const char *method;         /* "POST", "PUT", "HEAD", "OPTIONS", "GET" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" list */
    const char *user;           /* basic auth with password, or NULL */
    const struct secret *password;
    const struct secret *bearer;        /* Authorization: Bearer, or NULL */
    int64_t body_len;           /* exact Content-Length; -1: no body */
    net_client_read_fn read;
    void *read_ud;
};

struct net_client_resp {
    long status;                /* HTTP status, 0 when none arrived */
    char *body;                 /* NUL-terminated, at most max_response; owned */
    size_t len;
    char *headers;              /* the response's header lines (no status
                                   line), NUL-terminated, <= 64 KiB; owned */
    size_t headers_len;
};

/* Check the options as a config would give them (files readable, proxy
 * well-formed, pin well-formed), without any I/O but stat/access. */
int net_client_opts_check(const struct net_client_opts *o, struct error *err);

/* Check that url is absolute http(s) and allowed (https unless insecure). */
int net_client_url_check(const char *url, int insecure, struct error *err);

/* Perform one request. WH_OK when an HTTP response arrived (whatever its
 * status: see resp->status); else WH_RETRY or WH_FAIL with err saying what
 * failed. resp->body is set in both cases (may be NULL); free it with
 * net_client_resp_free. Thread-safe. */
enum wh_status net_client_request(const struct net_client_opts *o,
                                  const struct net_client_req *r,
                                  struct net_client_resp *resp,
                                  struct error *err);

void net_client_resp_free(struct net_client_resp *resp);

/* WH_RETRY for 408, 429 and 5xx; WH_FAIL for any other status. */
enum wh_status net_client_status_class(long status);

#endif
