/*
 * api_oauth.c - OAuth 2.0 authorization of connectors (R8) on Wharf's own
 * admin listener: no relay, no vendor service in between.
 *
 *   POST /api/v1/connectors/{name}/actions/oauth.authorize   (flow.write,
 *        api_connector_actions.c) starts one: a new state and PKCE
 *        verifier, sealed as the connector's pending authorization for 10
 *        minutes; answers {"authorize_url": ...}
 *   GET  /oauth/callback?code=..&state=..            (public, here)
 *        where the authorization server sends the browser back; the
 *        single-use state must match a pending authorization (that is
 *        what authenticates the request); the code is exchanged, the
 *        tokens are stored sealed, a small plain page answers
 *
 * The work is the connector type's (core/flow.c's flow_oauth_callback
 * asks each stored connector whose type has an oauth_callback: http.c's);
 * this file adds the HTTP side,
 * the audit entries and the defender's count of unknown states. Must
 * never: put a code, a token, a verifier or the client secret into a
 * response, the audit trail or a log line.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "connectors/connector.h"
#include "core/flow.h"
#include "net/server.h"
#include "util/secret.h"

/* A small text/plain page for the browser. */
static int page(struct api_ctx *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int page(struct api_ctx *c, int status, const char *fmt, ...)
{
    char text[ERROR_MSG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text) - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(text) - 1 ? (size_t)n
                                                           : sizeof(text) - 2;
    text[len++] = '\n';
    return net_reply(c->req, status, "text/plain; charset=utf-8", text, len);
}

/* The authorization server's error code, tamed to [A-Za-z0-9_-]. */
static void tame(char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            *s = '_';
}

int api_oauth_callback(struct api_ctx *c)
{
    struct error err = {0};
    char state[128], code[4096], perr[64], conn[128] = "";
    c->actor.name = "oauth-callback";
    const char *has_err = api_query(c, "error", perr, sizeof(perr));
    const char *has_state = api_query(c, "state", state, sizeof(state));
    const char *has_code = api_query(c, "code", code, sizeof(code));
    if (has_state == NULL || (has_code == NULL && has_err == NULL))
        return page(c, 400, "This is where an OAuth authorization server "
                    "sends a browser back to Wharf: state and code are "
                    "missing.");
    struct secret *secret_code = has_code && !has_err
        ? secret_from(code, strlen(code)) : NULL;
    OPENSSL_cleanse(code, sizeof(code));
    if (has_code && !has_err && secret_code == NULL)
        return page(c, 500, "Out of memory.");
    enum conn_oauth_rc rc = flow_oauth_callback(c->w, c->st, state,
                                                secret_code, conn,
                                                sizeof(conn), &err);
    secret_free(secret_code);
    if (rc == CONN_OAUTH_UNKNOWN) {
        net_req_auth_failure(c->req);
        api_audit(c, "connector.oauth.failure", "-", "unknown, expired or "
                  "used state");
        return page(c, 400, "OAuth authorization refused: %s", err.msg);
    }
    if (has_err) {
        tame(perr);
        char detail[128];
        snprintf(detail, sizeof(detail), "the authorization server answered "
                 "%s", perr);
        api_audit(c, "connector.oauth.failure", conn, detail);
        return page(c, 400, "The authorization server did not authorize "
                    "connector %s (%s).", conn, perr);
    }
    if (rc != CONN_OAUTH_OK) {
        api_audit(c, "connector.oauth.failure", conn[0] ? conn : "-",
                  err.msg);
        return page(c, 502, "OAuth authorization of connector %s failed: %s",
                    conn[0] ? conn : "?", err.msg);
    }
    api_audit(c, "connector.oauth.authorized", conn, "tokens stored");
    return page(c, 200, "Connector %s is authorized: Wharf stored its tokens "
                "and renews them itself. You can close this window.", conn);
}
