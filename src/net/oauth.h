/*
 * oauth.h - the client side of OAuth 2.0 for connectors (R4, R8): token
 * requests (RFC 6749: client_credentials, authorization_code with PKCE
 * (RFC 7636), refresh_token), the parser of token responses, and what an
 * authorization-code flow needs before its redirect (PKCE S256, a random
 * state, the authorization URL).
 *
 * Every request goes through net_client_request (net/client.h): the TLS
 * policy, CA, proxy and error classes are that client's. The body is
 * application/x-www-form-urlencoded, POSTed to the token URL; the client
 * authenticates with client_secret_basic (default) or client_secret_post.
 *
 * Token values only ever live in struct secret. The parser takes
 * untrusted input (tests/fuzz/fuzz_oauth_token.c). Nothing here logs;
 * errors name URLs, HTTP statuses and OAuth error codes, never a token, a
 * code, a verifier or the client secret.
 */
#ifndef WHARF_NET_OAUTH_H
#define WHARF_NET_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "net/client.h"
#include "util/error.h"
#include "util/status.h"

struct secret;

#define OAUTH_RESPONSE_MAX (64 * 1024)  /* token response bytes read */
#define OAUTH_TOKEN_MAX 8192            /* longest token accepted */
#define OAUTH_RANDOM_LEN 43             /* state, verifier: 32 random bytes */
#define OAUTH_CHALLENGE_LEN 43          /* base64url(SHA-256(verifier)) */
#define OAUTH_ERROR_MAX 64              /* an OAuth error code, with NUL */
#define OAUTH_DESC_MAX 160              /* error_description kept, with NUL */

enum oauth_grant {
    OAUTH_CLIENT_CREDENTIALS = 0,
    OAUTH_AUTHORIZATION_CODE,   /* value: the code; verifier: PKCE */
    OAUTH_REFRESH_TOKEN,        /* value: the refresh token */
};

enum oauth_client_auth {
    OAUTH_AUTH_BASIC = 0,       /* client_secret_basic (RFC 6749 2.3.1) */
    OAUTH_AUTH_POST,            /* client_secret_post */
};

/* A token endpoint and the client's identity there. Borrowed pointers:
 * the caller keeps them alive for the duration of a call. */
struct oauth_endpoint {
    const char *token_url;              /* https:// */
    const char *client_id;
    const struct secret *client_secret; /* NULL: a public client */
    enum oauth_client_auth client_auth;
    const char *scope;                  /* NULL: none asked for */
    const char *redirect_uri;           /* authorization_code grant */
    struct net_client_opts opts;        /* CA, proxy, timeouts */
};

/* What a token endpoint answered. Owned by the struct; oauth_token_clear
 * wipes and frees. */
struct oauth_token {
    struct secret *access;      /* access_token */
    struct secret *refresh;     /* refresh_token, or NULL */
    int64_t expires_in;         /* seconds; 0 when not said */
    char *scope;                /* granted scope, or NULL */
    /* When the endpoint refused (HTTP 400/401 with an OAuth error): its
     * error code ("invalid_grant"), and its error_description made safe
     * to print (printable ASCII, cut), or "". */
    char error[OAUTH_ERROR_MAX];
    char description[OAUTH_DESC_MAX];
};

void oauth_token_clear(struct oauth_token *t);

/* Parse a token response (untrusted) of HTTP status into *t (cleared
 * first). Returns 0 for a usable token (status 200, a JSON object with an
 * access_token of 1..OAUTH_TOKEN_MAX visible ASCII characters, token_type
 * "Bearer" in any case, an optional expires_in of 0..10 years (number or
 * digit string), refresh_token (same rules as access_token) and scope);
 * 1 when the endpoint refused (status 400 or 401 and an "error" code of
 * safe characters): t->error and t->description are set; -1 for anything
 * else, with err saying what was wrong (never quoting a value). */
int oauth_token_parse(long status, const char *body, size_t len,
                      struct oauth_token *t, struct error *err);

/* One token request of grant g. value is the authorization code or the
 * refresh token (NULL for client_credentials); verifier the PKCE verifier
 * (authorization_code; NULL: none). WH_OK and *t filled; WH_RETRY when the
 * endpoint is unreachable or answered 408, 429 or 5xx; WH_FAIL otherwise,
 * with t->error set when the endpoint refused with an OAuth error code.
 * err starts "OAuth token endpoint". Thread-safe. */
enum wh_status oauth_token_request(const struct oauth_endpoint *e,
                                   enum oauth_grant g,
                                   const struct secret *value,
                                   const struct secret *verifier,
                                   struct oauth_token *t, struct error *err);

/* OAUTH_RANDOM_LEN characters of base64url from 32 random bytes, and a
 * NUL (a state). 0 or -1 with err. */
int oauth_random(char out[OAUTH_RANDOM_LEN + 1], struct error *err);

/* A new PKCE verifier (*verifier, caller frees; 43 characters) and its
 * S256 challenge. 0 or -1 with err. */
int oauth_pkce_new(struct secret **verifier,
                   char challenge[OAUTH_CHALLENGE_LEN + 1], struct error *err);

/* The S256 challenge of a verifier of 43..128 unreserved characters. */
int oauth_pkce_challenge(const char *verifier, size_t len,
                         char out[OAUTH_CHALLENGE_LEN + 1], struct error *err);

/* authorize_url plus the query of an authorization request
 * (response_type=code, client_id, redirect_uri, scope when not NULL,
 * state, code_challenge, code_challenge_method=S256), every value
 * percent-encoded. Caller frees; NULL with err. */
char *oauth_authorize_url(const char *authorize_url, const char *client_id,
                          const char *redirect_uri, const char *scope,
                          const char *state, const char *challenge,
                          struct error *err);

#endif
