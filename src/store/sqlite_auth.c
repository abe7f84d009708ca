/*
 * sqlite_auth.c - the SQLite statements of auth_store.h: users, recovery
 * codes, sessions and API tokens (tables of migration 2 in sqlite.c), the
 * owner of a token, the per-account login throttle and the webhook HMAC
 * signatures seen (migration 6).
 *
 * Owns statement cache slots 32..95 of store_stmt_ext and nothing else.
 * Every statement is a constant string with bound parameters. Checks that
 * must not race (a TOTP step used twice, a recovery code used twice, a
 * revoked session) are single conditional UPDATEs whose change count is
 * the answer, so two concurrent requests cannot both win.
 *
 * On a PostgreSQL store each entry point hands the call to its pg_auth.c
 * twin (pgs_*), which runs the same statements for several nodes at once.
 *
 * Must never: decide policy (src/auth/ does), see or log a secret in clear
 * (it receives hashes and sealed blobs only), or build SQL from data.
 */
#include "store/auth_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_auth.h"
#include "store/store_internal.h"

enum {
    A_USER_INS = 32, A_USER_BY_NAME, A_USER_BY_ID, A_USER_LIST, A_USER_ROLE,
    A_USER_PW, A_USER_DISABLED, A_USER_TOTP, A_USER_TOTP_NEW, A_USER_STEP,
    A_USER_DEL, A_USER_COUNT_ROLE,
    A_RC_DEL, A_RC_INS, A_RC_USE, A_RC_LEFT,
    A_SES_INS, A_SES_GET, A_SES_TOUCH, A_SES_MFA, A_SES_REVOKE,
    A_SES_REVOKE_USER, A_SES_LIST, A_SES_LIST_USER, A_SES_PURGE,
    A_TOK_INS, A_TOK_BY_HASH, A_TOK_GET, A_TOK_TOUCH, A_TOK_REVOKE,
    A_TOK_LIST, A_USER_BY_SUBJECT, A_USER_SUBJECT,
    A_TOK_REVOKE_OWNER, A_THR_GET, A_THR_PUT, A_THR_DEL, A_THR_PRUNE,
    A_RPL_CLAIM, A_RPL_DONE, A_RPL_RELEASE, A_RPL_PRUNE, A_USER_IS_ADMIN,
    A_LAST
};
_Static_assert(A_LAST <= 96, "sqlite_auth.c owns statement slots 32..95");

#define USER_COLS "id, name, role, password_hash, must_change, totp_sealed," \
    " totp_enabled, totp_last_step, oidc_subject, disabled, created_at," \
    " updated_at"
#define SES_COLS "id_hash, user_id, csrf_hash, address, mfa, created_at," \
    " last_seen_at, expires_at, revoked_at"
#define TOK_COLS "t.id, t.name, t.role, t.created_by, t.created_at," \
    " t.expires_at, t.last_used_at, t.revoked_at, t.owner_id, u.name"
#define TOK_FROM " FROM tokens t LEFT JOIN users u ON u.id = t.owner_id"
#define THR_COLS "failures, first_at, level, locked_until, updated_at"

static const char *const SQL_AUTH[A_LAST - 32] = {
#define Q(slot) [(slot) - 32]
    Q(A_USER_INS) = "INSERT INTO users(name, role, password_hash, must_change,"
        " created_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?5)"
        " ON CONFLICT(name) DO NOTHING",
    Q(A_USER_BY_NAME) = "SELECT " USER_COLS " FROM users WHERE name = ?1",
    Q(A_USER_BY_ID) = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    Q(A_USER_BY_SUBJECT) = "SELECT " USER_COLS " FROM users"
        " WHERE oidc_subject = ?1",
    Q(A_USER_SUBJECT) = "UPDATE users SET oidc_subject = ?2, updated_at = ?3"
        " WHERE id = ?1",
    Q(A_USER_LIST) = "SELECT id, name, role, NULL, must_change, NULL,"
        " totp_enabled, totp_last_step, oidc_subject, disabled, created_at,"
        " updated_at FROM users ORDER BY name",
    Q(A_USER_ROLE) = "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
    Q(A_USER_PW) = "UPDATE users SET password_hash = ?2, must_change = ?3,"
        " updated_at = ?4 WHERE id = ?1",
    Q(A_USER_DISABLED) = "UPDATE users SET disabled = ?2, updated_at = ?3"
        " WHERE id = ?1",
    Q(A_USER_TOTP) = "UPDATE users SET totp_enabled = 1, updated_at = ?2"
        " WHERE id = ?1 AND totp_sealed IS NOT NULL",
    Q(A_USER_TOTP_NEW) = "UPDATE users SET totp_sealed = ?2, totp_enabled = 0,"
        " totp_last_step = 0, updated_at = ?3 WHERE id = ?1",
    Q(A_USER_STEP) = "UPDATE users SET totp_last_step = ?2 WHERE id = ?1"
        " AND totp_last_step < ?2",
    Q(A_USER_DEL) = "DELETE FROM users WHERE id = ?1",
    Q(A_USER_COUNT_ROLE) = "SELECT COUNT(*) FROM users WHERE role = ?1"
        " AND disabled = 0",
    Q(A_USER_IS_ADMIN) = "SELECT COUNT(*) FROM users WHERE id = ?1"
        " AND role = 'admin' AND disabled = 0",
    Q(A_RC_DEL) = "DELETE FROM recovery_codes WHERE user_id = ?1",
    Q(A_RC_INS) = "INSERT OR IGNORE INTO recovery_codes(user_id, code_hash)"
        " VALUES(?1, ?2)",
    Q(A_RC_USE) = "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1"
        " AND code_hash = ?2 AND used_at IS NULL",
    Q(A_RC_LEFT) = "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1"
        " AND used_at IS NULL",
    Q(A_SES_INS) = "INSERT INTO sessions(" SES_COLS ")"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)",
    Q(A_SES_GET) = "SELECT " SES_COLS " FROM sessions WHERE id_hash = ?1",
    Q(A_SES_TOUCH) = "UPDATE sessions SET last_seen_at = ?2 WHERE id_hash = ?1"
        " AND revoked_at IS NULL AND last_seen_at < ?2",
    Q(A_SES_MFA) = "UPDATE sessions SET mfa = 1 WHERE id_hash = ?1"
        " AND revoked_at IS NULL",
    Q(A_SES_REVOKE) = "UPDATE sessions SET revoked_at = ?3 WHERE id_hash = ?1"
        " AND revoked_at IS NULL AND (?2 <= 0 OR user_id = ?2)",
    Q(A_SES_REVOKE_USER) = "UPDATE sessions SET revoked_at = ?2"
        " WHERE user_id = ?1 AND revoked_at IS NULL"
        " AND id_hash IS NOT COALESCE(?3, '')",
    Q(A_SES_LIST) = "SELECT " SES_COLS " FROM sessions WHERE revoked_at IS NULL"
        " AND expires_at > ?1 ORDER BY created_at DESC, id_hash",
    Q(A_SES_LIST_USER) = "SELECT " SES_COLS " FROM sessions WHERE user_id = ?2"
        " AND revoked_at IS NULL AND expires_at > ?1"
        " ORDER BY created_at DESC, id_hash",
    Q(A_SES_PURGE) = "DELETE FROM sessions WHERE expires_at <= ?1"
        " OR last_seen_at < ?2 OR (revoked_at IS NOT NULL AND revoked_at < ?3)",
    Q(A_TOK_INS) = "INSERT INTO tokens(id, name, hash, role, created_by,"
        " created_at, expires_at, owner_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7,"
        " ?8)",
    Q(A_TOK_BY_HASH) = "SELECT " TOK_COLS TOK_FROM " WHERE t.hash = ?1",
    Q(A_TOK_GET) = "SELECT " TOK_COLS TOK_FROM " WHERE t.id = ?1",
    Q(A_TOK_TOUCH) = "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
    Q(A_TOK_REVOKE) = "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1"
        " AND revoked_at IS NULL",
    Q(A_TOK_LIST) = "SELECT " TOK_COLS TOK_FROM
        " ORDER BY t.created_at DESC, t.id DESC",
    Q(A_TOK_REVOKE_OWNER) = "UPDATE tokens SET revoked_at = ?2"
        " WHERE owner_id = ?1 AND revoked_at IS NULL",
    Q(A_THR_GET) = "SELECT " THR_COLS " FROM login_throttle WHERE account = ?1",
    Q(A_THR_PUT) = "INSERT INTO login_throttle(account, " THR_COLS ")"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(account) DO UPDATE SET"
        " failures = ?2, first_at = ?3, level = ?4, locked_until = ?5,"
        " updated_at = ?6",
    Q(A_THR_DEL) = "DELETE FROM login_throttle WHERE account = ?1",
    Q(A_THR_PRUNE) = "DELETE FROM login_throttle WHERE updated_at < ?1"
        " AND locked_until < ?2",
    Q(A_RPL_CLAIM) = "INSERT INTO replay_guard(scope, sig, until, run, done)"
        " VALUES(?1, ?2, ?3, ?4, 0) ON CONFLICT(scope, sig) DO UPDATE SET"
        " until = excluded.until, run = excluded.run, done = 0"
        " WHERE replay_guard.until < ?5"
        " OR (replay_guard.done = 0 AND replay_guard.run <> excluded.run)",
    Q(A_RPL_DONE) = "UPDATE replay_guard SET done = 1 WHERE scope = ?1"
        " AND sig = ?2",
    Q(A_RPL_RELEASE) = "DELETE FROM replay_guard WHERE scope = ?1 AND sig = ?2"
        " AND run = ?3 AND done = 0",
    Q(A_RPL_PRUNE) = "DELETE FROM replay_guard WHERE until < ?1",
#undef Q
};

/* ---- helpers ------------------------------------------------------------------ */

static sqlite3_stmt *stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_AUTH[slot - 32], err);
}

/* Run a bound UPDATE/DELETE: 0 when a row changed, 1 when none did. */
static int step_changed(struct store *s, sqlite3_stmt *st, struct error *err,
                        const char *what)
{
    if (store_step_done(s, st, err, what) < 0)
        return -1;
    return sqlite3_changes(store_db(s)) > 0 ? 0 : 1;
}

static int64_t col_i64(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL
               ? 0 : sqlite3_column_int64(st, i);
}

static void col_fixed(sqlite3_stmt *st, int i, char *out, size_t n)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t len = t ? strlen((const char *)t) : 0;
    if (len >= n)
        len = n - 1;
    if (len)
        memcpy(out, t, len);
    out[len] = '\0';
}

/* A one-row, one-integer query (already bound). -1 on error. */
static int64_t count_query(struct store *s, sqlite3_stmt *st,
                           struct error *err, const char *what)
{
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        store_db_error(s, err, what);
    return v;
}

/* Grow *arr (of elements of size sz) so index *n fits; -1 out of memory. */
static int grow(void **arr, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, c * sz);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

/* ---- users ------------------------------------------------------------------------ */

void store_user_clear(struct store_user *u)
{
    if (u == NULL)
        return;
    free(u->name);
    free(u->role);
    free(u->password_hash);
    free(u->totp_sealed);
    free(u->oidc_subject);
    memset(u, 0, sizeof(*u));
}

void store_users_free(struct store_user *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_user_clear(&u[i]);
    free(u);
}

static void user_row(sqlite3_stmt *st, struct store_user *u)
{
    memset(u, 0, sizeof(*u));
    u->id = sqlite3_column_int64(st, 0);
    u->name = store_col_dup(st, 1);
    u->role = store_col_dup(st, 2);
    u->password_hash = store_col_dup(st, 3);
    u->must_change = sqlite3_column_int(st, 4);
    int len = sqlite3_column_bytes(st, 5);
    const void *blob = sqlite3_column_blob(st, 5);
    if (blob != NULL && len > 0 && (u->totp_sealed = malloc((size_t)len))) {
        memcpy(u->totp_sealed, blob, (size_t)len);
        u->totp_sealed_len = (size_t)len;
    }
    u->totp_enabled = sqlite3_column_int(st, 6);
    u->totp_last_step = sqlite3_column_int64(st, 7);
    u->oidc_subject = store_col_dup(st, 8);
    u->disabled = sqlite3_column_int(st, 9);
    u->created_at = sqlite3_column_int64(st, 10);
    u->updated_at = sqlite3_column_int64(st, 11);
}

int store_user_create(struct store *s, const char *name, const char *role,
                      const char *password_hash, int must_change, int64_t now,
                      int64_t *id, struct error *err)
{
    if (store_pg(s))
        return pgs_user_create(store_pg(s), name, role, password_hash,
                               must_change, now, id, err);
    sqlite3_stmt *st = stmt(s, A_USER_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, name);
    store_bind_text(st, 2, role);
    store_bind_text(st, 3, password_hash);
    sqlite3_bind_int(st, 4, must_change ? 1 : 0);
    sqlite3_bind_int64(st, 5, now);
    int rc = step_changed(s, st, err, "insert user");
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(store_db(s));
    return rc;
}

static int user_get(struct store *s, sqlite3_stmt *st, struct store_user *out,
                    struct error *err)
{
    memset(out, 0, sizeof(*out));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        user_row(st, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read user");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_user_get_by_name(struct store *s, const char *name,
                           struct store_user *out, struct error *err)
{
    if (store_pg(s))
        return pgs_user_get_by_name(store_pg(s), name, out, err);
    sqlite3_stmt *st = stmt(s, A_USER_BY_NAME, err);
    if (st == NULL)
        return memset(out, 0, sizeof(*out)), -1;
    store_bind_text(st, 1, name);
    return user_get(s, st, out, err);
}

int store_user_get_by_id(struct store *s, int64_t id, struct store_user *out,
                         struct error *err)
{
    if (store_pg(s))
        return pgs_user_get_by_id(store_pg(s), id, out, err);
    sqlite3_stmt *st = stmt(s, A_USER_BY_ID, err);
    if (st == NULL)
        return memset(out, 0, sizeof(*out)), -1;
    sqlite3_bind_int64(st, 1, id);
    return user_get(s, st, out, err);
}

int store_user_get_by_subject(struct store *s, const char *subject,
                              struct store_user *out, struct error *err)
{
    if (store_pg(s))
        return pgs_user_get_by_subject(store_pg(s), subject, out, err);
    sqlite3_stmt *st = stmt(s, A_USER_BY_SUBJECT, err);
    if (st == NULL)
        return memset(out, 0, sizeof(*out)), -1;
    store_bind_text(st, 1, subject);
    return user_get(s, st, out, err);
}

int store_user_set_subject(struct store *s, int64_t id, const char *subject,
                           int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_user_set_subject(store_pg(s), id, subject, now, err);
    sqlite3_stmt *st = stmt(s, A_USER_SUBJECT, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    store_bind_text(st, 2, subject);
    sqlite3_bind_int64(st, 3, now);
    if (store_step_done(s, st, err, "set OIDC subject") < 0)
        return -1;
    return sqlite3_changes(store_db(s)) ? 0 : 1;
}

int store_user_list(struct store *s, struct store_user **out, size_t *n,
                    struct error *err)
{
    if (store_pg(s))
        return pgs_user_list(store_pg(s), out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, A_USER_LIST, err);
    if (st == NULL)
        return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)out, &cap, *n, sizeof(**out)) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        user_row(st, &(*out)[(*n)++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_users_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "list users");
    }
    return 0;
}

/* ---- the last enabled administrator ------------------------------------ */

/* What a guarded change writes (one of the three below). */
struct user_change {
    int64_t id, now;
    const char *role;           /* set_role */
    int disabled;               /* set_disabled */
    int *revoked;               /* delete: tokens revoked */
};

/* 1 when user id is an enabled administrator, 0 when not, -1 error. */
static int enabled_admin(struct store *s, int64_t id, struct error *err)
{
    sqlite3_stmt *st = stmt(s, A_USER_IS_ADMIN, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) > 0 : -1;
    sqlite3_reset(st);
    return v < 0 ? store_db_error(s, err, "look up a user") : v;
}

/* write (0 done, 1 no such user, -1) and the check that an enabled
 * administrator is left, in one IMMEDIATE transaction: changes from every
 * node take turns, so two of them never both pass the check. 2 (nothing
 * written) when the change would leave none. */
static int admin_guarded(struct store *s, const struct user_change *c,
                         int (*write)(struct store *, const struct user_change *,
                                      struct error *),
                         struct error *err)
{
    if (store_tx_begin(s, err) < 0)
        return -1;
    int was = enabled_admin(s, c->id, err);
    int rc = was < 0 ? -1 : write(s, c, err);
    if (rc == 0 && was == 1) {
        int64_t left = store_user_count_role(s, "admin", err);
        rc = left < 0 ? -1 : left == 0 ? 2 : 0;
    }
    if (rc != 0) {
        store_tx_fail(s);
        return rc;
    }
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

static int role_write(struct store *s, const struct user_change *c,
                      struct error *err)
{
    sqlite3_stmt *st = stmt(s, A_USER_ROLE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, c->id);
    store_bind_text(st, 2, c->role);
    sqlite3_bind_int64(st, 3, c->now);
    return step_changed(s, st, err, "update user role");
}

int store_user_set_role(struct store *s, int64_t id, const char *role,
                        int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_user_set_role(store_pg(s), id, role, now, err);
    struct user_change c = { .id = id, .now = now, .role = role };
    return admin_guarded(s, &c, role_write, err);
}

int store_user_set_password(struct store *s, int64_t id, const char *hash,
                            int must_change, int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_user_set_password(store_pg(s), id, hash, must_change, now,
                                     err);
    sqlite3_stmt *st = stmt(s, A_USER_PW, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    store_bind_text(st, 2, hash);
    sqlite3_bind_int(st, 3, must_change ? 1 : 0);
    sqlite3_bind_int64(st, 4, now);
    return step_changed(s, st, err, "update user password");
}

static int disabled_write(struct store *s, const struct user_change *c,
                          struct error *err)
{
    sqlite3_stmt *st = stmt(s, A_USER_DISABLED, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, c->id);
    sqlite3_bind_int(st, 2, c->disabled ? 1 : 0);
    sqlite3_bind_int64(st, 3, c->now);
    return step_changed(s, st, err, "update user");
}

int store_user_set_disabled(struct store *s, int64_t id, int disabled,
                            int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_user_set_disabled(store_pg(s), id, disabled, now, err);
    struct user_change c = { .id = id, .now = now, .disabled = disabled };
    return admin_guarded(s, &c, disabled_write, err);
}

int store_user_set_totp(struct store *s, int64_t id,
                        const unsigned char *sealed, size_t len, int64_t now,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_user_set_totp(store_pg(s), id, sealed, len, now, err);
    sqlite3_stmt *st = stmt(s, A_USER_TOTP_NEW, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    if (sealed != NULL && len > 0)
        sqlite3_bind_blob(st, 2, sealed, (int)len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, now);
    return step_changed(s, st, err, "update user TOTP");
}

int store_user_enable_totp(struct store *s, int64_t id, int64_t now,
                           struct error *err)
{
    if (store_pg(s))
        return pgs_user_enable_totp(store_pg(s), id, now, err);
    sqlite3_stmt *st = stmt(s, A_USER_TOTP, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    return step_changed(s, st, err, "enable user TOTP");
}

int store_user_totp_step(struct store *s, int64_t id, int64_t step,
                         struct error *err)
{
    if (store_pg(s))
        return pgs_user_totp_step(store_pg(s), id, step, err);
    sqlite3_stmt *st = stmt(s, A_USER_STEP, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, step);
    return step_changed(s, st, err, "record TOTP step");
}

static int tokens_revoke_owner(struct store *s, int64_t owner, int64_t now,
                               int *count, struct error *err)
{
    sqlite3_stmt *st = stmt(s, A_TOK_REVOKE_OWNER, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, owner);
    sqlite3_bind_int64(st, 2, now);
    if (store_step_done(s, st, err, "revoke the user's tokens") < 0)
        return -1;
    *count = sqlite3_changes(store_db(s));
    return 0;
}

static int delete_write(struct store *s, const struct user_change *c,
                        struct error *err)
{
    sqlite3_stmt *st = NULL;
    if (tokens_revoke_owner(s, c->id, c->now, c->revoked, err) < 0 ||
        (st = stmt(s, A_USER_DEL, err)) == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, c->id);
    return step_changed(s, st, err, "delete user");
}

int store_user_delete(struct store *s, int64_t id, int64_t now,
                      int *tokens_revoked, struct error *err)
{
    if (store_pg(s))
        return pgs_user_delete(store_pg(s), id, now, tokens_revoked, err);
    int n = 0;
    struct user_change c = { .id = id, .now = now, .revoked = &n };
    int rc = admin_guarded(s, &c, delete_write, err);
    if (rc == 0 && tokens_revoked)
        *tokens_revoked = n;
    return rc;
}

int64_t store_user_count_role(struct store *s, const char *role,
                              struct error *err)
{
    if (store_pg(s))
        return pgs_user_count_role(store_pg(s), role, err);
    sqlite3_stmt *st = stmt(s, A_USER_COUNT_ROLE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, role);
    return count_query(s, st, err, "count users");
}

/* ---- recovery codes ------------------------------------------------------------- */

int store_recovery_clear(struct store *s, int64_t user_id, struct error *err)
{
    if (store_pg(s))
        return pgs_recovery_clear(store_pg(s), user_id, err);
    sqlite3_stmt *st = stmt(s, A_RC_DEL, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, user_id);
    return store_step_done(s, st, err, "delete recovery codes");
}

static int recovery_insert(struct store *s, int64_t user_id,
                           const char *hash, struct error *err)
{
    sqlite3_stmt *st = stmt(s, A_RC_INS, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, user_id);
    store_bind_text(st, 2, hash);
    return store_step_done(s, st, err, "insert recovery code");
}

int store_recovery_replace(struct store *s, int64_t user_id,
                           const char *const *hashes, size_t n, int64_t now,
                           struct error *err)
{
    if (store_pg(s))
        return pgs_recovery_replace(store_pg(s), user_id, hashes, n, now, err);
    (void)now;
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (store_recovery_clear(s, user_id, err) < 0)
        return store_tx_fail(s);
    for (size_t i = 0; i < n; i++)
        if (recovery_insert(s, user_id, hashes[i], err) < 0)
            return store_tx_fail(s);
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 0;
}

int store_recovery_consume(struct store *s, int64_t user_id, const char *hash,
                           int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_recovery_consume(store_pg(s), user_id, hash, now, err);
    sqlite3_stmt *st = stmt(s, A_RC_USE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, user_id);
    store_bind_text(st, 2, hash);
    sqlite3_bind_int64(st, 3, now);
    return step_changed(s, st, err, "use recovery code");
}

int64_t store_recovery_left(struct store *s, int64_t user_id,
                            struct error *err)
{
    if (store_pg(s))
        return pgs_recovery_left(store_pg(s), user_id, err);
    sqlite3_stmt *st = stmt(s, A_RC_LEFT, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, user_id);
    return count_query(s, st, err, "count recovery codes");
}

/* ---- sessions ----------------------------------------------------------------------- */

void store_session_clear(struct store_session *x)
{
    if (x == NULL)
        return;
    free(x->address);
    memset(x, 0, sizeof(*x));
}

void store_sessions_free(struct store_session *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_session_clear(&x[i]);
    free(x);
}

static void session_row(sqlite3_stmt *st, struct store_session *x)
{
    memset(x, 0, sizeof(*x));
    col_fixed(st, 0, x->id_hash, sizeof(x->id_hash));
    x->user_id = sqlite3_column_int64(st, 1);
    col_fixed(st, 2, x->csrf_hash, sizeof(x->csrf_hash));
    x->address = store_col_dup(st, 3);
    x->mfa = sqlite3_column_int(st, 4);
    x->created_at = sqlite3_column_int64(st, 5);
    x->last_seen_at = sqlite3_column_int64(st, 6);
    x->expires_at = sqlite3_column_int64(st, 7);
    x->revoked_at = col_i64(st, 8);
}

int store_session_create(struct store *s, const struct store_session *x,
                         struct error *err)
{
    if (store_pg(s))
        return pgs_session_create(store_pg(s), x, err);
    sqlite3_stmt *st = stmt(s, A_SES_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, x->id_hash);
    sqlite3_bind_int64(st, 2, x->user_id);
    store_bind_text(st, 3, x->csrf_hash);
    store_bind_text(st, 4, x->address);
    sqlite3_bind_int(st, 5, x->mfa ? 1 : 0);
    sqlite3_bind_int64(st, 6, x->created_at);
    sqlite3_bind_int64(st, 7, x->last_seen_at);
    sqlite3_bind_int64(st, 8, x->expires_at);
    return store_step_done(s, st, err, "insert session");
}

int store_session_get(struct store *s, const char *id_hash,
                      struct store_session *out, struct error *err)
{
    if (store_pg(s))
        return pgs_session_get(store_pg(s), id_hash, out, err);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = stmt(s, A_SES_GET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id_hash);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        session_row(st, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read session");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_session_touch(struct store *s, const char *id_hash, int64_t now,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_session_touch(store_pg(s), id_hash, now, err);
    sqlite3_stmt *st = stmt(s, A_SES_TOUCH, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id_hash);
    sqlite3_bind_int64(st, 2, now);
    return step_changed(s, st, err, "touch session") < 0 ? -1 : 0;
}

int store_session_set_mfa(struct store *s, const char *id_hash,
                          struct error *err)
{
    if (store_pg(s))
        return pgs_session_set_mfa(store_pg(s), id_hash, err);
    sqlite3_stmt *st = stmt(s, A_SES_MFA, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id_hash);
    return step_changed(s, st, err, "update session");
}

int store_session_revoke(struct store *s, const char *id_hash,
                         int64_t user_id, int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_session_revoke(store_pg(s), id_hash, user_id, now, err);
    sqlite3_stmt *st = stmt(s, A_SES_REVOKE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id_hash);
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_int64(st, 3, now);
    return step_changed(s, st, err, "revoke session");
}

int store_session_revoke_user(struct store *s, int64_t user_id,
                              const char *keep, int64_t now, int *count,
                              struct error *err)
{
    if (store_pg(s))
        return pgs_session_revoke_user(store_pg(s), user_id, keep, now, count,
                                       err);
    sqlite3_stmt *st = stmt(s, A_SES_REVOKE_USER, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, now);
    store_bind_text(st, 3, keep);
    if (store_step_done(s, st, err, "revoke sessions") < 0)
        return -1;
    if (count)
        *count = sqlite3_changes(store_db(s));
    return 0;
}

int store_session_list(struct store *s, int64_t user_id, int64_t now,
                       struct store_session **out, size_t *n,
                       struct error *err)
{
    if (store_pg(s))
        return pgs_session_list(store_pg(s), user_id, now, out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, user_id > 0 ? A_SES_LIST_USER : A_SES_LIST,
                            err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    if (user_id > 0)
        sqlite3_bind_int64(st, 2, user_id);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)out, &cap, *n, sizeof(**out)) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        session_row(st, &(*out)[(*n)++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_sessions_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "list sessions");
    }
    return 0;
}

int store_session_delete_expired(struct store *s, int64_t now,
                                 int64_t idle_before, int64_t revoked_before,
                                 int *count, struct error *err)
{
    if (store_pg(s))
        return pgs_session_delete_expired(store_pg(s), now, idle_before,
                                          revoked_before, count, err);
    sqlite3_stmt *st = stmt(s, A_SES_PURGE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, idle_before);
    sqlite3_bind_int64(st, 3, revoked_before);
    if (store_step_done(s, st, err, "delete expired sessions") < 0)
        return -1;
    if (count)
        *count = sqlite3_changes(store_db(s));
    return 0;
}

/* ---- API tokens ---------------------------------------------------------------------- */

void store_token_clear(struct store_token *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->role);
    free(t->created_by);
    free(t->owner);
    memset(t, 0, sizeof(*t));
}

void store_tokens_free(struct store_token *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_token_clear(&t[i]);
    free(t);
}

static void token_row(sqlite3_stmt *st, struct store_token *t)
{
    memset(t, 0, sizeof(*t));
    col_fixed(st, 0, t->id, sizeof(t->id));
    t->name = store_col_dup(st, 1);
    t->role = store_col_dup(st, 2);
    t->created_by = store_col_dup(st, 3);
    t->created_at = sqlite3_column_int64(st, 4);
    t->expires_at = col_i64(st, 5);
    t->last_used_at = col_i64(st, 6);
    t->revoked_at = col_i64(st, 7);
    t->owner_id = col_i64(st, 8);
    t->owner = store_col_dup(st, 9);
}

int store_token_create(struct store *s, const struct store_token *t,
                       const char *hash, struct error *err)
{
    if (store_pg(s))
        return pgs_token_create(store_pg(s), t, hash, err);
    sqlite3_stmt *st = stmt(s, A_TOK_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, t->id);
    store_bind_text(st, 2, t->name);
    store_bind_text(st, 3, hash);
    store_bind_text(st, 4, t->role);
    store_bind_text(st, 5, t->created_by);
    sqlite3_bind_int64(st, 6, t->created_at);
    if (t->expires_at > 0)
        sqlite3_bind_int64(st, 7, t->expires_at);
    else
        sqlite3_bind_null(st, 7);
    if (t->owner_id > 0)
        sqlite3_bind_int64(st, 8, t->owner_id);
    else
        sqlite3_bind_null(st, 8);
    return store_step_done(s, st, err, "insert token");
}

static int token_get(struct store *s, sqlite3_stmt *st,
                     struct store_token *out, struct error *err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        token_row(st, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read token");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_token_get_by_hash(struct store *s, const char *hash,
                            struct store_token *out, struct error *err)
{
    if (store_pg(s))
        return pgs_token_get_by_hash(store_pg(s), hash, out, err);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = stmt(s, A_TOK_BY_HASH, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, hash);
    return token_get(s, st, out, err);
}

int store_token_get(struct store *s, const char *id, struct store_token *out,
                    struct error *err)
{
    if (store_pg(s))
        return pgs_token_get(store_pg(s), id, out, err);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = stmt(s, A_TOK_GET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    return token_get(s, st, out, err);
}

int store_token_touch(struct store *s, const char *id, int64_t now,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_token_touch(store_pg(s), id, now, err);
    sqlite3_stmt *st = stmt(s, A_TOK_TOUCH, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    return step_changed(s, st, err, "touch token") < 0 ? -1 : 0;
}

int store_token_revoke(struct store *s, const char *id, int64_t now,
                       struct error *err)
{
    if (store_pg(s))
        return pgs_token_revoke(store_pg(s), id, now, err);
    sqlite3_stmt *st = stmt(s, A_TOK_REVOKE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    return step_changed(s, st, err, "revoke token");
}

int store_token_list(struct store *s, struct store_token **out, size_t *n,
                     struct error *err)
{
    if (store_pg(s))
        return pgs_token_list(store_pg(s), out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = stmt(s, A_TOK_LIST, err);
    if (st == NULL)
        return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)out, &cap, *n, sizeof(**out)) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        token_row(st, &(*out)[(*n)++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        store_tokens_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "list tokens");
    }
    return 0;
}

/* ---- the per-account login throttle ----------------------------------------------- */

static void throttle_row(sqlite3_stmt *st, struct store_throttle *t)
{
    t->failures = sqlite3_column_int(st, 0);
    t->first_at = sqlite3_column_int64(st, 1);
    t->level = sqlite3_column_int(st, 2);
    t->locked_until = sqlite3_column_int64(st, 3);
    t->updated_at = sqlite3_column_int64(st, 4);
}

int store_throttle_get(struct store *s, const char *account,
                       struct store_throttle *out, struct error *err)
{
    if (store_pg(s))
        return pgs_throttle_get(store_pg(s), account, out, err);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = stmt(s, A_THR_GET, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, account);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        throttle_row(st, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_error(s, err, "read login throttle");
    return rc == SQLITE_ROW ? 0 : 1;
}

static int throttle_put(struct store *s, const char *account,
                        const struct store_throttle *t, struct error *err)
{
    sqlite3_stmt *st = stmt(s, A_THR_PUT, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, account);
    sqlite3_bind_int(st, 2, t->failures);
    sqlite3_bind_int64(st, 3, t->first_at);
    sqlite3_bind_int(st, 4, t->level);
    sqlite3_bind_int64(st, 5, t->locked_until);
    sqlite3_bind_int64(st, 6, t->updated_at);
    return store_step_done(s, st, err, "write login throttle");
}

static int throttle_prune(struct store *s, int64_t before, int64_t now,
                          struct error *err)
{
    sqlite3_stmt *st = stmt(s, A_THR_PRUNE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int64(st, 2, now);
    return store_step_done(s, st, err, "prune login throttle");
}

int store_throttle_clear(struct store *s, const char *account,
                         struct error *err)
{
    if (store_pg(s))
        return pgs_throttle_clear(store_pg(s), account, err);
    sqlite3_stmt *st = stmt(s, A_THR_DEL, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, account);
    return store_step_done(s, st, err, "clear login throttle");
}

int store_throttle_update(struct store *s, const char *account,
                          int (*update)(struct store_throttle *t, void *arg),
                          void *arg, int64_t now, int64_t prune_before,
                          struct error *err)
{
    if (store_pg(s))
        return pgs_throttle_update(store_pg(s), account, update, arg, now,
                                   prune_before, err);
    struct store_throttle t;
    if (store_tx_begin(s, err) < 0)
        return -1;
    if (throttle_prune(s, prune_before, now, err) < 0 ||
        store_throttle_get(s, account, &t, err) < 0)
        return store_tx_fail(s);
    int rc = update(&t, arg) == 0 ? throttle_put(s, account, &t, err)
                                  : store_throttle_clear(s, account, err);
    if (rc < 0 || store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    return 0;
}

/* ---- webhook HMAC signatures seen --------------------------------------------------- */

int store_replay_claim(struct store *s, const char *scope, const char *sig,
                       int64_t until, const char *run, int64_t now,
                       struct error *err)
{
    if (store_pg(s))
        return pgs_replay_claim(store_pg(s), scope, sig, until, run, now, err);
    sqlite3_stmt *st = stmt(s, A_RPL_CLAIM, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, scope);
    store_bind_text(st, 2, sig);
    sqlite3_bind_int64(st, 3, until);
    store_bind_text(st, 4, run);
    sqlite3_bind_int64(st, 5, now);
    return step_changed(s, st, err, "claim a signature");
}

int store_replay_done(struct store *s, const char *scope, const char *sig,
                      struct error *err)
{
    if (store_pg(s))
        return pgs_replay_done(store_pg(s), scope, sig, err);
    sqlite3_stmt *st = stmt(s, A_RPL_DONE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, scope);
    store_bind_text(st, 2, sig);
    return step_changed(s, st, err, "record a signature") < 0 ? -1 : 0;
}

int store_replay_release(struct store *s, const char *scope, const char *sig,
                         const char *run, struct error *err)
{
    if (store_pg(s))
        return pgs_replay_release(store_pg(s), scope, sig, run, err);
    sqlite3_stmt *st = stmt(s, A_RPL_RELEASE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, scope);
    store_bind_text(st, 2, sig);
    store_bind_text(st, 3, run);
    return step_changed(s, st, err, "release a signature") < 0 ? -1 : 0;
}

int store_replay_prune(struct store *s, int64_t now, struct error *err)
{
    if (store_pg(s))
        return pgs_replay_prune(store_pg(s), now, err);
    sqlite3_stmt *st = stmt(s, A_RPL_PRUNE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    return store_step_done(s, st, err, "prune signatures");
}
