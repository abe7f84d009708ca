/*
 * http.h - what the http destination (connectors/http.c) offers besides
 * its connector_type: the two steps of an OAuth 2.0 authorization-code
 * grant with PKCE (R8) whose redirect lands on Wharf's own admin listener.
 *
 *   1. http_oauth_authorize (POST /api/v1/connectors/{name}/oauth/authorize,
 *      `wharf connector authorize NAME`): a random state and PKCE verifier,
 *      kept sealed as the connector's state "oauth.pending" for 10 minutes
 *      (one pending authorization per connector: a new one replaces it);
 *      the caller sends a person to the returned authorization URL.
 *   2. http_oauth_callback (GET /oauth/callback): the state must be a
 *      pending one (single use: taken whatever follows); the code is
 *      exchanged at the token endpoint, the tokens stored sealed, the mark
 *      of a revoked authorization ("oauth.revoked") dropped. A running
 *      engine picks the new tokens up from the store.
 *
 * Neither returns or logs a token, a code or a verifier.
 */
#ifndef WHARF_CONNECTORS_HTTP_H
#define WHARF_CONNECTORS_HTTP_H

#include <stddef.h>

#include "util/error.h"

struct wharf;
struct store;
struct secret;

#define HTTP_OAUTH_PENDING_S 600    /* an authorization must finish within */

enum http_oauth_rc {
    HTTP_OAUTH_OK = 0,
    HTTP_OAUTH_UNKNOWN = 1,     /* no such connector / no pending state */
    HTTP_OAUTH_NOT_CODE = 2,    /* not an http connector with an OAuth
                                   authorization_code grant */
    HTTP_OAUTH_FAILED = -1,     /* err says why */
};

/* Start an authorization of the stored connector `name`: *url (caller
 * frees) is the authorization URL. */
enum http_oauth_rc http_oauth_authorize(struct wharf *w, struct store *st,
                                        const char *name, char **url,
                                        struct error *err);

/* Finish the authorization whose state is `state` with `code` (NULL: the
 * authorization server refused; the pending authorization is dropped).
 * conn (n bytes) receives the connector's name once it is known. */
enum http_oauth_rc http_oauth_callback(struct wharf *w, struct store *st,
                                       const char *state,
                                       const struct secret *code, char *conn,
                                       size_t n, struct error *err);

#endif
