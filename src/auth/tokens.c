/*
 * tokens.c - API tokens for programs (R4, R14): "wharf_" + 256 random bits
 * as base64url, shown once, stored as SHA-256, each with a role, an owner,
 * an optional expiry and a last-used time, sent by programs as
 * Authorization: Bearer.
 *
 * Owns creation, validation, revocation and listing. A token acts as its
 * owner (a user): it never has more than min(its role, the owner's current
 * role) and stops while the owner is disabled or once the owner is deleted
 * (which revokes it, users.c). Unknown, malformed, revoked, expired and
 * ownerless tokens are refused with one message; the return code tells a
 * credential that was never valid (AUTH_DENIED: counts for the defender)
 * from one that stopped working (AUTH_STALE: a poller with an old token is
 * not an attacker). Last use is written at most once a minute, so a busy
 * client does not turn every request into a database write.
 *
 * Must never: keep, log or audit a token's value (only its hash is stored,
 * only its id is ever named); tell a caller why a token was refused; let a
 * token do what its owner no longer may.
 */
#include "auth/auth_internal.h"

#include <stdio.h>
#include <string.h>

#include "util/log.h"
#include "util/secret.h"

#define TOKEN_BYTES 32
#define TOKEN_LEN (sizeof(AUTH_TOKEN_PREFIX) - 1 + 43)
#define TOKEN_TOUCH_MS 60000
#define DAY_MS (86400 * 1000LL)

void auth_token_new_clear(struct auth_token_new *t)
{
    secret_free(t->token);
    memset(t, 0, sizeof(*t));
}

static bool token_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] > 0x7e)
            return false;
    return true;
}

static int create_args(const char *name, enum role role, int days,
                       struct error *err)
{
    if (rbac_role_name(role) == NULL)
        return error_set(err, "unknown role: use admin, operator, auditor "
                         "or viewer"), AUTH_INVALID;
    if (days < 0 || days > AUTH_TOKEN_DAYS_MAX)
        return error_set(err, "a token expires after 1 to %d days (0: never)",
                         AUTH_TOKEN_DAYS_MAX), AUTH_INVALID;
    if (!token_name_valid(name))
        return error_set(err, "a token name is 1 to 64 printable ASCII "
                         "characters"), AUTH_INVALID;
    return AUTH_OK;
}

/* The owner must exist, be enabled and hold every right of role. */
static int owner_check(struct auth *a, int64_t owner_id, enum role role,
                       char *owner, size_t n, struct error *err)
{
    struct store_user u;
    enum role held = ROLE_COUNT;
    if (owner_id <= 0)
        return error_set(err, "a token needs an owner: a user it acts as"),
               AUTH_INVALID;
    int rc = store_user_get_by_id(a->st, owner_id, &u, err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1 || u.disabled)
        rc = (error_set(err, "the owner of a token must be an enabled user"),
              AUTH_INVALID);
    else if (rbac_role_parse(u.role, &held) < 0 ||
             !rbac_role_covers(held, role))
        rc = (error_set(err, "the owner %s (role %s) does not hold every "
                        "right of role %s: choose a smaller role", u.name,
                        u.role, rbac_role_name(role)), AUTH_INVALID);
    else
        rc = (snprintf(owner, n, "%s", u.name), AUTH_OK);
    store_user_clear(&u);
    return rc;
}

static int token_stored(struct auth *a, const struct auth_actor *who,
                        int64_t owner_id, const char *owner,
                        const char *name, enum role role,
                        struct auth_token_new *out, struct error *err)
{
    char hash[STORE_HASH_HEX + 1], detail[240], when[32] = "never";
    struct store_token t = {
        .name = (char *)name, .role = (char *)rbac_role_name(role),
        .created_by = (char *)(who && who->name ? who->name : "system"),
        .created_at = auth_now(a), .expires_at = out->expires_at,
        .owner_id = owner_id,
    };
    memcpy(t.id, out->id, sizeof(t.id));
    auth_secret_hash(out->token, hash);
    if (store_token_create(a->st, &t, hash, err) < 0)
        return AUTH_ERROR;
    if (out->expires_at)
        time_iso(out->expires_at, when, sizeof(when));
    snprintf(detail, sizeof(detail), "name=%s role=%s owner=%s expires=%s",
             name, t.role, owner, when);
    return auth_audit(a, who, "token.create", out->id, detail, err);
}

int auth_token_create(struct auth *a, const struct auth_actor *who,
                      int64_t owner_id, const char *name, enum role role,
                      int days, struct auth_token_new *out,
                      struct error *err)
{
    char owner[AUTH_NAME_MAX + 1];
    memset(out, 0, sizeof(*out));
    if (name == NULL)
        name = "token";
    int rc = create_args(name, role, days, err);
    if (rc == AUTH_OK)
        rc = owner_check(a, owner_id, role, owner, sizeof(owner), err);
    if (rc != AUTH_OK)
        return rc;
    out->token = auth_random_token(AUTH_TOKEN_PREFIX, TOKEN_BYTES, err);
    if (out->token == NULL)
        return AUTH_ERROR;
    id_new(out->id);
    out->expires_at = days > 0 ? auth_now(a) + days * DAY_MS : 0;
    rc = token_stored(a, who, owner_id, owner, name, role, out, err);
    if (rc != AUTH_OK)
        auth_token_new_clear(out);
    return rc;
}

/* Look up the stored token for a presented value: AUTH_OK when it is
 * live, AUTH_DENIED (never valid) or AUTH_STALE (no longer valid) with
 * *why, AUTH_ERROR. */
static int token_lookup(struct auth *a, const struct secret *token,
                        struct store_token *t, const char **why,
                        struct error *err)
{
    size_t plen = sizeof(AUTH_TOKEN_PREFIX) - 1;
    char hash[STORE_HASH_HEX + 1];
    *why = "malformed";
    if (token == NULL || secret_len(token) != TOKEN_LEN ||
        memcmp(secret_data(token), AUTH_TOKEN_PREFIX, plen) != 0)
        return AUTH_DENIED;
    auth_secret_hash(token, hash);
    int rc = store_token_get_by_hash(a->st, hash, t, err);
    *why = "unknown";
    if (rc != 0)
        return rc < 0 ? AUTH_ERROR : AUTH_DENIED;
    *why = t->revoked_at > 0 ? "revoked"
         : t->expires_at > 0 && auth_now(a) >= t->expires_at ? "expired"
         : t->owner_id <= 0 ? "no owner (deleted, or made before tokens "
                              "had owners)"
         : NULL;
    return *why ? AUTH_STALE : AUTH_OK;
}

/* The owner's current state: AUTH_OK with *role (the owner's role) and the
 * owner's id and name in p, AUTH_STALE (*why) or AUTH_ERROR. */
static int token_owner(struct auth *a, const struct store_token *t,
                       struct auth_principal *p, enum role *role,
                       const char **why, struct error *err)
{
    struct store_user u;
    int rc = store_user_get_by_id(a->st, t->owner_id, &u, err);
    if (rc < 0)
        return AUTH_ERROR;
    *why = rc == 1 ? "owner deleted" : u.disabled ? "owner disabled" : NULL;
    if (*why == NULL) {
        if (rbac_role_parse(u.role, role) < 0)
            *role = ROLE_COUNT;     /* unknown: denied everything */
        p->user_id = u.id;
        snprintf(p->user, sizeof(p->user), "%s", u.name);
    }
    store_user_clear(&u);
    return *why ? AUTH_STALE : AUTH_OK;
}

static int token_principal(struct auth *a, const struct store_token *t,
                           struct auth_principal *p, const char **why,
                           struct error *err)
{
    enum role mine, owners;
    int rc = token_owner(a, t, p, &owners, why, err);
    if (rc != AUTH_OK)
        return rc;
    p->kind = AUTH_KIND_TOKEN;
    if (t->role == NULL || rbac_role_parse(t->role, &mine) < 0)
        mine = ROLE_COUNT;          /* unknown: denied everything */
    p->role = rbac_role_meet(mine, owners);
    snprintf(p->name, sizeof(p->name), "%s", t->name ? t->name : "");
    memcpy(p->token_id, t->id, sizeof(p->token_id));
    snprintf(p->actor, sizeof(p->actor), "token:%s", t->id);
    int64_t now = auth_now(a);
    if (now - t->last_used_at >= TOKEN_TOUCH_MS &&
        store_token_touch(a->st, t->id, now, err) < 0)
        return AUTH_ERROR;
    return AUTH_OK;
}

int auth_token_validate(struct auth *a, const struct secret *token,
                        struct auth_principal *p, struct error *err)
{
    struct store_token t;
    const char *why = "token authentication not allowed";
    auth_principal_deny(p);
    memset(&t, 0, sizeof(t));
    int allowed = auth_form_allowed(a->st, "token", err);
    if (allowed < 0)
        return AUTH_ERROR;
    int rc = allowed ? token_lookup(a, token, &t, &why, err) : AUTH_STALE;
    if (rc == AUTH_OK)
        rc = token_principal(a, &t, p, &why, err);
    if (rc == AUTH_DENIED || rc == AUTH_STALE) {
        log_debug("API token %s refused: %s", t.id[0] ? t.id : "-", why);
        error_set(err, AUTH_MSG_TOKEN);
    }
    if (rc != AUTH_OK)
        auth_principal_deny(p);
    store_token_clear(&t);
    return rc;
}

int auth_token_revoke(struct auth *a, const struct auth_actor *who,
                      const char *id, struct error *err)
{
    if (id == NULL || !id_valid(id))
        return error_set(err, "no such token (an id looks like "
                         "0193a6f2-7c1e-7b3a-9f00-1234567890ab)"),
               AUTH_NOT_FOUND;
    int rc = store_token_revoke(a->st, id, auth_now(a), err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1)
        return error_set(err, "no such live token: %s", id), AUTH_NOT_FOUND;
    return auth_audit(a, who, "token.revoke", id, NULL, err);
}

int auth_token_list(struct auth *a, struct store_token **out, size_t *n,
                    struct error *err)
{
    return store_token_list(a->st, out, n, err) < 0 ? AUTH_ERROR : AUTH_OK;
}
