/*
 * api.h - the REST API under /api/v1 (M8), on the admin listener.
 *
 * One route table (api_routes) names every route, its method, its path
 * pattern and the permission it needs; the authorization matrix test and
 * docs/openapi.yaml are checked against this table, so a route cannot be
 * added without both. Deny by default: a route whose permission is not
 * granted to the caller's role gets 403 before its handler runs; a request
 * without valid credentials gets 401.
 *
 * Credentials: `Authorization: Bearer wharf_...` (API tokens, acting as
 * their owner) or the `wharf_session` cookie of a console login. Cookie
 * sessions must send the session's CSRF token in `X-CSRF-Token` on every
 * state-changing request (403 otherwise); a login or a cookie session's
 * state-changing request from another Origin is refused (403). Credentials
 * that were never valid are reported to the defender; revoked or expired
 * ones are not.
 *
 * JSON in and out; errors are {"error":{"code":"...","message":"..."}}.
 * The CLI verbs call the same subsystem functions as these handlers.
 */
#ifndef WHARF_API_H
#define WHARF_API_H

#include <jansson.h>
#include <stddef.h>

#include "auth/auth.h"
#include "util/error.h"

struct wharf;
struct store;
struct net_server;
struct net_request;

/* What a route needs: a permission of auth.h, or one of these. */
#define API_PUBLIC (-1)     /* no credentials (login) */
#define API_SELF (-2)       /* any valid caller, acting on themself */

#define API_MAX_PARAMS 2

/* Everything a handler gets. */
struct api_ctx {
    struct net_request *req;
    struct wharf *w;
    struct store *st;               /* this thread's connection */
    struct auth auth;
    struct auth_principal who;      /* valid unless the route is API_PUBLIC */
    struct auth_actor actor;        /* for audit_append / auth_* */
    const char *param[API_MAX_PARAMS];  /* {name} segments of the path */
    json_t *body;                   /* parsed JSON body, or NULL */
};

struct api_route {
    const char *method;             /* GET POST PUT DELETE */
    const char *pattern;            /* "/api/v1/messages/{id}/resend" */
    int perm;                       /* enum perm, API_PUBLIC or API_SELF */
    int (*handler)(struct api_ctx *c);
    const char *summary;
};

/* The route table (static, owned by the API). */
const struct api_route *api_routes(size_t *n);

/* Register /api/v1 and /oauth/callback on the admin listener of s. w
 * must outlive s. */
int api_register(struct net_server *s, struct wharf *w, struct error *err);

/* Free what the API keeps between requests (OIDC clients and pending
 * logins). Call after the listeners stopped. */
void api_shutdown(void);

/* ---- helpers for handlers (api.c) ----------------------------------------- */

int api_ok(struct api_ctx *c, int status, json_t *body);   /* steals body */
int api_fail(struct api_ctx *c, int status, const char *code,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Map an AUTH_* result to a response (AUTH_OK is not an error):
 * DENIED/STALE 401, NOT_FOUND 404, INVALID 400, CONFLICT 409, MFA_NEEDED
 * 401, BUSY 503, THROTTLED 429, else 500. */
int api_auth_fail(struct api_ctx *c, int rc, const struct error *err);
/* The same, with Retry-After (seconds, rounded up) for BUSY and THROTTLED. */
int api_retry_fail(struct api_ctx *c, int rc, int64_t retry_ms,
                   const struct error *err);
/* A query parameter, URL-decoded into buf (NULL when absent). */
/* 1 when the query names parameter name at all (api_query returns NULL
 * both for absent and for undecodable or too long values). */
int api_query_has(struct api_ctx *c, const char *name);
const char *api_query(struct api_ctx *c, const char *name, char *buf,
                      size_t n);
/* The wharf_session cookie of the request, or NULL. Caller frees. */
struct secret *api_session_cookie(struct api_ctx *c);
/* A string member of the JSON body, or NULL. */
const char *api_body_str(struct api_ctx *c, const char *key);
/* Append to the audit trail as the caller; failures are logged. */
void api_audit(struct api_ctx *c, const char *action, const char *target,
               const char *detail);

/* The handlers, by resource (api_*.c). */
int api_login(struct api_ctx *c);
int api_auth_methods(struct api_ctx *c);
int api_logout(struct api_ctx *c);
int api_oidc_login(struct api_ctx *c);
int api_oidc_callback(struct api_ctx *c);
int api_me(struct api_ctx *c);
int api_password(struct api_ctx *c);
int api_mfa_enroll(struct api_ctx *c);
int api_mfa_confirm(struct api_ctx *c);
int api_my_sessions(struct api_ctx *c);
int api_my_session_revoke(struct api_ctx *c);
int api_sessions(struct api_ctx *c);
int api_session_revoke(struct api_ctx *c);
int api_users(struct api_ctx *c);
int api_user_create(struct api_ctx *c);
int api_user_get(struct api_ctx *c);
int api_user_update(struct api_ctx *c);
int api_user_delete(struct api_ctx *c);
int api_tokens(struct api_ctx *c);
int api_token_create(struct api_ctx *c);
int api_token_revoke(struct api_ctx *c);
int api_connectors(struct api_ctx *c);
int api_connector_get(struct api_ctx *c);
int api_connector_action(struct api_ctx *c);
int api_connector_types(struct api_ctx *c);
int api_oauth_callback(struct api_ctx *c);
int api_flow_export(struct api_ctx *c);
int api_flow_import(struct api_ctx *c);
int api_messages(struct api_ctx *c);
/* GET /api/v1/messages without offset: filters and keyset paging
 * (api_console.c). */
int api_message_search(struct api_ctx *c);
int api_dashboard(struct api_ctx *c);
int api_transfers(struct api_ctx *c);
int api_message_get(struct api_ctx *c);
int api_message_payload(struct api_ctx *c);
int api_message_receipt(struct api_ctx *c);
int api_message_resend(struct api_ctx *c);
int api_message_erase(struct api_ctx *c);
int api_settings(struct api_ctx *c);
int api_setting_put(struct api_ctx *c);
int api_audit_list(struct api_ctx *c);
int api_audit_verify(struct api_ctx *c);
int api_partners(struct api_ctx *c);
int api_partner_cert_add(struct api_ctx *c);
int api_certificates(struct api_ctx *c);
int api_certificate_get(struct api_ctx *c);
int api_alerts(struct api_ctx *c);
int api_alert_get(struct api_ctx *c);
int api_alert_ack(struct api_ctx *c);
int api_alert_escalate(struct api_ctx *c);
int api_incidents(struct api_ctx *c);
int api_incident_get(struct api_ctx *c);
int api_incident_update(struct api_ctx *c);
int api_incident_close(struct api_ctx *c);

/* The caller's permissions and idle timeout, added to GET /auth/me's
 * answer for the console (api_console.c). */
void api_me_extra(struct api_ctx *c, json_t *me);

/* GET /metrics (api_metrics.c). api_metrics_init: the server whose
 * defender is counted (at api_register). api_metrics_gate applies
 * wharf.conf's metrics_access before the usual checks: 0 go on with them
 * (token), 2 serve without credentials (loopback, from a loopback
 * address), 1 the refusal was sent (off: 404; loopback from elsewhere:
 * 403). */
int api_metrics(struct api_ctx *c);
int api_metrics_gate(struct api_ctx *c);
void api_metrics_init(struct net_server *s);

#endif
