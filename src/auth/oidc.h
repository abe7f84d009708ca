/*
 * oidc.h - OpenID Connect single sign-on for people (R4, R17), and the
 * JSON Web Token verification it rests on.
 *
 *   jwt.c    JWS compact tokens (RS256, ES256) against a JWKS; base64url
 *   oidc.c   discovery, key cache, login start (PKCE S256), callback:
 *            code exchange, ID token checks, claim -> role mapping
 *
 * The flow, as the HTTP layer drives it:
 *
 *   1. oidc_new(config) once; oidc_discover() at start (or lazily).
 *   2. GET .../auth/oidc/login: oidc_login_start() gives the authorization
 *      URL to redirect the browser to and a struct oidc_pending that the
 *      caller keeps server-side (bound to the browser, e.g. by a short-lived
 *      random pre-login cookie), never in the browser.
 *   3. GET .../auth/oidc/callback?code=..&state=..: the caller finds the
 *      pending login and calls oidc_callback(), which checks state, trades
 *      the code for tokens at the token endpoint (with the PKCE verifier and
 *      the client secret), verifies the ID token and maps a claim to a
 *      role. On OIDC_OK the caller opens a session for the identity. The
 *      pending login is single-use: clear it whatever the outcome.
 *
 * The redirect URI is Wharf's own admin listener: no relay (R8). The only
 * hosts contacted are the configured issuer's endpoints (discovery, JWKS,
 * token), over HTTPS with certificate and host name verification, TLS 1.2
 * or later, no redirects followed, no proxy unless configured (environment
 * proxy variables are ignored: R1). Responses are capped in size and time.
 *
 * Secrets (client secret, PKCE verifier, authorization code, tokens) never
 * reach a log line or an error message; buffers that held them are wiped.
 * Role names are the RBAC names of auth.h: "admin" "operator" "auditor"
 * "viewer".
 *
 * Thread safety: one struct oidc may be used from many threads; the
 * discovery document and the key cache sit behind its mutex.
 */
#ifndef WHARF_OIDC_H
#define WHARF_OIDC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct secret;

/* ======================================================================
 * JWT (jwt.c): pure computation on buffers, no I/O, no global state.
 *
 * Only RS256 (RSA PKCS#1 v1.5 + SHA-256, keys of 2048..4096 bits) and ES256
 * (ECDSA P-256 + SHA-256, signature r||s) are accepted. "none", HS*, PS*,
 * anything else, a "crit" header, a key whose type does not fit the
 * algorithm and a key whose own "alg" differs are refused. Keys are never
 * taken from the token (jwk, jku, x5u, x5c headers are ignored). Error
 * texts never quote a token, a signature or a claim value; a kid or alg
 * name is quoted only when it is short and made of safe characters.
 * ====================================================================== */

#define JWT_MAX_LEN (16 * 1024)     /* longest token accepted, bytes */
#define JWT_MAX_KEYS 64             /* keys read from one key set */
#define JWKS_MAX_LEN (256 * 1024)   /* longest key set document accepted */

enum jwt_rc {
    JWT_ERROR = -1,         /* out of memory or an OpenSSL failure */
    JWT_OK = 0,
    JWT_MALFORMED,          /* not a compact JWS, bad base64url or JSON */
    JWT_UNSUPPORTED,        /* algorithm refused, or alg / key type mismatch */
    JWT_UNKNOWN_KEY,        /* no key with that kid: refresh the key set */
    JWT_BAD_SIGNATURE,      /* the signature does not verify */
    JWT_BAD_CLAIMS,         /* iss, aud, azp, exp, iat, nbf, nonce or sub */
};

/* What the claims must say. issuer and audience are required. */
struct jwt_expect {
    const char *issuer;     /* "iss" must be equal */
    const char *audience;   /* "aud" must contain it ("azp" too, if several) */
    const char *nonce;      /* "nonce" must be equal; NULL: not checked */
    int64_t now;            /* seconds since the epoch */
    int leeway;             /* seconds of clock skew allowed (0..600) */
};

/* A parsed key set. Opaque; read-only (so shareable) once parsed. */
struct jwt_keyset;

/* Parse a JWKS document ({"keys":[...]}), at most JWKS_MAX_LEN bytes. Keys
 * not for signatures ("use" other than "sig"), of another type or curve,
 * too small or too large, malformed, or holding private parts are skipped;
 * a set with no usable key is refused. Returns JWT_OK and *out (caller
 * owns, jwt_keyset_free), or JWT_MALFORMED / JWT_ERROR with err set. */
enum jwt_rc jwt_keyset_parse(const char *json, size_t len,
                             struct jwt_keyset **out, struct error *err);
void jwt_keyset_free(struct jwt_keyset *ks);
size_t jwt_keyset_count(const struct jwt_keyset *ks);

/* Verify token (len bytes, need not be NUL-terminated): structure,
 * algorithm, key (by kid; without a kid, the only key of the right type),
 * signature, then the claims (jwt_check_claims). On JWT_OK and when claims
 * is not NULL, *claims is the payload object (caller owns, json_decref).
 * Otherwise err says what was wrong, in one sentence. */
enum jwt_rc jwt_verify(const char *token, size_t len,
                       const struct jwt_keyset *keys,
                       const struct jwt_expect *want, json_t **claims,
                       struct error *err);

/* jwt_verify against a JWKS given as JSON text (tests, fuzzing, tools). */
enum jwt_rc jwt_verify_jwks(const char *token, size_t len,
                            const char *jwks, size_t jwks_len,
                            const struct jwt_expect *want, json_t **claims,
                            struct error *err);

/* The claim checks alone, on a verified payload: iss equal; aud a string or
 * an array containing the audience, azp required when there are several
 * audiences and equal to the audience when present; exp required and
 * exp > now - leeway; iat required and iat <= now + leeway; nbf (if any)
 * <= now + leeway; nonce equal when want->nonce is set; sub a non-empty
 * string of at most 255 bytes. JWT_OK or JWT_BAD_CLAIMS. */
enum jwt_rc jwt_check_claims(const json_t *claims,
                             const struct jwt_expect *want,
                             struct error *err);

/* base64url (RFC 4648 section 5) without padding. */

/* Characters needed to encode len bytes, without the NUL. */
size_t jwt_b64url_len(size_t len);

/* Encode len bytes into out (outsz >= jwt_b64url_len(len) + 1), NUL-
 * terminated. Returns the length written, or -1 when out is too small. */
long jwt_b64url_encode(const void *in, size_t len, char *out, size_t outsz);

/* Decode len characters. Refuses padding, characters outside the alphabet,
 * impossible lengths and non-canonical trailing bits. *out is malloc'ed
 * (caller frees; a NUL byte follows the data). Returns 0, or -1 (invalid
 * input or out of memory) with *out NULL. */
int jwt_b64url_decode(const char *in, size_t len, unsigned char **out,
                      size_t *outlen);

/* ======================================================================
 * OIDC (oidc.c)
 * ====================================================================== */

#define OIDC_RANDOM_LEN 43      /* state, nonce, verifier: 32 random bytes */
#define OIDC_CHALLENGE_LEN 43   /* base64url(SHA-256(verifier)) */
#define OIDC_ROLE_MAX 16        /* longest role name, with the NUL */

enum oidc_rc {
    OIDC_ERROR = -1,        /* bad arguments, out of memory, system failure */
    OIDC_OK = 0,
    OIDC_DENIED = 1,        /* login refused: state, code, ID token, claims */
    OIDC_UNAVAILABLE = 2,   /* the identity provider could not be used */
    OIDC_NO_ROLE = 3,       /* a valid person, but no role maps, no default */
};

enum oidc_client_auth {
    OIDC_AUTH_BASIC = 0,    /* client_secret_basic (RFC 6749 2.3.1) */
    OIDC_AUTH_POST,         /* client_secret_post */
};

/* One claim value -> one role. */
struct oidc_role_map {
    const char *value;      /* e.g. "wharf-admins" */
    const char *role;       /* "admin" "operator" "auditor" "viewer" */
};

/* Configuration. oidc_config_init() fills the defaults; oidc_new copies
 * everything it needs (strings, the secret), so the caller keeps
 * ownership of what it passed. */
struct oidc_config {
    const char *issuer;             /* https://idp.example/realms/x (no ?, #) */
    const char *client_id;
    const struct secret *client_secret;  /* NULL: public client (PKCE only) */
    const char *redirect_uri;       /* on Wharf's own admin listener, e.g.
                                       https://127.0.0.1:8443/api/v1/auth/
                                       oidc/callback */
    const char *scopes;             /* default "openid email profile" */
    const char *role_claim;         /* e.g. "groups", "roles",
                                       "realm_access.roles"; NULL: none */
    const struct oidc_role_map *role_map;   /* first match wins */
    size_t role_map_len;
    const char *default_role;       /* NULL: refuse people with no match */
    const char *ca_file;            /* PEM CA bundle; NULL: system CAs */
    const char *proxy;              /* http://host:port, socks5://...;
                                       NULL: direct */
    const char *no_proxy;           /* hosts that go direct (curl's list);
                                       NULL: none */
    const struct secret *proxy_auth;    /* "user:password"; NULL: none */
    enum oidc_client_auth client_auth;  /* default OIDC_AUTH_BASIC */
    long timeout_ms;                /* per HTTP request, default 10000 */
    int leeway_s;                   /* clock skew, default 60 */
    int jwks_refresh_min_s;         /* minimum seconds between key set fetches
                                       caused by an unknown kid, default 10 */
    int jwks_max_age_s;             /* refetch older keys, default 3600 */
    int login_max_age_s;            /* a pending login expires, default 600 */
};

/* A login in progress: the caller stores it server-side between
 * oidc_login_start and oidc_callback, and clears it after one use. state
 * and nonce also travel in the authorization URL; the verifier does not
 * and is a secret. */
struct oidc_pending {
    char state[OIDC_RANDOM_LEN + 1];
    char nonce[OIDC_RANDOM_LEN + 1];
    struct secret *verifier;        /* owned; oidc_pending_clear frees it */
    int64_t created;                /* seconds since the epoch */
};

/* The person the identity provider vouched for. All strings owned by the
 * struct; oidc_identity_clear frees them. Optional ones may be NULL. */
struct oidc_identity {
    char *issuer;                   /* the configured issuer */
    char *subject;                  /* "sub": with issuer, the account key */
    char *email;                    /* "email" or NULL */
    bool email_verified;            /* "email_verified" was true */
    char *username;                 /* "preferred_username" or NULL */
    char *name;                     /* "name" or NULL */
    char role[OIDC_ROLE_MAX];       /* the mapped role name */
};

struct oidc;

/* Defaults for every field; the caller then sets issuer, client_id,
 * client_secret, redirect_uri and the role mapping. */
void oidc_config_init(struct oidc_config *cfg);

/* Validate cfg (HTTPS issuer and redirect URI, "openid" among the scopes,
 * known role names, a role claim or a default role, a readable CA file,
 * ranges) and build the client. No network I/O. Caller owns the result
 * (oidc_free). NULL with err set on a bad configuration. */
struct oidc *oidc_new(const struct oidc_config *cfg, struct error *err);
void oidc_free(struct oidc *o);

/* Fetch {issuer}/.well-known/openid-configuration (its "issuer" must be
 * the configured one; endpoints must be HTTPS; S256 and RS256/ES256 must be
 * supported when listed) and then its jwks_uri. Replaces what was cached
 * only when both succeed. OIDC_OK, OIDC_UNAVAILABLE or OIDC_ERROR. */
int oidc_discover(struct oidc *o, struct error *err);

/* Start a login at time now: fill *p (random state, nonce and a 43-char
 * PKCE verifier, all from RAND_bytes) and set *url to the authorization
 * URL (response_type=code, client_id, redirect_uri, scope, state, nonce,
 * code_challenge, code_challenge_method=S256); caller owns *url (free).
 * Discovers first if that was not done. OIDC_OK, OIDC_UNAVAILABLE or
 * OIDC_ERROR; on failure *p is cleared and *url NULL. */
int oidc_login_start(struct oidc *o, int64_t now, struct oidc_pending *p,
                     char **url, struct error *err);

/* Finish a login: state (from the callback URL) must equal p->state
 * (constant time) and p must not be older than login_max_age_s; code is
 * exchanged at the token endpoint with the verifier; the ID token must
 * verify (jwt_verify with iss = issuer, aud = client id, nonce = p->nonce,
 * now, leeway; an unknown kid refreshes the key set once); the role claim
 * must map to a role or a default role must be set. Fills *id on OIDC_OK,
 * and on OIDC_NO_ROLE too (role "") so the caller can audit who was
 * refused; the caller clears it. Otherwise OIDC_DENIED (err starts "OIDC
 * login refused"), OIDC_UNAVAILABLE or OIDC_ERROR ("OIDC login failed")
 * and *id is empty. Does not clear p. When the identity provider answered
 * the redirect with error=... instead of a code, the caller refuses without
 * calling this. */
int oidc_callback(struct oidc *o, const struct oidc_pending *p,
                  const char *state, const char *code, int64_t now,
                  struct oidc_identity *id, struct error *err);

/* The role for a verified claim set: the first role_map entry whose value
 * is the role claim (a string) or one of its strings (an array), else the
 * default role. The claim name is looked up as is, then as a dotted path
 * ("realm_access.roles"). Writes the name into role (OIDC_ROLE_MAX bytes).
 * OIDC_OK or OIDC_NO_ROLE with err set. */
int oidc_map_role(const struct oidc *o, const json_t *claims,
                  char role[OIDC_ROLE_MAX], struct error *err);

/* Wipe and free what *p holds; *p is then empty. NULL is fine. */
void oidc_pending_clear(struct oidc_pending *p);

/* Free what *id holds; *id is then empty. NULL is fine. */
void oidc_identity_clear(struct oidc_identity *id);

#endif
