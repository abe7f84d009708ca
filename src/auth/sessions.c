/*
 * sessions.c - console sessions and logging people in (R13).
 *
 * Owns the session lifecycle: a session id and a CSRF token of 256 random
 * bits each (base64url, handed to the caller once; only their SHA-256 is
 * stored, the id's hash being the session's public handle), the idle and
 * absolute timeouts (checked on every validation), revocation (one, all of
 * a user, logout), listing and purging; and auth_login, the one place that
 * turns a name, a password and a second factor into a session and writes
 * login.success / login.failure to the audit trail (a name locked by the
 * per-account throttle, throttle.c, is refused before the password check;
 * every wrong password or code counts for it).
 *
 * Must never: store, log or audit a session id or CSRF token (hashes and
 * 16-digit handle prefixes only); tell a caller why a session or a login
 * was refused (the audit trail and debug log say it to the operator);
 * compare a CSRF token other than in constant time.
 */
#include "auth/auth_internal.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/secret.h"

#define SESSION_BYTES 32            /* 256 bits */
#define SESSION_B64 43              /* unpadded base64url of 32 bytes */
#define TOUCH_MS 1000               /* last_seen is written at most once a second */

void auth_session_new_clear(struct auth_session_new *s)
{
    secret_free(s->id);
    secret_free(s->csrf);
    memset(s, 0, sizeof(*s));
}

static bool handle_valid(const char *h)
{
    if (h == NULL || strlen(h) != STORE_HASH_HEX)
        return false;
    for (int i = 0; i < STORE_HASH_HEX; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return true;
}

/* "session ab12cd34ef56ab78" for the audit trail: a prefix of the hash. */
static void short_handle(const char *h, char *out, size_t n)
{
    snprintf(out, n, "session=%.16s", h);
}

int auth_session_create(struct auth *a, int64_t user_id, const char *address,
                        int mfa, struct auth_session_new *out,
                        struct error *err)
{
    memset(out, 0, sizeof(*out));
    out->id = auth_random_token("", SESSION_BYTES, err);
    out->csrf = out->id ? auth_random_token("", SESSION_BYTES, err) : NULL;
    if (out->csrf == NULL) {
        auth_session_new_clear(out);
        return AUTH_ERROR;
    }
    int64_t now = auth_now(a);
    struct store_session x = {
        .user_id = user_id, .address = (char *)address, .mfa = mfa != 0,
        .created_at = now, .last_seen_at = now,
        .expires_at = now + a->absolute_ms,
    };
    auth_secret_hash(out->id, x.id_hash);
    auth_secret_hash(out->csrf, x.csrf_hash);
    if (store_session_create(a->st, &x, err) < 0) {
        auth_session_new_clear(out);
        return AUTH_ERROR;
    }
    memcpy(out->handle, x.id_hash, sizeof(out->handle));
    out->expires_at = x.expires_at;
    return AUTH_OK;
}

/* Why a stored session is no longer valid at now, or NULL. */
static const char *session_dead(const struct auth *a,
                                const struct store_session *x, int64_t now)
{
    if (x->revoked_at > 0)
        return "revoked";
    if (now >= x->expires_at || now - x->created_at >= a->absolute_ms)
        return "absolute timeout";
    if (now - x->last_seen_at >= a->idle_ms)
        return "idle timeout";
    return NULL;
}

/* Fill p for a session of user u. */
static int principal_fill(struct auth *a, const struct store_user *u,
                          const char *handle, const char *csrf_hash, int mfa,
                          struct auth_principal *p, struct error *err)
{
    p->kind = AUTH_KIND_SESSION;
    auth_principal_user(p, u);
    int req = auth_mfa_required(a->st, p->role, err);
    if (req < 0)
        return AUTH_ERROR;
    p->mfa_required = req;
    p->mfa_done = mfa != 0;
    snprintf(p->session, sizeof(p->session), "%s", handle);
    snprintf(p->csrf_hash, sizeof(p->csrf_hash), "%s", csrf_hash);
    return AUTH_OK;
}

/* The live session x's user into p: AUTH_STALE (*why) when the user is
 * gone or disabled. */
static int session_user(struct auth *a, const struct store_session *x,
                        struct auth_principal *p, const char **why,
                        struct error *err)
{
    struct store_user u;
    int rc = store_user_get_by_id(a->st, x->user_id, &u, err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1 || u.disabled) {
        *why = rc == 1 ? "user deleted" : "user disabled";
        rc = AUTH_STALE;
    } else {
        rc = principal_fill(a, &u, x->id_hash, x->csrf_hash, x->mfa, p, err);
    }
    store_user_clear(&u);
    return rc;
}

/* Look the session up and check it: AUTH_OK, AUTH_DENIED (*why: never a
 * session), AUTH_STALE (*why: one that ended), or AUTH_ERROR. */
static int session_check(struct auth *a, const struct secret *id,
                         int64_t now, struct store_session *x,
                         struct auth_principal *p, const char **why,
                         struct error *err)
{
    char hash[STORE_HASH_HEX + 1];
    *why = "unknown";
    if (id == NULL || secret_len(id) != SESSION_B64)
        return AUTH_DENIED;
    auth_secret_hash(id, hash);
    int rc = store_session_get(a->st, hash, x, err);
    if (rc != 0)
        return rc < 0 ? AUTH_ERROR : AUTH_DENIED;
    if ((*why = session_dead(a, x, now)) != NULL)
        return AUTH_STALE;
    rc = session_user(a, x, p, why, err);
    if (rc == AUTH_OK && now - x->last_seen_at >= TOUCH_MS &&
        store_session_touch(a->st, x->id_hash, now, err) < 0)
        rc = AUTH_ERROR;
    return rc;
}

int auth_session_validate(struct auth *a, const struct secret *id,
                          struct auth_principal *p, struct error *err)
{
    struct store_session x;
    const char *why = NULL;
    memset(&x, 0, sizeof(x));
    auth_principal_deny(p);
    int rc = session_check(a, id, auth_now(a), &x, p, &why, err);
    if (rc == AUTH_DENIED || rc == AUTH_STALE) {
        log_debug("session %.16s refused: %s", x.id_hash[0] ? x.id_hash : "-",
                  why ? why : "unknown");
        error_set(err, AUTH_MSG_SESSION);
    }
    if (rc != AUTH_OK)
        auth_principal_deny(p);
    store_session_clear(&x);
    return rc;
}

bool auth_csrf_check(const struct auth_principal *p,
                     const struct secret *token)
{
    if (p == NULL || p->kind != AUTH_KIND_SESSION || token == NULL ||
        secret_len(token) != SESSION_B64 || p->csrf_hash[0] == '\0')
        return false;
    char hash[STORE_HASH_HEX + 1];
    auth_secret_hash(token, hash);
    return CRYPTO_memcmp(hash, p->csrf_hash, STORE_HASH_HEX) == 0;
}

int auth_session_mfa_done(struct auth *a, struct auth_principal *p,
                          struct error *err)
{
    int rc = store_session_set_mfa(a->st, p->session, err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1)
        return error_set(err, AUTH_MSG_SESSION), AUTH_DENIED;
    p->mfa_done = 1;
    return AUTH_OK;
}

/* ---- revoking ------------------------------------------------------------------------ */

/* The name of the user a session belongs to, into name. */
static void session_owner(struct auth *a, int64_t user_id, char *name,
                          size_t n)
{
    struct store_user u;
    snprintf(name, n, "user-id:%lld", (long long)user_id);
    if (store_user_get_by_id(a->st, user_id, &u, NULL) == 0)
        snprintf(name, n, "%s", u.name);
    store_user_clear(&u);
}

static int revoke_known(struct auth *a, const struct auth_actor *who,
                        const char *hash, int64_t only_user,
                        const char *action, struct error *err)
{
    struct store_session x;
    int rc = store_session_get(a->st, hash, &x, err);
    if (rc < 0)
        return AUTH_ERROR;
    int64_t uid = x.user_id;
    store_session_clear(&x);
    if (rc == 0)
        rc = store_session_revoke(a->st, hash, only_user, auth_now(a), err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1)
        return error_set(err, "no such live session"), AUTH_NOT_FOUND;
    char owner[AUTH_NAME_MAX + 24], detail[40];
    session_owner(a, uid, owner, sizeof(owner));
    short_handle(hash, detail, sizeof(detail));
    return auth_audit(a, who, action, owner, detail, err);
}

int auth_session_revoke(struct auth *a, const struct auth_actor *who,
                        const char *handle, int64_t only_user,
                        struct error *err)
{
    if (!handle_valid(handle))
        return error_set(err, "a session handle is 64 hex digits"),
               AUTH_NOT_FOUND;
    return revoke_known(a, who, handle, only_user, "session.revoke", err);
}

int auth_logout(struct auth *a, const struct auth_actor *who,
                const struct secret *id, struct error *err)
{
    char hash[STORE_HASH_HEX + 1];
    if (id == NULL || secret_len(id) != SESSION_B64)
        return error_set(err, AUTH_MSG_SESSION), AUTH_NOT_FOUND;
    auth_secret_hash(id, hash);
    return revoke_known(a, who, hash, 0, "logout", err);
}

int auth_session_revoke_user(struct auth *a, const struct auth_actor *who,
                             const char *name, const char *keep, int *count,
                             struct error *err)
{
    struct store_user u;
    int n = 0;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK &&
        store_session_revoke_user(a->st, u.id, keep, auth_now(a), &n,
                                  err) < 0)
        rc = AUTH_ERROR;
    if (rc == AUTH_OK) {
        char detail[48];
        snprintf(detail, sizeof(detail), "sessions_revoked=%d", n);
        rc = auth_audit(a, who, "session.revoke_all", name, detail, err);
    }
    if (count)
        *count = n;
    store_user_clear(&u);
    return rc;
}

int auth_session_list(struct auth *a, int64_t user_id,
                      struct store_session **out, size_t *n,
                      struct error *err)
{
    int64_t now = auth_now(a);
    if (store_session_list(a->st, user_id, now, out, n, err) < 0)
        return AUTH_ERROR;
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (session_dead(a, &(*out)[i], now) != NULL) {
            store_session_clear(&(*out)[i]);
            continue;
        }
        (*out)[k++] = (*out)[i];
    }
    *n = k;
    return AUTH_OK;
}

int auth_session_purge(struct auth *a, int *count, struct error *err)
{
    int64_t now = auth_now(a);
    return store_session_delete_expired(a->st, now, now - a->idle_ms,
                                        now - a->absolute_ms, count, err) < 0
               ? AUTH_ERROR : AUTH_OK;
}

/* ---- logging in ------------------------------------------------------------------------- */

static int login_refused(struct auth *a, const struct auth_actor *who,
                         const char *name, const char *why, struct error *err)
{
    struct error e2 = {0};
    const char *target = auth_name_valid(name) ? name : "(invalid user name)";
    if (auth_audit(a, who, "login.failure", target, why, &e2) != AUTH_OK)
        log_error("%s", e2.msg);
    return error_set(err, AUTH_MSG_LOGIN), AUTH_DENIED;
}

/* A wrong password or code: counted for the account's throttle, then
 * refused as above. */
static int login_failed(struct auth *a, const struct auth_actor *who,
                        const char *name, const char *why, struct error *err)
{
    struct error e2 = {0};
    int rc = login_refused(a, who, name, why, err);
    if (auth_throttle_failure(a, who, name, &e2) != AUTH_OK)
        log_error("login throttle of %s: %s", auth_name_valid(name) ? name
                  : "(invalid user name)", e2.msg);
    return rc;
}

/* A name the throttle locked: refused before any password check. */
static int login_throttled(struct auth *a, const struct auth_actor *who,
                           const char *name, int64_t wait_ms,
                           struct auth_principal *p, struct error *err)
{
    login_refused(a, who, name, "account throttled", err);
    p->retry_after_ms = wait_ms;
    return error_set(err, "too many failed logins of this user name: try "
                     "again in %lld s", (long long)((wait_ms + 999) / 1000)),
           AUTH_THROTTLED;
}

/* The second factor, when the user has one. *mfa gets 1 when given. */
static int login_mfa(struct auth *a, const struct auth_actor *who,
                     const struct store_user *u, const struct secret *code,
                     int *mfa, const char **how, struct error *err)
{
    *mfa = 0;
    *how = "none";
    if (!u->totp_enabled)
        return AUTH_OK;
    if (code == NULL || secret_len(code) == 0)
        return error_set(err, "a TOTP code or a recovery code is needed"),
               AUTH_MFA_NEEDED;
    int recovery = 0;
    const char *why = NULL;
    int rc = auth_mfa_check(a, who, u, code, &recovery, &why, err);
    if (rc == AUTH_DENIED)
        return login_failed(a, who, u->name, why, err);
    *mfa = rc == AUTH_OK;
    *how = recovery ? "recovery-code" : "totp";
    return rc;
}

static int login_session(struct auth *a, const struct auth_actor *who,
                         const struct store_user *u, int mfa, const char *how,
                         struct auth_session_new *out,
                         struct auth_principal *p, struct error *err)
{
    char csrf_hash[STORE_HASH_HEX + 1], detail[160], h[40];
    if (auth_session_create(a, u->id, who->address, mfa, out, err) != AUTH_OK)
        return AUTH_ERROR;
    auth_secret_hash(out->csrf, csrf_hash);
    int rc = principal_fill(a, u, out->handle, csrf_hash, mfa, p, err);
    short_handle(out->handle, h, sizeof(h));
    snprintf(detail, sizeof(detail), "mfa=%s %s must_change=%d%s", how, h,
             u->must_change,
             p->mfa_required && !mfa ? " mfa_enrolment_due" : "");
    if (rc == AUTH_OK)
        rc = auth_audit(a, who, "login.success", u->name, detail, err);
    if (rc != AUTH_OK) {
        /* no session without its login.success entry */
        store_session_revoke(a->st, out->handle, 0, auth_now(a), NULL);
        auth_session_new_clear(out);
        auth_principal_deny(p);
    }
    return rc;
}

int auth_login(struct auth *a, const char *name, const struct secret *password,
               const struct secret *code, const char *address,
               struct auth_session_new *out, struct auth_principal *p,
               struct error *err)
{
    char actor[AUTH_NAME_MAX + 8];
    snprintf(actor, sizeof(actor), "user:%s",
             auth_name_valid(name) ? name : "?");
    struct auth_actor who = { actor, address };
    struct store_user u;
    const char *why = NULL, *how = NULL;
    int mfa = 0;
    memset(out, 0, sizeof(*out));
    auth_principal_deny(p);
    int allowed = auth_form_allowed(a->st, "password", err);
    if (allowed <= 0)
        return allowed < 0 ? AUTH_ERROR
               : login_refused(a, &who, name, "password logins are not "
                               "allowed (setting auth_forms)", err);
    int64_t wait = 0;
    int rc = auth_throttle_check(a, name, &wait, err);
    if (rc != 0)
        return rc < 0 ? AUTH_ERROR
                      : login_throttled(a, &who, name, wait, p, err);
    rc = auth_authenticate(a, name, password, &u, &why, err);
    if (rc == AUTH_BUSY)
        p->retry_after_ms = 1000;
    if (rc == AUTH_DENIED)
        return login_failed(a, &who, name, why, err);
    if (rc != AUTH_OK)
        return rc;
    rc = login_mfa(a, &who, &u, code, &mfa, &how, err);
    if (rc == AUTH_OK)
        rc = login_session(a, &who, &u, mfa, how, out, p, err);
    if (rc == AUTH_OK && auth_throttle_success(a, name, err) != AUTH_OK)
        log_warn("login throttle of %s not cleared: %s", name, err->msg);
    store_user_clear(&u);
    return rc;
}
