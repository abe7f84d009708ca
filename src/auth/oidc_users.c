/*
 * oidc_users.c - turning a verified OIDC identity into a Wharf user.
 *
 * An account is keyed by "issuer|subject" (users.oidc_subject), never by
 * e-mail or name, which a provider may let people change. The first login
 * creates the user (no password: it can only log in through the provider);
 * later logins update its role from the provider's claim. A disabled user
 * stays refused whatever the provider says.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "auth/oidc.h"
#include "store/auth_store.h"

static void audit_oidc(struct auth *a, const char *issuer, const char *action,
                       const char *target, const char *detail)
{
    char actor[300];
    struct error err = {0};
    snprintf(actor, sizeof(actor), "oidc:%s", issuer);
    struct audit_event e = { actor, NULL, action, target, detail };
    audit_append(a->st, a->vault, &e, &err);
}

/* A user name from the identity: [a-z0-9._-], at most 48 characters. */
static void base_name(const struct oidc_identity *id, char out[49])
{
    const char *src = id->username ? id->username
                    : id->email ? id->email : id->subject;
    size_t k = 0;
    for (const char *p = src; *p && *p != '@' && k < 48; p++) {
        char ch = (char)tolower((unsigned char)*p);
        out[k++] = (isalnum((unsigned char)ch) || ch == '.' || ch == '_' ||
                    ch == '-') ? ch : '-';
    }
    out[k] = '\0';
    if (k == 0)
        snprintf(out, 49, "oidc-user");
}

static int create_user(struct auth *a, const struct oidc_identity *id,
                       const char *subject, struct store_user *out,
                       struct error *err)
{
    char base[49], name[AUTH_NAME_MAX + 1];
    int64_t uid = 0, now = auth_now(a);
    base_name(id, base);
    for (int k = 1; k < 100 && uid == 0; k++) {
        if (k == 1)
            snprintf(name, sizeof(name), "%s", base);
        else
            snprintf(name, sizeof(name), "%s-%d", base, k);
        int rc = store_user_create(a->st, name, id->role, NULL, 0, now, &uid,
                                   err);
        if (rc < 0)
            return AUTH_ERROR;
        if (rc > 0)
            uid = 0;        /* taken: try the next suffix */
    }
    if (uid == 0)
        return error_set(err, "no free user name for this OIDC account"),
               AUTH_CONFLICT;
    if (store_user_set_subject(a->st, uid, subject, now, err) != 0)
        return AUTH_ERROR;
    audit_oidc(a, id->issuer, "user.create", name, id->role);
    return store_user_get_by_id(a->st, uid, out, err) == 0 ? AUTH_OK
                                                           : AUTH_ERROR;
}

int auth_oidc_user(struct auth *a, const struct oidc_identity *id,
                   struct store_user *out, struct error *err)
{
    char subject[1024];
    snprintf(subject, sizeof(subject), "%s|%s", id->issuer, id->subject);
    int rc = store_user_get_by_subject(a->st, subject, out, err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc > 0)
        return create_user(a, id, subject, out, err);
    if (out->disabled) {
        store_user_clear(out);
        return error_set(err, "this account is disabled"), AUTH_DENIED;
    }
    if (strcmp(out->role, id->role) != 0) {
        int set = store_user_set_role(a->st, out->id, id->role, auth_now(a),
                                      err);
        if (set == 2)       /* the identity provider demotes the last admin */
            error_set(err, "%s is the last enabled administrator and the "
                      "identity provider now gives it the role %s: make "
                      "another user admin first", out->name, id->role);
        if (set != 0) {
            store_user_clear(out);
            return set == 2 ? AUTH_CONFLICT : AUTH_ERROR;
        }
        audit_oidc(a, id->issuer, "user.role", out->name, id->role);
        int64_t uid = out->id;
        store_user_clear(out);
        return store_user_get_by_id(a->st, uid, out, err) == 0 ? AUTH_OK
                                                               : AUTH_ERROR;
    }
    return AUTH_OK;
}
