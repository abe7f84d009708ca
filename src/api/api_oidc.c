/*
 * api_oidc.c - OIDC single sign-on (R17) on Wharf's own admin listener: no
 * relay, no vendor service in between.
 *
 *   GET /api/v1/auth/oidc/login     302 to the provider (code flow, PKCE
 *                                   S256, state and nonce kept here)
 *   GET /api/v1/auth/oidc/callback  the provider sends the browser back;
 *                                   the code is exchanged, the ID token
 *                                   verified (auth/oidc.c), the account
 *                                   found or created (auth_oidc_user) and a
 *                                   session opened like a password login
 *
 * Configuration lives in settings written by `wharf oidc configure`
 * (oidc_issuer, oidc_client_id, oidc_client_secret: vault-sealed,
 * oidc_redirect_uri, oidc_role_claim, oidc_role_map, oidc_default_role,
 * oidc_ca_file); the client is rebuilt when they change. Its requests to
 * the provider go through wharf.conf's proxy (R2: its no_proxy hosts
 * direct), as notifications do. Pending logins are
 * kept in memory (one node), at most OIDC_PENDING_MAX, expiring after the
 * configured login age. The provider is trusted to have done its own
 * second factor: an OIDC session counts as MFA-complete.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "auth/oidc.h"
#include "core/wharf.h"
#include "net/client.h"
#include "net/server.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"
#include "util/secret.h"
#include "vault/vault.h"

#define OIDC_PENDING_MAX 64

static const char *const KEYS[] = { "oidc_issuer", "oidc_client_id",
    "oidc_client_secret", "oidc_redirect_uri", "oidc_role_claim",
    "oidc_role_map", "oidc_default_role", "oidc_ca_file" };
#define NKEYS (sizeof(KEYS) / sizeof(KEYS[0]))

#define OIDC_RETIRED_MAX 16

static struct {
    pthread_mutex_t mu;
    struct oidc *client;
    struct oidc *retired[OIDC_RETIRED_MAX];  /* replaced clients, possibly
                                                still in use: freed at
                                                api_shutdown */
    size_t nretired;
    char *fingerprint;          /* the settings the client was built from */
    struct oidc_pending pending[OIDC_PENDING_MAX];
} G = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- configuration --------------------------------------------------------------- */

struct oidc_settings {
    char *v[NKEYS];
    struct oidc_role_map map[16];
    size_t nmap;
    json_t *map_json;
    struct secret *secret;
};

static void settings_clear(struct oidc_settings *s)
{
    for (size_t i = 0; i < NKEYS; i++)
        free(s->v[i]);
    json_decref(s->map_json);
    secret_free(s->secret);
    memset(s, 0, sizeof(*s));
}

static int hex_decode(const char *hex, unsigned char **out, size_t *n)
{
    size_t len = strlen(hex);
    if (len % 2 || (*out = malloc(len / 2 + 1)) == NULL)
        return -1;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1)
            return free(*out), -1;
        (*out)[i] = (unsigned char)b;
    }
    *n = len / 2;
    return 0;
}

static int settings_read(struct api_ctx *c, struct oidc_settings *s,
                         struct error *err)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < NKEYS; i++)
        if (store_setting_get(c->st, KEYS[i], &s->v[i], err) < 0)
            return -1;
    if (!s->v[0] || !s->v[1] || !s->v[3])
        return error_set(err, "OIDC is not configured (wharf oidc configure)");
    if (s->v[5]) {
        json_error_t je;
        s->map_json = json_loads(s->v[5], 0, &je);
        const char *k;
        json_t *val;
        json_object_foreach(s->map_json, k, val)
            if (json_is_string(val) && s->nmap < 16)
                s->map[s->nmap++] = (struct oidc_role_map){ k,
                                                            json_string_value(val) };
    }
    if (s->v[2]) {
        unsigned char *blob = NULL;
        size_t n = 0;
        if (hex_decode(s->v[2], &blob, &n) < 0)
            return error_set(err, "oidc_client_secret is malformed");
        s->secret = vault_unseal(c->w->vault, "oidc:client_secret", blob, n, err);
        free(blob);
        if (s->secret == NULL)
            return -1;
    }
    return 0;
}

static char *fingerprint(const struct oidc_settings *s)
{
    size_t len = 1;
    for (size_t i = 0; i < NKEYS; i++)
        len += (s->v[i] ? strlen(s->v[i]) : 0) + 1;
    char *f = calloc(1, len);
    for (size_t i = 0; f && i < NKEYS; i++) {
        strncat(f, s->v[i] ? s->v[i] : "", len - strlen(f) - 1);
        strncat(f, "\n", len - strlen(f) - 1);
    }
    return f;
}

/* Under G.mu: make G.client match the stored settings. */
static int client_ready(struct api_ctx *c, struct error *err)
{
    struct oidc_settings s;
    if (settings_read(c, &s, err) < 0) {
        settings_clear(&s);
        return -1;
    }
    char *fp = fingerprint(&s);
    if (fp && G.client && G.fingerprint && !strcmp(fp, G.fingerprint)) {
        free(fp);
        settings_clear(&s);
        return 0;
    }
    struct oidc_config cfg;
    oidc_config_init(&cfg);
    cfg.issuer = s.v[0];
    cfg.client_id = s.v[1];
    cfg.client_secret = s.secret;
    cfg.redirect_uri = s.v[3];
    cfg.role_claim = s.v[4];
    cfg.role_map = s.map;
    cfg.role_map_len = s.nmap;
    cfg.default_role = s.v[6];
    cfg.ca_file = s.v[7];
    struct net_proxy px;            /* wharf.conf's: a restart key */
    struct secret *pauth = NULL;
    const struct net_proxy *proxy = wharf_proxy(c->w, &px, &pauth, err);
    if (proxy != NULL) {
        cfg.proxy = proxy->url;
        cfg.no_proxy = proxy->no_proxy;
        cfg.proxy_auth = proxy->auth;
    }
    struct oidc *o = proxy || !c->w->conf.proxy[0] ? oidc_new(&cfg, err)
                                                   : NULL;
    secret_free(pauth);
    settings_clear(&s);
    if (o == NULL) {
        free(fp);
        return -1;
    }
    if (G.client && G.nretired < OIDC_RETIRED_MAX)
        G.retired[G.nretired++] = G.client;
    else
        oidc_free(G.client);    /* only after 16 reconfigurations in one run */
    free(G.fingerprint);
    G.client = o;
    G.fingerprint = fp;
    return 0;
}

/* ---- pending logins ----------------------------------------------------------------- */

static struct oidc_pending *pending_slot(int64_t now)
{
    struct oidc_pending *oldest = &G.pending[0];
    for (size_t i = 0; i < OIDC_PENDING_MAX; i++) {
        struct oidc_pending *p = &G.pending[i];
        if (p->state[0] == '\0' || now - p->created > 600) {
            oidc_pending_clear(p);
            return p;
        }
        if (p->created < oldest->created)
            oldest = p;
    }
    oidc_pending_clear(oldest);
    return oldest;
}

static struct oidc_pending *pending_find(const char *state)
{
    for (size_t i = 0; i < OIDC_PENDING_MAX; i++)
        if (G.pending[i].state[0] && !strcmp(G.pending[i].state, state))
            return &G.pending[i];
    return NULL;
}

/* ---- routes --------------------------------------------------------------------------- */

static int oidc_allowed(struct api_ctx *c)
{
    struct error err = {0};
    if (auth_form_allowed(c->st, "oidc", &err) == 1)
        return 1;
    api_fail(c, 403, "forbidden", "OIDC login is turned off here");
    return 0;
}

int api_oidc_login(struct api_ctx *c)
{
    struct error err = {0};
    char *url = NULL;
    struct oidc_pending p = {0};
    int64_t now = time_now_ms() / 1000;
    if (!oidc_allowed(c))
        return 0;
    pthread_mutex_lock(&G.mu);
    struct oidc *o = client_ready(c, &err) == 0 ? G.client : NULL;
    pthread_mutex_unlock(&G.mu);
    /* Network I/O (discovery) outside the lock: the library is thread-safe
     * and a replaced client is retired, not freed. */
    if (o == NULL || oidc_login_start(o, now, &p, &url, &err) != OIDC_OK)
        return api_fail(c, 503, "oidc_unavailable", "%s", err.msg);
    pthread_mutex_lock(&G.mu);
    *pending_slot(now) = p;     /* the slot takes ownership of p.verifier */
    pthread_mutex_unlock(&G.mu);
    net_reply_header(c->req, "Location", url);
    free(url);
    return net_reply(c->req, 302, "text/plain", "", 0);
}

/* Open a session for the verified identity and answer like a login. */
static int oidc_session(struct api_ctx *c, const struct oidc_identity *id)
{
    struct error err = {0};
    struct store_user u;
    struct auth_session_new s = {0};
    int rc = auth_oidc_user(&c->auth, id, &u, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    rc = auth_session_create(&c->auth, u.id, net_req_address(c->req), 1, &s,
                             &err);
    if (rc != AUTH_OK) {
        store_user_clear(&u);
        return api_auth_fail(c, rc, &err);
    }
    char cookie[256];
    snprintf(cookie, sizeof(cookie), "wharf_session=%.*s; Path=/; HttpOnly; "
             "Secure; SameSite=Strict; Max-Age=%lld", (int)secret_len(s.id),
             (const char *)secret_data(s.id),
             (long long)((s.expires_at - auth_now(&c->auth)) / 1000));
    net_reply_header(c->req, "Set-Cookie", cookie);
    OPENSSL_cleanse(cookie, sizeof(cookie));
    json_t *body = json_pack("{s:s, s:s, s:s, s:s%}", "name", u.name, "role",
                             u.role, "kind", "session", "csrf_token",
                             (const char *)secret_data(s.csrf),
                             secret_len(s.csrf));
    store_user_clear(&u);
    auth_session_new_clear(&s);
    return api_ok(c, 200, body);
}

int api_oidc_callback(struct api_ctx *c)
{
    struct error err = {0};
    char state[128], code[2048], perr[128];
    struct oidc_identity id = {0};
    if (!oidc_allowed(c))
        return 0;
    if (api_query(c, "error", perr, sizeof(perr))) {
        for (char *q = perr; *q; q++)       /* the provider's word, tamed */
            if (!isalnum((unsigned char)*q) && *q != '_' && *q != '-')
                *q = '_';
        return api_fail(c, 401, "oidc_refused", "the identity provider "
                        "refused the login (%.40s)", perr);
    }
    if (!api_query(c, "state", state, sizeof(state)) ||
        !api_query(c, "code", code, sizeof(code)))
        return api_fail(c, 400, "invalid", "state and code are required");
    struct oidc_pending p = {0};
    pthread_mutex_lock(&G.mu);
    struct oidc_pending *slot = pending_find(state);
    struct oidc *o = slot && client_ready(c, &err) == 0 ? G.client : NULL;
    if (slot) {
        p = *slot;                  /* one use: the slot gives it up */
        memset(slot, 0, sizeof(*slot));
    }
    pthread_mutex_unlock(&G.mu);
    int known = slot != NULL;
    int rc = o ? oidc_callback(o, &p, state, code, time_now_ms() / 1000, &id,
                               &err) : OIDC_DENIED;
    oidc_pending_clear(&p);
    OPENSSL_cleanse(code, sizeof(code));
    if (rc != OIDC_OK) {
        net_req_auth_failure(c->req);
        oidc_identity_clear(&id);
        api_audit(c, "login.failure", "oidc", known ? err.msg : "unknown state");
        return api_fail(c, 401, "oidc_refused", "%s", known ? err.msg
                        : "OIDC login refused: unknown or expired state");
    }
    char target[300];
    snprintf(target, sizeof(target), "oidc:%s", id.subject);
    c->actor.name = target;
    api_audit(c, "login.success", id.username ? id.username : id.subject, "oidc");
    rc = oidc_session(c, &id);
    oidc_identity_clear(&id);
    return rc;
}

void api_shutdown(void)
{
    pthread_mutex_lock(&G.mu);
    for (size_t i = 0; i < OIDC_PENDING_MAX; i++)
        oidc_pending_clear(&G.pending[i]);
    for (size_t i = 0; i < G.nretired; i++)
        oidc_free(G.retired[i]);
    G.nretired = 0;
    oidc_free(G.client);
    G.client = NULL;
    free(G.fingerprint);
    G.fingerprint = NULL;
    pthread_mutex_unlock(&G.mu);
}
