/*
 * auth.h - people, programs and what they may do (R4, R13, R14, R16, R17).
 *
 *   rbac.c       roles, permissions and THE permission table (deny by default)
 *   password.c   Argon2id hashing and the password policy
 *   users.c      users: create, authenticate, password, role, disable
 *   totp.c       TOTP (RFC 6238) enrolment and checks, recovery codes
 *   sessions.c   console sessions (id + CSRF token) and auth_login
 *   throttle.c   the per-account throttle of failed logins (R22)
 *   tokens.c     API tokens for programs; a token acts as its owner
 *
 * The HTTP layer (cookies, headers, routes, OIDC) sits on top of these
 * functions; the CLI verbs `wharf user` and `wharf token` call the same
 * ones. Every change is written to the audit trail with the actor given by
 * the caller.
 *
 * Secrets (passwords, one-time passwords, TOTP seeds and URIs, recovery
 * codes, session ids, CSRF tokens, API tokens) only travel in struct secret.
 * The store keeps Argon2id encodings (passwords), vault-sealed blobs (TOTP
 * seeds) or SHA-256 hashes (everything else); none of them is ever logged,
 * audited or put in an error message. A function that creates a secret
 * hands it to its caller exactly once, to be shown once.
 *
 * Return codes: the AUTH_* values below (0 success). Functions that refuse
 * credentials give the same generic message whatever the reason, so a
 * caller cannot learn whether a user exists; the audit trail records the
 * reason for the operator.
 */
#ifndef WHARF_AUTH_H
#define WHARF_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/auth_store.h"
#include "util/error.h"
#include "util/id.h"

struct secret;
struct store;
struct vault;

enum auth_rc {
    AUTH_ERROR = -1,        /* storage or system failure (HTTP 500) */
    AUTH_OK = 0,
    AUTH_DENIED = 1,        /* wrong, unknown, expired, revoked or reused credential (401) */
    AUTH_NOT_FOUND = 2,     /* no such user, token or session (404) */
    AUTH_INVALID = 3,       /* bad input or password policy (400) */
    AUTH_CONFLICT = 4,      /* exists already, would remove the last admin, wrong state (409) */
    AUTH_MFA_NEEDED = 5,    /* password right, second factor missing: ask for it */
    AUTH_STALE = 6,         /* a known credential that no longer works: revoked,
                               expired, idle, its user disabled or deleted (401;
                               not an attack: the defender does not count it) */
    AUTH_BUSY = 7,          /* every password-check slot stayed taken (503) */
    AUTH_THROTTLED = 8,     /* too many failed logins of this account (429) */
};

/* ---- roles and permissions (rbac.c) ------------------------------------- */

enum role { ROLE_ADMIN, ROLE_OPERATOR, ROLE_AUDITOR, ROLE_VIEWER, ROLE_COUNT };

/* Every permission a route can name. Own sessions (list, revoke, log out)
 * are always allowed to their owner whatever the role: session.read and
 * session.write are about other users' sessions. */
enum perm {
    PERM_FLOW_READ,         /* flow.read        flows, connectors (config masked) */
    PERM_FLOW_WRITE,        /* flow.write       change flows and connectors */
    PERM_CONNECTOR_TEST,    /* connector.test   "test connection" (contacts a partner) */
    PERM_MESSAGE_READ,      /* message.read     message list, status, hops, events */
    PERM_PAYLOAD_READ,      /* payload.read     download payloads */
    PERM_MESSAGE_RESEND,    /* message.resend */
    PERM_MESSAGE_ERASE,     /* message.erase    irreversible erasure (R9) */
    PERM_USER_READ,         /* user.read */
    PERM_USER_WRITE,        /* user.write       create, role, password reset, disable, MFA reset */
    PERM_TOKEN_READ,        /* token.read       list API tokens (never their values) */
    PERM_TOKEN_WRITE,       /* token.write      create and revoke API tokens */
    PERM_SESSION_READ,      /* session.read     list everyone's sessions */
    PERM_SESSION_WRITE,     /* session.write    revoke anyone's sessions */
    PERM_SETTINGS_READ,     /* settings.read */
    PERM_SETTINGS_WRITE,    /* settings.write */
    PERM_AUDIT_READ,        /* audit.read */
    PERM_KEY_WRITE,         /* key.write        rotate keys, import certificates */
    PERM_METRICS_READ,      /* metrics.read     /metrics */
    PERM_ALERT_READ,        /* alert.read       alerts and incidents (R19) */
    PERM_ALERT_ACK,         /* alert.ack        acknowledge an alert */
    PERM_INCIDENT_WRITE,    /* incident.write   escalate, update, close */
    PERM_COUNT
};

/* true only when the table grants perm to role; anything out of range
 * (an unknown role or permission) is denied. */
bool rbac_allows(enum role role, enum perm perm);

/* "admin" "operator" "auditor" "viewer"; NULL for an unknown role. */
const char *rbac_role_name(enum role role);
/* Parse a role name ("administrator" is accepted for "admin"). 0 or -1. */
int rbac_role_parse(const char *name, enum role *out);
/* "flow.read" ...; NULL for an unknown permission. */
const char *rbac_perm_name(enum perm perm);
int rbac_perm_parse(const char *name, enum perm *out);
/* true when holder has every permission granted has: who may hand out a
 * token or a role (nobody can grant more than they hold). */
bool rbac_role_covers(enum role holder, enum role granted);
/* The greatest role both a and b cover (the "minimum" of two roles; for
 * two roles neither of which covers the other, e.g. operator and auditor,
 * the greatest role under both: viewer). ROLE_COUNT (denied everything)
 * when either is out of range. What an API token acts as: min(its role,
 * its owner's current role). */
enum role rbac_role_meet(enum role a, enum role b);

/* ---- the context ----------------------------------------------------------- */

#define AUTH_IDLE_DEFAULT_MS (15 * 60 * 1000LL)
#define AUTH_ABSOLUTE_DEFAULT_MS (12 * 3600 * 1000LL)

/* The per-account login throttle (throttle.c, R22): after `after` failed
 * logins (password or second factor) of one user name within `window`,
 * whoever sends them and whether the user exists or not, that name is
 * refused without a password check for lock_ms; every further failure
 * doubles the lock, up to max(AUTH_THROTTLE_MAX_MS, lock_ms). A
 * successful login clears it; a lock level is forgiven after a clean
 * max-lock period. Defaults are wharf.conf's (login_throttle_*). */
#define AUTH_THROTTLE_AFTER 20
#define AUTH_THROTTLE_WINDOW_MS (15 * 60 * 1000LL)
#define AUTH_THROTTLE_LOCK_MS (60 * 1000LL)
#define AUTH_THROTTLE_MAX_MS (3600 * 1000LL)

struct auth {
    struct store *st;       /* borrowed; one per thread, like the store */
    struct vault *vault;    /* borrowed; seals TOTP seeds, signs audit checkpoints */
    int64_t idle_ms;        /* session idle timeout */
    int64_t absolute_ms;    /* session absolute timeout */
    int64_t now_ms;         /* 0: the real clock; tests set a time here */
    int throttle_after;     /* failed logins that lock an account; 0: off */
    int64_t throttle_window_ms;
    int64_t throttle_lock_ms;   /* the first lock */
};

/* Defaults: 15 min idle, 12 h absolute, real clock, the AUTH_THROTTLE_*
 * values. */
void auth_init(struct auth *a, struct store *st, struct vault *v);
/* Read the settings session_idle_minutes and session_absolute_minutes
 * (absent: defaults). AUTH_INVALID names a bad value. */
int auth_load_settings(struct auth *a, struct error *err);
/* ms since the epoch: a->now_ms when set, else the clock. */
int64_t auth_now(const struct auth *a);

/* Who does something, for the audit trail: "user:alice", "token:ID",
 * "cli", "system"; address may be NULL. Both borrowed. */
struct auth_actor {
    const char *name;
    const char *address;
};

/* R4: may this form of authentication be used? Setting "auth_forms" is a
 * comma-separated list of password, token, oidc, client_cert (absent: all).
 * 1 allowed, 0 not, -1 error. */
int auth_form_allowed(struct store *st, const char *form, struct error *err);

/* ---- passwords (password.c) ------------------------------------------------- */

/* Argon2id parameters. OWASP's minimum today is 19 MiB / 2 passes / 1 lane;
 * we use 64 MiB / 3 passes / 1 lane (~0.1-0.2 s per hash on our machine
 * kind). A 16-byte random salt and a 32-byte tag, stored as the standard
 * encoding "$argon2id$v=19$m=65536,t=3,p=1$salt$tag". */
#define AUTH_ARGON2_M_KIB 65536
#define AUTH_ARGON2_T 3
#define AUTH_ARGON2_P 1
#define AUTH_ARGON2_SALT 16
#define AUTH_ARGON2_TAG 32

#define AUTH_NAME_MAX 64
#define AUTH_PASSWORD_MIN 12        /* characters (UTF-8 code points) */
#define AUTH_PASSWORD_MAX 1024      /* bytes */

/* [a-z0-9._-]{1,64} */
bool auth_name_valid(const char *name);

/* The policy: 12 to 1024 characters; not the user name, and not containing
 * it (case-insensitive, for names of 3 characters or more); not in the
 * bundled list of common passwords, also after stripping trailing digits and
 * symbols ("Summer2024!"); not one character or a short pattern repeated.
 * 0, or AUTH_INVALID with err naming the rule (never the password). */
int auth_password_policy(const char *name, const struct secret *pw,
                         struct error *err);

/* Every Argon2id computation (hash or verify) holds AUTH_ARGON2_M_KIB of
 * memory, so at most `slots` run at once in this process (R22: wrong
 * logins cannot add up to gigabytes); a caller waits at most wait_ms for a
 * slot, then gets AUTH_BUSY. Process-wide; defaults 2 slots, 2000 ms (the
 * CLI keeps them); `serve` sets wharf.conf's login_concurrency and
 * login_wait_ms before the listeners start. */
#define AUTH_PASSWORD_SLOTS 2
#define AUTH_PASSWORD_WAIT_MS 2000
void auth_password_limit(int slots, int wait_ms);
/* Take one slot (waiting at most wait_ms): 0, or -1 when none came free.
 * auth_password_hash/verify take and give back their own; exposed for
 * tests. Give it back with auth_password_slot_give. */
int auth_password_slot_take(void);
void auth_password_slot_give(void);

/* Argon2id encoding of pw. *encoded malloc'ed (caller frees). AUTH_BUSY
 * when no slot came free. */
int auth_password_hash(const struct secret *pw, char **encoded,
                       struct error *err);
/* 1 when pw matches encoded, 0 otherwise (also for a malformed encoding),
 * -1 when no slot came free (nothing was checked). */
int auth_password_verify(const char *encoded, const struct secret *pw);
/* A random one-time password, 4 groups of 5 characters from a 32-letter
 * alphabet without look-alikes (100 bits). Caller owns. */
struct secret *auth_password_generate(void);

/* ---- users (users.c) ---------------------------------------------------------- */

/* Create a user. password NULL: a one-time password is generated, returned
 * in *one_time (caller owns, shown once), and must be changed at the first
 * login; otherwise the policy applies and *one_time may be NULL.
 * AUTH_INVALID (name, policy), AUTH_CONFLICT (name taken). */
int auth_user_create(struct auth *a, const struct auth_actor *who,
                     const char *name, enum role role,
                     const struct secret *password, struct secret **one_time,
                     struct error *err);

/* The first administrator of a new data dir: "admin", role admin, a
 * one-time password in *one_time. Audited with actor "system". */
#define AUTH_FIRST_ADMIN "admin"
int auth_user_bootstrap(struct auth *a, struct secret **one_time,
                        struct error *err);

/* Check a name and password. AUTH_OK fills *out (caller clears with
 * store_user_clear); AUTH_DENIED, with one generic message, for an unknown
 * user, a wrong password or a disabled user alike: an unknown name costs
 * one Argon2id verification too. Audits nothing (auth_login does). *reason
 * (may be NULL) gets a static word for the audit trail. AUTH_BUSY when no
 * password-check slot came free (nothing was checked). */
int auth_authenticate(struct auth *a, const char *name,
                      const struct secret *password, struct store_user *out,
                      const char **reason, struct error *err);

/* Set a new password under the policy. old: the current password, required
 * when a user changes their own (NULL for an administrator's reset).
 * must_change: the user must change it again at the next login. Every
 * session of the user is revoked except keep_session (a session handle, or
 * NULL). */
int auth_user_password(struct auth *a, const struct auth_actor *who,
                       const char *name, const struct secret *old,
                       const struct secret *password, int must_change,
                       const char *keep_session, struct error *err);

/* Change a role. Refused (AUTH_CONFLICT) when it would leave no enabled
 * administrator. */
int auth_user_set_role(struct auth *a, const struct auth_actor *who,
                       const char *name, enum role role, struct error *err);
/* Disable (revoking every session) or enable a user. Disabling the last
 * enabled administrator is refused. */
int auth_user_set_disabled(struct auth *a, const struct auth_actor *who,
                           const char *name, int disabled, struct error *err);
/* Delete a user (sessions and recovery codes go with them) and revoke the
 * API tokens they own, in one transaction; audited as user.delete with
 * tokens_revoked=N. */
int auth_user_delete(struct auth *a, const struct auth_actor *who,
                     const char *name, struct error *err);
/* AUTH_OK fills *out (store_user_clear), AUTH_NOT_FOUND. */
int auth_user_get(struct auth *a, const char *name, struct store_user *out,
                  struct error *err);

/* ---- TOTP and recovery codes (totp.c) --------------------------------------- */

#define TOTP_PERIOD 30              /* seconds per step */
#define TOTP_DIGITS 6
#define TOTP_WINDOW 1               /* steps accepted either side of now */
#define TOTP_SECRET_LEN 20          /* 160-bit seed (RFC 4226 recommends) */
#define AUTH_RECOVERY_CODES 10
#define AUTH_ISSUER "Wharf"

/* RFC 4226 HOTP with HMAC-SHA-1 over the 8-byte big-endian counter `step`:
 * the code as a number below 10^digits (digits 6..8). RFC 6238 TOTP is this
 * with step = unix time / 30. */
uint32_t totp_code(const unsigned char *key, size_t keylen, uint64_t step,
                   int digits);
/* RFC 4648 base32 (no padding) of in into out; -1 when out is too small. */
int totp_base32(const unsigned char *in, size_t n, char *out, size_t outsz);

/* Start (or restart) enrolment: a new 160-bit seed sealed with context
 * "totp:NAME", TOTP not yet enabled. *uri (caller owns; shown once, for a
 * QR code) gets otpauth://totp/Wharf:NAME?secret=BASE32&issuer=Wharf&...
 * AUTH_CONFLICT when TOTP is already enabled (disable it first). */
int auth_totp_enroll(struct auth *a, const struct auth_actor *who,
                     const char *name, struct secret **uri, struct error *err);
/* Finish enrolment with a first code: enables TOTP and returns 10 new
 * recovery codes in *codes (one per line; caller owns; shown once).
 * AUTH_DENIED for a wrong code, AUTH_CONFLICT when nothing is enrolled. */
int auth_totp_confirm(struct auth *a, const struct auth_actor *who,
                      const char *name, const struct secret *code,
                      struct secret **codes, struct error *err);
/* Turn TOTP off and drop the recovery codes (an administrator's reset). */
int auth_totp_disable(struct auth *a, const struct auth_actor *who,
                      const char *name, struct error *err);
/* Replace the recovery codes (TOTP must be enabled). *codes as above. */
int auth_recovery_regenerate(struct auth *a, const struct auth_actor *who,
                             const char *name, struct secret **codes,
                             struct error *err);

/* Check a second factor for user u (TOTP enabled): a 6-digit code within
 * +-1 step of now, never a step at or before the last one accepted (a code
 * works once), or else an unused recovery code (then used up; audited as
 * mfa.recovery_used with who). *used_recovery (may be NULL) says which.
 * AUTH_OK or AUTH_DENIED (generic message; *reason, may be NULL, says
 * "wrong code", "reused code" for the audit trail). */
int auth_mfa_check(struct auth *a, const struct auth_actor *who,
                   const struct store_user *u, const struct secret *code,
                   int *used_recovery, const char **reason, struct error *err);

/* Must users of this role use a second factor? Setting mfa_required_admin
 * (absent: "true") for administrators, mfa_required_all (absent: "false")
 * for everyone. An unreadable value counts as required. 1, 0 or -1. */
int auth_mfa_required(struct store *st, enum role role, struct error *err);

/* ---- who is calling ---------------------------------------------------------- */

enum auth_kind { AUTH_KIND_SESSION, AUTH_KIND_TOKEN };

/* What a valid session or token says about its caller. Plain values; no
 * secret in it (hashes are not secrets: they cannot be turned back). After
 * a refusal it allows nothing (role ROLE_COUNT). A token acts as its
 * owner: user_id and user are the owner's, role is min(token role, the
 * owner's current role). */
struct auth_principal {
    enum auth_kind kind;
    enum role role;
    int64_t user_id;                /* the user (sessions) or owner (tokens) */
    char user[AUTH_NAME_MAX + 1];   /* that user's name ("" for neither) */
    char name[AUTH_NAME_MAX + 1];   /* user name, or token name (cut) */
    char token_id[ID_LEN + 1];      /* tokens */
    char actor[96];                 /* "user:NAME" or "token:ID", for audit_append */
    int mfa_done;                   /* sessions: second factor given */
    int mfa_required;               /* sessions: the role requires one */
    int must_change;                /* sessions: the password must be changed */
    char session[STORE_HASH_HEX + 1];   /* session handle (SHA-256 of its id) */
    char csrf_hash[STORE_HASH_HEX + 1];
    int64_t retry_after_ms;         /* auth_login AUTH_THROTTLED / AUTH_BUSY */
};

/* true when the caller may only change their password or enrol TOTP:
 * must_change, or MFA required and not done. */
bool auth_principal_limited(const struct auth_principal *p);

/* ---- sessions (sessions.c) ---------------------------------------------------- */

/* A new session: id (the cookie value) and csrf (the token every state-
 * changing request must carry), both 256 random bits as base64url, owned
 * by the caller and handed to the client once; only their SHA-256 is kept.
 * handle (the hash of id) names the session in listings and revocations. */
struct auth_session_new {
    struct secret *id;
    struct secret *csrf;
    char handle[STORE_HASH_HEX + 1];
    int64_t expires_at;             /* absolute end, ms */
};
void auth_session_new_clear(struct auth_session_new *s);

/* Create a session for user_id (mfa: a second factor was given). */
int auth_session_create(struct auth *a, int64_t user_id, const char *address,
                        int mfa, struct auth_session_new *out,
                        struct error *err);

/* Validate a session id: AUTH_OK fills *p and refreshes last_seen;
 * AUTH_DENIED (generic message) when malformed or unknown; AUTH_STALE (the
 * same message) when revoked, idle longer than idle_ms, older than
 * absolute_ms, or its user is disabled or gone. */
int auth_session_validate(struct auth *a, const struct secret *id,
                          struct auth_principal *p, struct error *err);

/* Constant-time check of a CSRF token against the session's. false for a
 * token principal: bearer-token requests carry no cookie, so CSRF does not
 * apply and the HTTP layer does not ask. */
bool auth_csrf_check(const struct auth_principal *p,
                     const struct secret *token);

/* Record that the session completed MFA (after a TOTP confirm in it). */
int auth_session_mfa_done(struct auth *a, struct auth_principal *p,
                          struct error *err);

/* Revoke one session by handle. only_user > 0: only if it is that user's
 * (a caller without session.write revoking their own). AUTH_NOT_FOUND. */
int auth_session_revoke(struct auth *a, const struct auth_actor *who,
                        const char *handle, int64_t only_user,
                        struct error *err);
/* Revoke every session of a user (except keep, a handle, or NULL). */
int auth_session_revoke_user(struct auth *a, const struct auth_actor *who,
                             const char *name, const char *keep, int *count,
                             struct error *err);
/* Log out: revoke the session with this id; audited as "logout". */
int auth_logout(struct auth *a, const struct auth_actor *who,
                const struct secret *id, struct error *err);
/* Live sessions of user_id (0: everyone), idle ones left out. Free with
 * store_sessions_free. */
int auth_session_list(struct auth *a, int64_t user_id,
                      struct store_session **out, size_t *n,
                      struct error *err);
/* Delete expired, idle and long-revoked sessions. */
int auth_session_purge(struct auth *a, int *count, struct error *err);

/* Log a person in: password, then (when TOTP is enabled for them) a TOTP
 * code or a recovery code in `code` (NULL when none was given). Audits
 * login.success / login.failure with the address. A user name locked by
 * the per-account throttle is refused before any password check; every
 * failure (password or code) counts for it (throttle.c).
 *   AUTH_OK         *out holds a new session, *p describes it (p->must_change,
 *                   auth_principal_limited() tell the console what to ask);
 *   AUTH_MFA_NEEDED the password is right and a code is needed: no session;
 *   AUTH_THROTTLED  the name is locked for p->retry_after_ms (audited as a
 *                   login.failure "account throttled");
 *   AUTH_BUSY       no password-check slot came free: try again after
 *                   p->retry_after_ms (not a failure; not audited);
 *   AUTH_DENIED     anything else, one generic message. */
int auth_login(struct auth *a, const char *name, const struct secret *password,
               const struct secret *code, const char *address,
               struct auth_session_new *out, struct auth_principal *p,
               struct error *err);

/* ---- API tokens (tokens.c) ---------------------------------------------------------- */

#define AUTH_TOKEN_PREFIX "wharf_"
#define AUTH_TOKEN_DAYS_MAX 3650

/* A new token: "wharf_" + 256 random bits as base64url, owned by the caller
 * and shown once; only its SHA-256 is kept. */
struct auth_token_new {
    struct secret *token;
    char id[ID_LEN + 1];
    int64_t expires_at;             /* ms; 0: never */
};
void auth_token_new_clear(struct auth_token_new *t);

/* Create a token with role, expiring after `days` (0: never; at most
 * AUTH_TOKEN_DAYS_MAX), owned by the user owner_id: it acts as that user
 * (never with more than the user's current role) and stops when the user
 * is disabled or deleted. The owner must exist, be enabled and hold role
 * (AUTH_INVALID otherwise). name: 1..64 printable characters, or NULL
 * ("token"). */
int auth_token_create(struct auth *a, const struct auth_actor *who,
                      int64_t owner_id, const char *name, enum role role,
                      int days, struct auth_token_new *out,
                      struct error *err);
/* AUTH_OK fills *p (role = min(token role, owner's role)) and records last
 * use (at most once a minute); AUTH_DENIED (generic message) when
 * malformed or unknown; AUTH_STALE (the same message) when revoked,
 * expired, without an owner, its owner disabled or deleted, or token
 * authentication is switched off (auth_forms). */
int auth_token_validate(struct auth *a, const struct secret *token,
                        struct auth_principal *p, struct error *err);
/* AUTH_NOT_FOUND when no such live token. */
int auth_token_revoke(struct auth *a, const struct auth_actor *who,
                      const char *id, struct error *err);
/* Every token, newest first. Free with store_tokens_free. */
int auth_token_list(struct auth *a, struct store_token **out, size_t *n,
                    struct error *err);

/* ---- OIDC accounts (oidc_users.c) -------------------------------------------------- */

struct oidc_identity;

/* The user an OIDC login vouched for, by "issuer|subject": created on the
 * first login (name from preferred_username or the e-mail's local part,
 * made unique; no password), its role set to the identity provider's
 * mapped role on every login (the provider is the source of truth).
 * AUTH_OK fills *out (store_user_clear); AUTH_DENIED for a disabled user.
 * Audited (user.create, user.role) with actor "oidc:<issuer>". */
int auth_oidc_user(struct auth *a, const struct oidc_identity *id,
                   struct store_user *out, struct error *err);

#endif
