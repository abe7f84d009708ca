/*
 * http.c - the HTTP(S) destination connector (M6, R3, R4, R11): POST or
 * PUT each message's payload to a URL through net/client.h, the one
 * outbound client.
 *
 * Config: HTTP_OPTIONS below (`wharf connector help http`): url, method,
 * headers, auth (basic, bearer, client_cert or oauth2 with its grant),
 * tls_ca, pin_sha256, proxy (connectors/proxy.h), insecure, success,
 * timeout_ms.
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
 * contacting the token endpoint, until an authorization succeeds: the
 * action oauth.authorize starts one (state and PKCE verifier sealed as
 * "oauth.pending"), the admin listener's GET /oauth/callback finishes it
 * (the type's oauth_callback).
 * Before renewing, the stored tokens are read again: the admin listener's
 * callback, another worker or node may have stored newer ones.
 *
 * Secrets (password, token, client secret, proxy credentials) come sealed
 * from the vault (connector_secret); the client certificate's key is a
 * handle key of the vault (connector_key: the key stays in the key process
 * under serve, R15). Must never: log or put into an error
 * a header value, credential, token or body; deliver through anything but
 * net_client_request.
 */
#include "connectors/connector.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "connectors/proxy.h"
#include "net/client.h"
#include "net/oauth.h"
#include "util/id.h"
#include "util/secret.h"

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

/* An https:// URL without a fragment (OAuth endpoints). */
static int https_valid(const char *key, const json_t *v, struct error *err)
{
    const char *url = json_string_value(v);
    if (net_client_url_check(url, 0, err) < 0 || !value_ok(url) ||
        strchr(url, ' ') || strchr(url, '#'))
        return error_set(err, "%s must be an https:// URL without blanks or "
                         "a fragment", key);
    return 0;
}

static int user_valid(const char *key, const json_t *v, struct error *err)
{
    const char *user = json_string_value(v);
    if (user[0] == '\0' || strchr(user, ':'))
        return error_set(err, "%s must be a user name without ':'", key);
    return 0;
}

static int pin_valid(const char *key, const json_t *v, struct error *err)
{
    (void)key;
    struct net_client_opts o = { .pin_sha256 = json_string_value(v) };
    return net_client_opts_check(&o, err);
}

static int headers_valid(const char *key, const json_t *v, struct error *err)
{
    const char *k;
    json_t *x;
    (void)key;
    json_object_foreach((json_t *)v, k, x) {
        if (!token_ok(k))
            return error_set(err, "header name \"%.64s\" is not a token", k);
        if (reserved_header(k))
            return error_set(err, "header %s is set by Wharf", k);
        if (json_is_string(x) && !value_ok(json_string_value(x)))
            return error_set(err, "header %s needs a one-line string value "
                             "of at most 4096 bytes", k);
    }
    return 0;
}

static int success_valid(const char *key, const json_t *v, struct error *err)
{
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (json_integer_value(x) < 100 || json_integer_value(x) > 599)
            return error_set(err, "%s: status codes are 100..599", key);
    }
    return 0;
}

#define OAUTH "auth.type=oauth2"
#define CODE_GRANT "auth.grant=authorization_code"

static const struct conn_option HTTP_OPTIONS[] = {
    { "url", CONN_URL, CONN_REQUIRED, NULL, 0, 0, NULL, NULL,
      "where to send: https://... (http:// only with insecure)", NULL },
    { "method", CONN_ENUM, 0, "POST", 0, 0, "POST|PUT", NULL,
      "the request method", NULL },
    { "headers", CONN_MAP, CONN_SECRET_MEMBERS, NULL, 0, MAX_HEADERS, NULL,
      NULL, "{\"Name\": \"value\"} sent with every request; a "
      "credential-named header (Authorization-like, X-Api-Key...) is a "
      "secret, sealed at import", headers_valid },
    { "auth", CONN_OBJECT, 0, NULL, 0, 0, NULL, NULL,
      "how to authenticate to the partner", NULL },
    { "auth.type", CONN_ENUM, CONN_REQUIRED, NULL, 0, 0,
      "basic|bearer|client_cert|oauth2", NULL, "the kind of credentials",
      NULL },
    { "auth.user", CONN_STRING, CONN_REQUIRED, NULL, 0, 4096, NULL,
      "auth.type=basic", "the user name", user_valid },
    { "auth.password_file", CONN_SECRET, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=basic", "the password", NULL },
    { "auth.token_file", CONN_SECRET, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=bearer", "the bearer token", NULL },
    { "auth.cert", CONN_FILE, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=client_cert", "our client certificate (PEM)", NULL },
    { "auth.key", CONN_SECRET, CONN_REQUIRED | CONN_PRIVATE_KEY, NULL, 0, 0,
      NULL, "auth.type=client_cert", "its private key (PEM)", NULL },
    { "auth.grant", CONN_ENUM, CONN_REQUIRED, NULL, 0, 0,
      "client_credentials|authorization_code", OAUTH,
      "the OAuth 2.0 grant (authorization_code: action oauth.authorize)",
      NULL },
    { "auth.token_url", CONN_URL, CONN_REQUIRED, NULL, 0, 0, NULL, OAUTH,
      "the token endpoint (https://)", https_valid },
    { "auth.client_id", CONN_STRING, CONN_REQUIRED, NULL, 0, 256, NULL,
      OAUTH, "our client id at the authorization server", NULL },
    { "auth.client_secret_file", CONN_SECRET, 0, NULL, 0, 0, NULL, OAUTH,
      "the client secret (a public client of the authorization_code grant "
      "may have none: PKCE)", NULL },
    { "auth.scope", CONN_STRING, 0, NULL, 0, 1024, NULL, OAUTH,
      "the scope asked for", NULL },
    { "auth.client_auth", CONN_ENUM, CONN_ADVANCED, "basic", 0, 0,
      "basic|post", OAUTH, "how the client authenticates to the token "
      "endpoint", NULL },
    { "auth.authorize_url", CONN_URL, CONN_REQUIRED, NULL, 0, 0, NULL,
      CODE_GRANT, "the authorization endpoint (https://)", https_valid },
    { "auth.redirect_uri", CONN_URL, CONN_ADVANCED, NULL, 0, 0, NULL,
      CODE_GRANT, "where the browser comes back (default: https://"
      "ADMIN_LISTEN/oauth/callback)", https_valid },
    { "auth.tls_ca", CONN_FILE, CONN_ADVANCED, NULL, 0, 0, NULL, OAUTH,
      "CA bundle of the token endpoint (default: tls_ca)", NULL },
    { "auth.refresh_margin_s", CONN_INT, CONN_ADVANCED, "60", 0, 3600, NULL,
      OAUTH, "renew the access token this long before it expires (at most "
      "half its lifetime)", NULL },
    { "tls_ca", CONN_FILE, 0, NULL, 0, 0, NULL, NULL,
      "CA bundle of the partner (PEM; default: the system store)", NULL },
    { "pin_sha256", CONN_STRING, CONN_ADVANCED, NULL, 0, 0, NULL, NULL,
      "base64 SHA-256 of the partner's public key", pin_valid },
    CONN_PROXY_OPTIONS,
    { "insecure", CONN_BOOL, CONN_ADVANCED, "false", 0, 0, NULL, NULL,
      "allow a plain http:// url (TLS verification is never off)", NULL },
    { "success", CONN_LIST, CONN_ADVANCED, NULL, 1, MAX_SUCCESS, "int", NULL,
      "the statuses that mean delivered (default 200..299)",
      success_valid },
    { "timeout_ms", CONN_INT, CONN_ADVANCED, NULL, 100, 86400000, NULL, NULL,
      "the whole request (default 600000)", NULL },
    { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL, NULL },
};

/* What HTTP_OPTIONS cannot say. */
static int http_check(const json_t *cfg, struct error *err)
{
    const json_t *auth = json_object_get(cfg, "auth");
    if (net_client_url_check(str(cfg, "url"),
                             json_is_true(json_object_get(cfg, "insecure")),
                             err) < 0)
        return -1;
    /* a public client (no secret) is fine with PKCE, not for
     * client_credentials */
    if (str(auth, "grant") && !strcmp(str(auth, "grant"), "client_credentials")
        && json_object_get(auth, "client_secret_file") == NULL)
        return error_set(err, "needs auth.client_secret_file (the "
                         "client_credentials grant)");
    return 0;
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
    int rc = conn_state_get(c->env->state, c->name, "oauth.revoked", &v, NULL,
                                 err);
    if (rc < 0)
        return -1;
    secret_free(v);
    o->revoked = rc == 1;
    rc = conn_state_get(c->env->state, c->name, "oauth.access", &v, &exp, err);
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
    rc = conn_state_get(c->env->state, c->name, "oauth.refresh", &v, NULL,
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
    int rc = conn_state_put(c->env->state, c->name, "oauth.access", o->access,
                                 o->expires_at, &err);
    if (o->code_grant && (t->refresh || g == OAUTH_AUTHORIZATION_CODE)) {
        secret_swap(&o->refresh, t->refresh);
        t->refresh = NULL;
        if (rc == 0)
            rc = o->refresh ? conn_state_put(c->env->state, c->name,
                                                  "oauth.refresh", o->refresh,
                                                  0, &err)
                            : conn_state_drop(c->env->state, c->name,
                                                   "oauth.refresh", &err);
    }
    if (rc == 0 && g == OAUTH_AUTHORIZATION_CODE)
        rc = conn_state_drop(c->env->state, c->name, "oauth.revoked", &err);
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
    rc = mark ? conn_state_put(c->env->state, c->name, "oauth.revoked", mark,
                                    0, &lerr) : error_set(&lerr, "out of memory");
    secret_free(mark);
    if (rc == 0)
        rc = conn_state_drop(c->env->state, c->name, "oauth.refresh", &lerr);
    if (rc == 0)
        rc = conn_state_drop(c->env->state, c->name, "oauth.access", &lerr);
    oauth_store_warn(c, rc, &lerr);
    secret_swap(&o->access, NULL);
    secret_swap(&o->refresh, NULL);
    o->revoked = 1;
    conn_log(c, LOG_WARNING, NULL, "OAuth refresh token refused by %s "
             "(invalid_grant): deliveries fail until connector %s is "
             "authorized again", o->ep.token_url, c->name);
    return error_set(err, "OAuth refresh token was refused by the token "
                     "endpoint (invalid_grant): authorize connector %s again "
                     "(wharf connector %s oauth.authorize)", c->name, c->name),
           WH_FAIL;
}

/* Under o->mu: make o->access usable, from the store or the endpoint. */
static enum wh_status oauth_renew(struct connector *c, struct oauth_conn *o,
                                  const struct secret *rejected,
                                  struct error *err)
{
    struct error lerr = {0};
    char code[OAUTH_ERROR_MAX];
    if (c->env && oauth_load(c, o, &lerr) < 0)
        conn_log(c, LOG_WARNING, NULL, "cannot read the stored OAuth tokens: "
                 "%s", lerr.msg);
    if (oauth_usable(o, rejected))
        return WH_OK;       /* renewed by another worker, node or callback */
    if (o->revoked)
        return error_set(err, "OAuth authorization of connector %s was "
                         "revoked (the token endpoint refused its refresh "
                         "token); the endpoint is not asked again until it "
                         "is authorized again (wharf connector %s "
                         "oauth.authorize)",
                         c->name, c->name), WH_FAIL;
    if (!o->code_grant)
        return oauth_grant(c, o, OAUTH_CLIENT_CREDENTIALS, NULL, NULL, code,
                           err);
    if (o->refresh == NULL && o->access == NULL)
        return error_set(err, "connector %s is not authorized yet: authorize "
                         "it through the API or with wharf connector %s "
                         "oauth.authorize", c->name, c->name), WH_FAIL;
    if (o->refresh == NULL)
        return error_set(err, "OAuth access token of connector %s expired or "
                         "was refused and there is no refresh token: "
                         "authorize connector %s again (wharf connector %s "
                         "oauth.authorize)", c->name, c->name, c->name),
                         WH_FAIL;
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
                      struct error *err)
{
    struct oauth_conn *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return error_set(err, "out of memory");
    pthread_mutex_init(&o->mu, NULL);
    hs->oauth = o;
    o->code_grant = strcmp(conn_str(c, "auth.grant"),
                           "authorization_code") == 0;
    o->authorize_url = conn_str(c, "auth.authorize_url");
    o->ep.token_url = conn_str(c, "auth.token_url");
    o->ep.client_id = conn_str(c, "auth.client_id");
    o->ep.client_secret = connector_secret(c, "auth.client_secret_file");
    o->ep.client_auth = strcmp(conn_str(c, "auth.client_auth"), "post") == 0
                        ? OAUTH_AUTH_POST : OAUTH_AUTH_BASIC;
    o->ep.scope = conn_str(c, "auth.scope");
    if (conn_str(c, "auth.redirect_uri"))
        snprintf(o->redirect_uri, sizeof(o->redirect_uri), "%s",
                 conn_str(c, "auth.redirect_uri"));
    else
        snprintf(o->redirect_uri, sizeof(o->redirect_uri),
                 "https://%s/oauth/callback", c->env
                 ? c->env->settings->admin_listen : "127.0.0.1:8443");
    o->ep.redirect_uri = o->redirect_uri;
    o->margin_ms = conn_int(c, "auth.refresh_margin_s") * 1000;
    /* the token endpoint: the partner's proxy, its own CA, no pin or
     * client certificate (another host), https only */
    struct net_client_opts *eo = &o->ep.opts;
    eo->ca_pem = connector_secret(c, "auth.tls_ca")
               ? connector_secret(c, "auth.tls_ca") : hs->opts.ca_pem;
    eo->proxy = hs->opts.proxy;
    eo->proxy_auth = hs->opts.proxy_auth;
    eo->no_proxy = hs->opts.no_proxy;
    eo->timeout_ms = OAUTH_TOKEN_TIMEOUT_MS;
    if (c->env && oauth_load(c, o, err) < 0) {
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
    if (connector_proxy_open(c, &hs->proxy, err) < 0)
        goto fail;
    hs->opts.pin_sha256 = conn_str(c, "pin_sha256");
    hs->opts.insecure = conn_bool(c, "insecure");
    hs->opts.timeout_ms = (long)conn_int(c, "timeout_ms");
    hs->opts.ca_pem = connector_secret(c, "tls_ca");
    hs->opts.proxy = hs->proxy.use.url;
    hs->opts.no_proxy = hs->proxy.use.no_proxy;
    hs->opts.proxy_auth = hs->proxy.use.auth;
    hs->url = conn_str(c, "url");
    hs->method = conn_str(c, "method");
    const char *type = conn_str(c, "auth.type");
    if (type && strcmp(type, "basic") == 0) {
        hs->user = conn_str(c, "auth.user");
        hs->password = connector_secret(c, "auth.password_file");
    } else if (type && strcmp(type, "bearer") == 0) {
        hs->bearer = connector_secret(c, "auth.token_file");
    } else if (type && strcmp(type, "client_cert") == 0) {
        hs->opts.cert_pem = connector_secret(c, "auth.cert");
        hs->opts.key = connector_key(c, "auth.key");    /* a handle */
    } else if (type && strcmp(type, "oauth2") == 0) {
        if (oauth_open(c, hs, err) < 0)
            goto fail;
    }
    const json_t *h = conn_get(c, "headers");
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
    json_array_foreach(conn_get(c, "success"), i, v) {
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
    ssize_t got = message_payload_read(b->r, buf, n, err);
    if (got <= 0)
        return got;
    b->left -= got;
    if (b->left < 0)
        return error_set(err, "the payload is longer than its recorded size");
    if (b->left == 0) {
        unsigned char extra[16];
        ssize_t e = message_payload_read(b->r, extra, sizeof(extra), err);
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
    int64_t answered = 0;           /* the answer's body: not needed */
    struct net_client_req req = {
        .method = hs->method, .url = hs->url, .headers = hdrs,
        .user = hs->user, .password = hs->password, .bearer = bearer,
        .body_len = m->size, .read = body_read, .read_ud = &b,
        .write = net_client_discard, .write_ud = &answered,
    };
    struct net_client_resp resp;
    conn_log(c, LOG_DEBUG, m->id, "%s %s (%lld bytes)", hs->method, hs->url,
             (long long)m->size);
    enum wh_status st = net_client_request(&hs->opts, &req, &resp, &d->err);
    message_payload_close(b.r);
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

/* ---- OAuth authorization code + PKCE (R8) ---------------------------------- */

#define OAUTH_PENDING_S 600     /* an authorization must finish within */

static pthread_mutex_t pending_mu = PTHREAD_MUTEX_INITIALIZER;

/* Does config use auth oauth2 with the authorization_code grant? */
static int code_grant(const json_t *config)
{
    const json_t *auth = json_object_get(config, "auth");
    return str(auth, "type") && !strcmp(str(auth, "type"), "oauth2") &&
           str(auth, "grant") &&
           !strcmp(str(auth, "grant"), "authorization_code");
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
    int rc = conn_state_put(c->env->state, c->name, "oauth.pending", v,
                                 time_now_ms() + OAUTH_PENDING_S * 1000LL,
                                 err);
    secret_free(v);
    return rc;
}

/* Start the authorization of the opened connector c: the URL a person
 * opens (caller frees), or NULL with err. */
static char *authorize_start(struct connector *c, struct error *err)
{
    struct secret *verifier = NULL;
    char state[OAUTH_RANDOM_LEN + 1], challenge[OAUTH_CHALLENGE_LEN + 1];
    char *url = NULL;
    if (oauth_random(state, err) == 0 &&
        oauth_pkce_new(&verifier, challenge, err) == 0 &&
        pending_put(c, state, verifier, err) == 0) {
        struct oauth_conn *o = ((struct http_state *)c->state)->oauth;
        url = oauth_authorize_url(o->authorize_url, o->ep.client_id,
                                  o->redirect_uri, o->ep.scope, state,
                                  challenge, err);
        if (url)
            conn_log(c, LOG_INFO, NULL, "OAuth authorization started: it "
                     "must come back to %s within %d s", o->redirect_uri,
                     OAUTH_PENDING_S);
    }
    secret_free(verifier);
    OPENSSL_cleanse(state, sizeof(state));
    return url;
}

/* The action oauth.authorize: {"authorize_url", "expires_in"}; a random
 * state and PKCE verifier kept sealed as the connector's state
 * "oauth.pending" for OAUTH_PENDING_S (one pending authorization per
 * connector: a new one replaces it). */
static enum conn_act_rc http_oauth_authorize(struct conn_action_ctx *x,
                                             struct error *err)
{
    if (!code_grant(x->config)) {
        snprintf(x->code, sizeof(x->code), "not_oauth");
        return error_set(err, "connector '%s' does not use OAuth with the "
                         "authorization_code grant (auth type oauth2)",
                         x->name), CONN_ACT_REFUSED;
    }
    struct connector *c = x->open(x, err);
    char *url = c ? authorize_start(c, err) : NULL;
    connector_free(c);
    snprintf(x->audit, sizeof(x->audit), "%s", url ? "started" : "failed");
    if (url == NULL)
        return error_prefix(err, "cannot start the OAuth authorization of %s",
                            x->name), CONN_ACT_ERROR;
    x->result = json_pack("{s:s, s:i}", "authorize_url", url, "expires_in",
                          OAUTH_PENDING_S);
    snprintf(x->text, sizeof(x->text), "%s", url);
    snprintf(x->note, sizeof(x->note), "open this URL in a browser within %d "
             "minutes; the authorization server sends it back to Wharf's "
             "admin listener, where the running server (wharf serve) "
             "completes it", OAUTH_PENDING_S / 60);
    free(url);
    return CONN_ACT_OK;
}

/* Does the pending authorization v ("STATE VERIFIER") carry state? */
static int pending_matches(const struct secret *v, const char *state)
{
    return secret_len(v) > OAUTH_RANDOM_LEN + 1 &&
           strlen(state) == OAUTH_RANDOM_LEN &&
           CRYPTO_memcmp(secret_data(v), state, OAUTH_RANDOM_LEN) == 0;
}

/* Take (drop) the pending authorization of connector x if it carries
 * state (or expired): 1 and *verifier (caller frees) when it matches, 0
 * when not, -1 on error. */
static int pending_take(struct conn_oauth_ctx *x, const char *state,
                        struct secret **verifier, struct error *err)
{
    int found = 0;
    struct secret *v = NULL;
    int64_t exp = 0;
    pthread_mutex_lock(&pending_mu);
    int rc = conn_state_get(x->env->state, x->name, "oauth.pending", &v, &exp,
                            err);
    int expired = rc == 1 && exp != 0 && exp < time_now_ms();
    if (rc == 1 && (expired || pending_matches(v, state))) {
        conn_state_drop(x->env->state, x->name, "oauth.pending", err);
        if (!expired) {
            found = 1;
            *verifier = secret_from(secret_data(v) + OAUTH_RANDOM_LEN + 1,
                                    secret_len(v) - OAUTH_RANDOM_LEN - 1);
        }
    }
    secret_free(v);
    pthread_mutex_unlock(&pending_mu);
    return rc < 0 ? -1 : found;
}

/* Exchange the code at c's token endpoint and keep the tokens. */
static enum conn_oauth_rc code_exchange(struct connector *c,
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
        return CONN_OAUTH_FAILED;
    conn_log(c, LOG_INFO, NULL, "OAuth authorization completed%s",
             o->refresh ? "" : " (no refresh token was issued: it must be "
             "authorized again when the access token expires)");
    return CONN_OAUTH_OK;
}

/* GET /oauth/callback for http connectors (core/flow.c's
 * flow_oauth_callback asks every stored connector): the state must be x's
 * pending one (single use: taken whatever follows); the code is exchanged
 * at the token endpoint, the tokens stored sealed, the mark of a revoked
 * authorization ("oauth.revoked") dropped. A running engine picks the new
 * tokens up from the store. */
static enum conn_oauth_rc http_oauth_callback(struct conn_oauth_ctx *x,
                                              const char *state,
                                              const struct secret *code,
                                              struct error *err)
{
    struct secret *verifier = NULL;
    struct error lerr = {0};
    if (!code_grant(x->config))
        return CONN_OAUTH_UNKNOWN;
    int taken = pending_take(x, state, &verifier, &lerr);
    if (taken <= 0) {
        secret_free(verifier);
        return CONN_OAUTH_UNKNOWN;
    }
    enum conn_oauth_rc rc = CONN_OAUTH_FAILED;
    struct connector *c = NULL;
    if (verifier == NULL)
        error_set(err, "out of memory");
    else if (code == NULL)
        error_set(err, "the authorization server did not grant the "
                  "authorization of connector %s", x->name);
    else if ((c = x->open(x, err)) != NULL)
        rc = code_exchange(c, code, verifier, err);
    connector_free(c);
    secret_free(verifier);
    return rc;
}

/* ---- the type --------------------------------------------------------------- */

static const struct conn_action HTTP_ACTIONS[] = {
    CONN_ACTION_TEST,
    { "oauth.authorize", "flow.write", 0, "connector.oauth.authorize", NULL,
      "start an OAuth authorization (authorization_code grant with PKCE): "
      "the URL a person opens within 10 minutes", http_oauth_authorize },
    { NULL, NULL, 0, NULL, NULL, NULL, NULL },
};

const struct connector_type connector_http = {
    .name = "http",
    .summary = "POST or PUT each message to a partner's HTTPS URL (M6)",
    .options = HTTP_OPTIONS,
    .actions = HTTP_ACTIONS,
    .oauth_callback = http_oauth_callback,
    .concurrency = 8,           /* requests in flight to the partner */
    .check = http_check,
    .open = http_open,
    .deliver = http_deliver,
    .test = http_test,
    .close = http_close,
};
