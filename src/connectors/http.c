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
 *                {"type":"oauth2","grant":"client_credentials" or
 *                 "authorization_code","token_url":..,"client_id":..,
 *                 "client_secret_file":..,"scope":..,"client_auth":
 *                 "basic" (default) or "post","authorize_url":..,
 *                 "redirect_uri":.. (default https://ADMIN_LISTEN/oauth/
 *                 callback),"tls_ca":.. (token endpoint; default tls_ca),
 *                 "refresh_margin_s":60}
 *   tls_ca       PEM CA bundle for the partner (default: system store)
 *   pin_sha256   base64 SHA-256 of the partner's public key
 *   proxy        "http://host:port" / "socks5h://host:port", "direct"
 *                (not even wharf.conf's proxy), or {"url":..,
 *                "credentials_file":..,"no_proxy":"a,b"} (connectors/
 *                proxy.h); absent: wharf.conf's proxy, if any
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
 * OAuth 2.0 (R8): the access token is kept in memory (under a mutex:
 * deliveries run on several workers) and sealed in the store as connector
 * state "oauth.access" (with its expiry), the refresh token as
 * "oauth.refresh". It is renewed before each request once it is within
 * refresh_margin_s (at most half its lifetime) of expiry, and once after a
 * 401 from the partner, which is then sent the message again once. A
 * refresh token the endpoint refuses (invalid_grant) fails the hop and
 * leaves the mark "oauth.revoked": later deliveries fail at once without
 * contacting the token endpoint, until an authorization (http.h) succeeds.
 * Before renewing, the stored tokens are read again: the admin listener's
 * callback, another worker or node may have stored newer ones.
 *
 * Secrets (password, token, client secret, proxy credentials) come sealed
 * from the vault (connector_secret). Must never: log or put into an error
 * a header value, credential, token or body; deliver through anything but
 * net_client_request.
 */
#include "connectors/connector.h"
#include "connectors/http.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "connectors/proxy.h"
#include "core/wharf.h"
#include "net/client.h"
#include "net/oauth.h"
#include "store/store.h"
#include "util/id.h"
#include "util/secret.h"
#include "vault/vault.h"

#define MAX_HEADERS 64
#define MAX_SUCCESS 64

struct http_state {
    const char *url, *method, *user;
    struct net_client_opts opts;
    struct connector_proxy proxy;   /* opts.proxy*: owned */
    const struct secret *password, *bearer;    /* borrowed from c */
    char **headers;             /* "Name: value", NULL-terminated; owned
                                   (credential headers point into hidden) */
    size_t nheaders;
    struct secret **hidden;     /* credential header lines; owned */
    size_t nhidden;
    int success[MAX_SUCCESS];
    size_t nsuccess;            /* 0: 200..299 */
    struct oauth_conn *oauth;   /* auth oauth2, else NULL; owned */
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
                      struct error *err)
{
    memset(o, 0, sizeof(*o));
    if (connector_secret_ok("tls_ca", json_object_get(cfg, "tls_ca"), 0,
                            err) < 0)
        return -1;
    o->pin_sha256 = str(cfg, "pin_sha256");
    const json_t *ins = json_object_get(cfg, "insecure");
    if (ins && !json_is_boolean(ins))
        return error_set(err, "insecure must be true or false");
    o->insecure = json_is_true(ins);
    if (connector_proxy_check(cfg, err) < 0)    /* open() picks it */
        return -1;
    const json_t *to = json_object_get(cfg, "timeout_ms");
    if (to && (!json_is_integer(to) || json_integer_value(to) < 100 ||
               json_integer_value(to) > 86400000))
        return error_set(err, "timeout_ms must be 100..86400000");
    if (to)
        o->timeout_ms = (long)json_integer_value(to);
    const json_t *auth = json_object_get(cfg, "auth");
    const char *type = str(auth, "type");
    if (type && strcmp(type, "client_cert") == 0) {
        /* open() sets the pair: the key comes sealed, from the vault */
        if (connector_secret_ok("auth.cert", json_object_get(auth, "cert"), 1,
                                err) < 0 ||
            connector_secret_ok("auth.key", json_object_get(auth, "key"), 1,
                                err) < 0)
            return -1;
    }
    return net_client_opts_check(o, err);
}

/* An https:// URL under config key `key` (required or not). */
static int oauth_url_ok(const json_t *auth, const char *key, int required,
                        struct error *err)
{
    const char *url = str(auth, key);
    if (url == NULL)
        return required ? error_set(err, "auth oauth2 needs %s", key) : 0;
    if (net_client_url_check(url, 0, err) < 0 || !value_ok(url) ||
        strchr(url, ' ') || strchr(url, '#')) {
        error_set(err, "auth oauth2 %s must be an https:// URL without "
                  "blanks or a fragment", key);
        return -1;
    }
    return 0;
}

static int oauth_check(const json_t *auth, struct error *err)
{
    static const char *const keys[] = { "type", "grant", "token_url",
        "client_id", "client_secret_file", "scope", "client_auth",
        "authorize_url", "redirect_uri", "tls_ca", "refresh_margin_s" };
    size_t nkeys = sizeof(keys) / sizeof(*keys);
    if (connector_keys_only(auth, keys, nkeys, "auth oauth2", err) < 0)
        return -1;
    for (size_t i = 0; i + 1 < nkeys; i++)
        if (json_object_get(auth, keys[i]) && !str(auth, keys[i]) &&
            strcmp(keys[i], "tls_ca") && strcmp(keys[i], "client_secret_file"))
            return error_set(err, "auth oauth2 %s must be a string", keys[i]);
    const char *grant = str(auth, "grant");
    if (grant == NULL || (strcmp(grant, "client_credentials") &&
                          strcmp(grant, "authorization_code")))
        return error_set(err, "auth oauth2 grant must be "
                         "\"client_credentials\" or \"authorization_code\"");
    int code = strcmp(grant, "authorization_code") == 0;
    const char *id = str(auth, "client_id");
    if (id == NULL || id[0] == '\0' || strlen(id) > 256 || !value_ok(id))
        return error_set(err, "auth oauth2 needs a client_id (one line, at "
                         "most 256 characters)");
    const char *scope = str(auth, "scope"), *ca = str(auth, "client_auth");
    if (scope && (strlen(scope) > 1024 || !value_ok(scope)))
        return error_set(err, "auth oauth2 scope must be one line of at most "
                         "1024 characters");
    if (ca && strcmp(ca, "basic") && strcmp(ca, "post"))
        return error_set(err, "auth oauth2 client_auth must be \"basic\" or "
                         "\"post\"");
    const json_t *m = json_object_get(auth, "refresh_margin_s");
    if (m && (!json_is_integer(m) || json_integer_value(m) < 0 ||
              json_integer_value(m) > 3600))
        return error_set(err, "auth oauth2 refresh_margin_s must be 0..3600");
    if (!code && (str(auth, "authorize_url") || str(auth, "redirect_uri")))
        return error_set(err, "auth oauth2 authorize_url and redirect_uri "
                         "belong to the authorization_code grant");
    if (oauth_url_ok(auth, "token_url", 1, err) < 0 ||
        oauth_url_ok(auth, "authorize_url", code, err) < 0 ||
        oauth_url_ok(auth, "redirect_uri", 0, err) < 0)
        return -1;
    if (connector_secret_ok("auth.tls_ca", json_object_get(auth, "tls_ca"), 0,
                            err) < 0)
        return -1;
    /* a public client (no secret) is fine with PKCE, not for
     * client_credentials */
    return connector_secret_ok("auth.client_secret_file",
                               json_object_get(auth, "client_secret_file"),
                               !code, err);
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
        return connector_secret_ok("password_file",
                                   json_object_get(auth, "password_file"), 1,
                                   err);
    }
    if (strcmp(type, "bearer") == 0) {
        json_object_foreach((json_t *)auth, k, v) {
            if (strcmp(k, "type") && strcmp(k, "token_file"))
                return error_set(err, "auth bearer: unknown key \"%s\"", k);
        }
        return connector_secret_ok("token_file",
                                   json_object_get(auth, "token_file"), 1,
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
        return oauth_check(auth, err);
    return error_set(err, "auth type must be basic, bearer, client_cert or "
                     "oauth2, not \"%s\"", type);
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
    static const char *const strs[] = { "url", "method", "pin_sha256" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(*strs); i++)
        if (json_object_get(cfg, strs[i]) && !str(cfg, strs[i]))
            return error_set(err, "%s must be a string", strs[i]);
    struct net_client_opts o;
    if (opts_parse(cfg, &o, err) < 0)
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
        if (connector_credential_name(k) && !json_is_string(v)) {
            if (connector_secret_ok(k, v, 1, err) < 0)   /* sealed form */
                return -1;
        } else if (!value_ok(json_string_value(v))) {
            return error_set(err, "header %s needs a one-line string value", k);
        }
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

/* ---- OAuth 2.0 tokens (R8) ------------------------------------------------- */

#define OAUTH_TOKEN_TIMEOUT_MS 30000L

struct oauth_conn {
    pthread_mutex_t mu;
    struct oauth_endpoint ep;       /* strings borrowed from c->config */
    int code_grant;                 /* authorization_code, else
                                       client_credentials */
    const char *authorize_url;
    char redirect_uri[300];
    int64_t margin_ms;
    /* under mu: */
    struct secret *access;
    int64_t expires_at;             /* ms since the epoch; 0: not said */
    int64_t refresh_at;             /* renew from then on; 0: never */
    struct secret *refresh;
    int revoked;                    /* "oauth.revoked" is stored */
};

static void oauth_free(struct oauth_conn *o)
{
    if (o == NULL)
        return;
    secret_free(o->access);
    secret_free(o->refresh);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

/* Replace *slot by v (which it takes). */
static void secret_swap(struct secret **slot, struct secret *v)
{
    secret_free(*slot);
    *slot = v;
}

/* Read the stored tokens and the revocation mark into o (under o->mu). */
static int oauth_load(struct connector *c, struct oauth_conn *o,
                      struct error *err)
{
    struct secret *v = NULL;
    int64_t exp = 0;
    int rc = connector_state_get(c->wharf, c->name, "oauth.revoked", &v, NULL,
                                 err);
    if (rc < 0)
        return -1;
    secret_free(v);
    o->revoked = rc == 1;
    rc = connector_state_get(c->wharf, c->name, "oauth.access", &v, &exp, err);
    if (rc < 0)
        return -1;
    if (rc == 1 && !secret_equal(v, o->access)) {
        secret_swap(&o->access, v);
        o->expires_at = exp;
        o->refresh_at = exp ? exp - o->margin_ms : 0;
    } else {
        secret_free(v);
        if (rc == 0)
            secret_swap(&o->access, NULL);
    }
    rc = connector_state_get(c->wharf, c->name, "oauth.refresh", &v, NULL,
                             err);
    if (rc < 0)
        return -1;
    secret_swap(&o->refresh, rc == 1 ? v : NULL);
    return 0;
}

/* May o->access be sent (it is not the one the partner just refused)? */
static int oauth_usable(const struct oauth_conn *o,
                        const struct secret *rejected)
{
    if (o->revoked || o->access == NULL)
        return 0;
    if (rejected && secret_equal(o->access, rejected))
        return 0;
    return o->refresh_at == 0 || time_now_ms() < o->refresh_at;
}

static void oauth_store_warn(struct connector *c, int rc,
                             const struct error *err)
{
    if (rc < 0)
        conn_log(c, LOG_WARNING, NULL, "cannot store the OAuth tokens (they "
                 "are used from memory): %s", err->msg);
}

static const char *grant_label(enum oauth_grant g)
{
    return g == OAUTH_CLIENT_CREDENTIALS ? "client_credentials"
           : g == OAUTH_REFRESH_TOKEN ? "refresh_token" : "authorization_code";
}

/* Take the tokens of t into o and the store. */
static void oauth_keep(struct connector *c, struct oauth_conn *o,
                       enum oauth_grant g, struct oauth_token *t)
{
    struct error err = {0};
    int64_t now = time_now_ms(), life = t->expires_in * 1000;
    int64_t margin = o->margin_ms < life / 2 ? o->margin_ms : life / 2;
    secret_swap(&o->access, t->access);
    t->access = NULL;
    o->expires_at = life ? now + life : 0;
    o->refresh_at = life ? o->expires_at - margin : 0;
    int rc = connector_state_put(c->wharf, c->name, "oauth.access", o->access,
                                 o->expires_at, &err);
    if (o->code_grant && (t->refresh || g == OAUTH_AUTHORIZATION_CODE)) {
        secret_swap(&o->refresh, t->refresh);
        t->refresh = NULL;
        if (rc == 0)
            rc = o->refresh ? connector_state_put(c->wharf, c->name,
                                                  "oauth.refresh", o->refresh,
                                                  0, &err)
                            : connector_state_drop(c->wharf, c->name,
                                                   "oauth.refresh", &err);
    }
    if (rc == 0 && g == OAUTH_AUTHORIZATION_CODE)
        rc = connector_state_drop(c->wharf, c->name, "oauth.revoked", &err);
    oauth_store_warn(c, rc, &err);
    o->revoked = 0;
    conn_log(c, LOG_INFO, NULL, "OAuth: new access token from %s (%s grant, "
             "%s%lld s)", o->ep.token_url, grant_label(g),
             life ? "expires in " : "no expiry given, ",
             (long long)t->expires_in);
}

/* One token request of grant g; on success the tokens are kept. code
 * receives the endpoint's OAuth error code on a refusal. */
static enum wh_status oauth_grant(struct connector *c, struct oauth_conn *o,
                                  enum oauth_grant g,
                                  const struct secret *value,
                                  const struct secret *verifier,
                                  char code[OAUTH_ERROR_MAX],
                                  struct error *err)
{
    struct oauth_token t;
    code[0] = '\0';
    conn_log(c, LOG_DEBUG, NULL, "OAuth: %s request to %s", grant_label(g),
             o->ep.token_url);
    enum wh_status st = oauth_token_request(&o->ep, g, value, verifier, &t,
                                            err);
    if (st == WH_OK)
        oauth_keep(c, o, g, &t);
    else
        memcpy(code, t.error, OAUTH_ERROR_MAX);
    oauth_token_clear(&t);
    return st;
}

/* The refresh token was refused: mark the connector revoked (unless the
 * stored tokens changed meanwhile: then try again later). */
static enum wh_status oauth_revoke(struct connector *c, struct oauth_conn *o,
                                   struct error *err)
{
    struct error lerr = {0};
    struct secret *used = o->refresh;
    o->refresh = NULL;
    int rc = oauth_load(c, o, &lerr);
    int changed = rc == 0 && o->refresh && !secret_equal(o->refresh, used);
    secret_free(used);
    if (changed)
        return error_set(err, "OAuth tokens of connector %s changed while "
                         "they were refreshed: trying again", c->name),
               WH_RETRY;
    struct secret *mark = secret_from("invalid_grant", 13);
    rc = mark ? connector_state_put(c->wharf, c->name, "oauth.revoked", mark,
                                    0, &lerr) : error_set(&lerr, "out of memory");
    secret_free(mark);
    if (rc == 0)
        rc = connector_state_drop(c->wharf, c->name, "oauth.refresh", &lerr);
    if (rc == 0)
        rc = connector_state_drop(c->wharf, c->name, "oauth.access", &lerr);
    oauth_store_warn(c, rc, &lerr);
    secret_swap(&o->access, NULL);
    secret_swap(&o->refresh, NULL);
    o->revoked = 1;
    conn_log(c, LOG_WARNING, NULL, "OAuth refresh token refused by %s "
             "(invalid_grant): deliveries fail until connector %s is "
             "authorized again", o->ep.token_url, c->name);
    return error_set(err, "OAuth refresh token was refused by the token "
                     "endpoint (invalid_grant): authorize connector %s again "
                     "(wharf connector authorize %s)", c->name, c->name),
           WH_FAIL;
}

/* Under o->mu: make o->access usable, from the store or the endpoint. */
static enum wh_status oauth_renew(struct connector *c, struct oauth_conn *o,
                                  const struct secret *rejected,
                                  struct error *err)
{
    struct error lerr = {0};
    char code[OAUTH_ERROR_MAX];
    if (c->wharf && oauth_load(c, o, &lerr) < 0)
        conn_log(c, LOG_WARNING, NULL, "cannot read the stored OAuth tokens: "
                 "%s", lerr.msg);
    if (oauth_usable(o, rejected))
        return WH_OK;       /* renewed by another worker, node or callback */
    if (o->revoked)
        return error_set(err, "OAuth authorization of connector %s was "
                         "revoked (the token endpoint refused its refresh "
                         "token); the endpoint is not asked again until it "
                         "is authorized again (wharf connector authorize %s)",
                         c->name, c->name), WH_FAIL;
    if (!o->code_grant)
        return oauth_grant(c, o, OAUTH_CLIENT_CREDENTIALS, NULL, NULL, code,
                           err);
    if (o->refresh == NULL && o->access == NULL)
        return error_set(err, "connector %s is not authorized yet: authorize "
                         "it through the API or with wharf connector "
                         "authorize %s", c->name, c->name), WH_FAIL;
    if (o->refresh == NULL)
        return error_set(err, "OAuth access token of connector %s expired or "
                         "was refused and there is no refresh token: "
                         "authorize connector %s again (wharf connector "
                         "authorize %s)", c->name, c->name, c->name), WH_FAIL;
    enum wh_status st = oauth_grant(c, o, OAUTH_REFRESH_TOKEN, o->refresh,
                                    NULL, code, err);
    if (st == WH_FAIL && strcmp(code, "invalid_grant") == 0)
        return oauth_revoke(c, o, err);
    return st;
}

/* A copy of a usable access token into *out (caller frees). rejected: the
 * token the partner just answered 401 to (renewed unless another worker
 * already did), or NULL. */
static enum wh_status oauth_bearer(struct connector *c, struct oauth_conn *o,
                                   const struct secret *rejected,
                                   struct secret **out, struct error *err)
{
    *out = NULL;
    pthread_mutex_lock(&o->mu);
    enum wh_status st = oauth_usable(o, rejected) ? WH_OK
                        : oauth_renew(c, o, rejected, err);
    if (st == WH_OK && (*out = secret_from(secret_data(o->access),
                                           secret_len(o->access))) == NULL)
        st = WH_RETRY, error_set(err, "out of memory");
    pthread_mutex_unlock(&o->mu);
    return st;
}

static int oauth_open(struct connector *c, struct http_state *hs,
                      const json_t *auth, struct error *err)
{
    struct oauth_conn *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return error_set(err, "out of memory");
    pthread_mutex_init(&o->mu, NULL);
    hs->oauth = o;
    o->code_grant = strcmp(str(auth, "grant"), "authorization_code") == 0;
    o->authorize_url = str(auth, "authorize_url");
    o->ep.token_url = str(auth, "token_url");
    o->ep.client_id = str(auth, "client_id");
    o->ep.client_secret = connector_secret(c, "auth.client_secret_file");
    o->ep.client_auth = str(auth, "client_auth") &&
        strcmp(str(auth, "client_auth"), "post") == 0 ? OAUTH_AUTH_POST
                                                      : OAUTH_AUTH_BASIC;
    o->ep.scope = str(auth, "scope");
    if (str(auth, "redirect_uri"))
        snprintf(o->redirect_uri, sizeof(o->redirect_uri), "%s",
                 str(auth, "redirect_uri"));
    else
        snprintf(o->redirect_uri, sizeof(o->redirect_uri),
                 "https://%s/oauth/callback", c->wharf
                 ? c->wharf->conf.admin_listen : "127.0.0.1:8443");
    o->ep.redirect_uri = o->redirect_uri;
    const json_t *m = json_object_get(auth, "refresh_margin_s");
    o->margin_ms = (m ? json_integer_value(m) : 60) * 1000;
    /* the token endpoint: the partner's proxy, its own CA, no pin or
     * client certificate (another host), https only */
    struct net_client_opts *eo = &o->ep.opts;
    eo->ca_pem = connector_secret(c, "auth.tls_ca")
               ? connector_secret(c, "auth.tls_ca") : hs->opts.ca_pem;
    eo->proxy = hs->opts.proxy;
    eo->proxy_auth = hs->opts.proxy_auth;
    eo->no_proxy = hs->opts.no_proxy;
    eo->timeout_ms = OAUTH_TOKEN_TIMEOUT_MS;
    if (c->wharf && oauth_load(c, o, err) < 0) {
        conn_log(c, LOG_WARNING, NULL, "cannot read the stored OAuth tokens "
                 "(new ones are requested when needed): %s", err->msg);
        error_clear(err);
    }
    return 0;
}

/* Whether line is one of the credential header lines (a secret). */
static int header_hidden(const struct http_state *hs, const char *line)
{
    for (size_t i = 0; i < hs->nhidden; i++)
        if (line == (const char *)secret_data(hs->hidden[i]))
            return 1;
    return 0;
}

/* "Name: value" for header k: a credential header's value is its sealed
 * secret and the line lives in a struct secret. NULL when out of memory
 * (or the secret is missing: err). */
static char *header_line(struct connector *c, struct http_state *hs,
                         const char *k, const json_t *v, struct error *err)
{
    char key[300];
    snprintf(key, sizeof(key), "headers.%s", k);
    const struct secret *sv = connector_credential_name(k)
                            ? connector_secret(c, key) : NULL;
    if (sv == NULL) {
        size_t n = strlen(k) + strlen(json_string_value(v)) + 3;
        char *line = malloc(n);
        if (line)
            snprintf(line, n, "%s: %s", k, json_string_value(v));
        return line;
    }
    size_t n = strlen(k) + 2 + secret_len(sv) + 1;
    struct secret *line = secret_new(n);
    struct secret **grown = line ? realloc(hs->hidden, (hs->nhidden + 1) *
                                           sizeof(*grown)) : NULL;
    if (grown == NULL) {
        secret_free(line);
        error_set(err, "out of memory");
        return NULL;
    }
    hs->hidden = grown;
    hs->hidden[hs->nhidden++] = line;
    unsigned char *p = secret_data_mut(line);
    memcpy(p, k, strlen(k));
    memcpy(p + strlen(k), ": ", 2);
    memcpy(p + strlen(k) + 2, secret_data(sv), secret_len(sv));
    return (char *)p;           /* NUL-terminated: secret_new zero-fills */
}

static void http_close(struct connector *c)
{
    struct http_state *hs = c->state;
    if (hs == NULL)
        return;
    for (size_t i = 0; hs->headers && i < hs->nheaders; i++)
        if (!header_hidden(hs, hs->headers[i]))
            free(hs->headers[i]);
    free(hs->headers);
    for (size_t i = 0; i < hs->nhidden; i++)
        secret_free(hs->hidden[i]);
    free(hs->hidden);
    connector_proxy_close(&hs->proxy);
    oauth_free(hs->oauth);
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
    if (opts_parse(cfg, &hs->opts, err) < 0 ||
        connector_proxy_open(c, &hs->proxy, err) < 0)
        goto fail;
    hs->opts.ca_pem = connector_secret(c, "tls_ca");
    hs->opts.proxy = hs->proxy.use.url;
    hs->opts.no_proxy = hs->proxy.use.no_proxy;
    hs->opts.proxy_auth = hs->proxy.use.auth;
    hs->url = str(cfg, "url");
    hs->method = str(cfg, "method") ? str(cfg, "method") : "POST";
    const json_t *auth = json_object_get(cfg, "auth");
    const char *type = str(auth, "type");
    if (type && strcmp(type, "basic") == 0) {
        hs->user = str(auth, "user");
        hs->password = connector_secret(c, "auth.password_file");
    } else if (type && strcmp(type, "bearer") == 0) {
        hs->bearer = connector_secret(c, "auth.token_file");
    } else if (type && strcmp(type, "client_cert") == 0) {
        hs->opts.cert_pem = connector_secret(c, "auth.cert");
        hs->opts.key_pem = connector_secret(c, "auth.key");
    } else if (type && strcmp(type, "oauth2") == 0) {
        if (oauth_open(c, hs, auth, err) < 0)
            goto fail;
    }
    const json_t *h = json_object_get(cfg, "headers");
    hs->headers = calloc(json_object_size(h) + 1, sizeof(char *));
    if (hs->headers == NULL)
        goto oom;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)h, k, v) {
        char *line = header_line(c, hs, k, v, err);
        if (line == NULL)
            goto oom;
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

/* Send m once with bearer (or the configured credentials); *status is
 * the HTTP status (0 when none arrived). renewed: the OAuth token was
 * just renewed after a 401, for the error text. */
static enum wh_status http_send(struct connector *c, struct delivery *d,
                                const struct secret *bearer, int renewed,
                                long *status)
{
    struct http_state *hs = c->state;
    const struct message *m = d->msg;
    char idh[128], fnh[300];
    *status = 0;
    const char **hdrs = request_headers(hs, idh, sizeof(idh), m, fnh,
                                        sizeof(fnh));
    if (hdrs == NULL)
        return error_set(&d->err, "out of memory"), WH_RETRY;
    struct body b = { .r = message_payload_open(m, &d->err), .left = m->size };
    if (b.r == NULL) {
        free(hdrs);
        return WH_FAIL;
    }
    struct net_client_req req = {
        .method = hs->method, .url = hs->url, .headers = hdrs,
        .user = hs->user, .password = hs->password, .bearer = bearer,
        .body_len = m->size, .read = body_read, .read_ud = &b,
    };
    struct net_client_resp resp;
    conn_log(c, LOG_DEBUG, m->id, "%s %s (%lld bytes)", hs->method, hs->url,
             (long long)m->size);
    enum wh_status st = net_client_request(&hs->opts, &req, &resp, &d->err);
    payload_close(b.r);
    free(hdrs);
    *status = st == WH_OK ? resp.status : 0;
    if (st == WH_OK && is_success(hs, resp.status)) {
        snprintf(d->receipt, sizeof(d->receipt), "HTTP %ld from %.200s",
                 resp.status, hs->url);
    } else if (st == WH_OK) {
        st = net_client_status_class(resp.status);
        error_set(&d->err, "HTTP %ld from %s%s", resp.status, hs->url,
                  resp.status != 401 && resp.status != 403 ? ""
                  : renewed ? " (authentication refused, also with a renewed "
                              "OAuth access token)"
                  : " (authentication refused)");
    }
    net_client_resp_free(&resp);
    return st;
}

/* With OAuth, a 401 renews the access token once and sends once more
 * (the payload is read again from the start). */
static enum wh_status http_deliver(struct connector *c, struct delivery *d)
{
    struct http_state *hs = c->state;
    struct secret *token = NULL;
    enum wh_status st = WH_FAIL;
    long status = 0;
    for (int round = 0; round < 2; round++) {
        if (hs->oauth) {
            struct secret *refused = token;
            st = oauth_bearer(c, hs->oauth, refused, &token, &d->err);
            secret_free(refused);
            if (st != WH_OK)
                break;
        }
        d->receipt[0] = '\0';
        st = http_send(c, d, token ? token : hs->bearer, round > 0, &status);
        if (!hs->oauth || status != 401 || round > 0)
            break;
        conn_log(c, LOG_INFO, d->msg->id, "HTTP 401 from %s: renewing the "
                 "OAuth access token and sending once more", hs->url);
        error_clear(&d->err);
    }
    secret_free(token);
    return d->status = st;
}

static enum wh_status http_test(struct connector *c, struct error *err)
{
    struct http_state *hs = c->state;
    struct secret *token = NULL;
    if (hs->oauth) {
        enum wh_status ost = oauth_bearer(c, hs->oauth, NULL, &token, err);
        if (ost != WH_OK)
            return ost;
    }
    char idh[8], fnh[8];
    const char **hdrs = request_headers(hs, idh, sizeof(idh), NULL, fnh,
                                        sizeof(fnh));
    if (hdrs == NULL) {
        secret_free(token);
        return error_set(err, "out of memory"), WH_RETRY;
    }
    struct net_client_req req = {
        .method = "HEAD", .url = hs->url, .headers = hdrs, .user = hs->user,
        .password = hs->password, .bearer = token ? token : hs->bearer,
        .body_len = -1,
    };
    struct net_client_resp resp;
    struct net_client_opts o = hs->opts;
    if (o.timeout_ms == 0 || o.timeout_ms > 30000)
        o.timeout_ms = 30000;
    enum wh_status st = net_client_request(&o, &req, &resp, err);
    free(hdrs);
    secret_free(token);
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

static const char *const HTTP_SECRETS[] = { "auth.password_file",
    "auth.token_file", "auth.key", "auth.client_secret_file",
    "proxy.credentials_file", NULL };
static const char *const HTTP_FILES[] = { "tls_ca", "auth.cert",
    "auth.tls_ca", NULL };
static const char *const HTTP_SECRET_OBJECTS[] = { "headers", NULL };

const struct connector_type connector_http = {
    .name = "http",
    .secrets = HTTP_SECRETS,
    .files = HTTP_FILES,
    .secret_objects = HTTP_SECRET_OBJECTS,
    .check = http_check,
    .open = http_open,
    .deliver = http_deliver,
    .test = http_test,
    .close = http_close,
};

/* ---- OAuth authorization code + PKCE (http.h) ------------------------------ */

static pthread_mutex_t pending_mu = PTHREAD_MUTEX_INITIALIZER;

/* Does stored config text use auth oauth2 with the authorization_code
 * grant? */
static int code_grant_config(const struct store_connector *sc)
{
    if (strcmp(sc->type, "http") != 0)
        return 0;
    json_error_t je;
    json_t *cfg = json_loads(sc->config, 0, &je);
    const json_t *auth = json_object_get(cfg, "auth");
    int yes = str(auth, "type") && !strcmp(str(auth, "type"), "oauth2") &&
              str(auth, "grant") &&
              !strcmp(str(auth, "grant"), "authorization_code");
    json_decref(cfg);
    return yes;
}

/* Open the stored connector f->conns[i]. NULL with err. */
static struct connector *open_stored(struct wharf *w,
                                     const struct store_connector *sc,
                                     struct error *err)
{
    json_error_t je;
    json_t *cfg = json_loads(sc->config, 0, &je);
    if (cfg == NULL)
        return error_set(err, "stored config of '%s' is not JSON", sc->name),
               NULL;
    struct connector *c = connector_new(w, sc->name, sc->type, cfg, err);
    json_decref(cfg);
    return c;
}

/* "STATE VERIFIER" of a new authorization, sealed as "oauth.pending". */
static int pending_put(struct connector *c, const char *state,
                       const struct secret *verifier, struct error *err)
{
    size_t n = OAUTH_RANDOM_LEN + 1 + secret_len(verifier);
    struct secret *v = secret_new(n);
    if (v == NULL)
        return error_set(err, "out of memory");
    memcpy(secret_data_mut(v), state, OAUTH_RANDOM_LEN);
    secret_data_mut(v)[OAUTH_RANDOM_LEN] = ' ';
    memcpy(secret_data_mut(v) + OAUTH_RANDOM_LEN + 1, secret_data(verifier),
           secret_len(verifier));
    int rc = connector_state_put(c->wharf, c->name, "oauth.pending", v,
                                 time_now_ms() + HTTP_OAUTH_PENDING_S * 1000LL,
                                 err);
    secret_free(v);
    return rc;
}

enum http_oauth_rc http_oauth_authorize(struct wharf *w, struct store *st,
                                        const char *name, char **url,
                                        struct error *err)
{
    struct store_flow f;
    *url = NULL;
    if (store_flow_get(st, &f, err) < 0)
        return HTTP_OAUTH_FAILED;
    const struct store_connector *sc = NULL;
    for (size_t i = 0; i < f.nconns && sc == NULL; i++)
        if (strcmp(f.conns[i].name, name) == 0)
            sc = &f.conns[i];
    enum http_oauth_rc rc = HTTP_OAUTH_FAILED;
    struct connector *c = NULL;
    struct secret *verifier = NULL;
    char state[OAUTH_RANDOM_LEN + 1], challenge[OAUTH_CHALLENGE_LEN + 1];
    if (sc == NULL) {
        rc = HTTP_OAUTH_UNKNOWN;
        error_set(err, "no connector named '%s'", name);
    } else if (!code_grant_config(sc)) {
        rc = HTTP_OAUTH_NOT_CODE;
        error_set(err, "connector '%s' does not use OAuth with the "
                  "authorization_code grant (auth type oauth2)", name);
    } else if ((c = open_stored(w, sc, err)) != NULL &&
               oauth_random(state, err) == 0 &&
               oauth_pkce_new(&verifier, challenge, err) == 0 &&
               pending_put(c, state, verifier, err) == 0) {
        struct oauth_conn *o = ((struct http_state *)c->state)->oauth;
        *url = oauth_authorize_url(o->authorize_url, o->ep.client_id,
                                   o->redirect_uri, o->ep.scope, state,
                                   challenge, err);
        if (*url) {
            rc = HTTP_OAUTH_OK;
            conn_log(c, LOG_INFO, NULL, "OAuth authorization started: it "
                     "must come back to %s within %d s", o->redirect_uri,
                     HTTP_OAUTH_PENDING_S);
        }
    }
    secret_free(verifier);
    OPENSSL_cleanse(state, sizeof(state));
    connector_free(c);
    store_flow_clear(&f);
    return rc;
}

/* Does the pending authorization v ("STATE VERIFIER") carry state? */
static int pending_matches(const struct secret *v, const char *state)
{
    return secret_len(v) > OAUTH_RANDOM_LEN + 1 &&
           strlen(state) == OAUTH_RANDOM_LEN &&
           CRYPTO_memcmp(secret_data(v), state, OAUTH_RANDOM_LEN) == 0;
}

/* Find and take (drop) the pending authorization with this state among
 * the code-grant connectors of f: its index, and *verifier (caller
 * frees); -1 when none. */
static long pending_take(struct wharf *w, const struct store_flow *f,
                         const char *state, struct secret **verifier,
                         struct error *err)
{
    long found = -1;
    int64_t now = time_now_ms();
    pthread_mutex_lock(&pending_mu);
    for (size_t i = 0; i < f->nconns && found < 0; i++) {
        const char *name = f->conns[i].name;
        struct secret *v = NULL;
        int64_t exp = 0;
        if (!code_grant_config(&f->conns[i]) ||
            connector_state_get(w, name, "oauth.pending", &v, &exp, err) != 1)
            continue;
        int expired = exp != 0 && exp < now;
        if (expired || pending_matches(v, state)) {
            connector_state_drop(w, name, "oauth.pending", err);
            if (!expired) {
                found = (long)i;
                *verifier = secret_from(secret_data(v) + OAUTH_RANDOM_LEN + 1,
                                        secret_len(v) - OAUTH_RANDOM_LEN - 1);
            }
        }
        secret_free(v);
    }
    pthread_mutex_unlock(&pending_mu);
    return found;
}

/* Exchange the code at c's token endpoint and keep the tokens. */
static enum http_oauth_rc code_exchange(struct connector *c,
                                        const struct secret *code,
                                        const struct secret *verifier,
                                        struct error *err)
{
    struct oauth_conn *o = ((struct http_state *)c->state)->oauth;
    char ecode[OAUTH_ERROR_MAX];
    pthread_mutex_lock(&o->mu);
    enum wh_status st = oauth_grant(c, o, OAUTH_AUTHORIZATION_CODE, code,
                                    verifier, ecode, err);
    pthread_mutex_unlock(&o->mu);
    if (st != WH_OK)
        return HTTP_OAUTH_FAILED;
    conn_log(c, LOG_INFO, NULL, "OAuth authorization completed%s",
             o->refresh ? "" : " (no refresh token was issued: it must be "
             "authorized again when the access token expires)");
    return HTTP_OAUTH_OK;
}

enum http_oauth_rc http_oauth_callback(struct wharf *w, struct store *st,
                                       const char *state,
                                       const struct secret *code, char *conn,
                                       size_t n, struct error *err)
{
    struct store_flow f;
    struct secret *verifier = NULL;
    struct error lerr = {0};
    if (n)
        conn[0] = '\0';
    if (store_flow_get(st, &f, err) < 0)
        return HTTP_OAUTH_FAILED;
    long i = pending_take(w, &f, state, &verifier, &lerr);
    enum http_oauth_rc rc = HTTP_OAUTH_FAILED;
    if (i < 0) {
        rc = HTTP_OAUTH_UNKNOWN;
        error_set(err, "no authorization is pending with this state (unknown, "
                  "expired or already used): start it again");
    } else {
        snprintf(conn, n, "%s", f.conns[i].name);
        struct connector *c = NULL;
        if (verifier == NULL)
            error_set(err, "out of memory");
        else if (code == NULL)
            error_set(err, "the authorization server did not grant the "
                      "authorization of connector %s", f.conns[i].name);
        else if ((c = open_stored(w, &f.conns[i], err)) != NULL)
            rc = code_exchange(c, code, verifier, err);
        connector_free(c);
    }
    secret_free(verifier);
    store_flow_clear(&f);
    return rc;
}
