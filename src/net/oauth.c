/*
 * oauth.c - OAuth 2.0 token requests, the token response parser, PKCE,
 * state and authorization URLs for connectors (see oauth.h).
 *
 * Owns: the form encoding of token requests (built inside struct secret,
 * since the body carries the client secret, a code or a refresh token),
 * client authentication (client_secret_basic / client_secret_post), and
 * reading the token endpoint's JSON (untrusted; fuzzed).
 *
 * Must never: log anything; put a token, code, verifier, client secret or
 * a piece of the raw response into an error (the endpoint's
 * error_description is quoted only after it was made printable and
 * checked not to hold a value that was sent); talk HTTP except through
 * net_client_request. Buffers that held secrets are wiped.
 */
#include "net/oauth.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/url.h"
#include "util/secret.h"

#define MAX_EXPIRES_IN (10LL * 365 * 24 * 3600)
#define MAX_SCOPE 1024
#define TOKEN_TIMEOUT_MS 30000L

void oauth_token_clear(struct oauth_token *t)
{
    if (t == NULL)
        return;
    secret_free(t->access);
    secret_free(t->refresh);
    free(t->scope);
    memset(t, 0, sizeof(*t));
}

/* ---- encoding ------------------------------------------------------------ */

/* base64url without padding of n bytes into out (room for 4 * n / 3 + 4). */
static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return (size_t)len;
}

int oauth_random(char out[OAUTH_RANDOM_LEN + 1], struct error *err)
{
    unsigned char r[32];
    char tmp[64];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return error_openssl(err, "cannot draw random bytes");
    size_t n = b64url(r, sizeof(r), tmp);
    OPENSSL_cleanse(r, sizeof(r));
    if (n != OAUTH_RANDOM_LEN)
        return error_set(err, "cannot encode random bytes");
    memcpy(out, tmp, n + 1);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return 0;
}

int oauth_pkce_challenge(const char *verifier, size_t len,
                         char out[OAUTH_CHALLENGE_LEN + 1], struct error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char tmp[64];
    if (verifier == NULL || len < 43 || len > 128)
        return error_set(err, "a PKCE verifier has 43 to 128 characters");
    for (size_t i = 0; i < len; i++)
        if (!net_url_unreserved((unsigned char)verifier[i]))
            return error_set(err, "a PKCE verifier holds only unreserved "
                             "characters");
    if (EVP_Digest(verifier, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return error_openssl(err, "cannot compute the PKCE challenge");
    if (b64url(md, mdlen, tmp) != OAUTH_CHALLENGE_LEN)
        return error_set(err, "cannot encode the PKCE challenge");
    memcpy(out, tmp, OAUTH_CHALLENGE_LEN + 1);
    return 0;
}

int oauth_pkce_new(struct secret **verifier,
                   char challenge[OAUTH_CHALLENGE_LEN + 1], struct error *err)
{
    char v[OAUTH_RANDOM_LEN + 1];
    *verifier = NULL;
    int rc = oauth_random(v, err);
    if (rc == 0)
        rc = oauth_pkce_challenge(v, OAUTH_RANDOM_LEN, challenge, err);
    if (rc == 0 && (*verifier = secret_from(v, OAUTH_RANDOM_LEN)) == NULL)
        rc = error_set(err, "out of memory");
    OPENSSL_cleanse(v, sizeof(v));
    return rc;
}

/* ---- the authorization URL ------------------------------------------------- */

struct qparam {
    const char *name;
    const char *value;
};

char *oauth_authorize_url(const char *authorize_url, const char *client_id,
                          const char *redirect_uri, const char *scope,
                          const char *state, const char *challenge,
                          struct error *err)
{
    const struct qparam q[] = {
        { "response_type", "code" }, { "client_id", client_id },
        { "redirect_uri", redirect_uri }, { "scope", scope },
        { "state", state }, { "code_challenge", challenge },
        { "code_challenge_method", "S256" },
    };
    size_t nq = sizeof(q) / sizeof(*q);
    if (authorize_url == NULL || client_id == NULL || redirect_uri == NULL ||
        state == NULL || challenge == NULL)
        return error_set(err, "an authorization URL needs the endpoint, "
                         "client_id, redirect_uri, state and challenge"),
               NULL;
    size_t cap = strlen(authorize_url) + 2;
    for (size_t i = 0; i < nq; i++)
        if (q[i].value)
            cap += strlen(q[i].name) + 2 + 3 * strlen(q[i].value);
    char *url = malloc(cap);
    if (url == NULL)
        return error_set(err, "out of memory"), NULL;
    size_t len = strlen(authorize_url);
    memcpy(url, authorize_url, len);
    char sep = strchr(authorize_url, '?') ? '&' : '?';
    for (size_t i = 0; i < nq; i++) {
        if (q[i].value == NULL)
            continue;
        url[len++] = sep;
        sep = '&';
        size_t nl = strlen(q[i].name);
        memcpy(url + len, q[i].name, nl);
        len += nl;
        url[len++] = '=';
        len += net_url_encode((const unsigned char *)q[i].value,
                          strlen(q[i].value), (unsigned char *)url + len);
    }
    url[len] = '\0';
    return url;
}

/* ---- the token response ------------------------------------------------------ */

/* Overwrite every string value of a parsed document (they may be tokens)
 * before it is freed. */
static void wipe_json(json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_string(v)) {
        OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, x) {
            wipe_json(x);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) {
            wipe_json(x);
        }
    }
}

/* A token as RFC 6749 allows it in a header: 1..OAUTH_TOKEN_MAX visible
 * ASCII characters (no blank, no control character, no NUL). */
static struct secret *token_value(const json_t *v, const char *what,
                                  struct error *err)
{
    if (!json_is_string(v))
        return error_set(err, "the token response's %s is not a string",
                         what), NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > OAUTH_TOKEN_MAX)
        return error_set(err, "the token response's %s is empty or longer "
                         "than %d characters", what, OAUTH_TOKEN_MAX), NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return error_set(err, "the token response's %s holds a "
                             "character a token may not hold", what), NULL;
    struct secret *out = secret_from(s, n);
    if (out == NULL)
        error_set(err, "out of memory");
    return out;
}

/* expires_in: a number or a string of digits (some endpoints send one),
 * 0..MAX_EXPIRES_IN; absent is 0. */
static int expires_value(const json_t *v, int64_t *out, struct error *err)
{
    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    long long x = -1;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || n > 10 || strspn(s, "0123456789") != n)
            return error_set(err, "the token response's expires_in is not "
                             "a number of seconds");
        x = strtoll(s, NULL, 10);
    } else {
        return error_set(err, "the token response's expires_in is not a "
                         "number of seconds");
    }
    if (x < 0 || x > MAX_EXPIRES_IN)
        return error_set(err, "the token response's expires_in is out of "
                         "range");
    *out = (int64_t)x;
    return 0;
}

static int parse_scope(const json_t *v, struct oauth_token *t,
                       struct error *err)
{
    if (v == NULL || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (s == NULL || n > MAX_SCOPE)
        return error_set(err, "the token response's scope is not a string "
                         "of at most %d characters", MAX_SCOPE);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return error_set(err, "the token response's scope holds a "
                             "control or non-ASCII character");
    if ((t->scope = strdup(s)) == NULL)
        return error_set(err, "out of memory");
    return 0;
}

static int parse_token(const json_t *doc, struct oauth_token *t,
                       struct error *err)
{
    const char *type = json_string_value(json_object_get(doc, "token_type"));
    if (json_object_get(doc, "access_token") == NULL)
        return error_set(err, "the token response has no access_token");
    if (type == NULL)
        return error_set(err, "the token response has no token_type");
    if (strcasecmp(type, "bearer") != 0)
        return error_set(err, "the token response's token_type is not "
                         "Bearer");
    if ((t->access = token_value(json_object_get(doc, "access_token"),
                                 "access_token", err)) == NULL)
        return -1;
    const json_t *r = json_object_get(doc, "refresh_token");
    if (r && !json_is_null(r) &&
        (t->refresh = token_value(r, "refresh_token", err)) == NULL)
        return -1;
    if (expires_value(json_object_get(doc, "expires_in"), &t->expires_in,
                      err) < 0)
        return -1;
    return parse_scope(json_object_get(doc, "scope"), t, err);
}

static int code_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static int parse_refusal(const json_t *doc, struct oauth_token *t,
                         struct error *err)
{
    const json_t *e = json_object_get(doc, "error");
    const char *code = json_string_value(e);
    size_t n = json_string_length(e);
    if (code == NULL || n == 0 || n >= OAUTH_ERROR_MAX)
        return error_set(err, "the token endpoint's refusal has no error "
                         "code");
    for (size_t i = 0; i < n; i++)
        if (!code_char(code[i]))
            return error_set(err, "the token endpoint's error code holds "
                             "unexpected characters");
    memcpy(t->error, code, n + 1);
    const json_t *d = json_object_get(doc, "error_description");
    const char *desc = json_string_value(d);
    size_t dn = json_string_length(d), j = 0;
    for (size_t i = 0; desc && i < dn && j + 1 < sizeof(t->description); i++) {
        unsigned char c = (unsigned char)desc[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            t->description[j++] = (char)c;
    }
    t->description[j] = '\0';
    return 1;
}

int oauth_token_parse(long status, const char *body, size_t len,
                      struct oauth_token *t, struct error *err)
{
    memset(t, 0, sizeof(*t));
    if (status != 200 && status != 400 && status != 401)
        return error_set(err, "the token endpoint answered HTTP %ld", status);
    if (body == NULL || len == 0)
        return error_set(err, "the token response (HTTP %ld) is empty",
                         status);
    if (len > OAUTH_RESPONSE_MAX)
        return error_set(err, "the token response is larger than %d bytes",
                         OAUTH_RESPONSE_MAX);
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    OPENSSL_cleanse(&je, sizeof(je));       /* its text quotes the input */
    int rc;
    if (!json_is_object(doc))
        rc = error_set(err, "the token response (HTTP %ld) is not a JSON "
                       "object", status);
    else if (status == 200)
        rc = parse_token(doc, t, err);
    else
        rc = parse_refusal(doc, t, err);
    wipe_json(doc);
    json_decref(doc);
    if (rc < 0)
        oauth_token_clear(t);
    return rc;
}

/* ---- the token request ----------------------------------------------------- */

struct fparam {
    const char *name;
    const unsigned char *value;
    size_t len;
};

/* name=value&... of p[n] (NULL values skipped) inside a secret; *len is
 * the length used (the secret may be longer). NULL when out of memory. */
static struct secret *form_encode(const struct fparam *p, size_t n,
                                  size_t *len)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        if (p[i].value)
            cap += strlen(p[i].name) + 2 + 3 * p[i].len;
    struct secret *s = secret_new(cap);
    if (s == NULL)
        return NULL;
    unsigned char *out = secret_data_mut(s);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].value == NULL)
            continue;
        if (j > 0)
            out[j++] = '&';
        size_t nl = strlen(p[i].name);
        memcpy(out + j, p[i].name, nl);
        j += nl;
        out[j++] = '=';
        j += net_url_encode(p[i].value, p[i].len, out + j);
    }
    *len = j;
    return s;
}

/* The percent-encoded copy of s (client_secret_basic encodes both halves
 * before base64). NULL when out of memory. */
static struct secret *secret_pct(const struct secret *s)
{
    struct secret *tmp = secret_new(3 * secret_len(s) + 1);
    if (tmp == NULL)
        return NULL;
    size_t n = net_url_encode(secret_data(s), secret_len(s), secret_data_mut(tmp));
    struct secret *out = secret_from(secret_data(tmp), n);
    secret_free(tmp);
    return out;
}

static char *str_pct(const char *s)
{
    char *out = malloc(3 * strlen(s) + 1);
    if (out)
        out[net_url_encode((const unsigned char *)s, strlen(s),
                       (unsigned char *)out)] = '\0';
    return out;
}

struct form_reader {
    const unsigned char *p;
    size_t left;
};

static ssize_t form_read(void *ud, void *buf, size_t n, struct error *err)
{
    (void)err;
    struct form_reader *r = ud;
    if (n > r->left)
        n = r->left;
    memcpy(buf, r->p, n);
    r->p += n;
    r->left -= n;
    return (ssize_t)n;
}

static const char *grant_name(enum oauth_grant g)
{
    switch (g) {
    case OAUTH_AUTHORIZATION_CODE: return "authorization_code";
    case OAUTH_REFRESH_TOKEN: return "refresh_token";
    default: return "client_credentials";
    }
}

#define SP(s) ((s) ? secret_data(s) : NULL), ((s) ? secret_len(s) : 0)
#define CP(s) ((const unsigned char *)(s)), ((s) ? strlen(s) : 0)

/* The form body of grant g. */
static struct secret *token_form(const struct oauth_endpoint *e,
                                 enum oauth_grant g, const struct secret *value,
                                 const struct secret *verifier, size_t *len)
{
    int post = e->client_auth == OAUTH_AUTH_POST || e->client_secret == NULL;
    const char *gn = grant_name(g);
    struct fparam p[8] = { { "grant_type", CP(gn) } };
    size_t n = 1;
    if (g == OAUTH_AUTHORIZATION_CODE) {
        p[n++] = (struct fparam){ "code", SP(value) };
        p[n++] = (struct fparam){ "redirect_uri", CP(e->redirect_uri) };
        p[n++] = (struct fparam){ "code_verifier", SP(verifier) };
    } else if (g == OAUTH_REFRESH_TOKEN) {
        p[n++] = (struct fparam){ "refresh_token", SP(value) };
    }
    if (g != OAUTH_AUTHORIZATION_CODE)
        p[n++] = (struct fparam){ "scope", CP(e->scope) };
    if (post) {
        p[n++] = (struct fparam){ "client_id", CP(e->client_id) };
        p[n++] = (struct fparam){ "client_secret", SP(e->client_secret) };
    }
    return form_encode(p, n, len);
}

/* Does the endpoint's description quote a value that was sent? */
static int quotes(const char *text, const struct secret *s)
{
    size_t n = s ? secret_len(s) : 0;
    return n >= 4 && memmem(text, strlen(text), secret_data(s), n) != NULL;
}

static enum wh_status token_answer(const struct oauth_endpoint *e,
                                   enum oauth_grant g,
                                   const struct net_client_resp *resp,
                                   const struct secret *value,
                                   const struct secret *verifier,
                                   struct oauth_token *t, struct error *err)
{
    struct error perr = {0};
    int rc = oauth_token_parse(resp->status, resp->body, resp->len, t, &perr);
    if (rc == 0)
        return WH_OK;
    if (rc == 1) {
        if (quotes(t->description, value) ||
            quotes(t->description, verifier) ||
            quotes(t->description, e->client_secret))
            t->description[0] = '\0';
        error_set(err, "OAuth token endpoint %s refused the %s request "
                  "(HTTP %ld, %s%s%s)", e->token_url, grant_name(g),
                  resp->status, t->error, t->description[0] ? ": " : "",
                  t->description);
        return WH_FAIL;
    }
    enum wh_status st = resp->status == 200 ? WH_FAIL
                        : net_client_status_class(resp->status);
    error_set(err, "OAuth token endpoint %s: %s", e->token_url, perr.msg);
    return st;
}

enum wh_status oauth_token_request(const struct oauth_endpoint *e,
                                   enum oauth_grant g,
                                   const struct secret *value,
                                   const struct secret *verifier,
                                   struct oauth_token *t, struct error *err)
{
    memset(t, 0, sizeof(*t));
    if (e->token_url == NULL || e->client_id == NULL ||
        (g != OAUTH_CLIENT_CREDENTIALS && value == NULL) ||
        (g == OAUTH_AUTHORIZATION_CODE && e->redirect_uri == NULL))
        return error_set(err, "OAuth token request: missing token_url, "
                         "client_id, redirect_uri or grant value"), WH_FAIL;
    int basic = e->client_auth == OAUTH_AUTH_BASIC && e->client_secret;
    size_t blen = 0;
    struct secret *body = token_form(e, g, value, verifier, &blen);
    char *user = basic ? str_pct(e->client_id) : NULL;
    struct secret *pass = basic ? secret_pct(e->client_secret) : NULL;
    if (body == NULL || (basic && (user == NULL || pass == NULL))) {
        secret_free(body);
        free(user);
        secret_free(pass);
        return error_set(err, "out of memory"), WH_RETRY;
    }
    static const char *const hdrs[] = { "Accept: application/json",
        "Content-Type: application/x-www-form-urlencoded", NULL };
    struct form_reader fr = { secret_data(body), blen };
    struct net_client_req req = {
        .method = "POST", .url = e->token_url, .headers = hdrs,
        .user = user, .password = pass, .body_len = (int64_t)blen,
        .read = form_read, .read_ud = &fr,
    };
    struct net_client_opts o = e->opts;
    o.max_response = OAUTH_RESPONSE_MAX;
    if (o.timeout_ms == 0 || o.timeout_ms > TOKEN_TIMEOUT_MS)
        o.timeout_ms = TOKEN_TIMEOUT_MS;
    struct net_client_resp resp;
    enum wh_status st = net_client_request(&o, &req, &resp, err);
    secret_free(body);
    free(user);
    secret_free(pass);
    if (st == WH_OK)
        st = token_answer(e, g, &resp, value, verifier, t, err);
    else
        error_prefix(err, "OAuth token endpoint");
    if (resp.body)
        OPENSSL_cleanse(resp.body, resp.len);
    net_client_resp_free(&resp);
    return st;
}
