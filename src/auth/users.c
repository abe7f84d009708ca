/*
 * users.c - people (R4, R16): create, authenticate, change password, role,
 * disable, delete; and the first administrator of a new data dir.
 *
 * Owns the rules around users: names [a-z0-9._-]{1,64}; a user created
 * without a password gets a generated one-time password that must be
 * changed at the first login; authentication answers the same way, after
 * the same Argon2id work, whether the name is unknown, the password wrong
 * or the user disabled (no user enumeration, constant-ish time); there is
 * always at least one enabled administrator. Every change is audited with
 * the caller's actor; every disable and password change revokes sessions;
 * deleting a user revokes the API tokens they own (a disabled user's
 * tokens stop working until the user is enabled again: tokens.c).
 *
 * Must never: reveal through a return code, message or timing which part
 * of a login was wrong; audit or log a password; let a change go
 * unaudited without telling the caller (the change is done first, then
 * audited: a failing audit trail is reported as an error).
 */
#include "auth/auth_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/secret.h"

/* Verified when the user does not exist, so an unknown name costs the same
 * Argon2id work as a known one. Its password is irrelevant. */
static const char DUMMY_HASH[] =
    "$argon2id$v=19$m=65536,t=3,p=1$CzBVep/E6Q4zWH2ix+wRNg$"
    "B3Lg0mDp/i9ARiImsyKITEt3q36bO8hUzdpQlENXzmk";

/* The parameter prefix of a hash made with today's parameters. */
#define STR2(x) #x
#define STR(x) STR2(x)
#define CURRENT_PARAMS "$argon2id$v=19$m=" STR(AUTH_ARGON2_M_KIB) \
    ",t=" STR(AUTH_ARGON2_T) ",p=" STR(AUTH_ARGON2_P) "$"

static const struct auth_actor SYSTEM = { "system", NULL };

static int role_valid(enum role role, struct error *err)
{
    if (rbac_role_name(role) == NULL)
        return error_set(err, "unknown role: use admin, operator, auditor "
                         "or viewer"), AUTH_INVALID;
    return AUTH_OK;
}

/* ---- create ------------------------------------------------------------------- */

/* The password to store: the given one (policy checked) or a new one-time
 * password in *generated. */
static int initial_password(const char *name, const struct secret *password,
                            struct secret **generated, struct error *err)
{
    *generated = NULL;
    if (password != NULL)
        return auth_password_policy(name, password, err);
    *generated = auth_password_generate();
    if (*generated == NULL)
        return error_set(err, "cannot generate a one-time password"),
               AUTH_ERROR;
    return AUTH_OK;
}

static int create_stored(struct auth *a, const struct auth_actor *who,
                         const char *name, enum role role,
                         const struct secret *pw, int must_change,
                         struct error *err)
{
    char *hash = NULL;
    int rc = auth_password_hash(pw, &hash, err);
    if (rc != AUTH_OK)
        return rc;
    rc = store_user_create(a->st, name, rbac_role_name(role), hash,
                               must_change, auth_now(a), NULL, err);
    free(hash);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1)
        return error_set(err, "user %s exists already", name), AUTH_CONFLICT;
    char detail[128];
    snprintf(detail, sizeof(detail), "role=%s%s", rbac_role_name(role),
             must_change ? " one-time-password" : "");
    return auth_audit(a, who, "user.create", name, detail, err);
}

int auth_user_create(struct auth *a, const struct auth_actor *who,
                     const char *name, enum role role,
                     const struct secret *password, struct secret **one_time,
                     struct error *err)
{
    if (one_time)
        *one_time = NULL;
    if (!auth_name_valid(name))
        return error_set(err, "a user name is 1 to %d characters of a-z, "
                         "0-9, '.', '_' and '-'", AUTH_NAME_MAX), AUTH_INVALID;
    if (role_valid(role, err) != AUTH_OK)
        return AUTH_INVALID;
    if (password == NULL && one_time == NULL)
        return error_set(err, "internal: nowhere to return the one-time "
                         "password"), AUTH_ERROR;
    struct secret *gen = NULL;
    int rc = initial_password(name, password, &gen, err);
    if (rc == AUTH_OK)
        rc = create_stored(a, who, name, role, gen ? gen : password,
                           gen != NULL, err);
    if (rc == AUTH_OK && gen)
        *one_time = gen;
    else
        secret_free(gen);
    return rc;
}

int auth_user_bootstrap(struct auth *a, struct secret **one_time,
                        struct error *err)
{
    return auth_user_create(a, &SYSTEM, AUTH_FIRST_ADMIN, ROLE_ADMIN, NULL,
                            one_time, err);
}

/* ---- authenticate ---------------------------------------------------------------- */

/* Re-hash with today's parameters after a successful login with old ones.
 * Best effort: a failure leaves the old (still valid) hash. */
static void rehash_if_old(struct auth *a, const struct store_user *u,
                          const struct secret *pw)
{
    if (strncmp(u->password_hash, CURRENT_PARAMS,
                strlen(CURRENT_PARAMS)) == 0)
        return;
    char *hash = NULL;
    struct error e = {0};
    if (auth_password_hash(pw, &hash, &e) == AUTH_OK)
        store_user_set_password(a->st, u->id, hash, u->must_change,
                                auth_now(a), &e);
    free(hash);
}

int auth_authenticate(struct auth *a, const char *name,
                      const struct secret *password, struct store_user *out,
                      const char **reason, struct error *err)
{
    const char *why = NULL;
    memset(out, 0, sizeof(*out));
    int rc = auth_name_valid(name)
                 ? store_user_get_by_name(a->st, name, out, err) : 1;
    if (rc < 0)
        return AUTH_ERROR;
    const char *hash = rc == 0 && out->password_hash ? out->password_hash
                                                     : DUMMY_HASH;
    int match = auth_password_verify(hash, password);
    if (match < 0) {
        store_user_clear(out);
        return error_set(err, "too many password checks at once: try again "
                         "in a second"), AUTH_BUSY;
    }
    if (rc == 1)
        why = "unknown user";
    else if (out->password_hash == NULL)
        why = "no password set";
    else if (!match)
        why = "wrong password";
    else if (out->disabled)
        why = "user disabled";
    if (reason)
        *reason = why;
    if (why != NULL) {
        store_user_clear(out);
        return error_set(err, AUTH_MSG_LOGIN), AUTH_DENIED;
    }
    rehash_if_old(a, out, password);
    return AUTH_OK;
}

/* ---- change ----------------------------------------------------------------------- */

/* A store update's answer (0 done, 1 no such row, -1 error) as AUTH_*. */
static int updated(int store_rc, const char *name, struct error *err)
{
    if (store_rc < 0)
        return AUTH_ERROR;
    if (store_rc == 1)
        return error_set(err, "no such user: %s", name), AUTH_NOT_FOUND;
    if (store_rc == 2)          /* another change took the other admins */
        return error_set(err, "%s is the last enabled administrator: make "
                         "another user admin first", name), AUTH_CONFLICT;
    return AUTH_OK;
}

/* Would this change leave no enabled administrator? */
static int last_admin(struct auth *a, const struct store_user *u,
                      struct error *err)
{
    if (u->disabled || u->role == NULL || strcmp(u->role, "admin") != 0)
        return AUTH_OK;
    int64_t n = store_user_count_role(a->st, "admin", err);
    if (n < 0)
        return AUTH_ERROR;
    if (n <= 1)
        return error_set(err, "%s is the last enabled administrator: make "
                         "another user admin first", u->name), AUTH_CONFLICT;
    return AUTH_OK;
}

static int check_new_password(const struct store_user *u,
                              const struct secret *old,
                              const struct secret *pw, struct error *err)
{
    int same = old != NULL ? auth_password_verify(u->password_hash, old) : 1;
    if (same == 0)
        return error_set(err, "the current password is wrong"), AUTH_DENIED;
    int rc = same < 0 ? AUTH_BUSY : auth_password_policy(u->name, pw, err);
    if (rc == AUTH_OK && (same = auth_password_verify(u->password_hash,
                                                      pw)) != 0)
        rc = same < 0 ? AUTH_BUSY
           : (error_set(err, "the new password must differ from the "
                        "current one"), AUTH_INVALID);
    if (rc == AUTH_BUSY)
        error_set(err, "too many password checks at once: try again in a "
                  "second");
    return rc;
}

static int store_password(struct auth *a, const struct auth_actor *who,
                          const struct store_user *u, const struct secret *pw,
                          int must_change, const char *keep, int self,
                          struct error *err)
{
    char *hash = NULL;
    int revoked = 0;
    int64_t now = auth_now(a);
    int rc = auth_password_hash(pw, &hash, err);
    if (rc != AUTH_OK)
        return rc;
    rc = updated(store_user_set_password(a->st, u->id, hash, must_change,
                                             now, err), u->name, err);
    free(hash);
    if (rc != AUTH_OK)
        return rc;
    if (store_session_revoke_user(a->st, u->id, keep, now, &revoked, err) < 0)
        return AUTH_ERROR;
    char detail[160];
    snprintf(detail, sizeof(detail), "%s must_change=%d sessions_revoked=%d",
             self ? "changed by the user" : "set by an administrator",
             must_change ? 1 : 0, revoked);
    return auth_audit(a, who, "user.password", u->name, detail, err);
}

int auth_user_password(struct auth *a, const struct auth_actor *who,
                       const char *name, const struct secret *old,
                       const struct secret *password, int must_change,
                       const char *keep_session, struct error *err)
{
    struct store_user u;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK)
        rc = check_new_password(&u, old, password, err);
    if (rc == AUTH_OK)
        rc = store_password(a, who, &u, password, must_change, keep_session,
                            old != NULL, err);
    store_user_clear(&u);
    return rc;
}

int auth_user_set_role(struct auth *a, const struct auth_actor *who,
                       const char *name, enum role role, struct error *err)
{
    struct store_user u;
    if (role_valid(role, err) != AUTH_OK)
        return AUTH_INVALID;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK && role != ROLE_ADMIN)
        rc = last_admin(a, &u, err);
    if (rc == AUTH_OK)
        rc = updated(store_user_set_role(a->st, u.id, rbac_role_name(role),
                                         auth_now(a), err), name, err);
    if (rc == AUTH_OK) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%s -> %s", u.role,
                 rbac_role_name(role));
        rc = auth_audit(a, who, "user.role", name, detail, err);
    }
    store_user_clear(&u);
    return rc;
}

int auth_user_set_disabled(struct auth *a, const struct auth_actor *who,
                           const char *name, int disabled, struct error *err)
{
    struct store_user u;
    int revoked = 0;
    int64_t now = auth_now(a);
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK && disabled)
        rc = last_admin(a, &u, err);
    if (rc == AUTH_OK)
        rc = updated(store_user_set_disabled(a->st, u.id, disabled, now, err),
                     name, err);
    if (rc == AUTH_OK && disabled &&
        store_session_revoke_user(a->st, u.id, NULL, now, &revoked, err) < 0)
        rc = AUTH_ERROR;
    if (rc == AUTH_OK) {
        char detail[64];
        snprintf(detail, sizeof(detail), "sessions_revoked=%d", revoked);
        rc = auth_audit(a, who, disabled ? "user.disable" : "user.enable",
                        name, disabled ? detail : NULL, err);
    }
    store_user_clear(&u);
    return rc;
}

int auth_user_delete(struct auth *a, const struct auth_actor *who,
                     const char *name, struct error *err)
{
    struct store_user u;
    int tokens = 0;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK)
        rc = last_admin(a, &u, err);
    if (rc == AUTH_OK)
        rc = updated(store_user_delete(a->st, u.id, auth_now(a), &tokens,
                                       err), name, err);
    if (rc == AUTH_OK) {
        char detail[48];
        snprintf(detail, sizeof(detail), "tokens_revoked=%d", tokens);
        rc = auth_audit(a, who, "user.delete", name, detail, err);
    }
    store_user_clear(&u);
    return rc;
}
