/*
 * oidc.c - owns OpenID Connect login for people (R17): the client
 * configuration, discovery of the issuer's endpoints, the JWKS cache
 * (refreshed when old, and on an unknown kid at most every
 * jwks_refresh_min_s), the start of a login (state, nonce, PKCE S256) and
 * the callback (state check, code exchange at the token endpoint, ID token
 * verification through jwt.c, claim -> role mapping).
 *
 * HTTPS goes through net/client.h, the one transport (its TLS policy: TLS
 * 1.2+, verification always on, no redirects, no environment proxy; the
 * response streamed into a capped buffer); the state, nonce and PKCE
 * verifier come from net/oauth.h (PKCE is written once, there).
 *
 * It must never talk to a host other than the configured issuer's
 * endpoints, never over anything but HTTPS with verification on, never
 * read an unbounded response,
 * and never put the client secret, the PKCE verifier, the authorization
 * code or a token into a log line or an error message. Buffers that held
 * them are wiped before they are freed. (Jansson's own copies of the token
 * response are freed without a wipe: the response is parsed once and the
 * ID token is checked and dropped at once.) It knows nothing of users or
 * sessions: the caller opens the session for the identity it returns.
 */
#include "auth/oidc.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "net/client.h"
#include "net/oauth.h"
#include "net/url.h"
#include "util/log.h"
#include "util/secret.h"

_Static_assert(OIDC_RANDOM_LEN == OAUTH_RANDOM_LEN &&
               OIDC_CHALLENGE_LEN == OAUTH_CHALLENGE_LEN,
               "state, nonce and PKCE come from net/oauth.c");

#define OIDC_RESPONSE_MAX (256 * 1024)  /* discovery, JWKS, token response */
#define OIDC_URL_MAX 2048
#define OIDC_CODE_MAX 4096
#define OIDC_NAME_MAX 255               /* client id, claim names, values */
#define OIDC_WELL_KNOWN "/.well-known/openid-configuration"

static const char *const oidc_roles[] = {"admin", "operator", "auditor",
                                         "viewer"};

struct oidc_map_entry {
    char *value;
    char role[OIDC_ROLE_MAX];
};

struct oidc {
    /* configuration: immutable after oidc_new */
    char *issuer, *client_id, *redirect_uri, *scopes, *role_claim;
    char *ca_file, *proxy, *no_proxy;
    struct secret *client_secret;       /* NULL: public client */
    struct secret *proxy_auth;          /* NULL: none */
    struct oidc_map_entry *map;
    size_t map_len;
    char default_role[OIDC_ROLE_MAX];   /* "" when none */
    enum oidc_client_auth client_auth;
    long timeout_ms;
    int leeway_s, jwks_refresh_min_s, jwks_max_age_s, login_max_age_s;

    /* discovered state, behind mu */
    pthread_mutex_t mu;
    char *authz_endpoint, *token_endpoint, *jwks_uri;
    struct jwt_keyset *keys;
    int64_t keys_fetched;               /* monotonic seconds */
    int64_t keys_tried;                 /* monotonic seconds, last attempt */
};

/* What a discovery document gives. */
struct oidc_meta {
    char *authz, *token, *jwks;
};

/* A growable byte buffer with a cap; wiped whenever memory is released
 * because it may hold secrets (request bodies, token responses). */
struct oidc_buf {
    char *p;
    size_t len, cap, max;
    bool too_big, oom;
};

/* ---- small helpers ------------------------------------------------------- */

static int64_t oidc_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* Set err and return rc. */
static int oidc_fail(struct error *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int oidc_fail(struct error *err, int rc, const char *fmt, ...)
{
    char msg[ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_set(err, "%s", msg);
    return rc;
}

/* Printable ASCII without spaces, 1..max bytes. */
static bool oidc_printable(const char *s, size_t max)
{
    size_t n = s == NULL ? 0 : strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* Untrusted text (from the identity provider) fit to quote in an error. */
static const char *oidc_safe(const char *s)
{
    return oidc_printable(s, 200) && strchr(s, '"') == NULL ? s
                                                            : "(unprintable)";
}

static bool oidc_is_https(const char *url)
{
    return oidc_printable(url, OIDC_URL_MAX) &&
           strncasecmp(url, "https://", 8) == 0 && url[8] != '\0' &&
           url[8] != '/';
}

static bool oidc_role_known(const char *role)
{
    for (size_t i = 0; i < sizeof(oidc_roles) / sizeof(oidc_roles[0]); i++)
        if (strcmp(role, oidc_roles[i]) == 0)
            return true;
    return false;
}

static char *oidc_strdup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

/* ---- buffers ------------------------------------------------------------- */

static void oidc_buf_init(struct oidc_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

static void oidc_buf_free(struct oidc_buf *b)
{
    if (b->p != NULL) {
        OPENSSL_cleanse(b->p, b->cap);
        free(b->p);
    }
    memset(b, 0, sizeof(*b));
}

/* Append n bytes; -1 (too_big or oom set) past the cap or out of memory.
 * Growing copies then wipes the old block: no stale secret copies. */
static int oidc_buf_add(struct oidc_buf *b, const void *data, size_t n)
{
    if (n > b->max - b->len) {
        b->too_big = true;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap < 256 ? 256 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        char *p = malloc(cap);
        if (p == NULL) {
            b->oom = true;
            return -1;
        }
        if (b->p != NULL) {
            memcpy(p, b->p, b->len);
            OPENSSL_cleanse(b->p, b->cap);
            free(b->p);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int oidc_buf_str(struct oidc_buf *b, const char *s)
{
    return oidc_buf_add(b, s, strlen(s));
}

/* Append value percent-encoded (net_url_encode). The escaped copy is
 * wiped: value may be a secret. */
static int oidc_buf_esc(struct oidc_buf *b, const char *value, size_t vlen)
{
    if (vlen > INT32_MAX / 3)
        return -1;
    unsigned char *esc = malloc(3 * vlen + 1);
    if (esc == NULL) {
        b->oom = true;
        return -1;
    }
    size_t n = net_url_encode((const unsigned char *)value, vlen, esc);
    int rc = oidc_buf_add(b, esc, n);
    OPENSSL_cleanse(esc, 3 * vlen + 1);
    free(esc);
    return rc;
}

/* Append sep name=value, value percent-encoded; sep is "?", "&" or "". */
static int oidc_buf_param(struct oidc_buf *b, const char *sep,
                          const char *name, const char *value, size_t vlen)
{
    if (oidc_buf_str(b, sep) < 0 || oidc_buf_str(b, name) < 0 ||
        oidc_buf_add(b, "=", 1) < 0)
        return -1;
    return oidc_buf_esc(b, value, vlen);
}

/* Append the standard (padded) base64 of len bytes; the scratch copy is
 * wiped. */
static int oidc_buf_b64(struct oidc_buf *b, const char *data, size_t len)
{
    size_t n = (len + 2) / 3 * 4;
    if (len > INT32_MAX / 2)
        return -1;
    unsigned char *tmp = malloc(n + 1);
    if (tmp == NULL) {
        b->oom = true;
        return -1;
    }
    EVP_EncodeBlock(tmp, (const unsigned char *)data, (int)len);
    int rc = oidc_buf_add(b, tmp, n);
    OPENSSL_cleanse(tmp, n + 1);
    free(tmp);
    return rc;
}

/* ---- HTTPS (net/client.h) ------------------------------------------------ */

/* net_client_write_fn: the response into its capped buffer. */
static int oidc_take(void *ud, const void *buf, size_t n, struct error *err)
{
    struct oidc_buf *b = ud;
    if (oidc_buf_add(b, buf, n) == 0)
        return 0;
    return error_set(err, b->oom ? "out of memory" : "too large");
}

/* net_client_read_fn: the form body. */
struct oidc_src {
    const struct oidc_buf *b;
    size_t off;
};

static ssize_t oidc_give(void *ud, void *buf, size_t n, struct error *err)
{
    (void)err;
    struct oidc_src *s = ud;
    if (n > s->b->len - s->off)
        n = s->b->len - s->off;
    memcpy(buf, s->b->p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

/* One request: GET when body is NULL, else POST of a form body, with
 * hdrs ("Name: value", NULL-terminated). Fills out and *status. OIDC_OK
 * (any HTTP status), OIDC_UNAVAILABLE (network, TLS, size) or OIDC_ERROR.
 * Neither the body nor the headers reach err. */
static int oidc_http(const struct oidc *o, const char *url,
                     const struct oidc_buf *body, const char *const *hdrs,
                     struct oidc_buf *out, long *status, struct error *err)
{
    struct oidc_src src = { body, 0 };
    struct net_client_opts opts = { .ca_file = o->ca_file,
        .proxy = o->proxy, .no_proxy = o->no_proxy,
        .proxy_auth = o->proxy_auth, .timeout_ms = o->timeout_ms,
        .connect_timeout_ms = o->timeout_ms };
    struct net_client_req req = { .method = body ? "POST" : "GET",
        .url = url, .headers = hdrs, .body_len = body ? (int64_t)body->len
                                                      : -1,
        .read = body ? oidc_give : NULL, .read_ud = &src,
        .write = oidc_take, .write_ud = out };
    struct net_client_resp resp;
    struct error e = {0};
    enum wh_status st = net_client_request(&opts, &req, &resp, &e);
    *status = resp.status;
    net_client_resp_free(&resp);
    if (out->too_big)
        return oidc_fail(err, OIDC_UNAVAILABLE,
                         "the identity provider's answer from %s is larger "
                         "than %zu bytes", url, out->max);
    if (out->oom)
        return oidc_fail(err, OIDC_ERROR, "out of memory reading %s", url);
    if (st != WH_OK)
        return oidc_fail(err, OIDC_UNAVAILABLE, "cannot use the identity "
                         "provider at %s: %s", url, e.msg);
    return OIDC_OK;
}

/* GET url, expect 200 and a body. */
static int oidc_get(const struct oidc *o, const char *url,
                    struct oidc_buf *out, struct error *err)
{
    long status;
    static const char *const hdrs[] = { "Accept: application/json", NULL };
    int rc = oidc_http(o, url, NULL, hdrs, out, &status, err);
    if (rc == OIDC_OK && status != 200)
        rc = oidc_fail(err, OIDC_UNAVAILABLE,
                       "the identity provider answered HTTP %ld for %s",
                       status, url);
    return rc;
}

/* ---- discovery and keys -------------------------------------------------- */

static void oidc_meta_free(struct oidc_meta *m)
{
    free(m->authz);
    free(m->token);
    free(m->jwks);
    memset(m, 0, sizeof(*m));
}

/* An HTTPS endpoint member of the discovery document, copied. */
static int oidc_meta_url(const json_t *doc, const char *name, char **out,
                         struct error *err)
{
    const char *v = json_string_value(json_object_get(doc, name));
    if (v == NULL || !oidc_is_https(v))
        return oidc_fail(err, OIDC_UNAVAILABLE,
                         "the discovery document has no HTTPS %s", name);
    if ((*out = strdup(v)) == NULL)
        return oidc_fail(err, OIDC_ERROR, "out of memory");
    return OIDC_OK;
}

/* When the list is given, it must contain one of want1 / want2. */
static bool oidc_list_allows(const json_t *doc, const char *name,
                             const char *want1, const char *want2)
{
    const json_t *list = json_object_get(doc, name);
    if (list == NULL)
        return true;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *v = json_string_value(json_array_get(list, i));
        if (v != NULL && (strcmp(v, want1) == 0 ||
                          (want2 != NULL && strcmp(v, want2) == 0)))
            return true;
    }
    return false;
}

static int oidc_meta_check(const struct oidc *o, const json_t *doc,
                           struct oidc_meta *m, struct error *err)
{
    const char *iss = json_string_value(json_object_get(doc, "issuer"));
    if (iss == NULL || strcmp(iss, o->issuer) != 0)
        return oidc_fail(err, OIDC_UNAVAILABLE,
                         "the discovery document names issuer \"%s\", not "
                         "the configured \"%s\"",
                         iss == NULL ? "(none)" : oidc_safe(iss), o->issuer);
    if (!oidc_list_allows(doc, "code_challenge_methods_supported", "S256",
                          NULL))
        return oidc_fail(err, OIDC_UNAVAILABLE,
                         "the identity provider does not support PKCE S256");
    if (!oidc_list_allows(doc, "id_token_signing_alg_values_supported",
                          "RS256", "ES256"))
        return oidc_fail(err, OIDC_UNAVAILABLE,
                         "the identity provider signs ID tokens with neither "
                         "RS256 nor ES256");
    int rc = oidc_meta_url(doc, "authorization_endpoint", &m->authz, err);
    if (rc == OIDC_OK)
        rc = oidc_meta_url(doc, "token_endpoint", &m->token, err);
    if (rc == OIDC_OK)
        rc = oidc_meta_url(doc, "jwks_uri", &m->jwks, err);
    return rc;
}

static int oidc_fetch_meta(const struct oidc *o, struct oidc_meta *m,
                           struct error *err)
{
    char url[OIDC_URL_MAX + sizeof(OIDC_WELL_KNOWN)];
    size_t n = strlen(o->issuer);
    if (n > 0 && o->issuer[n - 1] == '/')
        n--;
    snprintf(url, sizeof(url), "%.*s%s", (int)n, o->issuer, OIDC_WELL_KNOWN);
    struct oidc_buf body;
    oidc_buf_init(&body, OIDC_RESPONSE_MAX);
    int rc = oidc_get(o, url, &body, err);
    json_t *doc = NULL;
    if (rc == OIDC_OK) {
        json_error_t je;
        doc = json_loadb(body.p, body.len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(doc))
            rc = oidc_fail(err, OIDC_UNAVAILABLE,
                           "the discovery document at %s is not a JSON "
                           "object", url);
    }
    if (rc == OIDC_OK)
        rc = oidc_meta_check(o, doc, m, err);
    json_decref(doc);
    oidc_buf_free(&body);
    if (rc != OIDC_OK)
        oidc_meta_free(m);
    return rc;
}

static int oidc_fetch_keys(const struct oidc *o, const char *url,
                           struct jwt_keyset **out, struct error *err)
{
    struct oidc_buf body;
    oidc_buf_init(&body, JWKS_MAX_LEN);
    int rc = oidc_get(o, url, &body, err);
    if (rc == OIDC_OK) {
        enum jwt_rc jr = jwt_keyset_parse(body.p, body.len, out, err);
        if (jr != JWT_OK) {
            error_prefix(err, "the key set at %s", url);
            rc = jr == JWT_ERROR ? OIDC_ERROR : OIDC_UNAVAILABLE;
        }
    }
    oidc_buf_free(&body);
    return rc;
}

/* Fetch the key set again from the known jwks_uri; swap it in. */
static int oidc_refresh_keys(struct oidc *o, struct error *err)
{
    pthread_mutex_lock(&o->mu);
    char *url = o->jwks_uri != NULL ? strdup(o->jwks_uri) : NULL;
    o->keys_tried = oidc_mono();
    pthread_mutex_unlock(&o->mu);
    if (url == NULL)
        return oidc_fail(err, OIDC_ERROR, "no key set location is known");
    struct jwt_keyset *ks = NULL;
    int rc = oidc_fetch_keys(o, url, &ks, err);
    free(url);
    if (rc != OIDC_OK)
        return rc;
    pthread_mutex_lock(&o->mu);
    struct jwt_keyset *old = o->keys;
    o->keys = ks;
    o->keys_fetched = oidc_mono();
    pthread_mutex_unlock(&o->mu);
    jwt_keyset_free(old);
    log_debug("oidc: fetched %zu signing key(s) of %s", jwt_keyset_count(ks),
              o->issuer);
    return OIDC_OK;
}

int oidc_discover(struct oidc *o, struct error *err)
{
    struct oidc_meta m = {0};
    struct jwt_keyset *ks = NULL;
    if (o == NULL)
        return oidc_fail(err, OIDC_ERROR, "no OIDC client");
    int rc = oidc_fetch_meta(o, &m, err);
    if (rc == OIDC_OK)
        rc = oidc_fetch_keys(o, m.jwks, &ks, err);
    if (rc != OIDC_OK) {
        oidc_meta_free(&m);
        error_prefix(err, "OIDC discovery of %s failed", o->issuer);
        return rc;
    }
    pthread_mutex_lock(&o->mu);
    struct oidc_meta old = {o->authz_endpoint, o->token_endpoint,
                            o->jwks_uri};
    struct jwt_keyset *old_keys = o->keys;
    o->authz_endpoint = m.authz;
    o->token_endpoint = m.token;
    o->jwks_uri = m.jwks;
    o->keys = ks;
    o->keys_fetched = o->keys_tried = oidc_mono();
    pthread_mutex_unlock(&o->mu);
    oidc_meta_free(&old);
    jwt_keyset_free(old_keys);
    log_debug("oidc: discovered %s (%zu signing key(s))", o->issuer,
              jwt_keyset_count(ks));
    return OIDC_OK;
}

/* A copy of one discovered endpoint, discovering first when needed. */
static int oidc_endpoint(struct oidc *o, bool token, char **out,
                         struct error *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&o->mu);
        const char *e = token ? o->token_endpoint : o->authz_endpoint;
        *out = e != NULL ? strdup(e) : NULL;
        bool known = e != NULL;
        pthread_mutex_unlock(&o->mu);
        if (known)
            return *out != NULL ? OIDC_OK
                                : oidc_fail(err, OIDC_ERROR, "out of memory");
        int rc = oidc_discover(o, err);
        if (rc != OIDC_OK)
            return rc;
    }
    return oidc_fail(err, OIDC_ERROR, "the identity provider's endpoints "
                     "are unknown");
}

/* ---- configuration ------------------------------------------------------- */

void oidc_config_init(struct oidc_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->scopes = "openid email profile";
    cfg->client_auth = OIDC_AUTH_BASIC;
    cfg->timeout_ms = 10000;
    cfg->leeway_s = 60;
    cfg->jwks_refresh_min_s = 10;
    cfg->jwks_max_age_s = 3600;
    cfg->login_max_age_s = 600;
}

/* "openid" is one of the space-separated scopes. */
static bool oidc_has_openid(const char *scopes)
{
    for (const char *p = scopes; (p = strstr(p, "openid")) != NULL; p += 6)
        if ((p == scopes || p[-1] == ' ') && (p[6] == ' ' || p[6] == '\0'))
            return true;
    return false;
}

static int oidc_check_scopes(const char *scopes, struct error *err)
{
    size_t n = scopes == NULL ? 0 : strnlen(scopes, 513);
    if (n == 0 || n > 512)
        return oidc_fail(err, -1, "OIDC scopes must be 1 to 512 characters");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)scopes[i] < 0x20 ||
            (unsigned char)scopes[i] >= 0x7f)
            return oidc_fail(err, -1, "OIDC scopes must be printable ASCII");
    if (!oidc_has_openid(scopes))
        return oidc_fail(err, -1, "OIDC scopes must include \"openid\"");
    return 0;
}

static int oidc_check_roles(const struct oidc_config *c, struct error *err)
{
    if (c->default_role != NULL && !oidc_role_known(c->default_role))
        return oidc_fail(err, -1, "OIDC default role \"%s\" is not one of "
                         "admin, operator, auditor, viewer",
                         oidc_safe(c->default_role));
    if (c->role_map_len > 0 && c->role_map == NULL)
        return oidc_fail(err, -1, "OIDC role mapping is missing");
    for (size_t i = 0; i < c->role_map_len; i++) {
        const struct oidc_role_map *m = &c->role_map[i];
        if (m->value == NULL || m->value[0] == '\0' ||
            strlen(m->value) > OIDC_NAME_MAX || m->role == NULL ||
            !oidc_role_known(m->role))
            return oidc_fail(err, -1, "OIDC role mapping entry %zu needs a "
                             "claim value and one of the roles admin, "
                             "operator, auditor, viewer", i + 1);
    }
    if (c->role_claim != NULL && !oidc_printable(c->role_claim, OIDC_NAME_MAX))
        return oidc_fail(err, -1, "OIDC role claim name is not valid");
    if ((c->role_claim == NULL || c->role_map_len == 0) &&
        c->default_role == NULL)
        return oidc_fail(err, -1, "OIDC needs a role claim with a mapping, "
                         "or a default role, or nobody could log in");
    return 0;
}

static int oidc_check_limits(const struct oidc_config *c, struct error *err)
{
    if (c->timeout_ms < 100 || c->timeout_ms > 120000)
        return oidc_fail(err, -1, "OIDC timeout must be 100 to 120000 ms");
    if (c->leeway_s < 0 || c->leeway_s > 600)
        return oidc_fail(err, -1, "OIDC clock leeway must be 0 to 600 s");
    if (c->jwks_refresh_min_s < 0 || c->jwks_refresh_min_s > 86400 ||
        c->jwks_max_age_s < 60 || c->jwks_max_age_s > 7 * 86400)
        return oidc_fail(err, -1, "OIDC key refresh intervals are out of "
                         "range (0..86400 s and 60..604800 s)");
    if (c->login_max_age_s < 30 || c->login_max_age_s > 3600)
        return oidc_fail(err, -1, "OIDC login lifetime must be 30 to 3600 s");
    return 0;
}

static int oidc_check_config(const struct oidc_config *c, struct error *err)
{
    if (c->issuer == NULL || !oidc_is_https(c->issuer) ||
        strpbrk(c->issuer, "?#") != NULL)
        return oidc_fail(err, -1, "OIDC issuer must be an https:// URL "
                         "without query or fragment");
    if (!oidc_printable(c->client_id, OIDC_NAME_MAX))
        return oidc_fail(err, -1, "OIDC client id must be 1 to 255 "
                         "printable characters");
    if (c->redirect_uri == NULL || !oidc_is_https(c->redirect_uri) ||
        strchr(c->redirect_uri, '#') != NULL)
        return oidc_fail(err, -1, "OIDC redirect URI must be an https:// "
                         "URL of Wharf's admin listener");
    if (c->client_auth != OIDC_AUTH_BASIC && c->client_auth != OIDC_AUTH_POST)
        return oidc_fail(err, -1, "OIDC client authentication method is not "
                         "known");
    if (c->ca_file != NULL && access(c->ca_file, R_OK) != 0)
        return error_errno(err, errno, "OIDC CA file %s cannot be read",
                           c->ca_file);
    if (c->proxy != NULL && !oidc_printable(c->proxy, OIDC_URL_MAX))
        return oidc_fail(err, -1, "OIDC proxy must be a URL");
    if (oidc_check_scopes(c->scopes, err) < 0 ||
        oidc_check_roles(c, err) < 0 || oidc_check_limits(c, err) < 0)
        return -1;
    return 0;
}

static int oidc_copy_map(struct oidc *o, const struct oidc_config *c)
{
    if (c->role_map_len == 0)
        return 0;
    o->map = calloc(c->role_map_len, sizeof(*o->map));
    if (o->map == NULL)
        return -1;
    o->map_len = c->role_map_len;
    for (size_t i = 0; i < c->role_map_len; i++) {
        if ((o->map[i].value = strdup(c->role_map[i].value)) == NULL)
            return -1;
        snprintf(o->map[i].role, sizeof(o->map[i].role), "%s",
                 c->role_map[i].role);
    }
    return 0;
}

struct oidc *oidc_new(const struct oidc_config *cfg, struct error *err)
{
    if (cfg == NULL || oidc_check_config(cfg, err) < 0)
        return NULL;
    struct oidc *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        error_set(err, "cannot initialize the OIDC client: out of memory");
        return NULL;
    }
    pthread_mutex_init(&o->mu, NULL);
    bool oom = false;
    o->issuer = oidc_strdup_or_null(cfg->issuer, &oom);
    o->client_id = oidc_strdup_or_null(cfg->client_id, &oom);
    o->redirect_uri = oidc_strdup_or_null(cfg->redirect_uri, &oom);
    o->scopes = oidc_strdup_or_null(cfg->scopes, &oom);
    o->role_claim = oidc_strdup_or_null(cfg->role_claim, &oom);
    o->ca_file = oidc_strdup_or_null(cfg->ca_file, &oom);
    o->proxy = oidc_strdup_or_null(cfg->proxy, &oom);
    o->no_proxy = oidc_strdup_or_null(cfg->no_proxy, &oom);
    if (cfg->proxy_auth != NULL &&
        (o->proxy_auth = secret_from(secret_data(cfg->proxy_auth),
                                     secret_len(cfg->proxy_auth))) == NULL)
        oom = true;
    if (cfg->client_secret != NULL && secret_len(cfg->client_secret) > 0 &&
        (o->client_secret = secret_from(secret_data(cfg->client_secret),
                                        secret_len(cfg->client_secret))) ==
            NULL)
        oom = true;
    if (oidc_copy_map(o, cfg) < 0)
        oom = true;
    if (cfg->default_role != NULL)
        snprintf(o->default_role, sizeof(o->default_role), "%s",
                 cfg->default_role);
    o->client_auth = cfg->client_auth;
    o->timeout_ms = cfg->timeout_ms;
    o->leeway_s = cfg->leeway_s;
    o->jwks_refresh_min_s = cfg->jwks_refresh_min_s;
    o->jwks_max_age_s = cfg->jwks_max_age_s;
    o->login_max_age_s = cfg->login_max_age_s;
    if (oom) {
        oidc_free(o);
        error_set(err, "out of memory building the OIDC client");
        return NULL;
    }
    return o;
}

void oidc_free(struct oidc *o)
{
    if (o == NULL)
        return;
    free(o->issuer);
    free(o->client_id);
    free(o->redirect_uri);
    free(o->scopes);
    free(o->role_claim);
    free(o->ca_file);
    free(o->proxy);
    free(o->no_proxy);
    secret_free(o->proxy_auth);
    secret_free(o->client_secret);
    for (size_t i = 0; i < o->map_len; i++)
        free(o->map[i].value);
    free(o->map);
    free(o->authz_endpoint);
    free(o->token_endpoint);
    free(o->jwks_uri);
    jwt_keyset_free(o->keys);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

/* ---- login start --------------------------------------------------------- */

/* state, nonce and verifier of a new login. */
static int oidc_pending_fill(struct oidc_pending *p, int64_t now,
                             char challenge[OIDC_CHALLENGE_LEN + 1],
                             struct error *err)
{
    p->created = now;
    if (oauth_random(p->state, err) < 0 || oauth_random(p->nonce, err) < 0)
        return -1;
    return oauth_pkce_new(&p->verifier, challenge, err);
}

static int oidc_authz_url(const struct oidc *o, const char *endpoint,
                          const struct oidc_pending *p,
                          const char *challenge, struct oidc_buf *u)
{
    const char *sep = strchr(endpoint, '?') != NULL ? "&" : "?";
    if (oidc_buf_str(u, endpoint) < 0 ||
        oidc_buf_param(u, sep, "response_type", "code", 4) < 0 ||
        oidc_buf_param(u, "&", "client_id", o->client_id,
                       strlen(o->client_id)) < 0 ||
        oidc_buf_param(u, "&", "redirect_uri", o->redirect_uri,
                       strlen(o->redirect_uri)) < 0 ||
        oidc_buf_param(u, "&", "scope", o->scopes, strlen(o->scopes)) < 0 ||
        oidc_buf_param(u, "&", "state", p->state, strlen(p->state)) < 0 ||
        oidc_buf_param(u, "&", "nonce", p->nonce, strlen(p->nonce)) < 0 ||
        oidc_buf_param(u, "&", "code_challenge", challenge,
                       strlen(challenge)) < 0 ||
        oidc_buf_param(u, "&", "code_challenge_method", "S256", 4) < 0)
        return -1;
    return 0;
}

int oidc_login_start(struct oidc *o, int64_t now, struct oidc_pending *p,
                     char **url, struct error *err)
{
    char challenge[OIDC_CHALLENGE_LEN + 1];
    char *endpoint = NULL;
    if (url != NULL)
        *url = NULL;
    if (p != NULL)
        memset(p, 0, sizeof(*p));
    if (o == NULL || p == NULL || url == NULL)
        return oidc_fail(err, OIDC_ERROR, "no OIDC client or output");
    int rc = oidc_endpoint(o, false, &endpoint, err);
    if (rc != OIDC_OK)
        return rc;
    if (oidc_pending_fill(p, now, challenge, err) < 0) {
        free(endpoint);
        oidc_pending_clear(p);
        return OIDC_ERROR;
    }
    struct oidc_buf u;
    oidc_buf_init(&u, (size_t)OIDC_URL_MAX * 4);
    if (oidc_authz_url(o, endpoint, p, challenge, &u) < 0) {
        oidc_buf_free(&u);
        free(endpoint);
        oidc_pending_clear(p);
        return oidc_fail(err, OIDC_ERROR, "cannot build the authorization "
                         "URL (too long or out of memory)");
    }
    free(endpoint);
    *url = u.p;     /* handed over: not a secret */
    return OIDC_OK;
}

void oidc_pending_clear(struct oidc_pending *p)
{
    if (p == NULL)
        return;
    secret_free(p->verifier);
    OPENSSL_cleanse(p, sizeof(*p));
    memset(p, 0, sizeof(*p));
}

/* ---- code exchange ------------------------------------------------------- */

/* The headers of the token request ("Name: value", NULL-terminated): a
 * client_secret_basic Authorization header lives in auth (a wiped
 * buffer). */
struct oidc_hdrs {
    const char *list[4];
    struct oidc_buf auth;
};

/* "Authorization: Basic base64(esc(id):esc(secret))" (RFC 6749 2.3.1)
 * into h->auth. */
static int oidc_basic_header(const struct oidc *o, struct oidc_hdrs *h)
{
    struct oidc_buf cred;
    int rc = -1;
    oidc_buf_init(&cred, 4096);
    if (oidc_buf_esc(&cred, o->client_id, strlen(o->client_id)) == 0 &&
        oidc_buf_add(&cred, ":", 1) == 0 &&
        oidc_buf_esc(&cred, (const char *)secret_data(o->client_secret),
                     secret_len(o->client_secret)) == 0 &&
        oidc_buf_str(&h->auth, "Authorization: Basic ") == 0 &&
        oidc_buf_b64(&h->auth, cred.p, cred.len) == 0)
        rc = 0;
    oidc_buf_free(&cred);
    return rc;
}

/* The form body and headers of the token request. */
static int oidc_token_request(const struct oidc *o,
                              const struct oidc_pending *p, const char *code,
                              struct oidc_buf *body, struct oidc_hdrs *h)
{
    const char *verifier = (const char *)secret_data(p->verifier);
    if (oidc_buf_param(body, "", "grant_type", "authorization_code", 18) < 0 ||
        oidc_buf_param(body, "&", "code", code, strlen(code)) < 0 ||
        oidc_buf_param(body, "&", "redirect_uri", o->redirect_uri,
                       strlen(o->redirect_uri)) < 0 ||
        oidc_buf_param(body, "&", "code_verifier", verifier,
                       secret_len(p->verifier)) < 0)
        return -1;
    h->list[0] = "Accept: application/json";
    h->list[1] = "Content-Type: application/x-www-form-urlencoded";
    if (o->client_secret != NULL && o->client_auth == OIDC_AUTH_BASIC) {
        if (oidc_basic_header(o, h) < 0)
            return -1;
        h->list[2] = h->auth.p;
        return 0;
    }
    if (oidc_buf_param(body, "&", "client_id", o->client_id,
                       strlen(o->client_id)) < 0)
        return -1;
    if (o->client_secret != NULL &&
        oidc_buf_param(body, "&", "client_secret",
                       (const char *)secret_data(o->client_secret),
                       secret_len(o->client_secret)) < 0)
        return -1;
    return 0;
}

/* Read the token response: the ID token (malloc'ed into *id_token) on 200;
 * the OAuth error code (if it is plain) otherwise. */
static int oidc_token_response(const struct oidc_buf *resp, long status,
                               char **id_token, struct error *err)
{
    json_error_t je;
    json_t *doc = json_loadb(resp->p != NULL ? resp->p : "", resp->len,
                             JSON_REJECT_DUPLICATES, &je);
    int rc;
    if (status == 200) {
        const char *t = json_string_value(json_object_get(doc, "id_token"));
        if (t == NULL)
            rc = oidc_fail(err, OIDC_DENIED, "the token endpoint answered "
                           "without an ID token");
        else if ((*id_token = strdup(t)) == NULL)
            rc = oidc_fail(err, OIDC_ERROR, "out of memory");
        else
            rc = OIDC_OK;
    } else {
        const char *e = json_string_value(json_object_get(doc, "error"));
        rc = oidc_fail(err, status >= 400 && status < 500 ? OIDC_DENIED
                                                          : OIDC_UNAVAILABLE,
                       "the token endpoint refused the code exchange (HTTP "
                       "%ld, %s)", status, e != NULL ? oidc_safe(e)
                                                     : "no error code");
    }
    json_decref(doc);
    return rc;
}

static int oidc_exchange(struct oidc *o, const struct oidc_pending *p,
                         const char *code, char **id_token, struct error *err)
{
    char *endpoint = NULL;
    struct oidc_hdrs hdrs;
    struct oidc_buf body, resp;
    long status = 0;
    *id_token = NULL;
    int rc = oidc_endpoint(o, true, &endpoint, err);
    if (rc != OIDC_OK)
        return rc;
    memset(&hdrs, 0, sizeof(hdrs));
    oidc_buf_init(&hdrs.auth, 8192);
    oidc_buf_init(&body, 64 * 1024);
    oidc_buf_init(&resp, OIDC_RESPONSE_MAX);
    if (oidc_token_request(o, p, code, &body, &hdrs) < 0)
        rc = oidc_fail(err, OIDC_ERROR, "cannot build the token request");
    else
        rc = oidc_http(o, endpoint, &body, hdrs.list, &resp, &status, err);
    if (rc == OIDC_OK)
        rc = oidc_token_response(&resp, status, id_token, err);
    oidc_buf_free(&hdrs.auth);
    oidc_buf_free(&body);
    oidc_buf_free(&resp);
    free(endpoint);
    return rc;
}

/* ---- ID token ------------------------------------------------------------ */

/* jwt_verify under the lock; *unknown set when the kid was unknown and a
 * refresh is allowed now. */
static enum jwt_rc oidc_verify_locked(struct oidc *o, const char *token,
                                      const struct jwt_expect *want,
                                      json_t **claims, bool *refresh,
                                      struct error *err)
{
    pthread_mutex_lock(&o->mu);
    enum jwt_rc rc = o->keys == NULL
                         ? JWT_UNKNOWN_KEY
                         : jwt_verify(token, strlen(token), o->keys, want,
                                      claims, err);
    if (o->keys == NULL)
        error_set(err, "no signing keys of the identity provider are known");
    *refresh = rc == JWT_UNKNOWN_KEY &&
               oidc_mono() - o->keys_tried >= o->jwks_refresh_min_s;
    pthread_mutex_unlock(&o->mu);
    return rc;
}

/* Refresh the key set when it is older than jwks_max_age_s; on failure the
 * old keys stay in use. */
static void oidc_keys_age_check(struct oidc *o)
{
    pthread_mutex_lock(&o->mu);
    bool stale = o->keys == NULL ||
                 oidc_mono() - o->keys_fetched >= o->jwks_max_age_s;
    pthread_mutex_unlock(&o->mu);
    struct error e = {0};
    if (stale && oidc_refresh_keys(o, &e) != OIDC_OK)
        log_warn("oidc: keeping the cached signing keys of %s: %s",
                 o->issuer, e.msg);
}

static int oidc_verify_id_token(struct oidc *o, const char *token,
                                const struct oidc_pending *p, int64_t now,
                                json_t **claims, struct error *err)
{
    struct jwt_expect want = {o->issuer, o->client_id, p->nonce, now,
                              o->leeway_s};
    bool refresh = false;
    oidc_keys_age_check(o);
    enum jwt_rc rc = oidc_verify_locked(o, token, &want, claims, &refresh,
                                        err);
    if (rc == JWT_UNKNOWN_KEY && refresh) {
        struct error e = {0};
        if (oidc_refresh_keys(o, &e) == OIDC_OK)
            rc = oidc_verify_locked(o, token, &want, claims, &refresh, err);
        else
            log_warn("oidc: cannot refresh the signing keys of %s: %s",
                     o->issuer, e.msg);
    }
    if (rc == JWT_OK)
        return OIDC_OK;
    return rc == JWT_ERROR ? OIDC_ERROR : OIDC_DENIED;
}

/* ---- roles and identity -------------------------------------------------- */

/* The claim called name, else the dotted path name (a.b.c). */
static const json_t *oidc_claim(const json_t *claims, const char *name)
{
    const json_t *v = json_object_get(claims, name);
    if (v != NULL || strchr(name, '.') == NULL)
        return v;
    char part[OIDC_NAME_MAX + 1];
    v = claims;
    for (const char *s = name; v != NULL && *s != '\0';) {
        const char *dot = strchr(s, '.');
        size_t n = dot != NULL ? (size_t)(dot - s) : strlen(s);
        if (n == 0 || n >= sizeof(part))
            return NULL;
        memcpy(part, s, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        s += n + (dot != NULL ? 1 : 0);
    }
    return v;
}

static bool oidc_claim_has(const json_t *v, const char *value)
{
    if (json_is_string(v))
        return strcmp(json_string_value(v), value) == 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s = json_string_value(json_array_get(v, i));
        if (s != NULL && strcmp(s, value) == 0)
            return true;
    }
    return false;
}

int oidc_map_role(const struct oidc *o, const json_t *claims,
                  char role[OIDC_ROLE_MAX], struct error *err)
{
    role[0] = '\0';
    const json_t *v = o->role_claim != NULL && json_is_object(claims)
                          ? oidc_claim(claims, o->role_claim)
                          : NULL;
    for (size_t i = 0; v != NULL && i < o->map_len; i++) {
        if (oidc_claim_has(v, o->map[i].value)) {
            snprintf(role, OIDC_ROLE_MAX, "%s", o->map[i].role);
            return OIDC_OK;
        }
    }
    if (o->default_role[0] != '\0') {
        snprintf(role, OIDC_ROLE_MAX, "%s", o->default_role);
        return OIDC_OK;
    }
    return oidc_fail(err, OIDC_NO_ROLE,
                     "no Wharf role for this person: the claim \"%s\" holds "
                     "no mapped value and no default role is configured",
                     o->role_claim != NULL ? o->role_claim : "(none)");
}

static int oidc_identity_fill(const struct oidc *o, const json_t *claims,
                              struct oidc_identity *id)
{
    bool oom = false;
    id->issuer = oidc_strdup_or_null(o->issuer, &oom);
    id->subject = oidc_strdup_or_null(
        json_string_value(json_object_get(claims, "sub")), &oom);
    id->email = oidc_strdup_or_null(
        json_string_value(json_object_get(claims, "email")), &oom);
    id->email_verified = json_is_true(json_object_get(claims,
                                                      "email_verified"));
    id->username = oidc_strdup_or_null(
        json_string_value(json_object_get(claims, "preferred_username")),
        &oom);
    id->name = oidc_strdup_or_null(
        json_string_value(json_object_get(claims, "name")), &oom);
    return oom ? -1 : 0;
}

void oidc_identity_clear(struct oidc_identity *id)
{
    if (id == NULL)
        return;
    free(id->issuer);
    free(id->subject);
    free(id->email);
    free(id->username);
    free(id->name);
    memset(id, 0, sizeof(*id));
}

/* ---- callback ------------------------------------------------------------ */

static int oidc_check_callback(const struct oidc *o,
                               const struct oidc_pending *p,
                               const char *state, const char *code,
                               int64_t now, struct error *err)
{
    if (p->verifier == NULL || p->state[0] == '\0' || p->nonce[0] == '\0')
        return oidc_fail(err, OIDC_DENIED, "no login is pending");
    if (now - p->created > o->login_max_age_s ||
        now < p->created - o->leeway_s)
        return oidc_fail(err, OIDC_DENIED, "the login took too long; start "
                         "it again");
    size_t n = strlen(p->state);
    if (state == NULL || strnlen(state, n + 1) != n ||
        CRYPTO_memcmp(state, p->state, n) != 0)
        return oidc_fail(err, OIDC_DENIED, "the state parameter does not "
                         "match this login");
    if (!oidc_printable(code, OIDC_CODE_MAX))
        return oidc_fail(err, OIDC_DENIED, "the authorization code is "
                         "missing or malformed");
    return OIDC_OK;
}

int oidc_callback(struct oidc *o, const struct oidc_pending *p,
                  const char *state, const char *code, int64_t now,
                  struct oidc_identity *id, struct error *err)
{
    char *token = NULL;
    json_t *claims = NULL;
    if (id != NULL)
        memset(id, 0, sizeof(*id));
    if (o == NULL || p == NULL || id == NULL)
        return oidc_fail(err, OIDC_ERROR, "no OIDC client, login or output");
    int rc = oidc_check_callback(o, p, state, code, now, err);
    if (rc == OIDC_OK)
        rc = oidc_exchange(o, p, code, &token, err);
    if (rc == OIDC_OK)
        rc = oidc_verify_id_token(o, token, p, now, &claims, err);
    if (token != NULL) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    if (rc == OIDC_OK)
        rc = oidc_map_role(o, claims, id->role, err);
    /* OIDC_NO_ROLE keeps the identity: the caller audits who was refused */
    if ((rc == OIDC_OK || rc == OIDC_NO_ROLE) &&
        oidc_identity_fill(o, claims, id) < 0)
        rc = oidc_fail(err, OIDC_ERROR, "out of memory");
    json_decref(claims);
    if (rc != OIDC_OK && rc != OIDC_NO_ROLE)
        oidc_identity_clear(id);
    if (rc != OIDC_OK)
        error_prefix(err, rc == OIDC_DENIED || rc == OIDC_NO_ROLE
                              ? "OIDC login refused"
                              : "OIDC login failed");
    return rc;
}
