/*
 * auth_store.h - the rows of people and programs (R4, R13, R16, R17,
 * R22): users, recovery codes, sessions and API tokens (tables of schema
 * migration 2, see sqlite.c), the owner of each token, the per-account
 * login throttle and the webhook HMAC signatures already accepted
 * (migration 6). Implemented in sqlite_auth.c.
 *
 * Plain rows, no policy: src/auth/ decides who may do what, hashes and
 * seals the secrets, and audits. Nothing here ever sees a secret in clear:
 * passwords arrive as Argon2id encodings, TOTP seeds sealed by the vault,
 * session ids, CSRF tokens, API tokens and recovery codes as SHA-256 hex.
 *
 * Ownership: every struct filled here owns its strings and blobs; free them
 * with the matching *_clear / *_free function. Times are ms since the epoch.
 * Lookups return 0 found, 1 not found, -1 error (err set).
 */
#ifndef WHARF_AUTH_STORE_H
#define WHARF_AUTH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/id.h"

struct store;

#define STORE_HASH_HEX 64           /* SHA-256 as lowercase hex */

/* ---- users ---------------------------------------------------------------- */

struct store_user {
    int64_t id;
    char *name;
    char *role;                     /* "admin" "operator" "auditor" "viewer" */
    char *password_hash;            /* Argon2id encoding; NULL: no password */
    int must_change;                /* the password must be changed at login */
    unsigned char *totp_sealed;     /* vault_seal blob of the TOTP seed, or NULL */
    size_t totp_sealed_len;
    int totp_enabled;               /* confirmed with a first code */
    int64_t totp_last_step;         /* last accepted TOTP time step */
    char *oidc_subject;             /* "issuer|sub" of an OIDC login, or NULL */
    int disabled;
    int64_t created_at, updated_at;
};
void store_user_clear(struct store_user *u);
void store_users_free(struct store_user *u, size_t n);

/* Insert a user. *id gets the new id (may be NULL). Returns 1 (nothing
 * inserted) when the name is taken. password_hash may be NULL. */
int store_user_create(struct store *s, const char *name, const char *role,
                      const char *password_hash, int must_change, int64_t now,
                      int64_t *id, struct error *err);
int store_user_get_by_name(struct store *s, const char *name,
                           struct store_user *out, struct error *err);
int store_user_get_by_id(struct store *s, int64_t id, struct store_user *out,
                         struct error *err);
/* The user whose oidc_subject is subject ("issuer|sub"): as
 * store_user_get_by_name. */
int store_user_get_by_subject(struct store *s, const char *subject,
                              struct store_user *out, struct error *err);
/* Bind an OIDC subject to a user: 0 done, 1 no such user, -1 error. */
int store_user_set_subject(struct store *s, int64_t id, const char *subject,
                           int64_t now, struct error *err);

/* Every user by name. password_hash and totp_sealed are left NULL in the
 * rows of a listing. *out malloc'ed: store_users_free(*out, *n). */
int store_user_list(struct store *s, struct store_user **out, size_t *n,
                    struct error *err);

/* Updates of one user by id: 0 done, 1 no such user, -1 error.
 * store_user_set_role, store_user_set_disabled and store_user_delete also
 * return 2 (nothing written) when the change would leave no enabled
 * administrator: checked and written in one transaction that takes turns
 * with every other such change, on every node of a cluster. */
int store_user_set_role(struct store *s, int64_t id, const char *role,
                        int64_t now, struct error *err);
int store_user_set_password(struct store *s, int64_t id, const char *hash,
                            int must_change, int64_t now, struct error *err);
int store_user_set_disabled(struct store *s, int64_t id, int disabled,
                            int64_t now, struct error *err);
/* Store a new sealed TOTP seed (NULL clears it): TOTP becomes disabled
 * until store_user_enable_totp, and the last accepted step is reset. */
int store_user_set_totp(struct store *s, int64_t id,
                        const unsigned char *sealed, size_t len, int64_t now,
                        struct error *err);
/* Enable TOTP for a user who has a seed (the step is left as it is, so the
 * confirming code cannot be used again). 0 done, 1 no user or no seed. */
int store_user_enable_totp(struct store *s, int64_t id, int64_t now,
                           struct error *err);
/* Record that TOTP step `step` was used, atomically and only if it is later
 * than the last accepted one: 0 accepted, 1 refused (a step <= the last one:
 * a replayed code), -1 error. */
int store_user_totp_step(struct store *s, int64_t id, int64_t step,
                         struct error *err);
/* Delete a user and (cascade) their sessions and recovery codes, and
 * revoke (revoked_at = now) every live API token they own, in one
 * transaction. *tokens_revoked (may be NULL) gets how many tokens. */
int store_user_delete(struct store *s, int64_t id, int64_t now,
                      int *tokens_revoked, struct error *err);
/* How many enabled users hold role. -1 on error. */
int64_t store_user_count_role(struct store *s, const char *role,
                              struct error *err);

/* ---- recovery codes -------------------------------------------------------- */

/* Replace the user's codes with hashes[0..n) (one transaction). */
int store_recovery_replace(struct store *s, int64_t user_id,
                           const char *const *hashes, size_t n, int64_t now,
                           struct error *err);
/* Mark one unused code as used, atomically: 0 consumed, 1 no such unused
 * code (unknown, or used before), -1 error. */
int store_recovery_consume(struct store *s, int64_t user_id, const char *hash,
                           int64_t now, struct error *err);
/* Unused codes left. -1 on error. */
int64_t store_recovery_left(struct store *s, int64_t user_id,
                            struct error *err);
int store_recovery_clear(struct store *s, int64_t user_id, struct error *err);

/* ---- sessions --------------------------------------------------------------- */

struct store_session {
    char id_hash[STORE_HASH_HEX + 1];   /* SHA-256 of the session id: its handle */
    int64_t user_id;
    char csrf_hash[STORE_HASH_HEX + 1];
    char *address;                      /* client address at login, or NULL */
    int mfa;                            /* MFA was completed in this session */
    int64_t created_at, last_seen_at;
    int64_t expires_at;                 /* absolute end */
    int64_t revoked_at;                 /* 0 when live */
};
void store_session_clear(struct store_session *x);
void store_sessions_free(struct store_session *x, size_t n);

/* Insert x (address borrowed). */
int store_session_create(struct store *s, const struct store_session *x,
                         struct error *err);
int store_session_get(struct store *s, const char *id_hash,
                      struct store_session *out, struct error *err);
/* Set last_seen_at = now on a live session. */
int store_session_touch(struct store *s, const char *id_hash, int64_t now,
                        struct error *err);
/* Mark a live session as having completed MFA. 0 done, 1 none. */
int store_session_set_mfa(struct store *s, const char *id_hash,
                          struct error *err);
/* Revoke one live session; when user_id > 0 only if it belongs to that user.
 * 0 revoked, 1 no such live session (of that user). */
int store_session_revoke(struct store *s, const char *id_hash,
                         int64_t user_id, int64_t now, struct error *err);
/* Revoke every live session of a user except `keep` (a hash, or NULL).
 * *count (may be NULL) gets how many. */
int store_session_revoke_user(struct store *s, int64_t user_id,
                              const char *keep, int64_t now, int *count,
                              struct error *err);
/* Sessions of user_id (all users when 0) that are not revoked and not past
 * their absolute end at `now`, newest first. Free with store_sessions_free. */
int store_session_list(struct store *s, int64_t user_id, int64_t now,
                       struct store_session **out, size_t *n,
                       struct error *err);
/* Delete sessions past their absolute end, idle since before idle_before,
 * or revoked before revoked_before. *count (may be NULL) gets how many. */
int store_session_delete_expired(struct store *s, int64_t now,
                                 int64_t idle_before, int64_t revoked_before,
                                 int *count, struct error *err);

/* ---- API tokens --------------------------------------------------------------- */

struct store_token {
    char id[ID_LEN + 1];            /* public id (UUIDv7) */
    char *name;
    char *role;
    char *created_by;               /* audit actor that created it */
    int64_t created_at;
    int64_t expires_at;             /* 0: never */
    int64_t last_used_at;           /* 0: never used */
    int64_t revoked_at;             /* 0: live */
    int64_t owner_id;               /* the user it acts as; 0: none (refused) */
    char *owner;                    /* that user's name (filled by reads), or NULL */
};
void store_token_clear(struct store_token *t);
void store_tokens_free(struct store_token *t, size_t n);

/* Insert t with the SHA-256 hex of the token (strings borrowed; t->owner
 * is not stored, t->owner_id is). */
int store_token_create(struct store *s, const struct store_token *t,
                       const char *hash, struct error *err);
int store_token_get_by_hash(struct store *s, const char *hash,
                            struct store_token *out, struct error *err);
int store_token_get(struct store *s, const char *id, struct store_token *out,
                    struct error *err);
/* last_used_at = now. */
int store_token_touch(struct store *s, const char *id, int64_t now,
                      struct error *err);
/* 0 revoked, 1 no such token or already revoked. */
int store_token_revoke(struct store *s, const char *id, int64_t now,
                       struct error *err);
/* Every token, newest first (revoked and expired included). */
int store_token_list(struct store *s, struct store_token **out, size_t *n,
                     struct error *err);

/* ---- the per-account login throttle (R22) ------------------------------------ */

/* One account's failed logins (account: a user name, also of users that do
 * not exist, so the answer cannot tell them apart). Policy: auth/throttle.c. */
struct store_throttle {
    int failures;                   /* counted since first_at */
    int64_t first_at;
    int level;                      /* locks so far (0: none, or forgiven) */
    int64_t locked_until;           /* refused without a password check until */
    int64_t updated_at;
};

/* The row of account; zeroed when there is none (1). */
int store_throttle_get(struct store *s, const char *account,
                       struct store_throttle *out, struct error *err);
/* Read, change and write back account's row in one IMMEDIATE transaction,
 * so concurrent failures are all counted: update() gets the row (zeroed
 * when there is none) and edits it; it returns 0 to store it, 1 to delete
 * it. Rows not updated since prune_before and not locked at now are
 * deleted in the same transaction (the table stays small). */
int store_throttle_update(struct store *s, const char *account,
                          int (*update)(struct store_throttle *t, void *arg),
                          void *arg, int64_t now, int64_t prune_before,
                          struct error *err);
/* Forget an account's failures (after a successful login). */
int store_throttle_clear(struct store *s, const char *account,
                         struct error *err);

/* ---- webhook HMAC signatures already accepted (M6, R22) ----------------------- */

/* Claim signature sig of scope (the webhook connector's name) until
 * `until` (ms) for the process run `run` (an id new at every start):
 * 0 claimed (new, expired, or left pending by an earlier run, i.e. a
 * process that died before it stored the request); 1 refused (accepted
 * before within its window, or pending in this run: a concurrent replay);
 * -1 error. One statement, so two requests cannot both claim. */
int store_replay_claim(struct store *s, const char *scope, const char *sig,
                       int64_t until, const char *run, int64_t now,
                       struct error *err);
/* The claimed request was stored: the claim holds until it expires, across
 * restarts. */
int store_replay_done(struct store *s, const char *scope, const char *sig,
                      struct error *err);
/* The claimed request was not stored: give the claim back (only a pending
 * claim of this run). */
int store_replay_release(struct store *s, const char *scope, const char *sig,
                         const char *run, struct error *err);
/* Delete claims that expired before now. */
int store_replay_prune(struct store *s, int64_t now, struct error *err);

#endif
