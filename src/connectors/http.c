/*
 * http.c - the HTTP(S) destination connector (M6, R3, R4, R11): POST or
 * PUT each message's payload to a URL through net/client.h, the one
 * outbound client.
 *
 * Config:
 *   url          https://... (http:// only with "insecure": true)
 *   method       "POST" (default) or "PUT"
 *   headers      {"Name": "value", ...} sent with every request
 *   auth         {"type":"basic","user":..,"password_file":..}
 *                {"type":"bearer","token_file":..}
 *                {"type":"client_cert","cert":..,"key":..}
 *   tls_ca       PEM CA bundle for the partner (default: system store)
 *   pin_sha256   base64 SHA-256 of the partner's public key
 *   proxy        "http://host:port" / "socks5h://host:port", or
 *                {"url":..,"credentials_file":..,"no_proxy":"a,b"}
 *   insecure     true allows http:// (TLS verification is never off)
 *   success      [status, ...] that mean delivered (default 200..299)
 *   timeout_ms   whole request (default 600000)
 *
 * Each request streams the decrypted payload (constant memory) with its
 * Content-Length, X-Wharf-Message-Id and X-Wharf-Filename (sanitized to
 * printable ASCII). A status in `success` is WH_OK; 408, 429 and 5xx are
 * WH_RETRY; any other status WH_FAIL. test() sends a HEAD to the URL and
 * reports DNS / TCP / TLS (why) / authentication / HTTP status precisely.
 *
 * Secrets (password, token, proxy credentials) are read from their files
 * at open() into struct secret. Storing them sealed by the vault instead of
 * as files is for later (issue 5, item 6). Must never: log or put into an
 * error a header value, credential or body; deliver through anything but
 * net_client_request.
 */
#include "connectors/connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "net/client.h"
#include "util/secret.h"
#include "vault/vault.h"

#define MAX_HEADERS 64
#define MAX_SUCCESS 64

struct http_state {
    const char *url, *method, *user;
    struct net_client_opts opts;
    struct secret *password, *bearer, *proxy_auth;
    char **headers;             /* "Name: value", NULL-terminated; owned */
    size_t nheaders;
    int success[MAX_SUCCESS];
    size_t nsuccess;            /* 0: 200..299 */
};

/* ---- config --------------------------------------------------------------- */

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int token_ok(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 128)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static int value_ok(const char *s)
{
    if (s == NULL || strlen(s) > 4096)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 0;
    return 1;
}

static int reserved_header(const char *name)
{
    static const char *const r[] = { "content-length", "transfer-encoding",
        "host", "authorization", "x-wharf-filename", "x-wharf-message-id",
        "expect", "proxy-authorization" };
    for (size_t i = 0; i < sizeof(r) / sizeof(*r); i++)
        if (strcasecmp(name, r[i]) == 0)
            return 1;
    return 0;
}

/* Fill the client options from cfg (pointers into cfg); no secrets. */
static int opts_parse(const json_t *cfg, struct net_client_opts *o,
                      const char **cred_file, struct error *err)
{
    memset(o, 0, sizeof(*o));
    *cred_file = NULL;
    o->ca_file = str(cfg, "tls_ca");
    o->pin_sha256 = str(cfg, "pin_sha256");
    const json_t *ins = json_object_get(cfg, "insecure");
    if (ins && !json_is_boolean(ins))
        return error_set(err, "insecure must be true or false");
    o->insecure = json_is_true(ins);
    const json_t *px = json_object_get(cfg, "proxy");
    if (json_is_string(px)) {
        o->proxy = json_string_value(px);
    } else if (json_is_object(px)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)px, k, v) {
            if ((strcmp(k, "url") && strcmp(k, "credentials_file") &&
                 strcmp(k, "no_proxy")) || !json_is_string(v))
                return error_set(err, "proxy: unknown or non-string key "
                                 "\"%s\"", k);
        }
        o->proxy = str(px, "url");
        o->no_proxy = str(px, "no_proxy");
        *cred_file = str(px, "credentials_file");
        if (o->proxy == NULL)
            return error_set(err, "proxy needs url");
        if (connector_file_ok("proxy.credentials_file", *cred_file, 0,
                              err) < 0)
            return -1;
    } else if (px) {
        return error_set(err, "proxy must be a URL or an object");
    }
    const json_t *to = json_object_get(cfg, "timeout_ms");
    if (to && (!json_is_integer(to) || json_integer_value(to) < 100 ||
               json_integer_value(to) > 86400000))
        return error_set(err, "timeout_ms must be 100..86400000");
    if (to)
        o->timeout_ms = (long)json_integer_value(to);
    const json_t *auth = json_object_get(cfg, "auth");
    const char *type = str(auth, "type");
    if (type && strcmp(type, "client_cert") == 0) {
        o->cert_file = str(auth, "cert");
        o->key_file = str(auth, "key");
        if (!o->cert_file || !o->key_file)
            return error_set(err, "auth client_cert needs cert and key");
    }
    return net_client_opts_check(o, err);
}

static int auth_check(const json_t *auth, struct error *err)
{
    if (auth == NULL)
        return 0;
    const char *type = str(auth, "type");
    if (!json_is_object(auth) || type == NULL)
        return error_set(err, "auth must be an object with a type");
    const char *k;
    json_t *v;
    if (strcmp(type, "basic") == 0) {
        json_object_foreach((json_t *)auth, k, v) {
            if (strcmp(k, "type") && strcmp(k, "user") &&
                strcmp(k, "password_file"))
                return error_set(err, "auth basic: unknown key \"%s\"", k);
        }
        const char *user = str(auth, "user");
        if (user == NULL || user[0] == '\0' || strchr(user, ':') ||
            !value_ok(user))
            return error_set(err, "auth basic needs a user without ':'");
        return connector_file_ok("password_file",
                                 str(auth, "password_file"), 1, err);
    }
    if (strcmp(type, "bearer") == 0) {
        json_object_foreach((json_t *)auth, k, v) {
            if (strcmp(k, "type") && strcmp(k, "token_file"))
                return error_set(err, "auth bearer: unknown key \"%s\"", k);
        }
        return connector_file_ok("token_file", str(auth, "token_file"), 1,
                                 err);
    }
    if (strcmp(type, "client_cert") == 0) {
        json_object_foreach((json_t *)auth, k, v) {
            if (strcmp(k, "type") && strcmp(k, "cert") && strcmp(k, "key"))
                return error_set(err, "auth client_cert: unknown key \"%s\"",
                                 k);
        }
        return 0;   /* files checked by net_client_opts_check */
    }
    if (strcmp(type, "oauth2") == 0)
        return error_set(err, "auth oauth2 is not supported yet");
    return error_set(err, "auth type must be basic, bearer or client_cert, "
                     "not \"%s\"", type);
}

static int http_check(const json_t *cfg, struct error *err)
{
    static const char *const keys[] = { "url", "method", "headers", "auth",
        "tls_ca", "pin_sha256", "proxy", "insecure", "success",
        "timeout_ms" };
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)cfg, k, v) {
        size_t i;
        for (i = 0; i < sizeof(keys) / sizeof(*keys); i++)
            if (strcmp(k, keys[i]) == 0)
                break;
        if (i == sizeof(keys) / sizeof(*keys))
            return error_set(err, "unknown key \"%s\"", k);
    }
    static const char *const strs[] = { "url", "method", "tls_ca",
                                        "pin_sha256" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(*strs); i++)
        if (json_object_get(cfg, strs[i]) && !str(cfg, strs[i]))
            return error_set(err, "%s must be a string", strs[i]);
    struct net_client_opts o;
    const char *cred;
    if (opts_parse(cfg, &o, &cred, err) < 0)
        return -1;
    if (net_client_url_check(str(cfg, "url"), o.insecure, err) < 0)
        return -1;
    const char *m = str(cfg, "method");
    if (m && strcmp(m, "POST") && strcmp(m, "PUT"))
        return error_set(err, "method must be \"POST\" or \"PUT\"");
    const json_t *h = json_object_get(cfg, "headers");
    if (h && !json_is_object(h))
        return error_set(err, "headers must be an object");
    if (json_object_size(h) > MAX_HEADERS)
        return error_set(err, "at most %d headers", MAX_HEADERS);
    json_object_foreach((json_t *)h, k, v) {
        if (!token_ok(k))
            return error_set(err, "header name \"%.64s\" is not a token", k);
        if (reserved_header(k))
            return error_set(err, "header %s is set by Wharf", k);
        if (!value_ok(json_string_value(v)))
            return error_set(err, "header %s needs a one-line string value", k);
    }
    const json_t *s = json_object_get(cfg, "success");
    if (s && (!json_is_array(s) || json_array_size(s) == 0 ||
              json_array_size(s) > MAX_SUCCESS))
        return error_set(err, "success must be a list of 1..%d status codes",
                         MAX_SUCCESS);
    size_t i;
    json_array_foreach(s, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 100 ||
            json_integer_value(v) > 599)
            return error_set(err, "success: status codes are 100..599");
    }
    return auth_check(json_object_get(cfg, "auth"), err);
}

static void http_close(struct connector *c)
{
    struct http_state *hs = c->state;
    if (hs == NULL)
        return;
    secret_free(hs->password);
    secret_free(hs->bearer);
    secret_free(hs->proxy_auth);
    for (size_t i = 0; hs->headers && i < hs->nheaders; i++)
        free(hs->headers[i]);
    free(hs->headers);
    free(hs);
    c->state = NULL;
}

static enum wh_status http_open(struct connector *c, struct error *err)
{
    struct http_state *hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return error_set(err, "out of memory"), WH_FAIL;
    c->state = hs;
    const json_t *cfg = c->config;
    const char *cred = NULL;
    if (opts_parse(cfg, &hs->opts, &cred, err) < 0)
        goto fail;
    hs->opts.proxy_auth = NULL;
    hs->url = str(cfg, "url");
    hs->method = str(cfg, "method") ? str(cfg, "method") : "POST";
    const json_t *auth = json_object_get(cfg, "auth");
    const char *type = str(auth, "type");
    if (type && strcmp(type, "basic") == 0) {
        hs->user = str(auth, "user");
        if ((hs->password = secret_from_file(str(auth, "password_file"),
                                             err)) == NULL)
            goto fail;
    } else if (type && strcmp(type, "bearer") == 0) {
        if ((hs->bearer = secret_from_file(str(auth, "token_file"), err))
            == NULL)
            goto fail;
    }
    if (cred) {
        if ((hs->proxy_auth = secret_from_file(cred, err)) == NULL)
            goto fail;
        hs->opts.proxy_auth = hs->proxy_auth;
    }
    const json_t *h = json_object_get(cfg, "headers");
    hs->headers = calloc(json_object_size(h) + 1, sizeof(char *));
    if (hs->headers == NULL)
        goto oom;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)h, k, v) {
        size_t n = strlen(k) + strlen(json_string_value(v)) + 3;
        char *line = malloc(n);
        if (line == NULL)
            goto oom;
        snprintf(line, n, "%s: %s", k, json_string_value(v));
        hs->headers[hs->nheaders++] = line;
    }
    size_t i;
    json_array_foreach(json_object_get(cfg, "success"), i, v) {
        if (hs->nsuccess < MAX_SUCCESS)
            hs->success[hs->nsuccess++] = (int)json_integer_value(v);
    }
    return WH_OK;
oom:
    error_set(err, "out of memory");
fail:
    http_close(c);
    return WH_FAIL;
}

/* ---- delivery ------------------------------------------------------------- */

static int is_success(const struct http_state *hs, long status)
{
    if (hs->nsuccess == 0)
        return status >= 200 && status <= 299;
    for (size_t i = 0; i < hs->nsuccess; i++)
        if (hs->success[i] == status)
            return 1;
    return 0;
}

/* Printable ASCII without quotes or backslashes, at most 200 bytes. */
static void sanitize_filename(const char *in, char *out, size_t outsz)
{
    size_t j = 0;
    for (; in && *in && j + 1 < outsz && j < 200; in++) {
        unsigned char ch = (unsigned char)*in;
        out[j++] = (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
                   ? '_' : (char)ch;
    }
    out[j] = '\0';
}

struct body {
    struct payload_reader *r;
    int64_t left;
};

/* Stream the payload; after its last byte, insist on the verified end. */
static ssize_t body_read(void *ud, void *buf, size_t n, struct error *err)
{
    struct body *b = ud;
    ssize_t got = payload_read(b->r, buf, n, err);
    if (got <= 0)
        return got;
    b->left -= got;
    if (b->left < 0)
        return error_set(err, "the payload is longer than its recorded size");
    if (b->left == 0) {
        unsigned char extra[16];
        ssize_t e = payload_read(b->r, extra, sizeof(extra), err);
        if (e != 0)
            return e < 0 ? -1 : error_set(err, "the payload is longer than "
                                          "its recorded size");
    }
    return got;
}

/* Headers of one request: the configured ones plus ours. */
static const char **request_headers(const struct http_state *hs,
                                    char *idh, size_t idsz,
                                    const struct message *m,
                                    char *fnh, size_t fnsz)
{
    const char **h = calloc(hs->nheaders + 3, sizeof(char *));
    if (h == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < hs->nheaders; i++)
        h[n++] = hs->headers[i];
    if (m) {
        snprintf(idh, idsz, "X-Wharf-Message-Id: %s", m->id);
        h[n++] = idh;
        if (m->filename) {
            char clean[256];
            sanitize_filename(m->filename, clean, sizeof(clean));
            snprintf(fnh, fnsz, "X-Wharf-Filename: %s", clean);
            h[n++] = fnh;
        }
    }
    return h;
}

static enum wh_status http_deliver(struct connector *c, struct delivery *d)
{
    struct http_state *hs = c->state;
    const struct message *m = d->msg;
    char idh[128], fnh[300];
    const char **hdrs = request_headers(hs, idh, sizeof(idh), m, fnh,
                                        sizeof(fnh));
    if (hdrs == NULL)
        return error_set(&d->err, "out of memory"), d->status = WH_RETRY;
    struct body b = { .r = message_payload_open(m, &d->err), .left = m->size };
    if (b.r == NULL) {
        free(hdrs);
        return d->status = WH_FAIL;
    }
    struct net_client_req req = {
        .method = hs->method, .url = hs->url, .headers = hdrs,
        .user = hs->user, .password = hs->password, .bearer = hs->bearer,
        .body_len = m->size, .read = body_read, .read_ud = &b,
    };
    struct net_client_resp resp;
    conn_log(c, LOG_DEBUG, m->id, "%s %s (%lld bytes)", hs->method, hs->url,
             (long long)m->size);
    enum wh_status st = net_client_request(&hs->opts, &req, &resp, &d->err);
    payload_close(b.r);
    free(hdrs);
    if (st == WH_OK && is_success(hs, resp.status)) {
        snprintf(d->receipt, sizeof(d->receipt), "HTTP %ld from %.200s",
                 resp.status, hs->url);
    } else if (st == WH_OK) {
        st = net_client_status_class(resp.status);
        error_set(&d->err, "HTTP %ld from %s%s", resp.status, hs->url,
                  resp.status == 401 || resp.status == 403
                  ? " (authentication refused)" : "");
    }
    net_client_resp_free(&resp);
    return d->status = st;
}

static enum wh_status http_test(struct connector *c, struct error *err)
{
    struct http_state *hs = c->state;
    char idh[8], fnh[8];
    const char **hdrs = request_headers(hs, idh, sizeof(idh), NULL, fnh,
                                        sizeof(fnh));
    if (hdrs == NULL)
        return error_set(err, "out of memory"), WH_RETRY;
    struct net_client_req req = {
        .method = "HEAD", .url = hs->url, .headers = hdrs, .user = hs->user,
        .password = hs->password, .bearer = hs->bearer, .body_len = -1,
    };
    struct net_client_resp resp;
    struct net_client_opts o = hs->opts;
    if (o.timeout_ms == 0 || o.timeout_ms > 30000)
        o.timeout_ms = 30000;
    enum wh_status st = net_client_request(&o, &req, &resp, err);
    free(hdrs);
    if (st == WH_OK && (resp.status == 401 || resp.status == 403)) {
        error_set(err, "authentication: HTTP %ld from %s", resp.status,
                  hs->url);
        st = WH_FAIL;
    } else if (st == WH_OK && resp.status >= 500) {
        error_set(err, "HTTP %ld from %s", resp.status, hs->url);
        st = WH_RETRY;
    }
    /* Any other answer (2xx, 404, 405 to a HEAD) proves DNS, TCP, TLS and
     * credentials that were not refused. */
    net_client_resp_free(&resp);
    return st;
}

const struct connector_type connector_http = {
    .name = "http",
    .check = http_check,
    .open = http_open,
    .deliver = http_deliver,
    .test = http_test,
    .close = http_close,
};
