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
 *   - request bodies are streamed through a read callback, response
 *     bodies through a write callback (constant memory both ways); a
 *     response body kept in memory instead has a cap, and a response
 *     past it is an error that says so (never a silent truncation);
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

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/ssh_agent.h"
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

/* Proxy credentials: "user:password" with a user, checked without saying
 * anything about their bytes (what names them in the error). 0 or -1. */
int net_client_proxy_auth_check(const struct secret *auth, const char *what,
                                struct error *err);

/* Proxy credentials read from the file at path and checked as above
 * (what names them in the error): a new secret (caller frees with
 * secret_free), or NULL with err. */
struct secret *net_client_proxy_auth_read(const char *path, const char *what,
                                          struct error *err);

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

/* Takes n response body bytes: 0, or -1 with err set (the request is
 * aborted: WH_FAIL with that error). */
typedef int (*net_client_write_fn)(void *ud, const void *buf, size_t n,
                                   struct error *err);

/* A write function that throws the body away (a response whose body is of
 * no use: a 2xx to a delivery), counting its bytes into *(int64_t *)ud
 * when ud is not NULL. */
int net_client_discard(void *ud, const void *buf, size_t n,
                       struct error *err);

struct net_client_opts {
    const char *ca_file;        /* PEM CA bundle; NULL: the system store */
    const struct secret *ca_pem;    /* or the bundle itself (PEM) */
    const char *pin_sha256;     /* base64 SHA-256 of the peer's public key
                                   (SPKI), optionally "sha256//" prefixed */
    const char *cert_file;      /* client certificate (mutual TLS), or NULL */
    const struct secret *cert_pem;  /* or the certificate itself (PEM) */
    const char *key_file;       /* its key: a file, key_pem (sealed), */
    const struct secret *key_pem;
    EVP_PKEY *key;              /* or a handle key of the vault (keyop.h:
                                   the private key stays in the vault;
                                   borrowed, must outlive the request) */
    const char *proxy;          /* http://, https://, socks5://, socks5h:// */
    const struct secret *proxy_auth;    /* "user:password", or NULL */
    const char *no_proxy;       /* comma-separated hosts, or NULL */
    int insecure;               /* allow http:// (verification stays on) */
    long connect_timeout_ms;    /* 0: 10 s */
    long timeout_ms;            /* whole request; 0: 10 min */
    size_t max_response;        /* response body bytes kept (no write
                                   function); more is an error; 0: 16 KiB */
};

/* Reads up to n body bytes into buf: > 0 bytes, 0 at the end, -1 with err
 * set on failure (the request is aborted, WH_FAIL). */
typedef ssize_t (*net_client_read_fn)(void *ud, void *buf, size_t n,
                                      struct error *err);

#define NET_CLIENT_BODY_STREAMED (-2)

struct net_client_req {
    const char *method;         /* "POST", "PUT", "HEAD", "OPTIONS", "GET" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" list */
    const char *user;           /* basic auth with password, or NULL */
    const struct secret *password;
    const struct secret *bearer;        /* Authorization: Bearer, or NULL */
    /* The exact Content-Length; -1: no body; NET_CLIENT_BODY_STREAMED: a
     * body of unknown length, read until read returns 0 and sent as it
     * comes (HTTP/1.1: Transfer-Encoding: chunked; HTTP/2: DATA frames).
     * A read that fails aborts it before its end (no final 0-chunk): the
     * server never sees a complete body. */
    int64_t body_len;
    net_client_read_fn read;
    void *read_ud;
    /* Optional, for a body of known length: start read over from its
     * first byte (0, or -1). With it, a request sent on a kept-alive
     * connection that the server had just closed is sent again at once
     * on a new connection (curl rewinds the body) instead of failing. */
    int (*rewind)(void *read_ud);
    /* The response body: streamed to write (then resp->body is NULL), or
     * NULL: kept in resp->body up to opts.max_response. */
    net_client_write_fn write;
    void *write_ud;
};

struct net_client_resp {
    long status;                /* HTTP status, 0 when none arrived */
    char *body;                 /* NUL-terminated, at most max_response
                                   (NULL with a write function); owned */
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

/* The scheme (lower case), host and port (the scheme's default when the
 * URL names none) of an absolute URL, parsed by libcurl: for listings
 * (wharf inventory). 0, or -1 with err. */
int net_url_parts(const char *url, char *scheme, size_t scheme_n, char *host,
                  size_t host_n, int *port, struct error *err);

/* Perform one request. WH_OK when an HTTP response arrived (whatever its
 * status: see resp->status); else WH_RETRY or WH_FAIL with err saying what
 * failed: also WH_FAIL when the response body is larger than
 * max_response ("... is larger than N bytes") or the write function
 * failed. resp is set in every case (body may be NULL); free it with
 * net_client_resp_free. Thread-safe. */
enum wh_status net_client_request(const struct net_client_opts *o,
                                  const struct net_client_req *r,
                                  struct net_client_resp *resp,
                                  struct error *err);

void net_client_resp_free(struct net_client_resp *resp);

/* WH_RETRY for 408, 429 and 5xx; WH_FAIL for any other status. */
enum wh_status net_client_status_class(long status);

/* ---- SFTP (net/client_sftp.c: curl's sftp scheme, libssh2) ------------------
 * The same rules as HTTP: the one proxy rule (net_proxy), no proxy from
 * the environment, the progress of transfers, errors that name the stage
 * (connect, host key, login, permission, not found, timeout, proxy),
 * classified WH_RETRY or WH_FAIL; bodies streamed both ways. A host key
 * that is not the pinned one ends the connection in the key exchange: no
 * authentication, no transfer. Credentials reach curl only as option
 * values (curl's copies are freed unwiped: the limit of client.c). */

struct net_sftp_opts {
    const char *host;           /* name or address (IPv6 without []) */
    long port;
    const char *user;
    /* The pinned host key: the unpadded base64 of its SHA-256 (43
     * characters), or NULL: every key is refused (nothing goes beyond the
     * key exchange). */
    const char *host_key_sha256;
    /* The user key, held elsewhere (net/ssh_agent.h: libssh2 asks the
     * in-process agent, which asks the signer), or NULL. */
    const struct net_ssh_signer *key;
    const struct secret *password;      /* NUL-terminated, or NULL */
    struct net_proxy proxy;     /* resolved by the one rule */
};

/* One session: a curl handle whose SSH connection is reused between the
 * operations on it. o is borrowed (it must outlive the session). Not
 * thread-safe: one user at a time. NULL with err. */
struct net_sftp;
struct net_sftp *net_sftp_open(const struct net_sftp_opts *o,
                               struct error *err);
void net_sftp_close(struct net_sftp *s);

/* What the last failed operation of a session failed at, beyond its
 * status: NET_SFTP_NOT_FOUND (no such file), NET_SFTP_QUOTE (a rename or
 * remove the server refused, e.g. after a complete upload), NET_SFTP_READ
 * / NET_SFTP_WRITE (the caller's read / write function failed: err is
 * its error). */
enum net_sftp_fail {
    NET_SFTP_OK = 0, NET_SFTP_NOT_FOUND, NET_SFTP_QUOTE, NET_SFTP_READ,
    NET_SFTP_WRITE, NET_SFTP_OTHER,
};
enum net_sftp_fail net_sftp_failed(const struct net_sftp *s);

/* The long listing of server folder dir (absolute), at most max bytes
 * (more is an error): *text malloc'ed, NUL-terminated (caller frees). */
enum wh_status net_sftp_list(struct net_sftp *s, const char *dir,
                             size_t max, char **text, size_t *len,
                             struct error *err);

/* Download path, streamed to write. */
enum wh_status net_sftp_get(struct net_sftp *s, const char *path,
                            net_client_write_fn write, void *ud,
                            struct error *err);

/* Seek a read function's stream to offset bytes from its start (for a
 * resumed upload): 0, or -1 with err. */
typedef int (*net_client_seek_fn)(void *ud, int64_t offset,
                                  struct error *err);

/* Upload size bytes from read to path, continuing a partial file of
 * resume_from bytes there (seek positions the stream; 0: from the start),
 * then, in the same session, rename path to rename_to (NULL: none;
 * SFTP's rename never replaces a file). */
struct net_sftp_upload {
    const char *path;
    int64_t size, resume_from;
    net_client_read_fn read;
    net_client_seek_fn seek;
    void *ud;
    const char *rename_to;
};
enum wh_status net_sftp_put(struct net_sftp *s,
                            const struct net_sftp_upload *u,
                            struct error *err);

/* Rename (never replacing) or remove one file on the server. */
enum wh_status net_sftp_rename(struct net_sftp *s, const char *from,
                               const char *to, struct error *err);
enum wh_status net_sftp_remove(struct net_sftp *s, const char *path,
                               struct error *err);

/* Connect up to the key exchange and take the host key the server
 * presents, refusing it (no authentication is attempted): its type
 * ("ED25519", "ECDSA", "RSA", "DSA") and the unpadded base64 of its
 * SHA-256 (43 characters and a NUL). */
enum wh_status net_sftp_hostkey(const struct net_sftp_opts *o, char type[16],
                                char fp[44], struct error *err);

/* libcurl's version and those of the libraries it reports using (its TLS
 * backend, zlib, libssh2, nghttp2, libidn2, brotli, zstd), read from it at
 * run time (R10: `wharf version --deps`, --sbom): up to max pairs into
 * out, curl's first; the count. The strings are curl's (static). */
struct net_lib_version {
    const char *name;
    const char *version;
};
size_t net_client_lib_versions(struct net_lib_version *out, size_t max);

#endif
