/*
 * api.c - the REST API's front door: the route table, path matching,
 * authentication (bearer token or session cookie), CSRF, the permission
 * check, JSON bodies and error replies. Handlers live in api_*.c.
 *
 * Order of checks for every request under /api/v1 (deny by default):
 *   1. match method + path against the table (404 / 405);
 *   2. unless the route is API_PUBLIC: credentials (401; a credential that
 *      was never valid counts as a failure for the defender, one that
 *      stopped working, e.g. a revoked token, does not), a session limited
 *      to "change your password / enrol MFA" may only use API_SELF routes
 *      (403 mfa_required / password_change_required);
 *   3. a state-changing request a browser could make with its own
 *      credentials (a login, or any request of a cookie session) whose
 *      Origin header is another origin: 403 cross_origin (login CSRF);
 *      no Origin (programs, curl) passes;
 *   4. a cookie session on POST/PUT/PATCH/DELETE: X-CSRF-Token (403);
 *   5. the route's permission against the caller's role (403); a
 *      connector action then also needs the permission its type's table
 *      names (api_connector_actions.c);
 *   6. a JSON body, when one is sent (400 / 413; the error names the line
 *      and column, never the bytes: jansson's own text quotes the input),
 *      then the handler.
 * GET /metrics (same table, permission metrics.read) follows wharf.conf's
 * metrics_access first (api_metrics.c).
 *
 * Each CivetWeb thread keeps its own store connection (thread-specific
 * data, closed when the thread ends): SQLite handles are per thread.
 *
 * Must never: put a credential in a log line, an error or a response other
 * than the one that creates it; put bytes of a request body in an error.
 */
#include "api/api.h"
#include "api/params.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "core/wharf.h"
#include "net/server.h"
#include "store/store.h"
#include "util/log.h"
#include "util/secret.h"
#include "web/console.h"

#define P(x) PERM_##x
static const struct api_route ROUTES[] = {
    { "POST", "/api/v1/auth/login", API_PUBLIC, api_login, "log in (password, then TOTP if enrolled)" },
    { "GET", "/api/v1/auth/methods", API_PUBLIC, api_auth_methods, "how one may sign in (password, OIDC), for the console's login page" },
    { "POST", "/api/v1/auth/logout", API_SELF, api_logout, "end this session" },
    { "GET", "/api/v1/auth/oidc/login", API_PUBLIC, api_oidc_login, "start an OIDC login (302 to the provider)" },
    { "GET", "/api/v1/auth/oidc/callback", API_PUBLIC, api_oidc_callback, "finish an OIDC login (opens a session)" },
    { "GET", "/api/v1/auth/me", API_SELF, api_me, "who am I" },
    { "POST", "/api/v1/auth/password", API_SELF, api_password, "change my password" },
    { "POST", "/api/v1/auth/mfa/enroll", API_SELF, api_mfa_enroll, "start TOTP enrolment" },
    { "POST", "/api/v1/auth/mfa/confirm", API_SELF, api_mfa_confirm, "confirm TOTP, get recovery codes" },
    { "GET", "/api/v1/auth/sessions", API_SELF, api_my_sessions, "my sessions" },
    { "DELETE", "/api/v1/auth/sessions/{handle}", API_SELF, api_my_session_revoke, "revoke one of my sessions" },
    { "GET", "/api/v1/sessions", P(SESSION_READ), api_sessions, "everyone's sessions" },
    { "DELETE", "/api/v1/sessions/{handle}", P(SESSION_WRITE), api_session_revoke, "revoke a session" },
    { "GET", "/api/v1/users", P(USER_READ), api_users, "list users" },
    { "POST", "/api/v1/users", P(USER_WRITE), api_user_create, "create a user" },
    { "GET", "/api/v1/users/{name}", P(USER_READ), api_user_get, "one user" },
    { "PUT", "/api/v1/users/{name}", P(USER_WRITE), api_user_update, "change role, disable, reset" },
    { "DELETE", "/api/v1/users/{name}", P(USER_WRITE), api_user_delete, "delete a user" },
    { "GET", "/api/v1/tokens", P(TOKEN_READ), api_tokens, "list API tokens" },
    { "POST", "/api/v1/tokens", P(TOKEN_WRITE), api_token_create, "create an API token" },
    { "DELETE", "/api/v1/tokens/{id}", P(TOKEN_WRITE), api_token_revoke, "revoke an API token" },
    { "GET", "/api/v1/connectors", P(FLOW_READ), api_connectors, "list connectors" },
    { "GET", "/api/v1/connectors/{name}", P(FLOW_READ), api_connector_get, "one connector" },
    { "GET", "/api/v1/connectors/{name}/actions/{verb}", P(FLOW_READ), api_connector_action, "run a read-only action of a connector (then the action's own permission)" },
    { "POST", "/api/v1/connectors/{name}/actions/{verb}", P(FLOW_READ), api_connector_action, "run an action of a connector (then the action's own permission)" },
    { "GET", "/api/v1/connector-types", P(FLOW_READ), api_connector_types, "every connector type: config keys and actions" },
    { "GET", "/api/v1/flows", P(FLOW_READ), api_flow_export, "export the flow document" },
    { "PUT", "/api/v1/flows", P(FLOW_WRITE), api_flow_import, "import (replace) the flow document" },
    { "GET", "/api/v1/dashboard", P(MESSAGE_READ), api_dashboard, "the console's dashboard: messages per hour, connectors, expiring certificates, failed messages, transfers" },
    { "GET", "/api/v1/transfers", P(MESSAGE_READ), api_transfers, "transfers in flight: bytes done of total, rate" },
    { "GET", "/api/v1/messages", P(MESSAGE_READ), api_messages, "list messages" },
    { "GET", "/api/v1/messages/{id}", P(MESSAGE_READ), api_message_get, "message with hops and events" },
    { "GET", "/api/v1/messages/{id}/payload", P(PAYLOAD_READ), api_message_payload, "download the payload" },
    { "GET", "/api/v1/messages/{id}/receipts/{n}", P(MESSAGE_READ), api_message_receipt, "one AS2 receipt (MDN) as sent or received" },
    { "POST", "/api/v1/messages/{id}/resend", P(MESSAGE_RESEND), api_message_resend, "resend" },
    { "POST", "/api/v1/messages/{id}/erase", P(MESSAGE_ERASE), api_message_erase, "erase the payload" },
    { "GET", "/api/v1/settings", P(SETTINGS_READ), api_settings, "list settings" },
    { "PUT", "/api/v1/settings/{key}", P(SETTINGS_WRITE), api_setting_put, "change a setting" },
    { "GET", "/api/v1/audit", P(AUDIT_READ), api_audit_list, "audit entries" },
    { "GET", "/api/v1/audit/verify", P(AUDIT_READ), api_audit_verify, "verify the audit chain" },
    { "GET", "/api/v1/partners", P(FLOW_READ), api_partners, "the AS2 profile and partners" },
    { "POST", "/api/v1/partners/{name}/certificates", P(KEY_WRITE), api_partner_cert_add, "add a partner certificate (rollover)" },
    { "GET", "/api/v1/certificates", P(FLOW_READ), api_certificates, "certificates with their expiry" },
    { "GET", "/api/v1/certificates/{id}", P(FLOW_READ), api_certificate_get, "one certificate as PEM" },
    { "GET", "/api/v1/alerts", P(ALERT_READ), api_alerts, "security alerts (R19)" },
    { "GET", "/api/v1/alerts/{id}", P(ALERT_READ), api_alert_get, "one alert with its timeline" },
    { "POST", "/api/v1/alerts/{id}/ack", P(ALERT_ACK), api_alert_ack, "acknowledge an open alert" },
    { "POST", "/api/v1/alerts/{id}/escalate", P(INCIDENT_WRITE), api_alert_escalate, "escalate an alert to an investigation" },
    { "GET", "/api/v1/incidents", P(ALERT_READ), api_incidents, "investigations, incidents and breaches" },
    { "GET", "/api/v1/incidents/{id}", P(ALERT_READ), api_incident_get, "one incident with its alerts and timeline" },
    { "PUT", "/api/v1/incidents/{id}", P(INCIDENT_WRITE), api_incident_update, "change an incident (tier, owner, severity, partners, messages, who to tell)" },
    { "POST", "/api/v1/incidents/{id}/close", P(INCIDENT_WRITE), api_incident_close, "close an incident" },
    { "GET", "/oauth/callback", API_PUBLIC, api_oauth_callback, "finish an OAuth authorization of a connector (the redirect URI)" },
    { "GET", "/metrics", P(METRICS_READ), api_metrics, "Prometheus metrics (wharf.conf metrics_access)" },
};
#undef P
#define NROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))

const struct api_route *api_routes(size_t *n)
{
    *n = NROUTES;
    return ROUTES;
}

/* ---- replies ------------------------------------------------------------------- */

int api_ok(struct api_ctx *c, int status, json_t *body)
{
    int rc = net_reply_json(c->req, status, body ? body : json_object());
    json_decref(body);
    return rc;
}

int api_fail(struct api_ctx *c, int status, const char *code,
             const char *fmt, ...)
{
    char msg[ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return net_reply_error(c->req, status, code, "%s", msg);
}

/* Retry-After: seconds, rounded up, at least 1. */
static void retry_after(struct api_ctx *c, int64_t ms)
{
    char v[24];
    snprintf(v, sizeof(v), "%lld", (long long)(ms > 0 ? (ms + 999) / 1000
                                                       : 1));
    net_reply_header(c->req, "Retry-After", v);
}

int api_retry_fail(struct api_ctx *c, int rc, int64_t retry_ms,
                   const struct error *err)
{
    if (rc == AUTH_BUSY || rc == AUTH_THROTTLED)
        retry_after(c, retry_ms);
    return api_auth_fail(c, rc, err);
}

int api_auth_fail(struct api_ctx *c, int rc, const struct error *err)
{
    const char *m = err && err->msg[0] ? err->msg : "refused";
    switch (rc) {
    case AUTH_DENIED:
    case AUTH_STALE: return api_fail(c, 401, "unauthorized", "%s", m);
    case AUTH_BUSY: return api_fail(c, 503, "busy", "%s", m);
    case AUTH_THROTTLED: return api_fail(c, 429, "throttled", "%s", m);
    case AUTH_NOT_FOUND: return api_fail(c, 404, "not_found", "%s", m);
    case AUTH_INVALID: return api_fail(c, 400, "invalid", "%s", m);
    case AUTH_CONFLICT: return api_fail(c, 409, "conflict", "%s", m);
    case AUTH_MFA_NEEDED: return api_fail(c, 401, "mfa_needed", "%s", m);
    default: return api_fail(c, 500, "internal", "%s", m);
    }
}

void api_audit(struct api_ctx *c, const char *action, const char *target,
               const char *detail)
{
    struct error err = {0};
    struct audit_event e = { c->actor.name, c->actor.address, action, target,
                             detail };
    if (audit_append(c->st, c->w->vault, &e, &err) < 0)
        log_error("audit %s by %s failed: %s", action, c->actor.name, err.msg);
}

/* ---- request helpers ---------------------------------------------------------- */

const char *api_query(struct api_ctx *c, const char *name, char *buf,
                      size_t n)
{
    const char *q = net_req_query(c->req);
    size_t nl = strlen(name);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=')
            return api_url_decode(q + nl + 1, len - nl - 1, buf, n) == 0 ? buf
                                                                      : NULL;
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

int api_query_has(struct api_ctx *c, const char *name)
{
    const char *q = net_req_query(c->req);
    size_t nl = strlen(name);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        if (strncmp(q, name, nl) == 0 && (q[nl] == '=' || q[nl] == '&' ||
                                          q[nl] == '\0'))
            return 1;
        q = amp ? amp + 1 : NULL;
    }
    return 0;
}

const char *api_body_str(struct api_ctx *c, const char *key)
{
    return c->body ? json_string_value(json_object_get(c->body, key)) : NULL;
}

struct secret *api_session_cookie(struct api_ctx *c)
{
    char cookie[256];
    const char *ch = net_req_header(c->req, "Cookie");
    if (ch == NULL || api_cookie_get(ch, "wharf_session", cookie, sizeof(cookie)) < 0)
        return NULL;
    struct secret *id = secret_from(cookie, strlen(cookie));
    OPENSSL_cleanse(cookie, sizeof(cookie));
    return id;
}

/* ---- matching --------------------------------------------------------------------- */

/* Does path match pattern? Captures {x} segments into param. */
static int path_match(const char *pattern, const char *path,
                      const char *param[API_MAX_PARAMS], char *store,
                      size_t storesz)
{
    int np = 0;
    size_t used = 0;
    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *pe = strchr(pattern, '}');
            const char *se = strchr(path, '/');
            size_t len = se ? (size_t)(se - path) : strlen(path);
            if (!pe || len == 0 || np == API_MAX_PARAMS || used + len + 1 > storesz)
                return 0;
            memcpy(store + used, path, len);
            store[used + len] = '\0';
            param[np++] = store + used;
            used += len + 1;
            pattern = pe + 1;
            path += len;
            continue;
        }
        if (*pattern++ != *path++)
            return 0;
    }
    return *pattern == '\0' && *path == '\0';
}

/* The matching route, or NULL; *path_known tells 404 from 405. */
static const struct api_route *route_find(const char *method, const char *path,
                                          const char *param[API_MAX_PARAMS],
                                          char *store, size_t storesz,
                                          int *path_known)
{
    *path_known = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!path_match(ROUTES[i].pattern, path, param, store, storesz))
            continue;
        *path_known = 1;
        if (strcmp(ROUTES[i].method, method) == 0)
            return &ROUTES[i];
    }
    return NULL;
}

/* ---- authentication ---------------------------------------------------------------- */

static int is_write(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

/* A verified client certificate (mutual TLS on the admin listener) whose
 * subject the setting client_cert_roles maps to a role, e.g.
 * {"/CN=erp-bot/O=Example": "operator"}. Programs only: no CSRF (no
 * cookie), no MFA (the private key is the second factor). */
static int client_cert_principal(struct api_ctx *c, const char *subject,
                                 struct error *err)
{
    char *map = NULL;
    enum role role;
    if (auth_form_allowed(c->st, "client_cert", err) != 1)
        return error_set(err, "client certificates are not allowed here"),
               AUTH_DENIED;
    if (store_setting_get(c->st, "client_cert_roles", &map, err) < 0)
        return AUTH_ERROR;
    json_error_t je;
    json_t *m = map ? json_loads(map, 0, &je) : NULL;
    const char *rn = json_string_value(json_object_get(m, subject));
    int ok = rn && rbac_role_parse(rn, &role) == 0;
    json_decref(m);
    free(map);
    if (!ok)
        return error_set(err, "client certificate is not mapped to a role"),
               AUTH_DENIED;
    memset(&c->who, 0, sizeof(c->who));
    c->who.kind = AUTH_KIND_TOKEN;
    c->who.role = role;
    snprintf(c->who.name, sizeof(c->who.name), "%s", subject);
    snprintf(c->who.actor, sizeof(c->who.actor), "cert:%s", subject);
    return AUTH_OK;
}

/* Bearer token or session cookie -> c->who. AUTH_OK, AUTH_DENIED (bad
 * credential), AUTH_NOT_FOUND (none given) or AUTH_ERROR. */
static int authenticate(struct api_ctx *c, struct error *err)
{
    const char *authz = net_req_header(c->req, "Authorization");
    char cookie[256];
    int rc;
    if (authz && strncasecmp(authz, "Bearer ", 7) == 0) {
        struct secret *t = secret_from(authz + 7, strlen(authz + 7));
        rc = t ? auth_token_validate(&c->auth, t, &c->who, err) : AUTH_ERROR;
        secret_free(t);
        return rc;
    }
    if (authz)
        return error_set(err, "unsupported Authorization scheme"), AUTH_DENIED;
    const char *ch = net_req_header(c->req, "Cookie");
    if (ch == NULL || api_cookie_get(ch, "wharf_session", cookie, sizeof(cookie)) < 0) {
        const char *subject = net_req_client_subject(c->req);
        return subject ? client_cert_principal(c, subject, err)
                       : (error_set(err, "no credentials"), AUTH_NOT_FOUND);
    }
    struct secret *id = secret_from(cookie, strlen(cookie));
    OPENSSL_cleanse(cookie, sizeof(cookie));
    rc = id ? auth_session_validate(&c->auth, id, &c->who, err) : AUTH_ERROR;
    secret_free(id);
    return rc;
}

/* Does origin (an Origin header) name this listener as the request's Host
 * header does? "https://" + Host, where a default port may be left out. */
static bool same_origin(const char *origin, const char *host)
{
    if (host == NULL || strncasecmp(origin, "https://", 8) != 0)
        return false;
    const char *o = origin + 8;
    size_t ol = strlen(o), hl = strlen(host);
    if (ol == hl)
        return strncasecmp(o, host, hl) == 0;
    return hl == ol + 4 && strcmp(host + ol, ":443") == 0 &&
           strncasecmp(o, host, ol) == 0;
}

/* Step 3 of the top comment: 0 to go on, or the 403 was sent (1). */
static int origin_check(struct api_ctx *c)
{
    const char *origin = net_req_header(c->req, "Origin");
    if (origin == NULL || same_origin(origin, net_req_header(c->req, "Host")))
        return 0;
    api_fail(c, 403, "cross_origin", "a request from another origin (a page "
             "of another site) may not log in or act with this session");
    return 1;
}

/* Steps 2-5 of the top comment. 0 to go on, or the reply was sent (1). */
static int gatekeep(struct api_ctx *c, const struct api_route *rt)
{
    struct error err = {0};
    bool write = is_write(net_req_method(c->req));
    if (rt->perm == API_PUBLIC)
        return write ? origin_check(c) : 0;
    int rc = authenticate(c, &err);
    if (rc == AUTH_DENIED)
        net_req_auth_failure(c->req);
    if (rc == AUTH_STALE)
        rc = AUTH_DENIED;           /* 401 alike, but not counted */
    if (rc == AUTH_DENIED || rc == AUTH_NOT_FOUND) {
        api_fail(c, 401, "unauthorized", "%s", rc == AUTH_NOT_FOUND
                 ? "log in or send an API token" : "credentials refused");
        return 1;
    }
    if (rc != AUTH_OK) {
        api_fail(c, 500, "internal", "%s", err.msg);
        return 1;
    }
    c->actor.name = c->who.actor;
    if (rt->perm != API_SELF && auth_principal_limited(&c->who)) {
        api_fail(c, 403, c->who.must_change ? "password_change_required"
                 : "mfa_required", "%s", c->who.must_change
                 ? "change your password first" : "enrol a second factor first");
        return 1;
    }
    if (c->who.kind == AUTH_KIND_SESSION && write && origin_check(c))
        return 1;
    if (c->who.kind == AUTH_KIND_SESSION && write) {
        const char *tok = net_req_header(c->req, "X-CSRF-Token");
        struct secret *t = tok ? secret_from(tok, strlen(tok)) : NULL;
        bool ok = t && auth_csrf_check(&c->who, t);
        secret_free(t);
        if (!ok) {
            api_fail(c, 403, "csrf", "missing or wrong X-CSRF-Token");
            return 1;
        }
    }
    if (rt->perm != API_SELF && !rbac_allows(c->who.role, (enum perm)rt->perm)) {
        api_fail(c, 403, "forbidden", "role %s may not %s",
                 rbac_role_name(c->who.role), rbac_perm_name((enum perm)rt->perm));
        return 1;
    }
    return 0;
}

/* What is wrong with a JSON text, in our words: jansson's own text quotes
 * the input near the error, and the input may be a password. */
static const char *json_problem(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_premature_end_of_input: return "it ends too early";
    case json_error_end_of_input_expected: return "data after the value";
    case json_error_invalid_utf8: return "invalid UTF-8";
    case json_error_null_character:
    case json_error_null_byte_in_key: return "a NUL character";
    case json_error_duplicate_key: return "a key appears twice";
    case json_error_numeric_overflow: return "a number out of range";
    case json_error_stack_overflow: return "nested too deeply";
    default: return "invalid syntax";
    }
}

/* Parse a JSON body if there is one. 0, or the reply was sent (1). */
static int read_body(struct api_ctx *c)
{
    struct error err = {0};
    char *text = NULL;
    size_t len = 0;
    int too_large = 0;
    int64_t declared = net_req_body_length(c->req);
    if (declared == 0 || (declared < 0 && !is_write(net_req_method(c->req))))
        return 0;
    if (net_body_read_all(c->req, &text, &len, &too_large, &err) < 0) {
        if (too_large)
            api_fail(c, 413, "too_large", "request body too large");
        else
            api_fail(c, 400, "bad_request", "%s", err.msg);
        return 1;
    }
    if (len > 0) {
        json_error_t je;
        c->body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (c->body == NULL) {
            free(text);
            api_fail(c, 400, "bad_json", "body is not valid JSON (line %d, "
                     "column %d: %s)", je.line, je.column, json_problem(&je));
            return 1;
        }
    }
    free(text);
    return 0;
}

static int api_dispatch(struct net_request *req, void *user_data)
{
    struct wharf *w = user_data;
    struct error err = {0};
    struct api_ctx c;
    char pstore[512];
    int known;
    memset(&c, 0, sizeof(c));
    c.who.role = ROLE_COUNT;        /* nothing allowed until authenticated */
    c.req = req;
    c.w = w;
    c.actor.name = "anonymous";
    c.actor.address = net_req_address(req);
    console_headers(req);       /* the console reads these answers */
    const struct api_route *rt = route_find(net_req_method(req),
        net_req_path(req), c.param, pstore, sizeof(pstore), &known);
    if (rt == NULL)
        return known ? api_fail(&c, 405, "method_not_allowed", "method not "
                                "allowed here")
                     : api_fail(&c, 404, "not_found", "no such route");
    if ((c.st = wharf_store(w, &err)) == NULL)
        return api_fail(&c, 503, "unavailable", "%s", err.msg);
    auth_init(&c.auth, c.st, w->vault);
    c.auth.throttle_after = w->conf.login_throttle_after;
    c.auth.throttle_window_ms = w->conf.login_throttle_window_seconds * 1000LL;
    c.auth.throttle_lock_ms = w->conf.login_throttle_seconds * 1000LL;
    if (auth_load_settings(&c.auth, &err) != AUTH_OK)
        log_warn("session settings: %s (defaults used)", err.msg);
    int open = rt->handler == api_metrics ? api_metrics_gate(&c) : 0;
    if (open == 1 || (open == 0 && gatekeep(&c, rt)) || read_body(&c))
        return 0;
    int rc = rt->handler(&c);
    json_decref(c.body);
    return rc;
}

int api_register(struct net_server *s, struct wharf *w, struct error *err)
{
    if (net_route(net_listener(s, NET_ADMIN), "*", "/api/v1", api_dispatch,
                  w) < 0)
        return error_set(err, "cannot register /api/v1");
    /* the redirect URI of connectors' OAuth authorizations: a stable path
     * outside the versioned API (it is registered at providers) */
    if (net_route(net_listener(s, NET_ADMIN), "*", "/oauth/callback",
                  api_dispatch, w) < 0)
        return error_set(err, "cannot register /oauth/callback");
    if (net_route(net_listener(s, NET_ADMIN), "*", "/metrics", api_dispatch,
                  w) < 0)
        return error_set(err, "cannot register /metrics");
    api_metrics_init(s);
    auth_password_limit(w->conf.login_concurrency, w->conf.login_wait_ms);
    return 0;
}
