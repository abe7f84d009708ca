/*
 * client.c - the outbound HTTP(S) client (see client.h for the policy).
 *
 * Owns: every curl option that touches TLS, proxies, redirects and
 * timeouts for connector traffic, and the translation of curl's failures
 * into one sentence naming the stage (DNS, TCP, TLS and why, proxy,
 * timeout) plus WH_RETRY / WH_FAIL. The proxy part (R2: the one rule that
 * picks a connector's proxy, its curl options, its failures) is shared
 * with the SFTP connector.
 *
 * Must never: turn certificate or host-name verification off; follow a
 * redirect; take a proxy from the environment; enable CURLOPT_VERBOSE
 * (headers carry credentials); put a header value, credential or body into
 * an error or log line. Credentials reach curl only through setopt from
 * struct secret; curl keeps its own copies until the handle is cleaned up
 * (it frees them without wiping: a known limit, noted here). A client
 * certificate whose key is a handle key of the vault (opts.key, R15) is set
 * on the connection's SSL_CTX by client_ssl_ctx: curl never sees the key,
 * and such a connection is neither reused nor resumed by another transfer
 * (curl cannot tell its identity apart).
 */
#include "core/progress.h"
#include "net/client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/client_internal.h"
#include "net/tls.h"
#include "util/secret.h"

#define DEFAULT_CONNECT_MS 10000L
#define DEFAULT_TIMEOUT_MS 600000L
#define DEFAULT_MAX_RESPONSE 16384
/* curl's upload buffer for a body streamed as it is made (read calls of
 * this size from the packaging pipe); other bodies keep curl's default */
#define STREAM_UPLOAD_BUFFER (256 * 1024L)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ready;

static pthread_key_t handle_key;

static void handle_free(void *h)
{
    curl_easy_cleanup(h);
}

static void curl_init_once(void)
{
    curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK &&
                 pthread_key_create(&handle_key, handle_free) == 0;
}

int net_curl_ready(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_ready;
}

/* One curl handle per thread, reset before each request: every option is
 * set again, but live connections (keep-alive), TLS sessions and the
 * parsed CA store stay, so a partner is not a new TCP + TLS handshake per
 * message. curl reuses a connection only for the same host, port, proxy
 * and TLS configuration. Freed when the thread ends. */
static CURL *thread_handle(void)
{
    CURL *c = pthread_getspecific(handle_key);
    if (c != NULL) {
        curl_easy_reset(c);
        return c;
    }
    if ((c = curl_easy_init()) != NULL &&
        pthread_setspecific(handle_key, c) != 0) {
        curl_easy_cleanup(c);
        c = NULL;
    }
    return c;
}

/* ---- checks --------------------------------------------------------------- */

static int file_readable(const char *key, const char *path, struct error *err)
{
    if (path == NULL)
        return 0;
    if (path[0] != '/')
        return error_set(err, "%s must be an absolute path, not '%s'", key, path);
    if (access(path, R_OK) < 0)
        return error_set(err, "%s %s is not readable", key, path);
    return 0;
}

static int pin_ok(const char *pin)
{
    if (strncmp(pin, "sha256//", 8) == 0)
        pin += 8;
    size_t n = strlen(pin);
    if (n != 44 || pin[43] != '=')      /* base64 of 32 bytes */
        return 0;
    for (size_t i = 0; i < 43; i++) {
        char ch = pin[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '+' || ch == '/'))
            return 0;
    }
    return 1;
}

int net_client_opts_check(const struct net_client_opts *o, struct error *err)
{
    if (file_readable("tls_ca", o->ca_file, err) < 0 ||
        file_readable("cert", o->cert_file, err) < 0 ||
        file_readable("key", o->key_file, err) < 0)
        return -1;
    int nkeys = (o->key_file != NULL) + (o->key_pem != NULL) +
                (o->key != NULL);
    if (nkeys > 1)
        return error_set(err, "a client key is a file or sealed, not both");
    if ((o->cert_file == NULL && o->cert_pem == NULL) != (nkeys == 0))
        return error_set(err, "a client certificate needs both cert and key");
    if (o->pin_sha256 && !pin_ok(o->pin_sha256))
        return error_set(err, "pin_sha256 must be the base64 SHA-256 of the "
                         "public key (44 characters, as openssl prints it)");
    if (o->proxy && net_client_proxy_check(o->proxy, err) < 0)
        return -1;
    if (o->no_proxy && net_client_no_proxy_check(o->no_proxy, err) < 0)
        return -1;
    return 0;
}

int net_client_url_check(const char *url, int insecure, struct error *err)
{
    if (url == NULL || url[0] == '\0')
        return error_set(err, "url is missing");
    if (strncmp(url, "https://", 8) == 0)
        return url[8] ? 0 : error_set(err, "url has no host");
    if (strncmp(url, "http://", 7) == 0) {
        if (!insecure)
            return error_set(err, "url %s is plain http://: use https:// or "
                             "set \"insecure\": true", url);
        return url[7] ? 0 : error_set(err, "url has no host");
    }
    return error_set(err, "url must start with https:// (or http:// when "
                     "insecure)");
}

/* ---- proxies (R2) --------------------------------------------------------- */

static const char *const PROXY_SCHEMES[] = { "http://", "https://",
    "socks5://", "socks5h://" };

/* Host (brackets of an IPv6 address dropped) and port of a proxy URL;
 * -1 when it has no usable host:port. */
static int proxy_host_port(const char *url, char *host, size_t hn, long *port)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return -1;
    p += 3;
    size_t len = strcspn(p, "/");
    if (p[len] == '/' && p[len + 1] != '\0')
        return -1;                      /* a path: not a proxy URL */
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (p[i] == ':')
            colon = p + i;
    const char *h = p, *hend = colon;
    if (colon == NULL || colon == p)
        return -1;
    if (*h == '[') {
        if (hend[-1] != ']')
            return -1;
        h++;
        hend--;
    } else if (memchr(h, ':', (size_t)(hend - h)) != NULL) {
        return -1;                      /* IPv6 needs [brackets] */
    }
    size_t n = (size_t)(hend - h);
    if (n == 0 || n >= hn)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
              ch == '_' || ch == ':'))
            return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    char *end;
    *port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || end != p + len || *port < 1 || *port > 65535)
        return -1;
    return 0;
}

int net_client_proxy_check(const char *url, struct error *err)
{
    int known = 0;
    for (size_t i = 0; i < sizeof(PROXY_SCHEMES) / sizeof(*PROXY_SCHEMES); i++)
        known |= strncmp(url, PROXY_SCHEMES[i], strlen(PROXY_SCHEMES[i])) == 0;
    if (!known)
        return error_set(err, "proxy must start with http://, https://, "
                         "socks5:// or socks5h://");
    if (strchr(url, '@'))
        return error_set(err, "proxy must not hold credentials in its URL; "
                         "give them as a file");
    char host[256];
    long port;
    if (proxy_host_port(url, host, sizeof(host), &port) < 0)
        return error_set(err, "proxy must be SCHEME://HOST:PORT (an IPv6 "
                         "address in brackets), not '%.200s'", url);
    return 0;
}

int net_client_proxy_auth_check(const struct secret *auth, const char *what,
                                struct error *err)
{
    const unsigned char *d = secret_data(auth);
    size_t n = secret_len(auth);
    const unsigned char *colon = n ? memchr(d, ':', n) : NULL;
    if (colon == NULL || colon == d)
        return error_set(err, "%s must hold user:password", what);
    return 0;
}

struct secret *net_client_proxy_auth_read(const char *path, const char *what,
                                          struct error *err)
{
    struct secret *auth = secret_from_file(path, err);
    if (auth == NULL) {
        error_prefix(err, "%s", what);
        return NULL;
    }
    if (net_client_proxy_auth_check(auth, what, err) < 0) {
        secret_free(auth);
        return NULL;
    }
    return auth;
}

int net_client_no_proxy_check(const char *list, struct error *err)
{
    const char *p = list;
    for (;;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, ",");
        size_t k = n;
        while (k > 0 && p[k - 1] == ' ')
            k--;
        if (k == 0)
            return error_set(err, "no_proxy has an empty entry: give host "
                             "names, domains or addresses separated by "
                             "commas");
        for (size_t i = 0; i < k && !(k == 1 && p[0] == '*'); i++) {
            char ch = p[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || strchr(".-_:/[]", ch)))
                return error_set(err, "no_proxy entry '%.*s' is not a host "
                                 "name, domain or address", (int)k, p);
        }
        if (p[n] == '\0')
            return 0;
        p += n + 1;
    }
}

enum net_proxy_from net_client_proxy_pick(const struct net_proxy *own,
                                          const struct net_proxy *global,
                                          struct net_proxy *out)
{
    memset(out, 0, sizeof(*out));
    if (own && own->url && strcmp(own->url, "direct") == 0)
        return NET_PROXY_DIRECT;
    if (own && own->url) {
        *out = *own;
        return NET_PROXY_OWN;
    }
    if (global && global->url && global->url[0]) {
        *out = *global;
        return NET_PROXY_GLOBAL;
    }
    return NET_PROXY_DIRECT;
}

/* A NUL-terminated copy of a secret (curl wants C strings). */
static struct secret *secret_cstr(const struct secret *s)
{
    size_t n = secret_len(s);
    struct secret *t = secret_new(n + 1);
    if (t)
        memcpy(secret_data_mut(t), secret_data(s), n);
    return t;
}

int net_client_proxy_setopt(void *h, const struct net_proxy *p)
{
    int on = p && p->url;
    /* "": no proxy, not even one from the environment */
    CURLcode rc = curl_easy_setopt(h, CURLOPT_PROXY, on ? p->url : "");
#define OPT(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
    /* "" (not NULL): the environment's no_proxy is ignored too */
    OPT(CURLOPT_NOPROXY, on && p->no_proxy ? p->no_proxy : "");
    if (!on)
        return rc;
    OPT(CURLOPT_HTTPPROXYTUNNEL, 1L);   /* the proxy only ever sees a tunnel */
    OPT(CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
    OPT(CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
    OPT(CURLOPT_PROXY_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (p->auth && rc == CURLE_OK) {
        struct secret *up = secret_cstr(p->auth);   /* curl keeps a copy */
        rc = up ? curl_easy_setopt(h, CURLOPT_PROXYUSERPWD,
                                   (const char *)secret_data(up))
                : CURLE_OUT_OF_MEMORY;
        secret_free(up);
    }
#undef OPT
    return rc;
}

/* 1 when curl's "Failed to connect to HOST port N" names the proxy. */
static int failed_at_proxy(const char *url, const char *detail)
{
    char host[256], want[300];
    long port;
    if (proxy_host_port(url, host, sizeof(host), &port) < 0)
        return 0;
    snprintf(want, sizeof(want), "to %s port %ld ", host, port);
    return strstr(detail, want) != NULL;
}

static int socks_failed(void *h, const struct net_proxy *p, const char *target,
                        const char *detail, enum wh_status *st,
                        struct error *err)
{
    long px = CURLPX_OK;
    curl_easy_getinfo(h, CURLINFO_PROXY_ERROR, &px);
    *st = WH_RETRY;
    switch (px) {
    case CURLPX_USER_REJECTED:
    case CURLPX_NO_AUTH:
    case CURLPX_LONG_USER:
    case CURLPX_LONG_PASSWD:
        *st = WH_FAIL;
        return error_set(err, "proxy %s refused the credentials (proxy "
                         "authentication) for %s: %s", p->url, target,
                         detail), 1;
    case CURLPX_REPLY_NOT_ALLOWED:
        *st = WH_FAIL;
        return error_set(err, "proxy %s does not allow a connection to %s: "
                         "%s", p->url, target, detail), 1;
    case CURLPX_REPLY_CONNECTION_REFUSED:
    case CURLPX_REPLY_HOST_UNREACHABLE:
    case CURLPX_REPLY_NETWORK_UNREACHABLE:
    case CURLPX_REPLY_TTL_EXPIRED:
    case CURLPX_RESOLVE_HOST:
        return error_set(err, "proxy %s cannot reach %s: %s", p->url,
                         target, detail), 1;
    default:
        return error_set(err, "proxy %s failed on the way to %s: %s",
                         p->url, target, detail), 1;
    }
}

int net_client_proxy_failed(void *h, int rc, const struct net_proxy *p,
                            const char *target, const char *ebuf,
                            enum wh_status *st, struct error *err)
{
    if (p == NULL || p->url == NULL || rc == CURLE_OK)
        return 0;
    const char *detail = ebuf && ebuf[0] ? ebuf
                                         : curl_easy_strerror((CURLcode)rc);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_HTTP_CONNECTCODE, &code);
    if (code != 0 && code != 200) {
        int auth = code == 407 || code == 401;
        *st = auth ? WH_FAIL : WH_RETRY;
        return error_set(err, "proxy %s refused the tunnel to %s: HTTP %ld%s",
                         p->url, target, code,
                         auth ? " (proxy authentication)" : ""), 1;
    }
    if (rc == CURLE_PROXY)
        return socks_failed(h, p, target, detail, st, err);
    if (rc == CURLE_COULDNT_RESOLVE_PROXY) {
        *st = WH_RETRY;
        return error_set(err, "proxy %s: DNS cannot resolve its host",
                         p->url), 1;
    }
    if (rc == CURLE_COULDNT_CONNECT && failed_at_proxy(p->url, detail)) {
        *st = WH_RETRY;
        return error_set(err, "proxy %s: TCP connect failed: %s", p->url,
                         detail), 1;
    }
    return 0;
}

/* ---- transfer callbacks --------------------------------------------------- */

struct xfer {
    const struct net_client_req *req;
    struct net_client_resp *resp;
    size_t max;
    int64_t sent;
    int read_failed;
    struct error read_err;
    int write_failed;           /* the write function, or the cap */
    struct error write_err;
};

static int has_body(const struct net_client_req *r)
{
    return r->body_len >= 0 || r->body_len == NET_CLIENT_BODY_STREAMED;
}

/* A body of unknown length: what read gives, to its end. */
static size_t on_read_streamed(struct xfer *x, char *buf, size_t n)
{
    ssize_t got = x->req->read(x->req->read_ud, buf, n, &x->read_err);
    if (got < 0) {
        x->read_failed = 1;
        return CURL_READFUNC_ABORT;
    }
    x->sent += got;
    return (size_t)got;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nitems;
    if (x->req->body_len == NET_CLIENT_BODY_STREAMED)
        return on_read_streamed(x, buf, n);
    int64_t left = x->req->body_len - x->sent;
    if (left <= 0)
        return 0;
    if ((int64_t)n > left)
        n = (size_t)left;
    ssize_t got = x->req->read(x->req->read_ud, buf, n, &x->read_err);
    if (got < 0 || (got == 0 && left > 0)) {
        if (got == 0)
            error_set(&x->read_err, "the payload ended %lld bytes early",
                      (long long)left);
        x->read_failed = 1;
        return CURL_READFUNC_ABORT;
    }
    x->sent += got;
    return (size_t)got;
}

/* curl's seek: only back to the start (a kept-alive connection found
 * closed when the request went out: curl sends it again on a new one). */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
    struct xfer *x = ud;
    if (offset != 0 || origin != SEEK_SET || x->req->rewind == NULL ||
        x->req->body_len == NET_CLIENT_BODY_STREAMED ||
        x->req->rewind(x->req->read_ud) < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    x->sent = 0;
    return CURL_SEEKFUNC_OK;
}

int net_client_discard(void *ud, const void *buf, size_t n,
                       struct error *err)
{
    (void)buf;
    (void)err;
    if (ud)
        *(int64_t *)ud += (int64_t)n;
    return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    struct net_client_resp *r = x->resp;
    if (x->req->write) {
        if (x->req->write(x->req->write_ud, ptr, n, &x->write_err) < 0) {
            x->write_failed = 1;
            return 0;               /* aborts the transfer */
        }
        return n;
    }
    if (n > x->max - r->len) {      /* never a silent truncation */
        error_set(&x->write_err, "the response body of %s is larger than "
                  "%zu bytes (the most this request reads): not read",
                  x->req->url, x->max);
        x->write_failed = 1;
        return 0;
    }
    if (r->body == NULL && (r->body = malloc(x->max + 1)) == NULL) {
        error_set(&x->write_err, "out of memory");
        x->write_failed = 1;
        return 0;
    }
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* Keep the header block of the final response (a 1xx block is replaced
 * by the next), at most RESP_HEADERS_MAX bytes. */
#define RESP_HEADERS_MAX (64 * 1024)
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    struct net_client_resp *r = x->resp;
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0)
        r->headers_len = 0;         /* a new response: the status line */
    else if (r->headers_len + n <= RESP_HEADERS_MAX) {
        if (r->headers == NULL &&
            (r->headers = malloc(RESP_HEADERS_MAX + 1)) == NULL)
            return n;
        memcpy(r->headers + r->headers_len, ptr, n);
        r->headers_len += n;
        r->headers[r->headers_len] = '\0';
    }
    return n;
}

/* ---- classification ------------------------------------------------------- */

static const char *verify_reason(long v)
{
    switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "host name mismatch";
    case X509_V_ERR_CERT_REVOKED:
        return "certificate revoked";
    case X509_V_OK:
        return "host name mismatch";    /* curl's own name check failed */
    default:
        return "untrusted certificate";
    }
}

static enum wh_status classify(CURL *c, CURLcode rc,
                               const struct net_client_opts *o,
                               const char *url, const char *ebuf,
                               struct error *err)
{
    const char *detail = ebuf[0] ? ebuf : curl_easy_strerror(rc);
    long v = 0;
    struct net_proxy px = { o->proxy, o->no_proxy, o->proxy_auth };
    enum wh_status st;
    if (net_client_proxy_failed(c, rc, &px, url, ebuf, &st, err))
        return st;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return error_set(err, "DNS: cannot resolve the host of %s", url),
               WH_RETRY;
    case CURLE_COULDNT_RESOLVE_PROXY:
        return error_set(err, "DNS: cannot resolve the proxy host"), WH_RETRY;
    case CURLE_COULDNT_CONNECT:
        return error_set(err, "TCP connect to %s failed: %s", url, detail),
               WH_RETRY;
    case CURLE_OPERATION_TIMEDOUT:
        return error_set(err, "timeout talking to %s: %s", url, detail),
               WH_RETRY;
    case CURLE_PEER_FAILED_VERIFICATION:
        curl_easy_getinfo(c, CURLINFO_SSL_VERIFYRESULT, &v);
        return error_set(err, "TLS: %s (verify result %ld) for %s: %s",
                         verify_reason(v), v, url, detail), WH_FAIL;
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return error_set(err, "TLS: pin mismatch: the public key of %s is "
                         "not pin_sha256", url), WH_FAIL;
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
        return error_set(err, "TLS: local configuration: %s", detail), WH_FAIL;
    case CURLE_SSL_CONNECT_ERROR:
        return error_set(err, "TLS: handshake with %s failed: %s", url,
                         detail), WH_RETRY;
    case CURLE_UNSUPPORTED_PROTOCOL:
        return error_set(err, "protocol of %s not allowed", url), WH_FAIL;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return error_set(err, "connection to %s broke: %s", url, detail),
               WH_RETRY;
    default:
        break;
    }
    if (rc == CURLE_PROXY)
        return error_set(err, "proxy: %s", detail), WH_RETRY;
    return error_set(err, "request to %s failed: %s", url, detail), WH_RETRY;
}

enum wh_status net_client_status_class(long status)
{
    if (status == 408 || status == 429 || status >= 500)
        return WH_RETRY;
    return WH_FAIL;
}

void net_client_resp_free(struct net_client_resp *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    free(resp->headers);
    resp->body = NULL;
    resp->headers = NULL;
    resp->len = 0;
    resp->headers_len = 0;
}

/* ---- the request ---------------------------------------------------------- */

/* The certificate (and its chain) of o on ctx: from cert_pem or cert_file.
 * 1 or 0 (OpenSSL's convention). */
static int client_use_cert(SSL_CTX *ctx, const struct net_client_opts *o)
{
    if (o->cert_file)
        return SSL_CTX_use_certificate_chain_file(ctx, o->cert_file);
    BIO *b = BIO_new_mem_buf(secret_data(o->cert_pem),
                             (int)secret_len(o->cert_pem));
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
    X509_free(x);
    while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        ok = SSL_CTX_add0_chain_cert(ctx, x) == 1;
        if (!ok)
            X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();          /* the end of the PEM list */
    return ok;
}

/* CURLOPT_SSL_CTX_FUNCTION: our client certificate with its handle key
 * (which signs in the vault's process) on the connection's context. */
static CURLcode client_ssl_ctx(CURL *c, void *sslctx, void *ud)
{
    (void)c;
    const struct net_client_opts *o = ud;
    SSL_CTX *ctx = sslctx;
    int ok = client_use_cert(ctx, o) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, o->key) == 1 &&
             SSL_CTX_check_private_key(ctx) == 1;
    ERR_clear_error();
    return ok ? CURLE_OK : CURLE_SSL_CERTPROBLEM;
}

static CURLcode setup(CURL *c, const struct net_client_opts *o,
                      const struct net_client_req *r, struct xfer *x,
                      struct curl_slist *hdrs, struct secret *const *creds,
                      char *ebuf, char *pin)
{
    CURLcode rc = CURLE_OK;
#define OPT(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
    OPT(CURLOPT_URL, r->url);
    OPT(CURLOPT_PROTOCOLS_STR, o->insecure ? "http,https" : "https");
    OPT(CURLOPT_FOLLOWLOCATION, 0L);
    OPT(CURLOPT_SSL_VERIFYPEER, 1L);
    OPT(CURLOPT_SSL_VERIFYHOST, 2L);
    OPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    OPT(CURLOPT_SSL_CIPHER_LIST, TLS_CIPHERS_12);
    OPT(CURLOPT_TLS13_CIPHERS, TLS_SUITES_13);
    OPT(CURLOPT_SSL_EC_CURVES, TLS_GROUPS);
    if (o->ca_file)
        OPT(CURLOPT_CAINFO, o->ca_file);
    if (o->ca_pem) {
        struct curl_blob ca = { .data = (void *)secret_data(o->ca_pem),
                                .len = secret_len(o->ca_pem),
                                .flags = CURL_BLOB_COPY };
        OPT(CURLOPT_CAINFO_BLOB, &ca);
    }
    if (pin)
        OPT(CURLOPT_PINNEDPUBLICKEY, pin);
    if (o->key && (o->cert_file || o->cert_pem)) {
        OPT(CURLOPT_SSL_CTX_FUNCTION, client_ssl_ctx);
        OPT(CURLOPT_SSL_CTX_DATA, (void *)o);
        OPT(CURLOPT_FRESH_CONNECT, 1L);
        OPT(CURLOPT_FORBID_REUSE, 1L);
        OPT(CURLOPT_SSL_SESSIONID_CACHE, 0L);
    } else if (o->cert_file) {
        OPT(CURLOPT_SSLCERT, o->cert_file);
        if (o->key_file)
            OPT(CURLOPT_SSLKEY, o->key_file);
    }
    if (o->cert_pem && o->key == NULL) {
        struct curl_blob cert = { .data = (void *)secret_data(o->cert_pem),
                                  .len = secret_len(o->cert_pem),
                                  .flags = CURL_BLOB_COPY };
        OPT(CURLOPT_SSLCERT_BLOB, &cert);
        OPT(CURLOPT_SSLCERTTYPE, "PEM");
    }
    if ((o->cert_file || o->cert_pem) && o->key_pem) {
        struct curl_blob key = { .data = (void *)secret_data(o->key_pem),
                                 .len = secret_len(o->key_pem),
                                 .flags = CURL_BLOB_COPY };
        OPT(CURLOPT_SSLKEY_BLOB, &key);
        OPT(CURLOPT_SSLKEYTYPE, "PEM");
    }
    struct net_proxy px = { o->proxy, o->no_proxy, o->proxy_auth };
    if (rc == CURLE_OK)
        rc = (CURLcode)net_client_proxy_setopt(c, &px);
    if (r->user && creds[0]) {
        OPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        OPT(CURLOPT_USERNAME, r->user);
        OPT(CURLOPT_PASSWORD, (const char *)secret_data(creds[0]));
    } else if (creds[1]) {
        OPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        OPT(CURLOPT_XOAUTH2_BEARER, (const char *)secret_data(creds[1]));
    }
    OPT(CURLOPT_NOSIGNAL, 1L);
    OPT(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms > 0
        ? o->connect_timeout_ms : DEFAULT_CONNECT_MS);
    OPT(CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms
        : DEFAULT_TIMEOUT_MS);
    OPT(CURLOPT_WRITEFUNCTION, on_write);
    OPT(CURLOPT_WRITEDATA, x);
    OPT(CURLOPT_HEADERFUNCTION, on_header);
    OPT(CURLOPT_HEADERDATA, x);
    OPT(CURLOPT_ERRORBUFFER, ebuf);
    OPT(CURLOPT_USERAGENT, "wharf/" WHARF_VERSION);
    OPT(CURLOPT_HTTPHEADER, hdrs);
    OPT(CURLOPT_VERBOSE, 0L);
    const char *m = r->method ? r->method : "POST";
    if (strcmp(m, "HEAD") == 0) {
        OPT(CURLOPT_NOBODY, 1L);
    } else if (has_body(r) && strcmp(m, "POST") == 0) {
        /* -1: unknown, sent chunked (HTTP/1.1) */
        OPT(CURLOPT_POST, 1L);
        OPT(CURLOPT_POSTFIELDSIZE_LARGE, r->body_len >= 0
            ? (curl_off_t)r->body_len : (curl_off_t)-1);
    } else if (has_body(r)) {
        OPT(CURLOPT_UPLOAD, 1L);
        OPT(CURLOPT_INFILESIZE_LARGE, r->body_len >= 0
            ? (curl_off_t)r->body_len : (curl_off_t)-1);
        if (strcmp(m, "PUT") != 0)
            OPT(CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") != 0) {
        OPT(CURLOPT_CUSTOMREQUEST, m);
    }
    if (has_body(r)) {
        if (r->body_len == NET_CLIENT_BODY_STREAMED)
            OPT(CURLOPT_UPLOAD_BUFFERSIZE, STREAM_UPLOAD_BUFFER);
        OPT(CURLOPT_READFUNCTION, on_read);
        OPT(CURLOPT_READDATA, x);
        OPT(CURLOPT_SEEKFUNCTION, on_seek);
        OPT(CURLOPT_SEEKDATA, x);
    }
    if (rc == CURLE_OK)
        rc = (CURLcode)net_client_progress_setopt(c);
#undef OPT
    return rc;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ud;
    progress_curl(dltotal, dlnow, ultotal, ulnow);
    return 0;               /* never aborts a transfer */
}

int net_client_progress_setopt(void *h)
{
    CURLcode rc = curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    return (int)rc;
}

enum wh_status net_client_request(const struct net_client_opts *o,
                                  const struct net_client_req *r,
                                  struct net_client_resp *resp,
                                  struct error *err)
{
    memset(resp, 0, sizeof(*resp));
    if (net_client_url_check(r->url, o->insecure, err) < 0)
        return WH_FAIL;
    if (has_body(r) && r->read == NULL)
        return error_set(err, "a body needs a read function"), WH_FAIL;
    if (!net_curl_ready())
        return error_set(err, "cannot initialize libcurl"), WH_RETRY;

    struct xfer x = { .req = r, .resp = resp,
                      .max = o->max_response ? o->max_response
                                             : DEFAULT_MAX_RESPONSE };
    struct curl_slist *hdrs = NULL, *t;
    int oom = 0;
    /* No "Expect: 100-continue" round trip; the body follows the head. */
    if ((t = curl_slist_append(hdrs, "Expect:")) == NULL)
        oom = 1;
    else
        hdrs = t;
    for (size_t i = 0; !oom && r->headers && r->headers[i]; i++) {
        if ((t = curl_slist_append(hdrs, r->headers[i])) == NULL)
            oom = 1;
        else
            hdrs = t;
    }
    char pin[128] = "";
    if (o->pin_sha256)
        snprintf(pin, sizeof(pin), "%s%s",
                 strncmp(o->pin_sha256, "sha256//", 8) ? "sha256//" : "",
                 o->pin_sha256);
    struct secret *creds[2] = {
        r->password ? secret_cstr(r->password) : NULL,
        r->bearer ? secret_cstr(r->bearer) : NULL,
    };
    if ((r->password && !creds[0]) || (r->bearer && !creds[1]))
        oom = 1;
    CURL *c = oom ? NULL : thread_handle();
    enum wh_status st;
    if (c == NULL) {
        st = WH_RETRY;
        error_set(err, "out of memory");
    } else {
        char ebuf[CURL_ERROR_SIZE] = "";
        CURLcode rc = setup(c, o, r, &x, hdrs, creds, ebuf,
                            o->pin_sha256 ? pin : NULL);
        if (rc != CURLE_OK) {
            st = WH_FAIL;
            error_set(err, "cannot set up the request: %s",
                      curl_easy_strerror(rc));
        } else {
            rc = curl_easy_perform(c);
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
            if (rc == CURLE_OK) {
                st = WH_OK;
            } else if (x.read_failed) {
                st = WH_FAIL;
                *err = x.read_err;
                error_prefix(err, "reading the payload");
            } else if (x.write_failed) {
                st = WH_FAIL;
                *err = x.write_err;
            } else {
                st = classify(c, rc, o, r->url, ebuf, err);
                resp->status = 0;
            }
        }
    }
    /* a header may carry a credential (Authorization, X-Api-Key ...) */
    for (struct curl_slist *n = hdrs; n != NULL; n = n->next)
        OPENSSL_cleanse(n->data, strlen(n->data));
    curl_slist_free_all(hdrs);
    for (size_t i = 0; i < 2; i++)
        secret_free(creds[i]);
    return st;
}

/* ---- URL parts, for listings -------------------------------------------------- */

int net_url_parts(const char *url, char *scheme, size_t scheme_n, char *host,
                  size_t host_n, int *port, struct error *err)
{
    CURLU *u = curl_url();
    char *sc = NULL, *h = NULL, *p = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &sc, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) ==
            CURLUE_OK) {
        snprintf(scheme, scheme_n, "%s", sc);
        snprintf(host, host_n, "%s", h);
        *port = (int)strtol(p, NULL, 10);
        rc = 0;
    } else {
        error_set(err, "not a URL with a host");
    }
    curl_free(sc);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

/* "OpenSSL/3.0.19" -> "3.0.19" (curl names the library before a '/'). */
static const char *lib_after_slash(const char *v)
{
    const char *slash = v ? strchr(v, '/') : NULL;
    return slash ? slash + 1 : v;
}

size_t net_client_lib_versions(struct net_lib_version *out, size_t max)
{
    const curl_version_info_data *d = curl_version_info(CURLVERSION_NOW);
    const struct net_lib_version all[] = {
        { "curl", d->version },
        { "curl-tls", lib_after_slash(d->ssl_version) },
        { "curl-zlib", d->libz_version },
        { "libssh2", d->age >= 3 ? lib_after_slash(d->libssh_version) : NULL },
        { "libidn2", d->age >= 1 ? d->libidn : NULL },
        { "brotli", d->age >= 5 ? d->brotli_version : NULL },
        { "nghttp2", d->age >= 6 ? d->nghttp2_version : NULL },
        { "zstd", d->age >= 8 ? d->zstd_version : NULL },
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]) && n < max; i++)
        if (all[i].version && all[i].version[0])
            out[n++] = all[i];
    return n;
}
