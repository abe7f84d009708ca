/*
 * tokens.c - API tokens for programs (R4): "wharf_" + 256 random bits as
 * base64url, shown once, stored as SHA-256, each with a role, an optional
 * expiry and a last-used time, sent by programs as Authorization: Bearer.
 *
 * Owns creation, validation (unknown, malformed, revoked and expired tokens
 * are refused alike), revocation and listing. Last use is written at most
 * once a minute, so a busy client does not turn every request into a
 * database write.
 *
 * Must never: keep, log or audit a token's value (only its hash is stored,
 * only its id is ever named); tell a caller why a token was refused.
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

static int token_stored(struct auth *a, const struct auth_actor *who,
                        const char *name, enum role role,
                        struct auth_token_new *out, struct error *err)
{
    char hash[STORE_HASH_HEX + 1], detail[160], when[32] = "never";
    struct store_token t = {
        .name = (char *)name, .role = (char *)rbac_role_name(role),
        .created_by = (char *)(who && who->name ? who->name : "system"),
        .created_at = auth_now(a), .expires_at = out->expires_at,
    };
    memcpy(t.id, out->id, sizeof(t.id));
    auth_secret_hash(out->token, hash);
    if (store_token_create(a->st, &t, hash, err) < 0)
        return AUTH_ERROR;
    if (out->expires_at)
        time_iso(out->expires_at, when, sizeof(when));
    snprintf(detail, sizeof(detail), "name=%s role=%s expires=%s", name,
             t.role, when);
    return auth_audit(a, who, "token.create", out->id, detail, err);
}

int auth_token_create(struct auth *a, const struct auth_actor *who,
                      const char *name, enum role role, int days,
                      struct auth_token_new *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    if (name == NULL)
        name = "token";
    int rc = create_args(name, role, days, err);
    if (rc != AUTH_OK)
        return rc;
    out->token = auth_random_token(AUTH_TOKEN_PREFIX, TOKEN_BYTES, err);
    if (out->token == NULL)
        return AUTH_ERROR;
    id_new(out->id);
    out->expires_at = days > 0 ? auth_now(a) + days * DAY_MS : 0;
    rc = token_stored(a, who, name, role, out, err);
    if (rc != AUTH_OK)
        auth_token_new_clear(out);
    return rc;
}

/* Look up the stored token for a presented value: NULL when it is valid,
 * else why it is refused (*failed set on a storage error). */
static const char *token_lookup(struct auth *a, const struct secret *token,
                                struct store_token *t, int *failed,
                                struct error *err)
{
    size_t plen = sizeof(AUTH_TOKEN_PREFIX) - 1;
    char hash[STORE_HASH_HEX + 1];
    *failed = 0;
    if (token == NULL || secret_len(token) != TOKEN_LEN ||
        memcmp(secret_data(token), AUTH_TOKEN_PREFIX, plen) != 0)
        return "malformed";
    auth_secret_hash(token, hash);
    int rc = store_token_get_by_hash(a->st, hash, t, err);
    if (rc != 0) {
        *failed = rc < 0;
        return "unknown";
    }
    if (t->revoked_at > 0)
        return "revoked";
    if (t->expires_at > 0 && auth_now(a) >= t->expires_at)
        return "expired";
    return NULL;
}

static int token_principal(struct auth *a, const struct store_token *t,
                           struct auth_principal *p, struct error *err)
{
    p->kind = AUTH_KIND_TOKEN;
    if (t->role == NULL || rbac_role_parse(t->role, &p->role) < 0)
        p->role = ROLE_COUNT;       /* unknown: denied everything */
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
    int failed = 0;
    auth_principal_deny(p);
    memset(&t, 0, sizeof(t));
    int allowed = auth_form_allowed(a->st, "token", err);
    if (allowed < 0)
        return AUTH_ERROR;
    const char *why = allowed ? token_lookup(a, token, &t, &failed, err)
                              : "token authentication not allowed";
    int rc = failed ? AUTH_ERROR
           : why ? AUTH_DENIED : token_principal(a, &t, p, err);
    if (rc == AUTH_DENIED) {
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
