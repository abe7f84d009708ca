/*
 * api_auth.c - login, logout, the caller's own account (password, TOTP,
 * sessions) and session administration.
 *
 * The session id travels only in the wharf_session cookie (HttpOnly,
 * Secure, SameSite=Strict, Path=/); the CSRF token only in the login
 * response body, once. Neither is ever logged. Login failures, and
 * attempts on a user name the per-account throttle locked, feed the
 * defender (banning after repeated failures, R22); a login that found no
 * free password-check slot is answered 503 with Retry-After and is not a
 * failure.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "net/server.h"
#include "store/auth_store.h"
#include "util/secret.h"
#include "web/qr.h"

/* A secret member of the JSON body, or NULL. Caller frees. */
static struct secret *body_secret(struct api_ctx *c, const char *key)
{
    const char *v = api_body_str(c, key);
    return v ? secret_from(v, strlen(v)) : NULL;
}

static json_t *principal_json(const struct auth_principal *p)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b}", "name", p->name,
                     "user", p->user,
                     "role", rbac_role_name(p->role), "kind",
                     p->kind == AUTH_KIND_SESSION ? "session" : "token",
                     "mfa_done", p->mfa_done, "mfa_required", p->mfa_required,
                     "must_change", p->must_change);
}

static int set_session_cookie(struct api_ctx *c, const struct secret *id,
                              long max_age)
{
    char v[256];
    int n = snprintf(v, sizeof(v), "wharf_session=%.*s; Path=/; HttpOnly; "
                     "Secure; SameSite=Strict; Max-Age=%ld",
                     id ? (int)secret_len(id) : 0,
                     id ? (const char *)secret_data(id) : "", max_age);
    int rc = (n > 0 && (size_t)n < sizeof(v))
                 ? net_reply_header(c->req, "Set-Cookie", v) : -1;
    OPENSSL_cleanse(v, sizeof(v));
    return rc;
}

int api_login(struct api_ctx *c)
{
    struct error err = {0};
    const char *name = api_body_str(c, "user");
    struct secret *pw = body_secret(c, "password");
    struct secret *code = body_secret(c, "code");
    struct auth_session_new s = {0};
    struct auth_principal p;
    int rc = (name && pw) ? auth_login(&c->auth, name, pw, code,
                                       net_req_address(c->req), &s, &p, &err)
                          : AUTH_INVALID;
    secret_free(pw);
    secret_free(code);
    if (rc == AUTH_INVALID)
        return api_fail(c, 400, "invalid", "send {\"user\":..., \"password\":"
                        "..., \"code\": optional TOTP or recovery code}");
    if (rc == AUTH_MFA_NEEDED)
        return api_fail(c, 401, "mfa_needed", "a TOTP or recovery code is "
                        "needed");
    if (rc != AUTH_OK) {
        if (rc == AUTH_DENIED || rc == AUTH_THROTTLED)
            net_req_auth_failure(c->req);
        return api_retry_fail(c, rc, p.retry_after_ms, &err);
    }
    long age = (long)((s.expires_at - auth_now(&c->auth)) / 1000);
    json_t *body = principal_json(&p);
    json_object_set_new(body, "csrf_token", json_stringn(
        (const char *)secret_data(s.csrf), secret_len(s.csrf)));
    json_object_set_new(body, "session", json_string(s.handle));
    rc = set_session_cookie(c, s.id, age > 0 ? age : 1);
    auth_session_new_clear(&s);
    if (rc < 0) {
        json_decref(body);
        return api_fail(c, 500, "internal", "cannot set the session cookie");
    }
    return api_ok(c, 200, body);
}

int api_logout(struct api_ctx *c)
{
    struct error err = {0};
    if (c->who.kind != AUTH_KIND_SESSION)
        return api_fail(c, 400, "invalid", "API tokens have no session; "
                        "revoke the token instead");
    struct secret *id = api_session_cookie(c);
    int rc = id ? auth_logout(&c->auth, &c->actor, id, &err) : AUTH_DENIED;
    secret_free(id);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    set_session_cookie(c, NULL, 0);
    return api_ok(c, 200, json_pack("{s:s}", "status", "logged out"));
}

int api_me(struct api_ctx *c)
{
    json_t *me = principal_json(&c->who);
    api_me_extra(c, me);
    return api_ok(c, 200, me);
}

int api_password(struct api_ctx *c)
{
    struct error err = {0};
    if (c->who.kind != AUTH_KIND_SESSION)
        return api_fail(c, 400, "invalid", "only people have passwords");
    struct secret *old = body_secret(c, "old");
    struct secret *pw = body_secret(c, "new");
    int rc = (old && pw) ? auth_user_password(&c->auth, &c->actor, c->who.name,
                                              old, pw, 0, c->who.session, &err)
                         : AUTH_INVALID;
    secret_free(old);
    secret_free(pw);
    if (rc == AUTH_INVALID && err.msg[0] == '\0')
        error_set(&err, "send {\"old\":..., \"new\":...}");
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    return api_ok(c, 200, json_pack("{s:s}", "status", "password changed"));
}

int api_mfa_enroll(struct api_ctx *c)
{
    struct error err = {0};
    struct secret *uri = NULL;
    if (c->who.kind != AUTH_KIND_SESSION)
        return api_fail(c, 400, "invalid", "only people enrol a second factor");
    int rc = auth_totp_enroll(&c->auth, &c->actor, c->who.name, &uri, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    struct secret *qr = web_qr_data_uri(uri, &err);
    json_t *body = json_pack("{s:s%}", "otpauth_uri",
                             (const char *)secret_data(uri), secret_len(uri));
    if (qr)     /* the picture of the same URI, drawn here (no service) */
        json_object_set_new(body, "qr_svg", json_stringn(
            (const char *)secret_data(qr), secret_len(qr)));
    secret_free(qr);
    secret_free(uri);
    return api_ok(c, 200, body);
}

int api_mfa_confirm(struct api_ctx *c)
{
    struct error err = {0};
    struct secret *code = body_secret(c, "code"), *codes = NULL;
    if (c->who.kind != AUTH_KIND_SESSION || code == NULL) {
        secret_free(code);
        return api_fail(c, 400, "invalid", "send {\"code\":...} in a session");
    }
    int rc = auth_totp_confirm(&c->auth, &c->actor, c->who.name, code, &codes,
                               &err);
    secret_free(code);
    if (rc == AUTH_OK && auth_session_mfa_done(&c->auth, &c->who, &err) != AUTH_OK)
        rc = AUTH_ERROR;
    if (rc != AUTH_OK) {
        secret_free(codes);
        return api_auth_fail(c, rc, &err);
    }
    json_t *body = json_pack("{s:s%}", "recovery_codes",
                             (const char *)secret_data(codes), secret_len(codes));
    secret_free(codes);
    return api_ok(c, 200, body);
}

static json_t *sessions_json(struct store_session *s, size_t n,
                             const char *current)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I, s:s?, s:b, s:I, s:I, "
            "s:I, s:b}", "handle", s[i].id_hash, "user_id",
            (json_int_t)s[i].user_id, "address", s[i].address, "mfa", s[i].mfa,
            "created_at", (json_int_t)s[i].created_at, "last_seen_at",
            (json_int_t)s[i].last_seen_at, "expires_at",
            (json_int_t)s[i].expires_at, "current",
            current && !strcmp(current, s[i].id_hash)));
    return arr;
}

static int list_sessions(struct api_ctx *c, int64_t user_id)
{
    struct error err = {0};
    struct store_session *s = NULL;
    size_t n = 0;
    int rc = auth_session_list(&c->auth, user_id, &s, &n, &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    json_t *arr = sessions_json(s, n, c->who.kind == AUTH_KIND_SESSION
                                ? c->who.session : NULL);
    store_sessions_free(s, n);
    return api_ok(c, 200, json_pack("{s:o}", "sessions", arr));
}

int api_my_sessions(struct api_ctx *c)
{
    if (c->who.kind != AUTH_KIND_SESSION)
        return api_ok(c, 200, json_pack("{s:[]}", "sessions"));
    return list_sessions(c, c->who.user_id);
}

int api_sessions(struct api_ctx *c)
{
    return list_sessions(c, 0);
}

static int revoke(struct api_ctx *c, int64_t only_user)
{
    struct error err = {0};
    int rc = auth_session_revoke(&c->auth, &c->actor, c->param[0], only_user,
                                 &err);
    if (rc != AUTH_OK)
        return api_auth_fail(c, rc, &err);
    return api_ok(c, 200, json_pack("{s:s}", "status", "revoked"));
}

int api_my_session_revoke(struct api_ctx *c)
{
    if (c->who.kind != AUTH_KIND_SESSION)
        return api_fail(c, 404, "not_found", "no such session");
    return revoke(c, c->who.user_id);
}

int api_session_revoke(struct api_ctx *c)
{
    return revoke(c, 0);
}
