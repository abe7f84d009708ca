/*
 * api_users.c - users and API tokens (R4, R14, R16). New credentials (a
 * user's one-time password, a token) appear once, in the response that
 * creates them; listings never show them. Nobody can create a token or
 * give a role with more rights than they hold themselves. A token belongs
 * to the user who created it (a token's caller: that token's owner) and
 * acts as them; a client certificate has no user and cannot own one.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "store/auth_store.h"
#include "util/secret.h"

static json_t *user_json(const struct store_user *u)
{
    return json_pack("{s:s, s:s, s:b, s:b, s:b, s:I, s:I}", "name", u->name,
                     "role", u->role, "disabled", u->disabled, "mfa",
                     u->totp_enabled, "must_change", u->must_change,
                     "created_at", (json_int_t)u->created_at, "updated_at",
                     (json_int_t)u->updated_at);
}

int api_users(struct api_ctx *c)
{
    struct error err = {0};
    struct store_user *u = NULL;
    size_t n = 0;
    if (store_user_list(c->st, &u, &n, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, user_json(&u[i]));
    store_users_free(u, n);
    return api_ok(c, 200, json_pack("{s:o}", "users", arr));
}

/* Parse a role and check the caller may grant it. 0 or the reply was sent. */
static int grantable_role(struct api_ctx *c, const char *name, enum role *r)
{
    if (name == NULL || rbac_role_parse(name, r) < 0) {
        api_fail(c, 400, "invalid", "role must be admin, operator, auditor or "
                 "viewer");
        return 1;
    }
    if (!rbac_role_covers(c->who.role, *r)) {
        api_fail(c, 403, "forbidden", "you cannot grant more than you hold");
        return 1;
    }
    return 0;
}

int api_user_create(struct api_ctx *c)
{
    struct error err = {0};
    struct secret *otp = NULL;
    enum role role;
    const char *name = api_body_str(c, "name");
    if (grantable_role(c, api_body_str(c, "role"), &role))
        return 0;
    if (name == NULL)
        return api_fail(c, 400, "invalid", "send {\"name\":..., \"role\":...}");
    int rc = auth_user_create(&c->auth, &c->actor, name, role, NULL, &otp, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    json_t *body = json_pack("{s:s, s:s, s:s%}", "name", name, "role",
                             rbac_role_name(role), "one_time_password",
                             (const char *)secret_data(otp), secret_len(otp));
    secret_free(otp);
    return api_ok(c, 201, body);
}

int api_user_get(struct api_ctx *c)
{
    struct error err = {0};
    struct store_user u;
    int rc = auth_user_get(&c->auth, c->param[0], &u, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    json_t *body = user_json(&u);
    store_user_clear(&u);
    return api_ok(c, 200, body);
}

/* PUT {"role": R} and/or {"disabled": B} and/or {"reset_password": true}
 * and/or {"reset_mfa": true}. */
/* The body of PUT /users/{name}: only role (string) and disabled,
 * reset_password, reset_mfa (booleans). Checked whole before anything is
 * applied, so a wrong member cannot be skipped silently. 0, or -1 with
 * the 400 sent. */
static int user_update_body_ok(struct api_ctx *c)
{
    const char *k;
    json_t *v;
    if (c->body == NULL || !json_is_object(c->body))
        return api_fail(c, 400, "invalid", "send a JSON object"), -1;
    json_object_foreach(c->body, k, v) {
        int ok = !strcmp(k, "role") ? json_is_string(v)
               : (!strcmp(k, "disabled") || !strcmp(k, "reset_password") ||
                  !strcmp(k, "reset_mfa")) ? json_is_boolean(v) : -1;
        if (ok < 0)
            return api_fail(c, 400, "invalid", "unknown member \"%s\": "
                            "send role, disabled, reset_password or "
                            "reset_mfa", k), -1;
        if (!ok)
            return api_fail(c, 400, "invalid", "%s must be %s", k,
                            !strcmp(k, "role") ? "a role name"
                                               : "true or false"), -1;
    }
    return 0;
}

int api_user_update(struct api_ctx *c)
{
    struct error err = {0};
    const char *name = c->param[0];
    json_t *dis = c->body ? json_object_get(c->body, "disabled") : NULL;
    json_t *rp = c->body ? json_object_get(c->body, "reset_password") : NULL;
    json_t *rm = c->body ? json_object_get(c->body, "reset_mfa") : NULL;
    const char *role_name = api_body_str(c, "role");
    struct store_user u;
    enum role role;
    int rc = auth_user_get(&c->auth, name, &u, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);      /* no such user: 404 first */
    store_user_clear(&u);
    if (user_update_body_ok(c) < 0)
        return 0;
    if (!role_name && !json_is_boolean(dis) && !json_is_true(rp) &&
        !json_is_true(rm))
        return api_fail(c, 400, "invalid", "send role, disabled, "
                        "reset_password or reset_mfa");
    if (role_name && grantable_role(c, role_name, &role))
        return 0;
    json_t *body = json_object();
    if (role_name)
        rc = auth_user_set_role(&c->auth, &c->actor, name, role, &err);
    if (rc == AUTH_OK && json_is_boolean(dis))
        rc = auth_user_set_disabled(&c->auth, &c->actor, name,
                                    json_is_true(dis), &err);
    if (rc == AUTH_OK && json_is_true(rm))
        rc = auth_totp_disable(&c->auth, &c->actor, name, &err);
    if (rc == AUTH_OK && json_is_true(rp)) {
        struct secret *otp = auth_password_generate();
        rc = otp ? auth_user_password(&c->auth, &c->actor, name, NULL, otp, 1,
                                      NULL, &err) : AUTH_ERROR;
        if (rc == AUTH_OK)
            json_object_set_new(body, "one_time_password", json_stringn(
                (const char *)secret_data(otp), secret_len(otp)));
        secret_free(otp);
    }
    if (rc != AUTH_OK) {
        json_decref(body);
        return api_auth_fail(c, rc, &err);
    }
    json_object_set_new(body, "status", json_string("updated"));
    return api_ok(c, 200, body);
}

int api_user_delete(struct api_ctx *c)
{
    struct error err = {0};
    int rc = auth_user_delete(&c->auth, &c->actor, c->param[0], &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    return api_ok(c, 200, json_pack("{s:s}", "status", "deleted"));
}

int api_tokens(struct api_ctx *c)
{
    struct error err = {0};
    struct store_token *t = NULL;
    size_t n = 0;
    int rc = auth_token_list(&c->auth, &t, &n, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s?, s:s?, "
            "s:I, s:I, s:I, s:I}", "id", t[i].id, "name", t[i].name, "role",
            t[i].role, "owner", t[i].owner,
            "created_by", t[i].created_by, "created_at",
            (json_int_t)t[i].created_at, "expires_at",
            (json_int_t)t[i].expires_at, "last_used_at",
            (json_int_t)t[i].last_used_at, "revoked_at",
            (json_int_t)t[i].revoked_at));
    store_tokens_free(t, n);
    return api_ok(c, 200, json_pack("{s:o}", "tokens", arr));
}

int api_token_create(struct api_ctx *c)
{
    struct error err = {0};
    struct auth_token_new t = {0};
    enum role role;
    json_t *days = c->body ? json_object_get(c->body, "days") : NULL;
    if (grantable_role(c, api_body_str(c, "role"), &role))
        return 0;
    if (days && !json_is_integer(days))
        return api_fail(c, 400, "invalid", "days must be a whole number");
    if (c->who.user_id <= 0)
        return api_fail(c, 400, "invalid", "a token acts as the user who "
                        "creates it: log in as a user (or use a user's "
                        "token), not a client certificate");
    int rc = auth_token_create(&c->auth, &c->actor, c->who.user_id,
                               api_body_str(c, "name"), role,
                               days ? (int)json_integer_value(days) : 90,
                               &t, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    json_t *body = json_pack("{s:s, s:s, s:s, s:I, s:s%}", "id", t.id, "role",
                             rbac_role_name(role), "owner", c->who.user,
                             "expires_at",
                             (json_int_t)t.expires_at, "token",
                             (const char *)secret_data(t.token),
                             secret_len(t.token));
    auth_token_new_clear(&t);
    return api_ok(c, 201, body);
}

int api_token_revoke(struct api_ctx *c)
{
    struct error err = {0};
    int rc = auth_token_revoke(&c->auth, &c->actor, c->param[0], &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    return api_ok(c, 200, json_pack("{s:s}", "status", "revoked"));
}
