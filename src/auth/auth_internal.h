/*
 * auth_internal.h - helpers the files of src/auth/ share (context.c,
 * throttle.c).
 * Nothing outside src/auth/ (and its unit test) includes this header.
 */
#ifndef WHARF_AUTH_INTERNAL_H
#define WHARF_AUTH_INTERNAL_H

#include <stddef.h>

#include "auth/auth.h"

/* Generic refusal texts: the same whatever the reason (no enumeration). */
#define AUTH_MSG_LOGIN "wrong user name, password or code"
#define AUTH_MSG_SESSION "the session is unknown, expired or revoked: log in again"
#define AUTH_MSG_TOKEN "the API token is unknown, expired or revoked"

/* Append an audit entry (actor "system" when who is NULL) and log the
 * action at info. target and detail must not hold secrets. */
int auth_audit(struct auth *a, const struct auth_actor *who,
               const char *action, const char *target, const char *detail,
               struct error *err);

/* SHA-256 of n bytes as 64 lowercase hex digits + NUL. */
void auth_sha256_hex(const void *p, size_t n, char out[STORE_HASH_HEX + 1]);
/* The same of a secret's bytes. */
void auth_secret_hash(const struct secret *s, char out[STORE_HASH_HEX + 1]);

/* prefix (may be "") followed by nbytes random bytes (RAND_bytes) as
 * unpadded base64url. Caller owns; NULL on failure (err set). */
struct secret *auth_random_token(const char *prefix, size_t nbytes,
                                 struct error *err);

/* Look a user up by name: AUTH_OK (caller clears *out), AUTH_NOT_FOUND
 * (err names the user), AUTH_ERROR. */
int auth_user_load(struct auth *a, const char *name, struct store_user *out,
                   struct error *err);

/* A boolean setting: "true"/"false" (also yes/no, on/off, 1/0) -> 1/0;
 * absent -> dflt; any other value -> `unreadable` (the caller's safe side).
 * -1 on a storage error. */
int auth_setting_bool(struct store *st, const char *key, int dflt,
                      int unreadable, struct error *err);

/* Empty p so that it allows nothing (role ROLE_COUNT): what every refused
 * validation leaves behind, since a zeroed role would be ROLE_ADMIN. */
void auth_principal_deny(struct auth_principal *p);

/* Fill the session/user parts of a principal. */
void auth_principal_user(struct auth_principal *p, const struct store_user *u);

/* The per-account login throttle (throttle.c). check: 0 free, 1 locked
 * (*retry_ms until it opens), -1 error. failure: count one failed login
 * of name (audits login.throttle when it starts a lock). success: clear
 * the name's failures. Both AUTH_OK or AUTH_ERROR. */
int auth_throttle_check(struct auth *a, const char *name, int64_t *retry_ms,
                        struct error *err);
int auth_throttle_failure(struct auth *a, const struct auth_actor *who,
                          const char *name, struct error *err);
int auth_throttle_success(struct auth *a, const char *name, struct error *err);

#endif
